"""torch.nn's Transformer family (`TransformerEncoderLayer`, `TransformerEncoder`,
`TransformerDecoderLayer`, `TransformerDecoder`, `Transformer`), composed as torch's Python
modules compose them (torch/nn/modules/transformer.py) from MultiheadAttention, Linear,
Dropout, LayerNorm and the activation: the same submodules created in the same order (so
`manual_seed` gives torch's weights), the same post-norm / pre-norm (`norm_first`) arithmetic
and the same masks. torch takes a fused fast path only in eval mode without autograd
(`torch._transformer_encoder_layer_fwd`); gradserve always composes, as torch does in training
or with grad. Attention with `need_weights=False` is torch's flash kernel on CPU, whose
roundings the composition follows only to the last bits (see nn_attention).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

from .nn_layers import _factory
from .nn_module import Module

_DEFAULT = "relu"  # torch's default activation is F.relu: each backend's own, looked up late


def _activation(be: Any, activation: Any) -> Any:
    """A string activation as torch's `_get_activation_fn`; a callable as it is."""
    F = be.torch.nn.functional
    if activation == "relu":
        return F.relu
    if activation == "gelu":
        return F.gelu
    if isinstance(activation, str):
        raise RuntimeError(f"activation should be relu/gelu, not {activation}")
    return activation


def _deepcopy(module: Module) -> Any:
    """copy.deepcopy(module) as torch's: its parameters new Parameters holding copies of the
    values, its buffers copies (the tensors are copied here, everything else by deepcopy)."""
    be = module._be
    # the layer itself is shared, as torch's functions are (an activation bound to it)
    memo: dict[int, Any] = {id(be): be, id(be.torch): be.torch}
    for p in module.parameters():
        memo[id(p)] = be.parameter(p.detach().clone(), p.requires_grad)
    for b in module.buffers():
        memo[id(b)] = b.detach().clone()
    return copy.deepcopy(module, memo)


def _clones(module: Module, n: int) -> Any:
    return module._be.torch.nn.ModuleList([_deepcopy(module) for _ in range(n)])


def _square_mask(be: Any, sz: int, device: Any = None,
                                    dtype: Any = None) -> Any:
    """A (sz, sz) float mask: -inf above the diagonal, 0 elsewhere (torch's causal mask)."""
    torch = be.torch
    _factory("Transformer.generate_square_subsequent_mask", device, None)
    dtype = torch.float32 if dtype is None else dtype
    return torch.triu(torch.full((sz, sz), float("-inf"), dtype=dtype), diagonal=1)


def _canonical_mask(be: Any, mask: Any, mask_name: str, other: Any, other_name: str,
                    target_type: Any) -> Any:
    """torch's `F._canonical_mask`: a bool mask as a float one (-inf where True), with torch's
    warning when it and the `other` mask (None: not checked) differ in dtype."""
    if mask is None:
        return None
    floating = mask.is_floating_point()
    if mask.dtype != be.torch.bool and not floating:
        raise AssertionError(f"only bool and floating types of {mask_name} are supported")
    if other is not None and mask.dtype != other.dtype:
        warnings.warn(f"Support for mismatched {mask_name} and {other_name} is deprecated. Use "
                      "same type for both instead.", stacklevel=4)
    if floating:
        return mask
    return be.torch.zeros_like(mask, dtype=target_type).masked_fill_(mask, float("-inf"))


def _seq_len(src: Any, batch_first: bool) -> int:
    size = src.size()
    if len(size) == 2:  # unbatched (S, E)
        return int(size[0])
    return int(size[1 if batch_first else 0])


def _is_causal(be: Any, mask: Any, is_causal: Any, size: int | None) -> bool:
    """torch's `_detect_is_causal_mask`: the hint, or whether `mask` is the causal mask."""
    make_causal = is_causal is True
    if is_causal is None and mask is not None:
        sz = size if size is not None else int(mask.size(-2))
        causal = _square_mask(be, sz, dtype=mask.dtype)
        if tuple(mask.size()) == tuple(causal.size()):
            make_causal = bool((mask == causal).all())
        else:
            make_causal = False
    return make_causal


class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward block, each with a residual and a LayerNorm (after
    the residual, or before the block when norm_first)."""

    __constants__ = ["norm_first"]

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: Any = _DEFAULT, layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        dtype = _factory("TransformerEncoderLayer", device, dtype)
        nn = self._be.torch.nn
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                               batch_first=batch_first, dtype=dtype)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        activation = _activation(self._be, activation)
        F = nn.functional
        if activation is F.relu or isinstance(activation, nn.ReLU):
            self.activation_relu_or_gelu = 1
        elif activation is F.gelu or isinstance(activation, nn.GELU):
            self.activation_relu_or_gelu = 2
        else:
            self.activation_relu_or_gelu = 0
        self.activation = activation

    def forward(self, src: Any, src_mask: Any = None, src_key_padding_mask: Any = None,
                is_causal: bool = False) -> Any:
        be = self._be
        src_key_padding_mask = _canonical_mask(be, src_key_padding_mask, "src_key_padding_mask",
                                               src_mask, "src_mask", src.dtype)
        src_mask = _canonical_mask(be, src_mask, "src_mask", None, "", src.dtype)
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x: Any, attn_mask: Any, key_padding_mask: Any, is_causal: bool) -> Any:
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           need_weights=False, is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x: Any) -> Any:
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout2(x)


class TransformerDecoderLayer(Module):
    """Self-attention, attention over the memory and a feed-forward block, each with a
    residual and a LayerNorm (norm_first: before each block)."""

    __constants__ = ["norm_first"]

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: Any = _DEFAULT, layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        dtype = _factory("TransformerDecoderLayer", device, dtype)
        nn = self._be.torch.nn
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout,
                                               batch_first=batch_first, bias=bias, dtype=dtype)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout,
                                                    batch_first=batch_first, bias=bias,
                                                    dtype=dtype)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = _activation(self._be, activation)

    def forward(self, tgt: Any, memory: Any, tgt_mask: Any = None, memory_mask: Any = None,
                tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
                tgt_is_causal: bool = False, memory_is_causal: bool = False) -> Any:
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask,
                                   tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask,
                                    memory_key_padding_mask, memory_is_causal)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask,
                                              tgt_is_causal))
            x = self.norm2(x + self._mha_block(x, memory, memory_mask,
                                               memory_key_padding_mask, memory_is_causal))
            x = self.norm3(x + self._ff_block(x))
        return x

    def _sa_block(self, x: Any, attn_mask: Any, key_padding_mask: Any, is_causal: bool) -> Any:
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           is_causal=is_causal, need_weights=False)[0]
        return self.dropout1(x)

    def _mha_block(self, x: Any, mem: Any, attn_mask: Any, key_padding_mask: Any,
                   is_causal: bool) -> Any:
        x = self.multihead_attn(x, mem, mem, attn_mask=attn_mask,
                                key_padding_mask=key_padding_mask, is_causal=is_causal,
                                need_weights=False)[0]
        return self.dropout2(x)

    def _ff_block(self, x: Any) -> Any:
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout3(x)


class TransformerEncoder(Module):
    """`num_layers` deep copies of `encoder_layer`, then `norm` if given."""

    __constants__ = ["norm"]

    def __init__(self, encoder_layer: Any, num_layers: int, norm: Any = None,
                 enable_nested_tensor: bool = True, mask_check: bool = True) -> None:
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        self.enable_nested_tensor = enable_nested_tensor
        self.use_nested_tensor = enable_nested_tensor
        self.mask_check = mask_check
        why = _why_not_sparsity_fast_path(self._be, encoder_layer)
        if enable_nested_tensor and why:
            warnings.warn(f"enable_nested_tensor is True, but self.use_nested_tensor is False "
                          f"because {why}", stacklevel=2)
            self.use_nested_tensor = False

    def forward(self, src: Any, mask: Any = None, src_key_padding_mask: Any = None,
                is_causal: bool | None = None) -> Any:
        be = self._be
        src_key_padding_mask = _canonical_mask(be, src_key_padding_mask, "src_key_padding_mask",
                                               mask, "mask", src.dtype)
        mask = _canonical_mask(be, mask, "mask", None, "", src.dtype)
        output = src
        batch_first = self.layers[0].self_attn.batch_first
        causal = _is_causal(self._be, mask, is_causal, _seq_len(src, batch_first))
        for mod in self.layers:
            output = mod(output, src_mask=mask, is_causal=causal,
                         src_key_padding_mask=src_key_padding_mask)
        if self.norm is not None:
            output = self.norm(output)
        return output


def _why_not_sparsity_fast_path(be: Any, layer: Any) -> str:
    """torch's reason (its text) for not taking the nested-tensor path, "" if none."""
    name = "encoder_layer"
    if not isinstance(layer, be.torch.nn.TransformerEncoderLayer):
        return f"{name} was not TransformerEncoderLayer"
    if layer.norm_first:
        return f"{name}.norm_first was True"
    if not layer.self_attn.batch_first:
        return (f"{name}.self_attn.batch_first was not True"
                "(use batch_first for better inference performance)")
    if not layer.self_attn._qkv_same_embed_dim:
        return f"{name}.self_attn._qkv_same_embed_dim was not True"
    if layer.self_attn.in_proj_bias is None:
        return f"{name}.self_attn was passed bias=False"
    if not layer.activation_relu_or_gelu:
        return f"{name}.activation_relu_or_gelu was not True"
    if not layer.norm1.eps == layer.norm2.eps:
        return f"{name}.norm1.eps was not equal to {name}.norm2.eps"
    if layer.self_attn.num_heads % 2 == 1:
        return f"{name}.self_attn.num_heads is odd"
    return ""


class TransformerDecoder(Module):
    """`num_layers` deep copies of `decoder_layer`, then `norm` if given."""

    __constants__ = ["norm"]

    def __init__(self, decoder_layer: Any, num_layers: int, norm: Any = None) -> None:
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, tgt: Any, memory: Any, tgt_mask: Any = None, memory_mask: Any = None,
                tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False) -> Any:
        output = tgt
        seq_len = _seq_len(tgt, self.layers[0].self_attn.batch_first)
        causal = _is_causal(self._be, tgt_mask, tgt_is_causal, seq_len)
        for mod in self.layers:
            output = mod(output, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                         tgt_key_padding_mask=tgt_key_padding_mask,
                         memory_key_padding_mask=memory_key_padding_mask,
                         tgt_is_causal=causal, memory_is_causal=memory_is_causal)
        if self.norm is not None:
            output = self.norm(output)
        return output


class Transformer(Module):
    """An encoder stack and a decoder stack (each ending in a LayerNorm), every weight matrix
    then re-initialised with xavier_uniform_ as torch does."""

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: Any = _DEFAULT, custom_encoder: Any = None,
                 custom_decoder: Any = None, layer_norm_eps: float = 1e-5,
                 batch_first: bool = False, norm_first: bool = False, bias: bool = True,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        dtype = _factory("Transformer", device, dtype)
        nn = self._be.torch.nn
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            encoder_layer = nn.TransformerEncoderLayer(
                d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                batch_first, norm_first, bias, dtype=dtype)
            encoder_norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
            self.encoder = nn.TransformerEncoder(encoder_layer, num_encoder_layers,
                                                 encoder_norm)
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            decoder_layer = nn.TransformerDecoderLayer(
                d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                batch_first, norm_first, bias, dtype=dtype)
            decoder_norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
            self.decoder = nn.TransformerDecoder(decoder_layer, num_decoder_layers,
                                                 decoder_norm)
        self._reset_parameters()
        self.d_model = d_model
        self.nhead = nhead
        self.batch_first = batch_first

    def forward(self, src: Any, tgt: Any, src_mask: Any = None, tgt_mask: Any = None,
                memory_mask: Any = None, src_key_padding_mask: Any = None,
                tgt_key_padding_mask: Any = None, memory_key_padding_mask: Any = None,
                src_is_causal: bool | None = None, tgt_is_causal: bool | None = None,
                memory_is_causal: bool = False) -> Any:
        is_batched = src.dim() == 3
        batch = 0 if self.batch_first else 1
        if is_batched and src.size(batch) != tgt.size(batch):
            raise RuntimeError("the batch number of src and tgt must be equal")
        if src.size(-1) != self.d_model or tgt.size(-1) != self.d_model:
            raise RuntimeError("the feature number of src and tgt must be equal to d_model")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)

    # torch's static method, callable on the class and on an instance
    generate_square_subsequent_mask: Any = None  # set below (it needs the class's backend)

    def _reset_parameters(self) -> None:
        init = self._be.torch.nn.init
        for p in self.parameters():
            if p.dim() > 1:
                init.xavier_uniform_(p)


class _SquareMask:
    """Transformer.generate_square_subsequent_mask(sz, device=None, dtype=None), torch's
    static method: a function of the class's backend however it is reached."""

    def __get__(self, obj: Any, cls: Any) -> Any:
        be = cls._be

        def generate_square_subsequent_mask(sz: int, device: Any = None,
                                            dtype: Any = None) -> Any:
            """A (sz, sz) float mask: -inf above the diagonal, 0 elsewhere."""
            return _square_mask(be, sz, device, dtype)
        return generate_square_subsequent_mask


Transformer.generate_square_subsequent_mask = _SquareMask()


MODULES: tuple[type[Module], ...] = (TransformerEncoderLayer, TransformerDecoderLayer,
                                     TransformerEncoder, TransformerDecoder, Transformer)
"""The Transformer classes `gradserve.surface.nn.build` binds to a backend."""
