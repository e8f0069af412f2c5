"""Plain-torch reference of every eet_like op: the test oracle. Same signatures as
eet_like.ops; computed in the inputs' dtype (upcast the inputs for an fp32 reference)."""
import math

import torch
import torch.nn.functional as F

from ._C import PANEL_WIDTH, int8_activation_max

_ACTS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "identity": lambda x: x,
}


def layernorm(x, weight, bias, eps=1e-5, residual=None, residual_bias=None):
    if residual is None and residual_bias is None:
        return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)
    h = x
    if residual is not None:
        h = h + residual
    if residual_bias is not None:
        h = h + residual_bias
    return F.layer_norm(h, (x.shape[-1],), weight, bias, eps), h


def embedding(input_ids, word_embeddings, position_embeddings, position_ids=None,
              token_type_ids=None, token_type_embeddings=None, ln_weight=None, ln_bias=None,
              eps=1e-12):
    if position_ids is None:
        position_ids = torch.arange(input_ids.shape[-1], device=input_ids.device).expand_as(input_ids)
    out = word_embeddings[input_ids] + position_embeddings[position_ids]
    if token_type_ids is not None:
        out = out + token_type_embeddings[token_type_ids]
    if ln_weight is not None:
        out = F.layer_norm(out, (out.shape[-1],), ln_weight, ln_bias, eps)
    return out


def _ranges(batch, length, key_start, key_end, device):
    start = torch.zeros(batch, dtype=torch.long, device=device) if key_start is None else key_start.long()
    end = torch.full((batch,), length, dtype=torch.long, device=device) if key_end is None else key_end.long()
    return start, end


def _attend(q, k, v, allowed, scale):
    """q [B, H, Sq, D], k/v [B, H, Sk, D], allowed [B, 1|H, Sq, Sk] bool; empty rows -> 0."""
    scores = (q @ k.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return probs @ v


def attention(qkv, num_heads, causal=False, key_start=None, key_end=None, k_cache=None,
              v_cache=None, scale=None):
    b, s, w = qkv.shape
    d = w // 3 // num_heads
    q, k, v = qkv.view(b, s, 3, num_heads, d).permute(2, 0, 3, 1, 4)
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    start, end = _ranges(b, s, key_start, key_end, qkv.device)
    j = torch.arange(s, device=qkv.device)
    allowed = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])  # [B, Sk]
    allowed = allowed[:, None, None, :].expand(b, 1, s, s)
    if causal:
        allowed = allowed & (j[None, :] <= j[:, None])[None, None]
    out = _attend(q, k, v, allowed, scale)
    if k_cache is not None:
        k_cache[:b, :, :s] = k
        v_cache[:b, :, :s] = v
    return out.transpose(1, 2).reshape(b, s, num_heads * d)


def masked_attention(qkv, k_cache, v_cache, positions, num_heads, key_start=None, scale=None):
    b, w = qkv.shape
    d = w // 3 // num_heads
    q, k, v = qkv.view(b, 3, num_heads, d).unbind(1)
    rows = torch.arange(b, device=qkv.device)
    pos = positions.long()
    k_cache[rows, :, pos] = k
    v_cache[rows, :, pos] = v
    smax = k_cache.shape[2]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    start, _ = _ranges(b, smax, key_start, None, qkv.device)
    j = torch.arange(smax, device=qkv.device)
    allowed = (j[None, :] >= start[:, None]) & (j[None, :] <= pos[:, None])
    out = _attend(q[:, :, None], k_cache[:b], v_cache[:b], allowed[:, None, None, :], scale)
    return out.reshape(b, num_heads * d)


def cross_attention(q, k, v, num_heads, key_start=None, key_end=None, scale=None):
    b, sq, w = q.shape
    sk = k.shape[1]
    d = w // num_heads
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    qh = q.view(b, sq, num_heads, d).transpose(1, 2)
    kh = k.reshape(b, sk, num_heads, d).transpose(1, 2)
    vh = v.reshape(b, sk, num_heads, d).transpose(1, 2)
    start, end = _ranges(b, sk, key_start, key_end, q.device)
    j = torch.arange(sk, device=q.device)
    allowed = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    out = _attend(qh, kh, vh, allowed[:, None, None, :], scale)
    return out.transpose(1, 2).reshape(b, sq, w)


def linear(x, weight, bias=None, activation="identity"):
    return _ACTS[activation](F.linear(x, weight, bias))


def pack_linear(weight):
    n, k = weight.shape
    p = PANEL_WIDTH
    padded = torch.zeros(((n + p - 1) // p) * p, k, dtype=weight.dtype, device=weight.device)
    padded[:n] = weight
    return padded.view(-1, p, k).transpose(1, 2).contiguous()


def linear_packed(x, packed, out_features, bias=None, activation="identity"):
    weight = packed.transpose(1, 2).reshape(-1, packed.shape[1])[:out_features]
    return linear(x, weight, bias, activation)


def quantize_int8(weight, qmax=127):
    w = weight.float()
    scales = w.abs().amax(1) / float(qmax)
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    return torch.round(w / safe[:, None]).clamp(-qmax, qmax).to(torch.int8), scales


def pack_int8(qweight):
    """ops.pack_int8's panels of an int8 [N, K] weight: [ceil(N/16), ceil(K/4) + 1, 16, 4], panel
    p holding out[p, c, j, e] = q[16p + j, 4c + e] (zero padded), then its 16 int32 column sums
    (little-endian bytes) as the last quad row."""
    n, k = qweight.shape
    panels, quads = (n + 15) // 16, (k + 3) // 4
    padded = torch.zeros(panels * 16, quads * 4, dtype=torch.int8)
    padded[:n, :k] = qweight
    body = padded.view(panels, 16, quads, 4).permute(0, 2, 1, 3)
    colsum = padded.sum(1, dtype=torch.int32)
    sums = colsum.view(torch.int8).view(panels, 1, 16, 4)
    return torch.cat([body, sums], 1).contiguous()


def unpack_int8(packed, n):
    """The int8 [n, K4 * 4] weight (K padded to quads) of pack_int8's panels (n = scales.size(0))."""
    panels, quads = packed.shape[0], packed.shape[1] - 1
    return packed[:, :quads].permute(0, 2, 1, 3).reshape(panels * 16, quads * 4)[:n]


def linear_int8(x, qweight, scales, bias=None, activation="identity", activation_max=None):
    """The same quantization as the op, exactly: each row of x quantized like a weight row but
    to [-activation_max, activation_max] (None: the op's range, ops.int8_activation_max() for an
    [N, K] qweight: 127 with VNNI, 63 on AVX2-only CPUs; always 63 for pack_int8 panels), the
    int8 products summed exactly (in float64: |sum| < 2^53), then act(acc * (sx * scales) +
    bias) in float32."""
    k = x.shape[-1]
    if qweight.dim() == 4:
        qweight = unpack_int8(qweight, scales.shape[0])[:, :k]
        if activation_max is None:
            activation_max = 63
    if activation_max is None:
        activation_max = int8_activation_max()
    xq, sx = quantize_int8(x.reshape(-1, k), activation_max)
    acc = (xq.double() @ qweight.double().T).float()
    y = acc * (sx[:, None] * scales[None, :])
    if bias is not None:
        y = y + bias
    return _ACTS[activation](y).view(*x.shape[:-1], qweight.shape[0])


def linear_int8_weight_only(x, qweight, scales, bias=None, activation="identity"):
    """The CUDA linear_int8 (W8A16): x is not quantized; act(x @ (q * scales).T + bias) in
    float32 (x and bias converted from their dtype), returned in x's dtype."""
    k = x.shape[-1]
    w = qweight.float() * scales.float()[:, None]
    y = x.reshape(-1, k).float() @ w.T
    if bias is not None:
        y = y + bias.float()
    return _ACTS[activation](y).view(*x.shape[:-1], qweight.shape[0]).to(x.dtype)


def ffn(x, w1, b1, w2, b2, activation="gelu", residual=None):
    h = _ACTS[activation](F.linear(x, w1, b1))
    out = F.linear(h, w2, b2)
    return out if residual is None else out + residual



def decode_layers(x, weights, k_cache, v_cache, positions, num_heads, scales, eps, activation,
                  key_start=None, max_keys=None):
    """The pre-norm block stack of one decode step from the reference ops (16 weights per layer,
    then the final layernorm; see eet_like.ops.decode_layers)."""
    del max_keys  # a launch-size hint of the op; never changes the result

    def lin(t, w, s, n, b, act="identity"):
        if w.dtype == torch.int8:
            return linear_int8(t, w, s, b, act)
        return linear_packed(t, w, n, b, act)

    layers, hidden = len(k_cache), x.shape[-1]
    h = x
    y = layernorm(x, weights[0], weights[1], eps)
    for i in range(layers):
        (_, _, qw, qs, qb, ow, os_, ob, l2w, l2b, f1w, f1s, f1b, f2w, f2s, f2b) = weights[16 * i:16 * i + 16]
        qkv = lin(y, qw, qs, 3 * k_cache[i].shape[1] * k_cache[i].shape[3], qb)
        ctx = masked_attention(qkv, k_cache[i], v_cache[i], positions, num_heads, key_start, scales[i])
        y, h = layernorm(lin(ctx, ow, os_, hidden, None), l2w, l2b, eps, residual=h, residual_bias=ob)
        f = lin(lin(y, f1w, f1s, f2w.shape[1], f1b, activation), f2w, f2s, hidden, None)
        nxt = 16 * (i + 1) if i + 1 < layers else len(weights) - 2
        y, h = layernorm(f, weights[nxt], weights[nxt + 1], eps, residual=h, residual_bias=f2b)
    return y
