"""`torch.nn` for one backend: `build(be)` makes the namespace that the engine installs as
`gradserve.engine.nn` and each client Session as `session.nn`.

The classes (Module, the layers, convolutions and pooling, batch norm, containers and losses)
are written once in `nn_module`, `nn_layers`, `nn_conv`, `nn_norm`, `nn_rnn`, `nn_containers`
and `nn_loss`; `build` derives each backend's own copies, which carry the backend as `_be` (so
`nn.Linear(2, 3)` knows where to create its parameters) and whose hierarchy mirrors torch's:
every class derives from the backend's `Module`, so `isinstance(layer, nn.Module)` and user
subclasses of `nn.Module` work as in torch. `nn.functional`, `nn.init`, `nn.utils` and
`nn.utils.rnn` are the surface functions bound to the backend with `functools.partial`
(`nn.utils.rnn.PackedSequence` is the backend's own subclass).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Iterable
from typing import Any

from . import (
    compat,
    nn_attention,
    nn_conv,
    nn_distance,
    nn_feature_dropout,
    nn_functional,
    nn_init,
    nn_lazy,
    nn_margin_losses,
    nn_norm,
    nn_rnn,
    nn_sampling,
    nn_spectral_norm,
    nn_transformer,
    nn_utils,
    nn_utils_rnn,
    nn_weight_norm,
)
from .nn_backend import NNBackend
from .nn_containers import CONTAINERS
from .nn_layers import LAYERS
from .nn_loss import LOSSES
from .nn_module import GLOBAL_HOOK_FUNCTIONS, Module
from .nn_parameter import UninitializedParameter, parameter_class

MODULE_FILES = {
    "module": ("Module",),
    "linear": ("Identity", "Linear", "Bilinear", "NonDynamicallyQuantizableLinear", "LazyLinear"),
    "activation": ("ReLU", "Hardtanh", "ReLU6", "LeakyReLU", "PReLU", "ELU", "GELU", "SiLU",
                   "Tanh", "Sigmoid", "Softplus", "LogSigmoid", "Mish", "SELU", "CELU",
                   "Hardsigmoid", "Hardswish", "Softmax", "Softmin", "Softsign", "Tanhshrink",
                   "LogSoftmax", "MultiheadAttention", "GLU"),
    "conv": ("Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "LazyConv1d", "LazyConv2d",
             "LazyConvTranspose1d", "LazyConvTranspose2d"),
    "pooling": ("MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d",
                "AdaptiveAvgPool2d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d"),
    "batchnorm": ("BatchNorm1d", "BatchNorm2d"),
    "instancenorm": ("InstanceNorm1d", "InstanceNorm2d"),
    "normalization": ("LayerNorm", "GroupNorm"),
    "upsampling": ("Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d"),
    "pixelshuffle": ("PixelShuffle", "PixelUnshuffle"),
    "padding": ("ConstantPad1d", "ConstantPad2d", "ZeroPad1d", "ZeroPad2d", "ReflectionPad1d",
                "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d", "ReplicationPad2d",
                "ReplicationPad3d"),
    "fold": ("Fold", "Unfold"),
    "rnn": ("RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"),
    "dropout": ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d"),
    "flatten": ("Flatten", "Unflatten"),
    "sparse": ("Embedding",),
    "container": ("Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"),
    "loss": ("MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "CrossEntropyLoss", "NLLLoss",
             "BCELoss", "BCEWithLogitsLoss", "KLDivLoss", "MarginRankingLoss",
             "HingeEmbeddingLoss", "CosineEmbeddingLoss", "TripletMarginLoss", "SoftMarginLoss",
             "MultiLabelSoftMarginLoss", "PoissonNLLLoss", "GaussianNLLLoss", "MultiMarginLoss"),
    "distance": ("CosineSimilarity", "PairwiseDistance"),
    "transformer": ("TransformerEncoderLayer", "TransformerEncoder", "TransformerDecoderLayer",
                    "TransformerDecoder", "Transformer"),
    "lazy": (),
}
"""torch.nn.modules' submodules and the classes of torch.nn each defines, for programs that
import them from there (`from torch.nn.modules import loss`, `nn.modules.linear.Linear`)."""


def _bind(be: NNBackend, fn: Callable[..., Any]) -> Callable[..., Any]:
    bound = functools.partial(fn, be)
    bound.__name__ = fn.__name__  # type: ignore[attr-defined]
    bound.__doc__ = fn.__doc__
    return bound


def namespace(name: str, doc: str, be: NNBackend, functions: Iterable[Callable[..., Any]],
              extra: dict[str, Any] | None = None) -> types.ModuleType:
    """A module object `name` holding `functions` bound to `be`, over `extra` as they are."""
    ns = types.ModuleType(name, doc)
    ns.__getattr__ = compat.missing_names(doc)  # type: ignore[method-assign]
    for key, value in (extra or {}).items():
        setattr(ns, key, value)
    for fn in functions:
        setattr(ns, fn.__name__, _bind(be, fn))
    return ns


def build(be: NNBackend, name: str, functional_extra: dict[str, Any] | None = None
          ) -> types.ModuleType:
    """torch.nn over backend `be`, as a module object called `name`.

    Args:
        be: the engine's or a session's NNBackend.
        name: the namespace's module name (`gradserve.engine.nn`).
        functional_extra: further `nn.functional` names, not bound (the client keeps every
            catalogue op there as before).
    """
    nn = types.ModuleType(name, "torch.nn: modules, parameters, functional, init and utils.")
    nn.__getattr__ = compat.missing_names("torch.nn")  # type: ignore[method-assign]
    module_cls = type("Module", (Module,), {
        "_be": be, "__module__": name, "__qualname__": "Module", "__doc__": Module.__doc__})
    nn.Module = module_cls  # type: ignore[attr-defined]
    bound_classes: dict[type, type] = {}
    for cls in (*LAYERS, *nn_attention.MODULES, *nn_conv.MODULES, *nn_norm.MODULES,
                *nn_sampling.MODULES, *nn_rnn.MODULES, *CONTAINERS, *LOSSES, *nn_distance.MODULES,
                *nn_feature_dropout.MODULES, *nn_lazy.MODULES, *nn_transformer.MODULES,
                *nn_margin_losses.MODULES):
        # a subclass of another nn class (ReLU6 of Hardtanh, GRU of RNNBase) derives from that
        # class's bound copy too, so isinstance(nn.ReLU6(), nn.Hardtanh) holds as in torch
        parents = tuple(bound_classes[base] for base in cls.__bases__ if base in bound_classes)
        bound = type(cls.__name__, (cls, *parents) if parents else (cls, module_cls), {
            "__module__": name, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__})
        bound_classes[cls] = bound
        setattr(nn, cls.__name__, bound)
        if getattr(cls, "cls_to_become", None) is not None:  # a lazy module's class after its
            # first call: this backend's copy
            bound.cls_to_become = bound_classes[cls.cls_to_become]  # type: ignore[attr-defined]
    nn.Parameter = parameter_class(be)  # type: ignore[attr-defined]
    nn.UninitializedParameter = UninitializedParameter  # type: ignore[attr-defined]
    nn.parameter = namespace(  # type: ignore[attr-defined]
        name + ".parameter", "torch.nn.parameter", be, (),
        {"Parameter": nn.Parameter, "UninitializedParameter": UninitializedParameter})
    nn.functional = namespace(  # type: ignore[attr-defined]
        name + ".functional", "torch.nn.functional", be,
        (*nn_functional.FUNCTIONS, *nn_conv.FUNCTIONS, *nn_norm.FUNCTIONS,
         *nn_sampling.FUNCTIONS, *nn_attention.FUNCTIONS, *nn_distance.FUNCTIONS,
         *nn_feature_dropout.FUNCTIONS, *nn_margin_losses.FUNCTIONS),
        functional_extra)
    nn.init = namespace(name + ".init", "torch.nn.init", be,  # type: ignore[attr-defined]
                        nn_init.FUNCTIONS)
    nn.utils = namespace(name + ".utils", "torch.nn.utils", be,  # type: ignore[attr-defined]
                         (*nn_utils.FUNCTIONS, *nn_weight_norm.FUNCTIONS,
                          *nn_spectral_norm.FUNCTIONS))
    rnn_name = name + ".utils.rnn"
    nn.utils.rnn = namespace(  # type: ignore[attr-defined]
        rnn_name, "torch.nn.utils.rnn", be, nn_utils_rnn.FUNCTIONS,
        {"PackedSequence": nn_utils_rnn.packed_sequence_class(be, rnn_name)})
    nn.modules = _modules(nn, name, be)  # type: ignore[attr-defined]
    return nn


def _modules(nn: types.ModuleType, name: str, be: NNBackend) -> types.ModuleType:
    """torch.nn.modules: the classes of `nn`, also under the submodule torch defines each in."""
    modules = namespace(name + ".modules", "torch.nn.modules", be, ())
    for file, classes in MODULE_FILES.items():
        sub = namespace(f"{name}.modules.{file}", f"torch.nn.modules.{file}", be, ())
        for cls in classes:
            if cls in nn.__dict__:
                setattr(sub, cls, nn.__dict__[cls])
                setattr(modules, cls, nn.__dict__[cls])
        if file == "lazy":
            sub.LazyModuleMixin = nn_lazy.LazyModuleMixin  # type: ignore[attr-defined]
        if file == "module":  # torch.nn.modules.module.register_module_forward_hook, ...
            for fn in GLOBAL_HOOK_FUNCTIONS:
                setattr(sub, fn.__name__, fn)
        setattr(modules, file, sub)
    return modules
