"""Matrix products: one batched matmul primitive; dot and outer are built from it."""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..trace import ArrayLike, Tracer, to_tracer  # trace is loaded first (graphc/__init__)
from . import BILINEAR, CONTRACT, bind, defop
from .movement import broadcast_to, reshape, swapaxes


def _matmul_infer(src, arg):
    a, b = src
    if (len(a.shape) < 2 or len(a.shape) != len(b.shape) or a.shape[:-2] != b.shape[:-2]
            or a.shape[-1] != b.shape[-2]):
        raise ShapeError(f"matmul: shapes {a.shape} and {b.shape} are not aligned")
    if a.dtype is not b.dtype:
        raise ShapeError(f"matmul: dtypes {a.dtype} and {b.dtype} differ")
    return a.shape[:-1] + b.shape[-1:], a.dtype


matmul_p = defop("matmul", CONTRACT, infer=_matmul_infer, numpy=np.matmul,
                 vjp=lambda g, y, a, b: (matmul(g, swapaxes(b, -1, -2)),
                                         matmul(swapaxes(a, -1, -2), g)),
                 jvp=BILINEAR, c="gemm")


def matmul(a: ArrayLike, b: ArrayLike, opname: str = "matmul") -> Tracer:
    """numpy.matmul: 1-D operands are promoted to matrices, batch dims broadcast."""
    from .elementwise import broadcast_shapes
    from .movement import prepare_same_dtype
    (a, b), weak = prepare_same_dtype([a, b])
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"{opname}: operands must not be scalars (shapes {a.shape}, {b.shape})")
    shapes = f"shapes {a.shape} and {b.shape}"
    va, vb = a.ndim == 1, b.ndim == 1
    if va:
        a = reshape(a, (1,) + a.shape)
    if vb:
        b = reshape(b, b.shape + (1,))
    if a.shape[-1] != b.shape[-2]:
        raise ShapeError(f"{opname}: {shapes} are not aligned "
                         f"({a.shape[-1]} != {b.shape[-2]})")
    try:
        batch = broadcast_shapes(opname, a.shape[:-2], b.shape[:-2])
    except ShapeError:
        raise ShapeError(f"{opname}: {shapes}: batch dimensions {a.shape[:-2]} and "
                         f"{b.shape[:-2]} cannot be broadcast together") from None
    a = broadcast_to(a, batch + a.shape[-2:])
    b = broadcast_to(b, batch + b.shape[-2:])
    if not a.node.dtype.is_float:
        raise DTypeError(f"{opname}: integer matmul is not supported (dtype {a.dtype})")
    out = Tracer(bind(matmul_p, (a.node, b.node)), weak=weak)
    if va:
        out = reshape(out, out.shape[:-2] + out.shape[-1:])
    if vb:
        out = reshape(out, out.shape[:-1])
    return out


def dot(a: ArrayLike, b: ArrayLike) -> Tracer:
    """numpy.dot for 0-, 1- and 2-D operands."""
    from .elementwise import multiply
    a, b = to_tracer(a, "dot"), to_tracer(b, "dot")
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    if a.ndim > 2 or b.ndim > 2:
        raise ShapeError(f"dot: only 0-, 1- and 2-D operands are supported, got {a.shape} "
                         f"and {b.shape} (use matmul for batches)")
    return matmul(a, b, "dot")


def outer(a: ArrayLike, b: ArrayLike) -> Tracer:
    """numpy.outer: a (flattened) times b (flattened) as a matrix."""
    from .elementwise import multiply
    a, b = to_tracer(a, "outer"), to_tracer(b, "outer")
    return multiply(reshape(a, (a.size, 1)), reshape(b, (1, b.size)))
