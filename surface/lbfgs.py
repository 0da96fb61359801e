"""torch.optim.LBFGS, written once for the engine (in process) and sessions.

Adapted from PyTorch 2.13.0's `torch/optim/lbfgs.py` (the torch wheel on PyPI, BSD-3-Clause
licence, Copyright (c) 2016- Facebook, Inc. and its contributors; see PyTorch's LICENSE): the
same algorithm, the same tensor operations in the same order (so every loss and parameter is
torch's float, bit for bit) and the same messages. Changes: `torch.cat` is the layer's (`_cat`,
set by the engine's and the client's subclass); `p.new(n).zero_()` is `p.new_zeros(n)`; complex
parameters (which gradserve has not) and the clones' `memory_format` are left out; the long
docstring is cut; and where torch reads a value out of a tensor (`float(loss)`, `if ys > 1e-10`,
`alpha=-al[i]`), the read goes through `_read`, which takes several tensors at once, so that a
session reads in one round trip what torch reads one at a time (the values and the branches
taken are the same).
"""

# ruff: noqa: N806  (torch's names: H_diag)

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .compat import warn_scalar_requires_grad
from .grad_mode import enable_grad, no_grad
from .optim import Optimizer

__all__ = ["LBFGS"]


def _cubic_interpolate(x1: Any, f1: Any, g1: Any, x2: Any, f2: Any, g2: Any,
                       bounds: Any = None) -> Any:
    # ported from https://github.com/torch/optim/blob/master/polyinterp.lua
    # Compute bounds of interpolation area
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)

    # Code for most common case: cubic interpolation of 2 points
    #   w/ function and derivative values for both
    # Solution in this case (where x2 is the farthest point):
    #   d1 = g1 + g2 - 3*(f1-f2)/(x1-x2);
    #   d2 = sqrt(d1^2 - g1*g2);
    #   min_pos = x2 - (x2 - x1)*((g2 + d2 - d1)/(g2 - g1 + 2*d2));
    #   t_new = min(max(min_pos,xmin_bound),xmax_bound);
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = d2_square.sqrt()
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    else:
        return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(obj_func: Callable[..., Any], x: Any, t: Any, d: Any, f: float, g: Any,
                  gtd: Any, c1: float = 1e-4, c2: float = 0.9, tolerance_change: float = 1e-9,
                  max_ls: int = 25) -> tuple[float, Any, Any, int]:
    # ported from https://github.com/torch/optim/blob/master/lswolfe.lua
    d_norm = d.abs().max()
    g = g.clone()
    # evaluate objective and gradient using initial step
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = g_new.dot(d)

    # bracket an interval containing a point satisfying the Wolfe criteria
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        # check conditions
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket = [t_prev, t]
            bracket_f = [f_prev, f_new]
            bracket_g = [g_prev, g_new.clone()]
            bracket_gtd = [gtd_prev, gtd_new]
            break

        if abs(gtd_new) <= -c2 * gtd:
            bracket = [t]
            bracket_f = [f_new]
            bracket_g = [g_new]
            done = True
            break

        if gtd_new >= 0:
            bracket = [t_prev, t]
            bracket_f = [f_prev, f_new]
            bracket_g = [g_prev, g_new.clone()]
            bracket_gtd = [gtd_prev, gtd_new]
            break

        # interpolate
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(
            t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step)
        )

        # next step
        t_prev = tmp
        f_prev = f_new
        g_prev = g_new.clone()
        gtd_prev = gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1

    # reached max number of iterations?
    if ls_iter == max_ls:
        bracket = [0, t]
        bracket_f = [f, f_new]
        bracket_g = [g, g_new]

    # zoom phase: we now have a point satisfying the criteria, or
    # a bracket around it. We refine the bracket until we find the
    # exact point satisfying the criteria
    insuf_progress = False
    # find high and low points in bracket
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        # line-search bracket is so small
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break

        # compute new trial value
        t = _cubic_interpolate(
            bracket[0],
            bracket_f[0],
            bracket_gtd[0],
            bracket[1],
            bracket_f[1],
            bracket_gtd[1],
        )

        # test that we are making sufficient progress:
        # in case `t` is so close to boundary, we mark that we are making
        # insufficient progress, and if
        #   + we have made insufficient progress in the last step, or
        #   + `t` is at one of the boundary,
        # we will move `t` to a position which is `0.1 * len(bracket)`
        # away from the nearest boundary point.
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            # interpolation close to boundary
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                # evaluate at 0.1 away from boundary
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False

        # Evaluate new point
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = g_new.dot(d)
        ls_iter += 1

        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            # Armijo condition not satisfied or not lower than lowest point
            bracket[high_pos] = t
            bracket_f[high_pos] = f_new
            bracket_g[high_pos] = g_new.clone()
            bracket_gtd[high_pos] = gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                # Wolfe conditions satisfied
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                # old high becomes new low
                bracket[high_pos] = bracket[low_pos]
                bracket_f[high_pos] = bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]

            # new point becomes new low
            bracket[low_pos] = t
            bracket_f[low_pos] = f_new
            bracket_g[low_pos] = g_new.clone()
            bracket_gtd[low_pos] = gtd_new

    # return stuff
    t = bracket[low_pos]
    f_new = bracket_f[low_pos]
    g_new = bracket_g[low_pos]
    return f_new, g_new, t, ls_func_evals


def _to_scalar(x: Any, tensor_type: type) -> Any:
    """A 1-element hyperparameter tensor as a 0-d tensor; anything else as it is (torch's)."""
    if isinstance(x, tensor_type) and x.dim() != 0:  # type: ignore[attr-defined]
        return x.squeeze()  # type: ignore[attr-defined]
    return x


class LBFGS(Optimizer):
    """torch.optim.LBFGS: the L-BFGS algorithm (heavily inspired by minFunc), optionally with a
    strong-Wolfe line search; `step(closure)` re-evaluates the model through `closure`.

    Args:
        params: the parameters to optimize (one group only).
        lr: learning rate (default: 1).
        max_iter: maximal number of iterations per optimization step (default: 20).
        max_eval: maximal number of function evaluations per step (default: max_iter * 1.25).
        tolerance_grad: termination tolerance on first order optimality (default: 1e-7).
        tolerance_change: termination tolerance on function value/parameter changes
            (default: 1e-9).
        history_size: update history size (default: 100).
        line_search_fn: either 'strong_wolfe' or None (default: None).

    Raises:
        ValueError: a negative or many-element lr, or parameter groups (torch's texts).
    """

    def __init__(self, params: Any, lr: Any = 1, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
                 history_size: int = 100, line_search_fn: str | None = None) -> None:
        if isinstance(lr, self._tensor_type) and lr.numel() != 1:
            raise self._value_error("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise self._value_error(f"Invalid learning rate: {lr}")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = {
            "lr": lr,
            "max_iter": max_iter,
            "max_eval": max_eval,
            "tolerance_grad": tolerance_grad,
            "tolerance_change": tolerance_change,
            "history_size": history_size,
            "line_search_fn": line_search_fn,
        }
        super().__init__(params, defaults)

        if len(self.param_groups) != 1:
            raise self._value_error(
                "LBFGS doesn't support per-parameter options (parameter groups)"
            )

        self._params = self.param_groups[0]["params"]
        self._numel_cache: int | None = None

    # --- what the layer provides -----------------------------------------------------------------

    def _cat(self, tensors: Sequence[Any]) -> Any:
        """torch.cat(tensors, 0) of the layer."""
        raise NotImplementedError

    def _read(self, *values: Any) -> list[Any]:
        """Each tensor in `values` as a Python number (`.item()`), anything else as it is; a
        session reads them all in one round trip."""
        return [v.item() if isinstance(v, self._tensor_type) else v for v in values]

    def _float(self, loss: Any, value: Any) -> float:
        """`float(loss)` given its value read: torch's warning for a loss that requires grad."""
        if isinstance(loss, self._tensor_type) and loss.requires_grad:
            warn_scalar_requires_grad(stacklevel=3)
        return float(value)

    # --- torch's LBFGS ---------------------------------------------------------------------------

    def _numel(self) -> int:
        if self._numel_cache is None:
            self._numel_cache = sum(p.numel() for p in self._params)
        return self._numel_cache

    def _gather_flat_grad(self) -> Any:
        views = []
        for p in self._params:
            if p.grad is None:
                view = p.new_zeros(p.numel())
            else:
                view = p.grad.view(-1)
            views.append(view)
        return self._cat(views)

    def _add_grad(self, step_size: Any, update: Any) -> None:
        offset = 0
        for p in self._params:
            numel = p.numel()
            # view as to avoid deprecated pointwise semantics
            p.add_(update[offset : offset + numel].view_as(p), alpha=step_size)
            offset += numel
        if offset != self._numel():
            raise AssertionError(f"Expected offset {offset} to equal {self._numel()}")

    def _clone_param(self) -> list[Any]:
        return [p.clone() for p in self._params]

    def _set_param(self, params_data: Sequence[Any]) -> None:
        for p, pdata in zip(self._params, params_data, strict=True):
            p.copy_(pdata)

    def _directional_evaluate(self, closure: Callable[[], Any], x: Sequence[Any], t: Any,
                              d: Any) -> tuple[float, Any]:
        self._add_grad(self._read(t)[0], d)
        loss = closure()
        loss = self._float(loss, self._read(loss)[0])
        flat_grad = self._gather_flat_grad()
        self._set_param(x)
        return loss, flat_grad

    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """Perform a single optimization step.

        Args:
            closure: a closure that reevaluates the model and returns the loss.

        Returns:
            The loss the first call of `closure` returned.

        Raises:
            RuntimeError: a line_search_fn other than 'strong_wolfe' (torch's text).
        """
        with no_grad():
            return self._step(closure)

    def _step(self, closure: Callable[[], Any]) -> Any:
        if len(self.param_groups) != 1:
            raise AssertionError(
                f"Expected exactly one param_group, but got {len(self.param_groups)}"
            )

        # Make sure the closure is always called with grad enabled
        closure = enable_grad()(closure)

        group = self.param_groups[0]
        lr = _to_scalar(group["lr"], self._tensor_type)
        max_iter = group["max_iter"]
        max_eval = group["max_eval"]
        tolerance_grad = group["tolerance_grad"]
        tolerance_change = group["tolerance_change"]
        line_search_fn = group["line_search_fn"]
        history_size = group["history_size"]

        # NOTE: LBFGS has only global state, but we register it as state for
        # the first param, because this helps with casting in load_state_dict
        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)

        # evaluate initial f(x) and df/dx
        orig_loss = closure()
        flat_grad = self._gather_flat_grad()
        # float(orig_loss) and the optimal condition, read at once
        loss, opt_cond = self._read(orig_loss, flat_grad.abs().max() <= tolerance_grad)
        loss = self._float(orig_loss, loss)
        current_evals = 1
        state["func_evals"] += 1

        # optimal condition
        if opt_cond:
            return orig_loss

        # tensors cached in state (for tracing)
        d: Any = state.get("d")
        t: Any = state.get("t")
        old_dirs: Any = state.get("old_dirs")
        old_stps: Any = state.get("old_stps")
        ro: Any = state.get("ro")
        H_diag: Any = state.get("H_diag")
        prev_flat_grad: Any = state.get("prev_flat_grad")
        prev_loss: Any = state.get("prev_loss")

        n_iter = 0
        pending = None  # the next iteration's y, s, ys and `ys > 1e-10`, read with the last tests
        # optimize for a max of max_iter iterations
        while n_iter < max_iter:
            # keep track of nb of iterations
            n_iter += 1
            state["n_iter"] += 1

            ############################################################
            # compute gradient descent direction
            ############################################################
            if state["n_iter"] == 1:
                d = flat_grad.neg()
                old_dirs = []
                old_stps = []
                ro = []
                H_diag = 1
            else:
                # do lbfgs update (update memory)
                if pending is None:
                    y = flat_grad.sub(prev_flat_grad)
                    s = d.mul(t)
                    ys = y.dot(s)  # y*s
                    pending = (y, s, ys, self._read(ys > 1e-10)[0])
                y, s, ys, ys_above = pending
                pending = None
                if ys_above:
                    # updating memory
                    if len(old_dirs) == history_size:
                        # shift history by one (limited-memory)
                        old_dirs.pop(0)
                        old_stps.pop(0)
                        ro.pop(0)

                    # store new direction/step
                    old_dirs.append(y)
                    old_stps.append(s)
                    ro.append(1.0 / ys)

                    # update scale of initial Hessian approximation
                    H_diag = ys / y.dot(y)  # (y*y)

                # compute the approximate (L-BFGS) inverse Hessian
                # multiplied by the gradient
                num_old = len(old_dirs)

                if "al" not in state:
                    state["al"] = [None] * history_size
                al = state["al"]

                # iteration in L-BFGS loop collapsed to use just one buffer
                q = flat_grad.neg()
                for i in range(num_old - 1, -1, -1):
                    al[i] = old_stps[i].dot(q) * ro[i]
                    q.add_(old_dirs[i], alpha=self._read(-al[i])[0])

                # multiply by initial Hessian
                # r/d is the final direction
                d = r = q.mul(H_diag)
                for i in range(num_old):
                    be_i = old_dirs[i].dot(r) * ro[i]
                    r.add_(old_stps[i], alpha=self._read(al[i] - be_i)[0])

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.clone()
            else:
                prev_flat_grad.copy_(flat_grad)
            prev_loss = loss

            ############################################################
            # compute step length
            ############################################################
            # directional derivative
            gtd = flat_grad.dot(d)  # g * d

            # reset initial guess for step size: min(1.0, 1.0 / |g|_1) * lr, the comparison read
            # with the directional derivative's test (and the step size, an add_'s alpha)
            if state["n_iter"] == 1:
                inverse = 1.0 / flat_grad.abs().sum()
                candidate = inverse * lr
                smaller, below, alpha = self._read(inverse < 1.0, gtd > -tolerance_change,
                                                   candidate)
                if smaller:
                    t = candidate
                else:
                    t = 1.0 * lr
                    alpha = self._read(t)[0]
            else:
                t = lr
                below, alpha = self._read(gtd > -tolerance_change, t)

            # directional derivative is below tolerance
            if below:
                break

            # optional line search: user function
            ls_func_evals = 0
            if line_search_fn is not None:
                # perform line search, using user function
                if line_search_fn != "strong_wolfe":
                    raise RuntimeError("only 'strong_wolfe' is supported")
                else:
                    x_init = self._clone_param()

                    def obj_func(x: Any, t: Any, d: Any) -> tuple[float, Any]:
                        return self._directional_evaluate(closure, x, t, d)

                    loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                        obj_func,
                        x_init,
                        t,
                        d,
                        loss,
                        flat_grad,
                        gtd,
                        max_ls=max_eval - current_evals,
                    )
                self._add_grad(self._read(t)[0], d)
                opt_cond = flat_grad.abs().max() <= tolerance_grad
            else:
                # no line search, simply move with fixed-step
                self._add_grad(alpha, d)
                if n_iter != max_iter:
                    # re-evaluate function only if not in last iteration
                    # the reason we do this: in a stochastic setting,
                    # no use to re-evaluate that function here
                    with enable_grad():
                        loss = closure()
                    flat_grad = self._gather_flat_grad()
                    opt_cond = flat_grad.abs().max() <= tolerance_grad
                    ls_func_evals = 1

            # update func eval
            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals

            ############################################################
            # check conditions
            ############################################################
            if n_iter == max_iter:
                break

            if current_evals >= max_eval:
                break

            # the loss, the optimal condition, the lack of progress and the next iteration's
            # curvature test, read at once
            y = flat_grad.sub(prev_flat_grad)
            s = d.mul(t)
            ys = y.dot(s)
            value, opt_cond, no_progress, ys_above = self._read(
                loss, opt_cond, d.mul(t).abs().max() <= tolerance_change, ys > 1e-10)
            loss = self._float(loss, value)
            pending = (y, s, ys, ys_above)

            # optimal condition
            if opt_cond:
                break

            # lack of progress
            if no_progress:
                break

            if abs(loss - prev_loss) < tolerance_change:
                break

        state["d"] = d
        state["t"] = t
        state["old_dirs"] = old_dirs
        state["old_stps"] = old_stps
        state["ro"] = ro
        state["H_diag"] = H_diag
        state["prev_flat_grad"] = prev_flat_grad
        state["prev_loss"] = prev_loss

        return orig_loss
