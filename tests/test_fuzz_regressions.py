"""Inputs long fuzzing (bench/fuzz.py) found answered INTERNAL, each kept as a regression.

Each request is the one the fuzzer sent, in protobuf text format; the server must answer with
the caller's-mistake status the engine gives (as torch raises for the same call), never
INTERNAL. The engine-level checks compare with torch.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import text_format

import gradserve.engine as ge
from gradserve.v1 import service_pb2, session_pb2
from tests.conftest import gradserve_open_session
from tests.reference import torch

# bench/fuzz.py 200000 --seed 1 (2026-12-06), input ~130,000: arange with a NaN step. Its
# output bound divided by the step and raised ValueError (cannot convert NaN to integer).
ARANGE_NAN_STEP = r"""
graph {
  inputs {
    name: "x0"
  }
  nodes {
    id: "n0"
    op: "le"
    inputs {
      ref {
        id: "x0"
      }
    }
    inputs {
      ref {
        id: "x0"
      }
    }
  }
  nodes {
    id: "n1"
    op: "arange"
    attrs {
      key: "step"
      value {
        float_value: nan
      }
    }
    attrs {
      key: "start"
      value {
        float_value: 1.915
      }
    }
  }
  outputs {
    name: "y0"
    ref {
      id: "n1"
    }
  }
}
inputs {
  key: "x0"
  value {
    dtype: DTYPE_INT32
    shape: 1
    raw: "\373\377\377\377"
  }
}
order: 1
"""

# The same run: cross_entropy of 0-d tensors. Its dtype rule indexed the class dimension of a
# 0-d input and raised IndexError.
CROSS_ENTROPY_0D = r"""
instructions {
  release {
  }
}
instructions {
  apply_op {
    op: "cross_entropy"
    inputs {
      constant {
        dtype: DTYPE_FLOAT32
        float_values {
          values: -1.658
        }
      }
    }
    inputs {
      constant {
        dtype: DTYPE_FLOAT64
        raw: "o\022\203\300\312\241\361?"
      }
    }
    inputs {
      constant {
        dtype: DTYPE_FLOAT32
        raw: "\321\"#\300"
      }
    }
    outputs: 1
  }
}
instructions {
  backward {
    tensor: 1
  }
}
instructions {
  release {
  }
}
instructions {
  fetch {
    handle: 1
    value: true
  }
}
instructions {
  grad {
    inputs: 1
    inputs: 1
    allow_unused: true
    results: 2
    results: 3
  }
}
"""


def test_arange_with_a_nan_step_is_refused_in_torch_words(gradserve_stub):
    req = text_format.Parse(ARANGE_NAN_STEP, service_pb2.RunGraphRequest())
    with pytest.raises(grpc.RpcError) as err:
        gradserve_stub.RunGraph(req, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "step must be nonzero" in err.value.details()
    with pytest.raises(RuntimeError) as theirs:
        torch.arange(0.0, 5.0, float("nan"))
    with ge.limits.allocation_limit(100), pytest.raises(RuntimeError) as ours:
        ge.arange(0.0, 5.0, float("nan"))
    assert str(ours.value) == str(theirs.value)


def test_cross_entropy_of_0d_tensors_is_refused_in_torch_words(gradserve_stub):
    s = gradserve_open_session(gradserve_stub)
    req = text_format.Parse(CROSS_ENTROPY_0D, session_pb2.BatchRequest())
    with pytest.raises(grpc.RpcError) as err:
        s.run(*req.instructions)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(IndexError) as theirs:
        torch.nn.functional.cross_entropy(torch.tensor(-1.658), torch.tensor(1.1))
    assert err.value.details() == str(theirs.value)
    s.close()


def test_a_rule_that_cannot_judge_its_inputs_is_the_callers_mistake(monkeypatch):
    """Whatever a dtype rule or an output bound raises on inputs it was not written for becomes
    InvalidArgumentError naming the op, never an unmapped error (INTERNAL on the server)."""
    op = ge.OPS["sin"]

    def broken(args, attrs, out_dtype):
        raise ValueError("cannot convert float NaN to integer")

    monkeypatch.setattr(op, "out_bound", broken)
    # forget the bounds an earlier sin under limits may have remembered (`OpDef.scalar_bounds`
    # for 0-d ufunc inputs, `OpDef.bounds` per shapes otherwise)
    monkeypatch.setattr(op, "scalar_bounds", {} if op.scalar_bounds is not None else None)
    monkeypatch.setattr(op, "bounds", {})
    with ge.limits.allocation_limit(100), pytest.raises(ge.errors.InvalidArgumentError) as err:
        ge.sin(ge.tensor(1.0))
    assert str(err.value) == "sin(): cannot convert float NaN to integer"


# bench/fuzz.py 200000 --seed 1 (2026-12-06, stop 16), input 155,088: an index with two
# ellipses whose dims passed the tensor's last (torch lets each ellipsis skip ndim - specified
# dims); the engine read shape[dim] out of range and raised Python's IndexError (INTERNAL).
@pytest.mark.parametrize("index", [
    (0, Ellipsis, Ellipsis, 0), (0, Ellipsis, Ellipsis, slice(0, 1)),
    (0, Ellipsis, Ellipsis, slice(None)), (0, Ellipsis, Ellipsis, None),
    (0, 0, Ellipsis, Ellipsis, 0, Ellipsis)])
def test_several_ellipses_past_the_last_dim_index_as_torch(index):
    def run(lib):
        try:
            return tuple(lib.zeros(3, 3, 1)[index].shape)
        except IndexError as e:
            return str(e)
    assert run(ge) == run(torch)


def test_several_ellipses_are_the_callers_mistake_through_a_session(gradserve_stub):
    s = gradserve_open_session(gradserve_stub)
    try:
        create = session_pb2.Instruction()
        text_format.Parse('create_tensor { handle: 1 value { dtype: DTYPE_FLOAT64 shape: 3 '
                          'shape: 3 shape: 1 raw: "' + "\\000" * 72 + '" } }', create)
        index = session_pb2.Instruction()
        text_format.Parse('index { tensor: 1 index { items { integer: 0 } items { ellipsis {} } '
                          'items { ellipsis {} } items { integer: 0 } } result: 2 }', index)
        with pytest.raises(grpc.RpcError) as err:
            s.run(create, index)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "index 0 is out of bounds for dimension 3 with size 0" in err.value.details()
    finally:
        s.close()
