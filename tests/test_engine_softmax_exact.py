"""float32 softmax and log_softmax over the last dim and their gradients, bit for bit against torch
(torch's AVX2 kernels: SLEEF's expf and logf, the 8-lane sum, the reciprocal, the backward's
fused multiply-add), and a cross-entropy training loop whose printed losses are torch's."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch, torch_at_avx512

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

SHAPES = [(7, 2), (9, 3), (5, 7), (4, 8), (6, 9), (3, 16), (3, 17), (2, 100), (2, 3, 5), (11,)]


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_softmax_and_its_gradient_are_torchs_bits(shape: tuple[int, ...], fn: str) -> None:
    import gradserve.engine as ge

    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    a = ge.tensor(x, requires_grad=True)
    b = torch.tensor(x, requires_grad=True)
    ya, yb = getattr(ge, fn)(a, -1), getattr(torch, fn)(b, -1)
    assert np.array_equal(ya.detach().numpy(), yb.detach().numpy())
    (ga,) = ge.autograd.grad(ya, a, ge.tensor(g))
    (gb,) = torch.autograd.grad(yb, b, torch.tensor(g))
    assert np.array_equal(ga.numpy(), gb.numpy())


@pytest.mark.parametrize("shape", [(64, 10), (1024, 10), (2000, 10), (40, 700)], ids=str)
def test_cross_entropy_step_is_torchs_bits(shape: tuple[int, ...]) -> None:
    """An MLP's loss step at small and large sizes (one chunk of rows, several), with rows
    whose spread underflows exp, a -inf logit and a NaN row: cross_entropy's value and the
    logits' gradient are torch's."""
    import gradserve.engine as ge

    rng = np.random.default_rng(shape[0])
    x = (rng.standard_normal(shape) * 6).astype(np.float32)
    x[1, 0], x[2, :2], x[3, 1] = -200.0, (90.0, -90.0), -np.inf
    x[-1, -1] = np.nan
    t = rng.integers(0, shape[1], shape[0])

    def run(lib: Any) -> tuple[np.ndarray, np.ndarray]:
        a = lib.tensor(x, requires_grad=True)
        loss = lib.nn.functional.cross_entropy(a[:-1], lib.tensor(t[:-1]))
        loss.backward()
        (g,) = lib.autograd.grad(lib.log_softmax(a, 1), a, lib.tensor(x * 0.5))
        return np.append(loss.detach().numpy(), a.grad.numpy()), g.numpy()

    for mine, ref in zip(run(ge), run(torch), strict=True):  # NaNs: any payload
        differ = (mine.view(np.int32) != ref.view(np.int32)) & ~(np.isnan(mine) & np.isnan(ref))
        assert not differ.any(), np.argwhere(differ)[:5].tolist()


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_second_derivative_runs_through_torchs_node(fn: str) -> None:
    import gradserve.engine as ge

    x = np.array([[0.3, -1.2, 2.0], [1.0, 0.5, -0.5]], dtype=np.float32)

    def run(lib: Any) -> tuple[str, np.ndarray]:
        t = lib.tensor(x, requires_grad=True)
        (g,) = lib.autograd.grad((getattr(lib, fn)(t, 1) * t).sum(), t, create_graph=True)
        (h,) = lib.autograd.grad((g ** 2).sum(), t)
        return g.grad_fn.name(), h.numpy()

    (name_a, ha), (name_b, hb) = run(ge), run(torch)
    assert name_a == name_b
    np.testing.assert_allclose(ha, hb, rtol=1e-5, atol=1e-6)


def test_cross_entropy_training_prints_torchs_losses(gradserve_lib: Any) -> None:
    def run(lib: Any) -> list[float]:
        lib.manual_seed(0)
        model = lib.nn.Sequential(lib.nn.Linear(2, 3), lib.nn.Sigmoid(), lib.nn.Linear(3, 2))
        x = lib.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        y = lib.tensor([0, 1, 1, 0])
        opt = lib.optim.SGD(model.parameters(), lr=0.1)
        losses = []
        for _ in range(60):
            loss = lib.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    assert run(gradserve_lib) == run(torch)


_AVX512_TORCH = """
import sys, numpy as np, torch
if torch.backends.cpu.get_cpu_capability() != "AVX512":
    sys.exit(3)
inputs, out = np.load(sys.argv[1]), {}
for key in inputs.files:
    if key.startswith("g"):
        continue
    x = torch.tensor(inputs[key], requires_grad=True)
    y = getattr(torch.nn.functional, key.split("-")[0])(x, -1)
    y.backward(torch.tensor(inputs["g" + key]))
    out[key], out["grad" + key] = y.detach().numpy(), x.grad.numpy()
np.savez(sys.argv[2], **out)
"""


def test_softmax_lane_sum_at_avx512_width_is_torch_s(tmp_path: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """torch builds its last-dim softmax kernels for AVX512 too: there the lane sum runs 16
    lanes and a 4-step halving tree. Compared with a torch run at AVX512 (the suite's own torch
    runs at AVX2, tests/__init__.py), where the CPU has it."""
    import gradserve.engine as ge
    from gradserve.engine import cascade
    rng = np.random.default_rng(11)
    inputs = {}
    for i, shape in enumerate([(5, 70), (64, 33), (3, 17), (2, 7), (130, 10)]):
        for fn in ("softmax", "log_softmax"):
            inputs[f"{fn}-{i}"] = (rng.standard_normal(shape) * 3).astype(np.float32)
            inputs[f"g{fn}-{i}"] = rng.standard_normal(shape).astype(np.float32)
    ref = torch_at_avx512(_AVX512_TORCH, inputs, tmp_path)
    monkeypatch.setattr(cascade, "VECTOR_BYTES", 64)  # the softmax kernels' width
    for key, a in inputs.items():
        if key.startswith("g"):
            continue
        x = ge.tensor(a, requires_grad=True)
        y = getattr(ge.nn.functional, key.split("-")[0])(x, -1)
        y.backward(ge.tensor(inputs["g" + key]))
        np.testing.assert_array_equal(y.detach().numpy(), ref[key], strict=True)
        np.testing.assert_array_equal(x.grad.numpy(), ref["grad" + key], strict=True)
