"""The small interface a torch spelling needs of the layer it runs in.

The engine implements it in process (an op runs now), the client remotely (an op is recorded and
sent to a server). Spellings in `gradserve.surface.spellings` only choose ops and check arguments
torch refuses before running anything; everything else is the backend's op.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class Backend(Protocol):
    """What `gradserve.surface.spellings` calls: ops by name, a tensor's shape, error types.

    The error types are the layer's own (the engine's typed errors subclass the built-ins that the
    client raises), so a spelling raises what the rest of its layer raises.
    """

    type_error: type[TypeError]
    """torch's TypeError (an invalid combination of arguments)."""
    runtime_error: type[RuntimeError]
    """torch's RuntimeError for a bad argument value."""
    index_error: type[IndexError]
    """torch's IndexError (a dim or start out of range)."""

    def call(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Apply op `name` (a registered/catalogue op) to `args` and `kwargs`."""
        ...

    def call_inplace(self, name: str, target: Any, args: tuple[Any, ...],
                     kwargs: Mapping[str, Any]) -> Any:
        """Apply op `name` in place on `target` (torch's `name_`), the op's other inputs `args`;
        returns `target`."""
        ...

    def is_tensor(self, value: Any) -> bool:
        """Whether `value` is this layer's Tensor."""
        ...

    def shape(self, tensor: Any) -> tuple[int, ...]:
        """The tensor's shape (the client may have to ask the server)."""
        ...

    # --- what gradserve.surface.compat needs as well ---------------------------------------------

    def dtype_name(self, tensor: Any) -> str:
        """The tensor's dtype name ("float32")."""
        ...

    def dtype_of(self, tensor: Any) -> Any:
        """The tensor's dtype, as this layer's dtype object."""
        ...

    def dtype(self, name: str) -> Any:
        """This layer's dtype object for a dtype name."""
        ...

    def default_dtype(self) -> str:
        """The name of the default floating dtype (torch.get_default_dtype())."""
        ...

    def from_data(self, data: Any, dtype: str) -> Any:
        """A new leaf tensor holding `data` (a sequence or an array) as dtype `dtype`."""
        ...

    def is_size(self, value: Any) -> bool:
        """Whether `value` is this layer's torch.Size."""
        ...

    def is_contiguous(self, tensor: Any) -> bool:
        """Whether the tensor's elements are laid out contiguously, in row-major order."""
        ...

    def known_strides(self, tensor: Any) -> tuple[int, ...] | None:
        """The tensor's strides when this layer knows them without a round trip, else None."""
        ...

    def adopt(self, tensor: Any, value: Any) -> None:
        """`tensor` takes `value`'s data and shape in place, keeping its identity (torch's
        `resize_`); `value` is the caller's temporary, not used afterwards."""
        ...

    def contiguous_copy(self, tensor: Any) -> Any:
        """A contiguous copy of the tensor (CloneBackward0), known contiguous afterwards
        without a round trip where this layer tracks layouts."""
        ...
