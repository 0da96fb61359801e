"""Saving a session's training state to a file and restoring it into a new session.

    session.save("ckpt.gsnap", {"w": w, "b": b}, {"opt": opt})   # or session.save(path): every
    ...server restarts...                                         # live leaf and optimizer
    session = client.restore("ckpt.gsnap")
    w, b = session.restored["w"], session.restored["b"]
    opt = session.optimizers["opt"]           # same algorithm, hyperparameters and state

What is kept: each saved leaf tensor's value, dtype, shape, requires_grad and .grad (value or
None); each saved optimizer's algorithm, hyperparameters and per-parameter state (SGD's momentum
buffers; Adam's step counts, exp_avg, exp_avg_sq and max_exp_avg_sq), so training continues
exactly where it stopped. An optimizer's parameters are saved with it: under their names when
they are among the saved tensors, else as "<optimizer name>.param<i>"; the restored optimizer's
`params` are the restored tensors. Autograd graphs are not saved (as with torch's state_dict):
save leaves, not results.

File format (never pickle; every record is a gradserve.v1 protobuf message, so the file can be
read from any language with the .proto files):

    magic    b"GRADSERVE-SNAPSHOT\\n"   (19 bytes)
    version  uint32 little-endian       (2; version 1 files are still read)
    records  each: uint64 little-endian length, then that many bytes of a message:
      1. gradserve.v1.SessionOptions  - the session's seed and limits (informational; restore
                                         uses the options it is given)
      2. gradserve.v1.BatchRequest    - the instructions that rebuild the state in an empty
                                         session: CreateTensor (value, requires_grad) per tensor,
                                         and for a gradient CreateTensor + SetGrad + Release;
                                         version 2: then CreateOptimizer per optimizer (params
                                         as the handles of this batch, the algorithm with every
                                         hyperparameter set, and `state`: the ParamState entries
                                         read with GetOptimizerState)
      3. gradserve.v1.Graph           - names: `outputs[i]` is (name, ref.id = the handle in the
                                         batch, as decimal text)
      4. gradserve.v1.Graph           - version 2 only: optimizer names, the same way (ref.id =
                                         the CreateOptimizer's optimizer handle)

Handles in a file are its own numbering (1, 2, ...), shared by tensors and optimizers; restore
maps them to new handles. A reader must refuse a version it does not know.
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

from .errors import omitted_error
from .optim import ServerOptimizer, recreate

MAGIC = b"GRADSERVE-SNAPSHOT\n"
VERSION = 2
READABLE_VERSIONS = (1, 2)


class SnapshotError(ValueError):
    """A file that is not a gradserve snapshot, or of a version this client cannot read."""


def _named(live: Mapping[int, Any], given: Mapping[str, Any] | Sequence[Any] | None,
           prefix: str) -> dict[str, Any]:
    if given is None:
        return {f"{prefix}{handle}": t for handle, t in sorted(live.items())}
    if isinstance(given, Mapping):
        return dict(given)
    return {str(i): t for i, t in enumerate(given)}


def save(session: Any, path: str | Path,
         tensors: Mapping[str, Any] | Sequence[Any] | None = None,
         optimizers: Mapping[str, Any] | Sequence[Any] | None = None) -> None:
    """Write the tensors' and optimizers' training state to `path` (atomically: a crash leaves
    the old file).

    Args:
        session: the client Session holding the tensors.
        path: file to write.
        tensors: {name: tensor}, a list (named "0", "1", ...), or None for every live leaf
            tensor of the session (named "t<handle>"; a tensor's `.grad` is saved with it,
            not as a tensor of its own).
        optimizers: {name: optimizer}, a list (named "0", "1", ...), or None for every live
            optimizer of the session (named "optimizer<handle>").

    Raises:
        ValueError: a tensor is not a leaf, or a tensor or optimizer belongs to another session.
    """
    live = session.live_tensors()
    if tensors is None:  # a `.grad` the client holds is saved with its tensor (set_grad)
        grads = {id(c[1]) for t in live.values() if (c := t._grad_cache) is not None}
        live = {h: t for h, t in live.items() if id(t) not in grads}
    named = _named(live, tensors, "t")
    named_opts = _named(session._optimizers, optimizers, "optimizer")
    saved = {id(t) for t in named.values()}
    for oname, opt in named_opts.items():
        if not isinstance(opt, ServerOptimizer) or opt._session is not session:
            raise ValueError(f"save(): optimizer {oname!r} is not an optimizer of this session")
        for i, p in enumerate(opt.params):  # parameters are saved with their optimizer
            if id(p) not in saved:
                named[f"{oname}.param{i}"] = p
                saved.add(id(p))
    session.flush()
    fetched: dict[str, Any] = {}
    states: dict[str, spb.OptimizerState] = {}
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
        for oname, opt in named_opts.items():
            def state_sink(r: spb.InstructionResult, name: str = oname) -> None:
                states[name] = r.optimizer_state
            rec.add(state_sink).get_optimizer_state.optimizer = opt.handle
        rec.flush()
    batch = spb.BatchRequest()
    names = graph_pb2.Graph()
    in_file: dict[int, int] = {}  # session handle -> handle in the file
    handle = 0
    for name, f in fetched.items():
        if tensors is None and not f.info.is_leaf:
            continue  # saving everything: results are rebuilt from leaves, as in torch
        if f.HasField("omitted"):
            raise omitted_error(f.omitted, f.info.shape, f"value of {name!r} (to save)")
        if not f.info.is_leaf:
            raise ValueError(f"save(): tensor {name!r} is not a leaf (it has grad_fn "
                             f"{f.info.grad_fn}); save the leaves it was computed from, or "
                             "detach() it")
        handle += 1
        own = in_file[named[name]._handle] = handle
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
    optimizer_names = graph_pb2.Graph()
    for oname, opt in named_opts.items():
        handle += 1
        state = states[oname]
        c = batch.instructions.add().create_optimizer
        c.optimizer = handle
        c.params.extend(in_file[p._handle] for p in opt.params)
        kind = state.WhichOneof("algorithm")  # sgd, adam, rmsprop or adagrad
        if kind is None:
            raise ValueError(f"{path}: optimizer {oname!r} has no algorithm")
        getattr(c, kind).CopyFrom(getattr(state, kind))
        c.state.extend(state.state)
        optimizer_names.outputs.add(name=oname, ref=graph_pb2.NodeOutput(id=str(handle)))
    options = spb.SessionOptions(limits=session.created_info.limits)
    _write(Path(path), [options, batch, names, optimizer_names])


def _write(path: Path, records: Sequence[Any]) -> None:
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


def read(path: str | Path) -> tuple[spb.SessionOptions, spb.BatchRequest, graph_pb2.Graph,
                                    graph_pb2.Graph]:
    """The records of a snapshot file: options, the batch, tensor names and optimizer names
    (empty for a version 1 file).

    Raises:
        SnapshotError: not a snapshot, truncated, or an unknown version.
    """
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise SnapshotError(f"{path}: not a gradserve snapshot")
    (version,) = struct.unpack_from("<I", data, len(MAGIC))
    if version not in READABLE_VERSIONS:
        raise SnapshotError(f"{path}: snapshot version {version}; this client reads versions "
                            f"{', '.join(map(str, READABLE_VERSIONS))}")
    pos = len(MAGIC) + 4
    out: list[Any] = []
    classes: list[Any] = [spb.SessionOptions, spb.BatchRequest, graph_pb2.Graph]
    if version >= 2:
        classes.append(graph_pb2.Graph)
    for cls in classes:
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
    if version < 2:
        out.append(graph_pb2.Graph())
    return out[0], out[1], out[2], out[3]


def restore(client: Any, path: str | Path, **session_options: Any) -> Any:
    """A new session holding the snapshot's tensors, as `session.restored` ({name: Tensor}),
    and optimizers, as `session.optimizers` ({name: Optimizer}).

    Args:
        client: the Client to create the session on.
        path: a file written by `save`.
        **session_options: options for `client.session(...)`.

    Raises:
        SnapshotError: the file is not a snapshot this client reads, or refers to handles it
            does not define.
    """
    _, batch, names, optimizer_names = read(path)
    session = client.session(**session_options)
    tensors: dict[int, Any] = {}
    opts: dict[int, ServerOptimizer] = {}

    def tensor(h: int) -> Any:
        if h not in tensors:
            raise SnapshotError(f"{path}: handle {h} is not defined before its use")
        return tensors[h]
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
                m.set_grad.handle = tensor(ins.set_grad.handle)._handle
                m.set_grad.grad_handle = tensor(ins.set_grad.grad_handle)._handle
            elif kind == "release":  # the gradient's temporary handle
                rec.add().release.handles.extend(
                    tensors.pop(h)._handle for h in ins.release.handles if h in tensors)
            elif kind == "create_optimizer":
                c = ins.create_optimizer
                opts[c.optimizer] = recreate(session, [tensor(h) for h in c.params], c)
            else:
                raise SnapshotError(f"{path}: unexpected instruction {kind!r} in a snapshot")
        rec.flush()
    try:
        session.restored = {o.name: tensors[int(o.ref.id)] for o in names.outputs}
        session.optimizers = {o.name: opts[int(o.ref.id)] for o in optimizer_names.outputs}
    except (KeyError, ValueError):
        raise SnapshotError(f"{path}: a name refers to a handle the snapshot does not "
                            "define") from None
    return session
