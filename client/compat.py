"""A session's torch names that are not ops (gradserve.surface.compat and .devices, bound to a
session): `device`, `cuda`, the default dtype and device, `Tensor(...)` / `FloatTensor(...)`,
and the AttributeError naming `torch.X` for a name the session does not have."""

from __future__ import annotations

import types
from typing import Any

from gradserve.surface import compat, devices, runtime
from gradserve.surface import version as surface_version
from gradserve.surface.compat import Namespace

from . import codec
from .tensor import Tensor


def install(session: Any) -> None:
    """Give `session` torch's device, default-dtype and legacy-constructor names."""
    from .overloads import RemoteBackend

    be = RemoteBackend(session)
    session._default_dtype = codec.float32
    session.device = devices.device
    session.cuda = Namespace("torch.cuda", **vars(devices.cuda))
    session.accelerator = Namespace("torch.accelerator", **vars(devices.accelerator))
    session.backends = compat.backends()
    # torch.random is a module (`torch.random.manual_seed(seed=42)`), not the catalogue's
    # `random` op (Tensor.random_ stays a method)
    session.random = Namespace(
        "torch.random", manual_seed=session.manual_seed, seed=session.seed,
        initial_seed=session.initial_seed, get_rng_state=session.get_rng_state,
        set_rng_state=session.set_rng_state, default_generator=session.default_generator,
        Generator=session.Generator)
    session.__version__ = surface_version.TORCH_VERSION  # torch.__version__ (surface/version.py)
    session.version = surface_version.namespace()
    session.set_default_device = devices.set_default_device
    # torch.set_num_threads, use_deterministic_algorithms, ...: this session's own, remembered
    # only (the server picks its threads); torch.special (surface/runtime.py)
    session.__dict__.update(runtime.RuntimeSettings().functions())
    session.special = runtime.special(lambda name: getattr(session, name))
    session.get_default_device = devices.get_default_device

    def set_default_dtype(d: Any) -> None:
        """torch.set_default_dtype (float32 or float64) for this session's Python floats,
        float data and floating factory functions."""
        name = devices.check_default_dtype(
            d, lambda v: v.name if isinstance(v, codec.DType) else None)
        session._default_dtype = codec.BY_NAME[name]

    def get_default_dtype() -> Any:
        """torch.get_default_dtype."""
        return session._default_dtype

    session.set_default_dtype = set_default_dtype
    session.get_default_dtype = get_default_dtype
    types_ = compat.legacy_types(Tensor, lambda d, args, kw: compat.legacy_new(be, d, args, kw),
                                 lambda t: t.dtype.name)
    session.__dict__.update(types_)

    def set_default_tensor_type(t: Any) -> None:
        """torch.set_default_tensor_type (deprecated in torch): "torch.FloatTensor" or
        "torch.DoubleTensor" (or those types) as set_default_dtype."""
        name = devices.default_tensor_type(t, types_, stacklevel=2)
        session._default_dtype = codec.BY_NAME[name]

    session.set_default_tensor_type = set_default_tensor_type
    from gradserve.surface import distributions

    session.distributions = distributions.build(session)
    # torch.nn and its namespaces name their missing names themselves (surface/nn.py)
    if type(session.autograd) is types.SimpleNamespace:
        session.autograd = Namespace("torch.autograd", **vars(session.autograd))
    if type(session.optim) is types.SimpleNamespace:
        session.optim = Namespace("torch.optim", **vars(session.optim))
    if type(session.utils) is types.SimpleNamespace:
        session.utils = Namespace("torch.utils", **{
            k: Namespace(f"torch.utils.{k}", **vars(v)) if type(v) is types.SimpleNamespace
            else v for k, v in vars(session.utils).items()})
