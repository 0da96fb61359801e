"""Layer normalisation as one op, rounded as torch's CPU kernels round it.

torch's `native_layer_norm` (aten/src/ATen/native/cpu/layer_norm_kernel.cpp) does not compute a
row's mean and variance as `mean(x)` and `mean((x - mean)**2)`: `RowwiseMoments`
(native/cpu/moments_utils.h) runs Welford's algorithm in SIMD lanes, and the order of its
roundings is what this module redoes, with numpy arrays over all rows at once. Measured against
torch 2.13 (AVX2, 8 float32 lanes), by probing, not by reading its binary:

- a row of N elements is read as n = N // L vectors of L lanes (L = 8 for float32: the AVX2
  build, which torch runs on AVX512 CPUs too, `cascade.REDUCE_VECTOR_BYTES`); the vectors go
  in chunks of 16, and within a chunk each lane runs Welford's update
  with fused multiply-adds: `m1 = fma(x - m1, 1/(j+1), m1)`, `m2 = fma(d, x - m1, m2)` (d the
  difference before the update);
- the chunks' (count, mean, m2) merge into a binary cascade (chunk i into slot 0, then carried up
  while i + 1 is even), slots 1.. into slot 0 at the end; one merge is
  `m1 + c * d` and `fma(d * m0, c * d, m2 + m2_add)` with c = m0_add / (m0 + m0_add);
- the N % L tail runs scalar Welford without fusing (`m1 += d / k`, `m2 += d * (x - m1)`), and
  the L lanes then merge into it one by one, `m1 = fma(c, d, m1)`,
  `m2 += fma(d * d * c, m0, m2_add)`;
- var = m2 / N, rstd = 1 / sqrt(var + eps), out = fma((x - mean) * rstd, weight, bias) (weight
  1 and bias 0 when absent; with a bias and no weight `fma(x - mean, rstd, bias)`);
- backward: each row's sums of dy * x * weight and dy * weight in lanes (`_lane_sum`), then
  `dx = fma(b, x, rstd * dy * weight) + c` with b = fma(db, mean, -ds) * rstd**3 / N and
  c = fma(-b, mean, -(db * rstd / N)); dweight and dbias summed per torch thread
  (`_param_sums`).

float64 follows the same order (4 lanes; lane sums in lane order, not float's shuffle tree) with
its fused multiply-adds emulated by error-free transformations (`_fma64`), exact but for rare
ties.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradserve.surface import grad_mode
from gradserve.surface.messages import TYPE_WORDS

from . import cascade, errors, limits
from .distributions import fma32
from .dtypes import DType
from .namespaces import NP
from .registry import AttrSpec, defop, numel_of

_CHUNK = 16  # moments_utils.h kChunkSize: vectors per Welford chunk
#: Steps of a kernel's sequential loops (a thread's row, a chunk's merge: a few numpy calls on
#: small arrays, ~10-70 us each) between interrupt checks, each counted as an op of a stateless
#: call's --max-call-ops. Their number follows the input's length, not its size: without a
#: check, a batch norm of (2**25, 2) (one chunk step per 2 rows) ran ~400 s in one op, a layer
#: norm of one row of 2**24 elements 9 s, and a deadline ended neither.
_STEPS_PER_CHECK = 4


_SPLIT = 134217729.0  # 2**27 + 1: Dekker's split of a float64 into two 26-bit halves


def _fma64(a: Any, b: Any, c: Any) -> Any:
    """a * b + c for float64 with the product's rounding error kept (Dekker's exact product,
    then Knuth's exact sum with c): torch's fmadd except where the last addition of the small
    parts rounds across a tie (rare), or where the split overflows (|a| or |b| above 2**996:
    the plain `a * b + c` then)."""
    a, b, c = np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(c, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        p = a * b
        ta, tb = a * _SPLIT, b * _SPLIT
        ah = ta - (ta - a)
        bh = tb - (tb - b)
        al, bl = a - ah, b - bh
        e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
        s = p + c
        z = s - p
        t = (p - (s - z)) + (c - z)
        out = s + (t + e)
    bad = ~np.isfinite(out)
    if bad.any():
        out = np.where(bad, p + c, out)
    return out


def _fma(a: Any, b: Any, c: Any, dt: Any) -> Any:
    """a * b + c rounded once as torch's fmadd rounds it: exactly for float32, for float64 up
    to rare ties (`_fma64`)."""
    if dt is np.float32:
        return fma32(a, b, c)
    return _fma64(a, b, c)


def _merge_vec(m0_add: int, m1_add: Any, m2_add: Any, m0: int, m1: Any, m2: Any,
               dt: Any) -> tuple[int, Any, Any]:
    """One cascade merge of lane-wise moments (count m0_add) into (m0, m1, m2)."""
    n = m0 + m0_add
    c = dt(0) if n == 0 else dt(m0_add) / dt(n)
    delta = m1_add - m1
    cd = c * delta
    return n, m1 + cd, _fma(delta * dt(m0), cd, m2 + m2_add, dt)


def row_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's (mean, biased variance) of a C-contiguous (M, N) float array, as torch's
    RowwiseMoments computes them (see the module docstring)."""
    dt = x.dtype.type
    rows, size = x.shape
    lanes = cascade.REDUCE_VECTOR_BYTES // x.dtype.itemsize
    n = size // lanes
    chunks = -(-n // _CHUNK)
    vecs = x[:, :n * lanes].reshape(rows, n, lanes)
    # Welford within each chunk: every chunk at once, step j of each in turn
    m1 = np.zeros((rows, chunks, lanes), dt)
    m2 = np.zeros((rows, chunks, lanes), dt)
    for j in range(min(_CHUNK, n)):
        xj = vecs[:, j::_CHUNK]  # step j of every chunk that has one
        k = xj.shape[1]
        a1, a2 = m1[:, :k], m2[:, :k]
        delta = xj - a1
        a1[...] = _fma(delta, dt(1) / dt(j + 1), a1, dt)
        a2[...] = _fma(delta, xj - a1, a2, dt)
    # the chunks into the cascade of partial moments
    depth = math.ceil(math.log2(chunks)) if chunks > 1 else 0
    zero = np.zeros((rows, lanes), dt)
    s0 = [0] * max(depth, 1)
    s1 = [zero] * max(depth, 1)
    s2 = [zero] * max(depth, 1)
    for i in range(chunks):
        limits.tick()  # a merge or more per chunk: ~70 us
        s0[0], s1[0], s2[0] = _merge_vec(min(_CHUNK, n - i * _CHUNK), m1[:, i], m2[:, i],
                                         s0[0], s1[0], s2[0], dt)
        mask, j = i + 1, 1
        while j < depth and not mask & 1:
            s0[j], s1[j], s2[j] = _merge_vec(s0[j - 1], s1[j - 1], s2[j - 1],
                                             s0[j], s1[j], s2[j], dt)
            s0[j - 1], s1[j - 1], s2[j - 1] = 0, zero, zero
            mask >>= 1
            j += 1
    for j in range(1, depth):
        s0[0], s1[0], s2[0] = _merge_vec(s0[j], s1[j], s2[j], s0[0], s1[0], s2[0], dt)
    # the scalar tail, then the lanes merged into it one by one
    count = 0
    mean = np.zeros(rows, dt)
    m2s = np.zeros(rows, dt)
    for i in range(n * lanes, size):
        xi = x[:, i]
        delta = xi - mean
        count += 1
        mean = mean + delta / dt(count)
        m2s = m2s + delta * (xi - mean)
    for lane in range(lanes):
        total = count + n
        c = dt(0) if total == 0 else dt(n) / dt(total)
        delta = s1[0][:, lane] - mean
        mean = _fma(c, delta, mean, dt)
        m2s = m2s + _fma(delta * delta * c, dt(count), s2[0][:, lane], dt)
        count = total
    with np.errstate(invalid="ignore", divide="ignore"):
        return mean, m2s / dt(size)


def _rows_of(x: np.ndarray, normalized: Sequence[int]) -> np.ndarray:
    """`x` as C-contiguous (rows, normalized size)."""
    size = math.prod(normalized)
    return np.ascontiguousarray(x).reshape(-1, size) if size else x.reshape(-1, 0)


def _layer_norm(x: Any, w: Any = None, b: Any = None, normalized_shape: Sequence[int] = (),
                eps: float = 1e-5) -> Any:
    dt = x.dtype.type
    rows = _rows_of(x, normalized_shape)
    if not rows.size:
        return np.zeros(x.shape, x.dtype)
    mean, var = row_moments(rows)
    rstd = dt(1) / np.sqrt(var + dt(eps))
    centred = rows - mean[:, None]
    beta = np.zeros(1, dt) if b is None else np.asarray(b, dt).reshape(-1)
    if w is None and b is not None:  # torch's loop without a weight: the product by 1 folded
        return _fma(centred, rstd[:, None], beta, dt).reshape(x.shape)
    gamma = np.ones(1, dt) if w is None else np.asarray(w, dt).reshape(-1)
    return _fma(centred * rstd[:, None], gamma, beta, dt).reshape(x.shape)


def _type_word(d: DType) -> str:
    return TYPE_WORDS.get(d.name, d.name)


def _shape_text(shape: Sequence[int]) -> str:
    return f"[{', '.join(map(str, shape))}]"


def _kernel_dtypes(kernel: str, x: Any, w: Any, b: Any) -> tuple[DType | None, DType]:
    """A norm kernel's dtype checks (torch's texts): a floating input, and weight and bias of
    its dtype; the result has the input's."""
    if x.dtype.category != 2:
        raise errors.NotImplementedFunctionError(
            f'"{kernel}" not implemented for \'{_type_word(x.dtype)}\'')
    for t in (w, b):
        if t is not None and t.dtype is not x.dtype:
            raise errors.InvalidArgumentError(
                f"mixed dtype (CPU): expect parameter to have scalar type of "
                f"{_type_word(x.dtype)}")
    return None, x.dtype


def _ln_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    """torch's checks (layer_norm.cpp `_check_layer_norm_inputs`), with its messages."""
    x, w, b = args[0], args[1], args[2]
    normalized = [int(n) for n in attrs["normalized_shape"]]
    k = len(normalized)
    if k == 0:
        raise errors.InvalidArgumentError(
            "Expected normalized_shape to be at least 1-dimensional, i.e., containing at least "
            "one element, but got normalized_shape = []")
    for name, t in (("weight", w), ("bias", b)):
        if t is not None and list(t.shape) != normalized:
            raise errors.InvalidArgumentError(
                f"Expected {name} to be of same shape as normalized_shape, but got {name} of "
                f"shape {_shape_text(t.shape)} and normalized_shape = {_shape_text(normalized)}")
    shape = list(x.shape)
    if len(shape) < k or shape[len(shape) - k:] != normalized:
        raise errors.InvalidArgumentError(
            f"Given normalized_shape={_shape_text(normalized)}, expected input with shape "
            f"[*, {', '.join(map(str, normalized))}], but got input of size{_shape_text(shape)}")
    return _kernel_dtypes("LayerNormKernelImpl", x, w, b)


def _ln_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: DType) -> limits.Bound:
    """The result, and scratch: the centred rows, the fma's float64 copies (three per element),
    and per-row moments in lanes (a few arrays of (rows, chunks, lanes))."""
    x = args[0]
    n = numel_of(x)
    item = out_dtype.np.itemsize
    return limits.with_scratch(limits.shape_bound(tuple(x.shape), item), n * (2 * item + 24))


# --- backward --------------------------------------------------------------------------------
# torch's NativeLayerNormBackward0 runs its backward kernel (`_backward`, float32 bit for bit)
# once per backward pass; with create_graph the rules compose the same formula from engine ops,
# so that it can be differentiated again (torch's layer_norm_double_backward is a composition
# too).


def _normalized(ns: Any, x: Any, dims: tuple[int, ...], eps: float) -> tuple[Any, Any]:
    """(x - mean) * rstd and rstd, composed of `ns` ops."""
    centred = x - ns.mean(x, dim=dims, keepdim=True)
    rstd = ns.rsqrt(ns.mean(centred * centred, dim=dims, keepdim=True) + eps)
    return centred * rstd, rstd


def _dims(normalized_shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(range(-len(normalized_shape), 0))


def _ln_dx(ns: Any, g: Any, out: Any, x: Any, w: Any, b: Any, normalized_shape: Sequence[int],
           eps: float) -> Any:
    if ns is NP:
        return _backward(g, x, w, normalized_shape, eps, dx=True)[0]
    dims = _dims(normalized_shape)
    xhat, rstd = _normalized(ns, x, dims, eps)
    gw = g if w is None else g * w
    return rstd * (gw - ns.mean(gw, dim=dims, keepdim=True)
                   - xhat * ns.mean(gw * xhat, dim=dims, keepdim=True))


def _ln_dw(ns: Any, g: Any, out: Any, x: Any, w: Any, b: Any, normalized_shape: Sequence[int],
           eps: float) -> Any:
    if ns is NP:
        return _backward(g, x, w, normalized_shape, eps, dgamma=True)[1]
    return g * _normalized(ns, x, _dims(normalized_shape), eps)[0]


def _ln_db(ns: Any, g: Any, out: Any, x: Any, w: Any, b: Any, normalized_shape: Sequence[int],
           eps: float) -> Any:
    if ns is NP:  # the gradient's rows summed as torch sums them, from `g` alone
        g = np.asarray(g)
        dy = _rows_of(np.broadcast_to(g, tuple(x.shape)), normalized_shape)
        if not dy.size:
            return np.zeros(tuple(normalized_shape), g.dtype)
        return _param_sums(dy, None, None, None, False, True)[1].reshape(
            tuple(normalized_shape))
    return g


defop("layer_norm", _layer_norm, _ln_dx, _ln_dw, _ln_db,
      saves=("input weight", "input weight", "input weight"),  # torch saves all for any
      inputs=("input", "weight?", "bias?"),
      attrs=(AttrSpec("normalized_shape", "ints", required=True), AttrSpec("eps", "float", 1e-5)),
      dtype=_ln_dtype, backward="NativeLayerNormBackward0", method=False,
      doc="(input - mean) / sqrt(var + eps) * weight + bias over the last "
          "len(normalized_shape) dims (biased variance), rounded as torch's CPU kernel",
      out_bound=_ln_bound)


def _lane_sum(terms: np.ndarray, dt: Any, times: np.ndarray | None = None,
              vector_bytes: int | None = None) -> np.ndarray:
    """vec::reduce_all over each row of (rows, N) `terms`, or map2_reduce_all of the products
    `terms * times`: a vector of lanes accumulated in order (`acc + t * u`, not fused), a
    partial last vector into its first lanes (fused there: `fma(t, u, acc)`), then the lanes
    added in a halving tree; rows shorter than a vector add their elements left to right."""
    rows, size = terms.shape
    lanes = (vector_bytes or cascade.REDUCE_VECTOR_BYTES) // terms.dtype.itemsize
    if size < lanes:
        vals = terms if times is None else terms * times
        if size < 2:
            return vals[:, 0].copy() if size else np.zeros(rows, dt)
        return np.add.accumulate(vals, axis=1)[:, -1]  # left to right: a running sum's last
    full = size // lanes
    whole = terms[:, :full * lanes]
    if times is not None:
        whole = whole * times[:, :full * lanes]
    # the whole vectors added one after another (a new array: the tail goes into it)
    acc = cascade.seq_sum(whole.reshape(rows, full, lanes), 1)
    rest = size - full * lanes
    if rest:
        part = terms[:, full * lanes:]
        acc[:, :rest] = (acc[:, :rest] + part if times is None
                         else _fma(part, times[:, full * lanes:], acc[:, :rest], dt))
    if dt is not np.float32:  # torch's shuffle tree is float's; other types add lanes in order
        total = acc[:, 0]
        for i in range(1, lanes):
            total = total + acc[:, i]
        return total
    while acc.shape[1] > 1:
        half = acc.shape[1] // 2
        acc = acc[:, :half] + acc[:, half:]
    return acc[:, 0]


def _param_sums(dy: np.ndarray, rows: Any, mean: Any, rstd: Any, dgamma: bool,
                dbeta: bool) -> tuple[Any, Any]:
    """torch's two-pass dgamma / dbeta: its parallel_for splits the rows into one contiguous
    range per intra-op thread (`cascade.THREADS`), each thread sums its rows in order into its
    own buffer (`fma(dy, fma(rstd, x, -rstd * mean), buf)`, `buf + dy`), and the buffers are
    added in thread order. The threads' row p are done together here."""
    dt = dy.dtype.type
    m, size = dy.shape
    chunk = -(-m // max(1, min(cascade.THREADS, m)))
    starts = np.arange(0, m, chunk)
    ends = np.minimum(starts + chunk, m)
    bias: Any = -rstd * mean if dgamma else None
    buf_w = np.zeros((starts.size, size), dt) if dgamma else None
    buf_b = np.zeros((starts.size, size), dt) if dbeta else None
    for p in range(chunk):
        if not p % _STEPS_PER_CHECK:
            limits.tick()
        live = int(np.count_nonzero(starts + p < ends))  # a prefix: only the last range is short
        r = starts[:live] + p
        if buf_w is not None:
            h = _fma(rstd[r, None], rows[r], bias[r, None], dt)
            buf_w[:live] = _fma(dy[r], h, buf_w[:live], dt)
        if buf_b is not None:
            buf_b[:live] = buf_b[:live] + dy[r]
    out = []
    for buf in (buf_w, buf_b):
        total = None
        if buf is not None:
            total = np.zeros(size, dt)
            for part in buf:
                total = total + part
        out.append(total)
    return out[0], out[1]


def _backward(g: Any, x: Any, w: Any, normalized_shape: Sequence[int], eps: float,
              dx: bool = False, dgamma: bool = False, dbeta: bool = False
              ) -> tuple[Any, Any, Any]:
    """torch's LayerNormBackwardKernelImpl: (grad input, grad weight, grad bias), each only
    when asked for (None otherwise). The row moments are recomputed from `x`: the same
    values the forward saved."""
    dt = x.dtype.type
    rows = _rows_of(x, normalized_shape)
    dy = _rows_of(np.broadcast_to(np.asarray(g, dt), x.shape), normalized_shape)
    if not rows.size:
        zero = np.zeros(tuple(normalized_shape), dt)
        return np.zeros(x.shape, dt), zero, zero
    size = rows.shape[1]
    mean, var = row_moments(rows)
    rstd = dt(1) / np.sqrt(var + dt(eps))
    out_dw, out_db = _param_sums(dy, rows, mean, rstd, dgamma, dbeta)
    out_dx = None
    if dx:
        if w is None:
            ds = _lane_sum(dy, dt, rows)
            db = _lane_sum(dy, dt)
            ady = rstd[:, None] * dy
        else:
            gamma = np.broadcast_to(np.asarray(w, dt).reshape(1, -1), rows.shape)
            ds = _lane_sum(dy * rows, dt, gamma)
            db = _lane_sum(dy, dt, gamma)
            ady = rstd[:, None] * dy * gamma
        scale = dt(1) / dt(size)
        b = _fma(db, mean, -ds, dt) * rstd * rstd * rstd * scale
        c = _fma(-b, mean, -(db * rstd * scale), dt)
        out_dx = (_fma(b[:, None], rows, ady, dt) + c[:, None]).reshape(x.shape)
    shape = tuple(normalized_shape)
    return (out_dx, None if out_dw is None else out_dw.reshape(shape),
            None if out_db is None else out_db.reshape(shape))


# --- batch normalisation ---------------------------------------------------------------------
# torch's `native_batch_norm` on CPU (aten/src/ATen/native/cpu/batch_norm_kernel.cpp and
# Normalization.cpp), float32 and float64 rounded as torch 2.13 rounds them (probed with crafted
# inputs; see docs/internals.md "Batch norm"). Two layouts take different kernels: an input with
# one value per (sample, channel) (N×C, N×C×1...) is read as rows of channels, summed per torch
# intra-op thread into float buffers; any other input plane by plane, summed in double.


def _bn_layout(x: np.ndarray) -> tuple[int, int, int]:
    """(channels, values per channel, image size) of an N×C×... input."""
    c = x.shape[1]
    count = x.size // c if c else 0
    image = count // x.shape[0] if x.shape[0] else 0
    return c, count, image


def _seq_sum(terms: np.ndarray) -> np.ndarray:
    """Each row's left-to-right sum of (rows, k) `terms` in float64 (torch's double
    accumulators), as float64."""
    if not terms.shape[1]:
        return np.zeros(terms.shape[0], np.float64)
    return np.cumsum(terms.astype(np.float64), axis=1)[:, -1]


def _thread_ranges(m: int) -> tuple[int, np.ndarray, np.ndarray]:
    """at::parallel_for(0, m, 1)'s split: (chunk, starts, ends) of one contiguous row range per
    intra-op thread (`cascade.THREADS`)."""
    chunk = -(-m // max(1, min(cascade.THREADS, m)))
    starts = np.arange(0, m, chunk) if m else np.zeros(0, np.int64)
    return chunk, starts, np.minimum(starts + chunk, m)


def _thread_sums(rows: np.ndarray, step: Any) -> np.ndarray:
    """The per-thread float buffers of a rows-of-channels reduction, summed in double in thread
    order: buffer = step(buffer, row index) for each thread's rows in order."""
    m, c = rows.shape
    chunk, starts, ends = _thread_ranges(m)
    buf = np.zeros((starts.size, c), rows.dtype)
    for p in range(chunk):
        if not p % _STEPS_PER_CHECK:
            limits.tick()
        live = int(np.count_nonzero(starts + p < ends))
        buf[:live] = step(buf[:live], starts[:live] + p)
    return _seq_sum(buf.T)


# batch_norm_cpu_collect_stats_channels_last_impl with no more rows than threads: channels in
# tiles of 16 (one thread, or at most 16 or more than 2048 channels), else one channel per task
_BN_TILE, _BN_TILE_MAX = 16, 2048


def _planes(x: np.ndarray, c: int) -> np.ndarray:
    """(C, N * image) with each channel's values in torch's order (sample, then position)."""
    return np.ascontiguousarray(x).reshape(x.shape[0], c, -1).transpose(1, 0, 2).reshape(c, -1)


def batch_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's (mean, sum of squared deviations) of an N×C×... float array, as torch's
    batch_norm_cpu_collect_stats kernels compute them."""
    dt = x.dtype.type
    c, count, image = _bn_layout(x)
    if image == 1:
        rows = np.ascontiguousarray(x).reshape(count, c)
        if count > cascade.THREADS:
            mean = (_thread_sums(rows, lambda buf, r: buf + rows[r]) / count).astype(dt)
            dev = rows - mean
            var_sum = _thread_sums(rows, lambda buf, r: _fma(dev[r], dev[r], buf, dt))
            return mean, var_sum.astype(dt)
        if cascade.THREADS > 1 and _BN_TILE < c <= _BN_TILE_MAX:
            # no more rows than threads, threads split the channels: a double sum per channel,
            # the squared deviations rounded to the input's type before they are added
            mean = (_seq_sum(rows.T) / count).astype(dt)
            dev = rows - mean
            return mean, _seq_sum((dev * dev).T).astype(dt)
        # no more rows than threads, channels in tiles of 16: one accumulator per channel in
        # the input's type (measured: a fused chain; only 1 or 2 rows were seen with 2 threads)
        total = rows[0].copy()
        for r in range(1, count):
            total = total + rows[r]
        mean = total / dt(count)
        dev = rows - mean
        var_sum = np.zeros(c, dt)
        for r in range(count):
            var_sum = _fma(dev[r], dev[r], var_sum, dt)
        return mean, var_sum
    planes = _planes(x, c)
    mean = (_seq_sum(planes) / count).astype(dt)
    dev = planes - mean[:, None]
    return mean, _seq_sum(dev * dev).astype(dt)


def _invstd(var_sum: np.ndarray, count: int, eps: float) -> np.ndarray:
    """Normalization.cpp's save_invstd: the biased variance var_sum / N in the input's type,
    then 1 / sqrt(var + eps) in double (0 where var and eps are both 0), rounded back."""
    dt = var_sum.dtype.type
    var = (var_sum / dt(count)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1.0 / np.sqrt(var + eps)
    if eps == 0:
        out = np.where(var == 0, 0.0, out)
    return out.astype(dt)


def _bn_view(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    return v.reshape(1, -1, *([1] * (x.ndim - 2)))


def _batch_norm(x: Any, w: Any = None, b: Any = None, rm: Any = None, rv: Any = None,
                training: bool = False, eps: float = 1e-5) -> Any:
    dt = x.dtype.type
    c, count, _ = _bn_layout(x)
    if not x.size:
        return np.zeros(x.shape, x.dtype)
    if training:
        mean, var_sum = batch_moments(x)
        invstd = _invstd(var_sum, count, eps)
    else:
        mean = np.asarray(rm, dt)
        with np.errstate(divide="ignore", invalid="ignore"):
            invstd = dt(1) / np.sqrt(np.asarray(rv, dt) + dt(eps))
    alpha = invstd if w is None else invstd * np.asarray(w, dt)
    beta = np.zeros(c, dt) if b is None else np.asarray(b, dt)
    beta = _fma(-mean, alpha, beta, dt)
    return _fma(x, _bn_view(alpha, x), _bn_view(beta, x), dt)


def _running_stat(x: Any, w: Any, b: Any, rm: Any, rv: Any, momentum: float = 0.1,
                  var: bool = False) -> Any:
    dt = x.dtype.type
    old = np.asarray(rv if var else rm, dt)
    if not x.size:  # torch leaves the statistics of an empty batch as they were
        return old.copy()
    _, count, _ = _bn_layout(x)
    mean, var_sum = batch_moments(x)
    # in the input's type, 1 - momentum too: momentum * mean + (1 - momentum) * running unfused,
    # momentum * unbiased variance + (1 - momentum) * running fused (measured)
    rest = dt(1) - dt(momentum)
    if not var:
        return dt(momentum) * mean + rest * old
    with np.errstate(divide="ignore", invalid="ignore"):
        unbiased = var_sum / dt(count - 1)
    if dt is not np.float32:  # double: not fused (measured)
        return dt(momentum) * unbiased + rest * old
    return _fma(dt(momentum), unbiased, rest * old, dt)


def _bn_backward(g: Any, x: Any, w: Any, rm: Any, rv: Any, training: bool, eps: float,
                 dx: bool = False, dgamma: bool = False, dbeta: bool = False
                 ) -> tuple[Any, Any, Any]:
    """torch's batch_norm_cpu_backward kernels: (grad input, grad weight, grad bias), each
    only when asked for. The batch statistics are recomputed from `x` (the values the forward
    saved)."""
    dt = x.dtype.type
    x = np.ascontiguousarray(x)
    dy = np.ascontiguousarray(np.broadcast_to(np.asarray(g, dt), x.shape))
    c, count, image = _bn_layout(x)
    if not x.size:
        zero = np.zeros(c, dt)
        return np.zeros(x.shape, dt), zero, zero
    gamma = np.ones(c, dt) if w is None else np.asarray(w, dt)
    if training:
        mean, var_sum = batch_moments(x)
        invstd = _invstd(var_sum, count, eps)
    else:
        mean = np.asarray(rm, dt)
        with np.errstate(divide="ignore", invalid="ignore"):  # double here, float in forward
            invstd = (1.0 / np.sqrt(np.asarray(rv, np.float64) + eps)).astype(dt)
    out_dx = None
    if image == 1:  # rows of channels: float buffers per thread, added in double
        rows, drows = x.reshape(count, c), dy.reshape(count, c)
        dev = rows - mean
        total = _thread_sums(drows, lambda buf, r: buf + drows[r]).astype(dt)
        dotp = _thread_sums(drows, lambda buf, r: _fma(dev[r], drows[r], buf, dt)).astype(dt)
        if dx:
            if training:
                k = dotp * invstd * invstd / dt(count)
                grad_mean = total / dt(count)
                centred = drows - grad_mean
                # the channels in whole vectors fuse `(dy - grad_mean) - dev * k`, the last
                # partial vector's do not (measured)
                full = c - c % (cascade.REDUCE_VECTOR_BYTES // x.dtype.itemsize)
                out = centred - dev * k
                out[:, :full] = _fma(-dev[:, :full], k[:full], centred[:, :full], dt)
                out_dx = (out * invstd * gamma).reshape(x.shape)
            else:
                out_dx = (drows * invstd * gamma).reshape(x.shape)
        return (out_dx, dotp * invstd if dgamma else None, total if dbeta else None)
    # plane by plane: each (sample, channel) plane reduced in lanes, the planes added in double
    n = x.shape[0]
    planes = x.reshape(n, c, image)
    dplanes = dy.reshape(n * c, image)
    dev = (planes - mean[None, :, None]).reshape(n * c, image)
    total64 = _seq_sum(_lane_sum(dplanes, dt).reshape(n, c).T)
    dotp64 = _seq_sum(_lane_sum(dev, dt, dplanes).reshape(n, c).T)
    if dx:
        if training:
            k = (dotp64.astype(dt) * invstd * invstd / dt(count))[None, :, None]
            grad_mean = (total64 / count).astype(dt)[None, :, None]
            out = _fma(-dev.reshape(planes.shape), k, dy.reshape(planes.shape) - grad_mean, dt)
            out_dx = (out * invstd[None, :, None] * gamma[None, :, None]).reshape(x.shape)
        else:
            out_dx = (dy.reshape(planes.shape) * invstd[None, :, None]
                      * gamma[None, :, None]).reshape(x.shape)
    return (out_dx, (dotp64 * invstd.astype(np.float64)).astype(dt) if dgamma else None,
            total64.astype(dt) if dbeta else None)


def _bn_dtype(args: Sequence[Any], attrs: Mapping[str, Any], running: bool = False
              ) -> tuple[DType | None, DType]:
    """torch's checks (Normalization.cpp `_batch_norm_impl_index`, `native_batch_norm`), in
    its order and with its messages (`running`: for batch_norm_running, which computes no
    gradient)."""
    x, w, b, rm, rv = args
    training = bool(attrs["training"])
    shape = list(x.shape)
    c = shape[1] if len(shape) > 1 else 0
    for name, t in (("running_mean", rm), ("running_var", rv)):
        if t is not None:
            if numel_of(t) != c:
                raise errors.InvalidArgumentError(
                    f"{name} should contain {c} elements not {numel_of(t)}")
        elif not training:
            raise errors.InvalidArgumentError(f"{name} must be defined in evaluation mode")
    for name, t in (("weight", w), ("bias", b)):
        if t is not None and numel_of(t) != c:
            raise errors.InvalidArgumentError(
                f"{name} should contain {c} elements not {numel_of(t)}")
    if len(shape) < 2:
        raise errors.OutOfRangeIndexError(
            "Dimension out of range (expected to be in range of [-1, 0], but got 1)"
            if shape else "Dimension specified as 1 but tensor has no dimensions")
    if (rm is None) != (rv is None):
        raise errors.InvalidValueError(
            "running_mean and running_var must either both be None or neither be None")
    if grad_mode.is_grad_enabled() and not running:
        for name, t in (("running_mean", rm), ("running_var", rv)):
            if t is not None and t.requires_grad:
                raise errors.InvalidArgumentError(
                    f"The function 'native_batch_norm' is not differentiable with respect to "
                    f"argument '{name}'. This input cannot have requires_grad True.")
    if x.dtype.category != 2:
        raise errors.NotImplementedFunctionError(
            f'"batch_norm" not implemented for \'{_type_word(x.dtype)}\'')
    params = [t for t in (w, b, rm, rv) if t is not None]
    odd = [t.dtype for t in params if t.dtype is not x.dtype]
    if odd:
        if x.dtype.name != "float64":
            raise errors.InvalidArgumentError(
                "mixed dtype (CPU): expect parameter to have scalar type of "
                f"{_type_word(x.dtype)}")
        if len(odd) == len(params) and all(d.name == "float32" for d in odd):
            raise errors.InvalidArgumentError(
                "mixed dtype (CPU): all inputs must share same datatype.")
        raise errors.InvalidArgumentError(
            f"expected scalar type {_type_word(x.dtype)} but found {_type_word(odd[0])}")
    return None, x.dtype


def _bn_bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: DType) -> limits.Bound:
    """The result, and scratch: float64 copies of each channel's values for the double sums,
    the centred values and the fma's float64 temporaries (three per element)."""
    x = args[0]
    n = numel_of(x)
    item = out_dtype.np.itemsize
    return limits.with_scratch(limits.shape_bound(tuple(x.shape), item), n * (2 * item + 32))


# --- batch norm backward: torch's kernel once per backward pass (NP), composed from engine ops
# with create_graph (EN), so that it can be differentiated again.


def _bn_reduce_dims(x: Any) -> tuple[int, ...]:
    return (0, *range(2, len(x.shape)))


def _bn_param_view(ns: Any, t: Any, x: Any) -> Any:
    return ns.reshape(t, (1, -1, *([1] * (len(x.shape) - 2))))


def _bn_composed(ns: Any, x: Any, rm: Any, rv: Any, training: bool, eps: float
                 ) -> tuple[Any, Any]:
    """(x - mean) * invstd and invstd, composed of `ns` ops."""
    if training:
        dims = _bn_reduce_dims(x)
        centred = x - ns.mean(x, dim=dims, keepdim=True)
        invstd = ns.rsqrt(ns.mean(centred * centred, dim=dims, keepdim=True) + eps)
    else:
        centred = x - _bn_param_view(ns, rm, x)
        invstd = ns.rsqrt(_bn_param_view(ns, rv, x) + eps)
    return centred * invstd, invstd


def _bn_dx(ns: Any, g: Any, out: Any, x: Any, w: Any, b: Any, rm: Any, rv: Any,
           training: bool = False, eps: float = 1e-5) -> Any:
    if ns is NP:
        return _bn_backward(g, x, w, rm, rv, training, eps, dx=True)[0]
    xhat, invstd = _bn_composed(ns, x, rm, rv, training, eps)
    gw = g if w is None else g * _bn_param_view(ns, w, x)
    if not training:
        return gw * invstd
    dims = _bn_reduce_dims(x)
    return invstd * (gw - ns.mean(gw, dim=dims, keepdim=True)
                     - xhat * ns.mean(gw * xhat, dim=dims, keepdim=True))


def _bn_dw(ns: Any, g: Any, out: Any, x: Any, w: Any, b: Any, rm: Any, rv: Any,
           training: bool = False, eps: float = 1e-5) -> Any:
    if ns is NP:
        return _bn_backward(g, x, w, rm, rv, training, eps, dgamma=True)[1]
    xhat = _bn_composed(ns, x, rm, rv, training, eps)[0]
    return ns.sum(g * xhat, dim=_bn_reduce_dims(x))


def _bn_db(ns: Any, g: Any, out: Any, x: Any, w: Any, b: Any, rm: Any, rv: Any,
           training: bool = False, eps: float = 1e-5) -> Any:
    if ns is NP:
        return _bn_backward(g, x, w, rm, rv, training, eps, dbeta=True)[2]
    return ns.sum(g, dim=_bn_reduce_dims(x))


_BN_SAVES = "input weight running_mean running_var"  # torch saves these for any gradient

defop("batch_norm", _batch_norm, _bn_dx, _bn_dw, _bn_db, None, None,
      saves=(_BN_SAVES, _BN_SAVES, _BN_SAVES, "", ""),
      inputs=("input", "weight?", "bias?", "running_mean?", "running_var?"),
      attrs=(AttrSpec("training", "bool", False), AttrSpec("eps", "float", 1e-5)),
      dtype=_bn_dtype, backward="NativeBatchNormBackward0", method=False,
      doc="(input - mean) / sqrt(var + eps) * weight + bias per channel (dim 1), with the "
          "batch's statistics (training) or the running ones, rounded as torch's CPU kernels",
      out_bound=_bn_bound)


defop("batch_norm_running", _running_stat, None, None, None, None, None,
      inputs=("input", "weight?", "bias?", "running_mean", "running_var"),
      attrs=(AttrSpec("momentum", "float", 0.1), AttrSpec("var", "bool", False)),
      dtype=lambda args, attrs: _bn_dtype(args, {"training": True}, running=True), method=False,
      doc="batch_norm's new running_mean (running_var with var=True) after one training step: "
          "momentum * the batch's mean (unbiased variance) + (1 - momentum) * the old value, "
          "as torch's kernel writes it (for `copy_`; checks the arguments as batch_norm does)",
      out_shape=lambda x, w, b, rm, rv, **_: tuple(rm.shape))


# --- group normalisation ---------------------------------------------------------------------
# torch's `native_group_norm` (aten/src/ATen/native/cpu/group_norm_kernel.cpp, contiguous input):
# each (image, group) row of C / G * HxW elements gets its mean and variance from RowwiseMoments
# (`row_moments`), rstd = 1 / sqrt(max(var, 0) + eps) (in float64: eps is a double), then per
# channel scale = rstd * gamma and bias = fma(-scale, mean, beta), and y = fma(scale, x, bias)
# (measured against torch 2.13: bit for bit). The backward is composed of engine ops
# (the formula of torch's GroupNormBackward kernel, not its order of roundings).


def _gn_layout(x: Any) -> tuple[int, int, int]:
    """(N, C, HxW) of an (N, C, *) input."""
    shape = tuple(x.shape)
    return shape[0], shape[1], math.prod(shape[2:])


def _group_norm(x: Any, w: Any = None, b: Any = None, num_groups: int = 1,
                eps: float = 1e-5) -> Any:
    dt = x.dtype.type
    n, c, hw = _gn_layout(x)
    if not x.size:
        return np.zeros(x.shape, x.dtype)
    rows = np.ascontiguousarray(x).reshape(n * num_groups, -1)
    mean, var = row_moments(rows)
    # `max(var, 0) + eps` is float + double in torch's kernel: rstd in float64, then rounded
    rstd = (1.0 / np.sqrt(np.maximum(var, dt(0)).astype(np.float64) + eps)).astype(dt)
    if w is None and b is None:
        return ((rows - mean[:, None]) * rstd[:, None]).reshape(x.shape)
    gamma = np.ones(c, dt) if w is None else np.asarray(w, dt).reshape(-1)
    beta = np.zeros(c, dt) if b is None else np.asarray(b, dt).reshape(-1)
    per = c // num_groups
    rstd_c = np.repeat(rstd.reshape(n, num_groups), per, axis=1)  # (N, C)
    mean_c = np.repeat(mean.reshape(n, num_groups), per, axis=1)
    scale = rstd_c * gamma
    shift = _fma(-scale, mean_c, beta, dt)
    planes = np.ascontiguousarray(x).reshape(n, c, hw)
    return _fma(scale[:, :, None], planes, shift[:, :, None], dt).astype(dt).reshape(x.shape)


def _gn_dtype(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    """torch's checks (group_norm.cpp `check_group_norm_inputs`), with its messages."""
    x, w, b = args[0], args[1], args[2]
    groups = int(attrs["num_groups"])
    shape = list(x.shape)
    if len(shape) < 2:
        raise errors.InvalidArgumentError(
            f"Expected at least 2 dimensions for input tensor but received {len(shape)}")
    if groups <= 0:
        raise errors.InvalidArgumentError(
            f"Expected num groups to be greater than 0, got {groups}")
    c = shape[1]
    if c % groups:
        raise errors.InvalidArgumentError(
            f"Expected number of channels in input to be divisible by num_groups, but got input "
            f"of shape {_shape_text(shape)} and num_groups={groups}")
    for name, t in (("weight", w), ("bias", b)):
        if t is not None and (len(t.shape) != 1 or t.shape[0] != c):
            raise errors.InvalidArgumentError(
                f"Expected {name} to be a vector of size equal to the number of channels in "
                f"input, but got {name} of shape {_shape_text(t.shape)} and input of shape "
                f"{_shape_text(shape)}")
    return _kernel_dtypes("GroupNormKernelImpl", x, w, b)


def _gn_normalized(ns: Any, x: Any, num_groups: int, eps: float) -> tuple[Any, Any]:
    """x's rows (N, G, C / G * HxW) normalised, and their rstd, composed of `ns` ops."""
    rows = ns.reshape(x, shape=(x.shape[0], num_groups, -1))
    centred = rows - ns.mean(rows, dim=(2,), keepdim=True)
    rstd = ns.rsqrt(ns.mean(centred * centred, dim=(2,), keepdim=True) + eps)
    return centred * rstd, rstd


def _channel_view(ns: Any, t: Any, x: Any) -> Any:
    return ns.reshape(t, shape=(1, -1, *([1] * (len(x.shape) - 2))))


def _gn_dx(ns: Any, g: Any, out: Any, x: Any, w: Any, b: Any, num_groups: int,
           eps: float) -> Any:
    xhat, rstd = _gn_normalized(ns, x, num_groups, eps)
    gw = g if w is None else g * _channel_view(ns, w, x)
    gw = ns.reshape(gw, shape=(x.shape[0], num_groups, -1))
    dx = rstd * (gw - ns.mean(gw, dim=(2,), keepdim=True)
                 - xhat * ns.mean(gw * xhat, dim=(2,), keepdim=True))
    return ns.reshape(dx, shape=tuple(x.shape))


def _gn_dw(ns: Any, g: Any, out: Any, x: Any, w: Any, b: Any, num_groups: int,
           eps: float) -> Any:
    xhat = ns.reshape(_gn_normalized(ns, x, num_groups, eps)[0], shape=tuple(x.shape))
    return ns.sum(g * xhat, dim=(0, *range(2, len(x.shape))))


def _gn_db(ns: Any, g: Any, out: Any, x: Any, w: Any, b: Any, num_groups: int,
           eps: float) -> Any:
    return ns.sum(g, dim=(0, *range(2, len(x.shape))))


defop("group_norm", _group_norm, _gn_dx, _gn_dw, _gn_db,
      saves=("input weight", "input weight", "input weight"),  # torch saves all for any
      inputs=("input", "weight?", "bias?"),
      attrs=(AttrSpec("num_groups", "int", required=True), AttrSpec("eps", "float", 1e-5)),
      dtype=_gn_dtype, backward="NativeGroupNormBackward0", method=False,
      doc="(input - mean) / sqrt(var + eps) * weight + bias over each group of num_groups "
          "channels of (N, C, *) (biased variance), rounded as torch's CPU kernel",
      out_bound=_ln_bound)
