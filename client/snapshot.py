"""Saving a session's training state to a file and restoring it into a new session.

    session.save("ckpt.gsnap", {"w": w, "b": b})     # or session.save(path): every live leaf
    ...server restarts...
    session = client.restore("ckpt.gsnap")
    w, b = session.restored["w"], session.restored["b"]

What is kept: each saved leaf tensor's value, dtype, shape, requires_grad and .grad (value or
None). Autograd graphs are not saved (as with torch's state_dict): save leaves, not results.

File format, version 1 (never pickle; every record is a gradserve.v1 protobuf message, so the
file can be read from any language with the .proto files):

    magic    b"GRADSERVE-SNAPSHOT\\n"   (19 bytes)
    version  uint32 little-endian       (1)
    records  each: uint64 little-endian length, then that many bytes of a message:
      1. gradserve.v1.SessionOptions  - the session's seed and limits (informational; restore
                                         uses the options it is given)
      2. gradserve.v1.BatchRequest    - the instructions that rebuild the state in an empty
                                         session: CreateTensor (value, requires_grad) per tensor,
                                         and for a gradient CreateTensor + SetGrad + Release
      3. gradserve.v1.Graph           - names: `outputs[i]` is (name, ref.id = the handle in the
                                         batch, as decimal text)

A reader must refuse a version it does not know. Optimizer state is not part of version 1: the
server's engine has no optimizers yet (CreateOptimizer answers FAILED_PRECONDITION); when it has,
their state will be a fourth record under version 2.
"""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gradserve.v1 import graph_pb2
from gradserve.v1 import session_pb2 as spb

MAGIC = b"GRADSERVE-SNAPSHOT\n"
VERSION = 1


class SnapshotError(ValueError):
    """A file that is not a gradserve snapshot, or of a version this client cannot read."""


def _named(session: Any, tensors: Mapping[str, Any] | Sequence[Any] | None) -> dict[str, Any]:
    if tensors is None:
        live = sorted(session._live.items())
        return {f"t{handle}": t for handle, t in live}
    if isinstance(tensors, Mapping):
        return dict(tensors)
    return {str(i): t for i, t in enumerate(tensors)}


def save(session: Any, path: str | Path,
         tensors: Mapping[str, Any] | Sequence[Any] | None = None) -> None:
    """Write the tensors' training state to `path` (atomically: a crash leaves the old file).

    Args:
        session: the client Session holding the tensors.
        path: file to write.
        tensors: {name: tensor}, a list (named "0", "1", ...), or None for every live leaf
            tensor of the session (named "t<handle>").

    Raises:
        ValueError: a tensor is not a leaf or belongs to another session.
    """
    named = _named(session, tensors)
    session.flush()
    fetched: dict[str, Any] = {}
    rec = session._recorder
    with rec.lock:
        for name, t in named.items():
            session._value(t, graph_pb2.Value(), f"save(): tensor {name!r}")

            def sink(r: spb.InstructionResult, name: str = name) -> None:
                fetched[name] = r.fetch
            m = rec.add(sink).fetch
            m.handle = t._handle
            m.value = True
            m.grad = True
        rec.flush()
    batch = spb.BatchRequest()
    names = graph_pb2.Graph()
    handle = 0
    for name, f in fetched.items():
        if tensors is None and not f.info.is_leaf:
            continue  # saving everything: results are rebuilt from leaves, as in torch
        if not f.info.is_leaf:
            raise ValueError(f"save(): tensor {name!r} is not a leaf (it has grad_fn "
                             f"{f.info.grad_fn}); save the leaves it was computed from, or "
                             "detach() it")
        handle += 1
        own = handle
        c = batch.instructions.add().create_tensor
        c.handle = own
        c.value.CopyFrom(f.value)
        c.requires_grad = f.info.requires_grad
        if f.grad.HasField("tensor"):
            handle += 1
            g = batch.instructions.add().create_tensor
            g.handle = handle
            g.value.CopyFrom(f.grad.tensor)
            s = batch.instructions.add().set_grad
            s.handle, s.grad_handle = own, handle
            batch.instructions.add().release.handles.append(handle)
        names.outputs.add(name=name, ref=graph_pb2.NodeOutput(id=str(own)))
    options = spb.SessionOptions(limits=session.created_info.limits)
    records = [options, batch, names]
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(MAGIC + struct.pack("<I", VERSION))
            for msg in records:
                data = msg.SerializeToString()
                out.write(struct.pack("<Q", len(data)) + data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read(path: str | Path) -> tuple[spb.SessionOptions, spb.BatchRequest, graph_pb2.Graph]:
    """The records of a snapshot file.

    Raises:
        SnapshotError: not a snapshot, truncated, or an unknown version.
    """
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise SnapshotError(f"{path}: not a gradserve snapshot")
    (version,) = struct.unpack_from("<I", data, len(MAGIC))
    if version != VERSION:
        raise SnapshotError(f"{path}: snapshot version {version}; this client reads version "
                            f"{VERSION}")
    pos = len(MAGIC) + 4
    out: list[Any] = []
    for cls in (spb.SessionOptions, spb.BatchRequest, graph_pb2.Graph):
        if pos + 8 > len(data):
            raise SnapshotError(f"{path}: truncated snapshot")
        (n,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        if pos + n > len(data):
            raise SnapshotError(f"{path}: truncated snapshot")
        try:
            out.append(cls.FromString(data[pos:pos + n]))
        except Exception as exc:  # noqa: BLE001 - a corrupt record
            raise SnapshotError(f"{path}: corrupt snapshot record ({exc})") from None
        pos += n
    return out[0], out[1], out[2]


def restore(client: Any, path: str | Path, **session_options: Any) -> Any:
    """A new session holding the snapshot's tensors, as `session.restored` ({name: Tensor}).

    Args:
        client: the Client to create the session on.
        path: a file written by `save`.
        **session_options: options for `client.session(...)`.
    """
    _, batch, names = read(path)
    session = client.session(**session_options)
    tensors: dict[int, Any] = {}
    rec = session._recorder
    with rec.lock:
        for ins in batch.instructions:
            kind = ins.WhichOneof("kind")
            if kind == "create_tensor":
                t = session._new_tensor()
                tensors[ins.create_tensor.handle] = t

                def sink(r: spb.InstructionResult, t: Any = t) -> None:
                    t._info = r.handles.tensors[0]
                m = rec.add(sink, [t])
                m.CopyFrom(ins)
                m.create_tensor.handle = t._handle
            elif kind == "set_grad":
                m = rec.add()
                m.set_grad.handle = tensors[ins.set_grad.handle]._handle
                m.set_grad.grad_handle = tensors[ins.set_grad.grad_handle]._handle
            elif kind == "release":  # the gradient's temporary handle
                rec.add().release.handles.extend(
                    tensors.pop(h)._handle for h in ins.release.handles)
            else:
                raise SnapshotError(f"{path}: unexpected instruction {kind!r} in a snapshot")
        rec.flush()
    session.restored = {o.name: tensors[int(o.ref.id)] for o in names.outputs}
    return session
