"""A small regression MLP with BatchNorm1d layers trained with Adam, as torch trains it.

The program switches between eval() (a test loss on the running statistics) and train() (a
step on a batch), with momentum 0.5 on every batch norm, a bad constant bias initialisation and
tanh or relu between layers. Every loss, the running statistics and num_batches_tracked are
compared with torch's bit for bit, in process and through a session: one rounding different
anywhere (a sum's lane order, the unbiased variance, the running update) grows over the steps
into a visibly different loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import torch

HIDDEN, WIDTH, STEPS, BATCH = 6, 10, 12, 32


def _train(lib: Any, activation: str) -> tuple[list[float], list[np.ndarray]]:
    """(losses: a test loss every 4 steps and every training loss, the buffers at the end)."""
    nn = lib.nn
    lib.manual_seed(1)
    rng = np.random.default_rng(11)
    xs = np.linspace(-5.0, 8.0, 600)[:, None]
    ys = xs * xs - 3.0 + rng.normal(0.0, 1.5, xs.shape)
    x, y = lib.from_numpy(xs).float(), lib.from_numpy(ys).float()
    test_xs = np.linspace(-5.0, 8.0, 100)[:, None]
    test_x, test_y = (lib.from_numpy(a).float() for a in (test_xs, test_xs * test_xs - 3.0))
    act = getattr(lib, activation)
    layers: list[Any] = [nn.BatchNorm1d(1, momentum=0.5)]
    for i in range(HIDDEN):
        fc = nn.Linear(1 if i == 0 else WIDTH, WIDTH)
        nn.init.normal_(fc.weight, mean=0.0, std=0.1)
        nn.init.constant_(fc.bias, -0.2)
        layers += [fc, nn.BatchNorm1d(WIDTH, momentum=0.5)]
    head = nn.Linear(WIDTH, 1)
    nn.init.normal_(head.weight, mean=0.0, std=0.1)
    nn.init.constant_(head.bias, -0.2)
    net = nn.ModuleList([*layers, head])

    def forward(t: Any) -> Any:
        t = net[0](t)
        for i in range(HIDDEN):
            t = act(net[2 + 2 * i](net[1 + 2 * i](t)))
        return net[-1](t)

    opt = lib.optim.Adam(net.parameters(), lr=0.03)
    loss_fn = nn.MSELoss()
    losses = []
    for step in range(STEPS):
        if step % 4 == 0:
            net.eval()
            losses.append(loss_fn(forward(test_x), test_y).item())
            net.train()
        idx = lib.from_numpy(rng.permutation(xs.shape[0])[:BATCH])
        loss = loss_fn(forward(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    buffers = [np.asarray(b.numpy()) for b in net.buffers()]
    return losses, buffers


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_batch_norm_mlp_trains_as_torchs(gradserve_lib: Any, activation: str):
    got, want = _train(gradserve_lib, activation), _train(torch, activation)
    assert got[0] == want[0]
    assert len(got[1]) == len(want[1]) == 3 * (HIDDEN + 1)
    for i, (a, b) in enumerate(zip(got[1], want[1], strict=True)):
        assert a.dtype == b.dtype and np.array_equal(a, b), f"buffer {i}"
