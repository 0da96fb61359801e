"""The functional autograd API through a session: gradserve.surface.functional bound to the
client's Session (every autograd.grad is one round trip), compared with torch."""

from __future__ import annotations

import numpy as np
import pytest

from gradserve import client as gc_client
from tests.reference import torch


@pytest.fixture
def session(gradserve_server):
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c, c.session() as s:
        yield s

A = np.array([0.5, -1.25, 2.0])
V = np.array([0.25, 1.0, -1.0])


def program(lib):
    F = lib.autograd.functional
    x = lib.tensor(A, dtype=lib.float64, requires_grad=True)
    v = lib.tensor(V, dtype=lib.float64)
    w = lib.tensor([[1.0, 2.0], [-0.5, 0.75], [0.0, 1.0]], dtype=lib.float64,
                   requires_grad=True)
    cube = lambda a: (a ** 3).sum()  # noqa: E731
    return {
        "jacobian": F.jacobian(lambda a: a.sin() * a, x),
        "jacobian_tuple": F.jacobian(lambda a, b: a @ b, (x, w)),
        "jacobian_graph": F.jacobian(lambda a: a ** 2, x, create_graph=True),
        "hessian": F.hessian(cube, x),
        "vjp": F.vjp(lambda a: a.exp(), x, v),
        "jvp": F.jvp(lambda a: a.tanh(), x, v),
        "hvp": F.hvp(cube, x, v),
        "vhp": F.vhp(cube, x, v, create_graph=True),
    }


def flat(value):
    if isinstance(value, (tuple, list)):
        return [y for v in value for y in flat(v)]
    return [value]


def test_functional_through_a_session_matches_torch(session):
    s = session
    before = s.round_trips
    got = program(s)
    trips = s.round_trips - before
    want = program(torch)
    for key in want:
        g, w = flat(got[key]), flat(want[key])
        assert len(g) == len(w), key
        for a, b in zip(g, w):
            np.testing.assert_allclose(np.array(a.tolist()), b.detach().numpy(), rtol=1e-12,
                                       err_msg=key)
            assert (a.grad_fn is None) == (b.grad_fn is None), key
    # one round trip per autograd.grad: jacobian rows, the double-backward trick's two grads
    assert trips < 60, trips


def test_gradcheck_through_a_session(session):
    s = session
    x = s.tensor(A, dtype=s.float64, requires_grad=True)
    assert s.autograd.gradcheck(lambda a: a.sin() * a, (x,))
    assert s.autograd.gradgradcheck(lambda a: a.sin() * a, (x,))
    with pytest.raises(RuntimeError, match="Jacobian mismatch for output 0 with respect to "
                                           "input 0"):
        # a "function" whose values and gradients disagree: values of 2x, gradient of 3x
        s.autograd.gradcheck(lambda a: (a * 3) - (a * 1).detach(), (x,))


def test_functional_errors_through_a_session(session):
    s = session
    x = s.tensor(A, dtype=s.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="^The vector v can only be None if the user-provided"):
        s.autograd.functional.vjp(lambda a: a * 2, x)
    with pytest.raises(TypeError, match="must be either a Tensor or a tuple of Tensors"):
        s.autograd.functional.jacobian(lambda a: a, 3.0)


# --- custom autograd Functions through a session -------------------------------------------------

def _plain(value, lib):
    """An outcome in comparable form: tensors as (values, requires_grad, grad_fn name)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v, lib) for v in value]
    if isinstance(value, lib.Tensor):
        fn = value.grad_fn
        return (np.asarray(value.tolist()), value.requires_grad,
                None if fn is None else (fn.name() if lib is not torch else type(fn).__name__))
    return value


def _outcome(scenario, lib):
    try:
        return _plain(scenario(lib), lib)
    except (RuntimeError, TypeError, ValueError) as exc:
        kind = next(k.__name__ for k in type(exc).__mro__ if k.__module__ == "builtins")
        return ("raised", kind, str(exc))


def _assert_same(got, want, path="result"):
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {got!r} vs {want!r}"
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"{path}[{i}]")
    elif isinstance(want, tuple) and want and isinstance(want[0], np.ndarray):
        assert isinstance(got, tuple), f"{path}: {got!r} vs torch's {want!r}"
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6, err_msg=path)
        assert got[1:] == want[1:], f"{path}: {got[1:]} vs torch's {want[1:]}"
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9), f"{path}: {got!r} vs torch's {want!r}"
    else:
        assert got == want, f"{path}: {got!r} vs torch's {want!r}"


def same_remote(scenario, session):
    """Run `scenario(lib)` with torch and through `session`; assert the outcomes match."""
    want = _outcome(scenario, torch)
    got = _outcome(scenario, session)
    _assert_same(got, want)
    return got


def legendre(lib):
    class LegendrePolynomial3(lib.autograd.Function):
        @staticmethod
        def forward(ctx, input):
            ctx.save_for_backward(input)
            return 0.5 * (5 * input ** 3 - 3 * input)

        @staticmethod
        def backward(ctx, grad_output):
            input, = ctx.saved_tensors
            return grad_output * 1.5 * (5 * input ** 2 - 1)
    return LegendrePolynomial3


def training_loop(lib, steps, custom=True, trips=None):
    """The tutorial's program (float64, fewer points and steps); `trips` collects the round
    trips of each step when given."""
    import math
    x = lib.linspace(-math.pi, math.pi, 200, dtype=lib.float64)
    y = lib.sin(x)
    a, b, c, d = (lib.full((), v, dtype=lib.float64, requires_grad=True)
                  for v in (0.0, -1.0, 0.0, 0.3))
    P3 = legendre(lib).apply if custom else (lambda z: 0.5 * (5 * z ** 3 - 3 * z))
    losses = []
    for _ in range(steps):
        before = lib.round_trips if trips is not None else 0
        loss = (a + b * P3(c + d * x) - y).pow(2).sum()
        losses.append(loss.item())
        loss.backward()
        with lib.no_grad():
            for p in (a, b, c, d):
                p -= 5e-5 * p.grad
                p.grad = None
        if trips is not None:
            trips.append(lib.round_trips - before)
    return losses, [p.item() for p in (a, b, c, d)], P3(c + d * x)


def test_legendre_training_loop_through_a_session(session):
    got = same_remote(lambda lib: training_loop(lib, 30), session)
    assert got[2][2] == "LegendrePolynomial3Backward"


def test_a_custom_function_costs_one_round_trip_per_step(session):
    """Per step: loss.item(), backward, and the four `p.grad` reads of the update, as without
    a custom Function, plus one: the resume after the client ran LegendrePolynomial3.backward."""
    custom: list[int] = []
    plain: list[int] = []
    ahead: list[int] = []
    training_loop(session, 5, True, custom)
    training_loop(session, 5, False, ahead)
    # backward() reads gradients ahead only while no custom Function can suspend its pass:
    # compare with the plain loop without that
    session.read_ahead = False
    training_loop(session, 5, False, plain)
    assert custom == [p + 1 for p in plain], (custom, plain)
    # with it, the first `p.grad` read after a backward is free from the second step on (the
    # gradients read before are read ahead)
    assert ahead[0] <= plain[0] and all(a < p for a, p in zip(ahead[1:], plain[1:])), (
        ahead, plain)


def test_functions_with_ctx_features_through_a_session(session):
    def scenario(lib):
        seen = []

        class Scale(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x, k):
                ctx.k = k
                sq = x * x  # an intermediate saved for backward
                out = sq * k
                ctx.save_for_backward(x, out)
                return out

            @staticmethod
            def backward(ctx, g):
                x, out = ctx.saved_tensors
                seen.append(ctx.needs_input_grad)
                return 2 * x * g * ctx.k + 0 * out, None

        class Two(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.set_materialize_grads(False)
                return x * 2, x * 3

            @staticmethod
            def backward(ctx, g1, g2):
                seen.append((g1 is None, g2 is None))
                return g2 * 3 if g1 is None else g1 * 2 + g2 * 3

        class Mul(lib.autograd.Function):
            @staticmethod
            def forward(x, w):
                return x * w

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.save_for_backward(*inputs)

            @staticmethod
            def backward(ctx, g):
                x, w = ctx.saved_tensors
                return None, g * x  # None: no gradient for x

        x = lib.tensor([1.0, -2.0, 0.5], requires_grad=True)
        w = lib.tensor([3.0, 4.0, 5.0], requires_grad=True)
        y = Scale.apply(x, 3.0)
        p, q = Two.apply(x)
        z = Mul.apply(x, w)
        (y.sum() + q.sum() + z.sum()).backward()
        return y, p, q, z, x.grad, w.grad, seen
    same_remote(scenario, session)


def test_dirty_non_differentiable_and_returned_inputs_through_a_session(session):
    def scenario(lib):
        class Double_(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                x.mul_(2)
                ctx.mark_dirty(x)
                return x

            @staticmethod
            def backward(ctx, g):
                return g * 2

        class Top(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                v, i = x.max(0)
                ctx.mark_non_differentiable(i)
                return v, i

            @staticmethod
            def backward(ctx, gv, gi):
                return gv * lib.ones(3)

        class Ident(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x

            @staticmethod
            def backward(ctx, g):
                return g * 3

        x = lib.tensor([1.0, 3.0, 2.0], requires_grad=True)
        a = x * 1
        b = Double_.apply(a)
        v, i = Top.apply(x)
        e = Ident.apply(x)
        (b.sum() + v + e.sum()).backward()
        leaf = lib.tensor([1.0], requires_grad=True)
        refused = _outcome(lambda _: Double_.apply(leaf), lib)
        return b, v, i, e, x.grad, e.is_leaf, refused
    same_remote(scenario, session)


def test_double_backward_and_once_differentiable_through_a_session(session):
    def scenario(lib):
        P3 = legendre(lib).apply
        once = lib.autograd.function.once_differentiable

        class Sq(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x ** 2

            @staticmethod
            @once
            def backward(ctx, g):
                x, = ctx.saved_tensors
                return 2 * x * g
        x = lib.tensor([0.5, -1.0, 2.0], dtype=lib.float64, requires_grad=True)
        g, = lib.autograd.grad(P3(x).sum(), x, create_graph=True)
        gg, = lib.autograd.grad(g.sum(), x)
        v = lib.ones(3, dtype=lib.float64, requires_grad=True)
        h, = lib.autograd.grad(Sq.apply(x), x, v, create_graph=True)
        refused = _outcome(lambda _: h.sum().backward(), lib)
        return g, gg, h.detach(), refused
    same_remote(scenario, session)


@pytest.mark.parametrize("case", ["count", "shape", "non_tensor_input", "non_tensor_grad",
                                  "save_int", "version"])
def test_function_errors_through_a_session(session, case):
    def scenario(lib):
        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x, k):
                ctx.save_for_backward(3 if case == "save_int" else x)
                return x * k

            @staticmethod
            def backward(ctx, g):
                if case == "version":
                    _ = ctx.saved_tensors
                return {"count": (g,), "shape": (lib.ones(3), None),
                        "non_tensor_input": (g, g), "non_tensor_grad": (3.0, None),
                        "version": (g, None)}[case]
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        a = x * 1
        y = F.apply(a, 2.0)
        if case == "version":
            with lib.no_grad():
                a.add_(1)
        y.sum().backward()
    got = same_remote(scenario, session)
    assert got[0] == "raised"


def test_an_error_in_the_users_backward_keeps_its_line_and_the_session_works(session):
    class Broken(session.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            raise ValueError("user backward failed")
    x = session.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="user backward failed") as info:
        Broken.apply(x).sum().backward()
    assert any(e.name == "backward" and "raise ValueError" in str(e.statement)
               for e in info.traceback)
    P3 = legendre(session).apply
    y = P3(x)
    y.backward()
    assert x.grad.tolist() == pytest.approx([6.0])
    assert session.describe().tensor_count < 20


def test_function_contexts_are_forgotten_with_their_nodes(session):
    P3 = legendre(session).apply
    x = session.tensor([1.0, 2.0], requires_grad=True)
    for _ in range(5):
        P3(x).sum().backward()
    session.flush()
    session.describe()
    assert len(session._custom) <= 1


# --- the wire: every new field is validated by the server ----------------------------------------

def _fn(s, **fields):
    return s.pb.Instruction(apply_function=s.pb.ApplyFunction(**fields))


@pytest.mark.parametrize("case, text", [
    ("name", "name must be a Python identifier"),
    ("node", "node ids start at 1"),
    ("arg_kind", "an argument is a tensor handle or none"),
    ("results", "1 result handle(s) for 2 output(s)"),
    ("non_diff", "non_differentiable index 5 is not an output"),
    ("dirty", "dirty index 1 is not a tensor argument"),
    ("claim_none", "no backward pass is suspended"),
    ("resume_none", "no backward pass is suspended"),
])
def test_function_instructions_are_validated(gradserve_session, case, text):
    import grpc

    from tests.conftest import gradserve_value

    s = gradserve_session
    s.run(s.create(1, [1.0, 2.0], requires_grad=True),
          s.op("mul", [("h", 1), 2.0], [2], no_grad=True))
    good = dict(name="F", node=1, args=[gradserve_value(("h", 1))], outputs=[2], results=[3])
    bad = {
        "name": dict(good, name="not an identifier"), "node": dict(good, node=0),
        "arg_kind": dict(good, args=[gradserve_value(1.5)]),
        "results": dict(good, outputs=[2, 2]),
        "non_diff": dict(good, non_differentiable=[5]),
        "dirty": dict(good, dirty=[1]),
    }
    if case == "claim_none":
        ins = s.pb.Instruction(claim_gradients=s.pb.ClaimGradients(node=1, handles=[5]))
    elif case == "resume_none":
        ins = s.pb.Instruction(resume_backward=s.pb.ResumeBackward(node=1))
    else:
        ins = _fn(s, **bad[case])
    with pytest.raises(grpc.RpcError) as err:
        s.run(ins)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert text in err.value.details()


def test_a_suspended_pass_over_the_raw_wire(gradserve_session):
    """Backward suspends at the node; claim, the backward's op and resume finish it."""
    from tests.conftest import gradserve_value

    s = gradserve_session
    s.run(s.create(1, [1.0, 2.0], requires_grad=True),
          s.op("mul", [("h", 1), 2.0], [2], no_grad=True),
          _fn(s, name="Double", node=7, args=[gradserve_value(("h", 1))], outputs=[2], results=[3]),
          s.op("sum", [("h", 3)], [4]))
    r = s.run(s.backward(4)).results[0]
    assert r.suspended.node == 7 and list(r.suspended.grads[0].shape) == [2]
    assert list(r.suspended.needs_input_grad) == [True]
    wrong = s.pb.Instruction(claim_gradients=s.pb.ClaimGradients(node=8, handles=[5]))
    import grpc

    with pytest.raises(grpc.RpcError) as err:
        s.run(wrong)
    assert "waits for node 7, not node 8" in err.value.details()
    done = s.run(
        s.pb.Instruction(claim_gradients=s.pb.ClaimGradients(node=7, handles=[5])),
        s.op("mul", [("h", 5), 2.0], [6]),
        s.pb.Instruction(resume_backward=s.pb.ResumeBackward(node=7,
                                                             grads=[gradserve_value(("h", 6))])))
    assert done.results[2].WhichOneof("result") == "done"
    assert s.grad_of(1).tolist() == [2.0, 2.0]


# --- hooks through a session (their Python runs here) --------------------------------------------

def test_tensor_hooks_modify_inspect_and_remove_through_a_session(session):
    def scenario(lib):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        seen = []
        y = x * 2
        h = y.register_hook(lambda g: g * 10)
        y.register_hook(lambda g: seen.append(g.tolist()))
        y.retain_grad()
        (y ** 2).sum().backward()
        first = (x.grad, y.grad)
        h.remove()
        h.remove()
        x.grad = None
        y = x * 2
        y.retain_grad()
        (y ** 2).sum().backward()
        with x.register_hook(lambda g: g + 1):
            got = lib.autograd.grad((x * 3).sum(), x)
        return first, x.grad, y.grad, seen, got
    same_remote(scenario, session)


def test_post_accumulate_and_custom_function_hooks_through_a_session(session):
    def scenario(lib):
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        seen = []
        w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.tolist()))
        (w * w).sum().backward()
        (w * 3).sum().backward()
        P3 = legendre(lib).apply
        x = lib.tensor([0.5, 2.0], requires_grad=True)
        y = P3(x)
        y.register_hook(lambda g: g * 2)
        y.sum().backward()
        return seen, x.grad
    same_remote(scenario, session)


@pytest.mark.parametrize("bad", ["size", "dtype", "float", "no_grad", "post_non_leaf"])
def test_hook_errors_through_a_session(session, bad):
    def scenario(lib):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        if bad == "no_grad":
            return lib.tensor([1.0]).register_hook(lambda g: g)
        if bad == "post_non_leaf":
            return (x * 2).register_post_accumulate_grad_hook(print)
        y = x * 2
        y.register_hook({"size": lambda g: lib.ones(2), "dtype": lambda g: g.double(),
                         "float": lambda g: 3.0}[bad])
        y.sum().backward()
    got = same_remote(scenario, session)
    assert got[0] == "raised"


def test_retain_graph_and_a_second_backward_through_a_session(session):
    def scenario(lib):
        P3 = legendre(lib).apply
        x = lib.tensor([0.5, 2.0], requires_grad=True)
        y = P3(x).sum()
        y.backward(retain_graph=True)
        y.backward()
        twice = x.grad
        return twice, _outcome(lambda _: y.backward(), lib)
    got = same_remote(scenario, session)
    assert got[1][0] == "raised"


def test_node_pre_and_post_hooks_through_a_session(session):
    def scenario(lib):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        seen = []
        y = x * 2
        y.grad_fn.register_prehook(lambda go: (go[0] * 5,))
        y.grad_fn.register_hook(lambda gi, go: seen.append((gi, go)))
        y.sum().backward()
        first = x.grad
        x.grad = None
        y = x * 2
        y.grad_fn.register_hook(lambda gi, go: (gi[0] * 7, None))
        y.sum().backward()
        return first, x.grad, seen
    same_remote(scenario, session)


@pytest.mark.parametrize("bad", ["count", "none", "not_tuple"])
def test_node_hook_errors_through_a_session(session, bad):
    def scenario(lib):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x * 2
        if bad == "count":
            y.grad_fn.register_hook(lambda gi, go: (gi[0],))
        elif bad == "none":
            y.grad_fn.register_hook(lambda gi, go: (gi[0], gi[0]))
        else:
            y.grad_fn.register_prehook(lambda go: 5)
        y.sum().backward()
    got = same_remote(scenario, session)
    assert got[0] == "raised"
