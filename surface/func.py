"""torch.func's autodiff transforms (grad, grad_and_value, vjp, jvp, jacrev, jacfwd, hessian),
written once against a torch-like namespace on top of `autograd.grad`.

torch runs each transform at its own "level" of wrapped tensors. Here a transform's
differentiable inputs become fresh leaves (or, for an input that already requires grad, a view
of it, so that outer differentiation reaches it), the function runs under `enable_grad`, and the
result is `autograd.grad` with `create_graph=True` wherever something outside must differentiate
through it: an enclosing transform (nesting: `grad(grad(f))`), or a tensor the function captured
that requires grad (a PINN's network parameters). When the outermost transform returns, a
result that requires grad only through the transforms' own leaves is detached, as torch returns
it unwrapped; one that reaches another leaf keeps its graph. That test is the backend's
`reaches_other_leaf(tensor, own_leaves)` (the engine walks its nodes; a session asks the server
for the graph once).

Forward mode is the double-backward trick: `jvp` is the gradient, with respect to zero
cotangents `u`, of `vjp(u)` contracted with the tangents, and `jacfwd` does this once per input
element. The values are those of reverse mode: they may differ from torch's forward-mode rules
in the last bit (an element summed in another order, `-0.` where torch has `0.`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import pytree
from .functional import ErrorTypes

JVP = "jvp(f, primals, tangents)"
VJP = "vjp(f, *primals)"
GRAD = "grad_and_value(f)(*args)"


class _State(threading.local):
    """The transforms active in this thread: their nesting depth and the leaves they made."""

    def __init__(self) -> None:
        self.depth = 0
        self.own: list[Any] = []
        self.vmap_depth = 0
        self.randomness = "error"


STATE = _State()

ITEM_MESSAGE = ("vmap: It looks like you're calling .item() on a Tensor. We don't support vmap "
                "over calling .item() on a Tensor, please try to rewrite what you're doing with "
                "other operations. If error is occurring somewhere inside PyTorch internals, "
                "please file a bug report.")
RANDOM_MESSAGE = ("vmap: called random operation while in randomness error mode. Please either "
                  "use the 'same' or 'different' randomness flags on vmap or perform the "
                  "randomness operation out of vmap")


def check_item(error: type[Exception]) -> None:
    """Raise torch's error for `.item()` inside vmap (called by each layer's Tensor.item)."""
    if STATE.vmap_depth:
        raise error(ITEM_MESSAGE)


def check_random(error: type[Exception]) -> None:
    """Raise torch's error for a random op inside vmap(randomness='error') (each layer's
    random ops call this)."""
    if STATE.vmap_depth and STATE.randomness == "error":
        raise error(RANDOM_MESSAGE)


class _Asterisk:
    def __repr__(self) -> str:
        return "*"


def treespec_pprint(spec: pytree.TreeSpec) -> str:
    """torch.utils._pytree.treespec_pprint: the structure with `*` for each leaf."""
    return repr(spec.unflatten([_Asterisk()] * spec.num_leaves))


def argnums_checked(argnums: Any, n_args: int) -> Any:
    """`argnums` with negative entries wrapped, or torch's RuntimeError."""
    def one(a: Any) -> int:
        if not isinstance(a, int):
            raise RuntimeError(f"argnum must be int, got: {type(a)}")
        if 0 <= a < n_args:
            return a
        if -n_args <= a < 0:
            return a + n_args
        raise RuntimeError(f"Got argnum={a}, but only {n_args} positional inputs")
    if isinstance(argnums, int):
        return one(argnums)
    if isinstance(argnums, tuple):
        if not argnums:
            raise RuntimeError("argnums must be non-empty")
        if len(set(argnums)) != len(argnums):
            raise RuntimeError(f"argnums elements must be unique, got {argnums}")
        return tuple(one(a) for a in argnums)
    raise RuntimeError(f"argnums must be int or Tuple[int, ...], got: {type(argnums)}")


class Func:
    """torch.func's autodiff transforms bound to one torch-like namespace.

    Args:
        namespace: a callable returning the engine module or a Session.
        errors: the layer's RuntimeError/TypeError/ValueError types.
        reaches_other_leaf: `f(tensor, own_leaves)`: whether the graph behind `tensor`
            reaches a leaf that requires grad and is not one of `own_leaves` (nor is the tensor
            such a leaf itself).
    """

    def __init__(self, namespace: Callable[[], Any], errors: ErrorTypes,
                 reaches_other_leaf: Callable[[Any, list[Any]], bool]):
        self._ns = namespace
        self._errors = errors
        self._reaches_other_leaf = reaches_other_leaf

    @property
    def _t(self) -> Any:
        return self._ns()

    # --- levels ----------------------------------------------------------------------------------

    @contextmanager
    def _level(self) -> Iterator[_Level]:
        t = self._t
        level = _Level(self, t.is_grad_enabled())
        outer_own = STATE.own
        if STATE.depth == 0:
            STATE.own = []
        STATE.depth += 1
        try:
            with t.enable_grad():
                yield level
        finally:
            STATE.depth -= 1
            if STATE.depth == 0:
                STATE.own = outer_own

    def _is_tensor(self, x: Any) -> bool:
        return isinstance(x, self._t.Tensor)

    # --- grad ------------------------------------------------------------------------------------

    def grad(self, func: Callable[..., Any], argnums: Any = 0,
             has_aux: bool = False) -> Callable[..., Any]:
        """torch.func.grad: a function returning the gradient of scalar `func` with respect to
        its positional argument(s) `argnums` (pytrees of Tensors).

        Args:
            func: returns a 0-d Tensor (or `(output, aux)` with `has_aux`).
            argnums: an int or a tuple of ints (negative counts from the end).
            has_aux: `func` returns `(output, aux)`; aux is returned beside the gradient.
        Returns:
            A function giving the gradient(s), shaped as the argument(s) (with aux: a pair).
        Raises:
            RuntimeError, ValueError: torch's messages (a non-scalar output, bad argnums, an
                aux that is not a pair, a non-Tensor input).
        """
        gv = self.grad_and_value(func, argnums, has_aux)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            grads, value = gv(*args, **kwargs)
            return (grads, value[1]) if has_aux else grads
        return wrapper

    def grad_and_value(self, func: Callable[..., Any], argnums: Any = 0,
                       has_aux: bool = False) -> Callable[..., Any]:
        """torch.func.grad_and_value: like `grad`, returning `(gradient, value)` (with
        `has_aux`: `(gradient, (value, aux))`)."""
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._level() as level:
                output, aux, wrapped, spec = level.call(func, args, kwargs, argnums, has_aux,
                                                        GRAD)
                if not self._is_tensor(output):
                    raise self._errors.runtime(
                        f"{GRAD}: Expected f(*args) to return a Tensor, got {type(output)}")
                if output.dim() != 0:
                    raise self._errors.runtime(
                        f"{GRAD}: Expected f(*args) to return a scalar Tensor, got tensor with "
                        f"{output.dim()} dims. Maybe you wanted to use the vjp or jacrev APIs "
                        "instead?")
                grads = spec.unflatten(level.grad([output], wrapped))
                value = (output, aux) if has_aux else output
                return level.unwrap((grads, value))
        return wrapper

    # --- vjp, jvp --------------------------------------------------------------------------------

    def vjp(self, func: Callable[..., Any], *primals: Any, has_aux: bool = False) -> Any:
        """torch.func.vjp: `(func(*primals), vjp_fn)`; `vjp_fn(cotangents)` returns a tuple of
        the vector-Jacobian products, one pytree per primal.

        Args:
            func: returns a Tensor or a pytree of Tensors (with `has_aux`: `(output, aux)`).
            primals: pytrees of Tensors.
            has_aux: also return aux, as the third item.
        Returns:
            (output, vjp_fn) or (output, vjp_fn, aux). `vjp_fn(cotangents, retain_graph=True,
            create_graph=None)` may be called any number of times.
        Raises:
            RuntimeError, ValueError: torch's messages.
        """
        with self._level() as level:
            flat, spec = pytree.tree_flatten(primals)
            wrapped = [level.wrap(x) for x in flat]
            output, aux = level.split_aux(func(*spec.unflatten(wrapped)), has_aux, VJP)
            flat_out, out_spec = pytree.tree_flatten(output)
            self._only_tensors(flat_out, VJP)
            own = list(level.own_leaves())
            nested = STATE.depth > 1
            level.create([o for o in flat_out if o.requires_grad])  # learnt once, for vjp_fn
            known = level.known()

            def vjp_fn(cotangents: Any, retain_graph: bool = True,
                       create_graph: bool | None = None) -> Any:
                flat_ct, ct_spec = pytree.tree_flatten(cotangents)
                if ct_spec != out_spec:
                    raise self._errors.runtime(
                        "Expected pytree structure of cotangents to be the same as pytree "
                        "structure of outputs to the function. cotangents: "
                        f"{treespec_pprint(ct_spec)}, primal output: "
                        f"{treespec_pprint(out_spec)}")
                with self._level() as inner:
                    inner.adopt(own, nested, known)
                    grads = inner.grad(flat_out, wrapped, flat_ct, retain_graph=retain_graph,
                                       create_graph=create_graph)
                    return inner.unwrap(spec.unflatten(grads))

            result = (output, vjp_fn, aux) if has_aux else (output, vjp_fn)
            return level.unwrap(result)

    def jvp(self, func: Callable[..., Any], primals: Any, tangents: Any, *,
            strict: bool = False, has_aux: bool = False) -> Any:
        """torch.func.jvp: `(func(*primals), J @ tangents)` (with `has_aux`, aux third),
        computed by the double-backward trick (values as reverse mode: see the module doc).

        Args:
            func: returns a Tensor or a pytree of Tensors.
            primals: a tuple of Tensors (pytrees allowed).
            tangents: the same structure as primals, shapes as the primals.
            strict: raise when an output does not depend on the inputs.
            has_aux: func returns `(output, aux)`.
        Raises:
            RuntimeError: torch's messages.
        """
        t = self._t
        for name, v in (("primals", primals), ("tangents", tangents)):
            if not isinstance(v, tuple):
                raise self._errors.runtime(f"{JVP}: Expected {name} to be a tuple. E.g. it "
                                           "should be valid to call f(*primals).")
        flat_p, p_spec = pytree.tree_flatten(primals)
        flat_t, t_spec = pytree.tree_flatten(tangents)
        if p_spec != t_spec:
            raise self._errors.runtime(
                f"{JVP}: Expected primals and tangents to have the same python structure. For "
                "example, if primals is a tuple of 3 tensors, tangents also must be. Got "
                f"primals with structure {p_spec} and tangents with structure {t_spec}")
        for name, flat in (("primals", flat_p), ("tangents", flat_t)):
            if not flat:
                raise self._errors.runtime(f"{JVP}: Expected {name} to contain at least one "
                                           "Tensor.")
            for x in flat:
                if not self._is_tensor(x):
                    raise self._errors.runtime(
                        f"{JVP}: Expected {name} to only contain Tensors, got {type(x)}")
        for p, v in zip(flat_p, flat_t):
            if tuple(p.shape) != tuple(v.shape):
                raise self._errors.runtime(
                    "Trying to set a forward gradient that has a different size than that of "
                    "the original Tensor, this is not supported. Tensor is of size "
                    f"{list(p.shape)} while the given forward gradient is of size "
                    f"{list(v.shape)}.")
        with self._level() as level:
            wrapped = [level.wrap(x) for x in flat_p]
            output, aux = level.split_aux(func(*p_spec.unflatten(wrapped)), has_aux, JVP)
            flat_out, out_spec = pytree.tree_flatten(output)
            for o in flat_out:
                if not self._is_tensor(o):
                    raise self._errors.runtime(f"{JVP}: expected f(*args) to return only "
                                               f"tensors, got unsupported type {type(o)}")
            cols = level.forward(flat_out, wrapped, [flat_t])[0]
            if strict and any(c is None for c in cols):
                raise self._errors.runtime(
                    "jvp(f, primals, tangents, strict=True): The output of f is independent of "
                    "the inputs. This is not allowed with strict=True.")
            tangents_out = [t.zeros_like(o) if c is None else c for o, c in zip(flat_out, cols)]
            result = (out_spec.unflatten(flat_out), out_spec.unflatten(tangents_out))
            return level.unwrap(result + (aux,) if has_aux else result)

    def _only_tensors(self, flat_out: list[Any], api: str) -> None:
        if not flat_out:
            raise self._errors.runtime(f"{api}: Expected f to be a function that has non-empty "
                                       f"output (got output = {flat_out})")
        for o in flat_out:
            if not self._is_tensor(o):
                raise self._errors.runtime(f"{api}: expected f(*primals) to return only "
                                           f"tensors, got unsupported type {type(o)}")
            if not o.is_floating_point():
                raise self._errors.runtime(
                    "vjp(f, ...): All outputs of f must be floating-point or complex Tensors, "
                    f"got Tensor with dtype {o.dtype}")

    # --- Jacobians -------------------------------------------------------------------------------

    def jacrev(self, func: Callable[..., Any], argnums: Any = 0, *, has_aux: bool = False,
               chunk_size: int | None = None,
               _preallocate_and_copy: bool = False) -> Callable[..., Any]:
        """torch.func.jacrev: the Jacobian of `func` with respect to argument(s) `argnums`, one
        vector-Jacobian product per output element.

        Args:
            func: returns a Tensor or a pytree of Tensors (`(output, aux)` with has_aux).
            argnums: an int or a tuple of ints.
            has_aux: also return aux.
            chunk_size: accepted (> 0); the rows run one by one either way (same values).
        Returns:
            A function giving, per output leaf, the Jacobian blocks of shape
            output.shape + input.shape (pytrees as the output and the argument(s)).
        Raises:
            ValueError: chunk_size <= 0. RuntimeError: torch's messages.
        """
        if chunk_size is not None and chunk_size <= 0:
            raise self._errors.value("jacrev: `chunk_size` should be greater than 0.")
        return self._jacobian(func, argnums, has_aux, VJP, forward=False)

    def jacfwd(self, func: Callable[..., Any], argnums: Any = 0, has_aux: bool = False, *,
               randomness: str = "error") -> Callable[..., Any]:
        """torch.func.jacfwd: the Jacobian of `func` column by column (one Jacobian-vector
        product per input element, by the double-backward trick; values as reverse mode, see
        the module doc).

        Args:
            func, argnums, has_aux: as `jacrev`.
            randomness: accepted for torch's signature ("error", "different", "same").
        Raises:
            RuntimeError: torch's messages.
        """
        if randomness not in ("error", "different", "same"):
            raise self._errors.runtime("Only allowed values for randomness are 'error', "
                                       f"'different', or 'same'. Got {randomness}")
        return self._jacobian(func, argnums, has_aux, JVP, forward=True)

    def hessian(self, func: Callable[..., Any], argnums: Any = 0) -> Callable[..., Any]:
        """torch.func.hessian: `jacfwd(jacrev(func, argnums), argnums)`."""
        return self.jacfwd(self.jacrev(func, argnums), argnums)

    def _jacobian(self, func: Callable[..., Any], argnums: Any, has_aux: bool, api: str,
                  forward: bool) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._level() as level:
                output, aux, wrapped, spec = level.call(func, args, kwargs, argnums, has_aux,
                                                        api)
                flat_out, out_spec = pytree.tree_flatten(output)
                self._only_tensors(flat_out, VJP)
                blocks = (level.jac_columns(flat_out, wrapped) if forward
                          else level.jac_rows(flat_out, wrapped))
                jac = out_spec.unflatten([spec.unflatten(row) for row in blocks])
                return level.unwrap((jac, aux) if has_aux else jac)
        return wrapper


class _Level:
    """One transform's call: wraps its inputs, differentiates, unwraps its results."""

    def __init__(self, func: Func, grad_enabled: bool):
        self._f = func
        self._t = func._t
        self._errors = func._errors
        self.grad_enabled = grad_enabled  # the caller's grad mode (no_grad outside: no graph)
        self._nested = STATE.depth > 0  # inside another transform (set before our increment)
        # id -> (tensor, whether it reaches another leaf): each tensor asked once (a session
        # fetches its graph to tell); the tensor is held so that its id stays its own
        self._reaches: dict[int, tuple[Any, bool]] = {}

    def known(self) -> dict[int, tuple[Any, bool]]:
        """What `reaches_other_leaf` answered so far."""
        return dict(self._reaches)

    def own_leaves(self) -> list[Any]:
        """Every leaf the active transforms made (this one's included)."""
        return STATE.own

    def adopt(self, own: list[Any], nested: bool, known: dict[int, tuple[Any, bool]]) -> None:
        """A vjp_fn's call: the leaves its vjp made count as the transforms' own, and what its
        vjp learnt of its outputs holds."""
        STATE.own.extend(own)
        self._nested = self._nested or nested
        self._reaches.update(known)

    def reaches_other_leaf(self, x: Any) -> bool:
        """Whether `x` reaches a leaf requiring grad that no active transform made."""
        hit = self._reaches.get(id(x))
        if hit is None:
            hit = (x, x.requires_grad and self._f._reaches_other_leaf(x, STATE.own))
            self._reaches[id(x)] = hit
        return hit[1]

    def wrap(self, x: Any) -> Any:
        """The differentiable stand-in of input `x`."""
        if not self._f._is_tensor(x):
            raise self._errors.value(f"Thing passed to transform API must be Tensor, got "
                                     f"{type(x)}")
        if x.requires_grad and self.grad_enabled:
            return x.view(tuple(x.shape))  # outer differentiation reaches x through the view
        leaf = x.detach().requires_grad_(True)
        STATE.own.append(leaf)
        return leaf

    def call(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
             argnums: Any, has_aux: bool, api: str) -> tuple[Any, Any, list[Any], Any]:
        """`func(*args, **kwargs)` with the arguments `argnums` wrapped: (output, aux, the
        wrapped leaves, their pytree spec)."""
        nums = argnums_checked(argnums, len(args))
        picked = args[nums] if isinstance(nums, int) else tuple(args[i] for i in nums)
        flat, spec = pytree.tree_flatten(picked)
        wrapped = [self.wrap(x) for x in flat]
        new = spec.unflatten(wrapped)
        if isinstance(nums, int):
            call = tuple(new if i == nums else a for i, a in enumerate(args))
        else:
            call = tuple(new[nums.index(i)] if i in nums else a for i, a in enumerate(args))
        output, aux = self.split_aux(func(*call, **kwargs), has_aux, api)
        return output, aux, wrapped, spec

    def split_aux(self, output: Any, has_aux: bool, api: str) -> tuple[Any, Any]:
        """(output, aux) of a function given has_aux (aux None without), checked as torch."""
        if not has_aux:
            return output, None
        if not (isinstance(output, tuple) and len(output) == 2):
            raise self._errors.runtime(f"{api}: output of function f should be a tuple: "
                                       "(output, aux) if has_aux is True")
        for a in pytree.tree_leaves(output[1]):
            if not self._f._is_tensor(a):
                raise self._errors.runtime(f"Expected tensors, got unsupported type {type(a)}")
        return output[0], output[1]

    def create(self, outputs: list[Any]) -> bool:
        """Whether the backward must be recorded: for an enclosing transform, or because an
        output reaches a leaf requiring grad that the transforms did not make."""
        if not self.grad_enabled:
            return False
        if self._nested:
            return True
        return any(self.reaches_other_leaf(o) for o in outputs)

    def grad(self, outputs: list[Any], inputs: list[Any], grad_outputs: Any = None,
             retain_graph: bool = True, create_graph: bool | None = None) -> list[Any]:
        """d(outputs)/d(inputs) contracted with grad_outputs; zeros where independent."""
        t = self._t
        gos = list(grad_outputs) if grad_outputs is not None else [None] * len(outputs)
        pairs = [(o, g) for o, g in zip(outputs, gos) if o.requires_grad]
        create = self.create([o for o, _ in pairs]) if create_graph is None else create_graph
        res: list[Any] = [None] * len(inputs)
        if pairs:
            with t.set_grad_enabled(create):
                res = list(t.autograd.grad(
                    [o for o, _ in pairs], list(inputs),
                    None if grad_outputs is None else [g for _, g in pairs],
                    retain_graph=retain_graph or create, create_graph=create,
                    allow_unused=True))
        return [t.zeros_like(x) if g is None else g for g, x in zip(res, inputs)]

    def forward(self, outputs: list[Any], inputs: list[Any],
                tangent_sets: list[list[Any]]) -> list[list[Any]]:
        """Jacobian-vector products by the double-backward trick, one list (per output; None
        where independent) for each set of tangents (shaped as the inputs; None for zero)."""
        t = self._t
        diff = [o for o in outputs if o.requires_grad]
        if not diff:
            return [[None] * len(outputs) for _ in tangent_sets]
        create = self.create(diff)
        us = [t.zeros_like(o).requires_grad_(True) for o in diff]
        STATE.own.extend(us)
        back = t.autograd.grad(diff, list(inputs), us, create_graph=True, allow_unused=True)
        results = []
        for tangents in tangent_sets:
            used = [(g, v) for g, v in zip(back, tangents)
                    if g is not None and v is not None and g.requires_grad]
            cols: list[Any] = [None] * len(diff)
            if used:
                with t.set_grad_enabled(create):
                    cols = list(t.autograd.grad(
                        [g for g, _ in used], us, [v for _, v in used],
                        retain_graph=True, create_graph=create, allow_unused=True))
            by_output = iter(cols)
            results.append([next(by_output) if o.requires_grad else None for o in outputs])
        return results

    def jac_rows(self, outputs: list[Any], inputs: list[Any]) -> list[list[Any]]:
        """Per output, per input: the Jacobian block, one vjp per output element."""
        blocks = []
        for o in outputs:
            rows: list[list[Any]] = [[] for _ in inputs]
            flat = o.reshape(-1)
            for j in range(o.numel()):
                for k, g in enumerate(self.grad([flat[j]], inputs)):
                    rows[k].append(g)
            blocks.append([self._assemble(r, tuple(o.shape), tuple(x.shape), x, 0)
                           for r, x in zip(rows, inputs)])
        return blocks

    def jac_columns(self, outputs: list[Any], inputs: list[Any]) -> list[list[Any]]:
        """Per output, per input: the Jacobian block, one jvp per input element."""
        t = self._t
        sets, owners = [], []
        for k, x in enumerate(inputs):
            eye = t.eye(x.numel(), dtype=x.dtype)
            for j in range(x.numel()):
                tangents: list[Any] = [None] * len(inputs)
                tangents[k] = eye[j].view(tuple(x.shape))
                sets.append(tangents)
                owners.append(k)
        cols = self.forward(outputs, inputs, sets) if sets else []
        blocks = []
        for n, o in enumerate(outputs):
            per_input: list[list[Any]] = [[] for _ in inputs]
            for c, k in zip(cols, owners):
                per_input[k].append(t.zeros_like(o) if c[n] is None else c[n])
            blocks.append([self._assemble(p, tuple(o.shape), tuple(x.shape), o, -1)
                           for p, x in zip(per_input, inputs)])
        return blocks

    def _assemble(self, parts: list[Any], out_shape: tuple[int, ...],
                  in_shape: tuple[int, ...], like: Any, dim: int) -> Any:
        t = self._t
        shape = out_shape + in_shape
        if not parts:
            return t.zeros(shape, dtype=like.dtype)
        return t.stack(parts, dim=dim).reshape(shape)

    def unwrap(self, result: Any) -> Any:
        """The outermost transform's results: a tensor that requires grad only through the
        transforms' own leaves is detached."""
        if self._nested or STATE.depth > 1:
            return result

        def one(x: Any) -> Any:
            if (self._f._is_tensor(x) and x.requires_grad
                    and not (self.grad_enabled and self.reaches_other_leaf(x))):
                return x.detach()
            return x
        return pytree.tree_map(one, result)
