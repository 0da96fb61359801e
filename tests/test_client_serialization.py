"""torch.save / torch.load through a session (client/serialization.py) and in process
(engine/serialization.py), both over gradserve.surface.serialization, against torch: files either
writes load in the other (torch
with weights_only=True), with values, dtypes, shapes, requires_grad and Parameters kept; loading
is weights-only whatever is asked; `save(path)` stays the session snapshot."""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def session(gradserve_client: Any) -> Iterator[Any]:
    """A fresh session, standing in for torch."""
    with gradserve_client.session() as s:
        yield s


def _np(t: Any) -> np.ndarray:
    return np.asarray(t.detach().numpy())


def test_session_file_loads_in_torch(session, tmp_path):
    s = session
    net = s.nn.Sequential(s.nn.Linear(3, 2), s.nn.ReLU(), s.nn.Linear(2, 1))
    extra = {"ints": s.tensor([[1, 2], [3, 4]]), "t": s.tensor([[1.0, 2.0], [3.0, 4.0]]).t(),
             "scalar": s.tensor(2.5, dtype=s.float64), "n": 7, "name": "x",
             "grad": s.tensor([1.0, 2.0], requires_grad=True)}
    path = tmp_path / "net.pt"
    s.save({"model": net.state_dict(), "extra": extra, "list": [s.ones(2), 3.5]}, str(path))
    loaded = torch.load(path, weights_only=True)
    ours = net.state_dict()
    assert list(loaded["model"]) == list(ours)
    for k, v in ours.items():
        np.testing.assert_array_equal(loaded["model"][k].numpy(), _np(v))
        assert str(loaded["model"][k].dtype) == str(v.dtype)
    np.testing.assert_array_equal(loaded["extra"]["t"].numpy(), [[1.0, 3.0], [2.0, 4.0]])
    assert loaded["extra"]["ints"].dtype == torch.int64
    assert loaded["extra"]["scalar"].dtype == torch.float64 and loaded["extra"]["scalar"].dim() == 0
    assert loaded["extra"]["grad"].requires_grad and loaded["extra"]["n"] == 7
    assert loaded["list"][1] == 3.5


def test_torch_file_loads_in_session(session, tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    base = torch.arange(12.0).reshape(3, 4)
    obj = {"sd": net.state_dict(), "view": base.t()[1:], "p": net.weight,
           "ints": torch.tensor([5, -1], dtype=torch.int32), "b": torch.tensor([True, False]),
           "tuple": (torch.zeros(0, 2), 1, None)}
    path = tmp_path / "torch.pt"
    torch.save(obj, path)
    got = session.load(str(path))
    assert list(got["sd"]) == ["weight", "bias"]
    np.testing.assert_array_equal(_np(got["sd"]["weight"]), net.weight.detach().numpy())
    np.testing.assert_array_equal(_np(got["view"]), base.t()[1:].numpy())
    assert isinstance(got["p"], session.nn.Parameter) and got["p"].requires_grad
    np.testing.assert_array_equal(_np(got["p"]), net.weight.detach().numpy())
    assert str(got["ints"].dtype) == "torch.int32"
    np.testing.assert_array_equal(_np(got["b"]), [True, False])
    assert tuple(got["tuple"][0].shape) == (0, 2) and got["tuple"][1:] == (1, None)
    with open(path, "rb") as fh:  # a file object too
        again = session.load(fh, map_location="cpu", weights_only=False)
    np.testing.assert_array_equal(_np(again["sd"]["bias"]), net.bias.detach().numpy())


def test_round_trip_through_a_buffer_and_load_state_dict(session):
    s = session
    s.manual_seed(1)
    a = s.nn.Linear(2, 2)
    buf = io.BytesIO()
    s.save(a.state_dict(), buf)
    buf.seek(0)
    b = s.nn.Linear(2, 2)
    b.load_state_dict(s.load(buf))
    x = s.ones(1, 2)
    np.testing.assert_array_equal(_np(b(x)), _np(a(x)))


def test_only_weights_are_loaded(session, tmp_path):
    torch.save({"c": collections.Counter(a=1)}, tmp_path / "counter.pt")
    with pytest.raises(pickle.UnpicklingError, match="collections.Counter"):
        session.load(str(tmp_path / "counter.pt"))
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("archive/data.pkl", b"cos\nsystem\n(S'echo hi'\ntR.")
    evil.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        session.load(evil)
    with pytest.raises(RuntimeError, match="zip format"):
        session.load(io.BytesIO(b"not a zip"))


def test_path_first_is_still_the_snapshot(session, tmp_path):
    path = tmp_path / "snap.gsnap"
    w = session.tensor([1.0], requires_grad=True)
    session.save(str(path), {"w": w})
    assert os.path.getsize(path) > 0
    assert not zipfile.is_zipfile(path)


def test_engine_save_and_load_interoperate_with_torch(tmp_path):
    import gradserve.engine as ge

    net = ge.nn.Linear(3, 2)
    path = tmp_path / "engine.pt"
    ge.save({"sd": net.state_dict(), "p": net.weight}, path)
    theirs = torch.load(path, weights_only=True)
    assert isinstance(theirs["p"], torch.nn.Parameter)
    np.testing.assert_array_equal(theirs["sd"]["weight"].numpy(), _np(net.weight))
    torch.save({"x": torch.arange(6.0).reshape(2, 3).t()}, tmp_path / "t.pt")
    ours = ge.load(tmp_path / "t.pt")
    np.testing.assert_array_equal(_np(ours["x"]), torch.arange(6.0).reshape(2, 3).t().numpy())
    again = ge.load(path)
    assert ge.nn.is_parameter(again["p"]) and again["p"].requires_grad
