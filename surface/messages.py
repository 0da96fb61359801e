"""torch's message texts that more than one layer raises or warns with, each written once."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

NON_LEAF_GRAD_WARNING = (
    "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad "
    "attribute won't be populated during autograd.backward(). If you indeed want the .grad field "
    "to be populated for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. If you "
    "access the non-leaf Tensor by mistake, make sure you access the leaf Tensor instead. See "
    "github.com/pytorch/pytorch/pull/30531 for more information.")

SEQUENCE_WARNING = (
    "Using a non-tuple sequence for multidimensional indexing is deprecated and will be changed "
    "in pytorch 2.9; use x[tuple(seq)] instead of x[seq]. In pytorch 2.9 this will be "
    "interpreted as tensor index, x[torch.tensor(seq)], which will result either in an error or "
    "a different result")

SCALAR_CONVERSION_MESSAGE = "only one element tensors can be converted to Python scalars"
"""float(t), int(t) and torch.tensor([..., t, ...]) of a tensor of more than one element
(ValueError; `t.item()` raises RuntimeError with its own text)."""

REQUIRES_GRAD_FACTORY_MESSAGE = (
    "Only Tensors of floating point and complex dtype can require gradients")

T_WARNING = (
    "The use of `x.T` on tensors of dimension other than 2 to reverse their shape is deprecated "
    "and it will throw an error in a future release. Consider `x.mT` to transpose batches of "
    "matrices or `x.permute(*torch.arange(x.ndim - 1, -1, -1))` to reverse the dimensions of a "
    "tensor.")
T_SCALAR_WARNING = (
    "Tensor.T is deprecated on 0-D tensors. This function is the identity in these cases.")
MT_SCALAR_WARNING = (
    "Tensor.mT is deprecated on 0-D tensors. This function is the identity in these cases.")


def unsupported_dtype(name: str, names: Sequence[str]) -> str:
    """The TypeError text for a dtype name that is not one of `names`."""
    return f"unsupported dtype {name!r}; expected one of {sorted(names)}"


def dim_out_of_range(dim: int, lo: int, hi: int) -> str:
    """torch's IndexError text for a dim outside [lo, hi]."""
    return f"Dimension out of range (expected to be in range of [{lo}, {hi}], but got {dim})"


def tp_name(value: Any) -> str:
    """The type name torch's argument parser prints for `value` (CPython's `tp_name`): a class
    defined in Python by its bare name, a built-in by its bare name, a type from a C extension
    with its module ("numpy.ndarray")."""
    cls = type(value)
    heap = bool(cls.__flags__ & (1 << 9))  # Py_TPFLAGS_HEAPTYPE: made by a class statement
    if heap or cls.__module__ == "builtins":
        return cls.__name__
    return f"{cls.__module__}.{cls.__name__}"


def must_be_tensor(name: str, arg: str, value: Any, position: int | None = None) -> str:
    """torch's TypeError text for a value of the wrong type given for Tensor argument `arg` of
    `name`: "add(): argument 'other' (position 2) must be Tensor, not numpy.ndarray" (no
    position for an argument given by keyword)."""
    where = "" if position is None else f" (position {position})"
    return f"{name}(): argument '{arg}'{where} must be Tensor, not {tp_name(value)}"


TYPE_WORDS = {"float32": "Float", "float64": "Double", "int32": "Int", "int64": "Long",
              "bool": "Bool", "uint8": "Byte", "int8": "Char", "int16": "Short"}
"""torch's C++ names of the dtypes, as its messages print them ("Got Long")."""


def size_mismatch(shapes: Sequence[Sequence[int]]) -> str:
    """torch's infer_size message for the first pair of `shapes` (folded left) that does not
    broadcast: "The size of tensor a (3) must match the size of tensor b (2) at non-singleton
    dimension 1"."""
    acc = tuple(shapes[0])
    for b in shapes[1:]:
        n = max(len(acc), len(b))
        merged = []
        for i in range(1, n + 1):  # torch's infer_size checks the innermost dimension first
            da = acc[-i] if i <= len(acc) else 1
            db = b[-i] if i <= len(b) else 1
            if da != db and da != 1 and db != 1:
                return (f"The size of tensor a ({da}) must match the size of tensor b ({db}) at "
                        f"non-singleton dimension {n - i}")
            merged.append(db if da == 1 else da)
        acc = tuple(reversed(merged))
    return f"shapes {[tuple(s) for s in shapes]} cannot be broadcast together"


def invalid_combination(name: str, args: Sequence[Any], kwargs: Mapping[str, Any],
                        signatures: Sequence[str], is_tensor: Callable[[Any], bool],
                        reasons: Mapping[int, str] | None = None,
                        typename: Callable[[Any], str | None] | None = None) -> str:
    """torch's "received an invalid combination of arguments" TypeError text.

    Args:
        name: the function as torch names it (`max`).
        args, kwargs: the call as made; shown as type names (`Tensor` where `is_tensor`).
        signatures: torch's overloads, in torch's order.
        reasons: for some overloads (by index), why they did not match.
        typename: a value's torch type name where the layer's class name is not torch's
            ("torch.dtype"), None for the default.
    """
    named = typename

    def typename_of(v: Any) -> str:
        name = named(v) if named is not None else None
        return name or ("Tensor" if is_tensor(v) else type(v).__name__)

    pos = ", ".join(typename_of(a) for a in args)
    # keywords in reverse order, each followed by ", " (torch keeps the last one when there are
    # no positional arguments)
    kw = "".join(f"{k}={typename_of(v)}, " for k, v in reversed(list(kwargs.items())))
    got = (f"{pos}, {kw[:-2]}" if pos else kw) if kw else pos
    lines = [f"{name}() received an invalid combination of arguments - got ({got}), but "
             "expected one of:"]
    for i, sig in enumerate(signatures):
        lines.append(f" * {sig}")
        if reasons and i in reasons:
            lines.append(f"      didn't match because {reasons[i]}")
    return "\n".join(lines) + "\n"


# --- custom autograd Functions (engine/function.py, client/function.py) -------------------------

FUNCTION_NO_FORWARD = "You must implement the forward function for custom autograd.Function."
FUNCTION_NO_BACKWARD = ("You must implement either the backward or vjp method for your custom "
                        "autograd.Function to use it with backward mode AD.")
FUNCTION_NO_SETUP_CONTEXT = "setup_context is not implemented."
DIRTY_NOT_RETURNED = (
    "Some elements marked as dirty during the forward method were not returned as output. The "
    "inputs that are modified inplace must all be outputs of the Function.")
DIRTY_LEAF = "a leaf Variable that requires grad has been used in an in-place operation."
DEEPCOPY_NON_LEAF = (
    "Only Tensors created explicitly by the user (graph leaves) support the deepcopy protocol "
    "at the moment.  If you were attempting to deepcopy a module, this may be because of a "
    "torch.nn.utils.weight_norm usage, see https://github.com/pytorch/pytorch/pull/103001")
LEAF_INPLACE = "a leaf Variable that requires grad is being used in an in-place operation."
VIEW_OF_LEAF_INPLACE = ("a view of a leaf Variable that requires grad is being used in an "
                        "in-place operation.")
FUNCTION_LEGACY_CALL = (
    "Legacy autograd function with non-static forward method is deprecated. Please use "
    "new-style autograd function with static forward method. (Example: "
    "https://pytorch.org/docs/stable/autograd.html#torch.autograd.Function)")


def function_instantiated(cls: type) -> str:
    """torch's DeprecationWarning text for instantiating a custom autograd Function."""
    return (f"{cls} should not be instantiated. Methods on autograd functions are all static, "
            "so you should invoke them on the class itself. Instantiating an autograd function "
            "will raise an error in a future version of PyTorch.")
ONCE_DIFFERENTIABLE = (
    "trying to differentiate twice a function that was marked with @once_differentiable")


def save_for_backward_type(i: int, value: Any) -> str:
    """torch's TypeError text for ctx.save_for_backward given a non-tensor argument `i`."""
    return (f"save_for_backward can only save variables, but argument {i} is of type "
            f"{type(value).__name__}")


def hook_returned_non_tuple(value: Any) -> str:
    """torch's TypeError text for a node hook that returned neither None nor a tuple."""
    return f"expected tuple, but hook returned '{type(value).__name__}'"


# torch's refusals around inference tensors (made inside `inference_mode()`).
INFERENCE_VERSION_MESSAGE = "Inference tensors do not track version counter."
INFERENCE_INPLACE_MESSAGE = (
    "Inplace update to inference tensor outside InferenceMode is not allowed.You can make a "
    "clone to get a normal tensor before doing inplace update.See "
    "https://github.com/pytorch/rfcs/pull/17 for more details.")
INFERENCE_REQUIRES_GRAD_MESSAGE = (
    "Setting requires_grad=True on inference tensor outside InferenceMode is not allowed.")

# torch's refusals around a view made under no_grad() of a tensor that requires grad.
NO_GRAD_VIEW_INPLACE_MESSAGE = (
    "A view was created in no_grad mode and is being modified inplace with grad mode enabled. "
    "Given that this use case is ambiguous and error-prone, it is forbidden. You can clarify "
    "your code by moving both the view and the inplace either both inside the no_grad block "
    "(if you don't want the inplace to be tracked) or both outside (if you want the inplace to "
    "be tracked).")
NO_GRAD_VIEW_REBASE_MESSAGE = (
    "A view was created in no_grad mode and its base or another view of its base has been "
    "modified inplace with grad mode enabled. Given that this use case is ambiguous and "
    "error-prone, it is forbidden. You can clarify your code by moving both the view and the "
    "inplace either both inside the no_grad block (if you don't want the inplace to be tracked) "
    "or both outside (if you want the inplace to be tracked).")
