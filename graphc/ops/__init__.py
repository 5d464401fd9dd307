"""The op registry: every primitive declared once with all it needs.

An OpDef carries the shape/dtype rule, the numpy reference, the C rendering, and the derivative
rules. Derivative rules are written with graphc ops on Tracers, so their results are graph nodes
that can be optimized, compiled and differentiated again.

    vjp(g, out, *src, arg) -> tuple with one cotangent (or None for zero) per source
    jvp: a tuple with one rule per source, rule(t, out, *src, arg) -> tangent of the output
         (summed over the sources with nonzero tangents, as JAX's defjvp), or one callable
         rule(tangents, out, *src, arg) taking them all (None for zero), or LINEAR
         (the op applied to the tangents), or BILINEAR (sum of the op with one source
         replaced by its tangent); missing -> derived from the VJP by transposition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import dtypes
from ..errors import DTypeError, ShapeError
from ..ir import Node, make_node

ELEMENTWISE, REDUCE, MOVEMENT, CONTRACT, SOURCE, ALIAS = (
    "elementwise", "reduce", "movement", "contract", "source", "alias")
# ALIAS: the value is the first source's; only the derivative rules differ (custom rules)
SCAN, GATHER, SCATTER = "scan", "gather", "scatter"
# SCAN: a running accumulation along one axis (cumsum); GATHER/SCATTER: data-dependent loads
# and accumulating stores along one axis. Each is a kernel of its own (never fused).
COMPOSITE = "composite"   # a composite kept whole (ops/whole.py), neither view nor elementwise
LINEAR, BILINEAR = "linear", "bilinear"

OPS: dict[str, OpDef] = {}


@dataclass(frozen=True, eq=False)
class OpDef:
    name: str
    kind: str
    infer: Callable[[tuple[Node, ...], Any], tuple[tuple[int, ...], dtypes.DType]]
    numpy: Callable | None
    c: Any = None                      # str template, {kind: str}, or a kind-specific object
    vjp: Callable | None = None
    jvp: Any = None
    nondiff: bool = False              # output is piecewise constant (comparisons, sign)
    has_arg: bool = False              # rules and numpy get the static `arg` as keyword
    may_fail: bool = False             # C records a run-time error (see codegen: GC_ERR)
    # The scalar reverse tape (codegen/scalar_tape.py): per source, its cotangent's
    # contribution as a C expression of {g} (the output's cotangent), {y} (the output), {0},
    # {1}.. (the sources) and, for reductions, {count} (elements equal to {y}); None: none.
    # An op has a tape case if it declares this (all None for ops without a derivative).
    tape_vjp: tuple[str | None, ...] | None = None
    # Magnitudes, for the in-range kernels of fused sums (codegen/ranges.py): `bound` is a C
    # expression (double) of the operands' bounds {0}, {1}.. that bounds |result| (None: not
    # bounded by them); `c_in_range` is (template, {"f": float32 bound, "": float64 bound}),
    # the op's kernel without its argument clamps: the same bits wherever |x| <= that bound.
    bound: str | None = None
    c_in_range: tuple[str, dict[str, float]] | None = None
    # A composite kept whole (ops/whole.py): expand(*src tracers, arg) -> its primitives
    expand: Callable | None = None
    test: dict = field(default_factory=dict)   # input domain for the registry-driven tests

    def __call__(self, *srcs, arg=None):
        """Apply the primitive to Tracers (no broadcasting or promotion: see the wrappers)."""
        return _trace.Tracer(bind(self, tuple(s.node for s in srcs), arg))

    def __repr__(self) -> str:
        return f"<op {self.name}>"


def bind(op: OpDef, src: tuple[Node, ...], arg=None) -> Node:
    shape, dtype = op.infer(src, arg)
    if op.kind == ELEMENTWISE and src and _is_splat(src[0]) and all(map(_is_splat, src)):
        return _fold(op, src, arg, shape, dtype)
    return make_node(op, src, shape, dtype, arg)


def _is_splat(n: Node) -> bool:
    return n.op.name == "const" and n.arg.value.size == 1


def _fold(op: OpDef, src, arg, shape, dtype) -> Node:
    """An elementwise op of splatted constants is a splatted constant (numpy computes it in
    the op's own dtype, so NaN/Inf come out as at run time)."""
    import numpy as np

    values = [s.arg.value.reshape(()) for s in src]
    with np.errstate(all="ignore"):
        out = op.numpy(*values, **({"arg": arg} if op.has_arg else {}))
    return _trace.constant(np.asarray(out, dtype=dtype.np), dtype, shape)


def defop(name: str, kind: str, *, infer=None, **fields) -> OpDef:
    if name in OPS:
        raise ValueError(f"op {name} declared twice")
    fields.setdefault("has_arg", kind in (REDUCE, MOVEMENT, SCAN, GATHER, SCATTER))
    op = OpDef(name=name, kind=kind, infer=infer or _DEFAULT_INFER[kind], **fields)
    OPS[name] = op
    return op


# ---- shape/dtype rules shared by many ops ----

def same_as_inputs(src, arg):
    """Elementwise: sources already broadcast and promoted by the wrappers."""
    first = src[0]
    for s in src[1:]:
        if s.shape != first.shape:
            raise ShapeError(f"elementwise op got shapes {first.shape} and {s.shape}")
        if s.dtype is not first.dtype:
            raise DTypeError(f"elementwise op got dtypes {first.dtype} and {s.dtype}")
    return first.shape, first.dtype


def float_only(src, arg):
    shape, dtype = same_as_inputs(src, arg)
    if not dtype.is_float:
        raise DTypeError(f"op needs a float input, got {dtype}")
    return shape, dtype


def numeric(src, arg):
    """Arithmetic numpy refuses on bools (negative, subtract, sign, power): the wrappers turn
    bools into logical ops or casts before these primitives."""
    shape, dtype = same_as_inputs(src, arg)
    if dtype is dtypes.bool_:
        raise DTypeError(f"op needs a numeric input, got {dtype}")
    return shape, dtype


def to_bool(src, arg):
    shape, _ = same_as_inputs(src, arg)
    return shape, dtypes.bool_


def _no_default(src, arg):
    raise NotImplementedError("this kind of op needs its own infer rule")


def like_first(src, arg):
    return src[0].shape, src[0].dtype


_DEFAULT_INFER = {ELEMENTWISE: same_as_inputs, REDUCE: _no_default, MOVEMENT: _no_default,
                  CONTRACT: _no_default, SOURCE: _no_default, ALIAS: like_first,
                  SCAN: _no_default, GATHER: _no_default, SCATTER: _no_default}


# Bound last: trace.py imports this module first, so it can only be loaded once defop exists.
from .. import trace as _trace  # noqa: E402
