"""OpInfos for the indexing ops in engine/ops_index.py: select, slice, alias, index, nonzero,
take, put, scatter, scatter_add, gather, index_select, embedding, masked_fill, masked_select
and the registered backward ops (select_backward, slice_backward, index_backward,
gather_backward, embedding_dense_backward) against torch's own ops for them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.reference import torch

from .opinfo import OpInfo, Sample


def ints(shape: tuple[int, ...], lo: int, hi: int) -> Any:
    """Random int64 indices in [lo, hi): repeats are likely, which backward must accumulate."""
    return lambda rng: np.asarray(rng.integers(lo, hi, size=shape), dtype=np.int64)


def mask(shape: tuple[int, ...]) -> Any:
    return lambda rng: np.asarray(rng.random(size=shape) > 0.4)


def _embedding(w: Any, indices: Any, padding_idx: int = -1) -> Any:
    return torch.embedding(w, indices, padding_idx)


def const(values: Any, dtype: Any = np.int64) -> Any:
    return lambda rng: np.asarray(values, dtype=dtype)


def _key(indices: torch.Tensor, dim: int) -> tuple[Any, ...]:
    rows = (indices,) if indices.dtype == torch.bool else tuple(indices)
    return (slice(None),) * dim + rows


def _index(x: torch.Tensor, indices: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return x[_key(indices, dim)]


def _index_backward(g: torch.Tensor, indices: torch.Tensor, input_sizes: Any,
                    dim: int = 0) -> torch.Tensor:
    rows = indices.nonzero().unbind(1) if indices.dtype == torch.bool else tuple(indices)
    zeros = torch.zeros(input_sizes, dtype=g.dtype)
    full = (torch.arange(n).reshape((-1,) + (1,) * (len(rows[0].shape) + dim - i - 1))
            for i, n in enumerate(input_sizes[:dim]))
    return zeros.index_put((*full, *rows), g, accumulate=True)


def _slice(x: torch.Tensor, dim: int = 0, start: Any = None, end: Any = None,
           step: int = 1) -> torch.Tensor:
    return torch.ops.aten.slice(x, dim, start, end, step)


def _slice_backward(g: torch.Tensor, input_sizes: Any, dim: int = 0, start: Any = None,
                    end: Any = None, step: int = 1) -> torch.Tensor:
    n = input_sizes[dim]
    s, e, _ = slice(start, end, step).indices(n)
    return torch.ops.aten.slice_backward(g, input_sizes, dim, s, max(e, s), step)


def _put(x: torch.Tensor, index: torch.Tensor, source: Any, accumulate: bool = False) -> Any:
    return torch.put(x, index, source, accumulate)


OPINFOS = [
    OpInfo("select", lambda x, dim, index: torch.select(x, dim, index),
           [Sample(((2, 3),), {"dim": 0, "index": 1}),
            Sample(((2, 3, 4),), {"dim": -1, "index": -1}),
            Sample(((3,),), {"dim": 0, "index": 2}), Sample(((2, 3, 4),), {"dim": 1, "index": 0})]),
    OpInfo("select_backward",
           lambda g, input_sizes, dim, index: torch.ops.aten.select_backward(
               g, input_sizes, dim, index),
           [Sample(((3,),), {"input_sizes": (2, 3), "dim": 0, "index": 1}),
            Sample(((2, 3),), {"input_sizes": (2, 3, 4), "dim": 2, "index": 3}),
            Sample(((),), {"input_sizes": (4,), "dim": 0, "index": 2})]),
    OpInfo("slice", _slice,
           [Sample(((5, 3),), {"start": 1}), Sample(((5, 3),), {"dim": 1, "end": 2}),
            Sample(((6, 2),), {"start": -5, "end": -1, "step": 2}),
            Sample(((2, 7),), {"dim": -1, "start": 1, "end": 100, "step": 3}),
            Sample(((4, 2),))]),
    OpInfo("slice_backward", _slice_backward,
           [Sample(((2, 3),), {"input_sizes": (5, 3), "start": 1, "end": 3}),
            Sample(((2, 2),), {"input_sizes": (2, 7), "dim": 1, "start": 1, "end": 7, "step": 3}),
            Sample(((4, 2),), {"input_sizes": (4, 2)})]),
    OpInfo("alias", torch.ops.aten.alias, [Sample(((2, 3),)), Sample(((),))]),
    OpInfo("index", _index,
           [Sample(((4, 3), ints((1, 5), -4, 4))),
            Sample(((4, 3), ints((2, 2, 3), 0, 3))),
            Sample(((2, 4, 3), ints((2, 5), 0, 3)), {"dim": 1}),
            Sample(((3, 4), mask((3, 4)))), Sample(((3, 4, 2), mask((4,))), {"dim": 1}),
            Sample(((3, 4), mask((3,)))), Sample(((3,), const([[0, 0, 0, 2]])))]),
    OpInfo("index_backward", _index_backward,
           [Sample(((5, 3), ints((1, 5), -4, 4)), {"input_sizes": (4, 3)}),
            Sample(((2, 5, 3), ints((1, 5), 0, 4)), {"input_sizes": (2, 4, 3), "dim": 1}),
            Sample(((3,), const([[0, 0, 0]])), {"input_sizes": (3,)}),
            Sample(((2, 3), const([[True, False], [False, False], [True, True]], np.bool_)),
                   {"input_sizes": (2, 3, 2), "dim": 1})],
           check_grad=False),
    OpInfo("nonzero", torch.nonzero,
           [Sample((ints((3, 4), -1, 2),)), Sample((mask((5,)),)), Sample(((2, 3),))]),
    OpInfo("masked_select", torch.masked_select,
           [Sample(((3, 4), mask((3, 4)))), Sample(((3, 4), mask((4,)))),
            Sample(((4,), mask((2, 4)))), Sample(((2, 1, 3), mask((4, 1))))]),
    OpInfo("take", torch.take,
           [Sample(((3, 4), ints((5,), -12, 12))), Sample(((2, 3), ints((2, 2), 0, 6))),
            Sample(((4,), const([1, 1, 1])))]),
    OpInfo("put", _put,
           [Sample(((3, 4), const([0, 5, -1]), (3,))),
            Sample(((3, 4), ints((2, 2), 0, 12), (2, 2)), {"accumulate": True}),
            Sample(((5,), const([1, 3]), (1, 2)), {"accumulate": False})]),
    # scatter's indices are distinct along dim (torch leaves which repeat wins unspecified);
    # src as large as index (torch's backward refuses a larger src)
    OpInfo("scatter", lambda x, index, src, dim: torch.scatter(x, dim, index, src),
           [Sample(((3, 4), const([[0, 2, 1, 0], [2, 1, 0, 2]]), (2, 4)), {"dim": 0}),
            Sample(((3, 4), const([[3, 1], [0, 2], [1, 3]]), (3, 2)), {"dim": 1}),
            Sample(((3, 4), const([[1], [3]]), 2.5), {"dim": -1}),
            Sample(((2, 3, 4), const([[[0, 3]], [[2, 1]]]), (2, 1, 2)), {"dim": 2})]),
    OpInfo("scatter_add", lambda x, index, src, dim: torch.scatter_add(x, dim, index, src),
           [Sample(((3, 4), ints((2, 4), 0, 3), (2, 4)), {"dim": 0}),
            Sample(((3, 4), ints((3, 6), 0, 4), (3, 6)), {"dim": 1}),
            Sample(((2, 3, 4), ints((2, 2, 3), 0, 4), (2, 2, 3)), {"dim": -1})]),
    OpInfo("gather", lambda x, index, dim: torch.gather(x, dim, index),
           [Sample(((3, 4), ints((2, 4), 0, 3)), {"dim": 0}),
            Sample(((3, 4), ints((3, 6), 0, 4)), {"dim": 1}),
            Sample(((2, 3, 4), ints((2, 2, 3), 0, 4)), {"dim": -1}),
            Sample(((2, 3, 4), ints((1, 3, 2), 0, 3)), {"dim": 1})]),
    OpInfo("gather_backward",
           lambda g, index, input_sizes, dim: torch.zeros(input_sizes, dtype=g.dtype).scatter_add(
               dim, index, g),
           [Sample(((2, 4), ints((2, 4), 0, 3)), {"input_sizes": (3, 4), "dim": 0}),
            Sample(((3, 6), ints((3, 6), 0, 4)), {"input_sizes": (3, 4), "dim": 1})]),
    OpInfo("index_select", lambda x, index, dim: torch.index_select(x, dim, index),
           [Sample(((4, 3), ints((5,), 0, 4)), {"dim": 0}),
            Sample(((2, 3, 4), ints((2,), 0, 4)), {"dim": -1}),
            Sample(((3, 2), const(1)), {"dim": 0})]),
    OpInfo("embedding", _embedding,
           [Sample(((5, 3), ints((2, 4), 0, 5))), Sample(((4, 3), const(2))),
            Sample(((3, 2), const([[0, 2], [2, 2]])))]),
    # the padding row gets no gradient, which finite differences would see
    OpInfo("embedding", _embedding,
           [Sample(((4, 2), ints((7,), 0, 4)), {"padding_idx": 1}),
            Sample(((3, 2), const([[0, 2], [2, 2]])), {"padding_idx": 0})],
           check_finite_differences=False),
    OpInfo("embedding_dense_backward",
           lambda g, indices, num_weights, padding_idx=-1: torch.ops.aten.embedding_dense_backward(
               g, indices, num_weights, padding_idx, False),
           [Sample(((2, 4, 3), ints((2, 4), 0, 5)), {"num_weights": 5}),
            Sample(((7, 2), ints((7,), 0, 4)), {"num_weights": 4, "padding_idx": 1}),
            Sample(((3,), const(2)), {"num_weights": 4})]),
    OpInfo("masked_fill", torch.masked_fill,
           [Sample(((3, 4), mask((3, 4)), 0.5)), Sample(((3, 4), mask((4,)), -1.0)),
            Sample(((4,), mask((2, 4)), 2.0)), Sample(((2, 3), mask((2, 3)), ())),
            Sample(((2, 3), mask((3,)), ()), requires_grad=(False, False, True)),
            Sample(((), mask(()), 3.0))]),
    OpInfo("embedding",
           lambda w, indices, padding_idx=-1, scale_grad_by_freq=False: torch.embedding(
               w, indices, padding_idx, scale_grad_by_freq),
           [Sample(((5, 3), const([[1, 1, 2], [0, 1, 4]])), {"scale_grad_by_freq": True}),
            Sample(((4, 2), const([3, 3, 3, 1])), {"scale_grad_by_freq": True,
                                                   "padding_idx": 1})],
           check_finite_differences=False),
    OpInfo("embedding_dense_backward",
           lambda g, indices, num_weights, padding_idx=-1, scale_grad_by_freq=False:
           torch.ops.aten.embedding_dense_backward(g, indices, num_weights, padding_idx,
                                                   scale_grad_by_freq),
           [Sample(((2, 3, 2), const([[1, 1, 2], [0, 1, 4]])),
                   {"num_weights": 5, "scale_grad_by_freq": True})],
           # torch's double backward (embedding_dense_double_backward) ignores the scaling,
           # so its derivative is not the finite differences'
           check_finite_differences=False),
    OpInfo("index_add", lambda x, index, source, dim, alpha=1: torch.index_add(
        x, dim, index, source, alpha=alpha),
           [Sample(((3, 4), const([0, 2, 0]), (3, 4)), {"dim": 0}),
            Sample(((3, 4), const([3, 1]), (3, 2)), {"dim": 1, "alpha": 2.5}),
            Sample(((2, 3, 4), ints((5,), 0, 3), (2, 5, 4)), {"dim": -2}),
            Sample(((), const([0]), ()), {"dim": 0}),
            Sample((ints((3,), 0, 5), const([1, 1]), ints((2,), 0, 5)), {"dim": 0, "alpha": 3})]),
    OpInfo("repeat_interleave", lambda r, output_size=None: torch.repeat_interleave(
        r, output_size=output_size),
           [Sample((const([1, 0, 3]),)), Sample((const([2, 2]),), {"output_size": 4}),
            Sample((const([], np.int64),)), Sample((const([4], np.int32),))], check_grad=False),
    OpInfo("_unique2", lambda x, sorted=True: torch._unique2(x, sorted, True, True),
           [Sample((const([3., 1., 2., 1., 3., 5.], np.float32),)),
            Sample((ints((3, 4), 0, 4),)), Sample((mask((5,)),), {"sorted": False}),
            Sample((const(2.5, np.float32),)), Sample((const([], np.float32),)),
            Sample((const([np.nan, 1., np.nan, -0., 0.], np.float32),))],
           check_grad=False),
    OpInfo("unique_dim",
           lambda x, dim, sorted=True: torch.unique(x, sorted, True, True, dim),
           [Sample((const([[1, 2], [1, 2], [0, 5]]),), {"dim": 0}),
            Sample((const([[1, 2, 1], [3, 4, 3]]),), {"dim": 1}),
            Sample((const([[[1., 0.]], [[0., 1.]], [[1., 0.]]], np.float32),), {"dim": -3}),
            Sample((const(np.zeros((0, 3)), np.float32),), {"dim": 0})],
           check_grad=False),
    OpInfo("bincount", lambda x, weights=None, minlength=0: torch.bincount(x, weights, minlength),
           [Sample((const([1, 1, 3, 0]), None)),
            Sample((const([2, 0], np.int32), None), {"minlength": 5}),
            Sample((const([], np.int64), None), {"minlength": 2}),
            Sample((const([1, 1, 3]), (3,))), Sample((const([0, 4]), ints((2,), 0, 3)))],
           check_grad=False),
]
