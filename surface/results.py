"""torch.return_types: the named tuples some ops return (`max(x, dim)` is (values, indices))."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ValuesIndices(tuple):  # type: ignore[type-arg]
    """torch.return_types.<name>: a (values, indices) tuple with named fields."""

    __slots__ = ()
    _name = ""

    def __new__(cls, pair: Sequence[Any]) -> ValuesIndices:
        return super().__new__(cls, pair)

    @property
    def values(self) -> Any:  # type: ignore[override]
        return self[0]

    @property
    def indices(self) -> Any:
        return self[1]

    def __repr__(self) -> str:
        return (f"torch.return_types.{self._name}(\nvalues={self[0]!r},\n"
                f"indices={self[1]!r})")

    __str__ = __repr__


class MaxResult(ValuesIndices):
    """What `max(input, dim)` returns (torch.return_types.max)."""

    __slots__ = ()
    _name = "max"


class MinResult(ValuesIndices):
    """What `min(input, dim)` returns (torch.return_types.min)."""

    __slots__ = ()
    _name = "min"


class SortResult(ValuesIndices):
    """What `sort(input)` returns (torch.return_types.sort)."""

    __slots__ = ()
    _name = "sort"


class TopkResult(ValuesIndices):
    """What `topk(input, k)` returns (torch.return_types.topk)."""

    __slots__ = ()
    _name = "topk"


class NamedResult(tuple):  # type: ignore[type-arg]
    """torch.return_types.<name> with fields `_fields` (linalg_svd's U, S, Vh; svd's U, S, V)."""

    __slots__ = ()
    _name = ""
    _fields: tuple[str, ...] = ()

    def __new__(cls, items: Sequence[Any]) -> NamedResult:
        return super().__new__(cls, items)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[type(self)._fields.index(name)]
        except ValueError:
            raise AttributeError(
                f"'torch.return_types.{self._name}' object has no attribute '{name}'") from None

    def __repr__(self) -> str:
        body = ",\n".join(f"{f}={v!r}" for f, v in zip(self._fields, self))
        return f"torch.return_types.{self._name}(\n{body})"

    __str__ = __repr__


def _named(name: str, fields: str, doc: str) -> type[NamedResult]:
    return type(name, (NamedResult,), {"__slots__": (), "_name": name,
                                       "_fields": tuple(fields.split()), "__doc__": doc})


LinalgSvdResult = _named("linalg_svd", "U S Vh", "What `linalg.svd(A)` returns.")
SvdResult = _named("svd", "U S V", "What `svd(input)` returns.")
LinalgSlogdetResult = _named("linalg_slogdet", "sign logabsdet",
                             "What `linalg.slogdet(A)` returns.")
SlogdetResult = _named("slogdet", "sign logabsdet", "What `slogdet(input)` returns.")
LinalgEighResult = _named("linalg_eigh", "eigenvalues eigenvectors",
                          "What `linalg.eigh(A)` returns.")
LinalgQrResult = _named("linalg_qr", "Q R", "What `linalg.qr(A)` returns.")
QrResult = _named("qr", "Q R", "What `qr(input)` returns.")
