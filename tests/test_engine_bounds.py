"""Every op's declared output bound (`out_shape` / `out_bound`, see `limits.Bound`) against what
the op really makes and allocates, and the limits refusing hostile ops before they allocate.

- Every registry op declares a bound, and on every OpInfo sample its results stay within it
  (elements, result count, bytes).
- On larger inputs, the forward's peak allocation (tracemalloc: numpy reports its buffers) stays
  within the declared bytes: the numpy temporaries are declared, not only the results.
- `TENSOR_BYTES` and `NODE_BYTES` against a fresh measurement.
- The attacks that took a server past 6 GB with ~200-byte requests are refused, naming the op,
  before they allocate; a legitimate op at the limit still runs.
"""

from __future__ import annotations

import functools
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import dispatch, errors, limits
from gradserve.engine.registry import OPS, OpDef, bind_attrs

from .opinfo import OpInfo, Sample
from .test_engine_ops import _arrays, _cases, _engine_inputs, _flags

MiB = 2**20


def _flat_bound(op: OpDef, inputs: list[Any], attrs: dict[str, Any]) -> tuple[Any, limits.Bound]:
    """(the op's flat inputs, its declared bound), as dispatch computes them."""
    flat = tuple(inputs[0]) if op.variadic else tuple(inputs)
    bound_attrs = bind_attrs(op, (), attrs)
    _, out_dtype = op.dtype_rule(flat, bound_attrs)
    return flat, op.bound(flat, bound_attrs, out_dtype)


def _as_tuple(out: Any) -> tuple[Any, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def test_every_op_declares_a_bound():
    missing = sorted(n for n, op in OPS.items() if op.out_shape is None and op.out_bound is None)
    assert not missing, f"ops without out_shape or out_bound: {', '.join(missing)}"


def test_defop_refuses_an_op_without_a_bound():
    with pytest.raises(ValueError, match="neither out_shape nor out_bound"):
        ge.registry.defop("unbounded_op_for_test", np.negative, None)
    assert "unbounded_op_for_test" not in OPS


@pytest.mark.parametrize("info, index, sample", _cases(lambda info: True))
def test_results_within_bound(info: OpInfo, index: int, sample: Sample):
    arrays = _arrays(info, index, sample, np.float32)
    e_in, _ = _engine_inputs(arrays, _flags(sample, arrays))
    op = OPS[info.name]
    _, bound = _flat_bound(op, e_in, sample.attrs)
    outs = _as_tuple(ge.apply(info.name, e_in, sample.attrs))
    sizes = [o.numel() for o in outs]
    # Every bound here is exact in elements and count (nonzero and masks count their trues).
    assert max(sizes, default=0) == bound.elements, (sizes, bound)
    assert len(outs) == bound.results, (len(outs), bound)
    nbytes = sum(np.asarray(o._data).nbytes for o in outs) + limits.TENSOR_BYTES * len(outs)
    assert nbytes <= bound.nbytes, (nbytes, bound)


@pytest.mark.parametrize("info, index, sample",
                         _cases(lambda info: OPS[info.name].bound_by_shapes))
def test_remembered_bound_reads_shapes_not_values(info: OpInfo, index: int, sample: Sample):
    """An op whose bound is remembered per shapes, dtypes and attributes (`cached_bound`):
    its bound is the same with other data and other Python scalar values, and the remembered
    one is the computed one."""
    op = OPS[info.name]
    arrays = _arrays(info, index, sample, np.float32)
    e_in, _ = _engine_inputs(arrays, _flags(sample, arrays))
    flat, bound = _flat_bound(op, e_in, sample.attrs)
    rng = np.random.default_rng(index)

    def other(a: Any) -> Any:
        if isinstance(a, ge.Tensor):
            data = np.asarray(a._data)
            if data.dtype.kind == "f":
                data = (rng.standard_normal(data.shape) * 100).astype(data.dtype)
            elif data.dtype.kind in "iu":
                data = rng.integers(-50, 50, data.shape).astype(data.dtype)
            else:
                data = ~data
            return ge.tensor(data)
        if type(a) is float:
            return a * -3.5 + 1.25
        if type(a) is int and type(a) is not bool:
            return a * 3 + 7
        return a

    changed = tuple(other(a) for a in flat)
    bound_attrs = bind_attrs(op, (), sample.attrs)
    _, out_dtype = op.dtype_rule(flat, bound_attrs)
    assert op.bound(changed, bound_attrs, out_dtype) == bound
    op.bounds.clear()
    assert op.cached_bound(flat, bound_attrs, out_dtype) == bound
    assert op.cached_bound(changed, bound_attrs, out_dtype) == bound  # remembered


def test_remembered_bounds_are_still_checked_and_capped():
    """A remembered bound is checked against each op's limits as it runs, and an op remembers
    at most MAX_CACHED_BOUNDS shapes (wire shapes cannot grow it)."""
    from gradserve.engine.registry import MAX_CACHED_BOUNDS

    x = ge.tensor(np.ones((64, 64), np.float32))
    ge.apply("mul", [x, 2.0])
    with limits.allocation_limit(10_000), limits.byte_budget(64 * MiB):
        ge.apply("mul", [x, 2.0])  # remembers the bound
        with limits.allocation_limit(4095), pytest.raises(
                errors.AllocationLimitError, match=r"^mul\(\) result"):
            ge.apply("mul", [x, 2.0])
    with limits.byte_budget(4096 * 4), pytest.raises(errors.BudgetExceededError,
                                                     match=r"^mul\(\) result"):
        ge.apply("mul", [x, 2.0])
    op = OPS["neg"]
    with limits.byte_budget(64 * MiB):
        for n in range(1, MAX_CACHED_BOUNDS + 50):
            ge.apply("neg", [ge.tensor(np.ones(n, np.float32))])
            assert len(op.bounds) <= MAX_CACHED_BOUNDS


def test_within_is_byte_budget_as_a_call():
    """`limits.within(n, fn, *args)` gives `fn` what `with byte_budget(n):` gives the work
    inside: the smaller of its limit and the enclosing budget's left, the same refusals, and
    what it spent charged to the enclosing budget afterwards (also when it raised)."""
    x = ge.tensor(np.ones(100, np.float32))  # sin: 400 bytes of data + TENSOR_BYTES

    def sin_twice() -> int | None:
        ge.apply("sin", [x])
        ge.apply("sin", [x])
        return limits.current().bytes_left

    def scoped(n: int | None) -> int | None:
        with limits.byte_budget(n):
            return sin_twice()

    one = 400 + limits.TENSOR_BYTES
    for outer in (None, 10 * one, 3 * one, one):
        for inner in (None, 10 * one, 2 * one, one):
            seen = []
            for enter in (lambda n: limits.within(n, sin_twice), scoped):
                with limits.byte_budget(outer):
                    try:
                        left_inside = enter(inner)
                    except errors.BudgetExceededError as exc:
                        left_inside = str(exc)
                    seen.append((left_inside, *_budget_state()))
            assert seen[0] == seen[1], (outer, inner)
            assert _budget_state() == (None, False)
    assert limits.within(None, sin_twice) is None
    with limits.allocation_limit(1000):  # the other limits' state is left as it was
        with pytest.raises(errors.BudgetExceededError):
            limits.within(one, sin_twice)
        assert _budget_state() == (None, True)
    assert _budget_state() == (None, False)


@pytest.mark.parametrize("grad", [True, False])
def test_the_0d_path_charges_every_op_and_refuses_the_next(grad: bool):
    """A chain of 0-d ops (dispatch.run_scalar, which admits the op's remembered bound without
    `_admit` while it fits) is charged each op's declared bound and, when recorded, its graph
    node; runs the interrupt check once per op, the refused one included; and is refused at
    the first op that does not fit: op n + 1 of a budget for n, whether its result or only its
    node is too large for what is left."""
    mul = OPS["mul"]
    x = ge.tensor(0.5, requires_grad=grad)
    declared = mul.bound((x, 1.001), {}, x.dtype)
    with limits.byte_budget(MiB):
        dispatch.run(mul, (x, 1.001), {})  # the dtype answer and the 0-d bound remembered
    assert type(x._data) is not np.ndarray and mul.scalar_bounds.get(x.dtype) == declared
    per_op = declared.nbytes + (limits.NODE_BYTES if grad else 0)
    for n in (1, 4):
        for extra in (0, declared.nbytes - 1, declared.nbytes, per_op - 1):
            checks: list[int] = []
            y = x
            with limits.interrupt(functools.partial(checks.append, 1)), \
                    limits.byte_budget(n * per_op + extra) as budget:
                for _ in range(n):
                    y = dispatch.run(mul, (y, 1.001), {})
                assert budget.left() == extra and checks == [1] * n
                if extra < per_op:
                    what = "result" if extra < declared.nbytes else "graph node"
                    with pytest.raises(errors.BudgetExceededError,
                                       match=rf"^mul\(\) {what} needs"):
                        dispatch.run(mul, (y, 1.001), {})
                    assert checks == [1] * (n + 1)
    with limits.allocation_limit(0), pytest.raises(errors.AllocationLimitError,
                                                   match=r"^mul\(\) result"):
        dispatch.run(mul, (x, 1.001), {})
    stop = RuntimeError("deadline")

    def expired() -> None:
        raise stop

    with limits.interrupt(expired), pytest.raises(RuntimeError) as exc_info:
        dispatch.run(mul, (x, 1.001), {})
    assert exc_info.value is stop


def test_bounds_are_per_thread():
    """A thread's bounds are its own `Limits`: ops on another thread run unbounded meanwhile,
    and that thread's bounds are set and restored without touching this one's."""
    import threading

    x = ge.tensor(np.ones(100, np.float32))
    seen: list[Any] = []

    def other() -> None:
        seen.append((limits.current(), limits._local.bounded))
        ge.apply("sin", [x])  # not refused: this thread has no budget
        with limits.byte_budget(1):
            seen.append(_budget_state())
            with pytest.raises(errors.BudgetExceededError):
                ge.apply("sin", [x])
        seen.append(_budget_state())

    with limits.byte_budget(1):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert _budget_state() == (1, True)
    mine = limits.current()
    assert seen[0][0] is not mine and seen[0][1] is None
    assert seen[1:] == [(1, True), (None, False)]


def _budget_state() -> tuple[int | None, bool]:
    """The thread's byte budget left and whether any bound is active, after checking that what
    an op reads agrees: the thread's bounds are `bounded` and in `ENGAGED` exactly while
    active."""
    lim = limits.current()
    assert limits._local.bounded is (lim if lim.active else None)
    assert (lim in limits.ENGAGED) is lim.active
    return lim.bytes_left, lim.active


# Values for the required attributes of elementwise ops (to_dtype's dtype, fill's value).
_SAMPLE_ATTRS = {"dtype": "float64", "value": 2.0}


def test_scalar_bounds_of_elementwise_ops_are_their_declared_bounds():
    """dispatch remembers an elementwise op's bound for 0-d inputs by result dtype alone
    (`OpDef.scalar_bounds`: ufuncs and ops shaped by a `keeps_0d` rule): for every such op and
    every dtype pair of 0-d inputs (arrays, numpy scalars as ops keep them, Python scalars),
    the declared bound is that one, and a remembered bound is still checked against each op's
    limits."""
    samples = [np.float32(1.5), np.float64(1.5), np.int64(2), np.int32(2), np.bool_(True)]

    def tensor(v: Any, kind: str) -> ge.Tensor:  # a 0-d array, or a numpy scalar as ops keep
        return ge.tensor(np.array(v)) if kind == "array" else ge.Tensor._make(v)

    checked: set[str] = set()
    for op in OPS.values():
        if op.scalar_bounds is None:
            continue
        attrs = bind_attrs(op, (), {a.name: _SAMPLE_ATTRS[a.name] for a in op.attrs
                                    if a.required})
        for kind in ("array", "scalar"):
            for first in samples:
                others = [tensor(v, kind) for v in samples] + [2.0, 3, True]
                for other in others if len(op.inputs) > 1 else [None]:
                    flat = (tensor(first, kind),) + (
                        () if other is None else (other,) * (len(op.inputs) - 1))
                    try:
                        _, out_dtype = op.dtype_rule(flat, attrs)
                    except errors.EngineError:  # a dtype the op refuses
                        continue
                    op.scalar_bounds.clear()
                    declared = op.bound(flat, attrs, out_dtype)
                    assert declared is not None and declared.elements == 1
                    with limits.byte_budget(MiB):
                        try:
                            dispatch.run(op, flat, dict(attrs))
                        except errors.EngineError:  # refused by the forward (not the bound)
                            continue
                    assert op.scalar_bounds == {out_dtype: declared}, op.name
                    checked.add(op.name)
    assert len(checked) > 50 and {"sin", "exp", "where", "to_dtype", "mul"} <= checked
    x = ge.tensor(np.float32(2.0))
    with limits.byte_budget(MiB):
        ge.apply("mul", [x, 2.0])  # remembered
    with limits.byte_budget(4), pytest.raises(errors.BudgetExceededError,
                                              match=r"^mul\(\) result"):
        ge.apply("mul", [x, 2.0])
    with limits.allocation_limit(0), pytest.raises(errors.AllocationLimitError,
                                                   match=r"^sin\(\) result"):
        ge.apply("sin", [x])
    OPS["mul"].scalar_bounds.clear()
    with limits.byte_budget(MiB):  # a one-element tensor with a dimension is not 0-d
        ge.apply("mul", [ge.tensor(np.ones(1, np.float32)), 2.0])
    assert OPS["mul"].scalar_bounds == {}


# --- peak allocation on larger inputs ------------------------------------------------------------

# Fixed-size scratch (numpy's reduction buffers, index tuples, Python frames) below this is
# not what the bounds are about; everything here allocates megabytes. numpy's iterator buffer
# holds np.getbufsize() elements of up to 8 bytes, and numpy 2.2 (the last for CPython 3.10)
# takes one even for a same-dtype int64 sum.
_SLACK = 64 * 1024 + np.getbufsize() * 8
_N = (256, 1024)


def _big_cases() -> dict[str, tuple[str, Callable[[], list[Any]], dict[str, Any]]]:
    rng = np.random.default_rng(0)

    def f32(*shape: int) -> Any:
        return ge.tensor(rng.uniform(0.1, 0.9, shape).astype(np.float32))

    def f64(*shape: int) -> Any:
        return ge.tensor(rng.uniform(0.1, 0.9, shape))

    def ints(high: int, *shape: int) -> Any:
        return ge.tensor(rng.integers(0, high, shape))

    x, t = f32(*_N), f32(*_N)
    mask = ge.tensor(np.asarray(x._data) > 0.5)
    labels = ints(1024, 256)
    conv = {"stride": (1, 1), "padding": (1, 1), "dilation": (1, 1), "groups": 1}
    cases: dict[str, tuple[str, Callable[[], list[Any]], dict[str, Any]]] = {}
    for name in ("sin", "rsqrt", "sigmoid", "relu", "leaky_relu", "elu", "erf", "gelu", "silu",
                 "softplus", "round", "clone"):
        cases[name] = (name, lambda: [x], {})
    cases.update({
        "gelu_tanh": ("gelu", lambda: [x], {"approximate": "tanh"}),
        "add_alpha": ("add", lambda: [x, t], {"alpha": 2.0}),
        "add_scalar": ("add_scalar", lambda: [x], {"other": 2.5}),
        "mul_scalar": ("mul_scalar", lambda: [x], {"other": 2.5}),
        "div_scalar": ("div_scalar", lambda: [x], {"other": 3}),
        "prelu_kernel": ("_prelu_kernel", lambda: [x, t], {}),
        "clamp": ("clamp", lambda: [x, 0.2, 0.8], {}),
        "where": ("where", lambda: [mask, x, t], {}),
        "to_float64": ("to_dtype", lambda: [x], {"dtype": ge.float64}),
        "sum_int": ("sum", lambda: [ints(5, *_N)], {}),
        "var": ("var", lambda: [x.t()], {"dim": 1}),  # (a transposed view: numpy's path)
        "norm_p3": ("norm", lambda: [x], {"p": 3.0}),
        "logsumexp": ("logsumexp", lambda: [x], {"dim": 1}),
        "cumsum_int": ("cumsum", lambda: [ints(5, *_N)], {"dim": 1}),
        "max_dim": ("max_dim", lambda: [x], {"dim": 0}),
        "argmin": ("argmin", lambda: [x], {"dim": 0}),
        "softmax": ("softmax", lambda: [x], {"dim": 1}),
        "log_softmax": ("log_softmax", lambda: [x], {"dim": 1}),
        "mse_loss": ("mse_loss", lambda: [x, t], {"reduction": "none"}),
        "bce": ("binary_cross_entropy", lambda: [x, t, None], {}),
        "bce_logits": ("binary_cross_entropy_with_logits", lambda: [x, t, None, None], {}),
        "nll_loss_3d": ("nll_loss", lambda: [f32(64, 16, 256), ints(16, 64, 256), None], {}),
        "nll_loss_backward": ("nll_loss_backward", lambda: [ge.tensor(np.float32(1)), labels,
                                                            None], {"shape": _N}),
        "cross_entropy": ("cross_entropy", lambda: [x, labels, None], {"label_smoothing": 0.1}),
        "cross_entropy_probs": ("cross_entropy", lambda: [x, t, None], {}),
        "einsum_chain": ("einsum", lambda: [[x, f32(1024, 256), x]], {"equation": "ij,jk,kl->il"}),
        "nonzero": ("nonzero", lambda: [x], {}),
        "index_mask": ("index", lambda: [x, mask], {}),
        "index_int": ("index", lambda: [x, ints(256, 1, 1000)], {}),
        "take_transposed": ("take", lambda: [ge.apply("t", [x]), ints(1000, 100000)], {}),
        "put": ("put", lambda: [x, ints(1000, 100000), 1.0], {}),
        "gather_backward": ("gather_backward", lambda: [x, ints(1024, *_N)],
                            {"input_sizes": _N, "dim": 1}),
        "index_select": ("index_select", lambda: [x, ints(256, 1000)], {"dim": 0}),
        "arange_float": ("arange", lambda: [], {"start": 0.0, "end": 262144.0}),
        "linspace": ("linspace", lambda: [], {"start": 0.0, "end": 1.0, "steps": 262144}),
        "full": ("full", lambda: [], {"size": _N, "fill_value": 1.0}),
        "randint": ("randint", lambda: [], {"low": 0, "high": 5, "size": _N}),
        # the random ops (torch's values: engine/distributions.py)
        "rand": ("rand", lambda: [], {"size": _N}),
        "rand_float64": ("rand", lambda: [], {"size": _N, "dtype": ge.float64}),
        "randn": ("randn", lambda: [], {"size": _N}),
        "randn_odd": ("randn", lambda: [], {"size": (1023, 255)}),
        "randn_float64": ("randn", lambda: [], {"size": _N, "dtype": ge.float64}),
        "randint_wide": ("randint", lambda: [], {"low": 0, "high": 2 ** 40, "size": _N}),
        "rand_like_transposed": ("rand_like", lambda: [ge.apply("t", [x])], {}),
        "randn_like": ("randn_like", lambda: [x], {}),
        "randint_like": ("randint_like", lambda: [x], {"low": -3, "high": 3}),
        "randperm": ("randperm", lambda: [], {"n": 262144}),
        "normal_tensors": ("normal_sample", lambda: [x, t], {}),
        "normal_numbers": ("normal_sample", lambda: [1.0, 2.0], {"size": _N}),
        "bernoulli_tensor": ("bernoulli", lambda: [t, None], {}),
        "bernoulli_scalar": ("bernoulli", lambda: [x, 0.3], {}),
        "uniform": ("uniform", lambda: [x], {"from": -1.0, "to": 2.0}),
        "normal_fill": ("normal", lambda: [x], {"mean": 1.0, "std": 2.0}),
        "normal_strided": ("normal", lambda: [ge.apply("t", [x])], {}),
        "random_fill": ("random", lambda: [x], {"low": 0, "high": 100}),
        "exponential": ("exponential", lambda: [x], {"lambd": 2.0}),
        "reshape_copy": ("reshape", lambda: [ge.apply("t", [x])], {"shape": (-1,)}),
        "repeat": ("repeat", lambda: [x], {"repeats": (2, 1)}),
        # convolution: the exact (oneDNN order) path within gemm.EXACT_WORK, numpy's beyond
        "conv_exact": ("convolution", lambda: [f32(4, 8, 20, 20), f32(8, 8, 3, 3), f32(8)], conv),
        "conv_exact_input_grad": ("convolution_backward_input",
                                  lambda: [f32(4, 8, 20, 20), f32(8, 8, 3, 3)],
                                  {"input_shape": (4, 8, 20, 20), **conv}),
        "conv_exact_weight_grad": ("convolution_backward_weight",
                                   lambda: [f32(4, 8, 20, 20), f32(4, 8, 20, 20)],
                                   {"weight_shape": (8, 8, 3, 3), **conv}),
        "conv_numpy": ("convolution", lambda: [f32(8, 16, 32, 32), f32(16, 8, 3, 3), None],
                       {**conv, "groups": 2}),
        "conv_numpy_input_grad": ("convolution_backward_input",
                                  lambda: [f32(8, 16, 32, 32), f32(16, 16, 3, 3)],
                                  {"input_shape": (8, 16, 32, 32), **conv}),
        # few input channels, many output channels (an MNIST net's first layer): the forward's
        # and the weight gradient's windows are of the input, the input gradient's of either
        "conv_widening": ("convolution", lambda: [f32(16, 1, 28, 28), f32(32, 1, 5, 5), f32(32)],
                          {**conv, "padding": (2, 2)}),
        "conv_widening_numpy": ("convolution", lambda: [f64(16, 2, 28, 28), f64(32, 1, 5, 5),
                                                        None],
                                {**conv, "padding": (2, 2), "groups": 2}),
        "conv_widening_input_grad": ("convolution_backward_input",
                                     lambda: [f32(16, 32, 28, 28), f32(32, 1, 5, 5)],
                                     {"input_shape": (16, 1, 28, 28), **conv,
                                      "padding": (2, 2)}),
        "conv_widening_weight_grad": ("convolution_backward_weight",
                                      lambda: [f32(16, 32, 28, 28), f32(16, 1, 28, 28)],
                                      {"weight_shape": (32, 1, 5, 5), **conv,
                                       "padding": (2, 2)}),
    })
    return cases


_BIG = _big_cases()


@pytest.mark.parametrize("case", sorted(_BIG))
def test_peak_allocation_within_bound(case: str):
    name, make, attrs = _BIG[case]
    inputs = make()
    op = OPS[name]
    flat, bound = _flat_bound(op, inputs, attrs)
    compute = op.dtype_rule(flat, bind_attrs(op, (), attrs))[0]
    declared = bound.nbytes + (dispatch._cast_bytes(flat, compute) if compute else 0)
    with ge.no_grad():
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            out = ge.apply(name, inputs, attrs)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
    del out
    assert peak > MiB // 4, f"{case}: too small to tell ({peak} bytes)"
    assert peak <= declared + _SLACK, f"{case}: peak {peak} bytes, declared {declared}"


# --- the fixed costs ------------------------------------------------------------------------------

_COUNT = 10_000


def _retained(make: Callable[[], Any]) -> float:
    """Bytes per item that `make()` allocates and keeps (tracemalloc), over `_COUNT` items."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = make()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del keep
    return (after - before) / _COUNT


def _tensors() -> Any:
    x = ge.tensor(1.5)
    with ge.no_grad():
        return [x * 1.001 for _ in range(_COUNT)]


def _chain() -> Any:
    y = ge.tensor(1.5, requires_grad=True)
    for _ in range(_COUNT):
        y = y.sin()
    return y


def test_tensor_and_node_bytes_match_a_measurement():
    tensor = _retained(_tensors)
    node = _retained(_chain) - tensor
    # Honest both ways: never below what they stand for, and not so far above that a
    # budget refuses work it could hold.
    assert tensor <= limits.TENSOR_BYTES <= 2 * tensor, tensor
    assert node <= limits.NODE_BYTES <= 2 * node, node


# --- the attacks ----------------------------------------------------------------------------------

def _expand(value: Any, size: list[int]) -> Any:
    return ge.apply("expand", [ge.tensor(value)], {"size": size})


# (op, inputs, attrs): each is a few hundred bytes on the wire and gigabytes unbounded.
ATTACKS = {
    "nonzero": lambda: ("nonzero", [_expand(True, [2] * 26)], {}),  # 64 Mi x 26 int64
    "index_select": lambda: ("index_select", [_expand(1.0, [1, 16384]), _expand(0, [131072])],
                             {"dim": 0}),  # 2**31 elements
    "unbind": lambda: ("unbind", [_expand(1.0, [2**26])], {}),  # 64 Mi tensor objects
}
LIMITS = {
    "elements_and_bytes": (4 * MiB, 64 * MiB),
    "bytes_only": (None, 64 * MiB),
}


def _refused_peak(run: Callable[[], Any], match: str) -> int:
    """Run `run` expecting AllocationLimitError naming `match`; the tracemalloc peak."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        with pytest.raises(errors.AllocationLimitError, match=match):
            run()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("limit", sorted(LIMITS))
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_attack_refused_before_allocating(attack: str, limit: str):
    name, inputs, attrs = ATTACKS[attack]()  # broadcast views: no data of their own

    def run() -> Any:
        max_elements, max_bytes = LIMITS[limit]
        with limits.allocation_limit(max_elements), limits.byte_budget(max_bytes):
            return ge.apply(name, inputs, attrs)

    assert _refused_peak(run, rf"^{name}\(\) result") < 2 * MiB


@pytest.mark.parametrize("limit", sorted(LIMITS))
def test_attack_built_inside_the_limits(limit: str):
    # The whole request under the limits: expand (a 4 Mi-element view) passes, nonzero (its
    # 4 Mi x 22 int64 result peaked at 1.37 GB unbounded) is refused.
    def run() -> Any:
        max_elements, max_bytes = LIMITS[limit]
        with limits.allocation_limit(max_elements), limits.byte_budget(max_bytes):
            return ge.apply("nonzero", [_expand(True, [2] * 22)])

    assert _refused_peak(run, r"^nonzero\(\) result") < 2 * MiB


def test_legit_ops_at_the_limit_still_run():
    with limits.allocation_limit(4 * MiB), limits.byte_budget(64 * MiB):
        rows = ge.apply("index_select", [_expand(1.0, [1, 4096]), _expand(0, [1024])], {"dim": 0})
        assert rows.shape == (1024, 4096)  # exactly 4 Mi elements: at the limit, not over
        found = ge.apply("nonzero", [_expand(True, [2] * 10)])
        assert found.shape == (1024, 10)
        parts = ge.apply("unbind", [_expand(1.0, [4096])])
        assert len(parts) == 4096
        with pytest.raises(errors.AllocationLimitError, match=r"^index_select\(\) result"):
            ge.apply("index_select", [_expand(1.0, [1, 4096]), _expand(0, [1025])], {"dim": 0})


def test_more_results_than_the_element_limit_are_refused():
    parts = _expand(1.0, [1025])
    with limits.allocation_limit(1024), pytest.raises(errors.AllocationLimitError,
                                                      match=r"unbind\(\) result: 1025 results"):
        ge.apply("unbind", [parts])


def test_bounds_of_huge_shapes_are_quick():
    # Judged from the shapes alone (nonzero counts a stride-0 view): no per-element Python loop.
    import time

    inputs = [
        ("unbind", [_expand(1.0, [2**26])], {}),
        ("split", [_expand(1.0, [2**26])], {"split_size": 1}),
        ("index_select", [_expand(1.0, [1, 16384]), _expand(0, [131072])], {"dim": 0}),
        ("sum", [_expand(1.0, [2] * 26)], {"dim": 3}),
    ]
    for name, args, attrs in inputs:
        start = time.perf_counter()
        _flat_bound(OPS[name], args, attrs)
        assert time.perf_counter() - start < 0.01, name


def test_embedding_and_its_gradient_are_bounded_before_they_allocate():
    # a few hundred bytes on the wire each: 2**31 picked elements; 2**40 gradient rows
    with limits.allocation_limit(4 * MiB), limits.byte_budget(64 * MiB):
        with pytest.raises(errors.AllocationLimitError, match=r"^embedding\(\) result"):
            ge.apply("embedding", [_expand(1.0, [1, 16384]), _expand(0, [131072])])
        with pytest.raises(errors.AllocationLimitError,
                           match=r"^embedding_dense_backward\(\) result"):
            ge.apply("embedding_dense_backward", [_expand(1.0, [2, 3]), ge.tensor([0, 1])],
                     {"num_weights": 2**40})
        rows = ge.apply("embedding", [_expand(1.0, [1, 4096]), _expand(0, [1024])])
        assert rows.shape == (1024, 4096)  # exactly at the limit: runs
