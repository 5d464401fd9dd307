"""check_grads: reverse and forward mode against central finite differences in float64."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import pytree
from .errors import GraphcError
from .ops.api import sum as gsum
from .runtime import compile
from .transforms import grad, jvp


def _is_float_leaf(x) -> bool:
    return isinstance(x, float) or np.issubdtype(np.asarray(x).dtype, np.floating)


def _f64(tree):
    """Float leaves as float64 arrays; integer and bool leaves unchanged."""
    leaves, td = pytree.flatten(tree)
    return pytree.unflatten(td, [np.array(x, dtype=np.float64) if _is_float_leaf(x) else x
                                 for x in leaves])


def _checked_args(args: tuple, argnums) -> tuple[int, ...]:
    """The arguments to differentiate: by default every one whose leaves are all floats."""
    floats = [bool(leaves) and all(_is_float_leaf(x) for x in leaves)
              for leaves in (pytree.flatten(a)[0] for a in args)]
    if argnums is None:
        return tuple(k for k, f in enumerate(floats) if f)
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for k in nums:
        if not isinstance(k, int) or not -len(args) <= k < len(args):
            raise GraphcError(f"check_grads: argnums {argnums!r} is out of range for "
                              f"{len(args)} argument(s)")
        if not floats[k]:
            raise GraphcError(f"check_grads: argument {k} has non-float leaves; only float "
                              "arguments can be differentiated (leave it out of argnums)")
    return tuple(k % len(args) for k in nums)


def check_grads(fn: Callable, args, order: int = 1, eps: float | None = None,
                rtol: float | None = None, seed: int = 0, argnums=None) -> None:
    """Raise AssertionError (naming the argument and the worst element) unless reverse- and
    forward-mode derivatives of fn at args match central differences, up to `order`.
    `argnums` picks the arguments to check (default: every float argument); integer and bool
    arguments (labels, indices) are passed through unchanged and never perturbed."""
    args = _f64(tuple(args))
    nums = _checked_args(args, argnums)
    eps = 1e-5 if eps is None else eps
    rtol = (1e-5 if order == 1 else 1e-4) if rtol is None else rtol
    rng = np.random.default_rng(seed)
    out_leaves = pytree.flatten(compile(fn)(*args))[0]
    projected = _projection(fn, [rng.uniform(0.5, 1.5, np.shape(o)) for o in out_leaves])
    _check_first_order(projected, fn, args, nums, eps, rtol, rng, "")
    if order >= 2:
        for k in nums:
            g_k = grad(projected, argnums=k)
            d = pytree.flatten(compile(g_k)(*args))[0]
            second = _projection(g_k, [rng.uniform(0.5, 1.5, np.shape(x)) for x in d])
            _check_first_order(second, g_k, args, nums, eps, rtol * 10, rng,
                               f" (second order, through d/d argument {k})")


def _projection(fn: Callable, weights: list) -> Callable:
    """a -> sum_i <w_i, fn(a)_i>: a scalar whose gradient is the VJP of fn with cotangent w."""
    def projected(*a):
        total = 0.0
        for leaf, w in zip(pytree.flatten(fn(*a))[0], weights):
            total = total + gsum(leaf * w)
        return total
    return projected


def _check_first_order(scalar_fn, fn, args, nums, eps, rtol, rng, what):
    f = compile(scalar_fn)
    for k in nums:
        leaves, td = pytree.flatten(args[k])
        analytic = pytree.flatten(compile(grad(scalar_fn, argnums=k))(*args))[0]
        for li, leaf in enumerate(leaves):
            numeric = np.zeros_like(leaf)
            flat = leaf.reshape(-1)
            for e in range(flat.size):
                numeric.reshape(-1)[e] = _central(f, args, k, td, leaves, li, e, eps)
            _compare(analytic[li], numeric, rtol, f"reverse mode{what}", k, li)
            if fn is not None:
                _check_forward(fn, args, k, td, leaves, li, eps, rtol, rng, what)


def _with(args, k, td, leaves, li, new_leaf):
    leaves = list(leaves)
    leaves[li] = new_leaf
    args = list(args)
    args[k] = pytree.unflatten(td, leaves)
    return tuple(args)


def _central(f, args, k, td, leaves, li, e, eps):
    leaf = leaves[li]
    h = eps * max(1.0, abs(float(leaf.reshape(-1)[e])))
    plus, minus = leaf.copy(), leaf.copy()
    plus.reshape(-1)[e] += h
    minus.reshape(-1)[e] -= h
    fp = float(f(*_with(args, k, td, leaves, li, plus)))
    fm = float(f(*_with(args, k, td, leaves, li, minus)))
    return (fp - fm) / (2 * h)


def _check_forward(fn, args, k, td, leaves, li, eps, rtol, rng, what):
    """jvp along a random direction v against (f(x + hv) - f(x - hv)) / 2h."""
    leaf = leaves[li]
    v = rng.uniform(-1, 1, leaf.shape)
    tangents = [np.zeros_like(x) for x in leaves]
    tangents[li] = v
    primals = tuple(args)
    tans = tuple(pytree.unflatten(td, tangents) if j == k else _zeros_like_tree(a)
                 for j, a in enumerate(args))
    _, t_out = jvp(fn, primals, tans)
    h = eps
    f = compile(fn)
    fp = pytree.flatten(f(*_with(args, k, td, leaves, li, leaf + h * v)))[0]
    fm = pytree.flatten(f(*_with(args, k, td, leaves, li, leaf - h * v)))[0]
    for oi, (a, p, m) in enumerate(zip(pytree.flatten(t_out)[0], fp, fm)):
        _compare(np.asarray(a), (np.asarray(p) - np.asarray(m)) / (2 * h), rtol,
                 f"forward mode{what} (output {oi})", k, li)


def _zeros_like_tree(tree):
    leaves, td = pytree.flatten(tree)
    return pytree.unflatten(td, [np.zeros_like(np.asarray(x)) for x in leaves])


def _compare(analytic, numeric, rtol, mode, k, li):
    analytic = np.asarray(analytic, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(numeric), initial=0.0)))
    err = np.abs(analytic - numeric)
    bad = ~(err <= rtol * scale)
    if np.any(bad):
        i = np.unravel_index(int(np.argmax(np.where(np.isnan(err), np.inf, err))), err.shape)
        raise AssertionError(
            f"check_grads: {mode} derivative w.r.t. argument {k} (leaf {li}) differs from "
            f"central differences at element {tuple(int(j) for j in i)}: analytic "
            f"{analytic[i]!r}, numeric {numeric[i]!r} (|diff| {err[i]:.3g} > "
            f"rtol {rtol:g} * {scale:.3g})")
