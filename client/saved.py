"""Saved tensors through a session.

A grad_fn's `_saved_*` attributes (torch's `y.grad_fn._saved_self`): one GetSaved instruction,
one round trip. The server answers with the handle the saved tensor already has in the session
(so `y.grad_fn._saved_self is x`, as in torch), a new handle (a saved output: a new tensor each
time, as torch's), a number, or None.

Saved-tensor hooks (`torch.autograd.graph.saved_tensors_hooks`, surface/saved_hooks.py): an op
recorded with grad mode on while a hook pair is open in this thread is sent at once with a
PackSaved, whose reply names the tensors its node saved (in torch's order); `pack_hook` runs
here on each, and the node gets an unpack hook: when a backward pass reaches it, the pass
suspends, `unpack_hook` runs here on what `pack_hook` returned, and the pass resumes with the
unpacked tensors (client/function.py `_run_hook`). Cost: one round trip per recorded op under
the hooks, and one per packed node a backward pass reaches. The server reports a packed node
that is gone (`BatchResponse.dropped_functions`) and the session forgets its packed objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradserve.surface import compat, grad_mode, saved_hooks
from gradserve.v1 import attrs as wire_attrs

from . import codec
from .tensor import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from gradserve.surface.signature import OpSpec

    from .session import Session


def read(session: Session, t: Tensor, name: str) -> Any:
    """`t.grad_fn.<name>` for a `_saved_*` name.

    Raises:
        AttributeError: the server cannot read saved tensors (older than the "get_saved"
            feature), or the node has no such attribute (torch's text).
        RuntimeError: the graph was freed, or a saved tensor was modified in place since.
    """
    if not session._get_saved:
        raise compat.missing_name("torch.autograd.graph.Node", name,
                                  "the server's features (it predates grad_fn._saved_*)")

    def record(out: Tensor, sink: Any) -> None:
        m = session._record(sink, [out]).get_saved
        m.handle = t._handle
        m.name = name
        m.result = out._handle
    return _ask(session, record)


def read_base(session: Session, t: Tensor) -> Tensor | None:
    """`t._base` (GetBase: one round trip).

    Raises:
        AttributeError: the server predates the "get_base" feature.
    """
    if not session._get_base:
        raise compat.missing_name("torch.Tensor", "_base",
                                  "the server's features (it predates Tensor._base)")

    def record(out: Tensor, sink: Any) -> None:
        m = session._record(sink, [out]).get_base
        m.handle = t._handle
        m.result = out._handle
    return _ask(session, record)  # type: ignore[no-any-return]


def _ask(session: Session, record: Any) -> Any:
    """Send the instruction `record(out, sink)` records (GetSaved, GetBase) and read its
    SavedValue. A `same_as` handle the program has dropped (its release goes after the
    instruction, at the end of the batch) is asked again: the server then binds a new one."""
    for _ in range(2):
        out = session._new_tensor()
        box: list[Any] = []
        with session._recorder.lock:
            record(out, box.append)
            session._recorder.flush()
        v = box[0].saved
        if v.WhichOneof("value") != "same_as" or session.live_tensor(v.same_as) is not None:
            break
    return _answer(session, v, out)


def _answer(session: Session, v: Any, out: Tensor) -> Any:
    """A SavedValue as Python: None, a tensor the session holds, `out` (bound), a number."""
    kind = v.WhichOneof("value")
    if kind == "bound":
        out._info = v.bound
        return out
    if kind == "same_as":
        return session.live_tensor(v.same_as)
    if kind == "number":
        return wire_attrs.decode_attr(v.number, codec.BY_WIRE.get)
    return None


def apply_and_pack(session: Session, spec: OpSpec, apply: Any, *args: Any) -> Any:
    """`apply(*args)` (the session's op recording), then the recorded node's saved tensors
    given to this thread's pack hook (see the module docstring)."""
    session._packing = True
    try:
        out = apply(*args)
    finally:
        session._packing = False
    first = out[0] if isinstance(out, tuple) and out else out
    if (isinstance(first, Tensor) and grad_mode._state.enabled and not spec.variadic
            and first._node != ""):  # a result known to be a leaf saved nothing
        pack(session, first, len(spec.inputs) + 1)
    return out


def pack(session: Session, t: Tensor, most: int) -> None:
    """PackSaved for `t`'s grad_fn (at most `most` tensors), then the pack hook on each.

    Raises:
        AttributeError: the server cannot take saved-tensor hooks (it predates "pack_saved").
    """
    hooks = saved_hooks.current()
    if hooks is None:
        return
    if not session._pack_saved:
        raise compat.missing_name("torch.autograd.graph", "saved_tensors_hooks",
                                  "the server's features (it predates saved-tensor hooks)")
    pack_hook, unpack_hook = hooks
    hook = session._next_function_id()
    fresh = [session._new_tensor() for _ in range(most)]
    box: list[Any] = []
    with session._recorder.lock:
        m = session._record(lambda r: box.append(r.packed), fresh).pack_saved
        m.handle = t._handle
        m.hook = hook
        m.results.extend(f._handle for f in fresh)
        session._recorder.flush()
    given = iter(fresh)
    tensors: list[Any] = []
    for v in box[0].tensors:
        if v.WhichOneof("value") == "same_as":
            tensors.append(session.live_tensor(v.same_as))
        else:
            f = next(given)
            f._info = v.bound
            tensors.append(f)
    if not tensors:
        return
    with grad_mode.no_grad():
        packed = [pack_hook(x) for x in tensors]
    del tensors

    def unpack() -> list[Any]:
        return [unpack_hook(p) for p in packed]
    session._hooks[hook] = (unpack, None, "unpack")
