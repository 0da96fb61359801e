"""torch.optim for sessions: the subclassable base `session.optim.Optimizer` (a user-defined
optimizer's `step()` records ordinary ops), the algorithms written once in the surface as tensor
ops (LBFGS, Adadelta, NAdam, RAdam, Adamax, Rprop, ASGD, Adafactor: recorded like any others),
and server-side optimizers with torch.optim's signatures: `session.optim.SGD(params, lr=...)`,
`session.optim.Adam(params, ...)`, `AdamW`, `RMSprop` and `Adagrad`.

Each session gets its own subclasses (`bind`), so `SGD(params, lr)` needs no session argument,
`isinstance(opt, session.optim.SGD)` works, and a wrong keyword fails as in torch
("SGD.__init__() got an unexpected keyword argument 'x'"). Creating, `step()` and `zero_grad()`
are recorded like ops; ranges (`lr >= 0`, betas in [0, 1), ...) are checked by the server's
engine with torch's messages. `param_groups` are torch's plain dicts: a hyperparameter changed
there (by the program or an lr scheduler) goes to the server with the next `step()`, in the same
instruction, so a step costs no extra round trip. `foreach` is accepted and has no effect (the
server runs torch's single-tensor algorithm); `differentiable`, `fused` and `capturable` are
refused when set, as the server has no such variants.
"""

from __future__ import annotations

import copy
import types
import weakref
from collections import defaultdict
from typing import Any

import numpy as np

from gradserve.surface import adadelta as _adadelta
from gradserve.surface import adafactor as _adafactor
from gradserve.surface import adamax as _adamax
from gradserve.surface import asgd as _asgd
from gradserve.surface import grad_mode, lr_scheduler
from gradserve.surface import lbfgs as _lbfgs
from gradserve.surface import nadam as _nadam
from gradserve.surface import optim as _surface
from gradserve.surface import optim_tensors as _tensors
from gradserve.surface import radam as _radam
from gradserve.surface import rprop as _rprop
from gradserve.surface import sparse_adam as _sparse_adam
from gradserve.surface.compat import Namespace
from gradserve.v1 import STEP_HYPERPARAMETERS_FEATURE, graph_pb2
from gradserve.v1 import session_pb2 as spb

from . import codec
from .batch import BOOL, MAX_TAPE_HANDLE
from .tensor import Tensor


class Optimizer(_surface.Optimizer):
    """torch.optim.Optimizer over session tensors: subclass it and write `step()` with ordinary
    tensor ops (recorded like any others); the base of the server-side optimizers too."""

    _tensor_type = Tensor


class LBFGS(Optimizer, _lbfgs.LBFGS):
    """torch.optim.LBFGS over session tensors (gradserve.surface.lbfgs.LBFGS): its ops are
    recorded like any others; the values torch reads at one point of a step (the loss and the
    stopping tests) are read together, in one round trip."""

    def _cat(self, tensors: Any) -> Tensor:
        tensors = list(tensors)
        return tensors[0]._owner.cat(tensors, 0)  # type: ignore[no-any-return]

    def _read(self, *values: Any) -> list[Any]:
        return _read_values(values)


class _SessionTensors(_tensors.TensorOptimizer):
    """A session's side of the algorithms written as tensor ops (surface.optim_tensors): their
    ops are recorded like any others; the numbers torch reads are read together."""

    def _lib(self, p: Any) -> Any:
        return p._owner

    def _read(self, *values: Any) -> list[Any]:
        return _read_values(values)


class Adadelta(Optimizer, _SessionTensors, _adadelta.Adadelta):
    """torch.optim.Adadelta over session tensors (gradserve.surface.adadelta.Adadelta): torch's
    single-tensor algorithm, its ops recorded like any others (no round trip per step)."""


class ASGD(Optimizer, _SessionTensors, _asgd.ASGD):
    """torch.optim.ASGD over session tensors (gradserve.surface.asgd.ASGD): torch's
    single-tensor algorithm, op for op."""


class Adafactor(Optimizer, _SessionTensors, _adafactor.Adafactor):
    """torch.optim.Adafactor over session tensors (gradserve.surface.adafactor.Adafactor):
    torch's single-tensor algorithm, op for op."""


class Adamax(Optimizer, _SessionTensors, _adamax.Adamax):
    """torch.optim.Adamax over session tensors (gradserve.surface.adamax.Adamax): torch's
    single-tensor algorithm, op for op."""


class NAdam(Optimizer, _SessionTensors, _nadam.NAdam):
    """torch.optim.NAdam over session tensors (gradserve.surface.nadam.NAdam): torch's
    single-tensor algorithm; a group's steps and mu_products are read in one round trip each."""


class RAdam(Optimizer, _SessionTensors, _radam.RAdam):
    """torch.optim.RAdam over session tensors (gradserve.surface.radam.RAdam): torch's
    single-tensor algorithm, op for op."""


class Rprop(Optimizer, _SessionTensors, _rprop.Rprop):
    """torch.optim.Rprop over session tensors (gradserve.surface.rprop.Rprop): torch's
    single-tensor algorithm, op for op."""


class SparseAdam(Optimizer, _SessionTensors, _sparse_adam.SparseAdam):
    """torch.optim.SparseAdam over session tensors (gradserve.surface.sparse_adam.SparseAdam):
    every gradient is dense, which its step refuses with torch's error."""


def _read_values(values: Any) -> list[Any]:
    """Each session tensor in `values` as a Python number, all read in one round trip; anything
    else as it is."""
    tensors = [v for v in values if isinstance(v, Tensor)]
    if not tensors:
        return list(values)
    arrays = iter(tensors[0]._owner.values(tensors))
    return [_item(next(arrays)) if isinstance(v, Tensor) else v for v in values]


def _item(arr: np.ndarray) -> Any:
    """A one-element value as `Tensor.item()` gives it."""
    if arr.size != 1:
        raise RuntimeError(f"a Tensor with {arr.size} elements cannot be converted to Scalar")
    return arr.reshape(()).item()


class ServerOptimizer(Optimizer):
    """A server-side optimizer over session tensors (base of SGD, Adam, AdamW, RMSprop, Adagrad).

    Attributes: `params` (the client tensors of the first parameter group, in order), `handle`
    (the server's optimizer handle), `options` (the algorithm message last sent: `SgdOptions`,
    `AdamOptions`, ...), `param_groups` (torch's list of dicts). The server's optimizer has one
    group: each further parameter group is an optimizer of its own on the server, which
    `step()` and `zero_grad()` drive too.
    """

    _session: Any  # set by `bind`

    def __init__(self, params: Any, create: spb.CreateOptimizer,
                 defaults: dict[str, Any] | None = None):
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Tensors or dicts, but got {params.type()}")
        items = list(params)
        if not items:
            raise ValueError("optimizer got an empty parameter list")
        groups = items if isinstance(items[0], dict) else [{"params": items}]
        seen: set[int] = set()
        for group in groups:
            if not isinstance(group, dict):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                f"{type(group).__name__}")
            ps = group.get("params")
            group["params"] = [ps] if isinstance(ps, Tensor) else list(ps or ())
            if any(id(p) in seen for p in group["params"]):
                raise ValueError("some parameters appear in more than one parameter group")
            seen.update(id(p) for p in group["params"])
        kind = create.WhichOneof("algorithm")
        self._defaults_message = getattr(create, kind)  # SgdOptions, AdamOptions, ...
        # torch's param-group defaults as the constructor got them (an int stays an int, as in
        # torch's repr), with the keys the server has no use for (foreach, fused, ...)
        self.defaults = defaults or {**_options_dict(self._defaults_message), **_FLAGS[kind]}
        self.param_groups: list[dict[str, Any]] = []
        self._extra: list[ServerOptimizer] = []
        for group in groups:
            self._add_group(group)

    def _add_group(self, group: dict[str, Any]) -> None:
        """Create the server optimizer of a further parameter group (the first is `self`)."""
        kind = self._defaults_message.DESCRIPTOR.name
        options = _group_options(self._defaults_message, group)
        target = type(self).__new__(type(self)) if self.param_groups else self
        target._start(group["params"], spb.CreateOptimizer(**{_KIND[kind]: options}))
        self.param_groups.append(group)
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        if target is not self:
            self._extra.append(target)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """optimizer.add_param_group(group): a further server optimizer, stepped with this one.

        Raises:
            TypeError: not a dict, or a param that is not a tensor (torch's text).
            ValueError: a parameter already in a group (torch's text).
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        ps = param_group.get("params")
        param_group["params"] = [ps] if isinstance(ps, Tensor) else list(ps or ())
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in param_group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        self._add_group(param_group)

    def _start(self, params: list[Any], create: spb.CreateOptimizer) -> None:
        """Create this optimizer on the server over `params` as `create` says."""
        session = self._session
        self.params = params
        self._extra = getattr(self, "_extra", [])
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for p in self.params:
            if not isinstance(p, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                f"{type(p).__name__}")
            session._value(p, graph_pb2.Value(), "optimizer parameter")
        kind = create.WhichOneof("algorithm")
        self.options = getattr(create, kind)  # SgdOptions, AdamOptions, RmspropOptions, ...
        self._sent = _options_dict(self.options)  # the hyperparameters the server has
        self.handle = next(session._handles)
        with session._recorder.lock:
            m = session._record().create_optimizer
            m.CopyFrom(create)
            m.optimizer = self.handle
            del m.params[:]
            m.params.extend(p._handle for p in self.params)
        session._optimizers[self.handle] = self
        self._release = weakref.finalize(self, session._recorder.released.put, self.handle)
        session._after_record()

    def step(self, closure: Any = None) -> Any:
        """optimizer.step(closure=None), recorded (sent with the next batch); returns closure()."""
        loss = None
        if closure is not None:
            with grad_mode.enable_grad():
                loss = closure()
        s = self._session
        if self._extra:
            opts: tuple[ServerOptimizer, ...] = (self, *self._extra)
            # hyperparameters the program changed since the last step (None: unchanged),
            # checked before anything is recorded
            changed = [opt._changed(group) for opt, group in zip(opts, self.param_groups)]
        else:  # the common case, kept short: one group
            opts, changed = (self,), [self._changed(self.param_groups[0])]
        for opt, options in zip(opts, changed):
            if options is None and opt.handle < MAX_TAPE_HANDLE and s.record_tape_instruction(
                    "optimizer_step", [opt.handle << 3]):
                continue
            m = s._record().optimizer_step
            m.optimizer = opt.handle
            if options is not None:
                getattr(m, _KIND[options.DESCRIPTOR.name]).CopyFrom(options)
                opt.options = options
                opt._sent = _options_dict(options)
        s._epoch += 1
        s._after_record()
        return loss

    def _changed(self, group: dict[str, Any]) -> Any:
        """The algorithm message of `group`'s hyperparameters if they differ from those the
        server has, else None.

        Raises:
            ValueError: a new value torch's constructor would refuse (its message).
            NotImplementedError: they changed, and the server would ignore new ones.
        """
        for k, v in self._sent.items():
            if group.get(k, v) != v:
                break
        else:
            return None
        _surface.check_hyperparameters(_KIND[self.options.DESCRIPTOR.name],
                                       {k: group.get(k, v) for k, v in self._sent.items()})
        if STEP_HYPERPARAMETERS_FEATURE not in self._session.client.list_ops().features:
            raise NotImplementedError(
                "changing a param group's hyperparameters needs a gradserve server that "
                f"offers {STEP_HYPERPARAMETERS_FEATURE!r} (0.2.0 or later); this one would "
                "ignore them")
        return _group_options(self.options, group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """optimizer.zero_grad(set_to_none)."""
        s = self._session
        for opt in (self, *self._extra):
            if opt.handle < MAX_TAPE_HANDLE and s.record_tape_instruction(
                    "optimizer_zero_grad", [opt.handle << 3, BOOL | bool(set_to_none) << 3]):
                continue
            m = s._record().optimizer_zero_grad
            m.optimizer = opt.handle
            m.set_to_none = bool(set_to_none)
        s._epoch += 1
        s._after_record()

    def state_message(self) -> spb.OptimizerState:
        """The server's view of this optimizer: hyperparameters and per-parameter state (the
        wire form of torch's `state_dict()`); one round trip."""
        s = self._session
        box: list[spb.OptimizerState] = []
        with s._recorder.lock:
            s._record(lambda r: box.append(r.optimizer_state)).get_optimizer_state.optimizer = (
                self.handle)
            s._recorder.flush()
        return box[0]

    def state_dict(self) -> dict[str, Any]:
        """optimizer.state_dict(): torch's layout, read from the server in one round trip.

        Returns:
            {"state": {index: {"step": tensor, "exp_avg": tensor, ...}}, "param_groups":
            [{hyperparameters..., "params": [index, ...]}]}: parameters numbered across groups
            in order; the state's tensors are new session tensors holding the server's values.
        """
        s = self._session
        opts = (self, *self._extra)
        box: list[spb.OptimizerState] = []
        with s._recorder.lock:
            for opt in opts:
                s._record(lambda r: box.append(r.optimizer_state)).get_optimizer_state.optimizer = (
                    opt.handle)
            s._recorder.flush()
        state: dict[int, dict[str, Any]] = {}
        groups = []
        start = 0
        for group, msg in zip(self.param_groups, box):
            for entry in msg.state:
                kind = entry.WhichOneof("state")
                fields = getattr(entry, kind)
                values: dict[str, Any] = {}
                for f, v in fields.ListFields():
                    values[f.name] = (s.tensor(v) if f.name == "step"
                                      else s.tensor(codec.decode_array(v)))
                state[start + entry.param] = values
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            groups.append(packed)
        return {"state": state, "param_groups": groups}

    @property  # type: ignore[override]
    def state(self) -> defaultdict[Any, dict[str, Any]]:
        """torch's `optimizer.state` ({param: {"step": ..., "exp_avg": ...}}) as the server has
        it now: a snapshot read in one round trip (changing it changes nothing there)."""
        params = [p for g in self.param_groups for p in g["params"]]
        return defaultdict(dict, {params[i]: v for i, v in self.state_dict()["state"].items()})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """optimizer.load_state_dict(state_dict): hyperparameters and state, as torch loads them
        (the server optimizers are created anew with that state, sent with the next batch).

        Args:
            state_dict: as `state_dict()` returns it, here or from torch (tensors, arrays or
                numbers as values).

        Raises:
            ValueError: a different number of groups, or a group of a different size (torch's
                text).
        """
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"])
               for g, s in zip(self.param_groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match "
                             "the size of optimizer's group")
        saved_state = state_dict["state"]
        opts = (self, *self._extra)
        creates = []  # every group's message first: a malformed entry changes nothing
        for opt, saved in zip(opts, saved_groups):
            kind = _KIND[opt.options.DESCRIPTOR.name]
            create = spb.CreateOptimizer(**{kind: _group_options(opt.options, saved)})
            for j, index in enumerate(saved["params"]):
                values = saved_state.get(index)
                if values:
                    entry = getattr(create.state.add(param=j), kind)
                    entry.SetInParent()
                    for name, value in values.items():
                        _set_state_field(entry, name, value)
            creates.append(create)
        new_groups = []
        for opt, group, saved, create in zip(opts, self.param_groups, saved_groups, creates):
            old = opt.handle
            opt._release()  # the old server optimizer goes with the next batch
            self._session._optimizers.pop(old, None)
            opt._start(group["params"], create)
            saved["params"] = group["params"]
            new_groups.append(saved)
        self.param_groups = new_groups



# torch's defaults of the param-group keys the server has no use for, per algorithm
_FLAGS: dict[str, dict[str, Any]] = {
    "sgd": {"foreach": None, "differentiable": False, "fused": None},
    "adam": {"foreach": None, "capturable": False, "differentiable": False, "fused": None},
    "rmsprop": {"capturable": False, "foreach": None, "differentiable": False},
    "adagrad": {"foreach": None, "differentiable": False, "fused": None},
}

# the oneof field of each algorithm message (CreateOptimizer.algorithm, OptimizerStep's)
_KIND = {"SgdOptions": "sgd", "AdamOptions": "adam", "RmspropOptions": "rmsprop",
         "AdagradOptions": "adagrad"}


# a param group's keys -> (options field, how to read it); betas fills two fields
_GROUP_FIELDS = {"lr": float, "momentum": float, "dampening": float, "weight_decay": float,
                 "nesterov": bool, "maximize": bool, "eps": float, "amsgrad": bool,
                 "decoupled_weight_decay": bool, "alpha": float, "centered": bool,
                 "lr_decay": float, "initial_accumulator_value": float}


def _set_state_field(entry: Any, name: str, value: Any) -> None:
    """One value of a loaded state entry into its wire message (step a number, buffers arrays)."""
    if value is None:  # torch's SGD keeps momentum_buffer None before momentum is used
        return
    if isinstance(value, Tensor):
        value = value.numpy()
    elif hasattr(value, "numpy"):  # another framework's tensor (torch's state_dict())
        value = value.detach().cpu().numpy()
    if name not in entry.DESCRIPTOR.fields_by_name:
        raise ValueError(f"unknown optimizer state {name!r}")
    if name == "step":
        entry.step = float(value)
    else:
        codec.encode_array(np.ascontiguousarray(value), getattr(entry, name))


def _group_options(defaults: Any, group: dict[str, Any]) -> Any:
    """The algorithm message for one param group: the defaults, overridden by its keys."""
    options = type(defaults)()
    options.CopyFrom(defaults)
    fields = {f.name for f in options.DESCRIPTOR.fields}
    for key, value in group.items():
        if key in _GROUP_FIELDS and key in fields:
            setattr(options, key, _GROUP_FIELDS[key](value))
        elif key == "betas" and "beta1" in fields:
            options.beta1, options.beta2 = (float(b) for b in value)
    return options


def _options_dict(options: Any) -> dict[str, Any]:
    """torch's param-group keys for an algorithm message (betas as one tuple)."""
    out: dict[str, Any] = {}
    for f in options.DESCRIPTOR.fields:
        out[f.name] = getattr(options, f.name)
    if "beta1" in out:
        out["betas"] = (out.pop("beta1"), out.pop("beta2"))
    return out


def _refuse(algorithm: str, **flags: Any) -> None:
    for name, value in flags.items():
        if value:
            raise NotImplementedError(f"{algorithm}(): {name}={value!r} is not supported by "
                                      "gradserve (the server runs torch's single-tensor algorithm)")


class SGD(ServerOptimizer):
    """torch.optim.SGD."""

    def __init__(self, params: Any, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False,
                 fused: bool | None = None):
        _refuse("SGD", differentiable=differentiable, fused=fused)
        opts = spb.SgdOptions(lr=float(lr), momentum=float(momentum),
                              dampening=float(dampening), weight_decay=float(weight_decay),
                              nesterov=bool(nesterov), maximize=bool(maximize))
        super().__init__(params, spb.CreateOptimizer(sgd=opts), {
            "lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
            "nesterov": nesterov, "maximize": maximize, "foreach": foreach,
            "differentiable": differentiable, "fused": fused})


class Adam(ServerOptimizer):
    """torch.optim.Adam (with AMSGrad, maximize and decoupled weight decay)."""

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False):
        _refuse(type(self).__name__, capturable=capturable, differentiable=differentiable,
                fused=fused)
        beta1, beta2 = betas
        opts = spb.AdamOptions(lr=float(lr), beta1=float(beta1), beta2=float(beta2),
                               eps=float(eps), weight_decay=float(weight_decay),
                               amsgrad=bool(amsgrad), maximize=bool(maximize),
                               decoupled_weight_decay=bool(decoupled_weight_decay))
        super().__init__(params, spb.CreateOptimizer(adam=opts), {
            "lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
            "amsgrad": amsgrad, "maximize": maximize, "foreach": foreach,
            "capturable": capturable, "differentiable": differentiable, "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay})


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (default 1e-2)."""

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)


class RMSprop(ServerOptimizer):
    """torch.optim.RMSprop (with momentum, centered and maximize)."""

    def __init__(self, params: Any, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 capturable: bool = False, foreach: bool | None = None,
                 maximize: bool = False, differentiable: bool = False):
        _refuse("RMSprop", capturable=capturable, differentiable=differentiable)
        opts = spb.RmspropOptions(lr=float(lr), alpha=float(alpha), eps=float(eps),
                                  weight_decay=float(weight_decay), momentum=float(momentum),
                                  centered=bool(centered), maximize=bool(maximize))
        super().__init__(params, spb.CreateOptimizer(rmsprop=opts), {
            "lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps, "centered": centered,
            "weight_decay": weight_decay, "capturable": capturable, "foreach": foreach,
            "maximize": maximize, "differentiable": differentiable})


class Adagrad(ServerOptimizer):
    """torch.optim.Adagrad (with lr_decay, weight decay and maximize)."""

    def __init__(self, params: Any, lr: float = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0,
                 eps: float = 1e-10, foreach: bool | None = None, *, maximize: bool = False,
                 differentiable: bool = False, fused: bool | None = None):
        _refuse("Adagrad", differentiable=differentiable, fused=fused)
        opts = spb.AdagradOptions(lr=float(lr), lr_decay=float(lr_decay),
                                  weight_decay=float(weight_decay),
                                  initial_accumulator_value=float(initial_accumulator_value),
                                  eps=float(eps), maximize=bool(maximize))
        super().__init__(params, spb.CreateOptimizer(adagrad=opts), {
            "lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value, "foreach": foreach,
            "maximize": maximize, "differentiable": differentiable, "fused": fused})


def namespace(session: Any) -> Any:
    """`session.optim`: the Optimizer base, the server-side algorithms bound to `session`, and
    lr_scheduler."""
    bound = {cls.__name__: bind(cls, session)
             for cls in (SGD, Adam, AdamW, RMSprop, Adagrad)}
    # torch.optim.optimizer: the module programs import the base from
    optimizer = Namespace("torch.optim.optimizer", Optimizer=Optimizer,
                          required=_surface.required)
    return types.SimpleNamespace(Optimizer=Optimizer, LBFGS=LBFGS, Adadelta=Adadelta, ASGD=ASGD,
                                 Adafactor=Adafactor, Adamax=Adamax, NAdam=NAdam,
                                 RAdam=RAdam, Rprop=Rprop, SparseAdam=SparseAdam,
                                 lr_scheduler=lr_scheduler, optimizer=optimizer, **bound)


def bind(cls: type[ServerOptimizer], session: Any) -> type[ServerOptimizer]:
    """A subclass of `cls` whose instances live in `session` (session.optim.SGD, ...)."""
    return type(cls.__name__, (cls,), {"_session": session, "__qualname__": cls.__qualname__,
                                       "__module__": cls.__module__})


def recreate(session: Any, params: list[Tensor], create: spb.CreateOptimizer) -> ServerOptimizer:
    """An optimizer of `session` made by `create` as it is (algorithm, hyperparameters and
    state), over `params` (Client.restore)."""
    kind = create.WhichOneof("algorithm")
    if kind == "adam":
        cls = session.optim.AdamW if create.adam.decoupled_weight_decay else session.optim.Adam
    else:
        cls = {"sgd": session.optim.SGD, "rmsprop": session.optim.RMSprop,
               "adagrad": session.optim.Adagrad}[kind]
    opt: ServerOptimizer = cls.__new__(cls)
    opt._start(list(params), create)
    opt._defaults_message = opt.options
    opt.defaults = {**_options_dict(opt.options), **_FLAGS[kind]}
    opt.param_groups = [{"params": opt.params, **opt.defaults}]
    return opt  # type: ignore[no-any-return]
