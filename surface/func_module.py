"""torch.func.functional_call and stack_module_state, written once against a torch-like
namespace: a module called with other tensors in place of its parameters and buffers, and the
stacked state of an ensemble of modules (for `vmap` over models)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .functional import ErrorTypes

_MISSING = object()


def _merged(dicts: Any) -> dict[str, Any]:
    if isinstance(dicts, dict):
        return dicts
    if isinstance(dicts, (list, tuple)):
        for d in dicts:
            if not isinstance(d, dict):
                raise ValueError("Expected all elements of parameter_and_buffer_dicts to be "
                                 f"dictionaries but got {type(d)}")
        seen: dict[str, Any] = {}
        repeated = []
        for d in dicts:
            for k in d:
                if k in seen:
                    repeated.append(k)
                seen[k] = d[k]
        if repeated:
            raise ValueError(f"{repeated} appeared in multiple dictionaries; behavior of "
                             "functional call is ambiguous")
        return seen
    raise ValueError("Expected parameter_and_buffer_dicts to be a dict, or a list/tuple of "
                     f"dicts, but got {type(dicts)}")


def _named_tensors(module: Any) -> dict[str, Any]:
    named = dict(module.named_parameters(remove_duplicate=False))
    named.update(module.named_buffers(remove_duplicate=False))
    return named


def _untied(module: Any, given: dict[str, Any]) -> dict[str, Any]:
    """torch's _untie_named_tensors_map: a value given for one name of tied tensors goes to
    every name of them."""
    by_tensor: dict[int, set[str]] = {}
    for name, tensor in _named_tensors(module).items():
        by_tensor.setdefault(id(tensor), set()).add(name)
    tied = {n: names for names in by_tensor.values() if len(names) > 1 for n in names}
    given_tied = {n for n in given if n in tied}
    for name in given_tied:
        names = tied[name]
        values = {id(given[n]) for n in names if n in given}
        if len(names & given_tied) > 1 and len(values) != 1:
            raise ValueError(f"functional_call got multiple values for keys {sorted(names)}, "
                             "which are tied. Consider using tie_weights=False")
    out = dict(given)
    for name in given_tied:
        for other in tied[name]:
            out[other] = given[name]
    return out


class ModuleState:
    """functional_call and stack_module_state bound to one namespace."""

    def __init__(self, namespace: Callable[[], Any], errors: ErrorTypes):
        self._ns = namespace
        self._errors = errors

    def functional_call(self, module: Any, parameter_and_buffer_dicts: Any, args: Any = None,
                        kwargs: dict[str, Any] | None = None, *, tie_weights: bool = True,
                        strict: bool = False) -> Any:
        """torch.func.functional_call: `module(*args, **kwargs)` with the named tensors of
        `parameter_and_buffer_dicts` in place of its parameters and buffers (restored after).

        Args:
            module: an nn.Module.
            parameter_and_buffer_dicts: a dict of dotted name -> Tensor, or a list/tuple of
                such dicts (a name in two of them is an error).
            args: the positional argument(s) (one non-tuple is one argument).
            kwargs: keyword arguments.
            tie_weights: a value given for one of tied tensors replaces all of them.
            strict: every parameter and buffer must be given, and nothing else.
        Returns:
            What the module returns.
        Raises:
            ValueError, RuntimeError, TypeError, AttributeError: torch's messages.
        """
        given = _merged(parameter_and_buffer_dicts)
        if args is None:
            args = ()
        elif not isinstance(args, tuple):
            args = (args,)
        with self._reparametrized(module, given, tie_weights, strict):
            return module(*args, **(kwargs or {}))

    @contextmanager
    def _reparametrized(self, module: Any, given: dict[str, Any], tie_weights: bool,
                        strict: bool) -> Iterator[None]:
        values = _untied(module, given) if tie_weights else dict(given)
        if strict:
            valid = set(_named_tensors(module))
            missing, unexpected = sorted(valid - set(given)), sorted(set(given) - valid)
            msgs = []
            if unexpected:
                msgs.append(f"Unexpected key(s): {', '.join(map(repr, unexpected))}.")
            if missing:
                msgs.append(f"Missing key(s): {', '.join(map(repr, missing))}.")
            if msgs:
                raise self._errors.runtime(f"Error(s) in reparametrizing for "
                                           f"{module._get_name()}:\n\t" + "\n\t".join(msgs))
        originals: list[tuple[Any, str, Any]] = []
        try:
            for name, tensor in values.items():
                owner, _, attr = self._owner(module, name)
                if not isinstance(tensor, self._ns().Tensor):
                    raise self._errors.type(f"{tensor} is not an instance of torch.Tensor")
                originals.append((owner, attr, self._swap(owner, attr, tensor)))
            yield
        finally:
            for owner, attr, orig in reversed(originals):
                self._swap(owner, attr, orig)

    @staticmethod
    def _owner(module: Any, name: str) -> tuple[Any, str, str]:
        *path, attr = name.split(".")
        owner = module
        for part in path:
            sub = owner._modules.get(part) if part in owner._modules else getattr(
                owner, part, _MISSING)
            if sub is _MISSING:
                raise AttributeError(f"{owner._get_name()} has no attribute `{part}`")
            owner = sub
        return owner, name, attr

    @staticmethod
    def _swap(owner: Any, attr: str, value: Any) -> Any:
        """Put `value` (or nothing, for _MISSING) at `owner.attr`; returns what was there."""
        for table in (owner._parameters, owner._buffers):
            if attr in table:
                orig = table[attr]
                table[attr] = value
                return orig
        orig = owner.__dict__.get(attr, _MISSING)
        if value is _MISSING:
            owner.__dict__.pop(attr, None)
        else:
            owner.__dict__[attr] = value
        return orig

    def stack_module_state(self, models: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """torch.func.stack_module_state: each parameter and buffer stacked over `models`
        (leaves again: parameters that require grad are new leaves requiring grad).

        Args:
            models: a sequence of modules of one class, all in training or all in eval mode.
        Returns:
            (params, buffers): dicts of dotted name -> stacked Tensor.
        Raises:
            RuntimeError: no models, mixed modes or classes, mixed requires_grad (torch's
                messages).
        """
        models = list(models)
        if not models:
            raise self._errors.runtime("stack_module_state: Expected at least one model, got 0.")
        if not (all(m.training for m in models) or all(not m.training for m in models)):
            raise self._errors.runtime("stack_module_state: Expected all models to have the "
                                       "same training/eval mode.")
        if any(type(m) is not type(models[0]) for m in models):
            raise self._errors.runtime("stack_module_state: Expected all models to be of the "
                                       "same class.")
        params = [dict(m.named_parameters()) for m in models]
        buffers = [dict(m.named_buffers()) for m in models]
        return ({k: self._stacked([p[k] for p in params], k) for k in params[0]},
                {k: self._stacked([b[k] for b in buffers], k) for k in buffers[0]})

    def _stacked(self, tensors: list[Any], name: str) -> Any:
        flags = {bool(t.requires_grad) for t in tensors}
        if len(flags) > 1:
            raise self._errors.runtime(f"Expected {name} from each model to have the same "
                                       ".requires_grad")
        t = self._ns()
        result = t.stack(tensors)
        return result.detach().requires_grad_() if True in flags else result
