"""The numpy-like functions users call (on Tracers, arrays and Python scalars)."""

from __future__ import annotations

import sys

from ..trace import bind_operators as _bind_operators
from ..trace import to_tracer
from . import elementwise as _ew
from .composite import (
    argmax,
    argmin,
    clip,
    flip,
    gelu,
    leaky_relu,
    log_softmax,
    logsumexp,
    one_hot,
    pad,
    relu,
    repeat,
    square,
    std,
    tile,
    var,
)
from .creation import arange, eye, full, full_like, linspace, ones, ones_like, zeros, zeros_like
from .einsum import einsum
from .elementwise import (
    abs,  # noqa: A004
    astype,
    check_index,
    divide,
    multiply,
    negative,
    positive,
    power,
    stop_gradient,
    subtract,
)
from .elementwise import add_ as add
from .elementwise import maximum_ as maximum
from .elementwise import minimum_ as minimum
from .elementwise import sign_ as sign
from .elementwise import where_ as where
from .gather import take, take_along_axis
from .linalg import dot, matmul, outer
from .movement import (
    broadcast_to,
    concatenate,
    expand_dims,
    reshape,
    squeeze,
    swapaxes,
    transpose,
)
from .norm import norm
from .reduce import max, mean, min, sum  # noqa: A004
from .scan import cumsum
from .whole import getitem, softmax, stack  # whole in the reverse tape's trace

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
erf = _ew._float_unary(_ew.erf)

less = _ew._compare(_ew.lt)
less_equal = _ew._compare(_ew.le)
greater = _ew._compare(_ew.gt)
greater_equal = _ew._compare(_ew.ge)
equal = _ew._compare(_ew.eq)
not_equal = _ew._compare(_ew.ne)
logical_and = _ew._logical(_ew.land, "logical_and",
                             "numpy.logical_and: a and b, taken as bools.")
logical_or = _ew._logical(_ew.lor, "logical_or",
                             "numpy.logical_or: a or b, taken as bools.")
logical_not = _ew._logical(_ew.lnot, "logical_not",
                             "numpy.logical_not: not x, taken as a bool.")
logical_xor = _ew._logical(_ew.ne, "logical_xor",
                             "numpy.logical_xor: a xor b, taken as bools.")
bitwise_and = _ew._bitwise(_ew.bitand, _ew.land)
bitwise_or = _ew._bitwise(_ew.bitor, _ew.lor)
bitwise_xor = _ew._bitwise(_ew.bitxor, _ew.ne)
invert = _ew._bitwise(_ew.bitnot, _ew.lnot)

# numpy functions that dispatch to graphc when given a Tracer
UFUNCS = {
    "add": add, "subtract": subtract, "multiply": multiply, "divide": divide,
    "true_divide": divide, "negative": negative, "power": power, "exp": exp, "log": log,
    "sqrt": sqrt, "sin": sin, "cos": cos, "tanh": tanh, "log1p": log1p, "expm1": expm1,
    "absolute": abs, "maximum": maximum, "minimum": minimum, "square": square,
    "less": less, "less_equal": less_equal, "greater": greater,
    "greater_equal": greater_equal, "equal": equal, "not_equal": not_equal,
    "logical_and": logical_and, "logical_or": logical_or, "logical_not": logical_not,
    "matmul": matmul, "sign": sign, "logical_xor": logical_xor, "bitwise_and": bitwise_and,
    "bitwise_or": bitwise_or, "bitwise_xor": bitwise_xor, "invert": invert,
    "positive": positive,
}
ARRAY_FUNCTIONS = {
    "shape": lambda x: to_tracer(x).shape, "ndim": lambda x: to_tracer(x).ndim,
    "size": lambda x: to_tracer(x).size, "zeros_like": zeros_like, "ones_like": ones_like,
    "sum": sum, "mean": mean, "max": max, "min": min, "amax": max, "amin": min,
    "reshape": reshape, "transpose": transpose, "where": where, "concatenate": concatenate,
    "stack": stack, "dot": dot, "outer": outer, "clip": clip, "expand_dims": expand_dims,
    "squeeze": squeeze, "broadcast_to": broadcast_to, "swapaxes": swapaxes, "matmul": matmul,
    "full_like": full_like, "var": var, "std": std, "argmax": argmax, "argmin": argmin,
    "flip": flip, "take": take, "take_along_axis": take_along_axis, "tile": tile,
    "repeat": repeat, "pad": pad, "einsum": einsum, "cumsum": cumsum,
    "maximum": maximum, "minimum": minimum,
}

__all__ = [
    "abs", "add", "arange", "argmax", "argmin", "astype", "bitwise_and", "bitwise_or",
    "bitwise_xor", "broadcast_to", "check_index", "clip", "concatenate", "cos", "cumsum", "divide",
    "dot", "einsum", "equal", "erf", "exp", "expand_dims", "expm1", "eye", "flip", "full",
    "full_like", "gelu", "getitem", "greater", "greater_equal", "invert", "leaky_relu", "less",
    "less_equal", "linspace", "log", "log1p", "log_softmax", "logical_and", "logical_not",
    "logical_or", "logical_xor", "logsumexp", "matmul", "max", "maximum", "mean", "min",
    "minimum", "multiply", "negative", "norm", "not_equal", "one_hot", "ones", "ones_like",
    "outer", "pad", "positive", "power", "relu", "repeat", "reshape", "sigmoid", "sign", "sin",
    "softmax", "softplus", "sqrt", "square", "squeeze", "stack", "std", "stop_gradient",
    "subtract", "sum", "swapaxes", "take", "take_along_axis", "tanh", "tile", "transpose",
    "var", "where", "zeros", "zeros_like",
]

_bind_operators(sys.modules[__name__])
