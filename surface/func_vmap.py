"""torch.vmap (torch.func.vmap), written once against a torch-like namespace.

gradserve has no batched tensors: `vmap(f)(x)` runs `f` once per index of the mapped dimension,
on `x.select(in_dim, i)`, and stacks the results along `out_dims`. The inputs, outputs and
errors are torch's (in_dims/out_dims pytrees, the size checks and their messages). What a loop
cannot tell apart from a batched run: an in-place op on a mapped input writes through the view,
as torch does, but one on a tensor the function captured is applied once per index where torch
refuses (a batched value into an unbatched tensor); an output with out_dims None is refused, as
torch refuses a batched one, only when the runs gave different values. `.item()` and, with
randomness="error", random ops raise torch's errors inside the mapped function.
randomness="same" replays the default generator's state for each index (torch's values: one
unbatched draw); randomness="different" draws once per index (not torch's batched draw).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from . import messages, pytree
from .func import STATE
from .functional import ErrorTypes

# vmap runs the function once per index: a batch is at most this many (each run is ordinary
# ops, which the server's per-session op and memory limits bound as well)
MAX_BATCH = 65536


def _name(func: Any) -> str:
    if hasattr(func, "__name__"):
        return str(func.__name__)
    if isinstance(func, functools.partial):
        return f"functools.partial({_name(func.func)}, ...)"
    return repr(func)


def _broadcast(tree: Any, spec: pytree.TreeSpec) -> list[Any] | None:
    """`tree` (a prefix of `spec`'s structure) repeated down to each of spec's leaves, or None
    when it does not fit (torch's _broadcast_to_and_flatten)."""
    if pytree.tree_is_leaf(tree):
        return [tree] * spec.num_leaves
    if spec.is_leaf():
        return None
    node_type = type(tree)
    if node_type is not spec.type:
        return None
    children, context = pytree.SUPPORTED_NODES[node_type].flatten_fn(tree)
    if len(children) != spec.num_children or context != spec.context:
        return None
    out: list[Any] = []
    for child, child_spec in zip(children, spec.children_specs):
        sub = _broadcast(child, child_spec)
        if sub is None:
            return None
        out.extend(sub)
    return out


class Vmap:
    """torch.vmap bound to one namespace (see the module doc)."""

    def __init__(self, namespace: Callable[[], Any], errors: ErrorTypes):
        self._ns = namespace
        self._errors = errors

    def vmap(self, func: Callable[..., Any], in_dims: Any = 0, out_dims: Any = 0,
             randomness: str = "error", *, chunk_size: int | None = None) -> Callable[..., Any]:
        """torch.vmap: `func` mapped over dimension `in_dims` of its inputs.

        Args:
            func: takes Tensors (pytrees), returns Tensors (pytrees).
            in_dims: an int, or a pytree prefix of the positional inputs of ints and None (not
                mapped).
            out_dims: where the mapped dimension goes in each output (int, None or a pytree).
            randomness: "error" (random ops raise), "same" or "different".
            chunk_size: accepted (> 0); every index runs on its own either way.
        Returns:
            The mapped function.
        Raises:
            ValueError, RuntimeError: torch's messages for bad in_dims/out_dims, inconsistent
                sizes, non-Tensor outputs, a batch over MAX_BATCH.
        """
        if randomness not in ("error", "different", "same"):
            raise self._errors.runtime("Only allowed values for randomness are 'error', "
                                       f"'different', or 'same'. Got {randomness}")
        if chunk_size is not None and chunk_size <= 0:
            raise self._errors.value(f"vmap: chunk_size should be None or greater than 0. "
                                     f"(got {chunk_size})")
        if not isinstance(out_dims, int):
            for d in pytree.tree_leaves(out_dims):
                if d is not None and not isinstance(d, int):
                    raise self._errors.value(
                        f"vmap({_name(func)}, ..., out_dims={out_dims}): `out_dims` must be an "
                        "int, None or a python collection of ints representing where in the "
                        "outputs the vmapped dimension should appear.")

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            size, dims, flat, spec = self._inputs(func, in_dims, args)
            outs = []
            t = self._ns()
            state = t.get_rng_state() if randomness == "same" else None
            STATE.vmap_depth += 1
            saved = STATE.randomness
            STATE.randomness = randomness
            try:
                for i in range(size):
                    if state is not None:
                        t.set_rng_state(state)
                    call = [a if d is None else a.select(d, i) for a, d in zip(flat, dims)]
                    outs.append(func(*spec.unflatten(call), **kwargs))
            finally:
                STATE.vmap_depth -= 1
                STATE.randomness = saved
            return self._outputs(func, out_dims, outs)
        return wrapper

    def _inputs(self, func: Any, in_dims: Any,
                args: tuple[Any, ...]) -> tuple[int, list[Any], list[Any], pytree.TreeSpec]:
        name = _name(func)
        where = f"vmap({name}, in_dims={in_dims}, ...)(<inputs>)"
        if not isinstance(in_dims, (int, tuple)):
            raise self._errors.value(
                f"{where}: expected `in_dims` to be int or a (potentially nested) tuple "
                f"matching the structure of inputs, got: {type(in_dims)}.")
        if not args:
            raise self._errors.value(
                f"vmap({name})(<inputs>): got no inputs. Maybe you forgot to add inputs, or you "
                "are trying to vmap over a function with no inputs. The latter is unsupported.")
        flat, spec = pytree.tree_flatten(args)
        dims = _broadcast(in_dims, spec)
        if dims is None:
            raise self._errors.value(
                f"{where}: in_dims is not compatible with the structure of `inputs`. in_dims "
                f"has structure {pytree.tree_flatten(in_dims)[1]} but inputs has structure "
                f"{spec}.")
        t = self._ns()
        for k, (d, a) in enumerate(zip(dims, flat)):
            if d is None:
                continue
            if not isinstance(d, int):
                raise self._errors.value(f"{where}: Got in_dim={d} for an input but in_dim must "
                                         "be either an integer dimension or None.")
            if not isinstance(a, t.Tensor):
                raise self._errors.value(
                    f"{where}: Got in_dim={d} for an input but the input is of type {type(a)}. "
                    "We cannot vmap over non-Tensor arguments, please use None as the "
                    "respective in_dim")
            n = a.dim()
            if not -n <= d < n:
                raise self._errors.value(
                    f"{where}: Got in_dim={d} for some input, but that input is a Tensor of "
                    f"dimensionality {n} so expected in_dim to satisfy -{n} <= in_dim < {n}.")
            dims[k] = d % n
        sizes = [a.shape[d] for a, d in zip(flat, dims) if d is not None]
        if not sizes:
            raise self._errors.value("vmap: Expected at least one Tensor to vmap over")
        if any(s != sizes[0] for s in sizes):
            raise self._errors.value("vmap: Expected all tensors to have the same size in the "
                                     f"mapped dimension, got sizes {sizes} for the mapped "
                                     "dimension")
        if sizes[0] > MAX_BATCH:
            raise self._errors.value(f"vmap: gradserve runs the function once per index, for at "
                                     f"most {MAX_BATCH} indices; got {sizes[0]}")
        return sizes[0], dims, flat, spec

    def _outputs(self, func: Any, out_dims: Any, outs: list[Any]) -> Any:
        t = self._ns()
        name = _name(func)
        flat0, spec = pytree.tree_flatten(outs[0]) if outs else ([], None)
        if spec is None:  # a batch of size 0: torch runs nothing either; no outputs to shape
            raise self._errors.runtime("vmap: gradserve cannot map over a batch of size 0")
        if isinstance(outs[0], t.Tensor):
            if isinstance(out_dims, int) or out_dims is None:
                dims: list[Any] | None = [out_dims]
            elif isinstance(out_dims, tuple) and len(out_dims) == 1:
                dims = list(out_dims)
            else:
                dims = None
        else:
            dims = _broadcast(out_dims, spec)
        if dims is None:
            raise self._errors.value(
                f"vmap({name}, ..., out_dims={out_dims})(<inputs>): out_dims is not compatible "
                f"with the structure of `outputs`. out_dims has structure "
                f"{pytree.tree_flatten(out_dims)[1]} but outputs has structure {spec}.")
        per_index = [pytree.tree_flatten(o)[0] for o in outs]
        result = []
        for k, d in enumerate(dims):
            first = flat0[k]
            if d is None:
                # torch refuses a batched output here; a loop sees one when the runs differ
                if any(leaves[k] is not first and not (
                        isinstance(first, t.Tensor) and t.equal(leaves[k], first))
                       for leaves in per_index[1:]):
                    raise self._errors.value(f"vmap({name}, ...): `{name}` can not return a "
                                             "BatchedTensor when out_dim is None")
                result.append(first)
                continue
            if not isinstance(first, t.Tensor):
                raise self._errors.value(
                    f"vmap({name}, ...): `{name}` must only return Tensors, got type "
                    f"{type(first)}. Did you mean to set out_dims= to None for output?")
            n = first.dim() + 1  # checked here: a session would raise it only when read
            if not -n <= d < n:
                raise IndexError(messages.dim_out_of_range(d, -n, n - 1))
            result.append(t.stack([leaves[k] for leaves in per_index], dim=d))
        return spec.unflatten(result)
