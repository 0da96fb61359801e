"""`Tensor.storage()` and `Tensor.untyped_storage()`: the memory a tensor and its views share,
as torch 2.13 shows it (len, indexing, iteration, `tolist`, `data_ptr`, printing), over a
one-dimensional numpy array of the storage's elements in memory order that the layer supplies
(a view: writes through a storage reach the tensors on it, as torch's)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from .spellings import is_int

STORAGE_WARNING = (
    "TypedStorage is deprecated. It will be removed in the future and UntypedStorage will be the "
    "only storage class. This should only matter to you if you are using storages directly.  To "
    "access UntypedStorage directly, use tensor.untyped_storage() instead of tensor.storage()")
_warned = [False]
SNAPSHOT_MESSAGE = (
    "gradserve: a session's Tensor.storage() is a copy of the server's memory, read when asked: "
    "it has no data_ptr() and takes no writes (write through the tensor: t.view(-1)[i] = v; "
    "tell whether two tensors share memory with t._base)")


def warn_typed_storage() -> None:
    """torch's one UserWarning per process for `Tensor.storage()`."""
    if not _warned[0]:
        _warned[0] = True
        warnings.warn(STORAGE_WARNING, UserWarning, stacklevel=3)


class _Storage:
    """What both storages share: the elements (`_block`, 1-D) and where they start."""

    __slots__ = ("_block", "_ptr")
    _what = "Storage"

    def __init__(self, block: np.ndarray, ptr: int | None):
        self._block = block
        self._ptr = ptr

    def __len__(self) -> int:
        return int(self._block.shape[0])

    def size(self) -> int:
        return len(self)

    def data_ptr(self) -> int:
        """The address of the first element (equal for storages of one tensor's views).

        Raises:
            NotImplementedError: a session's storage (a copy of the server's memory).
        """
        if self._ptr is None:
            raise NotImplementedError(SNAPSHOT_MESSAGE)
        return int(self._ptr)

    def nbytes(self) -> int:
        return int(self._block.nbytes)

    @property
    def device(self) -> Any:
        from .devices import CPU

        return CPU

    is_cuda = False

    def is_shared(self) -> bool:
        return False

    def _index(self, idx: Any) -> int:
        if isinstance(idx, bool) or not is_int(idx):
            raise RuntimeError(f"can't index a <class 'torch.storage.{self._what}'> with "
                               f"{type(idx)}")
        n = len(self)
        i = int(idx)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for storage of size {n}")
        return i % n

    def __getitem__(self, idx: Any) -> Any:
        return self._block[self._index(idx)].item()

    def __setitem__(self, idx: Any, value: Any) -> None:
        i = self._index(idx)
        if self._ptr is None:
            raise NotImplementedError(SNAPSHOT_MESSAGE)
        self._block[i] = value

    def __iter__(self) -> Iterator[Any]:
        return iter(self.tolist())

    def tolist(self) -> list[Any]:
        return list(self._block.tolist())

    def _info(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        values = " " + "\n ".join(str(v) for v in self.tolist())
        return f"{values}\n[torch.storage.{self._what}({self._info()}) of size {len(self)}]"

    __repr__ = __str__


class TypedStorage(_Storage):
    """`Tensor.storage()`: elements of the tensor's dtype."""

    __slots__ = ("dtype",)
    _what = "TypedStorage"

    def __init__(self, block: np.ndarray, ptr: int | None, dtype: Any):
        super().__init__(block, ptr)
        self.dtype = dtype

    def element_size(self) -> int:
        return int(self._block.itemsize)

    def _info(self) -> str:
        return f"dtype={self.dtype}, device=cpu"

    def untyped(self) -> UntypedStorage:
        return UntypedStorage(self._block.view(np.uint8), self._ptr)


class UntypedStorage(_Storage):
    """`Tensor.untyped_storage()`: the same memory as bytes."""

    __slots__ = ()
    _what = "UntypedStorage"

    def element_size(self) -> int:
        return 1

    def _info(self) -> str:
        return "device=cpu"


def memory_order(a: np.ndarray, strides: Any, offset: int = 0) -> np.ndarray:
    """The elements of the storage a tensor spans, from its values (`a`, logical order), its
    element strides and its storage offset: each value at its place (an element no index
    reaches, before the offset or in a gap, is 0)."""
    if a.ndim == 0:
        return np.concatenate((np.zeros(offset, a.dtype), a.reshape(1)))
    if a.size == 0:
        return np.zeros(offset, a.dtype)
    extent = 1 + sum((n - 1) * int(st) for n, st in zip(a.shape, strides))
    out = np.zeros(offset + extent, a.dtype)
    places = np.full(a.shape, offset, np.int64)
    for d, st in enumerate(strides):
        shape = [1] * a.ndim
        shape[d] = a.shape[d]
        places = places + np.arange(a.shape[d], dtype=np.int64).reshape(shape) * int(st)
    out[places.reshape(-1)] = a.reshape(-1)
    return out


def storage_block(a: np.ndarray) -> tuple[np.ndarray, int]:
    """The memory array `a` spans, as a 1-D array of its elements from the lowest address
    (a view: writes reach `a`), and that address.

    Args:
        a: the array of a tensor that is no view (its storage is its own memory).

    Returns:
        (elements, address of the first).
    """
    if a.size == 0:
        return a.reshape(0), int(a.__array_interface__["data"][0])
    if a.ndim == 0:
        a = a.reshape(1)
    corner = a[tuple(slice(n - 1, n) if s < 0 else slice(0, 1)
                     for n, s in zip(a.shape, a.strides))]  # starts at the lowest address
    size = a.itemsize
    extent = 1 + sum((n - 1) * abs(s) // size for n, s in zip(a.shape, a.strides))
    block = np.lib.stride_tricks.as_strided(corner, (extent,), (size,),
                                            writeable=a.flags.writeable)
    return block, int(block.__array_interface__["data"][0])
