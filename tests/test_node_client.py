"""The Node.js client (examples/node) against a live server, checked against torch.

`node --test` runs examples/node/test/client.test.js with GRADSERVE_TARGET pointing at a server
on a free loopback port; the values it records are compared with the same computations in torch,
and node's summary line (tests, pass, fail, ...) is printed into pytest's output and asserted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import torch

from tests.conftest import gradserve_train_neuron
from tests.node_tools import NODE_CLIENT, node_or_skip, npm_ci


@pytest.fixture(scope="module")
def node_run(gradserve_server, tmp_path_factory):
    node, _ = node_or_skip()
    npm_ci(NODE_CLIENT)
    _, port = gradserve_server
    results = tmp_path_factory.mktemp("node") / "results.json"
    done = subprocess.run(
        [node, "--test", "--test-reporter=tap", "test/"], cwd=NODE_CLIENT, capture_output=True,
        text=True, timeout=120,
        env={**os.environ, "GRADSERVE_TARGET": f"127.0.0.1:{port}",
             "GRADSERVE_RESULTS": str(results)})
    summary = [line for line in done.stdout.splitlines()
               if re.match(r"# (tests|pass|fail|cancelled|skipped|todo) \d+$", line)]
    print("node --test summary: " + ", ".join(s[2:] for s in summary))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return json.loads(results.read_text()), summary


def test_node_tests_pass(node_run, capsys):
    _, summary = node_run
    assert "# fail 0" in summary and "# pass 6" in summary
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
