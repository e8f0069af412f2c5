"""Loading a fairseq checkpoint (model.pt) with the eet_like decoder swapped in."""
import os
import warnings
from typing import Any, Dict, NamedTuple, Optional

import torch

from .fairseq import optimize

__all__ = ["FairseqCheckpoint", "load_checkpoint"]


class FairseqCheckpoint(NamedTuple):
    model: Any   # the fairseq model, its decoder swapped for eet_like's
    cfg: Any     # the checkpoint's config (omegaconf)
    task: Any    # the fairseq task (dictionaries: task.source_dictionary / target_dictionary)




def load_checkpoint(path: str, trust_checkpoint: bool = False, dtype: Optional[torch.dtype] = None,
                    device=None, arg_overrides: Optional[Dict[str, Any]] = None, task=None,
                    **kwargs) -> FairseqCheckpoint:
    """Load a fairseq checkpoint (model.pt) and swap in the eet_like decoder.

    fairseq checkpoints are pickles: loading one runs code from the file. Pass
    trust_checkpoint=True only for files you trust; without it this raises ValueError and
    reads nothing. arg_overrides (e.g. {"data": "/path/with/dict.txt"}) and task go to
    fairseq.checkpoint_utils.load_model_ensemble_and_task. Returns FairseqCheckpoint(model,
    cfg, task) with the model in eval mode."""
    if trust_checkpoint is not True:
        raise ValueError("fairseq checkpoints are Python pickles and loading one can run arbitrary code; "
                         "pass trust_checkpoint=True if you trust the file "
                         f"({os.fspath(path)!r}); nothing was read")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no fairseq checkpoint file at {path!r}")
    from fairseq import checkpoint_utils

    key = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
    old = os.environ.get(key)
    os.environ[key] = "1"  # fairseq pickles its config objects; torch >= 2.6 refuses them otherwise
    try:
        with warnings.catch_warnings():
            # the caller chose trust_checkpoint=True; torch's reminder says the same thing again
            warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
            models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
                [path], arg_overrides=arg_overrides, task=task)
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old
    model = optimize(models[0], dtype=dtype, device=device, **kwargs).eval()
    return FairseqCheckpoint(model, cfg, task)
