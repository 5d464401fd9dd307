"""Array creation (numpy's zeros, ones, full, arange, linspace, eye and the *_like forms).

Inside a trace they are constants (a single splatted value where all elements are equal, so
they cost no memory); on plain arrays they return numpy arrays like numpy's own.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import DTypeError, GraphcError
from ..trace import ArrayLike, Tracer, constant, to_tracer
from .elementwise import astype
from .movement import broadcast_to, shape_arg


def _dtype(dtype, default: dtypes.DType) -> dtypes.DType:
    if dtype is None or isinstance(dtype, dtypes.DType):
        return default if dtype is None else dtype
    return dtypes.from_numpy(dtype, "dtype")


def full(shape, fill_value: ArrayLike, dtype=None) -> Tracer:
    """An array of `shape` filled with `fill_value` (which may be a traced scalar)."""
    shape = shape_arg(shape, "full")
    fill = to_tracer(fill_value, "full")
    if fill.shape != ():
        raise GraphcError(f"full: fill_value must be a scalar, got shape {fill.shape}")
    if dtype is not None:
        fill = astype(fill, _dtype(dtype, fill.node.dtype))
    return broadcast_to(Tracer(fill.node), shape)       # strong: numpy's full(s, 3) is int64


def zeros(shape, dtype=None) -> Tracer:
    """numpy.zeros (float64 unless dtype says otherwise)."""
    return Tracer(constant(0, _dtype(dtype, dtypes.float64), shape_arg(shape, "zeros")))


def ones(shape, dtype=None) -> Tracer:
    """numpy.ones (float64 unless dtype says otherwise)."""
    return Tracer(constant(1, _dtype(dtype, dtypes.float64), shape_arg(shape, "ones")))


def zeros_like(x: ArrayLike, dtype=None) -> Tracer:
    """numpy.zeros_like (a constant: no memory inside a trace)."""
    t = to_tracer(x, "zeros_like")
    return Tracer(constant(0, _dtype(dtype, t.node.dtype), t.shape))


def ones_like(x: ArrayLike, dtype=None) -> Tracer:
    """numpy.ones_like (a constant: no memory inside a trace)."""
    t = to_tracer(x, "ones_like")
    return Tracer(constant(1, _dtype(dtype, t.node.dtype), t.shape))


def full_like(x: ArrayLike, fill_value: ArrayLike, dtype=None) -> Tracer:
    """numpy.full_like: x's shape (and dtype unless given) filled with fill_value."""
    t = to_tracer(x, "full_like")
    return full(t.shape, fill_value, t.node.dtype if dtype is None else dtype)


def _static_number(v, opname: str):
    if isinstance(v, Tracer):
        raise GraphcError(f"{opname}: the bounds must be static numbers (the length of the "
                          "result depends on them)")
    return v


def arange(start, stop=None, step=1, dtype=None) -> Tracer:
    """numpy.arange with static bounds."""
    if stop is None:
        start, stop = 0, start
    args = [_static_number(v, "arange") for v in (start, stop, step)]
    try:
        value = np.arange(*args, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise GraphcError(f"arange: {e}") from None
    return Tracer(constant(value, dtypes.from_numpy(value.dtype, "arange")))


def linspace(start, stop, num: int = 50, endpoint: bool = True, dtype=None) -> Tracer:
    """numpy.linspace with static bounds."""
    value = np.linspace(_static_number(start, "linspace"), _static_number(stop, "linspace"),
                        num, endpoint=endpoint, dtype=dtype)
    return Tracer(constant(value, dtypes.from_numpy(value.dtype, "linspace")))


def eye(n: int, m: int | None = None, k: int = 0, dtype=None) -> Tracer:
    """numpy.eye: ones on the k-th diagonal."""
    try:
        value = np.eye(n, m, k, dtype=np.float64 if dtype is None else dtype)
    except TypeError as e:
        raise DTypeError(f"eye: {e}") from None
    return Tracer(constant(value, dtypes.from_numpy(value.dtype, "eye")))
