"""Single ops that a request of ~100 bytes made cost gigabytes or minutes (red team, 2026-12-07).

Each was inside every declared bound: its result was small or empty, but the op's own work or
temporaries were not. The engine tests run each op under small limits and fail on the code
before the fix; the server test sends the attacks as RunGraphs.

- `unique_dim` of 2 rows of 2**25 elements: numpy's lexsort of 2**25 keys, 23 GB (the process
  was killed by the kernel) and minutes, inside the bound's own group count;
- `_unique2` of 2**26 elements: an argsort's work, undeclared; `multinomial` with replacement
  of 2**24 samples in 2**24 categories: 30 s of binary searches, undeclared;
- `baddbmm` / `addbmm` of expanded (1, 2048, 2048) int64 batches and `_euclidean_dist` of
  expanded (4096, 8192) rows: matrix products whose work was undeclared (9 s of CPU in one op,
  past a 5 s deadline);
- `sum_to_size` of a (0, n) tensor to (1, n): n zeros, bounded as the empty input;
- `repeat` by [n, 0] and `upsample_nearest` of an empty batch: temporaries sized by the
  attributes (np.tile's one dim at a time, the indices of output_size) for an empty result;
- `upsample_nearest_backward` to one position: as many rounds over every reader as readers.
"""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import errors, limits
from gradserve.v1 import service_pb2_grpc
from tests.server_process import MiB, ServerProcess
from tests.test_hardening_bounds import _graph
from tests.test_hardening_streams import serves


def _expanded(value: Any, size: list[int], dtype: Any = None) -> ge.Tensor:
    t = ge.tensor(value) if dtype is None else ge.tensor(value, dtype=dtype)
    return ge.apply("expand", [t], {"size": size})


def _peak(fn: Callable[[], Any]) -> int:
    """The traced peak of `fn()`'s allocations (numpy's included)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _limited(elements: int, op: str, inputs: list, attrs: dict) -> Any:
    with limits.allocation_limit(elements):
        return ge.apply(op, inputs, attrs)


def test_unique_dim_of_wide_rows_declares_its_sort_and_keys():
    """2 rows of 4096 columns: 4096 lexsort keys, each an iterator and a sort pass."""
    rows = _expanded(1.0, [2, 4096])
    with pytest.raises(errors.AllocationLimitError, match="unique_dim.*units of work"):
        _limited(2 ** 16, "unique_dim", [rows], {"dim": 0})
    values, inverse, counts = _limited(2 ** 26, "unique_dim", [rows], {"dim": 0})
    assert tuple(values.shape) == (1, 4096) and counts.tolist() == [2]


def test_unique_dim_sorts_many_columns_in_bounded_memory():
    """One lexsort of 16,384 columns held ~43 MiB (2.7 KB per key) for 128 KiB of data; in
    passes of `_KEYS_PER_SORT` keys the order is the same."""
    data = np.random.default_rng(0).integers(0, 2, (5, 16384)).astype(np.float32)
    data[1] = data[3]
    x = ge.tensor(data)
    peak = _peak(lambda: ge.apply("unique_dim", [x], {"dim": 0}))
    assert peak < 8 * MiB
    values, inverse, counts = ge.apply("unique_dim", [x], {"dim": 0})
    assert np.array_equal(values.numpy(), np.unique(data, axis=0))
    assert counts.numpy().sum() == 5 and inverse.numpy()[1] == inverse.numpy()[3]


def test_unique_declares_its_sort():
    with pytest.raises(errors.AllocationLimitError, match="_unique2.*units of work"):
        _limited(2 ** 16, "_unique2", [_expanded(1.0, [2 ** 16])], {})


@pytest.mark.parametrize("op, inputs", [
    ("baddbmm", lambda: [_expanded(1, [1, 1, 1], ge.int64), _expanded(1, [1, 64, 64], ge.int64),
                         _expanded(1, [1, 64, 64], ge.int64)]),
    ("addbmm", lambda: [_expanded(1, [1, 1], ge.int64), _expanded(1, [1, 64, 64], ge.int64),
                        _expanded(1, [1, 64, 64], ge.int64)]),
    ("_euclidean_dist", lambda: [_expanded(1.0, [64, 4096]), _expanded(1.0, [64, 4096])]),
])
def test_ops_around_a_product_declare_its_work(op: str, inputs: Callable[[], list]):
    """64**3 int64 multiply-adds (x32) or 64 * 64 * 4098 float ones: past the work of an
    element limit of 2**12 (2**22 units), each refused before it runs."""
    args = inputs()
    with pytest.raises(errors.AllocationLimitError, match="units of work"):
        _limited(2 ** 12, op, args, {})
    assert _limited(2 ** 26, op, args, {}).numel() > 0


def test_multinomial_with_replacement_declares_its_searches():
    """One binary search per sample in the row's cumulative sums: 2**24 samples in 2**24
    categories took 30 s of CPU in one searchsorted (each step a cache miss)."""
    weights = _expanded(1.0, [2 ** 16])
    with pytest.raises(errors.AllocationLimitError, match="multinomial.*units of work"):
        _limited(2 ** 12, "multinomial", [weights], {"num_samples": 2 ** 12,
                                                       "replacement": True})
    few = _limited(2 ** 12, "multinomial", [_expanded(1.0, [8])],
                   {"num_samples": 2 ** 10, "replacement": True})
    assert tuple(few.shape) == (2 ** 10,) and 0 <= int(few.numpy().min())


def test_sum_to_size_of_an_empty_tensor_is_bounded_by_its_result():
    empty = _expanded(1.0, [0, 2 ** 21])
    with pytest.raises(errors.AllocationLimitError, match="sum_to_size"):
        _limited(2 ** 20, "sum_to_size", [empty], {"size": [1, 2 ** 21]})
    out = _limited(2 ** 22, "sum_to_size", [empty], {"size": [1, 2 ** 21]})
    assert tuple(out.shape) == (1, 2 ** 21) and not out.numpy().any()


@pytest.mark.parametrize("op, inputs, attrs, shape", [
    ("repeat", lambda: [ge.tensor([[1.0]])], {"repeats": [2 ** 22, 0]}, (2 ** 22, 0)),
    ("upsample_nearest", lambda: [_expanded(1.0, [0, 1, 1, 1])],
     {"output_size": [2 ** 22, 2 ** 22]}, (0, 1, 2 ** 22, 2 ** 22)),
    ("upsample_nearest_backward", lambda: [_expanded(1.0, [0, 1, 1, 1])],
     {"input_size": [2 ** 22, 2 ** 22]}, (0, 1, 2 ** 22, 2 ** 22)),
])
def test_an_empty_result_makes_no_temporaries_sized_by_attributes(op, inputs, attrs, shape):
    """np.tile by [2**22, 0] made 2**22 elements first (2**31: 16 GiB); upsampling an empty
    batch made indices of output_size's length (2**31: 16 GiB)."""
    args = inputs()
    out: list = []
    peak = _peak(lambda: out.append(_limited(2 ** 20, op, args, attrs)))
    assert tuple(out[0].shape) == shape
    assert peak < MiB


def _lines_run(fn: Callable[[], Any], module: str) -> int:
    """How many lines of `module`'s functions `fn()` runs (a deterministic count of Python
    steps, where a timing would not be)."""
    count = 0

    def trace(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename.endswith(module):
            def local(frame: Any, event: str, arg: Any) -> Any:
                nonlocal count
                count += event == "line"
                return local
            return local
        return None

    sys.settrace(trace)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


@pytest.mark.parametrize("readers", [2 ** 12, 2 ** 14])
def test_upsample_nearest_backward_to_few_positions_takes_few_steps(readers: int):
    """A (1, 1, n) gradient to one position ran n rounds over all n readers (16,384: 0.7 s;
    2**22, hours); now one accumulate, and the sum is torch's order's."""
    g = ge.tensor(np.linspace(-1.0, 1.0, readers, dtype=np.float32).reshape(1, 1, readers))
    steps = _lines_run(lambda: ge.apply("upsample_nearest_backward", [g], {"input_size": [1]}),
                       "ops_nn.py")
    assert steps < 200
    out = ge.apply("upsample_nearest_backward", [g], {"input_size": [1]})
    expected = np.float32(0.0)
    for v in g.numpy().reshape(-1):
        expected = np.float32(expected + v)
    assert out.numpy().reshape(-1)[0] == expected


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(["--workers", "4"]) as proc:
        yield proc


ATTACKS = {
    "unique_dim of 2 rows of 2**19": [
        ("a", "expand", [np.float32(1.0)], {"size": [2, 2 ** 19]}),
        ("y", "unique_dim", ["@a"], {"dim": 0})],
    "baddbmm of (1, 2048, 2048) int64": [
        ("b", "expand", [np.int64(1)], {"size": [1, 2048, 2048]}),
        ("c", "expand", [np.int64(1)], {"size": [1, 1, 1]}),
        ("y", "baddbmm", ["@c", "@b", "@b"], {}), ("s", "sum", ["@y"], {})],
    "_euclidean_dist of (4096, 8192) rows": [
        ("a", "expand", [np.float32(1.0)], {"size": [4096, 8192]}),
        ("y", "_euclidean_dist", ["@a", "@a"], {}), ("s", "sum", ["@y"], {})],
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_the_attacks_are_refused_by_the_server_before_they_run(server: ServerProcess, name: str):
    """Before: 1.4 GB and ~3 s (the unique_dim; 2**25 columns took 23 GB), 9 s of CPU past the
    deadline (the products)."""
    cpu = server.cpu_seconds()
    with server.channel() as channel:
        stub = service_pb2_grpc.AutogradServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.RunGraph(_graph(*ATTACKS[name]), timeout=60)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "units of work" in info.value.details()
    assert server.cpu_seconds() - cpu < 2
    serves(server)


def test_randperms_swaps_count_toward_max_call_ops():
    """randperm's Python loop (~1 us a swap) checked the interrupt once per 65,536 swaps, one op
    of --max-call-ops each: a RunGraph randperm of a million ran ~1 s of CPU as 16 ops (8
    million, the byte budget's most: ~8 s). Now a check per 64 swaps: refused past the limit."""
    with ServerProcess(["--workers", "4", "--max-call-ops", "5000"]) as proc, \
            proc.channel() as channel:
        stub = service_pb2_grpc.AutogradServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.RunGraph(_graph(("p", "randperm", [], {"n": 10 ** 6}),
                                 ("s", "sum", ["@p"], {})), timeout=60)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "ops and backward steps" in info.value.details()
        reply = stub.RunGraph(_graph(("p", "randperm", [], {"n": 10 ** 4}),
                                     ("s", "sum", ["@p"], {})), timeout=60)
        assert reply.outputs
