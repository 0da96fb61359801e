"""Activations and dropout with `inplace=True` (and `F.leaky_relu_`, `F.elu_`, `F.selu_`,
`F.celu_`, `torch.dropout_`) against torch, in process and through a session: the input itself
returned, torch's values, in-place node names (LeakyReluBackward1, EluBackward1,
CeluBackward1: their gradients read the result; SiluBackward0, HardswishBackward0, ...: they
read a copy of the input), gradients bit for bit, the leaf refusal at the call, the saved
result's version check, and the scalar tails of elu/selu/celu/softplus/mish (glibc's expm1f and
log1pf, where numpy's own float32 kernels differ on AVX-512 CPUs)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _bits(t: Any) -> np.ndarray:
    return np.asarray(t.detach().numpy()).view(np.int32)


def _data(n: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * 2).astype(np.float32)


CASES = {
    "leaky_relu": (lambda t, y: t.nn.functional.leaky_relu(y, 0.2, inplace=True),
                   "LeakyReluBackward1"),
    "leaky_relu_": (lambda t, y: t.nn.functional.leaky_relu_(y, 0.05), "LeakyReluBackward1"),
    "LeakyReLU": (lambda t, y: t.nn.LeakyReLU(0.1, inplace=True)(y), "LeakyReluBackward1"),
    "elu": (lambda t, y: t.nn.functional.elu(y, inplace=True), "EluBackward1"),
    "elu_": (lambda t, y: t.nn.functional.elu_(y, 0.5), "EluBackward1"),
    "ELU": (lambda t, y: t.nn.ELU(1.5, inplace=True)(y), "EluBackward1"),
    "selu": (lambda t, y: t.nn.functional.selu(y, inplace=True), "EluBackward1"),
    "selu_": (lambda t, y: t.nn.functional.selu_(y), "EluBackward1"),
    "SELU": (lambda t, y: t.nn.SELU(inplace=True)(y), "EluBackward1"),
    "celu": (lambda t, y: t.nn.functional.celu(y, 0.7, inplace=True), "CeluBackward1"),
    "celu_": (lambda t, y: t.nn.functional.celu_(y, 2.0), "CeluBackward1"),
    "CELU": (lambda t, y: t.nn.CELU(inplace=True)(y), "CeluBackward1"),
    "silu": (lambda t, y: t.nn.functional.silu(y, inplace=True), "SiluBackward0"),
    "SiLU": (lambda t, y: t.nn.SiLU(inplace=True)(y), "SiluBackward0"),
    "hardsigmoid": (lambda t, y: t.nn.functional.hardsigmoid(y, inplace=True),
                    "HardsigmoidBackward0"),
    "Hardswish": (lambda t, y: t.nn.Hardswish(inplace=True)(y), "HardswishBackward0"),
    "mish": (lambda t, y: t.nn.functional.mish(y, inplace=True), "MishBackward0"),
    "Mish": (lambda t, y: t.nn.Mish(inplace=True)(y), "MishBackward0"),
}


@pytest.mark.parametrize("n", [7, 45])  # all scalar tail; a vector step and a tail
@pytest.mark.parametrize("case", sorted(CASES))
def test_inplace_activation_is_torchs(lib, case, n):
    call, node = CASES[case]
    data = _data(n)
    x = torch.tensor(data, requires_grad=True)
    gx = lib.tensor(data, requires_grad=True)
    y, gy = x * 1, gx * 1
    z, gz = call(torch, y), call(lib, gy)
    assert z is y and gz is gy
    assert type(z.grad_fn).__name__ == node
    assert gz.grad_fn.name() == node
    np.testing.assert_array_equal(_bits(gz), _bits(z))
    w = torch.linspace(-1, 2, n)
    (z * w).sum().backward()
    (gz * lib.tensor(w.numpy())).sum().backward()
    np.testing.assert_array_equal(_bits(gx.grad), _bits(x.grad))


@pytest.mark.parametrize("case", ["leaky_relu", "elu", "silu", "Hardswish", "selu_"])
def test_inplace_on_a_leaf_is_refused_at_the_call(lib, case):
    call, _ = CASES[case]
    with pytest.raises(RuntimeError) as expected:
        call(torch, torch.tensor([1.0, -2.0, 3.0], requires_grad=True))
    with pytest.raises(RuntimeError) as got:  # (a session: at the call, not the next batch)
        call(lib, lib.tensor([1.0, -2.0, 3.0], requires_grad=True))
    assert str(got.value) == str(expected.value)
    # under no_grad it is allowed, as in torch
    with lib.no_grad():
        t = lib.ones(3, requires_grad=True)
        call(lib, t)
    assert t.is_leaf and t.requires_grad


@pytest.mark.parametrize("case", ["leaky_relu", "elu", "celu_"])
def test_the_saved_result_is_version_checked(lib, case):
    """Their in-place nodes save the result: writing it again fails the backward, as torch's."""
    call, _ = CASES[case]
    messages = []
    for t in (torch, lib):
        x = t.tensor(_data(4), requires_grad=True)
        z = call(t, x * 1)
        z.add_(1)
        with pytest.raises(RuntimeError) as info:
            z.sum().backward()
        messages.append(str(info.value))
    assert messages[1] == messages[0]


def test_silu_inplace_keeps_the_input_for_its_gradient(lib):
    """SiluBackward0 reads a copy of the input: a later write to the result is harmless."""
    grads = []
    for t in (torch, lib):
        x = t.tensor(_data(8), requires_grad=True)
        z = t.nn.functional.silu(x * 1, inplace=True)
        z.mul_(3)
        z.sum().backward()
        grads.append(_bits(x.grad))
    np.testing.assert_array_equal(grads[1], grads[0])


def test_leaky_relu_inplace_negative_slope_fails_in_backward(lib):
    messages = []
    for t in (torch, lib):
        x = t.tensor(_data(4), requires_grad=True)
        z = t.nn.functional.leaky_relu(x * 1, -0.1, inplace=True)
        with pytest.raises(RuntimeError) as info:
            z.sum().backward()
        messages.append(str(info.value))
    assert messages[1] == messages[0]


DROPOUTS = {
    "dropout": lambda t, y: t.nn.functional.dropout(y, 0.4, True, inplace=True),
    "dropout p=1": lambda t, y: t.nn.functional.dropout(y, 1.0, True, inplace=True),
    "Dropout": lambda t, y: t.nn.Dropout(0.3, inplace=True)(y),
    "torch.dropout_": lambda t, y: t.dropout_(y, 0.5, True),
    "Dropout2d": lambda t, y: t.nn.Dropout2d(0.5, inplace=True)(y.view(2, 6, 2, 2)),
    "Dropout3d": lambda t, y: t.nn.Dropout3d(0.5, inplace=True)(y.view(2, 3, 2, 2, 2)),
}


@pytest.mark.parametrize("case", sorted(DROPOUTS))
def test_inplace_dropout_is_torchs(lib, case):
    call = DROPOUTS[case]
    data = _data(48, seed=3)
    results = []
    for t in (torch, lib):
        t.manual_seed(7)
        x = t.tensor(data, requires_grad=True)
        y = x * 1
        z = call(t, y)
        (z * t.arange(48.0).view(z.shape)).sum().backward()
        results.append((type(z.grad_fn).__name__ if t is torch else z.grad_fn.name(),
                        _bits(z).tolist(), _bits(x.grad).tolist(), _bits(y).tolist()))
    assert results[1] == results[0]


def test_dropout_inplace_when_evaluating_returns_the_input(lib):
    y = lib.ones(4) * 1
    assert lib.nn.functional.dropout(y, 0.5, False, inplace=True) is y
    m = lib.nn.Dropout(0.5, inplace=True).eval()
    assert m(y) is y


@pytest.mark.parametrize("n", [5, 20, 31, 45, 1003])
@pytest.mark.parametrize("name", ["elu", "selu", "celu", "softplus", "mish"])
def test_scalar_tails_are_glibcs(lib, name, n):
    """torch's scalar lambda (a tensor under two vector steps, and each tail) calls glibc's
    expm1f/log1pf: numpy's float32 expm1/log1p are other kernels on AVX-512 CPUs."""
    data = _data(n, seed=n)
    x = torch.tensor(data, requires_grad=True)
    gx = lib.tensor(data, requires_grad=True)
    y = getattr(torch.nn.functional, name)(x)
    gy = getattr(lib.nn.functional, name)(gx)
    np.testing.assert_array_equal(_bits(gy), _bits(y))
    y.sum().backward()
    gy.sum().backward()
    np.testing.assert_array_equal(_bits(gx.grad), _bits(x.grad))
