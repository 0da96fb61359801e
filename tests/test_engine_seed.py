"""The seed walkthrough with the engine in place of torch prints what real torch prints."""

import contextlib
import io

import torch

import gradserve.engine as ge

from .seed_walkthrough import run


def _printed(module) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run(module)
    return out.getvalue().splitlines()


def test_seed_walkthrough_matches_torch_line_by_line():
    expected = _printed(torch)
    got = _printed(ge)
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"line {i + 1}: {g!r} != torch's {e!r}"
