"""Grad mode in every torch form, written once in gradserve.surface: the same programs run with
torch, the in-process engine and a remote session, and must observe the same things."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import gradserve.client as gc_client
import gradserve.engine as ge
import gradserve.surface as surface
from tests.reference import torch


@pytest.fixture
def backend(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _needs(t) -> bool:
    return bool(t.requires_grad)


def context_managers(tm):
    x = tm.tensor(2.0, requires_grad=True)
    seen = [tm.is_grad_enabled()]
    with tm.no_grad():
        seen += [_needs(x * 2), tm.is_grad_enabled()]
        with tm.enable_grad():
            seen += [_needs(x * 2), tm.is_grad_enabled()]
        seen.append(_needs(x * 2))
    with tm.set_grad_enabled(False):
        seen.append(_needs(x * 2))
    seen.append(_needs(x * 2))
    with tm.inference_mode():
        seen += [_needs(x * 2), tm.is_grad_enabled(), tm.is_inference_mode_enabled()]
    with tm.inference_mode(False):
        seen += [_needs(x * 2), tm.is_inference_mode_enabled()]
    seen.append(tm.is_inference_mode_enabled())
    return seen


def decorators(tm):
    x = tm.tensor(2.0, requires_grad=True)

    @tm.no_grad
    def bare(t):
        return _needs(t * 2)

    @tm.no_grad()
    def called(t):
        return _needs(t * 2)

    @tm.enable_grad
    def enabled(t):
        return _needs(t * 2)

    @tm.set_grad_enabled(False)
    def switched(t):
        return _needs(t * 2)

    @tm.inference_mode
    def inference_bare(t):
        return _needs(t * 2), tm.is_inference_mode_enabled()

    @tm.inference_mode(mode=False)
    def inference_off(t):
        return _needs(t * 2)

    seen = [bare(x), called(x), switched(x), tm.is_grad_enabled(), inference_bare(x),
            inference_off(x), bare.__name__]
    with tm.no_grad():
        seen.append(enabled(x))
    return seen


def plain_calls(tm):
    x = tm.tensor(2.0, requires_grad=True)
    tm.set_grad_enabled(False)
    seen = [_needs(x * 2), tm.is_grad_enabled()]
    tm.set_grad_enabled(True)
    seen += [_needs(x * 2), tm.is_grad_enabled()]
    ctx = tm.no_grad()
    with ctx.clone():
        seen.append(_needs(x * 2))
    return seen


def generators(tm):
    x = tm.tensor(2.0, requires_grad=True)

    @tm.no_grad()
    def steps(t):
        for _ in range(3):
            yield _needs(t * 2), tm.is_grad_enabled()

    seen = []
    for inside in steps(x):
        seen += [inside, tm.is_grad_enabled(), _needs(x * 2)]
    return seen


def errors_keep_the_mode(tm):
    x = tm.tensor(2.0, requires_grad=True)
    try:
        with tm.no_grad():
            raise KeyError("boom")
    except KeyError:
        pass
    return [tm.is_grad_enabled(), _needs(x * 2)]


PROGRAMS = [context_managers, decorators, plain_calls, generators, errors_keep_the_mode]


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_same_as_torch(backend, program):
    expected = program(torch)
    assert program(backend) == expected
    assert backend.is_grad_enabled() and torch.is_grad_enabled()


def test_grad_mode_is_per_thread():
    seen = []

    def worker():
        seen.append(surface.is_grad_enabled())

    with surface.no_grad():
        t = threading.Thread(target=worker)
        t.start()
        t.join()
        seen.append(surface.is_grad_enabled())
    assert seen == [True, False]


def test_engine_and_client_share_one_definition():
    for name in ("no_grad", "enable_grad", "set_grad_enabled", "inference_mode",
                 "is_grad_enabled", "is_inference_mode_enabled"):
        assert getattr(ge, name) is getattr(surface, name) is getattr(gc_client, name)
