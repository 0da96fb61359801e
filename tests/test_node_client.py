"""The Node.js client (examples/node) against a live server, checked against torch.

`node --test` runs examples/node/test/*.test.js (the client, and its tape recorder written from
docs/wire.md alone) with GRADSERVE_TARGET pointing at a server on a free loopback port; the values
they record are compared with the same computations in torch, and node's summary line (tests,
pass, fail, ...) is printed into pytest's output and asserted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest
import torch

from tests.conftest import gradserve_train_neuron
from tests.node_tools import NODE_CLIENT, node_or_skip, npm_ci


@pytest.fixture(scope="module")
def node_run(gradserve_server, tmp_path_factory):
    node, _ = node_or_skip()
    npm_ci(NODE_CLIENT)
    _, port = gradserve_server
    results = tmp_path_factory.mktemp("node")  # one <test file>.json per test file
    done = subprocess.run(
        [node, "--test", "--test-reporter=tap", "test/"], cwd=NODE_CLIENT, capture_output=True,
        text=True, timeout=120,
        env={**os.environ, "GRADSERVE_TARGET": f"127.0.0.1:{port}",
             "GRADSERVE_RESULTS": str(results)})
    summary = [line for line in done.stdout.splitlines()
               if re.match(r"# (tests|pass|fail|cancelled|skipped|todo) \d+$", line)]
    print("node --test summary: " + ", ".join(s[2:] for s in summary))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    recorded: dict[str, Any] = {}
    for path in sorted(results.glob("*.json")):
        values = json.loads(path.read_text())
        assert not recorded.keys() & values.keys(), f"{path.name} records a name twice"
        recorded.update(values)
    return recorded, summary


def test_node_tests_pass(node_run, capsys):
    _, summary = node_run
    assert "# fail 0" in summary and "# pass 15" in summary
    with capsys.disabled():
        print("\nnode --test: " + ", ".join(s[2:] for s in summary))


def test_stateless_derivatives_match_torch(node_run):
    got, _ = node_run
    x = torch.tensor([0.1, 0.2, 0.3], requires_grad=True)
    w = torch.tensor([1.0, 2.0, 3.0])
    y = torch.sin(x * w).sum()
    (dx,) = torch.autograd.grad(y, x, create_graph=True)
    (d2x,) = torch.autograd.grad(dx.sum(), x)
    assert got["stateless_y"] == pytest.approx(y.item(), rel=1e-6)
    assert got["stateless_dx"] == pytest.approx(dx.tolist(), rel=1e-6)
    assert got["stateless_d2x"] == pytest.approx(d2x.tolist(), rel=1e-5)


def test_training_matches_torch(node_run):
    got, _ = node_run
    w = torch.tensor(1.0, requires_grad=True)
    b = torch.tensor(0.0, requires_grad=True)
    losses = gradserve_train_neuron(torch, w, b, torch.optim.SGD([w, b], lr=0.5), 5)
    assert got["train_losses"] == pytest.approx(losses, rel=1e-5)
    assert (got["train_w"], got["train_b"]) == pytest.approx((w.item(), b.item()), rel=1e-5)


def test_catalogue_and_rich_errors_as_node_sees_them(node_run):
    from gradserve.server.catalogue import list_ops

    got, _ = node_run
    cat = list_ops()
    assert got["opset_version"] == cat.opset_version and got["op_count"] == len(cat.ops)
    assert got["pow_backward_names"] == ["PowBackward1", "PowBackward0", "PowBackward2"]
    assert (got["server_version"], got["protocol_version"]) == (cat.server_version,
                                                                cat.protocol_version)
    assert got["freed_reason"] == "GRAPH_FREED"
    assert got["freed_metadata"] == {"instruction": "0", "instruction_kind": "backward",
                                     "handle": "2"}
    assert (got["handle0_reason"], got["handle0_field"]) == ("INVALID_REQUEST",
                                                             "instructions[0].create_tensor")


#: gradserve's DType names of the torch dtypes the tape tests produce.
DTYPE_NAMES = {torch.float32: "DTYPE_FLOAT32", torch.float64: "DTYPE_FLOAT64"}


def test_tape_linear_regression_matches_torch(node_run):
    """Forward on one tape, backward, w - lr * w.grad under no_grad on another: as torch does."""
    got, _ = node_run
    data = got["linreg"]
    xs = torch.tensor(data["xs"]).reshape(-1, 3)
    ys = torch.tensor(data["ys"]).reshape(-1, 1)
    w = torch.zeros(3, 1, requires_grad=True)
    b = torch.tensor(0.0, requires_grad=True)
    losses = []
    for _ in range(data["steps"]):
        loss = (xs.matmul(w) + b - ys).pow(2).mean()
        loss.backward()
        losses.append(loss.item())
        with torch.no_grad():
            w, b = w - w.grad * data["lr"], b - b.grad * data["lr"]
        w.requires_grad_(True)
        b.requires_grad_(True)
    assert got["linreg_losses"] == pytest.approx(losses, rel=1e-5)
    assert got["linreg_w"] == pytest.approx(w.flatten().tolist(), rel=1e-5, abs=1e-7)
    assert got["linreg_b"] == pytest.approx(b.item(), rel=1e-5)
    assert got["linreg_loss_info"] == {"shape": [], "grad_fn": loss.grad_fn.name(),
                                       "requires_grad": True}


def test_tape_iteration_matches_torch(node_run):
    """zero_grad, forward, backward and an SGD step on one tape per iteration: as torch does."""
    got, _ = node_run
    data = got["iteration"]
    xs = torch.tensor(data["xs"]).reshape(-1, 2)
    ys = torch.tensor(data["ys"]).reshape(-1, 1)
    w = torch.zeros(2, 1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=0.2, momentum=0.5)
    losses = []
    for _ in range(data["steps"]):
        opt.zero_grad()
        err = xs.matmul(w) + b - ys
        loss = (err * err).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert got["iteration_losses"] == pytest.approx(losses, rel=1e-6)
    assert got["iteration_w"] == pytest.approx(w.flatten().tolist(), rel=1e-6)
    assert got["iteration_b"] == pytest.approx(b.tolist(), rel=1e-6)


def test_tape_attributes_match_torch(node_run):
    """Each attribute kind on the tape (ints, float, int, bool, none, string, dtype) as torch."""
    got, _ = node_run
    x = torch.tensor(got["attrs_x"]).reshape(2, 3, 4).requires_grad_()
    split = x.split(1, dim=0)
    expected = {
        "sum_dim1_keepdim": x.sum(dim=1, keepdim=True), "sum_dims02": x.sum(dim=[0, 2]),
        "sum_float64": x.sum(dtype=torch.float64), "transpose_0_2": x.transpose(0, 2),
        "reshape_4_6": x.reshape(4, -1), "softmax_dim2": x.softmax(dim=2),
        "permute_201": x.permute(2, 0, 1),
        "gelu_tanh": torch.nn.functional.gelu(x, approximate="tanh"),
        "leaky_relu_02": torch.nn.functional.leaky_relu(x, negative_slope=0.2),
        "std_correction0": x.std(dim=1, correction=0),
        "cumsum_dtype_none": x.cumsum(dim=1, dtype=None),
        "add_alpha": torch.add(x, x, alpha=2.0), "clamp_max_only": x.clamp(None, 0.5),
        "clamp_min_only": x.clamp(-0.5),
        "cat_dim1": torch.cat([x, x], dim=1), "split_0": split[0], "split_1": split[1],
        "expand": x.expand(3, 2, 3, 4),
    }
    results = got["attrs_results"]
    assert results.keys() == expected.keys()
    for name, t in expected.items():
        r = results[name]
        assert (r["shape"], r["dtype"], r["grad_fn"]) == (list(t.shape), DTYPE_NAMES[t.dtype],
                                                           t.grad_fn.name()), name
        if t.numel() > 64:  # VALUE carries outputs of at most 64 elements
            assert r["value"] is None, name
        else:
            assert r["value"] == pytest.approx(t.detach().flatten().tolist(), rel=1e-5,
                                               abs=1e-6), name


def test_tape_error_mid_tape_is_torchs(node_run):
    got, _ = node_run
    with pytest.raises(RuntimeError) as exc:
        torch.mm(torch.ones(2, 3).exp(), torch.ones(2, 3).exp())
    assert got["midtape_message"] == str(exc.value)
