"""eet_like: fast transformer inference with fused CUDA/CPU kernels.

    import eet_like
    model = eet_like.GPT2LMHeadModel.from_pretrained(path_or_hf_model, dtype=..., device=...)
    bert = eet_like.BertModel.from_pretrained(path_or_hf_model, dtype=..., device=...)
    y = eet_like.ops.layernorm(x, weight, bias)      # op level, CPU and CUDA
"""
import importlib
import json
import os

from . import _openmp  # noqa: F401  (before torch: OpenMP's spin count, see _openmp.py)
import torch  # noqa: E402,F401  (the extension needs torch loaded first)

from . import _C  # noqa: F401  (registers torch.ops.eet_like.*)
from . import _meta  # noqa: F401  (fake kernels for torch.compile / opcheck)
from . import ops, reference
from ._threads import adaptive_threads_enabled, set_adaptive_threads
from .embeddings import encode_sentences
from .models import BertModel, GPT2LMHeadModel, GPT2Model
from .validation import cuda_emulated, cuda_kernels_available

__version__ = "0.1.0"

_MODEL_CLASSES = {"gpt2": GPT2LMHeadModel, "bert": BertModel}


def from_pretrained(path_or_hf_model, **kwargs):
    """Loads a checkpoint with the eet_like class that config.model_type names
    (gpt2 -> GPT2LMHeadModel, bert -> BertModel); kwargs go to that class's from_pretrained."""
    if isinstance(path_or_hf_model, (str, os.PathLike)):
        cfg = os.path.join(os.fspath(path_or_hf_model), "config.json")
        if not os.path.isfile(cfg):
            raise FileNotFoundError(f"path_or_hf_model: no config.json in {os.fspath(path_or_hf_model)!r}")
        with open(cfg) as f:
            model_type = json.load(f).get("model_type")
    else:
        model_type = getattr(getattr(path_or_hf_model, "config", None), "model_type", None)
    if model_type not in _MODEL_CLASSES:
        raise ValueError(f"model_type {model_type!r} is not supported; supported: {', '.join(sorted(_MODEL_CLASSES))}")
    return _MODEL_CLASSES[model_type].from_pretrained(path_or_hf_model, **kwargs)


def __getattr__(name):
    # eet_like.fairseq imports fairseq: loaded on first use only, so a missing fairseq never
    # breaks `import eet_like`.
    if name == "fairseq":
        return importlib.import_module(".fairseq", __name__)
    raise AttributeError(f"module 'eet_like' has no attribute {name!r}")


__all__ = ["ops", "reference", "cuda_kernels_available", "cuda_emulated", "from_pretrained", "GPT2LMHeadModel", "GPT2Model",
           "BertModel", "encode_sentences", "set_adaptive_threads", "adaptive_threads_enabled", "__version__"]
