"""Layouts the client infers (`gradserve.surface.meta_layout`, `Meta.contiguous`), against torch.

`nn.functional.linear` of an input with three or more dims takes torch's graph (flatten, one
addmm, view back: ViewBackward0) only for a contiguous input; matmul then add rounds
differently from 256 in-features on. Through a session the client knows the layout of what it
made from data or the server described, and now of op results the rules know: a transformer-
or makemore-style stack (embedding or layer norm, linear layers, activations, `contiguous()`
after a transpose) computes torch's values and names torch's nodes without a round trip per
layer, and `is_contiguous()`/`stride()` of such results answer without one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gradserve.client.errors import MetaMismatchError
from gradserve.surface import meta_layout
from tests.reference import HAVE_TORCH, MISSING_REASON, torch

pytestmark = pytest.mark.skipif(not HAVE_TORCH, reason=MISSING_REASON)


def _same(got: Any, want: Any) -> None:
    g, w = np.asarray(got.detach().numpy()), want.detach().numpy()
    assert g.dtype == w.dtype and g.shape == w.shape and g.tobytes() == w.tobytes()


def _block(t: Any, tokens: np.ndarray, width: int, seed: int = 0) -> dict[str, Any]:
    """A small transformer-like block: embedding, layer norm, attention-shaped transposes,
    `contiguous().view`, linear layers of `width` in-features on 3-D inputs, tanh, a loss."""
    rng = np.random.default_rng(seed)

    def param(*shape: int) -> Any:
        return t.tensor((rng.standard_normal(shape) * 0.05).astype(np.float32),
                        requires_grad=True)

    F = t.nn.functional
    emb, ln_w, ln_b = param(50, width), param(width), param(width)
    w1, b1, w2, b2 = param(width, width), param(width), param(7, width), param(7)
    idx = t.tensor(tokens)
    B, T = tokens.shape
    x = F.embedding(idx, emb)                                      # (B, T, C)
    h = F.layer_norm(x, (width,), ln_w, ln_b)
    q = h.view(B, T, 4, width // 4).transpose(1, 2)                 # (B, 4, T, C/4): a view
    y = q.transpose(1, 2).contiguous().view(B, T, width)            # contiguous again
    z = F.linear(y, w1, b1).tanh() + x
    logits = F.linear(z, w2, b2)
    loss = F.cross_entropy(logits.view(-1, 7), idx.view(-1) % 7)
    loss.backward()
    return {"logits": logits, "loss": loss, "z": z, "grads": [emb.grad, w1.grad, b1.grad,
                                                              w2.grad, ln_w.grad]}


@pytest.mark.parametrize("width", [8, 256, 384])
def test_linear_on_3d_inputs_takes_torchs_graph_through_a_session(gradserve_client, width):
    tokens = np.random.default_rng(1).integers(0, 50, size=(3, 5))
    want = _block(torch, tokens, width)
    with gradserve_client.session() as s:
        got = _block(s, tokens, width)
        for key in ("logits", "loss", "z"):
            _same(got[key], want[key])
        for g, w in zip(got["grads"], want["grads"]):
            _same(g, w)
        assert got["logits"].grad_fn.name() == want["logits"].grad_fn.name() == "ViewBackward0"
        assert got["z"].grad_fn.name() == want["z"].grad_fn.name()


def test_inferred_layouts_answer_without_a_round_trip(gradserve_client):
    with gradserve_client.session() as s:
        a = s.tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 4), requires_grad=True)
        w = s.tensor(np.ones((5, 4), dtype=np.float32))
        b = s.tensor(np.ones(5, dtype=np.float32))
        s.flush()
        before = s.round_trips
        out = s.nn.functional.linear((a * 2).relu(), w, b)        # flatten, addmm, view back
        made = [a * 2, (a * 2).sum(-1), (a @ a.transpose(1, 2)).softmax(-1), out,
                s.cat([a, a], 1).reshape(4, 3, 4), a.contiguous()]
        assert [m.is_contiguous() for m in made] == [True] * len(made)
        assert [m.stride() for m in made] == [(12, 4, 1), (3, 1), (9, 3, 1), (15, 5, 1),
                                              (12, 4, 1), (12, 4, 1)]
        assert out.grad_fn.name() == "ViewBackward0"
        assert s.round_trips == before
        # a transpose's layout is the server's to say: one round trip, torch's answer
        ta = torch.arange(24.0).reshape(2, 3, 4)
        assert a.transpose(1, 2).is_contiguous() is ta.transpose(1, 2).is_contiguous() is False
        assert s.round_trips == before + 1
        assert a.transpose(1, 2).contiguous().stride() == ta.transpose(1, 2).contiguous().stride()


def test_a_wrong_layout_rule_is_caught_by_verify_meta(gradserve_client, monkeypatch):
    # the check that keeps the rules honest in every session of the suite (conftest turns
    # verify_meta on): a rule claiming a transpose contiguous is refused when described
    monkeypatch.setattr(meta_layout, "PRESERVED", meta_layout.PRESERVED | {"transpose"})
    with gradserve_client.session(verify_meta=True) as s:
        a = s.tensor(np.zeros((2, 3), dtype=np.float32))
        t = a.transpose(0, 1)
        with pytest.raises(MetaMismatchError, match="contiguous=True.*contiguous=False"):
            s.flush()
            t.stride()


def _recurrent(t: Any, width: int) -> tuple[Any, Any]:
    """makemore's RNN decoding: a state expanded from a parameter, a cell per step, the hidden
    states stacked (a new contiguous tensor whatever the inputs' layouts) into a linear head."""
    rng = np.random.default_rng(2)

    def param(*shape: int) -> Any:
        return t.tensor((rng.standard_normal(shape) * 0.05).astype(np.float32),
                        requires_grad=True)

    start, cell, head, bias = param(1, width), param(width, width), param(5, width), param(5)
    x = t.tensor(rng.standard_normal((4, 3, width)).astype(np.float32))
    h, hiddens = start.expand((4, -1)), []
    for i in range(3):
        h = (x.select(1, i) + h @ cell.t()).tanh()
        hiddens.append(h)
    logits = t.nn.functional.linear(t.stack(hiddens, 1), head, bias)
    logits.sum().backward()
    return logits, cell.grad


@pytest.mark.parametrize("width", [16, 256])
def test_stacked_states_into_a_linear_head_as_torch(gradserve_client, width):
    want = _recurrent(torch, width)
    with gradserve_client.session() as s:
        got = _recurrent(s, width)
        _same(got[0], want[0])
        _same(got[1], want[1])
        assert got[0].grad_fn.name() == want[0].grad_fn.name() == "ViewBackward0"


def _random_index(rng: np.random.Generator, shape: tuple[int, ...]) -> Any:
    def bound() -> Any:
        return None if rng.random() < 0.4 else int(rng.integers(-6, 7))

    items: list[Any] = []
    for _ in range(int(rng.integers(0, len(shape) + 2))):
        r = rng.random()
        if r < 0.3:
            items.append(int(rng.integers(-5, 5)))
        elif r < 0.75:
            items.append(slice(bound(), bound(), [None, 1, 2, 3][int(rng.integers(0, 4))]))
        elif r < 0.9:
            items.append(None)
        else:
            items.append(Ellipsis)
    return tuple(items) if len(items) != 1 or rng.random() < 0.5 else items[0]


def test_basic_indexing_results_are_known_without_a_round_trip(gradserve_client):
    # shape, layout and requires_grad of x[ints, slices, None, ...] as torch's (the server's
    # descriptions are compared with them too: verify_meta); an index torch refuses is the
    # server's to report, as before
    rng = np.random.default_rng(7)
    with gradserve_client.session(verify_meta=True) as s:
        known = valid = 0
        for _ in range(300):
            shape = tuple(int(d) for d in rng.integers(0, 5, size=int(rng.integers(0, 4))))
            data = rng.standard_normal(shape).astype(np.float32)
            index = _random_index(rng, shape)
            want_x = torch.tensor(data, requires_grad=True) * 1
            try:
                want = want_x[index]
            except IndexError:
                with pytest.raises(IndexError):
                    _ = (s.tensor(data, requires_grad=True) * 1)[index].shape
                continue
            valid += 1
            x = s.tensor(data, requires_grad=True) * 1
            s.flush()
            before = s.round_trips
            got = x[index]
            facts = (tuple(got.shape), got.requires_grad)
            known += s.round_trips == before
            # (a layout not known contiguous is the server's to tell: one round trip)
            assert facts + (got.is_contiguous(),) == (
                tuple(want.shape), want.requires_grad, want.is_contiguous()), index
            assert got.grad_fn.name() == want.grad_fn.name()
        assert known == valid > 150


def test_the_last_step_of_a_sequence_into_a_linear_head(gradserve_client):
    # an RNN classifier's out[:, -1, :] (a view, not contiguous) and a batch's x[0] (contiguous)
    rng = np.random.default_rng(3)
    seq = rng.standard_normal((2, 4, 3, 256)).astype(np.float32)
    w = (rng.standard_normal((6, 256)) * 0.05).astype(np.float32)

    def run(t: Any) -> tuple[Any, Any]:
        x, weight, bias = t.tensor(seq), t.tensor(w, requires_grad=True), t.zeros(6)
        return (t.nn.functional.linear(x[0], weight, bias),
                t.nn.functional.linear(x[:, :, -1, :], weight, bias))

    want = run(torch)
    with gradserve_client.session() as s:
        before = s.round_trips
        got = run(s)
        assert [g.grad_fn.name() for g in got] == [w_.grad_fn.name() for w_ in want]
        assert s.round_trips == before  # the layouts decided the graphs without asking
        for g, w_ in zip(got, want):
            _same(g, w_)


@pytest.mark.parametrize("join", ["cat", "stack"])
def test_joining_transposes_is_contiguous_as_torch(gradserve_lib, join):
    # torch's cat/stack of up to 3-D inputs is row-major whatever their layouts (the engine's
    # numpy join kept the transposes' order: a view of it then failed where torch's succeeds)
    def run(t: Any) -> Any:
        a = t.tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 4)).transpose(0, 2)
        out = getattr(t, join)([a, a], 1)
        return out, out.is_contiguous(), out.stride(), out.view(-1)

    got, want = run(gradserve_lib), run(torch)
    assert got[1:3] == want[1:3]
    _same(got[3], want[3])
