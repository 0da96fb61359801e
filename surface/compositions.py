"""torch functions that are compositions of existing ops, written once against a `Backend`
(gradserve.surface.backend), as torch's ATen composes them (aten/src/ATen/native): `diff`
(narrowed differences, `logical_xor` for bool), `tensordot` (permute, reshape, `mm`),
`block_diag` (a zeros result with each block copied into its slice: CopySlices),
`cartesian_prod` (meshgrid, flatten, stack), `tril_indices`/`triu_indices` (index data, no
graph), `trapezoid`/`trapz`, `flipud`/`fliplr` (a flip), `nanmean` (NaNs as zeros summed, over
the count of the others: DivBackward0) and `count_nonzero` (`ne` then `sum`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .backend import Backend
from .messages import TYPE_WORDS
from .spellings import SPELLINGS, Spelling, is_int, wrap_dim


def _register(name: str, needs: tuple[str, ...], fn: Callable[..., Any],
              method: bool = False) -> None:
    fn.__name__ = fn.__qualname__ = name
    SPELLINGS[name] = Spelling(name, needs, fn, fn if method else None)


# --- diff ----------------------------------------------------------------------------------------

def diff(be: Backend, input: Any, n: int = 1, dim: int = -1, prepend: Any = None,
         append: Any = None) -> Any:
    """torch.diff: the n-th forward difference along dim (prepend / append joined first)."""
    shape = be.shape(input)
    if len(shape) < 1:
        raise be.runtime_error("diff expects input to be at least one-dimensional")
    if n < 0:
        raise be.runtime_error(f"order must be non-negative but got {n}")
    d = wrap_dim(be, dim, len(shape))
    parts = []
    for other in (prepend, append):
        if other is None:
            continue
        oshape = be.shape(other)
        if len(oshape) != len(shape):
            raise be.runtime_error(
                "diff expects prepend or append to be the same dimension as input")
        for i, (a, b) in enumerate(zip(shape, oshape, strict=True)):
            if i != d and a != b:
                raise be.runtime_error(
                    "diff expects the shape of tensor to prepend or append to match that of "
                    f"input except along the differencing dimension; input.size({i}) = {a}, "
                    f"but got tensor.size({i}) = {b}")
    if n == 0:  # torch copies into zeros_like (CopyBackwards)
        return be.call("zeros_like", (input,), {}).copy_(input)
    if prepend is not None or append is not None:
        parts = [t for t in (prepend, input, append) if t is not None]
        input = be.call("cat", (parts,), {"dim": d})
    result = input
    length = be.shape(input)[d]
    out_len = length - 1
    boolean = be.dtype_name(input) == "bool"
    for _ in range(min(n, length)):
        hi, lo = result.narrow(d, 1, out_len), result.narrow(d, 0, out_len)
        result = be.call("logical_xor", (hi, lo), {}) if boolean else hi - lo
        out_len -= 1
    return result


_register("diff", ("sub", "cat", "zeros_like"), diff, method=True)


# --- tensordot -----------------------------------------------------------------------------------

def _dim_list(v: Any) -> list[int]:
    return [int(v)] if is_int(v) else [int(d) for d in v]


def tensordot(be: Backend, a: Any, b: Any, dims: Any = 2, out: Any = None) -> Any:
    """torch.tensordot: the sum over the paired dims `dims` of a and b (an int n: a's last n
    with b's first n)."""
    if out is not None:
        raise be.type_error("tensordot: out= is not supported by gradserve")
    if not (is_int(dims) or isinstance(dims, (tuple, list))):
        raise be.runtime_error("tensordot expects dims to be int or tuple[list[int], list[int]] "
                               f"or list[list[int]] containing two lists, but got dims={dims}")
    sa, sb = be.shape(a), be.shape(b)
    if is_int(dims):
        if dims < 0:
            raise be.runtime_error(f"tensordot expects dims >= 0, but got dims={dims}")
        if dims > min(len(sa), len(sb)):
            raise be.runtime_error(
                f"tensordot expects dims < ndim_a or ndim_b, but got dims={dims}")
        dims_a, dims_b = list(range(-dims, 0)), list(range(dims))
    else:
        dims_a, dims_b = (_dim_list(v) for v in dims)
    if len(dims_a) != len(dims_b):
        raise be.runtime_error("both dimension lists should have same length")
    dims_a = [wrap_dim(be, d, len(sa)) for d in dims_a]
    dims_b = [wrap_dim(be, d, len(sb)) for d in dims_b]
    t1, t2 = a, b
    csize = 1
    for da, db in zip(dims_a, dims_b, strict=True):
        s1, s2 = sa[da], sb[db]
        if s2 == 1:  # a broadcast dimension is summed right away, as torch does
            t1 = t1.sum(da, True)
        elif s1 == 1:
            t2 = t2.sum(db, True)
        else:
            if s1 != s2:
                raise be.runtime_error(
                    f"contracted dimensions need to match, but first has size {s1} in dim {da} "
                    f"and second has size {s2} in dim {db}")
            csize *= s1
    p1, p2, rsizes = [], [], []
    size1 = size2 = 1
    for i in range(len(sa)):
        if i not in dims_a:
            p1.append(i)
            rsizes.append(sa[i])
            size1 *= sa[i]
    p2.extend(dims_b)
    p1.extend(dims_a)
    for i in range(len(sb)):
        if i not in dims_b:
            p2.append(i)
            rsizes.append(sb[i])
            size2 *= sb[i]
    t1 = t1.permute(*p1).reshape(size1, csize)
    t2 = t2.permute(*p2).reshape(csize, size2)
    return be.call("mm", (t1, t2), {}).reshape(*rsizes)


_register("tensordot", ("mm", "sum"), tensordot)


# --- block_diag, cartesian_prod ------------------------------------------------------------------

def block_diag(be: Backend, *tensors: Any) -> Any:
    """torch.block_diag: the tensors (0-d: 1x1, 1-d: a row) along a block diagonal."""
    if not tensors:  # torch's empty result
        return be.call("zeros", (), {"size": (1, 0), "dtype": be.dtype(be.default_dtype())})
    blocks = []
    for i, t in enumerate(tensors):
        shape = be.shape(t)
        if len(shape) > 2:
            raise be.runtime_error(f"torch.block_diag: Input tensors must have 2 or fewer "
                                   f"dimensions. Input {i} has {len(shape)} dimensions")
        blocks.append(t.reshape(1, 1) if not shape else t.reshape(1, -1) if len(shape) == 1
                      else t)
    dtype = be.dtype_of(tensors[0])
    if len({be.dtype_name(t) for t in tensors}) > 1:  # torch's promotion over the inputs
        dtype = be.dtype_of(sum((t.reshape(-1)[:0] for t in tensors[1:]),
                                tensors[0].reshape(-1)[:0]))
    rows = sum(be.shape(b)[0] for b in blocks)
    cols = sum(be.shape(b)[1] for b in blocks)
    result = be.call("zeros", (), {"size": (rows, cols), "dtype": dtype})
    r = c = 0
    for b in blocks:
        h, w = be.shape(b)
        if h and w:
            result.narrow(0, r, h).narrow(1, c, w).copy_(b)
        r, c = r + h, c + w
    return result


_register("block_diag", ("zeros",), block_diag)


def cartesian_prod(be: Backend, *tensors: Any) -> Any:
    """torch.cartesian_prod: every combination of the 1-d tensors' elements, one per row."""
    for t in tensors:
        if len(be.shape(t)) != 1:
            raise be.runtime_error(f"Expect a 1D vector, but got shape {list(be.shape(t))}")
    if len(tensors) == 1:
        return tensors[0]
    grids = SPELLINGS["meshgrid"].function(be, *tensors, indexing="ij")  # type: ignore[misc]
    return be.call("stack", ([g.flatten() for g in grids],), {"dim": 1})


_register("cartesian_prod", ("stack",), cartesian_prod)


# --- tril_indices / triu_indices -----------------------------------------------------------------

def _indices(name: str, lower: bool) -> None:
    def fn(be: Backend, row: int, col: int, offset: int = 0, *, dtype: Any = None,
           device: Any = None, layout: Any = None) -> Any:
        dtype_name = "int64" if dtype is None else str(getattr(dtype, "name", dtype))
        if dtype_name not in ("int64", "int32"):
            raise be.runtime_error(f'"{name}" not implemented for '
                                   f"'{'Float' if 'float' in dtype_name else dtype_name}'")
        if row < 0:
            raise be.runtime_error(f"row must be non-negative, got{row}")
        if col < 0:
            raise be.runtime_error(f"col must be non-negative, got{col}")
        pick = np.tril_indices if lower else np.triu_indices
        rows, cols = pick(row, offset, col)
        data = np.stack([rows, cols]).astype(np.int64).reshape(2, -1)
        return be.from_data(data, dtype_name)

    fn.__doc__ = (f"torch.{name}(row, col, offset=0, dtype=torch.long): the (2, N) indices of "
                  f"the {'lower' if lower else 'upper'} triangle of a row x col matrix.")
    _register(name, (), fn)


_indices("tril_indices", True)
_indices("triu_indices", False)


# --- trapezoid / trapz ---------------------------------------------------------------------------

def trapezoid(be: Backend, y: Any, x: Any = None, *, dx: Any = None, dim: int = -1) -> Any:
    """torch.trapezoid: the trapezoidal rule along dim, with sample points x or spacing dx."""
    shape = be.shape(y)
    d = wrap_dim(be, dim, len(shape))
    if x is not None and dx is not None:
        raise be.runtime_error("trapezoid: received both x and dx")
    if x is not None and be.is_tensor(x):
        if be.dtype_name(y) == "bool" or be.dtype_name(x) == "bool":
            raise be.runtime_error("trapezoid: received a bool input for `x` or `y`, but bool "
                                   "is not supported")
        if shape[d] == 0:
            return y.sum(d) * 0
        xshape = be.shape(x)
        if len(xshape) == 1:
            if xshape[0] != shape[d]:
                raise be.runtime_error(
                    "trapezoid: There must be one `x` value for each sample point")
            sizes = [1] * len(shape)
            sizes[d] = xshape[0]
            x = x.view(*sizes)
        spacing = x.narrow(d, 1, shape[d] - 1) - x.narrow(d, 0, shape[d] - 1)
        left, right = y.narrow(d, 0, shape[d] - 1), y.narrow(d, 1, shape[d] - 1)
        return be.call("div_scalar", (((left + right) * spacing).sum(d), 2.0), {})
    step = 1.0 if x is None and dx is None else (dx if dx is not None else x)
    if be.dtype_name(y) == "bool":
        raise be.runtime_error("trapezoid: received a bool input for `y`, but bool is not "
                               "supported")
    if shape[d] == 0:
        return y.sum(d) * 0
    ends = be.call("mul_scalar", (y.select(d, 0) + y.select(d, -1), 0.5), {})
    return be.call("mul_scalar", (y.sum(d) - ends, step), {})


_register("trapezoid", ("sum", "mul_scalar", "div_scalar"), trapezoid)


def trapz(be: Backend, y: Any, x: Any = None, *, dx: Any = None, dim: int = -1) -> Any:
    """torch.trapz: trapezoid's older name."""
    return trapezoid(be, y, x, dx=dx, dim=dim)


_register("trapz", ("sum", "mul_scalar", "div_scalar"), trapz)


# --- flipud, fliplr ------------------------------------------------------------------------------

def flipud(be: Backend, input: Any) -> Any:
    """torch.flipud: flip along dim 0 (FlipBackward0)."""
    if len(be.shape(input)) < 1:
        raise be.runtime_error("Input must be >= 1-d.")
    return be.call("flip", (input,), {"dims": (0,)})


def fliplr(be: Backend, input: Any) -> Any:
    """torch.fliplr: flip along dim 1 (FlipBackward0)."""
    if len(be.shape(input)) < 2:
        raise be.runtime_error("Input must be >= 2-d.")
    return be.call("flip", (input,), {"dims": (1,)})


_register("flipud", ("flip",), flipud, method=True)
_register("fliplr", ("flip",), fliplr, method=True)

# --- nanmean, count_nonzero -----------------------------------------------------------------------


def _dims(dim: Any) -> Any:
    """A dim argument as the reductions take it: None, an int, or a tuple of ints."""
    return tuple(dim) if isinstance(dim, (tuple, list)) else dim


def nanmean(be: Backend, input: Any, dim: Any = None, keepdim: bool = False, *,
            dtype: Any = None) -> Any:
    """torch.nanmean: the mean of the elements that are not NaN, as ATen composes it (`nansum`
    divided by the count of non-NaN elements: DivBackward0); here `nansum` is the sum with NaNs
    replaced by zeros, the same cascade of additions, so the same values and gradients (zero
    at the NaNs).

    Raises:
        RuntimeError: an input that is not floating point (torch's message).
    """
    kind = be.dtype_name(input)
    if not kind.startswith("float"):
        raise be.runtime_error("nanmean(): expected input to have floating point or complex "
                               f"dtype but got {TYPE_WORDS[kind]}")
    nan = be.call("isnan", (input,), {})
    zeroed = be.call("where", (nan, 0.0, input), {})
    total = be.call("sum", (zeroed,), {"dim": _dims(dim), "keepdim": keepdim, "dtype": dtype})
    count = be.call("sum", (be.call("logical_not", (nan,), {}),),
                    {"dim": _dims(dim), "keepdim": keepdim})
    return be.call("div", (total, count), {})


def count_nonzero(be: Backend, input: Any, dim: Any = None) -> Any:
    """torch.count_nonzero: the number of non-zero elements (over dim), as int64."""
    return be.call("sum", (be.call("ne", (input, 0), {}),), {"dim": _dims(dim)})


_register("nanmean", ("isnan", "where", "sum", "logical_not", "div"), nanmean, method=True)
_register("count_nonzero", ("ne", "sum"), count_nonzero, method=True)
