"""Bounds on the running thread's work: refuse an op before it allocates, stop work on request.

Three independent, thread-local bounds, each set by a context manager and read on every op:

- `allocation_limit(n)`: no one tensor an op produces may have more than `n` elements, and
  no one op may do more than `WORK_PER_ELEMENT * n` work (a matrix product's multiply-adds, a
  sort's comparisons, declared in its bound: an op cannot be interrupted, so its time must
  follow from the limits).
- `byte_budget(n)` (or `within(n, fn, *args)`, the same as a call): the ops, graph nodes and
  gradients made inside the scope may allocate at most `n` bytes in all. Each op's results are
  charged *before* it runs, from its declared output bound (`registry.OpDef.bound`); every
  recorded graph node and every gradient a backward pass makes is charged too. Charges are
  cumulative (frees are not credited), so they bound what the
  scope can hold at once — except a backward pass without a graph, which credits each gradient
  back once it is consumed (`credit`), so the charge follows the gradients alive at a time and a
  long pass whose gradients are summed as they arrive (a weight used in every step) is not
  refused for their total.
- `interrupt(check)`: `check()` is called between ops and between a backward pass's nodes; it
  stops the work by raising (the server's deadline and cancellation checks). The engine knows
  nothing of what it checks.

Nothing here is active by default: the engine used in process is unbounded, as torch is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from . import errors

# Fixed costs, measured with tracemalloc on CPython 3.11 (tests/test_engine_bounds.py checks them
# against a fresh measurement): a Tensor object with its numpy array header, without the data; a
# recorded graph node with its edges, saved-tensor records and the output it describes.
TENSOR_BYTES = 320
NODE_BYTES = 640
#: A node's inputs past `NODE_EDGES` cost `EDGE_BYTES` each (an edge and the input's shape and
#: dtype the node keeps: 376 bytes measured, a `cat` of 100,000 inputs): `NODE_BYTES` stands for
#: a node of a few. A 4-byte wire input each, a node of millions of inputs was charged 640 bytes
#: (six `cat`s of 200,000 inputs held 540 MiB, a session's measurement said 7.7 KB).
EDGE_BYTES = 384
NODE_EDGES = 4


def node_bytes(edges: int) -> int:
    """What a recorded graph node with `edges` inputs stands for (`NODE_BYTES`, `EDGE_BYTES`)."""
    return NODE_BYTES if edges <= NODE_EDGES else NODE_BYTES + EDGE_BYTES * (edges - NODE_EDGES)


class Bound(NamedTuple):
    """What an op's results can take, known before it runs.

    `elements`: the most elements of any one result (checked against `allocation_limit`);
    `nbytes`: all results' data plus `TENSOR_BYTES` per result (charged to `byte_budget`);
    `results`: how many results;
    `work`: for an op whose time does not follow from its tensors' sizes (a matrix product
    or a convolution: its multiply-adds; a sort), that time in `WORK_PER_ELEMENT`'s units
    (see `work_bound`, `sort_work`); 0 for the others.
    """

    elements: int
    nbytes: int
    results: int
    shape: tuple[int, ...] | None = None  # the one result's shape, when known (for messages)
    work: int = 0


class Limits:
    """One thread's bounds, as plain attributes: `current()` gives the running thread's.

    An op reads the thread-local state at most once (`_local.bounded`: this object while any
    bound is set, else None), and not at all while no thread has a bound set (`ENGAGED` is
    empty: the engine used in process); everything else here it reads as plain attributes,
    each about a third of a thread-local read's cost. A caller running many ops on one thread
    (the server's tape loop) may hold the object and call `within` on it; it must not pass it
    to another thread.
    """

    __slots__ = ("max_elements", "bytes_left", "check", "active", "kept")

    def __init__(self) -> None:
        self.max_elements: int | None = None
        self.bytes_left: int | None = None
        self.check: Callable[[], None] | None = None
        # True while any bound above is set (and `_local.bounded` is this object)
        self.active = False
        # bytes of the `.grad`s backward passes made on this thread, ever (see `keep`)
        self.kept = 0

    def refresh(self) -> None:
        """Set `active` (and the thread's `bounded`) from the bounds, after one changed."""
        active = (self.max_elements is not None or self.bytes_left is not None
                  or self.check is not None)
        if active is not self.active:
            self._engage(active)

    def _engage(self, active: bool) -> None:
        self.active = active
        if active:
            ENGAGED.add(self)  # first: an op on this thread finds it engaged as soon as bounded
            _local.bounded = self
        else:
            _local.bounded = None
            ENGAGED.discard(self)

    def within(self, max_bytes: int | None, fn: Callable[..., Any], *args: Any) -> Any:
        """`within` (the module's function) on this thread's bounds, held by the caller."""
        outer = self.bytes_left
        if outer is None:
            if max_bytes is None:
                return fn(*args)
            self.bytes_left = max_bytes
            if self.active:  # another bound is set: only the budget changes
                try:
                    return fn(*args)
                finally:
                    self.bytes_left = None
            self._engage(True)
            try:
                return fn(*args)
            finally:
                self.bytes_left = None
                self._engage(False)
        limit = outer if max_bytes is None else min(max_bytes, outer)
        self.bytes_left = limit
        try:
            return fn(*args)
        finally:
            left = self.bytes_left
            self.bytes_left = outer - (0 if left is None else limit - left)


class _Local(threading.local):
    """The per-thread state: the thread's `Limits`, made on its first use, and `bounded`."""

    def __init__(self) -> None:
        self.limits = Limits()
        self.bounded: Limits | None = None


_local = _Local()
#: The bounds of every thread that has any set. While it is empty no thread has, and an op need
#: not read its own thread's (`_local.bounded`). Changed in place only (adding and discarding
#: are atomic), by each thread for its own bounds.
ENGAGED: set[Limits] = set()


def current() -> Limits:
    """The running thread's `Limits` (for reading the bounds, or holding them: see `Limits`)."""
    return _local.limits


class allocation_limit:  # noqa: N801 - used as a function: `with allocation_limit(n):`
    """Limit, for this thread, how many elements one op's result may have (None: unlimited).

    A context manager (a class rather than a generator: the server enters one per call)."""

    __slots__ = ("max_elements", "_prev")

    def __init__(self, max_elements: int | None):
        self.max_elements = max_elements

    def __enter__(self) -> None:
        lim = _local.limits
        self._prev = lim.max_elements
        lim.max_elements = self.max_elements
        lim.refresh()

    def __exit__(self, *exc: object) -> None:
        lim = _local.limits
        lim.max_elements = self._prev
        lim.refresh()


class byte_budget:  # noqa: N801 - used as a function: `with byte_budget(n) as budget:`
    """Let the work inside allocate at most `max_bytes` (None: unlimited), charged cumulatively.

    Nested budgets draw from the enclosing one: the inner scope gets the smaller of its own limit
    and what the outer has left, and what it spent is charged to the outer when it ends. A
    context manager (a class rather than a generator: cheap to enter); the session tape's
    per-op budget uses `within`, the same rules as one call.

    Yields:
        A `Budget` whose `spent` tells how many bytes were charged so far.
    """

    __slots__ = ("max_bytes", "_outer", "_budget")

    def __init__(self, max_bytes: int | None):
        self.max_bytes = max_bytes

    def __enter__(self) -> Budget:
        lim = _local.limits
        max_bytes = self.max_bytes
        outer = self._outer = lim.bytes_left
        limit = (max_bytes if outer is None else outer if max_bytes is None
                 else min(max_bytes, outer))
        budget = self._budget = Budget(limit)
        lim.bytes_left = limit
        lim.refresh()
        return budget

    def __exit__(self, *exc: object) -> None:
        lim = _local.limits
        budget, outer = self._budget, self._outer
        limit = budget.limit
        left = lim.bytes_left
        budget.spent = 0 if limit is None or left is None else limit - left
        lim.bytes_left = None if outer is None else outer - budget.spent
        lim.refresh()


def within(max_bytes: int | None, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` inside `byte_budget(max_bytes)`, as one call: the same limit, nesting and
    refusals, without a context manager's objects (`Limits.within` on the thread's bounds; a
    caller running many ops holds those and calls that: the server's session tape budgets each
    op it runs separately, and this is its hot path).

    Returns:
        What `fn(*args)` returns.
    Raises:
        BudgetExceededError: as the work inside raises it.
    """
    return _local.limits.within(max_bytes, fn, *args)


class Budget:
    """What a `byte_budget` scope has spent (read it inside or after the scope)."""

    __slots__ = ("limit", "spent")

    def __init__(self, limit: int | None):
        self.limit = limit
        self.spent = 0

    def left(self) -> int | None:
        """Bytes the scope may still charge (None: unlimited); only valid inside the scope."""
        return _local.limits.bytes_left


class interrupt:  # noqa: N801 - used as a function: `with interrupt(check):`
    """Call `check()` between ops and backward nodes on this thread; it stops work by raising.

    A context manager (a class rather than a generator: the server enters one per call)."""

    __slots__ = ("check", "_prev")

    def __init__(self, check: Callable[[], None] | None):
        self.check = check

    def __enter__(self) -> None:
        lim = _local.limits
        self._prev = lim.check
        lim.check = self.check
        lim.refresh()

    def __exit__(self, *exc: object) -> None:
        lim = _local.limits
        lim.check = self._prev
        lim.refresh()


def tick() -> None:
    """Run the interrupt check, if any (between units of work that are not ops)."""
    check = _local.limits.check
    if check is not None:
        check()


def charge(nbytes: int, what: str | Callable[[], str], prefix: str = "") -> None:
    """Charge `nbytes` to the active byte budget.

    Args:
        what: what is charged, named in the refusal; a function returning the name is called
            only then (a backward pass's node names are not made for every charge).
        prefix: put before the name.

    Raises:
        BudgetExceededError: the budget has fewer bytes left, naming `prefix` + `what`.
    """
    lim = _local.limits
    left = lim.bytes_left
    if left is None:
        return
    if nbytes > left:
        name = what if isinstance(what, str) else what()
        raise errors.BudgetExceededError(
            f"{prefix}{name} needs {nbytes} bytes, more than the {max(0, left)} bytes left of "
            "this call's memory budget")
    lim.bytes_left = left - nbytes


def credit(nbytes: int) -> None:
    """Give `nbytes` back to the active byte budget: memory a scope charged and has freed (the
    backward pass's consumed gradients). Only return what was charged."""
    lim = _local.limits
    left = lim.bytes_left
    if left is not None:
        lim.bytes_left = left + nbytes


def keep(nbytes: int) -> None:
    """Count `nbytes` a backward pass leaves behind: a new `.grad` (its array and tensor
    object), made where a pass accumulates or retains a gradient. A caller that accounts
    memory reads `kept()` before and after a pass without create_graph: the difference bounds
    what the pass left (its other gradients die with it; the graph it frees is not credited)."""
    _local.limits.kept += nbytes


def kept() -> int:
    """Bytes counted by `keep` on this thread so far (only differences mean anything)."""
    return _local.limits.kept


#: Results of one op, under any element limit: each is a tensor object and a graph output
#: (~4-6 us of CPU in one uninterruptible op), whatever its data. An 82-byte batch unbinding an
#: empty (0, 3000000) tensor took 11 s of CPU and 1.1 GiB, health checks waiting 5 s meanwhile.
MAX_RESULTS = 65536


#: The work one op may do, per element of the element limit (`allocation_limit`), in
#: multiply-adds of a floating matrix product (BLAS: ~0.035 ns each on the 2-core VM). An op
#: cannot be interrupted, and a 200-byte request made a product of two expanded (2048, 2048)
#: int64 matrices, 8 s of CPU in one op that no deadline stopped (an (8192, 8192) one: minutes),
#: however small the limits on its tensors. 1024 per element lets a (4096, 4096) float32
#: product through under the default 64 Mi limit (~2.4 s of CPU), a (1625, 1625) one under 4 Mi.
WORK_PER_ELEMENT = 1024
#: Work that counts as one op for the interrupt check (about one small op's time: ~35-50 us),
#: so a stateless call's --max-call-ops bounds its products' time too.
WORK_PER_CHECK = 1 << 20
#: What an integer multiply-add costs against a floating one: numpy has no BLAS for integers
#: (a (512, 512) int64 product 0.5 s, float32 8 ms: ~60x; counted 32x, a round middle).
INTEGER_WORK = 32


#: What one comparison level of a sort costs per element, in those units: numpy's argsort of
#: 2**20 float32s took 154 ns an element (20 levels, ~7.7 ns each: ~220 floating multiply-adds).
SORT_WORK = 256


def sort_work(bound: Bound, elements: int, length: int, keys: int = 1) -> Bound:
    """`bound` with the work of sorting `elements` elements in runs of `length` (numpy's sort
    is one uninterruptible call: an argsort of 2**24 int64s took ~5 s of CPU), by `keys` sort
    keys (a lexicographic sort of rows: `KEY_WORK` each besides its elements' work)."""
    return bound._replace(work=elements * max(1, (length - 1).bit_length()) * SORT_WORK
                          + (keys - 1) * KEY_WORK)


#: What one more key of a lexicographic sort costs besides its elements (numpy's lexsort makes
#: an iterator and a sort pass per key: ~6 us and ~2.7 KB each, measured on rows of 2 elements):
#: a `unique_dim` of 2 rows of 2**25 elements made 2**25 keys, 23 GB and minutes in one op.
KEY_WORK = 1 << 18


def work_bound(bound: Bound, multiply_adds: int, floating: bool) -> Bound:
    """`bound` with the work of `multiply_adds` multiply-adds (of a floating dtype, or not)."""
    work = multiply_adds if floating else multiply_adds * INTEGER_WORK
    return bound._replace(work=work)


def admit(bound: Bound, what: str) -> None:
    """Check an op's declared `bound` against this thread's limits and charge its bytes.

    Raises:
        AllocationLimitError: naming `what` (e.g. "nonzero() result") and the limit.
    """
    limit = _local.limits.max_elements
    if limit is not None and bound.results > min(limit, MAX_RESULTS):
        # Each result is a tensor object of its own: an op making more results than the element
        # limit (unbind of a long dim) costs more than a result of that many elements.
        raise errors.AllocationLimitError(
            f"{what}: {bound.results} results, more than the limit of {min(limit, MAX_RESULTS)}")
    if limit is not None and bound.elements > limit:
        if bound.shape is not None:
            check_shape(bound.shape, what)
        many = f"{bound.results} results of up to" if bound.results > 1 else "a result of"
        raise errors.AllocationLimitError(
            f"{what}: {many} {bound.elements} elements, more than the limit of {limit}")
    check_work(bound.work, what)
    charge(bound.nbytes, what)


def check_work(work: int, what: str) -> None:
    """Refuse `work` (in `WORK_PER_ELEMENT`'s units) past what one op may do under this thread's
    element limit: for a bound that must itself sort or search before it can tell the op's
    results (`unique_dim`'s), called before it does.

    Raises:
        AllocationLimitError: naming `what`, the work and the limit.
    """
    limit = _local.limits.max_elements
    if limit is not None and work > limit * WORK_PER_ELEMENT:
        raise errors.AllocationLimitError(
            f"{what} needs {work} units of work (each a floating multiply-add's time), "
            f"more than the limit of {limit * WORK_PER_ELEMENT} for one op "
            f"({WORK_PER_ELEMENT} per element of the limit of {limit} elements): an op cannot "
            "be interrupted once it runs")


#: Where `numel` stops multiplying: above every limit, so a count past it is refused by each.
NUMEL_CAP = 2 ** 64


def numel(shape: Sequence[int]) -> int:
    """Elements in `shape` (Python ints: no overflow), exact up to `NUMEL_CAP`; past it, a
    number above `NUMEL_CAP` (0 if a later dim is 0, negative if an odd number of dims are).

    A request's shape attribute may have millions of dims: their exact product, a bignum
    multiplied dim by dim, took time quadratic in them (60,000 dims of 2**62 in a 540 KB
    request: 18 s of CPU in one op, unstoppable, and its message failed to print). Stopping
    once past the cap keeps it linear in the dims with small numbers.
    """
    n = 1
    for i, d in enumerate(shape):
        n *= int(d)
        if not -NUMEL_CAP <= n <= NUMEL_CAP:
            rest = [int(e) for e in shape[i + 1:]]
            if 0 in rest:
                return 0
            return n if sum(e < 0 for e in rest) % 2 == 0 else -n
    return n


def shape_text(shape: Sequence[int], most: int = 16) -> str:
    """`shape` as a list for a message, its first `most` dims only when it has more."""
    if len(shape) <= most:
        return str(list(shape))
    return f"[{', '.join(str(int(d)) for d in shape[:most])}, ... ({len(shape)} dims)]"


def count_text(n: int) -> str:
    """A count from `numel` for a message: past `NUMEL_CAP` it is not exact."""
    return str(n) if -NUMEL_CAP <= n <= NUMEL_CAP else f"more than {NUMEL_CAP}"


def check_shape(shape: Sequence[int], what: str = "result") -> None:
    """Raise `AllocationLimitError` if a tensor of `shape` exceeds this thread's element limit."""
    limit = _local.limits.max_elements
    if limit is None:
        return
    n = numel(shape)
    if n > limit:
        raise errors.AllocationLimitError(
            f"{what} of shape {shape_text(shape)} has {count_text(n)} elements, more than the "
            f"limit of {limit}")


def shape_bound(shape: Sequence[int], itemsize: int) -> Bound:
    """The bound of one result of `shape` with `itemsize`-byte elements."""
    n = numel(shape)
    return Bound(n, n * itemsize + TENSOR_BYTES, 1, tuple(shape))


def shapes_bound(shapes: Sequence[Sequence[int]], itemsize: int) -> Bound:
    """The bound of several results (split, unbind, ...): each one's data and fixed cost."""
    sizes = [numel(s) for s in shapes]
    return Bound(max(sizes, default=0), sum(sizes) * itemsize + TENSOR_BYTES * len(sizes),
                 len(sizes))


def repeated_bound(count: int, shape: Sequence[int], itemsize: int) -> Bound:
    """The bound of `count` results of one `shape` (unbind, split's equal pieces), computed
    without listing them: `count` may be huge."""
    n = numel(shape)
    return Bound(n if count else 0, count * (n * itemsize + TENSOR_BYTES), count)


def combined(*bounds: Bound) -> Bound:
    """One bound for an op whose results are described by several (values and indices)."""
    return Bound(max((b.elements for b in bounds), default=0), sum(b.nbytes for b in bounds),
                 sum(b.results for b in bounds))


def with_scratch(bound: Bound, nbytes: int) -> Bound:
    """`bound` plus `nbytes` of temporaries the forward holds at its peak besides its results
    (charged to the byte budget; not results, so not checked against the element limit)."""
    return Bound(bound.elements, bound.nbytes + nbytes, bound.results, work=bound.work)


def nbytes_of(values: Any) -> int:
    """Data bytes of the numpy arrays in `values` (an array, or a list/tuple of arrays/None)."""
    if values is None:
        return 0
    if isinstance(values, (list, tuple)):
        n = 0  # a loop, not sum() of a generator: a backward pass calls this twice per node
        for v in values:
            if v is not None:
                n += getattr(v, "nbytes", 0)
        return n
    return int(getattr(values, "nbytes", 0))
