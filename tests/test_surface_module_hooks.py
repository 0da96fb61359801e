"""nn.Module full backward hooks and pre-hooks (surface/nn_module.py `_BackwardHook`), compared
with torch on the same programs, in process and through a session: the hooks' call order and
arguments, replacement gradients, removal, and the outputs' grad_fn name."""

from __future__ import annotations

import types
import warnings
from typing import Any

import numpy as np
import pytest

from tests.reference import torch

pytestmark = pytest.mark.parametrize("gradserve_lib", ["engine", "session"], indirect=True)


def _np(t: Any) -> Any:
    return None if t is None else np.array(t.detach().numpy(), copy=True)


def _grads(seq: Any) -> list[Any]:
    return [_np(g) for g in seq]


def _same(a: Any, b: Any) -> None:
    if isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), (a, b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.shape == b.shape, (a, b)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    else:
        assert a == b


def _linear(lib: Any) -> Any:
    m = lib.nn.Linear(3, 2)
    with lib.no_grad():
        m.weight.copy_(lib.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]))
        m.bias.copy_(lib.tensor([0.1, -0.2]))
    return m


def _run_linear(lib: Any, x_requires_grad: bool, replace: bool) -> list[Any]:
    log: list[Any] = []
    m = _linear(lib)

    def pre(mod: Any, grad_output: Any) -> Any:
        log.append(("pre", type(grad_output).__name__, _grads(grad_output)))
        return (grad_output[0] * 2,) if replace else None

    def full(mod: Any, grad_input: Any, grad_output: Any) -> Any:
        log.append(("full", mod is m, _grads(grad_input), _grads(grad_output)))
        if replace and grad_input[0] is not None:
            return (grad_input[0] + 1,)
        return None

    m.register_full_backward_pre_hook(pre)
    m.register_full_backward_hook(full)
    x = lib.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]], requires_grad=x_requires_grad)
    y = m(x)
    log.append(("grad_fn", y.grad_fn.name()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (y * lib.tensor([1.0, -2.0])).sum().backward()
    log.append(("warned", sorted({str(w.message)[:60] for w in caught})))
    log.append(("x.grad", _np(x.grad) if x_requires_grad else None))
    log.append(("w.grad", _np(m.weight.grad)))
    return log


@pytest.mark.parametrize("x_requires_grad", [True, False])
@pytest.mark.parametrize("replace", [False, True])
def test_linear_hooks_match_torch(gradserve_lib: Any, x_requires_grad: bool, replace: bool):
    _same(_run_linear(torch, x_requires_grad, replace),
          _run_linear(gradserve_lib, x_requires_grad, replace))


def _run_sequential_order(lib: Any) -> list[Any]:
    log: list[Any] = []
    net = lib.nn.Sequential(lib.nn.Linear(4, 3), lib.nn.ReLU(), lib.nn.Linear(3, 2))
    with lib.no_grad():
        for i, p in enumerate(net.parameters()):
            n = int(np.prod(tuple(p.shape)))
            p.copy_(lib.tensor(np.cos(np.arange(n) + i).astype(np.float32).reshape(
                tuple(p.shape))))
    handles = []
    for name, mod in [("net", net), ("0", net[0]), ("1", net[1]), ("2", net[2])]:
        def pre(m: Any, go: Any, name: str = name) -> None:
            log.append(("pre", name, [None if g is None else tuple(g.shape) for g in go]))

        def full(m: Any, gi: Any, go: Any, name: str = name) -> None:
            log.append(("full", name, [None if g is None else tuple(g.shape) for g in gi],
                        _grads(go)))
        handles.append(mod.register_full_backward_pre_hook(pre))
        handles.append(mod.register_full_backward_hook(full))
    x = lib.tensor(np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4), requires_grad=True)
    net(x).sum().backward()
    log.append(("x.grad", _np(x.grad)))
    for h in handles[2:]:  # keep only net's hooks
        h.remove()
    x2 = x.detach().requires_grad_(True)
    net(x2).pow(2).sum().backward()
    log.append(("x.grad", _np(x2.grad)))
    handles[0].remove()
    handles[1].remove()
    net(x).sum().backward()
    log.append(("end", len(log)))
    return log


def test_sequential_order_and_removal_match_torch(gradserve_lib: Any):
    _same(_run_sequential_order(torch), _run_sequential_order(gradserve_lib))


def _run_custom(lib: Any) -> list[Any]:
    log: list[Any] = []

    class Mix(lib.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = lib.nn.Parameter(lib.tensor([2.0, 3.0]))

        def forward(self, a: Any, k: int, b: Any) -> Any:
            return a * self.scale * k, b + a, k

    m = Mix()

    def full(mod: Any, gi: Any, go: Any) -> Any:
        log.append(("full", _grads(gi), _grads(go)))
        return (gi[0] * 10, None, gi[2])

    def pre(mod: Any, go: Any) -> Any:
        log.append(("pre", _grads(go)))
        return (go[0], go[1] * -1, None)

    m.register_full_backward_hook(full)
    m.register_full_backward_pre_hook(pre, prepend=True)
    a = lib.tensor([1.0, -1.0], requires_grad=True)
    b = lib.tensor([0.5, 4.0], requires_grad=True)
    c = lib.tensor([7.0, 7.0])  # not differentiable: None in grad_input
    p, q, k = m(a, 3, b)
    log.append(("names", p.grad_fn.name(), q.grad_fn.name(), k))
    (p.sum() + (q * q).sum()).backward()
    log.append(("grads", _np(a.grad), _np(b.grad), _np(m.scale.grad)))
    out = m(c, 1, c)
    log.append(("no grad", [None if t.grad_fn is None else t.grad_fn.name() for t in out[:2]]))
    return log


def test_custom_module_with_non_tensor_args_matches_torch(gradserve_lib: Any):
    _same(_run_custom(torch), _run_custom(gradserve_lib))


def _run_errors(lib: Any) -> list[Any]:
    m = _linear(lib)
    m.register_full_backward_hook(lambda mod, gi, go: (gi[0], gi[0]))
    x = lib.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    with pytest.raises(RuntimeError) as err:
        m(x).sum().backward()
    m2 = _linear(lib)
    m2.register_full_backward_pre_hook(lambda mod, go: ())
    with pytest.raises(RuntimeError) as err2:
        m2(x).sum().backward()
    return [str(err.value), str(err2.value)]


def test_wrong_lengths_raise_torchs_errors(gradserve_lib: Any):
    _same(_run_errors(torch), _run_errors(gradserve_lib))


def _run_deprecated(lib: Any, checks_graph: bool) -> list[Any]:
    log: list[Any] = []

    class Scale(lib.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = lib.nn.Parameter(lib.tensor([2.0, -3.0]))

        def forward(self, x: Any) -> Any:
            return x * self.w

    m = Scale()

    def hook(mod: Any, gi: Any, go: Any) -> Any:
        log.append(("hook", mod is m, _grads(gi), _grads(go)))
        return (gi[0] * 3, gi[1])

    handle = m.register_backward_hook(hook)
    x = lib.tensor([1.0, 5.0], requires_grad=True)
    h = x * 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m(h).sum().backward()
    # torch warns (the forward's node also reaches w's AccumulateGrad); a session does not
    # check the graph's structure (README)
    if checks_graph:
        log.append(("warned", [str(w.message) for w in caught]))
    log.append(("grads", _np(x.grad), _np(m.w.grad)))
    with pytest.raises(RuntimeError) as err:
        m.register_full_backward_hook(hook)
    log.append(str(err.value))
    handle.remove()
    m(x * 2).sum().backward()
    log.append(("after remove", len(log), _np(x.grad)))
    m2 = Scale()
    m2.register_full_backward_pre_hook(lambda mod, go: None)
    m2.register_full_backward_hook(lambda mod, gi, go: None)
    with pytest.raises(RuntimeError) as err:
        m2.register_backward_hook(hook)
    log.append(str(err.value))
    return log


def test_deprecated_backward_hook_matches_torch(gradserve_lib: Any):
    in_process = isinstance(gradserve_lib, types.ModuleType)
    _same(_run_deprecated(torch, in_process), _run_deprecated(gradserve_lib, in_process))


def _run_identity_twice(lib: Any) -> list[Any]:
    log: list[Any] = []
    m = lib.nn.Identity()
    m.register_full_backward_pre_hook(lambda mod, go: log.append(("pre", _grads(go))))
    m.register_full_backward_hook(lambda mod, gi, go: log.append(("full", _grads(gi))))
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    y = m(x)
    z = m(y * 3)  # two calls: each has its own hooks' state
    log.append(("names", y.grad_fn.name(), z.grad_fn.name(), y is x))
    (z * lib.tensor([1.0, -1.0])).sum().backward()
    log.append(("x.grad", _np(x.grad)))
    return log


def test_identity_module_called_twice_matches_torch(gradserve_lib: Any):
    _same(_run_identity_twice(torch), _run_identity_twice(gradserve_lib))
