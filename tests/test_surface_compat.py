"""gradserve.surface.compat and .devices against torch 2.13, in process (gradserve.engine) and
through a session alike: devices on a CPU-only build, the default dtype, Tensor.to's forms,
`.data`, the legacy constructors, allclose/isclose/equal, the deprecated autograd keywords,
grad_fn.next_functions, relu's second derivative, float() on a tensor requiring grad, integer
division by zero and the AttributeError for a name gradserve does not have."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import gradserve.client as gc_client
import gradserve.engine as ge
from tests.reference import HAVE_TORCH, MISSING_REASON, torch


@pytest.fixture(scope="module")
def client(gradserve_server):
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


@pytest.fixture(autouse=True)
def _torch_default_device_restored() -> Iterator[None]:
    """`torch.set_default_device("cpu")` (a case below) installs a global torch function mode
    that sees every later factory call (it doubled the draws another module's test logs)."""
    yield
    if HAVE_TORCH:
        torch.set_default_device(None)


@pytest.fixture(params=["engine", "session"])
def lib(request: Any, client: Any) -> Iterator[Any]:
    """gradserve standing in for torch: the in-process engine, or a session."""
    if request.param == "engine":
        yield ge
        ge.set_default_dtype(ge.float32)  # the engine's default is process-wide, as torch's
    else:
        with client.session() as s:
            yield s


def outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    """What calling fn does, comparable across torch and gradserve: ("ok", printed value) or
    (exception family, message)."""
    try:
        value = _shown(fn())  # printing reads a session's value: its errors surface here
    except AssertionError as exc:
        return ("AssertionError", str(exc))
    except NotImplementedError as exc:
        return ("NotImplementedError", str(exc))
    except AttributeError as exc:
        return ("AttributeError", str(exc))
    except RuntimeError as exc:
        return ("RuntimeError", _torch_part(str(exc)))
    except TypeError as exc:
        return ("TypeError", str(exc))
    except IndexError as exc:
        return ("IndexError", str(exc))
    return ("ok", value)


def _torch_part(message: str) -> str:
    # a session's error also names the user's line that recorded the failing op
    return re.sub(r"\ngradserve: the failing op was recorded at .*$", "", message)


def _shown(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_shown(v) for v in value)
    return re.sub(r"0x[0-9a-f]+", "0x", repr(value))


def same(lib: Any, src: str, **names: Any) -> None:
    """`src` evaluated with torch and with lib (as `torch`) does the same thing."""
    if not HAVE_TORCH:  # a bare attribute (`torch.FloatTensor`) would not skip by itself
        pytest.skip(MISSING_REASON)
    want = outcome(lambda: eval(src, {"torch": torch, **names.get("t", {})}))
    got = outcome(lambda: eval(src, {"torch": lib, **names.get("g", {})}))
    assert got == want, src


# --- devices ---------------------------------------------------------------------------------


@pytest.mark.parametrize("src", [
    'torch.device("cpu")', 'str(torch.device("cpu"))', 'torch.device("cpu:0")',
    'str(torch.device("cpu:0"))', 'torch.device("cpu", 0)', 'torch.device("cpu").type',
    'torch.device("cpu").index', 'torch.device("cpu:1").index', 'torch.device(type="cpu")',
    'torch.device("cuda")', 'torch.device("cuda", 1)', 'torch.device(torch.device("cpu"))',
    'torch.device("cpu") == "cpu"', 'torch.device("cpu") == torch.device("cpu")',
    'torch.device("cpu") == torch.device("cpu:0")',
    'hash(torch.device("cpu")) == hash(torch.device("cpu"))',
    'torch.device("xyz")', 'torch.device("CPU")', 'torch.device(" cpu")',
    'torch.device("cuda:x")', 'torch.device("cpu:-1")', 'torch.device("cpu", -1)',
    'torch.device("cpu:0", 1)', 'torch.device(1)', 'torch.device("cpu", "0")',
    'torch.cuda.is_available()', 'torch.cuda.device_count()', 'torch.cuda.manual_seed(0)',
    'torch.cuda.manual_seed_all(0)', 'torch.cuda.current_device()',
    'torch.set_default_device("cpu")', 'torch.get_default_device()',
])
def test_device_objects_as_torch(lib, src):
    same(lib, src)


@pytest.mark.parametrize("src", [
    "torch.as_tensor([1., 2.], device='cpu')", "torch.as_tensor([1.], device='cuda')",
    "torch.as_tensor(x) is x", "torch.as_tensor(x, dtype=torch.float64)",
    "torch.as_tensor(x, dtype=torch.float64) is x", "torch.is_tensor(x)", "torch.is_tensor(1.0)",
    "torch.is_tensor([x])", "torch.from_numpy(np.arange(3))", "torch.from_numpy([1])",
])
def test_conversions_from_data(lib, src):
    same(lib, src, t={"np": np, "x": torch.tensor([1., 2.])},
         g={"np": np, "x": lib.tensor([1., 2.])})


FACTORIES = [
    "torch.zeros(2, 3, device={d})", "torch.ones(2, device={d})",
    "torch.empty(2, device={d}).shape",
    "torch.full((2,), 1.5, device={d})", "torch.arange(3, device={d})",
    "torch.linspace(0, 1, 3, device={d})", "torch.eye(2, device={d})",
    "torch.tensor([1., 2.], device={d})", "torch.rand(2, device={d}).shape",
    "torch.randn(2, 2, device={d}).shape", "torch.randint(0, 5, (3,), device={d}).shape",
    "torch.zeros_like(torch.ones(2), device={d})", "torch.ones_like(torch.ones(2), device={d})",
    "torch.full_like(torch.ones(2), 7., device={d})",
    "torch.randn_like(torch.ones(2), device={d}).shape",
    "torch.rand_like(torch.ones(2), device={d}).shape",
    "torch.empty_like(torch.ones(2), device={d}).shape",
]


@pytest.mark.parametrize("device", ['"cpu"', '"cpu:0"', 'torch.device("cpu")', "None",
                                    '"cuda"', '"cuda:0"', 'torch.device("cuda")', "0", "3.0"])
@pytest.mark.parametrize("factory", FACTORIES)
def test_device_keyword_of_factories(lib, factory, device):
    src = factory.format(d=device)
    if device != "3.0":
        same(lib, src)
        return
    # a device of a wrong type: torch's overloaded factories (arange, randn...) list their
    # signatures; gradserve says which argument is wrong
    kind, message = outcome(lambda: eval(src, {"torch": lib}))
    want, _ = outcome(lambda: eval(src, {"torch": torch}))
    assert kind == want == "TypeError" and "'device' must be torch.device, not float" in message


@pytest.mark.parametrize("src", [
    "x.device", "str(x.device)", "x.is_cuda", "x.is_cpu", "x.get_device()", "x.cpu()",
    "x.cpu() is x", "x.cuda()", "x.cuda(0)", "x.to('cpu')", "x.to('cpu') is x",
    "x.to('cuda')", "x.to(device='cuda')", "x.to('cuda:0')", "x.to(torch.device('cpu'))",
    "x.to(torch.float64)", "x.to('cpu', torch.float64)", "x.to(torch.device('cpu'), torch.int64)",
    "x.to(device='cpu', dtype=torch.float64)", "x.to(torch.zeros(1, dtype=torch.int64))",
    "x.to(None)", "x.to()", "x.to(torch.float32) is x", "x.to(torch.float32, copy=True) is x",
    "x.to('cpu', torch.float64, True)", "x.to(torch.float64, True)", "x.to(3)", "x.to('float')",
    "x.to(torch.float64, 'cpu')", "x.to('cpu', 'cpu')", "x.to(torch.float64, torch.float32)",
    "x.to(foo=1)", "x.to(dtype='float')", "x.type()", "x.type(torch.float64)",
    "x.type(torch.DoubleTensor)", "x.type('torch.LongTensor')",
    "x.contiguous() is x", "x.is_contiguous()", "x.t().is_contiguous()",
    "x.t().contiguous()", "x.t().contiguous().is_contiguous()",
    "x.expand(2, 2, 3).is_contiguous()", "x[:, 1].is_contiguous()", "x[1].is_contiguous()",
])
def test_tensor_devices_and_to(lib, src):
    names = {"t": {"x": torch.arange(6.).reshape(2, 3)},
             "g": {"x": lib.arange(6.).reshape(2, 3)}}
    same(lib, src, **names)


def test_contiguous_copy_records_clone(lib):
    x = lib.tensor([[1., 2.], [3., 4.]], requires_grad=True)
    xt = torch.tensor([[1., 2.], [3., 4.]], requires_grad=True)
    assert repr(x.t().contiguous()) == repr(xt.t().contiguous())


@pytest.mark.parametrize("src", [
    "torch.zeros(2, devic='cpu')", "torch.ones(2, devic='cpu')",
    "torch.sin(torch.zeros(2), device='cpu')",
    "torch.exp(torch.zeros(2), device='cpu')", "torch.cumsum(torch.zeros(2), 0, device='cpu')",
])
def test_keyword_typos_keep_torchs_message(lib, src):
    same(lib, src)


def test_factory_messages_never_name_internal_functions(lib):
    for src in ("torch.linspace(0, 1, 3, devic='cpu')", "torch.arange(3, devic='cpu')",
                "torch.eye(2, devic='cpu')", "torch.full((2,), 1., devic='cpu')"):
        kind, message = outcome(lambda: eval(src, {"torch": lib}))  # noqa: B023
        assert kind == "TypeError" and "devic" in message and "_" not in message.split("(")[0]


# --- the default dtype -----------------------------------------------------------------------


DEFAULT_DTYPE_CASES = [
    "torch.tensor([1., 2.]).dtype", "torch.tensor(1.).dtype", "torch.zeros(2).dtype",
    "torch.ones(2).dtype", "torch.empty(2).dtype", "torch.arange(3.).dtype",
    "torch.arange(3).dtype", "torch.full((2,), 1.).dtype", "torch.full((2,), 1).dtype",
    "torch.linspace(0, 1, 3).dtype", "torch.eye(2).dtype", "torch.randn(2).dtype",
    "torch.rand(2).dtype", "torch.Tensor([1]).dtype", "torch.Tensor(2).dtype",
    "torch.FloatTensor([1]).dtype", "torch.tensor(True).dtype", "torch.tensor([0.1]).tolist()",
    "torch.ones_like(torch.tensor([1, 2])).dtype", "torch.get_default_dtype()",
]


@pytest.mark.parametrize("src", DEFAULT_DTYPE_CASES)
def test_default_dtype_float64(lib, src):
    torch.set_default_dtype(torch.float64)
    lib.set_default_dtype(lib.float64)
    try:
        same(lib, src)
    finally:
        torch.set_default_dtype(torch.float32)
        lib.set_default_dtype(lib.float32)


def test_default_dtype_in_process_promotes_python_floats():
    # through a session the server's default (float32) decides for ops: README says so
    ge.set_default_dtype(ge.float64)
    torch.set_default_dtype(torch.float64)
    try:
        for src in ("(torch.tensor([1, 2]) * 2.5).dtype", "(torch.tensor([1, 2]) / 2).dtype",
                    "torch.tensor([1, 2]).sin().dtype",
                    "(torch.tensor([1., 2], dtype=torch.float32) * 2.5).dtype"):
            same(ge, src)
    finally:
        ge.set_default_dtype(ge.float32)
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("src", ["torch.set_default_dtype(torch.int64)",
                                 "torch.set_default_dtype('float64')",
                                 "torch.set_default_dtype(torch.float32)"])
def test_set_default_dtype_checks(lib, src):
    same(lib, src)


# --- .data -----------------------------------------------------------------------------------


def _sgd_with_data(lib: Any) -> list[str]:
    x = lib.tensor([1., -2., 3.], requires_grad=True)
    lines = []
    for _ in range(3):
        loss = (x * x * x).sum()
        loss.backward()
        x.data -= 0.1 * x.grad.data
        x.grad.data.zero_()
        lines += [repr(x), repr(x.grad), str(x.is_leaf), str(x.grad_fn)]
    d = x.data
    lines += [repr(d), str(d.requires_grad), str(d.is_leaf)]
    d += 1  # .data shares x's storage
    lines.append(repr(x))
    return lines


def test_data_update_does_not_record(lib):
    assert _sgd_with_data(lib) == _sgd_with_data(torch)


def test_data_assignment(lib):
    for t in (torch, lib):
        x = t.tensor([1., 2.], requires_grad=True)
        x.data = t.tensor([5., 6.])
        assert repr(x) == "tensor([5., 6.], requires_grad=True)" and x.is_leaf
    same(lib, "setattr(torch.tensor([1.], requires_grad=True), 'data', [1.])")


def test_engine_data_assignment_as_torch():
    # in process, x.data = y shares y (any shape), as torch; a session copies y's values in
    for t in (torch, ge):
        x = t.tensor([1., 2.], requires_grad=True)
        y = t.ones(3)
        x.data = y
        y += 1
        assert repr(x) == "tensor([2., 2., 2.], requires_grad=True)"
        with pytest.raises(RuntimeError, match="must be floating point"):
            x.data = t.zeros(3, dtype=t.int64)


# --- legacy constructors ---------------------------------------------------------------------


@pytest.mark.parametrize("src", [
    "torch.Tensor([-4.0])", "torch.Tensor(2, 3).shape", "torch.Tensor(2, 3).dtype",
    "torch.Tensor()", "torch.Tensor([1, 2])", "torch.Tensor((2, 3))",
    "torch.Tensor([[1, 2], [3, 4]])",
    "torch.Tensor(torch.Size([2, 3])).shape", "torch.Tensor(np.array([1., 2.]))",
    "torch.Tensor(torch.tensor([1, 2]))", "torch.Tensor(2.5)", "torch.Tensor('a')",
    "torch.Tensor([1.], requires_grad=True)", "torch.Tensor([1.], dtype=torch.float64)",
    "torch.Tensor([1.], device='cpu')", "torch.Tensor([1.], device='cuda')",
    "torch.FloatTensor([1, 2])", "torch.DoubleTensor([1, 2])", "torch.LongTensor([1.5, 2])",
    "torch.IntTensor([1, 2])", "torch.BoolTensor([1, 0])", "torch.LongTensor(3).shape",
    "torch.BoolTensor(2).dtype", "torch.FloatTensor(torch.tensor([1, 2]))",
    "torch.FloatTensor(torch.tensor([1., 2]))", "torch.FloatTensor", "torch.DoubleTensor",
    "torch.Tensor(2, device='cuda')", "torch.Tensor(device='cpu')",
    "torch.Tensor([1], device=0)",
    "isinstance(torch.FloatTensor([1]), torch.FloatTensor)",
    "isinstance(torch.FloatTensor([1]), torch.Tensor)",
    "isinstance(torch.tensor([1.]), torch.Tensor)",
    "isinstance(torch.tensor([1.]), torch.FloatTensor)",
    "isinstance(torch.tensor([1]), torch.FloatTensor)",
    "isinstance(torch.tensor([1]), torch.LongTensor)", "isinstance(1.0, torch.Tensor)",
])
def test_legacy_constructors(lib, src):
    same(lib, src, t={"np": np}, g={"np": np})


def test_legacy_constructor_of_a_tensor_requiring_grad(lib):
    x = lib.tensor([1., 2.], requires_grad=True)
    xt = torch.tensor([1., 2.], requires_grad=True)
    assert repr(lib.Tensor(x)) == repr(torch.Tensor(xt))


# --- allclose, isclose, equal ----------------------------------------------------------------

CLOSE_CASES = [
    ("[1., 2.]", "[1., 2.000001]", ""), ("[1., 2.]", "[1., 2.1]", ""),
    ("[1., 2.]", "[1, 2]", ""), ("[1., 2.]", "[1., 2.], dtype=torch.float64", ""),
    ("[1., nan]", "[1., nan]", ""), ("[1., nan]", "[1., nan]", ", equal_nan=True"),
    ("[1., 2.]", "[1., 2., 3.]", ""), ("[[1., 2.]]", "[1., 2.]", ""), ("[1., 2.]", "[1.]", ""),
    ("[1, 2]", "[1, 2]", ""), ("[1, 2]", "[1, 3]", ", atol=1"), ("[1, 2]", "[1, 3]", ""),
    ("[1., 2.]", "[1., 2.]", ", rtol=-1"), ("[1., 2.]", "[1., 2.]", ", atol=-1"),
    ("[True]", "[True]", ""), ("[True]", "[False]", ""), ("[1., inf]", "[1., inf]", ""),
    ("[1., inf]", "[1., -inf]", ""), ("[1., 5.]", "[inf, 5.]", ""), ("[inf]", "[1e38]", ""),
    ("[100., 200.]", "[101., 202.]", ", rtol=0.01"), ("[0.]", "[1e-9]", ", 0, 0"),
    ("[1., 2.]", "[1.1, 2.2]", ", 0.1, 0.0"),
]


@pytest.mark.parametrize("fn", ["allclose", "isclose"])
@pytest.mark.parametrize(("a", "b", "extra"), CLOSE_CASES)
def test_allclose_isclose(lib, fn, a, b, extra):
    src = f"torch.{fn}(torch.tensor({a}), torch.tensor({b}){extra})"
    names = {"nan": float("nan"), "inf": float("inf")}
    same(lib, src, t=names, g=names)
    same(lib, f"torch.tensor({a}).{fn}(torch.tensor({b}){extra})", t=names, g=names)


@pytest.mark.parametrize("src", [
    "torch.equal(torch.tensor([1., 2]), torch.tensor([1., 2]))",
    "torch.equal(torch.tensor([1., 2]), torch.tensor([1, 2]))",
    "torch.equal(torch.tensor([1., 2]), torch.tensor([1., 2, 3]))",
    "torch.equal(torch.tensor([1., 2]), torch.tensor([[1., 2]]))",
    "torch.equal(torch.tensor([float('nan')]), torch.tensor([float('nan')]))",
    "torch.equal(torch.tensor([1., 2]), 1.0)", "torch.allclose(torch.tensor([1., 2]), 1.0)",
    "torch.allclose(1.0, torch.tensor([1., 2]))", "torch.isclose(torch.tensor([1.]), 1.0)",
    "torch.tensor([1., 2]).equal(torch.tensor([1., 2]))",
    "torch.allclose(torch.tensor([1., 2], requires_grad=True), torch.tensor([1., 2]))",
    "torch.isclose(torch.tensor([1., 2], requires_grad=True) * 2, torch.tensor([2., 4]))",
])
def test_equal_and_argument_checks(lib, src):
    same(lib, src)


# --- autograd's deprecated keywords ----------------------------------------------------------


def _caught(fn: Callable[[], Any]) -> tuple[Any, list[tuple[str, str]]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = outcome(fn)
    return value, [(w.category.__name__, str(w.message)) for w in caught]


@pytest.mark.parametrize("src", [
    "torch.autograd.grad((x * 1).sum(), x, only_inputs=True)",
    "torch.autograd.grad((x * 1).sum(), x, only_inputs=False)",
    "torch.autograd.grad((x * 1).sum(), [x], None, None, False, True)",
    "torch.autograd.grad((x * 1).sum(), [x], None, None, False, True, True)",
    "torch.autograd.grad((x * 1).sum(), [x], is_grads_batched=False)",
    "torch.autograd.backward((x * 1).sum(), grad_variables=torch.tensor(1.))",
    "torch.autograd.backward((x * 1).sum(), torch.tensor(1.), grad_variables=torch.tensor(1.))",
])
def test_deprecated_autograd_keywords(lib, src):
    want = _caught(lambda: eval(src, {"torch": torch,
                                      "x": torch.tensor([1., 2.], requires_grad=True)}))
    got = _caught(lambda: eval(src, {"torch": lib, "x": lib.tensor([1., 2.], requires_grad=True)}))
    assert got == want


# --- exactness: next_functions, AccumulateGrad, relu, float(), division by zero ---------------

NEXT_FUNCTIONS_CASES = [
    "c + 1", "1 + c", "c - 1", "1 - c", "c * 2", "2 * c", "c / 2", "2 / c", "c ** 2", "2 ** c",
    "c.add(1)", "torch.add(c, 1)", "torch.sub(c, 1, alpha=2)", "torch.mul(c, 3)",
    "torch.div(c, 3)", "torch.pow(c, 2)", "torch.pow(2, c)", "torch.where(c > 2, c, 0.)",
    "torch.where(c > 2, 0., c)", "torch.where(c > 2, c, y)", "c.clamp(0, 1)", "c.clamp(min=0)",
    "c.clamp(max=y)", "c + y", "c.add(y, alpha=2)", "torch.maximum(c, y)", "c.sin()",
    "c - torch.tensor(1.)", "c.masked_fill(c > 2, 0.)", "torch.remainder(c, 2)", "-c", "c % 2",
    "torch.cat([c, y])", "torch.stack([c, y])", "torch.fmod(c, 2)", "torch.fmod(c, y)",
    "c.relu()", "c.split(1)[1]", "x * 2", "c.clone().add_(1)", "c.clone().mul_(2)",
    "c.clone().sub_(y)", "c.clone().div_(2)", "c.clamp(min=y)",
    "c.masked_fill(c > 2, torch.tensor(0.))", "torch.add(c, 1, alpha=2)", "c.sub(1, alpha=2)",
    "c[1:]", "c.expand(2, 2)", "torch.matmul(c, y)", "torch.max(c, 0)[0]", "c.pow(y)", "3 - c",
    "c / y", "c * torch.tensor(2.)", "c.where(c > 2, 0.)", "c.where(c > 2, y)",
    "torch.minimum(c, y)", "c.gather(0, torch.tensor([1, 0]))", "c.cumsum(0)",
    "torch.logsumexp(c, 0)",
]


def _next(t: Any) -> list[tuple[Any, int]]:
    return [(None if f is None else f.name(), i) for f, i in t.grad_fn.next_functions]


@pytest.mark.parametrize("src", NEXT_FUNCTIONS_CASES)
def test_next_functions_as_torch(lib, src):
    def run(t: Any) -> Any:
        x = t.tensor([1., 2.], requires_grad=True)
        y = t.tensor([3., 4.], requires_grad=True)
        d = eval(src, {"torch": t, "x": x, "y": y, "c": x * 2})
        return d.grad_fn.name(), _next(d)
    assert run(lib) == run(torch)


def test_accumulate_grad_prints_as_torch(lib):
    for t in (lib, torch):
        x = t.tensor([1.], requires_grad=True)
        node = (x * 1).grad_fn.next_functions[0][0]
        assert re.fullmatch(r"<AccumulateGrad object at 0x[0-9a-f]+>", repr(node))
        assert node.name() == "torch::autograd::AccumulateGrad"


def _relu_second_derivative(t: Any) -> list[str]:
    x = t.tensor([1., -2., 3.], requires_grad=True)
    e = (x * 1.0).relu()
    (g,) = t.autograd.grad((-e).relu().sum(), x, create_graph=True)
    lines = [repr(g)]
    x2 = t.tensor([1., -2., 3.], requires_grad=True)
    e2 = (x2 * 1.0).relu()
    (g2,) = t.autograd.grad((e2 * e2).relu().sum(), x2, create_graph=True)
    g2.sum().backward()
    g.sum().backward()
    return [*lines, repr(g2), repr(x2.grad), repr(x.grad)]


def test_relu_second_derivative_keeps_its_graph(lib):
    assert _relu_second_derivative(lib) == _relu_second_derivative(torch)


TORCH_FLOAT_WARNINGS = """
import warnings, torch
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    for src in {sources!r}:
        eval(src, {{"s": torch.tensor(2., requires_grad=True), "torch": torch}})
        print(repr([(w.category.__name__, str(w.message)) for w in caught]))
        caught.clear()
"""
SCALAR_SOURCES = ["int(s)", "s.item()", "bool(s)", "s.tolist()", "float(s.detach())",
                  "float(s)", "float(s * 2)", "float(s)"]


def test_scalar_conversion_warns_once_as_torch(lib):
    # torch warns on float() of a tensor requiring grad once per process: compared in a fresh
    # interpreter, with gradserve's once-flag reset
    import subprocess
    import sys

    from gradserve.surface import compat

    torch.tensor(0.)  # skips without torch
    out = subprocess.run([sys.executable, "-c", TORCH_FLOAT_WARNINGS.format(
        sources=SCALAR_SOURCES)], capture_output=True, text=True, check=True).stdout
    want = [eval(line) for line in out.splitlines()]
    compat._scalar_warned[0] = False
    got = []
    for src in SCALAR_SOURCES:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            eval(src, {"s": lib.tensor(2., requires_grad=True)})
        got.append([(w.category.__name__, str(w.message)) for w in caught])
        if caught and caught[0].category is UserWarning:
            assert caught[0].filename == "<string>"  # the user's line
    assert got == want


@pytest.mark.parametrize("src", [
    "a // 0", "a // z", "torch.floor_divide(a, 0)", "a % 0", "a % z", "torch.remainder(a, z)",
    "torch.remainder(5, z)", "5 // z", "5 % z", "torch.tensor(5) // torch.tensor(0)",
    "a.int() // z.int()", "torch.zeros(0, dtype=torch.int64) // torch.zeros(0, dtype=torch.int64)",
    "a // 0.0", "a % 0.0", "a.float() // 0", "a / 0", "a // z.clamp(min=1)",
    "torch.fmod(a, z)", "torch.fmod(a, 0)", "a.fmod(2)", "torch.fmod(a.float(), 0)",
])
def test_integer_division_by_zero(lib, src):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's float division by zero
        same(lib, src, t={"a": torch.tensor([5, -3]), "z": torch.tensor([0, 1])},
             g={"a": lib.tensor([5, -3]), "z": lib.tensor([0, 1])})


# --- a name gradserve does not have ----------------------------------------------------------


def test_missing_names_say_gradserve_does_not_implement_them(lib):
    with pytest.raises(AttributeError, match=r"gradserve does not implement torch\.frobnicate "
                                             r"\(see dir\("):
        lib.frobnicate  # noqa: B018
    for namespace in ("autograd", "nn", "nn.functional", "nn.init"):
        with pytest.raises(AttributeError, match=rf"gradserve does not implement "
                                                 rf"torch\.{namespace}\.frobnicate \(see dir"):
            eval(f"lib.{namespace}.frobnicate", {"lib": lib})
    assert not hasattr(lib, "frobnicate") and hasattr(lib, "zeros")


def test_session_namespaces_and_tensor_methods_name_missing_names(client):
    with client.session() as s:
        with pytest.raises(AttributeError, match=r"torch\.autograd\.frobnicate"):
            s.autograd.frobnicate  # noqa: B018
        with pytest.raises(AttributeError, match=r"gradserve does not implement "
                                                 r"torch\.nn\.functional\.frobnicate"):
            s.nn.functional.frobnicate  # noqa: B018
        with pytest.raises(AttributeError, match=r"gradserve does not implement "
                                                 r"torch\.Tensor\.frobnicate \(see dir\(tensor\)"):
            s.tensor([1.]).frobnicate  # noqa: B018
        try:
            s.frobnicate  # noqa: B018
        except AttributeError as exc:
            frames = []
            tb = exc.__traceback__
            while tb is not None:
                frames.append(tb.tb_frame.f_code.co_filename)
                tb = tb.tb_next
            # this test's line, then only Session.__getattr__
            assert frames[0] == __file__ and len(frames) == 2


# --- a program written for torch, unchanged --------------------------------------------------


def _device_agnostic_training(t: Any) -> list[str]:
    out = []
    device = t.device("cuda" if t.cuda.is_available() else "cpu")
    x = t.linspace(-1, 1, 8, device=device).reshape(-1, 1)
    y = 3 * x + 0.5
    w = t.zeros(1, 1, requires_grad=True, device=device)
    b = t.Tensor([0.0]).to(device)
    b.requires_grad_(True)
    for step in range(5):
        loss = ((x.mm(w) + b - y) ** 2).mean()
        loss.backward()
        w.data -= 0.1 * w.grad.data
        b.data -= 0.1 * b.grad.data
        w.grad.data.zero_()
        b.grad.data.zero_()
        out.append(f"{step} {loss.item():.6f}")
    z = t.zeros(2, 3, dtype=t.float64, device="cpu").t()
    return [*out, str(device), repr(w), repr(b), str(t.allclose(w, t.tensor([[1.0834]]))),
            str(z.is_contiguous()), repr(z.contiguous().cpu()), str(x.device),
            repr(t.tensor([1., 2.], requires_grad=True).to(device, t.float64))]


def test_a_device_agnostic_training_loop_runs_unchanged(lib):
    assert _device_agnostic_training(lib) == _device_agnostic_training(torch)


def test_engine_set_default_tensor_type_sets_the_default_dtype():
    """The in-process engine's torch.set_default_tensor_type, as the session's (checked against
    torch in test_client_compat.py): the default dtype, then restored."""
    before = ge.get_default_dtype()
    try:
        with pytest.warns(UserWarning, match=r"set_default_tensor_type\(\) is deprecated"):
            ge.set_default_tensor_type("torch.DoubleTensor")
        assert ge.tensor([1.5]).dtype == ge.float64
        with pytest.warns(UserWarning):
            ge.set_default_tensor_type(ge.FloatTensor)
        assert ge.tensor([1.5]).dtype == ge.float32
        with pytest.warns(UserWarning), pytest.raises(
                TypeError, match="^only floating-point types are supported as the default type$"):
            ge.set_default_tensor_type(ge.LongTensor)
    finally:
        ge.set_default_dtype(before)


def test_accelerator_is_a_cpu_only_torch_s(client):
    """torch.accelerator as torch's examples use it to pick a device (pytorch/examples' vae):
    none on a CPU-only build, in the engine and through a session."""
    with client.session() as session:
        for lib in (ge, session):
            acc = lib.accelerator
            assert acc.is_available() is torch.accelerator.is_available() is False
            assert acc.device_count() == torch.accelerator.device_count() == 0
            assert acc.current_accelerator() is torch.accelerator.current_accelerator() is None
            with pytest.raises(AttributeError, match=r"torch\.accelerator\.synchronize"):
                acc.synchronize()
