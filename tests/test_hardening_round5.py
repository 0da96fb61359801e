"""Small requests that cost far more than they tell (red team, round 5).

Each was inside every declared bound before its fix:

- a shape attribute of many huge dims: its element count was an exact bignum product, taken dim
  by dim in time quadratic in the dims, before any limit could refuse it (60,000 dims of 2**62 in
  a 540 KB request: 18 s of CPU in one op, past its deadline), and the refusal's message then
  failed to print the count (INTERNAL instead of RESOURCE_EXHAUSTED);
- a graph node of many inputs (a `cat` of N tensors, 4 bytes of request each) was charged
  `NODE_BYTES` whatever N, though it keeps ~376 bytes per input: a session under a 256 MiB
  budget grew by 190 MB per 2 MB batch, without end, while it measured 0 bytes;
- the check that lets a backward pass run on the event loop (server/inline_batch.py) bounded
  the nodes it walked but not their edges: six `cat` nodes of 200,000 inputs were walked and
  then differentiated on the loop, which held health checks 23.6 s.
"""

from __future__ import annotations

import types

import grpc
import numpy as np
import pytest

import gradserve.engine as ge
from gradserve.engine import errors, limits
from gradserve.server import codec, inline_batch
from gradserve.v1 import graph_pb2, session_pb2
from tests.conftest import gradserve_attr, gradserve_open_session
from tests.test_hardening_bounds import _graph
from tests.test_hardening_ops import _lines_run

HUGE = 2 ** 62


# --- element counts of huge shapes ----------------------------------------------------------------

@pytest.mark.parametrize("dims", [1, 3, 10_000])
def test_the_element_count_of_a_huge_shape_stays_a_small_number(dims: int):
    """The exact product of 10,000 dims of 2**62 is a 620,000-bit number, and making it took
    time quadratic in the dims; past `NUMEL_CAP` the count stops growing."""
    n = limits.numel([HUGE] * dims)
    assert n == HUGE ** dims if dims < 2 else n > limits.NUMEL_CAP
    assert n.bit_length() <= 2 * 64
    assert limits.numel([HUGE] * dims + [0, HUGE]) == 0
    assert limits.numel([HUGE] * dims + [-1]) < -limits.NUMEL_CAP or dims < 2
    assert limits.numel([2, 3, 0]) == 0 and limits.numel([2, -1, 3]) == -6


@pytest.mark.parametrize("op, attrs, inputs", [
    ("ones", {"size": [HUGE] * 5000}, []),
    ("expand", {"size": [HUGE] * 5000}, [ge.tensor(1.0)]),
    ("repeat", {"repeats": [HUGE] * 5000}, [ge.tensor([1.0])]),
])
def test_a_shape_of_many_huge_dims_is_refused_with_a_short_message(op: str, attrs: dict,
                                                                   inputs: list):
    """The refusal printed the exact count (its text failed: "Exceeds the limit (4300 digits)
    for integer string conversion", a ValueError, INTERNAL on the wire) and every dim."""
    with limits.allocation_limit(2 ** 26), pytest.raises(errors.AllocationLimitError) as info:
        ge.apply(op, inputs, attrs)
    text = str(info.value)
    assert f"more than {limits.NUMEL_CAP} elements" in text and "(5000 dims)" in text
    assert len(text) < 1000


def test_reshape_to_many_huge_dims_is_refused_as_torch_refuses_it():
    x = ge.tensor([1.0, 2.0])
    with pytest.raises(errors.InvalidArgumentError, match=r"is invalid for input of size 2$"):
        ge.apply("reshape", [x], {"shape": [HUGE] * 5000})
    with pytest.raises(errors.InvalidArgumentError, match=r"is invalid for input of size 2$"):
        ge.apply("reshape", [x], {"shape": [HUGE] * 5000 + [-1]})
    y = ge.apply("reshape", [ge.tensor(np.zeros((0, 3)))], {"shape": [-1, 3]})
    assert y.shape == (0, 3)


def test_a_huge_shape_attribute_on_the_wire_is_resource_exhausted(gradserve_stub):
    """A RunGraph and a session batch (tried on the event loop) of `ones` with 800 dims of
    2**62 (7 KB): INTERNAL before, for both."""
    size = {"size": [HUGE] * 800}
    with pytest.raises(grpc.RpcError) as info:
        gradserve_stub.RunGraph(_graph(("y", "ones", [], size)), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    s = gradserve_open_session(gradserve_stub)
    try:
        with pytest.raises(grpc.RpcError) as info:
            s.run(session_pb2.Instruction(apply_op=session_pb2.ApplyOp(
                op="ones", outputs=[1], attrs={"size": gradserve_attr([HUGE] * 800)})))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "(800 dims)" in info.value.details()
    finally:
        s.close()


# --- graph nodes of many inputs -------------------------------------------------------------------

def _empty_leaf() -> ge.Tensor:
    return ge.tensor(np.zeros(0, np.float32), requires_grad=True)


def test_a_node_of_many_inputs_is_charged_for_each():
    """A cat of 10,000 inputs keeps ~3.8 MB of edges; it was charged `NODE_BYTES`."""
    x = _empty_leaf()
    need = limits.node_bytes(10_000)
    assert need == limits.NODE_BYTES + limits.EDGE_BYTES * (10_000 - limits.NODE_EDGES)
    with limits.byte_budget(need // 2), pytest.raises(errors.BudgetExceededError,
                                                      match=r"^cat\(\) graph node needs"):
        ge.apply("cat", [[x] * 10_000], {})
    with limits.byte_budget(need + limits.TENSOR_BYTES) as budget:
        y = ge.apply("cat", [[x] * 10_000], {})
        assert budget.left() == 0 and len(y.grad_fn.edges) == 10_000
    with ge.no_grad(), limits.byte_budget(limits.TENSOR_BYTES):
        ge.apply("cat", [[x] * 10_000], {})  # no node, no charge for one


def test_the_exact_measurement_counts_a_nodes_inputs():
    x = _empty_leaf()
    few = ge.autograd.footprint([ge.apply("cat", [[x] * limits.NODE_EDGES], {})])
    many = ge.autograd.footprint([ge.apply("cat", [[x] * 10_000], {})])
    assert few.edges == 0
    assert many.edges == 10_000 - limits.NODE_EDGES
    assert many.nbytes - few.nbytes == many.edges * limits.EDGE_BYTES


def test_a_session_of_nodes_of_many_inputs_is_held_to_its_budget(gradserve_stub):
    """Each batch's estimate counts the inputs (0 bytes measured before, however many)."""
    budget = 8 << 20
    s = gradserve_open_session(gradserve_stub, limits=session_pb2.SessionLimits(
        max_bytes=budget))
    handle = graph_pb2.Value(handle=1)
    n = 10_000  # 3.8 MB a node
    try:
        s.run(session_pb2.Instruction(create_tensor=session_pb2.CreateTensor(
            handle=1, value=codec.encode_array(np.zeros(0, np.float32)), requires_grad=True)))
        first = session_pb2.Instruction(apply_op=session_pb2.ApplyOp(
            op="cat", inputs=[handle] * n, outputs=[2], omit_info=True))
        s.run(first)
        assert s.describe().bytes_held >= n * limits.EDGE_BYTES
        with pytest.raises(grpc.RpcError) as info:
            for k in range(3, 6):
                s.run(session_pb2.Instruction(apply_op=session_pb2.ApplyOp(
                    op="cat", inputs=[graph_pb2.Value(handle=2)] * n, outputs=[k],
                    omit_info=True)))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert s.describe().bytes_held <= budget
    finally:
        s.close()


def test_the_event_loops_backward_check_stops_at_a_node_of_many_inputs():
    """The walk counted nodes only: a cat of 10,000 inputs is one node, so the walk visited all
    its edges and the pass then ran on the loop (six of 200,000: 23.6 s)."""
    x = _empty_leaf()
    y = ge.apply("sum", [ge.apply("cat", [[x] * 10_000], {})], {})
    session = types.SimpleNamespace(hooks=None, suspended=None, tensors={1: y})
    executor = types.SimpleNamespace(s=session)
    assert not inline_batch._small_graph(executor, (1,))  # type: ignore[arg-type]
    assert _lines_run(lambda: inline_batch._small_graph(executor, (1,)),  # type: ignore
                      "inline_batch.py") < 200
    few = ge.apply("sum", [ge.apply("cat", [[x] * 8], {})], {})
    session.tensors[1] = few
    assert inline_batch._small_graph(executor, (1,))  # type: ignore[arg-type]


def test_an_op_takes_at_most_max_results_inputs_counted_as_results():
    """A cat of n inputs is a node of n edges whose backward step splits its gradient n ways,
    one uninterruptible step: a cat of 1,000,000 (4 MB of request) ran its backward 3.2 s past
    a 1 s deadline. Inputs are held to what results are (`MAX_RESULTS`, under any element
    limit), and the interrupt check runs once per 4 of them before the op."""
    x = _empty_leaf()
    with limits.allocation_limit(2 ** 26), pytest.raises(
            errors.AllocationLimitError, match=r"^cat\(\): 65537 inputs, more than the limit of"):
        ge.apply("cat", [[x] * (limits.MAX_RESULTS + 1)], {})
    with limits.allocation_limit(256), pytest.raises(errors.AllocationLimitError,
                                                     match="257 inputs"):
        ge.apply("stack", [[x] * 257], {})
    checks: list[int] = []
    with limits.allocation_limit(2 ** 26), limits.interrupt(lambda: checks.append(1)):
        y = ge.apply("cat", [[x] * 4096], {})
    assert len(y.grad_fn.edges) == 4096 and len(checks) >= 4096 // 4
    assert len(ge.apply("cat", [[x] * 70_000], {}).grad_fn.edges) == 70_000  # no limits set


# --- ops with long attribute lists on the event loop ----------------------------------------------

def _roll(shifts: int) -> session_pb2.ApplyOp:
    x = graph_pb2.Value(constant=codec.encode_array(np.ones((2, 2), np.float32)))
    return session_pb2.ApplyOp(op="roll", inputs=[x], outputs=[1], attrs={
        "shifts": gradserve_attr([1] * shifts), "dims": gradserve_attr([0] * shifts)})


def test_an_op_of_long_attribute_lists_is_not_run_on_the_event_loop():
    """An 8 KiB request can list ~8,000 ints, each read by the op's checks and bound (~1-2 us
    each): a roll of 3,900 shifts ran 6-7 ms on the loop, past its 2 ms budget. Such an op
    pauses a session batch (a worker runs it) and keeps a RunGraph off the loop."""
    from gradserve.server import inline
    from gradserve.v1 import service_pb2

    executor = types.SimpleNamespace(s=types.SimpleNamespace(tensors={}), limit=2 ** 26)
    half = inline.MAX_ATTR_INTS // 2
    with limits.allocation_limit(None):  # (restores the limit the gate sets for an op)
        gate = inline_batch.Gate(float("inf"))
        assert not gate.pause(executor, "apply_op", _roll(half))  # type: ignore[arg-type]
        assert gate.pause(executor, "apply_op", _roll(half + 1))  # type: ignore[arg-type]
    assert not gate.pause_attrs({"shifts": (1,) * half, "dims": (0,) * half, "x": 2})
    assert gate.pause_attrs({"shifts": (1,) * half, "dims": (0,) * (half + 1)})
    for shifts, small in ((half, True), (half + 1, False)):
        m = _roll(shifts)
        req = service_pb2.RunGraphRequest()
        req.graph.nodes.add(id="y", op="roll", inputs=m.inputs, attrs=m.attrs)
        assert inline._small(req.graph.nodes, 0) is small


def test_an_einsum_of_many_operands_is_not_run_on_the_event_loop():
    """Its path search (~n^3 steps) runs before the op, past the loop's budget: 32 operands of
    4 elements, a 1.5 KB batch, took ~9.5 ms on the loop; 12 take ~0.7 ms."""
    executor = types.SimpleNamespace(s=types.SimpleNamespace(tensors={}), limit=2 ** 26)
    gate = inline_batch.Gate(float("inf"))
    x = ge.tensor(np.ones(4, np.float32))

    def einsum(n: int) -> session_pb2.ApplyOp:
        v = graph_pb2.Value(constant=codec.encode_array(np.ones(4, np.float32)))
        return session_pb2.ApplyOp(op="einsum", inputs=[v] * n, outputs=[1], attrs={
            "equation": gradserve_attr(",".join("a" * n) + "->")})
    most = inline_batch.MAX_EINSUM_OPERANDS
    with limits.allocation_limit(None):  # (restores the limit the gate sets for an op)
        assert not gate.pause(executor, "apply_op", einsum(most))  # type: ignore[arg-type]
        assert gate.pause(executor, "apply_op", einsum(most + 1))  # type: ignore[arg-type]
    assert not gate.pause_op("einsum", [x] * most) and gate.pause_op("einsum", [x] * (most + 1))
