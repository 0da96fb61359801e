"""`Session`: a server session that stands in for the `torch` module.

Functions come from the server's op catalogue (ListOps), so nothing is listed twice: every op
is `session.<name>(...)`, `session.nn.functional.<name>(...)` and, for ops with inputs,
`tensor.<name>(...)`. Ops are recorded in a `batch.Recorder` and sent when something needs a
value or an effect (printing, item(), .grad, .shape when unknown, backward(), autograd.grad()).
"""

from __future__ import annotations

import itertools
import os
import types
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradserve.surface import (
    aliases,
    anomaly,
    autograd_graph,
    control,
    creation,
    data,
    devices,
    dynamo,
    formatting,
    func_api,
    grad_mode,
    legacy,
    messages,
    operators,
    pytree,
    rng_state,
    saved_hooks,
)
from gradserve.surface import checkpoint as surface_checkpoint
from gradserve.surface import compat as surface_compat
from gradserve.surface import func as func_state
from gradserve.surface import linalg as surface_linalg
from gradserve.surface import memory_format as surface_memory_format
from gradserve.surface import meta as surface_meta
from gradserve.surface import out_arg as surface_out_arg
from gradserve.surface.functional import ErrorTypes, Functional
from gradserve.surface.indexing import basic_index_result
from gradserve.surface.node_names import node_name
from gradserve.surface.numbers import python_number
from gradserve.surface.signature import OUTPUT_COUNTS, count_outputs
from gradserve.v1 import (
    BACKWARD_ROOTS_FEATURE,
    BATCH_AFTER_FEATURE,
    FETCH_GRAD_REPR_FEATURE,
    GENERATOR_FEATURE,
    GET_BASE_FEATURE,
    GET_SAVED_FEATURE,
    OMIT_INFO_FEATURE,
    ONEDNN_LSTM_FEATURE,
    PACK_SAVED_FEATURE,
    SESSION_ID_METADATA,
    SET_DATA_FEATURE,
    TAPE_ATTRS_FEATURE,
    TAPE_FEATURE,
    TAPE_INSTRUCTIONS_FEATURE,
    graph_pb2,
)
from gradserve.v1 import session_pb2 as spb

from . import codec, compat, function, nn, optim, overloads
from . import generator as client_generator
from . import saved as client_saved
from .batch import (
    ATTRS,
    BOOL,
    CONSTANT,
    DESCRIBE,
    FLOAT,
    INT,
    MAX_TAPE_ARGS,
    MAX_TAPE_HANDLE,
    NO_GRAD,
    NONE,
    TAPE_NAMES,
    TAPE_WORDS,
    Recorder,
    Started,
    tape_attrs,
    user_origin,
    user_site,
)
from .dot import RemoteNode, reaches_other_leaf
from .errors import MetaMismatchError, copy_error, omitted_error
from .ops import OpSpec, make_function
from .optim import ServerOptimizer
from .tensor import GradFn, Size, Tensor, install_methods

pytree.register_sequence_type(Size)  # torch.Size is a pytree node, as in torch

# Gradients up to this many elements come back with the `.grad` read that binds them.
PREFETCH_ELEMENTS = 4096
# A backward reads at most this many gradients ahead (see Session._prefetch_grads).
PREFETCH_GRADS = 16


_SAVED_HOOKS = saved_hooks.ACTIVE  # [saved_tensors_hooks contexts open in any thread]


class Session:
    """A remote autograd session with torch's API (a context manager; closing frees it).

    Attributes beyond torch's: `id`, `client`, `round_trips` (batches sent so far), `flush()`,
    `describe()`, `close()`, `pipelined` (see `Client.session`), `read_ahead` (default True:
    `backward()` also fetches the gradients the program will likely read; README).
    """

    # True while an op is recorded and packed under saved_tensors_hooks (client/saved.py)
    _packing = False

    def __init__(self, client: Any, session_id: str, info: spb.SessionInfo, *,
                 eager: bool = False, pipelined: int = 0, verify_meta: bool | None = None):
        self.client = client
        self.id = session_id
        self.created_info = info
        self.eager = eager
        if isinstance(pipelined, bool) or not isinstance(pipelined, int) or pipelined < 0:
            raise ValueError(f"pipelined must be a number of instructions >= 0, got "
                             f"{pipelined!r}")
        self.pipelined = pipelined
        self.closed = False
        self._handles = itertools.count(1)
        # handle -> weak reference of each live tensor (a plain dict: Tensor.__del__ removes its
        # entry through `dropped`, cheaper per op than a WeakValueDictionary)
        self._live: dict[int, weakref.ref[Tensor]] = {}
        # handles of the 1-D tensors created from data here (contiguous: the layout that
        # nn.functional.linear's choice of graph needs), until released
        self._made_from_data: set[int] = set()
        self._inplace_pending = False  # an in-place write is recorded but not sent (see info)
        self._write_batch = 0  # the batch (Recorder.round_trips) carrying the last write
        self.restored: dict[str, Tensor] = {}  # filled by Client.restore
        self._epoch = 0  # bumped by every recorded instruction that may change a value
        # backward() reads ahead the gradients of these (see _prefetch_grads): leaves created
        # with requires_grad since the last backward, and tensors whose .grad was read
        self._fresh_leaves: list[weakref.ref[Tensor]] = []
        self.read_ahead = True  # False: backward() reads no gradient ahead
        self._grad_readers: dict[int, weakref.ref[Tensor]] = {}
        # this session's torch.set_printoptions; None until set: the server's repr (torch's
        # defaults) is used, else the client formats the fetched values itself
        self._print_options: formatting.PrintOptions | None = None
        table = client.op_table()
        self._table = table
        features = client.list_ops().features
        tapes = TAPE_FEATURE in features
        # ops with attributes go on the tape too (else as ApplyOp messages)
        self._tape_attrs = tapes and TAPE_ATTRS_FEATURE in features
        # backward, optimizer steps and zero_grad go on the tape too (else as messages)
        self._tape_instructions = tapes and TAPE_INSTRUCTIONS_FEATURE in features
        # The client describes op results itself (surface.meta) when the server takes
        # ApplyOp.omit_info; `verify_meta` still asks for every description and compares.
        self._infer = OMIT_INFO_FEATURE in features
        if verify_meta is None:
            verify_meta = os.environ.get("GRADSERVE_VERIFY_META", "") == "1"
        self.verify_meta = bool(verify_meta)
        # verify_meta: handle -> (op, Meta, grad_fn name) of each result inferred, until the
        # server's description of it comes
        self._verify_ops: dict[int, tuple[str, Any, str | None]] = {}
        self._generators = GENERATOR_FEATURE in features
        # a gradient read ahead is printed without its tensor (Fetch.grad_repr)
        self._grad_repr_only = FETCH_GRAD_REPR_FEATURE in features
        # grad_fn._saved_* (GetSaved, client/saved.py)
        self._get_saved = GET_SAVED_FEATURE in features
        self._pack_saved = PACK_SAVED_FEATURE in features
        self._get_base = GET_BASE_FEATURE in features  # Tensor._base
        self._set_data = SET_DATA_FEATURE in features  # `x.data = y` of another shape/dtype
        # torch.autograd.backward of several tensors in one pass (Backward.more_tensors)
        self._backward_roots = BACKWARD_ROOTS_FEATURE in features
        # nn.LSTM's float32 layers as the server's mkldnn_rnn_layer (surface.nn_rnn)
        self._onednn_lstm = ONEDNN_LSTM_FEATURE in features
        # the pipelined mode keeps two batches on the server when it can name the one before
        self._recorder = Recorder(self._send, session_id, client.target,
                                  self._live, self._tape_result if tapes else None, self._start,
                                  2 if BATCH_AFTER_FEATURE in features else 1)
        self._recorder.clock = lambda: self._epoch
        # `dropped(handle)`: a client tensor was garbage-collected (Tensor.__del__, once per
        # op result): release its handle with the next request
        self.dropped = _dropper(self._live, self._made_from_data, self._grad_readers,
                                self._verify_ops, self._recorder.released)
        # ops `call` sends straight to `_apply_plain` when given every input positionally and
        # no keywords: one output, no required attribute, and a server that takes tapes
        # (not random ops: `_apply` refuses them inside vmap(randomness="error"))
        self._plain: dict[str, OpSpec] = {
            name: spec for name, spec in table.ops.items()
            if tapes and spec.n_outputs == 1 and spec.inputs and spec.positional_only
            and not spec.random}
        # `_operator`'s names: the `_plain` ops that Tensor's operator methods give as many
        # inputs as they take
        arity = {**dict.fromkeys([*operators.BINARY.values(), *operators.REFLECTED.values()], 2),
                 **dict.fromkeys(operators.UNARY.values(), 1)}
        self._operators = {name: spec for name, spec in self._plain.items()
                           if len(spec.inputs) == arity.get(name)}
        self._functions: dict[str, Callable[..., Any]] = {
            name: make_function(spec, self._apply) for name, spec in table.ops.items()}
        self.__dict__.update(self._functions)
        self.__dict__.update(surface_out_arg.wrap(  # out= (surface/out_arg.py)
            overloads.RemoteBackend(self), self._functions))
        # torch spellings that are not one op (max(x, dim), x.T, zeros(requires_grad=True)...)
        self._overloads = overloads.available(table.ops)
        # `method`'s names that are `_plain` ops (no overload or alias in the way)
        self._plain_methods = {
            name: spec for name, spec in self._plain.items()
            if aliases.canonical(name) == name and getattr(
                self._overloads.get(name), "method", None) is None}
        install_methods([*table.ops, *table.inplace, *self._overloads, *aliases.ALIASES])
        self.__dict__.update(overloads.functions(self, self._overloads))
        for name, d in {**codec.BY_NAME, **codec.ALIASES}.items():
            setattr(self, name, d)
        self.Tensor = Tensor
        self.Size = Size
        # torch.Generator: this session's own class (generators live on its server)
        self.Generator: type[client_generator.Generator] = type(
            "Generator", (client_generator.Generator,), {"_session": self})
        self.default_generator = self.Generator._default()
        self.dtype = codec.DType
        self.nn = nn.build(self)  # torch.nn: modules, functional, init, utils (client/nn.py)
        fnl = Functional(lambda: self, ErrorTypes(RuntimeError, TypeError, ValueError))
        # custom Functions (client/function.py): this session's own base class, and their ctx
        # by node id until the server reports the node dropped
        fn_base = type("Function", (function.Function,), {"_session": self})
        self._custom: dict[int, tuple[Any, function.FunctionCtx]] = {}
        self._hooks: dict[int, tuple[Callable[..., Any], Any, str]] = {}  # client/function.py
        self._function_ids = itertools.count(1)
        self.autograd = types.SimpleNamespace(
            grad=self.grad_of, backward=self._autograd_backward, functional=fnl,
            gradcheck=fnl.gradcheck, gradgradcheck=fnl.gradgradcheck, Function=fn_base,
            function=types.SimpleNamespace(Function=fn_base, FunctionCtx=function.FunctionCtx,
                                           once_differentiable=function.once_differentiable),
            Variable=legacy.variable_type(self),
            graph=autograd_graph.namespace(GradFn, RemoteNode, **saved_hooks.MEMBERS),
            **anomaly.AUTOGRAD_MEMBERS)  # detect_anomaly, set_detect_anomaly
        # torch.func and torch.vmap (surface/func_api.py)
        self.func = func_api.namespace(lambda: self, ErrorTypes(RuntimeError, TypeError,
                                                                ValueError), reaches_other_leaf)
        self.vmap = self.func.vmap
        self.utils = types.SimpleNamespace(data=data.namespace(self),  # torch.utils.data
                                           _pytree=pytree,  # torch.utils._pytree
                                           checkpoint=surface_checkpoint.namespace(self))
        self._dynamo = dynamo.namespace()  # torch._dynamo, as eager programs see it
        self._higher_order_ops = control.higher_order_ops(self)  # torch._higher_order_ops
        self.linalg = surface_linalg.namespace(  # torch.linalg: the norms
            overloads.RemoteBackend(self), overloads.bind_function)
        self.__dict__.update(legacy.CONSTANTS)  # torch.pi, torch.e, torch.inf, torch.nan
        self.__dict__.update(surface_memory_format.MEMBERS)  # torch.channels_last & co.
        self.optim = optim.namespace(self)
        self._optimizers: weakref.WeakValueDictionary[int, ServerOptimizer] = (
            weakref.WeakValueDictionary())
        self.optimizers: dict[str, ServerOptimizer] = {}  # filled by Client.restore
        self.no_grad = grad_mode.no_grad
        self.enable_grad = grad_mode.enable_grad
        self.set_grad_enabled = grad_mode.set_grad_enabled
        self.is_grad_enabled = grad_mode.is_grad_enabled
        self.__dict__.update(anomaly.TORCH_MEMBERS)  # torch.is_anomaly_enabled, ...
        self.inference_mode = grad_mode.inference_mode
        self.is_inference_mode_enabled = grad_mode.is_inference_mode_enabled
        compat.install(self)  # device, cuda, set_default_dtype, Tensor(...), FloatTensor, ...
        for alias, target in aliases.ALIASES.items():  # torch.arctan is torch.atan, ...
            if target in self.__dict__:
                self.__dict__[alias] = self.__dict__[target]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise surface_compat.missing_name("torch", name)

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def round_trips(self) -> int:
        """Batches sent to the server so far."""
        return self._recorder.round_trips

    def _send(self, request: spb.BatchRequest) -> spb.BatchResponse:
        c = self.client
        return self._received(c.stub.ExecuteBatch(request, metadata=self._metadata,
                                                  timeout=c.timeout))

    def _start(self, request: spb.BatchRequest) -> Started:
        """Start the ExecuteBatch call of `request` without waiting for it (the pipelined
        mode's: gRPC's future, sent from this thread)."""
        c = self.client
        return Started(c.stub.ExecuteBatch.future(request, metadata=self._metadata,
                                                  timeout=c.timeout), self._received)

    def _received(self, response: spb.BatchResponse) -> spb.BatchResponse:
        """A batch's reply, once it came: forget the custom Functions' nodes it dropped."""
        for node in response.dropped_functions:
            self._custom.pop(node, None)
            self._hooks.pop(node, None)  # a packed node's unpack hook (client/saved.py)
        return response

    def _next_function_id(self) -> int:
        return next(self._function_ids)

    @property
    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return ((SESSION_ID_METADATA, self.id), *self.client.metadata)

    def flush(self) -> None:
        """Send pending instructions and dropped handles now, and wait for the reply (in the
        pipelined mode, also for the batch sent in the background, raising its error)."""
        rec = self._recorder
        rec.flush_if_pending()
        if rec.sinks or len(rec.released):
            if not rec.sinks:
                rec.add().release.SetInParent()  # an empty release carries the queued handles
            rec.flush()

    def describe(self) -> spb.SessionInfo:
        """The server's view of this session (flushes first, so releases are counted)."""
        self.flush()
        return self.client.describe(self.id)

    def close(self) -> None:
        """Close the session on the server and free everything it holds."""
        if self.closed:
            return
        self.closed = True
        self._recorder.close()
        self._recorder.released.closed = True
        self.client.call("CloseSession", spb.CloseSessionRequest(session_id=self.id),
                         session_id=self.id)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<gradserve.client.Session {self.id} on {self.client.target}>"

    def manual_seed(self, seed: Any) -> client_generator.Generator:
        """Re-seed the session's default random number generator (torch.manual_seed): its draws
        are then torch's for the same seed and calls.

        Args:
            seed: `int(seed)` in [-2**63, 2**64); negative seeds wrap modulo 2**64 as in torch.
        Returns:
            `default_generator`, as torch.
        Raises:
            TypeError, ValueError: int(seed) fails (torch's int() errors).
            ValueError: the seed is out of range ("Overflow when unpacking long long").
        """
        return self.default_generator.manual_seed(rng_state.module_seed(seed))

    def seed(self) -> int:
        """Re-seed the default generator from the operating system's entropy (torch.seed);
        returns the new seed."""
        return self.default_generator.seed()

    def initial_seed(self) -> int:
        """The default generator's seed (torch.initial_seed; one round trip)."""
        return self.default_generator.initial_seed()

    def get_rng_state(self) -> np.ndarray:
        """The default generator's state (torch.get_rng_state): torch's 5056 bytes as a uint8
        numpy array (see `Generator.get_state`)."""
        return self.default_generator.get_state()

    def set_rng_state(self, new_state: Any) -> None:
        """Restore the default generator's state (torch.set_rng_state; see
        `Generator.set_state`)."""
        self.default_generator.set_state(new_state)

    # --- recording ------------------------------------------------------------------------------

    def _record(self, sink: Any = None, binds: list[Tensor] | None = None,
                origin: tuple[str, int] | None = None) -> spb.Instruction:
        if self.closed:
            raise RuntimeError(f"session {self.id} is closed")
        return self._recorder.add(sink, binds, origin)

    def _after_record(self) -> None:
        if self.eager:
            self._recorder.flush()
        elif self.pipelined and self._recorder.ops >= self.pipelined:
            self._recorder.send_async()

    def _new_tensor(self) -> Tensor:
        t = Tensor(self, next(self._handles))
        self._live[t._handle] = weakref.ref(t)
        return t

    def adopt(self, t: Tensor, value: Tensor) -> None:
        """`t` takes `value`'s handle (its data, shape and autograd state) in place and `value`
        t's old one, released when the program drops `value`: torch's `resize_`, which changes
        a tensor's shape but not its identity."""
        t._handle, value._handle = value._handle, t._handle
        t._meta, value._meta = value._meta, t._meta
        t._node, value._node = value._node, t._node
        # the per-tensor state kept in each object's __dict__ (Tensor's class defaults); the
        # program's own attributes stay with their object
        mine = {k: v for k, v in t.__dict__.items() if k.startswith("_")}
        theirs = {k: v for k, v in value.__dict__.items() if k.startswith("_")}
        for k in mine:
            del t.__dict__[k]
        for k in theirs:
            del value.__dict__[k]
        t.__dict__.update(theirs)
        value.__dict__.update(mine)
        for obj in (t, value):
            self._live[obj._handle] = weakref.ref(obj)
            if obj._handle in self._grad_readers:
                self._grad_readers[obj._handle] = weakref.ref(obj)

    def live_tensor(self, handle: int) -> Tensor | None:
        """The client tensor of `handle`, None when the program no longer holds it."""
        ref = self._live.get(handle)
        return None if ref is None else ref()

    def live_tensors(self) -> dict[int, Tensor]:
        """{handle: tensor} of this session's client tensors still referenced by the program."""
        live = {h: ref() for h, ref in list(self._live.items())}
        return {h: t for h, t in live.items() if t is not None}

    def save(self, path: Any = None, tensors: Any = None, optimizers: Any = None, **kwargs: Any
             ) -> None:
        """Save leaf tensors' values, grads and requires_grad, and optimizers' state, to `path`
        (see client/snapshot.py): `tensors` is {name: tensor}, a list, or None for every live
        leaf; `optimizers` likewise ({name: optimizer}, a list, None for every live one).
        Restore with `client.restore(path)`: `.restored[name]`, `.optimizers[name]`.

        With an object first (not a path), torch's `save(obj, f)` instead: torch's file format,
        read back by `load` or by torch (client/serialization.py); torch's keyword arguments
        (`pickle_protocol`, ...) are accepted and ignored, and its names `obj` and `f` too
        (`save(obj=model.state_dict(), f=path)`)."""
        if "obj" in kwargs or "f" in kwargs:
            from .serialization import save as torch_save

            obj = kwargs.pop("obj") if "obj" in kwargs else path
            torch_save(self, obj, kwargs.pop("f") if "f" in kwargs else tensors)
            return
        if not isinstance(path, (str, bytes, os.PathLike)):
            from .serialization import save as torch_save

            torch_save(self, path, tensors)
            return
        from .snapshot import save

        snapshot_path: Any = path
        save(self, snapshot_path, tensors, optimizers)

    def load(self, f: Any, map_location: Any = None, pickle_module: Any = None, *,
             weights_only: Any = None, mmap: Any = None, **pickle_load_args: Any) -> Any:
        """torch.load(f): a file torch.save (or `save(obj, f)`) wrote, its tensors made in this
        session. Weights only (tensors, state dicts, Python containers and scalars) unless
        `weights_only=False`, which imports other globals than torch's as pickle does (a numpy
        array, the program's classes: only for a file the program trusts, as torch's);
        `map_location` may name the cpu only.

        Raises:
            pickle.UnpicklingError: anything outside the weights-only set (a `torch.*` global
                outside it even with `weights_only=False`).
        """
        if map_location is not None and str(map_location) not in ("cpu", "cpu:0"):
            raise RuntimeError(f"load(): gradserve has only the cpu device, not {map_location!r}")
        from .serialization import load as torch_load

        return torch_load(self, f, weights_only)


    def _value(self, v: Any, out: graph_pb2.Value, what: str, position: int | None = None) -> None:
        """Encode `v` (a tensor of this session, None, a number, an array) as a wire Value;
        `what` names it in errors, with its `position` for an op's input (a numpy array is
        then refused, as torch refuses it for a Tensor argument)."""
        if isinstance(v, Tensor):
            if v._owner is not self:
                raise RuntimeError(f"{what}: the tensor belongs to another session or trace")
            if v._error is not None:
                raise copy_error(v._error)
            out.handle = v._handle
        elif v is None:
            out.none.SetInParent()
        elif not codec.encode_scalar(v, out):
            if isinstance(v, np.ndarray) and position is None:
                codec.encode_array(v, out.constant)
            elif isinstance(v, np.ndarray):
                raise TypeError(f"{what} (position {position}) must be Tensor, not "
                                f"{messages.tp_name(v)}")
            else:
                raise TypeError(f"{what} must be Tensor, not {type(v).__name__}")

    def _apply(self, spec: OpSpec, inputs: list[Any], attrs: dict[str, Any]) -> Any:
        if spec.random:
            func_state.check_random(RuntimeError)  # inside vmap(randomness="error")
        if _SAVED_HOOKS[0] and not self._packing and saved_hooks.state.stack:
            return client_saved.apply_and_pack(self, spec, self._apply, spec, inputs, attrs)
        if (not attrs and spec.n_outputs == 1 and spec.inputs and not spec.variadic
                and self._recorder.tape_sink is not None):
            return self._apply_plain(spec, inputs)
        key = None
        if (spec.n_outputs == 1 and spec.inputs and not spec.variadic and not spec.random
                and self._infer and not self._inplace_pending and not self.verify_meta
                and not self.closed):
            # an op with attributes seen before with these inputs' Metas and attributes
            key = self._attr_op_key(spec, inputs, attrs)
            if key is not None:
                hit = _ATTR_OPS.get(key)
                if hit is not None:
                    return self._record_attr_op(spec, inputs, hit)
        n = spec.n_outputs
        if n is None:
            n = self._count_outputs(spec, inputs, attrs)
        requires_grad = attrs.pop("requires_grad", None) if not spec.inputs else None
        outs = [self._new_tensor() for _ in range(n)]
        known = (self._infer and not self._writes_pending()
                 and self._describe(spec, inputs, attrs, outs, requires_grad))
        rec = self._recorder
        with rec.lock:
            start = len(rec.sinks)
            try:
                self._record_apply(spec, inputs, attrs, outs, requires_grad, known)
            except BaseException:
                rec.truncate(start)
                raise
        if key is not None and known:  # recorded as described: the next such call is a hit
            if len(_ATTR_OPS) >= _ATTR_OPS_MAX:
                _ATTR_OPS.clear()
            _ATTR_OPS[key] = (outs[0]._meta, outs[0]._node, _apply_template(
                spec.name, True, not grad_mode._state.enabled, attrs), tape_attrs(attrs))
        self._after_record()
        return outs[0] if spec.n_outputs == 1 else tuple(outs)

    def _attr_op_key(self, spec: OpSpec, inputs: Sequence[Any], attrs: dict[str, Any]
                     ) -> tuple[Any, ...] | None:
        """`_ATTR_OPS`'s key for a call of one-output op `spec` (grad mode, each input's Meta, a
        float's type, another scalar's type and value, each bound attribute's name, type and
        value), or None when the call is not one `_record_attr_op` records: an input of
        another kind or session, without Meta or failed, an int outside int64, an unhashable
        attribute or a float zero (0.0 == -0.0)."""
        parts: list[Any] = [spec.name, grad_mode._state.enabled]
        for v in inputs:
            kind = type(v)
            if kind is Tensor or kind is _Parameter:
                m = v._meta
                if m is None or v._error is not None or v._owner is not self:
                    return None
                parts.append(m)
            elif kind is float:
                parts.append(float)
            elif v is None or kind is bool or (kind is int and _INT64_MIN <= v <= _INT64_MAX):
                parts.append((kind, v))
            else:
                return None
        for k, v in attrs.items():
            if v.__class__ is float and v == 0.0:
                return None
            parts += (k, v.__class__, v)
        key = tuple(parts)
        try:
            hash(key)
        except TypeError:
            return None
        return key

    def _record_attr_op(self, spec: OpSpec, inputs: Sequence[Any],
                        hit: tuple[Any, Any, spb.ApplyOp, Any]) -> Tensor:
        """`_apply`'s recording of a call `_attr_op_key` keys and `_ATTR_OPS` knows: its result
        described here (`hit`: Meta, grad_fn name, the ApplyOp's op, omit_info, no_grad and
        attributes, and the attributes for a tape), the inputs checked by the key, so nothing
        can be refused. On the open tape when the server takes attributes there, else as an
        ApplyOp."""
        meta, node, template, items = hit
        handle = next(self._handles)
        out = _new(Tensor)  # what Tensor(self, handle) sets, without its call
        out._owner = self
        out._handle = handle
        out._meta = meta
        out._node = node
        if grad_mode._state.inference:
            out._inference = True
        self._live[handle] = _ref(out)
        rec = self._recorder
        if (self._tape_attrs and items is not None and handle < MAX_TAPE_HANDLE
                and len(inputs) <= MAX_TAPE_ARGS):
            with rec.lock:
                tape = rec.open
                if tape is None or tape.full_for_attrs():
                    tape = rec.tape()
                _append_op(tape, spec.name, ATTRS if grad_mode._state.enabled
                           else ATTRS | NO_GRAD, inputs, handle)
                tape.add_attrs(items)
                # _apply's callers are the library's (ops.make_function, call, method): the
                # user's frame is theirs or further
                tape.origins.append(user_site(4))
                rec.ops += 1
            if self.eager or self.pipelined:
                self._after_record()
            return out
        with rec.lock:
            m = rec.add(None, [out], user_origin(3)).apply_op  # user_origin(3): _apply's caller
            add = m.inputs.add
            for v in inputs:
                kind = type(v)
                if kind is Tensor or kind is _Parameter:
                    add(handle=v._handle)
                elif kind is float:
                    add(float_scalar=v)
                elif v is None:
                    add().none.SetInParent()
                elif kind is bool:
                    add(bool_scalar=v)
                else:
                    add(int_scalar=v)
            m.MergeFrom(template)
            m.outputs.append(handle)
        if self.eager or self.pipelined:
            self._after_record()
        return out

    def _apply_plain(self, spec: OpSpec, inputs: Sequence[Any], depth: int = 3) -> Any:
        """`_apply` of the commonest op (one output, tensor inputs, no attributes) on a tape:
        the same steps, fewer calls.

        The hot path (every input a tensor of this session whose metadata is known, a float,
        an int64 or a bool; an inference `_describe` made before, so cached; no in-place write
        pending) is `_describe`'s cached answer and `_record_tape`'s appends written out here,
        one function for the whole op; anything else takes those two. `depth`: the frame
        (from `user_site`'s) where the search for the user's line starts: 3, this function's
        caller's caller, or 4 from `_operator`, whose caller's caller is the user's frame
        (each frame looked at costs a frame object)."""
        if _SAVED_HOOKS[0] and not self._packing and saved_hooks.state.stack:
            return client_saved.apply_and_pack(self, spec, self._apply_plain, spec, inputs,
                                               depth + 2)
        state = grad_mode._state
        grad = state.enabled
        if self._infer and not self._inplace_pending and not self.closed:
            key: list[Any] = [spec.name, grad]
            for v in inputs:
                kind = type(v)
                if kind is Tensor or kind is _Parameter:
                    m = v._meta
                    if m is None or v._error is not None or v._owner is not self:
                        break
                    key.append(m)
                elif kind is float:
                    key.append(float)
                elif (kind is int and _INT64_MIN <= v <= _INT64_MAX) or kind is bool:
                    key.append((kind, v))
                else:
                    break
            else:
                hit = _INFERRED.get(tuple(key))
                if hit is not None and hit[2] is not None:
                    m, node, flags = hit[2]
                    handle = next(self._handles)
                    out = _new(Tensor)  # what Tensor(self, handle) sets, without its call
                    out._owner = self
                    out._handle = handle
                    out._meta = m
                    out._node = node
                    if state.inference:
                        out._inference = True
                    self._live[handle] = _ref(out)
                    if handle >= MAX_TAPE_HANDLE:
                        return self._record_plain(spec, inputs, out, node is not None)
                    if self.verify_meta:
                        flags |= DESCRIBE
                        self._verify_ops[handle] = (spec.name, m, node)
                    rec = self._recorder
                    with rec.lock:
                        tape = rec.open
                        if (tape is None or len(tape.code) >= TAPE_WORDS
                                or len(tape.names) >= TAPE_NAMES):  # tape.full()
                            tape = rec.tape()
                        _append_op(tape, spec.name, flags, inputs, handle)
                        tape.origins.append(user_site(depth))
                        rec.ops += 1
                    if self.eager or self.pipelined:
                        self._after_record()
                    return out
        out = Tensor(self, next(self._handles))
        self._live[out._handle] = weakref.ref(out)
        outs = [out]
        known = (self._infer and not (self._inplace_pending and self._writes_pending())
                 and self._describe(spec, inputs, {}, outs, None))
        rec = self._recorder
        with rec.lock:
            if not self._record_tape(spec, inputs, outs, known):  # user_site(4): _apply's caller
                start = len(rec.sinks)
                try:
                    self._record_apply(spec, inputs, {}, outs, None, known)
                except BaseException:
                    rec.truncate(start)
                    raise
        if self.eager or self.pipelined:
            self._after_record()
        return out

    def _record_plain(self, spec: OpSpec, inputs: Sequence[Any], out: Tensor,
                      known: bool) -> Tensor:
        """`_apply_plain`'s recording of an op whose result `out` is described, when a tape
        cannot take it (a handle past the tape's range)."""
        rec = self._recorder
        with rec.lock:
            if not self._record_tape(spec, inputs, [out], known):
                start = len(rec.sinks)
                try:
                    self._record_apply(spec, inputs, {}, [out], None, known)
                except BaseException:
                    rec.truncate(start)
                    raise
        if self.eager or self.pipelined:
            self._after_record()
        return out

    def _count_outputs(self, spec: OpSpec, inputs: list[Any], attrs: dict[str, Any]) -> int:
        """How many outputs a variable-output op will make (torch returns them as a tuple at
        once, so the count is needed now): the surface's rule that ListOps names for the op,
        applied to the input's shape, read with a flush when it is not known yet. Arguments the
        engine will refuse count as one output; the server then answers with the engine's
        error."""
        if spec.output_count not in OUTPUT_COUNTS:
            raise NotImplementedError(f"{spec.name}(): the client cannot tell how many outputs "
                                      "this op makes (a newer server than this client?)")
        x = inputs[0] if inputs else None
        if not isinstance(x, Tensor) or x._owner is not self:
            return 1
        return count_outputs(spec.output_count, tuple(self.meta(x).shape), attrs)

    def _describe(self, spec: OpSpec, inputs: Sequence[Any], attrs: dict[str, Any],
                  outs: list[Tensor], requires_grad: Any) -> bool:
        """Infer the results' metadata (`gradserve.surface.meta`) into `outs` (`_meta`,
        `_node`); True when each one's shape, dtype, requires_grad and grad_fn name is known,
        so the server need not describe them. Nothing is sent or waited for: an input whose
        metadata is not known here leaves the results to the server's description."""
        hit: Any = _MISSING
        grad = grad_mode._state.enabled
        key: tuple[Any, ...] | None = None
        if not spec.variadic and not spec.random:
            # the hot path: (op, grad mode, each input's Meta, a float as its type: a rule reads
            # no value but an int's range, each attribute's name, type and value) -> the
            # answer, cached
            parts: list[Any] = [spec.name, grad]
            for v in inputs:
                kind = type(v)
                if kind is float:
                    parts.append(float)
                elif kind is Tensor or kind is _Parameter:
                    m = v._meta
                    if m is None or v._error is not None or v._owner is not self:
                        break
                    parts.append(m)
                elif kind is int or kind is bool or v is None:
                    parts.append((kind, v))
                elif (n := python_number(v)) is not None:  # a numpy scalar: torch's number
                    parts.append(float if type(n) is float else (type(n), n))
                else:
                    break
            else:
                for k, v in attrs.items():  # bound: ints, floats, bools, strs, tuples, dtypes
                    parts += (k, v.__class__, v)
                key = tuple(parts)
                try:
                    hit = _INFERRED.get(key, _MISSING)
                except TypeError:  # an unhashable value (from a server whose kinds are new)
                    key = None
        if hit is _MISSING:
            args: list[Any] = []
            for v in (inputs[0] if spec.variadic else inputs):
                if isinstance(v, Tensor):
                    m = v._meta
                    if m is None or v._owner is not self or v._error is not None:
                        m = _meta_from_info(v) if v._owner is self and v._error is None else None
                        if m is None:
                            return False
                    args.append(m)
                else:
                    n = python_number(v)  # a numpy scalar: the number torch reads
                    args.append(v if n is None else n)
            metas = surface_meta.infer(spec.name, [args] if spec.variadic else args, attrs,
                                       grad)
            # the node of results that require grad: the op's one name, or the surface's rule
            # for the ops torch names by their arguments (None: the server names it)
            node = spec.node
            if node is None and metas is not None and not spec.variadic:
                node = node_name(spec.name, args, attrs)
            hit = (metas, node, _plain_entry(metas, node, grad))
            if key is not None:
                if len(_INFERRED) >= _INFERRED_MAX:
                    _INFERRED.clear()
                _INFERRED[key] = hit
        metas, node, _ = hit
        if metas is None or len(metas) != len(outs):
            return False
        if requires_grad:  # a factory's requires_grad=True: a leaf (set_requires_grad follows)
            m = metas[0]
            if len(outs) != 1 or m.dtype not in _FLOATING:
                return False
            outs[0]._meta, outs[0]._node = m._replace(requires_grad=True), ""
            return True
        known = True
        for t, m in zip(outs, metas):
            t._meta = m
            if m.requires_grad and grad:  # (under no_grad: a view, which has no grad_fn)
                t._node = node
                known = known and node is not None
            else:
                t._node = ""
        if self.verify_meta:
            for t in outs:
                self._verify_ops[t._handle] = (spec.name, t._meta, t._node)
        return known

    def _check_meta(self, t: Tensor, info: spb.TensorInfo) -> None:
        """verify_meta: the server's description `info` of `t` against what the client
        inferred.

        Raises:
            MetaMismatchError: they differ.
        """
        inferred = self._verify_ops.pop(t._handle, None)  # as inferred when recorded
        if inferred is None:
            return
        op, m, node = inferred
        got = (tuple(info.shape), codec.BY_WIRE[info.dtype].name, info.requires_grad)
        if (got != (m.shape, m.dtype, m.requires_grad) or (m.contiguous and info.non_contiguous)
                or (node is not None and node != info.grad_fn)):
            raise MetaMismatchError(
                f"{op}: the client inferred shape {list(m.shape)}, {m.dtype}, "
                f"requires_grad={m.requires_grad}, contiguous={m.contiguous}, grad_fn "
                f"{node!r}; the server describes shape {list(got[0])}, {got[1]}, "
                f"requires_grad={got[2]}, contiguous={not info.non_contiguous}, grad_fn "
                f"{info.grad_fn!r}")

    def _record_apply(self, spec: OpSpec, inputs: Sequence[Any], attrs: dict[str, Any],
                      outs: list[Tensor], requires_grad: Any, known: bool = False) -> None:
        # The caller of _apply is client code (ops.make_function, call, method): the walk to
        # the user's frame starts there. `known`: the client knows the results' metadata.
        if not requires_grad and self._recorder.tape_sink is not None:
            if not attrs:
                if self._record_tape(spec, inputs, outs, known):
                    return
            elif self._tape_attrs and "generator" not in attrs:
                items = tape_attrs(attrs)
                if items is not None and self._record_tape(spec, inputs, outs, known, items):
                    return
        check = self._check_meta if self.verify_meta else None
        m = self._record(_bind_outputs(outs, None if requires_grad else check), outs,
                         user_origin(3)).apply_op
        omit = known and not self.verify_meta
        no_grad = not grad_mode._state.enabled
        if spec.variadic:
            for v in inputs[0]:
                self._value(v, m.inputs.add(), f"{spec.name}(): argument '{spec.inputs[0]}'")
        else:
            for i, (name, v) in enumerate(zip(spec.inputs, inputs)):
                if (type(v) is Tensor or type(v) is _Parameter) and v._owner is self and (
                        v._error is None):
                    m.inputs.add(handle=v._handle)  # what _value does, without its message
                elif type(v) is float:
                    m.inputs.add(float_scalar=v)
                else:
                    self._value(v, m.inputs.add(), f"{spec.name}(): argument '{name}'", i + 1)
        if attrs and not spec.random:
            # op, flags and attributes as one message made once per (op, flags, attributes)
            m.MergeFrom(_apply_template(spec.name, omit, no_grad, attrs))
        else:
            m.op = spec.name
            if omit:
                m.omit_info = True
            for k, v in attrs.items():
                if k == "generator":  # a random op's generator= (OpSpec.bind)
                    m.generator = client_generator.generator_handle(self, v, spec.name)
                    continue
                _encode_attr(spec.name, k, v, m)
            if no_grad:
                m.no_grad = True
        if len(outs) == 1:
            m.outputs.append(outs[0]._handle)
        else:
            m.outputs.extend(t._handle for t in outs)
        if requires_grad:
            r = self._record(_update_info(outs[0], check), [outs[0]]).set_requires_grad
            r.handle = outs[0]._handle
            r.requires_grad = True

    def _record_tape(self, spec: OpSpec, inputs: Sequence[Any], outs: list[Tensor],
                     known: bool = False, items: Any = None) -> bool:
        """Append the op to the batch's open tape (docs/wire.md); False when it does not fit
        one (then it is sent as ApplyOp). Atomic: a bad input raises before anything is
        appended but constant-table and op-name entries, which nothing then references. `known`: the
        client knows the results' metadata (no DESCRIBE flag). `items`: the op's attributes
        (`batch.tape_attrs`; None: it has none)."""
        given = inputs[0] if spec.variadic else inputs
        n_in, n_out = len(given), len(outs)
        if (not n_out or n_in > MAX_TAPE_ARGS or n_out > MAX_TAPE_ARGS
                or outs[-1]._handle >= MAX_TAPE_HANDLE):
            return False
        if self.closed:
            raise RuntimeError(f"session {self.id} is closed")
        rec = self._recorder
        tape = rec.open
        if tape is None or (tape.full() if items is None else tape.full_for_attrs()):
            tape = rec.tape()
        # the header first (an op-name entry no op references is harmless if an input is
        # refused); appended in place (no per-op list) and taken back if an input is refused
        names = tape.names
        index = names.get(spec.name)
        if index is None:
            index = names[spec.name] = len(names)
        flags = 0 if known and not self.verify_meta else DESCRIBE
        if not grad_mode._state.enabled:
            flags |= NO_GRAD
        if items is not None:
            flags |= ATTRS
        code = tape.code
        head = len(code)
        append = code.append
        append(index | flags << 32 | n_in << 40 | n_out << 52)
        try:
            for k, v in enumerate(given):
                kind = type(v)
                if (kind is Tensor or kind is _Parameter) and v._owner is self and v._error is None:
                    append(v._handle << 3)  # HANDLE: kind 0
                elif kind is float:
                    floats = tape.floats
                    append(len(floats) << 3 | FLOAT)
                    floats.append(v)
                else:
                    self._tape_input(spec, k, v, tape)
        except BaseException:
            del code[head:]
            raise
        if n_out == 1:
            append(outs[0]._handle)
        else:
            for t in outs:
                append(t._handle)
        if items is not None:
            tape.add_attrs(items)
        tape.heads.append(head)
        tape.origins.append(user_site(4))
        rec.ops += 1
        return True

    def record_tape_instruction(self, name: str, inputs: list[int]) -> bool:
        """Append session instruction `name` (docs/wire.md: `backward`, `optimizer_step`,
        `optimizer_zero_grad`) with input words `inputs` (handles below `MAX_TAPE_HANDLE`) to
        the batch's open tape; False when the server takes no instructions on the tape (then
        record the instruction's message)."""
        if not self._tape_instructions:
            return False
        if self.closed:
            raise RuntimeError(f"session {self.id} is closed")
        rec = self._recorder
        with rec.lock:
            tape = rec.open
            if tape is None or tape.full():
                tape = rec.tape()
            tape.add_instruction(name, inputs, user_site(3))
            rec.ops += 1
        return True

    def _tape_input(self, spec: OpSpec, k: int, v: Any, tape: Any) -> None:
        """Append input `v` (k-th) of a tape op that is neither a handle nor a float: through
        `_value`, which checks it as an ApplyOp input is checked."""
        append = tape.code.append
        name = spec.inputs[0] if spec.variadic else spec.inputs[k]
        scratch = graph_pb2.Value()
        self._value(v, scratch, f"{spec.name}(): argument '{name}'",
                    None if spec.variadic else k + 1)
        kind = scratch.WhichOneof("kind")
        if kind == "handle":
            append(scratch.handle << 3)
        elif kind == "float_scalar":
            append(len(tape.floats) << 3 | FLOAT)
            tape.floats.append(scratch.float_scalar)
        elif kind == "int_scalar":
            append(len(tape.ints) << 3 | INT)
            tape.ints.append(scratch.int_scalar)
        elif kind == "bool_scalar":
            append(scratch.bool_scalar << 3 | BOOL)
        elif kind == "none":
            append(NONE)
        else:
            append(len(tape.constants) << 3 | CONSTANT)
            tape.constants.append(scratch.constant)

    def _tape_result(self, r: spb.InstructionResult, epoch: int) -> None:
        """A tape's reply: the descriptions and values of the outputs the program holds; the
        values are as after the batch, i.e. of the epoch the batch was sent at."""
        live = self._live
        result = r.tape
        verify = self.verify_meta
        for info in result.tensors:
            ref = live.get(info.handle)
            t = ref() if ref is not None else None
            if t is not None:
                t._info = info
                if verify:
                    self._check_meta(t, info)
        if result.values:
            for hv in result.values:
                ref = live.get(hv.handle)
                t = ref() if ref is not None else None
                if t is not None:
                    t._value = codec.decode_array(hv.value)
                    t._epoch = epoch

    def call(self, name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """Call catalogue op `name` (used by Tensor's operators and spellings)."""
        spec = self._plain.get(name)
        if spec is not None and not kwargs and len(args) == len(spec.inputs):
            # what bind and _apply conclude for this call (every input positional, no
            # attributes, one output, a tape): straight to the tape (user_site(4): our caller)
            return self._apply_plain(spec, args)
        spec = self._table.ops.get(name)
        if spec is None:
            raise AttributeError(f"the server has no op {name!r}")
        inputs, attrs = spec.bind(args, kwargs)
        return self._apply(spec, inputs, attrs)

    def _operator(self, name: str, args: Sequence[Any]) -> Any:
        """`call(name, args, {})` from one of Tensor's operator methods (`x * y`, `-x`): the
        same recording, the user's line looked for from the operator's caller on."""
        spec = self._operators.get(name)
        if spec is not None:
            return self._apply_plain(spec, args, 4)
        return self.call(name, args, {})

    def method(self, t: Tensor, name: str) -> Callable[..., Any]:
        """`t.<name>`: an overload (client/overloads.py), an op with `t` as its first input, or
        its in-place variant."""
        plain = self._plain_methods.get(name)
        if plain is not None:  # every input positional and no keywords: straight to the tape
            op_spec, n, apply_plain = plain, len(plain.inputs), self._apply_plain

            def op(*args: Any, **kwargs: Any) -> Any:
                if not kwargs and len(args) + 1 == n:
                    for i, a in enumerate(args):
                        if type(a) is np.ndarray:  # torch's refusal, counting from after `t`
                            raise TypeError(messages.must_be_tensor(
                                op_spec.name, op_spec.inputs[i + 1], a, i + 1))
                    return apply_plain(op_spec, (t, *args))
                return self._apply(op_spec, *op_spec.bind((t, *args), kwargs))
            return op
        target = aliases.canonical(name)  # x.arctan() is x.atan()
        ov = self._overloads.get(target)
        if ov is not None and ov.method is not None:
            return overloads.method(self, ov, t)  # type: ignore[no-any-return]
        spec = self._table.ops.get(target)
        if spec is not None and spec.inputs and not spec.variadic:
            return lambda *args, **kwargs: self._apply(spec, *spec.bind((t, *args), kwargs))
        if target in self._table.inplace:
            return lambda *args, **kwargs: self.inplace(target, t, args, kwargs)
        raise surface_compat.missing_name("torch.Tensor", name, "dir(tensor)")

    def inplace(self, name: str, t: Tensor, args: Sequence[Any], kwargs: dict[str, Any]) -> Tensor:
        """Record `t.<name>(*args)` for an in-place op name (`add_`). A tensor made here from
        data (`tensor(...)`: never a view) known to be a leaf that requires grad is refused
        here, as torch refuses it, rather than by the server at the next flush (other leaves may
        be views made under no_grad, whose refusal torch words otherwise: the server's)."""
        t._outside_inference_check()
        if (grad_mode._state.enabled and t._meta is not None and t._meta.requires_grad
                and _known_node(t) == "" and t._handle in self._made_from_data):
            raise RuntimeError(messages.LEAF_INPLACE)
        spec = self._table.ops[name[:-1]]
        if spec.random:
            func_state.check_random(RuntimeError)  # inside vmap(randomness="error")
        for key, v in kwargs.items():
            if type(v) is np.ndarray and key in spec.inputs:  # torch's refusal, naming `name`
                raise TypeError(messages.must_be_tensor(name, key, v))
        inputs, attrs = spec.bind((t, *args), kwargs)
        for i, (iname, v) in enumerate(zip(spec.inputs, inputs)):
            self._value(v, graph_pb2.Value(), f"{name}(): argument '{iname}'", i)
        generator = attrs.pop("generator", None)
        gen_handle = (0 if generator is None else
                      client_generator.generator_handle(self, generator, name))
        with self._recorder.lock:
            m = self._record(_update_inplace_info(t, self._live), [t]).apply_inplace
            m.op = name
            m.target = t._handle
            for iname, v in zip(spec.inputs[1:], inputs[1:]):
                self._value(v, m.inputs.add(), f"{name}(): argument '{iname}'")
            for k, v in attrs.items():
                codec.encode_attr(v, m.attrs[k])
            m.generator = gen_handle
            if not grad_mode._state.enabled:
                m.no_grad = True
            self._wrote(t)
        self._after_record()
        return t

    def _wrote(self, t: Tensor) -> None:
        """An in-place write to `t` was recorded: its info and every cached value are stale, and
        so may be the infos of tensors sharing its data (see `info`)."""
        t._info = t._meta = t._node = None
        self._epoch += 1
        self._inplace_pending = True
        self._write_batch = self._recorder.round_trips + 1  # the next batch taken

    def getitem(self, t: Tensor, index: Any) -> Tensor:
        """Record `t[index]` (see client/indexing.py); the result is a new tensor."""
        from .indexing import encode_index

        self._value(t, graph_pb2.Value(), "x[...]")
        key = encode_index(index, self._value)  # before recording: a bound may flush
        out = self._new_tensor()
        self._index_meta(t, index, out)
        check = self._check_meta if self.verify_meta else None
        with self._recorder.lock:
            m = self._record(_bind_outputs([out], check), [out]).index
            m.tensor = t._handle
            m.index.CopyFrom(key)
            m.no_grad = not grad_mode._state.enabled
            m.result = out._handle
        self._after_record()
        return out

    def _index_meta(self, t: Tensor, index: Any, out: Tensor) -> None:
        """`out = t[index]`'s Meta, known here for a basic index (ints, slices, None, `...`:
        a view, `surface.indexing.basic_index_result`) of a tensor whose Meta is known; its
        grad_fn name stays the server's to tell."""
        m = t._meta
        if (not self._infer or m is None or t._error is not None or self._inplace_pending
                or (m.requires_grad and not grad_mode._state.enabled)):
            return  # (a view under no_grad of a tensor that requires grad: the engine decides)
        # (any other item, a list read as a tuple by torch included, gives None: the server's)
        result = basic_index_result(m.shape, bool(m.contiguous),
                                    index if type(index) is tuple else (index,))
        if result is None:
            return
        shape, contiguous = result
        out._meta = m._replace(shape=shape, contiguous=contiguous or None)
        if self.verify_meta:
            self._verify_ops[out._handle] = ("index", out._meta, None)

    def setitem(self, t: Tensor, index: Any, value: Any) -> None:
        """Record `t[index] = value`, in place."""
        from .indexing import check_assignable, encode_index

        self._value(t, graph_pb2.Value(), "x[...] = value")
        check_assignable(value, t)
        key = encode_index(index, self._value)
        encoded = graph_pb2.Value()
        self._value(value, encoded, "x[...] = value")
        with self._recorder.lock:
            # binds nothing: a failed assignment leaves `t` unchanged and usable, as in torch
            m = self._record(_update_inplace_info(t, self._live)).index_put
            m.target = t._handle
            m.index.CopyFrom(key)
            m.value.CopyFrom(encoded)
            m.no_grad = not grad_mode._state.enabled
            self._wrote(t)
        self._after_record()

    def set_data(self, t: Tensor, value: Tensor) -> None:
        """`t.data = value` of another shape or dtype (SetData), sent at once: t keeps its
        autograd state and takes value's data."""
        self._value(t, graph_pb2.Value(), "x.data = y")
        self._value(value, graph_pb2.Value(), "x.data = y")
        with self._recorder.lock:
            m = self._record(_update_inplace_info(t, self._live)).set_data
            m.handle = t._handle
            m.value = value._handle
            self._wrote(t)
            self._recorder.flush()

    # --- creation -------------------------------------------------------------------------------

    def tensor(self, data: Any, dtype: Any = None, requires_grad: bool = False,
               device: Any = None, pin_memory: bool = False) -> Tensor:
        """A new leaf tensor from data (torch.tensor): a float makes the default dtype
        (float32 unless set_default_dtype), an int int64; `device` as a CPU-only torch."""
        devices.check_device(device, "tensor")
        if isinstance(data, Tensor):
            data = data.detach().numpy()
        elif isinstance(data, (list, tuple)):
            data = creation.nested_values(data, Tensor, lambda t: t.detach().numpy())
        arr = codec.array_from_data(data, None if dtype is None else codec.as_dtype(dtype),
                                    self._default_dtype)
        t = self._new_tensor()
        with self._recorder.lock:
            m = self._record(_bind_outputs([t]), [t]).create_tensor
            m.handle = t._handle
            codec.encode_array(arr, m.value)
            m.requires_grad = bool(requires_grad)
            if requires_grad and len(self._fresh_leaves) < PREFETCH_GRADS:
                self._fresh_leaves.append(weakref.ref(t))
        t._value, t._epoch = arr, self._epoch
        if arr.ndim == 1:
            self._made_from_data.add(t._handle)
        name = codec.dtype_of_numpy(arr.dtype).name  # numpy's name (its `name` is slow)
        if self._infer and name in surface_meta.DTYPE_NAMES and (
                not requires_grad or name in _FLOATING):
            t._meta, t._node = surface_meta.Meta(arr.shape, name, bool(requires_grad), True), ""
        self._after_record()
        return t

    def as_tensor(self, data: Any, dtype: Any = None, device: Any = None) -> Tensor:
        """torch.as_tensor: `data` itself when it is a tensor (converted if dtype differs)."""
        devices.check_device(device, "as_tensor")
        if isinstance(data, Tensor):
            return data if dtype is None else data.to(codec.as_dtype(dtype))
        return self.tensor(data, dtype=dtype)

    def from_numpy(self, arr: np.ndarray) -> Tensor:
        """torch.from_numpy (a copy on the server: torch shares the array's memory)."""
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"expected np.ndarray (got {type(arr).__name__})")
        return self.tensor(arr)

    # --- reading (each may flush) ---------------------------------------------------------------

    def meta(self, t: Tensor) -> surface_meta.Meta:
        """`t`'s shape, dtype name and requires_grad: known here for a tensor the client
        created or an op result it inferred (`_describe`), otherwise the server's description
        (see `info`: a flush or a fetch)."""
        m = t._meta
        if m is None or t._error is not None or self._writes_pending():
            self._settle_writes()
            m = t._meta
            if m is None or t._error is not None:
                self.info(t)
                m = _meta_from_info(t)
        assert m is not None
        return m

    def grad_fn_name(self, t: Tensor) -> str:
        """The name of `t`'s grad_fn ("" for none: a leaf), known here like `meta`'s answer
        or read from the server's description."""
        node = t._node
        if node is None or t._error is not None or self._writes_pending():
            self._settle_writes()
            node = t._node
            if node is None or t._error is not None:
                node = self.info(t).grad_fn
        return node

    def _writes_pending(self) -> bool:
        """Whether an in-place write was recorded whose batch has not come back yet (until it
        has, the metadata of what shares its target's data may be stale)."""
        if self._inplace_pending and self.pipelined:
            self._recorder.poll()  # a pipelined batch's reply may have come meanwhile
        if self._inplace_pending and self._recorder.done >= self._write_batch:
            self._inplace_pending = False
        return self._inplace_pending

    def _settle_writes(self) -> None:
        """Send a pending in-place write: it may change the metadata of the tensors sharing
        its target's data (their new descriptions come back with it)."""
        if self._writes_pending():
            self._inplace_pending = False
            self._recorder.flush_if_pending()

    def info(self, t: Tensor) -> spb.TensorInfo:
        """`t`'s metadata as the server describes it, flushing (or fetching it) when not
        known.

        After an in-place write is recorded, any tensor's info may be stale (a write through a
        view changes its base's history), so the pending batch is sent first. When the server
        leaves the results' descriptions out (omit_info), the pending batch goes with a Fetch
        of `t`'s: one round trip, not a flush and then the Fetch."""
        self._settle_writes()
        if t._info is None:
            if t._error is not None:
                raise copy_error(t._error)
            if not (self._infer and not self.verify_meta):
                self._recorder.flush_if_pending()
            if t._info is None:
                self._fetch(t, value=False)
        assert t._info is not None
        return t._info

    def value(self, t: Tensor) -> np.ndarray:
        """`t`'s value as a (cached, read-only by convention) array."""
        if t._value is None or t._epoch != self._epoch:
            self._fetch(t, value=True)
        assert t._value is not None or t._omitted is not None
        if t._value is None:
            raise omitted_error(t._omitted, self.info(t).shape, "value")
        return t._value

    def values(self, tensors: Sequence[Tensor]) -> list[np.ndarray]:
        """The values of `tensors`, those not held here fetched together in one round trip.

        Args:
            tensors: session tensors (each read as `value(t)` reads it).

        Returns:
            Their values as (cached, read-only by convention) arrays, in order.
        """
        missing = [t for t in tensors if t._error is None
                   and (t._value is None or t._epoch != self._epoch)]
        if len(missing) > 1:
            with self._recorder.lock:
                epoch = self._epoch
                for t in missing:
                    m = self._record(_fetched(t, epoch)).fetch
                    m.handle = t._handle
                    m.value = True
                self._recorder.flush()
        return [self.value(t) for t in tensors]  # errors, and any left out, one by one

    def set_printoptions(self, precision: int | None = None, threshold: float | None = None,
                         edgeitems: int | None = None, linewidth: int | None = None,
                         profile: str | None = None, sci_mode: bool | None = None) -> None:
        """torch.set_printoptions for this session's tensors (torch's arguments and rules).

        Args:
            precision: digits after the decimal point (default 4).
            threshold: element count above which a tensor is summarized (default 1000).
            edgeitems: items kept at each end of a summarized dimension (default 3).
            linewidth: characters per line (default 80).
            profile: "default", "short" or "full", applied first.
            sci_mode: True or False forces scientific notation; None chooses automatically.
        """
        options = self._print_options or formatting.PrintOptions()
        formatting.set_printoptions(precision, threshold, edgeitems, linewidth, profile,
                                    sci_mode, options=options)
        self._print_options = None if options == formatting.PrintOptions() else options

    def repr(self, t: Tensor) -> str:
        """torch's printed form of `t`: the server's, or with print options of this session's
        own, formatted here from the fetched values."""
        if self._print_options is not None:
            return self._format(t)
        if t._repr is None or t._epoch != self._epoch:
            self._fetch(t, value=False, repr=True)
        assert t._repr is not None or t._omitted is not None
        if t._repr is None:
            raise omitted_error(t._omitted, self.info(t).shape, "printed form")
        return t._repr

    def _format(self, t: Tensor) -> str:
        values = self.value(t)
        node = self.grad_fn_name(t)
        if node:
            suffixes = [f"grad_fn=<{surface_compat.short_node_name(node)}>"]
        else:
            suffixes = ["requires_grad=True"] if self.meta(t).requires_grad else []
        return formatting.format_tensor(values, str(t.dtype.name), suffixes,
                                        self._print_options)

    def _fetch(self, t: Tensor, *, value: bool, repr: bool = False) -> None:
        if t._error is not None:
            raise copy_error(t._error)
        with self._recorder.lock:
            epoch = self._epoch
            n = _known_numel(t)
            small = n is not None and n <= PREFETCH_ELEMENTS
            m = self._record(_fetched(t, epoch)).fetch
            m.handle = t._handle
            m.value = value or (repr and small)
            m.repr = repr
            others = len(self._recorder) > 1
            self._recorder.flush()
            if t._omitted is not None and others and t._omitted.bytes < (
                    t._omitted.max_message_bytes):
                # left out to make room for the rest of the batch: it may fit alone
                m = self._record(_fetched(t, epoch)).fetch
                m.handle = t._handle
                m.value = value or (repr and small)
                m.repr = repr
                self._recorder.flush()

    # --- autograd -------------------------------------------------------------------------------

    def get_grad(self, t: Tensor) -> Tensor | None:
        """`t.grad`: binds the gradient to a handle; small ones come back with their value."""
        if t._handle not in self._grad_readers and len(self._grad_readers) < PREFETCH_GRADS:
            # the program reads this .grad: read it ahead after each backward from now on
            self._grad_readers[t._handle] = weakref.ref(t)
        cache = t._grad_cache
        if cache is not None and cache[0] == self._epoch:
            return cache[1]
        if t._error is not None:
            raise copy_error(t._error)
        with self._recorder.lock:
            finish = self._record_grad_read(t)
            self._recorder.flush()
        result = finish()
        if result is None and _known_node(t) and not t._retains_grad:
            warnings.warn(messages.NON_LEAF_GRAD_WARNING, UserWarning, stacklevel=3)
        return result

    def _record_grad_read(self, t: Tensor) -> Callable[[], Tensor | None]:
        """Record reading `t.grad` (GetGrad, then a Fetch of the gradient's value when small);
        the function returned applies the reply once the batch was sent, caches the result
        for this epoch and returns it."""
        g = self._new_tensor()
        box: list[Any] = []
        epoch = self._epoch
        m = self._record(lambda r: box.append(r.handles), [g]).get_grad
        m.handle = t._handle
        m.result = g._handle
        # a gradient has its tensor's shape: known from the info, or from a value held here
        n = _known_numel(t)
        small = (n if n is not None else t._value.size if t._value is not None
                 else PREFETCH_ELEMENTS + 1) <= PREFETCH_ELEMENTS
        f = self._record(lambda r: box.append(r.fetch)).fetch
        f.handle = t._handle
        f.grad = small
        if self._grad_repr_only:
            f.grad_repr = small  # the tensor's own printed form is not used here
        else:
            f.repr = small

        def finish() -> Tensor | None:
            handles, fetched = box
            t._info = fetched.info
            result: Tensor | None = None
            if handles.tensors:
                result = g
                g._info = handles.tensors[0]
                if fetched.grad.HasField("tensor"):
                    g._value = codec.decode_array(fetched.grad.tensor)
                    g._repr = fetched.grad_repr
                    g._epoch = epoch
            t._grad_cache = (epoch, result)
            return result
        return finish

    def set_grad(self, t: Tensor, value: Tensor | None) -> None:
        """`t.grad = value` (a tensor of this session, or None)."""
        with self._recorder.lock:
            m = self._record().set_grad
            m.handle = t._handle
            if value is None:
                m.none.SetInParent()
            else:
                self._value(value, graph_pb2.Value(), "assigned grad")
                m.grad_handle = value._handle
            self._epoch += 1
        self._after_record()

    def backward(self, t: Tensor, gradient: Any = None, retain_graph: bool | None = None,
                 create_graph: bool = False, inputs: Any = None,
                 more: Sequence[tuple[Tensor, Any]] = ()) -> None:
        """`t.backward(...)`: sent at once, so errors surface here as in torch. In the
        pipelined mode it is only recorded (unless a custom Function or hook may need the
        client during the pass): its errors surface at the next read. `more`: further
        (tensor, gradient) roots of the same pass (torch.autograd.backward of several)."""
        if self.pipelined and not (self._custom or self._hooks):
            with self._recorder.lock:
                self._record_backward(None, t, gradient, retain_graph, create_graph, inputs,
                                      more)
            self._after_record()
            return
        box: list[spb.InstructionResult] = []
        with self._recorder.lock:
            self._record_backward(box.append, t, gradient, retain_graph, create_graph, inputs,
                                  more)
            reads = self._prefetch_grads()
            self._recorder.flush()
        if box:  # (none from a backward on the tape: no custom Function or hook to run)
            function.finish_pass(self, box[0])  # custom Functions' backward, run here
        for finish in reads:
            finish()

    def _prefetch_grads(self) -> list[Callable[[], Tensor | None]]:
        """Record, after a backward, reading the gradients the program is likely to read next:
        those of the leaves created with requires_grad in this batch and of the tensors whose
        `.grad` it read before (at most `PREFETCH_GRADS`), when known to be small or new. Only
        when no custom Function or hook can suspend the pass (the suspending instruction must
        end its batch)."""
        if not self.read_ahead or self._custom or self._hooks:
            return []
        reads = []
        fresh, self._fresh_leaves = self._fresh_leaves, []
        candidates = [*fresh, *self._grad_readers.values()]
        seen: set[int] = set()
        for ref in candidates:
            t = ref()
            if t is None or id(t) in seen or t._error is not None:
                continue
            seen.add(id(t))
            n = _known_numel(t)
            if n is not None and (n > PREFETCH_ELEMENTS or _known_node(t)):
                continue
            reads.append(self._record_grad_read(t))
            if len(reads) >= PREFETCH_GRADS:
                break
        return reads

    def _record_backward(self, sink: Any, t: Tensor, gradient: Any, retain_graph: bool | None,
                         create_graph: bool, inputs: Any,
                         more: Sequence[tuple[Tensor, Any]] = ()) -> None:
        """Record `t.backward(...)` (under the recorder's lock); `sink` gets its result, unless
        it goes on the tape (one tensor, no gradient or inputs, and no custom Function or hook
        that would suspend the pass: its result says nothing)."""
        self._value(t, graph_pb2.Value(), "backward()")
        check_nan = anomaly.checking_nan()
        if (gradient is None and inputs is None and not more and not check_nan
                and not (self._custom or self._hooks)
                and t._handle < MAX_TAPE_HANDLE):
            words = [t._handle << 3]
            if retain_graph is not None or create_graph:
                words.append(NONE if retain_graph is None else BOOL | bool(retain_graph) << 3)
            if create_graph:
                words.append(BOOL | 1 << 3)
            if self.record_tape_instruction("backward", words):
                self._epoch += 1
                return
        m = self._record(sink).backward
        m.tensor = t._handle
        if gradient is not None:
            self._value(gradient, m.gradient, "backward(): gradient")
        if retain_graph is not None:
            m.retain_graph = bool(retain_graph)
        m.create_graph = bool(create_graph)
        m.check_nan = check_nan
        if inputs is not None:
            for x in [inputs] if isinstance(inputs, Tensor) else inputs:
                self._value(x, graph_pb2.Value(), "backward(): inputs")
                m.inputs.append(x._handle)
        for root, _ in more:
            self._value(root, graph_pb2.Value(), "backward()")
            m.more_tensors.append(root._handle)
        if any(g is not None for _, g in more):
            for _, g in more:
                self._value(g, m.more_gradients.add(), "backward(): gradient")
        self._epoch += 1

    def _autograd_backward(self, tensors: Any, grad_tensors: Any = None,
                           retain_graph: bool | None = None, create_graph: bool = False,
                           grad_variables: Any = None, inputs: Any = None) -> None:
        grad_tensors = surface_compat.backward_arguments(grad_tensors, grad_variables,
                                                         RuntimeError, stacklevel=2)
        tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
        if grad_tensors is None:
            grad_tensors = [None] * len(tensors)
        grads = [grad_tensors] if isinstance(grad_tensors, Tensor) else list(grad_tensors)
        if len(grads) < len(tensors):  # torch zips the two: gradients beyond the tensors go
            raise RuntimeError(f"got {len(tensors)} tensors and {len(grads)} gradients")
        if not tensors:
            return
        roots = list(zip(tensors, grads))
        if self._backward_roots:  # one pass, as torch's: shared nodes sum gradients once
            self.backward(*roots[0], retain_graph, create_graph, inputs, more=roots[1:])
            return
        for k, (t, g) in enumerate(roots):  # an older server: one pass per tensor
            keep = retain_graph if k == len(tensors) - 1 else True
            self.backward(t, g, keep, create_graph, inputs)

    def grad_of(self, outputs: Any, inputs: Any, grad_outputs: Any = None,
                retain_graph: bool | None = None, create_graph: bool = False,
                only_inputs: bool = True, allow_unused: bool | None = None,
                is_grads_batched: bool = False, materialize_grads: bool = False
                ) -> tuple[Tensor | None, ...]:
        """torch.autograd.grad, sent at once (`only_inputs` deprecated and ignored, as torch)."""
        surface_compat.grad_arguments(only_inputs, is_grads_batched, stacklevel=2)
        outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
        inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
        results = [self._new_tensor() for _ in inputs]
        box: list[Any] = []
        with self._recorder.lock:
            m = self._record(box.append, results).grad
            for o in outputs:
                self._value(o, graph_pb2.Value(), "grad(): outputs")
                m.outputs.append(o._handle)
            for x in inputs:
                self._value(x, graph_pb2.Value(), "grad(): inputs")
                m.inputs.append(x._handle)
            if grad_outputs is not None:
                gos = [grad_outputs] if isinstance(grad_outputs, Tensor) else list(grad_outputs)
                for go in gos:
                    self._value(go, m.grad_outputs.add(), "grad(): grad_outputs")
            if retain_graph is not None:
                m.retain_graph = bool(retain_graph)
            m.create_graph = bool(create_graph)
            m.allow_unused = bool(allow_unused or materialize_grads)
            m.check_nan = anomaly.checking_nan()
            m.results.extend(r._handle for r in results)
            self._epoch += 1
            self._recorder.flush()
        final = function.finish_pass(self, box[0])  # custom Functions' backward, run here
        infos = {info.handle: info for info in final.handles.tensors}
        out: list[Tensor | None] = []
        for x, r in zip(inputs, results):
            info = infos.get(r._handle)
            if info is None:
                out.append(self.call("zero", (x,), {}) if materialize_grads else None)
            else:
                r._info = info
                out.append(r)
        return tuple(out)

    def requires_grad_(self, t: Tensor, flag: bool = True) -> Tensor:
        with self._recorder.lock:
            self._value(t, graph_pb2.Value(), "requires_grad_()")
            m = self._record(_update_info(t), [t]).set_requires_grad
            m.handle = t._handle
            m.requires_grad = bool(flag)
            t._info = None
            meta, node = t._meta, t._node
            t._meta = t._node = None
            if meta is not None and not self._writes_pending() and node is not None:
                if node == "" and (not flag or meta.dtype in _FLOATING):  # a leaf
                    t._meta, t._node = meta._replace(requires_grad=bool(flag)), ""
                elif node and flag:  # a result that requires grad: unchanged
                    t._meta, t._node = meta, node
            self._epoch += 1
        self._after_record()
        return t

    def detach(self, t: Tensor, own_version: bool = False) -> Tensor:
        """`t.detach()`, or `t.data` with `own_version` (a version counter of its own)."""
        d = self._new_tensor()
        with self._recorder.lock:
            self._value(t, graph_pb2.Value(), "detach()")
            m = self._record(_bind_outputs([d]), [d]).detach
            m.handle = t._handle
            m.result = d._handle
            m.own_version = own_version
            if t._meta is not None and not self._writes_pending():
                d._meta, d._node = t._meta._replace(requires_grad=False), ""
        self._after_record()
        return d

    def detach_(self, t: Tensor) -> Tensor:
        with self._recorder.lock:
            self._value(t, graph_pb2.Value(), "detach_()")
            self._record(_update_info(t), [t]).detach_inplace.handle = t._handle
            t._info = None
            meta = t._meta
            t._meta, t._node = (meta._replace(requires_grad=False), "") if (
                meta is not None and not self._writes_pending()) else (None, None)
            self._epoch += 1
        self._after_record()
        return t

    def retain_grad(self, t: Tensor) -> None:
        with self._recorder.lock:
            self._value(t, graph_pb2.Value(), "retain_grad()")
            self._record().retain_grad.handle = t._handle
        if _known_node(t) != "":  # not known to be a leaf
            t._retains_grad = True
        self._after_record()

    def graph(self, t: Tensor) -> spb.AutogradGraph:
        """The autograd graph behind `t` (for `to_dot` and `grad_fn.next_functions`)."""
        box: list[Any] = []
        with self._recorder.lock:
            self._value(t, graph_pb2.Value(), "graph")
            m = self._record(lambda r: box.append(r.fetch)).fetch
            m.handle = t._handle
            m.graph = True
            self._recorder.flush()
        t._info = box[0].info
        if box[0].HasField("omitted"):
            raise omitted_error(box[0].omitted, t._info.shape, "autograd graph")
        return box[0].graph


def _dropper(live: dict[int, Any], made_from_data: set[int], grad_readers: dict[int, Any],
             verify_ops: dict[int, Any], released: Any) -> Callable[[int], None]:
    """A session's `dropped(handle)`: the handle forgotten and queued for release (a closure
    over the session's tables: it runs for every tensor the program drops)."""
    pop = live.pop
    queue = released.append  # `released.put` without its call

    def dropped(handle: int) -> None:
        pop(handle, None)
        if made_from_data:
            made_from_data.discard(handle)
        if grad_readers:
            grad_readers.pop(handle, None)
        if verify_ops:
            verify_ops.pop(handle, None)
        if not released.closed:
            queue(handle)
    return dropped


# --- result sinks ---------------------------------------------------------------------------------

Check = Callable[[Tensor, spb.TensorInfo], None]


def _bind_outputs(outs: list[Tensor], check: Check | None = None
                  ) -> Callable[[spb.InstructionResult], None]:
    """The sink of an instruction making `outs`: their descriptions, when the server sent
    them (`check`: verify_meta's comparison with the inferred ones)."""
    def sink(r: spb.InstructionResult) -> None:
        for t, info in zip(outs, r.handles.tensors):
            t._info = info
            if check is not None:
                check(t, info)
    return sink


def _update_info(t: Tensor, check: Check | None = None
                 ) -> Callable[[spb.InstructionResult], None]:
    def sink(r: spb.InstructionResult) -> None:
        if r.handles.tensors:
            t._info = r.handles.tensors[0]
            if check is not None:
                check(t, t._info)
    return sink


_ref = weakref.ref
_new = object.__new__
# the hot paths test an input's exact type: a Tensor, or a module's Parameter (client/nn.py)
_Parameter = nn.Parameter


def _append_op(tape: Any, name: str, flags: int, inputs: Sequence[Any], handle: int) -> None:
    """Append a one-output op's header, inputs and output `handle` to `tape`: inputs a caller
    checked to be tensors of this session (not failed), floats, int64 ints, bools or None
    (the hot paths' part of `Session._record_tape`)."""
    names = tape.names
    index = names.get(name)
    if index is None:
        index = names[name] = len(names)
    code = tape.code
    tape.heads.append(len(code))
    append = code.append
    append(index | flags << 32 | len(inputs) << 40 | 1 << 52)
    for v in inputs:
        kind = type(v)
        if kind is Tensor or kind is _Parameter:
            append(v._handle << 3)  # HANDLE: kind 0
        elif kind is float:
            floats = tape.floats
            append(len(floats) << 3 | FLOAT)
            floats.append(v)
        elif kind is int:
            ints = tape.ints
            append(len(ints) << 3 | INT)
            ints.append(v)
        elif v is None:
            append(NONE)
        else:
            append(v << 3 | BOOL)
    append(handle)


def _encode_attr(op: str, k: str, v: Any, m: spb.ApplyOp) -> None:
    """Attribute `k` of op `op` into ApplyOp `m`.

    Raises:
        TypeError: a value no attribute kind accepts (naming the op and argument).
    """
    try:
        codec.encode_attr(v, m.attrs[k])
    except TypeError as exc:
        raise TypeError(f"{op}(): argument '{k}': {exc}") from None


# `Session._apply`'s calls of one-output ops with attributes recorded before, by
# `Session._attr_op_key`: (the result's Meta, grad_fn name, `_apply_template`'s ApplyOp, the
# attributes for a tape: `batch.tape_attrs`).
_ATTR_OPS: dict[tuple[Any, ...], tuple[Any, Any, spb.ApplyOp, Any]] = {}
_ATTR_OPS_MAX = 4096

# ApplyOps holding an op's name, omit_info, no_grad and attributes, by those (and the
# attributes' types): merged into each instruction that has them, cheaper than encoding them.
_TEMPLATES: dict[tuple[Any, ...], spb.ApplyOp] = {}
_TEMPLATES_MAX = 1024


def _apply_template(op: str, omit: bool, no_grad: bool, attrs: dict[str, Any]) -> spb.ApplyOp:
    """The ApplyOp of `op` with these flags and attributes, nothing else set (kept in
    `_TEMPLATES` unless a value is unhashable or a float zero, whose sign a key would lose).

    Raises:
        TypeError: an attribute value no attribute kind accepts.
    """
    parts: list[Any] = [op, omit, no_grad]
    for k, v in attrs.items():
        if v.__class__ is float and v == 0.0:
            parts = []  # 0.0 == -0.0: not a key
            break
        parts += (k, v.__class__, v)
    key = tuple(parts) if parts else None
    try:
        m = _TEMPLATES.get(key) if key is not None else None  # type: ignore[arg-type]
    except TypeError:  # an unhashable value (a server whose attribute kinds are new)
        key = m = None
    if m is None:
        m = spb.ApplyOp(op=op, omit_info=omit, no_grad=no_grad)
        for k, v in attrs.items():
            _encode_attr(op, k, v, m)
        if key is not None:
            if len(_TEMPLATES) >= _TEMPLATES_MAX:
                _TEMPLATES.clear()
            _TEMPLATES[key] = m
    return m

# Session._describe's answers, (result Metas or None, grad_fn name or None, `_plain_entry`),
# by (op, input Metas, float inputs as their type, grad mode, bound attributes with their
# types): a program repeats a few shapes and arguments, and a dict lookup is cheaper than a
# rule.
_INFERRED: dict[tuple[Any, ...], Any] = {}
_INFERRED_MAX = 4096


def _plain_entry(metas: list[surface_meta.Meta] | None, node: str | None, grad: bool
                 ) -> tuple[surface_meta.Meta, str | None, int] | None:
    """What `_apply_plain`'s hot path records for a call `_describe` answered with `metas`
    and `node` in grad mode `grad`: (the result's Meta, its grad_fn name, the tape op's
    flags); None unless the answer is one result."""
    if metas is None or len(metas) != 1:
        return None
    m = metas[0]
    node = node if m.requires_grad and grad else ""  # as _describe sets it
    return m, node, (0 if grad else NO_GRAD) | (DESCRIBE if node is None else 0)
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1  # a Python int a wire int_scalar holds
_MISSING = object()

# Dtype names of floating tensors (the ones that may require grad).
_FLOATING = frozenset({"float32", "float64"})


def _meta_from_info(t: Tensor) -> surface_meta.Meta | None:
    """`t`'s metadata from the server's description, kept as `t._meta` (None: not
    described)."""
    info = t._info
    if info is None:
        return None
    m = t._meta = surface_meta.Meta(tuple(info.shape), codec.BY_WIRE[info.dtype].name,
                                    info.requires_grad, not info.non_contiguous or None)
    if t._node is None:
        t._node = info.grad_fn
    return m


def _update_inplace_info(t: Tensor, live: dict[int, weakref.ref[Tensor]]
                         ) -> Callable[[spb.InstructionResult], None]:
    """The target's new info, then that of the tensors whose history the write changed (the
    base of a view written in place: its node is now CopySlices)."""
    def sink(r: spb.InstructionResult) -> None:
        infos = r.handles.tensors
        if infos:
            t._info = infos[0]
        for info in infos[1:]:
            ref = live.get(info.handle)
            other = ref() if ref is not None else None
            if other is not None:  # its history changed: the description replaces what was known
                other._info = info
                other._meta = other._node = None
    return sink


def _fetched(t: Tensor, epoch: int) -> Callable[[spb.InstructionResult], None]:
    def sink(r: spb.InstructionResult) -> None:
        f = r.fetch
        t._info = f.info
        t._omitted = f.omitted if f.HasField("omitted") else None
        if f.HasField("value"):
            t._value = codec.decode_array(f.value)
        elif t._epoch != epoch:
            t._value = None
        t._repr = f.repr if f.repr else (t._repr if t._epoch == epoch else None)
        t._epoch = epoch
    return sink


def _known_numel(t: Tensor) -> int | None:
    """`t`'s element count when known without the server (None otherwise)."""
    if t._meta is not None:
        n = 1
        for d in t._meta.shape:
            n *= d
        return n
    return _numel(t._info) if t._info is not None else None


def _known_node(t: Tensor) -> str | None:
    """`t`'s grad_fn name ("" for none) when known without the server (None otherwise)."""
    if t._info is not None:
        return t._info.grad_fn
    return t._node


def _numel(info: spb.TensorInfo) -> int:
    n = 1
    for d in info.shape:
        n *= d
    return n
