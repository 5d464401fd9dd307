"""Elementwise primitives (one declaration each) and their numpy-style wrappers.

The wrappers promote dtypes (numpy rules, weak Python scalars) and insert explicit
broadcast_to nodes, so the primitives only ever see equal shapes and dtypes.
"""

from __future__ import annotations

from functools import reduce

import numpy as np

from .. import dtypes
from ..errors import DTypeError, ShapeError
from ..trace import (
    ArrayLike,
    Tracer,
    constant,
    splat_value,
    to_tracer,
)
from . import BILINEAR, ELEMENTWISE, LINEAR, bind, defop, float_only, same_as_inputs, to_bool
from .movement import broadcast_to

# ---- primitives: numpy semantics, C, derivatives side by side ----
# C templates: {0},{1},.. are operands, {f} is "f" for float32 math functions, {T} the C type.
# Transcendentals call gc_* kernels (csrc/graphc_vmath.h) that gcc vectorizes inside any plain
# loop; sin/cos call libm, vectorized through glibc's libmvec (declared there); sqrt is the
# vectorized IEEE instruction (graphc builds with -fno-math-errno).

neg = defop("neg", ELEMENTWISE, numpy=np.negative, c="(-{0})",
            vjp=lambda g, y, x: (-g,), jvp=LINEAR)
add = defop("add", ELEMENTWISE, numpy=np.add, c="({0} + {1})",
            vjp=lambda g, y, a, b: (g, g), jvp=LINEAR)
sub = defop("sub", ELEMENTWISE, numpy=np.subtract, c="({0} - {1})",
            vjp=lambda g, y, a, b: (g, -g), jvp=LINEAR)
mul = defop("mul", ELEMENTWISE, numpy=np.multiply, c="({0} * {1})",
            vjp=lambda g, y, a, b: (g * b, a * g), jvp=BILINEAR)
div = defop("div", ELEMENTWISE, infer=float_only, numpy=np.divide, c="({0} / {1})",
            vjp=lambda g, y, a, b: (g / b, -g * y / b),
            jvp=(lambda t, y, a, b: t / b, lambda t, y, a, b: -t * y / b),
            test={"domain": [None, "nonzero"]})
exp = defop("exp", ELEMENTWISE, infer=float_only, numpy=np.exp, c="gc_exp{f}({0})",
            vjp=lambda g, y, x: (g * y,), jvp=(lambda t, y, x: t * y,))
log = defop("log", ELEMENTWISE, infer=float_only, numpy=np.log, c="gc_log{f}({0})",
            vjp=lambda g, y, x: (g / x,), jvp=(lambda t, y, x: t / x,),
            test={"domain": ["positive"]})
sqrt = defop("sqrt", ELEMENTWISE, infer=float_only, numpy=np.sqrt, c="sqrt{f}({0})",
             vjp=lambda g, y, x: (g * 0.5 / y,), jvp=(lambda t, y, x: t * 0.5 / y,),
             test={"domain": ["positive"]})
sin = defop("sin", ELEMENTWISE, infer=float_only, numpy=np.sin, c="sin{f}({0})",
            vjp=lambda g, y, x: (g * cos(x),), jvp=(lambda t, y, x: t * cos(x),))
cos = defop("cos", ELEMENTWISE, infer=float_only, numpy=np.cos, c="cos{f}({0})",
            vjp=lambda g, y, x: (-g * sin(x),), jvp=(lambda t, y, x: -t * sin(x),))
tanh = defop("tanh", ELEMENTWISE, infer=float_only, numpy=np.tanh, c="gc_tanh{f}({0})",
             vjp=lambda g, y, x: (g * (1 - y * y),), jvp=(lambda t, y, x: t * (1 - y * y),))
log1p = defop("log1p", ELEMENTWISE, infer=float_only, numpy=np.log1p, c="gc_log1p{f}({0})",
              vjp=lambda g, y, x: (g / (1 + x),), jvp=(lambda t, y, x: t / (1 + x),),
              test={"domain": ["positive"]})
expm1 = defop("expm1", ELEMENTWISE, infer=float_only, numpy=np.expm1, c="gc_expm1{f}({0})",
              vjp=lambda g, y, x: (g * (y + 1),), jvp=(lambda t, y, x: t * (y + 1),))


def _np_sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def _np_softplus(x):
    return np.logaddexp(np.zeros((), x.dtype), x)


# sigmoid and softplus are primitives so that σ' = σ(1-σ) reuses the forward value and
# neither overflows for |x| = 1000 (gc_sigmoid/gc_softplus in csrc/graphc_vmath.h).
sigmoid = defop("sigmoid", ELEMENTWISE, infer=float_only, numpy=_np_sigmoid,
                c="gc_sigmoid{f}({0})",
                vjp=lambda g, y, x: (g * y * (1 - y),), jvp=(lambda t, y, x: t * y * (1 - y),))
softplus = defop("softplus", ELEMENTWISE, infer=float_only, numpy=_np_softplus,
                 c="gc_softplus{f}({0})",
                 vjp=lambda g, y, x: (g * sigmoid(x),), jvp=(lambda t, y, x: t * sigmoid(x),))
sign = defop("sign", ELEMENTWISE, numpy=np.sign, c={"f": "gc_sign{f}({0})",
                                                      "i": "(({0} > 0) - ({0} < 0))"},
             nondiff=True)
abs_ = defop("abs", ELEMENTWISE, numpy=np.abs, c={"f": "fabs{f}({0})",
                                                   "i": "({0} < 0 ? -{0} : {0})"},
             vjp=lambda g, y, x: (g * sign(x),), jvp=(lambda t, y, x: t * sign(x),),
             test={"domain": ["nonzero"]})


def _pow_vjp(g, y, a, b):
    safe_a = where_(a == 0, 1, a)                      # d/db is 0 where a == 0 (as JAX)
    return (g * b * power(a, b - 1), g * y * log(safe_a))


pow_ = defop("pow", ELEMENTWISE, numpy=np.power,
             c={"f": "pow{f}({0}, {1})", "i": "(({T})gc_ipow({0}, {1}))"},
             vjp=_pow_vjp,
             jvp=(lambda t, y, a, b: t * b * power(a, b - 1),
                  lambda t, y, a, b: t * y * log(where_(a == 0, 1, a))),
             test={"domain": ["positive", None]})


def _tie_share(a, b):
    """d max(a,b)/da: 1 where a wins, 1/2 on ties (JAX's convention), 0 where b wins."""
    return where_(a > b, 1.0, where_(a == b, 0.5, 0.0)).astype(a.dtype)


maximum = defop("maximum", ELEMENTWISE, numpy=np.maximum,
                c={"f": "gc_max({0}, {1})", "i": "({0} > {1} ? {0} : {1})"},
                vjp=lambda g, y, a, b: (g * _tie_share(a, b), g * _tie_share(b, a)),
                jvp=(lambda t, y, a, b: t * _tie_share(a, b),
                     lambda t, y, a, b: t * _tie_share(b, a)),
                test={"domain": ["distinct", "distinct"]})
minimum = defop("minimum", ELEMENTWISE, numpy=np.minimum,
                c={"f": "gc_min({0}, {1})", "i": "({0} < {1} ? {0} : {1})"},
                vjp=lambda g, y, a, b: (g * _tie_share(b, a), g * _tie_share(a, b)),
                jvp=(lambda t, y, a, b: t * _tie_share(b, a),
                     lambda t, y, a, b: t * _tie_share(a, b)),
                test={"domain": ["distinct", "distinct"]})


def _cmp(name, np_fn, c_op):
    return defop(name, ELEMENTWISE, infer=to_bool, numpy=np_fn, c=f"({{0}} {c_op} {{1}})",
                 nondiff=True)


lt = _cmp("lt", np.less, "<")
le = _cmp("le", np.less_equal, "<=")
gt = _cmp("gt", np.greater, ">")
ge = _cmp("ge", np.greater_equal, ">=")
eq = _cmp("eq", np.equal, "==")
ne = _cmp("ne", np.not_equal, "!=")


def _bool_only(src, arg):
    shape, dtype = same_as_inputs(src, arg)
    if dtype is not dtypes.bool_:
        raise DTypeError(f"logical op needs bool inputs, got {dtype}")
    return shape, dtype


land = defop("and", ELEMENTWISE, infer=_bool_only, numpy=np.logical_and, c="({0} && {1})",
             nondiff=True)
lor = defop("or", ELEMENTWISE, infer=_bool_only, numpy=np.logical_or, c="({0} || {1})",
            nondiff=True)
lnot = defop("not", ELEMENTWISE, infer=_bool_only, numpy=np.logical_not, c="(!{0})",
             nondiff=True)


def _where_infer(src, arg):
    c, a, b = src
    if c.dtype is not dtypes.bool_:
        raise DTypeError(f"where: the condition must be bool, got {c.dtype}")
    shape, dtype = same_as_inputs((a, b), None)
    if c.shape != shape:
        raise ShapeError(f"where: condition shape {c.shape} vs values {shape}")
    return shape, dtype


select = defop("where", ELEMENTWISE, infer=_where_infer, numpy=np.where,
               c="({0} ? {1} : {2})",
               vjp=lambda g, y, c, a, b: (None, where_(c, g, 0), where_(c, 0, g)),
               jvp=(None, lambda t, y, c, a, b: where_(c, t, 0),
                    lambda t, y, c, a, b: where_(c, 0, t)))


def _cast_infer(src, arg):
    return src[0].shape, dtypes.from_numpy(arg)


cast = defop("cast", ELEMENTWISE, infer=_cast_infer,
             numpy=lambda x, arg: x.astype(arg), c="(({T}){0})",
             vjp=lambda g, y, x, arg: (astype(g, x.dtype) if x.node.dtype.is_float else None,),
             jvp=LINEAR, has_arg=True)

stop_gradient_p = defop("stop_gradient", ELEMENTWISE, numpy=lambda x: x, c="{0}",
                        vjp=lambda g, y, x: (None,), jvp=(lambda t, y, x: None,))


# ---- wrappers: conversion, promotion, broadcasting ----

def broadcast_shapes(opname: str, *shapes) -> tuple[int, ...]:
    ndim = max(len(s) for s in shapes)
    out = []
    for i in range(ndim):
        dims = {s[i - ndim + len(s)] for s in shapes if i - ndim + len(s) >= 0} - {1}
        if len(dims) > 1:
            raise ShapeError(f"{opname}: shapes {' and '.join(map(str, shapes))} "
                             "cannot be broadcast together")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def result_dtype(ts) -> tuple[dtypes.DType, bool]:
    """numpy promotion where Python scalars are weak: they never widen an array's dtype."""
    strong = [t.node.dtype for t in ts if not t.weak]
    weak = [t.node.dtype for t in ts if t.weak]
    if not strong:
        return reduce(dtypes.promote, weak), True
    d = reduce(dtypes.promote, strong)
    for w in weak:
        d = dtypes.weak_result(d, w)
    return d, False


def astype(x: ArrayLike, dtype) -> Tracer:
    """Cast; a weak scalar constant is re-created at the new dtype instead of cast."""
    x = to_tracer(x)
    dt = dtype if isinstance(dtype, dtypes.DType) else dtypes.from_numpy(dtype, "astype")
    if x.node.dtype is dt:
        return x
    value = splat_value(x.node)
    if value is not None:
        if x.weak and dt.kind == "i" and not _fits(int(value), dt):
            raise DTypeError(f"Python integer {int(value)} is out of bounds for {dt}")
        return Tracer(constant(value, dt, x.shape), weak=x.weak)
    return Tracer(bind(cast, (x.node,), dt.name))


def _fits(v: int, dt: dtypes.DType) -> bool:
    info = np.iinfo(dt.np)
    return int(info.min) <= v <= int(info.max)


def prepare(opname: str, *xs, want_float: bool = False):
    """Convert, promote and broadcast operands; returns (tracers, weak result?)."""
    first = xs[0]
    if type(first) is Tracer and all(        # common case (e.g. every derivative rule):
            type(x) is Tracer and x.node.shape == first.node.shape      # nothing to do
            and x.node.dtype is first.node.dtype and x.weak == first.weak for x in xs):
        if first.node.dtype.is_float or not want_float:
            return list(xs), first.weak
    ts = [to_tracer(x, opname) for x in xs]
    dt, weak = result_dtype(ts)
    if want_float and not dt.is_float:
        dt = dtypes.float64
    shape = broadcast_shapes(opname, *(t.shape for t in ts))
    out = []
    for t in ts:
        t = astype(t, dt)
        if t.shape != shape:
            t = Tracer(broadcast_to(t, shape).node, weak=t.weak)
        out.append(t)
    return out, weak


# numpy's arithmetic on two bools: + is `or`, * is `and`; - has no meaning (TypeError there)
_ON_BOOLS = {"add": "or", "mul": "and", "sub": None, "neg": None}


def _elementwise(op, *xs, want_float=False):
    ts, weak = prepare(op.name, *xs, want_float=want_float)
    if op.name in _ON_BOOLS and ts[0].node.dtype is dtypes.bool_:
        logical = _ON_BOOLS[op.name]
        if logical is None:
            raise DTypeError(f"{op.name}: numpy does not support this operator on bool "
                             "arrays (use logical_not / logical_xor, or cast first)")
        op = lor if logical == "or" else land
    return Tracer(bind(op, tuple(t.node for t in ts)), weak=weak)


def negative(x): return _elementwise(neg, x)
def subtract(a, b): return _elementwise(sub, a, b)
def multiply(a, b): return _elementwise(mul, a, b)
def divide(a, b): return _elementwise(div, a, b, want_float=True)
def maximum_(a, b): return _elementwise(maximum, a, b)
def minimum_(a, b): return _elementwise(minimum, a, b)
def abs(x): return _elementwise(abs_, x)  # noqa: A001
def sign_(x): return _elementwise(sign, x)


def add_(a, b): return _elementwise(add, a, b)


def power(a: ArrayLike, b: ArrayLike) -> Tracer:
    a_t = to_tracer(a, "power")
    if type(b) in (int, float) and b in (1, 2) and (a_t.node.dtype.is_float or type(b) is int):
        return multiply(a_t, a_t) if b == 2 else _elementwise(mul, a_t, 1)   # x**2 -> x*x
    if type(b) is int and b < 0 and not a_t.node.dtype.is_float:
        raise DTypeError(f"power: integers to negative integer powers are not allowed "
                         f"(exponent {b}), as in numpy; cast to float first")
    return _elementwise(pow_, a_t, b)


def _float_unary(op):
    def wrapper(x):
        return _elementwise(op, x, want_float=True)
    wrapper.__name__ = op.name
    wrapper.__doc__ = f"Elementwise {op.name} (ints are promoted to float64, as numpy)."
    return wrapper


def _compare(op):
    def wrapper(a, b):
        ts, _ = prepare(op.name, a, b)
        return Tracer(bind(op, (ts[0].node, ts[1].node)))
    wrapper.__name__ = op.name
    return wrapper


def _logical(op):
    def wrapper(*xs):
        return _elementwise(op, *(astype(x, dtypes.bool_) for x in xs))
    wrapper.__name__ = op.name
    return wrapper


def where_(cond: ArrayLike, a: ArrayLike, b: ArrayLike) -> Tracer:
    """Select a where cond else b; cond is a boolean mask (broadcast with a and b)."""
    c = to_tracer(cond, "where")
    if c.node.dtype is not dtypes.bool_:
        c = _compare(ne)(c, 0)
    (a, b), weak = prepare("where", a, b)
    shape = broadcast_shapes("where", c.shape, a.shape)
    c, a, b = (x if x.shape == shape else broadcast_to(x, shape) for x in (c, a, b))
    return Tracer(bind(select, (c.node, a.node, b.node)), weak=weak)


def stop_gradient(x: ArrayLike) -> Tracer:
    """The value of x, through which no derivative flows."""
    x = to_tracer(x)
    return Tracer(bind(stop_gradient_p, (x.node,)), weak=x.weak) if x.node.dtype.is_float else x
