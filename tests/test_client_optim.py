"""Optimizers through the client against torch.optim: every option (SGD maximize, Adam amsgrad
and maximize included) step for step, torch's signatures and keyword errors, the state read
back with GetOptimizerState equal to torch's state_dict(), and the wire's validation of
CreateOptimizer state and GetOptimizerState."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

import gradserve.client as gc
from gradserve.server import codec
from gradserve.v1 import session_pb2 as pb
from gradserve.v1 import tensor_pb2
from tests.conftest import gradserve_error
from tests.reference import torch

W0 = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], np.float32)
X = np.array([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25]], np.float32)


@pytest.fixture(scope="module")
def client(gradserve_server):
    with gc.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


@pytest.fixture
def session(client):
    with client.session() as s:
        yield s


CONFIGS = [
    ("SGD", (0.1,), {}), ("SGD", (0.1, 0.9), {"dampening": 0.2, "weight_decay": 0.05}),
    ("SGD", (0.05,), {"momentum": 0.8, "nesterov": True, "maximize": True}),
    ("SGD", (), {"maximize": True}), ("Adam", (), {}),
    ("Adam", (0.05, (0.8, 0.95), 1e-6, 0.1, True), {}),
    ("Adam", (0.02,), {"amsgrad": True, "maximize": True, "foreach": False}),
]


def _trajectory(lib, name, args, kwargs, steps=8):
    w = lib.tensor(W0.copy(), requires_grad=True)
    opt = getattr(lib.optim, name)([w], *args, **kwargs)
    out = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((w @ lib.tensor(X)).tanh() ** 2).sum()
        loss.backward()
        opt.step()
        out.append(w.detach().numpy().copy())
    return out, opt


@pytest.mark.parametrize("name, args, kwargs", CONFIGS,
                         ids=[f"{c[0]}{c[1]}{c[2]}" for c in CONFIGS])
def test_trajectories_match_torch(session, name, args, kwargs):
    expected, t_opt = _trajectory(torch, name, args, kwargs)
    got, c_opt = _trajectory(session, name, args, kwargs)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)  # float32 tanh/matmul rounding
    # the state read back is torch's state_dict()
    t_state = t_opt.state_dict()["state"].get(0, {})
    msg = c_opt.state_message()
    assert list(msg.params) == [c_opt.params[0]._handle]
    if not t_state:  # SGD without momentum keeps nothing
        assert not msg.state and name == "SGD"
        return
    (entry,) = msg.state
    if name == "SGD":
        assert msg.sgd.maximize == kwargs.get("maximize", False)
        buf = t_state.get("momentum_buffer")
        if buf is None:
            assert not entry.sgd.HasField("momentum_buffer")
        else:
            np.testing.assert_allclose(codec.decode_array(entry.sgd.momentum_buffer, 10**6),
                                       buf.numpy(), rtol=1e-4, atol=1e-6)
    else:
        assert entry.adam.step == float(t_state["step"])
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            assert entry.adam.HasField(key) == (key in t_state)
            if key in t_state:
                field = {"exp_avg": entry.adam.exp_avg, "exp_avg_sq": entry.adam.exp_avg_sq,
                         "max_exp_avg_sq": entry.adam.max_exp_avg_sq}[key]
                np.testing.assert_allclose(codec.decode_array(field, 10**6),
                                           t_state[key].numpy(), rtol=1e-4, atol=1e-6)


def _same_error(session, make):
    caught = []
    for lib in (torch, session):
        with pytest.raises(Exception) as err:
            w = lib.tensor([1.0], requires_grad=True)
            make(lib, w)
            w.sum().item()  # the client reports server-side refusals at the next flush
        caught.append(err.value)
    t_err, c_err = caught
    assert type(c_err) is type(t_err), (c_err, t_err)
    assert str(c_err) == str(t_err)


@pytest.mark.parametrize("make", [
    lambda lib, w: lib.optim.SGD([w], foo=1),
    lambda lib, w: lib.optim.Adam([w], lr=0.1, betas=(0.9, 0.99), nesterov=True),
    lambda lib, w: lib.optim.SGD([w], 0.1, 0.9, 0, 0, False, True),
    lambda lib, w: lib.optim.SGD([w], lr=-1.0),
    lambda lib, w: lib.optim.SGD([w], lr=0.1, nesterov=True),
    lambda lib, w: lib.optim.Adam([w], betas=(1.0, 0.9)),
    lambda lib, w: lib.optim.Adam([w], eps=-1.0),
    lambda lib, w: lib.optim.Adam([w], weight_decay=-0.5),
    lambda lib, w: lib.optim.SGD([], lr=0.1),
    lambda lib, w: lib.optim.SGD(w, lr=0.1),
    lambda lib, w: lib.optim.Adam([w, 1.0]),
], ids=["unknown keyword", "SGD keyword to Adam", "too many positional", "negative lr",
        "nesterov without momentum", "beta1 = 1", "negative eps", "negative weight decay",
        "no params", "a tensor, not a list", "a float param"])
def test_signatures_and_errors_match_torch(session, make):
    _same_error(session, make)


def test_torch_only_variants_are_refused_clearly(session):
    w = session.tensor([1.0], requires_grad=True)
    for kwargs in ({"fused": True}, {"differentiable": True}, {"capturable": True}):
        with pytest.raises(NotImplementedError, match="is not supported by gradserve"):
            session.optim.Adam([w], **kwargs)
    opt = session.optim.SGD([w], 0.5, foreach=True)  # accepted, no effect
    assert isinstance(opt, session.optim.SGD) and isinstance(opt, gc.Optimizer)
    assert isinstance(opt, session.optim.Optimizer)
    for make in (lambda o, ps: o.SGD(ps, 0.5, foreach=True),
                 lambda o, ps: o.AdamW([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.1}]),
                 lambda o, ps: o.RMSprop(ps), lambda o, ps: o.Adagrad(ps, lr_decay=1)):
        ours = make(session.optim, [w, session.ones(1, requires_grad=True)])
        assert repr(ours) == repr(make(torch.optim, [torch.ones(1), torch.ones(1)]))


# --- the wire -------------------------------------------------------------------------------------


def _create(handle, params, state, **algorithm):
    return pb.Instruction(create_optimizer=pb.CreateOptimizer(
        optimizer=handle, params=params, state=state, **algorithm))


def _arr(*shape, dtype=np.float32):
    return codec.encode_array(np.full(shape, 0.5, dtype))


ADAM = {"adam": pb.AdamOptions(lr=0.1)}
SGD = {"sgd": pb.SgdOptions(lr=0.1, momentum=0.9)}
BAD_STATE = [
    ("param out of range", SGD, [pb.ParamState(param=2, sgd=pb.SgdParamState())],
     grpc.StatusCode.INVALID_ARGUMENT,
     "create_optimizer: state of parameter 2: the optimizer has 2 parameter(s)"),
    ("twice", SGD, [pb.ParamState(param=0, sgd=pb.SgdParamState())] * 2,
     grpc.StatusCode.INVALID_ARGUMENT, "state of parameter 0: given twice"),
    ("kind mismatch", SGD, [pb.ParamState(param=0, adam=pb.AdamParamState(step=1))],
     grpc.StatusCode.INVALID_ARGUMENT, "expected sgd state, got adam"),
    ("no kind", ADAM, [pb.ParamState(param=1)], grpc.StatusCode.INVALID_ARGUMENT,
     "expected adam state, got none"),
    ("step 0", ADAM, [pb.ParamState(param=0, adam=pb.AdamParamState(
        step=0, exp_avg=_arr(2), exp_avg_sq=_arr(2)))], grpc.StatusCode.INVALID_ARGUMENT,
     "step must be a finite number >= 1, got 0.0"),
    ("step nan", ADAM, [pb.ParamState(param=0, adam=pb.AdamParamState(
        step=float("nan"), exp_avg=_arr(2), exp_avg_sq=_arr(2)))],
     grpc.StatusCode.INVALID_ARGUMENT, "step must be a finite number >= 1, got nan"),
    ("missing exp_avg_sq", ADAM, [pb.ParamState(param=0, adam=pb.AdamParamState(
        step=3, exp_avg=_arr(2)))], grpc.StatusCode.INVALID_ARGUMENT, "exp_avg_sq is required"),
    ("wrong shape", ADAM, [pb.ParamState(param=1, adam=pb.AdamParamState(
        step=3, exp_avg=_arr(2), exp_avg_sq=_arr(2)))], grpc.StatusCode.INVALID_ARGUMENT,
     "optimizer state 'exp_avg' has shape [2], but its parameter has shape [3]"),
    ("malformed buffer", SGD, [pb.ParamState(param=0, sgd=pb.SgdParamState(
        momentum_buffer=tensor_pb2.Tensor(dtype=1, shape=[2], raw=b"x")))],
     grpc.StatusCode.INVALID_ARGUMENT, "momentum_buffer: raw data has 1 bytes"),
    ("huge buffer", SGD, [pb.ParamState(param=0, sgd=pb.SgdParamState(
        momentum_buffer=tensor_pb2.Tensor(dtype=1, shape=[2**40], raw=b"")))],
     grpc.StatusCode.RESOURCE_EXHAUSTED, "momentum_buffer: dimension 1099511627776"),
    ("bad hyperparameter", {"adam": pb.AdamOptions(beta2=1.5)}, [],
     grpc.StatusCode.INVALID_ARGUMENT, "Invalid beta parameter at index 1: 1.5"),
]


@pytest.mark.parametrize("algorithm, state, code, message", [b[1:] for b in BAD_STATE],
                         ids=[b[0] for b in BAD_STATE])
def test_create_optimizer_state_is_validated(gradserve_session, algorithm, state, code,
                                             message):
    s = gradserve_session
    s.run(s.create(1, np.zeros(2, np.float32), requires_grad=True),
          s.create(2, np.zeros(3, np.float32), requires_grad=True))
    with pytest.raises(grpc.RpcError) as err:
        s.run(_create(3, [1, 2], state, **algorithm))
    got_code, got_message, _ = gradserve_error(err)
    assert got_code == code and message in got_message, got_message
    assert s.describe().optimizer_count == 0
    # a well-formed state is accepted, read back as given, and steps from there
    good = [pb.ParamState(param=0, adam=pb.AdamParamState(step=4, exp_avg=_arr(2),
                                                          exp_avg_sq=_arr(2)))]
    r = s.run(_create(3, [1, 2], good, **ADAM),
              pb.Instruction(get_optimizer_state=pb.GetOptimizerState(optimizer=3)))
    st = r.results[1].optimizer_state
    assert list(st.params) == [1, 2] and st.adam.lr == 0.1 and st.adam.beta2 == 0.999
    assert [(e.param, e.adam.step) for e in st.state] == [(0, 4.0)]
    assert st.state[0].adam.exp_avg == good[0].adam.exp_avg


def test_get_optimizer_state_of_an_unknown_handle(gradserve_session):
    s = gradserve_session
    with pytest.raises(grpc.RpcError) as err:
        s.run(pb.Instruction(get_optimizer_state=pb.GetOptimizerState(optimizer=5)))
    assert gradserve_error(err)[:2] == (grpc.StatusCode.NOT_FOUND,
                                        "unknown optimizer handle 5 (released or never created)")
