"""Differential test through the client over the server's op catalogue: values, first and
second derivatives against torch (float32).

Samples come from the OpInfo modules (`tests/opinfo_*.py`) when an op has one; every other op
whose inputs are all tensors, whose attributes all have defaults and which torch has under the
same name gets a generic sample (random (2, 3) inputs in [0.5, 1.5]).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradserve.client as gc_client
from gradserve.v1 import catalogue_pb2
from tests.reference import torch

from .opinfo import OpInfo, Sample, make_input

TESTS = Path(__file__).resolve().parent


def opinfos() -> dict[str, OpInfo]:
    found: dict[str, OpInfo] = {}
    for mod in pkgutil.iter_modules([str(TESTS)]):
        if mod.name.startswith("opinfo_"):
            for info in importlib.import_module(f"tests.{mod.name}").OPINFOS:
                found[info.name] = info
    return found


def catalogue() -> catalogue_pb2.ListOpsResponse:
    from gradserve.server.catalogue import list_ops  # the same catalogue the server sends

    return list_ops()


# Ops whose inputs a generic random sample does not fit (they need an OpInfo).
NOT_GENERIC = frozenset({"where"})


def generic(op: catalogue_pb2.OpInfo) -> OpInfo | None:
    fn = getattr(torch, op.name, None)
    if (op.name in NOT_GENERIC or op.variadic or not op.inputs or op.optional_inputs or fn is None
            or any(a.required for a in op.attrs) or op.n_outputs != 1):
        return None
    return OpInfo(op.name, fn, [Sample(tuple((2, 3) for _ in op.inputs))], domain=(0.5, 1.5),
                  check_grad=op.differentiable, check_second_order=op.differentiable)


def cases() -> list[Any]:
    infos = opinfos()
    out = []
    for op in catalogue().ops:
        info = infos.get(op.name) or generic(op)
        if info is None:
            continue
        for k, sample in enumerate(info.samples):
            out.append(pytest.param(info, sample, id=f"{op.name}-{k}"))
    return out


@pytest.fixture(scope="module")
def session(gradserve_server):
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c, c.session() as s:
        yield s


def build(lib: Any, arrays: list[Any], requires: list[bool]) -> list[Any]:
    def one(a: Any, rg: bool) -> Any:
        if isinstance(a, np.ndarray):
            return lib.tensor(a, requires_grad=rg and a.dtype.kind == "f")
        if isinstance(a, list):
            return [one(x, rg) for x in a]
        return a
    return [one(a, rg) for a, rg in zip(arrays, requires)]


def leaves(xs: list[Any]) -> list[Any]:
    flat = []
    for x in xs:
        flat += x if isinstance(x, list) else [x]
    return [x for x in flat if hasattr(x, "requires_grad") and x.requires_grad]


def to_np(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().numpy(force=True)
    return np.asarray(t.detach().numpy() if hasattr(t, "detach") else t)


@pytest.mark.parametrize(("info", "sample"), cases())
def test_op_through_client_matches_torch(session, info, sample):
    rng = np.random.default_rng(0)
    arrays = [make_input(s, rng, info.domain, np.float32) for s in sample.inputs]
    requires = list(sample.requires_grad or [True] * len(arrays))
    results = []
    for lib in (torch, session):
        xs = build(lib, arrays, requires)
        # the catalogue op by its own signature (session.<name> may be torch's overload of it,
        # e.g. gather(input, dim, index) or einsum(equation, *operands): see
        # tests/test_client_overloads.py)
        fn = info.torch_fn if lib is torch else (
            lambda *a, _name=info.name, **k: session.call(_name, a, k))
        lib.manual_seed(7)  # random ops draw torch's values for the same seed
        out = fn(*xs, **sample.attrs)
        if isinstance(out, tuple):  # the first output the OpInfo compares
            out = out[info.outputs[0] if info.outputs else 0]
        record = {"value": to_np(out), "dtype": str(out.dtype)}
        ins = leaves(xs)
        if info.check_grad and ins and out.requires_grad:
            w = lib.tensor(np.linspace(0.5, 1.5, max(out.numel(), 1), dtype=np.float32)
                           .reshape(tuple(out.shape)))
            grads = lib.autograd.grad((out * w).sum(), ins, create_graph=True,
                                      allow_unused=True)
            record["grad"] = [None if g is None else to_np(g) for g in grads]
            if info.check_second_order:
                total = sum((g * g).sum() for g in grads if g is not None and g.requires_grad)
                if not isinstance(total, int):
                    second = lib.autograd.grad(total, ins, allow_unused=True)
                    record["second"] = [None if g is None else to_np(g) for g in second]
        results.append(record)
    expected, got = results
    assert got["dtype"] == expected["dtype"]
    if info.compare_values:
        np.testing.assert_allclose(got["value"], expected["value"], rtol=info.rtol,
                                   atol=info.atol)
    assert ("grad" in got) == ("grad" in expected)
    for key in ("grad", "second"):
        # A derivative one side does not record (piecewise-linear ops) counts as zeros.
        zeros = [None if g is None else np.zeros_like(g) for g in got.get("grad", ())]
        for g, e in zip(got.get(key, zeros), expected.get(key, zeros)):
            if g is None or e is None:
                assert g is None or not g.any()
                assert e is None or not e.any()
            else:
                np.testing.assert_allclose(g, e, rtol=10 * info.rtol, atol=10 * info.atol)
