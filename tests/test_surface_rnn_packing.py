"""torch.nn.utils.rnn (surface/nn_utils_rnn.py, the engine's _pack_padded_sequence op) and the
recurrent layers on a PackedSequence (surface/nn_rnn.py's packed layers) against torch, in
process and through a session: packed data, batch_sizes and indices, padded values and lengths,
gradients through the packing to the bit, the packed and padded results' grad_fn names and
reprs, error types and texts; RNN, GRU and LSTM (bidirectional, stacked, projected, given or
zero initial states, sorted or not) give torch's packed outputs, final states bit for bit (but
float32 LSTMs over sequences of one length, oneDNN's kernel in torch) and gradients bit for bit
in float64, to float32 rounding in float32."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from tests.reference import HAVE_TORCH, MISSING_REASON, errors_alike, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


@pytest.fixture
def lib(gradserve_lib: Any) -> Any:
    """gradserve standing in for torch: the in-process engine, or a session (conftest)."""
    return gradserve_lib


def _np(t: Any) -> np.ndarray:
    return np.asarray(t.detach().numpy())


def _same(ours: Any, theirs: Any, exact: bool = True) -> None:
    """Equal values to the bit (or, not `exact`, to float32 rounding), and equal dtypes."""
    assert str(ours.dtype) == str(theirs.dtype)
    if exact:
        np.testing.assert_array_equal(_np(ours), _np(theirs))
    else:
        np.testing.assert_allclose(_np(ours), _np(theirs), rtol=1e-5, atol=1e-6)


def _leaf(lib: Any, t: Any) -> Any:
    return lib.tensor(_np(t), requires_grad=t.requires_grad)


def _same_packed(ours: Any, theirs: Any) -> None:
    _same(ours.data, theirs.data)
    _same(ours.batch_sizes, theirs.batch_sizes)
    for mine, ref in ((ours.sorted_indices, theirs.sorted_indices),
                      (ours.unsorted_indices, theirs.unsorted_indices)):
        assert (mine is None) == (ref is None)
        if ref is not None:
            _same(mine, ref)


# --- packing and padding ---------------------------------------------------------------------

PACK_CASES = [
    ((5, 3, 2), [5, 3, 1], {}),
    ((5, 3), [5, 5, 2], {}),
    ((3, 5, 2, 2), [5, 3, 3], {"batch_first": True}),
    ((5, 4, 2), [2, 5, 1, 5], {"enforce_sorted": False}),
    ((4, 5, 3), [1, 4, 2, 4], {"enforce_sorted": False, "batch_first": True}),
]


@pytest.mark.parametrize(("shape", "lengths", "kwargs"), PACK_CASES)
@pytest.mark.parametrize("as_tensor", [False, True])
def test_pack_then_pad_match_torch_with_gradients(lib, shape, lengths, kwargs, as_tensor):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    gx = _leaf(lib, x)
    lens, glens = ((torch.tensor(lengths), lib.tensor(lengths)) if as_tensor
                   else (lengths, lengths))
    R, G = torch.nn.utils.rnn, lib.nn.utils.rnn
    packed = R.pack_padded_sequence(x, lens, **kwargs)
    gpacked = G.pack_padded_sequence(gx, glens, **kwargs)
    _same_packed(gpacked, packed)
    assert isinstance(gpacked, G.PackedSequence)
    assert type(gpacked).__name__ == "PackedSequence"
    assert gpacked.data.grad_fn.name() == packed.data.grad_fn.name()
    assert repr(gpacked) == repr(packed)
    batch_first = kwargs.get("batch_first", False)
    padded, out_lengths = R.pad_packed_sequence(packed, batch_first=batch_first,
                                                padding_value=-1.5, total_length=7)
    gpadded, gout_lengths = G.pad_packed_sequence(gpacked, batch_first=batch_first,
                                                  padding_value=-1.5, total_length=7)
    _same(gpadded, padded)
    _same(gout_lengths, out_lengths)
    assert gpadded.grad_fn.name() == padded.grad_fn.name()
    weight = torch.randn(padded.shape, dtype=torch.float64)
    (padded * weight).sum().backward()
    (gpadded * lib.tensor(weight.numpy())).sum().backward()
    _same(gx.grad, x.grad)


LENGTHS = {
    "numpy": (lambda t: np.array([3, 2, 2])),
    "floats": (lambda t: [3.0, 2.0, 1.0]),
    "float_tensor": (lambda t: t.tensor([3.0, 2.0, 1.0])),
    "int32_tensor": (lambda t: t.tensor([3, 1, 1], dtype=t.int32)),
}


@pytest.mark.parametrize("lengths", sorted(LENGTHS))
def test_lengths_spellings(lib, lengths):
    x = torch.randn(3, 3, 2)
    make = LENGTHS[lengths]
    _same_packed(lib.nn.utils.rnn.pack_padded_sequence(_leaf(lib, x), make(lib)),
                 torch.nn.utils.rnn.pack_padded_sequence(x, make(torch)))


def test_lengths_past_the_input(lib):
    """torch's batch_sizes count a length's steps past the input's end, its data stops there
    (and padding it again fails as torch's does)."""
    x = torch.randn(4, 3, 2, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, [7, 2, 1])
    gpacked = lib.nn.utils.rnn.pack_padded_sequence(_leaf(lib, x), [7, 2, 1])
    _same_packed(gpacked, packed)
    errors_alike(lambda: lib.nn.utils.rnn.pad_packed_sequence(gpacked)[0].tolist(),
                 lambda: torch.nn.utils.rnn.pad_packed_sequence(packed))


@pytest.mark.parametrize("kwargs", [
    {}, {"batch_first": True}, {"padding_value": 2.5, "padding_side": "left"},
    {"batch_first": True, "padding_side": "left"}])
def test_pad_sequence_matches_torch(lib, kwargs):
    torch.manual_seed(1)
    seqs = [torch.randn(n, 2, requires_grad=True) for n in (3, 5, 1)]
    gseqs = [_leaf(lib, s) for s in seqs]
    out = torch.nn.utils.rnn.pad_sequence(seqs, **kwargs)
    gout = lib.nn.utils.rnn.pad_sequence(gseqs, **kwargs)
    _same(gout, out)
    assert gout.grad_fn.name() == out.grad_fn.name() == "torch::autograd::CopySlices"
    weight = torch.randn(out.shape)
    (out * weight).sum().backward()
    (gout * lib.tensor(weight.numpy())).sum().backward()
    for g, s in zip(gseqs, seqs):
        _same(g.grad, s.grad)


def test_pad_sequence_of_ints_and_of_a_tensor(lib):
    R, G = torch.nn.utils.rnn, lib.nn.utils.rnn
    ints = [[1, 2, 3], [4], [5, 6]]
    _same(G.pad_sequence([lib.tensor(s) for s in ints], padding_value=0.5),
          R.pad_sequence([torch.tensor(s) for s in ints], padding_value=0.5))
    x = torch.randn(2, 3)
    _same(G.pad_sequence(lib.tensor(x.numpy()), batch_first=True),
          R.pad_sequence(x, batch_first=True))


@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_pack_and_unpack_sequence_round_trip_with_gradients(lib, enforce_sorted):
    torch.manual_seed(2)
    lengths = (4, 2, 2, 1) if enforce_sorted else (2, 4, 1, 2)
    seqs = [torch.randn(n, 3, dtype=torch.float64, requires_grad=True) for n in lengths]
    gseqs = [_leaf(lib, s) for s in seqs]
    R, G = torch.nn.utils.rnn, lib.nn.utils.rnn
    packed = R.pack_sequence(seqs, enforce_sorted=enforce_sorted)
    gpacked = G.pack_sequence(gseqs, enforce_sorted=enforce_sorted)
    _same_packed(gpacked, packed)
    back = R.unpack_sequence(packed)
    gback = G.unpack_sequence(gpacked)
    assert len(gback) == len(back)
    total, gtotal = 0, 0
    for i, (mine, ref) in enumerate(zip(gback, back)):
        _same(mine, ref)
        assert mine.grad_fn.name() == ref.grad_fn.name()
        total = total + ref.pow(2).sum() * (i + 1)
        gtotal = gtotal + mine.pow(2).sum() * (i + 1)
    total.backward()
    gtotal.backward()
    for g, s in zip(gseqs, seqs):
        _same(g.grad, s.grad)


@pytest.mark.parametrize("batch_first", [False, True])
def test_unpad_sequence(lib, batch_first):
    x = torch.randn((3, 4, 2) if batch_first else (4, 3, 2))
    got = lib.nn.utils.rnn.unpad_sequence(lib.tensor(x.numpy()), lib.tensor([4, 1, 3]),
                                          batch_first=batch_first)
    want = torch.nn.utils.rnn.unpad_sequence(x.clone(), torch.tensor([4, 1, 3]),
                                             batch_first=batch_first)
    assert len(got) == len(want) == 3
    for mine, ref in zip(got, want):
        _same(mine, ref)


def test_invert_permutation(lib):
    perm = [3, 0, 2, 1]
    _same(lib.nn.utils.rnn.invert_permutation(lib.tensor(perm)),
          torch.nn.utils.rnn.invert_permutation(torch.tensor(perm)))
    assert lib.nn.utils.rnn.invert_permutation(None) is None


def test_packed_sequence_object(lib):
    R, G = torch.nn.utils.rnn, lib.nn.utils.rnn
    seqs = [[1.0, 2.0, 3.0], [4.0, 5.0], [6.0]]
    packed = R.pack_sequence([torch.tensor(s) for s in seqs])
    gpacked = G.pack_sequence([lib.tensor(s) for s in seqs])
    assert repr(gpacked) == repr(packed)
    assert gpacked.to(lib.float32) is gpacked
    _same_packed(gpacked.double(), packed.double())
    _same_packed(gpacked.to(dtype=lib.int64), packed.to(dtype=torch.int64))
    assert not gpacked.is_cuda
    data, batch_sizes, sorted_indices, unsorted_indices = gpacked
    assert sorted_indices is None and unsorted_indices is None
    _same(data, packed.data)
    again = G.PackedSequence((data, batch_sizes))
    _same_packed(again, packed)
    with_order = G.PackedSequence(data, batch_sizes, lib.tensor([2, 0, 1]))
    _same_packed(with_order, R.PackedSequence(packed.data, packed.batch_sizes,
                                              torch.tensor([2, 0, 1])))
    assert G.PackedSequence._fields == R.PackedSequence._fields


def test_namespace_spellings(lib):
    assert lib.nn.utils.rnn.PackedSequence.__module__.endswith("nn.utils.rnn")
    for name in torch.nn.utils.rnn.__all__:
        assert callable(getattr(lib.nn.utils.rnn, name)), name


@pytest.mark.parametrize("case", [
    lambda t: t.nn.utils.rnn.pack_padded_sequence(t.zeros(4, 3, 2), [2, 4, 1]),
    lambda t: t.nn.utils.rnn.pack_padded_sequence(t.zeros(4, 3, 2), [4, 2, 0]),
    lambda t: t.nn.utils.rnn.pack_padded_sequence(t.zeros(4, 3, 2), [-1, 2, 4],
                                                  enforce_sorted=False),
    lambda t: t.nn.utils.rnn.pack_padded_sequence(t.zeros(4, 3, 2), [4, 2]),
    lambda t: t.nn.utils.rnn.pack_padded_sequence(t.zeros(4, 3, 2), t.tensor([[4, 2, 1]])),
    lambda t: t.nn.utils.rnn.pack_padded_sequence(t.zeros(4, 3, 2), 3),
    lambda t: t.nn.utils.rnn.pack_padded_sequence(t.zeros(0, 3, 2), [1, 1, 1]),
    lambda t: t.nn.utils.rnn.pack_padded_sequence(t.zeros(4), [4]),
    lambda t: t.nn.utils.rnn.pack_padded_sequence(t.zeros(4), [4], batch_first=True),
    lambda t: t.nn.utils.rnn.pack_sequence([t.zeros(1), t.zeros(2)]),
    lambda t: t.nn.utils.rnn.pack_sequence([]),
    lambda t: t.nn.utils.rnn.pad_sequence([]),
    lambda t: t.nn.utils.rnn.pad_sequence([t.tensor(1.0)]),
    lambda t: t.nn.utils.rnn.pad_sequence([t.zeros(3)], padding_side="top"),
    lambda t: t.nn.utils.rnn.pad_sequence(3),
    lambda t: t.nn.utils.rnn.pad_packed_sequence(
        t.nn.utils.rnn.pack_sequence([t.zeros(3), t.zeros(2)]), total_length=2),
    lambda t: t.nn.utils.rnn.unpad_sequence(t.zeros(3, 2), t.tensor([3, 2, 1])),
    lambda t: t.nn.utils.rnn.PackedSequence(t.zeros(3)),
    lambda t: t.nn.utils.rnn.PackedSequence(),
    lambda t: t.nn.GRU(2, 3)(t.nn.utils.rnn.pack_sequence([t.zeros(3, 2), t.zeros(2, 2)]),
                             t.zeros(1, 3, 3)),
    lambda t: t.nn.RNN(3, 3)(t.nn.utils.rnn.pack_sequence([t.zeros(3, 2), t.zeros(2, 2)])),
    lambda t: t.nn.RNN(3, 3)(t.nn.utils.rnn.pack_sequence([t.zeros(3, 1, 3), t.zeros(2, 1, 3)])),
    lambda t: t.nn.LSTM(2, 3)(t.nn.utils.rnn.pack_sequence([t.zeros(3, 2), t.zeros(2, 2)]),
                              (t.zeros(1, 3, 3), t.zeros(1, 2, 3))),
])
def test_errors_are_torchs(lib, case):
    errors_alike(lambda: case(lib), lambda: case(torch))


def test_sizes_take_a_one_element_integral_tensor(lib):
    lengths = [3, 5, 2]
    got = lib.zeros((len(lengths), lib.tensor(lengths).max())).long()
    want = torch.zeros((len(lengths), torch.tensor(lengths).max())).long()
    _same(got, want)
    _same(lib.ones(2, lib.tensor([3], dtype=lib.int32)), torch.ones(2, torch.tensor([3])))
    errors_alike(lambda: lib.zeros((2, lib.tensor(3.0))),
                 lambda: torch.zeros((2, torch.tensor(3.0))))


# --- recurrent layers on packed sequences ------------------------------------------------------

LAYER_CASES = [
    ("RNN", {}, torch.float32), ("RNN", {"nonlinearity": "relu", "num_layers": 2}, torch.float64),
    ("RNN", {"bidirectional": True}, torch.float32),
    ("GRU", {}, torch.float32),
    ("GRU", {"bidirectional": True, "num_layers": 2}, torch.float64),
    ("LSTM", {}, torch.float32), ("LSTM", {"bidirectional": True, "num_layers": 2}, torch.float32),
    ("LSTM", {"proj_size": 2, "bidirectional": True}, torch.float64),
    ("LSTM", {"bias": False, "batch_first": True}, torch.float64),
]


def _copy_module(lib: Any, module: Any, cls: str, *args: Any, **kwargs: Any) -> Any:
    ours = getattr(lib.nn, cls)(*args, **kwargs)
    ours.load_state_dict({k: lib.tensor(v.detach().numpy())
                          for k, v in module.state_dict().items()})
    return ours


def _hiddens(hidden: Any) -> tuple[Any, ...]:
    return hidden if isinstance(hidden, tuple) else (hidden,)


@pytest.mark.parametrize(("cls", "kwargs", "dtype"), LAYER_CASES)
@pytest.mark.parametrize(("lengths", "given_hx"), [
    ((5, 3, 3, 1), False), ((2, 5, 1, 3), False), ((2, 5, 1, 3), True), ((4, 4, 4, 4), True)])
def test_layer_on_packed_sequence_matches_torch_bitwise(lib, cls, kwargs, dtype, lengths,
                                                        given_hx):
    torch.manual_seed(3)
    ref = getattr(torch.nn, cls)(3, 4, dtype=dtype, **kwargs)
    ours = _copy_module(lib, ref, cls, 3, 4, dtype=getattr(lib, str(dtype)[6:]), **kwargs)
    batch_first = kwargs.get("batch_first", False)
    x = torch.randn((4, 5, 3) if batch_first else (5, 4, 3), dtype=dtype, requires_grad=True)
    gx = _leaf(lib, x)
    sort = lengths != tuple(sorted(lengths, reverse=True))
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, list(lengths), batch_first=batch_first,
                                                     enforce_sorted=not sort)
    gpacked = lib.nn.utils.rnn.pack_padded_sequence(gx, list(lengths), batch_first=batch_first,
                                                    enforce_sorted=not sort)
    args, gargs = [packed], [gpacked]
    leaves, gleaves = [x], [gx]
    if given_hx:
        layers = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
        h0 = torch.randn(layers, 4, kwargs.get("proj_size") or 4, dtype=dtype,
                         requires_grad=True)
        c0 = torch.randn(layers, 4, 4, dtype=dtype, requires_grad=True)
        gh0, gc0 = _leaf(lib, h0), _leaf(lib, c0)
        args.append((h0, c0) if cls == "LSTM" else h0)
        gargs.append((gh0, gc0) if cls == "LSTM" else gh0)
        leaves += [h0, c0] if cls == "LSTM" else [h0]
        gleaves += [gh0, gc0] if cls == "LSTM" else [gh0]
    out, hidden = ref(*args)
    gout, ghidden = ours(*gargs)
    assert isinstance(gout, lib.nn.utils.rnn.PackedSequence)
    # torch runs a float32 LSTM's sequences of one length through oneDNN's kernel, as a padded
    # input (test_surface_rnn: close, not bitwise); float32 gradients may differ by a rounding
    # of a matrix product where torch's kernel sums in another order (also unpacked)
    exact = not (cls == "LSTM" and dtype == torch.float32 and len(set(lengths)) == 1)
    exact_grads = dtype == torch.float64
    _same(gout.data, out.data, exact)
    _same(gout.batch_sizes, out.batch_sizes)
    assert gout.data.grad_fn.name() == out.data.grad_fn.name()
    for mine, theirs in zip(_hiddens(ghidden), _hiddens(hidden), strict=True):
        _same(mine, theirs, exact)
        assert mine.grad_fn.name() == theirs.grad_fn.name()
    torch.manual_seed(4)
    weights = [torch.randn(t.shape, dtype=dtype) for t in (out.data, *_hiddens(hidden))]
    loss = sum(((t * w).sum() for t, w in zip((out.data, *_hiddens(hidden)), weights)),
               torch.zeros((), dtype=dtype))
    gloss = sum(((t * lib.tensor(w.numpy())).sum()
                 for t, w in zip((gout.data, *_hiddens(ghidden)), weights)),
                lib.zeros((), dtype=getattr(lib, str(dtype)[6:])))
    loss.backward()
    gloss.backward()
    for mine, theirs in zip(gleaves, leaves):
        _same(mine.grad, theirs.grad, exact_grads)
    for (_, p), (_, gp) in zip(ref.named_parameters(), ours.named_parameters()):
        _same(gp.grad, p.grad, exact_grads)
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=batch_first)
    gpadded, _ = lib.nn.utils.rnn.pad_packed_sequence(gout, batch_first=batch_first)
    _same(gpadded, padded, exact)


def test_packed_layer_dropout_between_layers_draws_torchs_masks(lib):
    torch.manual_seed(6)
    ref = torch.nn.GRU(3, 4, num_layers=3, dropout=0.4)
    ours = _copy_module(lib, ref, "GRU", 3, 4, num_layers=3, dropout=0.4)
    x = torch.randn(4, 2, 3)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, [4, 2])
    gpacked = lib.nn.utils.rnn.pack_padded_sequence(lib.tensor(x.numpy()), [4, 2])
    torch.manual_seed(7)
    out, h = ref(packed)
    lib.manual_seed(7)
    gout, gh = ours(gpacked)
    _same(gout.data, out.data)
    _same(gh, h)


def test_session_packs_runs_and_pads_without_round_trips(gradserve_client):
    """Lengths given as a list are read where they are; batch_sizes is made from data, so the
    layer reads it without asking; the padding copies take their views before writing (a
    session reads no shape once a write is recorded)."""
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    with gradserve_client.session() as s:
        gx = s.tensor(x.numpy(), requires_grad=True)
        parts = [s.tensor(x[:n, i].numpy(), requires_grad=True) for i, n in enumerate((3, 5, 2))]
        lstm = s.nn.LSTM(4, 2, bidirectional=True, dtype=s.float64)
        s.flush()  # the parameters' initialisation
        start = s.round_trips
        seqs = s.nn.utils.rnn.pad_sequence(parts, batch_first=True)
        assert s.round_trips == start
        s.flush()
        start = s.round_trips
        packed = s.nn.utils.rnn.pack_padded_sequence(gx, [3, 5, 2], enforce_sorted=False)
        out, (h, c) = lstm(packed)
        padded, lengths = s.nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        assert s.round_trips == start
        (padded.sum() + h.sum() + seqs.sum()).backward()
        assert lengths.tolist() == [3, 5, 2]  # reordered on the server: a fetch
        assert s.round_trips == start + 2


@pytest.mark.parametrize(("shape", "attrs", "message"), [
    ((3, 2, 2), {"batch_sizes": (1, 2)}, "got 2 at step 1 after 1"),
    ((3, 2, 2), {"batch_sizes": (3,)}, "at most the batch size 2 down to at least 1, got 3"),
    ((3, 2, 2), {"batch_sizes": (2, 0)}, "got 0 at step 1 after 2"),
    ((3, 2, 2), {"batch_sizes": ()}, "expected 1 to 3 batch sizes (one per step), got 0"),
    ((2, 3), {"batch_sizes": (2, 2, 2, 2), "batch_first": True}, "expected 1 to 3 batch sizes"),
])
def test_pack_op_refuses_batch_sizes_that_do_not_fit(lib, shape, attrs, message):
    """The `_pack_padded_sequence` op (which the surface calls with the batch sizes it computed)
    checks them against its input, as every attribute from the wire."""
    with pytest.raises(RuntimeError, match=r"^_pack_padded_sequence: .*" + re.escape(message)):
        lib._pack_padded_sequence(lib.zeros(*shape), **attrs).tolist()
