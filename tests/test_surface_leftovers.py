"""Leftover differences from torch 2.13, each checked against torch in process (the engine) and
through a session: numpy scalars in the client's metadata rules (a numpy bool read as a float,
as torch reads it), numpy arrays refused as Tensor arguments (functions, methods, keywords)
while the operators leave them to numpy, `.data`'s own version counter, the cast check of an
in-place bitwise op, overflow of fill values and `torch.tensor(..., dtype=)`, and the
keyword form of `maximum`'s refusal."""

from __future__ import annotations

import warnings
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


def _outcome(fn: Any, t: Any) -> Any:
    """`repr` of what `fn(t)` returns, or the built-in type and message of what it raises."""
    try:
        with warnings.catch_warnings():  # torch's __array_wrap__ has numpy 1's signature
            warnings.simplefilter("ignore", DeprecationWarning)
            return repr(fn(t))
    except Exception:  # a session's error shows when the result is read: read it again
        return _error(lambda u: repr(fn(u)), t)


def _run(code: str) -> Any:
    """`code`'s `out`, run with `t` as the library."""
    def run(t: Any) -> Any:
        names = {"t": t, "np": np}
        exec(code, names)  # noqa: S102 - the test's own statements
        return names["out"]
    return run


# --- 1. numpy scalars as torch reads them (the client's metadata rules too) ----------------------

_NUMPY_SCALARS = ["np.float64(2.5)", "np.float32(0.5)", "np.float16(1.5)", "np.int64(3)",
                  "np.int32(-2)", "np.int8(5)", "np.uint8(7)", "np.uint64(4)", "np.bool_(True)",
                  "np.bool_(False)"]
_DTYPES = ["float32", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"]


@pytest.mark.parametrize("scalar", _NUMPY_SCALARS)
@pytest.mark.parametrize("dtype", _DTYPES)
def test_numpy_scalar_operand_dtype_as_torch(lib, scalar, dtype):
    code = (f"x = t.tensor([1, 2, 0], dtype=t.{dtype}); s = {scalar}\n"
            "out = [(r, r.dtype) for r in (x * s, s + x, x - s, t.add(x, s), x < s)]")
    assert _outcome(_run(code), lib) == _outcome(_run(code), torch)


@pytest.mark.parametrize("scalar", _NUMPY_SCALARS)
def test_numpy_scalar_operand_grad_fn_as_torch(lib, scalar):
    """`x ** np.float32(2)` is PowBackward0 (a number exponent), `np.int64(2) ** x`
    PowBackward2, as with Python numbers."""
    code = (f"x = t.tensor([1.0, 2.0], requires_grad=True); s = {scalar}\n"
            "out = [(r, r.grad_fn.name()) for r in (x ** s, s ** x, x * s, t.add(x, s))]")
    assert _outcome(_run(code), lib) == _outcome(_run(code), torch)


def test_numpy_bool_is_read_as_a_float(lib):
    """torch 2.13 reads a numpy bool operand as a float: an int64 tensor times it is float32,
    a bool tensor `&` it is refused for Float, `full` of it is float32."""
    code = ("i = t.tensor([1, 2]); b = t.tensor([True, False]); s = np.bool_(True)\n"
            "out = [i * s, b + s, t.where(b, i, s), t.full((2,), s), i.masked_fill(b, s)]")
    assert _outcome(_run(code), lib) == _outcome(_run(code), torch)
    code = "out = t.tensor([True, False]) & np.bool_(True)"
    assert _outcome(_run(code), lib) == _outcome(_run(code), torch)


@pytest.mark.parametrize("scalar", [np.float64(2.0), np.float32(0.5), np.int64(3),
                                    np.int32(2), np.bool_(True)], ids=repr)
def test_session_describes_numpy_scalar_results_itself(gradserve_client, scalar):
    """The client's rules read the numpy scalar: the result's shape, dtype and grad_fn are
    known without a round trip, and the server is not asked to describe it."""
    with gradserve_client.session(verify_meta=False) as s:
        x = s.tensor([1.0, 2.0], requires_grad=True)
        n = s.tensor([1, 2])
        y, z, w = x * scalar, n + scalar, x ** scalar
        before = s.round_trips
        got = [(tuple(r.shape), str(r.dtype), r.grad_fn.name() if r.grad_fn else None)
               for r in (y, z, w)]
        assert s.round_trips == before
        seen: list[Any] = []
        send = s._send

        def spy(request: Any) -> Any:
            response = send(request)
            seen.append(response)
            return response
        s._recorder._send = spy
        s.flush()
        described = [i.handle for r in seen for res in r.results
                     if res.HasField("tape") for i in res.tape.tensors]
        assert not {y._handle, z._handle, w._handle} & set(described)
    tx, tn = torch.tensor([1.0, 2.0], requires_grad=True), torch.tensor([1, 2])
    assert got == [(tuple(r.shape), str(r.dtype), r.grad_fn.name() if r.grad_fn else None)
                   for r in (tx * scalar, tn + scalar, tx ** scalar)]


# --- 2. numpy arrays: refused as Tensor arguments, left to numpy by the operators --------------

_SINGLE = ["add", "sub", "mul", "div", "maximum", "minimum", "atan2", "logaddexp", "hypot",
           "matmul"]
_ARRAYS = ["np.array(2.0)", "np.array([2.0, 1.0])", "np.array(2)"]


@pytest.mark.parametrize("array", _ARRAYS)
@pytest.mark.parametrize("name", _SINGLE)
@pytest.mark.parametrize("form", ["t.{n}(t.tensor([1.0, 2.0]), {a})",
                                  "t.{n}(t.tensor([1.0, 2.0]), other={a})",
                                  "t.{n}(input=t.tensor([1.0, 2.0]), other={a})",
                                  "t.{n}({a}, t.tensor([1.0, 2.0]))",
                                  "t.tensor([1.0, 2.0]).{n}(other={a})"])
def test_array_argument_refused_as_torch(lib, form, name, array):
    code = "out = " + form.format(n=name, a=array)
    assert _outcome(_run(code), lib) == _outcome(_run(code), torch)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "atan2"])
def test_array_argument_of_a_session_method_refused_as_torch(gradserve_client, name):
    """`x.add(a)` names the argument at position 1 (the engine's methods are its functions:
    they name position 2)."""
    code = f"out = t.tensor([1.0, 2.0]).{name}(np.array(2.0))"
    with gradserve_client.session() as s:
        assert _outcome(_run(code), s) == _outcome(_run(code), torch)


@pytest.mark.parametrize("code", ["x = t.ones(2); x.add_(np.array(2.0)); out = x",
                                  "x = t.ones(2); x.mul_(other=np.array(2.0)); out = x",
                                  "x = t.ones(2); x.sub_(np.array([2.0, 1.0])); out = x"])
def test_array_argument_of_an_inplace_method_refused_as_torch(lib, code):
    assert _outcome(_run(code), lib) == _outcome(_run(code), torch)


@pytest.mark.parametrize("array", [*_ARRAYS, "np.array(True)"])
@pytest.mark.parametrize("op", ["+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", ">=",
                                "&", "@"])
def test_array_operand_of_an_operator_as_torch(lib, op, array):
    """The operators leave an array to numpy (a float64 tensor back), but `==` compares with
    it as a tensor and `a / x` is `reciprocal(x) * a`."""
    for code in (f"r = t.tensor([1.0, 2.0]) {op} {array}; out = (r, type(r).__name__)",
                 f"r = {array} {op} t.tensor([1.0, 2.0]); out = (r, type(r).__name__)",
                 f"x = t.tensor([1.0, 2.0]); y = x; y {op}= {array}; out = (x, y, y is x)"):
        if op in ("==", "!=", "<", ">=") and "y " in code:
            continue
        assert _outcome(_run(code), lib) == _outcome(_run(code), torch), code


# --- 3. .data has a version counter of its own; detach() shares it ------------------------------

_VERSION_PROGRAMS = [
    """
x = t.ones(3, requires_grad=True); y = x * 2; d = y.data
v0 = (y._version, d._version); d.add_(1)
v1 = (y._version, d._version)
z = y.detach(); z.add_(1)
out = (v0, v1, y._version, z._version, d._version, y.data._version)
""", """
w = t.ones(3, requires_grad=True); e = w.exp(); e.data.mul_(2); e.sum().backward()
out = (w.grad, e._version)
""", """
w = t.ones(3, requires_grad=True); e = w.exp(); e.detach().mul_(2); e.sum().backward()
out = w.grad
""", """
w = t.ones(3, requires_grad=True); e = w.exp(); e.data.mul_(2); e.data += 1
out = (e._version, e.data._version, e)
""", """
a = t.ones(2); ad = a.data; ad.add_(1); a.add_(1); out = (a._version, ad._version, a)
""", """
w = t.ones(3, requires_grad=True); e = w.exp(); e.data = t.zeros(3); out = (e._version, e)
""", """
w = t.ones(3, requires_grad=True); e = w.exp(); v = e.data[1:]; v.add_(1)
out = (e._version, v._version, e)
"""]


@pytest.mark.parametrize("code", _VERSION_PROGRAMS)
def test_data_and_detach_version_counters_as_torch(lib, code):
    assert _outcome(_run(code), lib) == _outcome(_run(code), torch)


# --- 4. an in-place bitwise op checks the cast first --------------------------------------------

@pytest.mark.parametrize("other", ["2.5", "True", "2", "t.tensor([1.5, 2.0])", "t.tensor(1.5)"])
@pytest.mark.parametrize("op", ["&=", "|=", "^=", "<<=", ">>="])
@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "int8", "bool", "float32"])
def test_inplace_bitwise_cast_error_as_torch(lib, dtype, op, other):
    code = f"x = t.ones(2, dtype=t.{dtype}); x {op} {other}; out = x"
    assert _outcome(_run(code), lib) == _outcome(_run(code), torch)


def test_inplace_bitwise_method_cast_error_as_torch(lib):
    code = "x = t.ones(2, dtype=t.int64); x.bitwise_and_(2.5); out = x"
    assert _outcome(_run(code), lib) == _outcome(_run(code), torch)


# --- 5. fill values and torch.tensor(..., dtype=) out of a dtype's range ------------------------

_OUT_OF_RANGE = {"int8": [128, -129, 300, 127.9, -128.5, 1e10, 1.5, float("nan"), float("inf")],
                 "uint8": [256, -1, -255, -256, -1.0, 255.5, 1e10],
                 "int16": [2 ** 15, -2 ** 15 - 1, 1e10],
                 "int32": [2 ** 31, -2 ** 31 - 1, 3e9],
                 "int64": [9.3e18, 1e19, float(2 ** 63)],
                 "bool": [2, -1, 2.5, 300, float("nan")],
                 "float32": [1e300, -1e300, float("inf")]}
_FILLS = ["t.zeros(2, dtype=t.{d}).fill_({v})",
          "t.zeros(2, dtype=t.{d}).masked_fill(t.tensor([True, False]), {v})",
          "t.zeros(2, dtype=t.{d}).masked_fill_(t.tensor([True, False]), {v})",
          "t.full((2,), {v}, dtype=t.{d})",
          "t.tensor({v}, dtype=t.{d})",
          "t.tensor([{v}, 1], dtype=t.{d})",
          "t.tensor([[1, 0], [{v}, 1]], dtype=t.{d})"]


@pytest.mark.parametrize("call", _FILLS)
@pytest.mark.parametrize("dtype, value", [(d, v) for d, vs in _OUT_OF_RANGE.items() for v in vs])
def test_value_out_of_range_as_torch(lib, call, dtype, value):
    code = "out = " + call.format(d=dtype, v=f"float({str(value)!r})"
                                  if isinstance(value, float) else repr(value))
    assert _outcome(_run(code), lib) == _outcome(_run(code), torch)


@pytest.mark.parametrize("value", [-2, -255, -256, 300])
def test_where_int_operand_range_as_torch(lib, value):
    """A uint8 operand takes -255..-1 wrapped (c10's overflow check), as torch."""
    code = f"x = t.tensor([1, 2], dtype=t.uint8); out = t.where(x > 1, x, {value})"
    assert _outcome(_run(code), lib) == _outcome(_run(code), torch)


# --- 6. maximum and its kin: torch's argument parser, keywords included -------------------------

@pytest.mark.parametrize("name", ["maximum", "minimum", "fmax", "fmin"])
@pytest.mark.parametrize("form", [
    "t.{n}(t.ones(2), other=2.0)", "t.{n}(input=t.ones(2), other=2.0)",
    "t.{n}(input=2.0, other=t.ones(2))", "t.{n}(2.0, other=t.ones(2))",
    "t.ones(2).{n}(other=2.0)", "t.ones(2).{n}(other=None)",
    "t.{n}(t.ones(2), other=np.array(2.0))", "t.{n}(t.ones(2), other=np.float64(2.0))",
    "t.{n}(t.ones(2))", "t.{n}(t.ones(2), t.ones(2), t.ones(2))",
    "t.{n}(t.ones(2), foo=t.ones(2))", "t.ones(2).{n}()", "t.{n}(other=t.ones(2))",
    "t.{n}(t.ones(2), input=t.ones(2))", "t.{n}(t.ones(2), t.ones(2), foo=1)",
    "t.ones(2).{n}(other=t.ones(2), input=t.ones(2))", "t.{n}()",
    "t.{n}(input=t.ones(2), other=t.zeros(2))", "t.ones(2).{n}(other=t.zeros(2))"])
def test_tensors_only_arguments_as_torch(lib, name, form):
    code = "out = " + form.format(n=name)
    assert _outcome(_run(code), lib) == _outcome(_run(code), torch)
