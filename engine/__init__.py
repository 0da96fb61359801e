"""gradserve.engine: PyTorch's autograd semantics on numpy.

    import gradserve.engine as ge
    x = ge.tensor(3.0, requires_grad=True)
    y = ge.sin(x ** 2)
    y.backward()
    x.grad  # tensor(-5.4668)

Every op lives once in `registry.OPS` (defined in the `ops_*` modules); the functions below and
the Tensor's methods and operators are generated from it.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from gradserve.surface import data as _data
from gradserve.surface.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from gradserve.surface.legacy import CONSTANTS, variable_type

from . import autograd, dtypes, errors, limits, registry
from . import ops_creation as _ops_creation  # noqa: F401
from . import ops_elementwise as _ops_elementwise  # noqa: F401  (registers ops)
from . import ops_index as _ops_index  # noqa: F401
from . import ops_linalg as _ops_linalg  # noqa: F401
from . import ops_nn as _ops_nn  # noqa: F401
from . import ops_reduce as _ops_reduce  # noqa: F401
from . import ops_shape as _ops_shape  # noqa: F401
from . import spellings as _spellings  # noqa: F401  (torch's spellings that are not one op)
from .api import PUBLIC, apply_inplace, build
from .creation import tensor
from .dispatch import apply
from .dtypes import DType
from .random import Generator, default_generator, initial_seed, manual_seed, seed
from .registry import OPS, OPSET_VERSION
from .tensor import Size, Tensor

build()

from . import nn, optim  # noqa: E402  (built from the functions above)

_module = sys.modules[__name__]
autograd.Variable = variable_type(_module)  # type: ignore[attr-defined]
utils = types.SimpleNamespace(data=_data.namespace(_module))  # torch.utils.data
pi, e, inf, nan = (CONSTANTS[k] for k in ("pi", "e", "inf", "nan"))

float32 = dtypes.float32
float64 = dtypes.float64
int32 = dtypes.int32
int64 = dtypes.int64
bool = dtypes.bool_  # noqa: A001 - torch.bool
float = dtypes.float32  # noqa: A001 - torch.float
double = dtypes.float64
long = dtypes.int64
int = dtypes.int32  # noqa: A001 - torch.int

globals().update(PUBLIC)


def __getattr__(name: str) -> Any:
    raise AttributeError(f"module 'gradserve.engine' has no attribute '{name}'")


__all__ = ["DType", "Generator", "OPS", "OPSET_VERSION", "Size", "Tensor", "apply",
           "apply_inplace", "autograd", "default_generator", "dtypes", "enable_grad", "errors",
           "inference_mode", "initial_seed", "is_grad_enabled", "is_inference_mode_enabled",
           "limits", "manual_seed", "nn", "no_grad", "optim", "registry", "seed",
           "set_grad_enabled", "tensor", "utils", "pi", "e", "inf", "nan", *PUBLIC]
