"""Every registry op against torch (float32) and central finite differences (float64).

The cases come from `OPINFOS` in every `tests/opinfo_*.py` module (see `tests/opinfo.py`), so
adding an op and its OpInfo adds its tests. Per (op, sample), with ids like `add[0]`:

- `test_against_torch`: values, dtype, shape, `requires_grad` and `grad_fn` name of every output;
  gradients of `sum(out * v)` for a fixed random `v` through the plain backward and through the
  `create_graph=True` backward; second derivatives, i.e. the gradients of
  `sum(first_order_grad * w)`, all against torch given the same inputs.
- `test_finite_differences`: float64 gradients against central differences along unit or random
  directions, and second derivatives against differences of the (plain-backward) gradient.
"""

from __future__ import annotations

import importlib
import pkgutil
import traceback
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.surface.compat import short_node_name
from tests.reference import torch

from .opinfo import OpInfo, Sample, make_input

# --- collecting the OpInfos ----------------------------------------------------------------------

_IMPORT_ERRORS: dict[str, str] = {}


def _collect() -> list[OpInfo]:
    infos: list[OpInfo] = []
    here = Path(__file__).parent
    for mod in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if not mod.name.startswith("opinfo_"):
            continue
        try:
            module = importlib.import_module(f"{__package__}.{mod.name}")
        except Exception:  # reported by test_opinfo_modules_import, not a collection error
            _IMPORT_ERRORS[mod.name] = traceback.format_exc()
            continue
        infos.extend(getattr(module, "OPINFOS", []))
    return infos


OPINFOS = _collect()


def _cases(keep: Callable[[OpInfo], bool]) -> list[Any]:
    return list(_iter_cases(keep))


def _iter_cases(keep: Callable[[OpInfo], bool]) -> Iterator[Any]:
    seen: dict[str, int] = {}
    for info in OPINFOS:
        if not keep(info):
            continue
        label = info.name
        if label in seen:  # a second OpInfo for the same op (another torch spelling)
            seen[label] += 1
            label = f"{label}#{seen[info.name]}"
        else:
            seen[label] = 1
        for i, sample in enumerate(info.samples):
            yield pytest.param(info, i, sample, id=f"{label}[{i}]")


def test_opinfo_modules_import():
    assert not _IMPORT_ERRORS, "\n\n".join(f"tests/{k}.py:\n{v}" for k, v in _IMPORT_ERRORS.items())


def test_every_op_has_an_opinfo():
    covered = {info.name for info in OPINFOS}
    missing = sorted(set(ge.registry.OPS) - covered)
    assert not missing, f"{len(missing)} registry ops have no OpInfo: {', '.join(missing)}"


def test_every_opinfo_names_a_registered_op():
    unknown = sorted({info.name for info in OPINFOS} - set(ge.registry.OPS))
    assert not unknown, f"OpInfos for ops that are not registered: {', '.join(unknown)}"
    empty = sorted(info.name for info in OPINFOS if not info.samples)
    assert not empty, f"OpInfos without samples: {', '.join(empty)}"


# --- building inputs -----------------------------------------------------------------------------

def _rng(info: OpInfo, index: int, salt: str = "") -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"{info.name}/{index}/{salt}".encode()))


def _arrays(info: OpInfo, index: int, sample: Sample, dtype: Any) -> list[Any]:
    """The sample's inputs as numpy arrays (floating ones in `dtype`), scalars, None or lists."""
    rng = _rng(info, index)
    if info.float32_only:
        dtype = np.float32

    def fix(v: Any) -> Any:
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, np.generic):  # e.g. a 0-dim mask from a callable spec
            v = np.asarray(v)
        if isinstance(v, np.ndarray) and v.dtype.kind == "f":
            return v.astype(dtype)
        return v

    return [fix(make_input(spec, rng, info.domain, dtype)) for spec in sample.inputs]


def _flags(sample: Sample, arrays: list[Any]) -> list[Any]:
    """Per input: whether it requires grad (a list of flags for a list input)."""
    wanted = sample.requires_grad

    def floating(a: Any) -> bool:
        return isinstance(a, np.ndarray) and a.dtype.kind == "f"

    out: list[Any] = []
    for i, a in enumerate(arrays):
        w = True if wanted is None else wanted[i]
        if isinstance(a, list):
            ws = w if isinstance(w, (list, tuple)) else [w] * len(a)
            out.append([bool(x) and floating(e) for x, e in zip(ws, a)])
        else:
            out.append(bool(w) and floating(a))
    return out


def _engine_inputs(arrays: list[Any], flags: list[Any]) -> tuple[list[Any], list[Any]]:
    """(inputs for ge.apply, the tensors requiring grad in order)."""
    leaves: list[Any] = []

    def make(a: Any, rg: bool) -> Any:
        if not isinstance(a, np.ndarray):
            return a
        t = ge.tensor(a, requires_grad=rg)
        if rg:
            leaves.append(t)
        return t

    ins = [[make(e, f) for e, f in zip(a, fl)] if isinstance(a, list) else make(a, fl)
           for a, fl in zip(arrays, flags)]
    return ins, leaves


def _torch_inputs(arrays: list[Any], flags: list[Any]) -> tuple[list[Any], list[Any]]:
    leaves: list[Any] = []

    def make(a: Any, rg: bool) -> Any:
        if not isinstance(a, np.ndarray):
            return a
        t = torch.from_numpy(np.array(a, copy=True))
        if rg:
            t.requires_grad_(True)
            leaves.append(t)
        return t

    ins = [[make(e, f) for e, f in zip(a, fl)] if isinstance(a, list) else make(a, fl)
           for a, fl in zip(arrays, flags)]
    return ins, leaves


def _as_tuple(out: Any) -> tuple[Any, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _selected(info: OpInfo, n: int) -> tuple[int, ...]:
    return tuple(range(n)) if info.outputs is None else info.outputs


def _np(t: Any) -> np.ndarray:
    """Engine or torch tensor (or None) as an ndarray."""
    if isinstance(t, ge.Tensor):
        return np.asarray(t.detach().numpy())
    return t.detach().numpy(force=True)  # force: torch's double backward may give ZeroTensors


def _name(grad_fn: Any, engine: bool) -> str | None:
    if grad_fn is None:
        return None
    return grad_fn.name()  # torch's name(): "torch::autograd::CopyBackwards" for its C++ nodes


def _dtype_name(t: Any) -> str:
    return t.dtype.name if isinstance(t, ge.Tensor) else str(t.dtype).removeprefix("torch.")


def _close(got: np.ndarray, want: np.ndarray, rtol: float, atol: float, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape} != torch's {want.shape}"
    if want.dtype.kind in "biu" and got.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol,
                                   atol=atol, equal_nan=True, err_msg=what)


def _grad_outputs(info: OpInfo, index: int, outs: tuple[Any, ...], which: list[int]) -> list[Any]:
    rng = _rng(info, index, "v")
    return [rng.standard_normal(size=tuple(outs[k].shape)).astype(_np(outs[k]).dtype)
            for k in which]


def _zeros_if_none(g: Any, like: Any) -> np.ndarray:
    return np.zeros(tuple(like.shape)) if g is None else _np(g)


def _second_order(lib: Any, grads: tuple[Any, ...], leaves: list[Any],
                  ws: list[np.ndarray]) -> list[Any]:
    """Gradients of sum(grad_i * w_i) over the first-order grads that require grad."""
    make = ge.tensor if lib is ge else torch.from_numpy
    terms = [(g * make(w.astype(_np(g).dtype))).sum()
             for g, w in zip(grads, ws) if g is not None and g.requires_grad]
    if not terms:
        return [None] * len(leaves)
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return list(lib.autograd.grad(total, leaves, allow_unused=True))


# --- the tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("info, index, sample", _cases(lambda info: True))
def test_against_torch(info: OpInfo, index: int, sample: Sample):
    arrays = _arrays(info, index, sample, np.float32)
    flags = _flags(sample, arrays)
    e_in, e_leaves = _engine_inputs(arrays, flags)
    t_in, t_leaves = _torch_inputs(arrays, flags)
    ge.manual_seed(index)  # random ops draw torch's values for the same seed
    e_outs = _as_tuple(ge.apply(info.name, e_in, sample.attrs))
    torch.manual_seed(index)
    t_outs = _as_tuple(info.torch_fn(*t_in, **sample.attrs))
    assert len(e_outs) == len(t_outs), f"{len(e_outs)} outputs, torch has {len(t_outs)}"
    which = _selected(info, len(t_outs))
    for k in which:
        e, t = e_outs[k], t_outs[k]
        what = f"output {k}"
        assert tuple(e.shape) == tuple(t.shape), f"{what}: shape {e.shape} != torch's {t.shape}"
        assert _dtype_name(e) == _dtype_name(t), f"{what}: dtype {e.dtype} != torch's {t.dtype}"
        assert e.requires_grad == t.requires_grad, f"{what}: requires_grad differs from torch's"
        assert _name(e.grad_fn, True) == _name(t.grad_fn, False), f"{what}: grad_fn"
        declared = ge.registry.OPS[info.name].backward_names  # what ListOps promises
        shown = None if e.grad_fn is None else short_node_name(e.grad_fn.name())
        assert shown is None or shown in declared, f"{what}: undeclared grad_fn"
        if info.compare_values:
            _close(_np(e), _np(t), info.rtol, info.atol, f"{what} values")

    diff = [k for k in which if t_outs[k].requires_grad]
    if not (info.check_grad and info.compare_values and diff and t_leaves):
        return
    vs = _grad_outputs(info, index, t_outs, diff)
    e_outs_d = [e_outs[k] for k in diff]
    t_outs_d = [t_outs[k] for k in diff]
    t_vs = [torch.from_numpy(v) for v in vs]
    second = info.check_second_order
    t_grads = torch.autograd.grad(t_outs_d, t_leaves, grad_outputs=t_vs, allow_unused=True,
                                  retain_graph=True, create_graph=second)
    rtol, atol = info.rtol * 10, info.atol * 10
    for create_graph in (False, True):
        e_grads = ge.autograd.grad(e_outs_d, e_leaves, grad_outputs=[ge.tensor(v) for v in vs],
                                   allow_unused=True, retain_graph=True,
                                   create_graph=create_graph)
        for i, (eg, tg) in enumerate(zip(e_grads, t_grads)):
            what = f"grad of input {i} (create_graph={create_graph})"
            assert (eg is None) == (tg is None), f"{what}: {eg} vs torch's {tg}"
            if tg is not None:
                assert _dtype_name(eg) == _dtype_name(tg), f"{what}: dtype"
                _close(_np(eg), _np(tg), rtol, atol, what)
    if not second:
        return
    ws = [_rng(info, index, f"w{i}").standard_normal(size=tuple(t.shape))
          for i, t in enumerate(t_leaves)]
    t_g2 = _second_order(torch, t_grads, t_leaves, ws)
    e_g2 = _second_order(ge, e_grads, e_leaves, ws)
    for i, (eg, tg) in enumerate(zip(e_g2, t_g2)):
        # None and zeros are the same second derivative (torch's double backward often
        # materializes zeros where a rule does not depend on an input).
        _close(_zeros_if_none(eg, e_leaves[i]), _zeros_if_none(tg, t_leaves[i]), rtol * 10,
               atol * 10, f"second derivative for input {i}")


EPS = 1e-6
_FD_RTOL, _FD_ATOL = 1e-5, 1e-6


def _directions(rng: np.random.Generator, shape: tuple[int, ...]) -> list[np.ndarray]:
    n = int(np.prod(shape))
    if n <= 6:
        return [np.eye(n)[j].reshape(shape) for j in range(n)]
    return [rng.standard_normal(shape) for _ in range(2)]


def _check_fd(f: Callable[[list[np.ndarray]], float], grads: list[Any], xs: list[np.ndarray],
              rng: np.random.Generator, what: str) -> None:
    for i, x in enumerate(xs):
        g = np.zeros(x.shape) if grads[i] is None else _np(grads[i]).astype(np.float64)
        for d in _directions(rng, x.shape):
            plus = [*xs[:i], x + EPS * d, *xs[i + 1:]]
            minus = [*xs[:i], x - EPS * d, *xs[i + 1:]]
            fd = (f(plus) - f(minus)) / (2 * EPS)
            an = float(np.sum(g * d))
            assert abs(fd - an) <= _FD_ATOL + _FD_RTOL * max(abs(fd), abs(an)), (
                f"{what} of input {i}: autograd {an!r}, finite differences {fd!r}")


def _fd_case(info: OpInfo) -> bool:
    return info.check_grad and info.check_finite_differences and info.compare_values


@pytest.mark.parametrize("info, index, sample", _cases(_fd_case))
def test_finite_differences(info: OpInfo, index: int, sample: Sample):
    arrays = _arrays(info, index, sample, np.float64)
    flags = _flags(sample, arrays)
    e_in, leaves = _engine_inputs(arrays, flags)
    if not leaves:
        return
    outs = _as_tuple(ge.apply(info.name, e_in, sample.attrs))
    which = [k for k in _selected(info, len(outs)) if outs[k].requires_grad]
    if not which or any(outs[k].dtype is not ge.float64 for k in which):
        return  # nothing differentiable, or not computed in float64 (e.g. to_dtype(float32))
    vs = _grad_outputs(info, index, outs, which)
    xs = [_np(t).astype(np.float64) for t in leaves]

    def substitute(values: list[np.ndarray], rg: bool) -> tuple[list[Any], list[Any]]:
        it = iter(np.asarray(v) for v in values)  # x + eps * d is a numpy scalar for 0-dim x
        fresh = [[next(it) if f else a for a, f in zip(arr, fl)] if isinstance(arr, list)
                 else next(it) if fl else arr for arr, fl in zip(arrays, flags)]
        return _engine_inputs(fresh, [[f and rg for f in fl] if isinstance(fl, list)
                                      else fl and rg for fl in flags])

    def f(values: list[np.ndarray]) -> float:
        ins, _ = substitute(values, False)
        with ge.no_grad():
            o = _as_tuple(ge.apply(info.name, ins, sample.attrs))
        return float(sum(np.sum(_np(o[k]) * v) for k, v in zip(which, vs)))

    def grads_at(values: list[np.ndarray], create_graph: bool) -> tuple[Any, ...]:
        ins, ls = substitute(values, True)
        o = _as_tuple(ge.apply(info.name, ins, sample.attrs))
        return ls, ge.autograd.grad([o[k] for k in which], ls, [ge.tensor(v) for v in vs],
                                    allow_unused=True, create_graph=create_graph)

    rng = _rng(info, index, "fd")
    _, grads = grads_at(xs, False)
    _check_fd(f, list(grads), xs, rng, "gradient")

    if not info.check_second_order:
        return
    ws = [rng.standard_normal(x.shape) for x in xs]

    def g_dot_w(values: list[np.ndarray]) -> float:
        _, gs = grads_at(values, False)
        return float(sum(np.sum(_np(g) * w) for g, w in zip(gs, ws) if g is not None))

    ls, gs = grads_at(xs, True)
    second = _second_order(ge, gs, ls, ws)
    _check_fd(g_dot_w, second, xs, rng, "second derivative")
