"""torch's CPU float sum, bit for bit: the association order of ATen's `cascade_sum`.

torch (aten/src/ATen/native/cpu/SumKernel.cpp) does not sum floats pairwise like numpy: it
accumulates in the input's own dtype, in SIMD lanes, through a 4-level cascade of sequential
partial sums, and its TensorIterator decides which of four loops (inner or outer reduction,
vectorised or scalar) sees the data. The order of the additions, not the precision, is what
differs from `np.sum`, so the results differ in the last bits. This module redoes the same
additions in the same order with numpy arrays of the same dtype:

- `multi_row_sum` (here `_cascade`): per lane, sequential sums of chunks of `2**p` elements
  (`p = max(4, ceil(log2(n)) // 4)`), those sums summed sequentially `2**p` at a time, again one
  level up, and the top level sequentially; the unfinished levels are added last.
- `row_sum`: a row read as (-1, 4) gives 4 cascades; the leftover elements go into the first,
  then the four are added in order.
- the inner (contiguous) reduction reads vectors of `VEC` floats (8, half that for double: the
  AVX2 width even on an AVX512 CPU, see `REDUCE_VECTOR_BYTES`), `row_sum` over the vectors,
  then scalar tail, then the lanes in order.
- the outer reduction sums 4 vectors of columns at once (one cascade each), then single vectors
  and single columns with `row_sum`.
- above `GRAIN_SIZE` (32768) elements torch splits the work over its intra-op threads: a full
  reduction sums one contiguous slice per thread and then adds the per-thread results; a
  reduction over an outer dim may split the columns, which regroups them.

Only float32 and float64 come here. An array's strides are read as the tensor's: the engine's
views (transpose, permute, slices) have the strides torch's views have. `nll_sum` is the other
loop torch sums with: nll_loss's one-pass 8-level cascade.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from . import parallel

GRAIN_SIZE = 32768  # at::internal::GRAIN_SIZE
# A full sum of fewer elements sums torch's per-thread ranges in this thread (see `_full`):
# below this, handing a range to another thread costs more than the range itself.
SPLIT_SUM = 1 << 20


# torch's AVX512 level (and oneDNN's `avx512_core`): AVX512 F, CD, VL, BW and DQ
_AVX512_FLAGS = frozenset({"avx512f", "avx512cd", "avx512vl", "avx512bw", "avx512dq"})


def _cpu_info() -> tuple[str, frozenset[str]] | None:
    """The CPU's vendor and feature flags as Linux reports them (/proc/cpuinfo), or None
    elsewhere."""
    vendor = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    vendor = line.partition(":")[2].strip()
                elif line.startswith("flags"):
                    return vendor, frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return None


def _cpu_has_avx512() -> bool:
    """Whether the CPU itself runs AVX512 at torch's level: asked of the CPU's flags, not of
    numpy's dispatch, which NPY_DISABLE_CPU_FEATURES turns off (server/numpy_cpu.py keeps numpy
    off its AVX512 kernels; torch, oneDNN and MKL stay on theirs). Without /proc/cpuinfo,
    numpy's per-feature flags, which that variable leaves as the CPU has them (it turns off
    numpy's dispatch groups, `AVX512_SKX`, `X86_V4`)."""
    info = _cpu_info()
    if info is not None:
        return _AVX512_FLAGS <= info[1]
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__  # type: ignore[no-redef]
    return all(__cpu_features__.get(flag.upper()) for flag in _AVX512_FLAGS)


def _vector_bytes() -> int:
    """Bytes in torch's `Vectorized<float>` for the kernels it builds for AVX512 too
    (ALSO_REGISTER_AVX512_DISPATCH), on this CPU: 64 where it has AVX512 and
    ATEN_CPU_CAPABILITY (torch's own override) does not cap torch at avx2 or default, else 32."""
    if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() in ("default", "avx2"):
        return 32
    return 64 if _cpu_has_avx512() else 32


def _default_threads() -> int:
    """torch's intra-op thread count when not set: OMP_NUM_THREADS, else the CPUs we may use."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# The `Vectorized<float>` width of torch's ALSO_REGISTER_AVX512_DISPATCH kernels on this CPU:
# every `vecmath.float32_kernel` op (sigmoid, silu, elu/selu/celu, softplus, mish, gelu's own
# kernel in both forms, hardswish's backward, pow; measured: expm1, log1p and logsigmoid give
# the same bits at either width) and the (log_)softmax kernels. Measured with torch 2.13 on an
# AVX512 CPU (tests/test_engine_avx512_width.py): 16 lanes there, also where numpy is kept off
# AVX512 (a server), which an earlier reading of numpy's dispatch took for 8.
VECTOR_BYTES = _vector_bytes()
# The `Vectorized<float>` width of the kernels torch registers with plain REGISTER_DISPATCH
# (sum, layer norm, batch norm...): ATen's DispatchStub registers no AVX512 version of those
# (only ALSO_REGISTER_AVX512_DISPATCH kernels, such as sigmoid or softmax, get one), so on an
# AVX512 CPU they run their AVX2 build, 32 bytes, as on an AVX2 or a plain CPU (measured with
# torch 2.13 on an AVX512 CPU: these kernels' bits are the AVX2 ones).
REDUCE_VECTOR_BYTES = 32
THREADS = _default_threads()

# oneDNN's ISA caps below AVX-512 (ONEDNN_MAX_CPU_ISA, or its older name DNNL_MAX_CPU_ISA)
_ONEDNN_BELOW_AVX512 = frozenset({"sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2"})


def _onednn_avx512() -> bool:
    """Whether oneDNN (torch's bundled v3.12) runs its AVX-512 JIT code here: the CPU has
    AVX-512 (F, CD, VL, BW, DQ: its `avx512_core`) and no ONEDNN_MAX_CPU_ISA caps it lower.
    Its elementwise kernels' arithmetic differs between the two (gelu's erf: engine/gelu_erf.py),
    and so does its convolutions' order (engine/conv_onednn.py models the AVX2 one)."""
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").lower()
    return cap not in _ONEDNN_BELOW_AVX512 and _cpu_has_avx512()


ONEDNN_AVX512 = _onednn_avx512()

# MKL_ENABLE_INSTRUCTIONS values that keep MKL below AVX-512
_MKL_BELOW_AVX512 = frozenset({"sse4_2", "avx", "avx2"})


def _mkl_avx512() -> bool:
    """Whether torch's MKL (2024.2, linked into torch) may run its AVX-512 code paths here: an
    Intel CPU with AVX-512 that MKL_ENABLE_INSTRUCTIONS does not cap lower. MKL dispatches on
    the CPU itself, not on ATEN_CPU_CAPABILITY; on the AMD EPYC with AVX-512 these were
    measured on, MKL_VERBOSE names no AVX-512 path ("Intel(R) Architecture processors") and its
    products add in the order engine/gemm.py models, whether torch runs at AVX2 or AVX512.
    On an Intel AVX-512 CPU (not measured) its other kernels may add in another order."""
    info = _cpu_info()
    cap = os.environ.get("MKL_ENABLE_INSTRUCTIONS", "").lower()
    return (info is not None and info[0] == "GenuineIntel" and _AVX512_FLAGS <= info[1]
            and cap not in _MKL_BELOW_AVX512)


MKL_AVX512 = _mkl_avx512()


def _reduce_is_sequential() -> bool:
    """Whether `np.add.reduce` over a non-last axis adds in order (it loops over the last axis
    and adds whole rows, so no pairwise summation): checked once, else the slower loops."""
    probe = np.ones((16, 8), np.float32)
    probe[0] = 2.0 ** 24  # in order every + 1 rounds back to 2**24; pairwise it does not
    return bool(np.all(np.add.reduce(probe, axis=0) == 2.0 ** 24))


_REDUCE_SEQUENTIAL = _reduce_is_sequential()


def _seq(x: np.ndarray, axis: int) -> np.ndarray:
    """Left-to-right sum along `axis`, as a C loop `acc += x[i]` does it (but for the sign of a
    zero sum, which the caller's final `+ 0` settles as torch's does)."""
    n = x.shape[axis]
    if n == 0:
        return np.zeros(x.shape[:axis] + x.shape[axis + 1:], x.dtype)
    if n == 1:
        return x.take(0, axis=axis)
    lanes = 1
    for s in x.shape[axis + 1:]:
        lanes *= s
    if lanes >= 4 and n <= _SHORT_AXIS and x.size >= _SHORT_AXIS_ROWS * n * lanes:
        # a short axis of many rows (a cascade's first level): its n - 1 additions of whole
        # slices, in order, cost less than numpy's reduce, which loops over one row's lanes at a
        # time (a 256K-element float32 sum's first level: ~190 -> ~130 us)
        pre = (slice(None),) * axis
        acc = x[pre + (0,)].copy()
        for k in range(1, n):
            acc += x[pre + (k,)]
        return acc
    if lanes >= 4 and _REDUCE_SEQUENTIAL:
        return np.add.reduce(x, axis=axis)
    return np.add.accumulate(x, axis=axis).take(-1, axis=axis)  # sequential by definition


seq_sum = _seq  # public: the left-to-right sums other modules' kernels make (a new array)

# `_seq` adds whole slices along an axis of at most this many elements with at least
# `_SHORT_AXIS_ROWS` rows before it (fewer: its n - 1 numpy calls cost more than they save)
_SHORT_AXIS = 64
_SHORT_AXIS_ROWS = 256


def _cascade(x: np.ndarray) -> np.ndarray:
    """`multi_row_sum` along axis 1 of (B, n, *lanes): one 4-level cascade per (b, lane)."""
    n = x.shape[1]
    power = max(4, (n - 1).bit_length() // 4) if n > 1 else 4
    step = 1 << power
    if n < step:
        return _seq(x, 1)
    head, rest = x.shape[:1], x.shape[2:]
    n1 = n // step
    level1 = _seq(x[:, :n1 * step].reshape(head + (n1, step) + rest), 2)
    total = _seq(x[:, n1 * step:], 1) if n % step else None
    n2 = n1 // step
    sums = [_seq(level1[:, n2 * step:], 1) if n1 % step else None]
    if n2:
        level2 = _seq(level1[:, :n2 * step].reshape(head + (n2, step) + rest), 2)
        n3 = n2 // step
        sums.append(_seq(level2[:, n3 * step:], 1) if n2 % step else None)
        if n3:
            level3 = _seq(level2[:, :n3 * step].reshape(head + (n3, step) + rest), 2)
            sums.append(_seq(level3, 1))
    for part in sums:  # the tail, then the unfinished levels, lowest first
        if part is None:
            continue
        if total is None:
            total = part.copy()
        else:
            total += part
    assert total is not None
    return total


def _row_sum(x: np.ndarray) -> np.ndarray:
    """`row_sum` along axis 1 of (B, n, *lanes): the row as (-1, 4), four cascades, added."""
    n = x.shape[1]
    q = n // 4
    parts = _cascade(x[:, :q * 4].reshape(x.shape[:1] + (q, 4) + x.shape[2:]))
    # The leftover elements go into the first cascade, then the other three are added.
    return _add_in_order(_add_in_order(parts[:, 0], x[:, q * 4:]), parts[:, 1:])


def _add_in_order(acc: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """acc + terms[:, 0] + terms[:, 1] + ..., left to right (terms: axis 1, at most a few)."""
    acc = acc.copy()
    for j in range(terms.shape[1]):
        acc += terms[:, j]
    return acc


def _inner(rows: np.ndarray) -> np.ndarray:
    """Sum of each row of a C-contiguous (B, n) array (contiguous inner reduction)."""
    b, n = rows.shape
    vec = REDUCE_VECTOR_BYTES // rows.dtype.itemsize
    if n < vec:
        return _row_sum(rows)
    nvec = n // vec
    lanes = _row_sum(rows[:, :nvec * vec].reshape(b, nvec, vec))
    # 0, the leftover elements, then the lanes in order.
    return _seq(np.concatenate([rows[:, nvec * vec:], lanes], axis=1), 1)


def _outer(x: np.ndarray, contiguous: bool) -> np.ndarray:
    """Sum over axis 1 of (A, R, C) (outer reduction; columns C, contiguous in memory or not)."""
    cols = x.shape[2]
    vec = REDUCE_VECTOR_BYTES // x.dtype.itemsize
    group = 4 * vec if contiguous and cols >= vec else 4
    g = cols // group * group
    out = np.empty((x.shape[0], cols), x.dtype)
    if g:
        out[:, :g] = _cascade(x[:, :, :g])
    if g < cols:  # (no empty cascades: they cost as many numpy calls as full ones)
        out[:, g:] = _row_sum(x[:, :, g:])
    return out


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    """at::parallel_for's ranges: min(parts, n) chunks of ceil(n / chunks)."""
    chunk = -(-n // parts)
    return [(b, min(n, b + chunk)) for b in range(0, n, chunk)]


def _rows(rows: np.ndarray) -> np.ndarray:
    """One loop call's rows (B, n), each summed: vectorised if contiguous and long enough."""
    vec = REDUCE_VECTOR_BYTES // rows.dtype.itemsize
    contiguous = rows.strides[1] == rows.dtype.itemsize
    return _inner(rows) if contiguous and rows.shape[1] >= vec else _row_sum(rows)


def _range_sum(rows: np.ndarray, begin: int, end: int) -> np.ndarray:
    """serial_for_each over flat elements [begin, end) of (R, n) rows, all reduced into one
    value: a partial first row, whole rows, a partial last row, each row's sum added in turn."""
    n = rows.shape[1]
    parts = []
    r, c = divmod(begin, n)
    if c:
        stop = min(n, c + end - begin)
        parts.append(_rows(rows[r:r + 1, c:stop]))
        begin, r = begin + stop - c, r + 1
    whole = (end - begin) // n
    if whole:
        parts.append(_rows(rows[r:r + whole]))
        begin, r = begin + whole * n, r + whole
    if begin < end:
        parts.append(_rows(rows[r:r + 1, :end - begin]))
    return _seq(np.concatenate(parts).reshape(1, -1), 1)[0]


def _full(rows: np.ndarray, threads: int) -> np.ndarray:
    """A reduction to one value of the iterator's (R, n) rows (R > 1: dims that don't merge)."""
    n = rows.size
    if n < GRAIN_SIZE or threads == 1:
        return _range_sum(rows, 0, n)
    # two_pass_reduction: one range of elements per thread into a buffer of `threads` zeros,
    # then a sum of the buffer (a small contiguous reduction of its own).
    # The ranges are independent: they run at once on the engine's threads (`parallel`), each
    # with its own scratch, and their sums go into the buffer in order as torch's do.
    buffer = np.zeros(threads, rows.dtype)
    used = min(threads, -(-n // GRAIN_SIZE))
    if rows.shape[0] == 1 and n % used == 0 and (n < SPLIT_SUM or parallel.threads() < 2):
        # one contiguous row cut in equal ranges: summed as the rows of one (used, n / used)
        # array, each row on its own (the same additions), in one pass of numpy calls
        sums = list(_rows(rows.reshape(used, n // used)))
    else:
        sums = parallel.run_jobs([partial(_range_sum, rows, b, e) for b, e in _split(n, used)])
    for t, part in enumerate(sums):
        buffer[t] += part
    return _range_sum(buffer.reshape(1, threads), 0, threads)


def _split_dim(sizes: Sequence[int], threads: int) -> int:
    """find_split_dim over the kept dims of the iterator (innermost first)."""
    best = len(sizes) - 1
    for d in range(len(sizes) - 1, -1, -1):
        if sizes[d] >= threads:
            return d
        if sizes[d] > sizes[best]:
            best = d
    return best


def torch_sum(x: np.ndarray, axes: Sequence[int] | None = None, keepdims: bool = False,
              threads: int | None = None) -> np.ndarray:
    """`torch.sum(x, dim=axes, keepdim=keepdims)` of a float32/float64 array, bit for bit.

    The array's strides are taken as the tensor's: a transposed or sliced view is walked as
    torch's TensorIterator walks the same view (reduced dims first, innermost in memory first;
    then the kept dims, last first; adjacent dims merged where memory allows).

    Args:
        x: the array (float32 or float64), any positive strides (others are summed as their
            C-order copy, as torch would sum a flipped tensor's copy).
        axes: the reduced axes, non-negative (None: all).
        keepdims: keep the reduced axes as size 1.
        threads: torch's intra-op thread count to reproduce (default: `THREADS`).

    Returns:
        The sum, an array of x's dtype (0-dim for a full reduction without keepdims).
    """
    threads = THREADS if threads is None else threads
    nd = x.ndim
    red, final_shape, it, perm, view_shape, view_strides = iterator_layout(x, axes, keepdims)
    zero = x.dtype.type(0)
    if x.size == 0:
        return np.zeros(final_shape, x.dtype)
    if x.size <= SMALL_SUM and x.flags.c_contiguous:
        # A few elements (a bias's gradient, a small loss): the same additions on numpy
        # scalars, which cost less than the vector path's few dozen numpy calls. A C-ordered
        # array is reduced over all its dims but size-1 ones (one row, as the iterator merges
        # them), or over its last dims (one row per kept element).
        if all(d in red for d in range(nd) if x.shape[d] > 1):
            n = x.size
        elif nd - 1 in red and red == set(range(min(red), nd)):
            n = _prod(x.shape, red)
        else:
            n = 0
        if n > 1:  # (one element: nothing is reduced, below)
            vec = REDUCE_VECTOR_BYTES // x.dtype.itemsize
            rows = x.reshape(-1, n)
            sums = [_small_row(r, vec) + zero for r in rows]
            return np.array(sums, x.dtype).reshape(final_shape)
    if any(x.strides[d] <= 0 for d in range(nd) if x.shape[d] > 1):
        x = np.ascontiguousarray(x)
        it = None  # the copy's strides are other
    if x.flags.c_contiguous and (x.size < GRAIN_SIZE or threads == 1) and (
            len(red) == nd or (nd - 1 in red and red == set(range(min(red), nd)))):
        # The common cases, short-cut: a contiguous tensor summed whole or over its last dims.
        n = x.size if len(red) == nd else _prod(x.shape, red)
        if n > 1:
            return (_rows(x.reshape(-1, n)) + zero).reshape(final_shape)
    if it is None:  # (the layout of x before the copy above)
        red, final_shape, it, perm, view_shape, view_strides = _layout(
            x.shape, x.strides, x.dtype.itemsize, None if axes is None else tuple(axes), keepdims)
    p = sum(1 for d in it if d[3])
    if not p:  # nothing really reduced: torch adds each element to a zero
        return (x + zero).reshape(final_shape)
    item = x.dtype.itemsize
    vec = REDUCE_VECTOR_BYTES // item
    # the iterator's dims as a view of x: its dims permuted and merged (a reshape of merged
    # dims is a view with the merged strides; as_strided, some times slower, where it is not)
    view = iterator_view(x, (red, final_shape, it, perm, view_shape, view_strides))
    (size0, in0, _, _) = it[0]
    if p == len(it):  # no kept dims: one output value
        return np.asarray(_full(view.reshape(-1, size0), threads) + zero).reshape(final_shape)
    (size1, in1, _, _) = it[1]
    lead = view.shape[:-2]
    if (in0 == item and size0 >= vec) or (in0 < in1 and not (in1 == item and size1 >= vec)):
        # vectorized_inner_sum or scalar_inner_sum: one result per row of dim 0.
        rows = view.reshape(-1, size0)
        res = (_inner(rows) if in0 == item and size0 >= vec else _row_sum(rows))
    else:
        # vectorized_outer_sum or scalar_outer_sum: dim 1 is kept, its columns summed together.
        cols = np.swapaxes(view, -1, -2).reshape(-1, size0, size1)
        res = np.empty((cols.shape[0], size1), x.dtype)
        kept_sizes = [d[0] for d in it[1:]]  # iterator order, all kept (p == 1)
        if x.size >= GRAIN_SIZE and threads > 1 and _split_dim(kept_sizes, threads) == 0:
            # parallel_dim_reduction splits these columns; contiguous ones are rounded to
            # whole 128-byte lines (the last range keeps its end).
            line = 128 // item if in1 == item else 1
            for b, e in _split(size1, min(threads, size1)):
                b, e = b - b % line, (e if e == size1 else e - e % line)
                if b < e:
                    res[:, b:e] = _outer(cols[:, :, b:e], in1 == item)
        else:
            res = _outer(cols, in1 == item)
    res = res.reshape(lead + (size1,))
    if p > 1:
        # Dims 1..p-1 are reduced too: their row sums go into the output one after another,
        # dim 1 fastest (the last axes of `res`).
        kn = int(np.prod(res.shape[:res.ndim - (p - 1)]))
        res = _seq(res.reshape(kn, -1), 1)
    return (res + zero).reshape(final_shape)


# At most this many elements, a C-ordered sum runs `_small_row` (numpy scalars): ~80 ns an
# addition, against ~1 us a numpy call of the vector path (some 30 calls for any small sum).
SMALL_SUM = 64


def _small_row(row: np.ndarray, vec: int) -> Any:
    """`_rows` of one contiguous 1-D row of fewer than 64 vectors (so every cascade is one
    sequential level): the same additions in the same order, as a few vector additions and
    numpy scalars. The zeros the vector path starts its sums from are left out: adding +0
    changes nothing but a -0, and the caller's final `+ 0` makes every zero sum +0 anyway."""
    if row.size < vec:
        items: Any = list(row)  # one lane
        lanes: Any = [_small_row_sum(items)]
        tail: list[Any] = []
    else:
        nvec = row.size // vec
        lanes = list(_small_row_sum(row[:nvec * vec].reshape(nvec, vec)))
        tail = list(row[nvec * vec:])
    rest = tail + lanes  # `_inner`: the leftover elements, then the lanes in order
    total = rest[0]
    for t in rest[1:]:
        total = total + t
    return total


def _small_row_sum(items: Any) -> Any:
    """`_row_sum` of fewer than 64 items (numpy scalars, or a 2-D array's rows of lanes):
    four sequential sums of every fourth item, the leftover items added to the first, then
    the other three (with fewer than four items, no sums: the leftovers in order)."""
    q = len(items) // 4
    if not q:
        acc = items[0]
        for item in items[1:]:
            acc = acc + item
        return acc
    parts = []
    for k in range(4):
        part = items[k]
        for i in range(4 + k, 4 * q, 4):
            part = part + items[i]
        parts.append(part)
    acc = parts[0]
    for item in items[4 * q:]:
        acc = acc + item
    for part in parts[1:]:
        acc = acc + part
    return acc


def _prod(shape: Sequence[int], axes: set[int]) -> int:
    n = 1
    for a in axes:
        n *= shape[a]
    return n


# torch_sum's layouts (`_layout`) by (shape, strides, itemsize, axes, keepdims): at most
# MAX_LAYOUTS (then it starts over), so shapes from the wire cannot grow it.
_LAYOUTS: dict[tuple[Any, ...], tuple[Any, ...]] = {}
MAX_LAYOUTS = 512


def iterator_layout(x: np.ndarray, axes: Sequence[int] | None,
                    keepdims: bool) -> tuple[Any, ...]:
    """`_layout` of x's shape and strides for reducing `axes` (None: all), remembered in
    `_LAYOUTS`: (reduced dims, result shape, the iterator's dims, and the permutation, shape and
    strides that view x as the iterator's dims, outermost first)."""
    key = (x.shape, x.strides, x.dtype.itemsize, None if axes is None else tuple(axes), keepdims)
    layout = _LAYOUTS.get(key)
    if layout is None:
        layout = _layout(*key)
        if len(_LAYOUTS) >= MAX_LAYOUTS:
            _LAYOUTS.clear()
        _LAYOUTS[key] = layout
    return layout


def iterator_view(x: np.ndarray, layout: tuple[Any, ...]) -> np.ndarray:
    """x as the iterator's dims of `layout` (`iterator_layout`), outermost first: its dims
    permuted and merged (a reshape where that is a view, else as_strided)."""
    perm, view_shape, view_strides = layout[3:]
    view = x.transpose(perm).reshape(view_shape)
    if view.strides != view_strides:
        view = np.lib.stride_tricks.as_strided(x, shape=view_shape, strides=view_strides,
                                               writeable=False)
    return view


def _layout(shape: tuple[int, ...], strides: tuple[int, ...], itemsize: int,
            axes: tuple[int, ...] | None, keepdims: bool) -> tuple[Any, ...]:
    """What `torch_sum` works out from an array's layout alone, before reading any data:
    (reduced dims, result shape, the iterator's dims (`_dims`), and the permutation of x's
    dims and the shape and strides that make those dims a view of x)."""
    nd = len(shape)
    red = set(range(nd)) if axes is None else set(axes)
    final_shape = tuple(1 if i in red else s for i, s in enumerate(shape)) if keepdims else \
        tuple(s for i, s in enumerate(shape) if i not in red)
    it, groups = _dims(shape, strides, itemsize, red)
    # the view lists the iterator's dims outermost first; a merged dim's own dims outer first
    perm = [d for d in range(nd) if shape[d] <= 1]
    for group in reversed(groups):
        perm.extend(reversed(group))
    return (red, final_shape, tuple(tuple(d) for d in it), tuple(perm),
            tuple(d[0] for d in reversed(it)), tuple(d[1] for d in reversed(it)))


def _dims(shape: tuple[int, ...], strides: tuple[int, ...], itemsize: int,
          red: set[int]) -> tuple[list[list[Any]], list[list[int]]]:
    """TensorIterator's dims for reducing `red` of an array of this layout: [size, input
    stride, output stride, reduced], dim 0 first (innermost), size-1 dims dropped, mergeable
    neighbours merged; and the array's dims each of them merges (innermost first)."""
    out_stride: dict[int, int] = {}
    acc = itemsize
    for d in reversed(range(len(shape))):
        out_stride[d] = 0 if d in red else acc
        acc *= 1 if d in red else shape[d]
    real = [d for d in range(len(shape)) if shape[d] > 1]
    # reorder_dimensions: reduced dims to the front, by input stride; kept ones by the
    # (C-contiguous) output's stride.
    order = sorted((d for d in real if d in red), key=lambda d: (strides[d], -d))
    order += sorted((d for d in real if d not in red), reverse=True)
    dims: list[list[Any]] = []
    groups: list[list[int]] = []
    for d in order:
        size, s_in, s_out = shape[d], strides[d], out_stride[d]
        if dims and dims[-1][1] * dims[-1][0] == s_in and dims[-1][2] * dims[-1][0] == s_out:
            dims[-1][0] *= size  # coalesce_dimensions
            groups[-1].append(d)
        else:
            dims.append([size, s_in, s_out, d in red])
            groups.append([d])
    return dims, groups


def nll_sum(values: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """The sum nll_loss's CPU kernel makes of per-element `values` (1-D, in target order) where
    `valid` (not ignore_index), bit for bit: one pass with 8 cascade levels of 16 (or more)
    elements, a level flushed after element b when b is a multiple of its span — skipped with an
    ignored b — and the levels added last, lowest first.

    Args:
        values: the per-element terms (-input[b, target[b]] * weight), any for ignored ones.
        valid: which elements count (None: all of them).

    Returns:
        The 0-dim sum, in values' dtype.
    """
    n = values.size
    power = max(4, (n - 1).bit_length() // 8) if n > 1 else 4
    if valid is None and n <= 1 << 7 * power:
        return _nll_sum_dense(values.reshape(-1), power)
    if valid is None:
        valid = np.ones(n, bool)
    if n <= _NLL_LOOP_MAX:
        return _nll_sum_loop(values, valid, power)
    index = np.nonzero(valid)[0]
    entries = values[index]
    # Element 0 flushes through every level at once: it is the top level's first term.
    top = [entries[:1]] if index.size and index[0] == 0 else []
    entries, index = (entries[1:], index[1:]) if top else (entries, index)
    total = np.zeros((), values.dtype)
    for level in range(7):
        if not entries.size:
            break
        closes = index % (1 << (power * (level + 1))) == 0
        ends = np.nonzero(closes)[0]
        last = int(ends[-1]) + 1 if ends.size else 0
        if last < entries.size:  # this level's unflushed partial sum, added at the end
            total += _seq(entries[last:].reshape(1, -1), 1)[0]
        if not last:
            entries = entries[:0]
            break
        # Segments end at each closing entry; their sums are the next level's entries.
        starts = np.concatenate([[0], ends[:-1] + 1])
        pos = np.arange(last) - np.repeat(starts, ends - starts + 1)
        padded = np.zeros((ends.size, int(pos.max()) + 1), values.dtype)
        padded[np.repeat(np.arange(ends.size), ends - starts + 1), pos] = entries[:last]
        entries, index = _seq(padded, 1), index[ends]
    top.append(entries)
    total += _seq(np.concatenate(top).reshape(1, -1), 1)[0]
    return total


# Up to this many elements `nll_sum` runs the kernel's own loop on numpy scalars (about 0.25 us
# an element; the vectorised levels cost some 40 numpy calls whatever the size).
_NLL_LOOP_MAX = 128


def _nll_sum_loop(values: np.ndarray, valid: np.ndarray, power: int) -> np.ndarray:
    """`nll_sum` as torch's kernel runs it: each valid element into level 0, then while the
    element's index has `power` zero bits at level j, level j flushed into level j + 1; the
    8 levels added from 0, lowest first (every sum in values' dtype: numpy scalars)."""
    zero = values.dtype.type(0)
    sums = [zero] * 8
    items = values.reshape(-1)
    low = (1 << power) - 1
    for b in np.flatnonzero(valid).tolist():
        sums[0] = sums[0] + items[b]
        j = 0
        while j < 7 and not (b >> (power * j)) & low:
            sums[j + 1] = sums[j + 1] + sums[j]
            sums[j] = zero
            j += 1
    total = zero
    for part in sums:
        total = total + part
    return np.asarray(total)


def _nll_sum_dense(items: np.ndarray, power: int) -> np.ndarray:
    """`nll_sum` with every element valid, as the kernel's loop adds (`_nll_sum_loop`), a level
    at a time. Element 0 goes through every level to the top. Level 0 is fed the other
    elements in order and flushed after each run of 2**power of them; each level is fed the
    runs' sums of the level below, in order, and flushed likewise; what a level holds at the
    end (fewer than a run) is its partial sum. A run's sum is taken in order (`_seq`) where the
    loop starts it from +0, which changes nothing but a zero's sign, and every sum is added to a
    +0 sum before it counts, which settles that. At most 2**(7 * power) elements (level 6 is
    never flushed into the top)."""
    zero = items.dtype.type(0)
    if not items.size:
        return np.asarray(zero)
    top = zero + items[0]
    step = 1 << power
    fed = items[1:]
    partials = []
    for _ in range(7):
        closed = fed.size // step
        partial = zero
        for item in fed[closed * step:]:  # fewer than a run
            partial = partial + item
        partials.append(partial)
        if not closed:
            break
        fed = _seq(fed[:closed * step].reshape(closed, step), 1)
    # the 8 levels added from 0: the partial sums, the empty levels above them, the top
    total = zero
    for partial in partials:
        total = total + partial
    for _ in range(7 - len(partials)):
        total = total + zero
    return np.asarray(total + top)


def float_sum(x: np.ndarray, axes: Sequence[int] | None = None,
              keepdims: bool = False) -> np.ndarray:
    """torch's CPU sum of a float array over `axes` (None: all), bit for bit: its cascade order,
    not numpy's pairwise one. Integral arrays sum with numpy (exact)."""
    if x.dtype.kind == "f":
        return torch_sum(x, axes, keepdims)
    return np.sum(x, axis=None if axes is None else tuple(axes), keepdims=keepdims)
