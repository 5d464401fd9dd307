"""Constant folding: a node whose sources are all constants becomes a constant.

Values are computed by the op's own numpy semantics in the op's dtype (the reference
backend's), so NaN and Inf come out as at run time. Elementwise ops of splats are already
folded when traced (ops.bind); this pass folds the rest (movement ops, reductions, small
constant arrays) when the result has at most FOLD_MAX elements. A result whose elements are
all equal is stored as a splat (no buffer, a literal in the C text).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..ir import Graph, Node
from ..trace import CONST, constant
from . import rewrite

FOLD_MAX = 1 << 16          # elements of a folded result
READ_MAX = 1 << 22          # elements a fold may read (splats are broadcast views)


def _value(n: Node) -> np.ndarray:
    v = n.arg.value
    return np.broadcast_to(v.reshape(()), n.shape) if v.size == 1 else v


def fold_constant(n: Node) -> Node | None:
    """op(constants) -> constant"""
    for s in n.src:
        if s.op is not CONST:
            return None
    if n.op.numpy is None:
        return None
    if n.size > FOLD_MAX or sum(s.size for s in n.src) > READ_MAX:
        return None
    with np.errstate(all="ignore"):
        out = n.op.numpy(*map(_value, n.src), **({"arg": n.arg} if n.op.has_arg else {}))
    out = np.asarray(out, dtype=n.dtype.np).reshape(n.shape)
    flat = np.ascontiguousarray(out).reshape(-1)
    if flat.size and (flat.view(np.uint8).reshape(flat.size, -1) ==
                      flat[:1].view(np.uint8)).all():
        return constant(flat[0], n.dtype, n.shape)        # every element equal: a splat
    return constant(out, n.dtype)


def rules() -> dict[str, list]:
    from ..ops import OPS, SOURCE
    return {name: [fold_constant] for name, op in OPS.items() if op.kind != SOURCE}


def run(graph: Graph) -> tuple[Graph, Counter]:
    return rewrite(graph, rules(), "fold")
