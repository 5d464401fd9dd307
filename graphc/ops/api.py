"""The numpy-like functions users call (on Tracers, arrays and Python scalars)."""

from __future__ import annotations

from ..dtypes import from_numpy
from ..trace import Tracer, constant, to_tracer
from . import elementwise as _ew
from .composite import clip, leaky_relu, log_softmax, logsumexp, one_hot, relu, softmax, square
from .elementwise import (
    abs,  # noqa: A004
    astype,
    check_index,
    divide,
    multiply,
    negative,
    power,
    stop_gradient,
    subtract,
)
from .elementwise import add_ as add
from .elementwise import maximum_ as maximum
from .elementwise import minimum_ as minimum
from .elementwise import sign_ as sign
from .elementwise import where_ as where
from .linalg import dot, matmul, outer
from .movement import (
    broadcast_to,
    concatenate,
    expand_dims,
    getitem,
    reshape,
    squeeze,
    stack,
    swapaxes,
    transpose,
)
from .reduce import max, mean, min, sum  # noqa: A004

exp = _ew._float_unary(_ew.exp)
log = _ew._float_unary(_ew.log)
sqrt = _ew._float_unary(_ew.sqrt)
sin = _ew._float_unary(_ew.sin)
cos = _ew._float_unary(_ew.cos)
tanh = _ew._float_unary(_ew.tanh)
sigmoid = _ew._float_unary(_ew.sigmoid)
softplus = _ew._float_unary(_ew.softplus)
log1p = _ew._float_unary(_ew.log1p)
expm1 = _ew._float_unary(_ew.expm1)

less = _ew._compare(_ew.lt)
less_equal = _ew._compare(_ew.le)
greater = _ew._compare(_ew.gt)
greater_equal = _ew._compare(_ew.ge)
equal = _ew._compare(_ew.eq)
not_equal = _ew._compare(_ew.ne)
logical_and = _ew._logical(_ew.land)
logical_or = _ew._logical(_ew.lor)
logical_not = _ew._logical(_ew.lnot)

# numpy functions that dispatch to graphc when given a Tracer
UFUNCS = {
    "add": add, "subtract": subtract, "multiply": multiply, "divide": divide,
    "true_divide": divide, "negative": negative, "power": power, "exp": exp, "log": log,
    "sqrt": sqrt, "sin": sin, "cos": cos, "tanh": tanh, "log1p": log1p, "expm1": expm1,
    "absolute": abs, "maximum": maximum, "minimum": minimum, "square": square,
    "less": less, "less_equal": less_equal, "greater": greater,
    "greater_equal": greater_equal, "equal": equal, "not_equal": not_equal,
    "logical_and": logical_and, "logical_or": logical_or, "logical_not": logical_not,
    "matmul": matmul, "sign": sign,
}
def _zeros_like(x, dtype=None):
    t = to_tracer(x)
    return Tracer(constant(0, t.node.dtype if dtype is None else from_numpy(dtype), t.shape))


def _ones_like(x, dtype=None):
    t = to_tracer(x)
    return Tracer(constant(1, t.node.dtype if dtype is None else from_numpy(dtype), t.shape))


ARRAY_FUNCTIONS = {
    "shape": lambda x: to_tracer(x).shape, "ndim": lambda x: to_tracer(x).ndim,
    "size": lambda x: to_tracer(x).size, "zeros_like": _zeros_like, "ones_like": _ones_like,
    "sum": sum, "mean": mean, "max": max, "min": min, "amax": max, "amin": min,
    "reshape": reshape, "transpose": transpose, "where": where, "concatenate": concatenate,
    "stack": stack, "dot": dot, "outer": outer, "clip": clip, "expand_dims": expand_dims,
    "squeeze": squeeze, "broadcast_to": broadcast_to, "swapaxes": swapaxes, "matmul": matmul,
}

__all__ = [
    "abs", "add", "astype", "broadcast_to", "check_index", "clip", "concatenate", "cos",
    "divide", "dot",
    "equal", "exp", "expand_dims", "expm1", "getitem", "greater", "greater_equal", "leaky_relu",
    "less", "less_equal", "log", "log1p", "log_softmax", "logical_and", "logical_not",
    "logical_or", "logsumexp", "matmul", "max", "maximum", "mean", "min", "minimum", "multiply",
    "negative", "not_equal", "one_hot", "outer", "power", "relu", "reshape", "sigmoid", "sign",
    "sin", "softmax", "softplus", "sqrt", "square", "squeeze", "stack", "stop_gradient",
    "subtract", "sum", "swapaxes", "tanh", "transpose", "where",
]
