"""The OpenAI-compatible subset `eet-like serve` speaks: request validation (pure functions
from a parsed JSON body to plain values, or a RequestError naming the field) and the response
objects. Fields OpenAI defines but this server cannot honour are refused unless they hold
their neutral value, never ignored."""
import base64
import math
import time
import uuid
from dataclasses import dataclass
from typing import Callable, List, Optional

from .engine import SamplingParams

DEFAULT_MAX_TOKENS = 16      # OpenAI's default for /v1/completions
MAX_STOP = 16


class RequestError(Exception):
    """A client error: HTTP `status` with OpenAI's error object."""

    def __init__(self, message: str, param: Optional[str] = None, status: int = 400,
                 type: str = "invalid_request_error", code: Optional[str] = None):
        super().__init__(message)
        self.message, self.param, self.status, self.type, self.code = message, param, status, type, code

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str = "invalid_request_error", param=None, code=None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass
class ModelSpec:
    """What validation needs to know about the served model."""
    id: str
    kind: str                          # "completions" (GPT-2) or "embeddings" (BERT)
    encode: Callable[[str], List[int]]  # text -> token ids
    vocab_size: int
    context: int                       # longest sequence (prompt + generated) the server takes
    max_prompts: int                   # most prompts in one request (the queue bound)


@dataclass
class CompletionRequest:
    prompts: List[List[int]]
    params: SamplingParams
    include_usage: bool
    return_token_ids: bool


@dataclass
class EmbeddingRequest:
    texts: List[str]
    base64: bool


# -- field checks --------------------------------------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(body, name, default, lo=None):
    v = body.get(name)
    if v is None:
        return default
    if not _is_int(v):
        raise RequestError(f"'{name}' must be an integer, got {_json_type(v)}", name)
    if lo is not None and v < lo:
        raise RequestError(f"'{name}' must be >= {lo}, got {v}", name)
    return v


def _number(body, name, default, lo, hi, lo_open=False):
    v = body.get(name)
    if v is None:
        return default
    if not (_is_int(v) or isinstance(v, float)) or not math.isfinite(v):
        raise RequestError(f"'{name}' must be a number, got {_json_type(v)}", name)
    if v < lo or (lo_open and v == lo) or v > hi:
        raise RequestError(f"'{name}' must be in {'(' if lo_open else '['}{lo}, {hi}], got {v}", name)
    return float(v)


def _bool(body, name, default=False):
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise RequestError(f"'{name}' must be a boolean, got {_json_type(v)}", name)
    return v


def _json_type(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if _is_int(v):
        return f"the integer {v}"
    if isinstance(v, float):
        return f"the number {v}"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    return "an object"


def _neutral(body, name, ok: Callable[[object], bool], what: str):
    """OpenAI fields this server does not implement: accepted only with their neutral value."""
    if name in body and body[name] is not None and not ok(body[name]):
        raise RequestError(f"'{name}' is not supported by this server ({what})", name)


def _check_fields(body, known, endpoint):
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object, got {_json_type(body)}")
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise RequestError(f"unrecognized request argument for {endpoint}: '{unknown[0]}'", unknown[0])


def _model(body, spec: ModelSpec):
    m = body.get("model")
    if m is None:
        return
    if not isinstance(m, str):
        raise RequestError(f"'model' must be a string, got {_json_type(m)}", "model")
    if m != spec.id:
        raise RequestError(f"the model '{m}' does not exist; this server serves '{spec.id}'", "model",
                           code="model_not_found")


# -- /v1/completions -------------------------------------------------------------------------

_COMPLETION_FIELDS = ("model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stream",
                      "stream_options", "n", "best_of", "echo", "logprobs", "presence_penalty",
                      "frequency_penalty", "logit_bias", "suffix", "user", "return_token_ids")


def _prompts(body, spec: ModelSpec) -> List[List[int]]:
    p = body.get("prompt")
    if p is None:
        raise RequestError("'prompt' is required: a string, a list of strings, a list of token ids or a list of "
                           "lists of token ids", "prompt")
    if isinstance(p, str):
        items = [p]
    elif isinstance(p, list) and p and all(_is_int(t) for t in p):
        items = [p]
    elif isinstance(p, list) and p and (all(isinstance(x, str) for x in p) or
                                        all(isinstance(x, list) and all(_is_int(t) for t in x) for x in p)):
        items = p
    else:
        raise RequestError("'prompt' must be a string, a non-empty list of strings, a list of token ids or a list "
                           "of lists of token ids", "prompt")
    if len(items) > spec.max_prompts:
        raise RequestError(f"'prompt' has {len(items)} prompts; this server queues at most {spec.max_prompts} "
                           "(--max-queue)", "prompt")
    out = []
    for i, item in enumerate(items):
        ids = spec.encode(item) if isinstance(item, str) else item
        where = "'prompt'" if len(items) == 1 else f"prompt {i}"
        if not ids:
            raise RequestError(f"{where} is empty", "prompt")
        bad = [t for t in ids if not 0 <= t < spec.vocab_size]
        if bad:
            raise RequestError(f"{where} has token id {bad[0]}, outside the vocabulary [0, {spec.vocab_size})",
                               "prompt")
        if len(ids) > spec.context:
            raise RequestError(f"{where} has {len(ids)} tokens, more than this server's context of "
                               f"{spec.context} tokens", "prompt", code="context_length_exceeded")
        out.append(list(ids))
    return out


def parse_completion(body, spec: ModelSpec) -> CompletionRequest:
    _check_fields(body, _COMPLETION_FIELDS, "/v1/completions")
    _model(body, spec)
    _neutral(body, "n", lambda v: v == 1 and _is_int(v), "one completion per prompt: n must be 1")
    _neutral(body, "best_of", lambda v: v == 1 and _is_int(v), "best_of must be 1")
    _neutral(body, "echo", lambda v: v is False, "echo must be false")
    _neutral(body, "logprobs", lambda v: False, "logprobs must be null")
    _neutral(body, "presence_penalty", lambda v: v == 0 and not isinstance(v, bool), "it must be 0")
    _neutral(body, "frequency_penalty", lambda v: v == 0 and not isinstance(v, bool), "it must be 0")
    _neutral(body, "logit_bias", lambda v: v == {}, "it must be null or {}")
    _neutral(body, "suffix", lambda v: False, "suffix must be null")
    if "user" in body and body["user"] is not None and not isinstance(body["user"], str):
        raise RequestError(f"'user' must be a string, got {_json_type(body['user'])}", "user")
    prompts = _prompts(body, spec)
    longest = max(len(p) for p in prompts)
    # A sequence of L tokens uses L - 1 cache slots (its last token is never fed back).
    room = spec.context - longest + 1
    max_tokens = _int(body, "max_tokens", None, lo=1)
    if max_tokens is None:
        max_tokens = min(DEFAULT_MAX_TOKENS, room)
    elif max_tokens > room:
        raise RequestError(f"the prompt has {longest} tokens and max_tokens is {max_tokens}: more than this "
                           f"server's context of {spec.context} tokens (at most {room} new tokens fit)",
                           "max_tokens", code="context_length_exceeded")
    temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True)
    top_k = _int(body, "top_k", 0, lo=-1)
    seed = _int(body, "seed", None)
    stop = body.get("stop")
    if stop is None:
        stop = ()
    elif isinstance(stop, str):
        stop = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= MAX_STOP:
        stop = tuple(stop)
    else:
        raise RequestError(f"'stop' must be a string or a list of at most {MAX_STOP} strings", "stop")
    if any(s == "" for s in stop):
        raise RequestError("'stop' strings must not be empty", "stop")
    stream = _bool(body, "stream")
    include_usage = False
    so = body.get("stream_options")
    if so is not None:
        if not stream:
            raise RequestError("'stream_options' is only allowed with stream: true", "stream_options")
        if not isinstance(so, dict) or set(so) - {"include_usage"}:
            raise RequestError("'stream_options' must be an object with at most 'include_usage'", "stream_options")
        include_usage = _bool(so, "include_usage")
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                            top_k=max(top_k, 0), seed=seed, stop=stop, stream=stream)
    return CompletionRequest(prompts, params, include_usage, _bool(body, "return_token_ids"))


def completion_id() -> str:
    return "cmpl-" + uuid.uuid4().hex


def completion_object(rid: str, model: str, choices: list, usage: Optional[dict]) -> dict:
    d = {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model, "choices": choices}
    if usage is not None:
        d["usage"] = usage
    return d


def choice(index: int, text: str, finish_reason: Optional[str], token_ids: Optional[List[int]] = None) -> dict:
    c = {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}
    if token_ids is not None:
        c["token_ids"] = token_ids
    return c


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


# -- /v1/embeddings --------------------------------------------------------------------------

_EMBEDDING_FIELDS = ("model", "input", "encoding_format", "dimensions", "user")


def parse_embedding(body, spec: ModelSpec) -> EmbeddingRequest:
    _check_fields(body, _EMBEDDING_FIELDS, "/v1/embeddings")
    _model(body, spec)
    _neutral(body, "dimensions", lambda v: False, "embeddings have the model's hidden size")
    if "user" in body and body["user"] is not None and not isinstance(body["user"], str):
        raise RequestError(f"'user' must be a string, got {_json_type(body['user'])}", "user")
    x = body.get("input")
    if isinstance(x, str):
        texts = [x]
    elif isinstance(x, list) and x and all(isinstance(t, str) for t in x):
        texts = list(x)
    else:
        raise RequestError("'input' must be a string or a non-empty list of strings", "input")
    if len(texts) > spec.max_prompts:
        raise RequestError(f"'input' has {len(texts)} items; this server queues at most {spec.max_prompts} "
                           "(--max-queue)", "input")
    for i, t in enumerate(texts):
        if not t.strip():
            raise RequestError(f"input {i} is empty", "input")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise RequestError(f"'encoding_format' must be 'float' or 'base64', got {fmt!r}", "encoding_format")
    return EmbeddingRequest(texts, fmt == "base64")


def check_embedding_lengths(lengths: List[int], context: int):
    for i, n in enumerate(lengths):
        if n > context:
            raise RequestError(f"input {i} has {n} tokens, more than this server's limit of {context}", "input",
                               code="context_length_exceeded")


def embedding_object(model: str, vectors, as_base64: bool, prompt_tokens: int) -> dict:
    """vectors: float32 [N, H] tensor."""
    data = []
    for i, v in enumerate(vectors):
        if as_base64:
            emb = base64.b64encode(v.contiguous().numpy().astype("<f4").tobytes()).decode("ascii")
        else:
            emb = v.tolist()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}
