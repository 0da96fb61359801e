"""The op registry: every op's forward, dtype rule and vector-Jacobian products, defined once.

`defop` adds an `OpDef`; everything else (the torch-like functions, Tensor methods, backward node
names, the server's catalogue, the numpy and engine namespaces the rules are written against) is
derived from `OPS`.

A VJP rule is `rule(ns, g, out, *inputs, **attrs) -> gradient for one input`. `ns` is the array
namespace: `NP` (plain numpy, for a fast backward) or `EN` (engine ops, so that the backward
itself is recorded when `create_graph=True`). `ns.<op>` exists for every registered op and calls
its forward (NP) or the engine function (EN), so a rule uses the same code in both cases. Rules
need not unbroadcast or cast: the backward pass sums each gradient to its input's shape and casts
it to the input's dtype, once. What each rule reads (its result, inputs, or only their shapes)
is declared with `saves=`, as torch's derivatives.yaml does, and a node saves exactly that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from gradserve.surface.signature import OUTPUT_COUNTS, AttrValidator
from gradserve.surface.signature import AttrSpec as AttrSpec
from gradserve.surface.spellings import is_int as is_int

from . import dtypes, errors, limits, scalarmath
from .dtypes import DType
from .tensor import Tensor

OPSET_VERSION = 1

DtypeRule = Callable[[Sequence[Any], Mapping[str, Any]], "tuple[DType | None, DType]"]
NameRule = Callable[[Sequence[Any], Mapping[str, Any]], str]
Rule = Callable[..., Any]
BoundRule = Callable[[Sequence[Any], Mapping[str, Any], DType], "limits.Bound"]



def names_backward(*names: str) -> Callable[[Any], Any]:
    """Declare the node names an op's naming function can return (torch picks a node by the
    arguments: PowBackward0 or PowBackward1); ListOps lists them as `backward_names`."""
    def declare(fn: Any) -> Any:
        fn.backward_names = tuple(dict.fromkeys(n for n in names if n))
        return fn
    return declare

# The engine's input names torch spells otherwise (its first input is `self`), and clamp's bounds,
# whose gradients torch computes together (clamp_backward_min_max: min's, then max's) before
# self's.
_TORCH_NAMES = {"input": "self", "min": "min, max 0", "max": "min, max 1"}


# The elementwise ops whose shape rule is not a broadcasting one (one input, attributes), which
# torch computes with a TensorIterator: their results keep their inputs' stride order
# (`OpDef.layout`)
POINTWISE = frozenset((
    "add_scalar", "addcdiv", "addcmul", "celu", "div_scalar", "elu", "erf", "erfc", "expm1",
    "frac", "gelu", "hardsigmoid", "hardsigmoid_backward", "hardswish", "hardtanh", "leaky_relu",
    "lerp", "lerp_scalar", "log1p", "log_sigmoid", "mish", "mul_scalar", "nan_to_num", "relu",
    "round", "rsqrt", "selu", "sigmoid", "sigmoid_backward", "silu", "softplus", "tanh_backward",
    "threshold_backward", "xlogy",
))


# The elementwise ops that lay out their results themselves, as torch's empty_like does
# (memory_format=): not by TensorIterator's rule
LAID_OUT = frozenset(("clone", "to_dtype"))


# The other ops whose result's layout torch chooses by its inputs' (`OpDef.layout`):
# "channels_last" when the input or the weight is laid out so (mkldnn's convolution),
# "contiguous" whatever the inputs' (softmax computes on a contiguous copy)
LAYOUTS = {"convolution": "channels_last", "convolution_transpose": "channels_last",
           "softmax": "contiguous", "log_softmax": "contiguous"}


class OpDef:
    """One registry entry: see the module docstring and docs/internals.md."""

    def __init__(self, name: str, forward: Callable[..., Any], vjps: Sequence[Rule | None], *,
                 inputs: Sequence[str], attrs: Sequence[AttrSpec], dtype: DtypeRule,
                 backward: str | NameRule, n_outputs: int | None,
                 out_shape: Callable[..., Sequence[int]] | None, doc: str, method: bool,
                 variadic: bool, differentiable_outputs: Sequence[int] | None, inplace: bool,
                 inplace_backward: str | None = None, view: bool = False,
                 out_bound: BoundRule | None = None, saves: str | Sequence[str] | None = None,
                 output_count: str | None = None, default_ufunc: np.ufunc | None = None,
                 inplace_op: str | None = None):
        if vjps and len(vjps) != len(inputs):
            raise ValueError(f"{name}: {len(vjps)} vjp rules for {len(inputs)} inputs")
        self.name = name
        self.forward = forward
        self.vjps: tuple[Rule | None, ...] = tuple(vjps) or (None,) * len(inputs)
        self.optional = tuple(i.endswith("?") for i in inputs)
        self.inputs = tuple(i.rstrip("?") for i in inputs)
        # how many inputs a call passes; -1 for a variadic op (one sequence: always checked)
        self.arity = -1 if variadic else len(self.inputs)
        self.attrs = tuple(attrs)
        self.attr_names = tuple(a.name for a in attrs)
        self.dtype_rule = dtype
        # The rule's answers by input dtypes, for a rule that is a function of them alone
        # (`by_dtypes`): see `rule_key`; emptied when the default dtype changes.
        self.rule_cache: dict[Any, tuple[DType | None, DType]] | None = (
            {} if getattr(dtype, "by_dtypes", False) is True else None)
        if self.rule_cache is not None:
            _RULE_CACHES.append(self.rule_cache)
        self._backward = backward
        # the node name when it does not depend on the arguments (Node.create reads it)
        self.fixed_name: str | None = backward if isinstance(backward, str) else None
        self.n_outputs = n_outputs
        self.output_count = output_count
        self.out_shape = out_shape
        self.out_bound = out_bound
        self.doc = doc
        self.method = method
        self.variadic = variadic
        self.inplace = inplace
        self.inplace_backward = inplace_backward
        self.inplace_op = inplace_op
        self.view = view
        self.random = False  # draws from a generator (ops_creation marks them; see server/ops.py)
        self.differentiable = any(v is not None for v in self.vjps)
        # Bit i set: input i has a VJP rule (Node.create masks the inputs requiring grad by it).
        self.rule_mask = sum(1 << i for i, v in enumerate(self.vjps) if v is not None)
        # The order a recorded backward (create_graph) runs the rules in: torch's generated
        # nodes compute their inputs' gradients sorted by the inputs' names (`other` before
        # `self`, `tensor1` before `tensor2`: its codegen's order), which numbers the nodes the
        # rules record and so orders a later pass's sums. None: the inputs' own order.
        order = tuple(sorted((i for i, v in enumerate(self.vjps) if v is not None),
                             key=lambda i: _TORCH_NAMES.get(self.inputs[i], self.inputs[i])))
        self.vjp_order: tuple[int, ...] | None = (
            order if list(order) != sorted(order) else None)
        # A forward that is one numpy ufunc on its inputs alone: elementwise, so a large call
        # may be split over threads with the same result (see `parallel`).
        self.ufunc: np.ufunc | None = (
            forward if isinstance(forward, np.ufunc) and forward.nout == 1 and not attrs
            and not variadic and forward.nin == len(inputs) else None)
        # The one ufunc the forward is when every attribute has its default (add and sub with
        # alpha 1), or `ufunc`: an in-place op of it may write into its target (dispatch.run_into)
        self.default_ufunc: np.ufunc | None = default_ufunc or self.ufunc
        # numpy's scalar operator that computes `ufunc` on 0-d operands (scalarmath)
        self.scalar_operator: Callable[..., Any] | None = (
            scalarmath.OPERATORS.get(self.ufunc) if self.ufunc is not None else None)
        self.differentiable_outputs = (tuple(differentiable_outputs)
                                       if differentiable_outputs is not None else None)
        # What each rule reads, as declared, so a node saves only what its backward needs (as
        # torch's derivatives.yaml does) and a second backward fails only where torch's does.
        self.uses = parse_saves(name, self.inputs, self.vjps, saves)
        self.default_attrs = {a.name: a.default for a in self.attrs if not a.required}
        self._plans: dict[int, tuple[bool, frozenset[int], frozenset[int], tuple[Any, ...]]] = {}
        # What `limits` names when it refuses this op's results or graph node (made once here,
        # not per op run).
        self.result_what = f"{name}() result"
        self.node_what = f"{name}() graph node"
        # Whether this op's bound is a function of its inputs' shapes and dtypes and its
        # attributes alone (see `shapes_only`), so `cached_bound` may remember it.
        rule = out_bound if out_bound is not None else out_shape
        self.bound_by_shapes = not variadic and getattr(rule, "shapes_only", False) is True
        self.bounds: dict[Any, limits.Bound | None] = {}
        # An elementwise op's bound when every input is 0-d (one result of one element), by
        # result dtype: `bound` computed once per dtype (see dispatch._admit). Elementwise: a
        # ufunc, or a result shaped by a `keeps_0d` rule, bounded by that shape or, for an op
        # that is one ufunc when its attributes are the defaults (add and sub with alpha 1),
        # by a rule of its own: then only for those attributes (`scalar_attrs`).
        keeps = getattr(out_shape, "keeps_0d", False) is True
        self.scalar_bounds: dict[DType, limits.Bound | None] | None = (
            {} if self.bound_by_shapes and (self.ufunc is not None or (keeps and (
                out_bound is None or self.default_ufunc is not None)))
            else None)
        # None: `scalar_bounds` holds whatever the attributes; else the attributes it holds for
        # (compared with ==, as the op's own bound compares them: alpha 1, 1.0 and True alike)
        self.scalar_attrs: dict[str, Any] | None = (
            self.default_attrs if self.scalar_bounds is not None and self.ufunc is None
            and out_bound is not None else None)
        # Whether dispatch.run may take its path for 0-d inputs (`run_scalar`): one result,
        # not a view, one sequence of inputs, and a dtype rule it can remember.
        self.scalar_path = (n_outputs == 1 and not variadic and not view
                            and self.rule_cache is not None)
        # How dispatch.run lays out the result (strided.RELAYOUT; None: as the forward made
        # it): "pointwise" as torch's TensorIterator lays out an elementwise result (the
        # inputs' stride order: a ufunc, a broadcasting shape rule, or named in `POINTWISE`),
        # else as `LAYOUTS` says
        self.layout: str | None = (
            "pointwise" if n_outputs == 1 and not view and name not in LAID_OUT and (
                self.ufunc is not None or keeps or name in POINTWISE)
            else LAYOUTS.get(name))

    def cached_bound(self, args: Sequence[Any], attrs: Mapping[str, Any],
                     out_dtype: DType) -> limits.Bound | None:
        """`bound(args, attrs, out_dtype)` for an op whose bound depends only on its inputs'
        shapes and dtypes and its attributes (`bound_by_shapes`), remembered per shapes, dtypes
        and attribute values: a chain of ops on one shape computes it once. Inputs other than
        Tensors and Python scalars, and unhashable attribute values, are not remembered. At
        most `MAX_CACHED_BOUNDS` entries per op (then it starts over), so shapes from the wire
        cannot grow it."""
        key: list[Any] = [out_dtype]
        for a in args:
            t = type(a)
            if t is Tensor:
                key.append(a._data.shape)
                key.append(a.dtype)
            elif t in _SCALAR_TYPES:
                key.append(t)
            else:
                return self.bound(args, attrs, out_dtype)
        for name, v in attrs.items():  # by name: their order is the caller's
            key.append(name)
            key.append(type(v))  # 1, 1.0 and True are equal keys, not always equal attributes
            key.append(v)
        k = tuple(key)
        cache = self.bounds
        try:
            bound = cache.get(k, _MISSING)
        except TypeError:  # an unhashable attribute value (a list of dims)
            return self.bound(args, attrs, out_dtype)
        if bound is _MISSING:
            bound = self.bound(args, attrs, out_dtype)
            if len(cache) >= MAX_CACHED_BOUNDS:
                cache.clear()
            cache[k] = bound
        return bound  # type: ignore[return-value]

    @property
    def backward_name(self) -> str:
        """torch's name for this op's backward node in the common (all-tensor) case."""
        if isinstance(self._backward, str):
            return self._backward
        return self._backward((), {a.name: a.default for a in self.attrs})

    @property
    def backward_names(self) -> tuple[str, ...]:
        """Every node name this op can record (ListOps `backward_names`), as declared with
        `names_backward` on a naming function; empty for a non-differentiable op."""
        if not self.differentiable:
            return ()
        if isinstance(self._backward, str):
            return (self._backward,)
        return tuple(getattr(self._backward, "backward_names", (self.backward_name,)))

    def node_name(self, args: Sequence[Any], attrs: Mapping[str, Any]) -> str:
        return self._backward if isinstance(self._backward, str) else self._backward(args, attrs)

    def save_plan(self, mask: int
                  ) -> tuple[bool, frozenset[int], frozenset[int], tuple[tuple[bool, int], ...]]:
        """What a node saves when the inputs in bit `mask` need gradients: (out, data, meta,
        steps), `steps` the same per input position as (edge wanted, 1 data / 2 meta / 0)."""
        plan = self._plans.get(mask)
        if plan is None:
            rules = [u for i, u in enumerate(self.uses) if mask >> i & 1]
            data = frozenset().union(*(u.data for u in rules))
            meta = frozenset().union(*(u.meta for u in rules)) - data
            steps = tuple((bool(mask >> i & 1), 1 if i in data else 2 if i in meta else 0)
                          for i in range(len(self.inputs)))
            plan = self._plans[mask] = (any(u.out for u in rules), data, meta, steps)
        return plan

    def bound(self, args: Sequence[Any], attrs: Mapping[str, Any],
              out_dtype: DType) -> limits.Bound | None:
        """What this op's results can take, before it runs (see `limits.Bound`): from
        `out_bound` where declared, else from `out_shape` and the result dtype."""
        if self.out_bound is not None:
            return self.out_bound(args, attrs, out_dtype)
        if self.out_shape is not None:
            return limits.shape_bound(self.out_shape(*args, **attrs), out_dtype.np.itemsize)
        return None

    def __repr__(self) -> str:
        return f"<op {self.name}({', '.join(self.inputs)})>"


class RuleUses(NamedTuple):
    """What one VJP rule reads: the output, and which inputs as data or only as metadata."""

    out: bool
    data: frozenset[int]
    meta: frozenset[int]


# What a rule may read of an input saved as metadata only (nodes._Meta's fields).
META_ATTRS = ("shape", "ndim", "dtype", "strides")
_NOTHING = RuleUses(False, frozenset(), frozenset())


def parse_saves(name: str, inputs: Sequence[str], vjps: Sequence[Rule | None],
                saves: str | Sequence[str] | None) -> tuple[RuleUses, ...]:
    """Each rule's `RuleUses` from an op's `saves` declaration (see `defop`).

    Raises:
        ValueError: rules without a declaration, one entry per input not given, or an entry
            naming something other than `result`, an input, or an input's shape/ndim/dtype/strides.
    """
    if saves is None:
        if any(v is not None for v in vjps):
            raise ValueError(f"op {name!r} has VJP rules but no saves= declaration (what each "
                             "rule reads: 'result', input names, 'input.shape'; '' for nothing)")
        return (_NOTHING,) * len(inputs)
    entries = (saves,) if isinstance(saves, str) else tuple(saves)
    if len(entries) != len(inputs):
        raise ValueError(f"op {name!r}: saves has {len(entries)} entries for {len(inputs)} "
                         f"inputs {inputs}; give one per input ('' where a rule reads nothing)")
    index = {n: i for i, n in enumerate(inputs)}
    uses = []
    for k, (entry, rule) in enumerate(zip(entries, vjps)):
        if rule is None and entry:
            raise ValueError(f"op {name!r}: input {inputs[k]!r} has no VJP rule but saves "
                             f"{entry!r}")
        out = False
        data: set[int] = set()
        meta: set[int] = set()
        for word in entry.split():
            base, _, attr = word.partition(".")
            if word == "result":
                out = True
            elif base in index and (not attr or attr in META_ATTRS):
                (meta if attr else data).add(index[base])
            else:
                raise ValueError(
                    f"op {name!r}: saves names {word!r}, which is not 'result', one of its "
                    f"inputs {inputs}, or an input's {', '.join(META_ATTRS)}")
        uses.append(RuleUses(out, frozenset(data), frozenset(meta - data)))
    return tuple(uses)


OPS: dict[str, OpDef] = {}

# Entries of one op's remembered bounds (`OpDef.cached_bound`): a few hundred bytes each.
MAX_CACHED_BOUNDS = 256
_MISSING = object()
_SCALAR_TYPES = (bool, int, float, type(None))


def shapes_only(rule: Any) -> Any:
    """Declare that an `out_shape` (or `out_bound`) rule reads only its inputs' shapes and
    dtypes and the op's attributes, never tensor data or Python scalars' values: an op using it
    may have its bound remembered (`OpDef.cached_bound`)."""
    rule.shapes_only = True
    return rule


def keeps_0d(rule: Any) -> Any:
    """Declare a `shapes_only` `out_shape` rule whose result is 0-d whenever every input is
    (a Python scalar, or a 0-d Tensor), whatever the attributes: elementwise broadcasting. An
    op shaped by it has one bound for 0-d inputs per result dtype, remembered
    (`OpDef.scalar_bounds`)."""
    rule.keeps_0d = True
    return rule


def defop(name: str, forward: Callable[..., Any], *vjps: Rule | None,
          inputs: Sequence[str] = ("input",), attrs: Sequence[AttrSpec] = (),
          dtype: DtypeRule | None = None, backward: str | NameRule | None = None,
          n_outputs: int | None = 1, out_shape: Callable[..., Sequence[int]] | None = None,
          doc: str = "", method: bool = True, variadic: bool = False,
          differentiable_outputs: Sequence[int] | None = None, inplace: bool = False,
          inplace_backward: str | None = None, view: bool = False,
          out_bound: BoundRule | None = None,
          saves: str | Sequence[str] | None = None,
          output_count: str | None = None, default_ufunc: np.ufunc | None = None,
          inplace_op: str | None = None) -> OpDef:
    """Register an op: its forward (numpy), one VJP rule per input (None: no gradient).

    Args:
        name: the op's name (function, method and wire name).
        forward: numpy implementation, `forward(*arrays, **attrs)`.
        vjps: one rule per input, `rule(ns, g, out, *inputs, **attrs)`, or None.
        saves: what each rule reads, one entry per input as derivatives.yaml's formulas name
            them (a plain string for a one-input op): space-separated words, `result` for the
            output (`out`), an input's name for its data, `input.shape` (or `.ndim`, `.dtype`)
            for an input read only as metadata, "" for a rule that reads nothing or is None.
            A node saves exactly this for the inputs that need gradients, so a wrong entry
            shows as a rule reading None (too little) or a second backward failing where
            torch's works (too much). Required when any rule exists, e.g. mul's
            `("other", "input")`, sum's `"input.shape"`, exp's `"result"`.
        inputs: tensor input names; a trailing "?" marks an optional input (None allowed).
        attrs: typed attributes, in positional order after the inputs.
        dtype: dtype rule (PROMOTE, FLOAT, COMPARE, SAME, ...); default SAME.
        backward: torch's node name, or a function of the inputs choosing one.
        n_outputs: number of outputs; None when it depends on the inputs.
        output_count: with `n_outputs=None`, the surface's rule for the number of outputs
            (`gradserve.surface.signature.OUTPUT_COUNTS`: "split_size", "split_sizes",
            "dim_size"), served in ListOps so a client knows it before the op runs.
        out_shape: result shape from input shapes/attrs, checked against limits before forward.
        out_bound: `(args, attrs, out_dtype) -> limits.Bound` where the shape alone does not say
            what the results take (several outputs, data-dependent sizes, numpy temporaries
            larger than the result: see `temporaries`); overrides out_shape for the limits.
            Every op declares one of the two; neither raises ValueError.
        method: also a Tensor method.
        variadic: the op takes one sequence of tensors.
        differentiable_outputs: which outputs carry gradients (default all).
        inplace: a `name_` in-place variant exists (`x.add_(y)`).
        default_ufunc: the numpy ufunc the forward is when every attribute has its default
            (add's and sub's with alpha 1), for an op whose forward is not that ufunc itself.
        inplace_backward: torch's node name for the in-place variant where it differs
            (`fill_` records FillBackward2, `torch.fill` FillBackward0).
        inplace_op: the op the in-place variant runs instead, where torch's `name_` records
            a node with other formulas (`elu_`'s EluBackward1 reads the result, `elu`'s
            EluBackward0 the input): the same forward, its own rules and node name.
        view: the result may share the input's data (reshape, expand, permute, select, ...):
            a 0-d input kept as a numpy scalar is turned into an array first, and a result that
            shares memory becomes a view of the input's base, as torch's (one version counter,
            `Tensor._base`; see dispatch._link_view and api._inplace_on_view).
    """
    if name in OPS:
        raise ValueError(f"op {name!r} defined twice")
    if out_shape is None and out_bound is None:
        # Bounded by construction: limits.allocation_limit and byte_budget can only refuse an op
        # before it allocates if every op says what it allocates.
        raise ValueError(f"op {name!r} declares neither out_shape nor out_bound")
    if (n_outputs is None) != (output_count is not None) or (
            output_count is not None and output_count not in OUTPUT_COUNTS):
        raise ValueError(f"op {name!r}: n_outputs=None needs an output_count rule, one of "
                         f"{sorted(OUTPUT_COUNTS)} (and a fixed n_outputs none)")
    if backward is None:
        backward = "".join(p.capitalize() for p in name.split("_")) + "Backward0"
    op = OpDef(name, forward, vjps, inputs=inputs, attrs=attrs, dtype=dtype or SAME,
               backward=backward, n_outputs=n_outputs, out_shape=out_shape, doc=doc,
               method=method, variadic=variadic, differentiable_outputs=differentiable_outputs,
               inplace=inplace, inplace_backward=inplace_backward, view=view,
               out_bound=out_bound, saves=saves, output_count=output_count,
               default_ufunc=default_ufunc, inplace_op=inplace_op)
    OPS[name] = op
    return op


# --- output bounds: what a forward allocates, declared next to it (see limits.Bound) -----------

def numel_of(a: Any) -> int:
    """Elements of an op argument: a Tensor's (without touching its data), 1 for a scalar."""
    return limits.numel(getattr(a, "shape", ()))


def temporaries(out_shape: Callable[..., Sequence[int]], *, results: int = 0, inputs: int = 0,
                result_bytes: int = 0, input_bytes: int = 0) -> BoundRule:
    """An `out_bound` for a forward whose numpy temporaries outgrow its result: at its peak it
    also holds `results` arrays of the result's shape and dtype, `inputs` arrays of the first
    input's size in the result's dtype, and `result_bytes` / `input_bytes` more bytes per result
    / first-input element (float64 or Python-object scratch whatever the result's dtype).

    Args:
        out_shape: the op's result shape, as for `defop(out_shape=...)`.
    """
    def bound(args: Sequence[Any], attrs: Mapping[str, Any], out_dtype: DType) -> limits.Bound:
        shape = out_shape(*args, **attrs)
        item = out_dtype.np.itemsize
        n = limits.numel(shape)
        m = numel_of(args[0]) if args and (inputs or input_bytes) else 0
        scratch = n * (results * item + result_bytes) + m * (inputs * item + input_bytes)
        return limits.with_scratch(limits.shape_bound(shape, item), scratch)
    if getattr(out_shape, "shapes_only", False) is True:
        shapes_only(bound)  # the scratch reads the first input's size only
    return bound


# --- dtype rules: args are the op's inputs (Tensors, Python scalars or None) ---------------------

# Every op's `rule_cache` (emptied together by `forget_rules`).
_RULE_CACHES: list[dict[Any, Any]] = []


def by_dtypes(rule: Any) -> Any:
    """Declare a dtype rule whose answer is a function of its inputs' dtypes, the types of its
    Python-number inputs and the default float dtype alone (never of attributes, shapes or
    values), and that raises for anything it refuses: an op using it remembers its answers
    (`OpDef.rule_cache`, read by dispatch.run)."""
    rule.by_dtypes = True
    return rule


def forget_rules() -> None:
    """Empty every op's remembered dtype answers (the default float dtype changed)."""
    for cache in _RULE_CACHES:
        cache.clear()


def rule_key(flat: Sequence[Any]) -> Any:
    """The key `OpDef.rule_cache` files a `by_dtypes` rule's answer under for these inputs,
    or None where it is not remembered: one Tensor, or two of one dtype (its dtype: every
    `by_dtypes` rule answers those alike), or a Tensor and a Python number in either order.
    Tensors of different dtypes are promoted by dimension groups, so their answer is not
    remembered. (dispatch.run computes the same key inline.)"""
    if len(flat) == 1:
        a = flat[0]
        return a.dtype if type(a) is Tensor else None
    if len(flat) != 2:
        return None
    a, b = flat
    ta, tb = type(a), type(b)
    if ta is Tensor:
        if tb is Tensor:
            return a.dtype if b.dtype is a.dtype else None
        return (a.dtype, tb) if tb in _PY_NUMBERS else None
    if tb is Tensor and ta in _PY_NUMBERS:
        return (ta, b.dtype)
    return None


_PY_NUMBERS = frozenset((bool, int, float))


def promote_args(args: Sequence[Any]) -> DType:
    """torch's result_type over tensors (by dimensionality group) and Python scalars."""
    n = len(args)
    if n == 1:
        a = args[0]
        if type(a) is Tensor:
            return a.dtype  # one tensor decides alone
    elif n == 2:
        a, b = args
        if type(a) is Tensor and type(b) in _PY_NUMBERS and a.dtype.category == 2:
            return a.dtype  # a Python number never promotes a floating tensor (`x * 2.0`)
    dim = zero = wrapped = None
    for a in args:
        if type(a) is Tensor:
            d = a.dtype
            if a._data.ndim:
                dim = d if dim is None or dim is d else dtypes.promote(dim, d)
            else:
                zero = d if zero is None or zero is d else dtypes.promote(zero, d)
        elif a is not None:
            t = type(a)
            s = (dtypes.DEFAULT_FLOAT if t is float else dtypes.int64 if t is int
                 else dtypes.scalar_dtype(a))
            wrapped = s if wrapped is None else dtypes.promote(wrapped, s)
    if dim is not None and (dim.category == 2 or (zero is None and wrapped is None)):
        return dim  # the common case: a floating tensor with dimensions decides alone
    if dim is None and zero is not None and (zero.category == 2 or wrapped is None):
        return zero  # all 0-dim: the same rule one group down
    return dtypes.result_type(dim, zero, wrapped)


@by_dtypes
def PROMOTE(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    """Compute and return in the promoted dtype (`add`, `mul`, `maximum`)."""
    d = promote_args(args)
    return d, d


@by_dtypes
def FLOAT(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    """Compute and return in the promoted dtype, made floating (`div`, `sin`, `sqrt`)."""
    d = dtypes.to_float(promote_args(args))
    return d, d


@by_dtypes
def COMPARE(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    """Compute in the promoted dtype, return bool (`lt`, `eq`)."""
    return promote_args(args), dtypes.bool_


@by_dtypes
def SAME(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    """Return the first input's dtype, inputs uncast (shape ops, `neg`, indexing)."""
    return None, args[0].dtype


@by_dtypes
def INT64(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    """Return int64 (`argmax`)."""
    return None, dtypes.int64


@by_dtypes
def BOOL(args: Sequence[Any], attrs: Mapping[str, Any]) -> tuple[DType | None, DType]:
    """Return bool (`all`, `any`)."""
    return None, dtypes.bool_


def fixed(dtype: DType) -> DtypeRule:
    """A rule that always returns `dtype` (creation ops without a dtype attribute)."""
    return by_dtypes(lambda args, attrs: (None, dtype))


# --- attribute validation ------------------------------------------------------------------------

def _as_dtype(v: Any) -> DType | None:
    if isinstance(v, DType):
        return v
    return dtypes.by_name(v) if isinstance(v, str) else None


ATTRS = AttrValidator(errors.InvalidTypeError, errors.InvalidValueError,
                      errors.UnknownAttributeError, _as_dtype)


def bind_attrs(op: OpDef, extra: Sequence[Any], attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Validate attributes (positional `extra` first, then by name) against `op`'s specs."""
    return ATTRS.bind(op.name, len(op.inputs), op.attrs, extra, attrs)


def lookup(name: str) -> OpDef:
    """The op called `name`, or `UnknownOpError`."""
    op = OPS.get(name) if isinstance(name, str) else None
    if op is None:
        raise errors.UnknownOpError(f"unknown op {name!r}")
    return op
