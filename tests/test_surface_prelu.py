"""F.prelu and nn.PReLU (torch's `_prelu_kernel`), in process and through a session, against
torch 2.13: values, gradients, second derivatives, grad_fn names and torch's refusals. The
modules' weights, reprs and state dicts are checked with the other nn cases (tests/nn_cases.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import torch

RNG = np.random.default_rng(5)


def _np(t: Any) -> np.ndarray:
    return np.array(t.detach().numpy())


@pytest.mark.parametrize("xshape, wshape", [((2, 3, 4, 4), (3,)), ((2, 3, 4), (1,)),
                                            ((5,), (1,)), ((2, 3), ()), ((4, 3), (3,))])
def test_prelu_matches_torch_to_the_second_derivative(gradserve_lib: Any, xshape: Any,
                                                      wshape: Any):
    g = gradserve_lib
    x = RNG.standard_normal(xshape).astype(np.float32)
    w = RNG.uniform(-0.5, 0.5, wshape).astype(np.float32)
    v = RNG.standard_normal(xshape).astype(np.float32)
    results = []
    for lib in (g, torch):
        xt = lib.tensor(x, requires_grad=True)
        wt = lib.tensor(w, requires_grad=True)
        out = lib.nn.functional.prelu(xt, wt)
        gx, gw = lib.autograd.grad((out * lib.tensor(v)).sum(), (xt, wt), create_graph=True)
        second = lib.autograd.grad((gx * gx).sum() + (gw * gw).sum(), (xt, wt))
        name = out.grad_fn.name() if hasattr(out.grad_fn, "name") else type(out.grad_fn).__name__
        results.append((name, [_np(t) for t in (out, gx, gw, *second)]))
    (ours, mine), (theirs, want) = results
    assert ours == theirs == "PreluKernelBackward0"
    for a, b in zip(mine, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert [a.shape for a in mine] == [b.shape for b in want]


@pytest.mark.parametrize("xshape, wshape, wdtype", [
    ((2, 3), (2,), "float32"), ((), (2,), "float32"), ((3,), (1, 1), "float32"),
    ((3,), (3,), "float32"), ((2, 3), (3,), "float64")])
def test_prelu_refuses_as_torch(gradserve_lib: Any, xshape: Any, wshape: Any, wdtype: str):
    def call(lib: Any) -> Any:
        return lib.nn.functional.prelu(lib.zeros(xshape),
                                       lib.ones(wshape, dtype=getattr(lib, wdtype)))

    with pytest.raises(RuntimeError) as want:
        call(torch)
    with pytest.raises(RuntimeError) as got:
        call(gradserve_lib)
    assert str(got.value) == str(want.value)


def test_prelu_module_starts_at_init_and_prints_as_torch(gradserve_lib: Any):
    for m, want in ((gradserve_lib.nn.PReLU(3, init=0.1), torch.nn.PReLU(3, init=0.1)),
                    (gradserve_lib.nn.PReLU(), torch.nn.PReLU())):
        assert repr(m) == repr(want)
        assert repr(m.weight) == repr(want.weight)
        assert (m.num_parameters, m.init) == (want.num_parameters, want.init)
