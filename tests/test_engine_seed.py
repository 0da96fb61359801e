"""The seed walkthrough with the engine in place of torch prints what real torch prints."""

import gradserve.engine as ge
from tests.conftest import gradserve_seed_lines as _printed
from tests.reference import torch


def test_seed_walkthrough_matches_torch_line_by_line():
    expected = _printed(torch)
    got = _printed(ge)
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"line {i + 1}: {g!r} != torch's {e!r}"
