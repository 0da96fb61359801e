"""Custom autograd Functions: torch.autograd.Function, its ctx, and once_differentiable.

`Function.apply` runs the user's `forward` under no_grad and records one node for it. As in
torch, the ctx the user fills *is* that node: an instance of a class made per Function subclass
and named `<ClassName>Backward`, so `y.grad_fn.saved_tensors` and `y.grad_fn.k` read what the
forward stored. The backward pass (`autograd.execute`) calls the node's `apply` like any other:
it wraps the incoming gradients as Tensors, calls the user's `backward` (recorded when
`create_graph=True`, so a differentiable backward gives higher derivatives), and checks what it
returns with torch's messages.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from gradserve.surface import grad_mode, messages
from gradserve.surface.autograd_function import CtxDeclarations, run_forward
from gradserve.surface.layout import broadcast_shapes

from . import errors, hooks, limits, namespaces
from .nodes import FREED_MESSAGE, SUSPEND, _fit, _version_message, edge, next_sequence_nr
from .tensor import Tensor

NO_FORWARD_MESSAGE = messages.FUNCTION_NO_FORWARD
NO_BACKWARD_MESSAGE = messages.FUNCTION_NO_BACKWARD
DIRTY_NOT_RETURNED_MESSAGE = messages.DIRTY_NOT_RETURNED
DIRTY_LEAF_MESSAGE = messages.DIRTY_LEAF
ONCE_DIFFERENTIABLE_MESSAGE = messages.ONCE_DIFFERENTIABLE


class FunctionCtx(CtxDeclarations):
    """What `forward` (or `setup_context`) may tell the backward pass, as torch's ctx (its
    declaring methods: gradserve.surface.autograd_function)."""

    _saved: tuple[Any, ...] | None
    _saved_versions: tuple[int | None, ...]
    _dirty: tuple[Tensor, ...]
    _non_differentiable: tuple[Tensor, ...]
    materialize_grads: bool
    needs_input_grad: tuple[bool, ...]


class BackwardFunction(FunctionCtx):
    """The graph node of one `Function.apply` call (its ctx, too); torch's BackwardCFunction."""

    _forward_cls: type[Function]
    edges: tuple[tuple[Any, int] | None, ...]
    retained: dict[int, Any] | None
    freed: bool
    n_out: int
    out_data = None  # (read by autograd.footprint: custom nodes keep their outputs as tensors)

    def __init__(self) -> None:
        self.sequence_nr = next_sequence_nr()
        self._saved = None
        self._saved_versions = ()
        self._dirty = ()
        self._non_differentiable = ()
        self.materialize_grads = True
        self.needs_input_grad = ()
        self.edges = ()
        self.retained = None
        self.freed = False
        self.n_out = 0
        self._positions: tuple[int, ...] = ()  # argument index of each edge
        self._n_args = 0
        self._out_meta: tuple[tuple[tuple[int, ...], Any] | None, ...] = ()
        self._in_meta: tuple[tuple[tuple[int, ...], Any], ...] = ()

    def name(self) -> str:
        """torch's node name: `<ClassName>Backward`."""
        return type(self).__name__

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.{type(self).__name__} object at {hex(id(self))}>"

    @property
    def next_functions(self) -> tuple[tuple[Any, int], ...]:
        """One (node or None, output index) pair per Tensor input, as torch's."""
        return tuple(e if e is not None else (None, 0) for e in self.edges)

    @property
    def has_saved(self) -> bool:
        return bool(self._saved)

    @property
    def args(self) -> tuple[Any, ...]:
        """The saved tensors (read by the memory accounting, `autograd.footprint`)."""
        return self._saved or ()

    @property
    def saved_tensors(self) -> tuple[Any, ...]:
        """The tensors `save_for_backward` kept, checked against in-place changes since.

        Raises:
            GraphFreedError: a backward without retain_graph already freed them.
            InplaceError: one of them was modified in place after it was saved.
        """
        if self.freed and self._saved is None:
            raise errors.GraphFreedError(FREED_MESSAGE)
        saved = self._saved or ()
        for t, expected in zip(saved, self._saved_versions):
            if t is not None and expected is not None and t._vc[0] != expected:
                # torch names a saved output by this node, a saved input by its own grad_fn
                node = self if t.grad_fn is self else t.grad_fn
                raise errors.InplaceError(
                    _version_message(t, t._vc[0], expected, node, t.output_nr))
        return saved

    def saved_arrays(self) -> Any:
        """The arrays this node keeps alive for its backward."""
        return (t._data for t in self._saved or () if t is not None)

    def release(self) -> None:
        """Free the saved tensors (after a backward without retain_graph)."""
        if self._saved:
            self._saved = None
            self._saved_versions = ()
        self.freed = True

    def register_hook(self, hook: Callable[..., Any]) -> Any:
        """`hook(grad_inputs, grad_outputs)` after this node ran (see engine.hooks)."""
        return hooks.register_node_hook(self, hook)

    def register_prehook(self, hook: Callable[..., Any]) -> Any:
        """`hook(grad_outputs)` before this node runs (see engine.hooks)."""
        return hooks.register_node_prehook(self, hook)

    def incoming(self, grads: list[Any]) -> list[Any]:
        """The outputs' gradients as backward receives them: Tensors, zeros for missing ones
        unless materialization is off (then None)."""
        gs = []
        for k, g in enumerate(grads):
            if g is None and self.materialize_grads and self._out_meta[k] is not None:
                shape, dtype = self._out_meta[k]  # type: ignore[misc]
                g = np.zeros(shape, dtype.np)
            gs.append(g if g is None or isinstance(g, Tensor) else Tensor._make(np.asarray(g)))
        return gs

    def apply(self, grads: list[Any], create_graph: bool) -> list[Any]:
        """The user's backward: gradients for each edge, given the outputs' gradients."""
        result = self._forward_cls.backward(self, *self.incoming(grads))
        return self._check(result, create_graph)

    def _check(self, result: Any, create_graph: bool) -> list[Any]:
        """torch's checks of what backward returned, mapped onto this node's edges."""
        name = self.name()
        if not isinstance(result, tuple):
            result = (result,)
        if len(result) != self._n_args:
            if len(result) > self._n_args and all(r is None for r in result[self._n_args:]):
                result = result[:self._n_args]  # torch drops trailing Nones
            else:
                raise errors.AutogradError(
                    f"function {name} returned an incorrect number of gradients (expected "
                    f"{self._n_args}, got {len(result)})")
        tensor_positions = set(self._positions)
        for i, r in enumerate(result):
            if r is None:
                continue
            if not isinstance(r, Tensor):
                raise errors.AutogradError(
                    f"expected Variable or None (got {type(r).__name__})")
            if i not in tensor_positions:
                raise errors.AutogradError(
                    f"function {name} returned a gradient different than None at position "
                    f"{i + 1}, but the corresponding forward input was not a Variable")
        out: list[Any] = []
        for k, (e, pos) in enumerate(zip(self.edges, self._positions)):
            r = result[pos]
            if e is None or r is None:
                out.append(None)
                continue
            shape, dtype = self._in_meta[k]
            if tuple(r.shape) != shape:
                try:
                    broadcast_shapes(shape, tuple(r.shape))
                    expandable = len(r.shape) >= len(shape) and broadcast_shapes(
                        shape, tuple(r.shape)) == tuple(r.shape)
                except ValueError:
                    expandable = False
                if not expandable:
                    got = "[" + ", ".join(str(d) for d in r.shape) + "]"
                    want = "[" + ", ".join(str(d) for d in shape) + "]"
                    raise errors.AutogradError(
                        f"Function {name} returned an invalid gradient at index {pos} - got "
                        f"{got} but expected shape compatible with {want}")
            ns = namespaces.EN if create_graph else namespaces.NP
            out.append(_fit(ns, r if create_graph else r._data, self._in_meta[k], create_graph))
        return out


class Function:
    """Base class of custom autograd operations, as torch.autograd.Function.

    Subclasses define `forward` and `backward` as static methods — `forward(ctx, *args)`, or
    `forward(*args)` with a separate `setup_context(ctx, inputs, output)` — and are used through
    `apply`. `backward(ctx, *grad_outputs)` returns one gradient (or None) per forward argument.
    """

    _backward_cls: type[BackwardFunction]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._backward_cls = type(cls.__name__ + "Backward", (BackwardFunction,),
                                 {"_forward_cls": cls, "__module__": "torch.autograd.function"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn(messages.function_instantiated(type(self)), DeprecationWarning,
                      stacklevel=2)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise errors.AutogradError(messages.FUNCTION_LEGACY_CALL)

    @staticmethod
    def forward(*args: Any, **kwargs: Any) -> Any:
        """The computation; override it."""
        raise errors.NotImplementedFunctionError(NO_FORWARD_MESSAGE)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> Any:
        """Fill `ctx` from the inputs and output (the form where forward takes no ctx)."""
        raise errors.NotImplementedFunctionError(messages.FUNCTION_NO_SETUP_CONTEXT)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        """The vector-Jacobian product; override it."""
        raise errors.NotImplementedFunctionError(NO_BACKWARD_MESSAGE)

    vjp = backward

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        """Run `forward` on `args` and record one `<ClassName>Backward` node for it.

        Returns:
            What forward returned, its Tensors now outputs of the node.
        Raises:
            AutogradError: an in-place (dirty) input is a leaf that requires grad, or was not
                returned.
        """
        if cls is Function:
            raise errors.AutogradError("Function.apply must be called on a subclass")
        ctx = cls._backward_cls()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a._rg for a in args)
        output = run_forward(cls, Function, ctx, args, kwargs)
        return wrap_outputs(ctx, args, output)


def wrap_outputs(ctx: BackwardFunction, args: tuple[Any, ...], output: Any) -> Any:
    """Make forward's tensors the outputs of `ctx`'s node (when a gradient can flow)."""
    single = not isinstance(output, tuple)
    outs = (output,) if single else output
    dirty = {id(t) for t in ctx._dirty}
    returned = {id(o) for o in outs if isinstance(o, Tensor)}
    if dirty - returned:
        raise errors.AutogradError(DIRTY_NOT_RETURNED_MESSAGE)
    inputs = {id(a): a for a in args if isinstance(a, Tensor)}
    record = grad_mode.is_grad_enabled() and any(ctx.needs_input_grad)
    non_diff = {id(t) for t in ctx._non_differentiable}
    result: list[Any] = []
    for o in outs:
        if not isinstance(o, Tensor):
            result.append(o)
            continue
        if id(o) in dirty:
            if record and o._rg and o.grad_fn is None:
                raise errors.InplaceError(DIRTY_LEAF_MESSAGE)
            base = o._base
            if record and base is not None and base._rg and base.grad_fn is None:
                raise errors.InplaceError(messages.VIEW_OF_LEAF_INPLACE)
            o._vc[0] += 1  # torch bumps a dirty tensor's version once more
        elif id(o) in inputs:
            # an input returned as it is becomes a new tensor sharing its data (torch: a view)
            o = Tensor._make(o._array(), version=o._vc, dtype=o.dtype)
        result.append(o)
    saved = ctx._saved or ()
    for i, t in enumerate(saved):
        if t is not None and not isinstance(t, Tensor):
            raise errors.InvalidTypeError(messages.save_for_backward_type(i, t))
    ctx._saved_versions = tuple(None if t is None else t._vc[0] for t in saved)
    ctx.n_out = len(result)
    ctx._out_meta = tuple((tuple(o.shape), o.dtype) if isinstance(o, Tensor) else None
                          for o in result)
    if record:
        _link(ctx, args, result, non_diff)
    return result[0] if single else tuple(result)


def _link(ctx: BackwardFunction, args: tuple[Any, ...], outs: list[Any],
          non_diff: set[int]) -> None:
    positions = tuple(i for i, a in enumerate(args) if isinstance(a, Tensor))
    ctx._positions = positions
    ctx._n_args = len(args)
    ctx.edges = tuple(edge(args[i]) if args[i]._rg else None for i in positions)
    ctx._in_meta = tuple((tuple(args[i].shape), args[i].dtype) for i in positions)
    for nr, o in enumerate(outs):
        if (isinstance(o, Tensor) and id(o) not in non_diff
                and o.dtype.is_floating_point):
            o.grad_fn = ctx
            o.output_nr = nr
            o._rg = True
    if limits.current().bytes_left is not None:
        limits.charge(limits.NODE_BYTES, f"{ctx.name()} graph node")


def once_differentiable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a backward that may run only once: it runs under no_grad, and when a gradient
    of its result is asked for (create_graph with inputs that require grad), that fails with
    torch's message."""
    @functools.wraps(fn)
    def wrapper(ctx: Any, *args: Any) -> Any:
        with grad_mode.no_grad():
            outputs = fn(ctx, *args)
        if not grad_mode.is_grad_enabled():
            return outputs
        if not any(isinstance(a, Tensor) and a._rg for a in args):
            return outputs
        return delay_error(outputs)
    return wrapper


def delay_error(outputs: Any) -> Any:
    """once_differentiable's results: copies whose gradient fails with torch's message."""
    single = not isinstance(outputs, tuple)
    outs = (outputs,) if single else outputs
    err = DelayedError()
    wrapped = []
    for nr, o in enumerate(outs):
        if isinstance(o, Tensor):
            o = Tensor._make(o._array(), dtype=o.dtype)
            o.grad_fn, o.output_nr, o._rg = err, nr, True
        wrapped.append(o)
    err.n_out = len(wrapped)
    return wrapped[0] if single else tuple(wrapped)


class DelayedError:
    """The node behind a once_differentiable backward's results: differentiating it fails."""

    edges: tuple[Any, ...] = ()
    next_functions: tuple[Any, ...] = ()
    args: tuple[Any, ...] = ()
    out_data = None
    retained: dict[int, Any] | None = None
    freed = False
    has_saved = False

    def __init__(self) -> None:
        self.n_out = 1
        self.sequence_nr = next_sequence_nr()

    def name(self) -> str:
        return "torch::autograd::Error"

    def __repr__(self) -> str:
        return f"<Error object at {hex(id(self))}>"

    def saved_arrays(self) -> Any:
        return ()

    def release(self) -> None:
        self.freed = True

    def apply(self, grads: list[Any], create_graph: bool) -> list[Any]:
        raise errors.AutogradError(ONCE_DIFFERENTIABLE_MESSAGE)


# --- custom Functions whose Python runs elsewhere (a session's client) ---------------------------

class RemoteFunctionNode(BackwardFunction):
    """A custom Function's node whose forward and backward run in a session's client: the
    forward as ordinary no_grad ops, the backward when the pass reaches this node, which
    suspends the pass (`autograd.SUSPEND`) until the client sends the gradients back
    (`finish`). It keeps the tensors the client saved, for their version checks and the
    session's memory accounting."""

    def __init__(self, name: str, client_id: int) -> None:
        super().__init__()
        self._name = name
        self.client_id = client_id

    def name(self) -> str:
        return self._name + "Backward"

    def __repr__(self) -> str:
        return f"<{self.name()} object at {hex(id(self))}>"

    def apply(self, grads: list[Any], create_graph: bool) -> list[Any]:
        if self.freed and self._had_saved:
            raise errors.GraphFreedError(FREED_MESSAGE)
        return SUSPEND  # type: ignore[return-value]

    def saved_errors(self) -> list[str]:
        """Per saved tensor, torch's in-place message if it changed since it was saved, or ""."""
        out = []
        try_saved = self._saved or ()
        for t, expected in zip(try_saved, self._saved_versions):
            if t is not None and expected is not None and t._vc[0] != expected:
                node = self if t.grad_fn is self else t.grad_fn
                out.append(_version_message(t, t._vc[0], expected, node, t.output_nr))
            else:
                out.append("")
        return out

    def finish(self, result: tuple[Any, ...], create_graph: bool, once: bool,
               incoming: list[Any]) -> list[Any]:
        """The client's backward result, checked and fitted as a local Function's would be
        (`once`: its backward was once_differentiable)."""
        if once and create_graph and any(isinstance(g, Tensor) and g._rg for g in incoming):
            result = delay_error(result)
            if not isinstance(result, tuple):
                result = (result,)
        return self._check(result, create_graph)

    _had_saved = False


def link_remote(name: str, client_id: int, args: tuple[Any, ...], outputs: tuple[Any, ...],
                dirty: tuple[Tensor, ...], non_differentiable: tuple[Tensor, ...],
                saved: tuple[Any, ...], materialize_grads: bool
                ) -> tuple[RemoteFunctionNode, tuple[Any, ...]]:
    """Make `outputs` (computed by a client's forward under no_grad) the outputs of a new
    RemoteFunctionNode over `args`, as `Function.apply` does locally.

    Returns:
        The node (unreferenced unless recorded) and the outputs as the caller sees them (a
        returned input becomes a new tensor).
    Raises:
        AutogradError, InplaceError: torch's refusals of dirty inputs.
    """
    node = RemoteFunctionNode(name, client_id)
    node.needs_input_grad = tuple(isinstance(a, Tensor) and a._rg for a in args)
    node.save_for_backward(*saved)
    node._had_saved = bool(saved)
    node._dirty = dirty
    node._non_differentiable = non_differentiable
    node.materialize_grads = materialize_grads
    result = wrap_outputs(node, args, tuple(outputs))
    return node, tuple(result)
