"""Client-side values on the wire: dtypes, numpy arrays <-> Tensor messages, op inputs and
attributes. Pure numpy and protobuf (the SDK never imports the engine)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradserve.surface.creation import keeps_numpy_scalar_dtype, sequence_dtype
from gradserve.surface.numbers import array_overflows, overflow_message, python_number
from gradserve.v1 import attrs, graph_pb2, tensor_pb2


class DType:
    """A tensor element type, printed as torch prints it (`torch.float32`)."""

    __slots__ = ("name", "wire", "np", "native", "is_floating_point", "itemsize")

    def __init__(self, name: str, wire: int, np_dtype: Any):
        self.name = name
        self.wire = wire
        self.np = np.dtype(np_dtype)
        self.native = self.np.newbyteorder("=")  # the same in this machine's byte order
        self.is_floating_point = self.np.kind == "f"
        self.itemsize = self.np.itemsize

    def __repr__(self) -> str:
        return f"torch.{self.name}"

    def __reduce__(self) -> str:
        return self.name  # pragma: no cover - module-level singletons


float32 = DType("float32", tensor_pb2.DTYPE_FLOAT32, "<f4")
float64 = DType("float64", tensor_pb2.DTYPE_FLOAT64, "<f8")
int32 = DType("int32", tensor_pb2.DTYPE_INT32, "<i4")
int64 = DType("int64", tensor_pb2.DTYPE_INT64, "<i8")
bool_ = DType("bool", tensor_pb2.DTYPE_BOOL, "?")
uint8 = DType("uint8", tensor_pb2.DTYPE_UINT8, "|u1")
int8 = DType("int8", tensor_pb2.DTYPE_INT8, "|i1")
int16 = DType("int16", tensor_pb2.DTYPE_INT16, "<i2")

BY_WIRE: dict[int, DType] = {d.wire: d for d in (float32, float64, int32, int64, bool_, uint8,
                                                 int8, int16)}
BY_NAME: dict[str, DType] = {d.name: d for d in BY_WIRE.values()}
# torch's aliases, as attributes of a Session.
ALIASES: dict[str, DType] = {"float": float32, "double": float64, "long": int64, "int": int32,
                             "bool": bool_, "short": int16}
_BY_NP: dict[str, DType] = {d.np.str.lstrip("<|="): d for d in BY_WIRE.values()}
# dtype_of_numpy's answers by numpy dtype (at most the supported dtypes in both byte orders)
_OF_NUMPY: dict[np.dtype[Any], DType] = {}


def dtype_of_numpy(dt: np.dtype[Any]) -> DType:
    """The DType for a numpy dtype.

    Raises:
        TypeError: numpy dtypes gradserve does not support (float16, complex, strings...).
    """
    if isinstance(dt, np.dtype):
        d = _OF_NUMPY.get(dt)
        if d is not None:
            return d
    d = _BY_NP.get(np.dtype(dt).newbyteorder("<").str.lstrip("<|="))
    if d is None:
        raise TypeError(f"can't convert np.ndarray of type numpy.{np.dtype(dt).name}. The only "
                        "supported types are: float64, float32, int64, int32, and bool.")
    if isinstance(dt, np.dtype):
        _OF_NUMPY[dt] = d
    return d


def as_dtype(d: Any) -> DType:
    """A DType from a DType, its name, or a numpy dtype."""
    if isinstance(d, DType):
        return d
    if isinstance(d, str) and d in BY_NAME:
        return BY_NAME[d]
    return dtype_of_numpy(np.dtype(d))


def array_from_data(data: Any, dtype: DType | None = None,
                    default_float: DType = float32) -> np.ndarray:
    """A C-ordered array for `torch.tensor(data, dtype=...)`, with torch's dtype inference.

    A Python float (or a list with one) makes `default_float` (float32 unless
    set_default_dtype), an int int64, a bool bool; a numpy array keeps its dtype, and so does
    a numpy scalar of a dtype gradserve has (`surface.creation.keeps_numpy_scalar_dtype`).
    """
    if isinstance(data, np.ndarray) or keeps_numpy_scalar_dtype(data):
        arr = np.asarray(data)
        if dtype is None:
            dtype_of_numpy(arr.dtype)  # refuses unsupported dtypes
    else:
        arr = np.asarray(data)
        if dtype is None and (inferred := sequence_dtype(data, default_float.np)) is not None:
            arr = arr.astype(inferred)  # numpy values in a list: torch promotes their dtypes
        elif dtype is None and arr.dtype == np.float64:
            arr = arr.astype(default_float.np)
        elif arr.dtype.kind not in "fiub":
            raise TypeError(f"Could not infer dtype of {type(data).__name__}")
        elif dtype is None and arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
        if dtype is not None and array_overflows(arr, dtype.name):  # torch checks each number
            raise RuntimeError(overflow_message(dtype.name))
    if dtype is not None:
        with np.errstate(over="ignore", invalid="ignore"):  # 1e300 into float32 is inf
            arr = arr.astype(dtype.np)
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def encode_array(arr: np.ndarray, out: tensor_pb2.Tensor | None = None) -> tensor_pb2.Tensor:
    """A Tensor message (raw little-endian encoding) holding `arr`."""
    d = dtype_of_numpy(arr.dtype)
    msg = tensor_pb2.Tensor() if out is None else out
    msg.dtype = d.wire
    msg.shape.extend(arr.shape)
    msg.raw = arr.astype(d.np, copy=False).tobytes(order="C")
    return msg


def decode_array(msg: tensor_pb2.Tensor) -> np.ndarray:
    """A writable, native-endian array from a Tensor message the server sent."""
    d = BY_WIRE[msg.dtype]
    shape = tuple(msg.shape)
    encoding = msg.WhichOneof("data")
    if encoding == "raw":
        flat = np.frombuffer(msg.raw, dtype=d.np)
    else:
        values = getattr(msg, encoding).values if encoding else ()
        flat = np.array(values, dtype=d.np)
    return flat.astype(d.native, copy=True).reshape(shape)


def dtype_code(value: Any) -> int | None:
    """The wire code of `value` if it is a dtype, else None."""
    return value.wire if isinstance(value, DType) else None


def encode_attr(value: Any, out: graph_pb2.AttrValue) -> None:
    """Write a Python attribute value (int, float, bool, str, ints, dtype, None) into `out`.

    Raises:
        TypeError: a value no attribute kind accepts.
    """
    attrs.encode_attr(value, out, dtype_code)


def encode_scalar(value: Any, out: graph_pb2.Value) -> bool:
    """Write a Python number into `out` as a wrapped scalar; False if `value` is not one."""
    t = type(value)
    if t is float:
        out.float_scalar = value
    elif t is int:
        out.int_scalar = value
    elif t is bool:
        out.bool_scalar = value
    elif isinstance(value, bool):
        out.bool_scalar = bool(value)
    elif isinstance(value, int):
        out.int_scalar = int(value)
    elif isinstance(value, float):
        out.float_scalar = float(value)
    elif (n := python_number(value)) is not None:  # a numpy scalar: the number torch reads
        return encode_scalar(n, out)
    else:
        return False
    return True
