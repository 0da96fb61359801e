"""Gaps a sixth set of public PyTorch programs met through gradserve, each checked against torch
in process (the engine) and through a session: the deprecated `reduction='elementwise_mean'`,
and an MNIST-sized convolution within a session's default memory budget."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch
from tests.reference import builtin_error as _error

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _same(got: Any, want: Any) -> None:
    """Same dtype, shape and bits."""
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
    g, w = np.asarray(got.detach().numpy()), want.detach().numpy()
    assert g.shape == w.shape and g.tobytes() == w.tobytes()


def _pair(t: Any, rng: np.random.Generator, *shape: int) -> tuple[Any, Any]:
    a, b = rng.standard_normal(shape).astype(np.float32), rng.uniform(0, 1, shape)
    return t.tensor(a), t.tensor(b.astype(np.float32))


# --- reduction='elementwise_mean' -----------------------------------------------------------------

_LOSSES = {
    "mse_loss": lambda F, x, p: F.mse_loss(x, p, reduction="elementwise_mean"),
    "l1_loss": lambda F, x, p: F.l1_loss(x, p, reduction="elementwise_mean"),
    "smooth_l1_loss": lambda F, x, p: F.smooth_l1_loss(x, p, reduction="elementwise_mean"),
    "huber_loss": lambda F, x, p: F.huber_loss(x, p, reduction="elementwise_mean"),
    "binary_cross_entropy": lambda F, x, p: F.binary_cross_entropy(
        x.sigmoid(), p, reduction="elementwise_mean"),
    "binary_cross_entropy_with_logits": lambda F, x, p: F.binary_cross_entropy_with_logits(
        x, p, reduction="elementwise_mean"),
    "cross_entropy": lambda F, x, p: F.cross_entropy(x, p, reduction="elementwise_mean"),
    "kl_div": lambda F, x, p: F.kl_div(x, p, reduction="elementwise_mean"),
}


@pytest.mark.parametrize("name", sorted(_LOSSES))
def test_elementwise_mean_reduction_is_mean_with_torch_warning(lib, name):
    def run(t: Any) -> tuple[Any, list[str]]:
        x, p = _pair(t, np.random.default_rng(0), 4, 5)
        x.requires_grad_(True)
        with pytest.warns(UserWarning) as record:
            loss = _LOSSES[name](t.nn.functional, x, p)
        loss.backward()
        return (loss, x.grad), sorted({str(w.message) for w in record})

    (got, got_grad), got_warnings = run(lib)
    (want, want_grad), want_warnings = run(torch)
    _same(got, want)
    # the gradients as 'mean' gives them (binary_cross_entropy_with_logits' can differ by an ulp)
    np.testing.assert_allclose(got_grad.numpy(), want_grad.numpy(), rtol=1e-6, atol=0)
    assert got_warnings == want_warnings


def test_loss_module_keeps_elementwise_mean_and_warns_when_called(lib):
    def run(t: Any) -> tuple[str, Any]:
        module = t.nn.MSELoss(reduction="elementwise_mean")
        x, p = _pair(t, np.random.default_rng(1), 3)
        with pytest.warns(UserWarning, match="reduction='elementwise_mean' is deprecated"):
            loss = module(x, p)
        return module.reduction, loss

    (got_name, got), (want_name, want) = run(lib), run(torch)
    assert got_name == want_name == "elementwise_mean"
    _same(got, want)


@pytest.mark.parametrize("reduction", ["elementwise_sum", "Mean", "batchmean"])
def test_other_unknown_reductions_still_refused_as_torch(lib, reduction):
    def run(t: Any) -> Any:
        x, p = _pair(t, np.random.default_rng(2), 3)
        return t.nn.functional.mse_loss(x, p, reduction=reduction).item()

    assert _error(run, lib) == _error(run, torch)


# --- convolution within a session's memory budget -----------------------------------------------

def test_mnist_sized_convolution_fits_the_default_budget(lib):
    # yunjey's MNIST ConvNet: a batch of 100 through Conv2d(1, 16, 5, padding=2); the declared
    # scratch counted windows of all 16 output channels (1.3 GB), past a session's 1 GiB
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (100, 1, 28, 28)).astype(np.float32)
    w = rng.standard_normal((16, 1, 5, 5)).astype(np.float32) * 0.2
    b = rng.standard_normal(16).astype(np.float32)

    def run(t: Any) -> tuple[Any, Any]:
        weight = t.tensor(w, requires_grad=True)
        out = t.nn.functional.conv2d(t.tensor(x), weight, t.tensor(b), padding=2)
        out.square().sum().backward()
        return out, weight.grad

    (got, got_grad), (want, want_grad) = run(lib), run(torch)
    # this shape is not one whose oneDNN summation order the engine reproduces: values as
    # rounding allows
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_grad.numpy(), want_grad.numpy(), rtol=1e-4)


# --- nll_loss: ignored targets' gradient ----------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_ignored_targets_get_a_positive_zero_gradient_as_torch(lib, reduction, weighted):
    # makemore pads its targets with -1 (ignore_index=-1): torch's kernel never writes an
    # ignored row, so its gradient is +0.0, and log_softmax's backward keeps the sign of zero
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((6, 5)).astype(np.float32)
    weight = rng.uniform(0.5, 2, 5).astype(np.float32)
    targets = np.array([1, -1, 3, -1, 0, 2])

    def run(t: Any) -> Any:
        x = t.tensor(logits, requires_grad=True)
        loss = t.nn.functional.cross_entropy(
            x, t.tensor(targets), t.tensor(weight) if weighted else None, ignore_index=-1,
            reduction=reduction)
        loss.sum().backward()
        return x.grad

    _same(run(lib), run(torch))


# --- torch.utils.data's submodules ----------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "dataloader.DataLoader", "dataloader.default_collate", "dataloader.get_worker_info",
    "dataset.Dataset", "dataset.TensorDataset", "dataset.Subset", "dataset.random_split",
    "sampler.RandomSampler", "sampler.BatchSampler", "sampler.SequentialSampler",
])
def test_data_submodules_hold_torch_names(lib, path):
    # minGPT and makemore import `from torch.utils.data.dataloader import DataLoader`
    sub, name = path.split(".")
    assert getattr(getattr(lib.utils.data, sub), name) is getattr(lib.utils.data, name)
    assert getattr(getattr(torch.utils.data, sub), name) is getattr(torch.utils.data, name)


def test_loader_from_the_submodule_batches_as_torch(lib):
    def run(t: Any) -> list[Any]:
        t.manual_seed(5)
        data = t.utils.data.dataset.TensorDataset(t.arange(10.0), t.arange(10))
        loader = t.utils.data.dataloader.DataLoader(data, batch_size=4, shuffle=True)
        assert t.utils.data.get_worker_info() is None
        return [(x.tolist(), y.tolist()) for x, y in loader]

    assert run(lib) == run(torch)


# --- indexing a 0-dim tensor ----------------------------------------------------------------------

@pytest.mark.parametrize("index", [0, -1, 5, np.int64(0), slice(0, 1), slice(None), (0,), (0, 0),
                                   [0], (None, 0), (Ellipsis, 0)])
@pytest.mark.parametrize("write", [False, True])
def test_zero_dim_index_refused_as_torch(lib, index, write):
    # hunkim's hello-RNN reads `loss.data[0]`, written for torch 0.3: torch 2.13 tells it to
    # use item()
    def run(t: Any) -> Any:
        x = t.tensor(3.0)
        if write:
            x[index] = 1.0
            return x.item()
        return x[index].tolist()

    assert _error(run, lib) == _error(run, torch)


# --- the 2-norm as torch's vectorised kernel sums it ----------------------------------------------

def test_vector_two_norm_of_whole_tensors_bit_for_bit(lib):
    # minGPT's clip_grad_norm_ took a (10, 48) gradient's norm an ulp off torch's, and training
    # drifted from there
    rng = np.random.default_rng(6)
    for n in [3, 8, 17, 100, 480, 1000, 4097]:
        x = (rng.standard_normal(n) * rng.uniform(0.01, 100)).astype(np.float32)
        want = torch.linalg.vector_norm(torch.tensor(x))
        _same(lib.linalg.vector_norm(lib.tensor(x)), want)
        _same(lib.tensor(x.reshape(-1, 1)).norm(), torch.tensor(x.reshape(-1, 1)).norm())


def test_clip_grad_norm_matches_torch(lib):
    rng = np.random.default_rng(8)
    grads = [rng.standard_normal(s).astype(np.float32) * 0.1 for s in [(10, 48), (48,), (6, 48)]]

    def run(t: Any) -> list[Any]:
        params = [t.nn.Parameter(t.zeros(g.shape)) for g in grads]
        for p, g in zip(params, grads):
            p.grad = t.tensor(g)
        total = t.nn.utils.clip_grad_norm_(params, 0.5)
        return [total] + [p.grad for p in params]

    for got, want in zip(run(lib), run(torch)):
        _same(got, want)
