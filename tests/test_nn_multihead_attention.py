"""nn.MultiheadAttention against torch (engine and session): initialisation from the same seed,
outputs and averaged or per-head weights, masks (bool attn_mask, key_padding_mask), batch_first,
unbatched inputs, gradients, repr; need_weights=False (torch's fused attention) to float32
tolerance."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

CAUSAL = [[False, True, True], [False, False, True], [False, False, False]]


def _run(lib: Any, batch_first: bool, need_weights: bool, masked: bool, average: bool = True,
         batched: bool = True, separate: bool = False) -> list[Any]:
    lib.manual_seed(0)
    m = lib.nn.MultiheadAttention(8, 2, batch_first=batch_first)
    x = lib.rand(3, 4, 8) if batched else lib.rand(3, 8)
    y = lib.rand(*x.shape) if separate else x
    kwargs: dict[str, Any] = {"need_weights": need_weights, "average_attn_weights": average}
    if masked:
        if not batch_first:
            kwargs["attn_mask"] = lib.tensor(CAUSAL)
        pad = [False, False, True] if not batch_first else [False, False, True, True]
        kwargs["key_padding_mask"] = (lib.tensor([pad] * (x.shape[1] if not batch_first else 3))
                                      if batched else lib.tensor(pad[:3]))
    out, w = m(x, y, y, **kwargs)
    (out * out).sum().backward()
    return [out.detach().numpy(), None if w is None else w.detach().numpy(),
            m.in_proj_weight.grad.numpy(), m.out_proj.weight.grad.numpy(),
            m.in_proj_bias.grad.numpy(), repr(m), [n for n, _ in m.named_parameters()]]


CASES = [(bf, masked, average) for bf in (False, True) for masked in (False, True)
         for average in (True, False)]


@pytest.mark.parametrize("batch_first,masked,average", CASES)
def test_attention_with_weights_is_torchs(gradserve_lib: Any, batch_first: bool, masked: bool,
                                          average: bool) -> None:
    got = _run(gradserve_lib, batch_first, True, masked, average)
    want = _run(torch, batch_first, True, masked, average)
    for g, w in zip(got, want):
        if isinstance(w, np.ndarray):
            assert np.array_equal(g, w)
        else:
            assert g == w


@pytest.mark.parametrize("batched", [True, False])
def test_unbatched_and_separate_key_value(gradserve_lib: Any, batched: bool) -> None:
    got = _run(gradserve_lib, False, True, False, batched=batched, separate=True)
    want = _run(torch, False, True, False, batched=batched, separate=True)
    for g, w in zip(got, want):
        if isinstance(w, np.ndarray):
            assert np.array_equal(g, w)
        else:
            assert g == w


@pytest.mark.parametrize("masked", [False, True])
def test_attention_without_weights_is_close(gradserve_lib: Any, masked: bool) -> None:
    got = _run(gradserve_lib, False, False, masked)
    want = _run(torch, False, False, masked)
    assert got[1] is None and want[1] is None
    for g, w in zip(got[:5], want[:5]):
        if w is not None:
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_heads_must_divide_the_embedding(gradserve_lib: Any) -> None:
    with pytest.raises(AssertionError, match="embed_dim must be divisible by num_heads"):
        gradserve_lib.nn.MultiheadAttention(10, 3)
    with pytest.raises(AssertionError, match="embed_dim must be divisible by num_heads"):
        torch.nn.MultiheadAttention(10, 3)
