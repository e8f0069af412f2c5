"""Batch embedding and generation over a Ray cluster (Ray Data): a pool of actors, each holding
one eet_like model loaded once, maps the batches of a `ray.data.Dataset`.

    import ray, eet_like.ray
    ds = ray.data.read_parquet("s3://bucket/sentences/")                 # a "text" column
    ds = eet_like.ray.embed_dataset(ds, "/models/all-MiniLM-L6-v2", num_workers=8, threads=4)
    ds.write_parquet("s3://bucket/embeddings/")                          # + "embedding" [N, 384]

    ds = eet_like.ray.generate_dataset(ray.data.read_json("prompts.jsonl"), "/models/gpt2",
                                       num_workers=2, device="cuda", max_new_tokens=64)

Rows keep their order (the returned dataset preserves it). Workers that die are restarted by
Ray and their unfinished batches run again, so every row comes out exactly once. Every node
needs eet_like (and the model directory at the same path). `pip install 'eet_like[ray]'`.

Also the `--ray` path of `eet-like embed` / `eet-like predict` (run_embed_cli, run_predict_cli):
the same input readers, per-batch code and output records as the single-process commands.
"""
import argparse
import json
import logging
import os
import socket
import sys
import threading
from typing import Any, Iterator, List, Optional

import numpy as np

try:
    import pyarrow as pa
    import ray
    import ray.data
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("eet_like.ray needs Ray Data: pip install 'eet_like[ray]' (or pip install 'ray[data]')") from e

from . import cli as _cli

ROWS_PER_CALL = 16  # model batches per actor call (the rows are sorted by length inside a call)
CONNECT_TIMEOUT_S = 60.0  # an unreachable --ray-address fails after this
ROW = "_eet_row"  # the input position the CLI carries through Ray, checked on the way out
# Test-only fault injection: "N:PATH" makes one actor exit after its N-th call, once per PATH
# (the first actor that creates PATH). The CLI forwards it to the workers.
FAULT_ENV = "EET_LIKE_RAY_TEST_FAULT"

_DTYPES = ("float32", "float16", "bfloat16")


# ---------------------------------------------------------------- argument checks (driver side)

def _positive(name: str, value, allow_none: bool = False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _dtype_name(dtype) -> str:
    name = str(dtype).replace("torch.", "")
    name = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}.get(name, name)
    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}; got {dtype!r}")
    return name


def _check_device(device: str, dtype: str):
    """The checks that hold on any node: the GPU itself is checked by the workers that load the model."""
    if not isinstance(device, str) or (device not in ("cpu", "cuda") and not device.startswith("cuda:")):
        raise ValueError(f"device must be cpu or cuda[:N]; got {device!r}")
    if device == "cpu" and dtype != "float32":
        raise ValueError("dtype: the CPU kernels are float32 only; use dtype float32 with device cpu")


def _model_type(model_dir: str, want: str, what: str):
    if not os.path.isdir(model_dir):
        raise ValueError(f"model_dir: {model_dir!r} is not a directory")
    cfg = os.path.join(model_dir, "config.json")
    if not os.path.isfile(cfg):
        raise ValueError(f"model_dir: no config.json in {model_dir!r}")
    with open(cfg) as f:
        model_type = json.load(f).get("model_type")
    if model_type != want:
        raise ValueError(f"model_dir: model_type {model_type!r} is not supported by {what} (supported: {want})")


def _resources(num_workers, num_cpus, num_gpus, threads, device):
    _positive("num_workers", num_workers)
    _positive("threads", threads, allow_none=True)
    for name, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise ValueError(f"{name} must be a number >= 0, got {v!r}")
    if num_cpus is None:
        num_cpus = threads or 1
    if num_gpus is None:
        num_gpus = 1 if device.startswith("cuda") else 0
    if device.startswith("cuda") and num_gpus == 0:
        raise ValueError("num_gpus: device cuda needs num_gpus > 0 per worker")
    return num_cpus, num_gpus


def _map(ds, cls, ctor: dict, rows_per_call: int, num_workers: int, num_cpus, num_gpus):
    # Fault tolerance is Ray Data's default for actor pools (max_restarts=-1, max_task_retries=-1):
    # a dead worker is restarted and its unfinished calls run again (tests/test_ray.py kills one).
    fault = os.environ.get(FAULT_ENV)
    out = ds.map_batches(cls, fn_constructor_kwargs=ctor, batch_size=rows_per_call, batch_format="pyarrow",
                         compute=ray.data.ActorPoolStrategy(size=num_workers), num_cpus=num_cpus, num_gpus=num_gpus,
                         runtime_env={"env_vars": {FAULT_ENV: fault}} if fault else None)
    out.context.execution_options.preserve_order = True
    return out


# ---------------------------------------------------------------- the workers (Ray actors)

class _Worker:
    def __init__(self, threads: Optional[int]):
        import torch
        if threads:
            torch.set_num_threads(threads)
        self._calls = 0
        fault = os.environ.get(FAULT_ENV, "")
        self._fault = None
        if fault:
            n, _, path = fault.partition(":")
            self._fault = (int(n), path)

    def _after_call(self):
        """Test-only: die like a crashed worker process after the N-th call (see FAULT_ENV)."""
        self._calls += 1
        if self._fault and self._calls == self._fault[0]:
            try:
                fd = os.open(self._fault[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, f"{os.getpid()}\n".encode())
            os.close(fd)
            os._exit(17)

    @staticmethod
    def _column(batch, name: str) -> List[Any]:
        if name not in batch.column_names:
            raise ValueError(f"column {name!r} is not in the dataset (columns: {', '.join(batch.column_names)})")
        return batch.column(name).to_pylist()


class _Embedder(_Worker):
    def __init__(self, model_dir, tokenizer, text_column, output_column, dtype, device, threads, batch_size,
                 pooling, normalize, max_length):
        super().__init__(threads)
        import torch
        from transformers import AutoTokenizer

        import eet_like
        self.tok = AutoTokenizer.from_pretrained(tokenizer or model_dir)
        self.model = eet_like.BertModel.from_pretrained(model_dir, dtype=getattr(torch, dtype), device=device)
        self.text_column, self.output_column = text_column, output_column
        self.kw = dict(pooling=pooling, normalize=normalize, batch_size=batch_size, max_length=max_length)

    def __call__(self, batch):
        import eet_like
        from ray.data.extensions import ArrowTensorArray
        emb = eet_like.encode_sentences(self.model, self.tok, self._column(batch, self.text_column), **self.kw)
        out = batch.append_column(self.output_column, ArrowTensorArray.from_numpy(emb.float().cpu().numpy()))
        self._after_call()
        return out


class _Generator(_Worker):
    def __init__(self, model_dir, tokenizer, prompt_column, output_column, dtype, device, threads, batch_size,
                 src_length, generate_kwargs):
        super().__init__(threads)
        import torch

        import eet_like
        self.tok = _cli._tokenizer(tokenizer or model_dir)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = eet_like.GPT2LMHeadModel.from_pretrained(
            model_dir, dtype=getattr(torch, dtype), device=device, max_batch=batch_size,
            max_seq_len=src_length + generate_kwargs["max_new_tokens"])
        self.prompt_column, self.output_column = prompt_column, output_column
        self.device, self.batch_size, self.src_length, self.kw = device, batch_size, src_length, generate_kwargs

    def __call__(self, batch):
        prompts = self._column(batch, self.prompt_column)
        encoded = []
        for n, src in enumerate(prompts):
            if not isinstance(src, str):
                raise ValueError(f"column {self.prompt_column!r}: a row holds {type(src).__name__}, not a string")
            encoded.append(self.tok(src)["input_ids"][-self.src_length:])  # keep the prompt's end, as predict
            if not encoded[-1]:
                raise ValueError(f"column {self.prompt_column!r}: a row has an empty prompt ({src!r})")
        texts = _cli.generate_window(self.model, self.tok, encoded, self.batch_size, self.device, self.kw)
        out = batch.append_column(self.output_column, pa.array(texts, pa.string()))
        self._after_call()
        return out


# ---------------------------------------------------------------- public API

def embed_dataset(ds: "ray.data.Dataset", model_dir: str, text_column: str = "text", *,
                  output_column: str = "embedding", tokenizer: Optional[str] = None, num_workers: int = 1,
                  num_cpus: Optional[float] = None, num_gpus: Optional[float] = None, threads: Optional[int] = None,
                  batch_size: int = 32, rows_per_call: Optional[int] = None, pooling: str = "mean",
                  normalize: bool = True, max_length: Optional[int] = None, dtype="float32",
                  device: str = "cpu") -> "ray.data.Dataset":
    """`ds` with an `output_column` of sentence embeddings of `text_column` (float32 [hidden]
    per row, a Ray tensor column: `batch["embedding"]` is an [N, hidden] array in numpy
    batches), computed as eet_like.encode_sentences does on one machine.

    num_workers actors (a fixed pool), each holding one eet_like.BertModel from model_dir
    (a local transformers BERT directory present on every node; tokenizer: its directory,
    default model_dir). Each asks Ray for num_cpus CPUs (default: threads, else 1) and num_gpus
    GPUs (default 1 with device cuda, else 0) and runs torch with `threads` threads (default:
    torch's own). An actor call takes rows_per_call rows (default 16 * batch_size), sorts them
    by length and runs them batch_size at a time. The result keeps the order of `ds`.
    No quantization option yet: the library has none to forward."""
    if not isinstance(ds, ray.data.Dataset):
        raise TypeError(f"ds must be a ray.data.Dataset, got {type(ds).__name__}")
    _model_type(model_dir, "bert", "embed_dataset")
    from .embeddings import POOLINGS
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")
    _positive("batch_size", batch_size)
    _positive("rows_per_call", rows_per_call, allow_none=True)
    _positive("max_length", max_length, allow_none=True)
    dtype = _dtype_name(dtype)
    _check_device(device, dtype)
    num_cpus, num_gpus = _resources(num_workers, num_cpus, num_gpus, threads, device)
    ctor = dict(model_dir=os.path.abspath(model_dir), tokenizer=tokenizer, text_column=text_column,
                output_column=output_column, dtype=dtype, device=device, threads=threads, batch_size=batch_size,
                pooling=pooling, normalize=bool(normalize), max_length=max_length)
    return _map(ds, _Embedder, ctor, rows_per_call or ROWS_PER_CALL * batch_size, num_workers, num_cpus, num_gpus)


_RESERVED = ("generator", "streamer", "attention_mask", "pad_token_id", "input_ids")


def generate_dataset(ds: "ray.data.Dataset", model_dir: str, prompt_column: str = "src", *,
                     output_column: str = "output", tokenizer: Optional[str] = None, num_workers: int = 1,
                     num_cpus: Optional[float] = None, num_gpus: Optional[float] = None,
                     threads: Optional[int] = None, batch_size: int = 8, rows_per_call: Optional[int] = None,
                     src_length: int = 256, dtype="float32", device: str = "cpu",
                     **generate_kwargs) -> "ray.data.Dataset":
    """`ds` with an `output_column` of generated continuations (the decoded new tokens) of
    `prompt_column`, as `eet-like predict` computes them: prompts cut to their last src_length
    tokens, left-padded batches of batch_size sorted by length, model.generate(**generate_kwargs)
    (max_new_tokens defaults to 64; do_sample, top_k, top_p, temperature, repetition_penalty,
    num_beams, ...). Greedy results equal the single-process ones; sampling draws per worker
    (no generator/seed: which worker gets which rows is Ray's choice).

    Workers, resources, rows_per_call and order: as embed_dataset, with eet_like.GPT2LMHeadModel."""
    if not isinstance(ds, ray.data.Dataset):
        raise TypeError(f"ds must be a ray.data.Dataset, got {type(ds).__name__}")
    _model_type(model_dir, "gpt2", "generate_dataset")
    _positive("batch_size", batch_size)
    _positive("rows_per_call", rows_per_call, allow_none=True)
    _positive("src_length", src_length)
    bad = [k for k in _RESERVED if k in generate_kwargs]
    if bad:
        raise ValueError(f"generate_dataset sets {bad[0]} itself (per worker and batch); do not pass it")
    generate_kwargs.setdefault("max_new_tokens", 64)
    _positive("max_new_tokens", generate_kwargs["max_new_tokens"])
    dtype = _dtype_name(dtype)
    _check_device(device, dtype)
    num_cpus, num_gpus = _resources(num_workers, num_cpus, num_gpus, threads, device)
    ctor = dict(model_dir=os.path.abspath(model_dir), tokenizer=tokenizer, prompt_column=prompt_column,
                output_column=output_column, dtype=dtype, device=device, threads=threads, batch_size=batch_size,
                src_length=src_length, generate_kwargs=generate_kwargs)
    return _map(ds, _Generator, ctor, rows_per_call or ROWS_PER_CALL * batch_size, num_workers, num_cpus, num_gpus)


# ---------------------------------------------------------------- connecting

def connect(address: Optional[str] = None, timeout: Optional[float] = None) -> None:
    """ray.init for the CLI: address None starts a local Ray instance; HOST:PORT (a head's GCS
    port, `ray start --head --port`) or "auto" joins a running cluster. An unreachable address
    fails within `timeout` seconds (default CONNECT_TIMEOUT_S, or EET_LIKE_RAY_CONNECT_TIMEOUT
    for a slow or loaded driver machine) with ConnectionError."""
    if ray.is_initialized():
        return
    if timeout is None:
        v = os.environ.get("EET_LIKE_RAY_CONNECT_TIMEOUT", str(CONNECT_TIMEOUT_S))
        try:
            timeout = float(v)
        except ValueError:
            timeout = -1.0
        if not timeout > 0:
            raise ValueError(f"EET_LIKE_RAY_CONNECT_TIMEOUT must be a number of seconds > 0, got {v!r}")
    kw = dict(logging_level=logging.WARNING, log_to_driver=False, configure_logging=True)
    if address is None:
        ray.init(address="local", include_dashboard=False, **kw)
        return
    if "://" not in address and address != "auto":
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"--ray-address must be HOST:PORT (the head's port), got {address!r}")
        try:
            socket.create_connection((host, int(port)), timeout=min(timeout, 10.0)).close()
        except OSError as e:
            raise ConnectionError(f"--ray-address {address}: no Ray head reachable there ({e})") from None
    # ray.init itself may wait long for a port that is not a Ray head: bound it.
    done = threading.Event()

    def watchdog():
        if not done.wait(timeout):
            print(f"eet-like: error: --ray-address {address}: no Ray cluster answered within {timeout:.0f} s",
                  file=sys.stderr, flush=True)
            os._exit(2)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        ray.init(address=address, **kw)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ConnectionError(f"--ray-address {address}: {str(e).strip().splitlines()[0]}") from None
    finally:
        done.set()


# ---------------------------------------------------------------- CLI (eet-like embed/predict --ray)

def _is_parquet(path: str) -> bool:
    return path.endswith(".parquet") or os.path.isdir(path)


def _parquet_out(path: str, what: str) -> bool:
    if not (path.endswith(".parquet") or path.endswith("/") or os.path.isdir(path)):
        return False
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise _cli.CliError(f"{what} {path!r} exists: Parquet output goes to a new (or empty) directory")
    return True


def _in_memory(records: List[dict], rows_per_call: int):
    """A dataset of records (dicts of one shape), in blocks of rows_per_call so that every
    worker gets work."""
    tables = [pa.Table.from_pylist(records[s:s + rows_per_call]) for s in range(0, len(records), rows_per_call)]
    return ray.data.from_arrow(tables)


def _read_parquet(path: str, column: str, what: str):
    # The workers do not share our working directory: a local path must be absolute (and, on a
    # cluster of several machines, on a file system every node mounts; or a URI like s3://...).
    ds = ray.data.read_parquet(path if "://" in path else os.path.abspath(path))
    names = ds.schema().names
    if column not in names:
        raise _cli.CliError(f"{what} {path}: no {column!r} column (columns: {', '.join(names)})")
    return ds


def _cause(e: BaseException) -> str:
    """The worker's own error, one line (Ray wraps it in its task errors)."""
    seen = e
    while True:
        nxt = getattr(seen, "cause", None) or seen.__cause__
        if nxt is None or nxt is seen:
            break
        seen = nxt
    lines = str(seen).strip().splitlines()
    return f"{type(seen).__name__}: {lines[0]}" if lines else type(seen).__name__


def _batches(ds) -> Iterator["pa.Table"]:
    expected = 0
    try:
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            if ROW in table.column_names:
                got = table.column(ROW).to_numpy()
                if not np.array_equal(got, np.arange(expected, expected + len(got))):
                    raise RuntimeError(f"Ray returned rows out of order or twice near row {expected}")
                expected += len(got)
                table = table.drop_columns([ROW])
            yield table
    except _cli.CliError:
        raise
    except Exception as e:  # a worker's error, after Ray's retries
        if os.environ.get("EET_DEBUG") == "1":
            raise
        raise _cli.CliError(f"the Ray job failed: {_cause(e)}") from None


class _ParquetDir:
    """Ordered part files part-00000.parquet, ... written by the driver as results arrive."""

    def __init__(self, path: str):
        self.path, self.parts = path, 0
        os.makedirs(path, exist_ok=True)

    def write(self, table: "pa.Table"):
        import pyarrow.parquet as pq
        pq.write_table(table, os.path.join(self.path, f"part-{self.parts:05d}.parquet"))
        self.parts += 1


def _tensor_to_numpy(column) -> np.ndarray:
    col = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float32)


def _start(args, parquet_in: bool):
    _positive_cli("--num-workers", args.num_workers)
    _positive_cli("--threads-per-worker", args.threads_per_worker)
    try:
        connect(args.ray_address)
    except (ConnectionError, ValueError) as e:
        raise _cli.CliError(str(e)) from None
    # A pool that does not fit would wait for the cluster to grow, forever on a fixed one; and
    # Ray Data lists and reads Parquet files in tasks that need a CPU the workers do not hold.
    have = ray.cluster_resources()
    workers = args.num_workers or 1
    cpus = workers * (args.threads_per_worker or 1)
    gpus = workers if args.device.startswith("cuda") else 0
    spare = 1 if parquet_in else 0
    if cpus + spare > have.get("CPU", 0) or gpus > have.get("GPU", 0):
        need = f"{cpus} CPUs" + (f" and {gpus} GPUs" if gpus else "")
        raise _cli.CliError(
            f"--num-workers {workers} x {args.threads_per_worker or 1} threads needs {need}"
            + (" plus 1 CPU to read Parquet" if spare else "")
            + f"; the cluster has {have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs: use fewer workers "
            "or threads per worker (or add nodes first)")
    from ray.data import DataContext
    DataContext.get_current().enable_progress_bars = False  # predict has its own; embed has none
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _positive_cli(opt: str, value):
    if value is not None and value <= 0:
        raise _cli.CliError(f"{opt} must be > 0, got {value}")


def _worker_opts(args) -> dict:
    return dict(num_workers=args.num_workers or 1, threads=args.threads_per_worker, dtype=args.dtype,
                device=args.device)


def _cheap_checks(args, model_type: str, what: str):
    got = _cli._model_dir(args.model)
    if got != model_type:
        raise _cli.CliError(f"--model: model_type {got!r} is not supported by {what} (supported: {model_type})")
    dtype = _cli._torch_dtype(args.dtype)
    if not args.device.startswith("cuda"):
        _cli._check_device(args.device, dtype)  # the workers check their GPUs themselves
    if args.batch_size <= 0:
        raise _cli.CliError(f"--batch-size must be > 0, got {args.batch_size}")


def run_embed_cli(args) -> int:
    """`eet-like embed --ray`: the records of `eet-like embed`, in its order."""
    _cheap_checks(args, "bert", "embed")
    parquet_in = _is_parquet(args.input)
    default = os.path.splitext(args.input.rstrip("/"))[0] + ".embeddings.jsonl"
    out = args.output or default
    parquet_out = _parquet_out(out, "--output")
    if not parquet_out and not (out.endswith(".jsonl") or out.endswith(".npy")):
        raise _cli.CliError(f"--output must end in .jsonl, .npy or .parquet (a directory), got {out!r}")
    texts = None
    if not parquet_in:
        texts = [l for l in _cli._read_lines(args.input, "--input") if l.strip()]
        if not texts:
            raise _cli.CliError(f"--input: {args.input!r} has no non-empty line")
    elif not os.path.exists(args.input):
        raise _cli.CliError(f"--input: no such file or directory {args.input!r}")
    _start(args, parquet_in)
    rows = ROWS_PER_CALL * args.batch_size
    if texts is not None:
        ds, n = _in_memory([{ROW: i, "text": t} for i, t in enumerate(texts)], rows), len(texts)
    else:
        ds = _read_parquet(args.input, "text", "--input")
        n = ds.count() if out.endswith(".npy") else None
    try:
        res = embed_dataset(ds, args.model, "text", batch_size=args.batch_size, rows_per_call=rows,
                            pooling=args.pooling, normalize=not args.no_normalize, **_worker_opts(args))
    except (TypeError, ValueError) as e:
        raise _cli.CliError(str(e)) from None
    written, dim, arr = 0, None, None
    sink = _ParquetDir(out) if parquet_out else None
    f = open(out, "w", encoding="utf-8") if out.endswith(".jsonl") else None
    try:
        for table in _batches(res):
            emb = _tensor_to_numpy(table.column("embedding"))
            dim = emb.shape[1]
            if sink is not None:
                flat = pa.array(emb.reshape(-1), pa.float32())
                sink.write(table.set_column(table.column_names.index("embedding"), "embedding",
                                            pa.FixedSizeListArray.from_arrays(flat, dim)))
            elif f is not None:
                for row, vec in zip(table.drop_columns(["embedding"]).to_pylist(), emb):
                    f.write(_cli.embedding_record(row, vec) + "\n")
            else:
                if arr is None:
                    arr = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(n, dim))
                arr[written:written + len(emb)] = emb
            written += len(emb)
    finally:
        if f is not None:
            f.close()
        if arr is not None:
            arr.flush()
    if n is not None and written != n:
        raise _cli.CliError(f"the Ray job returned {written} embeddings for {n} inputs")
    print(f"wrote {written} embeddings of dim {dim} to {out}", file=sys.stderr)
    return 0


def run_predict_cli(args) -> int:
    """`eet-like predict --ray`: the records of `eet-like predict`, in its order (JSONL output
    is written and flushed as results arrive, so --resume works as there)."""
    from tqdm import tqdm
    _cheap_checks(args, "gpt2", "predict")
    if args.seed is not None:
        raise _cli.CliError("--seed: seeded sampling is not reproducible over Ray (which worker gets which rows "
                            "is Ray's choice); drop --seed or --ray")
    parquet_in = _is_parquet(args.data_file)
    parquet_out = _parquet_out(args.output_file, "--output-file")
    if parquet_out and args.resume:
        raise _cli.CliError("--resume continues a JSONL --output-file, not a Parquet directory")
    rows, done = None, 0
    if parquet_in:
        if args.resume:
            raise _cli.CliError("--resume with --ray needs a JSONL --data-file (records are matched by line)")
        if not os.path.exists(args.data_file):
            raise _cli.CliError(f"--data-file: no such file or directory {args.data_file!r}")
    else:
        rows = _cli._read_jsonl(args.data_file)
        empty = [n for n, r in enumerate(rows, start=1) if not r["src"]]
        if empty:
            raise _cli.CliError(f"--data-file {args.data_file}: record {empty[0]} has an empty src")
        if parquet_out and len({tuple(r) for r in rows}) > 1:
            raise _cli.CliError("--output-file: Parquet output needs records with the same fields "
                                "(write .jsonl instead)")
    if not parquet_out and os.path.exists(args.output_file):
        if not args.resume:
            raise _cli.CliError(f"--output-file {args.output_file!r} exists: pass --resume to continue it "
                                "or remove it")
        done = _cli._resume_point(args.output_file, rows)
        if done == len(rows):
            print(f"nothing to do: {args.output_file} already has all {len(rows)} results", file=sys.stderr)
            return 0
    _start(args, parquet_in)
    per_call = ROWS_PER_CALL * args.batch_size
    if rows is not None:
        ds = _in_memory([{ROW: i - done, "src": rows[i]["src"]} for i in range(done, len(rows))], per_call)
    else:
        ds = _read_parquet(args.data_file, "src", "--data-file")
    kw = _cli._sampling_kwargs(argparse.Namespace(max_new_tokens=args.max_length, do_sample=args.do_sample,
                                                  top_k=args.top_k, top_p=args.top_p, temperature=args.temperature,
                                                  repetition_penalty=args.repetition_penalty, num_beams=None))
    try:
        res = generate_dataset(ds, args.model, "src", tokenizer=args.tokenizer, batch_size=args.batch_size,
                               rows_per_call=per_call, src_length=args.src_length, **_worker_opts(args), **kw)
    except (TypeError, ValueError) as e:
        raise _cli.CliError(str(e)) from None
    sink = _ParquetDir(args.output_file) if parquet_out else None
    written = 0
    with (open(args.output_file, "a", encoding="utf-8") if sink is None else _Null()) as out, \
            tqdm(total=len(rows) if rows is not None else None, initial=done, desc="predict", unit="rec",
                 disable=args.quiet) as bar:
        for table in _batches(res):
            if rows is None:  # Parquet input: the rows are the table's
                recs = table.drop_columns(["output"]).to_pylist()
            else:  # JSONL input: the records as read, extra fields and all (only src went to Ray)
                recs = rows[done + written:done + written + table.num_rows]
            outputs = table.column("output").to_pylist()
            if sink is not None:
                sink.write(table if rows is None else
                           pa.Table.from_pylist([dict(r, output=o) for r, o in zip(recs, outputs)]))
            else:
                for rec, o in zip(recs, outputs):
                    out.write(_cli.predict_record(rec, o) + "\n")
                out.flush()
            written += table.num_rows
            bar.update(table.num_rows)
    if rows is not None and done + written != len(rows):
        raise _cli.CliError(f"the Ray job returned {written} results for {len(rows) - done} records")
    print(f"wrote {written} results to {args.output_file}" + (f" (after {done} from before)" if done else ""),
          file=sys.stderr)
    return 0


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False

