"""Algebraic simplification: local rewrites that keep every value bit for bit, NaN, Inf and
the sign of zero included, unless a rule's name says `value_changing`.

Rules are indexed by op name and applied bottom-up to a fixpoint by passes.rewrite. Exact
cases only: `x*1`, `x/1`, `x-0`, `--x`, `x + -0.0` (IEEE's additive identity), casts that
round-trip, movement of movement, `where` with equal branches or a constant condition, the
ones seeds of reverse mode (they become `x*1`), `stop_gradient` (the identity once
differentiated). Two rules are exact in real arithmetic but round differently:

- `sum_broadcast`: summing n copies of v is n*v + 0.0 (one rounding instead of n; n > 0
  only, so inf*0 never appears; the + 0.0 turns -0.0 into the +0.0 a sum gives; exact for
  integers);
- `exp_log`: exp(log x) -> x where x is known >= 0 (exp, sigmoid, softplus, sqrt, abs, y*y
  produce it), so the identity holds over x's whole range, 0, +inf and NaN included (log of a
  negative number, where it fails, cannot occur); it removes two roundings. log(exp x) -> x
  is NOT done: exp overflows to inf for x > 88 (float32) / 709 (float64).

`x + 0.0 -> x` (turns -0.0 into itself instead of +0.0) and `x*0 -> 0` (wrong for NaN, Inf)
change values: they are behind GRAPHC_VALUE_CHANGING_REWRITES=1, off by default.
"""

from __future__ import annotations

import math
import os
from collections import Counter

import numpy as np

from .. import dtypes
from ..ir import Graph, Node
from ..trace import CONST, constant, splat_value
from . import Rule, build, rewrite

NONNEGATIVE = {"exp", "sigmoid", "softplus", "sqrt", "abs"}
WIDENING = {("float32", "float64"), ("int32", "int64"), ("int32", "float64")}


def _is(n: Node, value: float, negative_zero: bool = False) -> bool:
    """n is a splat of `value` (for 0: with the given sign, if floating point)."""
    if n.op is not CONST or n.arg.value.size != 1:
        return False
    v = n.arg.value.item()
    if v != value:
        return False
    return value != 0 or not n.dtype.is_float or (math.copysign(1.0, v) < 0) == negative_zero


# ---- rules: one per function, each with the rewrite it does in its docstring ----

def mul_one(n: Node) -> Node | None:
    """x*1 -> x, 1*x -> x"""
    a, b = n.src
    return a if _is(b, 1) else b if _is(a, 1) else None


def mul_minus_one(n: Node) -> Node | None:
    """x*-1 -> -x (exact: both flip the sign bit)"""
    a, b = n.src
    if n.dtype.is_float:
        return build("neg", a) if _is(b, -1) else build("neg", b) if _is(a, -1) else None
    return None


def div_one(n: Node) -> Node | None:
    """x/1 -> x"""
    return n.src[0] if _is(n.src[1], 1) else None


def add_zero(n: Node) -> Node | None:
    """x + -0.0 -> x (and x + 0 for integers)"""
    a, b = n.src
    return a if _is(b, 0, True) else b if _is(a, 0, True) else None


def sub_zero(n: Node) -> Node | None:
    """x - 0 -> x, -0.0 - x -> -x"""
    a, b = n.src
    if _is(b, 0):
        return a
    return build("neg", b) if _is(a, 0, True) else None


def neg_neg(n: Node) -> Node | None:
    """--x -> x"""
    (a,) = n.src
    return a.src[0] if a.op.name == "neg" else None


def cast_roundtrip(n: Node) -> Node | None:
    """cast(cast(x, wide), x.dtype) -> x when the first cast is exact; cast to own type -> x"""
    (a,) = n.src
    if a.dtype is n.dtype:
        return a
    if a.op.name == "cast" and a.src[0].dtype is n.dtype and (
            (n.dtype.name, a.dtype.name) in WIDENING or n.dtype is dtypes.bool_):
        return a.src[0]
    return None


def broadcast_broadcast(n: Node) -> Node | None:
    """broadcast_to(broadcast_to(x, s1), s2) -> broadcast_to(x, s2)"""
    (a,) = n.src
    if a.op.name == "broadcast_to":
        return build("broadcast_to", a.src[0], arg=n.arg)
    return a if a.shape == n.shape else None


def reshape_reshape(n: Node) -> Node | None:
    """reshape(reshape(x)) -> reshape(x), or x when the shape comes back"""
    (a,) = n.src
    if a.op.name != "reshape":
        return a if a.shape == n.shape else None
    x = a.src[0]
    return x if x.shape == n.shape else build("reshape", x, arg=n.arg)


def transpose_transpose(n: Node) -> Node | None:
    """transpose(transpose(x, p), q) -> transpose(x, p∘q), or x for the identity"""
    (a,) = n.src
    if a.op.name != "transpose":
        return None
    perm = tuple(a.arg[q] for q in n.arg)
    x = a.src[0]
    return x if perm == tuple(range(len(perm))) else build("transpose", x, arg=perm)


def sum_broadcast(n: Node) -> Node | None:
    """sum(broadcast_to(x), axes) -> sum of x over its real axes, times the broadcast count"""
    (a,) = n.src
    if a.op.name != "broadcast_to":
        return None
    x = a.src[0]
    stretched = {i for i, (d, s) in enumerate(zip(x.shape, a.shape)) if d == 1 and s != 1}
    counted = [i for i in n.arg if i in stretched]
    count = int(np.prod([a.shape[i] for i in counted], dtype=np.int64))
    if not counted or count <= 0:
        return None
    real = tuple(i for i in n.arg if i not in stretched)
    r = build("sum", x, arg=real) if real else x
    kept = tuple(d for i, d in enumerate(x.shape) if i not in n.arg)
    r = build("reshape", r, arg=kept) if r.shape != kept else r
    r = build("broadcast_to", r, arg=n.shape) if r.shape != n.shape else r
    r = build("mul", r, constant(count, n.dtype, n.shape))
    # a sum starts from +0.0, so n copies of -0.0 sum to +0.0: adding +0.0 keeps that
    return build("add", r, constant(0, n.dtype, n.shape)) if n.dtype.is_float else r


def exp_log(n: Node) -> Node | None:
    """exp(log x) -> x where x >= 0 by construction (see the module docstring)"""
    (a,) = n.src
    if a.op.name != "log":
        return None
    x = a.src[0]
    square = x.op.name == "mul" and x.src[0] is x.src[1]
    return x if x.op.name in NONNEGATIVE or square else None


def where_same(n: Node) -> Node | None:
    """where(c, x, x) -> x; where(true, a, b) -> a; where(false, a, b) -> b"""
    c, a, b = n.src
    if a is b:
        return a
    v = splat_value(c)
    return None if v is None else (a if v else b)


def stop_gradient_identity(n: Node) -> Node | None:
    """stop_gradient(x) -> x (graphs reach the passes already differentiated)"""
    return n.src[0]


def custom_rule_identity(n: Node) -> Node | None:
    """custom_vjp/custom_jvp(out, *inputs) -> out (their rules matter only to autodiff)"""
    return n.src[0]


def mul_zero_value_changing(n: Node) -> Node | None:
    """x*0 -> 0 (VALUE-CHANGING: NaN*0 and Inf*0 are NaN; -x*0 is -0.0)"""
    a, b = n.src
    return b if _is(b, 0) else a if _is(a, 0) else None


def add_zero_value_changing(n: Node) -> Node | None:
    """x + 0.0 -> x (VALUE-CHANGING: -0.0 + 0.0 is +0.0)"""
    a, b = n.src
    return a if _is(b, 0) else b if _is(a, 0) else None


RULES: dict[str, list[Rule]] = {
    "mul": [mul_one, mul_minus_one],            # x*1 -> x, x*-1 -> -x
    "div": [div_one],                           # x/1 -> x
    "add": [add_zero],                          # x + -0.0 -> x
    "sub": [sub_zero],                          # x-0 -> x, -0.0-x -> -x
    "neg": [neg_neg],                           # --x -> x
    "cast": [cast_roundtrip],                   # f32 -> f64 -> f32 is the identity
    "broadcast_to": [broadcast_broadcast],      # one broadcast instead of two
    "reshape": [reshape_reshape],               # one reshape instead of two
    "transpose": [transpose_transpose],         # composed permutation
    "sum": [sum_broadcast],                     # sum(broadcast v) -> n*v
    "exp": [exp_log],                           # exp(log x) -> x for x >= 0
    "where": [where_same],                      # where(c, x, x) -> x, constant c
    "stop_gradient": [stop_gradient_identity],  # identity after autodiff
    "custom_vjp": [custom_rule_identity],       # identity after autodiff
    "custom_jvp": [custom_rule_identity],       # identity after autodiff
}
VALUE_CHANGING: dict[str, list[Rule]] = {
    "mul": [mul_zero_value_changing],           # x*0 -> 0 (NaN, Inf)
    "add": [add_zero_value_changing],           # x + 0.0 -> x (-0.0)
}


def rules() -> dict[str, list[Rule]]:
    if os.environ.get("GRAPHC_VALUE_CHANGING_REWRITES") != "1":
        return RULES
    return {k: RULES.get(k, []) + VALUE_CHANGING.get(k, []) for k in {*RULES, *VALUE_CHANGING}}


def run(graph: Graph) -> tuple[Graph, Counter]:
    return rewrite(graph, rules(), "simplify")


