"""torch's random numbers, value for value: the engine and a session against real torch.

Each case seeds both sides, makes the same calls in the same order and compares every value
bit for bit (dtype and shape too), over many seeds and sizes around the thresholds torch's
kernels switch at (16 elements for normal, 2**28 for randint's 64-bit draws).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import gradserve.client as gc_client
import gradserve.engine as ge
from tests.reference import torch

SEEDS = range(50)
SIZES = [0, 1, 2, 3, 7, 8, 15, 16, 17, 23, 31, 32, 33, 40]


def _np(t: Any) -> np.ndarray:
    return np.asarray(t.detach().numpy() if hasattr(t, "detach") else t.numpy())


def _same(ours: Any, theirs: Any) -> None:
    a, b = _np(ours), theirs.detach().numpy()
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def _both(seed: int, calls: Any) -> None:
    """`calls(lib)` returns a list of tensors; run it on the engine and on torch after seeding
    each with `seed`, and compare every tensor."""
    ge.manual_seed(seed)
    ours = calls(ge)
    torch.manual_seed(seed)
    theirs = calls(torch)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        _same(a, b)


def _dtype(lib: Any, name: str) -> Any:
    return getattr(lib, name)


def _ramp(lib: Any, n: int, lo: float = 0.0, hi: float = 1.0, dtype: str = "float32") -> Any:
    """n values from lo to hi, made from the same numpy array on both sides (the engine's
    linspace is not always torch's to the last bit, and is not what these tests are about)."""
    return lib.tensor(np.linspace(lo, hi, n).astype(dtype))


# --- the stream and the creation functions -------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rand_and_randn_match_torch_over_seeds_and_sizes(dtype):
    def calls(lib):
        d = _dtype(lib, dtype)
        return [f(n, dtype=d) for n in SIZES for f in (lib.rand, lib.randn)]
    for seed in SEEDS:
        _both(seed, calls)


@pytest.mark.parametrize("shape", [(), (1,), (4, 4), (3, 5, 2), (2, 17), (1000,), (1007,),
                                   (64, 33)])
def test_multi_dim_and_large_shapes(shape):
    def calls(lib):
        return [lib.randn(shape), lib.rand(shape), lib.randn(shape, dtype=lib.float64),
                lib.rand(shape, dtype=lib.float64)]
    for seed in range(5):
        _both(seed, calls)


def test_cached_box_muller_value_carries_across_calls():
    def calls(lib):
        # odd sizes leave the sine half cached; rand in between does not use or clear it
        return [lib.randn(3), lib.rand(2), lib.randn(1), lib.randn(5, dtype=lib.float64),
                lib.randn(20), lib.randn(1), lib.normal(0.0, 1.0, size=(3,))]
    for seed in SEEDS:
        _both(seed, calls)


def test_manual_seed_clears_the_cached_normal():
    ge.manual_seed(0)
    ge.randn(1)
    ge.manual_seed(0)
    torch.manual_seed(0)
    _same(ge.randn(4), torch.randn(4))


@pytest.mark.parametrize("low,high", [(0, 10), (-5, 5), (0, 2 ** 16), (0, 2 ** 28 - 1),
                                      (0, 2 ** 28), (3, 2 ** 31), (0, 2 ** 32), (-2 ** 40, 2 ** 40),
                                      (-2 ** 62, 2 ** 62)])
def test_randint_matches_torch_incl_large_ranges(low, high):
    def calls(lib):
        out = [lib.randint(low, high, (9,)), lib.randint(low, high, (2, 3))]
        if high <= 2 ** 53:  # torch warns beyond float64's exact integers
            out.append(lib.randint(low, high, (17,), dtype=lib.float64))
        return out
    for seed in range(20):
        _both(seed, calls)


def test_randint_short_forms_and_dtypes():
    def calls(lib):
        return [lib.randint(10, (5,)), lib.randint(3, 10, (5,), dtype=lib.int32),
                lib.randint(0, 2 ** 30, (5,), dtype=lib.int32),
                lib.randint(-2 ** 63, 2 ** 63 - 1, (4,)), lib.zeros(3, dtype=lib.bool).random_(),
                lib.zeros(3, dtype=lib.int32).random_(), lib.zeros(3, dtype=lib.bool).random_(2)]
    for seed in range(20):
        _both(seed, calls)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 10, 16, 17, 100, 1000, 5000])
def test_randperm_matches_torch(n):
    def calls(lib):
        return [lib.randperm(n), lib.randperm(n, dtype=lib.int32), lib.rand(3)]
    for seed in range(10):
        _both(seed, calls)


def test_a_long_randperm_stops_at_an_interrupt():
    """The swap loop checks for a deadline or cancel between chunks (it is not one numpy call)."""
    calls = []

    class Stop(Exception):
        pass

    def check() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    with ge.limits.interrupt(check), pytest.raises(Stop):
        ge.randperm(1 << 20)
    assert len(calls) == 3


def test_like_functions_match_torch():
    def calls(lib):
        x = lib.zeros(4, 5)
        y = lib.zeros(17, dtype=lib.float64)
        t = lib.zeros(5, 4).t()  # dense, transposed: torch's result keeps its strides
        s = lib.zeros(10, 4)[::2]  # not dense: a C-contiguous result
        return [lib.rand_like(x), lib.randn_like(x), lib.randn_like(y), lib.rand_like(y),
                lib.randint_like(x, 10), lib.randint_like(y, -3, 3), lib.randn_like(t),
                lib.rand_like(t), lib.randn_like(s), lib.randn_like(lib.zeros(4, 8).t())]
    for seed in range(20):
        _both(seed, calls)


# --- normal's overloads, bernoulli ---------------------------------------------------------------

def test_normal_overloads_match_torch():
    def calls(lib):
        m4 = lib.arange(4.0)
        s4 = lib.arange(1.0, 5.0)
        m20 = _ramp(lib, 20, -1, 1)
        return [lib.normal(m4, s4), lib.normal(m4, 2.0), lib.normal(m4), lib.normal(1.5, s4),
                lib.normal(m20, 0.5), lib.normal(2.0, 3.0, size=(5,)),
                lib.normal(2.0, 3.0, (4, 5)), lib.normal(m20, lib.ones(1) * 2),
                lib.normal(m4.double(), s4.double()), lib.normal(-1.0, 0.25, (3,),
                                                                  dtype=lib.float64)]
    for seed in range(30):
        _both(seed, calls)


def test_bernoulli_scalar_and_tensor_p():
    def calls(lib):
        p32 = _ramp(lib, 25)
        p64 = _ramp(lib, 19, dtype="float64")
        return [lib.bernoulli(p32), lib.bernoulli(p64), lib.bernoulli(p32, 0.3),
                lib.zeros(7).bernoulli_(0.7), lib.zeros(2, 5).bernoulli_(p32[:5]),
                lib.zeros(3, dtype=lib.float64).bernoulli_(p64[:3]), lib.zeros(6).bernoulli_(),
                p32.bernoulli()]
    for seed in SEEDS:
        _both(seed, calls)


def test_random_errors_are_torchs():
    cases = [lambda lib: lib.normal(0.0, -1.0, (2,)),
             lambda lib: lib.normal(lib.zeros(2), lib.tensor([-1.0, 1.0])),
             lambda lib: lib.zeros(2).uniform_(1, 0),
             lambda lib: lib.zeros(2).bernoulli_(1.5),
             lambda lib: lib.bernoulli(lib.tensor([1.5])),
             lambda lib: lib.zeros(2).normal_(0, -1),
             lambda lib: lib.randint(5, 5, (2,)),
             lambda lib: lib.randint(0, 2 ** 40, (3,), dtype=lib.int32),
             lambda lib: lib.randint(-2 ** 40, 5, (3,), dtype=lib.int32),
             lambda lib: lib.zeros(3).normal_(0, float("nan")),
             lambda lib: lib.zeros(3, dtype=lib.int32).random_(0, 2 ** 40),
             lambda lib: lib.zeros(2).uniform_(float("-inf"), 0),
             lambda lib: lib.zeros(2, dtype=lib.bool).random_(0, 5),
             lambda lib: lib.randperm(-1)]
    for case in cases:
        with pytest.raises(RuntimeError) as want:
            case(torch)
        with pytest.raises(RuntimeError) as got:
            case(ge)
        assert str(got.value) == str(want.value)


# --- in place: uniform_, normal_, random_, exponential_ on whole tensors and slices -------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inplace_fills_match_torch(dtype):
    def calls(lib):
        d = _dtype(lib, dtype)
        return [lib.zeros(n, dtype=d).uniform_(-2.5, 3.5) for n in (1, 5, 16, 40)] + [
            lib.zeros(n, dtype=d).normal_(0.3, 2.7) for n in (1, 5, 16, 17, 40)] + [
            lib.zeros(5, dtype=d).normal_(), lib.zeros(5, dtype=d).uniform_(),
            lib.zeros(9, dtype=d).exponential_(1.5), lib.zeros(9, dtype=d).random_(0, 100),
            lib.zeros(4, dtype=d).random_(7), lib.zeros(4, dtype=d).random_()]
    for seed in range(30):
        _both(seed, calls)


def test_inplace_on_slices_and_transposes_follow_torchs_order():
    def calls(lib):
        x = lib.zeros(6, 20)
        x[:, 3].uniform_(-1, 1)           # strided column
        x[1:4].normal_(2.0, 0.5)          # contiguous rows: normal's 16-block path
        x[:, ::2].normal_()               # non-contiguous: one at a time, cached pair
        y = lib.zeros(20, 6).t()          # transposed: memory order
        y.uniform_()
        z = lib.zeros(5, 4).t()
        z.bernoulli_(0.5)
        w = lib.zeros(4, 5)
        w.t().bernoulli_(_ramp(lib, 4))
        return [x, y, z, w]
    for seed in range(20):
        _both(seed, calls)


# --- generators -----------------------------------------------------------------------------------

def test_generator_objects_match_torchs_and_leave_the_default_alone():
    for seed in range(20):
        g, tg = ge.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        ge.manual_seed(99)
        torch.manual_seed(99)
        _same(ge.randn(5, generator=g), torch.randn(5, generator=tg))
        _same(ge.rand(3), torch.rand(3))  # the default generator, untouched by g
        _same(ge.randint(0, 7, (4,), generator=g), torch.randint(0, 7, (4,), generator=tg))
        _same(ge.randperm(9, generator=g), torch.randperm(9, generator=tg))
        _same(ge.normal(ge.zeros(3), 1.0, generator=g), torch.normal(torch.zeros(3), 1.0,
                                                                    generator=tg))
        _same(ge.zeros(4).uniform_(0, 2, generator=g), torch.zeros(4).uniform_(0, 2,
                                                                               generator=tg))
        _same(ge.zeros(4).normal_(1, 2, generator=g), torch.zeros(4).normal_(1, 2,
                                                                             generator=tg))
        _same(ge.bernoulli(ge.full((6,), 0.5), generator=g),
              torch.bernoulli(torch.full((6,), 0.5), generator=tg))
        _same(ge.rand_like(ge.zeros(3), generator=g), torch.rand_like(torch.zeros(3),
                                                                      generator=tg))
        _same(ge.randn_like(ge.zeros(3), generator=g), torch.randn_like(torch.zeros(3),
                                                                        generator=tg))
        _same(ge.randint_like(ge.zeros(3), 5, generator=g),
              torch.randint_like(torch.zeros(3), 5, generator=tg))
        _same(ge.zeros(5).bernoulli_(0.5, generator=g), torch.zeros(5).bernoulli_(0.5,
                                                                               generator=tg))
        _same(ge.zeros(5).random_(0, 9, generator=g), torch.zeros(5).random_(0, 9,
                                                                             generator=tg))
        _same(ge.nn.functional.dropout(ge.ones(4), 0.5), torch.nn.functional.dropout(
            torch.ones(4), 0.5))  # the default generator, untouched by g
        assert g.initial_seed() == tg.initial_seed() == seed


def test_seed_values_and_defaults_match_torch():
    assert ge.Generator().initial_seed() == torch.Generator().initial_seed()
    for seed in (0, 1, 2 ** 32 + 5, 2 ** 63, -1, -(2 ** 63)):
        ge.manual_seed(seed)
        torch.manual_seed(seed)
        assert ge.initial_seed() == torch.initial_seed()
        _same(ge.rand(4), torch.rand(4))
    # a fresh generator draws what a fresh torch generator draws
    _same(ge.randn(3, generator=ge.Generator()), torch.randn(3, generator=torch.Generator()))


def test_state_round_trip_keeps_the_cached_normal():
    g = ge.Generator().manual_seed(7)
    ge.randn(3, generator=g)  # leaves the sine half cached
    state = g.get_state()
    want = [_np(ge.randn(5, generator=g)), _np(ge.rand(3, generator=g))]
    h = ge.Generator().manual_seed(0).set_state(state)
    np.testing.assert_array_equal(_np(ge.randn(5, generator=h)), want[0])
    np.testing.assert_array_equal(_np(ge.rand(3, generator=h)), want[1])
    assert h.initial_seed() == 7
    ge.set_rng_state(state)
    np.testing.assert_array_equal(_np(ge.randn(5)), want[0])
    tg = torch.Generator().manual_seed(7)
    torch.randn(3, generator=tg)
    tstate = tg.get_state()
    np.testing.assert_array_equal(want[0], torch.randn(5, generator=tg).numpy())
    tg.set_state(tstate)
    np.testing.assert_array_equal(want[0], torch.randn(5, generator=tg).numpy())


def test_state_bytes_are_torchs():
    """get_state is torch's 5056 bytes, byte for byte, after any mix of draws; a state saved by
    either restores in the other."""
    for seed in (0, 5, 2 ** 40 + 3, -1):
        g, t = ge.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        np.testing.assert_array_equal(g.get_state(), t.get_state().numpy())
        for k in range(4):
            for draw in ("rand", "randn"):
                _same(getattr(ge, draw)(1 + 311 * k, generator=g),
                      getattr(torch, draw)(1 + 311 * k, generator=t))
                np.testing.assert_array_equal(g.get_state(), t.get_state().numpy())
        h = ge.Generator().set_state(t.get_state())  # a torch ByteTensor
        _same(ge.randn(9, generator=h), torch.randn(9, generator=t))
        t.set_state(torch.from_numpy(g.get_state()))
        _same(ge.randn(9, generator=g), torch.randn(9, generator=t))


def _state_error(gen, state):
    with pytest.raises(Exception) as info:
        gen.set_state(state)
    return type(info.value), str(info.value)


def test_bad_states_are_refused_as_torch():
    good = torch.Generator().manual_seed(3).get_state().numpy()
    not_seeded, bad_left, bad_next = good.copy(), good.copy(), good.copy()
    not_seeded[12] = 0
    bad_left[8:12] = np.frombuffer(np.int32(625).tobytes(), np.uint8)
    bad_next[16:24] = np.frombuffer(np.uint64(625).tobytes(), np.uint8)
    for state in (good[:-1], np.concatenate([good, good[:1]]), not_seeded, bad_left, bad_next,
                  good.astype(np.int32)):
        got = _state_error(ge.Generator(), state)
        want = _state_error(torch.Generator(), torch.from_numpy(state))
        assert issubclass(got[0], want[0]) and got[1] == want[1]
    assert _state_error(ge.Generator(), [1, 2]) == (
        ge.errors.InvalidTypeError, "expected a torch.ByteTensor, but got list")


def test_old_gradserve_states_are_refused_clearly():
    for old in (bytes([1]) + bytes(45), bytes([2]) + bytes(2507)):
        with pytest.raises(ge.errors.InvalidArgumentError, match="older gradserve.*reseed"):
            ge.Generator().set_state(old)


# --- dropout --------------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 0.9, 1.0])
def test_dropout_masks_match_torch(p):
    def calls(lib):
        x = _ramp(lib, 37, -2, 2).requires_grad_()
        F = lib.nn.functional
        y = F.dropout(x, p)
        z = F.dropout(x.double(), p, training=True)
        off = F.dropout(x, p, training=False)
        return [y, z, off]
    for seed in range(10):
        _both(seed, calls)
    x = ge.ones(5, requires_grad=True)
    y = ge.nn.functional.dropout(x, 0.5)
    tx = torch.ones(5, requires_grad=True)
    ty = torch.nn.functional.dropout(tx, 0.5)
    if 0 < p < 1:
        assert type(ty.grad_fn).__name__ == y.grad_fn.name()


# --- through a session --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client_session(gradserve_server):
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c, c.session() as s:
        yield s


def test_session_seeding_then_drawing_gives_torchs_values(client_session):
    s = client_session

    def calls(lib):
        x = lib.zeros(3, 20)
        x[:, 2].uniform_(-1, 1)
        return [lib.randn(3), lib.rand(2), lib.randn(17, dtype=lib.float64),
                lib.randint(0, 10, (5,)), lib.randint(0, 2 ** 40, (3,)), lib.randperm(12),
                lib.normal(lib.arange(4.0), 2.0), lib.normal(1.0, 2.0, size=(3,)),
                lib.bernoulli(_ramp(lib, 9)), lib.zeros(8).bernoulli_(0.4),
                lib.zeros(8).bernoulli_(), lib.zeros(5).normal_(1, 3), lib.zeros(40).normal_(),
                lib.zeros(6).uniform_(2, 4), lib.randn_like(lib.zeros(2, 2)),
                lib.randint_like(lib.zeros(4), 3, 9), x,
                lib.nn.functional.dropout(lib.ones(30, requires_grad=True), 0.4),
                lib.dropout(lib.ones(30), 0.25, True)]
    for seed in (0, 1, 42, 2 ** 40 + 3, -5):
        s.manual_seed(seed)
        ours = calls(s)
        torch.manual_seed(seed)
        theirs = calls(torch)
        for a, b in zip(ours, theirs):
            got, want = a.detach().numpy(), b.detach().numpy()
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
            assert (a.grad_fn and a.grad_fn.name()) == (b.grad_fn and b.grad_fn.name())


def test_nn_linear_initialisation_draws_torchs_weights():
    """nn.Linear's reset_parameters: kaiming_uniform_(a=sqrt(5)) then the bias, both uniform_
    under no_grad; the same bounds give the same weights."""
    import math

    for seed in range(10):
        torch.manual_seed(seed)
        layer = torch.nn.Linear(7, 3)
        ge.manual_seed(seed)
        w = ge.zeros(3, 7)
        b = ge.zeros(3)
        gain = math.sqrt(2.0 / (1 + 5))
        bound = math.sqrt(3.0) * gain / math.sqrt(7)
        with ge.no_grad():
            w.uniform_(-bound, bound)
            b.uniform_(-1 / math.sqrt(7), 1 / math.sqrt(7))
        _same(w, layer.weight)
        _same(b, layer.bias)


def test_large_draws_stay_vectorised():
    """A million values of each kind in well under a second or two (no per-element Python)."""
    import time

    g = ge.Generator().manual_seed(0)
    for fn in (lambda: ge.randn(1_000_000, generator=g), lambda: ge.rand(1_000_000, generator=g),
               lambda: ge.zeros(1_000_000).normal_(1.0, 2.0, generator=g),
               lambda: ge.zeros(1_000_000).bernoulli_(0.3, generator=g)):
        start = time.perf_counter()
        fn()
        assert time.perf_counter() - start < 5.0


def test_a_session_created_with_a_seed_draws_torchs_values(gradserve_server):
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c, c.session(seed=3) as s:
        torch.manual_seed(3)
        np.testing.assert_array_equal(s.randn(5).numpy(), torch.randn(5).numpy())
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c, c.session() as s:
        # unseeded: torch's default seed, as a fresh torch process draws
        g = torch.Generator()
        np.testing.assert_array_equal(s.rand(4).numpy(), torch.rand(4, generator=g).numpy())
