"""Faults: a server killed with SIGKILL mid-batch, restarted; training state saved before the
kill and restored after it; a batch retried after a lost reply applied once.

The server runs in a subprocess (tests/server_process.py) so it can really be killed.
"""

from __future__ import annotations

import struct
import threading
import time

import grpc
import numpy as np
import pytest

import gradserve.client as gc
from gradserve.client import snapshot
from gradserve.server import codec
from gradserve.v1 import graph_pb2, service_pb2
from tests.conftest import NEURON_XS, NEURON_YS, gradserve_open_session
from tests.conftest import gradserve_train_neuron as train_with
from tests.server_process import ServerProcess

XS, YS = NEURON_XS, NEURON_YS
LR = 0.5


def train(torch, w, b, steps):
    """The seed's one-neuron model (sigmoid, clamped BCE) trained by plain gradient descent;
    returns the losses. Leaves w and b with the last step's gradients."""
    xs, ys = torch.tensor(XS), torch.tensor(YS)
    losses = []
    for _ in range(steps):
        if w.grad is not None:
            w.grad.zero_()
            b.grad.zero_()
        y_pred = torch.clamp(torch.sigmoid(w * xs + b), 1e-8, 1 - 1e-8)
        loss = -(ys * torch.log(y_pred) + (1 - ys) * torch.log(1 - y_pred)).mean()
        loss.backward()
        with torch.no_grad():
            w -= LR * w.grad
            b -= LR * b.grad
        losses.append(loss.item())
    return losses


OPTIMIZERS = {
    "adam-amsgrad": lambda torch, ps: torch.optim.Adam(ps, lr=0.1, betas=(0.8, 0.99),
                                                       amsgrad=True),
    "sgd-nesterov": lambda torch, ps: torch.optim.SGD(ps, lr=0.2, momentum=0.9, nesterov=True,
                                                      weight_decay=0.01),
}


@pytest.fixture
def server():
    proc = ServerProcess(["--log-level", "DEBUG", "--workers", "4"]).start()
    yield proc
    proc.close()


def _wait_for_log(server, text, timeout=30):
    deadline = time.monotonic() + timeout
    while text not in server.log():
        assert time.monotonic() < deadline, f"{text!r} not in the server log"
        time.sleep(0.01)


def test_sigkill_mid_batch_then_restart(server):
    client = gc.connect(server.target, timeout=60, retries=0)
    torch = client.session()
    x = torch.tensor(np.ones(1000, np.float32), requires_grad=True)
    y = x
    for _ in range(30_000):  # recorded locally: one big batch
        y = y * 1.0
    errors = []

    def read():
        try:
            y.sum().item()
        except Exception as exc:  # noqa: BLE001 - inspected below
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    _wait_for_log(server, "instruction(s)")  # the batch is executing
    server.kill()
    reader.join(timeout=30)
    assert not reader.is_alive()
    (err,) = errors
    assert isinstance(err, gc.UnavailableError), repr(err)
    assert server.target in str(err) and "unavailable" in str(err)
    # the same port, a new process: the old session is gone, and the error says so
    server.start()
    with pytest.raises(gc.NotFoundError, match="not found") as info:
        (torch.tensor(1.0) * 2).item()
    assert torch.id in str(info.value) and "closed, expired" in str(info.value)
    with client.session() as fresh:  # the client itself reconnects
        z = fresh.tensor(2.0, requires_grad=True)
        (z * z).backward()
        assert z.grad.item() == 4.0
    client.close()


def test_save_kill_restore_continues_training_to_the_same_numbers(server, tmp_path):
    # uninterrupted: 20 steps
    with gc.connect(server.target) as client, client.session() as torch:
        w = torch.tensor(1.0, requires_grad=True)
        b = torch.tensor(0.0, requires_grad=True)
        expected_losses = train(torch, w, b, 20)
        expected = (w.item(), b.item(), w.grad.item(), b.grad.item())

    # interrupted: 10 steps, save, SIGKILL, restart, restore, 10 more
    path = tmp_path / "neuron.gsnap"
    client = gc.connect(server.target, retries=0)
    torch = client.session()
    w = torch.tensor(1.0, requires_grad=True)
    b = torch.tensor(0.0, requires_grad=True)
    frozen = torch.tensor([1.0, 2.0])  # a leaf without requires_grad and without grad
    losses = train(torch, w, b, 10)
    torch.save(path, {"w": w, "b": b, "frozen": frozen})
    server.kill()
    server.start()
    with pytest.raises(gc.NotFoundError):
        (w * 1).item()
    restored = client.restore(path)
    w, b, frozen = (restored.restored[k] for k in ("w", "b", "frozen"))
    assert w.requires_grad and b.requires_grad and not frozen.requires_grad
    assert w.is_leaf and frozen.grad is None and frozen.tolist() == [1.0, 2.0]
    assert w.grad is not None and w.grad.item() != 0.0  # the last step's gradient came back
    losses += train(restored, w, b, 10)
    assert losses == expected_losses  # bit for bit
    assert (w.item(), b.item(), w.grad.item(), b.grad.item()) == expected
    restored.close()
    client.close()


@pytest.mark.parametrize("algorithm", sorted(OPTIMIZERS))
def test_save_kill_restore_continues_optimizer_training_bit_for_bit(server, tmp_path, algorithm):
    make = OPTIMIZERS[algorithm]
    # uninterrupted: 20 steps
    with gc.connect(server.target) as client, client.session() as torch:
        w = torch.tensor(1.0, requires_grad=True)
        b = torch.tensor(0.0, requires_grad=True)
        expected_losses = train_with(torch, w, b, make(torch, [w, b]), 20)
        expected = (w.item(), b.item(), w.grad.item(), b.grad.item())

    # interrupted: 10 steps, save tensors and optimizer, SIGKILL, restart, restore, 10 more
    path = tmp_path / "neuron.gsnap"
    client = gc.connect(server.target, retries=0)
    torch = client.session()
    w = torch.tensor(1.0, requires_grad=True)
    b = torch.tensor(0.0, requires_grad=True)
    opt = make(torch, [w, b])
    losses = train_with(torch, w, b, opt, 10)
    torch.save(path, {"w": w, "b": b}, {"opt": opt})
    server.kill()
    server.start()
    restored = client.restore(path)
    w, b = restored.restored["w"], restored.restored["b"]
    opt = restored.optimizers["opt"]
    assert type(opt) is type(make(restored, [w, b]))
    assert opt.params[0] is w and opt.params[1] is b
    state = opt.state_message()
    assert len(state.state) == 2
    if algorithm.startswith("adam"):
        assert [e.adam.step for e in state.state] == [10.0, 10.0]
        assert state.adam.amsgrad and state.adam.beta1 == 0.8
    else:
        assert state.sgd.nesterov and state.sgd.momentum == 0.9
    losses += train_with(restored, w, b, opt, 10)
    assert losses == expected_losses  # bit for bit
    assert (w.item(), b.item(), w.grad.item(), b.grad.item()) == expected

    # the optimizer's state matters: the same tensors with a fresh optimizer go elsewhere
    again = client.restore(path)
    w2, b2 = again.restored["w"], again.restored["b"]
    fresh = train_with(again, w2, b2, make(again, [w2, b2]), 10)
    assert fresh != expected_losses[10:]
    restored.close()
    again.close()
    client.close()


def test_save_every_live_leaf_and_the_file_format(gradserve_server, tmp_path):
    path = tmp_path / "all.gsnap"
    with gc.connect(f"localhost:{gradserve_server[1]}") as client:
        with client.session() as torch:
            a = torch.tensor([1.0, 2.0], requires_grad=True)
            c = torch.tensor(np.arange(6, dtype=np.int64).reshape(2, 3))
            (a * a).sum().backward()
            torch.save(path)  # every live leaf; results (a * a) are not leaves
        data = path.read_bytes()
        assert data.startswith(snapshot.MAGIC)
        assert struct.unpack_from("<I", data, len(snapshot.MAGIC)) == (2,)
        _, batch, names, optimizer_names = snapshot.read(path)  # plain protobuf records
        kinds = [i.WhichOneof("kind") for i in batch.instructions]
        assert kinds == ["create_tensor", "create_tensor", "set_grad", "release",
                         "create_tensor"]
        assert [o.name for o in names.outputs] == [f"t{a._handle}", f"t{c._handle}"]
        assert not optimizer_names.outputs  # no live optimizer
        # a version 1 file (three records, no optimizers) is still read
        v1 = snapshot.MAGIC + struct.pack("<I", 1) + b"".join(
            struct.pack("<Q", len(d)) + d
            for d in (r.SerializeToString() for r in snapshot.read(path)[:3]))
        (tmp_path / "v1.gsnap").write_bytes(v1)
        with client.restore(tmp_path / "v1.gsnap") as torch:
            assert torch.restored[f"t{a._handle}"].grad.tolist() == [2.0, 4.0]
            assert torch.optimizers == {}
        # optimizers: CreateOptimizer records after the tensors, parameters saved with them
        with client.session() as torch:
            w = torch.tensor([1.0, -1.0], requires_grad=True)
            opt = torch.optim.SGD([w], lr=0.5, momentum=0.5)
            (w * w).sum().backward()
            opt.step()
            torch.save(tmp_path / "opt.gsnap", {}, {"sgd": opt})
        _, batch, names, optimizer_names = snapshot.read(tmp_path / "opt.gsnap")
        assert [i.WhichOneof("kind") for i in batch.instructions] == [
            "create_tensor", "create_tensor", "set_grad", "release", "create_optimizer"]
        assert [o.name for o in names.outputs] == ["sgd.param0"]
        create = batch.instructions[-1].create_optimizer
        assert list(create.params) == [1] and create.sgd.momentum == 0.5
        assert create.state[0].sgd.momentum_buffer.shape == [2]
        assert [(o.name, o.ref.id) for o in optimizer_names.outputs] == [("sgd", "3")]
        with client.restore(tmp_path / "opt.gsnap") as torch:
            (p,) = torch.optimizers["sgd"].params
            assert p is torch.restored["sgd.param0"] and p.tolist() == [0.0, 0.0]
            assert torch.describe().optimizer_count == 1
        with client.restore(path) as torch:
            ra, rc = torch.restored[f"t{a._handle}"], torch.restored[f"t{c._handle}"]
            assert torch.describe().tensor_count == 2  # the grad's temporary handle released
            assert ra.tolist() == [1.0, 2.0] and ra.grad.tolist() == [2.0, 4.0]
            assert rc.dtype == torch.int64 and rc.shape == (2, 3) and rc.grad is None
        # refused: a non-leaf by name, a foreign version, a truncated or foreign file
        with client.session() as torch:
            x = torch.tensor(1.0, requires_grad=True)
            with pytest.raises(ValueError, match="not a leaf"):
                torch.save(tmp_path / "bad.gsnap", {"y": x * 2})
        for bad in (snapshot.MAGIC + struct.pack("<I", 3) + data[len(snapshot.MAGIC) + 4:],
                    data[:-3], b"\x80\x04pickle"):
            (tmp_path / "bad.gsnap").write_bytes(bad)
            with pytest.raises(snapshot.SnapshotError):
                client.restore(tmp_path / "bad.gsnap")


def test_a_retried_batch_is_applied_once(gradserve_stub):
    s = gradserve_open_session(gradserve_stub)
    s.run(s.create(1, np.float32(1.0)))
    add_one = s.inplace("add_", 1, [1.0])
    first = s.run(add_one, s.fetch(1), request_id="retry-me")
    # the reply was "lost": the client sends the same batch with the same request id
    second = s.run(add_one, s.fetch(1), request_id="retry-me")
    assert not first.replayed and second.replayed
    assert second.results[1].fetch == first.results[1].fetch
    assert float(s.value_of(1)) == 2.0  # added once, not twice
    # a new id is a new batch
    s.run(add_one, request_id="another")
    assert float(s.value_of(1)) == 3.0
    # a failing batch is remembered too: the retry gets the same error, nothing re-applied
    failing = [add_one, s.op("neg", [("h", 99)], [2])]
    errors = []
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as err:
            s.run(*failing, request_id="fails")
        errors.append((err.value.code(), err.value.details()))
    assert errors[0] == errors[1] and errors[0][0] == grpc.StatusCode.NOT_FOUND
    assert float(s.value_of(1)) == 4.0  # the first attempt's add_ only
    s.close()


def test_stateless_graph_values_survive_a_restart(server):
    # nothing to lose: a stateless call after a restart gives the same answer
    def call():
        with gc.connect(server.target) as client:
            req = graph_pb2.Graph(inputs=[graph_pb2.GraphInput(name="x")], nodes=[
                graph_pb2.Node(id="y", op="pow", inputs=[
                    graph_pb2.Value(ref=graph_pb2.NodeOutput(id="x")),
                    graph_pb2.Value(int_scalar=2)])],
                outputs=[graph_pb2.GraphOutput(name="y", ref=graph_pb2.NodeOutput(id="y"))])
            resp = client.run_graph(service_pb2.RunGraphRequest(
                graph=req, inputs={"x": codec.encode_array(np.float32(3.0))}, wrt=["x"]))
            return resp.SerializeToString()

    before = call()
    server.kill()
    server.start()
    assert call() == before
