"""torch.save / torch.load in torch's own file format (the zip archive torch 1.6+ writes:
`archive/data.pkl`, one `archive/data/<key>` record per tensor, `archive/byteorder`,
`archive/version`), so a file saved here loads in torch (`weights_only=True` too) and a file
torch saved loads here.

The pickle names only what torch's weights-only loader allows: `torch._utils._rebuild_tensor_v2`
and `_rebuild_parameter`, the `torch.<Type>Storage` types, `collections.OrderedDict`, and
Python's containers and scalars. Loading is weights-only unless the caller passes
`weights_only=False`, as torch's: any other global (a pickled module or class, a lambda) is
refused before anything is built. With `weights_only=False` (the program's own choice, for a
file it trusts, as torch's) other globals than torch's are imported as pickle does (a numpy
array, the program's own classes); a `torch.*` name outside the set above is still refused
(gradserve cannot build torch's classes). A tensor is written from its values (a fetch
through a session), contiguous, with its own storage (torch shares one storage between views;
the values are the same).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

_STORAGES = {"float32": "FloatStorage", "float64": "DoubleStorage", "int64": "LongStorage",
             "int32": "IntStorage", "bool": "BoolStorage", "uint8": "ByteStorage",
             "int16": "ShortStorage", "int8": "CharStorage", "float16": "HalfStorage"}
_DTYPES = {v: np.dtype(k) for k, v in _STORAGES.items()}


class TensorIO(Protocol):
    """What save/load need of the layer (the engine or a session)."""

    def is_tensor(self, value: Any) -> bool:
        """Whether `value` is a tensor of this layer."""
        ...

    def is_parameter(self, value: Any) -> bool:
        """Whether `value` is an nn.Parameter of this layer."""
        ...

    def to_numpy(self, tensor: Any) -> np.ndarray:
        """The tensor's values (detached)."""
        ...

    def requires_grad(self, tensor: Any) -> bool:
        """tensor.requires_grad."""
        ...

    def make(self, array: np.ndarray, requires_grad: bool, parameter: bool) -> Any:
        """A new tensor (a Parameter when `parameter`) holding `array`."""
        ...


class _Global:
    """A name the pickle refers to (written as GLOBAL module name)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle requires a reduction's callable
        raise TypeError(f"{self.module}.{self.name} is a name written into a pickle")


class _Storage:
    """One tensor's values, written as a persistent id and a data record."""

    def __init__(self, key: str, array: np.ndarray) -> None:
        self.key, self.array = key, array


_REBUILD_TENSOR = _Global("torch._utils", "_rebuild_tensor_v2")
_REBUILD_PARAMETER = _Global("torch._utils", "_rebuild_parameter")


class _Pickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    """Protocol-2 pickling as torch's save writes it, tensors by reference to their records."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: Any, io_: TensorIO) -> None:
        super().__init__(file, protocol=2)
        self.io = io_
        self.storages: list[_Storage] = []

    def save_marker(self, obj: _Global) -> None:
        self.write(  # type: ignore[attr-defined]
            pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    dispatch[_Global] = save_marker  # type: ignore[assignment]

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Storage):
            dtype = obj.array.dtype
            if dtype.name not in _STORAGES:
                raise pickle.PicklingError(f"save(): cannot save a tensor of dtype {dtype}")
            return ("storage", _Global("torch", _STORAGES[dtype.name]), obj.key, "cpu",
                    obj.array.size)
        return None

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (_Global, _Storage)) or not self.io.is_tensor(obj):
            return NotImplemented
        array = np.array(self.io.to_numpy(obj), order="C")  # 0-d stays 0-d
        storage = _Storage(str(len(self.storages)), array.reshape(-1))
        self.storages.append(storage)
        strides = tuple(s // array.itemsize for s in array.strides) if array.size else tuple(
            [0] * array.ndim)
        tensor_args: tuple[Any, ...] = (storage, 0, tuple(array.shape), strides,
                       self.io.requires_grad(obj) and not self.io.is_parameter(obj),
                       collections.OrderedDict())
        if self.io.is_parameter(obj):
            inner = (_REBUILD_TENSOR, tensor_args)
            return (_REBUILD_PARAMETER,
                    (_Reduced(inner), self.io.requires_grad(obj), collections.OrderedDict()))
        return (_REBUILD_TENSOR, tensor_args)


class _Reduced:
    """A value pickled as a given (callable, args) reduction (the tensor inside a Parameter)."""

    def __init__(self, reduction: tuple[Any, Any]) -> None:
        self.reduction = reduction

    def __reduce__(self) -> Any:
        return self.reduction


def save(io_: TensorIO, obj: Any, f: Any) -> None:
    """torch.save(obj, f): `f` a path (str or os.PathLike) or a writable binary file.

    Args:
        io_: the layer's tensor access.
        obj: tensors, state dicts, and Python containers and scalars holding them.
        f: where to write.

    Raises:
        pickle.PicklingError: an object torch's weights-only loader could not read back.
    """
    data = io.BytesIO()
    pickler = _Pickler(data, io_)
    pickler.dump(obj)
    prefix = "archive/"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(prefix + "data.pkl", data.getvalue())
        archive.writestr(prefix + "byteorder", "little")
        for storage in pickler.storages:
            archive.writestr(prefix + "data/" + storage.key,
                             storage.array.astype(storage.array.dtype.newbyteorder("<"),
                                                  copy=False).tobytes())
        archive.writestr(prefix + "version", "3\n")
    if isinstance(f, (str, os.PathLike)):
        with open(f, "wb") as out:
            out.write(buffer.getvalue())
    else:
        f.write(buffer.getvalue())


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = _DTYPES[name]


def _allowed(io_: TensorIO) -> dict[tuple[str, str], Any]:
    def rebuild_tensor(storage: np.ndarray, offset: int, size: Any, stride: Any,
                       requires_grad: bool, hooks: Any, metadata: Any = None) -> Any:
        item = storage.itemsize
        if len(size) != len(stride):
            raise pickle.UnpicklingError("load(): a tensor's size and stride do not match")
        if any(n < 0 for n in size) or any(s < 0 for s in stride):
            raise pickle.UnpicklingError("load(): negative size or stride")
        if all(size):
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if offset < 0 or last >= storage.size:
                raise pickle.UnpicklingError("load(): a tensor reaches outside its storage")
        array = np.lib.stride_tricks.as_strided(
            storage[offset:] if storage.size else storage, tuple(size),
            tuple(s * item for s in stride)).copy()
        return io_.make(array, bool(requires_grad), False)

    def rebuild_parameter(data: Any, requires_grad: bool, hooks: Any) -> Any:
        return io_.make(io_.to_numpy(data), bool(requires_grad), True)

    allowed: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
    }
    for name in _DTYPES:
        allowed[("torch", name)] = _StorageType(name)
    return allowed


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, records: Callable[[str], bytes],
                 allowed: dict[tuple[str, str], Any], trusted: bool = False) -> None:
        super().__init__(file)
        self.records = records
        self.allowed = allowed
        self.trusted = trusted
        self.loaded: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed and self.trusted and not (
                module == "torch" or module.startswith("torch.")):
            return super().find_class(module, name)
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(
                f"load(): gradserve loads weights only, and {module}.{name} is not one of the "
                "names torch's weights-only loader allows here")
        return self.allowed[(module, name)]

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)):
            raise pickle.UnpicklingError(f"load(): unknown persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if key not in self.loaded:
            raw = self.records(key)
            array = np.frombuffer(raw, dtype=storage_type.dtype.newbyteorder("<"))
            if array.size < numel:
                raise pickle.UnpicklingError(f"load(): storage {key} is shorter than declared")
            self.loaded[key] = array.astype(storage_type.dtype)
        return self.loaded[key]


def load(io_: TensorIO, f: Any, weights_only: Any = None) -> Any:
    """torch.load(f): `f` a path or a readable binary file of torch's zip format.

    Args:
        io_: the layer's tensor access.
        f: where to read.
        weights_only: torch's flag: only `False` (the caller trusts the file) lets globals other
            than torch's be imported as pickle does; None or True load weights only.

    Returns:
        The saved object, its tensors made in this layer.

    Raises:
        pickle.UnpicklingError: a global outside the weights-only set (any `torch.*` one
            outside it, with `weights_only=False`), or a malformed archive.
        RuntimeError: not a zip archive (torch's legacy format is not read).
    """
    if hasattr(f, "read"):
        raw = f.read()
    else:
        with open(f, "rb") as fh:
            raw = fh.read()
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise RuntimeError("load(): gradserve reads torch's zip format only (torch >= 1.6's "
                           "default), not the legacy format")
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkl:
            raise pickle.UnpicklingError("load(): the archive has no data.pkl")
        prefix = pkl[0][: -len("data.pkl")]

        def records(key: str) -> bytes:
            name = prefix + "data/" + key
            if name not in names:
                raise pickle.UnpicklingError(f"load(): the archive has no record {key}")
            return archive.read(name)

        unpickler = _Unpickler(io.BytesIO(archive.read(pkl[0])), records, _allowed(io_),
                               trusted=weights_only is False)
        return unpickler.load()
