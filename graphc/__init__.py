"""graphc: trace numerical Python functions into static graphs, differentiate them, and run
them as generated C."""

from __future__ import annotations

from . import nn, optim
from ._version import __version__
from .check import check_grads
from .eager import eager as _eager
from .errors import CompileError, DTypeError, GraphcError, ShapeError, TracerError
from .ir import Graph
from .ops import api as _api
from .ops.api import (  # noqa: F401  (re-wrapped below for eager use)
    abs,
    add,
    astype,
    broadcast_to,
    check_index,
    clip,
    concatenate,
    cos,
    divide,
    dot,
    equal,
    exp,
    expand_dims,
    expm1,
    greater,
    greater_equal,
    leaky_relu,
    less,
    less_equal,
    log,
    log1p,
    log_softmax,
    logical_and,
    logical_not,
    logical_or,
    logsumexp,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    multiply,
    negative,
    not_equal,
    one_hot,
    outer,
    power,
    relu,
    reshape,
    sigmoid,
    sign,
    sin,
    softmax,
    softplus,
    sqrt,
    square,
    squeeze,
    stack,
    stop_gradient,
    subtract,
    sum,
    swapaxes,
    tanh,
    transpose,
    where,
)
from .runtime import CompiledFunction, compile, jit
from .trace import Tracer, trace
from .train import train_step
from .transforms import grad, hessian, jacobian, jvp, value_and_grad, vjp

# Each op returns numpy arrays when called on plain arrays outside a trace.
_EAGER_OPS = (
    'abs', 'add', 'astype', 'broadcast_to', 'check_index', 'clip', 'concatenate', 'cos',
    'divide', 'dot',
    'equal', 'exp', 'expand_dims', 'expm1', 'greater', 'greater_equal', 'leaky_relu',
    'less', 'less_equal', 'log', 'log1p', 'log_softmax', 'logical_and', 'logical_not',
    'logical_or', 'logsumexp', 'matmul', 'max', 'maximum', 'mean', 'min', 'minimum',
    'multiply', 'negative', 'not_equal', 'one_hot', 'outer', 'power', 'relu', 'reshape',
    'sigmoid', 'sign', 'sin', 'softmax', 'softplus', 'sqrt', 'square', 'squeeze', 'stack',
    'stop_gradient', 'subtract', 'sum', 'swapaxes', 'tanh', 'transpose', 'where'
)
for _name in _EAGER_OPS:
    globals()[_name] = _eager(getattr(_api, _name))
del _name


__all__ = [
    "__version__", "CompileError", "CompiledFunction", "DTypeError", "Graph", "GraphcError",
    "ShapeError",
    "Tracer", "TracerError", "abs", "add", "astype", "broadcast_to", "check_grads",
    "check_index", "clip",
    "compile", "concatenate", "cos", "divide", "dot", "equal", "exp", "expand_dims", "expm1",
    "grad", "greater", "greater_equal", "hessian", "jacobian", "jit", "jvp", "leaky_relu",
    "less", "less_equal", "log", "log1p", "log_softmax", "logical_and", "logical_not",
    "logical_or", "logsumexp", "matmul", "nn", "optim", "max", "maximum", "mean", "min",
    "minimum",
    "multiply", "negative", "not_equal", "one_hot", "outer", "power", "relu", "reshape",
    "sigmoid", "sign", "sin", "softmax", "softplus", "sqrt", "square", "squeeze", "stack",
    "stop_gradient", "subtract", "sum", "swapaxes", "tanh", "trace", "train_step", "transpose",
    "value_and_grad", "vjp", "where",
]
