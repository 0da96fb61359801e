"""The dtype rules dispatch.run remembers by input dtypes (registry.by_dtypes, OpDef.rule_cache):
the remembered answer is the rule's, for every key shape and after the default dtype changes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import registry
from gradserve.engine.dispatch import run
from gradserve.engine.registry import OPS

from .reference import torch

DTYPES = ("bool", "int32", "int64", "float32", "float64")
NUMBERS = (True, 3, 2.5)
REFLECTED = {"mul": lambda a, b: a * b, "add": lambda a, b: a + b}  # torch: a number first


def _pair(name: str, shape: tuple[int, ...]) -> tuple[object, object]:
    data = np.ones(shape, dtype=name)
    return ge.tensor(data), torch.tensor(data)


def _same(ours: object, theirs: object) -> None:
    if isinstance(theirs, BaseException):
        return  # (the engine's functions take Python numbers where some of torch's do not)
    assert not isinstance(ours, BaseException), ours
    assert str(ours.dtype) == str(theirs.dtype)  # type: ignore[attr-defined]


def _both(ours: tuple, theirs: tuple) -> tuple[object, object]:
    """(fn, *args) called for each side: its result, or what it raised."""
    out = []
    for fn, *args in (ours, theirs):
        try:
            out.append(fn(*args))
        except Exception as exc:  # noqa: BLE001 - compared by _same
            out.append(exc)
    return out[0], out[1]


@pytest.mark.parametrize("op", ["mul", "add", "div", "lt", "maximum"])
def test_binary_result_dtypes_as_torch_twice(op):
    # each call twice: the first fills the cache, the second reads it
    for a, b in itertools.product(DTYPES, DTYPES + NUMBERS):
        for shape_a, shape_b in (((), ()), ((2,), ()), ((), (2,))):
            x, tx = _pair(a, shape_a)
            if isinstance(b, str):
                y, ty = _pair(b, shape_b)
            else:
                y = ty = b
            for _ in range(2):
                _same(*_both((getattr(ge, op), x, y), (getattr(torch, op), tx, ty)))
                if not isinstance(b, str) and op in REFLECTED:  # the Python number first
                    _same(*_both((run, OPS[op], (y, x), {}), (REFLECTED[op], ty, tx)))


def test_unary_rule_follows_the_default_dtype():
    x, tx = ge.tensor(2), torch.tensor(2)
    assert x.sin().dtype is ge.float32 and x.sin().dtype is ge.float32  # remembered
    torch.set_default_dtype(torch.float64)
    ge.set_default_dtype(ge.float64)
    try:
        assert str(x.sin().dtype) == str(tx.sin().dtype) == "torch.float64"
        assert str((x * 1.5).dtype) == str((tx * 1.5).dtype) == "torch.float64"
    finally:
        torch.set_default_dtype(torch.float32)
        ge.set_default_dtype(ge.float32)
    assert x.sin().dtype is ge.float32 and (x * 1.5).dtype is ge.float32


def test_rule_key_and_what_is_remembered():
    f, d, i = ge.tensor(1.0), ge.tensor([1.0], dtype=ge.float64), ge.tensor(1)
    assert registry.rule_key((f,)) is ge.float32
    assert registry.rule_key((f, f)) is ge.float32
    assert registry.rule_key((f, d)) is None  # promoted by dimension groups: not remembered
    assert registry.rule_key((i, 2.0)) == (ge.int64, float)
    assert registry.rule_key((2.0, i)) == (float, ge.int64)
    assert registry.rule_key((f, None)) is None
    assert registry.rule_key((f, f, f)) is None
    assert OPS["where"].rule_cache is None or all(
        not isinstance(k, tuple) or len(k) == 2 for k in OPS["where"].rule_cache)
    # a refusal is not remembered: it is raised again
    for _ in range(2):
        with pytest.raises(ge.errors.InvalidTypeError):
            run(OPS["neg"], (1.0,), {})
