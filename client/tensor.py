"""The client Tensor: a handle to a tensor held by a session (or a node of a traced graph).

Everything that needs the server goes through the tensor's owner (a `Session` or a `Tracer`):
recording ops (Python's operators through the owner's `_operator`), reading metadata and
values. Op methods (`x.sin()`, `x.add_(y)`) come from the server's catalogue through
`__getattr__`; Python's operators are the one fixed table in `ops`. Printing is the server's
own repr of the tensor (torch's format), fetched with the value.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from gradserve.surface import compat, devices, grad_mode, layout, messages, operators, storage
from gradserve.surface import func as func_state
from gradserve.surface import memory_format as memory_formats

from .codec import DType

if TYPE_CHECKING:  # pragma: no cover
    from gradserve.surface.meta import Meta
    from gradserve.v1 import session_pb2


REQUIRES_GRAD_ATTRIBUTE_MESSAGE = (
    "only Tensors of floating point and complex dtype can require gradients")


class Size(tuple):  # type: ignore[type-arg]
    """torch.Size: a tuple of ints printed as `torch.Size([2, 3])`."""

    __module__ = "torch"  # `type(x.shape)` shows as "<class 'torch.Size'>"

    def __repr__(self) -> str:
        return f"torch.Size([{', '.join(str(d) for d in self)}])"

    def numel(self) -> builtins.int:
        n = 1
        for d in self:
            n *= d
        return n


class GradFn:
    """A tensor's grad_fn: the name of the autograd node that produced it."""

    __slots__ = ("_name", "_tensor")

    def __init__(self, name: str, tensor: Tensor):
        self._name = name
        self._tensor = tensor

    def name(self) -> str:
        return compat.node_name(self._name)

    @property
    def next_functions(self) -> tuple[tuple[Any, int], ...]:
        """The next nodes, as torch's `next_functions` (fetches the graph from the server)."""
        from .dot import next_functions

        return next_functions(self._tensor)

    def __getattr__(self, name: str) -> Any:
        # torch's `_saved_self`, `_saved_result`, ...: read from the server (client/saved.py)
        if name.startswith("_saved_"):
            from . import saved

            return saved.read(self._tensor._owner, self._tensor, name)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def register_hook(self, hook: Any) -> Any:
        """`hook(grad_inputs, grad_outputs)` runs here after this node ran; a tuple it returns
        replaces grad_inputs (see client/function.py)."""
        from .function import register_node_hook

        return register_node_hook(self._tensor._owner, self._tensor, hook, False)

    def register_prehook(self, hook: Any) -> Any:
        """`hook(grad_outputs)` runs here before this node runs; a tuple it returns replaces
        them."""
        from .function import register_node_hook

        return register_node_hook(self._tensor._owner, self._tensor, hook, True)

    def __repr__(self) -> str:
        module = type(self).__module__
        prefix = f"{module}." if module == FUNCTION_NODE_MODULE else ""
        return f"<{prefix}{self._name} object at {id(self):#x}>"


FUNCTION_NODE_MODULE = "torch.autograd.function"
"""The module torch gives the node class of a custom autograd.Function (`ExpBackward`)."""


@functools.lru_cache(maxsize=1024)
def grad_fn_class(name: str, custom: builtins.bool) -> type[GradFn]:
    """The class of a grad_fn shown as `<name>`, named as torch's node class is:
    `type(y.grad_fn).__name__` is "MulBackward0", and a custom Function's node class
    ("ExpBackward") lives in torch.autograd.function, which its repr shows."""
    return type(name, (GradFn,), {"__slots__": (),
                                  "__module__": FUNCTION_NODE_MODULE if custom else "builtins"})


class Tensor:
    """A tensor held remotely; behaves like torch.Tensor for the supported API."""

    # shown as torch's class: `print(type(x))` is "<class 'torch.Tensor'>" (tutorials print it)
    __module__ = "torch"

    # Made once per recorded op, so only what every tensor sets at once is a slot; the rest
    # are class defaults a tensor overrides (in its `__dict__`) once it has one of its own.
    __slots__ = ("_owner", "_handle", "_meta", "_node", "__weakref__",
                 # torch's tensors take a program's own attributes (`setattr(x, "note", ...)`)
                 "__dict__")

    # numpy defers a binary operator to an operand of higher priority, as torch.Tensor sets it:
    # `np.float64(2.0) * t` is then `t.__rmul__`, a Python number's promotion (float32 stays)
    __array_priority__ = 1000

    # What the client knows without the server (client/session.py, `Session.meta`): the
    # shape, dtype name and requires_grad (`gradserve.surface.meta.Meta`), and the grad_fn
    # name ("" for none; None: unknown). Cleared when a recorded write changes them.
    _meta: Meta | None
    _node: str | None
    _info: session_pb2.TensorInfo | None = None  # the server's description, when it sent one
    _value: np.ndarray | None = None
    _repr: str | None = None
    _epoch = -1
    _error: BaseException | None = None
    _retains_grad = False
    _grad_cache: tuple[int, Tensor | None] | None = None
    # the server's FetchOmitted when the last fetch's data was left out of its reply
    _omitted: Any = None
    _data_of: Any = None  # read as `x.data`: x's handle (it shares x's data)
    _inference = False  # made inside inference_mode() (see is_inference)

    def __init__(self, owner: Any, handle: Any):
        self._owner = owner
        self._handle = handle
        self._meta = None
        self._node = None
        if grad_mode._state.inference:
            self._inference = True

    def is_inference(self) -> builtins.bool:
        """Whether this tensor was made inside `inference_mode()` (a view of one made outside
        it is not counted, unlike torch's)."""
        return self._inference

    @property
    def _version(self) -> builtins.int:
        """torch's version counter (the server's): bumped by each in-place write to this
        tensor or a view sharing its data."""
        if self._inference:
            raise RuntimeError(messages.INFERENCE_VERSION_MESSAGE)
        return builtins.int(self._owner.info(self).version)

    def _outside_inference_check(self) -> None:
        """torch's refusal of an in-place write to an inference tensor outside inference
        mode."""
        if self._inference and not grad_mode._state.inference:
            raise RuntimeError(messages.INFERENCE_INPLACE_MESSAGE)

    # --- ops ------------------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # op names of the catalogues seen are found on the class first (`install_methods`)
        if name.startswith("_"):
            raise AttributeError(name)
        return self._owner.method(self, name)

    def __del__(self) -> None:
        try:
            self._owner.dropped(self._handle)
        except Exception:  # noqa: BLE001 - never fully constructed, or interpreter exit
            pass

    # --- metadata -------------------------------------------------------------------------------

    @property
    def shape(self) -> Size:
        return Size(self._owner.meta(self).shape)

    def size(self, dim: builtins.int | None = None) -> Any:
        shape = self.shape
        if dim is None:
            return shape
        n = len(shape)
        lo, hi = (-1, 0) if n == 0 else (-n, n - 1)
        if not lo <= dim <= hi:
            raise IndexError(messages.dim_out_of_range(dim, lo, hi))
        return shape[dim % n] if n else 0

    def dim(self) -> builtins.int:
        return len(self._owner.meta(self).shape)

    @property
    def ndim(self) -> builtins.int:
        return self.dim()

    def numel(self) -> builtins.int:
        return self.shape.numel()

    nelement = numel

    @property
    def dtype(self) -> DType:
        from .codec import BY_NAME

        return BY_NAME[self._owner.meta(self).dtype]

    def is_floating_point(self) -> builtins.bool:
        return self.dtype.is_floating_point

    def element_size(self) -> builtins.int:
        return self.dtype.itemsize

    @property
    def itemsize(self) -> builtins.int:
        return self.dtype.itemsize

    @property
    def nbytes(self) -> builtins.int:
        return self.numel() * self.dtype.itemsize

    @property
    def device(self) -> Any:
        """device(type='cpu'): gradserve computes on the CPU."""
        return devices.CPU

    is_cuda = False
    is_cpu = True

    def get_device(self) -> builtins.int:
        """-1, torch's answer for a CPU tensor."""
        return -1

    def is_contiguous(self, memory_format: Any = None) -> builtins.bool:
        """Whether the elements are laid out in row-major order without gaps (as the server
        holds them: False for a transpose, an expand or a strided slice, as torch). Known
        without a round trip when the client inferred it (`Meta.contiguous`)."""
        if memory_format is not None:
            fmt = memory_formats.attr_name(memory_format, "is_contiguous", TypeError)
            return memory_formats.is_contiguous_as(fmt, tuple(self.shape), self.stride())
        if self._known_contiguous():
            return True
        return not self._owner.info(self).non_contiguous

    def stride(self, dim: Any = None) -> Any:
        """The strides in elements (a tuple), or dim's, as the server holds the data (torch's:
        a transpose, an expand, a slice are views with their own strides)."""
        if self._known_contiguous():
            assert self._meta is not None
            strides = layout.contiguous_strides(self._meta.shape)
        else:
            info = self._owner.info(self)
            strides = (tuple(info.strides) if info.non_contiguous
                       else layout.contiguous_strides(tuple(info.shape)))
        return layout.pick_stride(strides, dim, IndexError)

    def _known_contiguous(self) -> builtins.bool:
        """Whether the client inferred this tensor contiguous (no failed op behind it, no
        in-place write pending: a read then goes to the server, as `Session.meta`'s)."""
        m = self._meta
        return (m is not None and m.contiguous is True and self._error is None
                and not self._owner._writes_pending())

    def storage_offset(self) -> builtins.int:
        """Where this view starts in its base's elements (0 for a tensor that is not a view)."""
        return builtins.int(self._owner.info(self).storage_offset)

    @property
    def requires_grad(self) -> builtins.bool:
        return self._owner.meta(self).requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        # torch words the attribute's dtype refusal differently from requires_grad_()'s
        if flag and not self.dtype.is_floating_point:
            raise RuntimeError(REQUIRES_GRAD_ATTRIBUTE_MESSAGE)
        self.requires_grad_(flag)

    @property
    def is_leaf(self) -> builtins.bool:
        return not self._owner.grad_fn_name(self)

    @property
    def grad_fn(self) -> GradFn | None:
        name = self._owner.grad_fn_name(self)
        if not name:
            return None
        custom = name in getattr(self._owner, "_function_nodes", ())
        return grad_fn_class(name, custom)(name, self)

    @property
    def _base(self) -> Tensor | None:
        """The tensor this view was made from (torch's `_base`; None for a tensor that is not
        a view): read from the server (client/saved.py)."""
        from . import saved

        return saved.read_base(self._owner, self)

    @property
    def retains_grad(self) -> builtins.bool:
        return self._retains_grad

    # --- autograd -------------------------------------------------------------------------------

    @property
    def grad(self) -> Tensor | None:
        return self._owner.get_grad(self)

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        self._owner.set_grad(self, value)

    def backward(self, gradient: Any = None, retain_graph: bool | None = None,
                 create_graph: bool = False, inputs: Any = None) -> None:
        """Accumulate this tensor's gradient into the leaves' `.grad` (runs now, remotely)."""
        self._owner.backward(self, gradient, retain_graph, create_graph, inputs)

    def register_hook(self, hook: Any) -> Any:
        """`hook(grad)` runs here when a backward pass computes this tensor's gradient; a Tensor
        it returns replaces it (see client/function.py)."""
        from .function import register_hook

        return register_hook(self._owner, self, hook, False)

    def register_post_accumulate_grad_hook(self, hook: Any) -> Any:
        """`hook(tensor)` runs here after this leaf's `.grad` was accumulated."""
        from .function import register_hook

        return register_hook(self._owner, self, hook, True)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and self._inference and not grad_mode._state.inference:
            raise RuntimeError(messages.INFERENCE_REQUIRES_GRAD_MESSAGE)
        return self._owner.requires_grad_(self, requires_grad)

    def detach(self) -> Tensor:
        return self._owner.detach(self)

    def detach_(self) -> Tensor:
        return self._owner.detach_(self)

    @property
    def data(self) -> Tensor:
        """A tensor sharing this one's data, outside autograd (`x.data -= lr * x.grad`), with a
        version counter of its own, as torch's: in-place writes through it are not seen by
        autograd."""
        d = self._owner.detach(self, own_version=True)
        d._data_of = self._handle
        return d

    @data.setter
    def data(self, value: Tensor) -> None:
        """`x.data = y`: x takes y's values, keeping its autograd state. A tensor read from
        `x.data` already shares x's data (nothing to send); another one of x's shape and dtype
        is copied in without recording; one of another shape or dtype is sent at once
        (SetData, so torch's refusals surface here; a server without the "set_data" feature
        cannot)."""
        if not isinstance(value, Tensor):
            raise TypeError(f"Variable data has to be a tensor, but got {type(value).__name__}")
        if value._data_of == self._handle and value._owner is self._owner:
            return
        if value.shape != self.shape or value.dtype != self.dtype:
            if self._owner._set_data:
                self._owner.set_data(self, value)
                return
            raise NotImplementedError(
                "gradserve: through a session, `x.data = y` needs y of x's shape and dtype "
                f"(x: {list(self.shape)} {self.dtype}, y: {list(value.shape)} {value.dtype})")
        from gradserve.surface.grad_mode import no_grad

        with no_grad():  # through `.data`: x's version counter is not bumped, as torch's
            self._owner.setitem(self.data, ..., value)

    def retain_grad(self) -> None:
        self._owner.retain_grad(self)

    # --- torch spellings that are one catalogue op with fixed arguments ------------------------

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """`x.to(dtype)`, `to(device)`, `to(other)`, `to(device, dtype)`, `copy=True`; devices
        as a CPU-only torch takes them ("cuda" refused).

        As torch, the tensor itself when nothing changes (a leaf stays that leaf); telling that
        needs the dtype, which costs a round trip only when it is not known yet.
        """
        from .overloads import RemoteBackend

        dtype, copy = compat.parse_to(RemoteBackend(self._owner), args, kwargs,
                                      lambda v: isinstance(v, DType))
        fmt = memory_formats.attr_name(kwargs.get("memory_format"), "to", TypeError)
        if dtype is None:
            dtype = self.dtype if copy or fmt != "preserve" else None
        if dtype is None or (not copy and dtype == self.dtype and memory_formats.keeps_layout(
                fmt, tuple(self.shape), self.stride)):
            return self
        attrs: dict[str, Any] = {"dtype": dtype}
        if fmt != "preserve":
            refusal = memory_formats.rank_error(fmt, self.dim())
            if refusal is not None:  # raised here, as torch's (not with the batch)
                raise RuntimeError(refusal)
            attrs["memory_format"] = fmt
        return self._owner.call("to_dtype", (self,), attrs)

    def type(self, dtype: Any = None, non_blocking: builtins.bool = False) -> Any:
        """'torch.FloatTensor' & co.; type(dtype), type('torch.DoubleTensor') or
        type(torch.DoubleTensor): converted."""
        if dtype is None:
            return f"torch.{_TYPE_NAMES[self.dtype.name]}"
        name = compat.legacy_dtype_name(dtype)
        return self.to(_dtype(name) if name is not None else dtype)

    def float(self) -> Tensor:
        return self.to(_dtype("float32"))

    def double(self) -> Tensor:
        return self.to(_dtype("float64"))

    def long(self) -> Tensor:
        return self.to(_dtype("int64"))

    def int(self) -> Tensor:
        return self.to(_dtype("int32"))

    def short(self) -> Tensor:
        return self.to(_dtype("int16"))

    def char(self) -> Tensor:
        return self.to(_dtype("int8"))

    def byte(self) -> Tensor:
        return self.to(_dtype("uint8"))

    def bool(self) -> Tensor:
        return self.to(_dtype("bool"))

    def reshape_as(self, other: Tensor) -> Tensor:
        return self._owner.call("reshape", (self, tuple(other.shape)), {})

    def expand_as(self, other: Tensor) -> Tensor:
        return self._owner.call("expand", (self, tuple(other.shape)), {})

    # --- values ---------------------------------------------------------------------------------

    def numpy(self, *, force: builtins.bool = False) -> np.ndarray:
        """The value as a new ndarray (torch refuses while requires_grad is set and grad mode
        is on: under no_grad() or inference_mode() it gives the values)."""
        if not force and grad_mode.is_grad_enabled() and self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use "
                               "tensor.detach().numpy() instead.")
        return self._owner.value(self).copy()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def __array_wrap__(self, array: np.ndarray, context: Any = None,
                       return_scalar: builtins.bool = False) -> Tensor:
        """A numpy function's result on this tensor as a tensor of its session, as torch's
        (`np.sin(t)`, `t * np.array(2.0)`: numpy computes, torch.from_numpy wraps; bool becomes
        uint8)."""
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        return self._owner.from_numpy(np.asarray(array))

    def tolist(self) -> Any:
        return self._owner.value(self).tolist()

    def _storage_values(self) -> np.ndarray:
        root = self._base  # a view shares its base's storage (torch's _base: the root)
        if root is None:
            root = self
        values = self._owner.value(root)
        return storage.memory_order(values, root.stride(), root.storage_offset())

    def storage(self) -> Any:
        """The memory this tensor and its views share, as elements of its dtype: a copy read
        from the server (len, indexing, printing as torch's; no data_ptr(), no writes)."""
        storage.warn_typed_storage()
        return storage.TypedStorage(self._storage_values(), None, self.dtype)

    def untyped_storage(self) -> Any:
        """`storage()` as bytes (a copy read from the server)."""
        return storage.UntypedStorage(self._storage_values().view(np.uint8), None)

    def data_ptr(self) -> builtins.int:
        """Refused: a session's tensor lives on the server (compare views with `_base`)."""
        raise NotImplementedError(storage.SNAPSHOT_MESSAGE)

    def item(self) -> Any:
        """The single value as a Python number."""
        func_state.check_item(RuntimeError)  # inside vmap: torch's error
        arr = self._owner.value(self)
        if arr.size != 1:
            raise RuntimeError(f"a Tensor with {arr.size} elements cannot be converted to Scalar")
        return arr.reshape(()).item()

    def _scalar_value(self) -> Any:
        func_state.check_item(RuntimeError)  # float() inside vmap: torch's error
        arr = self._owner.value(self)
        if arr.size != 1:
            raise ValueError(messages.SCALAR_CONVERSION_MESSAGE)
        return arr.reshape(()).item()

    def __float__(self) -> builtins.float:
        value = float(self._scalar_value())
        if self.requires_grad:
            compat.warn_scalar_requires_grad(stacklevel=2)
        return value

    def __int__(self) -> builtins.int:
        return int(self._scalar_value())

    def __index__(self) -> builtins.int:
        if self.dtype.is_floating_point or self.dtype.name == "bool" or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an "
                            "index")
        return int(self.item())

    def __bool__(self) -> builtins.bool:
        arr = self._owner.value(self)
        if arr.size != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(arr.reshape(()).item())

    def __len__(self) -> builtins.int:
        shape = self.shape
        if not shape:
            raise TypeError("len() of a 0-d tensor")
        return shape[0]

    def __iter__(self) -> Iterator[Any]:
        if not self.shape:
            raise TypeError("iteration over a 0-d tensor")
        return iter(self._owner.call("unbind", (self,), {}))  # torch: UnbindBackward0 rows

    def __getitem__(self, index: Any) -> Tensor:
        """`x[index]`: ints, slices, None, `...`, bools, int/bool tensors and lists."""
        return self._owner.getitem(self, index)  # type: ignore[no-any-return]

    def __setitem__(self, index: Any, value: Any) -> None:
        """`x[index] = value`, in place (grad_fn CopySlices or IndexPutBackward0, as torch)."""
        self._owner.setitem(self, index, value)

    def __hash__(self) -> builtins.int:
        return id(self)

    # --- printing -------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return self._owner.repr(self)

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        if self.dim() == 0:  # torch: a 0-dim tensor formats as its Python number
            return format(self.item(), spec)
        if spec:
            raise TypeError("unsupported format string passed to Tensor.__format__")
        return repr(self)

    def __reduce__(self) -> Any:
        raise TypeError("gradserve client tensors are handles and cannot be pickled")

    def __deepcopy__(self, memo: dict[builtins.int, Any]) -> Tensor:
        """copy.deepcopy as torch's: graph leaves only; a new tensor of the session holding a
        copy of the data, with requires_grad and a deep copy of `.grad` (one round trip to read
        it where not known); a Parameter becomes a new Parameter holding a copy (no `.grad`, as
        torch's Parameter.__deepcopy__)."""
        if not self.is_leaf:
            raise RuntimeError(messages.DEEPCOPY_NON_LEAF)
        found = memo.get(id(self))
        if found is not None:
            return found  # type: ignore[no-any-return]
        owner = self._owner
        with grad_mode.no_grad():
            data = self.clone()
        parameter = owner.nn.Parameter
        if isinstance(self, parameter):
            new = parameter(data, self.requires_grad)
        else:
            new = data.requires_grad_(self.requires_grad)
            grad = self.grad
            if grad is not None:
                new.grad = grad.__deepcopy__(memo)
        memo[id(self)] = new
        return new  # type: ignore[no-any-return]

    # --- operators ------------------------------------------------------------------------------

    def __rtruediv__(self, other: Any) -> Any:
        # torch spells `2 / x` as reciprocal(x) * 2 (grad_fn MulBackward0), with the operator
        # `*`: numpy's for an array (see operators.ARRAY_COMPARED)
        if isinstance(other, np.ndarray):
            return self._owner.call("reciprocal", (self,), {}) * other
        if not _operand(other):
            return NotImplemented
        return self._owner.call("mul", (self._owner.call("reciprocal", (self,), {}), other), {})


class _OpMethod:
    """`t.<name>` for a name the owner's `method` answers (a catalogue op, its in-place
    variant, an overload): on the class, so that reading it is an ordinary attribute lookup
    rather than a failed one handed to `Tensor.__getattr__` (which still answers the names no
    catalogue seen so far has). Not a data descriptor: an instance attribute of the same name
    wins, as before."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __get__(self, t: Tensor | None, cls: Any = None) -> Any:
        if t is None:
            return self
        return t._owner.method(t, self.name)


def install_methods(names: Any) -> None:
    """Put `_OpMethod`s for `names` (a session's op, in-place, overload and alias names) on
    Tensor, leaving the names Tensor defines itself (and private ones, and any that is not an
    identifier) alone."""
    for name in names:
        if name.isidentifier() and not name.startswith("_") and not hasattr(Tensor, name):
            setattr(Tensor, name, _OpMethod(name))


_TYPE_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "int32": "IntTensor",
               "int64": "LongTensor", "bool": "BoolTensor", "uint8": "ByteTensor",
               "int8": "CharTensor", "int16": "ShortTensor"}


def _dtype(name: str) -> DType:
    from .codec import BY_NAME

    return BY_NAME[name]


def _operand(x: Any) -> builtins.bool:
    return isinstance(x, (Tensor, int, float, bool, np.number, np.bool_))


def _binary(name: str, dunder: str) -> Any:
    compares_arrays = dunder == operators.ARRAY_COMPARED

    def method(self: Tensor, other: Any) -> Any:
        kind = type(other)
        if kind is not float and kind is not Tensor and not _operand(other):
            if not (compares_arrays and isinstance(other, np.ndarray)):
                return NotImplemented
            other = self._owner.tensor(other)  # `x == a`: a as a tensor, as torch's
        return self._owner._operator(name, (self, other))
    method.__name__ = name
    return method


def _reflected(name: str) -> Any:
    def method(self: Tensor, other: Any) -> Any:
        if not _operand(other):
            return NotImplemented
        return self._owner._operator(name, (other, self))
    method.__name__ = name
    return method


def _unary(name: str) -> Any:
    def method(self: Tensor) -> Any:
        return self._owner._operator(name, (self,))
    method.__name__ = name
    return method


def _augmented(name: str) -> Any:
    def method(self: Tensor, other: Any) -> Any:
        if not _operand(other):
            return NotImplemented
        return self._owner.inplace(name, self, (other,), {})
    method.__name__ = name
    return method


for _dunder, _name in operators.BINARY.items():
    setattr(Tensor, _dunder, _binary(_name, _dunder))
for _dunder, _name in operators.REFLECTED.items():
    setattr(Tensor, _dunder, _reflected(_name))
for _dunder, _name in operators.UNARY.items():
    setattr(Tensor, _dunder, _unary(_name))
for _dunder, _name in operators.AUGMENTED.items():
    setattr(Tensor, _dunder, _augmented(_name + "_"))  # x += y is add_


def _invert(self: Tensor) -> Any:
    """`~x`: bitwise_not, a floating x refused with the operator's TypeError (torch's)."""
    if self.dtype.is_floating_point:
        raise TypeError(operators.INVERT_MESSAGE)
    return self._owner.call(operators.INVERT, (self,), {})


setattr(Tensor, "__invert__", _invert)  # noqa: B010 - mypy reads `Tensor.__invert__ =` as ~Tensor
Tensor.__hash__ = lambda self: id(self)  # type: ignore[method-assign]  # __eq__ is an op
