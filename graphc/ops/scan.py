"""Scans: running accumulations along one axis (`cumsum`), a kernel kind of their own.

A scan is sequential along its axis and independent across the others, so it is neither
elementwise nor a reduction: it never fuses (passes/fuse.py only fuses those two kinds), and
C runs it as loops over the other axes around one accumulating loop (codegen: `scan`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dtypes
from ..trace import ArrayLike, Tracer, to_tracer  # trace is loaded first (graphc/__init__)
from . import LINEAR, SCAN, bind, defop
from .elementwise import astype
from .movement import getitem, normalize_axis, reshape


@dataclass(frozen=True)
class Scan:
    """How C accumulates along the axis: `update` with {acc} and {x}; the accumulator has the
    output's own type and starts at `init` (numpy accumulates in the output type too, so
    float32 results match numpy's exactly)."""
    init: str
    update: str


def _scan_infer(src, axis):
    (x,) = src
    return x.shape, x.dtype


def _reversed(x: Tracer, axis: int) -> Tracer:
    return getitem(x, tuple(slice(None, None, -1) if d == axis else slice(None)
                            for d in range(x.ndim)))


def _cumsum_vjp(g, y, x, arg):
    """out[j] = sum_{i <= j} x[i], so x̄[i] = sum_{j >= i} ḡ[j]: a cumsum from the end."""
    return (_reversed(cumsum_p(_reversed(g, arg), arg=arg), arg),)


cumsum_p = defop("cumsum", SCAN, infer=_scan_infer,
                 numpy=lambda x, arg: np.cumsum(x, axis=arg),
                 c=Scan(init="0", update="{acc} += {x}"),
                 vjp=_cumsum_vjp, jvp=LINEAR)


def cumsum(x: ArrayLike, axis: int | None = None, dtype=None) -> Tracer:
    """numpy.cumsum: running sums along `axis` (of the flattened x if None), accumulated in
    `dtype` if given; otherwise bools and int32 accumulate as int64, as numpy."""
    x = to_tracer(x, "cumsum")
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    axis = normalize_axis(axis, x.ndim, "cumsum")
    if dtype is not None:
        x = astype(x, dtype)
    elif not x.node.dtype.is_float:
        x = astype(x, dtypes.int64)
    return Tracer(bind(cumsum_p, (x.node,), axis), weak=x.weak)
