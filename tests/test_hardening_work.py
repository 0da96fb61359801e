"""Bounded by construction in time: an op whose work its tensors' sizes do not tell (a matrix
product, an einsum, a convolution) declares that work, and one op may do at most
`limits.WORK_PER_ELEMENT` per element of the element limit, counted as the ops it costs.

An op cannot be interrupted. A 200-byte RunGraph multiplying two expanded (2048, 2048) int64
matrices (no data sent, 32 MiB of result) took 8.3 s of the server's CPU in one op, and went on
for 5.4 s after its 1 s deadline had ended the call; an (8192, 8192) one would take minutes.
"""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import limits
from gradserve.server import codec
from gradserve.v1 import service_pb2_grpc
from tests.conftest import gradserve_open_session
from tests.server_process import ServerProcess
from tests.test_hardening_bounds import _batch, _graph
from tests.test_hardening_fairness import seconds_until_idle
from tests.test_hardening_streams import serves

INT_PRODUCT = [("a", "expand", [np.int64(1)], {"size": [2048, 2048]}),
               ("y", "matmul", ["@a", "@a"], {}), ("s", "sum", ["@y"], {})]


def _products(n: int, count: int) -> list:
    """`count` float32 products of two expanded (n, n) matrices, summed to one element each."""
    nodes: list = [("a", "expand", [np.float32(1.0)], {"size": [n, n]})]
    for i in range(count):
        nodes.append((f"p{i}", "mm", ["@a", "@a"], {}))
    nodes.append(("s", "sum", [f"@p{count - 1}"], {}))
    return nodes


def test_a_product_that_would_take_seconds_in_one_op_is_refused_before_it_runs():
    with ServerProcess(["--workers", "4"]) as server, server.channel() as channel:
        stub = service_pb2_grpc.AutogradServiceStub(channel)
        cpu = server.cpu_seconds()
        with pytest.raises(grpc.RpcError) as info:
            stub.RunGraph(_graph(*INT_PRODUCT), timeout=60)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "matmul() result needs" in info.value.details()
        assert "units of work" in info.value.details()
        s = gradserve_open_session(stub)
        try:
            with pytest.raises(grpc.RpcError) as info:
                s.run(*_batch(INT_PRODUCT, 1), timeout=60)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "units of work" in info.value.details()
        finally:
            s.close()
        assert server.cpu_seconds() - cpu < 3  # 8.3 s for the stateless call alone before
        # products within the bound run, and compute what numpy does
        small = _graph(("a", "expand", [np.int64(3)], {"size": [256, 256]}),
                       ("y", "matmul", ["@a", "@a"], {}), ("s", "sum", ["@y"], {}))
        reply = stub.RunGraph(small, timeout=60)
        assert codec.decode_array(reply.outputs[0].tensor, 0).item() == 9 * 256 ** 3
        reply = stub.RunGraph(_graph(*_products(1024, 1)), timeout=60)
        assert codec.decode_array(reply.outputs[0].tensor, 0).item() == 1024.0 ** 3
        start = time.monotonic()
        serves(server)
        assert time.monotonic() - start < 5


def test_a_products_work_counts_toward_max_call_ops():
    """Each (1024, 1024) float32 product is 2**30 multiply-adds, 1024 ops of --max-call-ops:
    four fit in 5,000, eight do not (before, a call of 20,000 such nodes ran them all)."""
    with ServerProcess(["--workers", "4", "--max-call-ops", "5000"]) as server, \
            server.channel() as channel:
        stub = service_pb2_grpc.AutogradServiceStub(channel)
        reply = stub.RunGraph(_graph(*_products(1024, 4)), timeout=60)
        assert codec.decode_array(reply.outputs[0].tensor, 0).item() == 1024.0 ** 3
        with pytest.raises(grpc.RpcError) as info:
            stub.RunGraph(_graph(*_products(1024, 8)), timeout=60)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-call-ops" in info.value.details()
        serves(server)


def _conv(x: ge.Tensor, w: ge.Tensor) -> ge.Tensor:
    return ge.apply("convolution", [x, w, None],
                    {"stride": [1, 1], "padding": [0, 0], "dilation": [1, 1], "groups": 1})


@pytest.mark.parametrize("dtype, m, k, refused", [
    (ge.float32, 1024, 1024, False), (ge.int64, 256, 256, False),
    (ge.float32, 1024, 2048, True), (ge.int64, 512, 512, True)])
def test_the_work_bound_of_products(dtype, m, k, refused):
    """Under a 2**20-element limit one op may do 2**30 units of work: a float32 (1024, 1024)
    product, an int64 one of a 32nd of that (numpy has no BLAS for integers), whatever its
    result's size; every product op and a convolution declare theirs, and the refusal comes
    before anything runs."""
    one = ge.ones(1, dtype=dtype)
    x, y, bias = one.expand(m, k), one.expand(k, m), one.expand(m, m)
    bx, by = x[None], y[None]
    with limits.allocation_limit(1 << 20):
        for op, args, attrs in (("matmul", [x, y], None), ("mm", [x, y], None),
                                ("addmm", [bias, x, y], None), ("bmm", [bx, by], None),
                                ("einsum", [[x, y]], {"equation": "ij,jk->ik"})):
            if not refused:
                assert ge.apply(op, args, attrs).shape == ((1, m, m) if op == "bmm" else (m, m))
                continue
            start = time.thread_time()
            with pytest.raises(ge.errors.AllocationLimitError, match=f"{op}\\(\\) result needs "
                               f"{m * m * k * (1 if dtype is ge.float32 else 32)} units of work"):
                ge.apply(op, args, attrs)
            assert time.thread_time() - start < 0.5
        if dtype is ge.float32:
            # a convolution whose results' elements each sum 64 x 8 x 8 products
            if refused:  # (1, 64, 113, 113) results: 3.3e9 multiply-adds
                x, w = ge.ones(1, 64, 120, 120), ge.ones(64, 64, 8, 8)
                with pytest.raises(ge.errors.AllocationLimitError, match="units of work"):
                    _conv(x, w)
            else:
                x, w = ge.ones(1, 64, 20, 20), ge.ones(8, 64, 8, 8)
                assert _conv(x, w).shape == (1, 8, 13, 13)


def test_work_outside_any_limit_is_not_bounded():
    """The engine used in process is unbounded, as torch is."""
    a = ge.ones(1, dtype=ge.int64).expand(64, 64)
    assert ge.matmul(a, a).sum().item() == 64 ** 3


def test_a_long_elementwise_kernel_stops_at_its_deadline():
    """The float32 kernels computed as torch does (mish, gelu, log1p, softplus, pow, ...) take
    100-300 ns an element: an 80-byte session batch of mish on an expanded 64 Mi-element
    tensor ran 21 s of CPU in one op, past any deadline. They run in chunks of 64 Ki elements
    already; the interrupt check now runs between chunks, so the call stops at its deadline."""
    with ServerProcess(["--workers", "4"]) as server, server.channel() as channel:
        stub = service_pb2_grpc.AutogradServiceStub(channel)
        nodes = [("a", "expand", [np.float32(0.5)], {"size": [1 << 26]}),
                 ("y", "mish", ["@a"], {})]
        s = gradserve_open_session(stub)
        try:
            with pytest.raises(grpc.RpcError) as info:
                s.run(*_batch(nodes, 1), timeout=1.5)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            # the op (one thread) went on for its ~20 s of CPU; now what is left of the chunk
            # and the op's whole-array passes around its kernels (~1 s of CPU)
            seconds_until_idle(server.pid, within=10.0)
        finally:
            s.close()
        serves(server)


def test_a_stateless_chain_of_exact_kernels_on_small_tensors_runs():
    """Each float32 kernel was charged its full chunk's scratch (16 MiB) whatever its size, so
    a stateless call could run only 63 of them (a chain of 120 mish on 256 elements was
    refused with RESOURCE_EXHAUSTED); a small result is charged the scratch of its size."""
    with ServerProcess(["--workers", "4"]) as server, server.channel() as channel:
        stub = service_pb2_grpc.AutogradServiceStub(channel)
        nodes: list = [("n", "expand", [np.float32(0.5)], {"size": [256]})]
        for i in range(120):
            nodes.append((f"n{i}", "mish", [f"@{nodes[-1][0]}"], {}))
        reply = stub.RunGraph(_graph(*nodes), timeout=60)
        assert codec.decode_array(reply.outputs[0].tensor, 256).shape == (256,)


@pytest.mark.parametrize("n, refused", [(1 << 16, False), (1 << 20, True)])
def test_the_work_bound_of_sorts(n, refused):
    """numpy's sort is one call: an argsort of 2**24 int64s in a session took ~5 s of CPU, and
    multinomial without replacement sorts every row whole. Their work is ~256 units per element
    and comparison level: under a 2**20-element limit (2**30 units) 2**16 elements sort,
    2**20 (in one row, or four for multinomial) do not, though they are within the limit."""
    x = ge.arange(n, 0, -1)
    p = ge.ones(4, n // 4)
    with limits.allocation_limit(1 << 20):
        if not refused:
            assert ge.apply("argsort", [x]).tolist()[:2] == [n - 1, n - 2]
            assert ge.apply("multinomial", [p], {"num_samples": 2}).shape == (4, 2)
            return
        with pytest.raises(ge.errors.AllocationLimitError,
                           match="argsort\\(\\) result needs \\d+ units of work"):
            ge.apply("argsort", [x])
        with pytest.raises(ge.errors.AllocationLimitError,
                           match="multinomial\\(\\) result needs \\d+ units"):
            ge.apply("multinomial", [p], {"num_samples": 2})
        # with replacement it draws row by row (no sort): not bounded by the sort's work
        assert ge.apply("multinomial", [p], {"num_samples": 2, "replacement": True}).shape == (
            4, 2)
