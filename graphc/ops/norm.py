"""norm: the Euclidean norm, with a custom derivative that is 0 at 0 (the plain rule gives
x/|x| = 0/0 there), the usual choice for regularizers and gradient clipping."""

from __future__ import annotations

from .. import dtypes
from ..custom import custom_vjp
from ..trace import ArrayLike, Axis, Tracer, to_tracer
from .composite import sqrt, where_
from .elementwise import astype
from .movement import reshape
from .reduce import normalize_axes, sum  # noqa: A004


def _norm(x, axes, keepdims):
    return sqrt(sum(x * x, axes, keepdims))


def _norm_fwd(x, axes, keepdims):
    n = _safe_norm(x, axes, keepdims)
    return n, (x, n)


def _norm_bwd(axes, keepdims, res, g):
    x, n = res
    kept = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    n, g = reshape(n, kept), reshape(g, kept)
    return (g * x / where_(n == 0, 1, n),)


_safe_norm = custom_vjp(_norm, nondiff_argnums=(1, 2)).defvjp(_norm_fwd, _norm_bwd)


def norm(x: ArrayLike, axis: Axis = None, keepdims: bool = False) -> Tracer:
    """The 2-norm sqrt(sum(x**2)) over `axis` (all by default); its gradient is x/norm, and 0
    where the norm is 0."""
    x = to_tracer(x, "norm")
    if not x.node.dtype.is_float:
        x = astype(x, dtypes.float64)
    return _safe_norm(x, normalize_axes(axis, x.ndim, "norm"), bool(keepdims))
