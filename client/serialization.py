"""torch.save / torch.load for a session: `gradserve.surface.serialization` (torch's zip format,
weights only) over this session's tensors; a saved tensor's values are fetched (one round trip
per save), a loaded one is made from data."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradserve.surface import serialization

from .nn import Parameter
from .tensor import Tensor


class SessionTensorIO:
    """serialization.TensorIO over one session."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def is_tensor(self, value: Any) -> bool:
        return isinstance(value, Tensor)

    def is_parameter(self, value: Any) -> bool:
        return isinstance(value, Parameter)

    def to_numpy(self, tensor: Any) -> np.ndarray:
        return np.asarray(tensor.detach().numpy())

    def requires_grad(self, tensor: Any) -> bool:
        return bool(tensor.requires_grad)

    def make(self, array: np.ndarray, requires_grad: bool, parameter: bool) -> Any:
        t = self.session.tensor(array)
        if parameter:
            return self.session.nn.Parameter(t, requires_grad)
        return t.requires_grad_(True) if requires_grad else t


def save(session: Any, obj: Any, f: Any) -> None:
    """torch.save(obj, f) for `session`'s tensors (see gradserve.surface.serialization)."""
    serialization.save(SessionTensorIO(session), obj, f)


def load(session: Any, f: Any, weights_only: Any = None) -> Any:
    """torch.load(f) into `session` (weights only unless `weights_only=False`; see
    gradserve.surface.serialization)."""
    return serialization.load(SessionTensorIO(session), f, weights_only)
