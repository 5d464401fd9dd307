"""Gathers with data-dependent indices: `take_along_axis`, `take`, and integer-array indexing
(`x[idx]`, `x[rows, cols]`, `x[:, idx]`), with numpy's semantics.

Every index is checked at run time (`check_index`: a GraphcError naming the index and its
position, never a read out of bounds); negative indices count from the end, as numpy's. A
gather is written as a masked sum over the indexed axis: `sum(where(idx == arange(n), x, 0))`,
so only the selected element contributes (a NaN elsewhere stays out) and the derivative is the
scatter-add of the cotangent. That costs n operations per gathered element: fine for class
scores and small tables, slow for large embedding tables (a dedicated gather kernel is the
planned fix).
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import GraphcError, ShapeError
from ..ir import prod
from ..trace import ArrayLike, Tracer, constant, to_tracer
from .elementwise import astype, broadcast_shapes, check_index, where_
from .movement import broadcast_to, expand_dims, normalize_axis, reshape, transpose
from .reduce import sum as reduce_sum


def _indices(idx, n: int, what: str) -> Tracer:
    """Integer indices into an axis of length n: negative ones wrapped, all checked."""
    idx = to_tracer(idx, what)
    if idx.node.dtype.kind != "i":
        raise GraphcError(f"{what}: indices must be integers, got {idx.dtype} (boolean masks: "
                          "use graphc.where)")
    return check_index(astype(idx, dtypes.int64), n, what, wrap=True)


def _select(x: Tracer, idx: Tracer, axis: int) -> Tracer:
    """x with `axis` replaced by idx's dims: out[..., *j, ...] = x[..., idx[j], ...]."""
    n = x.shape[axis]
    k = idx.ndim
    # x as (..., 1 (k times), ..., n): the gathered axis last, idx's dims where it was
    moved = transpose(x, tuple(d for d in range(x.ndim) if d != axis) + (axis,))
    head = x.shape[:axis]
    moved = reshape(moved, head + (1,) * k + x.shape[axis + 1:] + (n,))
    shape = head + idx.shape + x.shape[axis + 1:]
    hit = reshape(idx, (1,) * len(head) + idx.shape + (1,) * (x.ndim - axis - 1) + (1,)) == \
        Tracer(constant(np.arange(n), dtypes.int64))
    full = shape + (n,)
    picked = where_(broadcast_to(hit, full), broadcast_to(moved, full), 0)
    return reduce_sum(picked, axis=-1)


def take(x: ArrayLike, indices: ArrayLike, axis: int | None = None) -> Tracer:
    """numpy.take: elements of x at `indices` along `axis` (of the flattened x if None)."""
    x = to_tracer(x, "take")
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    axis = normalize_axis(axis, x.ndim, "take")
    return _select(x, _indices(indices, x.shape[axis], "take index"), axis)


def take_along_axis(x: ArrayLike, indices: ArrayLike, axis: int) -> Tracer:
    """numpy.take_along_axis: out[..., j, ...] = x[..., indices[..., j, ...], ...], the other
    dims of x and indices broadcast together."""
    x = to_tracer(x, "take_along_axis")
    idx = to_tracer(indices, "take_along_axis")
    if idx.ndim != x.ndim:
        raise ShapeError(f"take_along_axis: indices of shape {idx.shape} need the same number "
                         f"of dimensions as the array {x.shape}")
    axis = normalize_axis(axis, x.ndim, "take_along_axis")
    n = x.shape[axis]
    idx = _indices(idx, n, "take_along_axis index")
    other = [d for d in range(x.ndim) if d != axis]
    outer = broadcast_shapes("take_along_axis", tuple(x.shape[d] for d in other),
                             tuple(idx.shape[d] for d in other))
    out_shape = list(outer)
    out_shape.insert(axis, idx.shape[axis])
    x_shape = list(outer)
    x_shape.insert(axis, n)
    x = broadcast_to(x, tuple(x_shape))
    idx = broadcast_to(idx, tuple(out_shape))
    hit = expand_dims(idx, -1) == Tracer(constant(np.arange(n), dtypes.int64))
    moved = expand_dims(transpose(x, tuple(other) + (axis,)), axis)     # outer, 1 at axis, n
    full = tuple(out_shape) + (n,)
    return reduce_sum(where_(hit, broadcast_to(moved, full), 0), axis=-1)


def is_advanced(i) -> bool:
    """Whether an index element is an integer array (numpy's advanced indexing)."""
    if isinstance(i, Tracer):
        return True
    if isinstance(i, np.ndarray):
        return True
    return isinstance(i, list)


def advanced_getitem(x: Tracer, idx: tuple) -> Tracer:
    """x[idx] where some entries are integer arrays (the rest slices, ints, ... or None):
    numpy's rule: the arrays broadcast together; their dims go where the first of them was
    if they are adjacent, first otherwise."""
    from .movement import getitem
    if any(i is None for i in idx):
        raise GraphcError("indexing with both integer arrays and None is not supported")
    dots = [k for k, i in enumerate(idx) if i is Ellipsis]
    if len(dots) > 1:
        raise GraphcError("getitem: an index can only have a single ellipsis")
    if dots:
        k = dots[0]
        idx = idx[:k] + (slice(None),) * (x.ndim - len(idx) + 1) + idx[k + 1:]
    idx = idx + (slice(None),) * (x.ndim - len(idx))
    if len(idx) > x.ndim:
        raise ShapeError(f"getitem: too many indices ({len(idx)}) for shape {x.shape}")
    # basic parts first (slices keep their axis; an int is an advanced index of shape ())
    adv = [d for d, i in enumerate(idx) if is_advanced(i) or isinstance(i, (int, np.integer))]
    basic = tuple(slice(None) if d in adv else i for d, i in enumerate(idx))
    x = getitem(x, basic)
    arrays = [_indices(np.asarray(idx[d]) if isinstance(idx[d], list) else idx[d], x.shape[d],
                       f"index for axis {d}") for d in adv]
    shape = broadcast_shapes("getitem", *(a.shape for a in arrays))
    arrays = [broadcast_to(a, shape) for a in arrays]
    # the indexed axes, first and flattened into one, gathered with one linear index
    rest = [d for d in range(x.ndim) if d not in adv]
    flat = reshape(transpose(x, tuple(adv) + tuple(rest)),
                   (prod(x.shape[d] for d in adv),) + tuple(x.shape[d] for d in rest))
    linear = arrays[0]
    for d, a in zip(adv[1:], arrays[1:]):
        linear = linear * x.shape[d] + a
    out = _select(flat, linear, 0)              # shape + rest dims
    adjacent = adv == list(range(adv[0], adv[0] + len(adv)))
    if adjacent and adv[0] > 0:                 # numpy puts the dims where the arrays were
        k, m = adv[0], len(shape)
        order = tuple(range(m, m + k)) + tuple(range(m)) + tuple(range(m + k, out.ndim))
        out = transpose(out, order)
    return out
