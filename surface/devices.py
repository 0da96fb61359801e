"""torch's devices on a CPU-only build: `torch.device`, the `device=` keyword, `torch.cuda`.

gradserve computes on the CPU only, as a CPU-only build of torch 2.13 does: `"cpu"`, `"cpu:0"`
and `torch.device("cpu")` are accepted wherever torch takes a device; `"cuda"` is refused with
the AssertionError such a torch raises ("Torch not compiled with CUDA enabled"); an int (an
accelerator index) with torch's RuntimeError. Written once for the engine and the client.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Mapping
from typing import Any

CUDA_MESSAGE = "Torch not compiled with CUDA enabled"
NO_ACCELERATOR_MESSAGE = "Cannot access accelerator device when none is available."
# torch's device types, in the order of its parser's message
DEVICE_TYPES = ("cpu", "cuda", "ipu", "xpu", "mkldnn", "opengl", "opencl", "ideep", "hip", "ve",
                "fpga", "maia", "xla", "lazy", "vulkan", "mps", "meta", "hpu", "mtia",
                "privateuseone")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class device:  # noqa: N801 - torch.device
    """torch.device: a device type and an optional index, printed and compared as torch's.

    Args:
        type: "cpu", "cpu:0", "cuda", ... (torch's device strings), or a device.
        index: the device index (not when `type` already carries one).
    Raises:
        RuntimeError: an unknown device type, a malformed string or a negative index (torch's
            texts); an int alone (no accelerator, as on a CPU-only build).
        TypeError: `index` that is not an int.
    """

    __slots__ = ("_type", "_index")
    _type: str
    _index: int | None

    def __init__(self, type: Any, index: Any = None):  # noqa: A002 - torch's parameter name
        if isinstance(type, device) and index is None:
            self._type, self._index = type._type, type._index
            return
        if _is_int(type) and index is None:
            raise RuntimeError(NO_ACCELERATOR_MESSAGE)
        if not isinstance(type, str):
            raise TypeError(f"device(): argument 'type' (position 1) must be str, not "
                            f"{builtins_type(type).__name__}")
        if index is not None and not _is_int(index):
            raise TypeError(f"device(): argument 'index' (position 2) must be int, not "
                            f"{builtins_type(index).__name__}")
        kind, sep, number = type.partition(":")
        if kind not in DEVICE_TYPES:
            if kind.isalnum():
                raise RuntimeError(f"Expected one of {', '.join(DEVICE_TYPES)} device type at "
                                   f"start of device string: {type}")
            raise RuntimeError(f"Invalid device string: '{type}'")
        parsed: int | None = None
        if sep:
            if not number.isdigit() or (len(number) > 1 and number[0] == "0"):
                raise RuntimeError(f"Invalid device string: '{type}'")
            parsed = int(number)
            if index is not None:
                raise RuntimeError("type (string) must not include an index because index was "
                                   f"passed explicitly: {type}")
        if index is not None:
            if index < 0:
                raise RuntimeError("Device index must not be negative")
            parsed = index
        self._type, self._index = kind, parsed

    @property
    def type(self) -> str:
        """The device type ("cpu")."""
        return self._type

    @property
    def index(self) -> int | None:
        """The device index, or None."""
        return self._index

    def __repr__(self) -> str:
        if self._index is None:
            return f"device(type='{self._type}')"
        return f"device(type='{self._type}', index={self._index})"

    def __str__(self) -> str:
        return self._type if self._index is None else f"{self._type}:{self._index}"

    def __eq__(self, other: Any) -> bool:
        # torch: a device equals only a device (device("cpu") == "cpu" is False)
        return (isinstance(other, device) and other._type == self._type
                and other._index == self._index)

    def __hash__(self) -> int:
        return hash((self._type, self._index))

    def __reduce__(self) -> tuple[Any, ...]:
        return (device, (self._type, self._index))


builtins_type = type

CPU = device("cpu")


def check_device(value: Any, name: str, type_error: type[TypeError] = TypeError,
                 runtime_error: type[RuntimeError] = RuntimeError) -> None:
    """Accept `device=` as a CPU-only torch does: None, "cpu", "cpu:N", device("cpu").

    Args:
        value: the `device=` argument.
        name: the function, for the TypeError text (`zeros`).
        type_error, runtime_error: the calling layer's error types.
    Raises:
        AssertionError: a CUDA device ("Torch not compiled with CUDA enabled", as torch).
        NotImplementedError: another device type torch knows (mps, meta, ...).
        RuntimeError: an int, or a malformed device string (torch's texts).
        TypeError: any other type (torch's text).
    """
    if value is None:
        return
    if _is_int(value):
        raise runtime_error(NO_ACCELERATOR_MESSAGE)
    if isinstance(value, str):
        try:
            value = device(value)
        except RuntimeError as exc:
            raise runtime_error(str(exc)) from None
    if not isinstance(value, device):
        raise type_error(f"{name}(): argument 'device' must be torch.device, not "
                         f"{builtins_type(value).__name__}")
    if value.type == "cuda":
        raise AssertionError(CUDA_MESSAGE)
    if value.type != "cpu":
        raise NotImplementedError(
            f"gradserve computes on the CPU only: device '{value}' is not supported")


def device_of(value: Any) -> device | None:
    """The device a `to()` positional argument names, or None when it names none (a str or a
    device, checked with `check_device`; an int is an accelerator index, refused)."""
    if isinstance(value, (str, device)) or _is_int(value):
        check_device(value, "to")
        return CPU
    return None


def _cuda_current_device() -> int:
    raise AssertionError(CUDA_MESSAGE)


def _seed_noop(seed: int) -> None:
    """torch.cuda.manual_seed / manual_seed_all: no CUDA, so nothing to seed (as torch)."""


def _empty_cache() -> None:
    """torch.cuda.empty_cache: CUDA never initialised, so there is no cache to free (as torch)."""


cuda = types.SimpleNamespace(
    is_available=lambda: False,
    device_count=lambda: 0,
    current_device=_cuda_current_device,
    manual_seed=_seed_noop,
    manual_seed_all=_seed_noop,
    empty_cache=_empty_cache,
)
"""torch.cuda on a CPU-only build: is_available() is False, device_count() 0, seeding and
empty_cache() do nothing, current_device() raises torch's AssertionError."""

accelerator = types.SimpleNamespace(
    is_available=lambda check_fully_loaded=False: False,
    device_count=lambda: 0,
    current_accelerator=lambda check_available=False: None,
)
"""torch.accelerator on a CPU-only build (programs pick their device with it, as torch's
examples do): no accelerator, none counted, the current one None."""


FLOATING_DEFAULTS = ("float32", "float64")
DEFAULT_DTYPE_MESSAGE = "only floating-point types are supported as the default type"


def check_default_dtype(d: Any, name_of: Any) -> str:
    """The dtype name for `set_default_dtype(d)`: float32 or float64, else torch's TypeError.

    Args:
        d: the argument.
        name_of: the layer's function giving a dtype object's name, or None if `d` is no dtype.
    """
    name = name_of(d)
    if name is None:
        raise TypeError(f"invalid dtype object: {DEFAULT_DTYPE_MESSAGE}")
    if name not in FLOATING_DEFAULTS:
        raise TypeError(DEFAULT_DTYPE_MESSAGE)
    return str(name)


DEFAULT_TENSOR_TYPE_WARNING = (
    "torch.set_default_tensor_type() is deprecated as of PyTorch 2.1, please use "
    "torch.set_default_dtype() and torch.set_default_device() as alternatives.")
# torch.set_default_tensor_type's names of the CPU floating types
DEFAULT_TENSOR_TYPES = {"torch.FloatTensor": "float32", "torch.DoubleTensor": "float64"}


def default_tensor_type(t: Any, legacy: Mapping[str, Any], stacklevel: int) -> str:
    """The dtype name `torch.set_default_tensor_type(t)` sets (warning as torch 2.13 does).

    Args:
        t: a type name ("torch.DoubleTensor") or one of the layer's legacy types.
        legacy: the layer's legacy types by name ("FloatTensor": its class, ...).
        stacklevel: the warning's stacklevel from this function's caller.
    Raises:
        TypeError: a non-floating or CUDA type, or an argument that is no type (torch's texts).
        ModuleNotFoundError: a name whose module part is not torch, as torch's import fails.
        AttributeError: a name torch does not have.
    """
    warnings.warn(DEFAULT_TENSOR_TYPE_WARNING, UserWarning, stacklevel=stacklevel + 1)
    if isinstance(t, str):
        if t in DEFAULT_TENSOR_TYPES:
            return DEFAULT_TENSOR_TYPES[t]
        module, _, name = t.rpartition(".")
        if module.startswith("torch.cuda"):
            raise TypeError(f"type {t} not available. {CUDA_MESSAGE}.")
        if module != "torch":  # torch imports the module part
            raise ModuleNotFoundError(f"No module named '{module or t}'")
        if name in legacy and name != "Tensor":
            raise TypeError(DEFAULT_DTYPE_MESSAGE)
        raise AttributeError(f"module 'torch' has no attribute '{name}'")
    for name, cls in legacy.items():
        if t is cls and name != "Tensor":
            if f"torch.{name}" in DEFAULT_TENSOR_TYPES:
                return DEFAULT_TENSOR_TYPES[f"torch.{name}"]
            raise TypeError(DEFAULT_DTYPE_MESSAGE)
    raise TypeError(f"invalid type object: {DEFAULT_DTYPE_MESSAGE}")


def set_default_device(value: Any) -> None:
    """torch.set_default_device: "cpu" (or None) is what gradserve always uses; CUDA is refused
    here, not at the next factory call as torch does (gradserve cannot make CUDA tensors)."""
    check_device(value, "set_default_device")


def get_default_device() -> device:
    """torch.get_default_device: device(type='cpu')."""
    return CPU
