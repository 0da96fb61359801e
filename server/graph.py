"""Stateless calls: validate a whole graph up front, run it, differentiate it.

Validation happens before any op runs: limits, unique names (single assignment), references to
earlier definitions only (so no cycles), op names, arity and attribute kinds from the catalogue.
The deadline is checked between ops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

import gradserve.engine as ge
from gradserve.engine.creation import shared_leaf
from gradserve.v1 import graph_pb2, service_pb2

from . import catalogue, codec, ops
from .config import ServerConfig
from .errors import InvalidRequestError, LimitExceededError, Located

# What each node of a request costs the server before any op runs, besides its wire bytes:
# gRPC's parse of a node message (~220 B in protobuf's arena for a one-input node, the wire
# ~27 B of it) and validation's table of defined names (~105 B: a str and a dict slot), measured
# on a 100,000-node chain (21 MiB parsed, 10 MiB validation peak). Charged to the call's budget
# before its inputs, so a graph's size counts against what its ops may allocate.
GRAPH_NODE_BYTES = 336

# A large input shares the request's bytes when its data starts at a multiple of this (as the
# arrays numpy allocates with malloc do); else it is copied once.
ALIGNMENT = 16

# Encoding a result into the reply copies its data twice: into the response message, and into
# gRPC's serialized bytes (both live until the reply is sent). Charged per output and gradient
# before it is encoded, at its full size (an expanded view is sent in full).
REPLY_COPIES = 2


def validate(req: service_pb2.RunGraphRequest, config: ServerConfig,
             handles_allowed: bool) -> None:
    """Check the request's structure (not values) before anything is allocated.

    Raises:
        InvalidRequestError, LimitExceededError, UnknownOpError (engine): naming the problem.
    """
    g = req.graph
    nodes = g.nodes
    if g.opset_version > ge.OPSET_VERSION:
        raise InvalidRequestError(f"graph needs op-set version {g.opset_version}; this server "
                                  f"supports up to {ge.OPSET_VERSION}")
    if len(nodes) > config.max_nodes:
        raise LimitExceededError(f"graph has {len(nodes)} nodes, more than the limit of "
                                 f"{config.max_nodes}", limit="max_nodes")
    if req.order > config.max_order:
        raise LimitExceededError(f"derivative order {req.order} is above the limit of "
                                 f"{config.max_order}", limit="max_order")
    # One pass over up to --max-nodes nodes: each field is read once (a protobuf field read costs
    # 0.1-0.4 us, iterating a repeated field ~0.7 us more) and messages are built only on error
    # (a 100,000-node chain validates in ~0.3 s); `_define` and `_check_ref` run only to raise.
    values = req.inputs
    defined: dict[str, int | None] = {}  # id -> number of outputs (None: known after running)
    for inp in g.inputs:
        name = inp.name
        if not name or name in defined:
            _define(defined, name, 1, "graph input")
        defined[name] = 1
        if name not in values:
            raise InvalidRequestError(f"graph input {name!r} has no value in the request")
    if len(values) != len(defined):  # every defined name has a value: the rest are unknown
        extra = set(values) - set(defined)
        raise InvalidRequestError(f"values given for unknown graph inputs {sorted(extra)}")
    checked = ops.checked
    for node in nodes:
        node_id, inputs = node.id, node.inputs
        op = checked(node.op, len(inputs))  # lookup and arity
        for v in inputs:
            if v.HasField("ref"):
                ref = v.ref
                n = defined.get(ref.id, -1)
                if n == -1 or (n is not None and ref.index >= n):
                    _check_ref(defined, nodes, ref, node)
                continue
            kind = v.WhichOneof("kind")
            if kind == "handle" and not handles_allowed:
                raise InvalidRequestError(f"{_where(node)}: handle inputs need a session "
                                          "(set session_id)")
            if kind is None:
                raise InvalidRequestError(f"{_where(node)}: an input has no kind set")
        if node.attrs or _required_attrs(op):
            _check_attrs(op, node, _where(node))
        if not node_id or node_id in defined:
            _define(defined, node_id, op.n_outputs, "node id")
        defined[node_id] = op.n_outputs
    names = []
    for out in g.outputs:
        ref = out.ref
        n = defined.get(ref.id, -1)
        if n == -1 or (n is not None and ref.index >= n):
            _check_ref(defined, (), ref, out)
        names.append(out.name)
    if len(set(names)) != len(names):
        raise InvalidRequestError(f"duplicate output names in {names}")
    wrt = req.wrt
    if wrt:
        for name in wrt:
            if name not in values:
                raise InvalidRequestError(f"wrt names {name!r}, which is not a graph input")
        if len(set(wrt)) != len(wrt):
            raise InvalidRequestError(f"duplicate names in wrt {list(wrt)}")
    if req.output_grads:
        unknown = set(req.output_grads) - set(names)
        if unknown:
            raise InvalidRequestError(f"output_grads names unknown outputs {sorted(unknown)}")
    if req.HasField("functional"):
        _check_functional(req)


_FUNCTIONALS = {
    service_pb2.FUNCTIONAL_KIND_JACOBIAN: "jacobian",
    service_pb2.FUNCTIONAL_KIND_HESSIAN: "hessian",
    service_pb2.FUNCTIONAL_KIND_VJP: "vjp",
    service_pb2.FUNCTIONAL_KIND_JVP: "jvp",
    service_pb2.FUNCTIONAL_KIND_VHP: "vhp",
    service_pb2.FUNCTIONAL_KIND_HVP: "hvp",
}


def _check_functional(req: service_pb2.RunGraphRequest) -> None:
    f = req.functional
    name = _FUNCTIONALS.get(f.kind)
    if name is None:
        raise InvalidRequestError(f"functional.kind {f.kind} is not a FunctionalKind "
                                  "(FUNCTIONAL_KIND_UNSPECIFIED included)")
    if not req.wrt:
        raise InvalidRequestError(f"functional {name} needs the inputs to differentiate "
                                  "with respect to in wrt")
    if not req.graph.outputs:
        raise InvalidRequestError(f"functional {name} needs at least one graph output")
    for field, bad in (("order", req.order > 1), ("output_grads", bool(req.output_grads)),
                       ("allow_unused", req.allow_unused)):
        if bad:
            raise InvalidRequestError(f"functional {name} cannot be combined with {field} "
                                      "(use functional.v and functional.strict)")
    if not f.inputs_tuple and len(req.wrt) != 1:
        raise InvalidRequestError(f"functional {name}: inputs_tuple is false, so wrt must name "
                                  f"exactly one input, not {len(req.wrt)}")
    if not f.outputs_tuple and len(req.graph.outputs) != 1:
        raise InvalidRequestError(f"functional {name}: outputs_tuple is false, so the graph "
                                  f"must have exactly one output, not {len(req.graph.outputs)}")
    if f.v:
        wanted = {"jacobian": 0, "hessian": 0, "vjp": len(req.graph.outputs)}.get(
            name, len(req.wrt))
        if len(f.v) != wanted:
            raise InvalidRequestError(
                f"functional {name} takes {wanted} tensor(s) in v (one per "
                f"{'graph output' if name == 'vjp' else 'wrt input'}), got {len(f.v)}"
                if wanted else f"functional {name} takes no v, got {len(f.v)}")


def _define(defined: dict[str, int | None], name: str, n_outputs: int | None, what: str) -> None:
    if not name:
        raise InvalidRequestError(f"a {what} has an empty name")
    if name in defined:
        raise InvalidRequestError(f"{what} {name!r} is defined twice (single assignment)")
    defined[name] = n_outputs


def _where(at: graph_pb2.Node | graph_pb2.GraphOutput) -> str:
    if isinstance(at, graph_pb2.GraphOutput):
        return f"output {at.name!r}"
    return f"node {at.id!r} ({at.op})"


_REQUIRED: dict[str, tuple[str, ...]] = {}  # op name -> its required attributes (registry-bound)


def _required_attrs(op: Any) -> tuple[str, ...]:
    required = _REQUIRED.get(op.name)
    if required is None:
        required = _REQUIRED[op.name] = tuple(s.name for s in op.attrs if s.required)
    return required


def _check_ref(defined: dict[str, int | None], nodes: Sequence[graph_pb2.Node],
               ref: graph_pb2.NodeOutput, at: graph_pb2.Node | graph_pb2.GraphOutput) -> None:
    """`nodes`: the graph's nodes, to tell a later definition from none (read on error only);
    `at`: the node or output that refers (named on error only)."""
    ref_id = ref.id
    n = defined.get(ref_id, -1)
    if n == -1:
        where = _where(at)
        if any(n.id == ref_id for n in nodes):
            raise InvalidRequestError(
                f"{where} refers to {ref_id!r}, which is not defined before it "
                "(nodes must be in topological order; cycles are not allowed)")
        raise InvalidRequestError(f"{where} refers to {ref_id!r}, which is not defined "
                                  "(dangling reference)")
    if n is not None and ref.index >= n:
        raise InvalidRequestError(f"{_where(at)} refers to output {ref.index} of {ref_id!r}, "
                                  f"which has {n} output(s)")


def _check_attrs(op: Any, node: graph_pb2.Node, where: str) -> None:
    if node.attrs:  # unknown names: the surface binder's check and text
        ge.registry.ATTRS.check_names(op.name, op.attrs, node.attrs)
    specs = {s.name: s for s in op.attrs} if node.attrs else {}
    for name, value in node.attrs.items():
        spec = specs[name]
        accepted = catalogue.accepted_fields(spec)
        given = value.WhichOneof("kind")
        if accepted is not None and given not in accepted:
            raise InvalidRequestError(
                f"{where}: attribute '{name}' of kind {spec.kind} cannot take "
                f"{given or 'an unset value'}")
    for spec in op.attrs:
        if spec.required and spec.name not in node.attrs:
            raise InvalidRequestError(f"{where}: missing required attribute '{spec.name}'")


def execute(req: service_pb2.RunGraphRequest, config: ServerConfig, *,
            check_deadline: Callable[[], None],
            resolve_handle: Callable[[int], ge.Tensor] | None = None,
            generator: Any = None, raw_inputs: Mapping[str, Any] | None = None) -> Reply:
    """Run a validated graph and return outputs and requested gradients, the whole call under
    one byte budget of `--max-session-bytes` (see `Budget`). `raw_inputs`: the raw data of
    inputs the request's parser held apart (`graph_request.RunGraphCall.raw`).

    Raises:
        LimitExceededError: the call would allocate more than its budget (RESOURCE_EXHAUSTED).
    """
    budget = Budget(config.max_session_bytes)
    with ge.limits.byte_budget(budget.max_bytes), ge.limits.allocation_limit(
            config.max_tensor_elements), ge.limits.interrupt(
                _work_meter(config.max_call_ops, check_deadline)), ge.enable_grad():
        try:
            return _execute(req, config, budget, check_deadline, resolve_handle, generator,
                            raw_inputs or {})
        except ge.errors.BudgetExceededError as exc:
            raise budget.exceeded(exc) from exc
        except Located as exc:
            if isinstance(exc.cause, ge.errors.BudgetExceededError):
                raise Located(budget.exceeded(exc.cause), node=exc.node) from exc
            raise


def _work_meter(max_ops: int, check_deadline: Callable[[], None]) -> Callable[[], None]:
    """The engine's interrupt check for one stateless call: `check_deadline`, and a count of
    the ops and backward steps the call runs (the engine calls it before each), refused past
    `max_ops` (--max-call-ops). The byte budget alone let a differentiated chain run ~100,000
    small ops (4-5 s) before its memory ran out; this bounds the call's CPU time."""
    left = max_ops

    def check() -> None:
        nonlocal left
        left -= 1
        if left < 0:
            raise LimitExceededError(
                f"a stateless call may run at most {max_ops} ops and backward steps in all "
                "(its nodes and every derivative order's passes; --max-call-ops)",
                limit="max_call_ops")
        check_deadline()
    return check


def _execute(req: service_pb2.RunGraphRequest, config: ServerConfig, budget: Budget,
             check_deadline: Callable[[], None],
             resolve_handle: Callable[[int], ge.Tensor] | None,
             generator: Any, raw_inputs: Mapping[str, Any]) -> Reply:
    g = req.graph
    limit = config.max_tensor_elements
    wrt = set(req.wrt) if req.wrt else ()
    ge.limits.charge(GRAPH_NODE_BYTES * len(g.nodes), "the parsed and validated graph")
    env: dict[str, tuple[Any, ...]] = {}
    values = req.inputs
    for inp in g.inputs:
        name = inp.name
        data = raw_inputs.get(name)
        if data is None:
            t = codec.decode_tensor(values[name], limit, requires_grad=name in wrt,
                                    what=f"input {name!r}")
        else:
            # a large input held apart by the request's parser: its leaf is a read-only view of
            # the request's bytes, no copy (a stateless graph has no in-place ops; the engine
            # writes into no array of its own inputs, `shared_leaf`), if it lies as numpy's own
            # arrays do; else one copy (numpy would copy an unaligned one through buffers in
            # every op that reads it)
            arr = codec.decode_array(values[name], limit, f"input {name!r}", data)
            if arr.ctypes.data % ALIGNMENT:
                arr = arr.copy()
            t = shared_leaf(arr, requires_grad=name in wrt)
        budget.add(t)
        env[name] = (t,)
    if req.HasField("functional"):
        return _functional(req, config, budget, env, check_deadline, resolve_handle, generator)
    return _run_nodes(req, budget, env, limit, check_deadline, resolve_handle, generator)


def _run_nodes(req: service_pb2.RunGraphRequest, budget: Budget,
               env: dict[str, tuple[Any, ...]], limit: int, check_deadline: Callable[[], None],
               resolve_handle: Callable[[int], ge.Tensor] | None,
               generator: Any) -> Reply:
    """Run the graph's nodes on `env` (the inputs) and its gradients, if asked for."""
    g = req.graph
    names, outputs = _forward(g, budget, env, limit, check_deadline, resolve_handle, generator)
    resp = Reply()
    wrt = req.wrt
    for name, t in zip(names, outputs):
        # encoded before the gradients are computed: its bytes are taken now (a backward pass
        # writes only buffers of its own, but the reply does not depend on it)
        resp.output(name, t, snapshot=bool(wrt))
    if wrt:
        check_deadline()
        _gradients(req, names, outputs, [env[name][0] for name in wrt], limit, resp,
                   check_deadline)
    return resp


def _out_of_range(ref: graph_pb2.NodeOutput, n: int) -> InvalidRequestError:
    return InvalidRequestError(f"{ref.id!r} has {n} outputs, not {ref.index + 1}")


def _forward(g: graph_pb2.Graph, budget: Budget, env: dict[str, tuple[Any, ...]], limit: int,
             check_deadline: Callable[[], None],
             resolve_handle: Callable[[int], ge.Tensor] | None,
             generator: Any) -> tuple[list[str], list[Any]]:
    """Run the nodes, adding their outputs to `env`; returns the graph's output names and
    values."""
    def resolve(v: graph_pb2.Value) -> Any:  # for codec.decode_value: handles (refs are read
        assert resolve_handle is not None  # below; validate() rejected handles without a
        return resolve_handle(v.handle)    # session)

    grad_enabled = ge.is_grad_enabled()
    add = budget.add
    for node in g.nodes:
        check_deadline()
        try:
            name = node.op
            inputs = []
            for v in node.inputs:
                if v.HasField("ref"):
                    ref = v.ref
                    outs, index = env[ref.id], ref.index
                    if index >= len(outs):
                        raise _out_of_range(ref, len(outs))
                    x = outs[index]
                else:
                    x = codec.decode_value(v, resolve, limit, f"{name}() input")
                add(x)  # inline constants (the engine charges what ops make)
                inputs.append(x)
            attrs = node.attrs
            no_grad = node.no_grad
            if attrs:
                op = ops.checked(name, len(inputs))
                decoded = codec.decode_attrs(attrs, name)
                if no_grad == grad_enabled:  # switch grad mode only when it differs
                    with ge.set_grad_enabled(not no_grad):
                        outs = ops.run(op, inputs, decoded, generator)
                else:
                    outs = ops.run(op, inputs, decoded, generator)
            else:  # no attributes: the op's defaults, bound once (`ops.prepared`)
                prepared = ops.prepared(name, len(inputs))
                if no_grad == grad_enabled:
                    with ge.set_grad_enabled(not no_grad):
                        out = ops.run_prepared(prepared, inputs, generator)
                else:
                    out = ops.run_prepared(prepared, inputs, generator)
                outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
            env[node.id] = outs
        except Exception as exc:
            raise Located(exc, node=node.id, op=node.op) from exc
    names, results = [], []
    for o in g.outputs:
        ref = o.ref
        outs, index = env[ref.id], ref.index
        if index >= len(outs):
            raise _out_of_range(ref, len(outs))
        names.append(o.name)
        results.append(outs[index])
    return names, results


def _functional(req: service_pb2.RunGraphRequest, config: ServerConfig, budget: Budget,
                env: dict[str, tuple[Any, ...]], check_deadline: Callable[[], None],
                resolve_handle: Callable[[int], ge.Tensor] | None,
                generator: Any) -> Reply:
    """torch.autograd.functional's `req.functional.kind` of the graph as a function of the wrt
    inputs: the engine's implementation (surface/functional.py) calls a function replaying the
    nodes (called once). The engine's backward passes tick the
    deadline between nodes, the replay between ops."""
    g, f = req.graph, req.functional
    name = _FUNCTIONALS[f.kind]
    limit, max_rows = config.max_tensor_elements, config.max_jacobian_rows
    wrt = list(req.wrt)
    fixed = {k: v for k, v in env.items() if k not in req.wrt}
    first: list[Any] = []

    def check_rows(rows: int, what: str) -> None:
        if rows > max_rows:
            raise LimitExceededError(
                f"a {name} takes {rows} rows (backward passes: elements of the {what}), more "
                f"than the limit of {max_rows} (--max-jacobian-rows)", limit="max_jacobian_rows")

    if name == "hessian":
        check_rows(sum(env[n][0].numel() for n in wrt), "wrt inputs")

    def func(*args: Any) -> Any:
        run_env = dict(fixed)
        run_env.update((n, (a,)) for n, a in zip(wrt, args))
        _, outs = _forward(g, budget, run_env, limit, check_deadline, resolve_handle,
                           generator)
        if not first:
            first.extend(outs)
            if name == "jacobian":
                n_rows = sum(o.numel() for o in outs if isinstance(o, ge.Tensor))
                check_rows(n_rows, "outputs")
        return tuple(outs) if f.outputs_tuple else outs[0]

    ins = tuple(env[n][0] for n in wrt)
    v = tuple(codec.decode_tensor(t, limit, what=f"functional.v[{i}]")
              for i, t in enumerate(f.v))
    for t in v:
        budget.add(t)
    # inputs and v as torch takes them: a tuple, or the one tensor (torch's messages differ)
    inputs = ins if f.inputs_tuple else ins[0]
    v_tuple = f.outputs_tuple if name == "vjp" else f.inputs_tuple
    af = ge.autograd.functional
    fn = {"jacobian": af.jacobian, "hessian": af.hessian, "vjp": af.vjp, "jvp": af.jvp,
          "vhp": af.vhp, "hvp": af.hvp}[name]
    if name in ("jacobian", "hessian"):
        res = fn(func, inputs, strict=f.strict)
    else:
        _, res = fn(func, inputs, None if not v else v if v_tuple else v[0], strict=f.strict)
    flat = _flatten(res)
    resp = Reply()
    for o, t in zip(g.outputs, first):
        resp.output(o.name, t.detach())
    for t in flat:
        resp.functional_result(t)
    return resp


def _flatten(res: Any) -> list[Any]:
    """torch.autograd.functional's nested tuples of tensors, in row-major order."""
    if isinstance(res, tuple):
        return [t for r in res for t in _flatten(r)]
    return [res]


def fit(resp: Reply, config: ServerConfig) -> bytes:
    """`resp` serialized, if it fits the message limit; a stateless call applied nothing, so it
    is refused whole rather than lost in transport. The size is known before the bytes are made,
    and the bytes are what gRPC sends (the registration passes bytes through, `wire_guard`).

    Raises:
        LimitExceededError: the response is larger than --max-message-bytes.
    """
    size = resp.size
    if size > config.max_message_bytes:
        raise LimitExceededError(
            f"the response would take {size} bytes, more than the message limit of "
            f"{config.max_message_bytes} bytes (--max-message-bytes); ask for fewer or smaller "
            "outputs and gradients per call", limit="max_message_bytes")
    return resp.serialize()


class Reply:
    """A RunGraphResponse as it is built: its serialized fields, in order, each tensor's data
    held as its array until `serialize` copies it once into the reply's bytes (see
    `codec.tensor_parts`). Outputs come first, then gradients or functional results, as the
    message's field numbers order them; each tensor's reply copies are charged to the call's
    budget when it is added (`REPLY_COPIES`)."""

    __slots__ = ("_parts", "size")

    def __init__(self) -> None:
        self._parts: list[Any] = []
        self.size = 0

    def _add(self, tag: bytes, parts: codec.Parts) -> None:
        head = tag + codec.varint(parts[1])
        self._parts.append(head)
        self._parts.extend(parts[0])
        self.size += len(head) + parts[1]

    def output(self, name: str, t: ge.Tensor, snapshot: bool = False) -> None:
        """Add an output (NamedTensor, field 1); `snapshot`: copy its data now, as more work
        (the gradients) runs before the reply is serialized."""
        name_field = codec.text_field(b"\x0a", name)
        tensor, size = codec.framed(b"\x12", _tensor_parts(t, snapshot))
        self._add(b"\x0a", ([name_field, *tensor], len(name_field) + size))

    def gradients(self, name: str, derivatives: Sequence[ge.Tensor | None]) -> None:
        """Add one input's derivatives (InputGradients, field 2); None is NoneValue."""
        name_field = codec.text_field(b"\x0a", name)
        parts, size = [name_field], len(name_field)
        for d in derivatives:
            slot, n = codec.framed(b"\x12", _maybe_tensor(d))
            parts.extend(slot)
            size += n
        self._add(b"\x12", (parts, size))

    def functional_result(self, t: ge.Tensor | None) -> None:
        """Add one of a functional call's results (MaybeTensor, field 3)."""
        self._add(b"\x1a", _maybe_tensor(t))

    def serialize(self) -> bytes:
        """The RunGraphResponse's bytes (what SerializeToString makes of the same message)."""
        return b"".join(self._parts)


_NONE_SLOT: codec.Parts = ([b"\x12\x00"], 2)  # MaybeTensor.none, an empty NoneValue


def _maybe_tensor(t: ge.Tensor | None) -> codec.Parts:
    return _NONE_SLOT if t is None else codec.framed(b"\x0a", _tensor_parts(t))


class Budget:
    """A stateless call's memory, against the per-session byte limit (a call may hold as much as
    a session). The whole call runs under one engine byte budget (`limits.byte_budget`): every
    op's declared results and graph node, in the forward and in every derivative order's
    backward, and every numpy gradient, are charged before they are made; the parsed graph
    (`GRAPH_NODE_BYTES` per node) is charged first, inputs and inline constants here (data once
    per owning array, plus `TENSOR_BYTES`), and the reply's copies of each output and gradient
    (`REPLY_COPIES` x its full size) before it is encoded. Charges are cumulative: frees are not
    credited."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._seen: dict[int, Any] = {}  # id -> array, kept alive so ids stay unique

    def add(self, t: Any) -> None:
        if not isinstance(t, ge.Tensor):
            return
        arr = t.numpy(force=True)
        base = arr if arr.base is None else arr.base
        if not isinstance(base, np.ndarray):
            # a view of the request's bytes (codec.decode_array, graph_request): what it shows,
            # once per view (several inputs may view one request)
            base = arr
        if id(base) in self._seen:
            return
        self._seen[id(base)] = base
        ge.limits.charge(base.nbytes + ge.limits.TENSOR_BYTES, "the call's input values")

    def exceeded(self, exc: Exception) -> LimitExceededError:
        return LimitExceededError(
            f"{exc}: a stateless call may allocate at most {self.max_bytes} bytes in all (the "
            "per-call limit, --max-session-bytes: the parsed graph, inputs, constants, each op's "
            "results and graph nodes, every derivative order's gradients and graphs, the "
            "reply)",
            limit="max_session_bytes")


def _tensor_parts(t: ge.Tensor, snapshot: bool = False) -> codec.Parts:
    """`t`'s serialized Tensor, charging the reply's copies of its data to the call's budget."""
    arr = t.numpy(force=True)
    ge.limits.charge(REPLY_COPIES * arr.nbytes, "the reply's copies of a result")
    return codec.tensor_parts(arr, snapshot)


def _zeros_like(x: ge.Tensor) -> ge.Tensor:
    return ge.tensor(np.zeros(x.shape, dtype=x.dtype.np))


def _gradients(req: service_pb2.RunGraphRequest, names: list[str], outputs: list[Any],
               inputs: list[Any], limit: int, resp: Reply,
               check_deadline: Callable[[], None]) -> None:
    roots, grads = [], []
    output_grads = req.output_grads
    for name, t in zip(names, outputs):
        if output_grads and name in output_grads:
            roots.append(t)
            grads.append(codec.decode_tensor(output_grads[name], limit,
                                             what=f"output_grads[{name!r}]"))
        elif isinstance(t, ge.Tensor) and t.requires_grad:
            roots.append(t)
            grads.append(None)
    if not roots:  # nothing depends on wrt: let the engine say so in torch's words
        roots, grads = list(outputs), [None] * len(outputs)
    order = max(1, req.order)
    first = ge.autograd.grad(roots, inputs, grad_outputs=grads, retain_graph=True,
                             create_graph=order > 1, allow_unused=req.allow_unused)
    if order == 1:
        for name, d in zip(req.wrt, first):
            resp.gradients(name, (d,))
        return
    derivs: list[list[Any]] = [[g] for g in first]
    for n in range(2, order + 1):
        check_deadline()
        for i, x in enumerate(inputs):
            prev = derivs[i][-1]
            if prev is None:
                derivs[i].append(None)
                continue
            nxt = None
            if prev.requires_grad:
                (nxt,) = ge.autograd.grad([prev.sum()], [x], retain_graph=True,
                                          create_graph=n < order, allow_unused=True)
            derivs[i].append(nxt if nxt is not None else _zeros_like(x))
    for name, ds in zip(req.wrt, derivs):
        resp.gradients(name, ds)
