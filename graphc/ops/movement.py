"""Movement primitives: they rearrange elements without arithmetic; all are linear."""

from __future__ import annotations

import operator

import numpy as np

from ..errors import GraphcError, ShapeError
from ..ir import prod
from ..trace import (
    ArrayLike,
    Axis,  # trace is loaded first (graphc/__init__)
    Tracer,
    constant,
    splat_value,
    to_tracer,
)
from . import LINEAR, MOVEMENT, bind, defop


class IndexOutOfRange(ShapeError, IndexError):
    """A static index outside the axis (also an IndexError, as in numpy)."""


def _tracer(x):
    return to_tracer(x)


def _apply(op, x, arg):
    value = splat_value(x.node) if op is not unslice_p else None
    if value is not None:          # moving a splatted constant gives a splatted constant
        shape, dtype = op.infer((x.node,), arg)
        return Tracer(constant(value, dtype, shape), weak=x.weak)
    return Tracer(bind(op, (x.node,), arg), weak=x.weak)


def shape_arg(shape, opname: str) -> tuple[int, ...]:
    """A shape as numpy takes it (an int, or a sequence of ints, numpy ints included)."""
    try:
        if isinstance(shape, (int, np.integer)):
            return (operator.index(shape),)
        return tuple(operator.index(d) for d in shape)
    except TypeError:
        raise ShapeError(f"{opname}: shape {shape!r} must be an int or a sequence of "
                         "ints") from None


# ---- broadcast_to: same rank, dims of 1 stretched (the tracer adds leading 1s by reshape) ----

def _broadcast_infer(src, shape):
    (x,) = src
    if len(x.shape) != len(shape) or any(d not in (1, s) for d, s in zip(x.shape, shape)):
        raise ShapeError(f"broadcast_to: cannot broadcast {x.shape} to {shape}")
    return shape, x.dtype


def _unbroadcast(g, y, x, arg):
    axes = tuple(i for i, (d, s) in enumerate(zip(x.shape, arg)) if d == 1 and s != 1)
    from .reduce import reduce_sum
    return (reshape(reduce_sum(g, arg=axes), x.shape) if axes else g,)


broadcast_p = defop("broadcast_to", MOVEMENT, infer=_broadcast_infer,
                    numpy=lambda x, arg: np.broadcast_to(x, arg).copy(),
                    vjp=_unbroadcast, jvp=LINEAR)


def broadcast_to(x: ArrayLike, shape: tuple[int, ...]) -> Tracer:
    """numpy.broadcast_to; the result is an explicit node (stride-0 reads in C)."""
    x = _tracer(x)
    shape = shape_arg(shape, "broadcast_to")
    if any(d < 0 for d in shape):
        raise ShapeError(f"broadcast_to: negative dimension in {shape}")
    if x.shape == shape:
        return x
    if len(shape) < x.ndim:
        raise ShapeError(f"broadcast_to: cannot broadcast {x.shape} to {shape}")
    if x.ndim < len(shape):
        x = reshape(x, (1,) * (len(shape) - x.ndim) + x.shape)
    return _apply(broadcast_p, x, shape)


# ---- reshape ----

def _reshape_infer(src, shape):
    (x,) = src
    if prod(shape) != x.size:
        raise ShapeError(f"reshape: cannot reshape {x.shape} ({x.size} elements) to {shape}")
    return shape, x.dtype


reshape_p = defop("reshape", MOVEMENT, infer=_reshape_infer,
                  numpy=lambda x, arg: np.reshape(x, arg),
                  vjp=lambda g, y, x, arg: (reshape(g, x.shape),), jvp=LINEAR)


def reshape(x: ArrayLike, shape: int | tuple[int, ...]) -> Tracer:
    """numpy.reshape (one -1 allowed); free on contiguous data."""
    x = _tracer(x)
    shape = shape_arg(shape, "reshape")
    if shape.count(-1) > 1:
        raise ShapeError(f"reshape: more than one -1 in {shape}")
    if -1 in shape:
        known = prod(d for d in shape if d != -1)
        if known == 0 or x.size % known:
            raise ShapeError(f"reshape: cannot reshape {x.shape} to {shape}")
        shape = tuple(x.size // known if d == -1 else d for d in shape)
    if shape == x.shape:
        return x
    return _apply(reshape_p, x, shape)


# ---- transpose ----

def _transpose_infer(src, perm):
    (x,) = src
    return tuple(x.shape[p] for p in perm), x.dtype


transpose_p = defop("transpose", MOVEMENT, infer=_transpose_infer,
                    numpy=lambda x, arg: np.transpose(x, arg),
                    vjp=lambda g, y, x, arg: (transpose(g, tuple(np.argsort(arg))),),
                    jvp=LINEAR)


def axis_tuple(axis, opname: str) -> tuple:
    """An axis argument as numpy takes it (an int or a sequence of ints) as a tuple."""
    if isinstance(axis, (int, np.integer)):
        return (axis,)
    if isinstance(axis, (tuple, list)):
        return tuple(axis)
    raise ShapeError(f"{opname}: axis {axis!r} must be an int or a tuple of ints")


def normalize_axis(axis: int, ndim: int, opname: str) -> int:
    try:
        axis = operator.index(axis)
    except TypeError:
        raise ShapeError(f"{opname}: axis {axis!r} must be an int") from None
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{opname}: axis {axis} is out of bounds for an array of "
                         f"dimension {ndim}")
    return axis % ndim


def transpose(x: ArrayLike, axes: tuple[int, ...] | None = None) -> Tracer:
    """numpy.transpose: axes permuted (reversed by default); a strided view in C."""
    x = _tracer(x)
    if axes is None:
        perm = tuple(range(x.ndim))[::-1]
    else:
        perm = tuple(normalize_axis(a, x.ndim, "transpose") for a in axis_tuple(axes,
                                                                                 "transpose"))
        if sorted(perm) != list(range(x.ndim)):
            raise ShapeError(f"transpose: axes {tuple(axes)} are not a permutation for "
                             f"shape {x.shape}")
    if perm == tuple(range(x.ndim)):
        return x
    return _apply(transpose_p, x, perm)


def swapaxes(x: ArrayLike, a: int, b: int) -> Tracer:
    """numpy.swapaxes: axes a and b exchanged."""
    x = _tracer(x)
    perm = list(range(x.ndim))
    a, b = normalize_axis(a, x.ndim, "swapaxes"), normalize_axis(b, x.ndim, "swapaxes")
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(x, perm)


def expand_dims(x: ArrayLike, axis: int | tuple[int, ...]) -> Tracer:
    """numpy.expand_dims: size-1 axes inserted at `axis`."""
    x = _tracer(x)
    axes = axis_tuple(axis, "expand_dims")
    ndim = x.ndim + len(axes)
    axes = sorted(normalize_axis(a, ndim, "expand_dims") for a in axes)
    if len(set(axes)) != len(axes):
        raise ShapeError(f"expand_dims: repeated axis in {axis}")
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return reshape(x, tuple(shape))


def squeeze(x: ArrayLike, axis: Axis = None) -> Tracer:
    """numpy.squeeze: size-1 axes removed (all of them by default)."""
    x = _tracer(x)
    if axis is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    else:
        axes = [normalize_axis(a, x.ndim, "squeeze") for a in axis_tuple(axis, "squeeze")]
        for a in axes:
            if x.shape[a] != 1:
                raise ShapeError(f"squeeze: cannot squeeze axis {a} of size {x.shape[a]} "
                                 f"(shape {x.shape})")
    return reshape(x, tuple(d for i, d in enumerate(x.shape) if i not in axes))


# ---- slice (strided window) and its transpose, unslice (place into zeros) ----
# arg: one (start, step, count) per dim; element i of a dim reads start + i*step.

def _np_index(arg):
    out = []
    for start, step, count in arg:
        stop = start + step * count
        out.append(slice(start, stop if stop >= 0 else None, step))
    return tuple(out)


def _slice_infer(src, arg):
    (x,) = src
    return tuple(c for _, _, c in arg), x.dtype


def _unslice_infer(src, arg):
    in_shape, _ = arg
    return in_shape, src[0].dtype


def _np_unslice(g, arg):
    in_shape, window = arg
    out = np.zeros(in_shape, g.dtype)
    out[_np_index(window)] = g
    return out


slice_p = defop("slice", MOVEMENT, infer=_slice_infer,
                numpy=lambda x, arg: x[_np_index(arg)],
                vjp=lambda g, y, x, arg: (_apply(unslice_p, g, (x.shape, arg)),), jvp=LINEAR)
unslice_p = defop("unslice", MOVEMENT, infer=_unslice_infer, numpy=_np_unslice,
                  vjp=lambda g, y, x, arg: (_apply(slice_p, g, arg[1]),), jvp=LINEAR)


def getitem(x: ArrayLike, idx) -> Tracer:
    """numpy indexing: static ints, slices, Ellipsis and None (views, free in C), and integer
    arrays (gathers checked at run time, see ops/gather.py)."""
    x = _tracer(x)
    if type(idx) is int and len(x.shape) == 1:      # x[i] of a vector: the common read
        return _element(x, idx)
    idx = idx if isinstance(idx, tuple) else (idx,)
    from .gather import advanced_getitem, is_advanced
    if any(is_advanced(i) for i in idx):
        return advanced_getitem(x, idx)
    for i in idx:
        if isinstance(i, (bool, np.bool_)):
            raise GraphcError(f"index {i!r}: boolean indices are not supported (use "
                              "graphc.where with a mask)")
        if not (i is None or i is Ellipsis or isinstance(i, (slice, int, np.integer))):
            raise GraphcError(f"index {i!r} of type {type(i).__name__} is not supported: "
                              "graphc supports static ints, slices, ... and None")
    n_real = sum(1 for i in idx if i is not None and i is not Ellipsis)
    if n_real > x.ndim:
        raise IndexOutOfRange(f"getitem: too many indices ({n_real}) for shape {x.shape}")
    if sum(1 for i in idx if i is Ellipsis) > 1:
        raise GraphcError("getitem: an index can only have a single ellipsis")
    if Ellipsis in idx:
        k = idx.index(Ellipsis)
        idx = idx[:k] + (slice(None),) * (x.ndim - n_real) + idx[k + 1:]
    else:
        idx = idx + (slice(None),) * (x.ndim - n_real)
    window, out_shape, dim = [], [], 0
    for i in idx:
        if i is None:
            out_shape.append(1)
            continue
        n = x.shape[dim]
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            count = len(range(start, stop, step))
            window.append((start if count else 0, step, count))
            out_shape.append(count)
        else:
            if not -n <= i < n:
                raise IndexOutOfRange(f"getitem: index {i} is out of bounds for axis {dim} "
                                      f"with size {n} (shape {x.shape})")
            window.append((int(i) % n, 1, 1))
        dim += 1
    window = tuple(window)
    if window != tuple((0, 1, n) for n in x.shape):
        x = _apply(slice_p, x, window)
    return reshape(x, tuple(out_shape))


def _element(x: Tracer, i: int) -> Tracer:
    """x[i] of a 1-d x: the nodes getitem's general path builds, without its parsing."""
    (n,) = x.shape
    if not -n <= i < n:
        raise IndexOutOfRange(f"getitem: index {i} is out of bounds for axis 0 with size {n} "
                              f"(shape {x.shape})")
    if n != 1:
        x = _apply(slice_p, x, ((i % n, 1, 1),))
    return _apply(reshape_p, x, ())


# ---- concatenate ----

def _without(shape, axis):
    return shape[:axis] + shape[axis + 1:]


def _concat_infer(src, axis):
    first = src[0]
    for s in src[1:]:
        if (len(s.shape) != len(first.shape)
                or _without(s.shape, axis) != _without(first.shape, axis)):
            raise ShapeError(f"concatenate: shapes {first.shape} and {s.shape} differ "
                             f"outside axis {axis}")
        if s.dtype is not first.dtype:
            raise ShapeError(f"concatenate: dtypes {first.dtype} and {s.dtype} differ")
    shape = list(first.shape)
    shape[axis] = sum(s.shape[axis] for s in src)
    return tuple(shape), first.dtype


def _concat_vjp(g, y, *xs, arg):
    out, start = [], 0
    for x in xs:
        window = tuple((start, 1, x.shape[d]) if d == arg else (0, 1, n)
                       for d, n in enumerate(y.shape))
        out.append(_apply(slice_p, g, window))
        start += x.shape[arg]
    return tuple(out)


concat_p = defop("concatenate", MOVEMENT, infer=_concat_infer,
                 numpy=lambda *xs, arg: np.concatenate(xs, axis=arg),
                 vjp=lambda g, y, *xs, arg: _concat_vjp(g, y, *xs, arg=arg), jvp=LINEAR)


def concatenate(xs, axis: int = 0) -> Tracer:
    """numpy.concatenate: arrays joined along an existing axis."""
    if isinstance(xs, (Tracer, np.ndarray)) or not hasattr(xs, "__iter__"):
        raise GraphcError(f"concatenate: expects a sequence of arrays, got "
                          f"{type(xs).__name__}")
    xs = list(xs)
    if not xs:
        raise GraphcError("concatenate: needs at least one array")
    ts, weak = prepare_same_dtype(xs)
    if any(t.ndim == 0 for t in ts):
        raise ShapeError("concatenate: zero-dimensional arrays cannot be concatenated")
    axis = normalize_axis(axis, ts[0].ndim, "concatenate")
    if len(ts) == 1:
        return ts[0]
    return Tracer(bind(concat_p, tuple(t.node for t in ts), axis), weak=weak)


def prepare_same_dtype(xs):
    """Promote a list of arrays to one dtype without broadcasting their shapes."""
    from .elementwise import astype, result_dtype
    ts = [to_tracer(x, "concatenate") for x in xs]
    first = ts[0]
    if all(t.node.dtype is first.node.dtype and t.weak == first.weak for t in ts):
        return ts, first.weak                   # already one dtype (stack's usual case)
    dt, weak = result_dtype(ts)
    return [astype(t, dt) for t in ts], weak


def stack(xs, axis: int = 0) -> Tracer:
    """numpy.stack: arrays of one shape joined along a new axis."""
    if isinstance(xs, (Tracer, np.ndarray)) or not hasattr(xs, "__iter__"):
        raise GraphcError(f"stack: expects a sequence of arrays, got {type(xs).__name__}")
    xs = [_tracer(x) for x in xs]
    if not xs:
        raise GraphcError("stack: needs at least one array")
    shapes = {x.shape for x in xs}
    if len(shapes) > 1:
        raise ShapeError(f"stack: all arrays must have the same shape, got {sorted(shapes)}")
    axis = normalize_axis(axis, xs[0].ndim + 1, "stack")
    shape = xs[0].shape
    shape = shape[:axis] + (1,) + shape[axis:]
    return concatenate([_apply(reshape_p, x, shape) for x in xs], axis)
