"""torch.nn in process (gradserve.engine.nn, written in gradserve.surface.nn) against torch.nn:
modules built alike print alike, name and shape their parameters alike, and from torch's
weights compute torch's values and gradients; the Module API's rules and error texts; init,
utils, and a training loop. The same module and loss cases run through a session in
tests/test_client_nn.py."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from tests import nn_cases
from tests.nn_cases import np_of
from tests.reference import raises_like, torch

nn = ge.nn


@pytest.mark.parametrize("case", list(nn_cases.MODULES))
def test_module_matches_torch(case: str):
    nn_cases.check_module(ge, case)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", list(nn_cases.LOSSES))
def test_loss_matches_torch(case: str, reduction: str):
    nn_cases.check_loss(ge, case, reduction)


@pytest.mark.parametrize("case", list(nn_cases.BATCH_NORMS))
def test_batch_norm_matches_torch(case: str):
    nn_cases.check_batch_norm(ge, case)


def test_cnn_training_loop_matches_torch():
    nn_cases.check_cnn_training(ge)


def test_training_loop_matches_torch():
    nn_cases.check_training(ge)


# --- Parameter -----------------------------------------------------------------------------------

def test_parameter_is_a_leaf_that_requires_grad_and_prints_as_torch():
    data = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
    p, q = nn.Parameter(ge.tensor(data)), torch.nn.Parameter(torch.tensor(data))
    assert repr(p) == repr(q) and str(p) == str(q)
    assert isinstance(p, nn.Parameter) and isinstance(p, ge.Tensor)
    assert p.is_leaf and p.requires_grad
    assert not isinstance(p * 2, nn.Parameter) and not isinstance(p.detach(), nn.Parameter)
    assert not isinstance(ge.tensor(data), nn.Parameter)
    frozen = nn.Parameter(ge.tensor(data), requires_grad=False)
    assert repr(frozen) == repr(torch.nn.Parameter(torch.tensor(data), requires_grad=False))
    assert tuple(nn.Parameter().shape) == tuple(torch.nn.Parameter().shape)
    raises_like(lambda: nn.Parameter([1.0]), lambda: torch.nn.Parameter([1.0]))
    raises_like(lambda: nn.Parameter(ge.tensor([1, 2])),
                 lambda: torch.nn.Parameter(torch.tensor([1, 2])))
    ints = nn.Parameter(ge.tensor([1, 2]), requires_grad=False)
    assert repr(ints) == repr(torch.nn.Parameter(torch.tensor([1, 2]), requires_grad=False))


# --- the Module API ------------------------------------------------------------------------------

def _pair(build: Any) -> tuple[Any, Any]:
    return build(ge), build(torch)


def test_parameters_deduplicate_shared_modules_and_recurse_on_request():
    def build(t: Any) -> Any:
        shared = t.nn.Linear(2, 2)
        return t.nn.Sequential(shared, t.nn.ReLU(), shared, t.nn.Linear(2, 1))

    ours, theirs = _pair(build)
    assert repr(ours) == repr(theirs)
    for method in ("named_parameters", "named_modules", "named_children", "named_buffers"):
        assert [n for n, _ in getattr(ours, method)()] == [
            n for n, _ in getattr(theirs, method)()], method
    assert [n for n, _ in ours.named_parameters(remove_duplicate=False)] == [
        n for n, _ in theirs.named_parameters(remove_duplicate=False)]
    assert [n for n, _ in ours.named_parameters(prefix="m", recurse=False)] == []
    assert len(list(ours.parameters())) == len(list(theirs.parameters())) == 4
    assert len(list(ours.modules())) == len(list(theirs.modules()))
    assert len(list(ours.children())) == len(list(theirs.children()))
    assert [n for n, _ in ours[0].named_parameters(prefix="first")] == [
        "first.weight", "first.bias"]


def test_setattr_getattr_delattr_track_parameters_modules_and_buffers():
    def build(t: Any) -> Any:
        m = t.nn.Module()
        m.w = t.nn.Parameter(t.ones(2))
        m.child = t.nn.Tanh()
        m.register_buffer("running", t.zeros(2))
        m.register_buffer("scratch", t.zeros(1), persistent=False)
        m.plain = 3
        return m

    ours, theirs = _pair(build)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["w", "running"]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert repr(ours) == repr(theirs)
    assert ours.plain == 3 and isinstance(ours.child, nn.Tanh)
    for name in ("w", "child", "running"):
        delattr(ours, name)
        delattr(theirs, name)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == []
    assert repr(ours) == repr(theirs) == "Module()"
    raises_like(lambda: ours.missing, lambda: theirs.missing)


@pytest.mark.parametrize("action", [
    "tensor_as_parameter", "int_as_module", "int_as_buffer", "buffer_dotted", "buffer_empty",
    "buffer_taken", "parameter_not_parameter", "parameter_non_leaf", "module_not_module",
    "module_dotted", "before_init", "module_name_int", "to_int_dtype", "train_not_bool",
    "unknown_kwarg"])
def test_module_errors_match_torch(action: str):
    def act(t: Any) -> Any:
        m = t.nn.Linear(2, 3)
        m.register_buffer("buf", t.zeros(1))
        if action == "tensor_as_parameter":
            m.weight = t.zeros(3, 2)
        elif action == "int_as_module":
            outer = t.nn.Sequential(m)
            setattr(outer, "0", 5)
        elif action == "int_as_buffer":
            m.buf = 5
        elif action == "buffer_dotted":
            m.register_buffer("a.b", t.zeros(1))
        elif action == "buffer_empty":
            m.register_buffer("", t.zeros(1))
        elif action == "buffer_taken":
            m.register_buffer("weight", t.zeros(1))
        elif action == "parameter_not_parameter":
            m.register_parameter("extra", t.zeros(1))
        elif action == "parameter_non_leaf":
            p = t.nn.Parameter(t.zeros(1))
            m.register_parameter("extra", (p * 2).detach().requires_grad_() * 2)
        elif action == "module_not_module":
            m.add_module("x", 5)
        elif action == "module_dotted":
            m.add_module("a.b", t.nn.ReLU())
        elif action == "before_init":
            class Early(t.nn.Module):
                def __init__(self) -> None:
                    self.p = t.nn.Parameter(t.zeros(1))
            Early()
        elif action == "module_name_int":
            m.add_module(1, t.nn.ReLU())
        elif action == "to_int_dtype":
            m.to(t.int64)
        elif action == "train_not_bool":
            m.train("yes")
        elif action == "unknown_kwarg":
            t.nn.Module(foo=1)

    raises_like(lambda: act(ge), lambda: act(torch))


def test_load_state_dict_reports_keys_and_mismatches_as_torch():
    def build(t: Any) -> Any:
        return t.nn.Sequential(t.nn.Linear(2, 3), t.nn.Linear(3, 1))

    ours, theirs = _pair(build)
    sd = {k: v.detach().numpy() for k, v in theirs.state_dict().items()}

    def load(t: Any, model: Any, drop: str | None = None, extra: str | None = None,
             strict: bool = True, reshape: str | None = None) -> Any:
        state = {k: t.tensor(v) for k, v in sd.items() if k != drop}
        if extra:
            state[extra] = t.zeros(1)
        if reshape:
            state[reshape] = t.zeros(7)
        return model.load_state_dict(state, strict=strict)

    for kwargs in ({"drop": "1.bias"}, {"extra": "2.weight"}, {"extra": "0.other"},
                   {"drop": "0.weight", "extra": "junk"}, {"reshape": "0.bias"},
                   {"reshape": "1.weight", "drop": "0.bias"}):
        raises_like(lambda kw=kwargs: load(ge, ours, **kw),  # type: ignore[misc]
                     lambda kw=kwargs: load(torch, theirs, **kw))  # type: ignore[misc]
    result = load(ge, ours, drop="1.bias", extra="junk", strict=False)
    want = load(torch, theirs, drop="1.bias", extra="junk", strict=False)
    assert result.missing_keys == want.missing_keys and result.unexpected_keys == (
        want.unexpected_keys)
    assert repr(load(ge, ours)) == repr(load(torch, theirs))
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_array_equal(np_of(p), np_of(q), err_msg=name)
    raises_like(lambda: ours.load_state_dict([1]), lambda: theirs.load_state_dict([1]))
    raises_like(lambda: ours.load_state_dict({"0.weight": 1}, strict=False),
                 lambda: theirs.load_state_dict({"0.weight": 1}, strict=False))


def test_state_dict_is_detached_and_keep_vars_keeps_the_parameters():
    m = nn.Linear(2, 1)
    sd = m.state_dict()
    assert not sd["weight"].requires_grad and not isinstance(sd["weight"], nn.Parameter)
    assert m.state_dict(keep_vars=True)["weight"] is m.weight
    assert list(m.state_dict(prefix="lin.")) == ["lin.weight", "lin.bias"]


def test_train_eval_zero_grad_requires_grad_and_apply():
    m = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.Sequential(nn.ReLU()))
    assert all(x.training for x in m.modules())
    assert m.eval() is m and not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    m(ge.ones(3, 2)).sum().backward()
    assert m[0].weight.grad is not None
    m.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(np_of(m[0].weight.grad), np.zeros((2, 2), np.float32))
    m.zero_grad()
    assert m[0].weight.grad is None
    assert m.requires_grad_(False) is m and not any(p.requires_grad for p in m.parameters())
    seen: list[str] = []
    m.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen == ["Linear", "Dropout", "ReLU", "Sequential", "Sequential"]


def test_to_double_and_float_convert_floating_parameters_and_buffers():
    m = nn.Linear(2, 1)
    m.register_buffer("steps", ge.tensor([3]))
    before, weight = m.weight.tolist(), m.weight
    m(ge.ones(1, 2)).sum().backward()
    m.double()
    assert m.weight is weight and m.weight.grad.dtype is ge.float64  # torch keeps the objects
    assert m.weight.dtype is ge.float64 and isinstance(m.weight, nn.Parameter)
    assert m.weight.requires_grad and m.steps.dtype is ge.int64
    np.testing.assert_allclose(m.weight.tolist(), before, rtol=1e-7)
    assert m.to(ge.float32) is m and m.bias.dtype is ge.float32
    assert m.to("cpu") is m and m.cpu() is m
    assert m.to(ge.zeros(1, dtype=ge.float64)).weight.dtype is ge.float64
    assert m.float().weight.dtype is ge.float32


def test_forward_missing_and_custom_extra_repr():
    torch.nn.Module()  # without torch: skip here (subclassing its stand-in does not)

    class Bare(nn.Module):
        pass

    class TBare(torch.nn.Module):
        pass

    TBare.__name__ = "Bare"  # torch's message names the class
    raises_like(lambda: Bare()(1), lambda: TBare()(1))

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(2, 2)

        def extra_repr(self) -> str:
            return "k=2\nmode=fast"

    class TScaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = torch.nn.Linear(2, 2)

        def extra_repr(self) -> str:
            return "k=2\nmode=fast"

    assert repr(Scaled()).replace("Scaled", "T") == repr(TScaled()).replace("TScaled", "T")


# --- containers ----------------------------------------------------------------------------------

def test_sequential_indexing_slicing_len_append_delete():
    def build(t: Any) -> Any:
        return t.nn.Sequential(t.nn.Linear(2, 3), t.nn.ReLU(), t.nn.Linear(3, 1), t.nn.Tanh())

    ours, theirs = _pair(build)
    assert len(ours) == len(theirs) == 4
    assert repr(ours[1:3]) == repr(theirs[1:3]) and repr(ours[-1]) == repr(theirs[-1])
    assert isinstance(ours[1:], nn.Sequential)
    raises_like(lambda: ours[7], lambda: theirs[7])
    ours.append(nn.Sigmoid())
    theirs.append(torch.nn.Sigmoid())
    del ours[1]
    del theirs[1]
    assert repr(ours) == repr(theirs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    ours.insert(0, nn.Identity())
    theirs.insert(0, torch.nn.Identity())
    ours[1] = nn.ReLU()
    theirs[1] = torch.nn.ReLU()
    assert repr(ours) == repr(theirs)
    assert repr(ours + nn.Sequential(nn.ELU())) == repr(theirs + torch.nn.Sequential(
        torch.nn.ELU()))


def test_module_list_and_dict():
    def build(t: Any) -> Any:
        return t.nn.ModuleList([t.nn.Linear(2, 2), t.nn.Linear(2, 2), t.nn.ReLU(),
                                t.nn.Linear(2, 2)])

    ours, theirs = _pair(build)
    assert repr(ours) == repr(theirs)  # "(0-1): 2 x Linear(...)"
    assert repr(ours[1:]) == repr(theirs[1:]) and len(ours) == 4
    ours += [nn.Tanh(), nn.Tanh()]
    theirs += [torch.nn.Tanh(), torch.nn.Tanh()]
    del ours[0]
    del theirs[0]
    assert repr(ours) == repr(theirs)
    assert repr(nn.ModuleList()) == repr(torch.nn.ModuleList())
    d, td = (nn.ModuleDict({"b": nn.ReLU(), "a": nn.Linear(1, 1)}),
             torch.nn.ModuleDict({"b": torch.nn.ReLU(), "a": torch.nn.Linear(1, 1)}))
    assert repr(d) == repr(td) and list(d) == list(td) == ["b", "a"] and "a" in d
    d["c"] = nn.Tanh()
    td["c"] = torch.nn.Tanh()
    assert repr(d.pop("b")) == repr(td.pop("b")) and list(d.keys()) == list(td.keys())
    assert [n for n, _ in d.named_parameters()] == [n for n, _ in td.named_parameters()]


# --- functional ----------------------------------------------------------------------------------

def test_functional_dropout_embedding_layer_norm_errors_match_torch():
    F, TF = nn.functional, torch.nn.functional
    x, tx = ge.zeros(2, 3), torch.zeros(2, 3)
    raises_like(lambda: F.dropout(x, 1.5), lambda: TF.dropout(tx, 1.5))
    raises_like(lambda: F.layer_norm(x, (4,)), lambda: TF.layer_norm(tx, (4,)))
    raises_like(lambda: F.mse_loss(x, x, reduction="avg"),
                 lambda: TF.mse_loss(tx, tx, reduction="avg"))
    raises_like(lambda: nn.Dropout(-0.1), lambda: torch.nn.Dropout(-0.1))
    raises_like(lambda: nn.Embedding(3, 2, padding_idx=5),
                 lambda: torch.nn.Embedding(3, 2, padding_idx=5))
    assert F.dropout(x, 0.5, training=False) is x


def test_dropout_keeps_about_one_minus_p_and_scales():
    x = ge.ones(2000, requires_grad=True)
    y = nn.functional.dropout(x, 0.25)
    kept = np_of(y) != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(np_of(y)[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(np_of(x.grad), np_of(y), rtol=1e-6)
    np.testing.assert_array_equal(np_of(nn.functional.dropout(x, 1.0)), np.zeros(2000))


def test_embedding_padding_row_gets_no_gradient_and_starts_at_zero():
    emb, ref = nn.Embedding(5, 2, padding_idx=-1), torch.nn.Embedding(5, 2, padding_idx=-1)
    assert emb.padding_idx == ref.padding_idx == 4
    np.testing.assert_array_equal(np_of(emb.weight)[4], [0.0, 0.0])
    nn_cases.copy_weights(emb, ref, ge)
    idx = np.array([[4, 1, 4], [0, 1, 2]])
    emb(ge.tensor(idx)).sum().backward()
    ref(torch.tensor(idx)).sum().backward()
    np.testing.assert_array_equal(np_of(emb.weight.grad), np_of(ref.weight.grad))
    pre = nn.Embedding.from_pretrained(ge.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert not pre.weight.requires_grad and repr(pre) == "Embedding(2, 2)"


# --- init ----------------------------------------------------------------------------------------

def test_calculate_gain_and_fans_match_torch():
    for args in (("linear",), ("sigmoid",), ("tanh",), ("relu",), ("leaky_relu",),
                 ("leaky_relu", 0.2), ("leaky_relu", 3), ("selu",), ("conv2d",)):
        assert nn.init.calculate_gain(*args) == torch.nn.init.calculate_gain(*args)
    raises_like(lambda: nn.init.calculate_gain("swish"),
                 lambda: torch.nn.init.calculate_gain("swish"))
    raises_like(lambda: nn.init.calculate_gain("leaky_relu", True),
                 lambda: torch.nn.init.calculate_gain("leaky_relu", True))
    for shape in ((3, 4), (5, 2, 3, 3)):
        assert nn.init._calculate_fan_in_and_fan_out(ge.zeros(*shape)) == (
            torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(*shape)))
    raises_like(lambda: nn.init._calculate_fan_in_and_fan_out(ge.zeros(3)),
                 lambda: torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(3)))
    raises_like(lambda: nn.init.kaiming_uniform_(ge.zeros(3, 3), mode="fan_avg"),
                 lambda: torch.nn.init.kaiming_uniform_(torch.zeros(3, 3), mode="fan_avg"))


def test_init_functions_fill_in_place_under_no_grad_within_their_bounds():
    w = nn.Parameter(ge.zeros(64, 32))
    fan_in, fan_out = 32, 64
    for fn, bound in ((lambda: nn.init.kaiming_uniform_(w, a=math.sqrt(5)),
                       math.sqrt(6 / ((1 + 5) * fan_in))),
                      (lambda: nn.init.xavier_uniform_(w, gain=2.0),
                       2.0 * math.sqrt(6 / (fan_in + fan_out))),
                      (lambda: nn.init.uniform_(w, -0.3, 0.1), 0.3)):
        assert fn() is w and w.is_leaf and w.requires_grad
        assert np.abs(np_of(w)).max() <= bound and np_of(w).std() > bound / 4
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert abs(np_of(w).std() - math.sqrt(2 / fan_out)) < 0.2 * math.sqrt(2 / fan_out)
    nn.init.xavier_normal_(w)
    assert abs(np_of(w).std() - math.sqrt(2 / 96)) < 0.2 * math.sqrt(2 / 96)
    nn.init.normal_(w, 3.0, 0.01)
    assert abs(np_of(w).mean() - 3.0) < 0.01
    for fn, value in ((nn.init.zeros_, 0.0), (nn.init.ones_, 1.0),
                      (lambda t: nn.init.constant_(t, 0.5), 0.5)):
        fn(w)
        np.testing.assert_array_equal(np_of(w), np.full((64, 32), value, np.float32))
    assert w.grad_fn is None
    with pytest.warns(UserWarning, match="Initializing zero-element tensors is a no-op"):
        nn.init.kaiming_uniform_(ge.zeros(0, 3))


def test_layers_initialise_with_torchs_init_calls_in_torchs_order():
    """Linear = kaiming_uniform_(weight, a=sqrt(5)) then bias U(+-1/sqrt(fan_in)); Embedding =
    normal_; Bilinear = U(+-1/sqrt(in1)) twice: the same draws as calling them by hand."""
    ge.manual_seed(5)
    lin, bil, emb = nn.Linear(3, 4), nn.Bilinear(2, 3, 4), nn.Embedding(4, 2)
    ge.manual_seed(5)
    w, b = ge.zeros(4, 3), ge.zeros(4)
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    nn.init.uniform_(b, -1 / math.sqrt(3), 1 / math.sqrt(3))
    bw, bb = ge.zeros(4, 2, 3), ge.zeros(4)
    nn.init.uniform_(bw, -1 / math.sqrt(2), 1 / math.sqrt(2))
    nn.init.uniform_(bb, -1 / math.sqrt(2), 1 / math.sqrt(2))
    ew = nn.init.normal_(ge.zeros(4, 2))
    for ours, want in ((lin.weight, w), (lin.bias, b), (bil.weight, bw), (bil.bias, bb),
                       (emb.weight, ew)):
        np.testing.assert_array_equal(np_of(ours), np_of(want))


# --- utils ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type: float, max_norm: float):
    grads = [nn_cases.RNG.standard_normal(s).astype(np.float32) for s in ((3, 2), (4,))]
    ours = [nn.Parameter(ge.zeros(*g.shape)) for g in grads]
    theirs = [torch.nn.Parameter(torch.zeros(*g.shape)) for g in grads]
    for p, q, g in zip(ours, theirs, grads):
        p.grad, q.grad = ge.tensor(g), torch.tensor(g)
    total = nn.utils.clip_grad_norm_(iter(ours), max_norm, norm_type)
    want = torch.nn.utils.clip_grad_norm_(iter(theirs), max_norm, norm_type)
    np.testing.assert_allclose(np_of(total), np_of(want), rtol=1e-6)
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(np_of(p.grad), np_of(q.grad), rtol=1e-6)


def test_clip_grad_value_and_parameter_vectors_match_torch():
    g = np.array([[-3.0, 0.2], [0.7, 5.0]], np.float32)
    p, q = nn.Parameter(ge.zeros(2, 2)), torch.nn.Parameter(torch.zeros(2, 2))
    p.grad, q.grad = ge.tensor(g), torch.tensor(g)
    nn.utils.clip_grad_value_(p, 0.5)
    torch.nn.utils.clip_grad_value_(q, 0.5)
    np.testing.assert_array_equal(np_of(p.grad), np_of(q.grad))
    ours, theirs = nn_cases.mlp(ge.nn), nn_cases.mlp(torch.nn)
    nn_cases.copy_weights(ours, theirs, ge)
    vec = nn.utils.parameters_to_vector(ours.parameters())
    np.testing.assert_array_equal(
        np_of(vec), np_of(torch.nn.utils.parameters_to_vector(theirs.parameters())))
    nn.utils.vector_to_parameters(vec * 2, ours.parameters())
    np.testing.assert_array_equal(np_of(ours[0].weight), np_of(theirs[0].weight) * 2)
    assert isinstance(ours[0].weight, nn.Parameter) and ours[0].weight.is_leaf


def test_optimizer_takes_a_generator_and_param_groups():
    ours, theirs = nn_cases.mlp(ge.nn), nn_cases.mlp(torch.nn)
    nn_cases.copy_weights(ours, theirs, ge)
    opts = [lib.optim.SGD([{"params": m[0].parameters(), "lr": 0.1},
                           {"params": m[2].parameters()}], lr=0.01, momentum=0.5)
            for lib, m in ((ge, ours), (torch, theirs))]
    x = nn_cases.RNG.standard_normal((4, 2)).astype(np.float32)
    for _ in range(3):
        for lib, m, opt in ((ge, ours, opts[0]), (torch, theirs, opts[1])):
            opt.zero_grad()
            m(lib.tensor(x)).pow(2).sum().backward()
            opt.step()
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(np_of(p), np_of(q), rtol=1e-5, atol=1e-7, err_msg=name)


def test_warnings_name_the_callers_line_as_torch():
    x = ge.zeros(3, 1)
    with pytest.warns(UserWarning, match="Using a target size") as got:
        nn.functional.mse_loss(x, ge.zeros(3))
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax") as implicit:
        nn.functional.softmax(x)
    with pytest.warns(UserWarning, match="Implicit dimension choice for log_softmax") as module:
        nn.LogSoftmax()(x)
    assert got[0].filename == implicit[0].filename == module[0].filename == __file__


def test_convolution_pooling_and_batch_norm_errors_match_torch():
    for call in (lambda t: t.nn.functional.conv2d(t.zeros(1, 3, 5, 5), t.zeros(2, 4, 3, 3)),
                 lambda t: t.nn.functional.conv2d(t.zeros(1, 3, 2, 2), t.zeros(2, 3, 3, 3)),
                 lambda t: t.nn.functional.conv1d(t.zeros(3), t.zeros(2, 3, 3)),
                 lambda t: t.nn.functional.max_pool2d(t.zeros(1, 3, 5, 5), 2, padding=2),
                 lambda t: t.nn.Conv2d(3, 4, 3, groups=2),
                 lambda t: t.nn.functional.conv2d(t.zeros(1, 3, 5, 5), t.zeros(2, 3, 3, 3),
                                                  padding="full"),
                 lambda t: t.nn.BatchNorm1d(4)(t.zeros(1, 4)),
                 lambda t: t.nn.BatchNorm2d(4)(t.zeros(2, 4))):
        raises_like(lambda c=call: c(ge), lambda c=call: c(torch))  # type: ignore[misc]


def test_max_pool_sends_the_gradient_to_the_first_maximum_as_torch():
    x = np.zeros((1, 1, 4, 4), np.float32)  # every window ties (as after a ReLU)
    ours, theirs = ge.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    nn.functional.max_pool2d(ours, 2).sum().backward()
    torch.nn.functional.max_pool2d(theirs, 2).sum().backward()
    np.testing.assert_array_equal(np_of(ours.grad), np_of(theirs.grad))


def test_forward_hooks_run_change_and_remove_as_torch():
    def run(t: Any) -> list[Any]:
        m = t.nn.Linear(2, 2, bias=False)
        t.nn.init.ones_(m.weight)
        seen: list[Any] = []
        h1 = m.register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
        h2 = m.register_forward_hook(lambda mod, args, out: out + 1)
        m.register_forward_hook(lambda mod, args, out: seen.append(("first", out.tolist())),
                                prepend=True)
        m.register_forward_pre_hook(
            lambda mod, args, kwargs: ((args[0] + 1,), kwargs), with_kwargs=True)
        m.register_forward_hook(lambda mod, args, kwargs, out: seen.append(
            ("kw", args[0].tolist(), out.tolist())), with_kwargs=True)
        x = t.tensor([[1.0, 2.0]])
        seen.append(m(x).tolist())
        h1.remove()
        with h2:
            seen.append(m(x).tolist())
        seen.append(m(x).tolist())
        return seen

    assert run(ge) == run(torch)
