"""movedim (and moveaxis), hstack, vstack, meshgrid (gradserve.surface.spellings) and
tril/triu's torch errors and in-place forms, through the engine and a session against torch with
the same inputs: values, shapes, grad_fn names, gradients, error types and messages."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import gradserve.client as gc_client
import gradserve.engine as ge
from tests.reference import HAVE_TORCH, MISSING_REASON, torch

X3 = np.arange(24, dtype=np.float32).reshape(2, 3, 4).tolist()


@pytest.fixture(scope="module")
def client(gradserve_server):
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


@pytest.fixture(params=["engine", "client"])
def mod(request, client):
    if request.param == "engine":
        yield ge
    else:
        with client.session() as s:
            yield s


def _outcome(m, f):
    """f(m)'s result as plain data (values, shape, node, input gradient), or its error."""
    x = m.tensor(X3, requires_grad=True)
    try:  # (a session reports an op's error when it next sends: the whole case is inside)
        y = f(m, x)
        node = y.grad_fn.name() if y.grad_fn is not None else None
        (y * m.arange(y.numel()).reshape(tuple(y.shape))).sum().backward()
        return np.asarray(y.detach().tolist()), tuple(y.shape), node, np.asarray(x.grad.tolist())
    except Exception as e:  # compared with torch's below, type and text
        return type(e), str(e)


def _same(ours, theirs):
    if isinstance(theirs[0], type):
        # (a session's message goes on to say where the failing op was recorded)
        assert issubclass(ours[0], theirs[0]) and ours[1].startswith(theirs[1]), (ours, theirs)
        return
    np.testing.assert_allclose(ours[0], theirs[0])
    assert ours[1:3] == theirs[1:3]
    np.testing.assert_allclose(ours[3], theirs[3])


CASES = {
    "movedim": lambda m, x: m.movedim(x, 0, 1),
    "movedim_tuple": lambda m, x: m.movedim(x, (0, 1), (2, 0)),
    "movedim_negative": lambda m, x: m.movedim(x, -1, 0),
    "movedim_list": lambda m, x: m.movedim(x, [0], [2]),
    "movedim_method": lambda m, x: x.movedim((1,), (-1,)),
    "movedim_keywords": lambda m, x: x.movedim(source=2, destination=0),
    "moveaxis": lambda m, x: m.moveaxis(x, 0, 2),
    "moveaxis_method": lambda m, x: x.moveaxis(2, 1),
    "movedim_0d": lambda m, x: m.movedim(x.sum(), -1, 0) * x.sum(),
    "movedim_mismatched": lambda m, x: m.movedim(x, (0, 5), (1,)),
    "movedim_out_of_range": lambda m, x: m.movedim(x, (0, 5), (1, 2)),
    "movedim_repeated_source": lambda m, x: m.movedim(x, (0, -3), (1, 2)),
    "movedim_repeated_destination": lambda m, x: m.movedim(x, (0, 1), (1, -2)),
    "hstack_2d": lambda m, x: m.hstack([x[0], x[1] * 2]),
    "hstack_1d": lambda m, x: m.hstack((x[0, 0], x[1, 1])),
    "hstack_0d": lambda m, x: m.hstack([x[0, 0, 0], x[1, 1]]),
    "vstack_1d": lambda m, x: m.vstack([x[0, 0], x[1, 2]]),
    "vstack_mixed": lambda m, x: m.vstack([x[0], x[1, 2]]),
    "vstack_0d": lambda m, x: m.vstack([x[0, 0, 0], x[1, 1, 1]]),
    "vstack_3d": lambda m, x: m.vstack([x, x]),
    "vstack_empty": lambda m, x: m.vstack([]),
    "hstack_not_a_list": lambda m, x: m.hstack(x),
    "hstack_mismatched": lambda m, x: m.hstack([x[0], x[0, 0]]),
    "tril_1d": lambda m, x: m.tril(x[0, 0]),
    "triu_method_1d": lambda m, x: x[0, 0].triu(1),
    "tril_": lambda m, x: (x * 1).tril_(1),
    "triu_": lambda m, x: (x * 1).triu_(diagonal=-1),
    "meshgrid_ij_0": lambda m, x: m.meshgrid(x[0, 0], x[1, :, 0], indexing="ij")[0],
    "meshgrid_ij_1": lambda m, x: m.meshgrid(x[0, 0], x[1, :, 0], indexing="ij")[1],
    "meshgrid_xy_0": lambda m, x: m.meshgrid(x[0, 0], x[1, :, 0], indexing="xy")[0],
    "meshgrid_xy_1": lambda m, x: m.meshgrid(x[0, 0], x[1, :, 0], indexing="xy")[1],
    "meshgrid_list_of_3": lambda m, x: m.meshgrid([x[0, 0], x[1, :, 0], x[0, 1, :2]],
                                                   indexing="xy")[2],
    "meshgrid_0d": lambda m, x: m.meshgrid(x[0, 0, 0], x[0, 0], indexing="ij")[0],
    "meshgrid_one": lambda m, x: m.meshgrid((x[1, 1],), indexing="ij")[0],
    "meshgrid_bad_indexing": lambda m, x: m.meshgrid(x[0, 0], indexing="yx")[0],
    "meshgrid_empty": lambda m, x: m.meshgrid([], indexing="ij")[0],
    "meshgrid_dtypes": lambda m, x: m.meshgrid(x[0, 0], m.arange(3), indexing="ij")[0],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_torch(mod, case):
    _same(_outcome(mod, CASES[case]), _outcome(torch, CASES[case]))


def test_movedim_bad_types_raise_torchs_type_error(mod):
    x = mod.tensor(X3)
    with pytest.raises(TypeError, match=r"^movedim\(\) received an invalid combination"):
        mod.movedim(x, (1.5,), (0,))
    with pytest.raises(TypeError, match=r"^movedim\(\) received an invalid combination"):
        x.movedim(0)


def test_meshgrid_refuses_a_2d_tensor_and_warns_without_indexing(mod):
    x = mod.tensor(X3)
    with pytest.raises(RuntimeError, match=r"^torch.meshgrid: Expected 0D or 1D tensor in the "
                       r"tensor list but got"):  # (torch then prints the tensor)
        mod.meshgrid(x[0], x[0, 0], indexing="ij")[0].tolist()
    with pytest.warns(UserWarning) as ours:
        mod.meshgrid(x[0, 0], x[1, 1])
    assert [str(w.message) for w in ours] == [torch_meshgrid_warning()]


def torch_meshgrid_warning() -> str:
    """torch's warning for meshgrid without `indexing`, asked in a fresh process (torch warns
    once per process)."""
    if not HAVE_TORCH:
        pytest.skip(MISSING_REASON)
    code = ("import warnings, torch\nwarnings.simplefilter('always')\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    torch.meshgrid(torch.ones(2), torch.ones(3))\n"
            "print(str(w[0].message).split(' (Triggered internally')[0])")
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True, timeout=120).stdout.strip()
