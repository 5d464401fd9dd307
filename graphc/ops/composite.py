"""Composites: built from primitives, with no rules of their own, kept numerically stable."""

from __future__ import annotations

import operator

import numpy as np

from .. import dtypes
from ..errors import DTypeError
from ..trace import (  # trace is loaded first (graphc/__init__)
    ArrayLike,
    Axis,
    Tracer,
    constant,
    to_tracer,
)
from .elementwise import abs, astype, exp, log, maximum_, minimum_, stop_gradient, where_
from .movement import expand_dims, reshape
from .reduce import max, normalize_axes, sum  # noqa: A004


def _t(x):
    return to_tracer(x)


def relu(x: ArrayLike) -> Tracer:
    """max(x, 0) with derivative 0 at x == 0."""
    x = _t(x)
    return where_(x <= 0, 0, x)          # NaN stays NaN, as np.maximum(x, 0)


def leaky_relu(x: ArrayLike, negative_slope: float = 0.01) -> Tracer:
    x = _t(x)
    return where_(x > 0, x, x * negative_slope)


def square(x: ArrayLike) -> Tracer:
    x = _t(x)
    return x * x


def clip(x: ArrayLike, lo: ArrayLike | None = None,
         hi: ArrayLike | None = None) -> Tracer:
    x = _t(x)
    if lo is not None:
        x = maximum_(x, lo)
    if hi is not None:
        x = minimum_(x, hi)
    return x


def _shifted(x, axis):
    """x - max(x) along axis, the max held constant for differentiation (it cancels)."""
    x = _t(x)
    if not x.node.dtype.is_float:
        x = astype(x, dtypes.float64)
    axes = normalize_axes(axis, x.ndim, "softmax/logsumexp")
    kept = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    if any(x.shape[a] == 0 for a in axes):       # empty axis: nothing to shift
        return x, Tracer(constant(0, x.node.dtype, kept))
    m = stop_gradient(max(x, axis, keepdims=True))
    m = where_(abs(m) == np.inf, 0, m)      # +-inf max: shifting would make inf - inf = nan
    return x - m, m


def logsumexp(x: ArrayLike, axis: Axis = None, keepdims: bool = False) -> Tracer:
    """log(sum(exp(x))) without overflow: max(x) + log(sum(exp(x - max(x))))."""
    z, m = _shifted(x, axis)
    out = log(sum(exp(z), axis, keepdims=True)) + m
    if not keepdims:
        axes = normalize_axes(axis, z.ndim, "logsumexp")
        out = reshape(out, tuple(d for i, d in enumerate(z.shape) if i not in axes))
    return out


def softmax(x: ArrayLike, axis: int = -1) -> Tracer:
    z, _ = _shifted(x, axis)
    e = exp(z)
    return e / sum(e, axis, keepdims=True)


def log_softmax(x: ArrayLike, axis: int = -1) -> Tracer:
    z, _ = _shifted(x, axis)
    return z - log(sum(exp(z), axis, keepdims=True))


def one_hot(labels: ArrayLike, n: int, dtype=np.float32) -> Tracer:
    """Row i is 1 at column labels[i] (0 everywhere for an out-of-range label)."""
    labels = _t(labels)
    if labels.node.dtype.kind != "i":
        raise DTypeError(f"one_hot: labels must be integers, got {labels.dtype}")
    try:
        n = operator.index(n)
    except TypeError:
        raise DTypeError(f"one_hot: the number of classes must be an int, got {n!r}") from None
    classes = Tracer(constant(np.arange(n), labels.node.dtype))
    return astype(expand_dims(labels, -1) == classes, dtype)


