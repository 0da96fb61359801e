"""Custom autograd Functions in a session: `torch.autograd.Function` whose Python runs here.

`Function.apply` runs the user's `forward` as ordinary recorded ops under no_grad, then records
one ApplyFunction instruction: the server links the forward's outputs to its tensor arguments
through a node named `<ClassName>Backward` (the server applies torch's rules: dirty inputs,
non-differentiable outputs, returned inputs). Nothing is sent until a value is needed.

When a backward pass on the server reaches such a node it suspends and the instruction's result
says so (`suspended`); `finish_pass` then binds the node's incoming gradients and saved tensors
to new handles (they stay on the server), calls the user's `backward` here — its ops recorded on
those handles like any other — and sends ResumeBackward with what it returned. That is one extra
round trip per custom node the pass reaches; an exception raised by the user's backward reaches
the user from their own line (the suspended pass is then dropped on the server).

A ctx lives as long as the server's graphs reach its node: the server reports dropped nodes in
each reply (`BatchResponse.dropped_functions`) and the session forgets their ctx.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gradserve.surface import grad_mode, messages, saved_hooks
from gradserve.surface.autograd_function import CtxDeclarations, run_forward
from gradserve.v1 import graph_pb2
from gradserve.v1 import session_pb2 as spb

from .tensor import Tensor

if TYPE_CHECKING:
    from .session import Session


class FunctionCtx(CtxDeclarations):
    """The ctx a Function's forward (or setup_context) fills and its backward reads (its
    declaring methods: gradserve.surface.autograd_function; the server's node holds what
    save_for_backward kept)."""

    def __init__(self, args: tuple[Any, ...]):
        self._args: tuple[Any, ...] | None = args  # only while forward runs
        self._saved: tuple[Any, ...] = ()
        self._dirty: tuple[Any, ...] = ()
        self._non_differentiable: tuple[Any, ...] = ()
        self.materialize_grads = True
        self._needs: tuple[bool, ...] | None = None
        self._saved_errors: tuple[str, ...] = ()
        self._tensor_outputs: tuple[bool, ...] = ()  # per forward output: is it a Tensor

    @property
    def saved_tensors(self) -> tuple[Any, ...]:
        """What save_for_backward kept: in forward, and in backward (bound to new handles).

        Raises:
            RuntimeError: a saved tensor was modified in place since (torch's message).
        """
        for msg in self._saved_errors:
            if msg:
                raise RuntimeError(msg)
        return self._saved

    @property
    def needs_input_grad(self) -> tuple[bool, ...]:
        """Per forward argument, whether it is a tensor that requires grad."""
        if self._needs is None:
            args = self._args or ()
            self._needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        return self._needs


class Function:
    """Base class of custom autograd operations, as torch.autograd.Function (see `engine`'s)."""

    _session: Session  # set on each session's own subclass (Session.autograd.Function)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn(messages.function_instantiated(type(self)), DeprecationWarning,
                      stacklevel=2)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(messages.FUNCTION_LEGACY_CALL)

    @staticmethod
    def forward(*args: Any, **kwargs: Any) -> Any:
        """The computation; override it."""
        raise NotImplementedError(messages.FUNCTION_NO_FORWARD)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> Any:
        """Fill `ctx` from the inputs and output (the form where forward takes no ctx)."""
        raise NotImplementedError(messages.FUNCTION_NO_SETUP_CONTEXT)

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        """The vector-Jacobian product; override it."""
        raise NotImplementedError(messages.FUNCTION_NO_BACKWARD)

    vjp = backward

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        """Run forward on `args` (recorded under no_grad) and link its outputs through one
        `<ClassName>Backward` node on the server.

        Returns:
            What forward returned, its Tensors replaced by the node's outputs.
        """
        session = cls._session
        ctx = FunctionCtx(args)
        output = run_forward(cls, Function, ctx, args, kwargs)
        ctx._args = None
        for i, t in enumerate(ctx._saved):
            if t is not None and not isinstance(t, Tensor):
                raise TypeError(messages.save_for_backward_type(i, t))
        single = not isinstance(output, tuple)
        outs = (output,) if single else output
        tensors = [o for o in outs if isinstance(o, Tensor)]
        results = [session._new_tensor() for _ in tensors]
        node = session._next_function_id()
        rec = session._recorder
        with rec.lock:
            start = len(rec.sinks)
            try:
                m = session._record(_bind(results), results).apply_function
                m.name = cls.__name__
                # its outputs' grad_fn shows as torch's custom node class (client/tensor.py)
                session.__dict__.setdefault("_function_nodes", set()).add(
                    cls.__name__ + "Backward")
                m.node = node
                for a in args:
                    session._value(a if isinstance(a, Tensor) else None, m.args.add(),
                                   f"{cls.__name__}.apply()")
                for o in tensors:
                    session._value(o, graph_pb2.Value(), f"{cls.__name__}.forward() output")
                    m.outputs.append(o._handle)
                m.results.extend(t._handle for t in results)
                m.non_differentiable.extend(
                    k for k, o in enumerate(tensors)
                    if any(o is t for t in ctx._non_differentiable))
                dirty = [i for i, a in enumerate(args)
                         if isinstance(a, Tensor) and any(a is t for t in ctx._dirty)]
                m.dirty.extend(dirty)
                m.saved.extend(0 if t is None else t._handle for t in ctx._saved)
                m.materialize_grads = ctx.materialize_grads
                m.no_grad = not grad_mode.is_grad_enabled()
            except BaseException:
                rec.truncate(start)
                raise
        ctx._saved = ()  # the server's node holds them (a client handle here could keep the
        ctx._dirty = ctx._non_differentiable = ()  # node, and so this ctx, alive forever)
        ctx._tensor_outputs = tuple(isinstance(o, Tensor) for o in outs)
        session._custom[node] = (cls, ctx)
        dirty_args = [args[i] for i in dirty]
        if dirty_args:
            # torch refuses a dirty leaf (or a view of one), or a dirty input not returned, in
            # apply: the server's refusal is raised here, not at the next value read
            session._recorder.flush()
        else:
            session._after_record()
        linked = iter(results)
        final = tuple(_linked_output(session, o, next(linked), dirty_args)
                      if isinstance(o, Tensor) else o for o in outs)
        return final[0] if single else final


def _linked_output(session: Session, output: Tensor, result: Tensor,
                   dirty_args: list[Tensor]) -> Tensor:
    """What apply returns for one of forward's tensors: the node's output `result`, except that
    a dirty input is returned as the same tensor (torch rebases it onto the node; the server's
    result handle names the same tensor, so only its description is stale)."""
    if any(output is a for a in dirty_args):
        session._wrote(output)
        return output
    return result


def _bind(results: list[Tensor]) -> Callable[[spb.InstructionResult], None]:
    def sink(r: spb.InstructionResult) -> None:
        for t, info in zip(results, r.handles.tensors):
            t._info = info
    return sink


def once_differentiable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a backward that may run only once: it runs under no_grad, and a gradient of its
    result (create_graph) fails on the server with torch's message."""
    @functools.wraps(fn)
    def wrapper(ctx: Any, *args: Any) -> Any:
        with grad_mode.no_grad():
            return fn(ctx, *args)
    wrapper._gradserve_once_differentiable = True  # type: ignore[attr-defined]
    return wrapper


def _described(session: Session, info: spb.TensorInfo) -> Tensor | None:
    """A new client tensor for a server tensor ClaimGradients will bind, already described."""
    if info.dtype == 0:
        return None
    t = session._new_tensor()
    t._info = spb.TensorInfo()
    t._info.CopyFrom(info)
    t._info.handle = t._handle
    return t


# --- hooks ---------------------------------------------------------------------------------------

class RemovableHandle:
    """What `register_hook` returns: `remove()` unregisters the hook (sent with the next batch);
    also a context manager that removes it on exit."""

    def __init__(self, session: Session, hook: int):
        self._session = session
        self.id = hook

    def remove(self) -> None:
        """Unregister the hook (nothing happens the second time)."""
        s = self._session
        if s._hooks.pop(self.id, None) is not None and not s.closed:
            s._record().remove_hook.hook = self.id

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def register_hook(session: Session, t: Tensor, fn: Callable[..., Any],
                  post_accumulate: bool) -> RemovableHandle:
    """Tensor.register_hook / register_post_accumulate_grad_hook: `fn` runs here when a backward
    pass on the server reaches the tensor (one round trip each time).

    Raises:
        RuntimeError: torch's refusals (a tensor that does not require grad; a post-accumulate
            hook on a non-leaf).
    """
    if not callable(fn):
        raise TypeError(f"hook must be callable, not {type(fn).__name__}")
    if not t.requires_grad:
        raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
    if post_accumulate and not t.is_leaf:
        raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
    return _register(session, t, fn, "post_accumulate" if post_accumulate else "tensor")


def register_node_hook(session: Session, t: Tensor, fn: Callable[..., Any],
                       pre: bool) -> RemovableHandle:
    """`t.grad_fn.register_prehook(fn)` (`fn(grad_outputs)`) or `register_hook(fn)`
    (`fn(grad_inputs, grad_outputs)`): `fn` runs here; a tuple it returns replaces them."""
    if not callable(fn):
        raise TypeError(f"hook must be callable, not {type(fn).__name__}")
    return _register(session, t, fn, "node_pre" if pre else "node_post")


def _register(session: Session, t: Tensor, fn: Callable[..., Any], kind: str
              ) -> RemovableHandle:
    hook = session._next_function_id()
    m = session._record().register_hook
    m.handle, m.hook = t._handle, hook
    m.post_accumulate = kind == "post_accumulate"
    m.node_pre, m.node_post = kind == "node_pre", kind == "node_post"
    name = getattr(fn, "__name__", type(fn).__name__)
    m.name = name if len(name) <= 100 and name.isascii() and name.isprintable() else "hook"
    session._hooks[hook] = (fn, t if kind == "post_accumulate" else None, kind)
    session._after_record()
    return RemovableHandle(session, hook)


def _run_hook(session: Session, s: spb.BackwardSuspended) -> list[spb.InstructionResult]:
    """Run the client hook a pass is suspended at and record its resume, whose result the
    returned list receives."""
    entry = session._hooks.get(s.hook)
    grads = [_described(session, info) for info in s.grads]
    outputs = [_described(session, info) for info in s.grad_outputs]
    claim = session._record(None, [g for g in (*grads, *outputs) if g is not None]
                            ).claim_gradients
    claim.hook = s.hook
    claim.handles.extend(0 if g is None else g._handle for g in (*grads, *outputs))
    kind = entry[2] if entry is not None else "removed"
    result = None  # a removed hook (while the pass ran) leaves the gradients as they are
    if entry is not None:
        fn, leaf, _ = entry
        try:
            with grad_mode.set_grad_enabled(s.create_graph):
                if kind == "post_accumulate":
                    fn(leaf)  # its result is ignored
                elif kind == "node_pre":
                    result = fn(tuple(grads))
                elif kind == "node_post":
                    result = fn(tuple(grads), tuple(outputs))
                elif kind == "unpack":
                    result = _unpacked(fn())
                else:
                    result = fn(*grads)
            if kind.startswith("node") and result is not None and not isinstance(result,
                                                                                  tuple):
                raise TypeError(messages.hook_returned_non_tuple(result))
        except BaseException:
            session._record().abort_backward.SetInParent()  # sent with the next batch
            raise
    box: list[spb.InstructionResult] = []
    m = session._record(box.append).resume_backward
    m.hook = s.hook
    if kind.startswith("node") or kind == "unpack":
        for v in result or ():
            session._value(v, m.grads.add(), "hook result")
    elif kind == "tensor":
        session._value(result, m.grads.add(), "hook result")
    return box


def _unpacked(tensors: list[Any]) -> tuple[Any, ...]:
    """What the unpack hooks of a packed node returned, refused as torch refuses a non-tensor."""
    for t in tensors:
        if not isinstance(t, Tensor):
            raise TypeError(saved_hooks.UNPACK_NOT_TENSOR.format(type(t).__name__))
    return tuple(tensors)


def finish_pass(session: Session, r: spb.InstructionResult) -> spb.InstructionResult:
    """Drive a backward pass that suspended at custom Function nodes to its end: per node, run
    the Function's backward here and resume the pass (one round trip each).

    Returns:
        The result of the instruction that finished the pass (Grad's bound handles).
    """
    while r.HasField("suspended"):
        s = r.suspended
        if s.hook:
            done = _run_hook(session, s)
            session._recorder.flush()
            r = done[0]
            continue
        entry = session._custom.get(s.node)
        if entry is None:
            session._record().abort_backward.SetInParent()
            raise RuntimeError(f"the server's backward reached custom Function node {s.node}, "
                               "which this client does not know (a different client?)")
        fn_cls, ctx = entry
        grads = [_described(session, info) for info in s.grads]
        given = iter(grads)  # the server's node has the tensor outputs; the others get None
        all_grads = [next(given) if is_tensor else None
                     for is_tensor in ctx._tensor_outputs] or grads
        saved = tuple(_described(session, info) for info in s.saved)
        claim = session._record(None, [g for g in (*grads, *saved) if g is not None]
                                ).claim_gradients
        claim.node = s.node
        claim.handles.extend(0 if g is None else g._handle for g in grads)
        claim.saved.extend(0 if t is None else t._handle for t in saved)
        ctx._saved, ctx._saved_errors = saved, tuple(s.saved_errors)
        ctx._needs = tuple(s.needs_input_grad)
        backward = fn_cls.backward
        try:
            with grad_mode.set_grad_enabled(s.create_graph):
                result = backward(ctx, *all_grads)
        except BaseException:
            session._record().abort_backward.SetInParent()  # sent with the next batch
            raise
        finally:
            ctx._saved, ctx._saved_errors = (), ()
        box: list[spb.InstructionResult] = []
        m = session._record(box.append).resume_backward
        m.node = s.node
        m.once_differentiable = getattr(backward, "_gradserve_once_differentiable", False)
        for v in result if isinstance(result, tuple) else (result,):
            session._value(v, m.grads.add(), f"{fn_cls.__name__}.backward() result")
        session._recorder.flush()
        r = box[0]
    return r
