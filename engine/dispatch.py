"""Running one op: dtype promotion, allocation limits, the forward, and recording the graph."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradserve.surface import grad_mode, messages
from gradserve.surface.numbers import (
    C_TYPE_NAMES,
    NUMPY_NUMBERS,
    overflow_message,
    overflows,
    python_number,
)

from . import errors, limits, parallel, saved, scalarmath, strided
from .nodes import NO_GRAD_VIEW, Node
from .registry import OPS, OpDef, bind_attrs, lookup
from .tensor import Tensor, new_version

_SCALARS = (bool, int, float, np.bool_, np.integer, np.floating)
_PY_SCALARS = frozenset((bool, int, float))
_new_tensor = object.__new__
# what an op's forward returns as it is kept: an array, or a numpy scalar for a 0-d result
_NP_RESULTS = frozenset((np.ndarray, np.float32, np.float64, np.int64, np.int32, np.int16,
                         np.int8, np.uint8, np.bool_))
_SCALAR_OPERATORS = scalarmath.OPERATORS
_FLOATS, _PARTNERS = scalarmath.FLOATS, scalarmath.PARTNERS
_NODE_BYTES = limits.NODE_BYTES
_NODE_EDGES = limits.NODE_EDGES
# read once: the thread-local states (one object each, per-thread attributes) and the node
# constructor (a classmethod, bound anew at each attribute read)
_LIMITS = limits._local
_ENGAGED = limits.ENGAGED
_GRAD = grad_mode._state
_SAVED_HOOKS = saved.ACTIVE  # [number of saved_tensors_hooks contexts open]
_create_node = Node.create


def apply(name: str, inputs: Sequence[Any], attrs: Mapping[str, Any] | None = None, *,
          generator: Any = None) -> Any:
    """Run the registered op `name` on `inputs` (Tensors or Python scalars) with `attrs`.

    Validates the op name, the number and kind of inputs and every attribute first.

    Returns:
        A Tensor, or a tuple of Tensors for ops with several outputs.
    Raises:
        UnknownOpError, InvalidTypeError, InvalidArgumentError, AllocationLimitError.
    """
    op = lookup(name)
    if op.variadic:
        if len(inputs) != 1 or not isinstance(inputs[0], (list, tuple)):
            raise errors.InvalidTypeError(f"{name}() expects one sequence of tensors")
        args: tuple[Any, ...] = (tuple(inputs[0]),)
    else:
        args = tuple(inputs)
    return run(op, args, bind_attrs(op, (), attrs or {}), generator=generator)


def check_inputs(op: OpDef, args: Sequence[Any], positional: int | None = None) -> None:
    """Arity and input kinds: tensors, Python scalars, or None where the input is optional.
    A refused input is named with its position when it is among the first `positional` (None:
    all), given positionally, as torch names it."""
    if len(args) != len(op.inputs):
        raise errors.InvalidTypeError(
            f"{op.name}() takes {len(op.inputs)} tensor input(s) "
            f"({', '.join(op.inputs)}) but {len(args)} were given")
    for i, a in enumerate(args):
        if op.variadic:
            if not all(isinstance(t, Tensor) for t in a):
                raise errors.InvalidTypeError(
                    f"{op.name}(): expected a sequence of Tensors for '{op.inputs[0]}'")
        elif a is None:
            if not op.optional[i]:
                raise errors.InvalidTypeError(
                    f"{op.name}(): argument '{op.inputs[i]}' must be Tensor, not NoneType")
        elif not isinstance(a, (Tensor, *_SCALARS)):
            raise errors.InvalidTypeError(messages.must_be_tensor(
                op.name, op.inputs[i], a, i + 1 if positional is None or i < positional else None))


def require_tensor(op: OpDef, flat: Sequence[Any]) -> None:
    """torch's TypeError for an op given no Tensor, or a non-Tensor first input where one is
    needed (`sin(1.0)`, `copy(None, x)`); called only after such a call failed."""
    if op.variadic or not op.inputs:
        return
    check_inputs(op, flat)  # None where an input is not optional
    first = flat[0] if flat else None
    if isinstance(first, Tensor) and any(isinstance(a, Tensor) for a in flat):
        # the first non-Tensor input (an op like matmul takes tensors only)
        i = next((i for i, a in enumerate(flat) if not isinstance(a, Tensor)), None)
        if i is None:
            return
        first = flat[i]
    else:
        i = 0
    raise errors.InvalidTypeError(
        f"{op.name}(): argument '{op.inputs[i]}' (position {i + 1}) must be Tensor, not "
        f"{type(first).__name__}")


def run(op: OpDef, args: tuple[Any, ...], attrs: dict[str, Any], *, generator: Any = None,
        checked: bool = False) -> Any:
    """Run `op` on already-bound `args` and validated `attrs`; see `apply`.

    This is the hot path of every op: one pass over the inputs, no allocation but the result's.
    """
    if op.scalar_path and generator is None:
        out = run_scalar(op, args, attrs)
        if out is not None:
            return out
    if not checked and len(args) != op.arity:
        check_inputs(op, args)
    flat = args[0] if op.variadic else args
    # the dtype rule's answer, remembered by input dtypes where the rule allows
    # (registry.rule_key, inline: one Tensor, two of one dtype, a Tensor and a Python number)
    rules = op.rule_cache
    key: Any = None
    if rules is not None:
        n = len(flat)
        if n == 1:
            a = flat[0]
            if type(a) is Tensor:
                key = a.dtype
        elif n == 2:
            a, b = flat
            ta, tb = type(a), type(b)
            if ta is Tensor:
                if tb is Tensor:
                    if b.dtype is a.dtype:
                        key = a.dtype
                elif tb in _PY_SCALARS:
                    key = (a.dtype, tb)
            elif tb is Tensor and ta in _PY_SCALARS:
                key = (ta, b.dtype)
        if key is not None:
            rule = rules.get(key)
            if rule is not None:
                compute, out_dtype = rule
    if key is None or rule is None:
        try:
            rule = op.dtype_rule(flat, attrs)
        except (AttributeError, AssertionError):
            require_tensor(op, flat)  # a scalar or None where the rule needs a Tensor
            raise
        except errors.EngineError:
            check_inputs(op, args)  # an input no op takes (a numpy array: it has a dtype too)
            raise
        except _RULE_FAILURES as exc:
            raise _unjudged(op, exc) from None
        compute, out_dtype = rule
        if key is not None:
            rules[key] = rule  # type: ignore[index]
    # The op's one read of the thread-local state (it costs about three plain attribute
    # reads), skipped while no thread has a bound set (`limits.ENGAGED`): the thread's bounds
    # while any is set, else None. Bounds set on entry are set on return (the scopes the
    # forward may enter restore what they change), so the node's charge below reads the same
    # object.
    lim = _LIMITS.bounded if _ENGAGED else None
    if lim is not None:
        _admit(op, flat, attrs, compute, out_dtype, lim)
    arrays: list[Any] = []
    rg_mask = 0  # bit i: input i is a Tensor that requires grad
    large = False  # some input is large enough to split the op over threads (see parallel)
    bit = 1
    cast = compute.np if compute is not None else None
    view = op.view
    numpy_seen = False
    for a in flat:
        if type(a) is Tensor:
            if a._base is not None and a._view_version != a._vc[0]:
                refresh_view(a, used=True)  # base written in place since: history regenerated
            data: Any = a._data
            if type(data) is np.ndarray:
                if data.size >= parallel.MIN_ELEMENTS:
                    large = True
            elif view:
                data = a._array()  # a 0-d numpy scalar: share an array with the result
            if cast is not None and data.dtype is not cast and data.dtype != cast:
                data = data.astype(cast)
            arrays.append(data)
            if a._rg:
                rg_mask |= bit
        else:
            if type(a) not in _PY_SCALARS:
                if not checked:
                    check_inputs(op, args)  # raises for anything but numpy scalars / None
                if isinstance(a, NUMPY_NUMBERS):
                    # torch reads a numpy scalar as a Python number: `t * np.float64(x)` computes
                    # in float32, as `t * x` does (numpy's own would in float64)
                    a = python_number(a)
                    numpy_seen = True
            if type(a) is int and cast is not None and cast.kind in "iu":
                a = _int_operand(op, a, cast)
            arrays.append(a)
        bit <<= 1
    if numpy_seen and not op.variadic:  # the node names and saves the numbers torch reads
        args = flat = tuple(a if (n := python_number(a)) is None else n for a in args)
    if generator is not None:
        attrs = {**attrs, "generator": generator}
    ufunc = op.ufunc
    try:
        if ufunc is not None:  # one ufunc of the inputs alone: no attributes
            if large and (shape := parallel.split_shape(ufunc, arrays)) is not None:
                raw = parallel.split_call(ufunc, arrays, shape)
            elif not large and (fast := _SCALAR_OPERATORS.get(ufunc)) is not None and (
                    scalarmath.operands(arrays)):
                raw = fast(*arrays)  # 0-d floats: numpy's scalar operator, the same bits
            else:
                raw = ufunc(*arrays)
        elif op.variadic:
            raw = op.forward(arrays, **attrs)
        elif attrs:
            raw = op.forward(*arrays, **attrs)
        elif len(arrays) == 1:  # a unary op without attributes (`sin`): called directly
            raw = op.forward(arrays[0])
        else:
            raw = op.forward(*arrays)
    except errors.EngineError:
        raise
    except RuntimeWarning:
        # Only when warnings are errors (as in our tests): torch gives inf/nan silently.
        with np.errstate(all="ignore"):
            raw = op.forward(arrays, **attrs) if op.variadic else op.forward(*arrays, **attrs)
    except (ValueError, TypeError, IndexError, OverflowError) as exc:  # numpy's complaint
        _shape_error(op, flat, attrs)  # the op's own (torch's) message, when its shapes are wrong
        raise errors.InvalidArgumentError(f"{op.name}(): {exc}") from None
    except AttributeError:
        require_tensor(op, flat)
        raise
    if generator is not None:
        attrs.pop("generator")

    record = rg_mask and op.differentiable and _GRAD.enabled
    if record and lim is not None and len(flat) > _NODE_EDGES:
        # a node's inputs past a few, before the node keeps one record each (`node_bytes`)
        limits.charge(limits.node_bytes(len(flat)) - _NODE_BYTES, op.node_what)
    if op.n_outputs == 1:
        data = raw
        if type(raw) not in _NP_RESULTS and not isinstance(raw, np.generic):
            data = np.asarray(raw)
        out_np = out_dtype.np
        if data.dtype is not out_np and data.dtype != out_np:
            data = data.astype(out_np)
        if op.layout is not None and type(data) is np.ndarray and data.ndim > 1:
            data = strided.RELAYOUT[op.layout](flat, data)  # torch's strides (OpDef.layout)
        # the result: Tensor._result inline (this runs for every op)
        out = _new_tensor(Tensor)
        out._data = data
        out.dtype = out_dtype
        out._rg = False
        out.grad_fn = None
        out.output_nr = 0
        out._grad = None
        out._vc = [0] if not _GRAD.inference else new_version()
        out._accum = None
        out._retains_grad = False
        out._base = None
        if view:
            _link_view(flat[0], out)
        if record and out_dtype.category == 2:  # as torch: only floating results require grad
            node = _create_node(op, args, attrs, (out,), rg_mask)
            if node is not None:
                out.grad_fn = node
                out._rg = True
                if _SAVED_HOOKS[0]:
                    saved.pack(node, (out,))
                if lim is not None:
                    left = lim.bytes_left
                    if left is not None:  # limits.charge inline: this runs for every node
                        if left >= _NODE_BYTES:
                            lim.bytes_left = left - _NODE_BYTES
                        else:
                            limits.charge(_NODE_BYTES, op.node_what)
        return out
    outs = tuple(_wrap(r, out_dtype if i == 0 or op.n_outputs is None else None)
                 for i, r in enumerate(raw))
    if view:
        for o in outs:
            _link_view(flat[0], o)
    if record:
        diff = op.differentiable_outputs
        tracked = tuple(o for i, o in enumerate(outs) if diff is None or i in diff)
        node = Node.create(op, args, attrs, tracked, rg_mask)
        if node is not None:
            for nr, o in enumerate(tracked):
                o.grad_fn = node
                o.output_nr = nr
                o._rg = True
            if _SAVED_HOOKS[0]:
                saved.pack(node, tracked)
            if lim is not None:
                limits.charge(limits.NODE_BYTES, op.node_what)  # (nothing without a budget)
    return outs


# An integral dtype's range, for a Python int operand (see `_int_operand`), and the C type
# torch's refusal names.
_INT_RANGES = {np.dtype(t): (int(np.iinfo(t).min), int(np.iinfo(t).max))
               for t in (np.uint8, np.int8, np.int16, np.int32, np.int64)}

# The ops whose Python-number operand torch wraps into a 0-dim tensor and casts to the common
# dtype, C's cast (`uint8 tensor + 300` adds 44); the others convert it checked, refusing one
# out of the dtype's range (`clamp`, `where`, `pow`, `fill`).
WRAPPED_INT_OPERANDS = frozenset((
    "add", "sub", "mul", "lt", "le", "gt", "ge", "eq", "ne", "bitwise_and", "bitwise_or",
    "bitwise_xor", "bitwise_left_shift", "bitwise_right_shift"))


def _int_operand(op: OpDef, a: int, cast: np.dtype[Any]) -> Any:
    """A Python int operand of an op computing in integral `cast`: as it is when it fits, else
    converted as torch converts it (see `WRAPPED_INT_OPERANDS`), where numpy would refuse it or
    compare exactly.

    Raises:
        InvalidArgumentError: torch's refusal of an int out of the dtype's range.
    """
    lo, hi = _INT_RANGES[cast]
    if lo <= a <= hi or not -(2 ** 63) <= a < 2 ** 63:  # beyond int64: numpy's refusal stands
        return a
    if op.name not in WRAPPED_INT_OPERANDS and overflows(a, cast.name):
        raise errors.InvalidArgumentError(overflow_message(C_TYPE_NAMES[cast.name]))
    return np.array(a, np.int64).astype(cast)[()]  # C's cast (uint8 takes -255..-1 so)


def run_scalar(op: OpDef, args: tuple[Any, ...], attrs: dict[str, Any]) -> Tensor | None:
    """`run` for the common small call, or None (nothing done) where it does not apply.

    It applies to an op with `OpDef.scalar_path` on one or two inputs, each a Tensor whose data
    is a numpy scalar (0-d, not a view) of the dtype the op computes in, or a Python number,
    once the op's dtype answer for them is remembered (`OpDef.rule_cache`), and under limits
    only to an elementwise op (`OpDef.scalar_bounds`: a 0-d result). It makes the calls `run`
    makes for these inputs, in its order (the dtype answer, the limits' admission and charge,
    the forward or the scalar operator `run` would choose, the result, the node and its
    charge), without `run`'s steps that cannot apply to them. A forward that raises leaves it
    to `run` (the admission's charge given back first), which computes it again and says what
    went wrong.
    """
    n = len(args)
    if n != op.arity:
        return None
    key: Any
    if n == 1:
        x = args[0]
        if type(x) is not Tensor or x._base is not None:
            return None
        tensor_dtype = key = x.dtype
        rg_mask = 1 if x._rg else 0
        x = x._data
        if type(x) is np.ndarray:
            return None
        y: Any = None
    elif n == 2:
        x, y = args
        tx, ty = type(x), type(y)
        if tx is Tensor:
            if x._base is not None:
                return None
            tensor_dtype = x.dtype
            rg_mask = 1 if x._rg else 0
            x = x._data
            if type(x) is np.ndarray:
                return None
            if ty is Tensor:
                if y._base is not None or y.dtype is not tensor_dtype:
                    return None
                if y._rg:
                    rg_mask |= 2
                y = y._data
                if type(y) is np.ndarray:
                    return None
                key = tensor_dtype
            elif ty in _PY_SCALARS:
                key = (tensor_dtype, ty)
            else:
                return None
        elif ty is Tensor and tx in _PY_SCALARS:
            if y._base is not None:
                return None
            tensor_dtype = y.dtype
            rg_mask = 2 if y._rg else 0
            y = y._data
            if type(y) is np.ndarray:
                return None
            key = (tx, tensor_dtype)
        else:
            return None
    else:
        return None
    rule = op.rule_cache.get(key)  # type: ignore[union-attr]
    if rule is None:
        return None
    compute, out_dtype = rule
    if compute is not None and compute is not tensor_dtype:
        return None  # a cast first: `run`'s
    lim = _LIMITS.bounded if _ENGAGED else None  # (as `run` reads it)
    if lim is not None:
        if op.scalar_bounds is None:
            return None  # (an op that is not elementwise may make a large result of 0-d inputs)
        before = lim.bytes_left
        # `_admit` for these inputs, inline where the op's remembered 0-d bound fits (its
        # scalar branch: 0-d inputs of the compute dtype, nothing cast); anything else, a
        # refusal included, goes through it (which raises as `run` would here)
        bound = (op.scalar_bounds.get(out_dtype)
                 if not attrs or op.scalar_attrs is None or attrs == op.scalar_attrs else None)
        limit = lim.max_elements
        if bound is not None and not bound.work and bound.results <= _RESULTS_PER_CHECK and (
                limit is None or (bound.elements <= limit and bound.results <= limit)) and (
                before is None or bound.nbytes <= before):
            check = lim.check
            if check is not None:
                check()
            if before is not None:
                lim.bytes_left = before - bound.nbytes
        else:
            _admit(op, args, attrs, compute, out_dtype, lim)
    try:
        fast = op.scalar_operator
        if n == 1:
            if fast is not None and type(x) in _FLOATS:
                raw = fast(x)
            elif op.ufunc is not None:
                raw = op.ufunc(x)
            else:
                raw = op.forward(x, **attrs) if attrs else op.forward(x)
        elif fast is not None:
            t0, t1 = type(x), type(y)
            # scalarmath.operands, inline: then numpy's scalar operator gives the same bits
            if (t1 is t0 or t1 in _PARTNERS) if t0 in _FLOATS else (
                    t1 in _FLOATS and t0 in _PARTNERS):
                raw = fast(x, y)
            else:
                raw = op.ufunc(x, y)  # type: ignore[misc]
        elif op.ufunc is not None:
            raw = op.ufunc(x, y)
        else:
            raw = op.forward(x, y, **attrs) if attrs else op.forward(x, y)
    except Exception:  # noqa: BLE001 - `run` computes it again and says what went wrong
        if lim is not None:
            lim.bytes_left = before  # `run` admits it again
        return None
    if type(raw) is not out_dtype.scalar:  # (a numpy scalar of the result's dtype: as it is)
        if type(raw) not in _NP_RESULTS and not isinstance(raw, np.generic):
            raw = np.asarray(raw)
        out_np = out_dtype.np
        if raw.dtype is not out_np and raw.dtype != out_np:
            raw = raw.astype(out_np)
    out = _new_tensor(Tensor)  # as `run` makes it
    out._data = raw
    out.dtype = out_dtype
    out._rg = False
    out.grad_fn = None
    out.output_nr = 0
    out._grad = None
    out._vc = [0] if not _GRAD.inference else new_version()
    out._accum = None
    out._retains_grad = False
    out._base = None
    if (rg_mask and out_dtype.category == 2 and op.differentiable
            and _GRAD.enabled):
        node = _create_node(op, args, attrs, (out,), rg_mask)
        if node is not None:
            out.grad_fn = node
            out._rg = True
            if _SAVED_HOOKS[0]:
                saved.pack(node, (out,))
            if lim is not None:  # as `run` charges it
                left = lim.bytes_left
                if left is not None:
                    if left >= _NODE_BYTES:
                        lim.bytes_left = left - _NODE_BYTES
                    else:
                        limits.charge(_NODE_BYTES, op.node_what)
    return out


# An in-place op on a target of at least this many elements writes into it (`run_into`): below,
# the result's allocation and the copy back cost less than the extra checks.
INPLACE_MIN_ELEMENTS = 1 << 14
_INT_RANGE = 1 << 63


def run_into(op: OpDef, target: Tensor, inputs: tuple[Any, ...], attrs: dict[str, Any]) -> bool:
    """`op(target, *inputs)` written into target's own array, for `apply_inplace` when nothing
    is recorded: the same bits as `run` and a copy back, without the result's allocation and
    the copy. Only for an op that is one ufunc (`OpDef.default_ufunc`, with these attributes;
    elementwise: each element is computed from the same elements of the inputs, wherever it is
    written), a large C-ordered writeable floating target, inputs of the target's dtype that
    need no cast (or Python floats and ints), broadcast to the target's shape, and that are the
    target's array itself or overlap it nowhere. The op's declared bound is admitted
    and charged as `run` does (the limits hold as if the result were allocated).

    Returns:
        Whether it ran; False (nothing done, nothing charged) where it does not apply: the
        caller then runs the op out of place, which also raises any error the inputs deserve.
    Raises:
        AllocationLimitError, BudgetExceededError: as `run` raises them for these inputs.
    """
    out = target._data
    ufunc = op.default_ufunc
    if (ufunc is None or type(out) is not np.ndarray or out.size < INPLACE_MIN_ELEMENTS
            or not out.flags.c_contiguous or not out.flags.writeable
            or (ufunc is not op.ufunc and attrs != op.default_attrs)):
        return False
    args = (target, *inputs)
    if len(args) != len(op.inputs):
        return False
    try:
        compute, out_dtype = op.dtype_rule(args, attrs)
    except Exception:  # noqa: BLE001 - `run` judges these inputs and raises the right error
        return False
    if compute is not out_dtype or out_dtype is not target.dtype or out.dtype.kind != "f":
        return False  # a cast (of the target, or of the result back into it); not floating
    arrays: list[Any] = [out]
    dtype, shape = out.dtype, out.shape
    for a in inputs:
        if type(a) is Tensor:
            data = a._data
            if a._base is not None or data.dtype != dtype:
                return False  # (a view's history may need regenerating first: `run` does it)
            if type(data) is np.ndarray and data is not out:
                if data.shape != shape and (data.ndim > len(shape) or any(
                        d != 1 and d != s for d, s in zip(data.shape[::-1], shape[::-1]))):
                    return False  # not broadcast to the target's shape (`run` raises)
                if np.may_share_memory(data, out):
                    return False  # another view of the target's memory: numpy's own buffering
            arrays.append(data)
        elif type(a) is float or (type(a) is int and -_INT_RANGE <= a < _INT_RANGE):
            arrays.append(a)  # (numpy refuses a Python int too large for a float: `run` says so)
        else:
            return False
    lim = _LIMITS.bounded if _ENGAGED else None
    if lim is not None:
        _admit(op, args, attrs, compute, out_dtype, lim)
    # torch gives inf and nan silently; and a warning turned into an error (as in our tests)
    # could not be answered by computing again, as `run` does: the target is already written
    with np.errstate(all="ignore"):
        parallel.call(ufunc, *arrays, out=out)
    return True


def _admit(op: OpDef, flat: Sequence[Any], attrs: dict[str, Any], compute: Any,
           out_dtype: Any, lim: limits.Limits) -> None:
    """The interrupt check, then the op's declared output bound against this thread's limits
    `lim` (see `limits`), before the forward allocates anything. The inputs `run` casts to the
    compute dtype are charged too: the forward holds those copies."""
    check = lim.check
    if check is not None:
        check()
    limit, left = lim.max_elements, lim.bytes_left
    if limit is None and left is None:
        return
    if len(flat) > _RESULTS_PER_CHECK:
        # each input is an edge of the node and a gradient its backward step makes (a cat of n
        # tensors splits into n): as many as results allow, counted as results are
        if limit is not None and len(flat) > min(limit, limits.MAX_RESULTS):
            raise errors.AllocationLimitError(
                f"{op.name}(): {len(flat)} inputs, more than the limit of "
                f"{min(limit, limits.MAX_RESULTS)}")
        if check is not None:
            for _ in range(len(flat) // _RESULTS_PER_CHECK):
                check()
    scalars = op.scalar_bounds
    bound = _NO_BOUND
    if scalars is not None and (not attrs or op.scalar_attrs is None
                                or attrs == op.scalar_attrs):
        # An elementwise op of 0-d inputs makes one 0-d result: its declared bound, once per
        # dtype (the 0-d test and the bytes of the inputs cast to `compute`, as `_cast_bytes`
        # counts them, in one pass over the inputs).
        cast = 0
        for a in flat:
            if type(a) is Tensor:
                data = a._data
                if type(data) is np.ndarray and data.ndim:
                    break
                if compute is not None and a.dtype is not compute:
                    cast += compute.np.itemsize
            elif type(a) not in _PY_SCALARS and not isinstance(a, np.generic):
                break
        else:
            bound = scalars.get(out_dtype, _NO_BOUND)
            if bound is _NO_BOUND:
                bound = scalars[out_dtype] = _declared_bound(op, flat, attrs, out_dtype)
    if bound is _NO_BOUND:
        bound = _declared_bound(op, flat, attrs, out_dtype)
        cast = _cast_bytes(flat, compute) if compute is not None and bound is not None else 0
    if bound is None:
        return
    if bound.results > _RESULTS_PER_CHECK:
        # each result is a tensor object and a graph output (~4-6 us): an op of a million
        # results (unbind of a (0, 10**6) tensor: no data) is as costly as many ops; at most
        # `limits.MAX_RESULTS` of them, counted as ops (a stateless call's --max-call-ops)
        if limit is not None and bound.results > limits.MAX_RESULTS:
            limits.admit(bound, op.result_what)  # refuses it
        if check is not None:
            for _ in range(bound.results // _RESULTS_PER_CHECK):
                check()
    work = bound.work
    if work:
        # a product's multiply-adds: at most `WORK_PER_ELEMENT` per element of the limit in one
        # op, and counted as the ops they cost (a stateless call's --max-call-ops)
        if limit is not None and work > limit * limits.WORK_PER_ELEMENT:
            try:
                limits.admit(bound, op.result_what)  # refuses it (naming its size first)
            except errors.AllocationLimitError:
                _name_the_shape(op, flat, attrs, bound, op.result_what)
                raise
        if check is not None:
            for _ in range(work // limits.WORK_PER_CHECK):
                check()
    # limits.admit's checks and charge inline for a bound that fits; a refusal goes through it
    # (its messages)
    nbytes = bound.nbytes + cast
    if (limit is None or (bound.elements <= limit and bound.results <= limit)) and (
            left is None or nbytes <= left):
        if left is not None:
            lim.bytes_left = left - nbytes
        return
    if cast:
        bound = limits.with_scratch(bound, cast)
    what = op.result_what
    try:
        limits.admit(bound, what)
    except errors.AllocationLimitError:
        _name_the_shape(op, flat, attrs, bound, what)
        raise


_NO_BOUND: Any = object()
# An op's results that cost as much as one op, for the interrupt check (`_admit`).
_RESULTS_PER_CHECK = 4


def _declared_bound(op: OpDef, flat: Sequence[Any], attrs: dict[str, Any],
                    out_dtype: Any) -> Any:
    """The op's declared bound (remembered per shapes when it depends on them alone); a rule
    that cannot judge the inputs raises the caller's error, as `run` does."""
    try:
        return (op.cached_bound(flat, attrs, out_dtype) if op.bound_by_shapes
                else op.bound(flat, attrs, out_dtype))
    except AttributeError:
        require_tensor(op, flat)
        raise
    except _RULE_FAILURES as exc:
        raise _unjudged(op, exc) from None


# What a dtype rule or an output bound may raise on inputs it was not written for (a NaN where a
# size is computed, an index past a 0-d shape): the caller's mistake, never a server error.
_RULE_FAILURES = (ValueError, TypeError, IndexError, OverflowError, ZeroDivisionError)


def _unjudged(op: OpDef, exc: Exception) -> Exception:
    """The error for an op whose dtype rule or bound could not judge its inputs: the engine's
    own typed error as it is, anything else as InvalidArgumentError naming the op (as numpy's
    complaints in a forward are)."""
    if isinstance(exc, errors.EngineError):
        return exc
    return errors.InvalidArgumentError(f"{op.name}(): {exc}")


def _name_the_shape(op: OpDef, flat: Sequence[Any], attrs: dict[str, Any], bound: Any,
                    what: str) -> None:
    """For a one-result op refused for its elements, raise the message that names the result's
    shape (`limits.check_shape`'s), when the op declares one (only on the refusal path)."""
    limit = limits.current().max_elements
    if op.out_shape is not None and bound.results == 1 and limit is not None and (
            bound.elements > limit):
        limits.check_shape(op.out_shape(*flat, **attrs), what)


def _cast_bytes(flat: Sequence[Any], compute: Any) -> int:
    """Bytes of the copies `run` makes of the tensor inputs not already in `compute`."""
    n = 0
    for a in flat:
        if type(a) is Tensor and a.dtype is not compute:
            n += limits.numel(a._data.shape) * compute.np.itemsize
    return n


def _link_view(src: Any, out: Tensor) -> None:
    """A view op's result that shares `src`'s memory is a view of it, as in torch: one version
    counter (an in-place write through either shows in the other's saved-tensor checks) and a
    `_base` (in-place ops on views are checked against it, see api._inplace)."""
    if type(src) is not Tensor or not np.may_share_memory(out._data, src._data):
        return
    base = src._base if src._base is not None else src
    out._vc = src._vc
    out._base = base
    out._view_version = src._vc[0]
    base._has_views = True  # unset (read with getattr) on tensors that never had a view
    if base._rg and not _GRAD.enabled:  # torch: it requires grad as its base, no grad_fn
        out._rg = True
        out._accum = NO_GRAD_VIEW


VIEW_LAYOUT_MESSAGE = (
    "gradserve does not support in-place operations on a view, or regenerating a view's history "
    "after its base was modified in place, when the base's data is not contiguous (torch does "
    "it through as_strided); clone() the tensor before taking the view, or write under "
    "no_grad()")


def refresh_if_stale(t: Tensor) -> None:
    """`refresh_view(t)` if `t` is a view whose base was written in place since its history
    was recorded (dispatch.run does the same test inline, on its hot path)."""
    if t._base is not None and t._view_version != t._vc[0]:
        refresh_view(t)


def refresh_view(t: Tensor, positions: np.ndarray | None = None, *, used: bool = False) -> None:
    """Regenerate a view's history from its base, as torch does after an in-place write through
    the base or the view: its grad_fn becomes `take` of the base at the view's flat `positions`
    (computed when not given), named AsStridedBackward0, so gradients flow through the base's
    current history. Nothing to do while the base does not require grad.

    Raises:
        InplaceError: the base's layout does not let the positions be read back; or (`used`:
            an op reads the view) a view made under no_grad() read in grad mode after a write.
    """
    if t._accum is NO_GRAD_VIEW:  # made under no_grad(): no history to regenerate
        if used and _GRAD.enabled:  # an op in grad mode reads it after a write: torch refuses
            raise errors.InplaceError(messages.NO_GRAD_VIEW_REBASE_MESSAGE)
        return
    t._view_version = t._vc[0]
    base = t._base
    assert base is not None
    if not base._rg:
        return
    if positions is None:
        positions = view_positions(t, base)
        if positions is None:
            raise errors.InplaceError(VIEW_LAYOUT_MESSAGE)
    with grad_mode.enable_grad():
        regenerated = run(OPS["take"], (base, Tensor._make(positions)), {})
    node = regenerated.grad_fn
    node._name = "AsStridedBackward0"
    t.grad_fn, t.output_nr, t._rg = node, 0, True


def view_positions(view: Tensor, base: Tensor) -> np.ndarray | None:
    """The flat positions in `base` of `view`'s elements (from their memory addresses), or None
    when the base's layout does not allow reading them so (not C-contiguous)."""
    vd, bd = view._data, base._data
    if not (isinstance(vd, np.ndarray) and isinstance(bd, np.ndarray)
            and bd.flags.c_contiguous):
        return None
    item = bd.itemsize
    offset = vd.__array_interface__["data"][0] - bd.__array_interface__["data"][0]
    if offset % item or any(st % item for st in vd.strides) or not 0 <= offset // item < max(
            bd.size, 1):
        return None
    numbers = np.arange(bd.size, dtype=np.int64)[offset // item:]
    strides = tuple(st // item * numbers.itemsize for st in vd.strides)
    return np.lib.stride_tricks.as_strided(numbers, vd.shape, strides).copy()


def _shape_error(op: OpDef, flat: Any, attrs: dict[str, Any]) -> None:
    """Raise the error `op.out_shape` gives for these inputs, if any (only on the error path:
    without an allocation limit the forward runs unchecked, and numpy's text is not torch's)."""
    if op.out_shape is None:
        return
    try:
        op.out_shape(*flat, **attrs)
    except errors.EngineError:
        raise
    except Exception:  # noqa: BLE001 - out_shape cannot judge these inputs; numpy's text stays
        return


def _wrap(raw: Any, dtype: Any) -> Tensor:
    data = raw if type(raw) is np.ndarray else np.asarray(raw)
    if dtype is not None and data.dtype != dtype.np:
        data = data.astype(dtype.np)
    return Tensor._make(data)
