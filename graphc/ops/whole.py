"""Composites kept whole: one node where a trace asks for it (the reverse tape's, whose
interpreter runs each as one row or a view), expanded into primitives everywhere else.

W7 traces ~9 nodes per scalar op: softmax of a vector is 13 primitives, `x[i]` a slice and
a reshape, `stack` of scalars a reshape per piece and a concatenate. Kept whole they are one
node each (about 3x fewer nodes to trace and encode). Each is declared here once: shape
rule, numpy reference, derivative (nested transformations inside such a trace apply it) and
its expansion into primitives, which the symbolic path gets instead (`expand`). The public
functions below take the whole form only while `keeping_whole()` and only for the cases the
tape runs; otherwise they are the composites of composite.py and movement.py.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import Node, build_location, keeping_whole, make_node, toposort
from ..trace import CONST, Tracer
from . import COMPOSITE, LINEAR, MOVEMENT, OpDef, composite, movement
from .elementwise import multiply, subtract
from .reduce import sum  # noqa: A004


def _whole(name: str, kind: str, infer, numpy, vjp, expand, jvp=None) -> OpDef:
    """An op kept whole (not in ops.OPS: no backend but the reverse tape runs it)."""
    return OpDef(name=name, kind=kind, infer=infer, numpy=numpy, vjp=vjp, jvp=jvp,
                 has_arg=True, expand=expand)


# ---- x[i] of a vector: element_p, arg i (normalized) ----

def _element_infer(src, i):
    (x,) = src
    if len(x.shape) != 1 or not 0 <= i < x.shape[0]:
        raise ShapeError(f"element: index {i} of shape {x.shape}")
    return (), x.dtype


def _element_vjp(g, y, x, arg):
    g = movement.reshape(g, (1,))
    if x.shape[0] == 1:
        return (g,)
    return (movement.unslice_p(g, arg=(x.shape, ((arg, 1, 1),))),)


element_p = _whole("element", MOVEMENT, _element_infer, numpy=lambda x, arg: np.array(x[arg]),
                   vjp=_element_vjp, expand=lambda x, arg: movement.getitem(x, arg), jvp=LINEAR)


# ---- stack of scalars into a vector: stack_p, arg None ----

def _stack_infer(src, arg):
    first = src[0]
    if any(s.shape != () or s.dtype is not first.dtype for s in src):
        raise ShapeError("stack of scalars: every piece must be 0-d, of one dtype")
    return (len(src),), first.dtype


stack_p = _whole("stack", MOVEMENT, _stack_infer, numpy=lambda *xs, arg: np.stack(xs),
                 vjp=lambda g, y, *xs, arg: tuple(movement.getitem(g, k)
                                                  for k in range(len(xs))),
                 expand=lambda *xs, arg: movement.stack(list(xs)), jvp=LINEAR)


# ---- softmax of a float vector: softmax_p, arg None ----

def _np_softmax(x, arg):
    m = np.max(x)
    e = np.exp(x - (0 if np.isinf(m) else m))
    return e / np.sum(e)


def _softmax_vjp(g, y, x, arg):
    gy = multiply(g, y)
    return (subtract(gy, multiply(y, sum(gy))),)


softmax_p = _whole("softmax", COMPOSITE, lambda src, arg: (src[0].shape, src[0].dtype),
                   numpy=_np_softmax, vjp=_softmax_vjp,
                   expand=lambda x, arg: composite.softmax(x))


# ---- the public functions: whole where a trace keeps them so ----

def getitem(x, idx) -> Tracer:
    """numpy indexing (movement.getitem); x[i] of a traced vector whole."""
    if type(idx) is int and type(x) is Tracer and len(x.node.shape) == 1 and keeping_whole() \
            and -x.node.shape[0] <= idx < x.node.shape[0] and x.node.op is not CONST:
        return Tracer(make_node(element_p, (x.node,), (), x.node.dtype, idx % x.node.shape[0]),
                      weak=x.weak)
    return movement.getitem(x, idx)


def stack(xs, axis: int = 0) -> Tracer:
    """numpy.stack (movement.stack); traced scalars of one dtype and weakness whole."""
    if type(xs) is list and xs and axis in (0, -1) and keeping_whole():
        first = xs[0]
        if type(first) is Tracer and first.node.shape == ():
            dtype, weak = first.node.dtype, first.weak
            if all(type(t) is Tracer and t.node.shape == () and t.node.dtype is dtype
                   and t.weak == weak for t in xs):
                return Tracer(make_node(stack_p, tuple(t.node for t in xs), (len(xs),),
                                        dtype), weak=weak)
    return movement.stack(xs, axis)


def softmax(x, axis: int = -1) -> Tracer:
    """composite.softmax; of a traced float vector whole."""
    if type(x) is Tracer and axis in (0, -1) and len(x.node.shape) == 1 and x.node.shape[0] \
            and x.node.dtype.is_float and keeping_whole():
        return Tracer(make_node(softmax_p, (x.node,), x.node.shape, x.node.dtype), weak=x.weak)
    return composite.softmax(x, axis)


softmax.__doc__ = composite.softmax.__doc__
stack.__doc__ = movement.stack.__doc__
getitem.__doc__ = movement.getitem.__doc__


# primitives an expansion builds, for size thresholds set in primitives (the reverse tape's)
_PRIMITIVES = {element_p: lambda n: 2, stack_p: lambda n: len(n.src) + 1,
               softmax_p: lambda n: 13}


def primitive_count(nodes) -> int:
    """How many nodes these would be with every whole op expanded into primitives."""
    extra = 0
    for n in nodes:
        count = _PRIMITIVES.get(n.op)
        if count is not None:
            extra += count(n) - 1
    return len(nodes) + extra


def expand(outputs, mapping: dict[int, Node]) -> list[Node]:
    """`outputs` rebuilt with nodes replaced per `mapping` (keyed by id of the old node) and
    every whole op expanded into primitives, each expansion attributed to its node's line."""
    new = dict(mapping)
    for n in toposort(outputs):
        if id(n) in new or not n.src:
            continue
        src = tuple(new.get(id(s), s) for s in n.src)
        if n.op.expand is not None:
            previous = build_location(n.where)
            try:
                new[id(n)] = n.op.expand(*(Tracer(s) for s in src), arg=n.arg).node
            finally:
                build_location(previous)
        elif any(a is not b for a, b in zip(src, n.src)):
            new[id(n)] = make_node(n.op, src, n.shape, n.dtype, n.arg, n.where)
    return [new.get(id(o), o) for o in outputs]
