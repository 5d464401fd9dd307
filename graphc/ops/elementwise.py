"""Elementwise primitives (one declaration each) and their numpy-style wrappers.

The wrappers promote dtypes (numpy rules, weak Python scalars) and insert explicit
broadcast_to nodes, so the primitives only ever see equal shapes and dtypes.
"""

from __future__ import annotations

import inspect
import math
from functools import reduce

import numpy as np

from .. import dtypes, mutants
from ..errors import DTypeError, GraphcError, ShapeError
from ..trace import (
    ArrayLike,
    Tracer,
    constant,
    scalar_constant,
    splat_value,
    to_tracer,
)
from . import (
    BILINEAR,
    ELEMENTWISE,
    LINEAR,
    bind,
    defop,
    float_only,
    numeric,
    same_as_inputs,
    to_bool,
)
from .movement import broadcast_to

# ---- primitives: numpy semantics, C, derivatives side by side ----
# C templates: {0},{1},.. are operands, {f} is "f" for float32 math functions, {T} the C type.
# Transcendentals call gc_* kernels (csrc/graphc_vmath.h) that gcc vectorizes inside any plain
# loop; sin/cos call libm, vectorized through glibc's libmvec (declared there); sqrt is the
# vectorized IEEE instruction (graphc builds with -fno-math-errno).

neg = defop("neg", ELEMENTWISE, infer=numeric, numpy=np.negative, c="(-{0})", bound="{0}",
            vjp=lambda g, y, x: (-g,), jvp=LINEAR,
            tape_vjp=("-{g}",))
add = defop("add", ELEMENTWISE, numpy=np.add, c="({0} + {1})",
            bound="{0} + {1}", vjp=lambda g, y, a, b: (g, g), jvp=LINEAR,
            tape_vjp=("{g}", "{g}"))
sub = defop("sub", ELEMENTWISE, infer=numeric, numpy=np.subtract, c="({0} - {1})",
            bound="{0} + {1}",
            vjp=lambda g, y, a, b: (g, g if mutants.active("vjp_sign") else -g), jvp=LINEAR,
            tape_vjp=("{g}", "-{g}"))
mul = defop("mul", ELEMENTWISE, numpy=np.multiply, c="({0} * {1})",
            bound="{0} * {1}", vjp=lambda g, y, a, b: (g * b, a * g), jvp=BILINEAR,
            tape_vjp=("{g} * {1}", "{0} * {g}"))
div = defop("div", ELEMENTWISE, infer=float_only, numpy=np.divide, c="({0} / {1})",
            vjp=lambda g, y, a, b: (g / b, -g * y / b),
            jvp=(lambda t, y, a, b: t / b, lambda t, y, a, b: -t * y / b),
            test={"domain": [None, "nonzero"]},
            tape_vjp=("{g} / {1}", "-{g} * {y} / {1}"))
exp = defop("exp", ELEMENTWISE, infer=float_only, numpy=np.exp, c="gc_exp{f}({0})",
            bound="exp({0})", c_in_range=("gc_exp{f}_in({0})", {"f": 86.0, "": 700.0}),
            vjp=lambda g, y, x: (g * y,), jvp=(lambda t, y, x: t * y,),
            tape_vjp=("{g} * {y}",))
log = defop("log", ELEMENTWISE, infer=float_only, numpy=np.log, c="gc_log{f}({0})",
            vjp=lambda g, y, x: (g / x,), jvp=(lambda t, y, x: t / x,),
            test={"domain": ["positive"]},
            tape_vjp=("{g} / {0}",))
sqrt = defop("sqrt", ELEMENTWISE, infer=float_only, numpy=np.sqrt, c="sqrt{f}({0})",
             vjp=lambda g, y, x: (g * 0.5 / y,), jvp=(lambda t, y, x: t * 0.5 / y,),
             test={"domain": ["positive"]},
             tape_vjp=("{g} * 0.5 / {y}",))
sin = defop("sin", ELEMENTWISE, infer=float_only, numpy=np.sin, c="sin{f}({0})",
            vjp=lambda g, y, x: (g * cos(x),), jvp=(lambda t, y, x: t * cos(x),),
            tape_vjp=("{g} * cos({0})",))
cos = defop("cos", ELEMENTWISE, infer=float_only, numpy=np.cos, c="cos{f}({0})",
            vjp=lambda g, y, x: (-g * sin(x),), jvp=(lambda t, y, x: -t * sin(x),),
            tape_vjp=("-{g} * sin({0})",))
tanh = defop("tanh", ELEMENTWISE, infer=float_only, numpy=np.tanh, c="gc_tanh{f}({0})",
             bound="1.0", c_in_range=("gc_tanh{f}_in({0})", {"f": 9.1, "": 20.0}),
             vjp=lambda g, y, x: (g * (1 - y * y),), jvp=(lambda t, y, x: t * (1 - y * y),),
             tape_vjp=("{g} * (1 - {y} * {y})",))
log1p = defop("log1p", ELEMENTWISE, infer=float_only, numpy=np.log1p, c="gc_log1p{f}({0})",
              vjp=lambda g, y, x: (g / (1 + x),), jvp=(lambda t, y, x: t / (1 + x),),
              test={"domain": ["positive"]},
              tape_vjp=("{g} / (1 + {0})",))
expm1 = defop("expm1", ELEMENTWISE, infer=float_only, numpy=np.expm1, c="gc_expm1{f}({0})",
              vjp=lambda g, y, x: (g * (y + 1),), jvp=(lambda t, y, x: t * (y + 1),),
              tape_vjp=("{g} * ({y} + 1)",))


_erf_scalar = np.frompyfunc(math.erf, 1, 1)


def _np_erf(x):
    """numpy has no erf: math.erf per element, in double precision, rounded to x's dtype."""
    return np.asarray(_erf_scalar(np.asarray(x, np.float64)), np.float64).astype(x.dtype)


erf = defop("erf", ELEMENTWISE, infer=float_only, numpy=_np_erf, c="erf{f}({0})",
            vjp=lambda g, y, x: (g * (2 / math.sqrt(math.pi)) * exp(-x * x),),
            jvp=(lambda t, y, x: t * (2 / math.sqrt(math.pi)) * exp(-x * x),))


def _np_sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def _np_softplus(x):
    return np.logaddexp(np.zeros((), x.dtype), x)


# sigmoid and softplus are primitives so that σ' = σ(1-σ) reuses the forward value and
# neither overflows for |x| = 1000 (gc_sigmoid/gc_softplus in csrc/graphc_vmath.h).
sigmoid = defop("sigmoid", ELEMENTWISE, infer=float_only, numpy=_np_sigmoid,
                c="gc_sigmoid{f}({0})",
                bound="1.0", c_in_range=("gc_sigmoid{f}_in({0})", {"f": 86.0, "": 700.0}),
                vjp=lambda g, y, x: (g * y * (1 - y),), jvp=(lambda t, y, x: t * y * (1 - y),),
                tape_vjp=("{g} * {y} * (1 - {y})",))
softplus = defop("softplus", ELEMENTWISE, infer=float_only, numpy=_np_softplus,
                 c="gc_softplus{f}({0})",
                 vjp=lambda g, y, x: (g * sigmoid(x),), jvp=(lambda t, y, x: t * sigmoid(x),),
                 tape_vjp=("{g} * gc_sigmoid({0})",))
sign = defop("sign", ELEMENTWISE, infer=numeric, numpy=np.sign, c={"f": "gc_sign{f}({0})",
                                                      "i": "(({0} > 0) - ({0} < 0))"},
             nondiff=True)
abs_ = defop("abs", ELEMENTWISE, numpy=np.abs, c={"f": "fabs{f}({0})",
                                                   "i": "({0} < 0 ? -{0} : {0})"}, bound="{0}",
             vjp=lambda g, y, x: (g * sign(x),), jvp=(lambda t, y, x: t * sign(x),),
             test={"domain": ["nonzero"]},
             tape_vjp=("{g} * gc_sign({0})",))


def _pow_da(t, a, b):
    """d(a**b)/da · t = b·a**(b-1)·t, and exactly 0 where b == 0 (as torch): the plain formula
    gives 0·inf = NaN at a == 0. A constant exponent is resolved while tracing, so each
    further derivative of x**n stays exact (n·x**(n-1) through multiplications)."""
    k = splat_value(b.node)
    if k is not None:
        return None if k == 0 else t * (b * power(a, _py_number(k) - 1))
    return where_(b == 0, 0, t * b * power(a, b - 1))


def _pow_db(t, y, a):
    """d(a**b)/db · t = a**b·log(a)·t, 0 where a == 0 (as JAX)."""
    return t * y * log(where_(a == 0, 1, a))


def _py_number(k) -> float | int:
    value = k.item()
    return int(value) if float(value).is_integer() else value


pow_ = defop("pow", ELEMENTWISE, infer=numeric, numpy=np.power,
             c={"f": "pow{f}({0}, {1})", "i": "(({T})gc_ipow({0}, {1}))"},
             vjp=lambda g, y, a, b: (_pow_da(g, a, b), _pow_db(g, y, a)),
             jvp=(lambda t, y, a, b: _pow_da(t, a, b), lambda t, y, a, b: _pow_db(t, y, a)),
             test={"domain": ["positive", None]})


def _tie_share(a, b):
    """d max(a,b)/da: 1 where a wins, 1/2 on ties (JAX's convention), 0 where b wins."""
    return where_(a > b, 1.0, where_(a == b, 0.5, 0.0)).astype(a.dtype)


maximum = defop("maximum", ELEMENTWISE, numpy=np.maximum,
                c={"f": "gc_max({0}, {1})", "i": "({0} > {1} ? {0} : {1})"},
                vjp=lambda g, y, a, b: (g * _tie_share(a, b), g * _tie_share(b, a)),
                jvp=(lambda t, y, a, b: t * _tie_share(a, b),
                     lambda t, y, a, b: t * _tie_share(b, a)),
                test={"domain": ["distinct", "distinct"]},
                tape_vjp=("{g} * gc_tie_share({0}, {1})", "{g} * gc_tie_share({1}, {0})"))
minimum = defop("minimum", ELEMENTWISE, numpy=np.minimum,
                c={"f": "gc_min({0}, {1})", "i": "({0} < {1} ? {0} : {1})"},
                vjp=lambda g, y, a, b: (g * _tie_share(b, a), g * _tie_share(a, b)),
                jvp=(lambda t, y, a, b: t * _tie_share(b, a),
                     lambda t, y, a, b: t * _tie_share(a, b)),
                test={"domain": ["distinct", "distinct"]},
                tape_vjp=("{g} * gc_tie_share({1}, {0})", "{g} * gc_tie_share({0}, {1})"))


def _cmp(name, np_fn, c_op):
    return defop(name, ELEMENTWISE, infer=to_bool, numpy=np_fn, c=f"({{0}} {c_op} {{1}})",
                 nondiff=True, tape_vjp=(None, None))


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
             nondiff=True, tape_vjp=(None, None))
lor = defop("or", ELEMENTWISE, infer=_bool_only, numpy=np.logical_or, c="({0} || {1})",
            nondiff=True, tape_vjp=(None, None))
lnot = defop("not", ELEMENTWISE, infer=_bool_only, numpy=np.logical_not, c="(!{0})",
             nondiff=True, tape_vjp=(None,))


def _int_only(src, arg):
    shape, dtype = same_as_inputs(src, arg)
    if dtype.kind != "i":
        raise DTypeError(f"bitwise op needs integer inputs, got {dtype}")
    return shape, dtype


# Two's-complement bit operations on int32/int64 (bools take the logical ops above).
bitand = defop("bitwise_and", ELEMENTWISE, infer=_int_only, numpy=np.bitwise_and,
               c="({0} & {1})", nondiff=True)
bitor = defop("bitwise_or", ELEMENTWISE, infer=_int_only, numpy=np.bitwise_or,
              c="({0} | {1})", nondiff=True)
bitxor = defop("bitwise_xor", ELEMENTWISE, infer=_int_only, numpy=np.bitwise_xor,
               c="({0} ^ {1})", nondiff=True)
bitnot = defop("invert", ELEMENTWISE, infer=_int_only, numpy=np.invert, c="(({T})~{0})",
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
                    lambda t, y, c, a, b: where_(c, 0, t)),
               tape_vjp=(None, "({0} ? {g} : 0.0)", "({0} ? 0.0 : {g})"))


def _cast_infer(src, arg):
    return src[0].shape, dtypes.from_numpy(arg)


cast = defop("cast", ELEMENTWISE, infer=_cast_infer,
             numpy=lambda x, arg: x.astype(arg), c="(({T}){0})",
             vjp=lambda g, y, x, arg: (astype(g, x.dtype) if x.node.dtype.is_float else None,),
             jvp=LINEAR, has_arg=True,
             tape_vjp=("{g}",))

def index_error(what: str, value: int, pos: int, shape: tuple, n: int,
                lo: int = 0) -> GraphcError:
    """The error of a failed check_index, worded the same by both backends."""
    where = tuple(int(i) for i in np.unravel_index(pos, shape)) if len(shape) > 1 else pos
    return GraphcError(f"{what} {value} at position {where} is outside [{lo}, {n})")


def _check_index_infer(src, arg):
    (x,) = src
    if x.dtype.kind != "i":
        raise DTypeError(f"check_index: indices must be integers, got {x.dtype}")
    return x.shape, x.dtype


def _np_check_index(x, arg):
    n, what, lo = arg
    bad = np.flatnonzero((x < lo) | (x >= n))
    if bad.size:
        raise index_error(what, int(x.reshape(-1)[bad[0]]), int(bad[0]), x.shape, n, lo)
    return np.where(x < 0, x + n, x).astype(x.dtype)


# x if every element lies in [lo, n) (lo is 0, or -n to count negative indices from the
# end, as numpy: those come out wrapped); otherwise the call fails with index_error.
# In C the first bad element's site/position/value go to the error record GC_ERR (the entry
# returns its code) and the element reads as 0, so later kernels never index out of bounds.
check_index_p = defop("check_index", ELEMENTWISE, infer=_check_index_infer,
                      numpy=_np_check_index, has_arg=True, nondiff=True, may_fail=True,
                      c="(({T})gc_check_index({0}, {arg[0]}, {arg[2]}, {pos}, {site}, "
                        "GC_ERR))")

stop_gradient_p = defop("stop_gradient", ELEMENTWISE, numpy=lambda x: x, c="{0}",
                        vjp=lambda g, y, x: (None,), jvp=(lambda t, y, x: None,),
                        tape_vjp=(None,))


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
    if _alike(xs) and (first.node.dtype.is_float or not want_float):
        return list(xs), first.weak
    if len(xs) == 2:
        pair = _with_python_scalar(*xs)
        if pair is not None:
            return pair, False
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


def _alike(xs) -> bool:
    """Every operand a Tracer of the first's shape, dtype and weakness: nothing to convert,
    promote or broadcast (the common case: every derivative rule, W7's every op)."""
    first = xs[0]
    if type(first) is not Tracer:
        return False
    a = first.node
    for x in xs[1:]:
        if type(x) is not Tracer or x.node.shape != a.shape or x.node.dtype is not a.dtype \
                or x.weak != first.weak:
            return False
    return True


_EXACT_INT = 2 ** 53


def _with_python_scalar(a, b) -> list[Tracer] | None:
    """prepare's result for a strongly typed float Tracer and a Python float or int (either
    order), the scalar a memoised splat of the Tracer's dtype and shape (what promotion and
    broadcasting give); None for any other pair."""
    t, k = (a, 0) if type(a) is Tracer else (b, 1)
    s = b if k == 0 else a
    if type(t) is not Tracer or t.weak or not t.node.dtype.is_float or not (
            type(s) is float or (type(s) is int and -_EXACT_INT <= s <= _EXACT_INT)):
        return None
    c = Tracer(scalar_constant(s, t.node.dtype, t.node.shape), weak=True)
    return [t, c] if k == 0 else [c, t]


# numpy's arithmetic on two bools: + is `or`, * is `and`; - has no meaning (TypeError there)
_ON_BOOLS = {"add": "or", "mul": "and", "sub": None, "neg": None}


def _elementwise(op, *xs, want_float=False):
    first = xs[0]
    if _alike(xs) and first.node.dtype.is_float:       # no promotion, no bool operators
        a = first.node
        return Tracer(bind(op, (a, xs[1].node) if len(xs) == 2 else
                           (a,) if len(xs) == 1 else tuple([x.node for x in xs])),
                      weak=first.weak)
    ts, weak = prepare(op.name, *xs, want_float=want_float)
    if op.name in _ON_BOOLS and ts[0].node.dtype is dtypes.bool_:
        logical = _ON_BOOLS[op.name]
        if logical is None:
            raise DTypeError(f"{op.name}: numpy does not support this operator on bool "
                             "arrays (use logical_not / logical_xor, or cast first)")
        op = lor if logical == "or" else land
    return Tracer(bind(op, tuple(t.node for t in ts)), weak=weak)


def _with_signature(wrapper, n_args: int):
    """Show `(x)` or `(a, b)` instead of `(*xs)` in help() and the docs."""
    names = ("x",) if n_args == 1 else ("a", "b")
    wrapper.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
    return wrapper


def _numpy_style(op, doc: str, n_args: int = 2, want_float: bool = False):
    """The user-facing function of an elementwise primitive: numpy promotion and
    broadcasting first."""
    def wrapper(*xs):
        return _elementwise(op, *xs, want_float=want_float)
    wrapper.__doc__ = doc
    return _with_signature(wrapper, n_args)


negative = _numpy_style(neg, "-x, elementwise.", 1)
subtract = _numpy_style(sub, "a - b, elementwise (numpy broadcasting and promotion).")
multiply = _numpy_style(mul, "a * b, elementwise (numpy broadcasting and promotion).")
divide = _numpy_style(div, "a / b, elementwise; integers divide as float64, as in numpy.",
                      want_float=True)
add_ = _numpy_style(add, "a + b, elementwise (numpy broadcasting and promotion).")
maximum_ = _numpy_style(maximum, "Elementwise maximum; NaN wins, and the derivative splits "
                        "1/2-1/2 on ties (as JAX).")
minimum_ = _numpy_style(minimum, "Elementwise minimum; NaN wins, and the derivative splits "
                        "1/2-1/2 on ties (as JAX).")
abs = _numpy_style(abs_, "|x|, elementwise; its derivative at 0 is 0.", 1)  # noqa: A001
sign_ = _numpy_style(sign, "numpy.sign: -1, 0 or 1 (NaN stays NaN); no derivative.", 1)
for _f, _name in ((negative, "negative"), (subtract, "subtract"), (multiply, "multiply"),
                  (divide, "divide"), (add_, "add"), (maximum_, "maximum"),
                  (minimum_, "minimum"), (abs, "abs"), (sign_, "sign")):
    _f.__name__ = _f.__qualname__ = _name


def positive(x: ArrayLike) -> Tracer:
    """+x: the value itself; refused on bools, as numpy does."""
    x = to_tracer(x, "positive")
    if x.node.dtype is dtypes.bool_:
        raise DTypeError("positive: numpy does not support unary + on bool arrays")
    return x


def power(a: ArrayLike, b: ArrayLike) -> Tracer:
    """a ** b; a constant exponent of 0, 1 or 2 becomes 1, a or a*a (exact, and so are their
    derivatives)."""
    a_t = to_tracer(a, "power")
    if a_t.node.dtype is dtypes.bool_ and _is_bool(b):
        raise DTypeError("power: bool ** bool gives int8 in numpy, which graphc does not "
                         "support; cast to an integer or float dtype first")
    if type(b) in (int, float) and b in (0, 1, 2) and (a_t.node.dtype.is_float
                                                       or type(b) is int):
        if b == 0:                                   # numpy: x**0 == 1, NaN and inf included
            (t, _), weak = prepare("power", a_t, b)
            return Tracer(constant(1, t.node.dtype, t.shape), weak=weak)
        return multiply(a_t, a_t) if b == 2 else _elementwise(mul, a_t, 1)
    if type(b) is int and b < 0 and not a_t.node.dtype.is_float:
        raise DTypeError(f"power: integers to negative integer powers are not allowed "
                         f"(exponent {b}), as in numpy; cast to float first")
    return _elementwise(pow_, a_t, b)


def _is_bool(x) -> bool:
    if isinstance(x, Tracer):
        return x.node.dtype is dtypes.bool_
    return isinstance(x, (bool, np.bool_)) or (isinstance(x, np.ndarray) and x.dtype == bool)


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
    expr = op.c.strip("()").format("a", "b")
    wrapper.__doc__ = f"Elementwise comparison {expr} as a bool mask (e.g. for graphc.where)."
    return wrapper


def _logical(op, name: str, doc: str):
    def wrapper(*xs):
        return _elementwise(op, *(astype(x, dtypes.bool_) for x in xs))
    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = doc
    return _with_signature(wrapper, 1 if op is lnot else 2)


def _bitwise(int_op, bool_op):
    """numpy's & | ^ ~: bitwise on integers, logical on bools, refused on floats (as numpy)."""
    def wrapper(*xs):
        ts, weak = prepare(int_op.name, *xs)
        dt = ts[0].node.dtype
        if dt.is_float:
            raise DTypeError(f"{int_op.name}: not defined for {dt} (numpy supports it on "
                             "integers and bools only; compare first to get a bool mask)")
        op = bool_op if dt is dtypes.bool_ else int_op
        return Tracer(bind(op, tuple(t.node for t in ts)), weak=weak)
    wrapper.__name__ = int_op.name
    wrapper.__doc__ = f"numpy.{int_op.name}: bitwise on integers, logical on bools."
    return _with_signature(wrapper, 1 if int_op is bitnot else 2)


def where_(cond: ArrayLike, a: ArrayLike = None, b: ArrayLike = None) -> Tracer:
    """Select a where cond else b; cond is a boolean mask (broadcast with a and b)."""
    if a is None or b is None:
        raise GraphcError("where(cond) with one argument gives the indices where cond holds, "
                          "whose number depends on the data; graphc needs where(cond, a, b)")
    c = to_tracer(cond, "where")
    if c.node.dtype is not dtypes.bool_:
        c = _compare(ne)(c, 0)
    (a, b), weak = prepare("where", a, b)
    shape = broadcast_shapes("where", c.shape, a.shape)
    c, a, b = (x if x.shape == shape else broadcast_to(x, shape) for x in (c, a, b))
    return Tracer(bind(select, (c.node, a.node, b.node)), weak=weak)


def check_index(x: ArrayLike, n: int, what: str = "index", wrap: bool = False) -> Tracer:
    """x, checked at run time to lie in [0, n) (with `wrap`, in [-n, n), negative values
    counting from the end and coming out as x + n): a GraphcError naming `what`, the bad value
    and its position otherwise (labels, and integer indices into an axis of length n)."""
    x = to_tracer(x, "check_index")
    n = int(n)
    return Tracer(bind(check_index_p, (x.node,), (n, str(what), -n if wrap else 0)))


def stop_gradient(x: ArrayLike) -> Tracer:
    """The value of x, through which no derivative flows."""
    x = to_tracer(x)
    return Tracer(bind(stop_gradient_p, (x.node,)), weak=x.weak) if x.node.dtype.is_float else x
