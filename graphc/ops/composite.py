"""Composites: built from primitives, with no rules of their own, kept numerically stable."""

from __future__ import annotations

import math
import operator

import numpy as np

from .. import dtypes
from ..errors import DTypeError, GraphcError, ShapeError
from ..trace import (  # trace is loaded first (graphc/__init__)
    ArrayLike,
    Axis,
    Tracer,
    constant,
    to_tracer,
)
from .elementwise import (
    abs,
    astype,
    check_index,
    erf,
    exp,
    log,
    maximum_,
    minimum_,
    sqrt,
    stop_gradient,
    tanh,
    where_,
)
from .movement import (
    broadcast_to,
    concatenate,
    expand_dims,
    getitem,
    normalize_axis,
    reshape,
    shape_arg,
)
from .reduce import max, min, normalize_axes, sum  # noqa: A004


def _t(x):
    return to_tracer(x)


def relu(x: ArrayLike) -> Tracer:
    """max(x, 0) with derivative 0 at x == 0."""
    x = _t(x)
    return where_(x <= 0, 0, x)          # NaN stays NaN, as np.maximum(x, 0)


def leaky_relu(x: ArrayLike, negative_slope: float = 0.01) -> Tracer:
    """x where x > 0, else negative_slope * x."""
    x = _t(x)
    return where_(x > 0, x, x * negative_slope)


def square(x: ArrayLike) -> Tracer:
    """x * x."""
    x = _t(x)
    return x * x


def clip(x: ArrayLike, lo: ArrayLike | None = None,
         hi: ArrayLike | None = None) -> Tracer:
    """numpy.clip: maximum(x, lo) then minimum(_, hi); either bound may be None."""
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
    """exp(x) / sum(exp(x)) along axis, computed from x - max(x) (never overflows)."""
    z, _ = _shifted(x, axis)
    e = exp(z)
    return e / sum(e, axis, keepdims=True)


def log_softmax(x: ArrayLike, axis: int = -1) -> Tracer:
    """x - logsumexp(x) along axis, computed from x - max(x) (never overflows)."""
    z, _ = _shifted(x, axis)
    return z - log(sum(exp(z), axis, keepdims=True))


def one_hot(labels: ArrayLike, n: int, dtype=np.float32) -> Tracer:
    """Row i is 1 at column labels[i]; a label outside [0, n) is a GraphcError at run time
    naming it and its position (never a silent row of zeros)."""
    labels = _t(labels)
    if labels.node.dtype.kind != "i":
        raise DTypeError(f"one_hot: labels must be integers, got {labels.dtype}")
    try:
        n = operator.index(n)
    except TypeError:
        raise DTypeError(f"one_hot: the number of classes must be an int, got {n!r}") from None
    labels = check_index(labels, n, "label")
    classes = Tracer(constant(np.arange(n), labels.node.dtype))
    return astype(expand_dims(labels, -1) == classes, dtype)




# ---- statistics ----

def _count(x: Tracer, axis) -> int:
    n = 1
    for a in normalize_axes(axis, x.ndim, "var"):
        n *= x.shape[a]
    return n


def var(x: ArrayLike, axis: Axis = None, ddof: int = 0, keepdims: bool = False) -> Tracer:
    """numpy.var: mean squared deviation, divided by (n - ddof)."""
    x = _t(x)
    if not x.node.dtype.is_float:
        x = astype(x, dtypes.float64)
    d = x - sum(x, axis, keepdims=True) / _count(x, axis)
    return sum(d * d, axis, keepdims) / (_count(x, axis) - ddof)


def std(x: ArrayLike, axis: Axis = None, ddof: int = 0, keepdims: bool = False) -> Tracer:
    """numpy.std: the square root of var (its gradient is NaN where the spread is 0)."""
    return sqrt(var(x, axis, ddof, keepdims))


def _arg_extremum(x, axis, keepdims, extremum, name: str) -> Tracer:
    """The first index of the extremum along axis (the first NaN if there is one, as numpy);
    no derivative (an int64 result)."""
    x = _t(x)
    if x.node.dtype is dtypes.bool_:
        x = astype(x, dtypes.int32)
    if axis is None:
        if keepdims:
            return reshape(_arg_extremum(x, None, False, extremum, name), (1,) * x.ndim)
        x, axis = reshape(x, (-1,)), 0
    axis = normalize_axis(axis, x.ndim, name)
    n = x.shape[axis]
    if n == 0:
        raise ShapeError(f"{name}: attempt to get {name} of an empty sequence")
    hit = x == extremum(x, axis, keepdims=True)
    if x.node.dtype.is_float:
        hit = hit | (x != x)                        # NaN wins, as in numpy
    where_along = tuple(n if d == axis else 1 for d in range(x.ndim))
    index = reshape(Tracer(constant(np.arange(n), dtypes.int64)), where_along)
    return min(where_(hit, index, n), axis, keepdims)


def argmax(x: ArrayLike, axis: int | None = None, keepdims: bool = False) -> Tracer:
    """numpy.argmax (int64)."""
    return _arg_extremum(x, axis, keepdims, max, "argmax")


def argmin(x: ArrayLike, axis: int | None = None, keepdims: bool = False) -> Tracer:
    """numpy.argmin (int64)."""
    return _arg_extremum(x, axis, keepdims, min, "argmin")


# ---- rearranging ----

def flip(x: ArrayLike, axis: Axis = None) -> Tracer:
    """numpy.flip: reverse the order of elements along the axes (all by default)."""
    x = _t(x)
    axes = normalize_axes(axis, x.ndim, "flip")
    return getitem(x, tuple(slice(None, None, -1) if d in axes else slice(None)
                            for d in range(x.ndim)))


def tile(x: ArrayLike, reps) -> Tracer:
    """numpy.tile: x repeated reps[i] times along dimension i."""
    x = _t(x)
    reps = shape_arg(reps, "tile")
    if any(r < 0 for r in reps):
        raise ShapeError(f"tile: negative repetitions {reps}")
    ndim = len(reps) if len(reps) > x.ndim else x.ndim
    reps = (1,) * (ndim - len(reps)) + reps
    shape = (1,) * (ndim - x.ndim) + x.shape
    interleaved = tuple(d for s in shape for d in (1, s))
    stretched = tuple(d for r, s in zip(reps, shape) for d in (r, s))
    x = broadcast_to(reshape(x, interleaved), stretched)
    return reshape(x, tuple(r * s for r, s in zip(reps, shape)))


def repeat(x: ArrayLike, repeats: int, axis: int | None = None) -> Tracer:
    """numpy.repeat with one repeat count for every element."""
    x = _t(x)
    if not isinstance(repeats, (int, np.integer)) or repeats < 0:
        raise GraphcError(f"repeat: repeats must be a non-negative int (one count for every "
                          f"element), got {repeats!r}")
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    axis = normalize_axis(axis, x.ndim, "repeat")
    shape = x.shape
    x = expand_dims(x, axis + 1)
    x = broadcast_to(x, shape[:axis + 1] + (int(repeats),) + shape[axis + 1:])
    return reshape(x, shape[:axis] + (shape[axis] * int(repeats),) + shape[axis + 1:])


def pad(x: ArrayLike, pad_width, mode: str = "constant", constant_values=0) -> Tracer:
    """numpy.pad for mode "constant" (a scalar fill) and "edge"."""
    x = _t(x)
    try:
        widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2))
    except ValueError:
        raise ShapeError(f"pad: pad_width {pad_width!r} does not fit shape {x.shape}") from None
    if (widths < 0).any():
        raise ShapeError(f"pad: negative pad_width {pad_width!r}")
    if mode not in ("constant", "edge"):
        raise GraphcError(f"pad: mode {mode!r} is not supported (constant or edge)")
    for axis, (before, after) in enumerate(widths.tolist()):
        if not before and not after:
            continue
        parts = [_pad_block(x, axis, before, mode, constant_values, 0), x,
                 _pad_block(x, axis, after, mode, constant_values, -1)]
        x = concatenate([p for p in parts if p.shape[axis]], axis)
    return x


def _pad_block(x: Tracer, axis: int, width: int, mode: str, value, edge: int) -> Tracer:
    shape = x.shape[:axis] + (width,) + x.shape[axis + 1:]
    if mode == "edge":
        if x.shape[axis] == 0:
            raise ShapeError("pad: can't extend an empty axis in mode 'edge'")
        index = tuple(slice(edge, edge + 1 or None) if d == axis else slice(None)
                      for d in range(x.ndim))
        return broadcast_to(getitem(x, index), shape)
    return broadcast_to(astype(value, x.node.dtype), shape)


# ---- activations ----

def gelu(x: ArrayLike, approximate: bool = False) -> Tracer:
    """x·Φ(x) with Φ the standard normal CDF (exact, as torch's default); approximate=True
    uses the tanh formula."""
    x = _t(x)
    if not x.node.dtype.is_float:
        x = astype(x, dtypes.float64)
    if approximate:
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1 + tanh(inner))
    return 0.5 * x * (1 + erf(x * (1 / math.sqrt(2))))
