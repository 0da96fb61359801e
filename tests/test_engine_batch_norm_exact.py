"""Batch norm rounds exactly as torch's CPU kernels do (engine/ops_norm.py).

Every case runs `nn.functional.batch_norm` (or nn.BatchNorm1d / 2d) with torch and with
gradserve on the same float32 (and some float64) values and compares bit for bit: the batch
statistics (torch's `native_batch_norm` returns them), the output, the running statistics torch
writes in place, and the gradients of input, weight and bias; in training and in evaluation, for
inputs of one value per (sample, channel) (torch's rows-of-channels kernels) and of larger
planes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import cascade, ops_norm
from tests.reference import raises_like, torch

F = ge.nn.functional

# (N, C): rows of channels, fewer rows than threads, partial and whole vectors of channels,
# no more rows than threads with more than 16 channels (one task per channel) and more than 2048
# (tiles again); then planes of 1 to 37 values
SHAPES = [(2, 5), (3, 9), (4, 3), (17, 5), (8, 16), (64, 11), (100, 3), (2, 23), (2, 17, 1),
          (2, 2049), (2, 3, 1), (33, 4, 1),
          (1, 4, 6), (4, 3, 5), (5, 3, 20), (4, 3, 37), (2, 4, 3, 3), (3, 2, 7, 9)]


@pytest.fixture(autouse=True)
def torch_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """torch's intra-op thread count: it splits the rows of the rows-of-channels sums."""
    threads = torch.get_num_threads()
    monkeypatch.setattr(cascade, "THREADS", threads)
    yield threads


def _data(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any = np.float32
          ) -> tuple[np.ndarray, ...]:
    """(x, weight, bias, running_mean, running_var, grad_output)."""
    c = shape[1]
    scale, shift = rng.uniform(0.01, 50.0), rng.uniform(-5.0, 5.0)
    x = rng.standard_normal(shape) * scale + shift
    return tuple(np.asarray(a, dtype) for a in (
        x, rng.standard_normal(c), rng.standard_normal(c), rng.standard_normal(c) * scale,
        rng.uniform(0.1, 2.0, c) * scale, rng.standard_normal(shape)))


def _same(ours: Any, theirs: Any, what: str) -> None:
    a, b = np.asarray(ours.detach().numpy()), np.asarray(theirs.detach().numpy())
    assert a.dtype == b.dtype and a.shape == b.shape, what
    bits = f"u{a.dtype.itemsize}"
    differ = int(np.count_nonzero(np.ascontiguousarray(a).reshape(-1).view(bits)
                                  != np.ascontiguousarray(b).reshape(-1).view(bits)))
    assert differ == 0, f"{what}: {differ} of {a.size} values differ from torch's"


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_forward_backward_and_running_stats_are_torchs(shape: tuple[int, ...], training: bool,
                                                       affine: bool):
    rng = np.random.default_rng(sum(shape) * 7 + training * 2 + affine)
    for trial in range(3):
        x, w, b, rm, rv, g = _data(rng, shape)
        momentum, eps = (0.1, 1e-5) if trial == 0 else (rng.uniform(0.05, 0.9), 1e-3)
        outs = []
        for lib in (ge, torch):
            tx = lib.tensor(x, requires_grad=True)
            params = [lib.tensor(a, requires_grad=True) for a in (w, b)] if affine else []
            stats = [lib.tensor(rm.copy()), lib.tensor(rv.copy())]
            y = lib.nn.functional.batch_norm(tx, *stats, *(params or [None, None]),
                                             training=training, momentum=momentum, eps=eps)
            y.backward(lib.tensor(g))
            outs.append([y, *stats, tx.grad, *[p.grad for p in params]])
            assert y.grad_fn.name() == "NativeBatchNormBackward0"
        names = ["output", "running_mean", "running_var", "grad input", "grad weight",
                 "grad bias"]
        for name, ours, theirs in zip(names, *outs):
            _same(ours, theirs, f"{shape} trial {trial}: {name}")


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_batch_statistics_are_torchs(shape: tuple[int, ...]):
    rng = np.random.default_rng(len(shape) * 100 + shape[0])
    for _ in range(5):
        x = _data(rng, shape)[0]
        _, mean, invstd = torch.native_batch_norm(torch.from_numpy(x), None, None, None, None,
                                                  True, 0.1, 1e-5)
        ours_mean, var_sum = ops_norm.batch_moments(x)
        assert np.array_equal(ours_mean, mean.numpy())
        assert np.array_equal(ops_norm._invstd(var_sum, x.size // shape[1], 1e-5),
                              invstd.numpy())


@pytest.mark.parametrize("shape", [(4, 3), (64, 11), (2, 5, 1), (4, 3, 5), (2, 4, 3, 3)],
                         ids=str)
def test_float64_is_torchs(shape: tuple[int, ...]):
    # bit for bit with one value per (sample, channel); with planes the double variance sum
    # misses torch's in the last bit now and then (docs/internals.md "Batch norm")
    rng = np.random.default_rng(shape[0])
    x, w, b, rm, rv, g = _data(rng, shape, np.float64)
    for training in (True, False):
        outs = []
        for lib in (ge, torch):
            leaves = [lib.tensor(a, requires_grad=True) for a in (x, w, b)]
            stats = [lib.tensor(rm.copy()), lib.tensor(rv.copy())]
            y = lib.nn.functional.batch_norm(leaves[0], *stats, leaves[1], leaves[2],
                                             training=training)
            y.backward(lib.tensor(g))
            outs.append([y, *stats, *[t.grad for t in leaves]])
        for i, (ours, theirs) in enumerate(zip(*outs)):
            if len(shape) == 2 or shape[2:] == (1,):
                _same(ours, theirs, f"{shape} training={training} result {i}")
            else:
                np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(),
                                           rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_modules_over_several_steps_are_torchs(momentum: float | None):
    rng = np.random.default_rng(3)
    for shape, cls in (((6, 5), "BatchNorm1d"), ((4, 5, 7), "BatchNorm1d"),
                       ((3, 5, 4, 4), "BatchNorm2d")):
        mods = [getattr(lib.nn, cls)(5, momentum=momentum) for lib in (ge, torch)]
        for step in range(4):
            x = _data(rng, shape)[0]
            if step == 3:
                for m in mods:
                    m.eval()
            outs = [m(lib.tensor(x)) for m, lib in zip(mods, (ge, torch))]
            _same(outs[0], outs[1], f"{cls} {shape} step {step}: output")
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                _same(getattr(mods[0], name), getattr(mods[1], name),
                      f"{cls} {shape} step {step}: {name}")


def test_through_a_session_is_torchs(gradserve_lib: Any):
    lib = gradserve_lib
    rng = np.random.default_rng(9)
    x, _, _, _, _, g = _data(rng, (4, 3, 5, 5))
    outs = []
    for t in (lib, torch):
        bn = t.nn.BatchNorm2d(3)
        tx = t.tensor(x, requires_grad=True)
        y = bn(tx)
        y.backward(t.tensor(g))
        assert y.grad_fn.name() == "NativeBatchNormBackward0"
        outs.append([y, bn.running_mean, bn.running_var, tx.grad, bn.weight.grad,
                     bn.bias.grad])
    for i, (ours, theirs) in enumerate(zip(*outs)):
        _same(ours, theirs, f"result {i}")


def test_double_backward_matches_torch_closely():
    # create_graph composes the formula from engine ops: torch's values, not its bits
    rng = np.random.default_rng(6)
    x, w, b, rm, rv, v = _data(rng, (4, 3, 5), np.float64)
    for training in (True, False):
        got, want = [], []
        for lib, out in ((ge, got), (torch, want)):
            leaves = [lib.tensor(a, requires_grad=True) for a in (x, w, b)]
            y = lib.nn.functional.batch_norm(leaves[0], lib.tensor(rm), lib.tensor(rv),
                                             leaves[1], leaves[2], training=training)
            grads = lib.autograd.grad((y * lib.tensor(v)).sum(), leaves, create_graph=True)
            total = (grads[0] * grads[0]).sum() + (grads[1] * lib.tensor(w)).sum()
            out += [np.asarray(a.detach().numpy())
                    for a in lib.autograd.grad(total, leaves[:2], allow_unused=True)
                    if a is not None]
        assert len(got) == len(want)
        for a, c in zip(got, want):
            np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-12)


def test_errors_are_torchs():
    f32, f64 = np.ones(3, np.float32), np.ones(3, np.float64)
    x = np.ones((4, 3, 5), np.float32)
    cases: list[tuple[Any, ...]] = [
        # x, running_mean, running_var, weight, bias, training
        (x, np.ones(4, np.float32), f32, None, None, False),
        (x, f32, np.ones(4, np.float32), None, None, False),
        (x, f32, f32, np.ones(4, np.float32), None, False),
        (x, f32, f32, None, np.ones(2, np.float32), True),
        (x, None, None, None, None, False),
        (x, f32, None, None, None, False),
        (x, None, f32, None, None, True),
        (x.astype(np.int64), None, None, None, None, True),
        (x.astype(np.float64), f32, f32, None, None, False),
        (x.astype(np.float64), f64, f32, None, None, False),
        (x, f32, f32, f64, None, False),
        (np.ones((1, 3), np.float32), None, None, None, None, True),
        (np.ones(3, np.float32), None, None, None, None, True),
        (np.ones(3, np.float32), f32, f32, None, None, False),
        (np.float32(1), None, None, None, None, True),
    ]
    for case in cases:
        ours = [None if a is None else ge.tensor(a) for a in case[:5]]
        theirs = [None if a is None else torch.tensor(a) for a in case[:5]]
        raises_like(lambda: F.batch_norm(*ours, training=case[5]),  # noqa: B023
                     lambda: torch.nn.functional.batch_norm(  # noqa: B023
                         *theirs, training=case[5]))  # noqa: B023
    stat = [ge.zeros(3, requires_grad=True), ge.ones(3)]
    raises_like(lambda: F.batch_norm(ge.tensor(x), *stat),
                 lambda: torch.nn.functional.batch_norm(
                     torch.tensor(x), torch.zeros(3, requires_grad=True), torch.ones(3)))


def test_empty_batches_are_torchs():
    for shape in ((0, 3), (0, 3, 4), (2, 3, 0)):
        outs = []
        for lib in (ge, torch):
            tx = lib.zeros(shape, requires_grad=True)
            stats = [lib.full((3,), 0.5), lib.full((3,), 2.0)]
            y = lib.nn.functional.batch_norm(tx, *stats, training=True)
            y.sum().backward()
            outs.append([y, *stats, tx.grad])
        for i, (ours, theirs) in enumerate(zip(*outs)):
            _same(ours, theirs, f"{shape} result {i}")
