"""OpInfos for engine/ops_linalg.py: matmul, mm, addmm, bmm, dot, outer, einsum."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.reference import torch

from .opinfo import OpInfo, Sample


def ints(shape: tuple[int, ...]) -> Any:
    return lambda rng: np.asarray(rng.integers(-3, 4, size=shape), dtype=np.int64)


# Every matmul case: 1-D with 1-D, 2-D, 1-D with 2-D both ways, folded 3-D+ with 1-D/2-D, and
# batched with broadcasting batch dims (size-1 and missing).
MATMUL_SHAPES = [((3,), (3,)), ((2, 3), (3, 4)), ((3,), (3, 4)), ((2, 3), (3,)),
                 ((2, 2, 3), (3, 4)), ((2, 3), (2, 3, 4)), ((3,), (2, 3, 4)),
                 ((2, 2, 3), (3,)), ((2, 2, 3), (2, 3, 4)), ((1, 2, 3), (2, 3, 4)),
                 ((5, 1, 2, 3), (2, 3, 4)), ((2, 2, 3), (1, 3, 4)), ((2, 3), (5, 2, 3, 4)),
                 ((1, 3), (2, 3, 4)), ((2, 3), (2, 3, 1)), ((2, 2, 3), (5, 2, 3, 4))]

MATMUL_SAMPLES = [Sample((a, b)) for a, b in MATMUL_SHAPES] + [
    # which operand requires grad changes torch's node name in the folded cases
    Sample(((2, 3), (2, 3, 4)), requires_grad=(False, True)),
    Sample(((2, 3), (2, 3, 4)), requires_grad=(True, False)),
    Sample(((1, 2, 3), (2, 3, 4)), requires_grad=(False, True)),
    Sample((ints((2, 3)), ints((3, 2))))]

EINSUM_SAMPLES = [
    Sample(([(2, 3), (3, 4)],), {"equation": "ij,jk->ik"}),
    Sample(([(2, 3), (3, 4)],), {"equation": "ij,jk"}),
    Sample(([(5, 2, 3), (5, 3, 4)],), {"equation": "bij,bjk->bik"}),
    Sample(([(2, 3)],), {"equation": "ij->ji"}),
    Sample(([(2, 3)],), {"equation": "ij->i"}),
    Sample(([(2, 3)],), {"equation": "ij->"}),
    Sample(([(3, 3)],), {"equation": "ii->i"}),
    Sample(([(3, 3)],), {"equation": "ii"}),
    Sample(([(2, 3, 3)],), {"equation": "...ii->...i"}),
    Sample(([(3,), (3,)],), {"equation": "i,i->"}),
    Sample(([(3,), (4,)],), {"equation": "i,j->ij"}),
    Sample(([(2, 3), (2, 3)],), {"equation": "ij,ij->ij"}),
    Sample(([(2, 3), (3,)],), {"equation": "ij,j->i"}),
    Sample(([(2, 3), (3, 4), (4, 5)],), {"equation": "ij,jk,kl->il"}),
    Sample(([(2, 3), (4, 5)],), {"equation": "ij,kl->ijkl"}),
    Sample(([(2, 3, 4), (4, 5)],), {"equation": "...j,jk->...k"}),
    Sample(([(2, 1, 3, 4), (5, 4, 2)],), {"equation": "...ij,...jk->...ik"}),
    Sample(([(2, 3), (3, 4)],), {"equation": "ij,jk->ijk"}),
    Sample(([(2, 3), (4,)],), {"equation": "ij,k->i"}),
    Sample(([(2, 3), (3, 3)],), {"equation": "ij,jj->i"}),
    Sample(([(2, 3), (3, 4)],), {"equation": " i j , j k -> k i "}),
    Sample(([(2, 3), (3, 4)],), {"equation": "ij,jk->ik"}, requires_grad=([False, True],)),
]


def _einsum(tensors: list[Any], equation: str) -> Any:
    return torch.einsum(equation, *tensors)


OPINFOS = [
    OpInfo("matmul", torch.matmul, MATMUL_SAMPLES),
    OpInfo("mm", torch.mm, [Sample(((2, 3), (3, 4))), Sample(((1, 3), (3, 1))),
                            Sample(((4, 1), (1, 2))), Sample((ints((2, 3)), ints((3, 2))))]),
    # bias shapes: a row (nn.Linear's), the product's shape, a scalar-like [1] and a column
    OpInfo("addmm", torch.addmm, [Sample(((4,), (2, 3), (3, 4))), Sample(((2, 4), (2, 3), (3, 4))),
                                  Sample(((1,), (2, 3), (3, 4))), Sample(((2, 1), (2, 3), (3, 4))),
                                  Sample(((4,), (2, 3), (3, 4)), {"beta": 0.5, "alpha": 2.0}),
                                  Sample(((4,), (2, 3), (3, 4)), {"beta": 0, "alpha": 1}),
                                  Sample((ints((2,)), ints((2, 3)), ints((3, 2))))]),
    OpInfo("bmm", torch.bmm, [Sample(((2, 2, 3), (2, 3, 4))), Sample(((1, 3, 1), (1, 1, 2))),
                              Sample(((3, 2, 2), (3, 2, 2)))]),
    OpInfo("dot", torch.dot, [Sample(((3,), (3,))), Sample(((1,), (1,))),
                              Sample((ints((4,)), ints((4,))))]),
    OpInfo("outer", torch.outer, [Sample(((3,), (4,))), Sample(((1,), (2,))),
                                  Sample((ints((3,)), (2,)))]),
    OpInfo("einsum", _einsum, EINSUM_SAMPLES),
    OpInfo("baddbmm", lambda x, b1, b2, beta=1, alpha=1: torch.baddbmm(x, b1, b2, beta=beta,
                                                                       alpha=alpha),
           [Sample(((2, 3, 5), (2, 3, 4), (2, 4, 5))),
            Sample(((3, 1), (2, 3, 4), (2, 4, 5)), {"beta": 0.5, "alpha": -2}),
            Sample(((5,), (1, 3, 4), (1, 4, 5)), {"beta": 0}),
            Sample((ints((2, 2, 2)), ints((2, 2, 3)), ints((2, 3, 2))), {"alpha": 2})]),
    OpInfo("addbmm", lambda x, b1, b2, beta=1, alpha=1: torch.addbmm(x, b1, b2, beta=beta,
                                                                     alpha=alpha),
           [Sample(((3, 5), (2, 3, 4), (2, 4, 5))),
            Sample(((5,), (4, 3, 2), (4, 2, 5)), {"beta": 2, "alpha": 0.5}),
            Sample(((1, 1), (1, 3, 4), (1, 4, 2)), {"beta": 0})]),
    OpInfo("kron", torch.kron,
           [Sample(((2, 3), (3, 2))), Sample(((2,), (2, 3, 2))), Sample(((), (3,))),
            Sample((ints((2, 2)), (2,))), Sample(((2, 1, 3), (1, 2)))]),
    OpInfo("_cdist_forward",
           lambda x1, x2, p=2.0, compute_mode=None: torch.ops.aten._cdist_forward(x1, x2, p,
                                                                         compute_mode),
           [Sample(((3, 4), (5, 4))), Sample(((2, 3, 2), (2, 4, 2)), {"p": 1.0}),
            Sample(((1, 3, 2), (2, 4, 2)), {"p": 3.0}), Sample(((3, 2), (2, 2)), {"p": 0.5}),
            Sample(((3, 2), (2, 2)), {"p": float("inf")}),
            Sample(((3, 2), (2, 2)), {"p": 0.0})],
           check_second_order=False),
    OpInfo("_cdist_backward",
           lambda g, x1, x2, dist, p=2.0: torch.ops.aten._cdist_backward(g, x1, x2, p, dist),
           [Sample(((3, 5), (3, 4), (5, 4), lambda rng: np.full((3, 5), 1.5, np.float32)),
                   requires_grad=(False, False, False, False))],
           check_grad=False),
    OpInfo("_euclidean_dist", torch.ops.aten._euclidean_dist,
           [Sample(((3, 4), (5, 4))), Sample(((2, 3, 2), (2, 30, 2)))], atol=1e-4),
]
