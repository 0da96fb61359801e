"""float32 LSTM layers as torch 2.13 computes them on the CPU through oneDNN's AVX-512 code.

torch runs a float32 `nn.LSTM` layer by layer and direction by direction through
`aten::mkldnn_rnn_layer` (ATen's mkldnn/RNN.cpp: one bias `b_ih + b_hh`, added in float32,
goes to oneDNN; the bias gradient comes back once, for both). oneDNN's reference RNN driver
then computes, with its JIT GEMM (`jit_avx512_common_gemm_f32`, no packing) and its JIT
elementwise injector (measured against torch 2.13 with oneDNN and ATen uncapped, batch >= 2):

- the gates: the input part (one GEMM over every step) plus the recurrent part (one GEMM per
  step), then the bias; every GEMM element is a float32 FMA chain over k from 0 in k blocks
  (`_k_blocks`), the blocks' sums added in order;
- i, f, o = logistic (oneDNN's exp of -|x|, e / (e + 1), one minus that for positive x); g and
  the cell's squashing tanh by oneDNN's polynomial table (`tanh`);
  c = fma(i, g, f * c_prev), h = o * tanh(c);
- backward, step by step in reverse processing order: the gate gradients from the saved gates
  (`_step_backward`), dh_prev = dG W_hh and dx = dG W_ih as chains over the 4H gate rows, the
  bias gradient a sequential float32 sum (steps in processing order, then the batch), dW_ih one
  chain over every (step, batch) row in iteration order, dW_hh the same except that a
  left-to-right layer chains steps 1.. first and adds h0's part (its first step) after.

With oneDNN's AVX-512 code (`cascade.ONEDNN_AVX512`) that is torch's for a batch of 2 or more,
with and without grad mode (measured: 1 to 28 steps, batches 2 to 100, up to 1000 input
features and 300 hidden). Not for a batch of 1 (oneDNN's gemv adds in orders that depend on
the shape), oneDNN's AVX2 GEMM (the suite's capped torch) or torch's stacks of several layers
without grad mode: `surface.nn_rnn` composes those.
The tanh coefficients are oneDNN's (Apache-2.0, `jit_uni_eltwise_injector`'s
`tanh_polynomial_table`), written out as their float32 bit patterns: a minimax fit that cannot
be recomputed here.
"""

from __future__ import annotations

import numpy as np

from . import gemm, limits
from .distributions import fma32
from .gelu_erf import _exp

_F32 = np.float32
_SIGN = np.uint32(0x80000000)
_ONE = _F32(1)


def _bits(*words: int) -> np.ndarray:
    return np.array(words, np.uint32).view(_F32)


# --- activations ------------------------------------------------------------------------------
# tanh: 32 intervals of |x| (exponent and one mantissa bit past 0x39800000), a degree-6
# polynomial in |x| minus the interval's start on each; rows are degrees 0 to 6.
_TANH_POLY = np.stack([_bits(*row) for row in (
    (0x00000000, 0x39bfffff, 0x39ffffff, 0x3a3ffffe, 0x3a7ffffb, 0x3abffff7, 0x3affffeb,
     0x3b3fffdc, 0x3b7fffab, 0x3bbfff70, 0x3bfffeab, 0x3c3ffdc0, 0x3c7ffaab, 0x3cbff701,
     0x3cffeaad, 0x3d3fdc08, 0x3d7faacd, 0x3dbf7081, 0x3dfeacc9, 0x3e3dc7fd, 0x3e7acbf5,
     0x3eb77a9f, 0x3eec9a9f, 0x3f22991f, 0x3f42f7d6, 0x3f67b7cc, 0x3f76ca83, 0x3f7ebbe9,
     0x3f7fd40c, 0x3f7fff32, 0x3f7ffffc, 0x3f800000),
    (0x3f800000, 0x3f800018, 0x3f7fffe8, 0x3f7fffda, 0x3f7fffdc, 0x3f7fffdc, 0x3f7fffac,
     0x3f7fff70, 0x3f7ffeec, 0x3f7ffdc0, 0x3f7ffbed, 0x3f7ff704, 0x3f7feff5, 0x3f7fdbca,
     0x3f7fbfff, 0x3f7f7041, 0x3f7f009b, 0x3f7dc36c, 0x3f7c0aa8, 0x3f7734b8, 0x3f70a4de,
     0x3f5f1fd8, 0x3f495493, 0x3f18b9ec, 0x3ed706cb, 0x3e390b06, 0x3d90b11f, 0x3c21a053,
     0x3aaf7fdb, 0x37ccc1a3, 0x355c6733, 0x00000000),
    (0x00000000, 0xbe4e0ff1, 0x3d25b1b1, 0x3d6b6dab, 0x3c9fb1d5, 0xbabff06f, 0x3c07b3f6,
     0xbb3fc1bc, 0x3a9f5921, 0xbbbf06f2, 0xbbb0f402, 0xbc47db9e, 0xbc73d5e7, 0xbca25bda,
     0xbcfca780, 0xbd40e07c, 0xbd7dab03, 0xbdbe4a0f, 0xbdfb14a5, 0xbe36cc8d, 0xbe6bd102,
     0xbe9fe7c5, 0xbeba0f10, 0xbec206a8, 0xbea3c388, 0xbe277d62, 0xbd8b7960, 0xbc209f49,
     0xbaad44ca, 0xb7c6eeac, 0xb663aa41, 0x00000000),
    (0x00000000, 0x45b3ae96, 0xc414eb20, 0xc450e02e, 0xc3152b4e, 0xbead2f56, 0xc2162e02,
     0xbeb4bd5a, 0xc11a59a4, 0xbed2f507, 0xc020d32c, 0x3dd0f506, 0xbf2a75e2, 0xbff950e3,
     0xbed47334, 0xbe809b8c, 0xbeb64532, 0xbe961a5b, 0xbe9b63ac, 0xbea0d4b2, 0xbe828a77,
     0xbe378612, 0xbdc20908, 0x3d2d3957, 0x3dd46e89, 0x3db3f629, 0x3d2c5e7b, 0x3bd20403,
     0x3a59dfae, 0x3770af45, 0x372cc014, 0x00000000),
    (0x00000000, 0xcc981a1b, 0x4a7edd3d, 0x4ab1007c, 0x48fedd9c, 0x41a557b5, 0x477ee32a,
     0x422557f5, 0x45ff3ce4, 0x42a55641, 0x446e0867, 0xc33dc19a, 0x42915214, 0x43af4fad,
     0x4110fe88, 0xc1099b75, 0x3fc8a8dc, 0xbfbeaef5, 0xbe365aad, 0x3f4d9652, 0x3ddfa08f,
     0x3e34e9b8, 0x3e2d07a6, 0x3dc63567, 0x3cdaeb78, 0xbcd17537, 0xbc92829c, 0xbb43ab99,
     0xb9b471dd, 0xb6baad5a, 0xb78bafc7, 0x00000000),
    (0x00000000, 0x52f688d5, 0xd0505c72, 0xd08f98e3, 0xce505cc9, 0xc7162b8a, 0xcc5061d6,
     0xc7162bdf, 0xca50b37f, 0xc7162a3a, 0xc8422086, 0x471a714e, 0xc5ece1f1, 0xc70e3d90,
     0xc3eba94a, 0x43e0c424, 0xc21f4552, 0x42217cc8, 0x405e7dc4, 0xc10dd401, 0x3e96b602,
     0xbd1a6d2f, 0xbd393883, 0xbd674682, 0xbd310016, 0xb961e269, 0x3ba32495, 0x3a7680d5,
     0x38b3173c, 0x35a9deea, 0x375c3f2a, 0x00000000),
    (0x00000000, 0xd8995ed1, 0x558285ea, 0x55b2cd69, 0x53028625, 0x4bc9991f, 0x5082898a,
     0x4b4999b3, 0x4e02c07c, 0x4ac99764, 0x4b72c822, 0xca40c0e1, 0x489413e4, 0x49b12224,
     0x46134c4e, 0xc60c2d57, 0x43c83910, 0xc3c872d1, 0xc186bc9e, 0x42325bc3, 0xbf2ffa4a,
     0x3d9a203c, 0xbc545a43, 0xbae08fee, 0x3c80225d, 0x3b1fd1df, 0xba36b9d1, 0xb91de544,
     0xb71f100f, 0xb408e2ed, 0xb685fec8, 0x00000000))])
_TANH_INDEX_BIAS = np.int32(0x39800000)
_TANH_MASK = np.uint32(0xFFC00000)  # sign, exponent and the first mantissa bit
_TANH_LINEAR = _bits(0x39DDB3D7)[0]  # below it tanh(x) is x
_TANH_SATURATE = _bits(0x41102CB3)[0]  # from it tanh(x) is 1 (NaN too)


def tanh(x: np.ndarray) -> np.ndarray:
    """tanh of float32 x as oneDNN's AVX-512 `eltwise_tanh` computes it.

    Args:
        x: a float32 array.

    Returns:
        A new float32 array of x's shape.
    """
    a = np.abs(x)
    ua = a.view(np.uint32)
    idx = (((a.view(np.int32) - _TANH_INDEX_BIAS).view(np.uint32) & _TANH_MASK) >> 22) & 31
    coef = _TANH_POLY[:, idx]
    r = a - (ua & _TANH_MASK).view(_F32)
    p = coef[6]
    for deg in range(5, -1, -1):
        p = fma32(p, r, coef[deg])
    p = np.where(a < _TANH_SATURATE, p, _ONE)
    p = np.where(a < _TANH_LINEAR, a, p)
    return (p.view(np.uint32) ^ (x.view(np.uint32) & _SIGN)).view(_F32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function of float32 x as oneDNN's AVX-512 `eltwise_logistic` computes it:
    e = exp(-|x|), e / (e + 1), and one minus that for positive x."""
    negative = (x.view(np.uint32) & _SIGN) != 0
    e = _exp((x.view(np.uint32) | _SIGN).view(_F32), fma32)
    y = e / (e + _ONE)
    return np.where(negative, y, _ONE - y)


# --- GEMM ---------------------------------------------------------------------------------------
_KC = 384  # jit_avx512_common_gemm_f32's k block

# Interrupt checks (`limits.tick`: the deadline, cancellation, run-slot yields; each counted as
# an op of a stateless call's --max-call-ops) in the layer's Python loops, about one per small
# op's time (~50 us). Their number follows the sequence's length and the GEMMs' k, not the
# tensors' sizes: a layer of 2**23 steps of one unit (an expanded input, within every limit)
# is ~600 us a step here, and without a check an 80-byte batch ran 13 s past a 2 s deadline
# for 20,000 steps (~80 min for 2**23). Larger tensors' steps are counted by the op's declared
# work (ops_rnn._bound).
_CHAIN_STEPS_PER_CHECK = 16  # a GEMM chain's step on a small result: ~3-5 us
_FORWARD_CHECKS = 8  # a forward step's activations and FMAs besides its GEMM: ~300-600 us
_BACKWARD_CHECKS = 4  # a backward step's: ~200-350 us
_BIAS_ROWS_PER_CHECK = 32  # the bias gradient's sequential sum: ~1-2 us a row


def _ticks(n: int) -> None:
    for _ in range(n):
        limits.tick()


def _k_blocks(k: int) -> list[tuple[int, int]]:
    """The k ranges the GEMM chains separately, in order: blocks of 384 while two or more
    remain, a remainder between 384 and 768 split in two halves (the first the larger)."""
    blocks, start = [], 0
    while start < k:
        rest = k - start
        size = _KC if rest >= 2 * _KC else (rest + 1) // 2 if rest > _KC else rest
        blocks.append((start, start + size))
        start += size
    return blocks


def _gemm(a: np.ndarray, b: np.ndarray, acc: np.ndarray | None = None) -> np.ndarray:
    """float32 a @ b as oneDNN's GEMM: each k block an FMA chain from 0, the blocks added in
    order, after `acc` when given."""
    out = acc
    with np.errstate(over="ignore", invalid="ignore"):
        tiny = gemm._may_be_tiny(a, b)
        for lo, hi in _k_blocks(a.shape[1]):
            # each block one chain from 0, continued a few steps at a time between checks
            part = None
            for start in range(lo, hi, _CHAIN_STEPS_PER_CHECK):
                limits.tick()
                end = min(hi, start + _CHAIN_STEPS_PER_CHECK)
                part = gemm._chain(a[:, start:end].astype(np.float64),
                                   b[start:end].astype(np.float64), part, tiny)
            out = part if out is None else out + part
    if out is None:  # k == 0
        return np.zeros((a.shape[0], b.shape[1]), _F32)
    return out


# --- the layer ------------------------------------------------------------------------------------


def _steps(seq: int, reverse: bool) -> range:
    return range(seq - 1, -1, -1) if reverse else range(seq)


def forward(x: np.ndarray, h0: np.ndarray, c0: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray,
            bias: np.ndarray, reverse: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                      np.ndarray]:
    """One LSTM layer-direction, oneDNN's rounding.

    Args:
        x: (seq, batch, input) float32 input.
        h0, c0: (batch, hidden) float32 initial states.
        w_ih: (4 hidden, input), w_hh: (4 hidden, hidden) float32 weights (gates i, f, g, o).
        bias: (4 hidden,) float32, b_ih + b_hh.
        reverse: run the steps from last to first.

    Returns:
        (output (seq, batch, hidden), h_n, c_n, workspace (seq, batch, 5 hidden): each step's
        activated gates i, f, g, o and its cell state c, for `backward`).
    """
    seq, batch, _ = x.shape
    hidden = h0.shape[1]
    projected = _gemm(x.reshape(seq * batch, -1), w_ih.T).reshape(seq, batch, 4 * hidden)
    w_hh_t = w_hh.T
    out = np.empty((seq, batch, hidden), _F32)
    work = np.empty((seq, batch, 5 * hidden), _F32)
    h, c = h0, c0
    with np.errstate(over="ignore", invalid="ignore"):
        for t in _steps(seq, reverse):
            _ticks(_FORWARD_CHECKS)
            gates = _gemm(h, w_hh_t, projected[t]) + bias
            i, f, g, o = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
            i, f, g, o = sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)
            c = fma32(i, g, c * f)
            h = o * tanh(c)
            out[t] = h
            work[t] = np.concatenate([i, f, g, o, c], 1)
    return out, h, c, work


def _step_backward(work: np.ndarray, c_prev: np.ndarray, dh: np.ndarray, dc: np.ndarray,
                   hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """One step's gate gradients (batch, 4 hidden) and dc_prev from its saved gates, the
    incoming dh (output's gradient plus the later step's) and dc."""
    i, f, g, o, c = (work[:, k * hidden:(k + 1) * hidden] for k in range(5))
    tc = tanh(c)
    dc = dc + fma32(-tc, tc, _ONE) * dh * o
    d_o = fma32(-o, o, o) * dh * tc
    d_i = fma32(-i, i, i) * dc * g
    d_f = fma32(-f, f, f) * dc * c_prev
    d_g = fma32(-g, g, _ONE) * (i * dc)
    return np.concatenate([d_i, d_f, d_g, d_o], 1), dc * f


def backward(grad_out: np.ndarray, grad_hy: np.ndarray, grad_cy: np.ndarray, x: np.ndarray,
             h0: np.ndarray, c0: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray,
             out: np.ndarray, work: np.ndarray, reverse: bool
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The gradients of `forward`'s outputs' sum against the given gradients, oneDNN's rounding.

    Args:
        grad_out, grad_hy, grad_cy: float32 gradients of the output, h_n and c_n (zeros where
            not given).
        x, h0, c0, w_ih, w_hh: the forward's inputs.
        out, work: the forward's output and workspace.
        reverse: the forward's direction.

    Returns:
        (dx, dw_ih, dw_hh, dbias, dh0, dc0).
    """
    seq, batch, features = x.shape
    hidden = h0.shape[1]
    order = list(_steps(seq, reverse))  # iteration order; backward runs it from the end
    d_gates = np.empty((seq, batch, 4 * hidden), _F32)
    h_prev = np.empty((seq, batch, hidden), _F32)
    dh, dc = grad_hy, grad_cy
    dbias = np.zeros(4 * hidden, _F32)
    with np.errstate(over="ignore", invalid="ignore"):
        for n in range(seq - 1, -1, -1):
            _ticks(_BACKWARD_CHECKS)
            t = order[n]
            first = n == 0
            c_prev = c0 if first else work[order[n - 1], :, 4 * hidden:]
            h_prev[t] = h0 if first else out[order[n - 1]]
            dg, dc = _step_backward(work[t], c_prev, grad_out[t] + dh, dc, hidden)
            d_gates[t] = dg
            dh = _gemm(dg, w_hh)
        rows_added = 0
        for t in reversed(order):  # processing order, then the batch
            for row in d_gates[t]:
                if not rows_added % _BIAS_ROWS_PER_CHECK:
                    limits.tick()
                rows_added += 1
                dbias += row
        dx = _gemm(d_gates.reshape(seq * batch, -1), w_ih).reshape(seq, batch, features)
        rows = np.array(order)
        dg_rows = d_gates[rows].reshape(seq * batch, -1).T
        dw_ih = _gemm(dg_rows, x[rows].reshape(seq * batch, -1))
        hp_rows = h_prev[rows].reshape(seq * batch, -1)
        if reverse or seq == 1:
            dw_hh = _gemm(dg_rows, hp_rows)
        else:  # h0's part (the first step's) after the chain over steps 1..
            dw_hh = _gemm(dg_rows[:, batch:], hp_rows[batch:])
            dw_hh = dw_hh + _gemm(dg_rows[:, :batch], hp_rows[:batch])
    return dx, dw_ih, dw_hh, dbias, dh, dc
