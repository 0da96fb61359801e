"""OpInfos for the reductions in engine/ops_reduce.py beyond sum/mean (those live with the core
ops in opinfo_elementwise.py): prod, max/min (all, dim), amax/amin, argmax/argmin, var/std,
norm, logsumexp, cumsum, all/any.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tests.reference import torch

from .opinfo import OpInfo, Sample


def ties(shape: tuple[int, ...]) -> Any:
    """Values from {-1, 0, 1}: reductions over them tie often."""
    return lambda rng: np.asarray(rng.integers(-1, 2, size=shape), dtype=np.float64)


def distinct(shape: tuple[int, ...]) -> Any:
    """A permutation of well-separated values: no ties, so finite differences are smooth."""
    n = int(np.prod(shape))
    return lambda rng: np.asarray(rng.permutation(n) * 0.25 - n * 0.125 + 0.1,
                                  dtype=np.float64).reshape(shape)


def ints(shape: tuple[int, ...], lo: int = -3, hi: int = 4) -> Any:
    return lambda rng: np.asarray(rng.integers(lo, hi, size=shape), dtype=np.int64)


def mask(shape: tuple[int, ...]) -> Any:
    return lambda rng: np.asarray(rng.random(size=shape) > 0.3)


def _dims(fn: Any) -> Any:
    """Call fn(x, dim=..., keepdim=...) the way torch spells 'no dim' for this reduction."""
    def call(x: Any, dim: Any = None, keepdim: bool = False, **kw: Any) -> Any:
        if dim is None:
            return fn(x, **kw) if not keepdim else fn(x, dim=tuple(range(x.ndim)),
                                                      keepdim=True, **kw)
        return fn(x, dim=dim, keepdim=keepdim, **kw)
    return call


# dim / keepdim combinations over several shapes, negative dims and 0-dim inputs.
ONE_DIM = [Sample(((2, 3),), {"dim": 0}), Sample(((2, 3),), {"dim": -1}),
           Sample(((2, 3, 4),), {"dim": 1, "keepdim": True}),
           Sample(((4,),), {"dim": -1, "keepdim": True}), Sample(((),), {"dim": 0})]
MANY_DIMS = ONE_DIM + [Sample(((2, 3),)), Sample(((2, 3, 4),), {"dim": (0, 2)}),
                       Sample(((2, 3, 4),), {"dim": (-1, 0), "keepdim": True}),
                       Sample(((),))]


def _distinct_samples(samples: list[Sample]) -> list[Sample]:
    return [Sample(tuple(distinct(s) if isinstance(s, tuple) else s for s in smp.inputs),
                   smp.attrs, smp.requires_grad, smp.note) for smp in samples]


def _prod(x: Any, dim: Any = None, keepdim: bool = False, dtype: Any = None) -> Any:
    kw = {"dtype": getattr(torch, dtype)} if dtype else {}
    return torch.prod(x, **kw) if dim is None else torch.prod(x, dim, keepdim, **kw)


def _var(fn: Any) -> Any:
    def call(x: Any, dim: Any = None, unbiased: Any = None, keepdim: bool = False,
             correction: Any = None) -> Any:
        if unbiased is not None:
            return fn(x, dim, unbiased, keepdim)
        return fn(x, dim, correction=correction, keepdim=keepdim)
    return call


VAR_SAMPLES = [smp for smp in MANY_DIMS if smp.inputs != ((),)] + [
    Sample(((3, 4),), {"dim": 1, "correction": 0}), Sample(((3, 4),), {"correction": 2}),
    Sample(((3, 4),), {"dim": 0, "unbiased": False}),
    Sample(((3, 4),), {"dim": (0, 1), "unbiased": True, "keepdim": True}),
    Sample(((5,),), {"correction": 0.5})]

NORM_SAMPLES = [Sample(((2, 3),)), Sample(((2, 3),), {"p": 1.0}),
                Sample(((2, 3),), {"p": 3.0, "dim": 1}),
                Sample(((2, 3, 4),), {"p": 2.0, "dim": (0, -1), "keepdim": True}),
                Sample(((4,),), {"p": 1.5}), Sample(((2, 3),), {"p": 0.5, "dim": -1}),
                Sample(((),)), Sample((distinct((3, 4)),), {"p": math.inf, "dim": 1}),
                Sample((distinct((3, 4)),), {"p": -math.inf}),
                Sample(((3, 4),), {"p": 0.0, "dim": 0}),
                Sample(((3, 4),), {"dim": 1, "dtype": "float64"})]


def _norm(x: Any, p: float = 2.0, dim: Any = None, keepdim: bool = False,
          dtype: Any = None) -> Any:
    return torch.linalg.vector_norm(x, p, dim, keepdim, dtype=dtype and getattr(torch, dtype))


OPINFOS = [
    # torch's stable order (its default CPU sort orders ties its own way)
    OpInfo("argsort", lambda x, dim=-1, descending=False, stable=False: torch.argsort(
        x, dim=dim, descending=descending, stable=True),
           [Sample((distinct((2, 5)),)), Sample((distinct((4, 3)),), {"dim": 0}),
            Sample((distinct((2, 5)),), {"descending": True}),
            Sample((ties((3, 6)),), {"dim": 1, "stable": True}),
            Sample((ties((3, 6)),), {"dim": -1, "descending": True, "stable": True}),
            Sample((ints((3, 4)),), {"dim": 0}), Sample(((),))], check_grad=False),
    OpInfo("prod", _prod, [Sample(((2, 3),)), Sample(((2, 3),), {"dim": 0}),
                           Sample(((2, 3, 4),), {"dim": -1, "keepdim": True}),
                           Sample(((4,),), {"dim": 0}), Sample(((),)), Sample(((),), {"dim": 0}),
                           Sample((ints((2, 3)),), {"dim": 1}), Sample((mask((3,)),)),
                           Sample(((2, 3),), {"dtype": "float64"})],
           domain=(0.5, 1.5)),
    OpInfo("max", lambda x: torch.max(x), [Sample(((2, 3),)), Sample(((),)),
                                            Sample((distinct((4, 5)),)), Sample((ties((3, 3)),)),
                                            Sample((ints((2, 3)),))],
           check_finite_differences=False),
    OpInfo("min", lambda x: torch.min(x), [Sample(((2, 3),)), Sample(((),)),
                                            Sample((distinct((4, 5)),)), Sample((ties((3, 3)),))],
           check_finite_differences=False),
    OpInfo("max", lambda x: torch.max(x), _distinct_samples([Sample(((2, 3),))])),
    OpInfo("max_dim", lambda x, dim, keepdim=False: torch.max(x, dim, keepdim),
           _distinct_samples(ONE_DIM) + [Sample((ties((4, 3)),), {"dim": 0}),
                                         Sample((ties((3, 5)),), {"dim": -1, "keepdim": True}),
                                         Sample((ints((2, 3)),), {"dim": 1})],
           check_finite_differences=False),
    OpInfo("min_dim", lambda x, dim, keepdim=False: torch.min(x, dim, keepdim),
           _distinct_samples(ONE_DIM) + [Sample((ties((4, 3)),), {"dim": 0}),
                                         Sample((ties((3, 5)),), {"dim": -1, "keepdim": True})],
           check_finite_differences=False),
    OpInfo("max_dim", lambda x, dim, keepdim=False: torch.max(x, dim, keepdim),
           _distinct_samples(ONE_DIM)),
    OpInfo("amax", lambda x, dim=(), keepdim=False: torch.amax(x, dim, keepdim),
           _distinct_samples(MANY_DIMS) + [Sample((ties((4, 3)),), {"dim": 0}),
                                           Sample((ties((3, 5)),)),
                                           Sample((ties((2, 3, 4)),), {"dim": (0, 2),
                                                                       "keepdim": True})],
           check_finite_differences=False),
    OpInfo("amin", lambda x, dim=(), keepdim=False: torch.amin(x, dim, keepdim),
           _distinct_samples(MANY_DIMS) + [Sample((ties((4, 3)),), {"dim": 1}),
                                           Sample((ties((3, 5)),))],
           check_finite_differences=False),
    OpInfo("amax", lambda x, dim=(), keepdim=False: torch.amax(x, dim, keepdim),
           _distinct_samples(MANY_DIMS)),
    OpInfo("argmax", lambda x, dim=None, keepdim=False: torch.argmax(x, dim, keepdim),
           [Sample(((2, 3),)), Sample(((2, 3),), {"dim": 1}),
            Sample(((2, 3, 4),), {"dim": -2, "keepdim": True}), Sample(((),)),
            Sample(((2, 3),), {"keepdim": True}), Sample((ties((4, 4)),), {"dim": 0}),
            Sample((ints((3, 4)),), {"dim": 1})], check_grad=False),
    OpInfo("argmin", lambda x, dim=None, keepdim=False: torch.argmin(x, dim, keepdim),
           [Sample(((2, 3),)), Sample(((2, 3),), {"dim": 0}),
            Sample(((2, 3, 4),), {"dim": -1, "keepdim": True}), Sample(((),), {"dim": 0}),
            Sample((ties((4, 4)),), {"dim": 1})], check_grad=False),
    OpInfo("var", _var(torch.var), VAR_SAMPLES),
    OpInfo("std", _var(torch.std), VAR_SAMPLES),
    OpInfo("norm", _norm, NORM_SAMPLES),
    # at::norm(input, p, dim, keepdim): torch.norm with a number p and dim calls it on tensors
    # that are not strided; its node is NormBackward1 (what pairwise_distance records)
    OpInfo("norm_dim",
           lambda x, p=2.0, dim=None, keepdim=False: torch.ops.aten.norm.ScalarOpt_dim(
               x, p, dim, keepdim),
           [smp for smp in NORM_SAMPLES
            if smp.attrs.get("dim") is not None and "dtype" not in smp.attrs]),
    OpInfo("logsumexp", lambda x, dim, keepdim=False: torch.logsumexp(x, dim, keepdim),
           [smp for smp in MANY_DIMS if "dim" in smp.attrs] + [
               Sample((ints((2, 3)),), {"dim": 1}),
               Sample((lambda rng: np.asarray(rng.uniform(80, 90, size=(3, 4))),),
                      {"dim": 1})]),
    OpInfo("cumsum", lambda x, dim, dtype=None: torch.cumsum(
        x, dim, dtype=getattr(torch, dtype) if dtype else None),
           [Sample(((4,),), {"dim": 0}), Sample(((2, 3),), {"dim": 1}),
            Sample(((2, 3, 4),), {"dim": -3}), Sample(((),), {"dim": 0}),
            Sample((ints((2, 3)),), {"dim": 0}), Sample((mask((5,)),), {"dim": 0}),
            Sample(((2, 3),), {"dim": 0, "dtype": "float64"})]),
    OpInfo("all", _dims(torch.all), [
        Sample((mask((2, 3)),)), Sample((mask((2, 3)),), {"dim": 1}),
        Sample((mask((2, 3, 4)),), {"dim": (0, -1), "keepdim": True}),
        Sample(((2, 3),), {"dim": 0}), Sample((ints((3, 3), 0, 2),),)], check_grad=False),
    OpInfo("any", _dims(torch.any), [
        Sample((lambda rng: np.asarray(rng.random(size=(2, 3)) > 0.8),)),
        Sample((mask((2, 3)),), {"dim": -1}),
        Sample((mask((2, 3, 4)),), {"dim": 1, "keepdim": True}),
        Sample(((2, 3),)), Sample((ints((3, 3), 0, 2),), {"dim": 0})], check_grad=False),
    OpInfo("cumprod", lambda x, dim, dtype=None: torch.cumprod(
        x, dim, dtype=dtype and getattr(torch, dtype)),
           [Sample(((2, 5),), {"dim": 1}), Sample(((3, 2, 4),), {"dim": 0}),
            Sample(((),), {"dim": 0}), Sample(((4, 1),), {"dim": -1}),
            Sample(((2, 3),), {"dim": 0, "dtype": "float64"}),
            Sample((ints((2, 4), -2, 3),), {"dim": 1})]),
    # zeros in the input: torch's masked backward, and its O(n^2) one under create_graph
    OpInfo("cumprod", lambda x, dim, dtype=None: torch.cumprod(
        x, dim, dtype=dtype and getattr(torch, dtype)),
           [Sample((lambda rng: np.asarray([[2., 0., 3., 0., 5.], [1., 0., 3., 4., 5.],
                                            [0., 0., 1., 2., 3.]], np.float32),), {"dim": 1}),
            Sample((lambda rng: np.asarray([[1.5, 2.], [0., -1.], [3., 0.5]], np.float32),),
                   {"dim": 0})],
           check_finite_differences=False),
]
