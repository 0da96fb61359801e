"""Optimizers (SGD, Adam/AdamW, RMSprop, Adagrad) between wire messages and the engine:
CreateOptimizer (hyperparameters and an optional saved state) and OptimizerState (what
GetOptimizerState reads back).

Every field is checked before use: state entries name an existing parameter once, their kind
matches the algorithm, tensors are decoded under the element limit, a step is a finite number
>= 1 (>= 0 for Adagrad, whose state exists before its first step); the engine then checks the
hyperparameters' ranges (torch's messages) and the buffers' shapes against their parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gradserve.engine as ge
from gradserve.v1 import session_pb2

from . import codec
from .errors import InvalidRequestError

# torch's defaults for fields a caller leaves unset
ADAM_DEFAULTS = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
SGD_DEFAULT_LR = 1e-3
RMSPROP_DEFAULTS = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0}
ADAGRAD_DEFAULTS = {"lr": 1e-2, "lr_decay": 0.0, "weight_decay": 0.0,
                    "initial_accumulator_value": 0.0, "eps": 1e-10}

# per algorithm: the least step its state may hold (None: no step), its required tensors, and
# its optional ones
STATE_FIELDS: dict[str, tuple[int | None, tuple[str, ...], tuple[str, ...]]] = {
    "sgd": (None, (), ("momentum_buffer",)),
    "adam": (1, ("exp_avg", "exp_avg_sq"), ("max_exp_avg_sq",)),
    "rmsprop": (1, ("square_avg",), ("momentum_buffer", "grad_avg")),
    "adagrad": (0, ("sum",), ()),  # torch makes Adagrad's state at construction, step 0
}


ALGORITHMS = {"sgd": ge.optim.SGD, "adam": ge.optim.Adam, "rmsprop": ge.optim.RMSprop,
              "adagrad": ge.optim.Adagrad}


def hyperparameters(kind: str, o: Any) -> dict[str, Any]:
    """The engine's keyword arguments for an algorithm message (SgdOptions, AdamOptions, ...):
    its fields, torch's defaults for the unset optional ones."""
    if kind == "sgd":
        return {"lr": o.lr if o.HasField("lr") else SGD_DEFAULT_LR, "momentum": o.momentum,
                "dampening": o.dampening, "weight_decay": o.weight_decay,
                "nesterov": o.nesterov, "maximize": o.maximize}
    if kind == "adam":
        h = {k: getattr(o, k) if o.HasField(k) else v for k, v in ADAM_DEFAULTS.items()}
        h["betas"] = (h.pop("beta1"), h.pop("beta2"))
        return {**h, "amsgrad": o.amsgrad, "maximize": o.maximize,
                "decoupled_weight_decay": o.decoupled_weight_decay}
    defaults = RMSPROP_DEFAULTS if kind == "rmsprop" else ADAGRAD_DEFAULTS
    h = {k: getattr(o, k) if o.HasField(k) else v for k, v in defaults.items()}
    if kind == "rmsprop":
        h["centered"] = o.centered
    return {**h, "maximize": o.maximize}


def create(m: session_pb2.CreateOptimizer, params: Sequence[ge.Tensor], limit: int) -> Any:
    """The engine optimizer CreateOptimizer describes, with its state loaded.

    Raises:
        InvalidRequestError: no algorithm, or a malformed state entry.
        ge.errors.EngineError: a hyperparameter or buffer the engine refuses (torch's text).
    """
    kind = m.WhichOneof("algorithm")
    if kind is None:
        raise InvalidRequestError("create_optimizer: set sgd, adam, rmsprop or adagrad")
    opt = ALGORITHMS[kind](params, **hyperparameters(kind, getattr(m, kind)))
    if m.state:
        opt.load_state_dict(_state_dict(m.state, kind, opt, len(params), limit))
    return opt


def step(opt: Any, m: session_pb2.OptimizerStep) -> None:
    """optimizer.step(), with the new hyperparameters `m` carries set first.

    Raises:
        InvalidRequestError: hyperparameters of another algorithm than the optimizer's.
        ge.errors.EngineError: a hyperparameter the engine refuses (torch's text).
    """
    kind = m.WhichOneof("hyperparameters")
    if kind is not None:
        if not isinstance(opt, ALGORITHMS[kind]):
            raise InvalidRequestError(f"optimizer_step: {kind} hyperparameters for "
                                      f"{type(opt).__name__} optimizer {m.optimizer}")
        opt.set_hyperparameters(0, hyperparameters(kind, getattr(m, kind)))  # one group each
    opt.step()


def state_tensors(opt: Any) -> dict[int, ge.Tensor] | None:
    """The tensors of an optimizer's state by id (before a step, for `state_growth`), or None
    when its state holds anything but tensors, numbers and None (the caller measures instead).

    The tensors themselves are kept, not only their ids: while the step runs, a buffer it
    replaces cannot be freed and its id reused by a new one."""
    state = getattr(opt, "state", None)
    if not isinstance(state, dict):
        return None
    tensors: dict[int, ge.Tensor] = {}
    for entry in state.values():
        if not isinstance(entry, dict):
            return None
        for v in entry.values():
            if isinstance(v, ge.Tensor):
                tensors[id(v)] = v
            elif v is not None and not isinstance(v, (int, float)):
                return None
    return tensors


def state_growth(opt: Any, before: dict[int, ge.Tensor]) -> int:
    """An upper bound of what a step added to the session's measure: everything the state
    tensors that were not in its state `before` keep alive (`footprint`: their data, tensor
    objects, grads and graphs). Buffers updated in place add nothing; frees are not credited.
    -1 when the state now holds anything but tensors and numbers (measure instead)."""
    after = state_tensors(opt)
    if after is None:
        return -1
    new = [t for k, t in after.items() if k not in before]
    return ge.autograd.footprint(new).nbytes if new else 0


def _state_dict(entries: Sequence[session_pb2.ParamState], kind: str, opt: Any, n: int,
                limit: int) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for e in entries:
        what = f"create_optimizer: state of parameter {e.param}"
        if e.param >= n:
            raise InvalidRequestError(f"{what}: the optimizer has {n} parameter(s)")
        if e.param in state:
            raise InvalidRequestError(f"{what}: given twice")
        if e.WhichOneof("state") != kind:
            raise InvalidRequestError(f"{what}: expected {kind} state, got "
                                      f"{e.WhichOneof('state') or 'none'}")
        entry: dict[str, Any] = {}
        s = getattr(e, kind)
        least_step, required, optional = STATE_FIELDS[kind]
        if least_step is not None:
            if not (math.isfinite(s.step) and s.step >= least_step):
                raise InvalidRequestError(f"{what}: step must be a finite number >= "
                                          f"{least_step}, got {s.step}")
            entry["step"] = float(s.step)
        for name in required + optional:
            if s.HasField(name):
                entry[name] = codec.decode_array(getattr(s, name), limit, f"{what}: {name}")
            elif name in required:
                raise InvalidRequestError(f"{what}: {name} is required")
        state[e.param] = entry
    group = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    group["params"] = list(range(n))
    return {"state": state, "param_groups": [group]}


def export(opt: Any, tensors: dict[int, ge.Tensor], out: session_pb2.OptimizerState) -> int:
    """Fill `out` with `opt`'s hyperparameters and state; returns the bytes of tensor data.

    `tensors` are the session's handles, to name the parameters (0 when released)."""
    group = opt.param_groups[0]  # the wire creates one group per optimizer
    if isinstance(opt, ge.optim.SGD):
        kind = "sgd"
        out.sgd.lr = group["lr"]
        out.sgd.momentum = group["momentum"]
        out.sgd.dampening = group["dampening"]
        out.sgd.weight_decay = group["weight_decay"]
        out.sgd.nesterov = group["nesterov"]
        out.sgd.maximize = group["maximize"]
    elif isinstance(opt, ge.optim.RMSprop):
        kind = "rmsprop"
        r = out.rmsprop
        r.lr, r.alpha, r.eps, r.weight_decay, r.momentum = (
            group["lr"], group["alpha"], group["eps"], group["weight_decay"], group["momentum"])
        r.centered, r.maximize = group["centered"], group["maximize"]
    elif isinstance(opt, ge.optim.Adagrad):
        kind = "adagrad"
        for k in ADAGRAD_DEFAULTS:
            setattr(out.adagrad, k, group[k])
        out.adagrad.maximize = group["maximize"]
    else:
        kind = "adam"
        a = out.adam
        a.lr, (a.beta1, a.beta2), a.eps = group["lr"], group["betas"], group["eps"]
        a.weight_decay, a.amsgrad, a.maximize = (group["weight_decay"], group["amsgrad"],
                                                 group["maximize"])
        a.decoupled_weight_decay = group["decoupled_weight_decay"]
    least_step, required, optional = STATE_FIELDS[kind]
    handle_of = {id(t): h for h, t in tensors.items()}
    nbytes = 0
    for i, p in enumerate(group["params"]):
        out.params.append(handle_of.get(id(p), 0))
        s = opt.state.get(p)
        if not s:
            continue
        entry = getattr(out.state.add(param=i), kind)
        entry.SetInParent()
        if least_step is not None:
            entry.step = float(s["step"])
        for name in required + optional:
            if name in s:
                field = getattr(entry, name)
                codec.encode_tensor(s[name], field)
                nbytes += len(field.raw)
    return nbytes
