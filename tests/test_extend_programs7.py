"""Gaps a seventh set of public programs that extend autograd met through gradserve (saved
tensors): a grad_fn's `_saved_*` attributes (values, identity, None where nothing was saved,
wrapped and plain numbers, torch's errors after the graph was freed or a saved tensor was
modified in place) in the engine and through a session, and the saved-tensor hooks of
`torch.autograd.graph` (`saved_tensors_hooks`, `save_on_cpu`, `disable_saved_tensors_hooks`)
in the engine and through a session (`_raw_saved_*.register_hooks` and `_saved_*` reads under
hooks in the engine only), each checked against torch."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch
from tests.reference import builtin_error as _error

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _engine() -> Any:
    import gradserve.engine as ge

    return ge


def _show(v: Any) -> Any:
    """A saved attribute's value in comparable form (a tensor's values, dtype name and grad_fn)."""
    if v is None or isinstance(v, (int, float, bool)):
        return v
    return (v.tolist(), str(v.dtype), v.requires_grad,
            v.grad_fn.name() if v.grad_fn is not None else None)


# --- grad_fn._saved_* ----------------------------------------------------------------------------

@pytest.mark.parametrize("case", [
    # (op, which of the two operands require grad)
    ("mul", (True, True)), ("mul", (True, False)), ("mul", (False, True)),
    ("div", (True, True)), ("div", (False, True)), ("mm", (True, False)),
    ("atan2", (True, True)),
])
def test_saved_inputs_are_the_inputs_themselves(lib, case):
    name, grads = case

    def run(t: Any) -> Any:
        a = t.tensor([[1.5, -2.0], [0.5, 3.0]], requires_grad=grads[0])
        b = t.tensor([[0.25, 4.0], [-1.0, 2.0]], requires_grad=grads[1])
        y = getattr(t, name)(a, b)
        fn = y.grad_fn
        saved = {n: getattr(fn, n) for n in ("_saved_self", "_saved_other", "_saved_mat2")
                 if hasattr(fn, n)}
        return ({n: _show(v) for n, v in saved.items()},
                {n: (v is a, v is b) for n, v in saved.items()})
    assert run(lib) == run(torch)


@pytest.mark.parametrize("expr", [
    lambda x: x * 2, lambda x: x * 2.5, lambda x: x + 2, lambda x: x / 4.0,
    lambda x: x.pow(2), lambda x: x ** 3.0, lambda x: x.clamp(-0.5, 0.5),
])
def test_saved_python_numbers_are_wrapped_where_torch_wraps_them(lib, expr):
    def run(t: Any) -> Any:
        x = t.tensor([1.2, 3.0], requires_grad=True)
        fn = expr(x).grad_fn
        return {n: _show(getattr(fn, n)) for n in ("_saved_self", "_saved_other",
                                                    "_saved_exponent") if hasattr(fn, n)}
    assert run(lib) == run(torch)


@pytest.mark.parametrize("op", ["exp", "relu", "sigmoid", "tanh", "sqrt"])
def test_saved_result_equals_the_output_but_is_a_new_tensor(lib, op):
    def run(t: Any) -> Any:
        x = t.tensor([0.5, 1.5, 2.0], requires_grad=True)
        y = getattr(x, op)()
        r = y.grad_fn._saved_result
        return (_show(r), r.equal(y), r is y, y.grad_fn._saved_result is r,
                r.grad_fn.name())
    assert run(lib) == run(torch)


def test_saved_self_of_a_non_leaf_is_that_tensor(lib):
    def run(t: Any) -> Any:
        x = t.tensor([1.0, 2.0], requires_grad=True)
        h = x * 3
        y = h.sin()
        z = h * h
        return (y.grad_fn._saved_self is h, _show(y.grad_fn._saved_self),
                z.grad_fn._saved_self is z.grad_fn._saved_other)
    assert run(lib) == run(torch)


@pytest.mark.parametrize("name", ["_saved_self", "_saved_result", "_saved_other"])
def test_saved_after_backward_is_torch_error(lib, name):
    def run(t: Any) -> Any:
        x = t.tensor([1.0, 2.0], requires_grad=True)
        w = t.tensor([3.0, 4.0], requires_grad=True)
        y = x.exp() if name == "_saved_result" else x * w
        y.sum().backward()
        return getattr(y.grad_fn, name)
    assert _error(run, lib) == _error(run, torch)


def test_saved_after_backward_with_retain_graph_is_kept(lib):
    def run(t: Any) -> Any:
        x = t.tensor([1.0, 2.0], requires_grad=True)
        y = x.pow(2)
        y.sum().backward(retain_graph=True)
        return _show(y.grad_fn._saved_self), y.grad_fn._saved_self is x, y.grad_fn._saved_exponent
    assert run(lib) == run(torch)


def test_saved_input_modified_in_place_is_torch_error(lib):
    def run(t: Any) -> Any:
        x = t.tensor([1.0, 2.0], requires_grad=True)
        h = x * 1
        y = h.sin()
        with t.no_grad():
            h.mul_(2)
        return y.grad_fn._saved_self
    assert _error(run, lib) == _error(run, torch)


def test_unknown_saved_attribute_is_attribute_error(lib):
    def run(t: Any) -> Any:
        x = t.tensor([1.0, 2.0], requires_grad=True)
        return x.sin().grad_fn._saved_foo
    got, want = _error(run, lib), _error(run, torch)
    if isinstance(lib, ModuleType):
        # in process, a name no op saves is any unknown attribute of the engine's node class,
        # whose message names that class, not the node (its `_saved_*` are properties: a
        # class `__getattr__` slowed every attribute read of every node)
        assert got == (want[0], want[1].replace("SinBackward0", "Node"))
    else:
        assert got == want


def test_missing_saved_attribute_leaves_hasattr_false(lib):
    def run(t: Any) -> Any:
        x = t.tensor([1.0, 2.0], requires_grad=True)
        return hasattr(x.sin().grad_fn, "_saved_result"), hasattr(x.exp().grad_fn, "_saved_self")
    assert run(lib) == run(torch)


# --- saved-tensor hooks ----------------------------------------------------------------------

def _hooked(t: Any, pack: Any, unpack: Any, make: Any) -> Any:
    with t.autograd.graph.saved_tensors_hooks(pack, unpack):
        return make()


def test_pack_and_unpack_run_in_torch_order(lib):
    def run(t: Any) -> Any:
        log: list[Any] = []
        a = t.tensor([1.0, 2.0], requires_grad=True)
        b = t.tensor([3.0, -1.0], requires_grad=True)
        c = t.tensor([0.5, 0.25], requires_grad=True)
        names = {id(a): "a", id(b): "b", id(c): "c"}

        def pack(x: Any) -> Any:
            log.append(("pack", names.get(id(x), "out"), t.is_grad_enabled(),
                        x.grad_fn.name() if x.grad_fn is not None else None))
            return x

        def unpack(x: Any) -> Any:
            log.append(("unpack", names.get(id(x), "out"), t.is_grad_enabled()))
            return x
        for make in (lambda: a * b, lambda: a.pow(b), lambda: a / b,
                     lambda: t.addcmul(a, b, c), lambda: a.exp(), lambda: a * 2):
            y = _hooked(t, pack, unpack, make)
            log.append("backward")
            y.sum().backward()
        return log, a.grad.tolist(), b.grad.tolist()
    assert run(lib) == run(torch)


def test_unpacked_values_are_what_backward_uses(lib):
    def run(t: Any) -> Any:
        x = t.tensor([1.0, -2.0, 0.5], requires_grad=True)
        y = _hooked(t, lambda v: v * 4, lambda v: v / 4, lambda: x.pow(2))
        y.sum().backward()
        g1 = x.grad.tolist()
        x.grad = None
        store: list[Any] = []

        def pack(v: Any) -> Any:
            store.append(v)
            return len(store) - 1
        y = _hooked(t, pack, lambda i: store[i] * 10, lambda: x.sin())
        y.sum().backward()
        return g1, x.grad.tolist()
    assert run(lib) == run(torch)


def test_unpack_with_create_graph_reaches_the_original_graph(lib):
    def run(t: Any) -> Any:
        x = t.tensor([1.0, -2.0, 0.5], requires_grad=True)
        y = _hooked(t, lambda v: v * 4, lambda v: v / 4, lambda: x.sin() * x)
        g, = t.autograd.grad(y.sum(), x, create_graph=True)
        g.sum().backward()
        return [round(v, 5) for v in g.tolist()], [round(v, 5) for v in x.grad.tolist()]
    assert run(lib) == run(torch)


def test_saved_attribute_under_hooks_is_unpacked_and_new():
    def run(t: Any) -> Any:
        log: list[str] = []

        def unpack(v: Any) -> Any:
            log.append("unpack")
            return v
        x = t.tensor([1.0, 2.0], requires_grad=True)
        y = _hooked(t, lambda v: v, unpack, lambda: x * x)
        s, o = y.grad_fn._saved_self, y.grad_fn._saved_other
        return log, s is x, s is o, _show(s), s.is_leaf
    assert run(_engine()) == run(torch)


def test_unpack_returning_a_non_tensor_is_torch_error(lib):
    def run(t: Any) -> Any:
        x = t.tensor([1.0, 2.0], requires_grad=True)
        y = _hooked(t, lambda v: 1, lambda v: 5, lambda: x.exp())
        y.sum().backward()
    assert _error(run, lib) == _error(run, torch)


def test_disable_saved_tensors_hooks_refuses_hooks_inside(lib):
    def run(t: Any) -> Any:
        with t.autograd.graph.disable_saved_tensors_hooks("no hooks here"):
            with t.autograd.graph.save_on_cpu():
                pass
    assert _error(run, lib) == _error(run, torch)


def test_disable_inside_open_hooks_is_refused(lib):
    def run(t: Any) -> Any:
        with t.autograd.graph.saved_tensors_hooks(lambda v: v, lambda v: v):
            with t.autograd.graph.disable_saved_tensors_hooks("nope"):
                pass
    assert _error(run, lib) == _error(run, torch)


def test_save_on_cpu_keeps_gradients(lib):
    def run(t: Any) -> Any:
        w = t.tensor([[0.5, -1.0], [2.0, 0.25]], requires_grad=True)
        x = t.tensor([[1.0, 2.0], [3.0, -4.0]])
        with t.autograd.graph.save_on_cpu(pin_memory=False):
            y = (x @ w).tanh()
        y.sum().backward()
        return [[round(v, 5) for v in row] for row in w.grad.tolist()]
    assert run(lib) == run(torch)


def test_raw_saved_register_hooks():
    def run(t: Any) -> Any:
        log: list[Any] = []
        x = t.tensor([1.0, -2.0], requires_grad=True)
        y = x.pow(2)
        raw = y.grad_fn._raw_saved_self

        def pack(v: Any) -> Any:
            log.append(("pack", v.tolist(), v.requires_grad))
            return v * 3

        def unpack(v: Any) -> Any:
            log.append(("unpack", v.tolist()))
            return v / 3
        raw.register_hooks(pack, unpack)
        s = y.grad_fn._saved_self
        y.sum().backward()
        return log, _show(s), x.grad.tolist(), y.grad_fn._raw_saved_result if hasattr(
            y.grad_fn, "_raw_saved_result") else "absent"
    assert run(_engine()) == run(torch)


def test_hooks_freed_after_backward(lib):
    def run(t: Any) -> Any:
        x = t.tensor([1.0, 2.0], requires_grad=True)
        y = _hooked(t, lambda v: v, lambda v: v, lambda: x.sin())
        y.sum().backward()
        return y.grad_fn._saved_self
    assert _error(run, lib) == _error(run, torch)


@pytest.mark.parametrize("op", ["exp", "sin", "tanh", "sqrt", "abs"])
@pytest.mark.parametrize("value", [[1, 0, 1], [True, False, True], [1.5, 2.0, 0.5]])
def test_unpack_of_another_dtype_is_used_as_torch_uses_it(lib, op, value):
    # an integral unpacked tensor: refused where torch makes it require grad (a saved input),
    # computed in the output's dtype where it stands for a saved output
    def run(t: Any) -> Any:
        x = t.tensor([1.0, 2.0, 3.0], requires_grad=True)
        y = _hooked(t, lambda v: 0, lambda v: t.tensor(value), lambda: getattr(x, op)())
        y.sum().backward()
        return [round(v, 5) for v in x.grad.tolist()]
    try:
        expected = run(torch)
    except RuntimeError as exc:
        assert _error(run, lib) == ("RuntimeError", str(exc))
    else:
        assert run(lib) == expected


def test_unpack_of_another_shape_is_refused_and_the_session_goes_on(lib):
    x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = _hooked(lib, lambda v: 0, lambda v: lib.ones(2), lambda: x.exp())
    with pytest.raises(RuntimeError, match=r"unpack_hook returned a tensor of shape \[2\] for a "
                                           r"saved tensor of shape \[3\]"):
        y.sum().backward()
    z = x * 2
    z.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0]


# --- Tensor._base --------------------------------------------------------------------------------

def test_base_of_views_is_the_tensor_they_view(lib):
    def run(t: Any) -> Any:
        base = t.tensor([[0.0, 1.0], [2.0, 3.0]], requires_grad=True)
        tr = base.transpose(0, 1)
        v = base.view(4)
        w = v[1:]
        d = base.detach()
        c = tr.contiguous()
        s = base.sin()
        return (base._base, tr._base is base, v._base is base, w._base is base, d._base,
                c._base, s._base, base[0]._base is base, s.unsqueeze(0)._base is s)
    assert run(lib) == run(torch)


def test_base_held_by_no_handle_is_still_the_base(lib):
    def run(t: Any) -> Any:
        v = (t.tensor([1.0, 2.0, 3.0, 4.0]) * 2).view(2, 2)  # its base: dropped here
        b = v._base
        return b.tolist(), b._base, v._base is b, b.shape
    assert run(lib) == run(torch)
