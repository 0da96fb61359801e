"""torch's process switches that a program sets and gradserve only remembers:
`set_num_threads`/`get_num_threads`, `set_num_interop_threads`/`get_num_interop_threads`,
`use_deterministic_algorithms` and its readers, plus `torch.special` (aliases of existing ops).

The numbers of threads are accepted, checked and read back as torch's are, but the engine and
the server choose their own threads: a session's setting is its own and changes nothing on the
server. gradserve's ops are deterministic whatever the switch says, so the flag is remembered
for programs that read it back. Each layer makes one `RuntimeSettings` (the engine one for the
process, the client one per session) and installs its functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .compat import Namespace


def _cores() -> int:
    """torch's default intra-op thread count on this machine: its usable cores."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _thread_count(name: str, n: Any) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, (bool, np.bool_)):
        raise RuntimeError(f"{name} expects an int, but got {type(n).__name__}")
    if n <= 0:
        raise RuntimeError(f"{name} expects a positive integer")
    return int(n)


def _flag(name: str, value: Any, position: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"_set_deterministic_algorithms(): argument '{name}'{position} must be "
                        f"bool, not {type(value).__name__}")
    return value


class RuntimeSettings:
    """One layer's thread counts and deterministic-algorithms flags (remembered only)."""

    def __init__(self) -> None:
        self._threads = _cores()
        self._interop: int | None = None  # set once, as torch allows
        self._deterministic = False
        self._warn_only = False

    def set_num_threads(self, int: Any) -> None:  # noqa: A002 - torch's parameter name
        """torch.set_num_threads: remembered and read back; gradserve picks its own threads."""
        self._threads = _thread_count("set_num_threads", int)

    def get_num_threads(self) -> int:
        """torch.get_num_threads: the last set_num_threads, else the usable cores."""
        return self._threads

    def set_num_interop_threads(self, int: Any) -> None:  # noqa: A002 - torch's parameter name
        """torch.set_num_interop_threads: once only, as torch (remembered, not used)."""
        n = _thread_count("set_num_interop_threads", int)
        if self._interop is not None:
            raise RuntimeError("Error: cannot set number of interop threads after parallel work "
                               "has started or set_num_interop_threads called")
        self._interop = n

    def get_num_interop_threads(self) -> int:
        """torch.get_num_interop_threads."""
        return self._interop if self._interop is not None else _cores()

    def use_deterministic_algorithms(self, mode: Any, *, warn_only: Any = False) -> None:
        """torch.use_deterministic_algorithms: remembered (gradserve's ops are deterministic)."""
        self._deterministic = _flag("mode", mode, " (position 1)")
        self._warn_only = _flag("warn_only", warn_only, "")

    def are_deterministic_algorithms_enabled(self) -> bool:
        """torch.are_deterministic_algorithms_enabled."""
        return self._deterministic

    def is_deterministic_algorithms_warn_only_enabled(self) -> bool:
        """torch.is_deterministic_algorithms_warn_only_enabled."""
        return self._warn_only

    def functions(self) -> dict[str, Callable[..., Any]]:
        """The torch-level names, bound to this layer's settings."""
        return {name: getattr(self, name) for name in (
            "set_num_threads", "get_num_threads", "set_num_interop_threads",
            "get_num_interop_threads", "use_deterministic_algorithms",
            "are_deterministic_algorithms_enabled",
            "is_deterministic_algorithms_warn_only_enabled")}


# torch.special's names that are one existing function of the layer (the function's own name)
SPECIAL_ALIASES = {"expit": "sigmoid", "erf": "erf", "erfc": "erfc", "log1p": "log1p",
                   "expm1": "expm1", "logsumexp": "logsumexp",
                   "softmax": "softmax", "log_softmax": "log_softmax", "xlogy": "xlogy"}


def special(lookup: Callable[[str], Any]) -> Namespace:
    """torch.special over a layer's functions (`lookup(name)`; a missing one is left out)."""
    names = {}
    for alias, target in SPECIAL_ALIASES.items():
        try:
            names[alias] = lookup(target)
        except AttributeError:
            continue
    return Namespace("torch.special", **names)
