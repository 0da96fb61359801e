"""The Tensor: a numpy array plus autograd state, with torch's attributes and rules.

Op methods and operators (`x.sin()`, `x * y`) and `backward` are attached from the registry by
`api.py` (declared for type checkers in tensor_methods.pyi); this module holds what is not an
op: identity, conversion, printing and the autograd state.
"""

from __future__ import annotations

import builtins
import warnings
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from gradserve.surface import func as func_state
from gradserve.surface import grad_mode, layout, messages, storage
from gradserve.surface import memory_format as memory_formats
from gradserve.surface.compat import short_node_name
from gradserve.surface.formatting import format_tensor

from . import dtypes, errors, parameters
from .dtypes import DType

# torch words the dtype refusal differently for requires_grad_(), the attribute and factories
# (the factories' text: gradserve.surface.messages.REQUIRES_GRAD_FACTORY_MESSAGE).
REQUIRES_GRAD_METHOD_MESSAGE = "only Tensors of floating point dtype can require gradients"
REQUIRES_GRAD_ATTRIBUTE_MESSAGE = (
    "only Tensors of floating point and complex dtype can require gradients")


class Size(tuple):  # type: ignore[type-arg]
    """torch.Size: a tuple of ints printed as `torch.Size([2, 3])`."""

    def __repr__(self) -> str:
        return f"torch.Size([{', '.join(str(d) for d in self)}])"

    def numel(self) -> int:
        n = 1
        for d in self:
            n *= d
        return n


if TYPE_CHECKING:
    # The op methods and operators api.build() attaches, declared for type checkers (generated
    # from the op table by scripts/gen_tensor_methods.py); at runtime Tensor's base is object.
    from .tensor_methods import TensorMethods
else:
    TensorMethods = object


class InferenceVersion(list):  # type: ignore[type-arg]
    """The version counter of a tensor made inside `inference_mode()` (and of its views): its
    type marks an inference tensor, which torch does not let read its version, be written in
    place outside inference mode, or require grad there."""

    __slots__ = ()


def new_version() -> list[int]:
    """A new tensor's version counter: an `InferenceVersion` inside `inference_mode()`."""
    return InferenceVersion((0,)) if grad_mode._state.inference else [0]


class Tensor(TensorMethods):
    """An n-dimensional array that records the ops applied to it, as torch.Tensor does."""

    __slots__ = ("_data", "dtype", "_rg", "grad_fn", "output_nr", "_grad", "_vc", "_accum",
                 "_retains_grad", "_base", "_view_version", "_has_views", "__weakref__")

    # numpy defers a binary operator to an operand of higher priority, as torch.Tensor sets it:
    # `np.float64(2.0) * t` is then `t.__rmul__`, a Python number's promotion (float32 stays)
    __array_priority__ = 1000

    _data: np.ndarray
    dtype: DType
    _rg: bool
    grad_fn: Any
    output_nr: int
    _grad: Tensor | None
    _vc: list[int]  # the version counter, shared with views (see `_version`)
    _accum: Any
    _retains_grad: bool
    _base: Tensor | None  # the tensor this one is a view of (sharing data and version counter)
    _view_version: int  # views only: the version their grad_fn was recorded at
    # bases only (unset elsewhere): some view of this tensor was made, or it was detached or is
    # a detach() (sharing data and version counter: the server describes them after a write)
    _has_views: bool

    @classmethod
    def _make(cls, data: np.ndarray, grad_fn: Any = None, output_nr: int = 0,
              version: list[int] | None = None, dtype: DType | None = None) -> Tensor:
        """Wrap an ndarray (no copy, no checks) — the engine's internal constructor (dispatch.run
        makes an op's result with these defaults inline: a new slot is set there too)."""
        t = object.__new__(cls)
        t._data = data
        t.dtype = dtypes._BY_NP[data.dtype] if dtype is None else dtype
        t._rg = grad_fn is not None
        t.grad_fn = grad_fn
        t.output_nr = output_nr
        t._grad = None
        t._vc = new_version() if version is None else version
        t._accum = None
        t._retains_grad = False
        t._base = None
        return t

    def _array(self) -> np.ndarray:
        """The data as a writable ndarray.

        Ops keep a 0-d result as a numpy scalar (numpy's scalar arithmetic is several times faster
        than its 0-d arrays); the first in-place write or alias turns it into a 0-d array.
        """
        d = self._data
        if type(d) is not np.ndarray:
            d = self._data = np.array(d)
        return d

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # `Tensor(...)` is torch's legacy constructor: __new__ (engine/spellings.py) made it

    # --- autograd state ------------------------------------------------------------------------

    @property
    def requires_grad(self) -> bool:
        return self._rg

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        self._set_requires_grad(flag, REQUIRES_GRAD_ATTRIBUTE_MESSAGE)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set whether autograd records ops on this leaf; returns self."""
        return self._set_requires_grad(requires_grad, REQUIRES_GRAD_METHOD_MESSAGE)

    def _set_requires_grad(self, requires_grad: bool, dtype_message: str) -> Tensor:
        flag = bool(requires_grad)
        if self.grad_fn is not None:
            if not flag:
                raise errors.AutogradError(
                    "you can only change requires_grad flags of leaf variables. If you want to "
                    "use a computed variable in a subgraph that doesn't require differentiation "
                    "use var_no_grad = var.detach().")
            return self
        if flag and not self.dtype.is_floating_point:
            raise errors.InvalidArgumentError(dtype_message)  # an argument, not a state
        if flag and type(self._vc) is InferenceVersion and not grad_mode._state.inference:
            raise errors.InvalidArgumentError(messages.INFERENCE_REQUIRES_GRAD_MESSAGE)
        self._rg = flag
        return self

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def grad(self) -> Tensor | None:
        if self.grad_fn is not None and not self._retains_grad and self._grad is None:
            warnings.warn(messages.NON_LEAF_GRAD_WARNING, UserWarning, stacklevel=2)
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise errors.InvalidTypeError(
                    f"assigned grad expected to be a Tensor or None but got grad of type "
                    f"{type(value).__name__}")
            if value.dtype is not self.dtype:
                raise errors.AutogradError(
                    "attempting to assign a gradient with dtype "
                    f"'{_torch_name(value.dtype)}' to a tensor with dtype "
                    f"'{_torch_name(self.dtype)}'. Please ensure that the gradient and the tensor "
                    "have the same dtype")
            if value.shape != self.shape:
                raise errors.AutogradError(
                    "assigned grad has data of a different size")
        self._grad = value

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    def retain_grad(self) -> None:
        """Populate `.grad` of this non-leaf during backward (a no-op on leaves)."""
        if not self._rg:
            raise errors.AutogradError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is None or self._retains_grad:
            return
        node = self.grad_fn
        if node.retained is None:
            node.retained = {}
        node.retained[self.output_nr] = weakref.ref(self)
        self._retains_grad = True

    def detach(self) -> Tensor:
        """A new leaf sharing this tensor's data (and version counter) that never requires grad."""
        out = Tensor._make(self._array(), version=self._vc)
        self._has_views = out._has_views = True  # see `_has_views`
        return out

    def detach_(self) -> Tensor:
        """Make this tensor a leaf that does not require grad, in place."""
        self.grad_fn = None
        self._rg = False
        self.output_nr = 0
        return self

    @property
    def data(self) -> Tensor:
        """A tensor sharing this one's data, outside autograd (its own version counter, as
        torch's `.data`: in-place changes through it are not seen by autograd)."""
        return Tensor._make(self._array())

    @data.setter
    def data(self, value: Tensor) -> None:
        """`x.data = y`: x now shares y's data (shape and dtype too), keeping x's autograd state."""
        if not isinstance(value, Tensor):
            raise errors.InvalidTypeError(
                f"Variable data has to be a tensor, but got {type(value).__name__}")
        if self._rg and not value.dtype.is_floating_point:
            raise errors.InvalidArgumentError(
                "data set to a tensor that requires gradients must be floating point or complex "
                "dtype")
        self._data = value._array()
        self.dtype = value.dtype

    @property
    def _version_counter(self) -> int:
        return self._vc[0]

    @property
    def _version(self) -> int:
        """torch's version counter: bumped by each in-place write to this tensor or a view
        sharing its data."""
        if type(self._vc) is InferenceVersion:
            raise errors.InvalidArgumentError(messages.INFERENCE_VERSION_MESSAGE)
        return self._vc[0]

    def is_inference(self) -> bool:
        """Whether this tensor was made inside `inference_mode()` (or is a view of one)."""
        return type(self._vc) is InferenceVersion

    # --- shape and conversion ------------------------------------------------------------------

    @property
    def shape(self) -> Size:
        return Size(self._data.shape)

    def size(self, dim: int | None = None) -> Any:
        """The shape, or one dimension's length."""
        if dim is None:
            return Size(self._data.shape)
        return self._data.shape[_wrap_dim(dim, self._data.ndim)]

    def dim(self) -> int:
        return self._data.ndim

    ndim = property(dim)

    def numel(self) -> int:
        return int(self._data.size)

    nelement = numel

    def element_size(self) -> int:
        return self.dtype.itemsize

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    @property
    def device(self) -> Any:
        """device(type='cpu'): gradserve computes on the CPU."""
        from gradserve.surface.devices import CPU

        return CPU

    is_cuda = False
    is_cpu = True

    def get_device(self) -> int:
        """-1, torch's answer for a CPU tensor."""
        return -1

    def is_contiguous(self, memory_format: Any = None) -> bool:
        """Whether the elements are laid out in row-major order without gaps (False for a
        transpose, an expand or a strided slice, as torch), or in `memory_format`'s order
        (`torch.channels_last`: NHWC)."""
        if memory_format is None:
            return builtins.bool(np.asarray(self._data).flags.c_contiguous)
        fmt = memory_formats.attr_name(memory_format, "is_contiguous", errors.InvalidTypeError)
        return memory_formats.is_contiguous_as(fmt, self._data.shape, self.stride())

    def stride(self, dim: Any = None) -> Any:
        """The strides in elements (a tuple), or dim's: the layout the data has here, which is
        torch's (a transpose, an expand, a slice are views with their own strides)."""
        a = np.asarray(self._data)
        if a.flags.c_contiguous:
            strides = layout.contiguous_strides(a.shape)
        else:
            strides = tuple(s // a.itemsize for s in a.strides)
        return layout.pick_stride(strides, dim, errors.OutOfRangeIndexError)

    def storage_offset(self) -> int:
        """Where this view starts in its base's elements (0 for a tensor that is not a view)."""
        if self._base is None:
            return 0
        root = self._base
        while root._base is not None:
            root = root._base
        a, b = np.asarray(self._data), np.asarray(root._data)
        if a.size == 0:
            return 0
        start = a.__array_interface__["data"][0] - b.__array_interface__["data"][0]
        return int(start // a.itemsize)

    def data_ptr(self) -> int:
        """The address of the first element (torch's: the storage's plus the offset)."""
        return int(self._array().__array_interface__["data"][0])

    def _storage_block(self) -> tuple[np.ndarray, int]:
        root = self
        while root._base is not None:  # a view shares its base's storage
            root = root._base
        return storage.storage_block(root._array())

    def storage(self) -> Any:
        """The memory this tensor and its views share, as elements of its dtype (torch's
        deprecated TypedStorage: it warns once)."""
        storage.warn_typed_storage()
        block, ptr = self._storage_block()
        return storage.TypedStorage(block.view(self._data.dtype), ptr, self.dtype)

    def untyped_storage(self) -> Any:
        """The memory this tensor and its views share, as bytes."""
        block, ptr = self._storage_block()
        return storage.UntypedStorage(block.view(np.uint8), ptr)

    def item(self) -> Any:
        """The single value as a Python number."""
        func_state.check_item(errors.InvalidArgumentError)  # inside vmap: torch's error
        if self._data.size != 1:
            raise errors.InvalidArgumentError(
                f"a Tensor with {self._data.size} elements cannot be converted to Scalar")
        return self._data.reshape(()).item()

    def tolist(self) -> Any:
        return self._data.tolist()

    def numpy(self, *, force: bool = False) -> np.ndarray:
        """The data as an ndarray sharing memory (torch refuses while requires_grad is set and
        grad mode is on)."""
        if self._rg and not force and grad_mode.is_grad_enabled():
            raise errors.AutogradError(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                "instead.")
        return self._array()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if self._rg and grad_mode.is_grad_enabled():
            raise errors.AutogradError(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                "instead.")
        return self._array() if dtype is None else self._array().astype(dtype)

    def __array_wrap__(self, array: np.ndarray, context: Any = None,
                       return_scalar: bool = False) -> Tensor:
        """A numpy function's result on this tensor as a tensor, as torch's (`np.sin(t)`,
        `t * np.array(2.0)`: numpy computes, torch.from_numpy wraps; bool becomes uint8)."""
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        dtypes.from_numpy(array.dtype)  # refuses a dtype gradserve does not have
        return Tensor._make(np.array(array, copy=True))

    def _scalar_value(self, kind: str) -> Any:
        func_state.check_item(errors.InvalidArgumentError)  # float()/int() inside vmap
        if self._data.size != 1:
            raise ValueError(messages.SCALAR_CONVERSION_MESSAGE)
        return self._data.reshape(()).item()

    def __float__(self) -> float:
        value = builtins.float(self._scalar_value("float"))
        if self._rg:
            from gradserve.surface.compat import warn_scalar_requires_grad

            warn_scalar_requires_grad(stacklevel=2)
        return value

    def __int__(self) -> int:
        return builtins.int(self._scalar_value("int"))

    def __index__(self) -> int:
        if self.dtype.is_floating_point or self.dtype is dtypes.bool_ or self._data.size != 1:
            raise errors.InvalidTypeError(
                "only integer tensors of a single element can be converted to an index")
        return builtins.int(self._data.reshape(()).item())

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise errors.InvalidArgumentError(
                "Boolean value of Tensor with more than one value is ambiguous")
        return builtins.bool(self._data.reshape(()).item())

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise errors.InvalidTypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        if self._data.ndim == 0:
            raise errors.InvalidTypeError("iteration over a 0-d tensor")
        return iter(self.unbind(0))  # as torch: the rows share one UnbindBackward0 node

    def __hash__(self) -> int:
        return id(self)

    # --- printing ------------------------------------------------------------------------------

    def _suffixes(self) -> list[str]:
        if self.grad_fn is not None:
            return [f"grad_fn=<{short_node_name(self.grad_fn.name())}>"]
        if self._rg:
            return ["requires_grad=True"]
        return []

    def __repr__(self) -> str:
        return format_tensor(self._data, self.dtype.name, self._suffixes())

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        if self._data.ndim == 0:
            return format(self._data.item(), spec)
        return format(repr(self), spec)

    def __reduce__(self) -> Any:
        raise errors.InvalidTypeError("gradserve tensors are not picklable")

    def __deepcopy__(self, memo: dict[int, Any]) -> Tensor:
        """copy.deepcopy as torch's: graph leaves only; a copy of the data (its strides kept),
        requires_grad and a deep copy of `.grad`; a Parameter becomes a new Parameter holding a
        copy (without `.grad`, as torch's Parameter.__deepcopy__)."""
        if self.grad_fn is not None:
            raise errors.InvalidArgumentError(messages.DEEPCOPY_NON_LEAF)
        found = memo.get(id(self))
        if found is not None:
            return found  # type: ignore[no-any-return]
        with grad_mode.no_grad():
            data = self.clone()
        if parameters.is_parameter(self):
            new = parameters.register(data.requires_grad_(self._rg))
        else:
            new = data.requires_grad_(self._rg)
            if self._grad is not None:
                new.grad = self._grad.__deepcopy__(memo)
        memo[id(self)] = new
        return new  # type: ignore[no-any-return]


def _torch_name(d: DType) -> str:
    return f"torch.{d.name}"


def _wrap_dim(dim: int, ndim: int) -> int:
    """A possibly negative dim as an index into a shape, or torch's IndexError."""
    lo, hi = (-1, 0) if ndim == 0 else (-ndim, ndim - 1)
    if not (lo <= dim <= hi):
        raise errors.OutOfRangeIndexError(messages.dim_out_of_range(dim, lo, hi))
    return dim % ndim if ndim else 0

