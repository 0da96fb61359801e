"""The torch-like surface, derived from the registry: functions, Tensor methods, operators.

Nothing here lists an op by hand except the few torch spellings that are compositions (`2 / x`
is `reciprocal(x) * 2`, as in torch); the Python operator protocol (`__add__` is `add`) is
gradserve.surface.operators, shared with the client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gradserve.surface import aliases, grad_mode, messages, operators
from gradserve.surface.binding import take_inputs, torch_keywords
from gradserve.surface.messages import TYPE_WORDS

from . import autograd, errors, hooks, namespaces
from . import random as _random
from .dispatch import (
    _SCALARS,
    VIEW_LAYOUT_MESSAGE,
    check_inputs,
    refresh_view,
    run,
    run_into,
    run_scalar,
    view_positions,
)
from .nodes import NO_GRAD_VIEW, saved_output, saved_tensors
from .registry import OPS, OpDef, bind_attrs, lookup, promote_args
from .tensor import InferenceVersion, Tensor

FUNCTIONS: dict[str, Callable[..., Any]] = {}
"""One engine function per registered op (what `namespaces.EN` holds)."""

PUBLIC: dict[str, Callable[..., Any]] = {}
"""Module-level names of `gradserve.engine`: FUNCTIONS plus the `@public` wrappers."""

_EXTRAS: dict[tuple[str, bool], Callable[..., Any]] = {}  # (name, is_method) -> wrapper


def public(name: str | None = None, *, method: bool = True,
           function: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Expose a torch spelling that is not one op: an overload or a composition.

    For example `max(x)` / `max(x, dim)` / `max(x, y)` choose between the ops `max`, `max_dim`
    and `maximum`; `x.view(...)` is `reshape`; `x.float()` is `to_dtype`. The wrapper must only
    dispatch to registered ops (so the server and client see the same ops). It replaces the
    generated function of the same name on the module (`function`) and on Tensor (`method`);
    a spelling whose function and method differ (torch's messages do) registers each separately.
    """
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        key = name or fn.__name__
        if method:
            _EXTRAS[key, True] = fn
        if function:
            _EXTRAS[key, False] = fn
        return fn
    return register


def make_function(op: OpDef) -> Callable[..., Any]:
    """The torch-style function for `op`: inputs, then attributes, positionally or by name."""
    n_in = len(op.inputs)
    params = frozenset((*op.inputs, *(a.name for a in op.attrs)))
    random = getattr(op, "random", False)
    every_input = not op.attrs and not random  # all inputs given: nothing to bind

    def bound_fn(*args: Any, **kw: Any) -> Any:
        """A call bound as torch's functions bind it (inputs and attributes by name too)."""
        if every_input and not kw and len(args) == n_in:  # `clamp(x, lo, hi)`
            return run(op, args, {})
        kw = torch_keywords(kw, params)
        generator = kw.pop("generator", None) if random else None
        ins = take_inputs(op.name, op.inputs, op.optional, args[:n_in], kw,
                          errors.InvalidTypeError)
        try:
            return run(op, tuple(ins), bind_attrs(op, args[n_in:], kw), generator=generator)
        except errors.InvalidTypeError:
            if len(args) < n_in:  # some input by keyword: named without a position
                check_inputs(op, ins, positional=len(args))
            raise

    if op.variadic:
        def variadic_fn(tensors: Sequence[Tensor], *extra: Any, **kw: Any) -> Any:
            kw = torch_keywords(kw, params)
            if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
                raise errors.InvalidTypeError(
                    f"{op.name}(): argument '{op.inputs[0]}' must be tuple of Tensors, not "
                    f"{type(tensors).__name__}")
            return run(op, (tuple(tensors),), bind_attrs(op, extra, kw))
        fn: Callable[..., Any] = variadic_fn
    elif not op.attrs and not any(op.optional):
        if op.scalar_path:
            def plain_fn(*args: Any, **kw: Any) -> Any:
                if kw:  # `mul(x, other=y)`
                    return bound_fn(*args, **kw)
                # dispatch.run's first step, without its frame (`sin(x)` of a 0-d x)
                attrs: dict[str, Any] = {}
                out = run_scalar(op, args, attrs)
                return out if out is not None else run(op, args, attrs)
        else:
            def plain_fn(*args: Any, **kw: Any) -> Any:
                if kw:
                    return bound_fn(*args, **kw)
                return run(op, args, {})
        fn = plain_fn
    else:
        fn = bound_fn
    fn.__name__ = fn.__qualname__ = op.name
    fn.__doc__ = op.doc or f"The `{op.name}` op."
    return fn


def apply_inplace(name: str, target: Tensor, inputs: Sequence[Any] = (),
                  attrs: Mapping[str, Any] | None = None, generator: Any = None) -> Tensor:
    """Run op `name` on (target, *inputs) and write the result into `target`, as torch's `name_`
    (a random op draws from `generator`, the default generator when None).

    Raises:
        InplaceError: target is a leaf that requires grad while grad mode is on.
        InvalidArgumentError: the result's shape or dtype does not fit the target.
    """
    op = lookup(name)
    if not op.inplace:
        raise errors.UnknownOpError(f"op {name!r} has no in-place variant")
    return _inplace(op, target, tuple(inputs), bind_attrs(op, (), attrs or {}), generator)


def _inplace(op: OpDef, target: Tensor, inputs: tuple[Any, ...], attrs: dict[str, Any],
             generator: Any = None) -> Tensor:
    if not isinstance(target, Tensor):
        raise errors.InvalidTypeError(f"{op.name}_(): target must be a Tensor")
    recording = grad_mode._state.enabled
    if type(target._vc) is InferenceVersion and not grad_mode._state.inference:
        raise errors.InvalidArgumentError(messages.INFERENCE_INPLACE_MESSAGE)
    if recording and target._accum is NO_GRAD_VIEW:
        raise errors.InplaceError(messages.NO_GRAD_VIEW_INPLACE_MESSAGE)
    if recording and target._rg and target.grad_fn is None:
        raise errors.InplaceError(messages.LEAF_INPLACE)
    if isinstance(target._data, np.ndarray) and not target._data.flags.writeable:
        # an expanded (broadcast) view: numpy cannot write it, torch refuses it
        raise errors.InvalidArgumentError(
            "unsupported operation: more than one element of the written-to tensor refers to a "
            "single memory location. Please clone() the tensor before performing the operation.")
    base = target._base
    if recording and base is not None and (
            base._rg or any(type(a) is Tensor and a._rg for a in inputs)):
        return _inplace_on_view(op, target, base, inputs, attrs, generator)
    if (op.default_ufunc is not None and base is None and not (recording and (target._rg or any(
            type(a) is Tensor and a._rg for a in inputs))) and run_into(op, target, inputs, attrs)):
        target._vc[0] += 1  # written in place: nothing recorded (`p -= lr * p.grad`)
        return target
    result, node = _inplace_result(op, target, inputs, attrs, generator)
    np.copyto(target._array(), result._data, casting="unsafe")
    target._vc[0] += 1
    if node is not None:
        target.grad_fn = node
        target.output_nr = 0
        target._rg = True
        if node.out_data is not None:
            node.out_data = (target._data,)
            node.out_versions = saved_output(target)
    return target


def _check_cast(dtype: Any, target: Tensor) -> None:
    """torch's refusal of an in-place result of `dtype` its `target` cannot hold (canCast: not
    floating into integral, not integral into bool)."""
    if dtype is not target.dtype and dtype.category > target.dtype.category:
        raise errors.InvalidArgumentError(
            f"result type {_type_word(dtype)} can't be cast to the desired output type "
            f"{_type_word(target.dtype)}")


def _inplace_result(op: OpDef, target: Tensor, inputs: tuple[Any, ...], attrs: dict[str, Any],
                    generator: Any = None) -> tuple[Tensor, Any]:
    """`op(target, *inputs)` out of place (`op.inplace_op` when it names one), checked to fit
    `target` as torch checks `op_`; its node (if any) renamed for the in-place variant and made
    to save a copy of `target`."""
    if op.inplace_op is not None:
        op = OPS[op.inplace_op]
    try:
        result = run(op, (target, *inputs), attrs, generator=generator)
    except errors.NotImplementedFunctionError:
        # torch checks the cast before its kernel refuses the dtype (`int_tensor &= 2.5`)
        _check_cast(promote_args((target, *inputs)), target)
        raise
    if result.shape != target.shape:
        raise errors.InvalidArgumentError(
            f"output with shape [{', '.join(map(str, target.shape))}] doesn't match the "
            f"broadcast shape [{', '.join(map(str, result.shape))}]")
    _check_cast(result.dtype, target)
    node = result.grad_fn
    if node is not None:
        if op.inplace_backward is not None:
            node._name = op.inplace_backward
        _snapshot_saved_target(node, target)
    return result, node


def _inplace_on_view(op: OpDef, target: Tensor, base: Tensor, inputs: tuple[Any, ...],
                     attrs: dict[str, Any], generator: Any = None) -> Tensor:
    """`op_` on a view while its base or inputs require grad, as torch rebases it: the result is
    written into the base as `put` at the view's positions (the base's node is CopySlices), and
    the view's history is regenerated from the base (AsStridedBackward0)."""
    if base._rg and base.grad_fn is None:
        raise errors.InplaceError(messages.VIEW_OF_LEAF_INPLACE)
    positions = view_positions(target, base)
    if positions is None:
        raise errors.InplaceError(VIEW_LAYOUT_MESSAGE)
    result, node = _inplace_result(op, target, inputs, attrs, generator)
    if result.dtype is not target.dtype:
        result = FUNCTIONS["to_dtype"](result, dtype=target.dtype)
    index = Tensor._make(positions)
    _inplace(OPS["put"], base, (index, result), {"accumulate": False})
    if base.grad_fn is not None:
        base.grad_fn._name = "CopySlices"
    refresh_view(target, positions)
    if node is not None and node.out_data is not None:
        # the op's node saved its result: torch's saves the view it wrote, whose version is
        # the base's, so a later write to either fails the backward (before, the node kept
        # the out-of-place result, which nothing wrote again: the check never fired)
        node.out_data = (target._data,)
        node.out_versions = saved_output(target)
    return target


def _snapshot_saved_target(node: Any, target: Tensor) -> None:
    """The node saved `target`'s data, which is about to be overwritten: save a copy instead."""
    if not any(a is target for a in node.args):
        return
    copy = Tensor._make(target._data.copy(), grad_fn=target.grad_fn, output_nr=target.output_nr)
    copy._rg = target._rg
    node.args = tuple(copy if a is target else a for a in node.args)
    node.versions = tuple([copy._vc[0] if t is copy else v
                           for t, v in zip(saved_tensors(node.args), node.versions)])


def _type_word(d: Any) -> str:
    return TYPE_WORDS[d.name]


# --- operators (the dunder -> op tables: gradserve.surface.operators) ----------------------------


_OPERANDS = (Tensor, *_SCALARS)  # what a binary operator takes; anything else: NotImplemented
_COMMON_OPERANDS = frozenset((Tensor, float, int))  # the common ones, tested first


def _operand(x: Any) -> bool:
    return isinstance(x, _OPERANDS)


def _binary(op: OpDef, dunder: str) -> Callable[[Tensor, Any], Any]:
    defaults = op.default_attrs
    compares_arrays = dunder == operators.ARRAY_COMPARED

    scalar_path = op.scalar_path

    def method(self: Tensor, other: Any) -> Any:
        if type(other) not in _COMMON_OPERANDS and not isinstance(other, _OPERANDS):
            if not (compares_arrays and isinstance(other, np.ndarray)):
                return NotImplemented
            other = Tensor._make(np.array(other))  # `x == a`: a as a tensor, as torch's
        args, attrs = (self, other), dict(defaults) if defaults else {}
        if scalar_path:  # dispatch.run's first step, without its frame (`x * 2.0` of a 0-d x)
            out = run_scalar(op, args, attrs)
            if out is not None:
                return out
        return run(op, args, attrs)
    return method


def _reflected(op: OpDef) -> Callable[[Tensor, Any], Any]:
    defaults = op.default_attrs

    scalar_path = op.scalar_path

    def method(self: Tensor, other: Any) -> Any:
        if type(other) not in _COMMON_OPERANDS and not isinstance(other, _OPERANDS):
            return NotImplemented
        args, attrs = (other, self), dict(defaults) if defaults else {}
        if scalar_path:  # as `_binary`'s
            out = run_scalar(op, args, attrs)
            if out is not None:
                return out
        return run(op, args, attrs)
    return method


def _augmented(op: OpDef) -> Callable[[Tensor, Any], Any]:
    def method(self: Tensor, other: Any) -> Any:
        if not _operand(other):
            return NotImplemented
        return _inplace(op, self, (other,), bind_attrs(op, (), {}))
    return method


def _invert(self: Tensor) -> Any:
    """`~x`: bitwise_not, a floating x refused with the operator's TypeError (torch's)."""
    if self.dtype.is_floating_point:
        raise errors.InvalidTypeError(operators.INVERT_MESSAGE)
    return FUNCTIONS[operators.INVERT](self)


def _rtruediv(self: Tensor, other: Any) -> Any:
    # torch spells `2 / x` as reciprocal(x) * 2 (grad_fn MulBackward0), with the operator `*`:
    # numpy's for an array (see operators.ARRAY_COMPARED)
    if isinstance(other, np.ndarray):
        return FUNCTIONS["reciprocal"](self) * other
    if not _operand(other):
        return NotImplemented
    return FUNCTIONS["mul"](FUNCTIONS["reciprocal"](self), other)


def _inplace_method(op: OpDef) -> Callable[..., Tensor]:
    n_in = len(op.inputs)
    name, inputs, optional = op.name + "_", op.inputs[1:], op.optional[1:]  # self is input 0

    random = getattr(op, "random", False)

    params = frozenset((*op.inputs, *(a.name for a in op.attrs)))

    def method(self: Tensor, *args: Any, **kw: Any) -> Tensor:
        kw = torch_keywords(kw, params)
        generator = kw.pop("generator", None) if random else None
        if generator is not None:
            _random.resolve(generator, name)
        ins = take_inputs(name, inputs, optional, args[:n_in - 1], kw, errors.InvalidTypeError)
        try:
            return _inplace(op, self, tuple(ins), bind_attrs(op, args[n_in - 1:], kw), generator)
        except errors.InvalidTypeError:
            for i, a in enumerate(args[:n_in - 1]):
                if type(a) is np.ndarray:  # torch's refusal, naming the method (`add_`)
                    raise errors.InvalidTypeError(
                        messages.must_be_tensor(name, inputs[i], a, i + 1)) from None
            raise

    method.__name__ = op.name + "_"
    return method


def build() -> dict[str, Callable[..., Any]]:
    """Make every op's function, attach methods and operators to Tensor, fill the namespaces."""
    for name, op in OPS.items():
        if name not in FUNCTIONS:
            FUNCTIONS[name] = make_function(op)
        if op.method and op.inputs and not op.variadic and not hasattr(Tensor, name):
            _attach(name, FUNCTIONS[name], "op", op)
        if op.inplace and not hasattr(Tensor, name + "_"):
            _attach(name + "_", _inplace_method(op), "inplace", op)
    for dunder, name in operators.BINARY.items():
        if name in OPS:
            _attach(dunder, _binary(OPS[name], dunder), "operator", OPS[name])
    for dunder, name in operators.REFLECTED.items():
        if name in OPS:
            _attach(dunder, _reflected(OPS[name]), "operator", OPS[name])
    for dunder, name in operators.UNARY.items():
        if name in OPS:
            _attach(dunder, FUNCTIONS[name], "unary", OPS[name])
    for dunder, name in operators.AUGMENTED.items():
        if name in OPS:
            _attach(dunder, _augmented(OPS[name]), "operator", OPS[name])
    _attach("__invert__", _invert, "unary", OPS[operators.INVERT])
    PUBLIC.update(FUNCTIONS)
    for (name, is_method), fn in _EXTRAS.items():
        if is_method:
            _attach(name, fn, "public", None)
        else:
            PUBLIC[name] = fn
    _attach("__rtruediv__", _rtruediv, "operator", OPS["reciprocal"])
    _attach("backward", autograd.tensor_backward, "public", None)
    _attach("register_hook", hooks.register_hook, "public", None)
    _attach("register_post_accumulate_grad_hook", hooks.register_post_accumulate_grad_hook,
            "public", None)
    _install_aliases()
    Tensor.__hash__ = lambda self: id(self)  # type: ignore[method-assign]
    namespaces.build(FUNCTIONS)
    return FUNCTIONS


def _install_aliases() -> None:
    """torch's aliases (gradserve.surface.aliases) as the very functions and methods of their
    canonical names, with their in-place `alias_` where the canonical `name_` exists."""
    for alias, target in aliases.ALIASES.items():
        if target in PUBLIC:
            PUBLIC[alias] = PUBLIC[target]
        for a, t in ((alias, target), (alias + "_", target + "_")):
            if t in ATTACHED:
                _attach(a, Tensor.__dict__[t], *ATTACHED[t])


ATTACHED: dict[str, tuple[str, OpDef | None]] = {}
"""What `build` attached to Tensor, by name: (kind, op) with kind "op" (the op's function as a
method), "inplace" (`name_`), "operator" (a binary dunder: `x + y`), "unary" (`-x`) or "public"
(a `@public` wrapper or property; op None). The source of Tensor's type declarations
(tensor_methods.pyi, made by scripts/gen_tensor_methods.py)."""


def _attach(name: str, value: Any, kind: str, op: OpDef | None) -> None:
    setattr(Tensor, name, value)
    ATTACHED[name] = (kind, op)
