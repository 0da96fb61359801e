"""torch.save / torch.load in process: `gradserve.surface.serialization` (torch's zip format,
weights only) over the engine's tensors."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradserve.surface import serialization

from . import nn
from .creation import tensor as _tensor
from .tensor import Tensor


class EngineTensorIO:
    """serialization.TensorIO over the engine."""

    def is_tensor(self, value: Any) -> bool:
        return isinstance(value, Tensor)

    def is_parameter(self, value: Any) -> bool:
        return nn.is_parameter(value)

    def to_numpy(self, tensor: Any) -> np.ndarray:
        return np.asarray(tensor.detach().numpy())

    def requires_grad(self, tensor: Any) -> bool:
        return bool(tensor.requires_grad)

    def make(self, array: np.ndarray, requires_grad: bool, parameter: bool) -> Any:
        t = _tensor(array)
        if parameter:
            return nn.Parameter(t, requires_grad)
        return t.requires_grad_(True) if requires_grad else t


def save(obj: Any, f: Any, pickle_module: Any = None, pickle_protocol: int = 2,
         _use_new_zipfile_serialization: bool = True) -> None:
    """torch.save(obj, f) in torch's zip format (see gradserve.surface.serialization).

    Args:
        obj: tensors, state dicts, Python containers and scalars.
        f: a path or a writable binary file.
    """
    serialization.save(EngineTensorIO(), obj, f)


def load(f: Any, map_location: Any = None, pickle_module: Any = None, *,
         weights_only: Any = None, mmap: Any = None, **pickle_load_args: Any) -> Any:
    """torch.load(f), weights only unless `weights_only=False` (see
    gradserve.surface.serialization).

    Args:
        f: a path or a readable binary file torch.save wrote.
        map_location: None or the cpu.

    Returns:
        The saved object with engine tensors.

    Raises:
        pickle.UnpicklingError: anything outside the weights-only set.
    """
    if map_location is not None and str(map_location) not in ("cpu", "cpu:0"):
        raise RuntimeError(f"load(): gradserve has only the cpu device, not {map_location!r}")
    return serialization.load(EngineTensorIO(), f, weights_only)
