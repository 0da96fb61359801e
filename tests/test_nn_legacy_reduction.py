"""The legacy `size_average`/`reduce` arguments of torch's losses (modules and functional): the
reduction they name and torch's deprecation warning, against torch."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

FLAGS = [(None, None), (False, None), (None, False), (True, False), (False, True), (True, True)]
P = np.array([[0.2, 0.7, 0.9], [0.6, 0.1, 0.4]], dtype=np.float32)
T = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=np.float32)
LOGP = np.log(np.array([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]], dtype=np.float32))
CLS = np.array([2, 0])


def _run(lib: Any, make: Any) -> tuple[str, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = make(lib)
    texts = [str(w.message) for w in caught if "size_average" in str(w.message)]
    return repr(out), texts


def _cases(size_average: Any, reduce: Any) -> list[Any]:
    kw = {"size_average": size_average, "reduce": reduce}
    return [
        lambda lib: lib.nn.BCELoss(**kw)(lib.tensor(P), lib.tensor(T)),
        lambda lib: lib.nn.MSELoss(**kw)(lib.tensor(P), lib.tensor(T)),
        lambda lib: lib.nn.L1Loss(**kw)(lib.tensor(P), lib.tensor(T)),
        lambda lib: lib.nn.NLLLoss(**kw)(lib.tensor(LOGP), lib.tensor(CLS)),
        lambda lib: lib.nn.CrossEntropyLoss(**kw)(lib.tensor(LOGP), lib.tensor(CLS)),
        lambda lib: lib.nn.functional.binary_cross_entropy(lib.tensor(P), lib.tensor(T), **kw),
        lambda lib: lib.nn.functional.mse_loss(lib.tensor(P), lib.tensor(T), **kw),
        lambda lib: lib.nn.functional.smooth_l1_loss(lib.tensor(P), lib.tensor(T), **kw),
        lambda lib: lib.nn.functional.nll_loss(lib.tensor(LOGP), lib.tensor(CLS), **kw),
        lambda lib: lib.nn.functional.binary_cross_entropy_with_logits(
            lib.tensor(P), lib.tensor(T), **kw),
    ]


@pytest.mark.parametrize("size_average,reduce", FLAGS)
def test_legacy_flags_name_torch_reduction(gradserve_lib: Any, size_average: Any,
                                           reduce: Any) -> None:
    for make in _cases(size_average, reduce):
        assert _run(gradserve_lib, make) == _run(torch, make)


def test_module_keeps_the_named_reduction(gradserve_lib: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert gradserve_lib.nn.BCELoss(size_average=False).reduction == "sum"
        assert gradserve_lib.nn.MSELoss(reduce=False).reduction == "none"
        assert gradserve_lib.nn.L1Loss(size_average=True, reduce=True).reduction == "mean"
