"""generate() options: transformers' names, defaults and precedence, checked up front.

Precedence (as transformers): generate(**kwargs) > generate(generation_config=...) > the
checkpoint's generation config > transformers' global defaults. Every option is either
honoured or rejected with a ValueError naming it; nothing is silently ignored.
"""
from dataclasses import dataclass
from typing import Optional, Tuple, Union

# transformers.GenerationConfig._get_default_generation_params() for the options we run.
DEFAULTS = {
    "max_length": 20, "min_length": 0, "do_sample": False, "early_stopping": False, "num_beams": 1,
    "temperature": 1.0, "top_k": 50, "top_p": 1.0, "repetition_penalty": 1.0, "length_penalty": 1.0,
    "no_repeat_ngram_size": 0, "num_return_sequences": 1, "output_scores": False, "output_logits": False,
    "return_dict_in_generate": False,
}
SUPPORTED = set(DEFAULTS) | {"max_new_tokens", "min_new_tokens", "eos_token_id", "pad_token_id", "bos_token_id",
                             "use_cache", "output_attentions", "output_hidden_states"}

# Options we do not implement, with the value that means "off". A checkpoint or GenerationConfig
# may carry them at that value; any other value raises.
_NEUTRAL = {
    "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "min_p": None, "top_h": None,
    "encoder_repetition_penalty": 1.0, "encoder_no_repeat_ngram_size": 0, "bad_words_ids": None,
    "force_words_ids": None, "constraints": None, "renormalize_logits": False, "forced_bos_token_id": None,
    "forced_eos_token_id": None, "remove_invalid_values": False, "exponential_decay_length_penalty": None,
    "suppress_tokens": None, "begin_suppress_tokens": None, "sequence_bias": None, "guidance_scale": None,
    "watermarking_config": None, "num_beam_groups": 1, "diversity_penalty": 0.0, "penalty_alpha": None,
    "max_time": None, "stop_strings": None, "token_healing": False, "low_memory": None, "dola_layers": None,
    "prompt_lookup_num_tokens": None, "use_mtp": None, "cache_implementation": None, "is_assistant": False,
}
# Bookkeeping / assistant / compile fields of a GenerationConfig that do not change the tokens.
_METADATA = {
    "transformers_version", "_from_model_config", "_commit_hash", "decoder_start_token_id", "cache_config",
    "max_cache_len", "compile_config", "disable_compile", "prefill_chunk_size", "continuous_batching_config",
    "num_assistant_tokens", "num_assistant_tokens_schedule", "assistant_confidence_threshold",
    "max_matching_ngram_size", "assistant_early_exit", "assistant_lookbehind", "target_lookbehind",
    "assistant_ensemble_weight", "speculation_type", "generation_kwargs",
}


@dataclass(frozen=True)
class GenerationOptions:
    max_length: int                 # total length, prompt included
    min_length: int                 # eos is suppressed while the sequence is shorter
    do_sample: bool
    temperature: float
    top_k: int
    top_p: float
    repetition_penalty: float
    no_repeat_ngram_size: int
    num_beams: int
    length_penalty: float
    early_stopping: Union[bool, str]
    num_return_sequences: int
    eos_token_id: Optional[Tuple[int, ...]]
    pad_token_id: Optional[int]
    bos_token_id: Optional[int]
    return_dict_in_generate: bool
    output_scores: bool
    output_logits: bool

    @property
    def expand(self) -> int:
        """Rows per prompt: beams, or independent samples."""
        return max(self.num_beams, self.num_return_sequences)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def config_to_dict(generation_config) -> dict:
    """A transformers GenerationConfig (or a dict) -> its set (non-None) fields."""
    if generation_config is None:
        return {}
    if isinstance(generation_config, dict):
        d = dict(generation_config)
    elif hasattr(generation_config, "to_dict"):
        d = generation_config.to_dict()
    else:
        raise TypeError("generation_config must be a transformers GenerationConfig or a dict, got "
                        f"{type(generation_config).__name__}")
    return {k: v for k, v in d.items() if v is not None}


def _check_unsupported(d: dict, where: str, strict_unknown: bool) -> dict:
    out = {}
    for k, v in d.items():
        if k in SUPPORTED:
            out[k] = v
        elif k in _METADATA:
            continue
        elif k in _NEUTRAL:
            if v is not None and v != _NEUTRAL[k]:
                raise ValueError(f"{where}: generation option {k}={v!r} is not supported by eet_like")
        elif strict_unknown:
            raise ValueError(f"{where}: unknown or unsupported generate argument '{k}'")
    return out


def _token_list(v, name):
    if v is None:
        return None
    if _is_int(v):
        v = [v]
    if not isinstance(v, (list, tuple)) or not v or not all(_is_int(t) and t >= 0 for t in v):
        raise ValueError(f"{name} must be a non-negative int or a list of them, got {v!r}")
    return tuple(v)


def resolve(model_defaults: dict, generation_config, kwargs: dict, prompt_len: int,
            n_positions: int) -> GenerationOptions:
    """Merge the option layers, check every value, and turn the length options into the final
    max_length/min_length the way transformers does."""
    base = _check_unsupported(model_defaults, "the checkpoint's generation config", strict_unknown=False)
    given = _check_unsupported(config_to_dict(generation_config), "generation_config", strict_unknown=False)
    user = _check_unsupported(kwargs, "generate()", strict_unknown=True)
    merged = {**DEFAULTS, **base, **given, **{k: v for k, v in user.items() if v is not None}}
    explicit = {**given, **{k: v for k, v in user.items() if v is not None}}

    for k in ("output_attentions", "output_hidden_states"):
        if merged.get(k):
            raise ValueError(f"{k}=True is not supported by eet_like's generate")
    if merged.get("use_cache", True) not in (True, False):
        raise ValueError(f"use_cache must be a bool, got {merged['use_cache']!r}")

    for k in ("do_sample", "output_scores", "output_logits", "return_dict_in_generate"):
        if not isinstance(merged[k], bool):
            raise ValueError(f"{k} must be a bool, got {merged[k]!r}")
    for k, lo in (("num_beams", 1), ("num_return_sequences", 1), ("min_length", 0), ("top_k", 0),
                  ("no_repeat_ngram_size", 0)):
        if not _is_int(merged[k]) or merged[k] < lo:
            raise ValueError(f"{k} must be an int >= {lo}, got {merged[k]!r}")
    t = merged["temperature"]
    if not _is_num(t) or not t > 0:
        raise ValueError(f"temperature must be a float > 0, got {t!r} (for greedy decoding use do_sample=False)")
    p = merged["top_p"]
    if not _is_num(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"top_p must be a float in [0, 1], got {p!r}")
    rp = merged["repetition_penalty"]
    if not _is_num(rp) or not rp > 0:
        raise ValueError(f"repetition_penalty must be a float > 0, got {rp!r}")
    if not _is_num(merged["length_penalty"]):
        raise ValueError(f"length_penalty must be a float, got {merged['length_penalty']!r}")
    if merged["early_stopping"] not in (True, False, "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got {merged['early_stopping']!r}")
    nrs, nb = merged["num_return_sequences"], merged["num_beams"]
    if nrs > 1 and nb == 1 and not merged["do_sample"]:
        raise ValueError(f"num_return_sequences={nrs} needs do_sample=True or num_beams >= {nrs} "
                         "(greedy decoding returns one sequence per prompt)")
    if nb > 1 and nrs > nb:
        raise ValueError(f"num_return_sequences ({nrs}) must be <= num_beams ({nb})")

    eos = _token_list(merged.get("eos_token_id"), "eos_token_id")
    pad = merged.get("pad_token_id")
    if pad is not None and (not _is_int(pad) or pad < 0):
        raise ValueError(f"pad_token_id must be a non-negative int, got {pad!r}")
    if pad is None and eos is not None:
        pad = eos[0]  # transformers' fallback
    bos = merged.get("bos_token_id")
    if bos is not None and (not _is_int(bos) or bos < 0):
        raise ValueError(f"bos_token_id must be a non-negative int, got {bos!r}")

    # Lengths, as transformers' _prepare_generated_length.
    if "max_new_tokens" in merged:
        mnt = merged["max_new_tokens"]
        if not _is_int(mnt) or mnt <= 0:
            raise ValueError(f"max_new_tokens must be an int > 0, got {mnt!r}")
        max_length = prompt_len + mnt
    else:
        max_length = merged["max_length"]
        if not _is_int(max_length) or max_length <= 0:
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        if "max_length" not in base and "max_length" not in explicit:
            max_length = min(max_length + prompt_len, n_positions)  # "20 new tokens" default
    if prompt_len >= max_length:
        raise ValueError(f"max_length ({max_length}) must be larger than the prompt length ({prompt_len}); "
                         "set max_new_tokens instead")
    min_length = merged["min_length"]
    if "min_new_tokens" in merged:
        mn = merged["min_new_tokens"]
        if not _is_int(mn) or mn < 0:
            raise ValueError(f"min_new_tokens must be an int >= 0, got {mn!r}")
        min_length = prompt_len + mn

    return GenerationOptions(
        max_length=max_length, min_length=min_length, do_sample=merged["do_sample"],
        temperature=float(t), top_k=merged["top_k"], top_p=float(p), repetition_penalty=float(rp),
        no_repeat_ngram_size=merged["no_repeat_ngram_size"], num_beams=nb,
        length_penalty=float(merged["length_penalty"]), early_stopping=merged["early_stopping"],
        num_return_sequences=nrs, eos_token_id=eos, pad_token_id=pad, bos_token_id=bos,
        return_dict_in_generate=merged["return_dict_in_generate"], output_scores=merged["output_scores"],
        output_logits=merged["output_logits"])
