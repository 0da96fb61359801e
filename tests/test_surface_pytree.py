"""torch.utils._pytree, torch._higher_order_ops.map and torch._dynamo (gradserve.surface.pytree,
.control, .dynamo), in process and through a session, against torch 2.13."""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

tpytree = torch.utils._pytree

P = collections.namedtuple("P", "x y")

TREES = [
    5, None, [], (), {}, [1, (2, 3)], {1: [1, (2, 3)], "b": None, "a": {"x": 4}},
    collections.OrderedDict([("b", 1), ("a", [2])]), collections.deque([1, [2]], maxlen=3),
    collections.defaultdict(list, {2: 1, 1: (2,)}), P(1, [2, 3]), [P((1,), 2), {"k": ()}],
]


@pytest.mark.parametrize("tree", TREES, ids=repr)
def test_flatten_gives_torchs_leaves_spec_and_counts(gradserve_lib: Any, tree: Any):
    pytree = gradserve_lib.utils._pytree
    leaves, spec = pytree.tree_flatten(tree)
    want_leaves, want_spec = tpytree.tree_flatten(tree)
    assert leaves == want_leaves
    assert repr(spec) == repr(want_spec)
    assert (spec.num_leaves, spec.num_nodes, spec.num_children, spec.is_leaf()) == (
        want_spec.num_leaves, want_spec.num_nodes, want_spec.num_children, want_spec.is_leaf())
    rebuilt = pytree.tree_unflatten([str(v) for v in leaves], spec)
    assert rebuilt == tpytree.tree_unflatten([str(v) for v in leaves], want_spec)
    assert type(pytree.tree_unflatten(leaves, spec)) is type(tree)
    assert pytree.tree_structure(tree) == spec


def test_tensors_sizes_and_return_types_flatten_as_in_torch(gradserve_lib: Any):
    g = gradserve_lib
    pytree = g.utils._pytree
    x = g.tensor([[1.0, 5.0], [3.0, 2.0]])
    tree = {"size": x.shape, "max": x.max(1), "t": x}
    leaves, spec = pytree.tree_flatten(tree)
    tx = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
    want_leaves, want_spec = tpytree.tree_flatten({"size": tx.shape, "max": tx.max(1), "t": tx})
    assert repr(spec) == repr(want_spec)
    assert [repr(v) for v in leaves] == [repr(v) for v in want_leaves]
    back = pytree.tree_unflatten(leaves, spec)
    assert type(back["size"]) is type(x.shape) and back["size"] == x.shape
    assert repr(back["max"]) == repr(tx.max(1))


def test_map_leaves_any_only_and_is_leaf(gradserve_lib: Any):
    pytree = gradserve_lib.utils._pytree
    for mod in (pytree, tpytree):
        assert mod.tree_map(lambda a, b: a + b, [1, (2,)], [10, (20,)]) == [11, (22,)]
        assert mod.tree_map_only(int, lambda v: v * 2, [1, 2.0, "a"]) == [2, 2.0, "a"]
        assert (mod.tree_all(lambda v: v > 0, [1, 2]), mod.tree_any(lambda v: v > 1, (1,))) == (
            True, False)
        assert mod.tree_leaves([1, [2]], is_leaf=lambda v: isinstance(v, list)) == [[1, [2]]]
        assert mod.tree_map(lambda v: v, P(1, 2)) == P(1, 2)
        seen: list[Any] = []
        assert mod.tree_map_(seen.append, {"a": 1, "b": [2]}) == {"a": 1, "b": [2]}
        assert seen == [1, 2]
        assert mod.tree_map(lambda a, b: (a, b), {"a": 1, "b": 2}, {"b": 3, "a": 4}) == {
            "a": (1, 4), "b": (2, 3)}


@pytest.mark.parametrize("call", [
    lambda m: m.tree_map(lambda a, b: a, [1, 2], [1, 2, 3]),
    lambda m: m.tree_map(lambda a, b: a, {"a": 1}, {"b": 1}),
    lambda m: m.tree_map(lambda a, b: a, (1, 2), [1, 2]),
    lambda m: m.tree_map(lambda a, b: a, [1], 5),
    lambda m: m.tree_unflatten([1, 2], m.tree_structure([1])),
    lambda m: m.tree_unflatten([1], 5),
], ids=["arity", "keys", "type", "leaf", "count", "not a spec"])
def test_mismatches_raise_torchs_errors(gradserve_lib: Any, call: Any):
    with pytest.raises(Exception) as want:
        call(tpytree)
    with pytest.raises(type(want.value)) as got:
        call(gradserve_lib.utils._pytree)
    assert str(got.value) == str(want.value)


def test_register_pytree_node_makes_a_container_once(gradserve_lib: Any):
    pytree = gradserve_lib.utils._pytree

    class Pair:
        def __init__(self, a: Any, b: Any):
            self.a, self.b = a, b

    pytree.register_pytree_node(Pair, lambda p: ([p.a, p.b], None), lambda v, _: Pair(*v))
    leaves, spec = pytree.tree_flatten(Pair(1, [2]))
    assert leaves == [1, 2]
    assert repr(spec) == "TreeSpec(Pair, None, [*,\n  TreeSpec(list, None, [*])])"
    rebuilt = pytree.tree_unflatten([7, 8], spec)
    assert (rebuilt.a, rebuilt.b) == (7, [8])
    with pytest.raises(ValueError, match="is already registered as pytree node"):
        pytree.register_pytree_node(Pair, lambda p: ([], None), lambda v, _: Pair(0, 0))
    del pytree.SUPPORTED_NODES[Pair]  # one process-wide registry, as torch's


def _torch_map() -> Any:
    """functorch's `map` (torch's wheel ships functorch), or a skip where torch is absent."""
    if not HAVE_TORCH:
        pytest.skip(MISSING_REASON)
    from functorch.experimental.control_flow import map as tmap

    return tmap


def _slices(g: Any) -> tuple[Any, Any]:
    xs = np.arange(6, dtype=np.float32).reshape(3, 2) / 4
    return g.tensor(xs), g.tensor([0.5, -1.0])


def test_map_applies_over_dim_0_and_stacks_pytrees(gradserve_lib: Any):
    tmap = _torch_map()

    g = gradserve_lib
    xs, y = _slices(g)
    txs, ty = _slices(torch)
    hmap = g._higher_order_ops.map
    assert repr(hmap(lambda x, y: x + y, xs, y)) == repr(tmap(lambda x, y: x + y, txs, ty))

    def body(x: Any, y: Any) -> Any:
        return (x["a"] * y, {"s": x["b"].sum(), "n": None})

    got = hmap(body, {"a": xs, "b": xs * 2}, y)
    want = tmap(body, {"a": txs, "b": txs * 2}, ty)
    assert repr(got) == repr(want)


@pytest.mark.parametrize("args", [
    lambda t: (t.zeros(0, 2),),
    lambda t: ([t.zeros(3, 2), t.zeros(2, 2)],),
    lambda t: ([1, 2],),
], ids=["empty", "uneven", "not tensors"])
def test_map_refuses_as_torch(gradserve_lib: Any, args: Any):
    tmap = _torch_map()

    with pytest.raises(RuntimeError) as want:
        tmap(lambda x: x, *args(torch))
    with pytest.raises(RuntimeError) as got:
        gradserve_lib._higher_order_ops.map(lambda x: x, *args(gradserve_lib))
    assert str(got.value).replace("torch.Size", "") == str(want.value).replace("torch.Size", "")


def test_dynamo_decorators_run_eagerly_as_torchs(gradserve_lib: Any):
    dynamo = gradserve_lib._dynamo
    for d in (dynamo, torch._dynamo):
        def f(v: int) -> int:
            return v + 1
        assert d.assume_constant_result(f) is f and f._dynamo_marked_constant is True
        wrapped = d.disable(f)
        assert wrapped(1) == 2 and wrapped.__name__ == "f"
        assert d.disable(reason="why")(f)(2) == 3
        assert d.is_compiling() is False
        assert d.graph_break() is None


def _map_with_grad(t: Any, hmap: Any) -> list[Any]:
    xs = t.tensor(np.arange(6, dtype=np.float32).reshape(3, 2) / 4, requires_grad=True)
    y = t.tensor([0.5, -1.0], requires_grad=True)
    out, extra = hmap(lambda x, y: (x * y, {"s": (x * x).sum()}), xs, y)
    names = [type(r.grad_fn).__name__ if not hasattr(r.grad_fn, "name") else r.grad_fn.name()
             for r in (out, extra["s"])]
    (out.sum() + (extra["s"] * 2).sum()).backward()
    gx, = t.autograd.grad(hmap(lambda x: x.sin(), xs).sum(), xs, create_graph=True)
    second, = t.autograd.grad((gx * gx).sum(), xs)
    with t.no_grad():
        plain = hmap(lambda x, y: x + y, xs, y)
    return [names, repr(out), repr(extra), repr(xs.grad), repr(y.grad), gx.requires_grad,
            repr(gx.detach()), repr(second), repr(plain)]


def test_map_records_one_node_and_differentiates_as_torch(gradserve_lib: Any):
    tmap = _torch_map()

    assert _map_with_grad(gradserve_lib, gradserve_lib._higher_order_ops.map) == _map_with_grad(
        torch, tmap)
