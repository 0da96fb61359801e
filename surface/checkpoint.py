"""torch.utils.checkpoint, written once for the engine and for a session.

Checkpointing trades compute for memory: the checkpointed function's intermediate results are
not kept for backward but recomputed when backward needs them. gradserve keeps them (memory is
the server's, under its limits), so what a program sees is the values, gradients and graphs
torch gives it:

- `use_reentrant=False` (torch's recommended variant): torch records the function's own graph
  (its saved tensors recomputed on unpack), so the output's grad_fn is the function's last op
  and the gradients are one pass's. That is calling the function.
- `use_reentrant=True` (torch 2.13's default, with a warning): torch runs the function under
  no_grad inside a custom Function (`CheckpointFunctionBackward`) and, in its backward, runs it
  again with grad on detached inputs and calls `autograd.backward` on that inner graph, so the
  parameters the function uses get their gradient from that inner pass. Written here the same
  way, on the backend's `autograd.Function`, RNG state restored for the recomputation.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from .compat import Namespace

REENTRANT_DEFAULT_WARNING = (
    "torch.utils.checkpoint: the use_reentrant parameter should be passed explicitly. Starting "
    "in PyTorch 2.9, calling checkpoint without use_reentrant will raise an exception. "
    "use_reentrant=False is recommended, but if you need to preserve the current default "
    "behavior, you can pass use_reentrant=True. Refer to docs for more details on the "
    "differences between the two variants.")
SEQUENTIAL_DEFAULT_WARNING = (
    "torch.utils.checkpoint.checkpoint_sequential: the use_reentrant parameter should be passed "
    "explicitly. In version 2.9 we will raise an exception if use_reentrant is not passed. "
    "use_reentrant=False is recommended, but if you need to preserve the current default "
    "behavior, you can pass use_reentrant=True. Refer to docs for more details on the "
    "differences between the two variants.")
NO_INPUT_GRAD_WARNING = "None of the inputs have requires_grad=True. Gradients will be None"


def noop_context_fn() -> tuple[contextlib.AbstractContextManager[None],
                               contextlib.AbstractContextManager[None]]:
    """torch's default `context_fn`: no context around the forward or the recomputation."""
    return contextlib.nullcontext(), contextlib.nullcontext()


def namespace(torch: Any) -> Namespace:
    """`torch.utils.checkpoint` for the torch-like namespace `torch` (the engine or a Session).

    Args:
        torch: what checkpointing calls: `Tensor`, `autograd.Function`, `autograd.backward`,
            `no_grad`, `enable_grad`, `is_grad_enabled`, `get_rng_state`, `set_rng_state`,
            `nn.Sequential`.

    Returns:
        A namespace with checkpoint, checkpoint_sequential, noop_context_fn and
        detach_variable.
    """
    reentrant = _reentrant_function(torch)

    def checkpoint(function: Callable[..., Any], *args: Any, use_reentrant: bool | None = None,
                   context_fn: Callable[..., Any] = noop_context_fn,
                   determinism_check: str = "default", debug: bool = False,
                   early_stop: bool = True, **kwargs: Any) -> Any:
        """torch.utils.checkpoint.checkpoint (see the module's docstring)."""
        if use_reentrant is None:
            warnings.warn(REENTRANT_DEFAULT_WARNING, UserWarning, stacklevel=2)
            use_reentrant = True
        preserve = kwargs.pop("preserve_rng_state", True)
        if kwargs and use_reentrant:
            raise ValueError("Unexpected keyword arguments: " + ",".join(arg for arg in kwargs))
        if use_reentrant:
            if context_fn is not noop_context_fn or debug is not False:
                raise ValueError("Passing `context_fn` or `debug` is only supported when "
                                 "use_reentrant=False.")
            return reentrant.apply(function, preserve, *args)
        if determinism_check not in ("default", "none"):
            raise ValueError(
                f"determinism_check should be one of ['default', 'none'], but got "
                f"{determinism_check}")
        forward_context, _ = context_fn()
        with forward_context:
            return function(*args, **kwargs)

    def checkpoint_sequential(functions: Any, segments: int, input: Any,
                              use_reentrant: bool | None = None, **kwargs: Any) -> Any:
        """torch.utils.checkpoint.checkpoint_sequential: all segments but the last checkpointed."""
        if use_reentrant is None:
            warnings.warn(SEQUENTIAL_DEFAULT_WARNING, UserWarning, stacklevel=2)
            use_reentrant = True
        preserve = kwargs.pop("preserve_rng_state", True)
        if kwargs:
            raise ValueError("Unexpected keyword arguments: " + ",".join(arg for arg in kwargs))

        def run_function(start: int, end: int, functions: Any) -> Callable[[Any], Any]:
            def forward(input: Any) -> Any:
                for j in range(start, end + 1):
                    input = functions[j](input)
                return input
            return forward

        if isinstance(functions, torch.nn.Sequential):
            functions = list(functions.children())
        segment_size = len(functions) // segments
        end = -1
        for start in range(0, segment_size * (segments - 1), segment_size):
            end = start + segment_size - 1
            input = checkpoint(run_function(start, end, functions), input,
                               use_reentrant=use_reentrant, preserve_rng_state=preserve)
        return run_function(end + 1, len(functions) - 1, functions)(input)

    def detach_variable(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
        """torch.utils.checkpoint.detach_variable: each tensor detached, keeping requires_grad."""
        if not isinstance(inputs, tuple):
            raise RuntimeError("Only tuple of tensors is supported. Got Unsupported input type: "
                               f"{type(inputs).__name__}")
        out = []
        for inp in inputs:
            if not isinstance(inp, torch.Tensor):
                out.append(inp)
                continue
            out.append(inp.detach().requires_grad_(inp.requires_grad))
        return tuple(out)

    return Namespace("torch.utils.checkpoint", checkpoint=checkpoint,
                     checkpoint_sequential=checkpoint_sequential,
                     noop_context_fn=noop_context_fn, detach_variable=detach_variable,
                     CheckpointFunction=reentrant)


@contextlib.contextmanager
def _rng_restored(torch: Any, state: Any) -> Iterator[None]:
    """Run with the CPU generator at `state` (None: as it is), and put it back afterwards."""
    if state is None:
        yield
        return
    now = torch.get_rng_state()
    torch.set_rng_state(state)
    try:
        yield
    finally:
        torch.set_rng_state(now)


def _reentrant_function(torch: Any) -> Any:
    """torch's CheckpointFunction on the backend's autograd.Function."""

    def forward(ctx: Any, run_function: Callable[..., Any], preserve_rng_state: bool,
                *args: Any) -> Any:
        if not any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
            warnings.warn(NO_INPUT_GRAD_WARNING, UserWarning, stacklevel=5)
        ctx.run_function = run_function
        ctx.rng_state = torch.get_rng_state() if preserve_rng_state else None
        ctx.inputs = []
        ctx.tensor_indices = []
        tensors = []
        for i, arg in enumerate(args):
            if isinstance(arg, torch.Tensor):
                tensors.append(arg)
                ctx.tensor_indices.append(i)
                ctx.inputs.append(None)
            else:
                ctx.inputs.append(arg)
        ctx.save_for_backward(*tensors)
        with torch.no_grad():
            return run_function(*args)

    def backward(ctx: Any, *grads: Any) -> Any:
        inputs = list(ctx.inputs)
        for i, t in zip(ctx.tensor_indices, ctx.saved_tensors):
            inputs[i] = t
        detached = []
        for inp in inputs:
            if isinstance(inp, torch.Tensor):
                detached.append(inp.detach().requires_grad_(inp.requires_grad))
            else:
                detached.append(inp)
        with _rng_restored(torch, ctx.rng_state), torch.enable_grad():
            outputs = ctx.run_function(*detached)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        roots, root_grads = [], []
        for out, g in zip(outputs, grads):
            if isinstance(out, torch.Tensor) and out.requires_grad:
                roots.append(out)
                root_grads.append(g)
        if not roots:
            raise RuntimeError("none of output has requires_grad=True, this checkpoint() is "
                               "not necessary")
        torch.autograd.backward(roots, root_grads)
        return (None, None, *(x.grad if isinstance(x, torch.Tensor) else None
                              for x in detached))

    return type("CheckpointFunction", (torch.autograd.Function,), {
        "__module__": "torch.utils.checkpoint", "forward": staticmethod(forward),
        "backward": staticmethod(backward)})
