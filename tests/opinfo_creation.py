"""OpInfos for engine/ops_creation.py: creation ops (no inputs, or one for its shape/dtype)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.reference import torch

from .opinfo import OpInfo, Sample


def _dtype(d: Any) -> Any:
    return None if d is None else getattr(torch, d)


def ints(shape: tuple[int, ...]) -> Any:
    return lambda rng: np.asarray(rng.integers(-3, 4, size=shape), dtype=np.int64)


SIZES = [Sample((), {"size": (2, 3)}), Sample((), {"size": ()}), Sample((), {"size": (0, 2)}),
         Sample((), {"size": (4,), "dtype": "float64"}),
         Sample((), {"size": (2,), "dtype": "int32"}), Sample((), {"size": (3,), "dtype": "bool"})]
FLOAT_SIZES = [s for s in SIZES if s.attrs.get("dtype") in (None, "float64")]
LIKE = [Sample(((2, 3),)), Sample(((),)), Sample((ints((3,)),)),
        Sample(((2,),), {"dtype": "int64"}), Sample((ints((2,)),), {"dtype": "float64"})]
FLOAT_LIKE = [Sample(((2, 3),)), Sample(((),)), Sample((ints((2,)),), {"dtype": "float64"})]


def _sized(fn: Any) -> Any:
    return lambda size, dtype=None: fn(size, dtype=_dtype(dtype))


def _like(fn: Any) -> Any:
    return lambda x, *a, dtype=None, **kw: fn(x, *a, dtype=_dtype(dtype), **kw)


OPINFOS = [
    OpInfo("zeros", _sized(torch.zeros), SIZES),
    OpInfo("ones", _sized(torch.ones), SIZES),
    OpInfo("full", lambda size, fill_value, dtype=None: torch.full(size, fill_value,
                                                                   dtype=_dtype(dtype)),
           [Sample((), {"size": (2, 3), "fill_value": 1.5}),
            Sample((), {"size": (2,), "fill_value": 3}),
            Sample((), {"size": (2,), "fill_value": True}),
            Sample((), {"size": (), "fill_value": -2.5, "dtype": "float64"}),
            Sample((), {"size": (2,), "fill_value": 2.7, "dtype": "int64"})]),
    OpInfo("zeros_like", _like(torch.zeros_like), LIKE),
    OpInfo("ones_like", _like(torch.ones_like), LIKE),
    OpInfo("full_like", _like(torch.full_like),
           [Sample(((2, 3),), {"fill_value": 2.5}), Sample((ints((3,)),), {"fill_value": 2.7}),
            Sample(((2,),), {"fill_value": 4, "dtype": "int64"})]),
    OpInfo("arange",
           lambda start, end=None, step=1, dtype=None: (
               torch.arange(start, dtype=_dtype(dtype)) if end is None
               else torch.arange(start, end, step, dtype=_dtype(dtype))),
           [Sample((), {"start": 5}), Sample((), {"start": 2, "end": 9, "step": 3}),
            Sample((), {"start": 0, "end": 1, "step": 0.1}),
            Sample((), {"start": -1.5, "end": 2.5}), Sample((), {"start": 5, "end": 0, "step": -2}),
            Sample((), {"start": 1.0, "end": 4}), Sample((), {"start": 3, "end": 3}),
            Sample((), {"start": 0, "end": 5, "step": 2, "dtype": "float64"}),
            Sample((), {"start": 0.5, "end": 4.5, "dtype": "int64"})]),
    OpInfo("linspace",
           lambda start, end, steps, dtype=None: torch.linspace(start, end, steps,
                                                                dtype=_dtype(dtype)),
           [Sample((), {"start": 0, "end": 1, "steps": 5}),
            Sample((), {"start": -2.5, "end": 7.0, "steps": 11}),
            Sample((), {"start": 0, "end": 1, "steps": 1}),
            Sample((), {"start": 0, "end": 1, "steps": 0}),
            Sample((), {"start": 0, "end": 10, "steps": 5, "dtype": "int64"}),
            Sample((), {"start": 1, "end": -1, "steps": 7, "dtype": "float64"})]),
    OpInfo("eye",
           lambda n, m=None, dtype=None: (torch.eye(n, dtype=_dtype(dtype)) if m is None
                                          else torch.eye(n, m, dtype=_dtype(dtype))),
           [Sample((), {"n": 3}), Sample((), {"n": 2, "m": 4}), Sample((), {"n": 0}),
            Sample((), {"n": 3, "dtype": "bool"})]),
    OpInfo("rand", _sized(torch.rand), FLOAT_SIZES),
    OpInfo("randn", _sized(torch.randn), FLOAT_SIZES + [Sample((), {"size": (5, 7)})]),
    OpInfo("randint",
           lambda low, high, size, dtype=None: torch.randint(low, high, size,
                                                             dtype=_dtype(dtype)),
           [Sample((), {"low": 0, "high": 10, "size": (2, 3)}),
            Sample((), {"low": -5, "high": 5, "size": ()}),
            Sample((), {"low": 0, "high": 2 ** 40, "size": (3,)}),
            Sample((), {"low": 0, "high": 3, "size": (4,), "dtype": "float32"})]),
    OpInfo("rand_like", _like(torch.rand_like), FLOAT_LIKE),
    OpInfo("randn_like", _like(torch.randn_like), FLOAT_LIKE + [Sample(((4, 5),))]),
    OpInfo("randint_like",
           lambda x, low, high, dtype=None: torch.randint_like(x, low, high, dtype=_dtype(dtype)),
           [Sample(((2, 3),), {"low": 0, "high": 10}),
            Sample((ints((4,)),), {"low": -3, "high": 3}),
            Sample(((3,),), {"low": 0, "high": 5, "dtype": "int64"})]),
    OpInfo("randperm", lambda n, dtype=None: torch.randperm(n, dtype=_dtype(dtype) or
                                                            torch.int64),
           [Sample((), {"n": 0}), Sample((), {"n": 1}), Sample((), {"n": 17}),
            Sample((), {"n": 6, "dtype": "int32"}), Sample((), {"n": 5, "dtype": "float32"})]),
    OpInfo("normal_sample",
           lambda mean, std, size=None, dtype=None: (
               torch.normal(mean, std, size, dtype=_dtype(dtype)) if size is not None
               else torch.normal(mean, std)),
           [Sample(((3,), (3,))), Sample(((2, 3), 0.5)), Sample((1.5, (4,))),
            Sample(((20,), (1,))), Sample((2.0, 3.0), {"size": (2, 3)}),
            Sample((0.0, 1.0), {"size": (17,), "dtype": "float64"})],
           domain=(0.1, 2.0), check_finite_differences=False, check_second_order=False),
    OpInfo("bernoulli", lambda x, p=None: (torch.bernoulli(x) if p is None
                                           else torch.empty_like(x).bernoulli_(p)),
           [Sample(((3, 4), None)), Sample(((20,), None), requires_grad=(False, False)),
            Sample(((2, 3), 0.3), requires_grad=(False, False)),
            Sample(((2, 3), (3,)), requires_grad=(False, False))],
           domain=(0.0, 1.0), check_finite_differences=False, check_second_order=False),
    OpInfo("uniform", lambda x, **a: torch.empty_like(x).uniform_(a.get("from", 0.0),
                                                                  a.get("to", 1.0)),
           [Sample(((2, 3),), requires_grad=(False,)),
            Sample(((20,),), {"from": -2.0, "to": 5.0}, requires_grad=(False,))]),
    OpInfo("normal", lambda x, mean=0.0, std=1.0: torch.empty_like(x).normal_(mean, std),
           [Sample(((2, 3),), requires_grad=(False,)),
            Sample(((20,),), {"mean": 1.0, "std": 0.5}, requires_grad=(False,))]),
    OpInfo("random", lambda x, low=None, high=None: (
               torch.empty_like(x).random_() if low is None
               else torch.empty_like(x).random_(low) if high is None
               else torch.empty_like(x).random_(low, high)),
           [Sample(((4,),), requires_grad=(False,)),
            Sample(((4,),), {"low": 9}, requires_grad=(False,)),
            Sample((ints((5,)),), {"low": -4, "high": 4})]),
    OpInfo("exponential", lambda x, lambd=1.0: torch.empty_like(x).exponential_(lambd),
           [Sample(((5,),), requires_grad=(False,)),
            Sample(((3,),), {"lambd": 2.5}, requires_grad=(False,))]),
    OpInfo("geometric", lambda x, p: torch.empty_like(x).geometric_(p),
           [Sample(((5,),), {"p": 0.3}, requires_grad=(False,)),
            Sample((ints((2, 3)),), {"p": 0.8})]),
    OpInfo("cauchy", lambda x, median=0.0, sigma=1.0: torch.empty_like(x).cauchy_(median, sigma),
           [Sample(((5,),), requires_grad=(False,)),
            Sample(((2, 3),), {"median": 1.5, "sigma": 0.5}, requires_grad=(False,))]),
    OpInfo("log_normal", lambda x, mean=1.0, std=2.0: torch.empty_like(x).log_normal_(mean, std),
           [Sample(((5,),), requires_grad=(False,)),
            Sample(((20,),), {"mean": 0.0, "std": 0.5}, requires_grad=(False,))]),
    OpInfo("multinomial", lambda x, num_samples, replacement=False: torch.multinomial(
               x, num_samples, replacement),
           [Sample(((5,),), {"num_samples": 1}, requires_grad=(False,)),
            Sample(((3, 7),), {"num_samples": 4}, requires_grad=(False,)),
            Sample(((2, 6),), {"num_samples": 9, "replacement": True},
                   requires_grad=(False,)),
            Sample(((4,),), {"num_samples": 4})],
           domain=(0.1, 2.0), check_grad=False),
]
