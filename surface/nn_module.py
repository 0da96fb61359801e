"""`torch.nn.Module`, written once for every backend.

A Module keeps torch's three registries (`_parameters`, `_buffers`, `_modules`) and its
attribute rules (`__setattr__` files a Parameter, a Module or a buffer tensor under its name,
`__getattr__` finds it there, `__delattr__` removes it), so names, order, `state_dict` keys,
reprs and error texts are torch's. The tensors are the backend's own: in process, engine tensors;
for a session, handles to tensors the server holds (a module's forward records ops like any
other code). `gradserve.surface.nn.build` makes a backend's classes (each has `_be`).
"""

from __future__ import annotations

import itertools
import operator
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

from . import grad_mode
from .nn_backend import NNBackend
from .nn_parameter import UninitializedParameter, typename


class IncompatibleKeys(NamedTuple):
    """What `load_state_dict` did not match (torch's `_IncompatibleKeys`)."""

    missing_keys: list[str]
    unexpected_keys: list[str]

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return (f"_IncompatibleKeys(missing_keys={self.missing_keys}, "
                f"unexpected_keys={self.unexpected_keys})")


class RemovableHandle:
    """What `register_forward_hook` returns: `remove()` takes the hook out (a context manager
    removes it on exit), as torch.utils.hooks.RemovableHandle."""

    _next_id = itertools.count()

    def __init__(self, hooks: dict[int, Any], with_kwargs: set[int],
                 extra: tuple[Any, ...] = ()):
        self.id = next(RemovableHandle._next_id)
        self._hooks = hooks
        self._with_kwargs = with_kwargs
        self._extra = extra  # further tables keyed by the hook's id (always_call)

    def remove(self) -> None:
        """Remove the hook (again: nothing)."""
        self._hooks.pop(self.id, None)
        self._with_kwargs.discard(self.id)
        for table in self._extra:
            table.discard(self.id) if isinstance(table, set) else table.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


_MIXED_BACKWARD_HOOKS = ("Cannot use both regular backward hooks and full backward hooks on a "
                         "single Module. Please use only one of them.")


def _pack_with_none(indices: list[int], values: Any, size: int) -> tuple[Any, ...]:
    res: list[Any] = [None] * size
    for idx, val in zip(indices, values):
        res[idx] = val
    return tuple(res)


# --- hooks common to all modules (torch.nn.modules.module.register_module_*) ---------------------
# Process-wide, as torch's: shared by the engine's modules and every session's in this process.

_global_buffer_registration_hooks: dict[int, Callable[..., Any]] = {}
_global_module_registration_hooks: dict[int, Callable[..., Any]] = {}
_global_parameter_registration_hooks: dict[int, Callable[..., Any]] = {}
_global_backward_pre_hooks: dict[int, Callable[..., Any]] = {}
_global_backward_hooks: dict[int, Callable[..., Any]] = {}
_global_is_full_backward_hook: list[bool | None] = [None]  # torch's flag; never reset
_global_forward_pre_hooks: dict[int, Callable[..., Any]] = {}
_global_forward_hooks: dict[int, Callable[..., Any]] = {}
_global_forward_hooks_always_called: set[int] = set()
_global_forward_hooks_with_kwargs: set[int] = set()

_MIXED_GLOBAL_BACKWARD_HOOKS = ("Cannot use both regular backward hooks and full backward hooks "
                                "as a global Module hook. Please use only one of them.")


def _global_hook(table: dict[int, Any], hook: Callable[..., Any],
                 extra: tuple[Any, ...] = ()) -> RemovableHandle:
    handle = RemovableHandle(table, set(), extra)
    table[handle.id] = hook
    return handle


def register_module_buffer_registration_hook(hook: Callable[..., Any]) -> RemovableHandle:
    """Call `hook(module, name, buffer)` whenever any module registers a buffer; a non-None
    result is registered instead.

    Returns:
        A handle whose `remove()` takes the hook out.
    """
    return _global_hook(_global_buffer_registration_hooks, hook)


def register_module_module_registration_hook(hook: Callable[..., Any]) -> RemovableHandle:
    """Call `hook(module, name, submodule)` whenever any module registers a submodule; a
    non-None result is registered instead.

    Returns:
        A handle whose `remove()` takes the hook out.
    """
    return _global_hook(_global_module_registration_hooks, hook)


def register_module_parameter_registration_hook(hook: Callable[..., Any]) -> RemovableHandle:
    """Call `hook(module, name, param)` whenever any module registers a parameter; a non-None
    result is registered instead.

    Returns:
        A handle whose `remove()` takes the hook out.
    """
    return _global_hook(_global_parameter_registration_hooks, hook)


def register_module_forward_pre_hook(hook: Callable[..., Any]) -> RemovableHandle:
    """Call `hook(module, args)` before every module's forward, before the module's own
    pre-hooks; a non-None result replaces the positional arguments.

    Returns:
        A handle whose `remove()` takes the hook out.
    """
    return _global_hook(_global_forward_pre_hooks, hook)


def register_module_forward_hook(hook: Callable[..., Any], *, with_kwargs: bool = False,
                                 always_call: bool = False) -> RemovableHandle:
    """Call `hook(module, args, output)` (or `(module, args, kwargs, output)`) after every
    module's forward, before the module's own forward hooks; a non-None result replaces the
    output.

    Args:
        hook: the function to call.
        with_kwargs: pass the forward's keyword arguments too.
        always_call: call it also when the forward (or an earlier hook) raised.

    Returns:
        A handle whose `remove()` takes the hook out.
    """
    handle = _global_hook(_global_forward_hooks, hook, (_global_forward_hooks_always_called,))
    if with_kwargs:
        _global_forward_hooks_with_kwargs.add(handle.id)
    if always_call:
        _global_forward_hooks_always_called.add(handle.id)
    return handle


def register_module_backward_hook(hook: Callable[..., Any]) -> RemovableHandle:
    """torch's deprecated global module backward hook (see Module.register_backward_hook).

    Returns:
        A handle whose `remove()` takes the hook out.

    Raises:
        RuntimeError: global full backward hooks were registered before.
    """
    if _global_is_full_backward_hook[0] is True:
        raise RuntimeError(_MIXED_GLOBAL_BACKWARD_HOOKS)
    _global_is_full_backward_hook[0] = False
    return _global_hook(_global_backward_hooks, hook)


def register_module_full_backward_pre_hook(hook: Callable[..., Any]) -> RemovableHandle:
    """Call `hook(module, grad_output)` for every module, before the module's own backward
    pre-hooks (as Module.register_full_backward_pre_hook).

    Returns:
        A handle whose `remove()` takes the hook out.
    """
    return _global_hook(_global_backward_pre_hooks, hook)


def register_module_full_backward_hook(hook: Callable[..., Any]) -> RemovableHandle:
    """Call `hook(module, grad_input, grad_output)` for every module, before the module's own
    full backward hooks (as Module.register_full_backward_hook).

    Returns:
        A handle whose `remove()` takes the hook out.

    Raises:
        RuntimeError: global (non-full) backward hooks were registered before.
    """
    if _global_is_full_backward_hook[0] is False:
        raise RuntimeError(_MIXED_GLOBAL_BACKWARD_HOOKS)
    _global_is_full_backward_hook[0] = True
    return _global_hook(_global_backward_hooks, hook)


GLOBAL_HOOK_FUNCTIONS = (
    register_module_buffer_registration_hook, register_module_module_registration_hook,
    register_module_parameter_registration_hook, register_module_forward_pre_hook,
    register_module_forward_hook, register_module_backward_hook,
    register_module_full_backward_pre_hook, register_module_full_backward_hook)
"""What torch.nn.modules.module offers beside Module (each namespace's `nn.modules.module`)."""


def _registered(table: dict[int, Callable[..., Any]], module: Any, name: str, value: Any) -> Any:
    """`value` after the global registration hooks of `table` (each may replace it)."""
    for hook in list(table.values()):
        output = hook(module, name, value)
        if output is not None:
            value = output
    return value


class _BackwardHook:
    """torch.utils.hooks.BackwardHook: routes a module call's tensor inputs and outputs through
    an identity Function named BackwardHookFunction (so their grad_fn prints as torch's) whose
    backward calls the module's full backward pre-hooks (outputs) and full backward hooks
    (inputs), once per pass."""

    def __init__(self, module: Module, hooks: list[Callable[..., Any]],
                 pre_hooks: list[Callable[..., Any]]):
        self.module = module
        self.hooks = hooks
        self.pre_hooks = pre_hooks
        self.grad_outputs: tuple[Any, ...] | None = None
        self.n_outputs = -1
        self.output_index: list[int] | None = None
        self.n_inputs = -1
        self.input_index: list[int] | None = None

    def _apply(self, on_backward: Callable[[tuple[Any, ...]], tuple[Any, ...]],
               args: tuple[Any, ...]) -> tuple[tuple[Any, ...], list[int] | None]:
        be = self.module._be
        index = [i for i, a in enumerate(args) if be.is_tensor(a)]
        tensors = [args[i] for i in index]
        if not (any(t.requires_grad for t in tensors) and grad_mode.is_grad_enabled()):
            return args, None
        new = _hook_function(be).apply(on_backward, *tensors)
        if not isinstance(new, tuple):
            new = (new,)
        out = list(args)
        for i, t in zip(index, new):
            if args[i].requires_grad:  # the others stay as they were: torch marks them
                out[i] = t             # non-differentiable (no grad_fn)
        return tuple(out), index

    def setup_input_hook(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        def on_backward(grad_input: tuple[Any, ...]) -> tuple[Any, ...]:
            if self.grad_outputs is None:
                return grad_input
            assert self.input_index is not None
            res = _pack_with_none(self.input_index, grad_input, self.n_inputs)
            for hook in self.hooks:
                out = hook(self.module, res, self.grad_outputs)
                if out is None:
                    continue
                if len(out) != len(res):
                    raise RuntimeError("Backward hook returned an invalid number of grad_input, "
                                       f"got {len(out)}, but expected {len(res)}")
                res = out
            self.grad_outputs = None
            return tuple(res[i] for i in self.input_index)

        res, self.input_index = self._apply(on_backward, args)
        self.n_inputs = len(args)
        return res

    def setup_output_hook(self, result: Any) -> Any:
        def on_backward(grad_output: tuple[Any, ...]) -> tuple[Any, ...]:
            assert self.output_index is not None
            self.grad_outputs = _pack_with_none(self.output_index, grad_output, self.n_outputs)
            for pre_hook in self.pre_hooks:
                new = pre_hook(self.module, self.grad_outputs)
                if new is None:
                    continue
                if len(new) != len(self.grad_outputs):
                    raise RuntimeError("Backward pre hook returned an invalid number of "
                                       f"grad_output, got {len(new)}, but expected "
                                       f"{len(self.grad_outputs)}")
                self.grad_outputs = new
            local = self.grad_outputs
            if self.input_index is None:
                warnings.warn(
                    "Full backward hook is firing when gradients are computed with respect to "
                    "module outputs since no inputs require gradients. See "
                    "https://docs.pytorch.org/docs/main/generated/torch.nn.Module.html"
                    "#torch.nn.Module.register_full_backward_hook for more details.",
                    stacklevel=5)
                grad_inputs = _pack_with_none([], [], self.n_inputs)
                for hook in self.hooks:
                    res = hook(self.module, grad_inputs, self.grad_outputs)
                    if res is not None and not (isinstance(res, tuple)
                                                and all(el is None for el in res)):
                        raise RuntimeError("Backward hook for Modules where no input requires "
                                           "gradient should always return None or None for "
                                           "all gradients.")
                self.grad_outputs = None
            return tuple(local[i] for i in self.output_index)

        is_tuple = isinstance(result, tuple)
        args = result if is_tuple else (result,)
        res, self.output_index = self._apply(on_backward, args)
        self.n_outputs = len(args)
        return res if is_tuple else res[0]


def _hook_function(be: NNBackend) -> Any:
    """torch.nn.modules._functions.BackwardHookFunction for `be`'s autograd.Function: an
    identity whose backward hands its gradients to the callable passed first to apply (made
    per call: a class cached per session would keep the session alive)."""

    def forward(ctx: Any, on_backward: Any, *args: Any) -> Any:
        ctx.mark_non_differentiable(*[a for a in args if not a.requires_grad])
        ctx.on_backward = on_backward
        return args

    def backward(ctx: Any, *grads: Any) -> Any:
        return (None, *ctx.on_backward(grads))

    return type("BackwardHookFunction", (be.torch.autograd.Function,),
                {"forward": staticmethod(forward), "backward": staticmethod(backward)})


def _addindent(text: str, spaces: int) -> str:
    first, *rest = text.split("\n")
    if not rest:
        return text
    return first + "\n" + "\n".join(" " * spaces + line for line in rest)


# --- Module --------------------------------------------------------------------------------------

class Module:
    """Base class for all neural network modules (torch.nn.Module).

    Subclasses assign Parameters, Modules and buffers as attributes in `__init__` (after
    `super().__init__()`) and define `forward`; calling the module calls `forward`.
    """

    _be: NNBackend  # the backend, set on each backend's classes by gradserve.surface.nn.build
    training: bool
    _parameters: dict[str, Any]
    _buffers: dict[str, Any]
    _non_persistent_buffers_set: set[str]
    _modules: dict[str, Module | None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs:
            raise TypeError(f"{type(self).__name__}.__init__() got an unexpected keyword "
                            f"argument '{next(iter(kwargs))}'")
        if args:
            raise TypeError(f"{type(self).__name__}.__init__() takes 1 positional argument but "
                            f"{len(args) + 1} were given")
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent_buffers_set", set())
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_hooks_with_kwargs", set())
        object.__setattr__(self, "_backward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_backward_hooks", OrderedDict())
        object.__setattr__(self, "_is_full_backward_hook", None)
        object.__setattr__(self, "_forward_hooks_always_called", set())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation; every subclass defines it."""
        raise NotImplementedError(
            f'Module [{type(self).__name__}] is missing the required "forward" function')

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        d = self.__dict__
        if not (d.get("_forward_pre_hooks") or d.get("_forward_hooks")
                or d.get("_backward_hooks") or d.get("_backward_pre_hooks")
                or _global_forward_pre_hooks or _global_forward_hooks
                or _global_backward_hooks or _global_backward_pre_hooks):
            return self.forward(*args, **kwargs)
        return self._call_with_hooks(args, kwargs)

    def _call_with_hooks(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """torch's `Module._call_impl` with hooks: the global hooks, then the module's; on an
        exception, the forward hooks registered with `always_call` that have not run yet."""
        d = self.__dict__
        with_kwargs = d["_hooks_with_kwargs"]
        always = d.setdefault("_forward_hooks_always_called", set())
        called: set[int] = set()
        result: Any = None
        try:
            bw, bw_pre = d["_backward_hooks"], d["_backward_pre_hooks"]
            full = [*(_global_backward_hooks.values()
                      if _global_is_full_backward_hook[0] is True else ()),
                    *(bw.values() if d["_is_full_backward_hook"] is True else ())]
            non_full = [*(_global_backward_hooks.values()
                          if _global_is_full_backward_hook[0] is False else ()),
                        *(bw.values() if d["_is_full_backward_hook"] is False else ())]
            pre_bw = [*_global_backward_pre_hooks.values(), *bw_pre.values()]
            for key, hook in [*_global_forward_pre_hooks.items(),
                              *d["_forward_pre_hooks"].items()]:
                if key in with_kwargs:
                    res = hook(self, args, kwargs)
                    if res is not None:
                        if not (isinstance(res, tuple) and len(res) == 2):
                            raise RuntimeError("forward pre-hook must return None or a tuple of "
                                               f"(new_args, new_kwargs), but got {res}.")
                        args, kwargs = res
                else:
                    res = hook(self, args)
                    if res is not None:
                        args = res if isinstance(res, tuple) else (res,)
            bw_hook = None
            if full or pre_bw:
                bw_hook = _BackwardHook(self, full, pre_bw)
                args = bw_hook.setup_input_hook(args)
            result = self.forward(*args, **kwargs)
            for key, hook in [*_global_forward_hooks.items(), *d["_forward_hooks"].items()]:
                if key in always or key in _global_forward_hooks_always_called:
                    called.add(key)
                res = (hook(self, args, kwargs, result)
                       if key in with_kwargs or key in _global_forward_hooks_with_kwargs
                       else hook(self, args, result))
                if res is not None:
                    result = res
            if bw_hook is not None:
                result = bw_hook.setup_output_hook(result)
            if non_full:
                self._set_non_full_hooks(non_full, args, result)
            return result
        except Exception:
            # torch runs the always_call forward hooks that have not run, silencing their errors
            # (global ones get no kwargs, as in torch)
            for key, hook in list(_global_forward_hooks.items()):
                if key in _global_forward_hooks_always_called and key not in called:
                    try:
                        res = hook(self, args, result)
                        if res is not None:
                            result = res
                    except Exception as e:
                        warnings.warn("global module forward hook with ``always_call=True`` "
                                      "raised an exception that was silenced as another error "
                                      f"was raised in forward: {str(e)}", stacklevel=2)
            for key, hook in list(d["_forward_hooks"].items()):
                if key in always and key not in called:
                    try:
                        res = (hook(self, args, kwargs, result) if key in with_kwargs
                               else hook(self, args, result))
                        if res is not None:
                            result = res
                    except Exception as e:
                        warnings.warn("module forward hook with ``always_call=True`` raised an "
                                      "exception that was silenced as another error was raised "
                                      f"in forward: {str(e)}", stacklevel=2)
            raise

    def _set_non_full_hooks(self, hooks: list[Callable[..., Any]], args: tuple[Any, ...],
                            result: Any) -> None:
        """torch's deprecated module backward hooks: each becomes a hook on the grad_fn of the
        first tensor in `result`, called as `hook(module, grad_input, grad_output)`."""
        be = self._be
        var = result
        while not be.is_tensor(var):
            var = (next(v for v in var.values() if be.is_tensor(v)) if isinstance(var, dict)
                   else var[0])
        grad_fn = var.grad_fn
        if grad_fn is None:
            return
        for hook in hooks:
            grad_fn.register_hook(lambda gi, go, hook=hook: hook(self, gi, go))
        results = result if isinstance(result, tuple) else (result,)
        if not all(be.is_tensor(r) for r in results):
            warnings.warn(
                "Using non-full backward hooks on a Module that does not return a single Tensor "
                "or a tuple of Tensors is deprecated and will be removed in future versions. "
                "This hook will be missing some of the grad_output. Please use "
                "register_full_backward_hook to get the documented behavior.",
                FutureWarning, stacklevel=3)
        elif not all(be.is_tensor(a) for a in args):
            warnings.warn(
                "Using non-full backward hooks on a Module that does not take as input a single "
                "Tensor or a tuple of Tensors is deprecated and will be removed in future "
                "versions. This hook will be missing some of the grad_input. Please use "
                "register_full_backward_hook to get the documented behavior.",
                FutureWarning, stacklevel=3)
        elif not be.remote_metadata:  # a session's nodes have no identity to compare here
            out_fns = {id(r.grad_fn): r.grad_fn for r in results if r.grad_fn is not None}
            if not out_fns or (len(out_fns) == 1 and id(grad_fn) not in out_fns):
                warnings.warn(
                    "Using a non-full backward hook when outputs are nested in python data "
                    "structure is deprecated and will be removed in future versions. This hook "
                    "will be missing some grad_output.", FutureWarning, stacklevel=3)
            elif len(out_fns) > 1:
                warnings.warn(
                    "Using a non-full backward hook when outputs are generated by different "
                    "autograd Nodes is deprecated and will be removed in future versions. This "
                    "hook will be missing some grad_output. Please use "
                    "register_full_backward_hook to get the documented behavior.",
                    FutureWarning, stacklevel=3)
            elif ({id(a.grad_fn) for a in args if a.grad_fn is not None}
                  != {id(n) for n, _ in grad_fn.next_functions}):
                warnings.warn(
                    "Using a non-full backward hook when the forward contains multiple autograd "
                    "Nodes is deprecated and will be removed in future versions. This hook will "
                    "be missing some grad_input. Please use register_full_backward_hook to get "
                    "the documented behavior.", FutureWarning, stacklevel=3)

    def _add_hook(self, table: str, hook: Callable[..., Any], prepend: bool,
                  with_kwargs: bool) -> RemovableHandle:
        hooks = self.__dict__[table]
        handle = RemovableHandle(hooks, self.__dict__["_hooks_with_kwargs"])
        hooks[handle.id] = hook
        if with_kwargs:
            self.__dict__["_hooks_with_kwargs"].add(handle.id)
        if prepend:
            hooks_in_order = {handle.id: hook, **{k: v for k, v in hooks.items()
                                                  if k != handle.id}}
            hooks.clear()
            hooks.update(hooks_in_order)
        return handle

    def register_forward_pre_hook(self, hook: Callable[..., Any], *, prepend: bool = False,
                                  with_kwargs: bool = False) -> RemovableHandle:
        """Call `hook(module, args)` (or `(module, args, kwargs)`) before each forward; a
        non-None result replaces the arguments. Returns a handle whose `remove()` undoes it."""
        return self._add_hook("_forward_pre_hooks", hook, prepend, with_kwargs)

    def register_forward_hook(self, hook: Callable[..., Any], *, prepend: bool = False,
                              with_kwargs: bool = False, always_call: bool = False
                              ) -> RemovableHandle:
        """Call `hook(module, args, output)` (or `(module, args, kwargs, output)`) after each
        forward; a non-None result replaces the output. With `always_call`, also when the
        forward raised. Returns a handle (`remove()`)."""
        always = self.__dict__.setdefault("_forward_hooks_always_called", set())
        handle = self._add_hook("_forward_hooks", hook, prepend, with_kwargs)
        handle._extra = (always,)
        if always_call:
            always.add(handle.id)
        return handle

    def register_full_backward_pre_hook(self, hook: Callable[..., Any], prepend: bool = False,
                                        ) -> RemovableHandle:
        """Call `hook(module, grad_output)` when the gradients of the module's outputs are
        computed, before its inputs' gradients.

        Args:
            hook: called as `hook(module, grad_output)`; `grad_output` is a tuple with one entry
                per output (None for a non-tensor output); a non-None result (a tuple of the
                same length) replaces it.
            prepend: call this hook before the ones already registered.

        Returns:
            A handle whose `remove()` takes the hook out.
        """
        return self._add_hook("_backward_pre_hooks", hook, prepend, False)

    def register_full_backward_hook(self, hook: Callable[..., Any], prepend: bool = False,
                                    ) -> RemovableHandle:
        """Call `hook(module, grad_input, grad_output)` once per backward pass, when the
        gradients of the module's inputs are computed (torch's full backward hook).

        Args:
            hook: called as `hook(module, grad_input, grad_output)`, tuples with one entry per
                positional input and per output (None where there is no gradient); a non-None
                result (a tuple as long as `grad_input`) replaces the inputs' gradients.
            prepend: call this hook before the ones already registered.

        Returns:
            A handle whose `remove()` takes the hook out.

        Raises:
            RuntimeError: the module has hooks from `register_backward_hook`.
        """
        if self.__dict__["_is_full_backward_hook"] is False:
            raise RuntimeError(_MIXED_BACKWARD_HOOKS)
        self.__dict__["_is_full_backward_hook"] = True
        return self._add_hook("_backward_hooks", hook, prepend, False)

    def register_backward_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """torch's deprecated module backward hook: `hook(module, grad_input, grad_output)` runs
        as a hook on the grad_fn of the module's first output (the gradients of that one node).

        Args:
            hook: called as `hook(module, grad_input, grad_output)`; a non-None result replaces
                grad_input.

        Returns:
            A handle whose `remove()` takes the hook out.

        Raises:
            RuntimeError: the module already has full backward hooks.
        """
        if self.__dict__["_is_full_backward_hook"] is True:
            raise RuntimeError(_MIXED_BACKWARD_HOOKS)
        self.__dict__["_is_full_backward_hook"] = False
        return self._add_hook("_backward_hooks", hook, False, False)

    # --- registration ---------------------------------------------------------------------------

    def _check_name(self, kind: str, name: Any, table: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string. Got {typename(self._be, name)}")
        if "." in name:
            raise KeyError(f"{kind} name can't contain \".\"")
        if name == "":
            raise KeyError(f"{kind} name can't be empty string \"\"")
        if hasattr(self, name) and name not in self.__dict__[table]:
            raise KeyError(f"attribute '{name}' already exists")

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        """Add a tensor that is state but not a parameter (in state_dict when persistent).

        Raises:
            AttributeError: before Module.__init__(); KeyError: a bad or taken name;
            TypeError: `tensor` is neither a tensor nor None.
        """
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        self._check_name("buffer", name, "_buffers")
        if tensor is not None and not self._be.is_tensor(tensor):
            raise TypeError(f"cannot assign '{typename(self._be, tensor)}' object to buffer "
                            f"'{name}' (torch Tensor or None required)")
        self._buffers[name] = _registered(_global_buffer_registration_hooks, self, name, tensor)
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def register_parameter(self, name: str, param: Any) -> None:
        """Add a parameter (a Parameter, or None for an absent one such as `bias=False`).

        Raises:
            AttributeError: before Module.__init__(); KeyError: a bad or taken name;
            TypeError: not a Parameter; ValueError: a non-leaf.
        """
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        self._check_name("parameter", name, "_parameters")
        if param is not None and not isinstance(param, UninitializedParameter):
            if not self._be.is_parameter(param):
                raise TypeError(f"cannot assign '{typename(self._be, param)}' object to "
                                f"parameter '{name}' (torch.nn.Parameter or None required)")
            if param.grad_fn is not None:
                raise ValueError(
                    f"Cannot assign non-leaf Tensor to parameter '{name}'. Model parameters "
                    f"must be created explicitly. To express '{name}' as a function of another "
                    "Tensor, compute the value in the forward() method.")
        self._parameters[name] = (None if param is None else  # torch calls no hook for None
                                  _registered(_global_parameter_registration_hooks, self, name,
                                              param))

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a child module (or None) under `name`.

        Raises:
            TypeError: not a Module; KeyError: a bad or taken name.
        """
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{typename(self._be, module)} is not a Module subclass")
        if not isinstance(name, str):
            raise TypeError(f"module name should be a string. Got {typename(self._be, name)}")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        if "." in name:
            raise KeyError(f"module name can't contain \".\", got: {name}")
        if name == "":
            raise KeyError("module name can't be empty string \"\"")
        self._modules[name] = _registered(_global_module_registration_hooks, self, name, module)

    register_module = add_module

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            if table in d and name in d[table]:
                return d[table][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__

        def remove_from(*tables: Any) -> None:
            for t in tables:
                if name in t:
                    if isinstance(t, dict):
                        del t[name]
                    else:
                        t.discard(name)

        params = d.get("_parameters")
        if self._be.is_parameter(value) or isinstance(value, UninitializedParameter):
            if params is None:
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            remove_from(d, d["_buffers"], d["_modules"], d["_non_persistent_buffers_set"])
            self.register_parameter(name, value)
            return
        if params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{typename(self._be, value)}' as parameter "
                                f"'{name}' (torch.nn.Parameter or None expected)")
            self.register_parameter(name, value)
            return
        modules = d.get("_modules")
        if isinstance(value, Module):
            if modules is None:
                raise AttributeError("cannot assign module before Module.__init__() call")
            remove_from(d, d["_parameters"], d["_buffers"], d["_non_persistent_buffers_set"])
            modules[name] = _registered(_global_module_registration_hooks, self, name, value)
            return
        if modules is not None and name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{typename(self._be, value)}' as child module "
                                f"'{name}' (torch.nn.Module or None expected)")
            modules[name] = _registered(_global_module_registration_hooks, self, name, value)
            return
        buffers = d.get("_buffers")
        if buffers is not None and name in buffers:
            if value is not None and not self._be.is_tensor(value):
                raise TypeError(f"cannot assign '{typename(self._be, value)}' as buffer '{name}' "
                                "(torch.nn.Buffer, torch.Tensor or None expected)")
            buffers[name] = _registered(_global_buffer_registration_hooks, self, name, value)
            return
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if name in self._parameters:
            del self._parameters[name]
        elif name in self._buffers:
            del self._buffers[name]
            self._non_persistent_buffers_set.discard(name)
        elif name in self._modules:
            del self._modules[name]
        else:
            object.__delattr__(self, name)

    def __dir__(self) -> list[str]:
        keys = [*dir(type(self)), *self.__dict__, *self._parameters, *self._modules,
                *self._buffers]
        return sorted(k for k in set(keys) if not k[0].isdigit())

    # --- traversal ------------------------------------------------------------------------------

    def _named_members(self, members: Callable[[Module], Any], prefix: str = "",
                       recurse: bool = True, remove_duplicate: bool = True
                       ) -> Iterator[tuple[str, Any]]:
        memo: set[int] = set()
        modules = (self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
                   if recurse else [(prefix, self)])
        for module_prefix, module in modules:
            for k, v in members(module):
                if v is None or id(v) in memo:
                    continue
                if remove_duplicate:
                    memo.add(id(v))
                yield module_prefix + ("." if module_prefix else "") + k, v

    def parameters(self, recurse: bool = True) -> Iterator[Any]:
        """The parameters (of submodules too when recurse), each once, in registration order."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Any]]:
        """(dotted name, parameter) pairs, as `parameters`."""
        yield from self._named_members(lambda m: m._parameters.items(), prefix, recurse,
                                       remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Any]:
        """The buffers (of submodules too when recurse)."""
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Any]]:
        """(dotted name, buffer) pairs."""
        yield from self._named_members(lambda m: m._buffers.items(), prefix, recurse,
                                       remove_duplicate)

    def children(self) -> Iterator[Module]:
        """The direct submodules, each once."""
        for _, m in self.named_children():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """(name, direct submodule) pairs, each module once."""
        memo: set[int] = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in memo:
                memo.add(id(module))
                yield name, module

    def modules(self) -> Iterator[Module]:
        """This module and every submodule, each once, depth first."""
        for _, m in self.named_modules():
            yield m

    def named_modules(self, memo: set[Any] | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """(dotted name, module) pairs for this module ('' or `prefix`) and every submodule."""
        if memo is None:
            memo = set()
        if self in memo:
            return
        if remove_duplicate:
            memo.add(self)
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            yield from module.named_modules(memo, prefix + ("." if prefix else "") + name,
                                            remove_duplicate)

    def get_submodule(self, target: str) -> Module:
        """The submodule at dotted path `target` ('' is this module).

        Raises:
            AttributeError: no such submodule, or not a Module.
        """
        if target == "":
            return self
        mod: Module = self
        for item in target.split("."):
            if not hasattr(mod, item):
                raise AttributeError(mod._get_name() + " has no attribute `" + item + "`")
            mod = getattr(mod, item)
            if not isinstance(mod, Module):
                raise AttributeError("`" + item + "` is not an nn.Module")
        return mod

    # --- state ----------------------------------------------------------------------------------

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "",
                   keep_vars: bool = False) -> dict[str, Any]:
        """An OrderedDict of every parameter and persistent buffer by dotted name (detached
        unless keep_vars)."""
        if args:  # torch's deprecated positional form (destination, prefix, keep_vars)
            given = dict(zip(("destination", "prefix", "keep_vars"), args))
            destination = given.get("destination", destination)
            prefix = given.get("prefix", prefix)
            keep_vars = given.get("keep_vars", keep_vars)
        if destination is None:
            destination = OrderedDict()
        for name, p in self._parameters.items():
            if p is not None:  # a lazy module's uninitialized one as it is, as torch's
                destination[prefix + name] = (
                    p if keep_vars or isinstance(p, UninitializedParameter) else p.detach())
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = b if keep_vars else b.detach()
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination=destination, prefix=prefix + name + ".",
                                  keep_vars=keep_vars)
        return destination  # type: ignore[no-any-return]

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str,
                              missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        be = self._be
        persistent = {k: v for k, v in self._buffers.items()
                      if k not in self._non_persistent_buffers_set}
        local_state = {k: v for k, v in itertools.chain(self._parameters.items(),
                                                        persistent.items()) if v is not None}
        for name, param in local_state.items():
            key = prefix + name
            if key not in state_dict:
                missing_keys.append(key)
                continue
            value = state_dict[key]
            if not be.is_tensor(value):
                error_msgs.append(
                    f'While copying the parameter named "{key}", expected torch.Tensor or '
                    f"Tensor-like object from checkpoint but received {type(value)}")
                continue
            if len(param.shape) == 0 and len(value.shape) == 1:
                value = value[0]  # torch's compatibility with 0.3's 1-element scalars
            if value.shape != param.shape:
                error_msgs.append(
                    f"size mismatch for {key}: copying a param with shape {value.shape} from "
                    f"checkpoint, the shape in current model is {param.shape}.")
                continue
            try:
                with grad_mode.no_grad():
                    param.copy_(value)
            except Exception as exc:  # noqa: BLE001 - reported in torch's words below
                error_msgs.append(
                    f'While copying the parameter named "{key}", whose dimensions in the model '
                    f"are {param.size()} and whose dimensions in the checkpoint are "
                    f"{value.size()}, an exception occurred : {exc.args}.")
        for key in state_dict:
            if key.startswith(prefix):
                first, *rest = key[len(prefix):].split(".", 1)
                if (first not in self._modules) if rest else (first not in local_state):
                    unexpected_keys.append(key)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> IncompatibleKeys:
        """Copy parameters and buffers from `state_dict` (under no_grad, keeping the objects).

        Returns:
            (missing_keys, unexpected_keys).

        Raises:
            TypeError: not a mapping. RuntimeError: torch's "Error(s) in loading state_dict
            for ..." listing size mismatches, and (when strict) missing and unexpected keys.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        if assign:
            raise NotImplementedError("load_state_dict(assign=True) is not supported by "
                                      "gradserve; the values are copied into the parameters")
        missing: list[str] = []
        unexpected: list[str] = []
        errors: list[str] = []

        def load(module: Module, local: Mapping[str, Any], prefix: str) -> None:
            module._load_from_state_dict(local, prefix, missing, unexpected, errors)
            for name, child in module._modules.items():
                if child is not None:
                    child_prefix = prefix + name + "."
                    load(child, {k: v for k, v in local.items() if k.startswith(child_prefix)},
                         child_prefix)

        load(self, OrderedDict(state_dict), "")
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in unexpected)))
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in missing)))
        if errors:
            raise RuntimeError("Error(s) in loading state_dict for {}:\n\t{}".format(
                type(self).__name__, "\n\t".join(errors)))
        return IncompatibleKeys(missing, unexpected)

    # --- modes and conversion -------------------------------------------------------------------

    def train(self, mode: bool = True) -> Module:
        """Set training mode (Dropout drops only in training) here and in every submodule."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.training = mode
        for module in self.children():
            module.train(mode)
        return self

    def eval(self) -> Module:
        """train(False)."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Set requires_grad on every parameter; returns self."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient: None (the default, as torch 2.x), or zeros."""
        for p in self.parameters():
            if set_to_none:
                p.grad = None  # no read first: on a session that would cost a round trip each
                continue
            g = p.grad
            if g is not None:
                if g.grad_fn is not None:
                    g.detach_()
                else:
                    g.requires_grad_(False)
                g.zero_()

    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call fn on every submodule (children first), then on self; returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    def _apply(self, fn: Callable[[Any], Any]) -> Module:
        for module in self.children():
            module._apply(fn)
        be = self._be
        for key, param in self._parameters.items():
            if param is None or isinstance(param, UninitializedParameter):
                continue
            with grad_mode.no_grad():
                applied = fn(param)
                if applied is param:
                    continue
                if not be.set_data(param, applied):  # torch keeps the Parameter object
                    self._parameters[key] = be.parameter(applied, param.requires_grad)
                    continue
                grad = param.grad
                if grad is not None:
                    grad_applied = fn(grad)
                    if grad_applied is not grad:
                        be.set_data(grad, grad_applied)
        for key, buf in self._buffers.items():
            if buf is not None:
                self._buffers[key] = fn(buf)
        return self

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """Convert floating parameters and buffers to a dtype (`to(torch.float64)`,
        `to(tensor)`); 'cpu' is the only device. In process a parameter stays the same object
        (its data is replaced, as torch's); through a session a converted parameter is a new
        Parameter: create optimizers after `to()`, as torch recommends."""
        dtype = kwargs.pop("dtype", None)
        device = kwargs.pop("device", None)
        kwargs.pop("non_blocking", None)
        memory_format = kwargs.pop("memory_format", None)
        if kwargs:
            raise TypeError(f"to() got an unexpected keyword argument '{next(iter(kwargs))}'")
        for a in args:
            if self._be.is_tensor(a):
                dtype = self._be.dtype_of(a)
            elif isinstance(a, str) or type(a).__name__ == "device":
                device = a
            elif not isinstance(a, bool):
                dtype = a
        if device is not None and str(device) != "cpu":
            raise RuntimeError(f"gradserve has only the cpu device, not {str(device)!r}")
        if dtype is None and memory_format is None:
            return self
        if dtype is not None and not getattr(dtype, "is_floating_point", False):
            raise TypeError("nn.Module.to only accepts floating point or complex dtypes, but got "
                            f"desired dtype={dtype}")

        def convert(t: Any) -> Any:
            # as torch: memory_format= lays out the 4- and 5-dim tensors (conv weights) alone
            target = dtype if dtype is not None and t.is_floating_point() else None
            if memory_format is not None and t.dim() in (4, 5):
                return t.to(target, memory_format=memory_format) if target is not None else (
                    t.to(memory_format=memory_format))
            return t.to(target) if target is not None else t

        return self._apply(convert)

    def cpu(self) -> Module:
        """The module itself (cpu is the only device)."""
        return self

    def float(self) -> Module:
        """Floating parameters and buffers as float32."""
        return self._apply(lambda t: t.float() if t.is_floating_point() else t)

    def double(self) -> Module:
        """Floating parameters and buffers as float64."""
        return self._apply(lambda t: t.double() if t.is_floating_point() else t)

    # --- printing -------------------------------------------------------------------------------

    def _get_name(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        """The module's own settings, printed inside its parentheses (override it)."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({key}): " + _addindent(repr(module), 2)
                       for key, module in self._modules.items()]
        lines = extra_lines + child_lines
        main = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                main += extra_lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"


def get_item_by_index(items: list[Any], idx: Any) -> Any:
    """items[idx] for an int-like idx, with torch's IndexError text."""
    size = len(items)
    idx = operator.index(idx)
    if not -size <= idx < size:
        raise IndexError(f"index {idx} is out of range")
    return items[idx % size]
