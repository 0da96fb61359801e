"""The client SDK against a real server on port 0: the seed line by line against torch, round
trips, handle release, errors with the user's line, isolation, eager mode, optimizers, tracing."""

from __future__ import annotations

import gc
import sys
import warnings

import grpc
import numpy as np
import pytest

import gradserve.client as gc_client
from tests.conftest import gradserve_seed_lines
from tests.reference import torch


@pytest.fixture(scope="module")
def client(gradserve_server):
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


@pytest.fixture
def session(client):
    with client.session() as s:
        yield s


def test_seed_walkthrough_prints_what_torch_prints(session):
    expected = gradserve_seed_lines(torch)
    got = gradserve_seed_lines(session)
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"line {i}"


def test_seed_walkthrough_in_eager_mode(client):
    with client.session(eager=True) as s:
        assert gradserve_seed_lines(s) == gradserve_seed_lines(torch)


class CountingInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Counts calls by method name."""

    def __init__(self):
        self.calls: list[str] = []

    def intercept_unary_unary(self, continuation, client_call_details, request):
        self.calls.append(client_call_details.method.rsplit("/", 1)[-1])
        return continuation(client_call_details, request)


@pytest.mark.parametrize("read_ahead", [True, False])
def test_forward_backward_and_grad_cost_one_or_two_round_trips(gradserve_server, read_ahead):
    counter = CountingInterceptor()
    with gc_client.connect(f"localhost:{gradserve_server[1]}",
                           interceptors=[counter]) as c, c.session() as torch_:
        torch_.read_ahead = read_ahead
        counter.calls.clear()
        x = torch_.tensor([1.0, 2.0, 3.0], requires_grad=True)
        w = torch_.tensor([0.5, -1.0, 2.0], requires_grad=True)
        y = torch_.sigmoid(x * w).sum() ** 2
        y.backward()
        g = x.grad
        # read ahead: x.grad came with the backward's batch (x is a new requires_grad leaf)
        trips = ["ExecuteBatch"] * (1 if read_ahead else 2)
        assert counter.calls == trips
        # the gradient came back with the read: printing and values cost nothing more
        assert g.tolist() == pytest.approx(reference_grad())
        str(g)
        assert counter.calls == trips


def reference_grad():
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    (torch.sigmoid(x * w).sum() ** 2).backward()
    return x.grad.tolist()


def test_a_1000_op_chain_is_one_batch(session):
    before = session.round_trips
    x = session.tensor(0.5, requires_grad=True)
    y = x
    for _ in range(1000):
        y = y * 1.001 + 0.001
    y.backward()
    assert session.round_trips - before == 1
    xt = torch.tensor(0.5, requires_grad=True)
    yt = xt
    for _ in range(1000):
        yt = yt * 1.001 + 0.001
    yt.backward()
    assert x.grad.item() == pytest.approx(xt.grad.item(), rel=1e-5)


def test_dropped_handles_are_released(session):
    baseline = session.describe().tensor_count
    for _ in range(5):
        x = session.tensor([1.0, 2.0], requires_grad=True)
        y = (x * 2).sin().sum()
        y.backward()
        g = x.grad
        assert g is not None
    assert session.describe().tensor_count > baseline
    del x, y, g
    gc.collect()
    assert session.describe().tensor_count == baseline


def test_engine_errors_keep_type_message_and_user_line(session):
    a = session.tensor([1.0, 2.0, 3.0])
    b = session.tensor([1.0, 2.0])
    c = a + b; line = sys._getframe().f_lineno  # noqa: E702 - the recording line
    with pytest.raises(RuntimeError) as info:
        print(c)
    with pytest.raises(RuntimeError) as expected:
        torch.tensor([1.0, 2.0, 3.0]) + torch.tensor([1.0, 2.0])
    assert type(info.value) is RuntimeError
    assert str(info.value) == str(expected.value)
    assert info.value.gradserve_origin == f"{__file__}:{line}"
    assert any(f"{__file__}:{line}" in n for n in info.value.__notes__)
    # the failed tensor raises the same error again; the session keeps working
    with pytest.raises(RuntimeError, match="must match"):
        c.sum()
    assert (a * 2).tolist() == [2.0, 4.0, 6.0]


def _recorded_in_helper(session, a, b):
    return a + b, sys._getframe().f_lineno


@pytest.mark.parametrize("spelling", ["operator", "function", "method", "functional",
                                      "overload", "helper"])
def test_failing_op_names_the_user_line_for_every_recording_path(session, spelling):
    # the client finds the user's frame by skipping its own frames (client/batch.py:user_origin)
    a = session.tensor([1.0, 2.0, 3.0])
    b = session.tensor([1.0, 2.0])
    here = sys._getframe().f_lineno
    if spelling == "operator":
        c, line = a * b, here + 2
    elif spelling == "function":
        c, line = session.mul(a, b), here + 4
    elif spelling == "method":
        c, line = a.mul(b), here + 6
    elif spelling == "functional":
        c, line = session.nn.functional.binary_cross_entropy(a, a), here + 8
    elif spelling == "overload":
        c, line = session.max(a, b), here + 10
    else:
        c, line = _recorded_in_helper(session, a, b)
    with pytest.raises(RuntimeError) as info:
        c.tolist()
    assert info.value.gradserve_origin == f"{__file__}:{line}"


def test_backward_errors_surface_at_backward(session):
    x = session.tensor(2.0, requires_grad=True)
    y = x.detach() ** 2
    with pytest.raises(RuntimeError) as info:
        y.backward()
    with pytest.raises(RuntimeError) as expected:
        (torch.tensor(2.0, requires_grad=True).detach() ** 2).backward()
    assert str(info.value) == str(expected.value)
    y = x ** 2
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_two_sessions_are_isolated(client):
    with client.session() as s1, client.session() as s2:
        x1 = s1.tensor(1.0, requires_grad=True)
        x2 = s2.tensor(5.0, requires_grad=True)
        (x1 * 3).backward()
        (x2 * x2).backward()
        assert x1.grad.item() == 3.0
        assert x2.grad.item() == 10.0
        with pytest.raises(RuntimeError, match="another session"):
            x1 + x2
        assert s1.describe().tensor_count != 0
    with pytest.raises(gc_client.NotFoundError):
        s1.describe()


def test_metadata_properties_and_conversions(session):
    x = session.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = (x * 2).sum(1)
    assert y.shape == torch.Size([2]) and repr(y.shape) == "torch.Size([2])"
    assert y.dtype is session.float32 and repr(y.dtype) == "torch.float32"
    yt = (torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True) * 2).sum(1)
    assert y.requires_grad and not y.is_leaf and y.grad_fn.name() == yt.grad_fn.name()
    assert x.is_leaf and x.grad_fn is None
    assert y.detach().numpy().tolist() == [6.0, 14.0]
    assert np.asarray(y.detach()).tolist() == [6.0, 14.0]
    with pytest.raises(RuntimeError, match="Use tensor.detach"):
        y.numpy()
    with warnings.catch_warnings():  # torch warns once per process (tests/test_surface_compat)
        warnings.simplefilter("ignore", UserWarning)
        assert float(y.sum()) == 20.0
    assert int(session.tensor(3)) == 3
    assert session.tensor(3).dtype is session.int64
    assert f"{y.sum():.1f}" == "20.0"
    assert x.float().dtype is session.float32 and x.double().dtype is session.float64
    assert x.view(4).shape == (4,) and x.reshape(4, 1).shape == (4, 1)
    assert x.size(0) == 2 and x.dim() == 2 and x.numel() == 4


def test_grad_mode_and_grad_zeroing(session):
    x = session.tensor(2.0, requires_grad=True)
    with session.no_grad():
        y = x ** 2
    assert not y.requires_grad and repr(y) == "tensor(4.)"
    with session.set_grad_enabled(False):
        assert not session.is_grad_enabled()
    assert session.is_grad_enabled()
    (x ** 3).backward()
    assert x.grad.item() == 12.0
    x.grad.zero_()
    assert x.grad.item() == 0.0
    x.grad = None
    assert x.grad is None


def test_non_leaf_grad_warns_like_torch(session):
    messages = []
    for lib in (torch, session):
        x = lib.tensor(2.0, requires_grad=True)
        y = x * 3
        y.sum().backward()
        with pytest.warns(UserWarning, match="is not a leaf Tensor") as caught:
            assert y.grad is None
        # torch's C++ warnings end with where they were raised: " (Triggered internally ...)"
        messages.append([str(w.message).split(" (Triggered internally")[0] for w in caught])
    assert messages[1] == messages[0]
    x = session.tensor(2.0, requires_grad=True)
    z = x * 4
    z.retain_grad()
    z.backward()
    assert z.grad.item() == 1.0


def test_autograd_grad_second_order(session):
    x = session.tensor(1.5, requires_grad=True)
    y = x.sin() * x
    (g,) = session.autograd.grad(y, x, create_graph=True)
    (h,) = session.autograd.grad(g, x)
    xt = torch.tensor(1.5, requires_grad=True)
    (gt,) = torch.autograd.grad(xt.sin() * xt, xt, create_graph=True)
    (ht,) = torch.autograd.grad(gt, xt)
    assert repr(g) == repr(gt)
    assert h.item() == pytest.approx(ht.item(), rel=1e-6)


def train_neuron(torch_, optim_name: str, steps: int = 20) -> list[str]:
    xs = torch_.tensor([[0.5], [1.5], [-1.0], [2.0]])
    ys = torch_.tensor([[0.0], [1.0], [0.0], [1.0]])
    w = torch_.tensor([[0.3]], requires_grad=True)
    b = torch_.tensor([0.1], requires_grad=True)
    opt = getattr(torch_.optim, optim_name)([w, b], lr=0.5)
    lines = []
    for _ in range(steps):
        opt.zero_grad()
        p = torch_.sigmoid(xs * w + b)
        loss = -(ys * torch_.log(p) + (1 - ys) * torch_.log(1 - p)).mean()
        loss.backward()
        opt.step()
        lines.append(f"{loss.item():.6f}")
    lines += [repr(w), repr(b)]
    return lines


@pytest.mark.parametrize("optim_name", ["SGD", "Adam"])
def test_optimizers_train_like_torch(session, optim_name):
    try:
        train_neuron(session, optim_name, steps=1)
    except RuntimeError as exc:
        if "no optimizers" in str(exc):
            pytest.skip("the engine has no optimizers yet")
        raise
    assert train_neuron(session, optim_name) == train_neuron(torch, optim_name)


def test_to_dot_and_next_functions(session):
    x = session.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 2).sin().sum()
    dot = gc_client.to_dot(y)
    assert dot.startswith("digraph") and "SumBackward0" in dot and "SinBackward0" in dot
    assert "AccumulateGrad" in dot and "(2,)" in dot
    (nxt, _), = y.grad_fn.next_functions
    assert nxt.name() == "SinBackward0"


def test_stateless_grad_and_value_and_grad(client):
    def f(x, w):
        return (x * w).sin().sum()

    x = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    w = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    gx = client.grad(f)(x, w)
    value, (gx2, gw) = client.value_and_grad(f, argnums=(0, 1))(x, w)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yt = f(xt, wt)
    yt.backward()
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(gx2, xt.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-6)
    assert value == pytest.approx(yt.item())
    with pytest.raises(gc_client.TracingError):
        client.grad(lambda x: x.sum().item())(x)


@pytest.mark.parametrize("f", [
    lambda x: x.max(dim=1).values.sum() + x.min(0, keepdim=True)[0].sum(),
    lambda x: x.sin().sum() * x.norm() + x.norm(1.0, dim=0).sum(),
    lambda x: x.max(x.cos()).sum() + x.min().exp(),
    lambda x: x.view(3, 2).permute(1, 0).exp().sum() + x.reshape(6).sum()])
def test_traced_functions_have_torchs_method_spellings(client, f):
    x = np.array([[0.1, -0.7, 0.3], [1.2, 0.5, -0.4]], dtype=np.float32)
    value, grad = client.value_and_grad(f)(x)
    xt = torch.tensor(x, requires_grad=True)
    yt = f(xt)
    yt.backward()
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert value == pytest.approx(yt.item(), rel=1e-6)
    with pytest.raises(gc_client.TracingError):  # spellings that read the shape
        client.grad(lambda x: x.T.sum())(x)


def test_transport_errors_name_the_target():
    with gc_client.connect("127.0.0.1:1", timeout=2, retries=1) as c:
        with pytest.raises(gc_client.UnavailableError, match="127.0.0.1:1"):
            c.list_ops()
        with pytest.raises(gc_client.UnavailableError, match="127.0.0.1:1"):
            c.session()


def test_token_auth(gradserve_server_factory, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("secret-token\n")
    _, port = gradserve_server_factory(auth_token_file=str(tokens))
    with gc_client.connect(f"localhost:{port}") as c:
        with pytest.raises(gc_client.UnauthenticatedError):
            c.session()
    with gc_client.connect(f"localhost:{port}", token="secret-token") as c, c.session() as s:
        assert (s.tensor(2.0) * 3).item() == 6.0


@pytest.mark.parametrize(("name", "shape", "attrs"), [
    ("split", (5, 3), {"split_size": 2}), ("split", (0, 3), {"split_size": 2}),
    ("split", (4,), {"split_size": 9}), ("split_with_sizes", (2, 6), {"split_sizes": (1, 0, 5),
                                                                       "dim": -1}),
    ("unbind", (3, 2), {"dim": 1}), ("unbind", (0, 2), {}), ("unbind", (2, 1, 3), {"dim": -2})])
def test_variable_output_ops_return_torchs_tuple(session, name, shape, attrs):
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    x, t = session.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    torch_fn = {"split": lambda x, split_size, dim=0: torch.split(x, split_size, dim),
                "split_with_sizes": lambda x, split_sizes, dim=0: torch.split(
                    x, list(split_sizes), dim),
                "unbind": torch.unbind}[name]
    got, expected = getattr(session, name)(x, **attrs), torch_fn(t, **attrs)
    assert isinstance(got, tuple) and len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape and g.grad_fn.name() == e.grad_fn.name()
        np.testing.assert_array_equal(g.detach().numpy(), e.detach().numpy())
    if got:
        session.stack([p.sum() for p in got]).sum().backward()
        torch.stack([p.sum() for p in expected]).sum().backward()
        np.testing.assert_array_equal(x.grad.numpy(), t.grad.numpy())


@pytest.mark.parametrize("attrs", [{"split_size": 0}, {"split_size": -1}, {"dim": 5}])
def test_variable_output_op_errors_are_torchs(session, attrs):
    a = np.ones((2, 3), np.float32)
    call = {"split_size": 2, **attrs}
    with pytest.raises(Exception) as expected:
        torch.split(torch.tensor(a), call.pop("split_size"), **call)
    call = {"split_size": 2, **attrs}
    with pytest.raises(type(expected.value)) as got:
        session.split(session.tensor(a), **call)[0].tolist()
    assert str(got.value) == str(expected.value)


def test_conversions_return_the_tensor_itself_when_nothing_changes(session):
    outcomes = []
    for lib in (torch, session):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        same = [x.float() is x, x.to(lib.float32) is x, x.to("cpu") is x, x.type(lib.float32) is x,
                x.to(x) is x, x.to(dtype=lib.float32) is x]
        names = [t.grad_fn.name()
                 for t in (x.double(), x.to(lib.float32, copy=True), x.to(lib.int64) * 1.0)
                 if t.grad_fn is not None]
        (x.float() * 3).sum().backward()  # the leaf itself: its .grad fills
        outcomes.append((same, names, x.grad.tolist()))
    assert outcomes[1] == outcomes[0]


def test_a_call_refused_while_recording_sends_nothing(session):
    x = session.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    before = session.round_trips
    # refused by the client's copy of the engine's validator, with the engine's text
    with pytest.raises(TypeError, match=r"^gather\(\): argument 'dim' must be int, not Tensor$"):
        session.call("gather", (x, 1, session.tensor([[0]])), {})
    assert session.round_trips == before  # the half-built instruction was not sent
    assert (x * 2).sum().item() == 20.0


def test_requires_grad_refusals_are_worded_as_torch(session):
    def outcomes(lib):
        out = []
        # requires_grad_() is recorded: its error surfaces when the batch is sent (.tolist())
        for set_it in (lambda t: setattr(t, "requires_grad", True),
                       lambda t: t.requires_grad_(True).tolist()):
            try:
                set_it(lib.tensor([1, 2]))
                out.append(None)
            except RuntimeError as exc:
                out.append(str(exc))
        return out
    assert outcomes(session) == outcomes(torch)


def test_inplace_through_views_rebases_the_base_as_torch(session):
    def run(lib):
        def name(t):
            if t.grad_fn is None:
                return None
            return t.grad_fn.name()
        z = lib.zeros(2, 3)
        w = lib.tensor(3.0, requires_grad=True)
        out = [z.requires_grad]
        z[0].mul_(w)  # the base's history changes although only the view was written
        out += [z.requires_grad, z.is_leaf, name(z)]
        z.t()[2].sub_(w)
        r = z[1]
        r.add_(w * w)
        out += [name(z), name(r), z.requires_grad]
        (z * lib.arange(6.0).reshape(2, 3)).sum().backward()
        return [*out, w.grad.item(), z.tolist()]
    assert run(session) == run(torch)


def test_a_view_follows_its_base_written_in_place_through_a_session(session):
    def run(lib):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        y = x * 2
        v = y[:2]
        y.mul_(x)
        name = v.grad_fn.name()
        (v * v).sum().backward()
        return [name, v.tolist(), x.grad.tolist()]
    assert run(session) == run(torch)
