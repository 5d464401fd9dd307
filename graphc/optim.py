"""Optimizers with torch.optim's update rules and defaults, written with graphc ops so that
`graphc.train_step` compiles them into the same C call as the forward and backward pass; and
`minimize`, the seeds' second-order methods (Newton, L-BFGS) and gradient descent.

An optimizer holds `params` (the user's arrays, updated in place by train_step) and `state`, a
dict of numpy arrays: per-parameter slots shaped like `params` (momenta) and, for Adam, the
step count. `update(params, grads, state, lr)` is the pure, traceable step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from . import pytree
from .errors import GraphcError
from .ops import api as ops


class Optimizer:
    """Base class: `slots` names the per-parameter state (zeros like each parameter);
    subclasses define `update_leaf`."""

    slots: tuple[str, ...] = ()
    counts_steps = False

    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        leaves, self.treedef = pytree.flatten(params)
        if not leaves:
            raise GraphcError(f"{type(self).__name__}: no parameters")
        for k, p in enumerate(leaves):
            if not (isinstance(p, np.ndarray) and p.dtype.kind == "f" and p.flags.c_contiguous
                    and p.flags.writeable):
                raise GraphcError(
                    f"{type(self).__name__}: parameter {k} must be a writeable C-contiguous "
                    f"float numpy array (it is updated in place), got "
                    f"{getattr(p, 'dtype', type(p).__name__)} {np.shape(p)}")
        if lr < 0 or weight_decay < 0:
            raise GraphcError(f"{type(self).__name__}: lr and weight_decay must be >= 0")
        self.params = params
        self.lr = lr
        self.weight_decay = weight_decay
        self.state: dict = {name: pytree.unflatten(self.treedef, [np.zeros_like(p)
                                                                  for p in leaves])
                            for name in self.slots}
        if self.counts_steps:
            self.state["step"] = np.zeros((), np.float64)

    def update(self, params, grads, state: dict, lr):
        """(new params, new state) after one step from `grads` (traceable; same structures)."""
        p_leaves = pytree.flatten(params)[0]
        g_leaves = pytree.flatten(grads)[0]
        slots = {name: pytree.flatten(state[name])[0] for name in self.slots}
        step = state["step"] + 1 if self.counts_steps else None
        new_p, new_slots = [], {name: [] for name in self.slots}
        for k, (p, g) in enumerate(zip(p_leaves, g_leaves)):
            p, s = self.update_leaf(p, g, {name: slots[name][k] for name in self.slots},
                                    lr, step)
            new_p.append(p)
            for name in self.slots:
                new_slots[name].append(s[name])
        new_state = {name: pytree.unflatten(self.treedef, new_slots[name])
                     for name in self.slots}
        if self.counts_steps:
            new_state["step"] = step
        return pytree.unflatten(self.treedef, new_p), new_state

    def update_leaf(self, p, g, slots: dict, lr, step):
        raise NotImplementedError


class SGD(Optimizer):
    """torch.optim.SGD (dampening 0): g += wd*p; b = momentum*b + g; g = g + momentum*b
    (Nesterov) or b; p -= lr*g."""

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        if nesterov and momentum <= 0:
            raise GraphcError("SGD: Nesterov momentum requires a momentum > 0")
        self.slots = ("momentum_buffer",) if momentum else ()
        self.momentum, self.nesterov = momentum, nesterov
        super().__init__(params, lr, weight_decay)

    def update_leaf(self, p, g, slots, lr, step):
        if self.weight_decay:
            g = g + self.weight_decay * p
        new = {}
        if self.momentum:
            buf = slots["momentum_buffer"] * self.momentum + g
            new["momentum_buffer"] = buf
            g = g + self.momentum * buf if self.nesterov else buf
        return p + (-lr) * g, new


class Adam(Optimizer):
    """torch.optim.Adam: g += wd*p (L2); m = lerp(m, g, 1-β1); v = β2 v + (1-β2) g²;
    p -= lr/(1-β1^t) * m / (sqrt(v)/sqrt(1-β2^t) + eps), computed as
    p -= (lr sqrt(1-β2^t)/(1-β1^t)) * m / (sqrt(v) + eps sqrt(1-β2^t)). The step count t lives in
    state["step"] and advances inside the compiled step, which also computes the bias
    corrections (in float64, as torch does in Python)."""

    slots = ("exp_avg", "exp_avg_sq")
    counts_steps = True
    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or eps < 0:
            raise GraphcError(f"{type(self).__name__}: betas must lie in [0, 1) and eps >= 0")
        self.betas, self.eps = (float(betas[0]), float(betas[1])), float(eps)
        super().__init__(params, lr, weight_decay)

    def update_leaf(self, p, g, slots, lr, step):
        b1, b2 = self.betas
        if self.decoupled:
            p = p * (1 - lr * self.weight_decay)
        elif self.weight_decay:
            g = g + self.weight_decay * p
        m, v = slots["exp_avg"], slots["exp_avg_sq"]
        m = m + (1 - b1) * (g - m)                  # torch's lerp for a weight below 1/2
        v = v * b2 + (1 - b2) * g * g
        # torch's lr/bc1 * m / (sqrt(v)/bc2 + eps), with bc2 moved into the two scalars: one
        # division and one square root per element instead of two divisions (the divider
        # bounds this loop); the same value to a few ulps
        dt = p.dtype
        bc2_sqrt = ops.power(1 - ops.power(b2, step), 0.5)
        scale = ops.astype(-lr * bc2_sqrt / (1 - ops.power(b1, step)), dt)
        eps = ops.astype(self.eps * bc2_sqrt, dt)
        return p + scale * m / (ops.sqrt(v) + eps), {"exp_avg": m, "exp_avg_sq": v}


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay p *= 1 - lr*wd (default 1e-2)."""

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


def clip_by_global_norm(grads: list, max_norm: float) -> list:
    """torch.nn.utils.clip_grad_norm_: scale every gradient by min(1, c / (norm + 1e-6)),
    norm the 2-norm of all of them together (traceable)."""
    total = ops.sqrt(sum(ops.sum(g * g) for g in grads))
    scale = ops.minimum(max_norm / (total + 1e-6), 1.0)
    return [g * ops.astype(scale, g.dtype) for g in grads]


# ---- minimize: the seeds' second-order methods ----

def minimize(fn: Callable, x0, method: str = "newton", maxiter: int = 100,
             tol: float = 1e-8) -> tuple[np.ndarray, dict]:
    """Minimise a scalar fn of one float64 vector from x0 with the compiled value and
    gradient: "newton" (compiled Hessian), "lbfgs" (two-loop recursion, memory 10) or "gd"
    (steepest descent), each with a weak-Wolfe line search that tries the full step first.
    Stops when the gradient's max-norm is below tol.
    Returns (x, info) with info keys nit, nfev, fun, grad_norm, converged, method."""
    from .runtime import compile
    from .transforms import hessian, value_and_grad

    if method not in ("newton", "lbfgs", "gd"):
        raise GraphcError(f"minimize: method {method!r}: expected 'newton', 'lbfgs' or 'gd'")
    x = np.array(x0, dtype=np.float64).reshape(-1)
    fg = compile(value_and_grad(fn))
    hess = compile(hessian(fn)) if method == "newton" else None
    fx, g = fg(x)
    fx, nfev = float(fx), 1
    s_hist: list[np.ndarray] = []
    y_hist: list[np.ndarray] = []
    it = 0
    while it < maxiter and np.max(np.abs(g)) >= tol:
        if method == "newton":
            try:
                d = -np.linalg.solve(hess(x), g)
            except np.linalg.LinAlgError:
                d = -g
            if d @ g >= 0:              # not a descent direction: fall back to the gradient
                d = -g
        elif method == "lbfgs":
            d = -_two_loop(g, s_hist, y_hist)
        else:
            d = -g
        t, fx_new, g_new, n = _wolfe(fg, x, fx, g, d, 1.0 if method != "gd" else _gd_step(g))
        nfev += n
        if t == 0.0:
            break
        x_new = x + t * d
        s, yv = x_new - x, g_new - g
        if method == "lbfgs" and s @ yv > 1e-12 * np.linalg.norm(s) * np.linalg.norm(yv):
            s_hist.append(s)
            y_hist.append(yv)
            if len(s_hist) > 10:
                s_hist.pop(0)
                y_hist.pop(0)
        x, fx, g = x_new, fx_new, g_new
        it += 1
    gnorm = float(np.max(np.abs(g)))
    return x, {"nit": it, "nfev": nfev, "fun": fx, "grad_norm": gnorm,
               "converged": gnorm < tol, "method": method}


def _two_loop(g: np.ndarray, s_hist: list, y_hist: list) -> np.ndarray:
    """H·g for the L-BFGS inverse-Hessian estimate (Nocedal & Wright, Algorithm 7.4)."""
    q = g.copy()
    alphas = []
    for s, y in zip(reversed(s_hist), reversed(y_hist)):
        a = (s @ q) / (y @ s)
        alphas.append(a)
        q -= a * y
    if s_hist:
        q *= (s_hist[-1] @ y_hist[-1]) / (y_hist[-1] @ y_hist[-1])
    for (s, y), a in zip(zip(s_hist, y_hist), reversed(alphas)):
        b = (y @ q) / (y @ s)
        q += (a - b) * s
    return q


def _gd_step(g: np.ndarray) -> float:
    return 1.0 / max(1.0, float(np.linalg.norm(g)))


def _wolfe(fg: Callable, x, fx: float, g, d, t: float, c1: float = 1e-4, c2: float = 0.9):
    """A step t satisfying the weak Wolfe conditions (sufficient decrease, and curvature
    g(x + t d)·d >= c2 g·d, which keeps L-BFGS's s·y > 0) by bracketing and bisection
    (Lewis & Overton). Returns (t, f, g, evaluations); t = 0 if none was found."""
    slope = float(g @ d)
    lo, hi = 0.0, math.inf
    for n in range(1, 61):
        f_t, g_t = fg(x + t * d)
        f_t = float(f_t)
        if not math.isfinite(f_t) or f_t > fx + c1 * t * slope:
            hi = t
        elif float(g_t @ d) < c2 * slope:
            lo = t
        else:
            return t, f_t, g_t, n
        t = (lo + hi) / 2 if hi < math.inf else 2 * lo
    return 0.0, fx, g, 60
