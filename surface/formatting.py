"""torch's tensor printing (`repr(tensor)`), reproduced on numpy arrays.

This follows torch/_tensor_str.py (torch 2.13) step by step: `_Formatter` picks one width and one
mode (integer-valued, fixed or scientific) for the whole tensor, `_tensor_str_with_formatter`
nests the rows, `get_summarized_data` picks the values the formatter sees when a tensor is
summarized, and `_str_intern` adds the `dtype=`/`size=` items and breaks long suffix lines.
Values are formatted as Python floats, as torch does through `.item()`/`.tolist()`, so a float32
0.1 prints as float64(float32(0.1)) would.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["PrintOptions", "format_tensor", "get_printoptions", "set_printoptions",
           "shown_elements"]


@dataclasses.dataclass
class PrintOptions:
    """torch's print options (`torch._tensor_str.PRINT_OPTS`): one set per process, or per
    session when a client formats for its own session."""

    precision: int = 4
    threshold: float = 1000
    edgeitems: int = 3
    linewidth: int = 80
    sci_mode: bool | None = None


# Module-global, like torch's PRINT_OPTS.
_OPTS = PrintOptions()

# dtype name -> (numpy dtype, is floating point, printed without a dtype= item when non-empty).
# torch's defaults are the default float dtype (float32), int64 and bool.
_DTYPES: dict[str, tuple[type[np.generic], bool, bool]] = {
    "float32": (np.float32, True, True),
    "float64": (np.float64, True, False),
    "int32": (np.int32, False, False),
    "int16": (np.int16, False, False),
    "int8": (np.int8, False, False),
    "uint8": (np.uint8, False, False),
    "int64": (np.int64, False, True),
    "bool": (np.bool_, False, True),
}

_PROFILES: dict[str, dict[str, Any]] = {
    "default": {"precision": 4, "threshold": 1000, "edgeitems": 3, "linewidth": 80},
    "short": {"precision": 2, "threshold": 1000, "edgeitems": 2, "linewidth": 80},
    "full": {"precision": 4, "threshold": math.inf, "edgeitems": 3, "linewidth": 80},
}


def set_printoptions(
    precision: int | None = None,
    threshold: float | None = None,
    edgeitems: int | None = None,
    linewidth: int | None = None,
    profile: str | None = None,
    sci_mode: bool | None = None,
    *,
    options: PrintOptions | None = None,
) -> None:
    """Set the print options, as `torch.set_printoptions` does.

    As in torch, `sci_mode` is always assigned (leaving it out resets it to automatic), and an
    unknown `profile` is ignored.

    Args:
        precision: digits after the decimal point (default 4).
        threshold: element count above which a tensor is summarized (default 1000).
        edgeitems: items kept at each end of a summarized dimension (default 3).
        linewidth: characters per line before 1-D rows and suffixes wrap (default 80).
        profile: "default", "short" or "full"; applied first, then the other arguments.
        sci_mode: True or False forces scientific notation on or off; None chooses automatically.
        options: the set to change (default: this process's own, the engine's).
    """
    opts = _OPTS if options is None else options
    if profile is not None and profile in _PROFILES:
        for name, value in _PROFILES[profile].items():
            setattr(opts, name, value)
    if precision is not None:
        opts.precision = precision
    if threshold is not None:
        opts.threshold = threshold
    if edgeitems is not None:
        opts.edgeitems = edgeitems
    if linewidth is not None:
        opts.linewidth = linewidth
    opts.sci_mode = sci_mode


def get_printoptions(options: PrintOptions | None = None) -> dict[str, Any]:
    """Return the current print options.

    Args:
        options: the set to read (default: this process's own).

    Returns:
        A dict with keys precision, threshold, edgeitems, linewidth and sci_mode that can be
        passed back as `set_printoptions(**options)`.
    """
    return dataclasses.asdict(_OPTS if options is None else options)


class _Formatter:
    """One width and one notation for every element of a tensor (torch's `_Formatter`)."""

    def __init__(self, values: np.ndarray, floating: bool, opts: PrintOptions) -> None:
        self.opts = opts
        self.floating = floating
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1
        flat = values.reshape(-1)
        if not floating:
            for value in flat.tolist():
                self.max_width = max(self.max_width, len(f"{value}"))
            return
        if flat.size == 1:  # a scalar (a loss, a 0-d gradient): the same, in Python floats
            values_list = flat.tolist()
            one = values_list[0]
            if not math.isfinite(one) or one == 0:
                return
            lo = hi = abs(one)
            ratio = 1.0
            self.int_mode = one == math.ceil(one)
        else:
            nonzero_finite = flat[np.isfinite(flat) & (flat != 0)]
            if nonzero_finite.size == 0:
                return
            # torch compares in float64 (exact for float32), where max / min may overflow to inf.
            magnitudes = np.abs(nonzero_finite).astype(np.float64)
            lo, hi = magnitudes.min(), magnitudes.max()
            with np.errstate(over="ignore"):
                ratio = hi / lo
            self.int_mode = bool(np.all(nonzero_finite == np.ceil(nonzero_finite)))
            values_list = nonzero_finite.tolist()
        if opts.sci_mode is None:
            self.sci_mode = bool(ratio > 1000.0 or hi > 1.0e8 or lo < 1.0e-4)
        else:
            self.sci_mode = opts.sci_mode
        precision = opts.precision
        for value in values_list:
            if self.sci_mode:
                width = len(f"{value:.{precision}e}")
            elif self.int_mode:
                width = len(f"{value:.0f}") + 1  # room for the trailing "."
            else:
                width = len(f"{value:.{precision}f}")
            self.max_width = max(self.max_width, width)

    def format(self, value: Any) -> str:
        """Return one element, right-aligned to the common width."""
        precision = self.opts.precision
        if self.floating:
            if self.sci_mode:
                text = f"{value:{self.max_width}.{precision}e}"
            elif self.int_mode:
                text = f"{value:.0f}"
                if not (math.isinf(value) or math.isnan(value)):
                    text += "."
            else:
                text = f"{value:.{precision}f}"
        else:
            text = f"{value}"
        return text.rjust(self.max_width)


def shown_elements(shape: Sequence[int], options: PrintOptions | None = None) -> int:
    """How many elements the printed form of a tensor of `shape` shows, at most: all of them up
    to `threshold`, past it `2 * edgeitems` of each dim longer than that. Its cost: ~4 us and
    ~20 characters an element, so a tensor of many short dims, summarized or not, prints them
    all ((2,) * 26: 2^26 elements, minutes of CPU and GBs of memory, as torch would).
    """
    opts = _OPTS if options is None else options
    n = math.prod(shape)
    if n <= opts.threshold or not shape:
        return n
    edge = 2 * opts.edgeitems
    last = len(shape) - 1  # (edgeitems 0 shows a 1-D row whole: an upper bound for all)
    return math.prod(d if d <= edge or (not edge and i == last) else edge
                     for i, d in enumerate(shape))


def _summarized_values(values: np.ndarray, opts: PrintOptions) -> np.ndarray:
    """Return the elements a summarized tensor shows, for the formatter (`get_summarized_data`).

    Only which values are returned matters (the formatter looks at widths), not their layout.
    """
    edge = opts.edgeitems
    if values.ndim == 0:
        return values.reshape(-1)
    if values.ndim == 1:
        if values.shape[0] > 2 * edge:
            # As in torch, `[-0:]` is the whole row, so edgeitems=0 keeps every 1-D value.
            return np.concatenate((values[:edge], values[-edge:]))
        return values
    if not edge:
        return values.reshape(-1)[:0]
    n = values.shape[0]
    rows = [*range(edge), *range(n - edge, n)] if n > 2 * edge else list(range(n))
    return np.concatenate([_summarized_values(values[i], opts).reshape(-1) for i in rows])


def _vector_str(values: np.ndarray, indent: int, summarize: bool, formatter: _Formatter) -> str:
    element_length = formatter.max_width + 2  # the element, a comma and a space
    per_line = max(1, math.floor((formatter.opts.linewidth - indent) / element_length))
    edge = formatter.opts.edgeitems
    if summarize and not edge:
        items = ["..."]
    elif summarize and values.shape[0] > 2 * edge:
        items = (
            [formatter.format(v) for v in values[:edge].tolist()]
            + [" ..."]
            + [formatter.format(v) for v in values[-edge:].tolist()]
        )
    else:
        items = [formatter.format(v) for v in values.tolist()]
    lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _nested_str(values: np.ndarray, indent: int, summarize: bool, formatter: _Formatter) -> str:
    """Format one (sub-)tensor (`_tensor_str_with_formatter`)."""
    if values.ndim == 0:
        return formatter.format(values.item())
    if values.ndim == 1:
        return _vector_str(values, indent, summarize, formatter)
    edge, rows = formatter.opts.edgeitems, values.shape[0]
    if summarize and rows > 2 * edge:
        slices = (
            [_nested_str(values[i], indent + 1, summarize, formatter) for i in range(edge)]
            + ["..."]
            + [
                _nested_str(values[i], indent + 1, summarize, formatter)
                for i in range(rows - edge, rows)
            ]
        )
    else:
        slices = [_nested_str(values[i], indent + 1, summarize, formatter) for i in range(rows)]
    separator = "," + "\n" * (values.ndim - 1) + " " * (indent + 1)
    return "[" + separator.join(slices) + "]"


def _add_suffixes(text: str, suffixes: Sequence[str], indent: int, linewidth: int) -> str:
    """Append the suffixes, starting a new line when one would pass the line width."""
    parts = [text]
    # torch's own arithmetic: 2 more than the last line's length.
    last_line_len = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if last_line_len + len(suffix) + 2 > linewidth:
            parts.append(",\n" + " " * indent + suffix)
            last_line_len = indent + len(suffix)
        else:
            parts.append(", " + suffix)
            last_line_len += len(suffix) + 2
    parts.append(")")
    return "".join(parts)


def format_tensor(values: np.ndarray, dtype: str, suffixes: Sequence[str] = (),
                  options: PrintOptions | None = None) -> str:
    """Return torch's repr for a tensor holding `values` with dtype name `dtype`.

    Args:
        values: the tensor's elements, any shape (0-dim included); cast to `dtype` first.
        dtype: "float32", "float64", "int32", "int64" or "bool".
        suffixes: already formatted items such as "requires_grad=True" or
            "grad_fn=<PowBackward0>", appended in order after torch's own dtype=/size= items.
        options: the print options to follow (default: this process's own).

    Returns:
        The text `repr(torch.tensor(values))` would print, e.g. "tensor([1., 2.])".

    Raises:
        ValueError: `dtype` is not one of the names above.
    """
    try:
        np_dtype, floating, default_dtype = _DTYPES[dtype]
    except KeyError:
        raise ValueError(
            f"format_tensor: unsupported dtype {dtype!r}; expected one of {sorted(_DTYPES)}"
        ) from None
    opts = _OPTS if options is None else options
    array = np.asarray(values, dtype=np_dtype)
    prefix = "tensor("
    indent = len(prefix)
    items: list[str] = []
    if array.size == 0:
        # Like NumPy, the shape is shown unless it is (0,); and with no elements to tell the
        # kind apart, every dtype but the default float one is shown.
        if array.ndim != 1:
            items.append(f"size={tuple(array.shape)}")
        if dtype != "float32":
            items.append(f"dtype=torch.{dtype}")
        body = "[]"
    else:
        if not opts.edgeitems:
            items.append(f"size={tuple(array.shape)}")
        if not default_dtype:
            items.append(f"dtype=torch.{dtype}")
        summarize = array.size > opts.threshold
        formatter = _Formatter(_summarized_values(array, opts) if summarize else array, floating,
                               opts)
        body = _nested_str(array, indent, summarize, formatter)
    return _add_suffixes(prefix + body, [*items, *suffixes], indent, opts.linewidth)
