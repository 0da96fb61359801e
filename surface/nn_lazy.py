"""torch.nn's lazy modules: LazyLinear and the lazy convolutions, whose input size (features,
channels) is read from the first input.

As torch's `LazyModuleMixin`: the parameters start as `UninitializedParameter`s; a forward
pre-hook gives them their shapes on the first call and runs the module's `reset_parameters`
(so the random draws happen then, in torch's order), removes itself and turns the module into
its `cls_to_become` (a LazyLinear becomes a Linear). A `load_state_dict` before the first call
gives them the checkpoint's shapes instead (a LazyLinear then reads in_features=0 until its
first call, as torch's; a lazy convolution keeps in_channels=0 after it too, as torch's).
"""

from __future__ import annotations

from typing import Any

from . import grad_mode
from .nn_conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from .nn_layers import Linear, _factory
from .nn_parameter import UninitializedParameter


def materialize(module: Any, name: str, shape: tuple[int, ...]) -> None:
    """Replace the module's uninitialized parameter `name` with a Parameter of `shape` (zeros,
    in the placeholder's dtype; the caller initialises or loads its values)."""
    be = module._be
    placeholder = module._parameters[name]
    dtype = placeholder.dtype
    data = be.torch.zeros(*shape) if dtype is None else be.torch.zeros(*shape, dtype=dtype)
    module._parameters[name] = be.parameter(data, placeholder.requires_grad)


def _infer_parameters(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """The forward pre-hook: initialise from the first input, then become `cls_to_become`."""
    module.initialize_parameters(*args, **kwargs)
    if module.has_uninitialized_params():
        raise RuntimeError(f"module {module._get_name()} has not been fully initialized")
    module._initialize_hook.remove()
    del module._initialize_hook
    if module.cls_to_become is not None:
        module.__class__ = module.cls_to_become


class LazyModuleMixin:
    """torch.nn.modules.lazy.LazyModuleMixin: parameters shaped by the first input."""

    cls_to_become: type | None = None
    _parameters: dict[str, Any]
    _be: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hook = self.register_forward_pre_hook(  # type: ignore[attr-defined]
            _infer_parameters, with_kwargs=True)
        object.__setattr__(self, "_initialize_hook", hook)

    def has_uninitialized_params(self) -> bool:
        """Whether a parameter still waits for its shape."""
        return any(isinstance(p, UninitializedParameter) for p in self._parameters.values())

    def initialize_parameters(self, *args: Any, **kwargs: Any) -> None:
        """Shape and initialise the parameters from the forward's arguments (each lazy class
        defines it)."""
        raise NotImplementedError(
            f"initialize_parameters is not implemented for {type(self).__name__}")

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *rest: Any) -> None:
        # torch's _lazy_load_hook: an uninitialized parameter takes the checkpoint's shape
        for name, param in list(self._parameters.items()):
            value = state_dict.get(prefix + name)
            if (isinstance(param, UninitializedParameter) and value is not None
                    and not isinstance(value, UninitializedParameter)):
                with grad_mode.no_grad():
                    materialize(self, name, tuple(value.shape))  # type: ignore[arg-type]
        super()._load_from_state_dict(state_dict, prefix, *rest)  # type: ignore[misc]


class LazyLinear(LazyModuleMixin, Linear):
    """A Linear whose in_features is the first input's last dimension."""

    cls_to_become = Linear

    def __init__(self, out_features: int, bias: bool = True, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(0, 0, False, device, dtype)
        dtype = _factory("LazyLinear", device, dtype)
        self.weight = UninitializedParameter(dtype=dtype)
        self.out_features = out_features
        if bias:
            self.bias = UninitializedParameter(dtype=dtype)

    def reset_parameters(self) -> None:
        """Linear's initialisation, once the parameters have their shapes."""
        if not self.has_uninitialized_params() and self.in_features != 0:
            super().reset_parameters()

    def initialize_parameters(self, input: Any, *args: Any, **kwargs: Any) -> None:
        """in_features from the input's last dimension; weight, bias shaped and initialised."""
        if self.has_uninitialized_params():
            with grad_mode.no_grad():
                self.in_features = int(self._be.shape(input)[-1])
                materialize(self, "weight", (self.out_features, self.in_features))
                if self.bias is not None:
                    materialize(self, "bias", (self.out_features,))
                self.reset_parameters()
        if self.in_features == 0:  # loaded before its first call: in_features from the input
            features = int(self._be.shape(input)[-1])
            weight_features = int(self._be.shape(self.weight)[-1])
            if features != weight_features:
                raise AssertionError(
                    f"The in_features inferred from input: {features} is not equal to "
                    f"in_features from self.weight: {weight_features}")
            self.in_features = features


class _LazyConvXdMixin(LazyModuleMixin):
    """in_channels from the first input's channel dimension (torch's _LazyConvXdMixin)."""

    in_channels: int
    out_channels: int
    groups: int
    kernel_size: tuple[int, ...]
    transposed: bool
    bias: Any
    _d: int

    def _lazy_init(self, out_channels: int, bias: bool, device: Any, dtype: Any) -> None:
        dtype = _factory(type(self).__name__, device, dtype)
        self.weight = UninitializedParameter(dtype=dtype)
        self.out_channels = out_channels
        if bias:
            self.bias = UninitializedParameter(dtype=dtype)

    def reset_parameters(self) -> None:
        """The convolution's initialisation, once the parameters have their shapes."""
        if not self.has_uninitialized_params() and self.in_channels != 0:
            super().reset_parameters()  # type: ignore[misc]

    def _get_in_channels(self, input: Any) -> int:
        shape = tuple(self._be.shape(input))
        unbatched = self._d + 1
        if len(shape) not in (unbatched, unbatched + 1):
            raise RuntimeError(
                f"Expected {unbatched}D (unbatched) or {unbatched + 1}D (batched) input to "
                f"{type(self).__name__}, but got input of size: torch.Size({list(shape)})")
        return int(shape[1] if len(shape) == unbatched + 1 else shape[0])

    def initialize_parameters(self, input: Any, *args: Any, **kwargs: Any) -> None:
        """in_channels from the input; weight, bias shaped and initialised."""
        if self.has_uninitialized_params():
            self.in_channels = self._get_in_channels(input)
            if self.in_channels % self.groups != 0:
                raise ValueError("in_channels must be divisible by groups")
            with grad_mode.no_grad():
                channels = ((self.in_channels, self.out_channels // self.groups)
                            if self.transposed
                            else (self.out_channels, self.in_channels // self.groups))
                materialize(self, "weight", (*channels, *self.kernel_size))
                if self.bias is not None:
                    materialize(self, "bias", (self.out_channels,))
                self.reset_parameters()


class _LazyConv(_LazyConvXdMixin):
    def __init__(self, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device: Any = None, dtype: Any = None) -> None:
        super().__init__(0, 0, kernel_size, stride, padding, dilation, groups, False,
                         padding_mode, device, dtype)
        self._lazy_init(out_channels, bias, device, dtype)


class _LazyConvTranspose(_LazyConvXdMixin):
    def __init__(self, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1, padding_mode: str = "zeros", device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(0, 0, kernel_size, stride, padding, output_padding, groups, False,
                         dilation, padding_mode, device, dtype)
        self._lazy_init(out_channels, bias, device, dtype)


class LazyConv1d(_LazyConv, Conv1d):
    """A Conv1d whose in_channels is the first input's channel count."""

    cls_to_become = Conv1d


class LazyConv2d(_LazyConv, Conv2d):
    """A Conv2d whose in_channels is the first input's channel count."""

    cls_to_become = Conv2d


class LazyConvTranspose1d(_LazyConvTranspose, ConvTranspose1d):
    """A ConvTranspose1d whose in_channels is the first input's channel count."""

    cls_to_become = ConvTranspose1d


class LazyConvTranspose2d(_LazyConvTranspose, ConvTranspose2d):
    """A ConvTranspose2d whose in_channels is the first input's channel count."""

    cls_to_become = ConvTranspose2d


MODULES: tuple[type, ...] = (LazyLinear, LazyConv1d, LazyConv2d, LazyConvTranspose1d,
                             LazyConvTranspose2d)
