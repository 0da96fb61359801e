"""The grad_fn name of an op's result where torch picks the node by the call's arguments.

Most ops record one node whatever their arguments (ListOps `backward_name`); for the ops here
torch records one of several (ListOps `backward_names`): `x ** 2` is PowBackward0, `x ** y`
PowBackward1, `2 ** x` PowBackward2; `x.sum()` SumBackward0, `x.sum(0)` SumBackward1. The client
records ops without asking the server (`gradserve.surface.meta`); with `node_name` it also knows
such a result's grad_fn name, so the server need not describe it.

Each rule mirrors the engine's naming function for the op (`engine/ops_*.py`, declared with
`names_backward`); `tests/test_surface_meta.py` checks every rule against the engine's result on
all of the op's OpInfo samples. A rule answers None where it does not model the call (an input
that is neither a described tensor nor a Python scalar, a matmul of more than 2 dims): the
server then describes the result, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .numbers import NUMPY_NUMBERS, python_number

NodeRule = Callable[[Sequence[Any], Mapping[str, Any]], "str | None"]
NODE_RULES: dict[str, NodeRule] = {}

_SCALARS = (bool, int, float)
_TENSOR, _SCALAR, _UNKNOWN = 1, 0, -1


def _kind(a: Any) -> int:
    """An input as the engine's naming functions see it: a tensor (a description with a tuple
    `shape` and `requires_grad`), a scalar (a Python number, or None: an omitted input), or
    unknown (anything else; a numpy scalar is read as a number first)."""
    if a is None or type(a) in _SCALARS:
        return _SCALAR
    if type(getattr(a, "shape", None)) is tuple and hasattr(a, "requires_grad"):
        return _TENSOR
    return _UNKNOWN


def node_name(op: str, inputs: Sequence[Any], attrs: Mapping[str, Any]) -> str | None:
    """The grad_fn name of op `op`'s results (when they require grad), or None.

    Args:
        op: the op's catalogue name.
        inputs: its inputs as for `gradserve.surface.meta.infer`: tensor descriptions (`.shape`
            a tuple of ints, `.requires_grad`), Python scalars, None for an omitted one.
        attrs: the attributes given, bound (`dim` an int or a tuple; omitted ones take the
            op's defaults).

    Returns:
        The node's name (e.g. "PowBackward0"), or None: `op` has no rule here, or the rule
        does not model these arguments.
    """
    rule = NODE_RULES.get(op)
    if rule is None:
        return None
    if any(isinstance(a, NUMPY_NUMBERS) for a in inputs):  # read as torch reads them
        inputs = [a if (n := python_number(a)) is None else n for a in inputs]
    for a in inputs:
        if _kind(a) == _UNKNOWN:
            return None
    return rule(inputs, attrs)


def _register(*ops: str) -> Callable[[NodeRule], NodeRule]:
    def register(fn: NodeRule) -> NodeRule:
        for op in ops:
            if op in NODE_RULES:
                raise ValueError(f"node rule for {op!r} defined twice")
            NODE_RULES[op] = fn
        return fn
    return register


# --- by which operands are Python scalars (engine/ops_elementwise.py `_by_scalars`) ------------

def _by_scalars(op: str, all_tensors: str, scalar_other: str,
                scalar_input: str | None = None) -> None:
    def rule(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
        if len(args) == 2 and _kind(args[1]) != _TENSOR:
            return scalar_other
        if scalar_input is not None and len(args) == 2 and _kind(args[0]) != _TENSOR:
            return scalar_input
        return all_tensors
    _register(op)(rule)


_by_scalars("sub", "SubBackward0", "SubBackward0", "RsubBackward1")
_by_scalars("remainder", "RemainderBackward1", "RemainderBackward0", "NotImplemented")
_by_scalars("fmod", "FmodBackward1", "FmodBackward0")
_by_scalars("pow", "PowBackward1", "PowBackward0", "PowBackward2")
_by_scalars("xlogy", "XlogyBackward0", "XlogyBackward2", "XlogyBackward1")


# --- by the attributes ----------------------------------------------------------------------------

def _by_dim(op: str, no_dim: str, with_dim: str) -> None:
    """A reduction over every element, or over `dim` (engine/ops_reduce.py `_by_dim`)."""
    _register(op)(lambda args, attrs: no_dim if attrs.get("dim") is None else with_dim)


_by_dim("sum", "SumBackward0", "SumBackward1")
_by_dim("mean", "MeanBackward0", "MeanBackward1")
_by_dim("prod", "ProdBackward0", "ProdBackward1")


@_register("squeeze")
def _squeeze(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    dim = attrs.get("dim")
    return "SqueezeBackward0" if dim is None else (
        "SqueezeBackward1" if isinstance(dim, int) else "SqueezeBackward2")


@_register("round")
def _round(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    return "RoundBackward1" if attrs.get("decimals", 0) else "RoundBackward0"


@_register("l1_loss")
def _l1_loss(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    # torch's l1_loss is abs(input - target), then mean or sum
    return {"mean": "MeanBackward0", "sum": "SumBackward0"}.get(
        attrs.get("reduction", "mean"), "AbsBackward0")


# --- by which inputs are tensors ------------------------------------------------------------------

@_register("clamp")
def _clamp(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    return ("ClampBackward0" if any(_kind(a) == _TENSOR for a in args[1:])
            else "ClampBackward1")


def _clamp_bound(op: str, name: str) -> None:
    _register(op)(lambda args, attrs: (
        f"Clamp{name}Backward1" if len(args) > 1 and _kind(args[1]) == _TENSOR
        else f"Clamp{name}Backward0"))


_clamp_bound("clamp_min", "Min")
_clamp_bound("clamp_max", "Max")


@_register("masked_fill")
def _masked_fill(args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
    return ("MaskedFillBackward1" if len(args) > 2 and _kind(args[2]) == _TENSOR
            else "MaskedFillBackward0")


# --- by the inputs' dims --------------------------------------------------------------------------

_MATMUL = {(1, 1): "DotBackward0", (2, 2): "MmBackward0", (1, 2): "SqueezeBackward4",
           (2, 1): "MvBackward0"}


@_register("matmul")
def _matmul(args: Sequence[Any], attrs: Mapping[str, Any]) -> str | None:
    # the node torch's composite matmul ends with, for inputs of 1 or 2 dims (engine/
    # ops_linalg.py `_matmul_name`; batched products are left to the server)
    if len(args) != 2 or _kind(args[0]) != _TENSOR or _kind(args[1]) != _TENSOR:
        return None
    return _MATMUL.get((len(args[0].shape), len(args[1].shape)))


def _upsample(op: str, suffix: str) -> None:
    """nearest resampling: torch's 1-D kernel for a 3-dim input, the 2-D one for 4 dims
    (engine/ops_nn.py `upsample_nearest`)."""
    _register(op)(lambda args, attrs: (
        None if not args or _kind(args[0]) != _TENSOR
        else f"UpsampleNearest{'1D' if len(args[0].shape) == 3 else '2D'}{suffix}"))


_upsample("upsample_nearest", "Backward0")
_upsample("upsample_nearest_backward", "BackwardBackward0")


def _mode_pad(op: str, kind: str, suffix: str) -> None:
    """reflection / replication padding: torch's 1-D, 2-D or 3-D kernel by the padding's
    length (engine/ops_pad.py)."""
    def rule(args: Sequence[Any], attrs: Mapping[str, Any]) -> str | None:
        padding = attrs.get("padding")
        if not isinstance(padding, (tuple, list)) or len(padding) not in (2, 4, 6):
            return None
        return f"{kind}{len(padding) // 2}D{suffix}"
    _register(op)(rule)


_mode_pad("reflection_pad", "ReflectionPad", "Backward0")
_mode_pad("reflection_pad_backward", "ReflectionPad", "BackwardBackward0")
_mode_pad("replication_pad", "ReplicationPad", "Backward0")
_mode_pad("replication_pad_backward", "ReplicationPad", "BackwardBackward0")


@_register("nll_loss")
def _nll_loss(args: Sequence[Any], attrs: Mapping[str, Any]) -> str | None:
    # torch runs inputs of 3 or more dims as 4-dim nll_loss2d, viewing other ranks to 4 dims
    # and (for reduction='none') the result back
    if not args or _kind(args[0]) != _TENSOR:
        return None
    ndim = len(args[0].shape)
    if ndim <= 2:
        return "NllLossBackward0"
    return ("ViewBackward0" if ndim != 4 and attrs.get("reduction", "mean") == "none"
            else "NllLoss2DBackward0")
