"""Reduction primitives over static axes (the axes are dropped; keepdims is a reshape)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dtypes
from ..errors import ShapeError
from ..trace import ArrayLike, Axis, Tracer, to_tracer  # trace is loaded first (graphc/__init__)
from . import LINEAR, REDUCE, bind, defop
from .elementwise import astype
from .movement import axis_tuple, broadcast_to, normalize_axis, reshape


@dataclass(frozen=True)
class Reduce:
    """How C accumulates: `init` per dtype kind, `update` with {acc} and {x}. A `blocked`
    float reduction adds blocks of BLOCK elements into partial sums first, so rounding error
    grows like (BLOCK + n/BLOCK) instead of n (numpy sums pairwise for the same reason)."""
    init: dict
    update: str
    blocked: bool = False


BLOCK = 128


def _reduce_infer(src, axes):
    (x,) = src
    return tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype


def _keep(g, x, axes):
    """g with the reduced axes restored as size 1, broadcast back to x's shape."""
    kept = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    return broadcast_to(reshape(g, kept), x.shape)


def _extremum_vjp(g, y, x, arg):
    mask = astype(x == _keep(y, x, arg), x.dtype)
    count = reduce_sum(mask, arg=arg)
    return (_keep(g / count, x, arg) * mask,)


def _extremum_jvp(t, y, x, arg):
    mask = astype(x == _keep(y, x, arg), x.dtype)
    return reduce_sum(t * mask, arg=arg) / reduce_sum(mask, arg=arg)


_EXTREMUM_TAPE_VJP = "({0} == {y}) * ({g} / {count})"     # as _extremum_vjp
reduce_sum = defop("sum", REDUCE, infer=_reduce_infer,
                   numpy=lambda x, arg: np.sum(x, axis=arg),
                   c=Reduce(init={"f": "0", "i": "0"}, update="{acc} += {x}", blocked=True),
                   vjp=lambda g, y, x, arg: (_keep(g, x, arg),), jvp=LINEAR,
                   tape_vjp=("{g}",))
reduce_max = defop("max", REDUCE, infer=_reduce_infer,
                   numpy=lambda x, arg: np.max(x, axis=arg),
                   c=Reduce(init={"f": "-INFINITY", "i": "GC_IMIN({T})"},
                            update="{acc} = gc_max({acc}, {x})"),
                   vjp=_extremum_vjp, jvp=(_extremum_jvp,),
                   test={"domain": ["distinct"]}, tape_vjp=(_EXTREMUM_TAPE_VJP,))
reduce_min = defop("min", REDUCE, infer=_reduce_infer,
                   numpy=lambda x, arg: np.min(x, axis=arg),
                   c=Reduce(init={"f": "INFINITY", "i": "GC_IMAX({T})"},
                            update="{acc} = gc_min({acc}, {x})"),
                   vjp=_extremum_vjp, jvp=(_extremum_jvp,),
                   test={"domain": ["distinct"]}, tape_vjp=(_EXTREMUM_TAPE_VJP,))


def normalize_axes(axis, ndim: int, opname: str) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    out = tuple(sorted(normalize_axis(a, ndim, opname) for a in axis_tuple(axis, opname)))
    if len(set(out)) != len(out):
        raise ShapeError(f"{opname}: duplicate value in axis {axis}")
    return out


def _reduce(op, x, axis, keepdims, opname):
    x = to_tracer(x, opname)
    axes = normalize_axes(axis, x.ndim, opname)
    if op is not reduce_sum and any(x.shape[a] == 0 for a in axes):
        raise ShapeError(f"{opname}: zero-size array to reduction operation {opname} which "
                         f"has no identity (shape {x.shape}, axis {axis})")
    if op is reduce_sum and not x.node.dtype.is_float:
        x = astype(x, dtypes.int64)          # numpy sums bools and int32 as int64
    out = Tracer(bind(op, (x.node,), axes), weak=x.weak) if axes else x
    if keepdims:
        out = reshape(out, tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
    return out


def sum(x: ArrayLike, axis: Axis = None, keepdims: bool = False) -> Tracer:  # noqa: A001
    """numpy.sum over axis (None: all); bools and int32 sum as int64, as numpy."""
    return _reduce(reduce_sum, x, axis, keepdims, "sum")


def max(x: ArrayLike, axis: Axis = None, keepdims: bool = False) -> Tracer:  # noqa: A001
    """numpy.max over axis (NaN wins); the derivative is shared equally by tied maxima."""
    return _reduce(reduce_max, x, axis, keepdims, "max")


def min(x: ArrayLike, axis: Axis = None, keepdims: bool = False) -> Tracer:  # noqa: A001
    """numpy.min over axis (NaN wins); the derivative is shared equally by tied minima."""
    return _reduce(reduce_min, x, axis, keepdims, "min")


def mean(x: ArrayLike, axis: Axis = None, keepdims: bool = False) -> Tracer:
    """numpy.mean over axis (None: all); integers average as float64."""
    x = to_tracer(x, "mean")
    if not x.node.dtype.is_float:
        x = astype(x, dtypes.float64)
    axes = normalize_axes(axis, x.ndim, "mean")
    n = 1
    for a in axes:
        n *= x.shape[a]
    return sum(x, axis, keepdims) / n
