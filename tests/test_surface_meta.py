"""`gradserve.surface.meta.infer` against the engine's real results, and its promotion rules
against torch.

- For every op with a rule, on every OpInfo sample (`tests/opinfo_*.py`), with grad mode on and
  off: `infer` answers, and its answer (each result's shape, dtype, requires_grad) is exactly the
  engine's.
- The same samples in other dtypes (float64, int64, int32, bool, one input integral) and without
  requires_grad, and calls the engine refuses: where the engine raises, `infer` returns None
  (unless the refusal depends on the values, which `infer` does not see); where `infer`
  answers, the answer is the engine's.
- `RULES` and `WITHOUT_RULES` together list every registry op, once.
- Promotion (tensors with dims, 0-dim tensors, Python scalars; bool, integral, floating) against
  torch itself.
- `node_names.node_name` (the grad_fn name of ops torch names by their arguments) against the
  engine's node on every OpInfo sample of those ops; its rules and exceptions list every
  registry op with several node names, once.
"""

from __future__ import annotations

import itertools
import operator
import warnings
from typing import Any, NamedTuple

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine.registry import OPS
from gradserve.surface import set_grad_enabled
from gradserve.surface.compat import short_node_name
from gradserve.surface.meta import DTYPE_NAMES, RULES, VIEW_OPS, Meta, infer
from gradserve.surface.node_names import NODE_RULES, node_name
from tests.reference import torch

from .opinfo import OpInfo, Sample
from .test_engine_ops import _arrays, _cases, _engine_inputs, _flags

# Registry ops `infer` has no rule for (the server describes their results), by reason.
WITHOUT_RULES = {
    # random draws with range checks against the dtype, or in place on their target
    "randint", "randperm", "normal_sample", "randint_like", "uniform", "normal", "random",
    "exponential", "geometric", "cauchy", "log_normal", "multinomial",
    # indexing: shapes from index values (nonzero, boolean masks), index gradients, rare ops
    "select_backward", "slice_backward", "alias", "index_backward", "nonzero", "take",
    "put", "gather_backward",
    # einsum's equation, the loss gradients the engine records for double backward
    "einsum", "nll_loss_backward", "label_smoothing_loss", "label_smoothing_loss_backward",
    # rarely recorded by programs
    "sum_to_size",
    # one LSTM layer-direction: nn.LSTM calls it only where the server says it computes it
    "mkldnn_rnn_layer",
    # added after the rules (the index dtype and bounds checks are the engine's): the server
    # describes them
    "embedding", "embedding_dense_backward",
    # the convolution op and its gradients (surface/nn_conv.py checks the shapes first)
    "convolution", "convolution_backward_input", "convolution_backward_weight",
    "convolution_backward_bias", "convolution_transpose",
    # recorded only with create_graph: the server describes it
    "upsample_nearest_backward",
    # masked_select's size is the mask's count; scatter's index checks are the engine's; the
    # softmax gradients are recorded only with create_graph: the server describes them
    "masked_select", "scatter", "scatter_add", "softmax_backward_data",
    "log_softmax_backward_data",
    # sizes from values (repeat_interleave's repeats, unique's groups); cdist's ops (the surface
    # spelling reads the shapes first) and diagonal's gradient: the server describes them
    "repeat_interleave", "_unique2", "unique_dim", "_cdist_forward", "_cdist_backward",
    "_euclidean_dist", "diagonal_backward", "bincount",
}

# Refusals that depend on the tensors' values, not their shapes, dtypes or attributes: `infer`
# cannot see them (the server reports them when it runs the op).
VALUE_ERRORS = ("ZeroDivisionError", "Integers to negative integer powers",
                "all elements of input should be between 0 and 1", "is out of bounds",
                "Expected p_in >= 0", "index out of range in self",
                "INDICES element is out of DATA bounds")


class Desc(NamedTuple):
    """What the client knows of a tensor: what `infer` reads."""

    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool
    contiguous: bool | None = None


def _describe(v: Any) -> Any:
    if isinstance(v, ge.Tensor):
        return Desc(tuple(v.shape), v.dtype.name, v.requires_grad, v.is_contiguous() or None)
    if isinstance(v, list):
        return [_describe(e) for e in v]
    return v


def _engine(name: str, inputs: list[Any], attrs: dict[str, Any],
            grad: bool) -> list[Meta] | Exception:
    """The engine's results described, or the exception it raised."""
    with set_grad_enabled(grad), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # var's degrees-of-freedom warning is not a refusal
        try:
            out = ge.apply(name, inputs, attrs)
        except Exception as exc:  # noqa: BLE001 - every refusal counts
            return exc
    outs = out if isinstance(out, tuple) else (out,)
    return [Meta(tuple(t.shape), t.dtype.name, t.requires_grad, t.is_contiguous())
            for t in outs]


def _check(name: str, inputs: list[Any], attrs: dict[str, Any], grad: bool, *,
           must_answer: bool) -> Meta | None:
    """Compare `infer` with the engine on one call; returns infer's first result."""
    want = _engine(name, inputs, attrs, grad)
    got = infer(name, _describe(inputs), attrs, grad)
    what = f"{name}{tuple(_describe(inputs))} {attrs} grad={grad}"
    if isinstance(want, Exception):
        if got is not None:
            assert any(m in str(want) for m in VALUE_ERRORS), (
                f"{what}: infer answered {got}, the engine raised {type(want).__name__}: {want}")
        return None
    if must_answer:
        assert got is not None, f"{what}: no answer; the engine gives {want}"
    if got is not None:
        assert [m[:3] for m in got] == [m[:3] for m in want], (
            f"{what}: infer {got} != engine {want}")
        # a layout inferred contiguous is; an unknown one may be either (meta_layout)
        assert all(g.contiguous is None or (g.contiguous is True and w.contiguous)
                   for g, w in zip(got, want)), f"{what}: infer {got}, engine {want}"
    return got[0] if got else None


def _with_rules(info: OpInfo) -> bool:
    return info.name in RULES


def _shaped_by_values(name: str, inputs: list[Any]) -> bool:
    """Calls whose result shape depends on the values, where `infer` must not answer:
    indexing by a bool mask (its shape is the count of true elements)."""
    return name == "index" and inputs[1].dtype.name == "bool"


def _layout_decides(name: str, inputs: list[Any], grad: bool) -> bool:
    """Calls whose requires_grad depends on whether the engine's result is a view, where `infer`
    need not answer: a view op under no_grad() of an input that requires grad (a view requires
    grad, as torch's; a copy, as reshape's of a transpose, or an empty or 0-d result, which
    numpy does not make a view, does not)."""
    return not grad and name in VIEW_OPS and inputs[0].requires_grad


@pytest.mark.parametrize("info, index, sample", _cases(_with_rules))
@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
def test_rule_matches_engine(info: OpInfo, index: int, sample: Sample, grad: bool):
    for dtype in (np.float32, np.float64):
        arrays = _arrays(info, index, sample, dtype)
        inputs, _ = _engine_inputs(arrays, _flags(sample, arrays))
        ge.manual_seed(index)
        by_values = _shaped_by_values(info.name, inputs)
        got = _check(info.name, inputs, sample.attrs, grad,
                     must_answer=not by_values and not _layout_decides(info.name, inputs, grad))
        assert not (by_values and got), "an answer for a shape that depends on the values"


def _convert(a: Any, how: str) -> Any:
    """A floating input made `how` ("int64", "int32", "bool"); other inputs as they are."""
    if isinstance(a, list):
        return [_convert(e, how) for e in a]
    if not (isinstance(a, np.ndarray) and a.dtype.kind == "f"):
        return a
    if how == "bool":
        return np.asarray(a > 0)
    a = np.nan_to_num(a, nan=0.0, posinf=3.0, neginf=-3.0)
    return np.asarray((np.abs(np.round(a * 2)) + 1).astype(how))  # >= 1: no division by zero


def _variants(arrays: list[Any]) -> list[list[Any]]:
    out = [[_convert(a, how) for a in arrays] for how in ("int64", "int32", "bool")]
    floating = [i for i, a in enumerate(arrays)
                if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    if len(floating) > 1:  # one input integral, the others floating: promotion across kinds
        mixed = list(arrays)
        mixed[floating[0]] = _convert(arrays[floating[0]], "int64")
        out.append(mixed)
        mixed = list(arrays)
        mixed[floating[-1]] = np.asarray(arrays[floating[-1]].astype(np.float64))
        out.append(mixed)
    return out


@pytest.mark.parametrize("info, index, sample", _cases(_with_rules))
def test_rule_on_other_dtypes_is_exact_or_none(info: OpInfo, index: int, sample: Sample):
    arrays = _arrays(info, index, sample, np.float32)
    for variant in _variants(arrays):
        for grad in (True, False):
            inputs, _ = _engine_inputs(variant, _flags(sample, variant))
            _check(info.name, inputs, sample.attrs, grad, must_answer=False)
    off = [[False] * len(a) if isinstance(a, list) else False for a in arrays]
    plain, _ = _engine_inputs(arrays, off)
    _check(info.name, plain, sample.attrs, True,
           must_answer=not _shaped_by_values(info.name, plain))


def _t(shape: tuple[int, ...], dtype: str = "float32", rg: bool = False) -> Any:
    return ge.tensor(np.ones(shape, dtype=dtype), requires_grad=rg)


# Calls the engine refuses for their shapes, dtypes or attributes: `infer` returns None.
REFUSED = [
    ("add", [(2, 3), (4,)], {}),
    ("add", [(2, 3), (2, 3)], {"beta": 1}),
    ("clamp", [("uint8", (2,)), 300, None], {}),  # (add wraps such an int, as torch)
    ("add", [("int64", (2,)), 2**63], {}),
    ("clamp", [("int32", (2,)), -(2**40), None], {}),
    ("sub", [("bool", (2,)), ("bool", (2,))], {}),
    ("neg", [("bool", (2,))], {}),
    ("pow", [("int64", (2,)), -1], {}),
    ("clamp", [(2,), None, None], {}),
    ("where", [("float32", (2,)), (2,), (2,)], {}),
    ("where", [("bool", (3,)), (2,), (2,)], {}),
    ("sum", [(2, 3)], {"dim": 2}),
    ("sum", [(2, 3)], {"dim": (0, -2)}),
    ("sum", [(2, 3)], {"keepdim": 1}),
    ("mean", [("int64", (2, 3))], {}),
    ("mean", [(2, 3)], {"dim": -3}),
    ("prod", [(2, 3)], {"dim": 3}),
    ("max", [(0, 3)], {}),
    ("amax", [(0, 3)], {"dim": 0}),
    ("amax", [(0, 3)], {}),
    ("max_dim", [(2, 3)], {"dim": 2}),
    ("max_dim", [(2, 3)], {}),
    ("argmax", [("bool", (2, 3))], {}),
    ("argmax", [(0,)], {}),
    ("var", [("int64", (2, 3))], {}),
    ("var", [(2, 3)], {"unbiased": True, "correction": 0}),
    ("logsumexp", [(2, 3)], {}),
    ("norm", [("int64", (3,))], {}),
    ("cumsum", [(2, 3)], {"dim": 2}),
    ("all", [(2, 3)], {"dim": (1, 1)}),
    ("reshape", [(2, 3)], {"shape": (4,)}),
    ("reshape", [(2, 3)], {"shape": (-1, -1)}),
    ("reshape", [(2, 0)], {"shape": (0, -1)}),
    ("reshape", [(2, 3)], {"shape": (-2, -3)}),
    ("expand", [(2, 3)], {"size": (3, 3)}),
    ("expand", [(2, 3)], {"size": (3,)}),
    ("expand", [(3,)], {"size": (-1, 3)}),
    ("flatten", [(2, 3, 4)], {"start_dim": 2, "end_dim": 1}),
    ("squeeze", [(2, 1)], {"dim": 2}),
    ("unsqueeze", [(2, 3)], {"dim": 3}),
    ("permute", [(2, 3)], {"dims": (0, 0)}),
    ("permute", [(2, 3)], {"dims": (0,)}),
    ("transpose", [(2, 3)], {"dim0": 2, "dim1": 0}),
    ("t", [(2, 3, 4)], {}),
    ("flip", [(2, 3)], {"dims": (0, 0)}),
    ("repeat", [(2, 3)], {"repeats": (2,)}),
    ("cat", [[(2, 3), (3, 4)]], {}),
    ("cat", [[(), ()]], {}),
    ("cat", [[]], {}),
    ("cat", [[(2, 3), (2, 3)]], {"dim": 2}),
    ("stack", [[(2, 3), (3, 2)]], {}),
    ("split", [(4, 2)], {"split_size": -1}),
    ("split", [()], {"split_size": 1}),
    ("split_with_sizes", [(4, 2)], {"split_sizes": (1, 2)}),
    ("unbind", [()], {}),
    ("matmul", [(2, 3), (2, 3)], {}),
    ("matmul", [(2, 3), ("float64", (3, 2))], {}),
    ("matmul", [(), (3,)], {}),
    ("matmul", [(2, 2, 3), (3, 3, 4)], {}),
    ("mm", [(2, 3), (3,)], {}),
    ("bmm", [(2, 2, 3), (3, 3, 4)], {}),
    ("dot", [(3,), (4,)], {}),
    ("outer", [(3,), (2, 2)], {}),
    ("addmm", [(3,), (2, 3), (3, 4)], {}),
    ("addmm", [("float64", (4,)), (2, 3), (3, 4)], {}),
    ("softmax", [("int64", (2, 3))], {"dim": 1}),
    ("softmax", [(2, 3)], {"dim": 2}),
    ("log_softmax", [(2, 3)], {}),
    ("mse_loss", [(2, 3), (2, 3)], {"reduction": "avg"}),
    ("mse_loss", [(2, 3), (3, 2)], {}),
    ("binary_cross_entropy", [(2, 3), (3,), None], {}),
    ("binary_cross_entropy", [(2, 3), (2, 3), ("float32", (3,), True)], {}),
    ("binary_cross_entropy_with_logits", [(2, 3), (2, 3), None, ("float32", (3,), True)], {}),
    ("nll_loss", [(2, 3), (2,), None], {}),
    ("nll_loss", [(2, 3), ("int64", (3,)), None], {}),
    ("nll_loss", [(2, 3), ("int64", (2,)), (2,)], {}),
    ("nll_loss", [("int64", (2, 3)), ("int64", (2,)), None], {}),
    ("cross_entropy", [(2, 3), ("int64", (2,)), None], {"label_smoothing": 1.5}),
    ("cross_entropy", [(), ("int64", ()), None], {}),
    ("cross_entropy", [(2, 3), (2, 3), (2,)], {}),
    ("zeros_like", [(2, 3)], {"dtype": "complex64"}),
    ("rand_like", [("int64", (2, 3))], {}),
    ("bernoulli", [(2, 3), 1.5], {}),
    ("bernoulli", [("int64", (2, 3)), None], {}),
    ("select", [()], {"dim": 0, "index": 0}),
    ("select", [(2, 3)], {"dim": 1, "index": 3}),
    ("select", [(2, 3)], {"dim": 1, "index": -4}),
    ("select", [(2, 3)], {"dim": 2, "index": 0}),
    ("slice", [(2, 3)], {"dim": 1, "step": 0}),
    ("slice", [()], {}),
    ("tril", [(3,)], {}),
    ("masked_fill", [(2, 3), ("int64", (2, 3)), 0.0], {}),
    ("masked_fill", [(2, 3), ("bool", (3, 2)), 0.0], {}),
    ("masked_fill", [(2, 3), ("bool", (2, 3)), (1,)], {}),
    ("index_select", [(2, 3), (2,)], {"dim": 0}),
    ("index_select", [(2, 3), ("int64", (2, 1))], {"dim": 0}),
    ("index_select", [(2, 3), ("int64", (2,))], {"dim": 2}),
    ("gather", [(2, 3), ("int64", (2,))], {"dim": 0}),
    ("gather", [(2, 3), ("int64", (3, 3))], {"dim": 1}),
    ("gather", [(2, 3), ("bool", (2, 3))], {"dim": 1}),
    ("zeros", [], {"size": (2, -1)}),
    ("ones", [], {}),
    ("rand", [], {"size": (2,), "dtype": "int64"}),
    ("full", [], {"size": (2,)}),
    ("eye", [], {"n": -1}),
    ("eye", [], {"n": 2, "m": -1}),
    ("linspace", [], {"start": 0, "end": 1, "steps": -1}),
    ("arange", [], {"start": 0, "end": 5, "step": 0}),
    ("arange", [], {"start": 5, "end": 0, "step": 1}),
    ("arange", [], {"start": 0.0, "end": float("inf")}),
    ("fill", [(2, 3)], {}),
    ("copy", [(2, 3), (3, 3)], {}),
    ("copy", [(3,), (2, 3)], {}),
    ("index", [(2, 3), ("int64", ())], {}),
    ("index", [(2, 3), ("int64", (3, 2))], {}),
    ("index", [(2, 3), ("int64", (1, 2))], {"dim": 2}),
    ("index", [(2, 3), ("float32", (1, 2))], {}),
]


def _build(spec: Any) -> Any:
    """A tensor for a shape, a (dtype, shape) or (dtype, shape, requires_grad); lists of them;
    anything else as it is."""
    if isinstance(spec, tuple) and spec and isinstance(spec[0], str):
        return _t(spec[1], *spec[::2])
    if isinstance(spec, tuple):
        return _t(spec)
    if isinstance(spec, list):
        return [_build(s) for s in spec]
    return spec


@pytest.mark.parametrize("name, specs, attrs", REFUSED,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(REFUSED)])
def test_refused_calls_give_none(name: str, specs: list[Any], attrs: dict[str, Any]):
    inputs = [_build(s) for s in specs]
    assert isinstance(_engine(name, inputs, attrs, True), Exception), "the engine accepts it"
    assert infer(name, _describe(inputs), attrs, True) is None


def test_unknown_ops_and_inputs_give_none():
    x = Desc((2,), "float32", True)
    assert infer("no_such_op", [x], {}, True) is None
    assert infer("add", [x, 1j], {}, True) is None  # complex: no dtype here
    # a numpy scalar is read as torch reads it (a numpy bool as a float: surface/numbers.py)
    assert infer("add", [x, np.float64(1.0)], {}, True) == infer("add", [x, 1.0], {}, True)
    n = Desc((2,), "int64", False)
    assert infer("mul", [n, np.bool_(True)], {}, True) == infer("mul", [n, 1.0], {}, True)
    assert infer("add", [np.ones(2), x], {}, True) is None  # a numpy dtype, not a name
    assert infer("add", [Desc((2,), "float16", False), x], {}, True) is None
    assert infer("add", [Desc([2], "float32", False), x], {}, True) is None  # shape not a tuple
    assert infer("add", [x], {}, True) is None
    assert infer("add", [1, 2], {}, True) is None  # no tensor at all
    assert infer("sum", [x], {"dtype": "complex64"}, True) is None


# Calls no program makes (wrong arity, kinds, attribute values): never an exception from infer.
ODD_INPUTS = [[], [None], [1.0], ["x"], [object()], [[]], [[None]], [None, 1.0, 2.0],
              [Desc((2,), "float32", True)] * 4, [Desc((2,), "float32", True), None, None],
              [None, Desc((2,), "bool", False), 1.0],
              [Desc((), "int64", False), Desc((2, 0), "bool", False), Desc((3,), "float64", True)]]
ODD_ATTRS = [{}, {"dim": "a"}, {"dim": 1.5}, {"dim": (0, "a")}, {"dim": None}, {"shape": [1.5]},
             {"size": None}, {"reduction": None}, {"dtype": 3}, {"keepdim": "yes"}, {"no": 1},
             {"split_size": 0}, {"dims": -1}, {"index": None}, {"p": "fro"}]


@pytest.mark.parametrize("name", sorted(RULES))
def test_odd_calls_give_none_or_an_answer_never_an_error(name: str):
    for inputs, attrs in itertools.product(ODD_INPUTS, ODD_ATTRS):
        out = infer(name, inputs, attrs, True)
        assert out is None or all(isinstance(m, Meta) for m in out), (name, inputs, attrs)


def test_rules_and_exceptions_cover_the_registry():
    rules = set(RULES)
    assert not rules - set(OPS), f"rules for unknown ops: {sorted(rules - set(OPS))}"
    assert not rules & WITHOUT_RULES, f"listed as without rules: {sorted(rules & WITHOUT_RULES)}"
    missing = set(OPS) - rules - WITHOUT_RULES
    assert not missing, f"ops neither with a rule nor in WITHOUT_RULES: {sorted(missing)}"
    common = {"add", "sub", "mul", "div", "pow", "neg", "exp", "log", "sin", "relu", "sigmoid",
              "tanh", "clamp", "where", "lt", "eq", "sum", "mean", "prod", "max", "min", "amax",
              "amin", "max_dim", "argmax", "logsumexp", "std", "var"}
    assert common <= rules, f"common ops without rules: {sorted(common - rules)}"


def test_dtype_names_are_the_engines():
    from gradserve.engine import dtypes

    assert set(DTYPE_NAMES) == set(dtypes.DTYPES)
    ranks = sorted(dtypes.DTYPES.values(), key=lambda d: d.rank)
    assert tuple(d.name for d in ranks) == DTYPE_NAMES  # promotion order


# --- promotion against torch ---------------------------------------------------------------------

_OPERANDS = {
    "dim": lambda dtype: np.ones((2, 3), dtype=dtype),
    "zero": lambda dtype: np.ones((), dtype=dtype),
}
_SCALARS = (True, 2, 2.5)


def _torch_operand(kind: str, dtype: str, rg: bool) -> Any:
    t = torch.from_numpy(_OPERANDS[kind](dtype))
    return t.requires_grad_(True) if rg else t


def _promotion_cases() -> list[Any]:
    cases = []
    kinds = [(k, d) for k in _OPERANDS for d in DTYPE_NAMES]
    for (ka, da), (kb, db) in itertools.product(kinds, kinds):
        cases.append(((ka, da), (kb, db)))
    for (ka, da), s in itertools.product(kinds, _SCALARS):
        cases.append(((ka, da), s))
        cases.append((s, (ka, da)))
    return cases


# torch's operators take a Python scalar on either side (the engine's op takes it as given).
_PROMOTION_OPS = {"add": operator.add, "mul": operator.mul, "div": operator.truediv,
                  "lt": operator.lt, "eq": operator.eq, "pow": operator.pow,
                  "maximum": lambda a, b: torch.maximum(a, b),
                  "atan2": lambda a, b: torch.atan2(a, b)}


def _operand(spec: Any, rg: bool, lib: str) -> Any:
    if not isinstance(spec, tuple):
        return spec
    kind, dtype = spec
    rg = rg and dtype.startswith("float")
    if lib == "torch":
        return _torch_operand(kind, dtype, rg)
    return Desc(_OPERANDS[kind](dtype).shape, dtype, rg)


@pytest.mark.parametrize("op", sorted(_PROMOTION_OPS))
def test_promotion_matches_torch(op: str):
    checked = 0
    for a, b in _promotion_cases():
        for rg in (True, False):
            ta, tb = _operand(a, rg, "torch"), _operand(b, rg, "torch")
            if op in ("maximum", "atan2") and not all(isinstance(x, tuple) for x in (a, b)):
                continue  # tensors only
            try:
                want = _PROMOTION_OPS[op](ta, tb)
            except RuntimeError:  # torch refuses (bool ** bool, ...): nothing to compare
                continue
            got = infer(op, [_operand(a, rg, "meta"), _operand(b, rg, "meta")], {}, True)
            if got is None:
                continue
            expect = Meta(tuple(want.shape), str(want.dtype).removeprefix("torch."),
                          want.requires_grad)
            assert [m[:3] for m in got] == [expect[:3]], (
                f"{op}({a}, {b}) rg={rg}: {got} != torch's {expect}")
            checked += 1
    assert checked > 50


# --- grad_fn names chosen by the arguments (surface/node_names.py) --------------------------------

# Registry ops recording one of several nodes by their arguments that `node_name` has no rule
# for (the server names their results' nodes), by reason.
WITHOUT_NODE_RULES = {
    # random draws (their results are described by the server anyway), einsum's equation
    "bernoulli", "normal_sample", "einsum",
    # the one-op cross_entropy of other clients (the Python client composes it), the loss
    # gradients and terms the engine records itself, rarely recorded ops
    "cross_entropy", "label_smoothing_loss", "label_smoothing_loss_backward",
    "nll_loss_backward", "sum_to_size", "scatter",
}


def _node_cases() -> list[Any]:
    return _cases(lambda info: info.name in NODE_RULES)


@pytest.mark.parametrize("info, index, sample", _node_cases())
def test_node_rule_matches_engine(info: OpInfo, index: int, sample: Sample):
    for dtype in (np.float32, np.float64):
        arrays = _arrays(info, index, sample, dtype)
        inputs, _ = _engine_inputs(arrays, _flags(sample, arrays))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out = ge.apply(info.name, inputs, sample.attrs)
            except Exception:  # noqa: BLE001 - a refused call records no node
                continue
        first = out[0] if isinstance(out, tuple) else out
        if first.grad_fn is None:
            continue
        want = short_node_name(first.grad_fn.name())
        got = node_name(info.name, _describe(inputs), sample.attrs)
        big = info.name == "matmul" and any(len(a.shape) > 2 for a in inputs)
        assert got == (None if big else want), (
            f"{info.name}{tuple(_describe(inputs))} {sample.attrs}: {got} != engine {want}")


def test_node_rules_cover_the_registrys_named_by_arguments():
    several = {name for name, op in OPS.items() if len(op.backward_names) > 1}
    assert set(NODE_RULES) <= several
    assert not set(NODE_RULES) & WITHOUT_NODE_RULES
    assert set(NODE_RULES) | WITHOUT_NODE_RULES == several


def test_node_rule_unknown_inputs_give_none():
    x = Meta((2,), "float32", True)
    assert node_name("pow", [x, 2], {}) == "PowBackward0"
    assert node_name("pow", [2.0, x], {}) == "PowBackward2"
    assert node_name("pow", [x, x], {}) == "PowBackward1"
    assert node_name("pow", [x, np.float32(2)], {}) == "PowBackward0"  # read as a number
    assert node_name("sum", [x], {"dim": 0}) == "SumBackward1"
    assert node_name("add", [x, x], {}) is None  # one node whatever the arguments
