"""Gaps a fifth set of public PyTorch programs met through gradserve, each checked against torch
in process (the engine) and through a session: floating `arange` bit for bit and integral
`arange` from float bounds."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch
from tests.reference import builtin_error as _error

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _bits(t: Any) -> tuple[str, bytes, tuple[int, ...]]:
    """A tensor's dtype, exact bytes and shape."""
    a = np.asarray(t.tolist(), dtype=str(t.dtype).replace("torch.", ""))
    return str(t.dtype), a.tobytes(), tuple(t.shape)


# --- arange -------------------------------------------------------------------------------------

def _ranges() -> list[tuple[Any, Any, Any]]:
    rng = random.Random(5)
    out: list[tuple[Any, Any, Any]] = [(-1, 1, 0.1), (0, 1, 0.1), (-3.5, 9.25, 0.37),
                                       (10, -10, -0.3), (0.5, 4.5, 1), (-1.7, 5, 1.5),
                                       (0, 5.5, 1), (0.5, 5, 1.5), (1, 2, 1e-3)]
    for _ in range(12):
        start = rng.uniform(-10, 10)
        step = rng.choice([1, -1]) * rng.uniform(1e-3, 1)
        out.append((start, start + step * rng.randint(1, 400), step))
    return out


@pytest.mark.parametrize("bounds", _ranges())
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "int16", "int8",
                                   "uint8"])
def test_arange_matches_torch_bit_for_bit(lib, bounds, dtype):
    def run(t: Any) -> Any:
        return _bits(t.arange(*bounds, dtype=getattr(t, dtype)))
    try:
        want = run(torch)
    except Exception:
        assert _error(run, lib) == _error(run, torch)
        return
    assert run(lib) == want


def test_arange_minus_one_to_one_keeps_torch_rounding(lib):
    # torch: -2.9802e-09 at index 10 (the vector's base rounded to float32, then + 2 * 0.1)
    assert lib.arange(-1, 1, 0.1)[10].item() == torch.arange(-1, 1, 0.1)[10].item() != 0.0


def test_arange_long_range_matches_torch_in_each_thread_range():
    import gradserve.engine as ge

    for dtype in ("float32", "float64"):
        want = torch.arange(-3.0, 70000.0, 0.7, dtype=getattr(torch, dtype)).numpy()
        got = ge.arange(-3.0, 70000.0, 0.7, dtype=getattr(ge, dtype)).numpy()
        assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("call", [
    lambda t: t.arange(0, 5, 0.5, dtype=t.int64),
    lambda t: t.arange(0, 3, dtype=t.bool),
    lambda t: t.arange(0.5, -3, 1, dtype=t.int64),
    lambda t: t.arange(0, 5, 0),
])
def test_arange_refusals_match_torch(lib, call):
    assert _error(lambda t: call(t).tolist(), lib) == _error(lambda t: call(t).tolist(), torch)


@pytest.mark.parametrize("args", [(0, 1, 5), (-2.5, 7.0, 11), (1, -1, 7), (0.1, 0.9, 33),
                                  (-1, 1, 21)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linspace_matches_torch_bit_for_bit(lib, args, dtype):
    def run(t: Any) -> Any:
        return _bits(t.linspace(*args, dtype=getattr(t, dtype)))
    assert run(lib) == run(torch)


# --- maximum, minimum, fmax, fmin: tensors only -------------------------------------------------

@pytest.mark.parametrize("name", ["maximum", "minimum", "fmax", "fmin"])
@pytest.mark.parametrize("call", [
    lambda t, f: getattr(t, f)(t.ones(2), 2.0),
    lambda t, f: getattr(t, f)(t.ones(2), 2),
    lambda t, f: getattr(t, f)(t.ones(2), True),
    lambda t, f: getattr(t, f)(2.0, t.ones(2)),
    lambda t, f: getattr(t, f)(t.ones(2), None),
    lambda t, f: getattr(t, f)(t.ones(2), [1.0, 2.0]),
    lambda t, f: getattr(t.ones(2), f)(2.0),
    lambda t, f: getattr(t.ones(2), f)(np.float64(2.0)),
])
def test_elementwise_extremes_refuse_numbers_as_torch(lib, name, call):
    assert _error(lambda t: call(t, name), lib) == _error(lambda t: call(t, name), torch)


def _extremes_run(t: Any) -> list[Any]:
    nan = float("nan")
    x = t.tensor([1.0, nan, 3.0, nan, -2.0, 0.5], requires_grad=True)
    y = t.tensor([2.0, 1.0, nan, nan, -2.0, 0.25], requires_grad=True)
    out = []
    for name in ("maximum", "minimum", "fmax", "fmin"):
        r = getattr(t, name)(x, y)
        m = getattr(x, name)(y)
        (r * t.arange(1.0, 7.0)).sum().backward()
        out += [r.tolist(), m.tolist(), r.grad_fn.name(), x.grad.tolist(), y.grad.tolist()]
        x.grad = None
        y.grad = None
    ints = t.fmax(t.tensor([1, 5]), t.tensor([3.5, 2.0]))
    return [repr(out), ints.tolist(), str(ints.dtype)]


def test_elementwise_extremes_match_torch(lib):
    assert _extremes_run(lib) == _extremes_run(torch)


def _outcome(fn: Any, t: Any) -> Any:
    """`repr` of what `fn(t)` returns, or the built-in type and message of what it raises."""
    try:
        return repr(fn(t))
    except Exception:  # a session's error shows when the result is read: read it again
        return _error(lambda u: repr(fn(u)), t)


# --- uint8, int8, int16 ---------------------------------------------------------------------------

_SMALL = ("uint8", "int8", "int16")


def _small_ints(t: Any) -> tuple[Any, Any, Any]:
    return (t.tensor([1, 200, 255, 0], dtype=t.uint8), t.tensor([-128, 5, 127, -1], dtype=t.int8),
            t.tensor([-32768, 300, 32767, 7], dtype=t.int16))


@pytest.mark.parametrize("expr", [
    lambda t, u, c, s: u + c, lambda t, u, c, s: u + s, lambda t, u, c, s: c * s,
    lambda t, u, c, s: u + t.tensor([1, 2, 3, 4], dtype=t.int32), lambda t, u, c, s: u + 1.5,
    lambda t, u, c, s: c + t.tensor(3), lambda t, u, c, s: u + True, lambda t, u, c, s: u - c,
    lambda t, u, c, s: u + 300, lambda t, u, c, s: u * -1, lambda t, u, c, s: c * 2,
    lambda t, u, c, s: s * 2, lambda t, u, c, s: c - 100, lambda t, u, c, s: -c,
    lambda t, u, c, s: u < 300, lambda t, u, c, s: c > -200, lambda t, u, c, s: u / 2,
    lambda t, u, c, s: u // 3, lambda t, u, c, s: c.abs(), lambda t, u, c, s: u.sum(),
    lambda t, u, c, s: c.sum(), lambda t, u, c, s: s.prod(), lambda t, u, c, s: u.cumsum(0),
    lambda t, u, c, s: u.max(), lambda t, u, c, s: c.argmin(), lambda t, u, c, s: u.float(),
    lambda t, u, c, s: u.mean(), lambda t, u, c, s: t.cat([u, c]), lambda t, u, c, s: u[1:3],
    lambda t, u, c, s: t.where(u > 100, u, c), lambda t, u, c, s: u.byte(),
    lambda t, u, c, s: s.char(), lambda t, u, c, s: c.short(), lambda t, u, c, s: u.long(),
    lambda t, u, c, s: t.tensor([1.7, -3.2, 300.0, -1.0]).byte(),
    lambda t, u, c, s: t.tensor([1.7, -3.2, 300.0, -129.0]).char(),
    lambda t, u, c, s: t.tensor([1.7, -3.2, 40000.0, -1.0]).short(),
    lambda t, u, c, s: (u.type(), c.type(), s.type()), lambda t, u, c, s: u.tolist(),
    lambda t, u, c, s: c[0].item(), lambda t, u, c, s: t.zeros(2, dtype=t.int16),
    lambda t, u, c, s: t.ones(3, dtype=t.int8).dtype, lambda t, u, c, s: t.short,
    lambda t, u, c, s: (u.element_size(), s.element_size(), u.is_floating_point()),
    lambda t, u, c, s: t.ByteTensor([1, 2]), lambda t, u, c, s: t.CharTensor([-1]),
    lambda t, u, c, s: t.ShortTensor(2).shape,
    lambda t, u, c, s: t.tensor(np.array([3, 250], np.uint8)),
    lambda t, u, c, s: t.from_numpy(np.array([-3, 25], np.int8)),
    lambda t, u, c, s: t.tensor(np.int16(7)).dtype,
    lambda t, u, c, s: t.ones(2, dtype=t.uint8, requires_grad=True),
    lambda t, u, c, s: u.float().requires_grad_() * u,
    lambda t, u, c, s: (u.to(t.float32) * 2).to(t.uint8),
])
def test_small_integer_dtypes_match_torch(lib, expr):
    def run(t: Any) -> Any:
        return expr(t, *_small_ints(t))
    assert _outcome(run, lib) == _outcome(run, torch)


@pytest.mark.parametrize("dtype", _SMALL)
def test_small_integer_tensors_round_trip(lib, dtype):
    values = {"uint8": [0, 1, 127, 128, 255], "int8": [-128, -1, 0, 1, 127],
              "int16": [-32768, -1, 0, 255, 32767]}[dtype]

    def run(t: Any) -> Any:
        x = t.tensor(values, dtype=getattr(t, dtype))
        return [x.tolist(), str(x.dtype), repr(x), x.numpy().dtype.str, (x + 1).tolist()]
    assert run(lib) == run(torch)


# --- bitwise ops ---------------------------------------------------------------------------------

def _bit_operands(t: Any) -> dict[str, Any]:
    return {"f": t.tensor([1.5, -2.0]), "i": t.tensor([5, -3]), "b": t.tensor([True, False]),
            "u": t.tensor([5, 200], dtype=t.uint8), "c": t.tensor([5, -100], dtype=t.int8),
            "t": t}


_BITWISE = ["i & 6", "i | 8", "i ^ 3", "~i", "~b", "~u", "~c", "i << 1", "i >> 1", "i << 65",
            "i >> 70", "i << -1", "u << 3", "c << 2", "c >> 9", "u >> 9", "1 << i", "3 & i",
            "3 | b", "True & i", "i & b", "b & True", "b ^ b", "b | b", "b << 1", "u & c",
            "u ^ -1", "i & 2 ** 40", "i ^ 3 | 8", "t.bitwise_and(i, 3)", "t.bitwise_and(3, i)",
            "t.bitwise_or(b, b)", "t.bitwise_xor(b, 1)", "t.bitwise_not(u)",
            "t.bitwise_left_shift(c, 1)", "t.bitwise_right_shift(i, 1)", "i.bitwise_xor(7)",
            "i.bitwise_not()", "(i & 6).dtype",
            # refusals: torch's NotImplementedError per kernel, ~'s own TypeError
            "f & f", "f & 1", "i & f", "~f", "f | i", "f ^ b", "f << 1", "f >> 1", "i << f",
            "b >> b", "2.5 << i", "t.bitwise_not(f)", "t.bitwise_or(i, 2.5)",
            "t.bitwise_left_shift(f, 1)", "t.ones(2, requires_grad=True) & 1"]
_BITWISE_INPLACE = ["x = i.clone(); x &= 3", "x = i.clone(); x |= b", "x = i.clone(); x ^= 2",
                    "x = i.clone(); x <<= 2", "x = i.clone(); x >>= 1",
                    "x = u.clone(); x &= c", "x = b.clone(); x ^= True",
                    "x = i.clone(); x.bitwise_and_(3)", "x = i.clone(); x.bitwise_not_()",
                    "x = i.clone(); x.bitwise_left_shift_(2)",
                    "x = b.clone(); x &= i", "x = f.clone(); x <<= 1", "x = f.clone(); x &= 1"]


@pytest.mark.parametrize("expr", _BITWISE)
def test_bitwise_ops_match_torch(lib, expr):
    def run(t: Any) -> Any:
        return eval(expr, _bit_operands(t))  # noqa: S307 - the test's own expressions
    assert _outcome(run, lib) == _outcome(run, torch)


@pytest.mark.parametrize("code", _BITWISE_INPLACE)
def test_bitwise_inplace_ops_match_torch(lib, code):
    def run(t: Any) -> Any:
        names = _bit_operands(t)
        exec(code, names)  # noqa: S102 - the test's own statements
        return names["x"]
    assert _outcome(run, lib) == _outcome(run, torch)


# --- _version and is_inference --------------------------------------------------------------------

def _versions_run(t: Any) -> list[Any]:
    out: list[Any] = []
    x = t.ones(3)
    out.append(x._version)
    x += 1
    x[0] = 5
    x.mul_(2)
    out.append(x._version)
    y = x[1:]
    y.add_(1)
    out.append((x._version, y._version))
    with t.no_grad():
        x.zero_()
    out.append(x._version)
    w = t.ones(2, requires_grad=True)
    z = w * 2
    z.add_(1)
    out.append((w._version, z._version, z.detach()._version))
    with t.inference_mode():
        a = t.ones(3)
        v = a[1:]
        b = a * 2
        a.add_(1)
    out.append((a.is_inference(), v.is_inference(), b.is_inference(), x.is_inference(),
                (a * 2).is_inference(), a.clone().is_inference()))
    out.append(_outcome(lambda _: a._version, t))
    out.append(_outcome(lambda _: a.add_(1), t))
    out.append(_outcome(lambda _: v.mul_(2), t))
    out.append(_outcome(lambda _: a.requires_grad_(), t))
    return out


def test_version_counter_and_inference_tensors_match_torch(lib):
    assert _versions_run(lib) == _versions_run(torch)


# --- views made under no_grad ---------------------------------------------------------------------

def _no_grad_views_run(t: Any) -> list[Any]:
    x = t.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    with t.no_grad():
        made = {"t": x.t(), "getitem": x[0], "view": x.view(4), "expand": x.expand(2, 2),
                "unsqueeze": x.unsqueeze(0), "transpose": x.transpose(0, 1),
                "select": x.select(0, 1), "narrow": x.narrow(0, 0, 1),
                "permute": x.permute(1, 0), "chained": x.t()[0],
                "detach": x.detach(), "mul": x * 2, "clone": x.clone()}
        plain = t.ones(2)[0:1]
    out: list[Any] = [(k, v.requires_grad, v.grad_fn, v.is_leaf) for k, v in made.items()]
    out.append(plain.requires_grad)
    v = made["t"]
    y = (v * 2).sum()
    out.append((y.requires_grad, y.grad_fn.name()))
    y.backward()  # the gradient reaches neither x nor v
    out.append((x.grad, v.grad))
    return out


def test_views_made_under_no_grad_require_grad_as_torch(lib):
    assert repr(_no_grad_views_run(lib)) == repr(_no_grad_views_run(torch))


@pytest.mark.parametrize("write", [
    lambda t, v: v.mul_(2),
    lambda t, v: v.add_(1),
])
def test_inplace_on_a_no_grad_view_refused_as_torch(lib, write):
    def run(t: Any) -> Any:
        x = t.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        with t.no_grad():
            v = x.t()
        write(t, v)
        return v.tolist()
    assert _outcome(run, lib) == _outcome(run, torch)


def test_no_grad_view_written_under_no_grad_then_used_refused_as_torch(lib):
    def run(t: Any) -> Any:
        x = t.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        with t.no_grad():
            v = x.t()
            v.mul_(2)
        return (v * 1).tolist()
    assert _outcome(run, lib) == _outcome(run, torch)
