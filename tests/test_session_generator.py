"""torch.Generator objects in process and through a session, against torch 2.13: the values each
`generator=` draws (independent of the default stream), the generator's seed and state bytes,
and the errors; then the wire (server/batch.py's generator instructions)."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest

from tests.conftest import gradserve_error
from tests.reference import torch

SEEDS = [0, 1, 7, 123456789, 2 ** 40 + 3, -5]


def _np(t: Any) -> np.ndarray:
    return np.asarray(t.detach().numpy() if hasattr(t, "detach") else t.numpy())


def _same(ours: Any, theirs: Any) -> None:
    a, b = _np(ours), _np(theirs)
    assert (a.dtype, a.shape) == (b.dtype, b.shape)
    np.testing.assert_array_equal(a, b)


def _draws(lib: Any, g: Any) -> list[Any]:
    """Every random function that takes generator= in torch 2.13 (and gradserve has), drawing
    from `g`, with draws from the default generator between them."""
    t = lib.tensor
    p = t([[0.1, 0.5, 0.9], [0.0, 1.0, 0.3]])
    out = []
    for shape in [(1,), (7,), (16,), (33,), (3, 5)]:
        out += [lib.rand(*shape, generator=g), lib.randn(shape, generator=g),
                lib.rand(shape, generator=g, dtype=lib.float64),
                lib.randn(*shape, generator=g, dtype=lib.float64), lib.rand(1)]
    out += [lib.randint(0, 10, (6,), generator=g), lib.randint(5, (2, 3), generator=g),
            lib.randint(-3, 2 ** 40, (4,), generator=g), lib.randn(2),
            lib.randperm(1, generator=g), lib.randperm(17, generator=g),
            lib.randperm(6, generator=g, dtype=lib.float32),
            lib.normal(2.0, 3.0, (5,), generator=g), lib.normal(p, 0.5, generator=g),
            lib.normal(p, p + 1, generator=g), lib.normal(1.0, p, generator=g),
            lib.bernoulli(p, generator=g), lib.rand(3),
            lib.rand_like(p, generator=g), lib.randn_like(p, generator=g),
            lib.randint_like(p, 4, generator=g), lib.randint_like(p, 2, 9, generator=g),
            lib.multinomial(p, 1, generator=g), lib.multinomial(p, 3, generator=g),
            lib.multinomial(p, 5, True, generator=g), p[0].multinomial(2, generator=g),
            p.multinomial(4, replacement=True, generator=g), lib.multinomial(p[1], 1),
            lib.multinomial(lib.rand(3, 40, dtype=lib.float64), 7, True, generator=g)]
    x = lib.zeros(4, 5)
    out += [x.clone().uniform_(-2, 3, generator=g), x.clone().normal_(1, 2, generator=g),
            x.clone().normal_(generator=g), x.clone().random_(generator=g),
            x.clone().random_(7, generator=g), x.clone().random_(-3, 8, generator=g),
            x.clone().bernoulli_(0.3, generator=g), x.clone().bernoulli_(lib.full((4, 5), 0.6),
                                                                          generator=g),
            x.clone().exponential_(2.0, generator=g), x.clone().geometric_(0.2, generator=g),
            lib.zeros(5, dtype=lib.int64).geometric_(0.6, generator=g),
            x.clone().cauchy_(generator=g), lib.zeros(5, 4).t().cauchy_(1.5, 0.5, generator=g),
            x.clone().log_normal_(generator=g), x.clone().log_normal_(0.0, 0.25, generator=g),
            lib.zeros(3, dtype=lib.float64).log_normal_(generator=g),
            lib.zeros(3, dtype=lib.int64).random_(
                generator=g), lib.zeros(18).normal_(generator=g), lib.zeros(5, 4).t().uniform_(
                generator=g), lib.randn(4)]
    init = lib.nn.init
    w = lib.zeros(6, 4)
    out += [init.uniform_(w.clone(), -1, 1, generator=g), init.normal_(w.clone(), 0, 2,
                                                                       generator=g),
            init.normal_(lib.zeros(40), generator=g), init.xavier_uniform_(w.clone(),
                                                                          generator=g),
            init.xavier_normal_(w.clone(), generator=g),
            init.kaiming_uniform_(w.clone(), generator=g),
            init.kaiming_normal_(w.clone(), mode="fan_out", generator=g), lib.rand(2)]
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_generator_draws_match_torch(gradserve_lib, seed):
    lib = gradserve_lib
    lib.manual_seed(seed + 1)
    torch.manual_seed(seed + 1)
    ours = _draws(lib, lib.Generator().manual_seed(seed))
    theirs = _draws(torch, torch.Generator().manual_seed(seed))
    assert len(ours) == len(theirs)
    for k, (a, b) in enumerate(zip(ours, theirs)):
        try:
            _same(a, b)
        except AssertionError as exc:
            raise AssertionError(f"draw {k}: {exc}") from None


def test_fresh_generators_are_independent_streams(gradserve_lib):
    """Two fresh generators both start at torch's default seed; drawing from one moves neither
    the other nor the default generator."""
    results = []
    for lib in (gradserve_lib, torch):
        lib.manual_seed(0)
        g1, g2 = lib.Generator(), lib.Generator("cpu")
        a = lib.randn(5, generator=g1)
        b = lib.rand(3)
        c = lib.randn(5, generator=g2)
        d = lib.randn(5, generator=g1)
        results.append([_np(v) for v in (a, b, c, d, lib.rand(2))])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_seeds_and_state_match_torch(gradserve_lib):
    lib = gradserve_lib
    assert lib.Generator().initial_seed() == torch.Generator().initial_seed()
    for seed in SEEDS + [2 ** 64 - 1, -(2 ** 63)]:
        g, t = lib.Generator(), torch.Generator()
        assert g.manual_seed(seed) is g
        t.manual_seed(seed)
        assert g.initial_seed() == t.initial_seed()
        np.testing.assert_array_equal(g.get_state(), t.get_state().numpy())
        lib.randn(5, generator=g)  # leaves a cached normal
        torch.randn(5, generator=t)
        lib.rand(700, generator=g)
        torch.rand(700, generator=t)
        state = g.get_state()
        assert state.dtype == np.uint8
        np.testing.assert_array_equal(state, t.get_state().numpy())
        want = torch.randn(3, generator=t)
        h = lib.Generator().set_state(state)  # returns the generator, as torch
        assert h.initial_seed() == g.initial_seed()
        _same(lib.randn(3, generator=h), want)
        h.set_state(t.get_state())  # a torch ByteTensor
        _same(lib.rand(2, generator=h), torch.rand(2, generator=t))
    g = lib.Generator()
    new = g.seed()
    assert type(new) is int and 0 <= new < 2 ** 64 and g.initial_seed() == new
    assert str(g.device) == "cpu"


def test_default_generator_matches_torch(gradserve_lib):
    lib = gradserve_lib
    for seed in (0, 1.5, "3", True, 2 ** 64 - 1):
        assert lib.manual_seed(seed) is lib.default_generator
        torch.manual_seed(seed)
        assert lib.initial_seed() == torch.initial_seed()
        np.testing.assert_array_equal(lib.get_rng_state(), torch.get_rng_state().numpy())
        _same(lib.randn(3), torch.randn(3))
        np.testing.assert_array_equal(lib.get_rng_state(), torch.get_rng_state().numpy())
    state, tstate = lib.get_rng_state(), torch.get_rng_state()
    _same(lib.rand(4), torch.rand(4))
    lib.set_rng_state(state)
    torch.set_rng_state(tstate)
    _same(lib.rand(4), torch.rand(4))
    lib.default_generator.manual_seed(9)
    torch.default_generator.manual_seed(9)
    _same(lib.randn(2), torch.randn(2))
    new = lib.seed()
    assert lib.initial_seed() == new


def _error(fn: Any) -> tuple[type, str]:
    with pytest.raises(Exception) as info:
        fn()
    return type(info.value), str(info.value)


def _same_error(ours: Any, theirs: Any) -> None:
    got, want = _error(ours), _error(theirs)
    assert issubclass(got[0], want[0]) and got[1] == want[1], (got, want)


BAD_SEEDS = [1.5, "3", True, None, 2 ** 64, -(2 ** 63) - 1]


@pytest.mark.parametrize("seed", BAD_SEEDS, ids=repr)
def test_bad_generator_seeds_are_refused_as_torch(gradserve_lib, seed):
    _same_error(lambda: gradserve_lib.Generator().manual_seed(seed),
                lambda: torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("seed", [None, 2 ** 64, -(2 ** 63) - 1], ids=repr)
def test_bad_module_seeds_are_refused_as_torch(gradserve_lib, seed):
    _same_error(lambda: gradserve_lib.manual_seed(seed), lambda: torch.manual_seed(seed))


def test_bad_states_are_refused_as_torch(gradserve_lib):
    lib = gradserve_lib
    good = torch.Generator().get_state().numpy()
    not_seeded = good.copy()
    not_seeded[12] = 0
    for bad in (good[:100], np.concatenate([good, good]), not_seeded):
        _same_error(lambda: lib.Generator().set_state(bad),  # noqa: B023 - called at once
                    lambda: torch.Generator().set_state(torch.from_numpy(bad)))  # noqa: B023
        _same_error(lambda: lib.set_rng_state(bad),  # noqa: B023
                    lambda: torch.set_rng_state(torch.from_numpy(bad)))  # noqa: B023
    _same_error(lambda: lib.Generator().set_state(good.astype(np.int32)),
                lambda: torch.Generator().set_state(torch.from_numpy(good.astype(np.int32))))
    _same_error(lambda: lib.Generator().set_state([1, 2]),
                lambda: torch.Generator().set_state([1, 2]))
    # the generator is unchanged by a refused state
    g = lib.Generator().manual_seed(4)
    with pytest.raises(RuntimeError):
        g.set_state(good[:10])
    _same(lib.rand(3, generator=g), torch.rand(3, generator=torch.Generator().manual_seed(4)))


def test_bad_generator_arguments_are_refused_as_torch(gradserve_lib):
    lib = gradserve_lib
    _same_error(lambda: lib.zeros(2).uniform_(generator=3),
                lambda: torch.zeros(2).uniform_(generator=3))
    _same_error(lambda: lib.zeros(2).normal_(generator="g"),
                lambda: torch.zeros(2).normal_(generator="g"))
    with pytest.raises(TypeError, match="generator"):
        lib.randn(3, generator=5)
    with pytest.raises(TypeError):
        torch.randn(3, generator=5)
    # generator=None is the default generator, as in torch
    lib.manual_seed(2)
    torch.manual_seed(2)
    _same(lib.rand(3, generator=None), torch.rand(3, generator=None))


FILL_ERRORS = [
    ("geometric_", "float32", (0.0,)), ("geometric_", "float32", (1.0,)),
    ("geometric_", "int64", (1.5,)), ("geometric_", "bool", (0.5,)), ("geometric_", "bool", (0,)),
    ("cauchy_", "float32", (0.0, 0.0)), ("cauchy_", "float64", (1.0, -1.0)),
    ("cauchy_", "int64", ()), ("cauchy_", "int32", ()), ("cauchy_", "bool", ()),
    ("cauchy_", "int64", (1.0, 0.0)), ("log_normal_", "float32", (1.0, 0.0)),
    ("log_normal_", "int64", ()), ("log_normal_", "int64", (1.0, -2.0))]


@pytest.mark.parametrize("method, dtype, args", FILL_ERRORS)
def test_random_fills_refuse_as_torch(gradserve_lib, method, dtype, args):
    lib = gradserve_lib
    _same_error(lambda: getattr(lib.zeros(3, dtype=getattr(lib, dtype)), method)(*args).tolist(),
                lambda: getattr(torch.zeros(3, dtype=getattr(torch, dtype)), method)(*args))


MULTINOMIAL_ERRORS = [
    ([0.5], 1, False), ([[[1.0]]], 1, False), ([1.0, 1.0], 0, False), ([1.0, 1.0], -1, True),
    ([1.0, 1.0], 3, False), ([1.0, -1.0, 1.0], 2, False), ([1.0, -1.0, 1.0], 2, True),
    ([1.0, float("inf")], 2, True), ([1.0, float("nan")], 1, False), ([0.0, 0.0], 2, True),
    ([[1.0, 1.0], [0.0, 0.0]], 1, False), ([[1.0, 1.0], [0.0, 0.0]], 2, True),
    ([[0.0, 3.0], [-1.0, 0.0]], 3, True)]


@pytest.mark.parametrize("p, n, replacement", MULTINOMIAL_ERRORS)
def test_multinomial_refuses_as_torch(gradserve_lib, p, n, replacement):
    lib = gradserve_lib

    def ours() -> Any:
        x = lib.tensor(p[0]) if p == [0.5] else lib.tensor(p)
        return lib.multinomial(x, n, replacement).tolist()

    def theirs() -> Any:
        x = torch.tensor(p[0]) if p == [0.5] else torch.tensor(p)
        return torch.multinomial(x, n, replacement).tolist()

    _same_error(ours, theirs)
    _same_error(lambda: lib.multinomial(lib.tensor([1, 2]), 1).tolist(),
                lambda: torch.multinomial(torch.tensor([1, 2]), 1))


def test_a_generator_of_another_session_is_refused(gradserve_client):
    with gradserve_client.session() as a, gradserve_client.session() as b:
        g = a.Generator()
        with pytest.raises(RuntimeError, match="another session"):
            b.randn(3, generator=g)


def test_dropped_generators_are_released(gradserve_client):
    with gradserve_client.session() as s:
        s.flush()
        before = s.describe().tensor_count
        gens = [s.Generator().manual_seed(i) for i in range(5)]
        s.randn(2, generator=gens[0]).tolist()
        del gens
        s.flush()
        assert s.describe().tensor_count == before


# --- the wire ------------------------------------------------------------------------------------


def _gen_op(sess: Any, name: str, outputs: list[int], generator: int, **attrs: Any) -> Any:
    ins = sess.op(name, [], outputs, **attrs)
    ins.apply_op.generator = generator
    return ins


def test_wire_generators_draw_torchs_values(gradserve_session):
    s, pb = gradserve_session, gradserve_session.pb
    s.run(pb.Instruction(create_generator=pb.CreateGenerator(generator=1)),
          pb.Instruction(manual_seed=pb.ManualSeed(seed=5, generator=1)),
          pb.Instruction(manual_seed=pb.ManualSeed(seed=6)),
          _gen_op(s, "randn", [2], 1, size=(4,)), s.op("rand", [], [3], size=(2,)))
    t = torch.Generator().manual_seed(5)
    np.testing.assert_array_equal(s.value_of(2), torch.randn(4, generator=t).numpy())
    torch.manual_seed(6)
    np.testing.assert_array_equal(s.value_of(3), torch.rand(2).numpy())
    inplace = s.inplace("uniform_", 3)
    inplace.apply_inplace.generator = 1
    info = s.run(inplace, pb.Instruction(get_generator=pb.GetGenerator(generator=1, state=True)),
                 pb.Instruction(get_generator=pb.GetGenerator()))
    np.testing.assert_array_equal(s.value_of(3), torch.rand(2, generator=t).numpy())
    assert info.results[1].generator.initial_seed == 5
    assert info.results[1].generator.state == t.get_state().numpy().tobytes()
    assert info.results[2].generator.initial_seed == 6 and not info.results[2].generator.state


@pytest.mark.parametrize("make, code, message", [
    (lambda s, pb: [_gen_op(s, "randn", [2], 9, size=(2,))], grpc.StatusCode.NOT_FOUND,
     "unknown generator handle 9"),
    (lambda s, pb: [pb.Instruction(manual_seed=pb.ManualSeed(seed=1, generator=9))],
     grpc.StatusCode.NOT_FOUND, "unknown generator handle 9"),
    (lambda s, pb: [pb.Instruction(get_generator=pb.GetGenerator(generator=9))],
     grpc.StatusCode.NOT_FOUND, "unknown generator handle 9"),
    (lambda s, pb: [_gen_op(s, "zeros", [2], 1, size=(2,))], grpc.StatusCode.INVALID_ARGUMENT,
     "zeros() draws no random numbers: it takes no generator"),
    (lambda s, pb: [pb.Instruction(create_generator=pb.CreateGenerator(generator=1))],
     grpc.StatusCode.INVALID_ARGUMENT, "handle 1 is already in use"),
    (lambda s, pb: [pb.Instruction(create_generator=pb.CreateGenerator())],
     grpc.StatusCode.INVALID_ARGUMENT, "handle ids start at 1"),
    (lambda s, pb: [pb.Instruction(set_generator_state=pb.SetGeneratorState(
        generator=1, state=b"\0" * 7))], grpc.StatusCode.INVALID_ARGUMENT,
     "Expected a CPUGeneratorImplState of size 5056 but found the input RNG state size to be 7"),
    (lambda s, pb: [pb.Instruction(set_generator_state=pb.SetGeneratorState(
        state=b"\0" * 5056))], grpc.StatusCode.INVALID_ARGUMENT, "Invalid mt19937 state"),
])
def test_wire_generator_errors(gradserve_session, make, code, message):
    s, pb = gradserve_session, gradserve_session.pb
    s.run(pb.Instruction(create_generator=pb.CreateGenerator(generator=1)))
    with pytest.raises(grpc.RpcError) as info:
        s.run(*make(s, pb))
    got_code, details, _ = gradserve_error(info)
    assert got_code == code and message in details


def test_wire_generators_count_as_handles_and_release(gradserve_session):
    s, pb = gradserve_session, gradserve_session.pb
    before = s.describe().bytes_held
    s.run(*[pb.Instruction(create_generator=pb.CreateGenerator(generator=h)) for h in (1, 2)])
    assert s.describe().bytes_held >= before + 2 * 5056
    s.run(s.release(1, 2), pb.Instruction(create_generator=pb.CreateGenerator(generator=1)))
    with pytest.raises(grpc.RpcError) as info:
        s.run(_gen_op(s, "rand", [3], 2, size=(1,)))
    assert gradserve_error(info)[0] == grpc.StatusCode.NOT_FOUND


def test_wire_generator_handles_are_limited(gradserve_server_factory):
    from tests.conftest import gradserve_connect, gradserve_open_session

    server, port = gradserve_server_factory(max_handles=3)
    from gradserve.v1 import service_pb2_grpc

    stub = service_pb2_grpc.AutogradServiceStub(gradserve_connect(port))
    s = gradserve_open_session(stub)
    pb = s.pb
    s.run(*[pb.Instruction(create_generator=pb.CreateGenerator(generator=h)) for h in (1, 2, 3)])
    with pytest.raises(grpc.RpcError) as info:
        s.run(pb.Instruction(create_generator=pb.CreateGenerator(generator=4)))
    assert gradserve_error(info)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_servers_list_the_feature_and_clients_check_it(gradserve_client):
    from gradserve.v1 import GENERATOR_FEATURE

    assert GENERATOR_FEATURE in gradserve_client.list_ops().features
    with gradserve_client.session() as s:
        s._generators = False  # as against a server that predates generators
        for call in (s.Generator, s.initial_seed, s.get_rng_state,
                     lambda: s.set_rng_state(torch.get_rng_state())):
            with pytest.raises(RuntimeError, match="'generators' feature: an older gradserve"):
                call()
        s.manual_seed(0)  # the default generator's seed needs no new instruction
        torch.manual_seed(0)
        assert s.rand(2).tolist() == torch.rand(2).tolist()


def test_repr_is_torchs_but_the_address(gradserve_lib):
    import re

    def shape(g: Any) -> str:
        return re.sub(r" at 0x[0-9a-f]+", " at 0x...", repr(g))

    assert shape(gradserve_lib.Generator()) == shape(torch.Generator())
    assert shape(gradserve_lib.manual_seed(0)) == shape(torch.manual_seed(0))


def test_a_traced_function_refuses_a_generator(gradserve_client):
    from gradserve import client as gc_client

    with gradserve_client.session() as s:
        g = s.Generator()
        x = np.ones(3, np.float32)
        with pytest.raises(gc_client.TracingError, match="cannot draw from a torch.Generator"):
            gradserve_client.grad(lambda x: (x * x.bernoulli(generator=g)).sum())(x)
