"""gradserve.surface.creation in process: the creation spellings tests/test_client_overloads.py
runs through a session (CREATION, RANDOM, CREATION_ERRORS), run against torch with the engine as
the backend, so both layers are held to the same cases; plus `generator=`, which only the engine
has."""

from __future__ import annotations

from typing import Any

import pytest

import gradserve.engine as ge
from gradserve.surface import creation
from gradserve.surface.spellings import SPELLINGS
from tests.reference import torch
from tests.test_client_overloads import CREATION, CREATION_ERRORS, RANDOM


def _dtype_name(t: Any) -> str:
    return str(t.dtype).removeprefix("torch.")


@pytest.mark.parametrize("f", CREATION, ids=[str(i) for i in range(len(CREATION))])
def test_creation_matches_torch_in_process(f: Any) -> None:
    t, e = f(torch), f(ge)
    assert tuple(e.shape) == tuple(t.shape)
    assert _dtype_name(e) == _dtype_name(t)
    assert e.requires_grad == t.requires_grad and e.is_leaf == t.is_leaf
    assert repr(e) == repr(t)


@pytest.mark.parametrize("f", RANDOM, ids=[str(i) for i in range(len(RANDOM))])
def test_random_creation_matches_torch_in_kind_in_process(f: Any) -> None:
    t, e = f(torch), f(ge)
    assert tuple(e.shape) == tuple(t.shape)
    assert _dtype_name(e) == _dtype_name(t)
    assert e.requires_grad == t.requires_grad and e.is_leaf == t.is_leaf
    assert e.grad_fn is None and t.grad_fn is None


@pytest.mark.parametrize("f", CREATION_ERRORS, ids=[str(i) for i in range(len(CREATION_ERRORS))])
def test_creation_errors_match_torch_in_process(f: Any) -> None:
    with pytest.raises(Exception) as t_err:
        f(torch)
    with pytest.raises(Exception) as e_err:
        f(ge)
    assert isinstance(e_err.value, t_err.type), (e_err.value, t_err.value)
    assert str(e_err.value) == str(t_err.value)


def test_a_refused_random_factory_has_drawn_as_torch() -> None:
    """requires_grad=True on an integer result is refused after the op ran, as torch: the
    generator has moved on by the refused draw in both."""
    draws = []
    for lib in (torch, ge):
        g = lib.Generator()
        g.manual_seed(7)
        with pytest.raises(RuntimeError, match="floating point"):
            lib.randint(5, (3,), generator=g, requires_grad=True)
        draws.append(lib.randint(100, (4,), generator=g).tolist())
    assert draws[0] == draws[1]


@pytest.mark.parametrize("name, call", [
    ("rand", lambda lib, g: lib.rand(3, generator=g)),
    ("randn", lambda lib, g: lib.randn((2, 2), generator=g, dtype=lib.float64)),
    ("randint", lambda lib, g: lib.randint(2, 9, (5,), generator=g)),
    ("rand_like", lambda lib, g: lib.rand_like(lib.ones(3), generator=g)),
    ("randint_like", lambda lib, g: lib.randint_like(lib.ones(3), 10, generator=g)),
    ("normal", lambda lib, g: lib.normal(1.0, 2.0, (3,), generator=g)),
])
def test_generator_keyword_draws_torchs_values(name: str, call: Any) -> None:
    t_gen, e_gen = torch.Generator().manual_seed(3), ge.Generator()
    e_gen.manual_seed(3)
    assert repr(call(ge, e_gen)) == repr(call(torch, t_gen)), name


def test_every_creation_spelling_is_a_surface_spelling() -> None:
    names = ("zeros", "ones", "empty", "rand", "randn", "full", "arange", "linspace", "eye",
             "randint", "randint_like", "normal", "zeros_like", "ones_like", "full_like",
             "rand_like", "randn_like", "empty_like")
    for name in names:
        assert SPELLINGS[name].function.__module__ == creation.__name__, name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linspace_is_torchs_bit_for_bit(dtype: str) -> None:
    """Each value one fused multiply-add from its nearer end, in the result's dtype: the last
    bits of a polynomial-fit tutorial's inputs, and so its printed losses, are torch's."""
    import math
    import random

    import numpy as np
    rnd = random.Random(7)
    cases = [(-math.pi, math.pi, 2000), (-2, 2, 37), (-1, 1, 100), (0, 1, 2), (5, 5, 10),
             (1e-3, 7e5, 40000), (3, -3, 1)] + [
        (rnd.uniform(-100, 100), rnd.uniform(-100, 100), rnd.randint(2, 5000))
        for _ in range(100)]
    for start, end, steps in cases:
        got = ge.linspace(start, end, steps, dtype=getattr(ge, dtype)).numpy()
        want = torch.linspace(start, end, steps, dtype=getattr(torch, dtype)).numpy()
        assert np.array_equal(got.view(f"u{got.itemsize}"), want.view(f"u{want.itemsize}")), (
            start, end, steps)


@pytest.mark.parametrize("gradserve_lib", ["engine", "session"], indirect=True)
@pytest.mark.parametrize("value", ["float64", "float32", "int32", "int64", "bool_"])
def test_a_numpy_scalar_keeps_its_dtype(gradserve_lib: Any, value: str) -> None:
    """torch.tensor(np.float64(0.5)) is float64 (a numpy scalar is not a Python float)."""
    import numpy as np
    scalar = getattr(np, value)(1)
    got, want = gradserve_lib.tensor(scalar), torch.tensor(scalar)
    assert str(got.dtype) == str(want.dtype)
    assert got.tolist() == want.tolist()
