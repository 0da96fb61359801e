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
from typing import Any

from gradserve.surface import checkpoint as _checkpoint
from gradserve.surface import compat as _compat
from gradserve.surface import control as _control
from gradserve.surface import data as _data
from gradserve.surface import devices as _devices
from gradserve.surface import distributions as _distributions
from gradserve.surface import dynamo as _dynamo_ns
from gradserve.surface import linalg as _linalg
from gradserve.surface import memory_format as _memory_format
from gradserve.surface import out_arg as _out_arg
from gradserve.surface import pytree as _pytree
from gradserve.surface import runtime as _runtime
from gradserve.surface.anomaly import (
    is_anomaly_check_nan_enabled,
    is_anomaly_enabled,
    set_anomaly_enabled,
)
from gradserve.surface.formatting import set_printoptions
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
from . import ops_bitwise as _ops_bitwise  # noqa: F401
from . import ops_conv as _ops_conv  # noqa: F401
from . import ops_creation as _ops_creation  # noqa: F401
from . import ops_decomp as _ops_decomp  # noqa: F401
from . import ops_elementwise as _ops_elementwise  # noqa: F401  (registers ops)
from . import ops_fold as _ops_fold  # noqa: F401
from . import ops_index as _ops_index  # noqa: F401
from . import ops_linalg as _ops_linalg  # noqa: F401
from . import ops_math as _ops_math  # noqa: F401
from . import ops_nn as _ops_nn  # noqa: F401
from . import ops_norm as _ops_norm  # noqa: F401
from . import ops_pack as _ops_pack  # noqa: F401
from . import ops_pad as _ops_pad  # noqa: F401
from . import ops_reduce as _ops_reduce  # noqa: F401
from . import ops_rnn as _ops_rnn  # noqa: F401
from . import ops_shape as _ops_shape  # noqa: F401
from . import ops_solve as _ops_solve  # noqa: F401
from . import random as _random_module
from . import spellings as _spellings  # noqa: F401  (torch's spellings that are not one op)
from .api import PUBLIC, apply_inplace, build
from .creation import as_tensor, from_numpy, tensor
from .dispatch import apply
from .dtypes import DType
from .random import (
    Generator,
    default_generator,
    get_rng_state,
    initial_seed,
    manual_seed,
    seed,
    set_rng_state,
)
from .registry import OPS, OPSET_VERSION
from .tensor import Size, Tensor

build()

from . import nn, optim  # noqa: E402  (built from the functions above)
from . import saved as _saved  # noqa: E402
from .nodes import Node as _Node  # noqa: E402

_saved.install(_Node, OPS.values())  # grad_fn._saved_* / _raw_saved_*, once every op is defined
from .serialization import load, save  # noqa: E402,F401  (torch.save / torch.load)

_module = sys.modules[__name__]
autograd.Variable = variable_type(_module)  # type: ignore[attr-defined]
utils = _compat.Namespace("torch.utils", data=_compat.Namespace(  # torch.utils.data
    "torch.utils.data", **vars(_data.namespace(_module))), _pytree=_pytree,  # torch.utils._pytree
    checkpoint=_checkpoint.namespace(_module))  # torch.utils.checkpoint
_pytree.register_sequence_type(Size)
_dynamo = _dynamo_ns.namespace()  # torch._dynamo, as eager programs see it
_higher_order_ops = _control.higher_order_ops(_module)  # torch._higher_order_ops: cond, map
linalg = _linalg.namespace(_spellings.BACKEND,  # torch.linalg: the norms
                           lambda be, fn, name: _spellings.bound(fn, name))
pi, e, inf, nan = (CONSTANTS[k] for k in ("pi", "e", "inf", "nan"))
globals().update(_memory_format.MEMBERS)  # torch.channels_last & co.
from .transforms import func  # noqa: E402  (torch.func: grad, vjp, jacrev, vmap, ...)

# torch.set_num_threads, use_deterministic_algorithms, ...: remembered (surface/runtime.py)
_RUNTIME = _runtime.RuntimeSettings()
globals().update(_RUNTIME.functions())

vmap = func.vmap  # torch.vmap

float32 = dtypes.float32
float64 = dtypes.float64
int32 = dtypes.int32
int64 = dtypes.int64
bool = dtypes.bool_  # noqa: A001 - torch.bool
float = dtypes.float32  # noqa: A001 - torch.float
double = dtypes.float64
long = dtypes.int64
int = dtypes.int32  # noqa: A001 - torch.int
uint8 = dtypes.uint8
int8 = dtypes.int8
int16 = dtypes.int16
short = dtypes.int16

globals().update(PUBLIC)
globals().update(_out_arg.wrap(_spellings.BACKEND, PUBLIC))  # out= (surface/out_arg.py)
# torch.random is a module (torch.random.manual_seed): the op behind Tensor.random_ must not hide
# ours.
random = _random_module
special = _runtime.special(lambda name: getattr(_module, name))  # torch.special
# torch.distributions. The package attribute is the submodule engine/distributions.py (torch's
# random kernels) until here: its users imported it above; set through globals() so that type
# checkers keep reading `from . import distributions` as that submodule.
globals()["distributions"] = _distributions.build(_module)


# torch's devices on a CPU-only build, default dtype/device, legacy constructors (surface)
device = _devices.device
cuda = _compat.Namespace("torch.cuda", **vars(_devices.cuda))
accelerator = _compat.Namespace("torch.accelerator", **vars(_devices.accelerator))
backends = _compat.backends()
set_default_device = _devices.set_default_device
get_default_device = _devices.get_default_device


def set_default_dtype(d: DType) -> None:
    """torch.set_default_dtype: the dtype of Python floats, float data and the floating factory
    functions (float32 or float64), for everything in this process."""
    name = _devices.check_default_dtype(d, lambda v: v.name if isinstance(v, DType) else None)
    dtypes.DEFAULT_FLOAT = dtypes.by_name(name)
    registry.forget_rules()  # the remembered dtype rules answered for the old default


def get_default_dtype() -> DType:
    """torch.get_default_dtype: float32 unless set_default_dtype changed it."""
    return dtypes.DEFAULT_FLOAT


_LEGACY_TYPES = _compat.legacy_types(
    Tensor, lambda d, args, kw: _compat.legacy_new(_spellings.BACKEND, d, args, kw),
    lambda t: t.dtype.name)
globals().update({k: v for k, v in _LEGACY_TYPES.items() if k != "Tensor"})


def set_default_tensor_type(t: Any) -> None:
    """torch.set_default_tensor_type (deprecated in torch): "torch.FloatTensor" or
    "torch.DoubleTensor" (or those types) as set_default_dtype."""
    set_default_dtype(dtypes.by_name(_devices.default_tensor_type(
        t, {k: v for k, v in _LEGACY_TYPES.items() if k != "Tensor"}, stacklevel=2)))


def __getattr__(name: str) -> Any:
    # a name torch has and gradserve does not: say so, and how to list what there is
    raise _compat.missing_name("torch", name, "dir(gradserve.engine)")


__all__ = ["BoolTensor", "DType", "DoubleTensor", "FloatTensor", "IntTensor", "LongTensor",
           "Generator", "accelerator", "backends", "OPS", "OPSET_VERSION", "Size", "Tensor",
           "apply", "apply_inplace", "distributions",
           "as_tensor", "autograd", "cuda", "default_generator", "device", "dtypes",
           "enable_grad", "errors", "from_numpy", "func", "get_default_device", "get_default_dtype",
           "inference_mode", "initial_seed", "is_grad_enabled", "is_inference_mode_enabled",
           "limits", "manual_seed", "get_rng_state", "set_rng_state", "nn", "no_grad", "optim",
           "set_printoptions", "special", *_RUNTIME.functions(),
           "random", "registry", "seed", "set_default_device", "set_default_dtype",
           "set_default_tensor_type",
           "set_grad_enabled", "tensor", "utils", "vmap", "pi", "e", "inf", "nan",
           "is_anomaly_check_nan_enabled", "is_anomaly_enabled", "set_anomaly_enabled",
           *_memory_format.MEMBERS, *PUBLIC]
