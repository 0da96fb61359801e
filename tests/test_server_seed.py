"""The seed walkthrough's steps through the session batch call, compared with real torch."""

import numpy as np

from tests.conftest import gradserve_error
from tests.reference import torch


def h(n):
    return ("h", n)


def test_square_then_backward(gradserve_session):
    s = gradserve_session
    x_t = torch.tensor(3.0, requires_grad=True)
    y_t = x_t**2
    y_t.backward()
    resp = s.run(s.create(1, 3.0, requires_grad=True), s.op("pow", [h(1), 2], [2]),
                 s.backward(2), s.fetch(1, grad=True), s.fetch(2))
    x_info = resp.results[0].handles.tensors[0]
    assert x_info.requires_grad and x_info.is_leaf and x_info.grad_fn == ""
    y_info = resp.results[1].handles.tensors[0]
    assert y_info.grad_fn == y_t.grad_fn.name() == "PowBackward0"
    assert not y_info.is_leaf and list(y_info.shape) == []
    np.testing.assert_array_equal(s.grad_of(1), x_t.grad.numpy())
    np.testing.assert_array_equal(s.value_of(2), y_t.detach().numpy())


def test_chain_rule_sin_of_square(gradserve_session):
    s = gradserve_session
    x_t = torch.tensor(3.0, requires_grad=True)
    z_t = torch.sin(x_t**2)
    z_t.backward()
    resp = s.run(s.create(1, 3.0, requires_grad=True), s.op("pow", [h(1), 2], [2]),
                 s.op("sin", [h(2)], [3]), s.backward(3), s.fetch(3), s.fetch(1, grad=True))
    assert resp.results[2].handles.tensors[0].grad_fn == "SinBackward0"
    np.testing.assert_allclose(s.value_of(3), z_t.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(s.grad_of(1), x_t.grad.numpy(), rtol=1e-6)


def _bce_torch(y_pred, y_true):
    y_pred = torch.clamp(y_pred, 1e-8, 1 - 1e-8)
    return -(y_true * torch.log(y_pred) + (1 - y_true) * torch.log(1 - y_pred))


def test_one_neuron_sigmoid_bce(gradserve_session):
    s = gradserve_session
    x_t, y_t = torch.tensor(6.7), torch.tensor(0.0)
    w_t = torch.tensor(1.0, requires_grad=True)
    b_t = torch.tensor(0.0, requires_grad=True)
    loss_t = _bce_torch(torch.sigmoid(w_t * x_t + b_t), y_t)
    loss_t.backward()

    eps = 1e-8
    resp = s.run(
        s.create(1, 6.7), s.create(2, 0.0), s.create(3, 1.0, requires_grad=True),
        s.create(4, 0.0, requires_grad=True),
        s.op("mul", [h(3), h(1)], [5]), s.op("add", [h(5), h(4)], [6]),      # z = w*x + b
        s.op("sigmoid", [h(6)], [7]),                                       # y_pred
        s.op("clamp", [h(7), eps, 1 - eps], [8]),
        s.op("log", [h(8)], [9]), s.op("mul", [h(2), h(9)], [10]),           # y*log(p)
        s.op("sub", [1, h(2)], [11]), s.op("sub", [1, h(8)], [12]),          # 1-y, 1-p
        s.op("log", [h(12)], [13]), s.op("mul", [h(11), h(13)], [14]),
        s.op("add", [h(10), h(14)], [15]), s.op("neg", [h(15)], [16]),       # loss
        s.backward(16), s.fetch(16), s.fetch(3, grad=True), s.fetch(4, grad=True))
    names = [r.handles.tensors[0].grad_fn for r in resp.results[4:7]] + \
        [resp.results[15].handles.tensors[0].grad_fn]
    assert names == ["MulBackward0", "AddBackward0", "SigmoidBackward0", "NegBackward0"]
    np.testing.assert_allclose(s.value_of(16), loss_t.detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(s.grad_of(3), w_t.grad.numpy(), rtol=1e-5)
    np.testing.assert_allclose(s.grad_of(4), b_t.grad.numpy(), rtol=1e-5)


def test_vector_mean(gradserve_session):
    s = gradserve_session
    x_t = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y_t = (x_t**2).mean()
    y_t.backward()
    resp = s.run(s.create(1, [1.0, 2.0, 3.0], requires_grad=True), s.op("pow", [h(1), 2], [2]),
                 s.op("mean", [h(2)], [3]), s.backward(3))
    assert resp.results[2].handles.tensors[0].grad_fn == "MeanBackward0"
    np.testing.assert_allclose(s.value_of(3), y_t.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(s.grad_of(1), x_t.grad.numpy(), rtol=1e-6)
    assert s.grad_of(1).dtype == np.float32


def test_accumulation_then_zero(gradserve_session):
    s = gradserve_session
    x_t = torch.tensor(2.0, requires_grad=True)
    expected = []
    for _ in range(6):
        (x_t**2).backward()
        expected.append(x_t.grad.item())
    s.run(s.create(1, 2.0, requires_grad=True))
    got = []
    for i in range(6):
        s.run(s.op("pow", [h(1), 2], [10 + i]), s.backward(10 + i), s.release(10 + i))
        got.append(float(s.grad_of(1)))
    assert got == expected  # 4, 8, 12, 16, 20, 24
    x_t.grad.zero_()
    s.run(s.pb.Instruction(zero_grad=s.pb.ZeroGrad(handles=[1])))
    assert float(s.grad_of(1)) == x_t.grad.item() == 0.0


def test_x_grad_zero_through_a_grad_handle(gradserve_session):
    s = gradserve_session
    s.run(s.create(1, 2.0, requires_grad=True), s.op("pow", [h(1), 2], [2]), s.backward(2))
    resp = s.run(s.pb.Instruction(get_grad=s.pb.GetGrad(handle=1, result=3)),
                 s.inplace("zero_", 3))
    assert list(resp.results[0].handles.tensors[0].shape) == []
    assert float(s.grad_of(1)) == 0.0  # the handle aliases x.grad itself


def test_requires_grad_false_detach_and_no_grad(gradserve_session):
    s = gradserve_session
    resp = s.run(s.create(1, 2.0, requires_grad=True),
                 s.pb.Instruction(set_requires_grad=s.pb.SetRequiresGrad(handle=1,
                                                                        requires_grad=False)))
    assert resp.results[1].handles.tensors[0].requires_grad is False

    x_t = torch.tensor(2.0, requires_grad=True)
    z_t = x_t.detach()
    (x_t**2).backward()
    resp = s.run(s.create(2, 2.0, requires_grad=True),
                 s.pb.Instruction(detach=s.pb.Detach(handle=2, result=3)),
                 s.op("pow", [h(2), 2], [4]), s.backward(4), s.op("pow", [h(3), 2], [5]))
    assert resp.results[1].handles.tensors[0].requires_grad is False
    np.testing.assert_array_equal(s.grad_of(2), x_t.grad.numpy())
    # y = z**2; y.backward() fails as in torch: z is detached
    import grpc
    import pytest

    y_t = z_t**2
    with pytest.raises(RuntimeError) as torch_err:
        y_t.backward()
    with pytest.raises(grpc.RpcError) as err:
        s.run(s.backward(5))
    code, message, meta = gradserve_error(err)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert message == str(torch_err.value)
    assert meta["gradserve-error-type"] == "RuntimeError"
    assert meta["gradserve-failed-instruction"] == "0"

    resp = s.run(s.op("pow", [h(2), 2], [6]), s.op("pow", [h(2), 2], [7], no_grad=True))
    assert resp.results[0].handles.tensors[0].grad_fn == "PowBackward0"
    assert resp.results[1].handles.tensors[0].grad_fn == ""
    assert resp.results[1].handles.tensors[0].requires_grad is False
