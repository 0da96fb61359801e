"""torch.autograd.graph's saved-tensor hook contexts (`saved_tensors_hooks`, `save_on_cpu`,
`disable_saved_tensors_hooks`), written once for the engine and a session's client: a
thread-local stack of (pack, unpack) pairs that the layer recording a node reads when the node
saves tensors (engine/saved.py in process; client/saved.py through a session).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

# Number of `saved_tensors_hooks` contexts open in any thread (a list, changed in place, so a
# hot path reads one item before it looks at its own thread's stack)
ACTIVE = [0]


class _State(threading.local):
    stack: list[tuple[Callable[[Any], Any], Callable[[Any], Any]]]
    disabled: str | None

    def __init__(self) -> None:
        self.stack = []
        self.disabled = None


state = _State()


def _disabled(message: str) -> RuntimeError:
    # torch raises a plain RuntimeError here, and programs print the type's name (a session
    # re-raises the engine's typed errors as these built-ins too)
    return RuntimeError(message)


def current() -> tuple[Callable[[Any], Any], Callable[[Any], Any]] | None:
    """This thread's innermost (pack_hook, unpack_hook), or None."""
    return state.stack[-1] if state.stack else None


class saved_tensors_hooks:  # noqa: N801 - torch's name
    """Context manager: tensors saved for backward inside it go through `pack_hook` when saved
    and `unpack_hook` when used (torch.autograd.graph.saved_tensors_hooks).

    Raises:
        RuntimeError: on entry inside `disable_saved_tensors_hooks` (its message).
    """

    def __init__(self, pack_hook: Callable[[Any], Any], unpack_hook: Callable[[Any], Any]):
        self.pack_hook = pack_hook
        self.unpack_hook = unpack_hook

    def __enter__(self) -> saved_tensors_hooks:
        if state.disabled is not None:
            raise _disabled(state.disabled)
        state.stack.append((self.pack_hook, self.unpack_hook))
        ACTIVE[0] += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        state.stack.pop()
        ACTIVE[0] -= 1


def _pack_on_cpu(t: Any) -> Any:
    return (t.device, t.detach().clone())


def _unpack_from_cpu(packed: Any) -> Any:
    return packed[1]


class save_on_cpu(saved_tensors_hooks):  # noqa: N801 - torch's name
    """`saved_tensors_hooks` that keep a copy of each saved tensor "on the cpu": gradserve has
    no other device, so the copy is the whole effect (torch.autograd.graph.save_on_cpu)."""

    def __init__(self, pin_memory: bool = False, device_type: str = "cuda"):
        super().__init__(_pack_on_cpu, _unpack_from_cpu)


class disable_saved_tensors_hooks:  # noqa: N801 - torch's name
    """Context manager under which opening `saved_tensors_hooks` raises RuntimeError with
    `error_message` (torch.autograd.graph.disable_saved_tensors_hooks).

    Raises:
        RuntimeError: on entry while hooks are open in this thread (its message).
    """

    def __init__(self, error_message: str):
        self.error_message = error_message

    def __enter__(self) -> None:
        if state.stack:
            raise _disabled(self.error_message)
        self.prev = state.disabled
        state.disabled = self.error_message

    def __exit__(self, *exc: Any) -> None:
        state.disabled = self.prev


MEMBERS = {"saved_tensors_hooks": saved_tensors_hooks, "save_on_cpu": save_on_cpu,
           "disable_saved_tensors_hooks": disable_saved_tensors_hooks}
"""What `torch.autograd.graph` has of these, for each layer's namespace."""

UNPACK_NOT_TENSOR = ("Output of saved tensor unpack_hook expected to be a Tensor but got result "
                     "of type {}")
