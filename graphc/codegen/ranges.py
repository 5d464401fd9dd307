"""Which members of a fused sum may call their math kernel without its argument clamps, and
the test on a block of the loop that allows it.

A kernel such as gc_tanhf clamps its argument (NaN passing) before the arithmetic; where
|x| <= a bound the clamp changes nothing, and the op declares the kernel without it
(`OpDef.c_in_range`: the same bits there). A blocked fused sum takes the largest |x| of each
source over a block (one pass over data then in L1), bounds each member's magnitude from those
(`OpDef.bound`), and runs the block with the unclamped kernels where every bound holds, else
as before. NaN or inf in a block make its bounds NaN or inf: no test passes there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import dtypes
from ..ir import Node

# Each bound step is widened by this factor: >= 1 + 2^-20 covers the float32 rounding of the
# loop's own arithmetic (2^-24 per operation, FMA contraction included), the kernels' few ulps
# and the double rounding of the bound itself; the declared ranges end where the function is
# saturated (tanh is +-1 at 9.1, exp overflows at 88.8), so the slack costs nothing.
WIDEN = "1.000001"
_SUFFIX = {dtypes.float32: "f", dtypes.float64: ""}


@dataclass
class RangePlan:
    """`fast`: ids of the members to call unclamped; `sources`: positions of the loaded sources
    whose block maximum (`m<j>`) the test reads; `test`: the C condition."""
    fast: set[int] = field(default_factory=set)
    sources: list[int] = field(default_factory=list)
    test: str = ""


Bound = tuple[str, frozenset]       # a C expression (double) and the block maxima it reads


def plan_ranges(nodes: list[Node], source_bound) -> RangePlan | None:
    """The plan for a fused group's members (in order), or None if no member can use an
    unclamped kernel. `source_bound(node)` is a source's Bound, or None."""
    plan, bounds, tests, reads = RangePlan(), {}, [], set()
    members = {id(n) for n in nodes}

    def bound(s: Node) -> Bound | None:
        return bounds.get(id(s)) if id(s) in members else source_bound(s)

    for n in nodes:
        if n.op.kind == "reduce" or n.dtype not in _SUFFIX:
            continue
        args = [bound(s) for s in n.src]
        in_range = n.op.c_in_range
        if in_range and args and args[0] is not None and n.src[0].dtype is n.dtype:
            plan.fast.add(id(n))
            tests.append(f"{args[0][0]} <= {in_range[1][_SUFFIX[n.dtype]]}")
            reads |= args[0][1]
        if n.op.bound is not None and None not in args:
            expr = n.op.bound.format(*(a[0] for a in args))
            bounds[id(n)] = (f"(({expr}) * {WIDEN})", frozenset().union(*(a[1] for a in args)))
    if not plan.fast:
        return None
    plan.test = " && ".join(dict.fromkeys(tests))
    plan.sources = sorted(reads)
    return plan
