"""torch.optim.Optimizer, the base class, written once for the engine and the client.

Parameter groups, `defaults`, `state` (a defaultdict(dict) keyed by parameter), add_param_group,
zero_grad, state_dict/load_state_dict and repr follow torch's `torch/optim/optimizer.py`
(single-tensor path) with its messages. A subclass's `step()` is ordinary tensor code, so a
user-defined optimizer (`class MySGD(torch.optim.Optimizer)`) runs on the engine in process and
records ops on a session alike. Each layer names its Tensor type in `_tensor_type`.
"""

from __future__ import annotations

import copy
import functools
import warnings
from collections import defaultdict
from collections.abc import Callable
from itertools import chain
from typing import Any, ClassVar

from .grad_mode import enable_grad, no_grad
from .nn_module import RemovableHandle
from .nn_parameter import class_typename as typename


class _RequiredParameter:
    """The default of a hyperparameter every param group must give (torch's `required`)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


def check_hyperparameters(algorithm: str, h: dict[str, Any],
                          error: type[ValueError] = ValueError) -> None:
    """torch's constructor checks of a built-in algorithm's hyperparameters, its messages.

    Args:
        algorithm: "sgd", "adam" (also AdamW), "rmsprop" or "adagrad".
        h: the hyperparameters by torch's param-group keys (lr, betas, ...).
        error: the ValueError subclass to raise (the engine's typed one).

    Raises:
        ValueError: the first value torch's constructor would refuse.
    """
    checks: list[tuple[bool, str]] = [(h["lr"] >= 0.0, f"Invalid learning rate: {h['lr']}")]
    if algorithm == "sgd":
        checks += [(h["momentum"] >= 0.0, f"Invalid momentum value: {h['momentum']}"),
                   (h["weight_decay"] >= 0.0, f"Invalid weight_decay value: {h['weight_decay']}"),
                   (not h["nesterov"] or (h["momentum"] > 0 and h["dampening"] == 0),
                    "Nesterov momentum requires a momentum and zero dampening")]
    elif algorithm == "adam":
        checks.append((h["eps"] >= 0.0, f"Invalid epsilon value: {h['eps']}"))
        checks += [(0.0 <= beta < 1.0, f"Invalid beta parameter at index {i}: {beta}")
                   for i, beta in enumerate(h["betas"])]
        checks.append((h["weight_decay"] >= 0.0,
                       f"Invalid weight_decay value: {h['weight_decay']}"))
    elif algorithm == "rmsprop":
        checks += [(h["eps"] >= 0.0, f"Invalid epsilon value: {h['eps']}"),
                   (h["momentum"] >= 0.0, f"Invalid momentum value: {h['momentum']}"),
                   (h["weight_decay"] >= 0.0, f"Invalid weight_decay value: {h['weight_decay']}"),
                   (h["alpha"] >= 0.0, f"Invalid alpha value: {h['alpha']}")]
    elif algorithm == "adagrad":
        checks += [(h["lr_decay"] >= 0.0, f"Invalid lr_decay value: {h['lr_decay']}"),
                   (h["weight_decay"] >= 0.0, f"Invalid weight_decay value: {h['weight_decay']}"),
                   (h["initial_accumulator_value"] >= 0.0, "Invalid initial_accumulator_value "
                    f"value: {h['initial_accumulator_value']}"),
                   (h["eps"] >= 0.0, f"Invalid epsilon value: {h['eps']}")]
    for ok, message in checks:
        if not ok:
            raise error(message)


def _hooked(step: Callable[..., Any]) -> Callable[..., Any]:
    """`step` running the optimizer's step pre- and post-hooks around it, as torch's
    `profile_hook_step` (once: a subclass's step calling super().step() runs them once)."""

    @functools.wraps(step)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        self = args[0]  # torch's hooks get the optimizer inside args too
        d = self.__dict__
        if d.get("_in_step_hooks") or not (d.get("_optimizer_step_pre_hooks") or
                                           d.get("_optimizer_step_post_hooks")):
            return step(*args, **kwargs)  # the common case: no hooks
        pre = list(d.get("_optimizer_step_pre_hooks", {}).values())
        post = list(d.get("_optimizer_step_post_hooks", {}).values())
        self.__dict__["_in_step_hooks"] = True
        try:
            for hook in pre:
                result = hook(self, args, kwargs)
                if result is not None:
                    if isinstance(result, tuple) and len(result) == 2:
                        args, kwargs = result
                    else:
                        raise RuntimeError(f"{step} must return None or a tuple of "
                                           f"(new_args, new_kwargs), but got {result}.")
            out = step(*args, **kwargs)
            for hook in post:
                hook(self, args, kwargs)
            return out
        finally:
            self.__dict__["_in_step_hooks"] = False

    return wrapper


def run_step(closure: Callable[[], Any] | None, groups: list[dict[str, Any]],
             update: Callable[[dict[str, Any]], None]) -> Any:
    """torch's built-in step: `closure()` under enable_grad, then `update(group)` for each
    parameter group under no_grad.

    Returns:
        The closure's loss, or None.
    """
    loss = None
    if closure is not None:
        with enable_grad():
            loss = closure()
    with no_grad():
        for group in groups:
            update(group)
    return loss


class Optimizer:
    """torch.optim.Optimizer: subclass it and write `step()` over `self.param_groups`.

    Args:
        params: tensors, or dicts of a "params" entry and per-group hyperparameters.
        defaults: each hyperparameter's default (`required` = every group must give it).

    Raises:
        TypeError: params is a tensor, or holds something else than tensors (torch's text).
        ValueError: no parameters, a non-leaf, or a parameter in two groups (torch's text).
    """

    _tensor_type: ClassVar[Any]  # the layer's Tensor, set by the engine's and client's subclass
    _type_error: ClassVar[type[TypeError]] = TypeError  # the layer's typed errors (the engine's
    _value_error: ClassVar[type[ValueError]] = ValueError  # map to the server's status codes)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "step" in cls.__dict__:
            cls.step = _hooked(cls.__dict__["step"])  # type: ignore[method-assign]

    def register_step_pre_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """Call `hook(optimizer, args, kwargs)` before each step(); it may return new
        (args, kwargs).

        Returns:
            A handle whose `remove()` takes the hook out.
        """
        return self._add_hook("_optimizer_step_pre_hooks", hook)

    def register_step_post_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """Call `hook(optimizer, args, kwargs)` after each step().

        Returns:
            A handle whose `remove()` takes the hook out.
        """
        return self._add_hook("_optimizer_step_post_hooks", hook)

    def _add_hook(self, key: str, hook: Callable[..., Any]) -> RemovableHandle:
        hooks = self.__dict__.setdefault(key, {})
        handle = RemovableHandle(hooks, set())
        hooks[handle.id] = hook
        return handle

    def __init__(self, params: Any, defaults: dict[str, Any]):
        self.defaults = defaults
        if isinstance(params, self._tensor_type):
            raise self._type_error("params argument given to the optimizer should be an "
                                   "iterable of Tensors or dicts, but got "
                                   f"{params.type()}")
        self.state: defaultdict[Any, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if not groups:
            raise self._value_error("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (`defaults` fill the rest).

        Args:
            param_group: {"params": tensors, hyperparameter: value, ...}; kept, as in torch.

        Raises:
            TypeError: not a dict, a set of params, or a param that is not a tensor.
            ValueError: a non-leaf, a required hyperparameter missing, or a parameter that is
                already in a group.
        """
        if not isinstance(param_group, dict):
            raise self._type_error(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, self._tensor_type):
            param_group["params"] = [params]
        elif isinstance(params, set):
            raise self._type_error("optimizer parameters need to be organized in ordered "
                                   "collections, but the ordering of tensors in sets will "
                                   "change between runs. Please use a list instead.")
        else:
            param_group["params"] = list(params)
        for p in param_group["params"]:
            if not isinstance(p, self._tensor_type):
                raise self._type_error("optimizer can only optimize Tensors, but one of the "
                                       "params is " + typename(p))
            if not self.defaults.get("differentiable", None) and not (p.is_leaf or
                                                                      p.retains_grad):
                raise self._value_error("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise self._value_error("parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            param_group.setdefault(name, default)
        ids = [id(p) for p in param_group["params"]]
        if len(ids) != len(set(ids)):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; in "
                          "future, this will cause an error; see "
                          "github.com/pytorch/pytorch/issues/40967 for more information",
                          stacklevel=3)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if not seen.isdisjoint(ids):
            raise self._value_error("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all parameters: to None, or to zeros in place.

        Args:
            set_to_none: drop `.grad` (the default), else detach it and zero it in place.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:  # torch's `if p.grad is not None: p.grad = None`, without the
                    p.grad = None  # read (a session's round trip)
                    continue
                grad = p.grad
                if grad is None:
                    continue
                else:
                    if grad.grad_fn is not None:
                        grad.detach_()
                    else:
                        grad.requires_grad_(False)
                    grad.zero_()

    def step(self, closure: Any = None) -> Any:
        """Perform one optimization step (a subclass's to write).

        Raises:
            NotImplementedError: always, in the base class.
        """
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """{"state": {index: state}, "param_groups": [{..., "params": [index, ...]}]}.

        Returns:
            torch's layout: parameters numbered across groups in order; the state's values are
            this optimizer's own objects (not copies), as in torch.
        """
        mapping: dict[int, int] = {}
        start = 0
        packed_groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for i, p in enumerate(group["params"], start):
                mapping.setdefault(id(p), i)
            packed["params"] = [mapping[id(p)] for p in group["params"]]
            start += len(packed["params"])
            packed_groups.append(packed)
        state = {(mapping[id(k)] if isinstance(k, self._tensor_type) else k): v
                 for k, v in self.state.items()}
        return {"state": state, "param_groups": packed_groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load hyperparameters and state from `state_dict()`'s output.

        Args:
            state_dict: as `state_dict()` returns it (of an optimizer of the same groups).

        Raises:
            ValueError: a different number of groups, or a group of a different size.
        """
        groups = self.param_groups
        saved_groups = copy.deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise self._value_error("loaded state dict has a different number of parameter "
                                    "groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise self._value_error("loaded state dict contains a parameter group that doesn't "
                                    "match the size of optimizer's group")
        id_map = dict(zip(chain.from_iterable(g["params"] for g in saved_groups),
                          chain.from_iterable(g["params"] for g in groups)))
        state: defaultdict[Any, dict[str, Any]] = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                param = id_map[k]
                state[param] = self._cast(param, v)
            else:
                state[k] = v
        for group, saved in zip(groups, saved_groups):
            saved["params"] = group["params"]
        self.state = state
        self.param_groups = saved_groups

    def _cast(self, param: Any, value: Any, key: Any = None) -> Any:
        """A loaded state value as torch casts it: floating tensors to the parameter's dtype
        (except "step"), containers element by element."""
        if isinstance(value, self._tensor_type):
            if key != "step" and param.is_floating_point() and value.dtype != param.dtype:
                return value.to(param.dtype)
            return value
        if isinstance(value, dict):
            return {k: self._cast(param, v, k) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._cast(param, v, key) for v in value)
        return value

    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        text = f"{type(self).__name__} ("
        for i, group in enumerate(self.param_groups):
            text += f"\nParameter Group {i}\n"
            text += "".join(f"    {k}: {group[k]}\n" for k in sorted(group) if k != "params")
        return text + ")"


__all__ = ["Optimizer", "check_hyperparameters", "required", "typename"]
