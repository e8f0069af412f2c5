"""Fake (meta) kernels of the eet_like ops: output shapes/dtypes only, so the ops trace under
torch.compile, torch.export and torch.library.opcheck without running."""
import torch

from ._C import PANEL_WIDTH as _P


@torch.library.register_fake("eet_like::layernorm")
def _layernorm(x, weight, bias, eps):
    return torch.empty_like(x)


@torch.library.register_fake("eet_like::add_layernorm")
def _add_layernorm(x, residual, residual_bias, weight, bias, eps):
    return torch.empty_like(x), torch.empty_like(x)


@torch.library.register_fake("eet_like::embedding")
def _embedding(input_ids, position_ids, word_embeddings, position_embeddings, token_type_ids,
               token_type_embeddings, ln_weight, ln_bias, eps, check=True):
    return word_embeddings.new_empty((*input_ids.shape, word_embeddings.shape[1]))


@torch.library.register_fake("eet_like::ffn")
def _ffn(x, w1, b1, w2, b2, activation, residual):
    return torch.empty_like(x)


@torch.library.register_fake("eet_like::linear")
def _linear(x, weight, bias, activation):
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


@torch.library.register_fake("eet_like::pack_linear")
def _pack_linear(weight):
    n, k = weight.shape
    return weight.new_empty(((n + _P - 1) // _P, k, _P))


@torch.library.register_fake("eet_like::linear_packed")
def _linear_packed(x, packed, out_features, bias, activation):
    return x.new_empty((*x.shape[:-1], out_features))


@torch.library.register_fake("eet_like::quantize_int8")
def _quantize_int8(weight):
    n, k = weight.shape
    return weight.new_empty((n, k), dtype=torch.int8), weight.new_empty((n,), dtype=torch.float32)


@torch.library.register_fake("eet_like::pack_int8")
def _pack_int8(qweight):
    n, k = qweight.shape
    return qweight.new_empty(((n + 15) // 16, (k + 3) // 4 + 1, 16, 4))


@torch.library.register_fake("eet_like::linear_int8")
def _linear_int8(x, qweight, scales, bias, activation):
    return x.new_empty((*x.shape[:-1], scales.shape[0]))  # N: qweight may be pack_int8 panels


@torch.library.register_fake("eet_like::attention")
def _attention(qkv, num_heads, causal, key_start, key_end, k_cache, v_cache, scale):
    b, s, w = qkv.shape
    return qkv.new_empty((b, s, w // 3))


@torch.library.register_fake("eet_like::masked_attention")
def _masked_attention(qkv, k_cache, v_cache, positions, key_start, num_heads, scale, max_keys=None):
    b, w = qkv.shape
    return qkv.new_empty((b, w // 3))


@torch.library.register_fake("eet_like::cross_attention")
def _cross_attention(q, k, v, num_heads, key_start, key_end, scale):
    return torch.empty_like(q)


@torch.library.register_fake("eet_like::decode_layers")
def _decode_layers(x, weights, k_cache, v_cache, positions, key_start, num_heads, scales, eps, activation,
                   max_keys=None):
    return torch.empty_like(x)
