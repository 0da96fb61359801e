"""torch.autograd.functional (jacobian, hessian, vjp, jvp, hvp, vhp) and gradcheck/gradgradcheck,
written once against a torch-like namespace.

Everything here is `autograd.grad` with `create_graph` on the namespace it is bound to: the
engine's module (in process) or a client Session (remote), so both layers share one
implementation and one set of torch's messages. `jvp` and `hvp` use the double-backward trick,
as torch does with `vectorize=False`. `Functional(namespace, errors)` binds the functions; the
namespace is a callable returning the module so a layer can bind before it is built.
"""

from __future__ import annotations

import builtins
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np


class ErrorTypes(NamedTuple):
    """The layer's own exception types for torch's RuntimeError, TypeError and ValueError."""

    runtime: type[RuntimeError]
    type: type[TypeError]  # noqa: A003 - torch's exception names
    value: builtins.type[ValueError]


NEEDS_V_INPUT = ("The vector v can only be None if the input to the user-provided function is "
                 "a single Tensor with a single element.")
NEEDS_V_OUTPUT = ("The vector v can only be None if the user-provided function returns a single "
                  "Tensor with a single element.")


class Functional:
    """torch.autograd.functional's six functions and gradcheck, bound to one namespace."""

    def __init__(self, namespace: Callable[[], Any], errors: ErrorTypes):
        self._ns = namespace
        self._errors = errors

    # --- helpers (torch's, in torch/autograd/functional.py) ------------------------------------

    @property
    def _t(self) -> Any:
        return self._ns()

    def _as_tuple(self, inp: Any, arg_name: str, fn_name: str) -> tuple[bool, tuple[Any, ...]]:
        is_tuple = isinstance(inp, tuple)
        items = inp if is_tuple else (inp,)
        for i, el in enumerate(items):
            if not isinstance(el, self._t.Tensor):
                where = (f"the value at index {i} has type {type(el)}" if is_tuple
                         else f"the given {arg_name} has type {type(el)}")
                raise self._errors.type(
                    f"The {arg_name} given to {fn_name} must be either a Tensor or a tuple of "
                    f"Tensors but {where}.")
        return is_tuple, items

    @staticmethod
    def _preprocess(inputs: tuple[Any, ...], create_graph: bool,
                    need_graph: bool) -> tuple[Any, ...]:
        return tuple(inp.view(tuple(inp.shape)) if create_graph and inp.requires_grad
                     else inp.detach().requires_grad_(need_graph) for inp in inputs)

    def _postprocess(self, inputs: Any, create_graph: bool) -> Any:
        if isinstance(inputs[0], self._t.Tensor):
            return inputs if create_graph else tuple(inp.detach() for inp in inputs)
        return tuple(self._postprocess(inp, create_graph) for inp in inputs)

    @staticmethod
    def _unpack(res: Any, to_unpack: Any) -> Any:
        if isinstance(to_unpack, tuple):
            if not to_unpack[1]:
                res = tuple(el[0] for el in res)
            if not to_unpack[0]:
                res = res[0]
        elif not to_unpack:
            res = res[0]
        return res

    def _validate_v(self, v: tuple[Any, ...], other: tuple[Any, ...], is_tuple: bool) -> None:
        if len(other) != len(v):
            if is_tuple:
                raise self._errors.runtime(
                    f"v is a tuple of invalid length: should be {len(other)} but got {len(v)}.")
            raise self._errors.runtime("The given v should contain a single Tensor.")
        for idx, (el_v, el_other) in enumerate(zip(v, other)):
            if el_v.size() != el_other.size():
                prepend = f"Entry {idx} in " if is_tuple else ""
                raise self._errors.runtime(
                    f"{prepend}v has invalid size: should be {el_other.size()} but got "
                    f"{el_v.size()}.")

    def _check_requires_grad(self, inputs: tuple[Any, ...], input_type: str,
                             strict: bool) -> None:
        if not strict:
            return
        for i, inp in enumerate(inputs):
            if inp is None:
                raise self._errors.runtime(
                    f"The output of the user-provided function is independent of input {i}. "
                    "This is not allowed in strict mode.")
            if inp.requires_grad:
                continue
            if input_type == "hessian":
                msg = (f"The hessian of the user-provided function with respect to input {i} is "
                       "independent of the input. This is not allowed in strict mode. You should "
                       "ensure that your function is thrice differentiable and that the hessian "
                       "depends on the inputs.")
            elif input_type == "jacobian":
                msg = (f"While computing the hessian, found that the jacobian of the "
                       f"user-provided function with respect to input {i} is independent of the "
                       "input. This is not allowed in strict mode. You should ensure that your "
                       "function is twice differentiable and that the jacobian depends on the "
                       "inputs (this would be violated by a linear function for example).")
            elif input_type == "grad_inputs":
                msg = (f"The gradient with respect to input {i} is independent of the inputs of "
                       "the user-provided function. This is not allowed in strict mode.")
            else:
                msg = (f"Output {i} of the user-provided function does not require gradients. "
                       "The outputs must be computed in a differentiable manner from the input "
                       "when running in strict mode.")
            raise self._errors.runtime(msg)

    def _grad(self, outputs: tuple[Any, ...], inputs: tuple[Any, ...],
              grad_outputs: Any = None, create_graph: bool = False,
              retain_graph: bool | None = None) -> tuple[Any, ...]:
        if grad_outputs is None:
            grad_outputs = (None,) * len(outputs)
        pairs = [(o, g) for o, g in zip(outputs, grad_outputs)
                 if o is not None and o.requires_grad]
        if not pairs:
            return (None,) * len(inputs)
        gouts = [g for _, g in pairs]
        return tuple(self._t.autograd.grad(
            [o for o, _ in pairs], list(inputs),
            None if all(g is None for g in gouts) else gouts,
            retain_graph=retain_graph, create_graph=create_graph, allow_unused=True))

    def _fill_in_zeros(self, grads: tuple[Any, ...], refs: tuple[Any, ...], strict: bool,
                       create_graph: bool, stage: str) -> tuple[Any, ...]:
        res = []
        for i, g in enumerate(grads):
            if g is None:
                if strict:
                    raise self._errors.runtime({
                        "back": f"The output of the user-provided function is independent of "
                                f"input {i}. This is not allowed in strict mode.",
                        "back_trick": f"The gradient with respect to the input is independent "
                                      f"of entry {i} in the grad_outputs when using the double "
                                      "backward trick to compute forward mode gradients. This "
                                      "is not allowed in strict mode.",
                        "double_back": f"The jacobian of the user-provided function is "
                                       f"independent of input {i}. This is not allowed in "
                                       "strict mode.",
                        "double_back_trick": f"The hessian of the user-provided function is "
                                             f"independent of entry {i} in the grad_jacobian. "
                                             "This is not allowed in strict mode as it prevents "
                                             "from using the double backward trick to replace "
                                             "forward mode AD."}[stage])
                g = self._t.zeros_like(refs[i])
            elif strict and create_graph and not g.requires_grad:
                what = "hessian" if "double" in stage else "jacobian"
                raise self._errors.runtime(
                    f"The {what} of the user-provided function is independent of input {i}. "
                    "This is not allowed in strict mode when create_graph=True.")
            res.append(g)
        return tuple(res)

    def _single_output(self, fn_name: str, outputs: tuple[Any, ...], is_tuple: bool) -> None:
        if is_tuple:
            raise self._errors.runtime(f"The function given to {fn_name} should return a single "
                                       "Tensor")
        if outputs[0].nelement() != 1:
            raise self._errors.runtime(f"The Tensor returned by the function given to {fn_name} "
                                       "should contain a single element")

    # --- the six functions ---------------------------------------------------------------------

    def vjp(self, func: Callable[..., Any], inputs: Any, v: Any = None,
            create_graph: bool = False, strict: bool = False) -> tuple[Any, Any]:
        """The function's outputs and the vector-Jacobian product `v^T J` at `inputs`.

        Args:
            func: takes the inputs as Tensors, returns a Tensor or a tuple of Tensors.
            inputs: a Tensor or a tuple of Tensors.
            v: the vector (shaped as the outputs); may be None for a one-element output.
            create_graph: record the computation, so the result can be differentiated.
            strict: raise when an output does not depend on an input.
        Returns:
            (outputs, vjp), each a Tensor or a tuple as the outputs/inputs were given.
        Raises:
            TypeError, RuntimeError: with torch's messages.
        """
        t = self._t
        with t.enable_grad():
            is_inputs_tuple, ins = self._as_tuple(inputs, "inputs", "vjp")
            ins = self._preprocess(ins, create_graph, True)
            outputs = func(*ins)
            is_outputs_tuple, outs = self._as_tuple(
                outputs, "outputs of the user-provided function", "vjp")
            self._check_requires_grad(outs, "outputs", strict)
            if v is not None:
                _, vs = self._as_tuple(v, "v", "vjp")
                vs = self._preprocess(vs, create_graph, False)
                self._validate_v(vs, outs, is_outputs_tuple)
            else:
                if len(outs) != 1 or outs[0].nelement() != 1:
                    raise self._errors.runtime(NEEDS_V_OUTPUT)
                vs = None
        with t.set_grad_enabled(True if create_graph else t.is_grad_enabled()):
            grad_res = self._grad(outs, ins, vs, create_graph=create_graph)
            result = self._fill_in_zeros(grad_res, ins, strict, create_graph, "back")
        return (self._unpack(self._postprocess(outs, create_graph), is_outputs_tuple),
                self._unpack(self._postprocess(result, create_graph), is_inputs_tuple))

    def jvp(self, func: Callable[..., Any], inputs: Any, v: Any = None,
            create_graph: bool = False, strict: bool = False) -> tuple[Any, Any]:
        """The function's outputs and the Jacobian-vector product `J v` at `inputs` (the
        double-backward trick, as torch).

        Args:
            func, inputs, create_graph, strict: as `vjp`.
            v: the vector (shaped as the inputs); may be None for a one-element input.
        Returns:
            (outputs, jvp), each a Tensor or a tuple as the outputs were given.
        Raises:
            TypeError, RuntimeError: with torch's messages.
        """
        t = self._t
        with t.enable_grad():
            is_inputs_tuple, ins = self._as_tuple(inputs, "inputs", "jvp")
            ins = self._preprocess(ins, create_graph, True)
            if v is not None:
                _, vs = self._as_tuple(v, "v", "jvp")
                vs = self._preprocess(vs, create_graph, False)
                self._validate_v(vs, ins, is_inputs_tuple)
            else:
                if len(ins) != 1 or ins[0].nelement() != 1:
                    raise self._errors.runtime(NEEDS_V_INPUT)
                vs = None
            outputs = func(*ins)
            is_outputs_tuple, outs = self._as_tuple(
                outputs, "outputs of the user-provided function", "jvp")
            self._check_requires_grad(outs, "outputs", strict)
            # The backward is linear in grad_outputs: their value never matters (zeros).
            grad_outputs = tuple(t.zeros_like(o, requires_grad=True) for o in outs)
            grad_inputs = self._grad(outs, ins, grad_outputs, create_graph=True)
            self._check_requires_grad(grad_inputs, "grad_inputs", strict)
        with t.set_grad_enabled(True if create_graph else t.is_grad_enabled()):
            grad_res = self._grad(grad_inputs, grad_outputs, vs, create_graph=create_graph)
            result = self._fill_in_zeros(grad_res, outs, strict, create_graph, "back_trick")
        return (self._unpack(self._postprocess(outs, create_graph), is_outputs_tuple),
                self._unpack(self._postprocess(result, create_graph), is_outputs_tuple))

    def jacobian(self, func: Callable[..., Any], inputs: Any, create_graph: bool = False,
                 strict: bool = False, vectorize: bool = False,
                 strategy: str = "reverse-mode") -> Any:
        """The Jacobian of `func` at `inputs`, one row per output element (reverse mode).

        Args:
            func, inputs, create_graph, strict: as `vjp`.
            vectorize: accepted; the rows are computed one by one either way (same values).
            strategy: "reverse-mode" (forward mode is not available).
        Returns:
            A Tensor of shape output.shape + input.shape, or tuples of them (per output, then
            per input) as outputs/inputs were given.
        Raises:
            ValueError: an unknown or unavailable strategy.
            RuntimeError: strict mode found an independent output/input.
        """
        if strategy not in ("forward-mode", "reverse-mode"):
            raise self._errors.value(  # torch asserts (AssertionError); a ValueError here
                'Expected strategy to be either "forward-mode" or "reverse-mode". Hint: If your '
                'function has more outputs than inputs, "forward-mode" tends to be more '
                'performant. Otherwise, prefer to use "reverse-mode".')
        if strategy == "forward-mode":
            raise self._errors.value(
                'gradserve computes jacobians in reverse mode only: use strategy="reverse-mode"')
        if strict and vectorize:
            raise self._errors.runtime(
                "torch.autograd.functional.jacobian: `strict=True` and `vectorized=True` are not "
                "supported together. Please either set `strict=False` or `vectorize=False`.")
        t = self._t
        with t.enable_grad():
            is_inputs_tuple, ins = self._as_tuple(inputs, "inputs", "jacobian")
            ins = self._preprocess(ins, create_graph, True)
            outputs = func(*ins)
            is_outputs_tuple, outs = self._as_tuple(
                outputs, "outputs of the user-provided function", "jacobian")
            self._check_requires_grad(outs, "outputs", strict)
            jac: list[tuple[Any, ...]] = []
            for i, out in enumerate(outs):
                rows: tuple[list[Any], ...] = tuple([] for _ in ins)
                flat = out.reshape(-1)
                for j in range(out.nelement()):
                    vj = self._grad((flat[j],), ins, retain_graph=True,
                                    create_graph=create_graph)
                    for k, (row, g, inp) in enumerate(zip(rows, vj, ins)):
                        if g is not None:
                            if strict and create_graph and not g.requires_grad:
                                raise self._errors.runtime(
                                    "The jacobian of the user-provided function is independent "
                                    f"of input {i}. This is not allowed in strict mode when "
                                    "create_graph=True.")  # torch names the output index
                            row.append(g)
                        else:
                            if strict:
                                raise self._errors.runtime(
                                    f"Output {i} of the user-provided function is independent "
                                    f"of input {k}. This is not allowed in strict mode.")
                            row.append(t.zeros_like(inp))
                jac.append(tuple(
                    t.stack(row, dim=0).view(tuple(out.shape) + tuple(ins[k].shape))
                    if row else t.zeros(tuple(out.shape) + tuple(ins[k].shape),
                                        dtype=ins[k].dtype)
                    for k, row in enumerate(rows)))
            result = self._postprocess(tuple(jac), create_graph)
            return self._unpack(result, (is_outputs_tuple, is_inputs_tuple))

    def hessian(self, func: Callable[..., Any], inputs: Any, create_graph: bool = False,
                strict: bool = False, vectorize: bool = False,
                outer_jacobian_strategy: str = "reverse-mode") -> Any:
        """The Hessian of a scalar function at `inputs`: the jacobian of its jacobian.

        Args:
            func: returns a single one-element Tensor.
            inputs, create_graph, strict, vectorize: as `jacobian`.
            outer_jacobian_strategy: "reverse-mode".
        Returns:
            A Tensor of shape input.shape + input.shape, or a tuple of tuples for tuple inputs.
        Raises:
            RuntimeError: func returns more than one value or element; strict-mode failures.
        """
        is_inputs_tuple, ins = self._as_tuple(inputs, "inputs", "hessian")
        if outer_jacobian_strategy not in ("forward-mode", "reverse-mode"):
            raise self._errors.value(
                'Expected strategy to be either "forward-mode" or "reverse-mode".')

        def single_output(*inp: Any) -> Any:
            out = func(*inp)
            is_out_tuple, t_out = self._as_tuple(
                out, "outputs of the user-provided function", "hessian")
            self._check_requires_grad(t_out, "outputs", strict)
            self._single_output("hessian", t_out, is_out_tuple)
            return out.squeeze()

        def jac_func(*inp: Any) -> Any:
            jac = self.jacobian(single_output, inp, create_graph=True)
            self._check_requires_grad(jac, "jacobian", strict)
            return jac

        res = self.jacobian(jac_func, ins, create_graph=create_graph, strict=strict,
                            vectorize=vectorize, strategy=outer_jacobian_strategy)
        return self._unpack(res, (is_inputs_tuple, is_inputs_tuple))

    def vhp(self, func: Callable[..., Any], inputs: Any, v: Any = None,
            create_graph: bool = False, strict: bool = False) -> tuple[Any, Any]:
        """The function's output and the vector-Hessian product `v^T H` at `inputs`.

        Args:
            func: returns a single one-element Tensor.
            inputs, v, create_graph, strict: as `jvp`.
        Returns:
            (output, vhp).
        Raises:
            TypeError, RuntimeError: with torch's messages.
        """
        return self._second_order("vhp", func, inputs, v, create_graph, strict)

    def hvp(self, func: Callable[..., Any], inputs: Any, v: Any = None,
            create_graph: bool = False, strict: bool = False) -> tuple[Any, Any]:
        """The function's output and the Hessian-vector product `H v` at `inputs` (the
        double-backward trick, as torch).

        Args:
            func: returns a single one-element Tensor.
            inputs, v, create_graph, strict: as `jvp`.
        Returns:
            (output, hvp).
        Raises:
            TypeError, RuntimeError: with torch's messages.
        """
        return self._second_order("hvp", func, inputs, v, create_graph, strict)

    def _second_order(self, name: str, func: Callable[..., Any], inputs: Any, v: Any,
                      create_graph: bool, strict: bool) -> tuple[Any, Any]:
        t = self._t
        with t.enable_grad():
            is_inputs_tuple, ins = self._as_tuple(inputs, "inputs", name)
            ins = self._preprocess(ins, create_graph, True)
            if v is not None:
                _, vs = self._as_tuple(v, "v", name)
                vs = self._preprocess(vs, create_graph, False)
                self._validate_v(vs, ins, is_inputs_tuple)
            else:
                if len(ins) != 1 or ins[0].nelement() != 1:
                    raise self._errors.runtime(NEEDS_V_INPUT)
                vs = None
            outputs = func(*ins)
            is_outputs_tuple, outs = self._as_tuple(
                outputs, "outputs of the user-provided function", name)
            self._check_requires_grad(outs, "outputs", strict)
            self._single_output(name, outs, is_outputs_tuple)
            jac = self._grad(outs, ins, create_graph=True)
            self._check_requires_grad(jac, "jacobian", strict)
            if name == "hvp":
                grad_jac = tuple(t.zeros_like(inp, requires_grad=True) for inp in ins)
                double_back = self._grad(jac, ins, grad_jac, create_graph=True)
                self._check_requires_grad(jac, "hessian", strict)
        with t.set_grad_enabled(True if create_graph else t.is_grad_enabled()):
            if name == "hvp":
                grad_res = self._grad(double_back, grad_jac, vs, create_graph=create_graph)
                result = self._fill_in_zeros(grad_res, ins, strict, create_graph,
                                             "double_back_trick")
            else:
                grad_res = self._grad(jac, ins, vs, create_graph=create_graph)
                result = self._fill_in_zeros(grad_res, ins, strict, create_graph, "double_back")
        return (self._unpack(self._postprocess(outs, create_graph), is_outputs_tuple),
                self._unpack(self._postprocess(result, create_graph), is_inputs_tuple))

    # --- gradcheck -----------------------------------------------------------------------------

    def gradcheck(self, func: Callable[..., Any], inputs: Any, *, eps: float = 1e-6,
                  atol: float = 1e-5, rtol: float = 1e-3, raise_exception: bool = True,
                  **_ignored: Any) -> bool:
        """Compare `func`'s analytical Jacobian (autograd) with central finite differences.

        Args:
            func: takes the inputs, returns a Tensor or a tuple of Tensors.
            inputs: a Tensor or a tuple (non-Tensors are passed through).
            eps, atol, rtol: the perturbation and the tolerances, as torch's.
            raise_exception: raise on a mismatch (else return False).
        Returns:
            True when every Jacobian block matches.
        Raises:
            ValueError: no input requires grad.
            RuntimeError: "Jacobian mismatch for output i with respect to input j" (torch's
                GradcheckError is a RuntimeError).
        """
        t = self._t
        ins = inputs if isinstance(inputs, tuple) else (inputs,)
        diff = [i for i, x in enumerate(ins) if isinstance(x, t.Tensor) and x.requires_grad]
        if not diff:
            raise self._errors.value(
                "gradcheck expects at least one input tensor to require gradient, but none of "
                "them have requires_grad=True.")
        for i in diff:
            if str(ins[i].dtype) not in ("torch.float64", "float64"):
                warnings.warn(
                    f"Input #{i} requires gradient and is not a double precision floating point "
                    "or complex. This check will likely fail if all the inputs are not of double "
                    "precision floating point or complex. ", UserWarning, stacklevel=2)
        outs = self._outputs(func(*ins))
        numerical = self._numerical(func, ins, diff, eps, len(outs))
        analytical = self._analytical(outs, ins, diff)
        for o in range(len(outs)):
            for k, i in enumerate(diff):
                a, n = analytical[o][k], numerical[o][k]
                if not np.allclose(a, n, rtol=rtol, atol=atol):
                    if not raise_exception:
                        return False
                    # torch prints each block as a tensor, one row per input element
                    n_t, a_t = (t.tensor(np.ascontiguousarray(b.T), dtype=t.float64)
                                for b in (n, a))
                    raise self._errors.runtime(
                        f"Jacobian mismatch for output {o} with respect to input {i},\n"
                        f"numerical:{n_t}\nanalytical:{a_t}\n")
        return True

    def gradgradcheck(self, func: Callable[..., Any], inputs: Any, grad_outputs: Any = None,
                      *, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
                      raise_exception: bool = True, **_ignored: Any) -> bool:
        """gradcheck of the gradient of `func`: second derivatives, against finite differences.

        Args:
            func, inputs, eps, atol, rtol, raise_exception: as `gradcheck`.
            grad_outputs: the outputs' gradients (random, requiring grad, when None).
        Returns:
            True when every second-order Jacobian block matches.
        Raises:
            ValueError, RuntimeError: as `gradcheck`.
        """
        t = self._t
        ins = inputs if isinstance(inputs, tuple) else (inputs,)
        if grad_outputs is None:
            # torch.testing.make_tensor(low=-1, high=1) per differentiable output: the same
            # draws from the default generator as torch's
            outs = [o for o in self._outputs(func(*ins)) if o.requires_grad]
            gos: tuple[Any, ...] = tuple(
                t.empty(tuple(o.shape), dtype=o.dtype if o.is_floating_point() else t.float64)
                .uniform_(-1, 1).requires_grad_() for o in outs)
        else:
            gos = grad_outputs if isinstance(grad_outputs, tuple) else (grad_outputs,)
        n_in = len(ins)
        diff = [i for i, x in enumerate(ins) if isinstance(x, t.Tensor) and x.requires_grad]

        def first_order(*args: Any) -> Any:
            xs, gs = args[:n_in], args[n_in:]
            outs = [o for o in self._outputs(func(*xs)) if o.requires_grad]
            used = list(zip(outs, gs))
            grads = t.autograd.grad([o for o, _ in used], [xs[i] for i in diff],
                                    [g for _, g in used], create_graph=True, allow_unused=True)
            return tuple(g for g in grads if g is not None)

        return self.gradcheck(first_order, ins + gos, eps=eps, atol=atol, rtol=rtol,
                              raise_exception=raise_exception)

    def _outputs(self, out: Any) -> tuple[Any, ...]:
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def _numerical(self, func: Callable[..., Any], ins: tuple[Any, ...], diff: list[int],
                   eps: float, n_out: int) -> list[list[np.ndarray]]:
        """Central differences: one (output numel, input numel) block per output and input."""
        t = self._t
        values = {i: np.array(ins[i].detach().tolist(), dtype=np.float64) for i in diff}
        blocks: list[list[np.ndarray]] = [[] for _ in range(n_out)]
        for i in diff:
            x = values[i]
            cols = []
            for j in range(x.size):
                sides = []
                for step in (eps, -eps):
                    moved = x.copy().reshape(-1)
                    moved[j] += step
                    args = list(ins)
                    args[i] = t.tensor(moved.reshape(x.shape), dtype=ins[i].dtype,
                                       requires_grad=True)
                    sides.append([np.array(o.detach().tolist(), dtype=np.float64).reshape(-1)
                                  for o in self._outputs(func(*args))])
                cols.append([(p - m) / (2 * eps) for p, m in zip(*sides)])
            for o in range(n_out):
                blocks[o].append(np.stack([c[o] for c in cols], axis=1) if cols
                                 else np.zeros((0, 0)))
        return blocks

    def _analytical(self, outs: tuple[Any, ...], ins: tuple[Any, ...],
                    diff: list[int]) -> list[list[np.ndarray]]:
        """Reverse mode, one unit vector per output element."""
        t = self._t
        blocks: list[list[np.ndarray]] = []
        for out in outs:
            n = out.nelement()
            rows: list[list[np.ndarray]] = [[] for _ in diff]
            flat = out.reshape(-1)
            for j in range(n):
                if out.requires_grad:
                    gs = t.autograd.grad([flat[j]], [ins[i] for i in diff], retain_graph=True,
                                         allow_unused=True)
                else:
                    gs = (None,) * len(diff)
                for k, (g, i) in enumerate(zip(gs, diff)):
                    rows[k].append(np.zeros(ins[i].nelement()) if g is None else
                                   np.array(g.tolist(), dtype=np.float64).reshape(-1))
            blocks.append([np.stack(r, axis=0) if r else
                           np.zeros((0, ins[i].nelement())) for r, i in zip(rows, diff)])
        return blocks
