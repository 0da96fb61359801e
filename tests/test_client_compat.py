"""What only a session does about torch's compatibility names (gradserve.client.compat): `x.data`
assignment sent as an unrecorded copy, the namespaces' missing names, next_functions and
is_contiguous read across the wire. The shared behaviour is tested against torch, in process and
through a session, in tests/test_surface_compat.py."""

from __future__ import annotations

import re
import warnings

import pytest

import gradserve.client as gc_client
from tests.reference import HAVE_TORCH, MISSING_REASON, torch


@pytest.fixture(scope="module")
def client(gradserve_server):
    with gc_client.connect(f"localhost:{gradserve_server[1]}") as c:
        yield c


@pytest.fixture
def session(client):
    with client.session() as s:
        yield s


def test_data_read_then_assigned_back_sends_nothing_more(session):
    x = session.tensor([1., 2.], requires_grad=True)
    (x * x).sum().backward()
    g = x.grad  # reading .grad is a round trip
    before = session.round_trips
    x.data -= 0.5 * g.data  # a detach, an in-place sub on it; the assignment is a no-op
    assert session.round_trips == before  # recorded, not sent yet
    assert repr(x) == "tensor([0., 0.], requires_grad=True)"
    assert x.is_leaf and x.grad_fn is None


def test_data_assignment_copies_without_recording(session):
    x = session.tensor([1., 2.], requires_grad=True)
    y = session.tensor([5., 6.])
    x.data = y
    y += 1  # through a session x took y's values, it does not share y's data
    assert repr(x) == "tensor([5., 6.], requires_grad=True)" and x.is_leaf
    # written through `x.data` (a version counter of its own): x's is not bumped, as in torch
    t = torch.tensor([1., 2.], requires_grad=True)
    t.data = torch.tensor([5., 6.])
    assert x.grad_fn is None and x._version == t._version == 0


def test_data_assignment_of_another_shape_needs_the_servers_set_data(session):
    # (what it does with a server that has it: tests/test_extend_round8.py, against torch)
    x = session.tensor([1., 2.], requires_grad=True)
    session._set_data = False  # as with a server that predates SetData
    with pytest.raises(NotImplementedError, match=r"needs y of x's shape and dtype"):
        x.data = session.zeros(3)
    session._set_data = True
    x.data = session.zeros(3)
    assert x.shape == (3,) and x.requires_grad and x.is_leaf
    with pytest.raises(TypeError, match="Variable data has to be a tensor, but got list"):
        x.data = [1., 2.]


def test_namespaces_keep_their_names(session):
    assert {"grad", "backward"} <= set(dir(session.autograd))
    x = session.tensor([-1., 2.])
    assert repr(session.nn.functional.relu(x)) == repr(torch.nn.functional.relu(
        torch.tensor([-1., 2.])))
    assert not hasattr(session.nn, "frobnicate")


def test_next_functions_across_the_wire_carry_output_numbers(session):
    def run(t):
        x = t.tensor([1., 2., 3.], requires_grad=True)
        a, b, c = (x * 2).split(1)
        d = torch_like_sum(t, c, a) + 1
        return [(None if f is None else f.name(), k) for f, k in d.grad_fn.next_functions], \
            [(None if f is None else f.name(), k)
             for f, k in d.grad_fn.next_functions[0][0].next_functions]

    def torch_like_sum(t, u, v):
        return t.add(u, v)

    assert run(session) == run(torch)


def test_is_contiguous_comes_with_the_tensors_info(session):
    x = session.zeros(2, 3)
    t = x.t()
    assert x.is_contiguous() and not t.is_contiguous()
    rounds = session.round_trips
    c = t.contiguous()
    # contiguous()'s copy is known contiguous (Meta.contiguous): no round trip
    assert c.is_contiguous() and session.round_trips == rounds
    assert re.fullmatch(r"tensor\(\[\[0\., 0\.\],\n\s+\[0\., 0\.\],\n\s+\[0\., 0\.\]\]\)",
                        repr(c))


VERSION_OPERANDS = ["2.0", "2.13", "2.13.0", "2.13.1", "2.2", "3", "1.10.0", "2.13.0+cpu",
                    "2.13.0a0", "2.13.0rc1", (2, 13), (2, 13, 0), (2, 14), (1, 8)]


@pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)  # a dunder: _Absent cannot skip it
def test_version_is_torch_s_and_compares_as_a_version(session):
    """`torch.__version__` prints and compares as torch 2.13.0's CPU wheel's (a TorchVersion:
    "2.13.0+cpu" > "2.2" as a version, not as text)."""
    v, ref = session.__version__, torch.__version__
    assert str(v) == str(ref) and repr(v) == repr(ref) and f"{v}" == f"{ref}"
    assert isinstance(v, str) and hash(v) == hash(str(ref))
    for other in VERSION_OPERANDS:
        got = (v < other, v <= other, v > other, v >= other, v == other, v != other)
        want = (ref < other, ref <= other, ref > other, ref >= other, ref == other,
                ref != other)
        assert got == want, other
    assert session.version.__version__ == ref
    assert session.version.cuda is torch.version.cuda is None
    assert session.version.hip is torch.version.hip
    assert session.version.debug == torch.version.debug


def test_type_names_print_as_torch_s(session):
    """Programs print `type(p)` of parameters and shapes: the classes show torch's names."""
    lin, ref = session.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    assert str(type(lin.weight)) == str(type(ref.weight))
    assert str(type(session.zeros(2))) == str(type(torch.zeros(2)))
    assert str(type(session.zeros(2, 3).shape)) == str(type(torch.zeros(2, 3).shape))


@pytest.mark.parametrize("arg", ["torch.DoubleTensor", "torch.FloatTensor", "DoubleTensor_type",
                                 "torch.LongTensor", "LongTensor_type", "Tensor_type",
                                 "torch.cuda.FloatTensor", "torch.Foo", "foo.Bar", "FloatTensor",
                                 "float64_dtype"])
def test_set_default_tensor_type_as_torch(session, arg):
    """torch.set_default_tensor_type (deprecated in torch 2.1, still in real programs): sets the
    default dtype, warns as torch, refuses what torch refuses with its error."""
    def resolve(mod):
        if arg.endswith("_type"):
            return getattr(mod, arg[:-len("_type")])
        if arg.endswith("_dtype"):
            return getattr(mod, arg[:-len("_dtype")])
        return arg

    before = torch.get_default_dtype()
    outcomes = []
    try:
        for mod in (torch, session):
            # (torch warns once per process, so only the session's warning is checked)
            with warnings.catch_warnings(record=True) as record:
                warnings.simplefilter("always")
                try:
                    mod.set_default_tensor_type(resolve(mod))
                    outcomes.append(("ok", str(mod.get_default_dtype()),
                                     str(mod.tensor([1.5]).dtype)))
                except Exception as exc:
                    outcomes.append((type(exc).__name__, str(exc)))
        assert [str(w.message) for w in record] == [
            "torch.set_default_tensor_type() is deprecated as of PyTorch 2.1, please use "
            "torch.set_default_dtype() and torch.set_default_device() as alternatives."]
    finally:
        torch.set_default_dtype(before)
    assert outcomes[1] == outcomes[0]
