"""Custom autograd Functions over the wire: the instructions that link a client-run forward to one
graph node, and the backward passes that suspend at such nodes until the client has run the
Function's backward (docs/internals.md, "Custom Functions over the wire").

A pass (Backward, Grad) runs as the engine's resumable `backward_steps`/`grad_steps`. When it
reaches a `RemoteFunctionNode` it yields; the session keeps the suspended pass on a stack (a
client's backward may itself run a pass), the instruction's result says `suspended` with the
node's incoming gradients' dtypes and shapes, and the client claims those gradients under its own
handles (ClaimGradients), records its backward's ops on them, and sends ResumeBackward with what
its backward returned. The pass continues from there, so one custom node costs the client one
extra round trip. The gradient values never leave the server.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import gradserve.engine as ge
from gradserve.engine.function import RemoteFunctionNode, link_remote
from gradserve.engine.hooks import RemoteHook
from gradserve.v1 import graph_pb2, session_pb2

from .errors import InvalidRequestError

if TYPE_CHECKING:
    from .batch import Executor

MAX_NAME = 100
MAX_SUSPENDED = 16  # nested passes (a custom backward that itself runs a pass) per session
INFO_BYTES = 1024  # batch.INFO_BYTES: one TensorInfo in a reply, at most

Done = Callable[["Executor", session_pb2.InstructionResult, Any, bool], int]


class SuspendedPass:
    """A backward pass waiting for the client's backward of `node`."""

    __slots__ = ("steps", "node", "incoming", "create_graph", "done", "held")

    def __init__(self, steps: Any, node: RemoteFunctionNode | RemoteHook, incoming: list[Any],
                 create_graph: bool, done: Done, held: list[Any]):
        self.steps = steps
        self.node = node
        self.incoming = incoming
        self.create_graph = create_graph
        self.done = done
        self.held = held  # the pass's gradient containers (`execute_steps`'s `held`)

    def gradients(self) -> Iterator[Any]:
        """Every gradient value the suspended pass keeps alive (arrays or Tensors), for the
        session's byte accounting (`Session.measure`)."""
        yield from self.incoming
        for container in self.held:
            for item in (container.values() if isinstance(container, dict) else (container,)):
                yield from item


def _advance(steps: Any, value: Any, first: bool) -> tuple[bool, Any]:
    try:
        return False, next(steps) if first else steps.send(value)
    except StopIteration as finished:
        return True, finished.value


def run_pass(ex: Executor, steps: Any, create_graph: bool, r: session_pb2.InstructionResult,
             done: Done, held: list[Any], send: Any = None, first: bool = True) -> int:
    """Run a resumable pass until it ends (`done` fills `r`) or suspends (`r.suspended`).

    A suspended pass's gradients (`held`, filled by the engine's pass) stay alive until it is
    resumed: they count in the session's bytes, and a suspension that takes the session past
    its limit ends the pass (RESOURCE_EXHAUSTED) instead of keeping them."""
    try:
        finished, value = ex.differentiate(create_graph, _advance, steps, send, first)
    except BaseException:
        steps.close()
        raise
    if finished:
        if ex.s.packed_nodes:
            drop_freed_packs(ex.s)
        return done(ex, r, value, not first)
    node, gs = value
    if not isinstance(node, (RemoteFunctionNode, RemoteHook)):  # only these suspend a pass
        steps.close()
        raise AssertionError(f"{node!r} suspended a backward pass")
    stack = ex.s.suspended
    if len(stack) >= MAX_SUSPENDED:
        steps.close()
        raise InvalidRequestError(
            f"more than {MAX_SUSPENDED} backward passes suspended at custom Functions at once")
    hook = isinstance(node, RemoteHook)
    outputs: list[Any] = []
    if hook and node.kind == "node_post":
        gs, outputs = gs  # (grad_inputs, grad_outputs)
    incoming = list(gs) + list(outputs) if hook else node.incoming(gs)
    try:  # the reply describes the gradients and saved tensors: beyond the batch's bound
        ex._count_response(INFO_BYTES * len(incoming) if hook else
                           INFO_BYTES * (len(incoming) + len(node._saved or ()))
                           + sum(len(e) for e in node.saved_errors()))
    except BaseException:
        steps.close()
        raise
    stack.append(SuspendedPass(steps, node, incoming, create_graph, done, held))
    try:
        ex.budget.check("suspend", 0)  # measures the session, suspended passes included
    except BaseException:
        stack.pop()
        steps.close()
        raise
    from .batch import tensor_info  # (batch imports this module)

    s = r.suspended
    s.create_graph = create_graph
    if hook:
        s.hook = node.client_id
        for g in gs:
            info = s.grads.add()
            if g is not None:
                tensor_info(0, g, info)
        for g in outputs:
            info = s.grad_outputs.add()
            if g is not None:
                tensor_info(0, g, info)
        return 0
    s.node = node.client_id
    for g in incoming:
        info = s.grads.add()
        if g is not None:
            tensor_info(0, g, info)
    for t in node._saved or ():
        info = s.saved.add()
        if t is not None:
            tensor_info(0, t, info)
    s.saved_errors.extend(node.saved_errors())
    s.needs_input_grad.extend(node.needs_input_grad)
    return 0


def backward_done(ex: Executor, r: session_pb2.InstructionResult, value: Any,
                  resumed: bool) -> int:
    r.done.SetInParent()
    return 0


def grad_done(results: list[int]) -> Done:
    """What finishing a Grad does: bind the gradients that are not None to `results`."""
    def done(ex: Executor, r: session_pb2.InstructionResult, grads: Any,
             resumed: bool) -> int:
        if resumed:  # a ResumeBackward finished the Grad: its results are beyond the bound
            ex._count_response(INFO_BYTES * len(results))
        r.handles.SetInParent()
        return sum(ex.bind(h, g, r) for h, g in zip(results, grads) if g is not None)
    return done


def _top(ex: Executor, node: int, hook: int, what: str) -> SuspendedPass:
    stack = ex.s.suspended
    if not stack:
        raise InvalidRequestError(f"{what}: no backward pass is suspended in this session")
    top = stack[-1]
    waits = ("hook", top.node.client_id) if isinstance(top.node, RemoteHook) else (
        "node", top.node.client_id)
    given = ("hook", hook) if hook else ("node", node)
    if waits != given:
        raise InvalidRequestError(f"{what}: the suspended pass waits for {waits[0]} "
                                  f"{waits[1]}, not {given[0]} {given[1]}")
    return top


# --- instructions --------------------------------------------------------------------------------

def apply_function(ex: Executor, m: session_pb2.ApplyFunction,
                   r: session_pb2.InstructionResult) -> int:
    if not m.name.isidentifier() or len(m.name) > MAX_NAME:
        raise InvalidRequestError(f"apply_function: name must be a Python identifier of at most "
                                  f"{MAX_NAME} characters, got {m.name[:MAX_NAME]!r}")
    if m.node == 0:
        raise InvalidRequestError("apply_function: node ids start at 1")
    args: list[Any] = []
    for v in m.args:
        kind = v.WhichOneof("kind")
        if kind == "handle":
            args.append(ex.tensor(v.handle))
        elif kind == "none":
            args.append(None)
        else:
            raise InvalidRequestError("apply_function: an argument is a tensor handle or none")
    outputs = tuple(ex.tensor(h) for h in m.outputs)
    if len(m.results) != len(outputs):
        raise InvalidRequestError(f"apply_function: {len(m.results)} result handle(s) for "
                                  f"{len(outputs)} output(s)")
    for h in m.results:
        ex._check_new(h)
    if len(set(m.results)) != len(m.results):
        raise InvalidRequestError("apply_function: result handles must differ")
    for k in m.non_differentiable:
        if k >= len(outputs):
            raise InvalidRequestError(f"apply_function: non_differentiable index {k} is not an "
                                      "output")
    dirty = []
    for k in m.dirty:
        if k >= len(args) or args[k] is None:
            raise InvalidRequestError(f"apply_function: dirty index {k} is not a tensor "
                                      "argument")
        dirty.append(args[k])
    saved = tuple(None if h == 0 else ex.tensor(h) for h in m.saved)
    with ge.set_grad_enabled(not m.no_grad):
        node, linked = link_remote(m.name, m.node, tuple(args), outputs, tuple(dirty),
                                   tuple(outputs[k] for k in m.non_differentiable), saved,
                                   m.materialize_grads)
    # the client keeps the Function's ctx until the server's graphs no longer reach the node
    weakref.finalize(node, ex.s.dropped_functions.append, m.node)
    del node
    r.handles.SetInParent()
    # an upper bound of what the session's measure gains (batch.ByteBudget): the results, the
    # node with an edge per argument, an AccumulateGrad per leaf argument, a new history per
    # dirty argument, and the saved tensors as if none were held already
    growth = (ge.limits.NODE_BYTES * (1 + len(args) + len(dirty))
              + ge.limits.EDGE_BYTES * len(args)
              + sum(t.nbytes + ge.limits.TENSOR_BYTES for t in saved if t is not None))
    return growth + sum(ex.bind(h, t, r) for h, t in zip(m.results, linked))


def claim_gradients(ex: Executor, m: session_pb2.ClaimGradients,
                    r: session_pb2.InstructionResult) -> int:
    top = _top(ex, m.node, m.hook, "claim_gradients")
    if len(m.handles) != len(top.incoming):
        raise InvalidRequestError(f"claim_gradients: {len(m.handles)} handle(s) for "
                                  f"{len(top.incoming)} gradient(s)")
    saved = () if isinstance(top.node, RemoteHook) else top.node._saved or ()
    if m.saved and len(m.saved) != len(saved):
        raise InvalidRequestError(f"claim_gradients: {len(m.saved)} handle(s) for "
                                  f"{len(saved)} saved tensor(s)")
    r.handles.SetInParent()
    grown = 0
    for h, t in zip(m.saved, saved):
        if (t is None) != (h == 0):
            raise InvalidRequestError("claim_gradients: saved handle 0 exactly for a saved None")
        if t is not None:
            grown += ex.bind(h, t, r)
    for h, g in zip(m.handles, top.incoming):
        if (g is None) != (h == 0):
            raise InvalidRequestError("claim_gradients: handle 0 exactly for the gradients that "
                                      "are None")
        if g is not None:
            grown += ex.bind(h, g, r)
    return grown


def _returned(ex: Executor, v: graph_pb2.Value) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "handle":
        return ex.tensor(v.handle)
    if kind == "none":
        return None
    # scalars are refused by the node's check, with torch's message naming their type
    if kind == "float_scalar":
        return v.float_scalar
    if kind == "int_scalar":
        return v.int_scalar
    if kind == "bool_scalar":
        return v.bool_scalar
    raise InvalidRequestError("resume_backward: a gradient is a tensor handle, none or a scalar")


def resume_backward(ex: Executor, m: session_pb2.ResumeBackward,
                    r: session_pb2.InstructionResult) -> int:
    top = _top(ex, m.node, m.hook, "resume_backward")
    ex.s.suspended.pop()
    try:
        values = tuple(_returned(ex, v) for v in m.grads)
        if isinstance(top.node, RemoteHook):  # its result: checked by the pass (torch's texts)
            if top.node.kind == "unpack":
                grads = None  # (the node's gradients stay as they are)
                _supply(top.node, values)
            elif top.node.kind.startswith("node"):
                grads = values if values else None  # a tuple replacing them, or None
            elif len(values) > 1:
                raise InvalidRequestError("resume_backward: a tensor hook returns one value")
            else:
                grads = values[0] if values else None
        else:
            with ge.set_grad_enabled(top.create_graph):
                grads = top.node.finish(values, top.create_graph, m.once_differentiable,
                                        top.incoming)
    except BaseException:
        top.steps.close()
        raise
    return run_pass(ex, top.steps, top.create_graph, r, top.done, top.held, grads, first=False)


def _supply(hook: RemoteHook, values: tuple[Any, ...]) -> None:
    """The client's unpacked tensors for the node an unpack hook belongs to."""
    ref, keys = hook.target
    if len(values) != len(keys):
        raise InvalidRequestError(f"resume_backward: {len(values)} unpacked tensor(s) for "
                                  f"{len(keys)} packed")
    node = ref()
    if node is not None:
        ge.saved.supply(node, keys, values)


def abort_backward(ex: Executor, m: session_pb2.AbortBackward,
                   r: session_pb2.InstructionResult) -> int:
    if ex.s.suspended:
        ex.s.suspended.pop().steps.close()
    r.done.SetInParent()
    return 0


MAX_HOOKS = 4096  # client hooks registered at once per session


def register_hook(ex: Executor, m: session_pb2.RegisterHook,
                  r: session_pb2.InstructionResult) -> int:
    t = ex.tensor(m.handle)
    if m.hook == 0 or m.hook in ex.s.hooks:
        raise InvalidRequestError(f"register_hook: hook id {m.hook} is 0 or in use")
    if len(ex.s.hooks) >= MAX_HOOKS:
        raise InvalidRequestError(f"register_hook: the session holds its maximum of "
                                  f"{MAX_HOOKS} hooks; remove some")
    if len(m.name) > MAX_NAME or not m.name.isprintable() or not m.name.isascii():
        raise InvalidRequestError(f"register_hook: name must be at most {MAX_NAME} printable "
                                  "ASCII characters")
    if m.post_accumulate + m.node_pre + m.node_post > 1:
        raise InvalidRequestError("register_hook: at most one of post_accumulate, node_pre, "
                                  "node_post")
    hooks = ge.autograd.hooks
    if m.node_pre or m.node_post:
        if t.grad_fn is None:
            raise InvalidRequestError("register_hook: a node hook needs a tensor with a grad_fn")
        kind = "node_pre" if m.node_pre else "node_post"
        register = hooks.register_node_prehook if m.node_pre else hooks.register_node_hook
        target: Any = t.grad_fn
    else:
        kind = "post_accumulate" if m.post_accumulate else "tensor"
        register = (hooks.register_post_accumulate_grad_hook if m.post_accumulate
                    else hooks.register_hook)
        target = t
    ex.s.hooks[m.hook] = register(target, RemoteHook(m.hook, m.name or "hook", kind))
    r.done.SetInParent()
    return 0


def pack_saved(ex: Executor, m: session_pb2.PackSaved,
               r: session_pb2.InstructionResult) -> int:
    t = ex.tensor(m.handle)
    out = r.packed
    out.SetInParent()
    node = t.grad_fn
    if not isinstance(node, ge.autograd.Node):
        return 0
    found = ge.saved.packable(node, (t,) if node.n_out == 1 else ())
    if not found:
        return 0
    if m.hook == 0 or m.hook in ex.s.hooks:
        raise InvalidRequestError(f"pack_saved: hook id {m.hook} is 0 or in use")
    if len(ex.s.hooks) >= MAX_HOOKS:
        raise InvalidRequestError(f"pack_saved: the session holds its maximum of {MAX_HOOKS} "
                                  "hooks; remove some")
    if len(set(m.results)) != len(m.results):
        raise InvalidRequestError("pack_saved: result handles must differ")
    ex.look_through(len(ex.s.tensors))
    handle_of = {id(v): h for h, v in ex.s.tensors.items()}
    unheld = sum(id(saved) not in handle_of for _, saved in found)
    if unheld > len(m.results):  # refused before anything is bound
        raise InvalidRequestError(f"pack_saved: {len(m.results)} result handle(s) for "
                                  f"{unheld} saved tensor(s) the session holds no handle of")
    results = iter(m.results)
    held = frozenset(handle_of)  # (a result handle each for the others, as counted above)
    grown = 0
    for _, saved in found:
        grown += ex._tensor_result(saved, 0 if id(saved) in held else next(results),
                                   out.tensors.add(), handle_of)
    target = (weakref.ref(node), [key for key, _ in found])
    ex.s.hooks[m.hook] = ge.autograd.hooks.register_node_prehook(
        node, RemoteHook(m.hook, "unpack", "unpack", target))
    # the client keeps the packed objects until a pass frees the node's saved tensors (torch
    # drops them then) or the node is gone, reported as a dropped function (as a custom
    # Function's ctx)
    ex.s.packed_nodes[m.hook] = target[0]
    weakref.finalize(node, _unpack_dropped, ex.s, m.hook)
    return grown


def _unpack_dropped(session: Any, hook: int) -> None:
    if session.packed_nodes.pop(hook, None) is None:
        return  # already reported (drop_freed_packs)
    session.hooks.pop(hook, None)
    session.dropped_functions.append(hook)


def drop_freed_packs(session: Any) -> None:
    """Report the packed nodes whose saved tensors a finished pass freed (backward without
    retain_graph): torch drops the packed objects with them, so their `__del__` runs then."""
    packed = session.packed_nodes
    for hook, ref in list(packed.items()):
        node = ref()
        if node is None or node.freed:
            del packed[hook]
            handle = session.hooks.pop(hook, None)
            if handle is not None:
                handle.remove()
            session.dropped_functions.append(hook)


def remove_hook(ex: Executor, m: session_pb2.RemoveHook,
                r: session_pb2.InstructionResult) -> int:
    handle = ex.s.hooks.pop(m.hook, None)
    if handle is not None:
        handle.remove()
    r.done.SetInParent()
    return 0


HANDLERS: dict[str, Callable[..., int]] = {
    "apply_function": apply_function, "claim_gradients": claim_gradients,
    "resume_backward": resume_backward, "abort_backward": abort_backward,
    "register_hook": register_hook, "remove_hook": remove_hook, "pack_saved": pack_saved,
}
