"""Gathers with data-dependent indices: `take_along_axis`, `take`, and integer-array indexing
(`x[idx]`, `x[rows, cols]`, `x[:, idx]`), with numpy's semantics.

Every index is checked at run time (`check_index`: a GraphcError naming the index and its
position, never a read out of bounds); negative indices count from the end, as numpy's. All
of them lower to one primitive, `gather` (numpy's take_along_axis with the index already
broadcast, O(1) per element: one index load, one data load), whose derivative is the
primitive `scatter_add` (accumulating stores in the index array's row-major order, so sums
are deterministic and match numpy's `np.add.at`); each is the other's transpose. C clamps
every loaded index into the axis as well, so memory safety never rests on the check alone.
"""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..errors import DTypeError, GraphcError, ShapeError
from ..ir import prod
from ..trace import ArrayLike, Tracer, to_tracer
from . import GATHER, SCATTER, defop
from .elementwise import astype, broadcast_shapes, check_index
from .movement import broadcast_to, normalize_axis, reshape, transpose


def _index_operand(x, idx, axis: int, opname: str) -> None:
    """The shape contract shared by gather and scatter_add: int64 indices with x's rank,
    matching x on every axis but `axis` (the one they index)."""
    if idx.dtype is not dtypes.int64:
        raise DTypeError(f"{opname}: indices must be int64, got {idx.dtype}")
    if len(x.shape) != len(idx.shape) or not 0 <= axis < len(x.shape) or any(
            a != b for d, (a, b) in enumerate(zip(x.shape, idx.shape)) if d != axis):
        raise ShapeError(f"{opname}: indices of shape {idx.shape} do not fit {x.shape} "
                         f"along axis {axis}")


def _gather_infer(src, axis):
    x, idx = src
    _index_operand(x, idx, axis, "gather")
    return idx.shape, x.dtype


def _scatter_infer(src, arg):
    g, idx = src
    axis, n = arg
    _index_operand(g, idx, axis, "scatter_add")
    if g.shape[axis] != idx.shape[axis] or g.dtype is dtypes.bool_:
        raise ShapeError(f"scatter_add: values {g.dtype}{g.shape} do not match indices "
                         f"{idx.shape}")
    return g.shape[:axis] + (n,) + g.shape[axis + 1:], g.dtype


def _np_scatter_add(g, idx, arg):
    axis, n = arg
    out = np.zeros(g.shape[:axis] + (n,) + g.shape[axis + 1:], g.dtype)
    at = list(np.indices(g.shape, sparse=True))
    at[axis] = idx
    np.add.at(out, tuple(at), g)
    return out


# out[..., j, ...] = x[..., idx[..., j, ...], ...] along axis `arg` (idx already checked)
gather_p = defop("gather", GATHER, infer=_gather_infer,
                 numpy=lambda x, idx, arg: np.take_along_axis(x, idx, axis=arg),
                 vjp=lambda g, y, x, idx, arg: (scatter_add_p(g, idx, arg=(arg, x.shape[arg])),
                                                None),
                 jvp=(lambda t, y, x, idx, arg: gather_p(t, idx, arg=arg), None))
# out = zeros (axis `arg[0]` of length arg[1]); out[..., idx[..., j, ...], ...] += g[..., j, ...]
scatter_add_p = defop("scatter_add", SCATTER, infer=_scatter_infer, numpy=_np_scatter_add,
                      vjp=lambda g, y, v, idx, arg: (gather_p(g, idx, arg=arg[0]), None),
                      jvp=(lambda t, y, v, idx, arg: scatter_add_p(t, idx, arg=arg), None))


def _indices(idx, n: int, what: str) -> Tracer:
    """Integer indices into an axis of length n: negative ones wrapped, all checked."""
    idx = to_tracer(idx, what)
    if idx.node.dtype.kind != "i":
        raise GraphcError(f"{what}: indices must be integers, got {idx.dtype} (boolean masks: "
                          "use graphc.where)")
    return check_index(astype(idx, dtypes.int64), n, what, wrap=True)


def _select(x: Tracer, idx: Tracer, axis: int) -> Tracer:
    """x with `axis` replaced by idx's dims: out[..., *j, ...] = x[..., idx[j], ...]."""
    m = idx.size
    lead, tail = x.shape[:axis], x.shape[axis + 1:]
    column = reshape(idx, (1,) * axis + (m,) + (1,) * len(tail))
    out = gather_p(x, broadcast_to(column, lead + (m,) + tail), arg=axis)
    return reshape(out, lead + idx.shape + tail)


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
    return gather_p(x, broadcast_to(idx, tuple(out_shape)), arg=axis)


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
