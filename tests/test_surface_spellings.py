"""gradserve.surface.spellings against a recording backend: which ops each spelling chooses, and
that its errors are the backend's types (the engine's and the client's run them against torch in
tests/test_engine_reduce_linalg.py and tests/test_client_overloads.py)."""

import pytest

from gradserve.surface import results
from gradserve.surface.spellings import SPELLINGS


class FakeTensor:
    def __init__(self, shape):
        self.shape = shape


class RecordingBackend:
    class TypeErr(TypeError):
        pass

    class RuntimeErr(RuntimeError):
        pass

    class IndexErr(IndexError):
        pass

    type_error, runtime_error, index_error = TypeErr, RuntimeErr, IndexErr

    def __init__(self):
        self.calls = []

    def call(self, name, args, kwargs):
        self.calls.append((name, args, dict(kwargs)))
        return ("values", "indices") if name.endswith("_dim") else name

    def is_tensor(self, value):
        return isinstance(value, FakeTensor)

    def shape(self, tensor):
        return tensor.shape


@pytest.mark.parametrize("name, binary", [("max", "maximum"), ("min", "minimum")])
def test_extreme_chooses_the_op_and_wraps_dim_results(name, binary):
    be, x, y = RecordingBackend(), FakeTensor((2, 3)), FakeTensor((2, 3))
    fn, method = SPELLINGS[name].function, SPELLINGS[name].method
    assert fn(be, x) == name
    assert fn(be, x, y) == binary
    out = method(be, x, 1, keepdim=True)
    assert isinstance(out, results.ValuesIndices) and type(out).__name__ == name.title() + "Result"
    assert (out.values, out.indices) == ("values", "indices")
    assert be.calls == [(name, (x,), {}), (binary, (x, y), {}), (name + "_dim", (x, 1, True), {})]


def test_errors_are_the_backends_types():
    be, x = RecordingBackend(), FakeTensor((2, 3))
    with pytest.raises(RecordingBackend.TypeErr, match="invalid combination of arguments"):
        SPELLINGS["max"].function(be, x, 1.5)
    with pytest.raises(RecordingBackend.RuntimeErr, match="greater than 0"):
        SPELLINGS["chunk"].function(be, x, 0)
    with pytest.raises(RecordingBackend.IndexErr, match="Dimension out of range"):
        SPELLINGS["narrow"].function(be, x, 5, 0, 1)
    assert be.calls == []


def test_T_warns_at_the_callers_line():
    be = RecordingBackend()
    with pytest.warns(UserWarning) as record:
        SPELLINGS["T"].method(be, FakeTensor((2, 3, 4)), stacklevel=1)
    assert record[0].filename == __file__
    assert be.calls == [("permute", (be.calls[0][1][0], (2, 1, 0)), {})]
