"""Gaps an eighth set of public programs that extend autograd met through gradserve, each checked
against torch in the engine and through a session: `torch.autograd.backward` of several tensors
as one pass (a session sent one pass per tensor, so gradients meeting at a shared node were
summed in another order), `torch.utils.checkpoint`, `ctx.saved_variables`, `torch.nn.parameter`,
anomaly mode, the lifetime of saved-tensor hooks' packed objects, `x.data = y` of another shape
or dtype, and in-place rounding."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest

from tests.conftest import gradserve_error
from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _caught(run: Any, t: Any) -> Any:
    """`run(t)`, or how it failed: whether as a RuntimeError, and the message's first line."""
    try:
        return run(t)
    except Exception as exc:  # the comparison is of the error's kind and text
        return "raised", isinstance(exc, RuntimeError), str(exc).splitlines()[0]


# --- torch.autograd.backward of several tensors: one pass -------------------------------------

def _shared_losses(t: Any) -> Any:
    # three losses that meet at `h`: torch sums their gradients at h's node in one pass; one
    # pass per loss sums them into w.grad instead, which rounds differently
    t.manual_seed(0)
    w = t.randn(4, requires_grad=True)
    h = (w * 0.1).sin()
    losses = [(h * 3.3).sum(), (h * 0.7).exp().sum(), h.pow(2).mean()]
    t.autograd.backward(losses, [t.tensor(0.3), t.tensor(1.7), t.tensor(2.9)])
    return w.grad.tolist()


def test_several_tensors_are_one_pass(lib):
    assert _shared_losses(lib) == _shared_losses(torch)


def test_several_tensors_with_implicit_and_given_gradients(lib):
    def run(t: Any) -> Any:
        x = t.tensor([0.3, -1.2, 2.5], requires_grad=True)
        y = t.tanh(x * 1.7)
        z = (y * 0.41).exp()
        t.autograd.backward([z, y.sum(), y], [t.tensor([0.1, 0.7, 1.3]), None,
                                              t.tensor([2.2, -0.9, 0.33])])
        return x.grad.tolist()
    assert run(lib) == run(torch)


def test_several_tensors_with_retain_and_create_graph(lib):
    def run(t: Any) -> Any:
        x = t.tensor([0.5, 1.5], requires_grad=True)
        y = x.pow(3)
        t.autograd.backward([y.sum(), (y * 0.3).sum()], create_graph=True)
        g = x.grad
        out = [g.tolist(), g.requires_grad]
        x.grad = None
        g.sum().backward()
        out.append(x.grad.tolist())
        t.autograd.backward([y.sum(), y.mean()], retain_graph=True)
        t.autograd.backward([y.sum(), y.mean()])
        out.append(x.grad.tolist())
        return out
    assert run(lib) == run(torch)


def test_several_tensors_reach_a_custom_function_once(lib):
    def run(t: Any) -> Any:
        calls = []

        class Scale(t.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 2.5

            @staticmethod
            def backward(ctx, g):
                calls.append(g.tolist())
                return g * 2.5

        x = t.tensor([1.0, -2.0], requires_grad=True)
        y = Scale.apply(x)
        t.autograd.backward([y.sin().sum(), (y * 0.1).cos().sum()])
        return calls, x.grad.tolist()
    assert run(lib) == run(torch)


def test_several_tensors_with_inputs(lib):
    def run(t: Any) -> Any:
        a = t.tensor([1.0, 2.0], requires_grad=True)
        b = t.tensor([0.5, -1.0], requires_grad=True)
        h = a * b
        t.autograd.backward([h.sum(), (h * h).sum()], inputs=[a])
        return a.grad.tolist(), b.grad
    assert run(lib) == run(torch)


@pytest.mark.parametrize("grads", [
    lambda t: [t.tensor(1.0)],                       # fewer than the tensors
    lambda t: [t.tensor(1.0), None, t.tensor(3.0)],  # more: torch zips them
    lambda t: t.tensor(2.0),                         # one tensor for two
    lambda t: [None, None],
])
def test_gradient_count_as_torch(lib, grads):
    def run(t: Any) -> Any:
        a = t.tensor(1.5, requires_grad=True)
        t.autograd.backward([a * 2, a * 3], grads(t))
        return a.grad.item()
    assert _caught(run, lib) == _caught(run, torch)


def test_no_tensors_does_nothing(lib):
    def run(t: Any) -> Any:
        t.autograd.backward([])
        return "done"
    assert run(lib) == run(torch)


def test_root_without_grad_fn_is_named_by_its_position(lib):
    def run(t: Any) -> Any:
        a = t.tensor(1.5, requires_grad=True)
        t.autograd.backward([a * 2, t.tensor(1.0)])
    assert _caught(run, lib) == _caught(run, torch)


def test_an_older_server_gets_one_pass_per_tensor(gradserve_client):
    # a server that does not list "backward_roots" would ignore more_tensors: the client then
    # sends one Backward per tensor, as before
    with gradserve_client.session() as s:
        s._backward_roots = False
        x = s.tensor([1.0, 2.0], requires_grad=True)
        y = x * x
        s.autograd.backward([y.sum(), (y * 2).sum()])
        assert x.grad.tolist() == [6.0, 12.0]


def test_wire_more_gradients_count_is_checked(gradserve_session):
    from gradserve.server import codec
    from gradserve.v1 import graph_pb2
    from gradserve.v1 import session_pb2 as pb

    s = gradserve_session
    s.run(s.create(1, np.array([1.0, 2.0], np.float32), requires_grad=True),
          s.op("sum", [("h", 1)], [2]), s.op("mul", [("h", 1), 3.0], [3]))
    one = graph_pb2.Value(float_scalar=1.0)
    with pytest.raises(grpc.RpcError) as err:
        s.run(pb.Instruction(backward=pb.Backward(tensor=2, more_tensors=[3],
                                                  more_gradients=[one, one])))
    code, text, _ = gradserve_error(err)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "2 more_gradients for 1 more_tensors" in text
    grad = graph_pb2.Value(constant=codec.encode_array(np.array([0.5, 2.0], np.float32)))
    s.run(pb.Instruction(backward=pb.Backward(tensor=2, more_tensors=[3], more_gradients=[grad])))
    r = s.run(pb.Instruction(fetch=pb.Fetch(handle=1, grad=True, grad_repr=True)))
    assert r.results[0].fetch.grad_repr == "tensor([2.5000, 7.0000])"


# --- torch.utils.checkpoint ----------------------------------------------------------------------

def _checkpointed(t: Any, use_reentrant: bool, preserve: bool = True) -> Any:
    # a parameter used inside and outside the checkpoint (the reentrant variant's inner pass
    # accumulates into its .grad apart from the outer one), dropout inside (the recomputation
    # must draw the same mask)
    t.manual_seed(0)
    lin1, lin2, lin3 = t.nn.Linear(5, 5), t.nn.Linear(5, 5), t.nn.Linear(5, 2)
    x = t.randn(3, 5, requires_grad=True)

    def segment(h: Any) -> Any:
        return t.tanh(lin2(t.nn.functional.dropout(t.relu(lin1(h)), 0.3)))

    h = t.utils.checkpoint.checkpoint(segment, x, use_reentrant=use_reentrant,
                                      preserve_rng_state=preserve)
    (lin3(h) + lin1(x).sum()).sum().backward()
    return (h.grad_fn.name(), h.tolist(), x.grad.tolist(), lin1.weight.grad.tolist(),
            lin2.bias.grad.tolist())


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_checkpoint_gives_torchs_values_gradients_and_node(lib, use_reentrant):
    assert _checkpointed(lib, use_reentrant) == _checkpointed(torch, use_reentrant)


def test_checkpoint_sequential_as_torch(lib):
    def run(t: Any) -> Any:
        t.manual_seed(0)
        model = t.nn.Sequential(t.nn.Linear(6, 5), t.nn.ReLU(), t.nn.Linear(5, 4), t.nn.Tanh(),
                                t.nn.Linear(4, 2))
        x = t.randn(2, 6, requires_grad=True)
        out = t.utils.checkpoint.checkpoint_sequential(model, 2, x, use_reentrant=False)
        out.sum().backward()
        return out.grad_fn.name(), x.grad.tolist(), model[0].weight.grad.tolist()
    assert run(lib) == run(torch)


def test_checkpoint_warnings_and_refusals_as_torch(lib):
    def run(t: Any) -> Any:
        out = []
        x = t.tensor([1.0, 2.0], requires_grad=True)
        with pytest.warns(UserWarning) as rec:
            y = t.utils.checkpoint.checkpoint(lambda a: a * 2, x)
        out.append([str(w.message) for w in rec])
        out.append(y.grad_fn.name())
        with pytest.warns(UserWarning) as rec:
            t.utils.checkpoint.checkpoint(lambda a: a * 2, t.tensor([1.0]), use_reentrant=True)
        out.append([str(w.message) for w in rec])
        for kwargs in ({"use_reentrant": True, "extra": 1}, {"use_reentrant": True, "debug": True}):
            try:
                t.utils.checkpoint.checkpoint(lambda a: a, x, **kwargs)
            except ValueError as exc:
                out.append(str(exc))
        return out
    assert run(lib) == run(torch)


# --- small names programs use ----------------------------------------------------------------

def test_ctx_saved_variables_warns_and_gives_saved_tensors(lib):
    def run(t: Any) -> Any:
        seen = []

        class Swish(t.autograd.Function):
            @staticmethod
            def forward(ctx, i):
                ctx.save_for_backward(i)
                return i * t.sigmoid(i)

            @staticmethod
            def backward(ctx, grad_output):
                with pytest.warns(DeprecationWarning) as rec:
                    i = ctx.saved_variables[0]
                seen.append(str(rec[0].message))
                s = t.sigmoid(i)
                return grad_output * (s * (1 + i * (1 - s)))

        x = t.tensor([0.5, -1.5, 2.0], requires_grad=True)
        Swish.apply(x).sum().backward()
        return seen, x.grad.tolist()
    assert run(lib) == run(torch)


def test_nn_parameter_namespace(lib):
    def run(t: Any) -> Any:
        p = t.nn.parameter.Parameter(t.ones(2))
        return (isinstance(p, t.nn.Parameter), p.requires_grad,
                t.nn.parameter.Parameter is t.nn.Parameter,
                hasattr(t.nn.parameter, "UninitializedParameter"))
    assert run(lib) == run(torch)


# --- anomaly mode --------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["backward", "grad", "custom", "off", "no_check_nan"])
def test_anomaly_mode_refuses_nan_gradients_as_torch(lib, how):
    def run(t: Any) -> Any:
        class Half(t.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 0.5

            @staticmethod
            def backward(ctx, g):
                return g * float("nan")

        x = t.tensor([0.0, 1.0, 4.0], requires_grad=True)
        mode = t.autograd.set_detect_anomaly(how != "off", check_nan=how != "no_check_nan")
        with mode:
            state = (t.is_anomaly_enabled(), t.is_anomaly_check_nan_enabled())
            try:
                if how == "custom":
                    (Half.apply(x) * 2).sum().backward()
                    got = x.grad.tolist()
                elif how == "grad":
                    got = t.autograd.grad((t.sqrt(x) * 0.0).sum(), x)[0].tolist()
                else:
                    (t.sqrt(x) * 0.0).sum().backward()
                    got = x.grad.tolist()
            except RuntimeError as exc:
                got = str(exc)
        return state, str(got), t.is_anomaly_enabled()
    assert run(lib) == run(torch)


def test_detect_anomaly_warns_and_restores(lib):
    def run(t: Any) -> Any:
        with pytest.warns(UserWarning) as rec:
            mode = t.autograd.detect_anomaly()
        states = [t.is_anomaly_enabled()]
        with mode:
            states.append((t.is_anomaly_enabled(), t.is_anomaly_check_nan_enabled()))
            x = t.tensor([-1.0, 2.0], requires_grad=True)
            try:
                t.log(x).sum().backward()
                states.append(x.grad.tolist())
            except RuntimeError as exc:
                states.append(str(exc))
        states.append(t.is_anomaly_enabled())
        return [str(w.message) for w in rec], states
    assert run(lib) == run(torch)


# --- saved-tensor hooks: packed objects live as long as the saved tensors ----------------------

@pytest.mark.parametrize("retain", [False, True])
def test_packed_objects_are_dropped_when_backward_frees_the_graph(lib, retain):
    # the saved-tensor hooks tutorial's SelfDeletingTempFile: the packed object's __del__ runs
    # when backward frees the saved tensors, while the node itself lives on (out.grad_fn)
    def run(t: Any) -> Any:
        log: list[str] = []

        class Packed:
            def __init__(self, x: Any) -> None:
                self.x = x.detach().clone()

            def __del__(self) -> None:
                log.append("deleted")

        x = t.tensor([0.5, -1.0, 2.0], requires_grad=True)
        with t.autograd.graph.saved_tensors_hooks(Packed, lambda p: p.x):
            h = t.tanh(x * 1.5)
        out = (h * 2).sum()
        out.backward(retain_graph=retain)
        seen = list(log)
        out = h = None
        return seen, x.grad.tolist()
    assert run(lib) == run(torch)


# --- `x.data = y` of another shape or dtype --------------------------------------------------

def test_data_of_another_shape_is_taken_with_autograd_state_kept(lib):
    # an LSQ quantizer's lazy init: `self.step.data = torch.ones(n, 1)` on a (1, 1) Parameter
    def run(t: Any) -> Any:
        step = t.nn.Parameter(t.ones(1, 1))
        version = step._version
        step.data = t.tensor([[0.5], [0.25], [2.0]])
        out = [list(step.shape), step.requires_grad, step.is_leaf, step._version == version,
               repr(step)]
        x = t.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
        (x / step).sum().backward()
        out.append(step.grad.tolist())
        with t.no_grad():
            step.data = t.zeros(2, dtype=t.float64)
        out += [step.dtype == t.float64, step.tolist(), step.grad.tolist()]
        return out
    assert run(lib) == run(torch)


def test_data_refusals_as_torch(lib):
    def run(t: Any) -> Any:
        x = t.ones(2, requires_grad=True)
        try:
            x.data = t.tensor([1, 2, 3])
        except RuntimeError as exc:
            return str(exc), x.tolist(), x.dtype == t.float32
    assert run(lib) == run(torch)


# --- in-place rounding (a quantizer's `x_clamped.round_()`) ----------------------------------

@pytest.mark.parametrize("name", ["round_", "floor_", "ceil_", "sign_"])
def test_inplace_rounding_as_torch(lib, name):
    def run(t: Any) -> Any:
        x = t.tensor([1.4, -2.6, 0.5, 2.5], requires_grad=True)
        y = x * 1.0
        r = getattr(y, name)()
        out = [r is y, y.tolist(), y.grad_fn.name(), y._version]
        y.sum().backward()
        out.append(x.grad.tolist())
        i = t.tensor([3, -2, 0])
        out.append(getattr(i, name)().tolist())
        try:  # (a session reports it at the next read, as for every in-place op)
            z = t.tensor([1.5], requires_grad=True)
            getattr(z, name)()
            z.tolist()
        except RuntimeError as exc:
            out.append(str(exc))
        return out
    assert run(lib) == run(torch)


def test_lsq_function_with_setup_context_and_unmaterialized_grads(lib):
    # a learned-step-size quantizer: forward without ctx, three outputs of which two are only
    # saved, set_materialize_grads(False), round_ inside forward
    def run(t: Any) -> Any:
        class LSQ(t.autograd.Function):
            @staticmethod
            def forward(x, step, lo, hi):
                scaled = x / step
                clamped = t.clamp(scaled, lo, hi)
                mask = clamped == scaled
                rounded = clamped.round_()
                return rounded * step, mask, rounded

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.step_shape = inputs[1].shape
                ctx.save_for_backward(*output[1:])
                ctx.set_materialize_grads(False)

            @staticmethod
            def backward(ctx, grad_output, *ignored):
                if grad_output is None:
                    return None, None, None, None
                mask, mult = ctx.saved_tensors
                dims = tuple(i for i, n in enumerate(ctx.step_shape) if n == 1) or None
                return (grad_output * mask, t.sum(mult * grad_output, keepdim=True, dim=dims),
                        None, None)

        w = t.tensor([[0.3, -1.7, 2.2], [0.9, 0.05, -0.4]], requires_grad=True)
        step = t.tensor([[0.5], [0.25]], requires_grad=True)
        q, mask, _ = LSQ.apply(w, step, -4, 3)
        (q * t.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])).sum().backward()
        return q.tolist(), mask.tolist(), w.grad.tolist(), step.grad.tolist()
    assert run(lib) == run(torch)
