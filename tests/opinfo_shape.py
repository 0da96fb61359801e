"""OpInfos for the shape ops in engine/ops_shape.py beyond reshape/expand/sum_to_size (those live
with the core ops in opinfo_elementwise.py): flatten, squeeze, unsqueeze, permute, transpose, t,
flip, repeat, cat, stack, split, split_with_sizes, unbind.
"""

from __future__ import annotations

from tests.reference import torch

from .opinfo import OpInfo, Sample


def _squeeze(x, dim=None):
    return x.squeeze() if dim is None else x.squeeze(dim)


OPINFOS = [
    OpInfo("flatten", lambda x, start_dim=0, end_dim=-1: torch.flatten(x, start_dim, end_dim),
           [Sample(((2, 3, 4),)), Sample(((2, 3, 4),), {"start_dim": 1}),
            Sample(((2, 3, 4),), {"start_dim": -3, "end_dim": -2}), Sample(((),)),
            Sample(((2, 1, 3, 2),), {"start_dim": 1, "end_dim": 3})]),
    OpInfo("squeeze", _squeeze,
           [Sample(((2, 1, 3, 1),)), Sample(((2, 1, 3),), {"dim": 1}),
            Sample(((2, 1, 3),), {"dim": 0}), Sample(((2, 1, 1),), {"dim": (-1, 1)}),
            Sample(((1, 3),), {"dim": -2}), Sample(((),), {"dim": 0}), Sample(((1,),))]),
    OpInfo("unsqueeze", lambda x, dim: torch.unsqueeze(x, dim),
           [Sample(((2, 3),), {"dim": 0}), Sample(((2, 3),), {"dim": 2}),
            Sample(((2, 3),), {"dim": -1}), Sample(((2, 3),), {"dim": -3}),
            Sample(((),), {"dim": 0})]),
    OpInfo("permute", lambda x, dims: torch.permute(x, dims),
           [Sample(((2, 3, 4),), {"dims": (2, 0, 1)}), Sample(((2, 3, 4),), {"dims": (-1, 0, 1)}),
            Sample(((2, 3),), {"dims": (1, 0)}), Sample(((),), {"dims": ()}),
            Sample(((2, 1, 3, 2),), {"dims": (3, 1, 0, 2)})]),
    OpInfo("transpose", lambda x, dim0, dim1: torch.transpose(x, dim0, dim1),
           [Sample(((2, 3, 4),), {"dim0": 0, "dim1": 2}),
            Sample(((2, 3),), {"dim0": -1, "dim1": 0}),
            Sample(((2, 3, 4),), {"dim0": 1, "dim1": 1}), Sample(((),), {"dim0": 0, "dim1": -1})]),
    OpInfo("t", torch.t, [Sample(((2, 3),)), Sample(((3,),)), Sample(((),))]),
    OpInfo("flip", lambda x, dims: torch.flip(x, dims if isinstance(dims, tuple) else (dims,)),
           [Sample(((2, 3, 4),), {"dims": (0, 2)}), Sample(((2, 3),), {"dims": -1}),
            Sample(((4,),), {"dims": (0,)}), Sample(((2, 3),), {"dims": ()})]),
    OpInfo("repeat", lambda x, repeats: x.repeat(repeats),
           [Sample(((2, 3),), {"repeats": (2, 1)}), Sample(((2, 3),), {"repeats": (3, 2, 2)}),
            Sample(((3,),), {"repeats": (2,)}), Sample(((),), {"repeats": (2, 3)}),
            Sample(((2, 3),), {"repeats": (1, 1)})]),
    OpInfo("cat", lambda tensors, dim=0: torch.cat(tensors, dim),
           [Sample(([(2, 3), (1, 3)],)), Sample(([(2, 3), (2, 1), (2, 2)],), {"dim": 1}),
            Sample(([(2, 3, 4), (2, 3, 1)],), {"dim": -1}), Sample(([(3,)],)),
            Sample(([(2, 3), (2, 3)],), {"dim": -2})]),
    OpInfo("stack", lambda tensors, dim=0: torch.stack(tensors, dim),
           [Sample(([(2, 3), (2, 3)],)), Sample(([(2, 3), (2, 3), (2, 3)],), {"dim": 2}),
            Sample(([(3,), (3,)],), {"dim": -1}), Sample(([(), ()],)),
            Sample(([(2, 3)],), {"dim": 1})]),
    OpInfo("split", lambda x, split_size, dim=0: torch.split(x, split_size, dim),
           [Sample(((5, 3),), {"split_size": 2}), Sample(((2, 6),), {"split_size": 3, "dim": 1}),
            Sample(((2, 3, 4),), {"split_size": 4, "dim": -1}),
            Sample(((3,),), {"split_size": 5})]),
    OpInfo("split_with_sizes", lambda x, split_sizes, dim=0: torch.split(x, list(split_sizes), dim),
           [Sample(((5, 3),), {"split_sizes": (1, 4)}),
            Sample(((2, 6),), {"split_sizes": (3, 0, 2, 1), "dim": -1}),
            Sample(((2, 3, 4),), {"split_sizes": (3,), "dim": 1})]),
    OpInfo("unbind", lambda x, dim=0: torch.unbind(x, dim),
           [Sample(((3, 2),)), Sample(((2, 3, 4),), {"dim": -1}), Sample(((1,),)),
            Sample(((2, 3),), {"dim": 1})]),
    OpInfo("roll", lambda x, shifts, dims=None: torch.roll(x, shifts, dims),
           [Sample(((3, 4),), {"shifts": 1}), Sample(((3, 4),), {"shifts": -2, "dims": 1}),
            Sample(((2, 3, 4),), {"shifts": (1, 5), "dims": (0, -1)}),
            Sample(((),), {"shifts": 3}), Sample(((1, 2),), {"shifts": 1, "dims": 0})]),
    OpInfo("diagonal", lambda x, offset=0, dim1=0, dim2=1: torch.diagonal(x, offset, dim1, dim2),
           [Sample(((3, 4),)), Sample(((3, 4),), {"offset": 1}), Sample(((3, 4),), {"offset": -2}),
            Sample(((2, 3, 4),), {"dim1": -1, "dim2": 0}), Sample(((2, 3),), {"offset": 2})]),
    OpInfo("diagonal_copy",
           lambda x, offset=0, dim1=0, dim2=1: torch.diagonal_copy(x, offset, dim1, dim2),
           [Sample(((3, 4),)), Sample(((4, 3),), {"offset": -1}),
            Sample(((2, 3, 3),), {"dim1": 1, "dim2": 2})]),
    OpInfo("diagonal_backward",
           lambda g, input_sizes, offset=0, dim1=0, dim2=1: torch.ops.aten.diagonal_backward(
               g, input_sizes, offset, dim1, dim2),
           [Sample(((3,),), {"input_sizes": (3, 4)}),
            Sample(((2,),), {"input_sizes": (3, 4), "offset": -1}),
            Sample(((2, 3),), {"input_sizes": (3, 2, 4), "dim1": 0, "dim2": 2, "offset": 1})]),
    OpInfo("unfold", lambda x, dimension, size, step: x.unfold(dimension, size, step),
           [Sample(((7,),), {"dimension": 0, "size": 3, "step": 2}),
            Sample(((7,),), {"dimension": 0, "size": 3, "step": 1}),  # overlapping windows
            Sample(((2, 9),), {"dimension": -1, "size": 2, "step": 3}),  # elements left out
            Sample(((3, 5, 4),), {"dimension": 1, "size": 5, "step": 1}),
            Sample(((6,),), {"dimension": 0, "size": 1, "step": 1}),
            Sample(((),), {"dimension": 0, "size": 1, "step": 1})]),
    OpInfo("unfold_backward",
           lambda g, input_sizes, dim, size, step: torch.ops.aten.unfold_backward(
               g, input_sizes, dim, size, step),
           [Sample(((3, 3),), {"input_sizes": (7,), "dim": 0, "size": 3, "step": 2}),
            Sample(((5, 3),), {"input_sizes": (7,), "dim": 0, "size": 3, "step": 1}),
            Sample(((2, 3, 2),), {"input_sizes": (2, 9), "dim": 1, "size": 2, "step": 3})]),
    OpInfo("diag_embed", lambda x, offset=0, dim1=-2, dim2=-1: torch.diag_embed(x, offset, dim1,
                                                                                 dim2),
           [Sample(((3,),)), Sample(((2, 3),), {"offset": 1}),
            Sample(((2, 3),), {"offset": -2, "dim1": 0, "dim2": 2}), Sample(((1,),))]),
]
