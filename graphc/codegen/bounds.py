"""A proof, before any C is written, that every affine index a kernel computes lies inside
its buffer.

Each access is `buf[offset + sum(i_k * stride_k)]` with `0 <= i_k < extent_k` (static loop
bounds), so its smallest and largest index are `offset + sum((extent_k - 1) * stride_k)` over
the negative and the positive strides respectively: both must lie in `[0, buf.size)`. Views
with offsets (slices, concatenation regions) and negative strides (reversed slices) are
covered by the same sum. A failure is a compiler bug: an internal GraphcError naming the
kernel, never an out-of-bounds read or write at run time. Data-dependent indices (labels,
gathers) are checked at run time instead (the `check_index` op)."""

from __future__ import annotations

from ..errors import GraphcError
from ..schedule import Kernel, View


def index_range(view: View, shape) -> tuple[int, int] | None:
    """(smallest, largest) index a view reads over `shape`; None if it reads nothing."""
    if any(d == 0 for d in shape):
        return None
    lo = hi = view.offset
    for d, s in zip(shape, view.strides, strict=True):
        lo += min(0, (d - 1) * s)
        hi += max(0, (d - 1) * s)
    return lo, hi


def accesses(k: Kernel) -> list[tuple[str, View, tuple]]:
    """Every (role, view, shape it is indexed over) of a kernel."""
    if k.kind in ("elementwise", "copy"):
        return [("store", k.out, k.shape)] + [("load", v, k.shape) for v in k.srcs]
    if k.kind == "reduce":
        return [("load", k.srcs[0], k.shape), ("store", k.out, k.node.shape)]
    if k.kind == "matmul":
        a, b = k.node.src
        return [("load", k.srcs[0], a.shape), ("load", k.srcs[1], b.shape),
                ("store", k.out, k.node.shape)] + [
            ("load", v, k.node.shape) for v in k.srcs[2:]]     # an update's addend and scale
    if k.kind == "fused":
        kept = tuple(d for j, d in enumerate(k.shape) if j not in k.fused.axes)
        return [("load", v, k.shape) for v in k.srcs] + [
            ("store", v, kept if n.op.kind == "reduce" else k.shape) for n, v in k.fused.stores]
    return []          # "zero" clears its whole buffer; "guard" touches none


def check_bounds(kernels: list[Kernel]) -> None:
    """Raise an internal GraphcError if any kernel's affine index can leave its buffer."""
    for i, k in enumerate(kernels):
        for role, v, shape in accesses(k):
            if v.buf is None:
                continue            # a literal: no memory
            if len(v.strides) != len(shape):
                raise GraphcError(f"internal: kernel {i} ({k.kind} {k.node.op.name}) {role}s "
                                  f"a view of rank {len(v.strides)} over shape {shape}")
            span = index_range(v, shape)
            if span is not None and not (0 <= span[0] and span[1] < v.buf.size):
                raise GraphcError(
                    f"internal: kernel {i} ({k.kind} {k.node.op.name} over {list(shape)}) "
                    f"{role}s indices [{span[0]}, {span[1]}] of {v.buf.kind} buffer "
                    f"{v.buf.index} of {v.buf.size} elements (offset {v.offset}, strides "
                    f"{v.strides})")
