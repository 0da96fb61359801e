"""torch.nn.MultiheadAttention, on the ops torch's own Python path uses
(`F.multi_head_attention_forward` without the fused fast path): the packed in-projection, the
per-head batched products, softmax, dropout and the out-projection, so values and gradients are
torch's. Not supported: add_bias_kv, add_zero_attn, separate kdim/vdim projections."""

from __future__ import annotations

import math
from typing import Any

from . import nn_functional as F
from . import nn_init as init
from .nn_layers import Linear, _empty, _factory
from .nn_module import Module


class NonDynamicallyQuantizableLinear(Linear):
    """torch's Linear subclass for MultiheadAttention.out_proj (the same layer, its own name)."""


class MultiheadAttention(Module):
    """Multi-head attention (torch's MultiheadAttention): in_proj_weight (3E, E), in_proj_bias,
    out_proj; sequence-first inputs unless batch_first."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: Any = None,
                 vdim: Any = None, batch_first: bool = False, device: Any = None,
                 dtype: Any = None) -> None:
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got "
                             f"embed_dim={embed_dim} and num_heads={num_heads} instead")
        super().__init__()
        dtype = _factory("MultiheadAttention", device, dtype)
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        if add_bias_kv or add_zero_attn or not self._qkv_same_embed_dim:
            raise NotImplementedError("MultiheadAttention: add_bias_kv, add_zero_attn and "
                                      "kdim/vdim other than embed_dim are not supported by "
                                      "gradserve")
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise AssertionError("embed_dim must be divisible by num_heads")
        be = self._be
        self.in_proj_weight = be.parameter(_empty(be, (3 * embed_dim, embed_dim), dtype), True)
        self.register_parameter("q_proj_weight", None)
        self.register_parameter("k_proj_weight", None)
        self.register_parameter("v_proj_weight", None)
        if bias:
            self.in_proj_bias = be.parameter(_empty(be, (3 * embed_dim,), dtype), True)
        else:
            self.register_parameter("in_proj_bias", None)
        linear = be.torch.nn.modules.linear.NonDynamicallyQuantizableLinear
        self.out_proj = linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        be = self._be
        init.xavier_uniform_(be, self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.constant_(be, self.in_proj_bias, 0.0)
            init.constant_(be, self.out_proj.bias, 0.0)

    def forward(self, query: Any, key: Any, value: Any, key_padding_mask: Any = None,
                need_weights: bool = True, attn_mask: Any = None,
                average_attn_weights: bool = True, is_causal: bool = False) -> Any:
        is_batched = query.dim() == 3
        if self.batch_first and is_batched:  # keeping which of them are the same tensor
            if key is value:
                if query is key:
                    query = key = value = query.transpose(1, 0)
                else:
                    query, key = (x.transpose(1, 0) for x in (query, key))
                    value = key
            else:
                query, key, value = (x.transpose(1, 0) for x in (query, key, value))
        out, weights = _attention(self, query, key, value, key_padding_mask, need_weights,
                                  attn_mask, average_attn_weights, is_causal, is_batched)
        if self.batch_first and is_batched:
            return out.transpose(1, 0), weights
        return out, weights


def _in_projection_packed(be: Any, q: Any, k: Any, v: Any, w: Any, b: Any) -> list[Any]:
    e = q.size(-1)
    if k is v:
        if q is k:
            proj = F.linear(be, q, w, b)
            proj = proj.reshape(*proj.shape[:-1], 3, e)
            proj = proj.permute(proj.dim() - 2, *range(proj.dim() - 2), proj.dim() - 1)
            proj = proj.contiguous()
            return [proj[0], proj[1], proj[2]]
        w_q, w_kv = w.split([e, e * 2])
        b_q, b_kv = (None, None) if b is None else b.split([e, e * 2])
        kv = F.linear(be, k, w_kv, b_kv)
        kv = kv.reshape(*kv.shape[:-1], 2, e)
        kv = kv.permute(kv.dim() - 2, *range(kv.dim() - 2), kv.dim() - 1).contiguous()
        return [F.linear(be, q, w_q, b_q), kv[0], kv[1]]
    w_q, w_k, w_v = w.chunk(3)
    b_q, b_k, b_v = (None, None, None) if b is None else b.chunk(3)
    return [F.linear(be, q, w_q, b_q), F.linear(be, k, w_k, b_k), F.linear(be, v, w_v, b_v)]


def _float_mask(be: Any, mask: Any, dtype: Any) -> Any:
    """A bool mask as torch's canonical float mask (-inf where True), a float one as it is."""
    if mask is None or mask.is_floating_point():
        return mask
    zeros = be.torch.zeros(tuple(mask.shape), dtype=dtype)
    return zeros.masked_fill(mask, float("-inf"))


def _attention(m: MultiheadAttention, query: Any, key: Any, value: Any, key_padding_mask: Any,
               need_weights: bool, attn_mask: Any, average_attn_weights: bool,
               is_causal: bool, is_batched: bool) -> tuple[Any, Any]:
    be = m._be
    torch = be.torch
    if not is_batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    tgt_len, bsz, embed_dim = query.shape
    src_len = key.shape[0]
    if embed_dim != m.embed_dim:
        raise AssertionError(f"was expecting embedding dimension of {m.embed_dim}, but got "
                             f"{embed_dim}")
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the "
                           "Transformer module method `generate_square_subsequent_mask` to "
                           "create this mask.")
    key_padding_mask = _float_mask(be, key_padding_mask, query.dtype)
    attn_mask = _float_mask(be, attn_mask, query.dtype)
    heads, head_dim = m.num_heads, m.head_dim
    q, k, v = _in_projection_packed(be, query, key, value, m.in_proj_weight, m.in_proj_bias)
    if attn_mask is not None and attn_mask.dim() == 2:
        if tuple(attn_mask.shape) != (tgt_len, src_len):
            raise RuntimeError(f"The shape of the 2D attn_mask is {tuple(attn_mask.shape)}, but "
                               f"should be {(tgt_len, src_len)}.")
        attn_mask = attn_mask.unsqueeze(0)
    q = q.reshape(tgt_len, bsz * heads, head_dim).transpose(0, 1)
    k = k.reshape(k.shape[0], bsz * heads, head_dim).transpose(0, 1)
    v = v.reshape(v.shape[0], bsz * heads, head_dim).transpose(0, 1)
    if key_padding_mask is not None:
        key_padding_mask = key_padding_mask.reshape(bsz, 1, 1, src_len).expand(
            -1, heads, -1, -1).reshape(bsz * heads, 1, src_len)
        attn_mask = key_padding_mask if attn_mask is None else attn_mask + key_padding_mask
    dropout_p = m.dropout if m.training else 0.0
    q_scaled = q * math.sqrt(1.0 / float(head_dim))
    weights = torch.bmm(q_scaled, k.transpose(-2, -1))
    if attn_mask is not None:
        weights = attn_mask + weights
    weights = F.softmax(be, weights, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(be, weights, p=dropout_p)
    out = torch.bmm(weights, v)
    out = out.transpose(0, 1).contiguous().reshape(tgt_len * bsz, embed_dim)
    out = F.linear(be, out, m.out_proj.weight, m.out_proj.bias)
    out = out.reshape(tgt_len, bsz, out.size(1))
    if not need_weights:
        return (out if is_batched else out.squeeze(1)), None
    weights = weights.reshape(bsz, heads, tgt_len, src_len)
    if average_attn_weights:
        weights = weights.mean(dim=1)
    if not is_batched:
        return out.squeeze(1), weights.squeeze(0)
    return out, weights


def scaled_dot_product_attention(be: Any, query: Any, key: Any, value: Any, attn_mask: Any = None,
                                 dropout_p: float = 0.0, is_causal: bool = False,
                                 scale: float | None = None, enable_gqa: bool = False) -> Any:
    """softmax(query @ key^T * scale + mask) @ value, composed as torch's math path.

    torch's `_scaled_dot_product_attention_math`: query and key each times sqrt(scale) (scale
    1 / sqrt(E) by default), a bool mask (or is_causal's lower triangle) as a float mask of 0
    and -inf added to the scores, softmax over the last dim, dropout, then the product with
    value. For inputs of up to 3 dims this is the path torch's CPU takes (values, gradients and
    grad_fns are torch's); for 4-D float inputs torch takes its flash kernel
    (ScaledDotProductFlashAttentionForCpuBackward0), whose roundings differ in the last bits.

    Args:
        query: (..., L, E).
        key: (..., S, E).
        value: (..., S, Ev).
        attn_mask: a bool mask (True: take part) or a float mask added to the scores,
            broadcastable to (..., L, S).
        dropout_p: the probability of dropping an attention weight.
        is_causal: attend only to positions at or before each query's (no attn_mask then).
        scale: the scores' factor (default 1 / sqrt(E)).
        enable_gqa: not supported (False).

    Returns:
        (..., L, Ev).

    Raises:
        RuntimeError: attn_mask with is_causal; enable_gqa.
    """
    torch = be.torch
    if enable_gqa:
        raise be.runtime_error("scaled_dot_product_attention: enable_gqa=True is not supported "
                               "by gradserve")
    q_shape, k_shape = tuple(be.shape(query)), tuple(be.shape(key))
    length, source, embed = q_shape[-2], k_shape[-2], q_shape[-1]
    factor = math.sqrt(1.0 / math.sqrt(embed) if scale is None else scale)
    if is_causal:
        if attn_mask is not None:
            raise be.runtime_error("_scaled_dot_product_attention: Explicit attn_mask should not "
                                   "be set when is_causal=True")
        attn_mask = torch.ones(length, source, dtype=torch.bool).tril()
    if attn_mask is not None and be.dtype_name(attn_mask) == "bool":
        zeros = torch.zeros(tuple(be.shape(attn_mask)), dtype=be.dtype_of(query))
        attn_mask = zeros.masked_fill(attn_mask.logical_not(), float("-inf"))
    scores = torch.matmul(be.scalar_mul(query, factor),
                          be.scalar_mul(key.transpose(-2, -1), factor))
    if attn_mask is not None:
        scores = scores + attn_mask
    weights = F.softmax(be, scores, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(be, weights, p=dropout_p)
    return torch.matmul(weights, value)


FUNCTIONS = (scaled_dot_product_attention,)
"""nn.functional's attention (bound by `gradserve.surface.nn.build`)."""


MODULES: tuple[type[Module], ...] = (NonDynamicallyQuantizableLinear, MultiheadAttention)
"""The attention classes `gradserve.surface.nn.build` binds to a backend."""
