"""Optimizers as real torch programs use them, in process and through a session, against torch:
lr schedulers (every learning rate equal as a float), hyperparameters changed in `param_groups`,
a user-defined `torch.optim.Optimizer` subclass, `add_param_group`, `step(closure)`,
`state_dict()`/`load_state_dict()`, `zero_grad(set_to_none=False)`, and the wire's checks of the
hyperparameters a step carries."""

from __future__ import annotations

import re
import warnings

import grpc
import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.v1 import session_pb2 as pb
from tests.conftest import gradserve_error
from tests.reference import HAVE_TORCH, MISSING_REASON, torch

# subclassing torch's classes needs the real torch (a stand-in cannot be a base class)
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

W0 = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], np.float32)
B0 = np.array([0.1, -0.2], np.float32)
X = np.array([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25]], np.float32)


def _params(lib):
    return (lib.tensor(W0.copy(), requires_grad=True), lib.tensor(B0.copy(), requires_grad=True))


def _loss(lib, w, b):
    return (((w @ lib.tensor(X)).tanh() + b.unsqueeze(1)) ** 2).sum()


def _np(t):
    return t.detach().numpy().copy()


OPTIMIZERS = {
    "SGD": lambda o, ps: o.SGD(ps, lr=0.1, momentum=0.9),
    "Adam": lambda o, ps: o.Adam(ps, lr=0.05),
    "AdamW": lambda o, ps: o.AdamW(ps, lr=0.05, weight_decay=0.1),
}

SCHEDULERS = {
    "StepLR": lambda s, o: s.StepLR(o, step_size=3, gamma=0.5),
    "MultiStepLR": lambda s, o: s.MultiStepLR(o, milestones=[2, 5, 11], gamma=0.3),
    "ExponentialLR": lambda s, o: s.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda s, o: s.CosineAnnealingLR(o, T_max=7, eta_min=1e-3),
    "LambdaLR": lambda s, o: s.LambdaLR(o, lambda e: 0.95 ** e / (1 + e)),
    "MultiplicativeLR": lambda s, o: s.MultiplicativeLR(o, lambda e: 0.9),
    "LinearLR": lambda s, o: s.LinearLR(o, start_factor=0.2, total_iters=6),
    "ConstantLR": lambda s, o: s.ConstantLR(o, factor=0.5, total_iters=4),
    "PolynomialLR": lambda s, o: s.PolynomialLR(o, total_iters=10, power=2.0),
    "OneCycleLR": lambda s, o: s.OneCycleLR(o, max_lr=0.2, total_steps=25),
    "CyclicLR": lambda s, o: s.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=4,
                                        cycle_momentum=False),
    "CosineAnnealingWarmRestarts": lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=4,
                                                                              T_mult=2),
    "SequentialLR": lambda s, o: s.SequentialLR(
        o, [s.LinearLR(o, start_factor=0.1, total_iters=4), s.ExponentialLR(o, gamma=0.8)],
        milestones=[4]),
    "ChainedScheduler": lambda s, o: s.ChainedScheduler(
        [s.ConstantLR(o, factor=0.5, total_iters=3), s.ExponentialLR(o, gamma=0.9)]),
    "ReduceLROnPlateau": lambda s, o: s.ReduceLROnPlateau(o, factor=0.5, patience=1,
                                                          threshold=0.5),
}


def _train(lib, make_opt, make_sched, steps=24):
    """Train with a scheduler: (every step's get_last_lr(), the final parameters)."""
    w, b = _params(lib)
    opt = make_opt(lib.optim, [w, b])
    sched = make_sched(lib.optim.lr_scheduler, opt)
    lrs = []
    for _ in range(steps):
        opt.zero_grad()
        loss = _loss(lib, w, b)
        loss.backward()
        opt.step()
        if isinstance(sched, lib.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(loss.item())
        else:
            sched.step()
        lrs.append(list(sched.get_last_lr()))
        lrs.append([g["lr"] for g in opt.param_groups])
    return lrs, [_np(w), _np(b)]


@pytest.mark.parametrize("sched", sorted(SCHEDULERS))
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_schedulers_give_torchs_learning_rates(gradserve_client, opt, sched):
    want_lrs, want = _train(torch, OPTIMIZERS[opt], SCHEDULERS[sched])
    got_lrs, got = _train(ge, OPTIMIZERS[opt], SCHEDULERS[sched])
    with gradserve_client.session() as s:
        remote_lrs, remote = _train(s, OPTIMIZERS[opt], SCHEDULERS[sched])
    assert got_lrs == want_lrs and remote_lrs == want_lrs  # exact floats, every step
    for g, r, w in zip(got, remote, want):
        np.testing.assert_array_equal(r, g)  # the session's server runs the engine's steps
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)  # torch's CPU kernels use FMA


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_momentum_and_betas_cycle_as_torchs(gradserve_lib, opt):
    """OneCycleLR and CyclicLR also move momentum / betas, which the server then uses."""
    for make in (lambda s, o: s.OneCycleLR(o, max_lr=0.2, total_steps=30),
                 lambda s, o: s.CyclicLR(o, 0.01, 0.1, step_size_up=3)):
        want_lrs, want = _train(torch, OPTIMIZERS[opt], make)
        got_lrs, got = _train(gradserve_lib, OPTIMIZERS[opt], make)
        assert got_lrs == want_lrs
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


def test_scheduler_state_dict_and_warnings_match_torch(gradserve_lib):
    results = []
    for lib in (torch, gradserve_lib):
        w, b = _params(lib)
        opt = lib.optim.SGD([w, b], lr=0.1)
        sched = lib.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
        with pytest.warns(UserWarning) as caught:
            sched.step()  # before optimizer.step(): torch warns
        state = sched.state_dict()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            sched.get_last_lr()
        with pytest.warns(UserWarning, match="please use `get_last_lr\\(\\)`"):
            sched.get_lr()
        results.append(([str(c.message) for c in caught], sorted(state), state["last_epoch"],
                        state["_last_lr"], opt.param_groups[0]["initial_lr"]))
        with pytest.raises(TypeError) as err:
            lib.optim.lr_scheduler.StepLR(object(), 2)
        results.append(str(err.value))
    assert results[0] == results[2] and results[1] == results[3]
    assert "Detected call of `lr_scheduler.step()` before `optimizer.step()`" in results[0][0][0]


def test_changed_hyperparameters_are_used(gradserve_lib):
    """A program's own edits of param_groups (lr decay, new betas, weight decay)."""
    for make in (lambda o, ps: o.SGD(ps, lr=0.1, momentum=0.9),
                 lambda o, ps: o.Adam(ps, lr=0.05), lambda o, ps: o.RMSprop(ps, lr=0.01),
                 lambda o, ps: o.Adagrad(ps, lr=0.1)):
        out = []
        for lib in (torch, gradserve_lib):
            w, b = _params(lib)
            opt = make(lib.optim, [w, b])
            for step in range(9):
                if step % 3 == 2:
                    for g in opt.param_groups:
                        g["lr"] *= 0.1
                if step == 4:
                    g = opt.param_groups[0]
                    g["weight_decay"] = 0.05
                    if "betas" in g:
                        g["betas"] = (0.5, 0.9)
                opt.zero_grad()
                _loss(lib, w, b).backward()
                opt.step()
            out.append(([_np(w), _np(b)], [g["lr"] for g in opt.param_groups]))
        assert out[0][1] == out[1][1]
        for g, w in zip(out[1][0], out[0][0]):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("key, value, message", [
    ("lr", -0.5, "Invalid learning rate: -0.5"),
    ("betas", (0.9, 1.0), "Invalid beta parameter at index 1: 1.0"),
    ("weight_decay", -1, "Invalid weight_decay value: -1"),
])
def test_a_refused_hyperparameter_fails_the_step_before_it_is_sent(gradserve_client, key,
                                                                     value, message):
    with gradserve_client.session() as s:
        w, b = _params(s)
        opt = s.optim.Adam([w, b], lr=0.05)
        _loss(s, w, b).backward()
        opt.step()
        once = _np(w)
        good = opt.param_groups[0][key]
        opt.param_groups[0][key] = value
        with pytest.raises(ValueError, match=re.escape(message)):
            opt.step()  # torch's constructor message, at the program's own line
        np.testing.assert_array_equal(_np(w), once)  # nothing was recorded
        opt.param_groups[0][key] = good
        opt.step()
        assert not np.array_equal(_np(w), once)


def test_a_hyperparameter_change_costs_no_round_trip(gradserve_client):
    with gradserve_client.session() as s:
        w, b = _params(s)
        opt = s.optim.Adam([w, b], lr=0.05)
        sched = s.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)
        _loss(s, w, b).item()
        start = s.round_trips
        for _ in range(3):
            opt.zero_grad()
            loss = _loss(s, w, b)
            loss.backward()
            opt.step()
            sched.step()
            loss.item()
        assert s.round_trips - start <= 3 * 2  # backward and item, as without a scheduler


class TextbookSGD:
    """A user-defined optimizer as tutorials write it (defined per library below)."""

    @staticmethod
    def define(lib):
        class MySGD(lib.optim.Optimizer):
            def __init__(self, params, lr=0.01, momentum=0.0):
                if lr < 0.0:
                    raise ValueError(f"Invalid learning rate: {lr}")
                super().__init__(params, dict(lr=lr, momentum=momentum))

            @lib.no_grad()
            def step(self, closure=None):
                loss = None
                if closure is not None:
                    with lib.enable_grad():
                        loss = closure()
                for group in self.param_groups:
                    for p in group["params"]:
                        if p.grad is None:
                            continue
                        d_p = p.grad
                        if group["momentum"] != 0:
                            state = self.state[p]
                            if "momentum_buffer" not in state:
                                buf = state["momentum_buffer"] = d_p.clone().detach()
                            else:
                                buf = state["momentum_buffer"]
                                buf.mul_(group["momentum"]).add_(d_p)
                            d_p = buf
                        p.add_(d_p, alpha=-group["lr"])
                return loss

        return MySGD


@needs_torch
def test_user_defined_optimizer_matches_torch(gradserve_lib):
    out = []
    for lib in (torch, gradserve_lib):
        my_sgd = TextbookSGD.define(lib)
        w, b = _params(lib)
        opt = my_sgd([{"params": [w]}, {"params": [b], "lr": 0.05}], lr=0.1, momentum=0.9)
        assert isinstance(opt, lib.optim.Optimizer)
        sched = lib.optim.lr_scheduler.StepLR(opt, 2, 0.5)
        for _ in range(6):
            opt.zero_grad()
            _loss(lib, w, b).backward()
            opt.step()
            sched.step()
        saved = opt.state_dict()
        out.append(([_np(w), _np(b)], repr(opt), sorted(saved["state"]),
                    [{k: v for k, v in g.items()} for g in saved["param_groups"]],
                    _np(saved["state"][0]["momentum_buffer"])))
        with pytest.raises(ValueError) as err:
            my_sgd([w], lr=-1)
        out.append(str(err.value))
    (t_params, t_repr, t_keys, t_groups, t_buf), t_err, (g_params, g_repr, g_keys, g_groups,
                                                         g_buf), g_err = out
    assert (g_repr, g_keys, g_groups, g_err) == (t_repr, t_keys, t_groups, t_err)
    for g, w in zip(g_params + [g_buf], t_params + [t_buf]):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


@needs_torch
def test_optimizer_base_errors_match_torch(gradserve_lib):
    from gradserve.surface.optim import required

    def cases(lib):
        class Plain(lib.optim.Optimizer):
            pass

        w = lib.tensor([1.0], requires_grad=True)
        needed = torch.optim.Optimizer.__init__.__globals__["required"] if lib is torch else (
            required)
        return [lambda: Plain([w], {}).step(), lambda: Plain([], {}), lambda: Plain(w, {}),
                lambda: Plain([w, 2.0], {}), lambda: Plain([w * 2], {}),
                lambda: Plain([{"params": {w}}], {}), lambda: Plain([w], {"lr": needed}),
                lambda: Plain([{"params": [w]}, {"params": [w]}], {})]

    for t_case, g_case in zip(cases(torch), cases(gradserve_lib), strict=True):
        with pytest.raises(Exception) as want:
            t_case()
        with pytest.raises(Exception) as got:
            g_case()
        assert isinstance(got.value, type(want.value)), (got.value, want.value)
        assert str(got.value) == str(want.value)


def test_add_param_group_matches_torch(gradserve_lib):
    out = []
    for lib in (torch, gradserve_lib):
        w, b = _params(lib)
        opt = lib.optim.Adam([w], lr=0.05)
        for step in range(6):
            if step == 2:
                opt.add_param_group({"params": b, "lr": 0.2})
            opt.zero_grad()
            _loss(lib, w, b).backward()
            opt.step()
        out.append(([_np(w), _np(b)], [sorted(g) for g in opt.param_groups]))
        with pytest.raises(ValueError) as err:
            opt.add_param_group({"params": [w]})
        out.append(str(err.value))
    assert out[1] == out[3] and out[0][1] == out[2][1]  # torch's keys, flags included
    for g, w in zip(out[2][0], out[0][0]):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_step_with_a_closure_matches_torch(gradserve_lib, name):
    out = []
    for lib in (torch, gradserve_lib):
        w, b = _params(lib)
        opt = OPTIMIZERS[name](lib.optim, [w, b])
        losses = []

        def closure(lib=lib, w=w, b=b, opt=opt):
            opt.zero_grad()
            loss = _loss(lib, w, b)
            loss.backward()
            return loss

        for _ in range(5):
            losses.append(opt.step(closure).item())
        out.append((losses, [_np(w), _np(b)]))
    np.testing.assert_allclose(out[1][0], out[0][0], rtol=2e-5)
    for g, w in zip(out[1][1], out[0][1]):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_state_dict_round_trip_matches_torch(gradserve_lib, name):
    def train(lib, opt, w, b, steps):
        for _ in range(steps):
            opt.zero_grad()
            _loss(lib, w, b).backward()
            opt.step()

    out = []
    for lib in (torch, gradserve_lib):
        w, b = _params(lib)
        opt = OPTIMIZERS[name](lib.optim, [w, b])
        train(lib, opt, w, b, 4)
        saved = opt.state_dict()
        keys = {i: sorted(s) for i, s in saved["state"].items()}
        values = {i: {k: np.asarray(_np(v) if hasattr(v, "detach") else v)
                      for k, v in s.items()} for i, s in saved["state"].items()}
        # a fresh optimizer over copies takes the state and continues as the original does
        w2, b2 = (lib.tensor(_np(w), requires_grad=True), lib.tensor(_np(b), requires_grad=True))
        again = OPTIMIZERS[name](lib.optim, [w2, b2], )
        again.param_groups[0]["lr"] = 123.0  # overwritten by the load
        again.load_state_dict(saved)
        train(lib, again, w2, b2, 3)  # (torch's loaded state may alias the original's)
        state = opt.state  # torch's opt.state: by parameter
        out.append((keys, values, [_np(w2), _np(b2)], again.param_groups[0]["lr"],
                    sorted(saved["param_groups"][0]),
                    [sorted(state[p]) for p in (w, b)]))
    (t_keys, t_values, t_loaded, t_lr, t_group, t_state), (g_keys, g_values, g_loaded, g_lr,
                                                           g_group, g_state) = out
    assert (g_keys, g_lr, g_group, g_state) == (t_keys, t_lr, t_group, t_state)
    for i in t_values:
        for k in t_values[i]:
            np.testing.assert_allclose(g_values[i][k], t_values[i][k], rtol=2e-5, atol=2e-6)
    for g, w in zip(g_loaded, t_loaded):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


def test_session_state_dict_loads_into_torch_and_back(gradserve_client):
    with gradserve_client.session() as s:
        w, b = _params(s)
        opt = s.optim.Adam([w, b], lr=0.05)
        for _ in range(3):
            opt.zero_grad()
            _loss(s, w, b).backward()
            opt.step()
        saved = opt.state_dict()
        tw, tb = torch.tensor(_np(w), requires_grad=True), torch.tensor(_np(b), requires_grad=True)
        t_opt = torch.optim.Adam([tw, tb], lr=0.05)
        t_opt.load_state_dict({"state": {i: {k: torch.tensor(_np(v)) for k, v in st.items()}
                                         for i, st in saved["state"].items()},
                               "param_groups": saved["param_groups"]})
        bad = t_opt.state_dict()
        bad["state"] = {i: dict(v) for i, v in bad["state"].items()}  # torch's own dicts
        bad["state"][1]["momentum"] = torch.zeros(2)
        with pytest.raises(ValueError, match="unknown optimizer state 'momentum'"):
            opt.load_state_dict(bad)  # refused before anything changes
        opt.load_state_dict(t_opt.state_dict())  # torch's tensors are accepted as values
        for lib, o, ps in ((s, opt, (w, b)), (torch, t_opt, (tw, tb))):
            o.zero_grad()
            _loss(lib, *ps).backward()
            o.step()
        for g, t in zip((w, b), (tw, tb)):
            np.testing.assert_allclose(_np(g), _np(t), rtol=2e-5, atol=2e-6)
        assert s.describe().optimizer_count == 1  # the replaced server optimizer is released


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_matches_torch(gradserve_lib, set_to_none):
    for lib in (torch, gradserve_lib):
        w, b = _params(lib)
        opt = lib.optim.SGD([w, b], lr=0.1)
        _loss(lib, w, b).backward()
        opt.zero_grad(set_to_none=set_to_none)
        if set_to_none:
            assert w.grad is None and b.grad is None
        else:
            assert w.grad.tolist() == [[0.0] * 3] * 2 and b.grad.tolist() == [0.0, 0.0]


# --- the wire -------------------------------------------------------------------------------------


def _step(**hyper):
    return pb.Instruction(optimizer_step=pb.OptimizerStep(optimizer=2, **hyper))


@pytest.mark.parametrize("hyper, message", [
    ({"adam": pb.AdamOptions(lr=0.1)}, "optimizer_step: adam hyperparameters for SGD optimizer 2"),
    ({"sgd": pb.SgdOptions(lr=-0.5)}, "Invalid learning rate: -0.5"),
    ({"sgd": pb.SgdOptions(lr=0.1, nesterov=True)},
     "Nesterov momentum requires a momentum and zero dampening"),
    ({"sgd": pb.SgdOptions(lr=float("nan"))}, "Invalid learning rate: nan"),
])
def test_step_hyperparameters_are_validated(gradserve_session, hyper, message):
    s = gradserve_session
    s.run(s.create(1, np.ones(2, np.float32), requires_grad=True),
          pb.Instruction(create_optimizer=pb.CreateOptimizer(
              optimizer=2, params=[1], sgd=pb.SgdOptions(lr=0.1))))
    with pytest.raises(grpc.RpcError) as err:
        s.run(_step(**hyper))
    code, got, _ = gradserve_error(err)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message in got, got
    # a valid change is kept for the following steps; an unset oneof keeps the current values
    s.run(_step(sgd=pb.SgdOptions(lr=0.25, momentum=0.5)), _step(),
          pb.Instruction(get_optimizer_state=pb.GetOptimizerState(optimizer=2)))
    st = s.run(pb.Instruction(get_optimizer_state=pb.GetOptimizerState(optimizer=2)))
    assert (st.results[0].optimizer_state.sgd.lr,
            st.results[0].optimizer_state.sgd.momentum) == (0.25, 0.5)


def test_an_old_server_gets_no_hyperparameters(gradserve_server_factory):
    """A server that does not list the feature would ignore them: the client refuses to send."""
    import gradserve.client as gc
    from gradserve.server import catalogue
    from gradserve.v1 import STEP_HYPERPARAMETERS_FEATURE

    features = list(catalogue.list_ops().features)
    catalogue.list_ops().features.remove(STEP_HYPERPARAMETERS_FEATURE)
    try:
        _, port = gradserve_server_factory()
        with gc.connect(f"localhost:{port}") as client, client.session() as s:
            w, b = _params(s)
            opt = s.optim.SGD([w, b], lr=0.1)
            _loss(s, w, b).backward()
            opt.step()  # unchanged hyperparameters: an old server's step
            once = _np(w)
            opt.param_groups[0]["lr"] = 0.01
            with pytest.raises(NotImplementedError, match="optimizer_step_hyperparameters"):
                opt.step()
            np.testing.assert_array_equal(_np(w), once)  # the refused step recorded nothing
    finally:
        del catalogue.list_ops().features[:]
        catalogue.list_ops().features.extend(features)


@pytest.mark.parametrize("kind", ["SGD", "mine"])
@needs_torch
def test_step_hooks_run_as_torchs(gradserve_lib, kind):
    out = []
    for lib in (torch, gradserve_lib):
        w, b = _params(lib)
        opt = (OPTIMIZERS["SGD"](lib.optim, [w, b]) if kind == "SGD"
               else TextbookSGD.define(lib)([w, b], lr=0.1))
        calls = []
        def hook(name, calls=calls, opt=opt):
            return lambda o, args, kwargs: calls.append(
                (name, o is opt, args[0] is opt, args[1:], kwargs))

        pre = opt.register_step_pre_hook(hook("pre"))
        opt.register_step_post_hook(hook("post"))
        sched = lib.optim.lr_scheduler.StepLR(opt, 1, 0.5)  # wraps opt.step on top
        for i in range(3):
            if i == 2:
                pre.remove()
            opt.zero_grad()
            _loss(lib, w, b).backward()
            opt.step(closure=None) if i == 1 else opt.step()
            sched.step()
        out.append((calls, [_np(w), _np(b)]))
    assert out[1][0] == out[0][0]
    for g, w in zip(out[1][1], out[0][1]):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)
