"""nn.TransformerEncoderLayer / TransformerEncoder / TransformerDecoderLayer /
TransformerDecoder / Transformer against torch, in process and through a session: torch's
weights after the same manual_seed, reprs, warnings and errors; values, grad_fns and gradients
to float32's last bits (torch's attention without weights is its flash kernel on CPU, whose
roundings the composition follows only approximately), dropout masks included."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

NESTED_WARNING = ("enable_nested_tensor is True, but self.use_nested_tensor is False because "
                  "encoder_layer.self_attn.batch_first was not True(use batch_first for better "
                  "inference performance)")


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _arr(t: Any) -> np.ndarray:
    return np.asarray(t.detach().numpy())


def _same_parameters(ours: Any, theirs: Any) -> None:
    names = [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_parameters()] == names
    for (n, p), q in zip(theirs.named_parameters(), ours.parameters(), strict=True):
        np.testing.assert_array_equal(_arr(q), _arr(p), err_msg=n)


def _close(ours: Any, theirs: Any) -> None:
    np.testing.assert_allclose(_arr(ours), _arr(theirs), rtol=0, atol=5e-6)


def _same_training_step(lib: Any, ours: Any, theirs: Any, inputs: list[Any],
                        seed: int = 1, **kwargs: Any) -> None:
    torch.manual_seed(seed)
    lib.manual_seed(seed)
    y = theirs(*inputs, **kwargs)
    gy = ours(*(lib.tensor(x.numpy()) for x in inputs),
              **{k: (lib.tensor(v.numpy()) if isinstance(v, torch.Tensor) else v)
                 for k, v in kwargs.items()})
    assert gy.grad_fn.name() == type(y.grad_fn).__name__
    _close(gy, y)
    w = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
    (y * w).sum().backward()
    (gy * lib.tensor(w.numpy())).sum().backward()
    for (n, p), q in zip(theirs.named_parameters(), ours.parameters(), strict=True):
        np.testing.assert_allclose(_arr(q.grad), _arr(p.grad), rtol=0, atol=2e-5, err_msg=n)


@pytest.mark.parametrize("kwargs", [
    {},
    {"dropout": 0.0},
    {"norm_first": True},
    {"activation": "gelu"},
    {"batch_first": True, "dropout": 0.0},
    {"batch_first": True},  # dropout of transposed views: masks drawn in memory order
    {"bias": False, "layer_norm_eps": 1e-3},
])
def test_encoder_layer(lib, kwargs):
    torch.manual_seed(0)
    theirs = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, **kwargs)
    lib.manual_seed(0)
    ours = lib.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, **kwargs)
    _same_parameters(ours, theirs)
    assert repr(ours) == repr(theirs)
    assert ours.activation_relu_or_gelu == theirs.activation_relu_or_gelu
    torch.manual_seed(5)
    x = torch.randn(5, 3, 8)
    _same_training_step(lib, ours, theirs, [x])


def test_encoder_layer_masks_and_module_activation(lib):
    torch.manual_seed(0)
    theirs = torch.nn.TransformerEncoderLayer(8, 4, 12, dropout=0.0,
                                              activation=torch.nn.GELU())
    lib.manual_seed(0)
    ours = lib.nn.TransformerEncoderLayer(8, 4, 12, dropout=0.0, activation=lib.nn.GELU())
    assert repr(ours) == repr(theirs)
    assert ours.activation_relu_or_gelu == theirs.activation_relu_or_gelu == 2
    torch.manual_seed(5)
    x = torch.randn(4, 2, 8)
    pad = torch.tensor([[False, False, False, True], [False, False, False, False]])
    mask = torch.nn.Transformer.generate_square_subsequent_mask(4)
    with pytest.warns(UserWarning) as w:
        _same_training_step(lib, ours, theirs, [x], src_mask=mask, src_key_padding_mask=pad)
    assert [str(m.message) for m in w] == [
        "Support for mismatched src_key_padding_mask and src_mask is deprecated. Use same type "
        "for both instead."] * 2  # torch's, then ours
    _same_training_step(lib, ours, theirs, [x], src_mask=mask.isinf(), seed=2)


def test_encoder_stack_warns_and_clones(lib):
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(8, 2, 16)
    with pytest.warns(UserWarning) as theirs_w:
        theirs = torch.nn.TransformerEncoder(layer, 2, norm=torch.nn.LayerNorm(8))
    lib.manual_seed(0)
    glayer = lib.nn.TransformerEncoderLayer(8, 2, 16)
    with pytest.warns(UserWarning) as ours_w:
        ours = lib.nn.TransformerEncoder(glayer, 2, norm=lib.nn.LayerNorm(8))
    assert [str(w.message) for w in ours_w] == [str(w.message) for w in theirs_w]
    assert str(ours_w[0].message) == NESTED_WARNING
    assert ours.use_nested_tensor is theirs.use_nested_tensor is False
    assert repr(ours) == repr(theirs)
    _same_parameters(ours, theirs)
    assert ours.layers[0].linear1.weight is not ours.layers[1].linear1.weight
    assert ours.layers[0].linear1.weight is not glayer.linear1.weight
    torch.manual_seed(5)
    x = torch.randn(6, 2, 8)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(6)
    _same_training_step(lib, ours, theirs, [x], mask=mask)


def test_decoder_layer_and_stack(lib):
    torch.manual_seed(0)
    theirs = torch.nn.TransformerDecoder(
        torch.nn.TransformerDecoderLayer(8, 2, 16, norm_first=True), 2)
    lib.manual_seed(0)
    ours = lib.nn.TransformerDecoder(lib.nn.TransformerDecoderLayer(8, 2, 16, norm_first=True), 2)
    _same_parameters(ours, theirs)
    assert repr(ours) == repr(theirs)
    torch.manual_seed(5)
    tgt, memory = torch.randn(4, 3, 8), torch.randn(6, 3, 8)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(4)
    _same_training_step(lib, ours, theirs, [tgt, memory], tgt_mask=mask)


def test_transformer(lib):
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="enable_nested_tensor"):
        theirs = torch.nn.Transformer(8, 2, 2, 1, 16)
    lib.manual_seed(0)
    with pytest.warns(UserWarning, match="enable_nested_tensor"):
        ours = lib.nn.Transformer(8, 2, 2, 1, 16)
    _same_parameters(ours, theirs)  # every matrix re-initialised by xavier_uniform_, in order
    assert repr(ours) == repr(theirs)
    torch.manual_seed(5)
    src, tgt = torch.randn(6, 2, 8), torch.randn(4, 2, 8)
    mask = theirs.generate_square_subsequent_mask(4)
    _same_training_step(lib, ours, theirs, [src, tgt], tgt_mask=mask)
    with pytest.raises(RuntimeError, match="^the batch number of src and tgt must be equal$"):
        ours(lib.zeros(6, 2, 8), lib.zeros(4, 3, 8))
    with pytest.raises(RuntimeError, match="^the feature number of src and tgt must be equal "
                       "to d_model$"):
        ours(lib.zeros(6, 2, 8), lib.zeros(4, 2, 4))


@pytest.mark.parametrize("call", [
    lambda t: t.nn.Transformer.generate_square_subsequent_mask(5),
    lambda t: t.nn.Transformer.generate_square_subsequent_mask(3, dtype=t.float64),
    lambda t: t.nn.Transformer.generate_square_subsequent_mask(1),
])
def test_square_subsequent_mask(lib, call):
    ours, theirs = call(lib), call(torch)
    assert str(ours.dtype) == str(theirs.dtype)
    np.testing.assert_array_equal(_arr(ours), _arr(theirs))


def test_activation_errors(lib):
    with pytest.raises(RuntimeError) as theirs:
        torch.nn.TransformerEncoderLayer(8, 2, activation="tanh")
    with pytest.raises(RuntimeError) as ours:
        lib.nn.TransformerEncoderLayer(8, 2, activation="tanh")
    assert str(ours.value) == str(theirs.value)
    assert lib.nn.modules.transformer.Transformer is lib.nn.Transformer
