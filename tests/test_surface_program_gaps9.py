"""Gaps found by running public PyTorch programs unchanged through a session (round 9).

pytorch/examples' forward-forward MNIST overlays a label on each row with
`x_[range(x.shape[0]), y] = x.max()`: torch reads a range (or a tuple) among an index's items as
a list of indices. Each case runs on torch and on gradserve (in process and through a session)
and compares.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _data(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def _message(exc: BaseException) -> str:
    return str(exc).split("\ngradserve:")[0]


# --- a range or a tuple among an index's items (pytorch/examples mnist_forward_forward) --------

SEQUENCE_INDICES = [
    pytest.param(lambda t: range(2), id="range"),
    pytest.param(lambda t: range(0), id="empty-range"),
    pytest.param(lambda t: (range(3), [0, 1, 2]), id="range-and-list"),
    pytest.param(lambda t: ((0, 2),), id="tuple-item"),
    pytest.param(lambda t: ((0, 2), 1), id="tuple-and-int"),
    pytest.param(lambda t: (slice(None), range(1, 4, 2)), id="slice-and-range"),
    pytest.param(lambda t: (range(3), t.tensor([3, 0, 1])), id="range-and-tensor"),
]


@pytest.mark.parametrize("index", SEQUENCE_INDICES)
def test_a_sequence_among_the_index_items_reads_as_torchs(lib, index):
    def run(t: Any) -> tuple[Any, ...]:
        x = t.tensor(_data((3, 4), 0), requires_grad=True)
        y = x[index(t)]
        (y * y).sum().backward()
        return y.detach().numpy(), x.grad.numpy(), y.grad_fn.name()

    got, want = run(lib), run(torch)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2] == want[2]


@pytest.mark.parametrize("index", SEQUENCE_INDICES)
def test_assigning_through_a_sequence_among_the_index_items_is_torchs(lib, index):
    def run(t: Any) -> np.ndarray:
        x = t.tensor(_data((3, 4), 1))
        x[index(t)] = x.max()
        return x.numpy()

    np.testing.assert_array_equal(run(lib), run(torch))


def test_a_range_of_strings_position_still_refuses_as_torchs(lib):
    def run(t: Any) -> Any:
        return t.zeros(3, 4)[range(2), "a"]

    with pytest.raises(TypeError) as theirs:
        run(torch)
    with pytest.raises(TypeError) as ours:
        run(lib)
    assert _message(ours.value) == _message(theirs.value)


def test_forward_forward_label_overlay_is_torchs(lib):
    """The program's own overlay: the first 10 pixels zeroed, the label's pixel set to the max."""
    def run(t: Any) -> np.ndarray:
        x = t.tensor(_data((5, 16), 2))
        y = t.tensor([3, 1, 4, 1, 5])
        x_ = x.clone()
        x_[:, :10] *= 0.0
        x_[range(x.shape[0]), y] = x.max()
        return x_.numpy()

    np.testing.assert_array_equal(run(lib), run(torch))


# --- torch's submodules imported by path (karpathy's makemore and minGPT:
# `from torch.utils.data.dataloader import DataLoader`; custom optimizers:
# `from torch.optim.optimizer import Optimizer, required`) ---------------------------------------

def test_optim_optimizer_names_the_base_and_required_as_torchs(lib):
    assert lib.optim.optimizer.Optimizer is lib.optim.Optimizer
    from torch.optim import optimizer as torch_optimizer

    assert repr(lib.optim.optimizer.required) == repr(torch_optimizer.required)


def test_a_custom_optimizer_with_a_required_lr_refuses_a_group_without_it_as_torchs(lib):
    from torch.optim import optimizer as torch_optimizer

    def run(t: Any, module: Any) -> Any:
        class Plain(module.Optimizer):
            def __init__(self, params: Any, lr: Any = module.required) -> None:
                super().__init__(params, {"lr": lr})

        return Plain([t.zeros(2, requires_grad=True)])

    with pytest.raises(ValueError) as theirs:
        run(torch, torch_optimizer)
    with pytest.raises(ValueError) as ours:
        run(lib, lib.optim.optimizer)
    assert _message(ours.value) == _message(theirs.value)


PROGRAM = '''
import torch
import torch.nn as nn
from torch.optim.optimizer import Optimizer, required
from torch.utils.data.dataloader import DataLoader
from torch.utils.data.dataset import Dataset
from torch.utils.data.sampler import SequentialSampler


class Pairs(Dataset):
    def __init__(self, n):
        g = torch.Generator().manual_seed(3)
        self.x = torch.randn(n, 3, generator=g)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.25

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class PlainSGD(Optimizer):
    def __init__(self, params, lr=required):
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(p.grad, alpha=-group["lr"])


torch.manual_seed(0)
model = nn.Linear(3, 1)
data = Pairs(24)
loader = DataLoader(data, batch_size=8, sampler=SequentialSampler(data))
opt = PlainSGD(model.parameters(), lr=0.1)
for epoch in range(3):
    for x, y in loader:
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    print(epoch, loss.item())
print(opt)
'''


def test_a_program_importing_torch_submodules_by_path_runs_as_torch(gradserve_server, tmp_path):
    import re
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    through_session = (
        "import runpy, sys\n"
        "import gradserve.client as gc\n"
        "from tests.corpus.run import install_session_as_torch\n"
        "with gc.connect(sys.argv[1]) as c, c.session() as s:\n"
        "    install_session_as_torch(s)\n"
        "    runpy.run_path(sys.argv[2], run_name='__main__')\n")

    def run(args: list[str]) -> str:
        done = subprocess.run([sys.executable, *args], cwd=repo, capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        return re.sub(r" object at 0x[0-9a-f]+>", " object at 0x...>", done.stdout)

    want = run([str(program)])
    got = run(["-c", through_session, f"localhost:{gradserve_server[1]}", str(program)])
    assert got.splitlines() == want.splitlines()


# --- torch.load(..., weights_only=False) (pytorch/examples time_sequence_prediction saves a numpy
# array with torch.save and loads it back) -------------------------------------------------------

class Record:
    """A program's own class, pickled by a trusting torch.save/torch.load round trip."""

    def __init__(self, name: str, values: Any) -> None:
        self.name, self.values = name, values


def _saved_by_torch(path: Any, obj: Any) -> Any:
    torch.save(obj, path)
    return path


def test_weights_only_false_loads_a_numpy_array_as_torchs(lib, tmp_path):
    data = np.sin(np.arange(12, dtype=np.float64).reshape(3, 4) / 3.0)
    path = _saved_by_torch(tmp_path / "data.pt", data)
    got = lib.load(path, weights_only=False)
    want = torch.load(path, weights_only=False)
    assert type(got) is type(want) is np.ndarray
    np.testing.assert_array_equal(got, want)
    lib.save(data, tmp_path / "ours.pt")
    np.testing.assert_array_equal(torch.load(tmp_path / "ours.pt", weights_only=False), data)
    np.testing.assert_array_equal(lib.load(tmp_path / "ours.pt", weights_only=False), data)


def test_weights_only_false_loads_the_programs_classes_with_tensors(lib, tmp_path):
    values = _data((2, 3), 4)
    path = _saved_by_torch(tmp_path / "rec.pt", Record("w", torch.tensor(values)))
    got = lib.load(path, weights_only=False)
    assert isinstance(got, Record) and got.name == "w"
    np.testing.assert_array_equal(got.values.numpy(), values)
    assert type(got.values) is type(lib.tensor(values))


@pytest.mark.parametrize("weights_only", [None, True])
def test_a_weights_only_load_still_refuses_a_numpy_array(lib, tmp_path, weights_only):
    import pickle

    path = _saved_by_torch(tmp_path / "data.pt", np.zeros(3))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=weights_only)
    with pytest.raises(pickle.UnpicklingError):
        lib.load(path, weights_only=weights_only)


def test_weights_only_false_still_refuses_torchs_own_classes(lib, tmp_path):
    import pickle

    path = _saved_by_torch(tmp_path / "model.pt", torch.nn.Linear(2, 1))
    assert isinstance(torch.load(path, weights_only=False), torch.nn.Linear)
    with pytest.raises(pickle.UnpicklingError, match="torch.nn.modules.linear.Linear"):
        lib.load(path, weights_only=False)


# --- float(t) of a tensor that requires grad warns only with grad mode on (LBFGS reads
# `float(closure())` inside its no_grad step: torch prints no warning there) --------------------

def test_float_of_a_tensor_requiring_grad_under_no_grad_does_not_warn(lib, monkeypatch):
    import warnings

    from gradserve.surface import compat

    monkeypatch.setattr(compat, "_scalar_warned", [False])
    for t in (torch, lib):
        x = t.ones(1, requires_grad=True) * 2
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with t.no_grad():
                assert float(x) == 2.0
    with pytest.warns(UserWarning, match="Converting a tensor with requires_grad=True"):
        float(lib.ones(1, requires_grad=True) * 2)  # the once-per-process warning not spent


def test_lbfgs_step_prints_no_scalar_warning_as_torchs(lib, monkeypatch):
    import warnings

    from gradserve.surface import compat

    monkeypatch.setattr(compat, "_scalar_warned", [False])

    def run(t: Any) -> list[float]:
        w = t.tensor(_data((3,), 5), requires_grad=True)
        opt = t.optim.LBFGS([w], lr=0.5, max_iter=4)

        def closure() -> Any:
            opt.zero_grad()
            loss = ((w - 1.0) ** 2).sum()
            loss.backward()
            return loss

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            opt.step(closure)
        return w.detach().numpy().tolist()

    np.testing.assert_allclose(run(lib), run(torch), rtol=1e-6)
