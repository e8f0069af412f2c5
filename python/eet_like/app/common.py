"""What the `eet-like` commands share (cli.py, serve.py, ray_cli.py): the checks of the model
options (--model, --dtype, --device, --quantize), the input readers and the output records.
Every mistake is a UsageError naming the option."""
import json
import os

import torch

from ..errors import UsageError
from ..integrations.transformers import config_model_type
from ..validation import check_device_dtype

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def torch_dtype(name):
    if name not in _DTYPES:
        raise UsageError(f"--dtype must be one of float32, float16, bfloat16; got {name!r}")
    return _DTYPES[name]


def check_device(device, dtype):
    """The model's own device/dtype check (validation.check_device_dtype), as a UsageError
    naming the options."""
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UsageError(f"--device must be cpu or cuda[:N]; got {device!r}")
    try:
        check_device_dtype(dtype, device)
    except ValueError as e:
        raise UsageError(f"--device {device} --dtype {str(dtype).replace('torch.', '')}: {e}") from e


def model_type_of(path):
    """The model_type of checkpoint directory --model `path` (its config.json)."""
    try:
        return config_model_type(path, "--model")
    except ValueError as e:
        raise UsageError(str(e)) from e


def quantize_arg(args):
    """--quantize as the loaders take it (None or "int8")."""
    return None if args.quantize == "none" else args.quantize


def read_lines(path, what):
    if not os.path.isfile(path):
        raise UsageError(f"{what}: no such file {path!r}")
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def sampling_kwargs(args):
    kw = {"max_new_tokens": args.max_new_tokens}
    if args.do_sample or args.top_k is not None or args.top_p is not None or args.temperature is not None:
        kw["do_sample"] = True
        if args.top_k is not None:
            kw["top_k"] = args.top_k
        if args.top_p is not None:
            kw["top_p"] = args.top_p
        if args.temperature is not None:
            kw["temperature"] = args.temperature
    if args.repetition_penalty is not None:
        kw["repetition_penalty"] = args.repetition_penalty
    if getattr(args, "num_beams", None):
        kw["num_beams"] = args.num_beams
    return kw


def embedding_record(row, vec):
    """One line of embed's JSONL output: the input record (`{"text": ...}`) with its "embedding"."""
    return json.dumps(dict(row, embedding=[round(float(v), 7) for v in vec]))


def read_jsonl(path):
    """predict's --data-file: one JSON string or {"src": ...} object per line."""
    rows = []
    for n, line in enumerate(read_lines(path, "--data-file"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UsageError(f"--data-file {path}: line {n} is not valid JSON ({e.msg})") from e
        if isinstance(obj, str):
            obj = {"src": obj}
        if not isinstance(obj, dict) or not isinstance(obj.get("src"), str):
            raise UsageError(f'--data-file {path}: line {n} must be a JSON string or an object with a "src" string')
        rows.append(obj)
    return rows


def resume_point(path, rows):
    """How many records an earlier run of this job already wrote to `path` (checked: every line
    is a whole record of the same input, in order)."""
    lines = [line for line in read_lines(path, "--output-file") if line.strip()]
    if len(lines) > len(rows):
        raise UsageError(f"--output-file has {len(lines)} records but --data-file only {len(rows)}: not the same job?")
    for n, line in enumerate(lines, start=1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise UsageError(f"--output-file {path}: line {n} is not a whole JSON record (cut off?); "
                             "remove it and resume") from None
        if not isinstance(rec, dict) or rec.get("src") != rows[n - 1]["src"]:
            raise UsageError(f"--output-file {path}: line {n} is not the result of --data-file record {n}: "
                             "not the same job?")
    return len(lines)


def predict_record(row, output):
    """One line of predict's output: the input record with its "output"."""
    return json.dumps(dict(row, output=output), ensure_ascii=False)
