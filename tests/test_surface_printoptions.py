"""torch.set_printoptions through gradserve: the engine (process-wide, as torch) and a session
(the session's own options; the client formats the fetched values), compared with torch's repr."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

CASES = [
    {"precision": 6},
    {"sci_mode": False},
    {"sci_mode": True, "precision": 2},
    {"profile": "short"},
    {"linewidth": 40},
    {"threshold": 5, "edgeitems": 1},
]

VALUES = np.array([[1.0e-5, 0.123456789, -2.5], [3.0, 1234.5678, 7.25]], dtype=np.float32)


def _reprs(lib: Any, options: dict[str, Any]) -> list[str]:
    lib.set_printoptions(**options)
    try:
        x = lib.tensor(VALUES, requires_grad=True)
        y = (x * 2).sum(1)
        return [repr(x), repr(y), repr(lib.tensor([1, 2, 3])), repr(lib.tensor(0.5)),
                str(lib.arange(12.0))]
    finally:
        lib.set_printoptions(profile="default")


@pytest.mark.parametrize("options", CASES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_set_printoptions_prints_as_torch(gradserve_lib: Any, options: dict[str, Any]) -> None:
    assert _reprs(gradserve_lib, options) == _reprs(torch, options)


def test_default_options_come_back_after_reset(gradserve_lib: Any) -> None:
    gradserve_lib.set_printoptions(precision=2)
    gradserve_lib.set_printoptions(profile="default")
    assert repr(gradserve_lib.tensor([0.123456])) == "tensor([0.1235])"


def test_one_session_options_leave_another_session_alone(gradserve_client: Any) -> None:
    with gradserve_client.session() as a, gradserve_client.session() as b:
        a.set_printoptions(precision=1)
        assert repr(a.tensor([0.25, 1.5])) == "tensor([0.2, 1.5])"
        assert repr(b.tensor([0.25, 1.5])) == "tensor([0.2500, 1.5000])"
