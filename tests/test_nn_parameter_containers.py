"""nn.ParameterList and nn.ParameterDict against torch: registration and names, tensors made
Parameters, indexing and slicing, the dict's key order, reprs, training through them and the
errors torch raises."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)

A = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
B = np.array([0.5, -1.5], dtype=np.float32)


def _list_story(lib: Any) -> list[str]:
    nn = lib.nn
    pl = nn.ParameterList([nn.Parameter(lib.tensor(A)), lib.tensor(B)])
    pl.append(lib.tensor(2.0))
    pl.extend([lib.zeros(1, dtype=lib.float64)])
    pl += [nn.Parameter(lib.ones(2))]
    m = nn.Module()
    m.params = pl
    out = [repr(pl), repr(m), str(len(pl)), repr(nn.ParameterList()),
           str([n for n, _ in m.named_parameters()]), str(list(m.state_dict().keys())),
           str(type(pl[1]).__name__ == "Parameter" or isinstance(pl[1], nn.Parameter)),
           str(len(pl[1:4])), str(pl[-1].shape), str(pl[1].requires_grad)]
    loss = (pl[0].sum() * pl[2] + (pl[1] ** 2).sum())
    loss.backward()
    out += [repr(pl[0].grad), repr(pl[1].grad), repr(pl[2].grad)]
    return out


def _dict_story(lib: Any) -> list[str]:
    nn = lib.nn
    pd = nn.ParameterDict({"w": nn.Parameter(lib.tensor(A)), "b": lib.tensor(B)})
    pd["c"] = lib.tensor(3.0, dtype=lib.float64)
    pd.update(OrderedDict([("z", lib.ones(1)), ("a", lib.zeros(2))]))
    pd.update([("y", lib.ones(3))])
    m = nn.Module()
    m.pd = pd
    out = [repr(pd), repr(m), str(list(pd.keys())), str(len(pd)), str("w" in pd),
           str([n for n, _ in m.named_parameters()])]
    popped = pd.pop("z")
    out += [str(tuple(popped.shape)), str(list(pd)), str(pd.get("nope")),
            str(tuple(pd.setdefault("q", lib.ones(4)).shape)), str(list(pd.keys()))]
    k, v = pd.popitem()
    out += [k, str(tuple(v.shape)), str(list(pd.copy().keys())), str(list(reversed(pd)))]
    (pd["w"] @ pd["y"]).sum().backward()
    out.append(repr(pd["w"].grad))
    pd.clear()
    out.append(repr(pd))
    return out


def _errors(lib: Any) -> list[tuple[str, str]]:
    nn = lib.nn
    pl = nn.ParameterList([lib.zeros(1)])
    pd = nn.ParameterDict({"a": lib.zeros(1)})
    found = []
    for fn in (lambda: pl(1), lambda: pl[3], lambda: pl.extend(lib.zeros(2)), lambda: pd[1],
               lambda: pd["zz"], lambda: pd(1), lambda: pd.update(3),
               lambda: pd.update([("a", 1, 2)])):
        try:
            fn()
        except Exception as exc:
            found.append((type(exc).__name__, str(exc)))
        else:
            found.append(("no error", ""))
    return found


def test_parameter_list_as_torch(gradserve_lib: Any) -> None:
    assert _list_story(gradserve_lib) == _list_story(torch)


def test_parameter_dict_as_torch(gradserve_lib: Any) -> None:
    assert _dict_story(gradserve_lib) == _dict_story(torch)


def test_container_errors_as_torch(gradserve_lib: Any) -> None:
    assert _errors(gradserve_lib) == _errors(torch)


def test_optimizer_trains_parameters_of_a_list(gradserve_lib: Any) -> None:
    def run(lib: Any) -> list[float]:
        lib.manual_seed(0)
        pl = lib.nn.ParameterList([lib.nn.Parameter(lib.randn(3)) for _ in range(2)])
        opt = lib.optim.SGD(pl.parameters(), lr=0.1)
        losses = []
        for _ in range(3):
            opt.zero_grad()
            loss = (pl[0] * pl[1]).sum() ** 2
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    assert run(gradserve_lib) == run(torch)
