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

The `--ray` path of `eet-like embed` / `eet-like predict` is eet_like.app.ray_cli, on this API.
"""
import logging
import os
import socket
import sys
import threading
from typing import Any, List, Optional

import torch

try:
    import pyarrow as pa
    import ray
    import ray.data
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("eet_like.ray needs Ray Data: pip install 'eet_like[ray]' (or pip install 'ray[data]')") from e

from . import BertModel, GPT2LMHeadModel, encode_sentences
from .embeddings import POOLINGS
from .integrations.transformers import config_model_type
from .text import generate_window, load_tokenizer

ROWS_PER_CALL = 16  # model batches per actor call (the rows are sorted by length inside a call)
CONNECT_TIMEOUT_S = 60.0  # an unreachable --ray-address fails after this
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
    model_type = config_model_type(model_dir, "model_dir")
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
        from transformers import AutoTokenizer  # heavy, optional: loaded by the workers only

        self.tok = AutoTokenizer.from_pretrained(tokenizer or model_dir)
        self.model = BertModel.from_pretrained(model_dir, dtype=getattr(torch, dtype), device=device)
        self.text_column, self.output_column = text_column, output_column
        self.kw = dict(pooling=pooling, normalize=normalize, batch_size=batch_size, max_length=max_length)

    def __call__(self, batch):
        from ray.data.extensions import ArrowTensorArray
        emb = encode_sentences(self.model, self.tok, self._column(batch, self.text_column), **self.kw)
        out = batch.append_column(self.output_column, ArrowTensorArray.from_numpy(emb.float().cpu().numpy()))
        self._after_call()
        return out


class _Generator(_Worker):
    def __init__(self, model_dir, tokenizer, prompt_column, output_column, dtype, device, threads, batch_size,
                 src_length, generate_kwargs):
        super().__init__(threads)
        self.tok = load_tokenizer(tokenizer or model_dir)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = GPT2LMHeadModel.from_pretrained(
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
        texts = generate_window(self.model, self.tok, encoded, self.batch_size, self.device, self.kw)
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
