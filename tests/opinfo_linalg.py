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
]
