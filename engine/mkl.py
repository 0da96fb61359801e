"""Intel MKL through ctypes, when installed: the library torch 2.13's CPU float kernels call.

torch 2.13's wheels link MKL 2024.2 statically and send float32/float64 matrix products to its
`sgemm`/`dgemm` and some unary functions to its VML (`vmsExp`, ...). Calling the same library
with the same arguments gives the same bits, at BLAS speed, which numpy's OpenBLAS and numpy's
own transcendental functions do not. The `mkl` extra (`pip install gradserve[mkl]`, the
`mkl==2024.2.0` wheel) puts `libmkl_rt.so.2` in the environment's `lib/`; this module finds it
there without importing anything heavy, or where `GRADSERVE_MKL` points (a path to a
`libmkl_rt`), and `GRADSERVE_MKL=0` turns it off. Without it every caller keeps its numpy path
(engine/gemm.py's emulated order, numpy's functions).

How it is set up, as torch sets up its copy: MKL's GNU OpenMP threading layer (torch is built
with GNU OpenMP) with torch's intra-op thread count (`cascade.THREADS`), the conditional
reproducibility mode left at MKL's default (torch does not set it), and MKL's buffer cache
turned off (`mkl_disable_fast_mm`) so the workspace a product allocates is freed when it
returns rather than kept per thread. GNU OpenMP does not survive a fork once its threads have
run: a child forked after MKL was used does not call it again (it falls back to numpy).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import sysconfig
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from . import cascade, parallel

log = logging.getLogger(__name__)

WANTED_VERSION = "2024.2"  # the MKL torch 2.13.0's CPU wheels are built with
_NAMES = ("libmkl_rt.so.2", "libmkl_rt.so")  # the wheel's (Linux x86-64, the extra's marker)
_THREADING_GNU, _THREADING_SEQUENTIAL = 3, 1  # MKL_THREADING_GNU, MKL_THREADING_SEQUENTIAL
# at::vml's mode: high accuracy, denormals kept, errors ignored (no errno, no callbacks)
VML_MODE = 0x2 | 0x140000 | 0x100

_P = ctypes.c_void_p
_lock = threading.Lock()


def _data_field() -> int | None:
    """The offset, in an ndarray object, of its data pointer (PyArrayObject's first field after
    the object header), found and checked on probe arrays; None when no offset fits them all."""
    probes = [np.arange(3, dtype=np.float32), np.ones((4, 6))[1:, ::2], np.zeros((5, 2)).T]
    for offset in range(8, 80, 8):
        if all(_P.from_address(id(a) + offset).value == a.ctypes.data for a in probes):
            return offset
    return None


_DATA_FIELD = _data_field()


def _pointer(a: np.ndarray) -> Any:
    """`a`'s data pointer as a ctypes argument: read in place from the array object (`ctypes.data`
    costs some 4 us a call, more than a small product's BLAS call); valid while `a` lives."""
    if _DATA_FIELD is not None and type(a) is np.ndarray:
        return _P.from_address(id(a) + _DATA_FIELD)
    return _P(a.ctypes.data)
_lib: Any = None
_reason = "not loaded yet"
_loaded = False
_used = False  # MKL ran a function in this process (its OpenMP threads may exist)


def _candidates() -> list[str]:
    """Where the `mkl` wheel puts its libraries: the environment's data dir's `lib/`."""
    dirs = []
    for prefix in (sysconfig.get_paths().get("data"), sys.prefix, sys.base_prefix,
                   sysconfig.get_config_var("userbase")):
        if prefix and os.path.join(prefix, "lib") not in dirs:
            dirs.append(os.path.join(prefix, "lib"))
    return [os.path.join(d, name) for d in dirs for name in _NAMES]


def _open(path: str) -> Any:
    """Load libmkl_rt at `path`, pick its threading layer and thread count, check its version."""
    threads = cascade.THREADS
    layer = _THREADING_SEQUENTIAL
    if threads > 1:
        try:  # MKL's GNU layer leaves the GOMP symbols to the process: they must be global
            ctypes.CDLL("libgomp.so.1", mode=ctypes.RTLD_GLOBAL)
            layer = _THREADING_GNU
        except OSError:
            log.info("libgomp.so.1 not found: MKL runs sequentially (torch uses %d threads, "
                     "so products split over threads may round differently)", threads)
    lib = ctypes.CDLL(path)
    lib.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
    lib.MKL_Set_Threading_Layer(layer)
    buf = ctypes.create_string_buffer(256)
    lib.MKL_Get_Version_String.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.MKL_Get_Version_String(buf, len(buf))
    version = buf.value.decode("ascii", "replace")
    if f"Version {WANTED_VERSION}-" not in version:
        raise OSError(f"{path} is {version!r}; torch 2.13 rounds as MKL {WANTED_VERSION}")
    lib.MKL_Set_Num_Threads.argtypes = [ctypes.c_int]
    lib.MKL_Set_Num_Threads(threads)
    lib.MKL_Set_Num_Threads_Local.restype = ctypes.c_int
    lib.mkl_disable_fast_mm.restype = ctypes.c_int
    lib.mkl_disable_fast_mm()
    for name in ("sgemm", "dgemm"):
        getattr(lib, name).restype = None
    return lib


def _load() -> None:
    global _loaded
    try:
        _find_and_open()
    finally:  # only now: a thread that reads `_loaded` without the lock sees `_lib` set
        _loaded = True


def _find_and_open() -> None:
    global _lib, _reason
    setting = os.environ.get("GRADSERVE_MKL", "").strip()
    if setting.lower() in ("0", "off", "false", "no"):
        _reason = "turned off by GRADSERVE_MKL"
        return
    paths = [setting] if setting else [p for p in _candidates() if os.path.exists(p)]
    if not paths:
        _reason = "no libmkl_rt in this environment (pip install gradserve[mkl])"
        return
    try:
        _lib = _open(paths[0])
    except (OSError, AttributeError) as exc:
        _reason = f"MKL at {paths[0]} not usable: {exc}"
        log.warning("%s; using numpy's products and functions", _reason)
        return
    _reason = f"MKL at {paths[0]}"


def library() -> Any:
    """The loaded libmkl_rt (a ctypes library), or None when MKL is absent or turned off."""
    if not _loaded:
        with _lock:
            if not _loaded:
                _load()
    return _lib


def available() -> bool:
    """Whether MKL is loaded and the engine's float products and functions go through it."""
    return library() is not None


def status() -> str:
    """One line saying which MKL the engine uses, or why none."""
    lib = library()
    if lib is None:
        return f"MKL off: {_reason}"
    return f"{_reason}, {lib.MKL_Get_Max_Threads()} threads"


class turned_off:  # noqa: N801 - used as a function: `with turned_off():`
    """Run the enclosed code as if MKL were absent (the numpy paths), in every thread.

    For tests and benchmarks of the fallback; not thread-safe against a concurrent
    `turned_off` in another thread.
    """

    def __enter__(self) -> None:
        global _lib
        library()
        self._prev = _lib
        _lib = None

    def __exit__(self, *exc: object) -> None:
        global _lib
        _lib = self._prev


def _forget_after_fork() -> None:
    """In a forked child: GNU OpenMP's threads did not come along, so MKL must not run."""
    global _lib, _reason
    if _used and _lib is not None:
        _lib, _reason = None, "off in a process forked after MKL ran (GNU OpenMP)"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


# --- BLAS -----------------------------------------------------------------------------------------

_GEMM = {np.dtype(np.float32): ("sgemm", ctypes.c_float),
         np.dtype(np.float64): ("dgemm", ctypes.c_double)}


def gemm(transa: bool, transb: bool, m: int, n: int, k: int, alpha: float, a: np.ndarray,
         lda: int, b: np.ndarray, ldb: int, beta: float, c: np.ndarray, ldc: int) -> None:
    """Fortran (column-major) `?gemm`: c = alpha * op(a) @ op(b) + beta * c, in place.

    The pointers are the arrays' first elements; the leading dimensions say how they are laid
    out (the caller checks them, as BLAS requires). A small product whose call rounds the same
    on the calling thread alone runs there (`_serial_is_exact`). Call only when `available()`.
    """
    global _used
    key = (c.dtype.char, transa, transb, m, n, k, alpha, lda, ldb, beta, ldc)
    args = _gemm_args.get(key)
    if args is None or args[0] is not _lib:
        args = _gemm_arguments(c.dtype, transa, transb, m, n, k, alpha, lda, ldb, beta, ldc)
        if len(_gemm_args) >= _MAX_GEMM_ARGS:
            _gemm_args.clear()
        _gemm_args[key] = args
    _, fn, serial, ta, tb, bm, bn, bk, al, la, lb, be, lc = args
    _used = True
    if serial:
        _alone(fn, ta, tb, bm, bn, bk, al, _pointer(a), la, _pointer(b), lb, be, _pointer(c), lc)
    else:
        fn(ta, tb, bm, bn, bk, al, _pointer(a), la, _pointer(b), lb, be, _pointer(c), lc)


# `gemm`'s by-reference arguments but the three pointers, per call signature (a product of
# one layout repeats them), and whether it runs on the calling thread alone: the ctypes objects
# are made once and only read by BLAS. At most _MAX_GEMM_ARGS entries (then it starts over).
_gemm_args: dict[tuple[Any, ...], tuple[Any, ...]] = {}
_MAX_GEMM_ARGS = 256

# Products of at most this many multiply-adds (64 x 784 x 256 is 12.8M; ~0.3 ms on one core)
# run on the calling thread when that rounds as MKL's threaded call does: waking MKL's OpenMP
# threads for them saves at best half of that, and on a loaded machine their barrier spins and
# waits for a descheduled thread cost far more (an MLP step of batch 64: 1.5 ms of the calling
# thread's CPU alone against 7.5-19 ms with two threads, load ~8).
SERIAL_WORK = 1 << 24


def _gemm_arguments(dtype: np.dtype, transa: bool, transb: bool, m: int, n: int, k: int,
                    alpha: float, lda: int, ldb: int, beta: float, ldc: int) -> tuple[Any, ...]:
    name, scalar = _GEMM[dtype]
    i, ref = ctypes.c_int, ctypes.byref
    args = (ref(ctypes.c_char(b"T" if transa else b"N")),
            ref(ctypes.c_char(b"T" if transb else b"N")), ref(i(m)), ref(i(n)), ref(i(k)),
            ref(scalar(alpha)), ref(i(lda)), ref(i(ldb)), ref(scalar(beta)), ref(i(ldc)))
    fn = getattr(_lib, name)
    serial = m * n * k <= SERIAL_WORK and _serial_is_exact(fn, dtype, args, transa, transb,
                                                           m, n, k, lda, ldb, ldc)
    return (_lib, fn, serial, *args)


def _set_local_threads(threads: int) -> int:
    """MKL's thread count for the calling thread only (0: the global one); the previous one."""
    return _lib.MKL_Set_Num_Threads_Local(threads)  # type: ignore[no-any-return]


def _alone(fn: Any, *args: Any) -> None:
    """`fn(*args)` with MKL's threads set to one for this call on the calling thread."""
    local = _set_local_threads(1)
    try:
        fn(*args)
    finally:
        _set_local_threads(local)


# the probes of `_serial_is_exact`: each value a normal times 2**e, e in [-8, 8) (mixed scales,
# so that adding in another order almost surely changes some bit of some element); at least
# _PROBES, and as many as compare PROBED_RESULTS result elements in all: one element adds in
# another order to the same bits often (a 1 x 300 @ 300 x 1 float32 product with beta 1: 16% of
# draws on a Xeon with AVX512, where MKL's two threads split k), and two probes of it passed
# that shape to the calling thread, one ulp off torch's
_PROBES = 2
PROBED_RESULTS = 256
# At most this many elements in the three probe operands (float64: ~4 MiB, ~8 MiB at the peak
# with the random draws' temporaries; once per call signature). 64 x 784 x 256 takes 267K.
PROBE_ELEMENTS = 1 << 19


def _serial_is_exact(fn: Any, dtype: np.dtype, args: tuple[Any, ...], transa: bool,
                     transb: bool, m: int, n: int, k: int, lda: int, ldb: int,
                     ldc: int) -> bool:
    """Whether this `?gemm` call (its `args` but the pointers) gives the same bits on the
    calling thread alone as with MKL's threads, on random probe operands of its layout.

    MKL picks its kernel by its thread count even for products it then runs on one thread
    (measured with MKL 2024.2 on an AVX512 CPU: float32 products of 5-7 or 9-11 result rows and
    15+ columns, float64 ones up to 64 rows, round differently), so this is asked of MKL, once
    per call signature, and not assumed from the shape. torch calls MKL with its threads.
    Operands spread wider than `PROBE_ELEMENTS` in all (long leading dimensions) are not
    probed: their products keep MKL's threads.
    """
    sizes = (lda * (m if transa else k), ldb * (k if transb else n), ldc * n)
    if _lib.MKL_Get_Max_Threads() <= 1 or sum(sizes) > PROBE_ELEMENTS:
        return False  # one thread already: nothing to choose; or too wide to probe
    rng = np.random.default_rng(m * 1_000_003 + n * 1009 + k)
    ta, tb, bm, bn, bk, al, la, lb, be, lc = args
    # enough probes to compare PROBED_RESULTS result elements, within PROBE_ELEMENTS in all
    probes = max(_PROBES, min(-(-PROBED_RESULTS // (m * n)), PROBE_ELEMENTS // sum(sizes)))
    for _ in range(probes):
        a, b, c = (np.ldexp(rng.standard_normal(size, dtype),
                            rng.integers(-8, 8, size, np.int32)) for size in sizes)
        threaded, alone = c.copy(), c.copy()
        fn(ta, tb, bm, bn, bk, al, _pointer(a), la, _pointer(b), lb, be, _pointer(threaded), lc)
        _alone(fn, ta, tb, bm, bn, bk, al, _pointer(a), la, _pointer(b), lb, be, _pointer(alone),
               lc)
        if threaded.tobytes() != alone.tobytes():
            return False
    return True


def gemm_batch_rowmajor(transa: bool, transb: bool, m: int, n: int, k: int, a: np.ndarray,
                        stride_a: int, lda: int, b: np.ndarray, stride_b: int, ldb: int,
                        c: np.ndarray) -> None:
    """Row-major `cblas_?gemm_batch` (one group): c[i] = op(a[i]) @ op(b[i]) for a C-contiguous
    (batch, m, n) `c`, the i-th matrices `stride_a`/`stride_b` elements apart (torch's
    `_baddbmm_mkl_` for bmm; a batch of one is a plain `cblas_?gemm`). Call only when
    `available()`."""
    global _used
    name, scalar = _GEMM[c.dtype]
    batch = c.shape[0]
    size = c.itemsize
    trans = ctypes.c_int(112 if transa else 111), ctypes.c_int(112 if transb else 111)
    _used = True
    if batch == 1:
        getattr(_lib, "cblas_" + name)(
            ctypes.c_int(101), trans[0], trans[1], ctypes.c_int(m), ctypes.c_int(n),
            ctypes.c_int(k), scalar(1.0), _P(a.ctypes.data), ctypes.c_int(lda),
            _P(b.ctypes.data), ctypes.c_int(ldb), scalar(0.0), _P(c.ctypes.data),
            ctypes.c_int(n))
        return
    pointers = ctypes.c_void_p * batch
    pa = pointers(*(a.ctypes.data + i * stride_a * size for i in range(batch)))
    pb = pointers(*(b.ctypes.data + i * stride_b * size for i in range(batch)))
    pc = pointers(*(c.ctypes.data + i * m * n * size for i in range(batch)))
    i = ctypes.c_int
    getattr(_lib, f"cblas_{name}_batch")(
        i(101), ctypes.byref(trans[0]), ctypes.byref(trans[1]), ctypes.byref(i(m)),
        ctypes.byref(i(n)), ctypes.byref(i(k)), ctypes.byref(scalar(1.0)), pa,
        ctypes.byref(i(lda)), pb, ctypes.byref(i(ldb)), ctypes.byref(scalar(0.0)), pc,
        ctypes.byref(i(n)), i(1), ctypes.byref(i(batch)))


def gemv(trans: bool, m: int, n: int, a: np.ndarray, lda: int, x: np.ndarray, incx: int,
         y: np.ndarray) -> None:
    """Fortran `?gemv` with alpha 1, beta 0: y = op(a) @ x into the contiguous `y` (torch's
    `cpublas::gemv` as addmv calls it). Call only when `available()`."""
    global _used
    name, scalar = {np.dtype(np.float32): ("sgemv", ctypes.c_float),
                    np.dtype(np.float64): ("dgemv", ctypes.c_double)}[y.dtype]
    _used = True
    i = ctypes.c_int
    fn = getattr(_lib, name)
    fn.restype = None
    fn(ctypes.byref(ctypes.c_char(b"T" if trans else b"N")), ctypes.byref(i(m)),
       ctypes.byref(i(n)), ctypes.byref(scalar(1.0)), _P(a.ctypes.data), ctypes.byref(i(lda)),
       _P(x.ctypes.data), ctypes.byref(i(incx)), ctypes.byref(scalar(0.0)), _P(y.ctypes.data),
       ctypes.byref(i(1)))


def dot(x: np.ndarray, incx: int, y: np.ndarray, incy: int) -> float:
    """Fortran `?dot` of x.size elements (torch's `dot_impl`). Call only when `available()`."""
    global _used
    name, scalar = {np.dtype(np.float32): ("sdot", ctypes.c_float),
                    np.dtype(np.float64): ("ddot", ctypes.c_double)}[x.dtype]
    _used = True
    fn = getattr(_lib, name)
    fn.restype = scalar
    i = ctypes.c_int
    return float(fn(ctypes.byref(i(x.shape[0])), _P(x.ctypes.data), ctypes.byref(i(incx)),
                    _P(y.ctypes.data), ctypes.byref(i(incy))))


# --- VML ------------------------------------------------------------------------------------------

_VML_PREFIX = {np.dtype(np.float32): "vms", np.dtype(np.float64): "vmd"}
_vml_cache: dict[str, Any] = {}
_INT_MAX = 2**31 - 1


# Calls of at most this many elements go through per-thread fixed buffers (`_small_buffers`).
_SMALL = 256
_tls = threading.local()


# VML functions as raw ctypes pointers (no argtypes: the small path passes ctypes objects)
_vml_raw: dict[tuple[str, np.dtype], Any] = {}
_MODE = ctypes.c_int64(VML_MODE)


def _small_buffers(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    """This thread's input and output buffers of `_SMALL` elements of `dtype`, with their
    addresses as ctypes pointers (made once per thread and dtype: 4 KiB at most)."""
    buffers = getattr(_tls, "buffers", None)
    if buffers is None:
        buffers = _tls.buffers = {}
    pair = buffers.get(dtype)
    if pair is None:
        src, dst = np.empty(_SMALL, dtype), np.empty(_SMALL, dtype)
        pair = buffers[dtype] = (src, dst, ctypes.c_void_p(src.ctypes.data),
                                 ctypes.c_void_p(dst.ctypes.data))
    return pair  # type: ignore[no-any-return]


_SCALARS = frozenset((np.float32, np.float64))
_ONE = ctypes.c_int(1)


def _scalar_entry(name: str, kind: type) -> tuple[Any, ...]:
    """This thread's (function, input buffer, output buffer, their addresses) for `_vml_scalar`
    of `name` on numpy scalars of type `kind`, made on the thread's first such call."""
    slots = getattr(_tls, "scalar", None)
    if slots is None:
        slots = _tls.scalar = {}
    dtype = np.dtype(kind)
    raw = _lib[_VML_PREFIX[dtype] + name]
    raw.restype = None
    src, dst = np.empty(1, dtype), np.empty(1, dtype)
    entry = slots[(name, kind)] = (raw, src, dst, ctypes.c_void_p(src.ctypes.data),
                                   ctypes.c_void_p(dst.ctypes.data))
    return entry


def _vml_scalar(name: str, x: Any) -> Any:
    """`vml(name, x)` for a numpy float32/float64 scalar (the engine's 0-d data), in ~1 us:
    this thread's one-element buffers and the raw function, found once per (name, type)."""
    global _used
    _used = True
    try:
        entry = _tls.scalar[name, type(x)]
    except (AttributeError, KeyError):  # this thread's first call of `name` for this type
        entry = _scalar_entry(name, type(x))
    raw, src, dst, src_at, dst_at = entry
    src[0] = x
    raw(_ONE, src_at, dst_at, _MODE)
    return dst[0]


def vml(name: str, x: np.ndarray) -> np.ndarray:
    """MKL VML's `name` (e.g. "Exp", "Ln") of float32/float64 `x` in at::vml's mode.

    Args:
        name: the VML function without its prefix.
        x: a float32 or float64 array, any strides (VML is elementwise: the layout does not
            change a value; a strided input is first copied into the result, then done in
            place, so nothing beyond the result is allocated).

    Returns:
        A new C-contiguous array of x's shape and dtype, or for a 0-d x a numpy scalar (as a
        ufunc returns; the engine keeps those smaller). Call only when `available()`.
    """
    global _used
    _used = True
    x = np.asarray(x)
    n = x.size
    if n <= _SMALL:
        # the common tiny call (a 0-d loss, a bias): this thread's two fixed buffers, whose
        # addresses are ready-made ctypes arguments, and the function without argtypes
        # (~0.7 us a call, against ~8 us asking numpy for the addresses each time)
        src, dst, src_at, dst_at = _small_buffers(x.dtype)
        raw = _vml_raw.get((name, x.dtype))
        if raw is None:
            raw = _vml_raw[(name, x.dtype)] = _lib[_VML_PREFIX[x.dtype] + name]
            raw.restype = None
        src[:n] = x.reshape(-1)
        raw(ctypes.c_int(n), src_at, dst_at, _MODE)
        return dst[:n].reshape(x.shape).copy() if x.ndim else dst[0]
    fn_name = _VML_PREFIX[x.dtype] + name
    fn = _vml_cache.get(fn_name)
    if fn is None:
        fn = getattr(_lib, fn_name)
        fn.argtypes = [ctypes.c_int, _P, _P, ctypes.c_int64]
        fn.restype = None
        _vml_cache[fn_name] = fn
    if x.flags.c_contiguous:
        src, out = x, np.empty(x.shape, x.dtype)
    else:
        src = out = np.array(x, order="C")
    step = _INT_MAX - _INT_MAX % 64  # MKL_INT is 32-bit: at::vml splits larger calls likewise
    if n <= step:  # one call: the pointers read from the array objects (`_pointer`)
        fn(n, _pointer(src), _pointer(out), VML_MODE)
        return out if out.ndim else out[()]
    flat_in, flat_out = src.reshape(-1), out.reshape(-1)
    for start in range(0, flat_in.size, step):
        part = flat_in[start:start + step]
        fn(part.size, part.ctypes.data, flat_out[start:].ctypes.data, VML_MODE)
    return out if out.ndim else out[()]


def unary(name: str, fallback: Callable[[np.ndarray], np.ndarray]
          ) -> Callable[[np.ndarray], np.ndarray]:
    """An op's forward: VML's `name` for float32/float64 when MKL is loaded, else `fallback`
    (a numpy ufunc split over threads when large: `parallel.call`).

    For the functions torch 2.13 sends to MKL's VML (at::vml's IMPLEMENT_VML_MKL list), whose
    results then equal torch's bit for bit (tests/test_engine_mkl.py).
    """
    ufunc = fallback if isinstance(fallback, np.ufunc) else None

    def forward(x: np.ndarray) -> np.ndarray:
        if _lib is not None or available():  # (loaded and on: no call, for every 0-d op)
            if type(x) in _SCALARS:  # a 0-d tensor's data
                return _vml_scalar(name, x)
            if x.dtype in _VML_PREFIX:
                return vml(name, x)
        # numpy's ufunc, split over the engine's threads when large, as a ufunc op's forward is
        return fallback(x) if ufunc is None else parallel.call(ufunc, x)
    forward.__name__ = getattr(fallback, "__name__", name.lower())
    forward.__doc__ = f"VML's {name} (torch's own) when MKL is loaded, else {forward.__name__}."
    return forward
