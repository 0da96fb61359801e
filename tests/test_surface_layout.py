"""Tensor.stride(), storage_offset(), is_contiguous() and view's stride check, against torch, in
the engine and through a session (surface/layout.py; the server describes a non-contiguous
tensor's strides and a view's offset)."""

from __future__ import annotations

from typing import Any

import pytest

from gradserve.surface import layout
from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

# each makes a tensor from `a` (arange(24) as 2x3x4, float32)
VIEWS = {
    "base": lambda lib, a: a,
    "transpose": lambda lib, a: a.transpose(0, 1),
    "t": lambda lib, a: a[0].t(),
    "permute": lambda lib, a: a.permute(2, 0, 1),
    "strided_slice": lambda lib, a: a[:, 1:, ::2],
    "row": lambda lib, a: a[1],
    "narrow": lambda lib, a: a.narrow(2, 1, 2),
    "select_col": lambda lib, a: a[:, :, 3],
    "expand": lambda lib, a: a[:, :1, :].expand(2, 5, 4),
    "unsqueeze": lambda lib, a: a.unsqueeze(1),
    "squeeze_of_slice": lambda lib, a: a[:, 1:2].squeeze(1),
    "view": lambda lib, a: a.view(6, 4),
    "contiguous": lambda lib, a: a.transpose(1, 2).contiguous(),
    "computed": lambda lib, a: a * 2,
    "scalar": lambda lib, a: a.sum(),
    "slice_then_transpose": lambda lib, a: a[1:, :, 1:3].transpose(-1, -2),
    "diagonal_like_row_step": lambda lib, a: a.reshape(24)[::5],
}


def _describe(lib: Any, make: Any) -> tuple[Any, ...]:
    a = lib.arange(24.0).reshape(2, 3, 4)
    t = make(lib, a)
    return (tuple(t.shape), t.stride(), t.storage_offset(), t.is_contiguous(),
            [t.stride(d) for d in range(-t.dim(), t.dim())])


@pytest.mark.parametrize("name", VIEWS)
def test_layout_as_torch(gradserve_lib: Any, name: str) -> None:
    assert _describe(gradserve_lib, VIEWS[name]) == _describe(torch, VIEWS[name])


SHAPES = [(-1,), (4, 6), (2, 12), (3, 2, 4), (12, 2), (2, 3, 2, 2), (24,), (3, -1), (2, 2, 3),
          (6, 2), (3, 4), (4, 3), (2, 6), (2, 3, 2)]


def _views(lib: Any, name: str) -> list[str]:
    t = VIEWS[name](lib, lib.arange(24.0).reshape(2, 3, 4))
    t.stride()  # a session checks once the server has described the layout
    n = t.numel()
    out = []
    for shape in SHAPES:
        known = 1
        for d in shape:
            known *= d if d != -1 else 1
        if (-1 in shape and n % known) or (-1 not in shape and known != n):
            continue
        try:
            v = t.view(*shape)
        except RuntimeError as exc:
            out.append(f"{shape}: RuntimeError: {exc}")
        else:
            out.append(f"{shape}: {tuple(v.shape)} {v.stride()} {v.storage_offset()}")
    return out


@pytest.mark.parametrize("name", ["base", "transpose", "permute", "row", "narrow", "view",
                                  "contiguous", "slice_then_transpose", "strided_slice",
                                  "select_col"])
def test_view_refuses_what_torch_refuses(gradserve_lib: Any, name: str) -> None:
    assert _views(gradserve_lib, name) == _views(torch, name)


def test_stride_errors_as_torch(gradserve_lib: Any) -> None:
    def errors(lib: Any) -> list[str]:
        out = []
        for t, dim in ((lib.zeros(2, 3), 2), (lib.zeros(2, 3), -3), (lib.tensor(1.0), 0)):
            try:
                t.stride(dim)
            except IndexError as exc:
                out.append(str(exc))
        return out

    assert errors(gradserve_lib) == errors(torch)


@pytest.mark.parametrize("old,strides,new", [
    ((2, 3, 4), (12, 4, 1), (6, 4)), ((3, 2, 4), (4, 12, 1), (24,)),
    ((3, 2, 4), (4, 12, 1), (3, 8)),
    ((3, 2, 4), (4, 12, 1), (3, 2, 2, 2)), ((4, 3), (1, 4), (2, 2, 3)), ((4, 3), (1, 4), (12,)),
    ((2, 1, 3), (3, 100, 1), (2, 3)), ((5, 1), (0, 1), (5,)), ((0, 3), (3, 1), (3, 0)),
])
def test_view_strides_as_torch_as_strided(old: tuple[int, ...], strides: tuple[int, ...],
                                          new: tuple[int, ...]) -> None:
    base = torch.zeros(1000)
    t = base.as_strided(old, strides)
    try:
        want = t.view(new).stride()
    except RuntimeError:
        want = None
    assert layout.view_strides(old, strides, new) == want
