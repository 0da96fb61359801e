"""torch spellings real programs use that are not ops: `allclose`/`isclose`/`equal`, `x.cpu()`,
`x.cuda()`, `x.contiguous()`, `x.to(...)`'s argument forms, the legacy constructors
(`torch.Tensor([-4.0])`, `torch.FloatTensor(2, 3)`), the deprecated keywords of
`autograd.grad`/`backward` that torch 2.13 still takes, and the AttributeError for a name
gradserve does not have. Written once against a `Backend`; the engine and the client bind them.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from . import control as _control  # noqa: F401 - registers torch._check, sym_min, cond
from . import devices, grad_mode, messages
from . import memory_format as mf
from .backend import Backend
from .spellings import SPELLINGS, Spelling, is_int

Fn = Callable[..., Any]

# --- autograd node names -------------------------------------------------------------------------

_CPP_NODE = "torch::autograd::"
_CPP_NODES = frozenset({"CopyBackwards", "CopySlices", "AccumulateGrad", "NotImplemented"})
"""Nodes torch writes by hand in C++: their name() carries the C++ namespace, their repr and a
tensor's `grad_fn=<...>` do not."""


def node_name(short: str) -> str:
    """torch's `grad_fn.name()` for a node shown as `<short>` ("CopySlices" ->
    "torch::autograd::CopySlices", "MulBackward0" unchanged)."""
    return _CPP_NODE + short if short in _CPP_NODES else short


def short_node_name(name: str) -> str:
    """How torch shows a node whose name() is `name` (its repr, a tensor's grad_fn=<...>)."""
    short = name.removeprefix(_CPP_NODE)
    return short if short in _CPP_NODES else name


# --- a name gradserve does not have --------------------------------------------------------------


def missing_name(namespace: str, name: str, how: str = "dir(torch)") -> AttributeError:
    """The AttributeError for `torch.<name>` (or `torch.nn.<name>`, `Tensor.<name>`) that
    gradserve does not implement, saying how to list what it has.

    Args:
        namespace: how torch spells the namespace ("torch", "torch.nn.functional", "Tensor").
        name: the missing attribute.
        how: the expression that lists what gradserve has there.
    """
    return AttributeError(f"gradserve does not implement {namespace}.{name} (see {how} for what "
                          "it has)")


def missing_names(torch_name: str) -> Callable[[str], Any]:
    """A module-level `__getattr__` (PEP 562) for a module object standing in for `torch_name`
    (`torch.nn`): a missing name raises `missing_name`'s AttributeError (dunders: Python's)."""
    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise missing_name(torch_name, name, f"dir({torch_name})")
    return __getattr__


class Namespace(types.SimpleNamespace):
    """A torch namespace that is not a module (`torch.autograd`, `torch.utils.data` of a
    session): a missing name raises the AttributeError that names it as torch spells it."""

    def __init__(self, torch_name: str, **names: Any):
        super().__init__(**names)
        object.__setattr__(self, "_torch_name", torch_name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise missing_name(self._torch_name, name, f"dir({self._torch_name})")


def _unavailable() -> bool:
    return False


def backends() -> Namespace:
    """torch.backends on a CPU-only build: cuda, cudnn and mps not available (nor built);
    cudnn's flags settable as torch's (`torch.backends.cudnn.deterministic = True`), read by
    nothing here. A new one per layer, so a session's flags are its own."""
    return Namespace(
        "torch.backends",
        cuda=Namespace("torch.backends.cuda", is_built=_unavailable),
        cudnn=Namespace("torch.backends.cudnn", is_available=_unavailable, enabled=True,
                        deterministic=False, benchmark=False),
        mps=Namespace("torch.backends.mps", is_available=_unavailable, is_built=_unavailable))


# --- torch's scalar conversion warning -----------------------------------------------------------

SCALAR_REQUIRES_GRAD_WARNING = (
    "Converting a tensor with requires_grad=True to a scalar may lead to unexpected behavior.\n"
    "Consider using tensor.detach() first. (Triggered internally at "
    "/__w/pytorch/pytorch/torch/csrc/autograd/generated/python_variable_methods.cpp:822.)")


_scalar_warned = [False]


def warn_scalar_requires_grad(stacklevel: int) -> None:
    """torch 2.13 warns on `float(t)` when t requires grad (not on int(), item(), bool()) and
    grad mode is on (not under no_grad: LBFGS's `float(closure())` in its no_grad step), once
    per process (TORCH_WARN_ONCE, not spent while grad mode is off): so does gradserve, engine
    and sessions together."""
    if _scalar_warned[0] or not grad_mode.is_grad_enabled():
        return
    _scalar_warned[0] = True
    warnings.warn(SCALAR_REQUIRES_GRAD_WARNING, UserWarning, stacklevel=stacklevel + 1)


# --- allclose, isclose, equal --------------------------------------------------------------------

_C_NAMES = messages.TYPE_WORDS


def _tensor_arg(be: Backend, name: str, value: Any, arg: str, position: int) -> None:
    if not be.is_tensor(value):
        raise be.type_error(f"{name}(): argument '{arg}' (position {position}) must be Tensor, "
                            f"not {type(value).__name__}")


def isclose(be: Backend, input: Any, other: Any, rtol: float = 1e-05, atol: float = 1e-08,
            equal_nan: bool = False) -> Any:
    """torch.isclose: |input - other| <= atol + rtol * |other| elementwise (infinities equal
    only to themselves; NaNs equal only with equal_nan); both tensors of one dtype."""
    _tensor_arg(be, "isclose", input, "input", 1)
    _tensor_arg(be, "isclose", other, "other", 2)
    a, b = be.dtype_name(input), be.dtype_name(other)
    if a != b:
        raise be.runtime_error(f"{_C_NAMES[a]} did not match {_C_NAMES[b]}")
    for what, v in (("rtol", rtol), ("atol", atol)):
        if v < 0:
            raise be.runtime_error(f"{what} must be greater than or equal to zero, but got {v}")
    close = be.call("eq", (input, other), {})
    if a != "bool" and (rtol or atol):
        diff = be.call("abs", (be.call("sub", (input, other), {}),), {})
        mag = be.call("abs", (other,), {})
        bound = be.call("add", (be.call("mul", (mag, rtol), {}), atol), {})
        within = be.call("le", (diff, bound), {})
        finite = be.call("ne", (mag, float("inf")), {})
        close = be.call("logical_or", (close, be.call("logical_and", (within, finite), {})), {})
    if equal_nan and a in ("float32", "float64"):
        nans = be.call("logical_and", (be.call("ne", (input, input), {}),
                                       be.call("ne", (other, other), {})), {})
        close = be.call("logical_or", (close, nans), {})
    return close


def allclose(be: Backend, input: Any, other: Any, rtol: float = 1e-05, atol: float = 1e-08,
             equal_nan: bool = False) -> bool:
    """torch.allclose: whether isclose holds for every element (a Python bool)."""
    _tensor_arg(be, "allclose", input, "input", 1)
    _tensor_arg(be, "allclose", other, "other", 2)
    return bool(be.call("all", (isclose(be, input, other, rtol, atol, equal_nan),), {}))


def equal(be: Backend, input: Any, other: Any) -> bool:
    """torch.equal: same shape and equal elements (compared after type promotion; NaN unequal)."""
    _tensor_arg(be, "equal", input, "input", 1)
    _tensor_arg(be, "equal", other, "other", 2)
    if be.shape(input) != be.shape(other):
        return False
    return bool(be.call("all", (be.call("eq", (input, other), {}),), {}))


_CLOSE_OPS = ("eq", "ne", "le", "abs", "sub", "mul", "add", "logical_or", "logical_and", "all")
SPELLINGS["isclose"] = Spelling("isclose", _CLOSE_OPS, isclose, isclose)
SPELLINGS["allclose"] = Spelling("allclose", _CLOSE_OPS, allclose, allclose)
SPELLINGS["equal"] = Spelling("equal", ("eq", "all"), equal, equal)


def where_method(be: Backend, self: Any, condition: Any, other: Any) -> Any:
    """Tensor.where(condition, other): `where(condition, self, other)` (the tensor is the
    values taken where condition holds, not the condition)."""
    return be.call("where", (condition, self, other), {})


SPELLINGS["where"] = Spelling("where", ("where",), None, where_method)


def is_tensor(be: Backend, obj: Any) -> bool:
    """torch.is_tensor: whether obj is a tensor of this layer."""
    return be.is_tensor(obj)


SPELLINGS["is_tensor"] = Spelling("is_tensor", (), is_tensor, None)


# --- devices: cpu(), cuda(), contiguous() --------------------------------------------------------


def cpu(be: Backend, self: Any, memory_format: Any = None) -> Any:
    """Tensor.cpu(): the tensor itself (gradserve's tensors are on the CPU)."""
    return self


def cuda(be: Backend, self: Any, device: Any = None, non_blocking: bool = False,
         memory_format: Any = None) -> Any:
    """Tensor.cuda(): refused as a CPU-only torch refuses it."""
    if device is not None:
        devices.check_device(device, "cuda", be.type_error, be.runtime_error)
    raise AssertionError(devices.CUDA_MESSAGE)


def contiguous(be: Backend, self: Any, memory_format: Any = None) -> Any:
    """Tensor.contiguous(memory_format=torch.contiguous_format): the tensor itself when laid
    out so, else a copy laid out so (CloneBackward0, as torch)."""
    if memory_format is None or memory_format is mf.contiguous_format:
        return self if be.is_contiguous(self) else be.contiguous_copy(self)
    fmt = mf.attr_name(memory_format, "contiguous", be.type_error)
    if mf.is_contiguous_as(fmt, tuple(self.shape), self.stride()):
        return self
    if fmt == "preserve":
        raise be.runtime_error("preserve memory format is unsupported by the contiguous operator")
    refusal = mf.rank_error(fmt, len(self.shape))
    if refusal is not None:
        raise be.runtime_error(refusal)
    return be.call("clone", (self,), {"memory_format": fmt})


SPELLINGS["cpu"] = Spelling("cpu", (), None, cpu)
SPELLINGS["cuda"] = Spelling("cuda", (), None, cuda)
SPELLINGS["contiguous"] = Spelling("contiguous", ("clone",), None, contiguous)


# --- Tensor.to -----------------------------------------------------------------------------------

TO_SIGNATURES = (
    "(torch.device device = None, torch.dtype dtype = None, bool non_blocking = False, bool copy "
    "= False, *, torch.memory_format memory_format = None)",
    "(torch.dtype dtype, bool non_blocking = False, bool copy = False, *, torch.memory_format "
    "memory_format = None)",
    "(Tensor tensor, bool non_blocking = False, bool copy = False, *, torch.memory_format "
    "memory_format = None)")


def parse_to(be: Backend, args: tuple[Any, ...], kwargs: dict[str, Any],
             is_dtype: Callable[[Any], bool]) -> tuple[Any, bool]:
    """Tensor.to's three forms, `(device, dtype, non_blocking, copy)`, `(dtype, ...)` and
    `(tensor, ...)`: the target dtype (None: unchanged) and `copy`; devices are checked as
    `check_device` does, other combinations raise torch's TypeError.
    """
    def refuse() -> Exception:
        return be.type_error(messages.invalid_combination(
            "to", args, kwargs, TO_SIGNATURES, be.is_tensor,
            typename=lambda v: "torch.dtype" if is_dtype(v) else None))

    known = {"device", "dtype", "non_blocking", "copy", "memory_format"}
    if any(k not in known for k in kwargs):
        raise refuse()
    first = args[0] if args else None
    if args and (is_dtype(first) or be.is_tensor(first)):
        names: tuple[str, ...] = ("dtype", "non_blocking", "copy")
        if be.is_tensor(first):
            args = (be.dtype_of(first), *args[1:])
    else:
        names = ("device", "dtype", "non_blocking", "copy")
    if len(args) > len(names):
        raise refuse()
    bound = dict(zip(names, args))
    if any(k in bound for k in kwargs):
        raise refuse()
    bound.update(kwargs)
    dtype = bound.get("dtype")
    if dtype is not None and not is_dtype(dtype):
        raise refuse()
    if not all(isinstance(bound.get(k, False), bool) for k in ("non_blocking", "copy")):
        raise refuse()
    device = bound.get("device")
    if device is not None and not isinstance(device, (str, devices.device)) and not is_int(
            device):
        raise refuse()
    devices.check_device(device, "to", be.type_error, be.runtime_error)
    return dtype, bool(bound.get("copy", False))


# --- legacy constructors: torch.Tensor(...), torch.FloatTensor(...) ------------------------------

NEW_SIGNATURES = ("(*, torch.device device = None)", "(torch.Storage storage)",
                  "(Tensor other)", "(tuple of ints size, *, torch.device device = None)",
                  "(object data, *, torch.device device = None)")
_OPTION_NAMES = {"float32": "float", "float64": "double", "int32": "int", "int64": "long int",
                 "bool": "bool", "uint8": "unsigned char", "int8": "signed char",
                 "int16": "short int"}


def _options(dtype: str) -> str:
    return (f"TensorOptions(dtype={_OPTION_NAMES[dtype]}, device=cpu, layout=Strided, "
            "requires_grad=false (default), pinned_memory=false (default), "
            "memory_format=(nullopt))")


def legacy_new(be: Backend, dtype: str | None, args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> Any:
    """`torch.Tensor(...)` (dtype None: the default dtype) or `torch.FloatTensor(...)` & co.:
    no arguments (an empty tensor), sizes (zeros: torch leaves them uninitialised), a
    sequence or array of data, or a tensor (itself as an alias when of that dtype).
    """
    unknown = [k for k in kwargs if k != "device"]
    if unknown:
        reason = f"some of the keywords were incorrect: {', '.join(unknown)}"
        raise be.type_error(messages.invalid_combination(
            "new", args, kwargs, NEW_SIGNATURES, be.is_tensor, {0: reason}, _torch_typename))
    device = kwargs.get("device")
    if isinstance(device, str):
        try:
            device = devices.device(device)
        except RuntimeError as exc:
            raise be.runtime_error(str(exc)) from None
    if isinstance(device, devices.device) and device.type != "cpu":
        raise be.runtime_error("legacy constructor expects device type: cpu but device type: "
                               f"{device.type} was passed")
    devices.check_device(device, "new", be.type_error, be.runtime_error)
    want = dtype or be.default_dtype()
    if not args:
        return be.call("zeros", (), {"size": (0,), "dtype": be.dtype(want)})
    first = args[0]
    if len(args) == 1 and be.is_tensor(first):
        have = be.dtype_name(first)
        if dtype is not None and have != dtype:
            raise be.type_error(f"expected {_options(dtype)} (got {_options(have)})")
        return be.call("alias", (first,), {})
    if all(is_int(a) for a in args) or (len(args) == 1 and be.is_size(first)):
        size = tuple(first) if len(args) == 1 and be.is_size(first) else args
        return be.call("zeros", (), {"size": tuple(int(d) for d in size),
                                     "dtype": be.dtype(want)})
    if len(args) == 1 and isinstance(first, (list, tuple, np.ndarray)):
        return be.from_data(first, want)
    if len(args) == 1 and isinstance(first, (float, bool, np.number)):
        raise be.type_error(f"new(): data must be a sequence (got {type(first).__name__})")
    if len(args) == 1:
        raise be.type_error(f"new(): invalid data type '{type(first).__name__}'")
    raise be.type_error(messages.invalid_combination(
        "new", args, kwargs, NEW_SIGNATURES, be.is_tensor))


def _torch_typename(v: Any) -> str | None:
    # both layers' dtype classes are called DType; torch's messages say torch.dtype
    return "torch.dtype" if type(v).__name__ == "DType" else None


LEGACY_TYPES = {"FloatTensor": "float32", "DoubleTensor": "float64", "LongTensor": "int64",
                "IntTensor": "int32", "BoolTensor": "bool", "ByteTensor": "uint8",
                "CharTensor": "int8", "ShortTensor": "int16"}


class LegacyType(type):
    """The metaclass of `torch.Tensor` / `torch.FloatTensor` & co. as a layer binds them:
    calling one is the legacy constructor; `isinstance(x, torch.Tensor)` holds for every tensor
    of the layer, `isinstance(x, torch.FloatTensor)` for its float32 ones; other attributes are
    the Tensor class's (`torch.Tensor.add`)."""

    _base: type
    _dtype: str | None
    _new: Fn
    _dtype_name: Fn

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._new(cls._dtype, args, kwargs)

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, cls._base) and (cls._dtype is None
                                               or cls._dtype_name(obj) == cls._dtype)

    def __subclasscheck__(cls, sub: Any) -> bool:
        return cls._dtype is None and isinstance(sub, type) and issubclass(sub, cls._base)

    def __getattr__(cls, name: str) -> Any:
        return getattr(cls._base, name)

    def __repr__(cls) -> str:
        return f"<class 'torch.{cls.__name__}'>"


def legacy_dtype_name(value: Any) -> str | None:
    """The dtype name `x.type(...)` means by a typed constructor (`torch.DoubleTensor`) or its
    name ("torch.DoubleTensor"); None for anything else."""
    if isinstance(value, LegacyType):
        return value._dtype
    if isinstance(value, str):
        return LEGACY_TYPES.get(value.removeprefix("torch."))
    return None


def legacy_types(base: type, new: Fn, dtype_name: Fn) -> dict[str, Any]:
    """`Tensor` and the typed constructors (`FloatTensor`, ...) for one layer.

    Args:
        base: the layer's Tensor class.
        new: `new(dtype or None, args, kwargs)`, the layer's `legacy_new` binding.
        dtype_name: a tensor's dtype name.
    """
    out: dict[str, Any] = {}
    for name, d in (("Tensor", None), *LEGACY_TYPES.items()):
        out[name] = LegacyType(name, (), {"_base": base, "_dtype": d, "_new": staticmethod(new),
                                          "_dtype_name": staticmethod(dtype_name),
                                          "__doc__": legacy_new.__doc__})
    return out


# --- autograd.grad / backward: torch 2.13's deprecated keywords ----------------------------------

ONLY_INPUTS_WARNING = (
    "only_inputs argument is deprecated and is ignored now (defaults to True). To accumulate "
    "gradient for other parts of the graph, please use torch.autograd.backward.")
GRAD_VARIABLES_WARNING = "`grad_variables` is deprecated. Use `grad_tensors` instead."
GRAD_VARIABLES_BOTH = ("`grad_tensors` and `grad_variables` (deprecated) arguments both passed to "
                       "`backward()`. Please only use `grad_tensors`.")


def grad_arguments(only_inputs: bool, is_grads_batched: bool, stacklevel: int) -> None:
    """Check torch.autograd.grad's deprecated and unsupported keywords: `only_inputs=False`
    warns as torch (and is ignored); `is_grads_batched=True` (vmap) is not supported."""
    if not only_inputs:
        warnings.warn(ONLY_INPUTS_WARNING, FutureWarning, stacklevel=stacklevel + 1)
    if is_grads_batched:
        raise NotImplementedError("gradserve does not implement is_grads_batched=True in "
                                  "torch.autograd.grad")


def backward_arguments(grad_tensors: Any, grad_variables: Any, runtime_error: type[RuntimeError],
                       stacklevel: int) -> Any:
    """torch.autograd.backward's deprecated `grad_variables`: the gradients to use."""
    if grad_variables is None:
        return grad_tensors
    warnings.warn(GRAD_VARIABLES_WARNING, FutureWarning, stacklevel=stacklevel + 1)
    if grad_tensors is not None:
        raise runtime_error(GRAD_VARIABLES_BOTH)
    return grad_variables
