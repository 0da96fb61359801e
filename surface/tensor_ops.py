"""torch spellings of the tensor ops whose torch argument order, overloads or result form is not
one op's: `index_add` (dim before index; `index_add_`), `repeat_interleave` (int or tensor
repeats, over `index_select`), `unique` (a tensor or a tuple, over `_unique2` / `unique_dim`),
`diag` (`diag_embed` of a vector, `diagonal_copy` of a matrix), `lerp` (`lerp_scalar` for a
number weight, `lerp` for a tensor) and `cdist` (its compute modes:
`_cdist_forward`, or torch's mm path `_euclidean_dist`). Each is written
once against a `Backend` (gradserve.surface.backend) and registered in `spellings.SPELLINGS`, so
the engine and sessions share it.
"""

from __future__ import annotations

import math
from typing import Any

from . import out_arg
from .backend import Backend
from .numbers import python_number
from .spellings import _register, is_int, size_args, wrap_dim

# --- index_add -----------------------------------------------------------------------------------


def _index_add(be: Backend, input: Any, dim: int, index: Any, source: Any, *,
               alpha: Any = 1) -> Any:
    return be.call("index_add", (input, index, source), {"dim": dim, "alpha": alpha})


def index_add(be: Backend, input: Any, dim: int, index: Any, source: Any, *, alpha: Any = 1,
              out: Any = None) -> Any:
    """torch.index_add(input, dim, index, source, *, alpha=1): a copy of input with
    alpha * source added at index along dim (repeats accumulate; IndexAddBackward0).

    Args:
        out: a tensor to write the result into (see `out_arg`).
    Returns:
        The new tensor (or `out`).
    Raises:
        RuntimeError, IndexError: torch's, for a bad index, dim, dtype or shape.
    """
    if out is not None:
        return out_arg.call_with_out(be, "index_add", lambda *a, **k: _index_add(be, *a, **k),
                                     out, (input, dim, index, source), {"alpha": alpha})
    return _index_add(be, input, dim, index, source, alpha=alpha)


def index_add_(be: Backend, self: Any, dim: int, index: Any, source: Any, *,
               alpha: Any = 1) -> Any:
    """Tensor.index_add_(dim, index, source, *, alpha=1): index_add written into self."""
    return be.call_inplace("index_add", self, (index, source), {"dim": dim, "alpha": alpha})


def _index_add_method(be: Backend, self: Any, dim: int, index: Any, source: Any, *,
                      alpha: Any = 1) -> Any:
    return _index_add(be, self, dim, index, source, alpha=alpha)


_index_add_method.__doc__ = index_add.__doc__
_register("index_add", ("index_add",), index_add, _index_add_method)
_register("index_add_", ("index_add",), None, index_add_)

# --- lerp ----------------------------------------------------------------------------------------


def _lerp_call(weight: Any) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    """The op torch's overload for `weight` is, and what follows the input: lerp.Scalar
    (`lerp_scalar`, the number as an attribute) for a Python or numpy number, lerp.Tensor
    (`lerp`, the weight an input) otherwise."""
    number = python_number(weight)
    if number is None:
        number = weight
    if isinstance(number, (bool, int, float)):
        return "lerp_scalar", (), {"weight": number}
    return "lerp", (weight,), {}


def _lerp(be: Backend, input: Any, end: Any, weight: Any) -> Any:
    op, more, attrs = _lerp_call(weight)
    return be.call(op, (input, end, *more), attrs)


def lerp(be: Backend, input: Any, end: Any, weight: Any, *, out: Any = None) -> Any:
    """torch.lerp(input, end, weight, *, out=None): input + weight * (end - input), one fused
    multiply-add as torch's kernel; weight a number (LerpBackward0) or a tensor that
    broadcasts (LerpBackward1).

    Raises:
        RuntimeError, NotImplementedError: torch's, for mismatched dtypes or integer inputs.
    """
    if out is not None:
        return out_arg.call_with_out(be, "lerp", lambda *a: _lerp(be, *a), out,
                                     (input, end, weight), {})
    return _lerp(be, input, end, weight)


def lerp_(be: Backend, self: Any, end: Any, weight: Any) -> Any:
    """Tensor.lerp_(end, weight): lerp written into self (a model EMA's
    `ema.lerp_(param, 1 - decay)`)."""
    op, more, attrs = _lerp_call(weight)
    return be.call_inplace(op, self, (end, *more), attrs)


def _lerp_method(be: Backend, self: Any, end: Any, weight: Any) -> Any:
    return _lerp(be, self, end, weight)


_lerp_method.__doc__ = lerp.__doc__
_register("lerp", ("lerp", "lerp_scalar"), lerp, _lerp_method)
_register("lerp_", ("lerp", "lerp_scalar"), None, lerp_)

# --- repeat_interleave ---------------------------------------------------------------------------


def repeat_interleave(be: Backend, input: Any, repeats: Any = None, dim: int | None = None, *,
                      output_size: int | None = None) -> Any:
    """torch.repeat_interleave: each element (slice along dim) repeated; with one tensor, its
    indices repeated by its values. An int repeats is torch's unsqueeze, expand, clone and
    flatten (ViewBackward0); a tensor of repeats an index_select (IndexSelectBackward0).

    Raises:
        RuntimeError: negative repeats, repeats of the wrong size or dims, an output_size that
            is not the result's (torch's texts).
    """
    if repeats is None:
        return be.call("repeat_interleave", (input,), {"output_size": output_size})
    shape = tuple(be.shape(input))
    if is_int(repeats):
        return _repeat_int(be, input, shape, int(repeats), dim, output_size)
    if not be.is_tensor(repeats):
        raise be.type_error("repeat_interleave(): argument 'repeats' must be Tensor or int, "
                            f"not {type(repeats).__name__}")
    if dim is None:
        input, dim, shape = be.call("reshape", (input, (-1,)), {}), 0, (math.prod(shape),)
    length = shape[dim] if shape else 1  # torch reads the size at dim unwrapped
    rshape = tuple(be.shape(repeats))
    if len(rshape) == 0 or rshape == (1,):
        repeats = be.call("expand", (be.call("reshape", (repeats, (1,)), {}), (length,)), {})
    elif len(rshape) == 1:
        if rshape[0] != length:
            raise be.runtime_error(
                "repeats must have the same size as input along dim, but got repeats.size(0) "
                f"= {rshape[0]} and input.size({dim}) = {length}")
    else:
        raise be.runtime_error("repeats must be 0-dim or 1-dim tensor")
    indices = be.call("repeat_interleave", (repeats,), {"output_size": output_size})
    return be.call("index_select", (input, indices, dim), {})


def _repeat_int(be: Backend, input: Any, shape: tuple[int, ...], repeats: int, dim: int | None,
                output_size: int | None) -> Any:
    axis = wrap_dim(be, 0 if dim is None else dim, len(shape))
    if dim is None:
        input, shape = be.call("reshape", (input, (-1,)), {}), (math.prod(shape),)
    if repeats < 0:
        raise be.runtime_error("Repeats must be non-negative")
    grown = be.call("unsqueeze", (input, axis + 1), {})
    size = list(shape[:axis + 1]) + [repeats] + list(shape[axis + 1:])
    if output_size is not None and output_size != shape[axis] * repeats:
        raise be.runtime_error(f"repeat_interleave: Invalid output_size, expected "
                               f"{shape[axis] * repeats} but got {output_size}")
    copied = be.call("clone", (be.call("expand", (grown, tuple(size)), {}),), {})
    flat = [*shape[:axis], shape[axis] * repeats, *shape[axis + 1:]] if shape else [repeats]
    return be.call("reshape", (copied, tuple(flat)), {})


_register("repeat_interleave", ("repeat_interleave", "index_select", "reshape", "expand",
                                "unsqueeze", "clone"), repeat_interleave, repeat_interleave)

# --- unique --------------------------------------------------------------------------------------


def unique(be: Backend, input: Any, sorted: bool = True, return_inverse: bool = False,
           return_counts: bool = False, dim: int | None = None) -> Any:
    """torch.unique: the sorted unique elements (slices along dim), and as asked each element's
    index into them and their counts. No derivative (torch's Unique2Backward0 /
    UniqueDimBackward0 refuse a backward).

    Returns:
        The values alone, or a tuple (values[, inverse][, counts]).
    """
    if dim is None:
        values, inverse, counts = be.call("_unique2", (input,), {"sorted": bool(sorted)})
    else:
        values, inverse, counts = be.call("unique_dim", (input,),
                                          {"dim": dim, "sorted": bool(sorted)})
    if not return_inverse and not return_counts:
        return values
    picked = [values]
    if return_inverse:
        picked.append(inverse)
    if return_counts:
        picked.append(counts)
    return tuple(picked)


_register("unique", ("_unique2", "unique_dim"), unique, unique)

# --- diag ----------------------------------------------------------------------------------------


def _diag(be: Backend, input: Any, diagonal: int = 0) -> Any:
    ndim = len(be.shape(input))
    if ndim == 1:
        return be.call("diag_embed", (input, diagonal, 0, 1), {})
    if ndim == 2:
        return be.call("diagonal_copy", (input, diagonal), {})
    raise be.runtime_error(f"diag(): Supports 1D or 2D tensors. Got {ndim}D")


def diag(be: Backend, input: Any, diagonal: int = 0, *, out: Any = None) -> Any:
    """torch.diag: a square matrix with the vector input on a diagonal (DiagEmbedBackward0),
    or a matrix's diagonal as a new vector (DiagonalBackward0_copy).

    Raises:
        RuntimeError: input is neither 1-D nor 2-D (torch's text).
    """
    if out is not None:
        return out_arg.call_with_out(be, "diag", lambda *a: _diag(be, *a), out,
                                     (input, diagonal), {})
    return _diag(be, input, diagonal)


def _diag_method(be: Backend, self: Any, diagonal: int = 0) -> Any:
    return _diag(be, self, diagonal)


_diag_method.__doc__ = diag.__doc__
_register("diag", ("diag_embed", "diagonal_copy"), diag, _diag_method)

# --- cdist ---------------------------------------------------------------------------------------

COMPUTE_MODES = {"use_mm_for_euclid_dist_if_necessary": None, "use_mm_for_euclid_dist": 1,
                 "donot_use_mm_for_euclid_dist": 2}


def cdist(be: Backend, x1: Any, x2: Any, p: float = 2.0,
          compute_mode: str = "use_mm_for_euclid_dist_if_necessary") -> Any:
    """torch.cdist: the p-norm distance between each row of x1 and each row of x2 (batch dims
    broadcast). As torch: for p = 2 with more than 25 rows on a side (or compute_mode
    'use_mm_for_euclid_dist') one matrix product (EuclideanDistBackward0, viewed:
    ViewBackward0), else the direct sums (CdistBackward0, no second derivative).

    Raises:
        ValueError: an unknown compute_mode.
        RuntimeError: torch's, for the shapes, dtypes or a negative p.
    """
    if compute_mode not in COMPUTE_MODES:
        raise ValueError(f"{compute_mode} is not a valid value for compute_mode")
    mode = COMPUTE_MODES[compute_mode]
    s1, s2 = tuple(be.shape(x1)), tuple(be.shape(x2))
    direct = be.call("_cdist_forward", (x1, x2, float(p), mode), {}) if (
        p != 2 or mode == 2 or len(s1) < 2 or len(s2) < 2 or s1[-1] != s2[-1]
        or not (mode == 1 or s1[-2] > 25 or s2[-2] > 25)) else None
    if direct is not None:
        return direct
    batch = _batch_shape(s1[:-2], s2[:-2])
    out = (*batch, s1[-2], s2[-2]) if batch is not None else ()
    if batch is None or 0 in out or s1[-1] == 0:
        return be.call("_cdist_forward", (x1, x2, float(p), mode), {})  # torch's checks, or empty
    n = math.prod(batch)
    if n != 1:
        x1 = be.call("reshape", (be.call("expand", (x1, (*batch, *s1[-2:])), {}),
                                 (n, *s1[-2:])), {})
        x2 = be.call("reshape", (be.call("expand", (x2, (*batch, *s2[-2:])), {}),
                                 (n, *s2[-2:])), {})
    return be.call("reshape", (be.call("_euclidean_dist", (x1, x2), {}), out), {})


def _batch_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """The broadcast of two batch shapes, None where they do not broadcast."""
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + a, (1,) * (n - len(b)) + b
    if any(x != y and 1 not in (x, y) for x, y in zip(a, b)):
        return None
    return tuple(max(x, y) if 0 not in (x, y) else 0 for x, y in zip(a, b))


_register("cdist", ("_cdist_forward", "_euclidean_dist", "reshape", "expand"), cdist)


# --- resize_ (Udacity's intro to PyTorch: `images.resize_(64, 1, 784)`) -------------------------

RESIZE_REQUIRES_GRAD = "cannot resize variables that require grad"


def resize_(be: Backend, self: Any, *sizes: Any) -> Any:
    """Tensor.resize_(*sizes): the tensor takes `sizes` in place (the same object), its first
    numel(sizes) elements in row-major order, zeros past its own (torch leaves those
    uninitialised). The data stays shared with views of the tensor while it does not grow.

    Raises:
        RuntimeError: the tensor requires grad (torch's text), or a negative size.
        NotImplementedError: a non-contiguous tensor (torch reads its storage, which gradserve
            does not keep in its order).
    """
    shape = size_args(be, "resize_", sizes, {})
    if any(d < 0 for d in shape):
        raise be.runtime_error("numel: integer multiplication overflow")
    if self.requires_grad:
        raise be.runtime_error(RESIZE_REQUIRES_GRAD)
    if not be.is_contiguous(self):
        raise NotImplementedError("gradserve: resize_ of a non-contiguous tensor (torch reads its "
                                  "storage order); call .contiguous() first")
    n, have = math.prod(shape), math.prod(be.shape(self))
    flat = be.call("reshape", (self.detach(), (-1,)), {})
    if n > have:
        fill = be.call("zeros", (), {"size": (n - have,), "dtype": be.dtype_of(self)})
        flat = be.call("cat", ((flat, fill),), {"dim": 0})
    elif n < have:
        flat = be.call("slice", (flat,), {"dim": 0, "start": 0, "end": n})
    be.adopt(self, be.call("reshape", (flat, shape), {}))
    return self


_register("resize_", ("reshape", "zeros", "cat", "slice"), None, resize_)
