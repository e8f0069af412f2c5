"""Op-level API: typed wrappers of the fused kernels registered as torch.ops.eet_like.*.

Every op takes and returns torch tensors on CPU (float32) or CUDA (float32, float16,
bfloat16). The wrappers check the cheap things here (types, ranks) and the compiled ops
check everything again; bad input raises ValueError/TypeError naming the argument.

KV cache layout (per layer): k_cache, v_cache = [Bmax, H, Smax, D]. Joint decoding of a
left-padded batch keeps every row at the same cache position: the prompt pass writes
positions [0, S), decode step t writes position S + t, and each row masks its own left
padding with key_start[b] = number of pad tokens.
"""
from typing import List, Optional, Tuple

import torch

from . import _C

_ops = torch.ops.eet_like

# The activation names every op accepts, from the one C++ table (csrc/include/eet/activations.h).
ACTIVATIONS = tuple(_C.activations())
# Output columns per panel of pack_linear weights: [ceil(N / PANEL_WIDTH), K, PANEL_WIDTH].
PANEL_WIDTH = int(_C.PANEL_WIDTH)


def _tensor(t, name):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def _rank(t, name, rank, spec):
    _tensor(t, name)
    if t.dim() != rank:
        raise ValueError(f"{name} must be {spec}, got {list(t.shape)}")
    return t


def _optional_index(t, name):
    if t is None:
        return None
    _tensor(t, name)
    if t.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{name} must be int32 or int64, got {t.dtype}")
    return t


def mask_to_ranges(attention_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """[B, S] 0/1 mask with the ones contiguous in each row (left or right padding) ->
    (key_start, key_end) int32 [B]. A mask with holes raises ValueError (host sync)."""
    _rank(attention_mask, "attention_mask", 2, "[B, S]")
    m = attention_mask != 0
    s = m.shape[1]
    count = m.sum(dim=1)
    start = torch.where(count > 0, m.to(torch.int8).argmax(dim=1), torch.zeros_like(count))
    end = start + count
    j = torch.arange(s, device=m.device)
    expected = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    if not torch.equal(expected, m):
        raise ValueError("attention_mask must mark one contiguous run of tokens per row "
                         "(left or right padding); masks with holes are not supported")
    return start.to(torch.int32), end.to(torch.int32)


def layernorm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5,
              residual: Optional[torch.Tensor] = None, residual_bias: Optional[torch.Tensor] = None):
    """LayerNorm over the last dim of x [..., H] with weight/bias [H].

    With `residual` ([..., H], same shape) the add is fused: h = x + residual (+ residual_bias
    [H]); returns (layernorm(h), h) — the normalized output and the new residual stream.
    Without it returns layernorm(x)."""
    _tensor(x, "x")
    if residual is None:
        if residual_bias is not None:
            raise ValueError("residual_bias needs residual")
        return _ops.layernorm(x, weight, bias, float(eps))
    return _ops.add_layernorm(x, _tensor(residual, "residual"), residual_bias, weight, bias, float(eps))


def embedding(input_ids: torch.Tensor, word_embeddings: torch.Tensor, position_embeddings: torch.Tensor,
              position_ids: Optional[torch.Tensor] = None, token_type_ids: Optional[torch.Tensor] = None,
              token_type_embeddings: Optional[torch.Tensor] = None, ln_weight: Optional[torch.Tensor] = None,
              ln_bias: Optional[torch.Tensor] = None, eps: float = 1e-12, check: bool = True) -> torch.Tensor:
    """word_embeddings[input_ids] + position_embeddings[position_ids] (+ token types), then an
    optional layernorm (ln_weight/ln_bias, BERT). input_ids/position_ids: [B, S] int64/int32;
    position_ids default to 0..S-1 per row (pass them explicitly for left padding).
    Returns [B, S, H]. Out-of-range ids raise ValueError. On CUDA that check is a host sync;
    check=False skips it for ids the caller knows are in range (the kernel still clamps them
    for memory safety, so a bad id then gives a wrong row, never a bad access)."""
    _tensor(input_ids, "input_ids")
    _optional_index(input_ids, "input_ids")
    if position_ids is None:
        position_ids = torch.arange(input_ids.shape[-1], device=input_ids.device).expand_as(input_ids)
    return _ops.embedding(input_ids, _tensor(position_ids, "position_ids"), word_embeddings,
                          position_embeddings, _optional_index(token_type_ids, "token_type_ids"),
                          token_type_embeddings, ln_weight, ln_bias, float(eps), bool(check))


def ffn(x: torch.Tensor, w1: torch.Tensor, b1: Optional[torch.Tensor], w2: torch.Tensor,
        b2: Optional[torch.Tensor], activation: str = "gelu",
        residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """act(x @ w1.T + b1) @ w2.T + b2 (+ residual). x [..., H], w1 [I, H], b1 [I], w2 [H, I],
    b2 [H] (nn.Linear layout). activation: gelu (erf), gelu_new (tanh; also gelu_fast,
    gelu_pytorch_tanh), relu, identity. Bias + activation are fused into the GEMM: on CPU as
    oneDNN post-ops (see cpu_gemm()), on CUDA as the eet_like bias_act epilogue after cuBLAS."""
    _check_activation(activation)
    return _ops.ffn(_tensor(x, "x"), w1, b1, w2, b2, activation, residual)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           activation: str = "identity") -> torch.Tensor:
    """act(x @ weight.T + bias): x [..., K] contiguous, weight [M, K] (nn.Linear layout), bias
    [M]. The projections of the models (fused QKV, attention output, LM head) go through it,
    so they share the GEMM backend of ffn."""
    _check_activation(activation)
    return _ops.linear(_tensor(x, "x"), weight, bias, activation)


def pack_linear(weight: torch.Tensor) -> torch.Tensor:
    """Packs a CPU float32 [N, K] nn.Linear weight for linear_packed: [ceil(N/16), K, 16],
    16-column panels, zero padded. Pack once at load time; the weights of a decode step are
    then streamed contiguously with no per-call repacking."""
    return _ops.pack_linear(_tensor(weight, "weight"))


def linear_packed(x: torch.Tensor, packed: torch.Tensor, out_features: int,
                  bias: Optional[torch.Tensor] = None, activation: str = "identity") -> torch.Tensor:
    """act(x @ W.T + bias) on CPU with W given as pack_linear(W) (W is [out_features, K]): the
    eet_like register-blocked GEMM, bias and activation applied before the store. Fastest for
    the few-row GEMMs of decoding (1.2-1.5x oneDNN at 1-8 rows on the development CPU)."""
    _check_activation(activation)
    if not isinstance(out_features, int):
        raise TypeError(f"out_features must be an int, got {type(out_features).__name__}")
    return _ops.linear_packed(_tensor(x, "x"), _tensor(packed, "packed"), out_features, bias, activation)


def quantize_int8(weight: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 of an [N, K] nn.Linear weight (CPU float32, or CUDA float32/16/bf16), one
    scale per output row: scales [N] = max|w[n, :]| / 127 (float32, whatever the weight's dtype),
    q [N, K] = round(w / scale) (half to even) clamped to [-127, 127] (int8); an all-zero row
    gets scale 0. W ~ q * scales[:, None]. Computed in float32 on both devices: the CUDA kernel
    gives the CPU op's bits for float32 weights. linear_int8 on CPU quantizes each row of its
    input the same way, to [-int8_activation_max(), int8_activation_max()].

    A NaN or infinite weight has no int8 value (its row's scale would be NaN or inf): it raises
    ValueError naming the first one (on CUDA this check is a host sync; quantization runs once,
    at load time)."""
    _tensor(weight, "weight")
    if weight.is_floating_point():
        bad = ~torch.isfinite(weight)
        if bool(bad.any()):
            where = [int(i) for i in bad.nonzero()[0]]
            raise ValueError(f"weight must be finite to quantize: weight{where} is "
                             f"{float(weight[tuple(where)])} (a NaN or inf has no int8 value)")
    return _ops.quantize_int8(weight)


def pack_int8(qweight: torch.Tensor) -> torch.Tensor:
    """Packs a CPU int8 [N, K] weight (quantize_int8's q) for linear_int8's AVX2 panel GEMM:
    int8 [ceil(N/16), ceil(K/4) + 1, 16, 4], per panel of 16 weight rows the K/4 quads of 16 x 4
    weights (zero padded), then the panel's 16 int32 column sums (sum_k q[n, k], which the GEMM's
    +64 activation offset needs). Pass it to linear_int8 in place of qweight: the weight is then
    read as the kernel wants it, with no per-call repacking (~9% of a 128-row GEMM on the
    development CPU), for every row count. The bytes of q plus 4 per output column; q itself
    is not needed after packing. CPU only (CUDA's linear_int8 reads [N, K])."""
    return _ops.pack_int8(_tensor(qweight, "qweight"))


def linear_int8(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                bias: Optional[torch.Tensor] = None, activation: str = "identity") -> torch.Tensor:
    """act(x @ W.T + bias) with int8 weights: x [..., K] contiguous, (qweight int8 [N, K],
    scales [N] float32) = quantize_int8(W), bias [N] of x's dtype. Returns [..., N] in x's dtype.

    CPU (x float32): int8 weights and int8 activations (W8A8). Each row of x gets its own scale,
    sx = max|x_row| / A, xq = round(x / sx) clamped to [-A, A] with A = int8_activation_max()
    (127 with AVX-512 VNNI; 63, 7-bit activations, on AVX2-only CPUs); the products are summed
    exactly in int32, and y = act(acc * (sx * scales) + bias) in float32
    (reference.linear_int8). The int32 sum is exact whatever kernel computes it (AVX-512 VNNI or
    AVX2 for few rows, Intel AMX for 4-128 rows where the CPU has it (int8_gemm_amx()), oneDNN's
    at::_int_mm for many with VNNI, the AVX2 panel GEMM for many without), so a row's result
    never depends on the other rows. qweight may also be pack_int8(q) (CPU): then every row
    count runs the AVX2 panel GEMM on the prepacked weight, with 7-bit activations (A = 63) on
    any CPU: the bits of the [N, K] weight on an AVX2-only CPU.

    CUDA (x float32, float16 or bfloat16; scales float32 whatever x's dtype): weight-only
    (W8A16), x is not quantized: y = act(scales * (x @ q.T) + bias) with float32 accumulation
    (reference.linear_int8_weight_only). Up to 16 rows (decode steps) a GEMV kernel reads the
    int8 weight and dequantizes it in registers; more rows dequantize the weight into a
    temporary [N, K] buffer of x's dtype and run cuBLAS. No host syncs (CUDA-graph safe). The
    CUDA emulation build runs this path for CPU tensors."""
    _tensor(x, "x")
    _tensor(qweight, "qweight")
    _tensor(scales, "scales")
    if qweight.dtype != torch.int8:
        raise TypeError(f"qweight must be int8 (from quantize_int8), got {qweight.dtype}")
    if qweight.dim() != 4:
        _rank(qweight, "qweight", 2, "[N, K] (or pack_int8's [ceil(N/16), ceil(K/4) + 1, 16, 4])")
    _check_activation(activation)
    return _ops.linear_int8(x, qweight, scales, bias, activation)


def int8_gemm_amx() -> bool:
    """Whether linear_int8 on CPU runs its Intel AMX kernel for 4 to 128 rows (with K a multiple
    of 64): the CPU has AMX-INT8, Linux granted the tile registers, and EET_LIKE_NO_AMX is not
    set (any value turns it off). Same integers as the other kernels, so the same results."""
    return _C.int8_gemm_amx()


def int8_gemm_isa() -> str:
    """The instruction set of linear_int8's own CPU kernels on this CPU: 'avx512_vnni' (few
    rows; many rows go to oneDNN or the AMX kernel) or 'avx2' (every row count: a dot-product
    kernel for decode steps, a panel GEMM from 16 rows). EET_LIKE_NO_AVX512 in the environment
    (any value) before the first call forces 'avx2'. Every kernel gives the same integers for
    the same quantized activations (int8_activation_max() says their range)."""
    return _C.int8_gemm_isa()


def int8_activation_max() -> int:
    """The range [-A, A] linear_int8 quantizes activations (one scale per row) to on this CPU:
    127 where the CPU has AVX-512 VNNI (vpdpbusd sums int8 products exactly), 63 on AVX2-only
    CPUs. There the many-row GEMM multiplies with vpmaddubsw, which sums two unsigned x signed
    byte products into a saturating int16: with 7-bit activations (offset to [1, 127]) no pair
    can saturate, so the int32 sums stay exact, and the GEMM needs 3 instructions per 32
    products instead of 4 (the same trade as PyTorch's reduce_range for fbgemm). Follows
    int8_gemm_isa(): EET_LIKE_NO_AVX512 gives 63."""
    return _C.int8_activation_max()


def packed_gemm_isa() -> str:
    """The instruction set of linear_packed's kernel on this CPU: 'avx512' (12 rows x 32
    columns per block, chosen where the CPU has AVX-512F) or 'avx2' (6 x 16). Both give the same
    bits; EET_LIKE_NO_AVX512 in the environment (any value, even 0) before the first call
    forces 'avx2'."""
    return _C.packed_gemm_isa()


def cpu_gemm() -> str:
    """The CPU GEMM backend of ffn/linear: 'onednn' (torch's oneDNN linear with fused
    bias/activation; the default where torch has it) or 'eet' (torch.mm + the eet_like
    bias_act epilogue). Set EET_LIKE_CPU_GEMM=eet|onednn to choose; read at each call."""
    return _C.cpu_gemm()


def _check_activation(activation):
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a str, got {type(activation).__name__}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got '{activation}'")


def attention(qkv: torch.Tensor, num_heads: int, causal: bool = False,
              attention_mask: Optional[torch.Tensor] = None, key_start: Optional[torch.Tensor] = None,
              key_end: Optional[torch.Tensor] = None, k_cache: Optional[torch.Tensor] = None,
              v_cache: Optional[torch.Tensor] = None, scale: Optional[float] = None) -> torch.Tensor:
    """Full multi-head self-attention over a prompt (the prefill pass).

    qkv: [B, S, 3*H*D], the fused QKV projection with last dim laid out [3][H][D].
    Padding: either attention_mask [B, S] (0/1, left or right padded) or per-row key ranges
    key_start/key_end [B] (keys key_start <= j < key_end are visible; left padding:
    key_start = pad count; right padding: key_end = length). causal adds j <= i.
    k_cache/v_cache [Bmax, H, Smax, D]: when given, K/V of positions [0, S) are written there.
    Returns [B, S, H*D] (heads merged); queries with no visible key give zeros."""
    _rank(qkv, "qkv", 3, "[B, S, 3*H*D]")
    if attention_mask is not None:
        if key_start is not None or key_end is not None:
            raise ValueError("pass either attention_mask or key_start/key_end, not both")
        key_start, key_end = mask_to_ranges(attention_mask)
    return _ops.attention(qkv, int(num_heads), bool(causal), _optional_index(key_start, "key_start"),
                          _optional_index(key_end, "key_end"), k_cache, v_cache, scale)


def masked_attention(qkv: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                     positions: torch.Tensor, num_heads: int, key_start: Optional[torch.Tensor] = None,
                     scale: Optional[float] = None, check: bool = True,
                     max_keys: Optional[int] = None) -> torch.Tensor:
    """One incremental decode step: for each row b, writes the new K/V (from qkv [B, 3*H*D])
    into k_cache/v_cache [Bmax, H, Smax, D] at positions[b], then attends over cache entries
    key_start[b] <= j <= positions[b]. Returns [B, H*D].

    check=True validates positions against the cache size (on CUDA that is a host sync;
    the model decode loops track positions on the host and pass check=False).
    max_keys (>= 1; above Smax means Smax): a host-known bound of the keys a row sees this step (e.g. the
    decode length + 1); the CUDA kernel sizes its launch by it instead of by Smax. It never
    changes the result: a bound below the real count only costs speed."""
    _rank(qkv, "qkv", 2, "[B, 3*H*D]")
    _tensor(positions, "positions")
    _optional_index(positions, "positions")
    if check and isinstance(k_cache, torch.Tensor) and k_cache.dim() == 4 and positions.numel() > 0:
        lo, hi = int(positions.min()), int(positions.max())
        if lo < 0 or hi >= k_cache.shape[2]:
            raise ValueError(f"cache overflow: positions must be in [0, {k_cache.shape[2]}) "
                             f"(k_cache Smax), got values in [{lo}, {hi}]")
    return _ops.masked_attention(qkv, k_cache, v_cache, positions,
                                 _optional_index(key_start, "key_start"), int(num_heads), scale,
                                 None if max_keys is None else int(max_keys))


def cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int,
                    key_padding_mask: Optional[torch.Tensor] = None,
                    key_start: Optional[torch.Tensor] = None, key_end: Optional[torch.Tensor] = None,
                    scale: Optional[float] = None) -> torch.Tensor:
    """Decoder queries q [B, Sq, H*D] against encoder keys/values k, v [B, Sk, H*D] (any
    strides with a contiguous last dim, e.g. halves of a fused KV projection).
    key_padding_mask [B, Sk] (True/1 = pad, fairseq's convention) or key_start/key_end [B]
    select each row's encoder positions. Returns [B, Sq, H*D]."""
    _rank(q, "q", 3, "[B, Sq, H*D]")
    if key_padding_mask is not None:
        if key_start is not None or key_end is not None:
            raise ValueError("pass either key_padding_mask or key_start/key_end, not both")
        _rank(key_padding_mask, "key_padding_mask", 2, "[B, Sk]")
        key_start, key_end = mask_to_ranges(key_padding_mask == 0)
    return _ops.cross_attention(q, k, v, int(num_heads), _optional_index(key_start, "key_start"),
                                _optional_index(key_end, "key_end"), scale)


DECODE_LAYER_ENTRIES = ("ln1_w", "ln1_b", "qkv_w", "qkv_s", "qkv_b", "out_w", "out_s", "out_b",
                        "ln2_w", "ln2_b", "fc1_w", "fc1_s", "fc1_b", "fc2_w", "fc2_s", "fc2_b")


def decode_layers(x: torch.Tensor, weights: List[Optional[torch.Tensor]], k_cache: List[torch.Tensor],
                  v_cache: List[torch.Tensor], positions: torch.Tensor, num_heads: int, scales: List[float],
                  eps: float, activation: str, key_start: Optional[torch.Tensor] = None,
                  max_keys: Optional[int] = None) -> torch.Tensor:
    """One CPU decode step through a stack of pre-norm (GPT-2) blocks in one call: x [n, hidden]
    (embedded tokens, float32) -> the final-layernormed hidden [n, hidden]. Layer i writes its new
    K/V into k_cache[i]/v_cache[i] [Bmax, H, Smax, D] at positions[b] and attends over
    [key_start[b], positions[b]] (masked_attention), with attention scale scales[i].

    weights: 16 entries per layer (DECODE_LAYER_ENTRIES), then the final layernorm's weight and
    bias. A linear weight (qkv_w, out_w, fc1_w, fc2_w) is either int8 [N, K] with its scales
    [N] in the next entry (quantize_int8; run by linear_int8) or a float32 pack_linear tensor
    with None there (linear_packed). out_b and fc2_b are added in the following add_layernorm;
    fc1 applies `activation`. The kernels and their order are those of the block loop of
    eet_like.layers (layernorm, linear, masked_attention, add_layernorm), so the output and the
    cache writes are bit-identical to it; one op call saves the Python and dispatcher work
    between them. CPU only."""
    _tensor(x, "x")
    _rank(x, "x", 2, "[n, hidden]")
    _tensor(positions, "positions")
    _optional_index(positions, "positions")
    _check_activation(activation)
    if not isinstance(weights, (list, tuple)):
        raise TypeError(f"weights must be a list of tensors (or None), got {type(weights).__name__}")
    return _ops.decode_layers(x, list(weights), list(k_cache), list(v_cache), positions,
                              _optional_index(key_start, "key_start"), int(num_heads),
                              [float(s) for s in scales], float(eps), activation,
                              None if max_keys is None else int(max_keys))
