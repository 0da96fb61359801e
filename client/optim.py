"""Server-side optimizers with torch.optim's signatures: `session.optim.SGD(params, lr=...)`,
`session.optim.Adam(params, ...)`, `AdamW`, `RMSprop` and `Adagrad`.

Each session gets its own subclasses (`bind`), so `SGD(params, lr)` needs no session argument,
`isinstance(opt, session.optim.SGD)` works, and a wrong keyword fails as in torch
("SGD.__init__() got an unexpected keyword argument 'x'"). Creating, `step()` and `zero_grad()`
are recorded like ops; ranges (`lr >= 0`, betas in [0, 1), ...) are checked by the server's
engine with torch's messages. `foreach` is accepted and has no effect (the server runs torch's
single-tensor algorithm); `differentiable`, `fused` and `capturable` are refused when set, as
the server has no such variants.
"""

from __future__ import annotations

import weakref
from typing import Any

from gradserve.surface import grad_mode
from gradserve.v1 import graph_pb2
from gradserve.v1 import session_pb2 as spb

from .tensor import Tensor


class Optimizer:
    """A server-side optimizer over session tensors (base of SGD, Adam, AdamW, RMSprop, Adagrad).

    Attributes: `params` (the client tensors of the first parameter group, in order), `handle`
    (the server's optimizer handle), `options` (the algorithm message as created: `SgdOptions`,
    `AdamOptions`, ...), `param_groups` (torch's list of dicts, each group's hyperparameters as
    created). The server's optimizer has one group: each further parameter group is an
    optimizer of its own on the server, which `step()` and `zero_grad()` drive too.
    """

    _session: Any  # set by `bind`

    def __init__(self, params: Any, create: spb.CreateOptimizer):
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
        defaults = getattr(create, kind)  # SgdOptions, AdamOptions, RmspropOptions, ...
        self.param_groups: list[ParamGroup] = []
        self._extra: list[Optimizer] = []
        for i, group in enumerate(groups):
            options = _group_options(defaults, group)
            target = self if i == 0 else type(self).__new__(type(self))
            target._start(group["params"], spb.CreateOptimizer(**{kind: options}))
            self.param_groups.append(ParamGroup({**_options_dict(options), **group}))
            if i:
                self._extra.append(target)

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
        self.handle = next(session._handles)
        with session._recorder.lock:
            m = session._record().create_optimizer
            m.CopyFrom(create)
            m.optimizer = self.handle
            del m.params[:]
            m.params.extend(p._handle for p in self.params)
        session._optimizers[self.handle] = self
        weakref.finalize(self, session._recorder.released.put, self.handle)
        session._after_record()

    def step(self, closure: Any = None) -> Any:
        """optimizer.step(closure=None), recorded (sent with the next batch); returns closure()."""
        loss = None
        if closure is not None:
            with grad_mode.enable_grad():
                loss = closure()
        s = self._session
        for opt in (self, *self._extra):
            s._record().optimizer_step.optimizer = opt.handle
        s._epoch += 1
        s._after_record()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """optimizer.zero_grad(set_to_none)."""
        s = self._session
        for opt in (self, *self._extra):
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

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={v}" for f, v in self.options.ListFields())
        return f"{type(self).__name__}({fields})"


class ParamGroup(dict):  # type: ignore[type-arg]
    """One of `optimizer.param_groups`: torch's dict, whose hyperparameters are read-only here
    (the server's optimizer keeps those it was created with; a silent change would be lost)."""

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self and key != "params":
            raise NotImplementedError(
                f"changing a param group's {key!r} after the optimizer is created is not "
                "supported by gradserve (the server keeps the hyperparameters it was created "
                "with); create a new optimizer")
        super().__setitem__(key, value)


# a param group's keys -> (options field, how to read it); betas fills two fields
_GROUP_FIELDS = {"lr": float, "momentum": float, "dampening": float, "weight_decay": float,
                 "nesterov": bool, "maximize": bool, "eps": float, "amsgrad": bool,
                 "decoupled_weight_decay": bool, "alpha": float, "centered": bool,
                 "lr_decay": float, "initial_accumulator_value": float}


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


class SGD(Optimizer):
    """torch.optim.SGD."""

    def __init__(self, params: Any, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False,
                 fused: bool | None = None):
        _refuse("SGD", differentiable=differentiable, fused=fused)
        opts = spb.SgdOptions(lr=float(lr), momentum=float(momentum),
                              dampening=float(dampening), weight_decay=float(weight_decay),
                              nesterov=bool(nesterov), maximize=bool(maximize))
        super().__init__(params, spb.CreateOptimizer(sgd=opts))


class Adam(Optimizer):
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
        super().__init__(params, spb.CreateOptimizer(adam=opts))


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


class RMSprop(Optimizer):
    """torch.optim.RMSprop (with momentum, centered and maximize)."""

    def __init__(self, params: Any, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 capturable: bool = False, foreach: bool | None = None,
                 maximize: bool = False, differentiable: bool = False):
        _refuse("RMSprop", capturable=capturable, differentiable=differentiable)
        opts = spb.RmspropOptions(lr=float(lr), alpha=float(alpha), eps=float(eps),
                                  weight_decay=float(weight_decay), momentum=float(momentum),
                                  centered=bool(centered), maximize=bool(maximize))
        super().__init__(params, spb.CreateOptimizer(rmsprop=opts))


class Adagrad(Optimizer):
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
        super().__init__(params, spb.CreateOptimizer(adagrad=opts))


def bind(cls: type[Optimizer], session: Any) -> type[Optimizer]:
    """A subclass of `cls` whose instances live in `session` (session.optim.SGD, ...)."""
    return type(cls.__name__, (cls,), {"_session": session, "__qualname__": cls.__qualname__,
                                       "__module__": cls.__module__})


def recreate(session: Any, params: list[Tensor], create: spb.CreateOptimizer) -> Optimizer:
    """An optimizer of `session` made by `create` as it is (algorithm, hyperparameters and
    state), over `params` (Client.restore)."""
    kind = create.WhichOneof("algorithm")
    if kind == "adam":
        cls = session.optim.AdamW if create.adam.decoupled_weight_decay else session.optim.Adam
    else:
        cls = {"sgd": session.optim.SGD, "rmsprop": session.optim.RMSprop,
               "adagrad": session.optim.Adagrad}[kind]
    opt: Optimizer = cls.__new__(cls)
    opt._start(list(params), create)
    opt.param_groups = [ParamGroup({**_options_dict(opt.options), "params": opt.params})]
    return opt  # type: ignore[no-any-return]
