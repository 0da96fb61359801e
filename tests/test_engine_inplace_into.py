"""In-place elementwise ops on large tensors that record nothing (`p -= lr * p.grad` under
no_grad) write into the target (engine.dispatch.run_into): torch's bits, its version counter,
the limits as out of place, and every case it does not take (a cast, a broadcast target, an
overlapping input, a recorded op) still torch's."""

from __future__ import annotations

import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import dispatch, errors, limits
from tests.reference import torch

ROWS, COLS = 256, 96  # 24,576 elements: at least dispatch.INPLACE_MIN_ELEMENTS
assert ROWS * COLS >= dispatch.INPLACE_MIN_ELEMENTS

_rng = np.random.default_rng(7)
W = _rng.standard_normal((ROWS, COLS)).astype(np.float32)
G = _rng.standard_normal((ROWS, COLS)).astype(np.float32)
ROW = _rng.standard_normal(COLS).astype(np.float32)
# inf and nan among the values: torch computes them silently, so must the in-place path
W[0, :4] = [np.inf, -np.inf, np.nan, 1e38]
G[0, :4] = [np.inf, np.inf, 1.0, 1e38]

# (name, the in-place update on (module, target, other tensor, row tensor))
UPDATES = [
    ("isub scaled grad", lambda m, p, g, r: p.__isub__(0.01 * g)),
    ("iadd", lambda m, p, g, r: p.__iadd__(g)),
    ("add_", lambda m, p, g, r: p.add_(g)),
    ("sub_", lambda m, p, g, r: p.sub_(g)),
    ("imul row", lambda m, p, g, r: p.__imul__(r)),
    ("itruediv int", lambda m, p, g, r: p.__itruediv__(3)),
    ("imul float", lambda m, p, g, r: p.__imul__(1e30)),
    ("iadd itself", lambda m, p, g, r: p.__iadd__(p)),
    ("mul_ detached self", lambda m, p, g, r: p.mul_(p.detach())),
    ("add_ alpha", lambda m, p, g, r: p.add_(g, alpha=-0.01)),  # fused: not one ufunc
    ("neg_", lambda m, p, g, r: p.neg_()),
    ("float64 other", lambda m, p, g, r: p.__iadd__(g.double())),  # a cast: out of place
]


def _bits(t: object) -> np.ndarray:
    return np.asarray(t.detach().numpy() if hasattr(t, "detach") else t).view(np.int32)


@pytest.mark.parametrize("name,update", UPDATES, ids=[u[0] for u in UPDATES])
def test_inplace_update_is_torch_bit_for_bit(name, update):
    results = []
    for mod in (ge, torch):
        p, g, r = mod.tensor(W.copy()), mod.tensor(G.copy()), mod.tensor(ROW.copy())
        before = p._version
        with mod.no_grad():
            out = update(mod, p, g, r)
        after = p._version
        assert out is p
        assert after == before + 1
        results.append(_bits(p))
    np.testing.assert_array_equal(results[0], results[1])


def test_the_target_array_itself_is_written_and_its_views_see_it():
    p = ge.tensor(W.copy())
    data = p._data
    view = p[3]
    with ge.no_grad():
        p -= 0.5 * ge.tensor(G)
    assert p._data is data  # no new array: written in place
    np.testing.assert_array_equal(view.numpy(), p.numpy()[3])
    assert view._version == 1


def test_an_overlapping_input_is_computed_out_of_place():
    """An input that is another view of the target's memory (torch refuses it) is not written
    into the target while it is read: the result is computed whole first, as before."""
    a = np.arange(160 * 160, dtype=np.float32).reshape(160, 160)
    target = ge.tensor(a.copy())
    with ge.no_grad():
        target += target.t().detach()  # not a view any more (no _base), the same memory
    np.testing.assert_array_equal(target.numpy(), a + a.T)


def test_a_recorded_update_still_records():
    """Under grad mode, an in-place op on a tensor that requires grad records its node."""
    results = []
    for mod in (ge, torch):
        w = mod.tensor(W[1:].copy(), requires_grad=True)
        y = w * 1
        y -= mod.tensor(G[1:])
        assert y.grad_fn.name() == "SubBackward0"
        y.sum().backward()
        results.append(w.grad.numpy())
    np.testing.assert_array_equal(results[0], results[1])


def test_errors_are_torch_s():
    p = ge.tensor(W.copy())
    with ge.no_grad(), pytest.raises(errors.InvalidArgumentError,
                                     match=r"doesn't match the broadcast shape"):
        p += ge.tensor(np.ones((2, ROWS, COLS), np.float32))
    n = ge.tensor(np.ones((ROWS, COLS), np.int64))
    with ge.no_grad(), pytest.raises(errors.InvalidArgumentError, match=r"can't be cast"):
        n += 0.5
    with pytest.raises(errors.InplaceError, match="leaf Variable that requires grad"):
        ge.tensor(W.copy(), requires_grad=True).add_(1.0)


def test_limits_hold_as_out_of_place():
    """The op's declared bound is admitted and charged: a budget smaller than the result
    refuses the in-place op as it refuses the op out of place, and leaves the target as it was."""
    p = ge.tensor(W.copy())
    g = ge.tensor(G)
    nbytes = W.nbytes
    with ge.no_grad():
        with limits.byte_budget(nbytes // 2), pytest.raises(errors.BudgetExceededError,
                                                            match=r"^sub\(\) result"):
            p -= g
        np.testing.assert_array_equal(p.numpy(), W)
        with limits.allocation_limit(W.size - 1), pytest.raises(errors.AllocationLimitError):
            p -= g
        with limits.byte_budget(4 * nbytes) as budget:
            p -= g
        assert budget.spent >= nbytes  # charged as the result it would have allocated

        class Stop(Exception):
            pass

        def check() -> None:
            raise Stop

        with limits.interrupt(check), pytest.raises(Stop):
            p -= g
