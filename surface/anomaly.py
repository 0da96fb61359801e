"""torch's autograd anomaly mode: `detect_anomaly`, `set_detect_anomaly`, `set_anomaly_enabled`,
`is_anomaly_enabled`, `is_anomaly_check_nan_enabled` — written once for the engine and a session.

The mode is process-wide, as torch's. What gradserve does with it: a backward pass (backward()
or autograd.grad) that starts while it is on with check_nan raises torch's "Function
'SqrtBackward0' returned nan values in its 0th output." when a node's gradients hold a NaN. A
session sends the flag with each pass (`Backward.check_nan`, `Grad.check_nan`), since the server
holds no process-wide mode of the caller's; the server runs the pass under `forced(flag)`.
torch's other effect, the forward's traceback printed when a backward node fails, is not
reproduced.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from typing import Any

ENABLED_WARNING = ("Anomaly Detection has been enabled. This mode will increase the runtime and "
                   "should only be enabled for debugging.")

# [enabled, check_nan]: torch's AnomalyMode statics
_state = [False, True]
_local = threading.local()  # .forced: the server's per-pass flag (None: the process-wide mode)


def set_anomaly_enabled(enabled: bool, check_nan: bool = True) -> None:
    """torch.set_anomaly_enabled: turn the mode on or off, process-wide."""
    _state[0] = bool(enabled)
    _state[1] = bool(check_nan)


def is_anomaly_enabled() -> bool:
    """torch.is_anomaly_enabled."""
    return _state[0]


def is_anomaly_check_nan_enabled() -> bool:
    """torch.is_anomaly_check_nan_enabled."""
    return _state[1]


def checking_nan() -> bool:
    """Whether a backward pass starting now checks its gradients for NaN: the server's flag
    for this pass where it set one, else the process-wide mode."""
    forced = getattr(_local, "forced", None)
    if forced is not None:
        return bool(forced)
    return _state[0] and _state[1]


@contextlib.contextmanager
def forced(check_nan: bool) -> Iterator[None]:
    """Run passes (in this thread) checking for NaN exactly when `check_nan`, whatever the
    process-wide mode (the server's passes for a session)."""
    before = getattr(_local, "forced", None)
    _local.forced = bool(check_nan)
    try:
        yield
    finally:
        _local.forced = before


def nan_message(node_name: str, index: int) -> str:
    """torch's error for a node whose `index`-th gradient output holds a NaN."""
    return f"Function '{node_name}' returned nan values in its {index}th output."


class detect_anomaly:  # noqa: N801  (torch's name)
    """torch.autograd.detect_anomaly: anomaly mode on inside the block (warns when made)."""

    def __init__(self, check_nan: bool = True) -> None:
        self.prev = is_anomaly_enabled()
        self.check_nan = check_nan
        self.prev_check_nan = is_anomaly_check_nan_enabled()
        warnings.warn(ENABLED_WARNING, UserWarning, stacklevel=2)

    def __enter__(self) -> None:
        set_anomaly_enabled(True, self.check_nan)

    def __exit__(self, *args: Any) -> None:
        set_anomaly_enabled(self.prev, self.prev_check_nan)


class set_detect_anomaly:  # noqa: N801  (torch's name)
    """torch.autograd.set_detect_anomaly: set the mode now; as a context manager, put the
    previous one back on exit."""

    def __init__(self, mode: bool, check_nan: bool = True) -> None:
        self.prev = is_anomaly_enabled()
        self.prev_check_nan = is_anomaly_check_nan_enabled()
        set_anomaly_enabled(mode, check_nan)

    def __enter__(self) -> None:
        pass

    def __exit__(self, *args: Any) -> None:
        set_anomaly_enabled(self.prev, self.prev_check_nan)


#: the names torch.autograd has (and torch.autograd.anomaly_mode)
AUTOGRAD_MEMBERS = {"detect_anomaly": detect_anomaly, "set_detect_anomaly": set_detect_anomaly}
#: the names torch has
TORCH_MEMBERS = {"set_anomaly_enabled": set_anomaly_enabled,
                 "is_anomaly_enabled": is_anomaly_enabled,
                 "is_anomaly_check_nan_enabled": is_anomaly_check_nan_enabled}
