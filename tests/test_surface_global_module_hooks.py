"""Hooks common to all modules (torch.nn.modules.module.register_module_*), compared with torch
on the same programs, in process and through a session: their order relative to a module's own
hooks, with_kwargs, always_call, replacement values, and handles' remove().

The hooks are process-wide, in torch as in gradserve: every test removes what it registered.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.parametrize("gradserve_lib", ["engine", "session"], indirect=True)


def _np(t: Any) -> Any:
    return None if t is None else np.array(t.detach().numpy(), copy=True).tolist()


def _grads(seq: Any) -> list[Any]:
    return [_np(g) for g in seq]


def _same(a: Any, b: Any) -> None:
    """Equal, floats within float32 rounding (torch's tanh kernel rounds its own way)."""
    if isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), (a, b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, float):
        assert isinstance(b, float) and np.isclose(a, b, rtol=1e-6, atol=1e-7), (a, b)
    else:
        assert a == b


def _linear(lib: Any) -> Any:
    m = lib.nn.Linear(3, 2)
    with lib.no_grad():
        m.weight.copy_(lib.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]))
        m.bias.copy_(lib.tensor([0.1, -0.2]))
    return m


def _forward_backward_program(lib: Any) -> list[Any]:
    mm = lib.nn.modules.module
    log: list[Any] = []
    handles = [
        mm.register_module_forward_pre_hook(
            lambda m, a: log.append(("g-pre", type(m).__name__, len(a)))),
        mm.register_module_forward_hook(
            lambda m, a, o: log.append(("g-fwd", type(m).__name__, _np(o)))),
        mm.register_module_forward_hook(
            lambda m, a, k, o: log.append(("g-fwd-kw", type(m).__name__, sorted(k))),
            with_kwargs=True),
        mm.register_module_full_backward_pre_hook(
            lambda m, go: log.append(("g-bw-pre", type(m).__name__, _grads(go)))),
        mm.register_module_full_backward_hook(
            lambda m, gi, go: log.append(("g-bw", type(m).__name__, _grads(gi), _grads(go)))),
    ]
    try:
        lin = _linear(lib)
        net = lib.nn.Sequential(lin, lib.nn.Tanh())
        lin.register_forward_pre_hook(lambda m, a: log.append(("pre", len(a))))
        lin.register_forward_pre_hook(lambda m, a: (a[0] * 2,))  # replaces the input
        lin.register_forward_hook(lambda m, a, o: o + 1)  # replaces the output
        lin.register_forward_hook(lambda m, a, o: log.append(("fwd", _np(o))), prepend=True)
        lin.register_full_backward_pre_hook(lambda m, go: log.append(("bw-pre", _grads(go))))
        lin.register_full_backward_hook(
            lambda m, gi, go: log.append(("bw", _grads(gi), _grads(go))))
        x = lib.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
        out = net(x)
        log.append(("out", _np(out)))
        out.sum().backward()
        log.append(("x.grad", _np(x.grad)))
        handles[0].remove()
        handles[4].remove()
        handles[0].remove()  # again: nothing
        x.grad = None
        net(x).sum().backward()
        log.append(("x.grad", _np(x.grad)))
    finally:
        for h in handles:
            h.remove()
    log.append(("after", _np(lin(x))))  # the module's own hooks only
    return log


def test_forward_and_backward_order_match_torch(gradserve_lib: Any):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's full backward hook warnings, if any
        mine = _forward_backward_program(gradserve_lib)
        ref = _forward_backward_program(torch)
    _same(mine, ref)


def _always_call_program(lib: Any) -> list[Any]:
    mm = lib.nn.modules.module
    log: list[Any] = []

    class Bad(lib.nn.Module):
        def forward(self, x: Any, extra: int = 0) -> Any:
            raise ValueError("boom")

    handles = [
        mm.register_module_forward_hook(
            lambda m, a, o: log.append(("g-always", o)), always_call=True),
        mm.register_module_forward_hook(lambda m, a, o: log.append("g-never")),
    ]
    try:
        bad = Bad()
        bad.register_forward_hook(lambda m, a, o: log.append(("always", o)), always_call=True)
        bad.register_forward_hook(lambda m, a, k, o: log.append(("always-kw", sorted(k))),
                                  always_call=True, with_kwargs=True)

        def raising(m: Any, a: Any, o: Any) -> None:
            raise KeyError("hook")

        bad.register_forward_hook(raising, always_call=True)
        bad.register_forward_hook(lambda m, a, o: log.append("never"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ValueError, match="^boom$"):
                bad(lib.ones(1), extra=1)
        log.append([str(w.message) for w in caught])
        h = bad.register_forward_hook(lambda m, a, o: log.append("removed"), always_call=True)
        h.remove()
        with pytest.raises(ValueError, match="^boom$"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bad(lib.ones(1))
    finally:
        for h in handles:
            h.remove()
    return log


def test_always_call_match_torch(gradserve_lib: Any):
    assert _always_call_program(gradserve_lib) == _always_call_program(torch)


def _registration_program(lib: Any) -> list[Any]:
    mm = lib.nn.modules.module
    log: list[Any] = []

    def on_module(m: Any, name: str, sub: Any) -> Any:
        log.append(("module", type(m).__name__, name, type(sub).__name__))
        return lib.nn.Identity() if name == "swap" else None

    def on_parameter(m: Any, name: str, p: Any) -> Any:
        log.append(("parameter", type(m).__name__, name, None if p is None else list(p.shape)))
        return None

    def on_buffer(m: Any, name: str, b: Any) -> Any:
        log.append(("buffer", type(m).__name__, name, None if b is None else _np(b)))
        return b * 2 if name == "doubled" else None

    handles = [mm.register_module_module_registration_hook(on_module),
               mm.register_module_parameter_registration_hook(on_parameter),
               mm.register_module_buffer_registration_hook(on_buffer)]
    try:
        class Net(lib.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fc = lib.nn.Linear(2, 1)
                self.swap = lib.nn.ReLU()
                self.register_buffer("doubled", lib.ones(2))
                self.register_buffer("kept", lib.zeros(1), persistent=False)
                self.scale = lib.nn.Parameter(lib.ones(3))
                self.register_parameter("absent", None)
                self.add_module("extra", lib.nn.Tanh())
                self.kept = lib.ones(1)  # a buffer assigned again
                self.extra = None  # a submodule assigned again

        net = Net()
        log.append(("swap", type(net.swap).__name__, _np(net.doubled), _np(net.kept)))
        log.append(list(net.state_dict()))
    finally:
        for h in handles:
            h.remove()
    lib.nn.Linear(1, 1)  # no hooks any more
    return log


def test_registration_hooks_match_torch(gradserve_lib: Any):
    assert _registration_program(gradserve_lib) == _registration_program(torch)


@pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)  # dir() of the stand-in is empty
def test_names_in_torch_nn_modules_module(gradserve_lib: Any):
    names = sorted(n for n in dir(torch.nn.modules.module) if n.startswith("register_module_"))
    assert names == sorted(n for n in dir(gradserve_lib.nn.modules.module)
                           if n.startswith("register_module_"))


def test_mixing_global_backward_hooks_raises_torchs_error(gradserve_lib: Any):
    """Full global backward hooks first (torch's flag stays set for the process, as here)."""
    for lib in (gradserve_lib, torch):
        mm = lib.nn.modules.module
        mm.register_module_full_backward_hook(lambda m, gi, go: None).remove()
        with pytest.raises(RuntimeError) as exc:
            mm.register_module_backward_hook(lambda m, gi, go: None)
        assert str(exc.value) == ("Cannot use both regular backward hooks and full backward "
                                  "hooks as a global Module hook. Please use only one of them.")
