"""Optimizers: torch.optim's SGD, Adam, AdamW, RMSprop and Adagrad (and, from the surface,
LBFGS, Adadelta, NAdam, RAdam, Adamax, Rprop, ASGD and Adafactor), step for step (the
single-tensor, non-foreach path).

Updates run under `no_grad` as in-place engine ops on the parameters, so a parameter stays the
same object and its version counter moves as in torch. Adam's common case (no AMSGrad; plain
float arrays below the size ops split over threads) runs the same numpy kernels on the arrays
directly (`_adam_arrays`: the same bits, without ~8 op dispatches per parameter), and for a
group of small float32 parameters all at once (`_adam_group`, over flat state buffers: the same
bits again, with one set of numpy calls for the group instead of one per parameter).
`state_dict()` holds plain numbers and numpy arrays only (the server saves and restores it
without pickle).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from gradserve.surface import adadelta as _adadelta
from gradserve.surface import adafactor as _adafactor
from gradserve.surface import adamax as _adamax
from gradserve.surface import asgd as _asgd
from gradserve.surface import lbfgs as _lbfgs
from gradserve.surface import lr_scheduler
from gradserve.surface import nadam as _nadam
from gradserve.surface import optim as _surface
from gradserve.surface import optim_tensors as _tensors
from gradserve.surface import radam as _radam
from gradserve.surface import rprop as _rprop
from gradserve.surface import sparse_adam as _sparse_adam
from gradserve.surface.compat import Namespace, missing_names

from . import errors, limits, parallel
from .creation import tensor as _tensor
from .distributions import fma32
from .ops_elementwise import _fma_scalar32, _fma_scalar64
from .ops_math import _addcdiv, _addcmul
from .registry import OPS
from .tensor import Tensor


class Optimizer(_surface.Optimizer):
    """torch.optim.Optimizer over engine tensors (gradserve.surface.optim.Optimizer); the base of
    SGD, Adam, AdamW, RMSprop, Adagrad and of user-defined optimizers."""

    _tensor_type = Tensor
    _type_error = errors.InvalidTypeError
    _value_error = errors.InvalidValueError
    _state_keys: tuple[str, ...] = ()  # a built-in algorithm's state entries

    _algorithm = ""  # a built-in algorithm's name in surface.optim.check_hyperparameters

    def _validate(self, h: dict[str, Any]) -> None:
        """Check hyperparameters with torch's constructor messages (each algorithm's own)."""
        _surface.check_hyperparameters(self._algorithm, h, errors.InvalidValueError)

    def set_hyperparameters(self, group: int, values: dict[str, Any]) -> None:
        """Replace param group `group`'s hyperparameters by `values` (a step's new ones).

        Args:
            group: index into `param_groups`.
            values: every hyperparameter of the algorithm, as its constructor takes them.

        Raises:
            ValueError: a value the constructor would refuse (torch's message).
        """
        self._validate(values)
        self.param_groups[group].update(values)

    def step(self, closure: Any = None) -> Any:
        """One update of every parameter that has a gradient; returns closure() if given."""
        if not self._state_keys:  # not a built-in algorithm: the subclass writes step()
            return super().step(closure)
        return _surface.run_step(closure, self.param_groups, self._update_params)

    def _update_params(self, group: dict[str, Any]) -> None:
        if self._update_group(group):
            return
        for p in group["params"]:
            if p.grad is not None:
                self._update(p, p.grad, group, self.state.setdefault(p, {}))

    def _update_group(self, group: dict[str, Any]) -> bool:
        """Update every parameter of `group` at once where the algorithm can (the same bits
        as `_update` on each); False: nothing done, update them one by one."""
        return False

    def _update(self, p: Tensor, grad: Tensor, group: dict[str, Any],
                state: dict[str, Any]) -> None:
        raise NotImplementedError

    # --- state ----------------------------------------------------------------------------------

    def _params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def state_dict(self) -> dict[str, Any]:
        """{'state': {index: {name: number | ndarray}}, 'param_groups': [{..., 'params': [index]}]}

        Parameters are numbered across groups in order, as torch numbers them. A built-in
        algorithm's state holds numbers and numpy copies (the server saves it without pickle);
        a user-defined optimizer's is torch's (its own objects).
        """
        if not self._state_keys:
            return super().state_dict()
        index = {id(p): i for i, p in enumerate(self._params())}
        state: dict[int, dict[str, Any]] = {}
        for p, s in self.state.items():
            if not s:
                continue
            state[index[id(p)]] = {k: (v.numpy().copy() if isinstance(v, Tensor) else v)
                                   for k, v in s.items()}
        groups = []
        for g in self.param_groups:
            out = {k: (tuple(v) if isinstance(v, list) else v) for k, v in g.items()
                   if k != "params"}
            out["params"] = [index[id(p)] for p in g["params"]]
            groups.append(out)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyper-parameters and state saved by `state_dict` (copies the arrays).

        Raises:
            ValueError: the groups or their sizes differ from this optimizer's (torch's text);
            RuntimeError: a saved array does not fit its parameter.
        """
        if not self._state_keys:  # a user-defined optimizer: torch's generic load
            super().load_state_dict(state_dict)
            return
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise errors.InvalidValueError(
                "loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, self.param_groups)):
            raise errors.InvalidValueError(
                "loaded state dict contains a parameter group that doesn't match the size of "
                "optimizer's group")
        by_index: dict[Any, Tensor] = {}
        for saved, mine in zip(groups, self.param_groups):
            for i, p in zip(saved["params"], mine["params"]):
                by_index[i] = p
        new_state: dict[Any, dict[str, Any]] = {}
        for i, s in state_dict["state"].items():
            p = by_index.get(i) if i in by_index else by_index.get(int(i))
            if p is None:
                raise errors.InvalidValueError(f"loaded state dict has state for unknown "
                                               f"parameter {i!r}")
            entry: dict[str, Any] = {}
            for k, v in s.items():
                if k not in self._state_keys:
                    raise errors.InvalidValueError(f"unknown optimizer state {k!r}")
                if isinstance(v, (np.ndarray, Tensor)):
                    arr = np.asarray(v.numpy() if isinstance(v, Tensor) else v)
                    if arr.shape != tuple(p.shape):
                        raise errors.InvalidArgumentError(
                            f"optimizer state {k!r} has shape {list(arr.shape)}, but its "
                            f"parameter has shape {list(p.shape)}")
                    entry[k] = _tensor(arr, dtype=p.dtype)
                else:
                    entry[k] = v
            new_state[p] = entry
        self.state = defaultdict(dict, new_state)
        for saved, mine in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    mine[k] = tuple(v) if isinstance(v, list) else v


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, weight decay and Nesterov."""

    _algorithm = "sgd"
    _state_keys = ("momentum_buffer",)

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float = 0, nesterov: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None,
                 differentiable: bool = False, fused: bool | None = None):
        _refuse("SGD", differentiable=differentiable, fused=fused)
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize,
                    "foreach": foreach, "differentiable": differentiable, "fused": fused}
        self._validate(defaults)
        super().__init__(params, defaults)

    def _update(self, p: Tensor, grad: Tensor, group: dict[str, Any],
                state: dict[str, Any]) -> None:
        if group["maximize"]:
            grad = -grad
        wd, momentum = group["weight_decay"], group["momentum"]
        if wd != 0:
            grad = grad.add(p, alpha=wd)
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.clone().detach()
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
            grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
        p.add_(grad, alpha=-group["lr"])


class Adam(Optimizer):
    """Adam (with the AMSGrad variant), torch's formulas and bias corrections."""

    _algorithm = "adam"
    _state_keys = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False):
        _refuse(type(self).__name__, capturable=capturable, differentiable=differentiable,
                fused=fused)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize, "foreach": foreach,
                    "capturable": capturable, "differentiable": differentiable, "fused": fused,
                    "decoupled_weight_decay": decoupled_weight_decay}
        self._validate(defaults)
        super().__init__(params, defaults)

    def _update_group(self, group: dict[str, Any]) -> bool:
        """Adam's common case for a whole group at once (`_adam_group`): float32 parameters
        without weight decay, AMSGrad or maximize, whose state was made by this path (each
        parameter's buffers are views of one flat buffer per group, as torch's foreach path
        keeps lists) and is at the same step."""
        if (group["amsgrad"] or group["maximize"] or group["weight_decay"] != 0
                or type(self)._update is not Adam._update):  # (a subclass's own update)
            return False
        params = []
        for p in group["params"]:
            if p.grad_fn is not None:
                return False  # (`p.grad` warns there, as torch's step does)
            if p._grad is not None:
                params.append(p)
        if len(params) < 2:  # one parameter: the per-parameter path costs as much
            return False
        flat = _FlatAdam.fit(self, group, params)
        if flat is None:
            return False
        beta1, beta2 = group["betas"]
        state = self.state
        step = state[params[0]]["step"] + 1.0
        for p in params:
            state[p]["step"] = step
        _adam_group(flat, [p._grad._data for p in params], beta1, beta2, step, group["lr"],
                    group["eps"])
        for p, m, v in zip(params, flat.exp_avg, flat.exp_avg_sq):
            m._vc[0] += 1
            v._vc[0] += 2
            p._vc[0] += 1
        return True

    def _update(self, p: Tensor, grad: Tensor, group: dict[str, Any],
                state: dict[str, Any]) -> None:
        if not state:
            state["step"] = 0.0
            state["exp_avg"] = _zeros_like(p)
            state["exp_avg_sq"] = _zeros_like(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = _zeros_like(p)
        if group["maximize"]:
            grad = -grad
        beta1, beta2 = group["betas"]
        state["step"] += 1.0
        step = state["step"]
        if group["weight_decay"] != 0:
            if group.get("decoupled_weight_decay"):
                p.mul_(1 - group["lr"] * group["weight_decay"])
            else:
                grad = grad.add(p, alpha=group["weight_decay"])
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        if not group["amsgrad"] and _adam_arrays(p, grad, exp_avg, exp_avg_sq, beta1, beta2,
                                                 step, group["lr"], group["eps"]):
            return
        _tensors.lerp_(exp_avg, grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction1 = 1 - beta1 ** step
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        step_size = group["lr"] / bias_correction1
        if group["amsgrad"]:
            if "max_exp_avg_sq" not in state:
                state["max_exp_avg_sq"] = _zeros_like(p)
            best = state["max_exp_avg_sq"]
            best.copy_(best.maximum(exp_avg_sq))
            denom = (best.sqrt() / bias_correction2_sqrt).add_(group["eps"])
        else:
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(group["eps"])
        p.addcdiv_(exp_avg, denom, value=-step_size)


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (default 1e-2), as torch's subclass of Adam."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         foreach=foreach, capturable=capturable, differentiable=differentiable,
                         fused=fused, decoupled_weight_decay=True)


class RMSprop(Optimizer):
    """RMSprop (with momentum and the centered variant), torch's `_single_tensor_rmsprop`.

    Its `addcmul_` and `addcdiv_` are the engine's ops, which round as torch's kernels.
    """

    _algorithm = "rmsprop"
    _state_keys = ("step", "square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0, momentum: float = 0,
                 centered: bool = False, capturable: bool = False, foreach: bool | None = None,
                 maximize: bool = False, differentiable: bool = False):
        _refuse("RMSprop", capturable=capturable, differentiable=differentiable)
        defaults = {"lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps,
                    "centered": centered, "weight_decay": weight_decay,
                    "capturable": capturable, "foreach": foreach, "maximize": maximize,
                    "differentiable": differentiable}
        self._validate(defaults)
        super().__init__(params, defaults)

    def _update(self, p: Tensor, grad: Tensor, group: dict[str, Any],
                state: dict[str, Any]) -> None:
        if not state:
            state["step"] = 0.0
            state["square_avg"] = _zeros_like(p)
            if group["momentum"] > 0:
                state["momentum_buffer"] = _zeros_like(p)
            if group["centered"]:
                state["grad_avg"] = _zeros_like(p)
        if group["maximize"]:
            grad = -grad
        alpha, lr = group["alpha"], group["lr"]
        state["step"] += 1.0
        if group["weight_decay"] != 0:
            grad = grad.add(p, alpha=group["weight_decay"])
        square_avg = state["square_avg"]
        square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        if group["centered"]:
            if "grad_avg" not in state:
                state["grad_avg"] = _zeros_like(p)
            grad_avg = state["grad_avg"]
            _tensors.lerp_(grad_avg, grad, 1 - alpha)
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
        else:
            avg = square_avg.sqrt()
        avg = avg.add_(group["eps"])
        if group["momentum"] > 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = _zeros_like(p)
            buf = state["momentum_buffer"]
            buf.mul_(group["momentum"]).addcdiv_(grad, avg)
            p.add_(buf, alpha=-lr)
        else:
            p.addcdiv_(grad, avg, value=-lr)


class Adagrad(Optimizer):
    """Adagrad (with lr decay, weight decay and maximize), torch's `_single_tensor_adagrad`.

    As in torch, every parameter's state (`step` 0 and `sum` filled with
    initial_accumulator_value) exists from construction on.
    """

    _algorithm = "adagrad"
    _state_keys = ("step", "sum")

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0,
                 eps: float = 1e-10, foreach: bool | None = None, *, maximize: bool = False,
                 differentiable: bool = False, fused: bool | None = None):
        _refuse("Adagrad", differentiable=differentiable, fused=fused)
        defaults = {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value,
                    "foreach": foreach, "maximize": maximize, "differentiable": differentiable,
                    "fused": fused}
        self._validate(defaults)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group, self.state.setdefault(p, {}))

    @staticmethod
    def _init_state(p: Tensor, group: dict[str, Any], state: dict[str, Any]) -> None:
        state["step"] = 0.0
        state["sum"] = _tensor(np.full(tuple(p.shape), group["initial_accumulator_value"],
                                       dtype=p.dtype.np))

    def _update(self, p: Tensor, grad: Tensor, group: dict[str, Any],
                state: dict[str, Any]) -> None:
        if "sum" not in state:  # a loaded state dict without this parameter's entry
            self._init_state(p, group, state)
        state["step"] += 1.0
        step = state["step"]
        if group["maximize"]:
            grad = -grad
        if group["weight_decay"] != 0:
            grad = grad.add(p, alpha=group["weight_decay"])
        clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
        state_sum = state["sum"]
        state_sum.addcmul_(grad, grad, value=1)
        std = state_sum.sqrt().add_(group["eps"])
        p.addcdiv_(grad, std, value=-clr)


class LBFGS(Optimizer, _lbfgs.LBFGS):
    """torch.optim.LBFGS over engine tensors (gradserve.surface.lbfgs.LBFGS): torch's algorithm
    and strong-Wolfe line search, op for op."""

    def _cat(self, tensors: Any) -> Tensor:
        from gradserve import engine  # the package's functions are built after this module

        return engine.cat(list(tensors), 0)  # type: ignore[attr-defined, no-any-return]


class _EngineTensors(_tensors.TensorOptimizer):
    """The engine's side of the algorithms written as tensor ops (surface.optim_tensors)."""

    def _lib(self, p: Any) -> Any:
        from gradserve import engine  # the package's functions are built after this module

        return engine


class Adadelta(Optimizer, _EngineTensors, _adadelta.Adadelta):
    """torch.optim.Adadelta over engine tensors (gradserve.surface.adadelta.Adadelta): torch's
    single-tensor algorithm, op for op."""


class ASGD(Optimizer, _EngineTensors, _asgd.ASGD):
    """torch.optim.ASGD over engine tensors (gradserve.surface.asgd.ASGD): torch's
    single-tensor algorithm, op for op."""


class Adafactor(Optimizer, _EngineTensors, _adafactor.Adafactor):
    """torch.optim.Adafactor over engine tensors (gradserve.surface.adafactor.Adafactor):
    torch's single-tensor algorithm, op for op."""


class Adamax(Optimizer, _EngineTensors, _adamax.Adamax):
    """torch.optim.Adamax over engine tensors (gradserve.surface.adamax.Adamax): torch's
    single-tensor algorithm, op for op."""


class NAdam(Optimizer, _EngineTensors, _nadam.NAdam):
    """torch.optim.NAdam over engine tensors (gradserve.surface.nadam.NAdam): torch's
    single-tensor algorithm, op for op."""


class RAdam(Optimizer, _EngineTensors, _radam.RAdam):
    """torch.optim.RAdam over engine tensors (gradserve.surface.radam.RAdam): torch's
    single-tensor algorithm, op for op."""


class Rprop(Optimizer, _EngineTensors, _rprop.Rprop):
    """torch.optim.Rprop over engine tensors (gradserve.surface.rprop.Rprop): torch's
    single-tensor algorithm, op for op."""


class SparseAdam(Optimizer, _EngineTensors, _sparse_adam.SparseAdam):
    """torch.optim.SparseAdam over engine tensors (gradserve.surface.sparse_adam.SparseAdam):
    every gradient is dense, which its step refuses with torch's error."""


_FUSED: dict[Any, Callable[..., Any]] = {np.dtype(np.float32): _fma_scalar32,
                                        np.dtype(np.float64): _fma_scalar64}


def _adam_arrays(p: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, beta1: float,
                 beta2: float, step: float, lr: float, eps: float) -> bool:
    """Adam's update without AMSGrad (after weight decay and maximize) on the arrays directly,
    when every tensor is a plain float32 or float64 array of the parameter's shape and dtype
    below the size ops split over threads, and lerp takes its first formula; False (nothing
    done) otherwise.

    The same numpy calls, in the same order and dtypes, as the engine ops of `Adam._update`'s
    general path make (`add`'s fused scaled add, numpy's ufuncs with the python scalars,
    `addcmul`'s and `addcdiv`'s kernels), so the results are the same bit for bit
    (tests/test_optim_fast.py), without ~8 dispatches per parameter; each in-place op moves its
    tensor's version counter as it would. Runs the interrupt check once."""
    x, g, m, v = p._data, grad._data, exp_avg._data, exp_avg_sq._data
    if not (type(x) is np.ndarray and type(g) is np.ndarray and type(m) is np.ndarray
            and type(v) is np.ndarray):
        return False
    dtype = x.dtype
    fused = _FUSED.get(dtype)
    if (fused is None or g.dtype != dtype or m.dtype != dtype or v.dtype != dtype
            or not (x.shape == g.shape == m.shape == v.shape)
            or x.size >= parallel.MIN_ELEMENTS or p._base is not None
            or exp_avg._base is not None or exp_avg_sq._base is not None
            or not (x.flags.writeable and m.flags.writeable and v.flags.writeable)):
        return False
    weight = dtype.type(1 - beta1)
    if not abs(weight) < 0.5:
        return False
    limits.tick()
    # lerp_: exp_avg.add_(grad - exp_avg, alpha=w)
    np.copyto(m, fused(np.subtract(g, m), dtype.type(float(weight)), m))
    exp_avg._vc[0] += 1
    # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    np.copyto(v, np.multiply(v, beta2))
    np.copyto(v, _addcmul(v, g, g, 1 - beta2))
    exp_avg_sq._vc[0] += 2
    bias_correction1 = 1 - beta1 ** step
    bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
    # denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    denom = np.add(np.true_divide(OPS["sqrt"].forward(v), bias_correction2_sqrt), eps)  # torch's
    # p.addcdiv_(exp_avg, denom, value=-step_size)
    np.copyto(x, _addcdiv(x, m, denom, -(lr / bias_correction1)))
    p._vc[0] += 1
    return True


class _FlatAdam:
    """One Adam group's state buffers as two flat float32 arrays (`exp_avg`, `exp_avg_sq`
    hold each parameter's tensors, views of `m` and `v` in parameter order), made by its
    first step; valid while the group steps the same parameters and nothing replaced their
    state (load_state_dict, a per-parameter step of some of them)."""

    __slots__ = ("params", "exp_avg", "exp_avg_sq", "m", "v", "sizes")

    def __init__(self, params: list[Tensor], state: dict[Any, dict[str, Any]]):
        sizes = [p._data.size for p in params]
        n = sum(sizes)
        self.params, self.sizes = params, sizes
        self.m, self.v = np.zeros(n, np.float32), np.zeros(n, np.float32)
        self.exp_avg, self.exp_avg_sq = [], []
        start = 0
        for p, k in zip(params, sizes):
            shape = p._data.shape
            m = Tensor._make(self.m[start:start + k].reshape(shape))
            v = Tensor._make(self.v[start:start + k].reshape(shape))
            self.exp_avg.append(m)
            self.exp_avg_sq.append(v)
            state[p] = {"step": 0.0, "exp_avg": m, "exp_avg_sq": v}  # (Adam._update's keys)
            start += k

    @staticmethod
    def fit(opt: Adam, group: dict[str, Any], params: list[Tensor]) -> _FlatAdam | None:
        """`group`'s flat state for stepping `params` (made when none of them has state yet),
        or None: the per-parameter path applies."""
        n = 0
        # what owns each parameter's memory: a gradient sharing it would be read after that
        # parameter's update one by one, before it here
        owners = {id(p._data if p._data.base is None else p._data.base) for p in params}
        for p in params:
            x, g = p._data, p._grad._data  # type: ignore[union-attr]
            if not (type(x) is np.ndarray and type(g) is np.ndarray and x.dtype == _F32
                    and g.dtype == _F32 and x.shape == g.shape and p._base is None
                    and x.flags.writeable
                    and id(g if g.base is None else g.base) not in owners):
                return None
            n += x.size
        if len({id(p) for p in params}) != len(params):
            return None  # a parameter listed twice is updated twice, one by one
        beta1 = group["betas"][0]
        if n >= parallel.MIN_ELEMENTS or not abs(np.float32(1 - beta1)) < 0.5:
            return None  # large arrays: the per-parameter path splits them over threads
        cache: dict[int, _FlatAdam] = opt.__dict__.setdefault("_flat_state", {})
        flat = cache.get(id(group))
        state = opt.state
        if flat is not None and flat.holds(params, state):
            return flat
        if any(state.get(p) for p in params):
            return None  # state made elsewhere (a loaded one, or per parameter)
        flat = cache[id(group)] = _FlatAdam(params, state)
        return flat

    def holds(self, params: list[Tensor], state: dict[Any, dict[str, Any]]) -> bool:
        """Whether these are the parameters, in order, whose state this still holds, all at
        the same step."""
        if len(params) != len(self.params):
            return False
        step = None
        for p, q, m, v in zip(params, self.params, self.exp_avg, self.exp_avg_sq):
            s = state.get(p)
            if (p is not q or not s or s.get("exp_avg") is not m or s.get("exp_avg_sq") is not v
                    or m._data.base is not self.m or v._data.base is not self.v
                    or m._base is not None or v._base is not None):
                return False
            if step is None:
                step = s["step"]
            elif s["step"] != step:
                return False
        return True


_F32 = np.dtype(np.float32)


def _adam_group(flat: _FlatAdam, grads: list[np.ndarray], beta1: float, beta2: float,
                step: float, lr: float, eps: float) -> None:
    """`_adam_arrays` for every parameter of a float32 group at once (torch's foreach idea:
    a few numpy calls for the group instead of some 35 per parameter). Elementwise, so each
    element gets the same operations as `_adam_arrays` gives it, hence the same bits
    (tests/test_optim_fast.py): both fused multiply-adds (exp_avg's lerp, exp_avg_sq's
    addcmul) computed in float64 side by side and rounded once, the elements where that
    rounding can differ from a fused one (a float32 halfway point, subnormals) redone by
    `fma32`; then sqrt, the bias corrections and addcdiv into each parameter."""
    limits.tick()
    m, v = flat.m, flat.v
    n = m.size
    g = np.concatenate([a.reshape(-1) for a in grads])
    weight = np.float32(1 - beta1)
    both = np.empty(2 * n, np.float64)
    s1, s2 = both[:n], both[n:]
    # lerp_: exp_avg + weight * (grad - exp_avg), fused
    diff = np.subtract(g, m)
    np.multiply(diff, np.float64(weight), out=s1, dtype=np.float64)
    np.add(s1, m, out=s1, dtype=np.float64)
    # exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2): (grad * value) * grad + .
    np.multiply(v, beta2, out=v)
    scaled = np.multiply(g, np.float32(1 - beta2))
    np.multiply(scaled, g, out=s2, dtype=np.float64)
    np.add(s2, v, out=s2, dtype=np.float64)
    rounded = both.astype(np.float32)
    redo = np.abs(both) < 2.0 ** -125
    bits = both.view(np.uint64)
    np.bitwise_and(bits, 0x1FFFFFFF, out=bits)  # the 29 mantissa bits float32 drops
    redo |= bits == 0x10000000
    if redo.any():
        r1, r2 = redo[:n], redo[n:]
        rounded[:n][r1] = fma32(diff[r1], float(weight), m[r1])
        rounded[n:][r2] = fma32(scaled[r2], g[r2], v[r2])
    np.copyto(m, rounded[:n])
    np.copyto(v, rounded[n:])
    bias_correction1 = 1 - beta1 ** step
    bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
    denom = np.add(np.true_divide(OPS["sqrt"].forward(v), bias_correction2_sqrt), eps)
    # p.addcdiv_(exp_avg, denom, value=-step_size): p + (exp_avg * value) / denom
    with np.errstate(divide="ignore", invalid="ignore"):
        update = np.divide(np.multiply(m, np.float32(-(lr / bias_correction1))), denom)
        start = 0
        for p, k in zip(flat.params, flat.sizes):
            x = p._data
            np.add(x, update[start:start + k].reshape(x.shape), out=x)
            start += k


def _refuse(algorithm: str, **flags: Any) -> None:
    for name, value in flags.items():
        if value:
            raise NotImplementedError(f"{algorithm}(): {name}={value!r} is not supported by "
                                      "gradserve (it runs torch's single-tensor algorithm)")


def _zeros_like(p: Tensor) -> Tensor:
    return _tensor(np.zeros(tuple(p.shape), dtype=p.dtype.np))


# torch.optim.optimizer, the module programs import the base from (`from torch.optim.optimizer
# import Optimizer, required`)
optimizer = Namespace("torch.optim.optimizer", Optimizer=Optimizer, required=_surface.required)

__all__ = ["ASGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "LBFGS",
           "NAdam", "Optimizer", "RAdam", "RMSprop", "Rprop", "SGD", "SparseAdam", "lr_scheduler",
           "optimizer"]
__getattr__ = missing_names("torch.optim")  # a name torch.optim has and gradserve has not
