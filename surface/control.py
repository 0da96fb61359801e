"""torch's checks and eager control flow, as programs written for torch.export use them:
`torch._check` and its siblings, `torch.sym_min`/`sym_max` on Python numbers, and `torch.cond`
run eagerly. None of them records an op: each checks its arguments with torch's texts and runs
plain Python (cond calls the branch its predicate picks). Written once against a `Backend`.
"""

from __future__ import annotations

import builtins
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import pytree
from .backend import Backend
from .spellings import SPELLINGS, Spelling

Fn = Callable[..., Any]

# --- torch._check and its siblings ---------------------------------------------------------------

DEFAULT_CHECK_MESSAGE = ("Expected cond to be True, but got False. (Could this error message be "
                         "improved? If so, please report an enhancement request to PyTorch.)")


def _check_with(be: Backend, error_type: type[Exception], cond: Any, message: Any) -> None:
    """torch._check_with: raise `error_type(message())` unless `cond` is True (a Python bool)."""
    if not isinstance(cond, builtins.bool):
        if be.is_tensor(cond):
            raise TypeError("cond must be a bool, but got a Tensor. For tensor conditions, use "
                            "torch._check_tensor_all() to assert that all elements are true.")
        raise TypeError(f"cond must be a bool, but got {type(cond)}")
    if cond:
        return
    if message is None:
        raise error_type(DEFAULT_CHECK_MESSAGE)
    if not callable(message):
        raise TypeError("message must be a callable")
    raise error_type(str(message()))


def _checker(name: str, error_type: type[Exception]) -> Fn:
    def check(be: Backend, cond: Any, message: Any = None) -> None:
        _check_with(be, error_type, cond, message)
    check.__name__ = check.__qualname__ = name
    check.__doc__ = (f"torch.{name}(cond, message=None): raise {error_type.__name__} "
                     "(message() or torch's default text) unless cond is True.")
    return check


CHECK_IS_SIZE_DEPRECATED = ("_check_is_size will be removed in a future PyTorch release along "
                            "with guard_size_oblivious.     Use _check(i >= 0) instead.")


def _check_is_size(be: Backend, i: Any, message: Any = None, *, max: Any = None) -> None:
    """torch._check_is_size: i is a valid size (>= 0), and <= max when max is given (torch 2.13
    deprecates it with a FutureWarning: so does gradserve)."""
    # the frames: this function, the layer's bound wrapper, the user's line
    warnings.warn(CHECK_IS_SIZE_DEPRECATED, FutureWarning, stacklevel=3)
    _check_with(be, RuntimeError, i >= 0, message)
    if max is not None:
        _check_with(be, RuntimeError, i <= max, message)


for _name, _error in (("_check", RuntimeError), ("_check_index", IndexError),
                      ("_check_value", ValueError), ("_check_type", TypeError),
                      ("_check_not_implemented", NotImplementedError)):
    SPELLINGS[_name] = Spelling(_name, (), _checker(_name, _error))
SPELLINGS["_check_is_size"] = Spelling("_check_is_size", (), _check_is_size)

# --- sym_min, sym_max on Python numbers ----------------------------------------------------------

_NUMBER_TYPES = (np.integer, np.floating, builtins.int, builtins.float)
_FLOAT_TYPES = (np.floating, builtins.float)


def _sym(name: str, pick: Fn) -> Fn:
    def sym(be: Backend, a: Any, b: Any) -> Any:
        for v in (a, b):
            if not isinstance(v, _NUMBER_TYPES):
                raise AssertionError(f"expected {_NUMBER_TYPES}, got {type(v)}")
        if isinstance(a, _FLOAT_TYPES) or isinstance(b, _FLOAT_TYPES):
            return builtins.float(pick(a, b))
        return pick(a, b)
    sym.__name__ = sym.__qualname__ = name
    sym.__doc__ = (f"torch.{name}(a, b) of two Python (or numpy) numbers: {pick.__name__}(a, b), "
                   "a float if either is one.")
    return sym


SPELLINGS["sym_min"] = Spelling("sym_min", (), _sym("sym_min", builtins.min))
SPELLINGS["sym_max"] = Spelling("sym_max", (), _sym("sym_max", builtins.max))

# --- cond, eagerly -------------------------------------------------------------------------------


def _leaves(tree: Any) -> list[Any]:
    """The leaves of nested dicts, lists and tuples (torch's pytree, for cond's check)."""
    if isinstance(tree, dict):
        return [leaf for v in tree.values() for leaf in _leaves(v)]
    if isinstance(tree, (list, tuple)):
        return [leaf for v in tree for leaf in _leaves(v)]
    return [tree]


def cond(be: Backend, pred: Any, true_fn: Fn, false_fn: Fn, operands: Any = ()) -> Any:
    """torch.cond run eagerly: `true_fn(*operands)` if pred holds, else `false_fn(*operands)`.

    Args:
        be: the backend.
        pred: a Python bool/int/float, or a one-element tensor.
        true_fn: the branch taken when pred holds.
        false_fn: the branch taken otherwise.
        operands: a tuple or list of tensors (possibly nested in dicts/lists/tuples).

    Returns:
        The branch's result.

    Raises:
        RuntimeError: torch's texts for a pred that is not a bool or one-element tensor, a branch
            that is not callable, operands that are not a tuple/list of tensors.
    """
    if isinstance(pred, (builtins.bool, builtins.int, builtins.float)):
        return true_fn(*operands) if pred else false_fn(*operands)
    if not be.is_tensor(pred):
        raise be.runtime_error(f"Expected pred to be bool or tensor, but got {pred}.")
    if int(np.prod(be.shape(pred))) != 1:
        raise be.runtime_error(
            f"Expected pred to be bool or single-element tensor, but got {pred}.")
    if not callable(true_fn) or not callable(false_fn):
        raise be.runtime_error("Expect both branches to be callable.")
    if not isinstance(operands, (tuple, list)) or any(not be.is_tensor(t)
                                                      for t in _leaves(operands)):
        raise be.runtime_error("Expect operands to be a tuple of possibly nested dict/list/tuple "
                               f"that only consists of tensor leaves, but got {operands}.")
    return true_fn(*operands) if bool(pred) else false_fn(*operands)


SPELLINGS["cond"] = Spelling("cond", (), cond)

# --- map (torch._higher_order_ops.map, functorch.experimental.control_flow.map), eagerly ------


def higher_order_ops(torch: Any) -> Any:
    """`torch._higher_order_ops` for the torch-like namespace `torch` (the engine module or a
    Session): `cond`, and `map` run eagerly.

    Args:
        torch: what map calls (`Tensor`, `stack`, `cond`, `autograd.Function`, `autograd.grad`,
            `enable_grad`, `is_grad_enabled`).

    Returns:
        A namespace with cond and map.
    """
    def run(f: Fn, xs_spec: Any, args_spec: Any, n_xs: int, flat: Sequence[Any],
            out_spec: list[Any]) -> tuple[Any, ...]:
        """The flat stacked results of f over the slices of flat[:n_xs] (their spec in
        out_spec[0])."""
        args = pytree.tree_unflatten(list(flat[n_xs:]), args_spec)
        outs = [f(pytree.tree_unflatten(list(slices), xs_spec), *args)
                for slices in zip(*flat[:n_xs])]
        flat_outs = [pytree.tree_flatten(out) for out in outs]
        out_spec[:] = [flat_outs[-1][1]]
        stacked: list[Any] = []
        for leaves in zip(*(leaves for leaves, _ in flat_outs)):
            if builtins.all(isinstance(leaf, torch.Tensor) for leaf in leaves):
                stacked.append(torch.stack(leaves))
            elif builtins.all(leaf is None for leaf in leaves):
                stacked.append(None)
            else:
                raise RuntimeError(f"Cannot stack {leaves}.")
        return tuple(stacked)

    autograd_op: list[Any] = []  # MapAutogradOp, made on first use (torch.autograd's Function)

    def map_autograd_op() -> Any:
        if autograd_op:
            return autograd_op[0]

        class MapAutogradOp(torch.autograd.Function):  # type: ignore[misc,name-defined]
            """torch's autograd node for map (grad_fn MapAutogradOpBackward): forward maps
            without recording, backward maps again with grad and differentiates that."""

            @staticmethod
            def forward(ctx: Any, apply: Fn, n_xs: int, *flat: Any) -> Any:
                ctx.map_fn, ctx.flat = apply, flat
                return apply(flat)

            @staticmethod
            def backward(ctx: Any, *grads: Any) -> Any:
                flat = ctx.flat  # the inputs themselves: a create_graph result links to them
                wanted = [i for i, t in enumerate(flat)
                          if isinstance(t, torch.Tensor) and t.requires_grad]
                with torch.enable_grad():
                    outs = ctx.map_fn(flat)
                pairs = [(o, g) for o, g in zip(outs, grads)
                         if o is not None and o.requires_grad and g is not None]
                result: list[Any] = [None] * len(flat)
                if pairs and wanted:
                    # grad mode is on here when the caller asked for create_graph
                    got = torch.autograd.grad([o for o, _ in pairs], [flat[i] for i in wanted],
                                              [g for _, g in pairs], allow_unused=True,
                                              create_graph=torch.is_grad_enabled())
                    for i, g in zip(wanted, got):
                        result[i] = g
                return (None, None, *result)

        autograd_op.append(MapAutogradOp)
        return MapAutogradOp

    def map(f: Fn, xs: Any, *args: Any) -> Any:  # noqa: A001 (torch's name)
        """torch's `map(f, xs, *args)` run eagerly: `f(x, *args)` for each slice `x` of the
        tensors in `xs` along their first dim (xs a tensor or a pytree of tensors), the results
        stacked leaf by leaf (a pytree of tensors, or of Nones). Where an input requires grad,
        the results come from one autograd node, MapAutogradOpBackward, as torch's.

        Raises:
            RuntimeError: torch's texts for leaves of xs that are not tensors, leading dims that
                are 0 or differ, and results that cannot be stacked.
        """
        flat_xs, xs_spec = pytree.tree_flatten(xs)
        flat_args, args_spec = pytree.tree_flatten(args)
        if not builtins.all(isinstance(t, torch.Tensor) for t in flat_xs):
            raise RuntimeError(f"Mapped xs can only consist of tensors. Got xs {flat_xs}.")
        shapes = [t.shape for t in flat_xs]
        leading = shapes[0][0]
        if leading == 0:
            raise RuntimeError("Leading dimensions of mapped xs cannot be 0.")
        if builtins.any(s[0] != leading for s in shapes):
            raise RuntimeError("Leading dimensions of mapped xs must be consistent. Got shapes "
                              f"{shapes}.")
        flat = (*flat_xs, *flat_args)
        out_spec: list[Any] = []

        def apply(values: Sequence[Any]) -> tuple[Any, ...]:
            return run(f, xs_spec, args_spec, len(flat_xs), values, out_spec)

        if torch.is_grad_enabled() and builtins.any(
                isinstance(t, torch.Tensor) and t.requires_grad for t in flat):
            outs = map_autograd_op().apply(apply, len(flat_xs), *flat)
            outs = outs if isinstance(outs, tuple) else (outs,)
        else:
            outs = apply(flat)
        return pytree.tree_unflatten(list(outs), out_spec[0])

    def cond(pred: Any, true_fn: Fn, false_fn: Fn, operands: Any = ()) -> Any:
        """torch.cond (the layer's, looked up when called)."""
        return torch.cond(pred, true_fn, false_fn, operands)

    return types.SimpleNamespace(cond=cond, map=map)
