"""`eet-like embed --ray` and `eet-like predict --ray` (run_embed_cli, run_predict_cli): the
single-process commands' input readers and output records around eet_like.ray's
embed_dataset / generate_dataset, with the driver-side checks (cluster size, Parquet paths)
and the rows checked back in order."""
import argparse
import logging
import os
import sys
from typing import Iterator, List

import numpy as np
import pyarrow as pa
import ray
import ray.data
from ray.data import DataContext

from ..errors import UsageError
from ..ray import ROWS_PER_CALL, connect, embed_dataset, generate_dataset
from .common import (check_device, embedding_record, model_type_of, predict_record, read_jsonl, read_lines,
                     resume_point, sampling_kwargs, torch_dtype)

ROW = "_eet_row"  # the input position carried through Ray, checked on the way out


def _is_parquet(path: str) -> bool:
    return path.endswith(".parquet") or os.path.isdir(path)


def _parquet_out(path: str, what: str) -> bool:
    if not (path.endswith(".parquet") or path.endswith("/") or os.path.isdir(path)):
        return False
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise UsageError(f"{what} {path!r} exists: Parquet output goes to a new (or empty) directory")
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
        raise UsageError(f"{what} {path}: no {column!r} column (columns: {', '.join(names)})")
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
    except UsageError:
        raise
    except Exception as e:  # a worker's error, after Ray's retries
        if os.environ.get("EET_DEBUG") == "1":
            raise
        raise UsageError(f"the Ray job failed: {_cause(e)}") from None


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
        raise UsageError(str(e)) from None
    # A pool that does not fit would wait for the cluster to grow, forever on a fixed one; and
    # Ray Data lists and reads Parquet files in tasks that need a CPU the workers do not hold.
    have = ray.cluster_resources()
    workers = args.num_workers or 1
    cpus = workers * (args.threads_per_worker or 1)
    gpus = workers if args.device.startswith("cuda") else 0
    spare = 1 if parquet_in else 0
    if cpus + spare > have.get("CPU", 0) or gpus > have.get("GPU", 0):
        need = f"{cpus} CPUs" + (f" and {gpus} GPUs" if gpus else "")
        raise UsageError(
            f"--num-workers {workers} x {args.threads_per_worker or 1} threads needs {need}"
            + (" plus 1 CPU to read Parquet" if spare else "")
            + f"; the cluster has {have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs: use fewer workers "
            "or threads per worker (or add nodes first)")
    DataContext.get_current().enable_progress_bars = False  # predict has its own; embed has none
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _positive_cli(opt: str, value):
    if value is not None and value <= 0:
        raise UsageError(f"{opt} must be > 0, got {value}")


def _worker_opts(args) -> dict:
    return dict(num_workers=args.num_workers or 1, threads=args.threads_per_worker, dtype=args.dtype,
                device=args.device)


def _cheap_checks(args, model_type: str, what: str):
    got = model_type_of(args.model)
    if got != model_type:
        raise UsageError(f"--model: model_type {got!r} is not supported by {what} (supported: {model_type})")
    dtype = torch_dtype(args.dtype)
    if not args.device.startswith("cuda"):
        check_device(args.device, dtype)  # the workers check their GPUs themselves
    if args.batch_size <= 0:
        raise UsageError(f"--batch-size must be > 0, got {args.batch_size}")


def run_embed_cli(args) -> int:
    """`eet-like embed --ray`: the records of `eet-like embed`, in its order."""
    _cheap_checks(args, "bert", "embed")
    parquet_in = _is_parquet(args.input)
    default = os.path.splitext(args.input.rstrip("/"))[0] + ".embeddings.jsonl"
    out = args.output or default
    parquet_out = _parquet_out(out, "--output")
    if not parquet_out and not (out.endswith(".jsonl") or out.endswith(".npy")):
        raise UsageError(f"--output must end in .jsonl, .npy or .parquet (a directory), got {out!r}")
    texts = None
    if not parquet_in:
        texts = [l for l in read_lines(args.input, "--input") if l.strip()]
        if not texts:
            raise UsageError(f"--input: {args.input!r} has no non-empty line")
    elif not os.path.exists(args.input):
        raise UsageError(f"--input: no such file or directory {args.input!r}")
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
        raise UsageError(str(e)) from None
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
                    f.write(embedding_record(row, vec) + "\n")
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
        raise UsageError(f"the Ray job returned {written} embeddings for {n} inputs")
    print(f"wrote {written} embeddings of dim {dim} to {out}", file=sys.stderr)
    return 0


def run_predict_cli(args) -> int:
    """`eet-like predict --ray`: the records of `eet-like predict`, in its order (JSONL output
    is written and flushed as results arrive, so --resume works as there)."""
    from tqdm import tqdm  # a dependency of transformers, not of eet_like
    _cheap_checks(args, "gpt2", "predict")
    if args.seed is not None:
        raise UsageError("--seed: seeded sampling is not reproducible over Ray (which worker gets which rows "
                            "is Ray's choice); drop --seed or --ray")
    parquet_in = _is_parquet(args.data_file)
    parquet_out = _parquet_out(args.output_file, "--output-file")
    if parquet_out and args.resume:
        raise UsageError("--resume continues a JSONL --output-file, not a Parquet directory")
    rows, done = None, 0
    if parquet_in:
        if args.resume:
            raise UsageError("--resume with --ray needs a JSONL --data-file (records are matched by line)")
        if not os.path.exists(args.data_file):
            raise UsageError(f"--data-file: no such file or directory {args.data_file!r}")
    else:
        rows = read_jsonl(args.data_file)
        empty = [n for n, r in enumerate(rows, start=1) if not r["src"]]
        if empty:
            raise UsageError(f"--data-file {args.data_file}: record {empty[0]} has an empty src")
        if parquet_out and len({tuple(r) for r in rows}) > 1:
            raise UsageError("--output-file: Parquet output needs records with the same fields "
                                "(write .jsonl instead)")
    if not parquet_out and os.path.exists(args.output_file):
        if not args.resume:
            raise UsageError(f"--output-file {args.output_file!r} exists: pass --resume to continue it "
                                "or remove it")
        done = resume_point(args.output_file, rows)
        if done == len(rows):
            print(f"nothing to do: {args.output_file} already has all {len(rows)} results", file=sys.stderr)
            return 0
    _start(args, parquet_in)
    per_call = ROWS_PER_CALL * args.batch_size
    if rows is not None:
        ds = _in_memory([{ROW: i - done, "src": rows[i]["src"]} for i in range(done, len(rows))], per_call)
    else:
        ds = _read_parquet(args.data_file, "src", "--data-file")
    kw = sampling_kwargs(argparse.Namespace(max_new_tokens=args.max_length, do_sample=args.do_sample,
                                                  top_k=args.top_k, top_p=args.top_p, temperature=args.temperature,
                                                  repetition_penalty=args.repetition_penalty, num_beams=None))
    try:
        res = generate_dataset(ds, args.model, "src", tokenizer=args.tokenizer, batch_size=args.batch_size,
                               rows_per_call=per_call, src_length=args.src_length, **_worker_opts(args), **kw)
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from None
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
                    out.write(predict_record(rec, o) + "\n")
                out.flush()
            written += table.num_rows
            bar.update(table.num_rows)
    if rows is not None and done + written != len(rows):
        raise UsageError(f"the Ray job returned {written} results for {len(rows) - done} records")
    print(f"wrote {written} results to {args.output_file}" + (f" (after {done} from before)" if done else ""),
          file=sys.stderr)
    return 0


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False

