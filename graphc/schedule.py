"""From a Graph to an ordered list of kernels over buffers and strided views.

Movement ops (broadcast_to, transpose, slice, and reshape of contiguous data) become index
arithmetic on views and cost nothing at run time; everything else is a kernel writing a
buffer. Graph outputs are written straight into the caller's arrays where possible, except
outputs aliased to an input (in-place updates): those are computed in the arena and copied
into the input's memory by kernels placed after every other kernel (see `_alias_copies`).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from .dtypes import DType
from .errors import GraphcError
from .ir import Graph, Node

ALIGN = 64
INLINE_CONST_MAX = 256       # larger constant arrays are passed in as hidden inputs


@dataclass(eq=False)
class Buffer:
    kind: str            # "in" | "out" | "hidden" (io slots), "ws" (arena), "const" (static)
    index: int           # io slot, or const table index, or ws buffer number
    dtype: DType
    size: int            # elements
    offset: int = 0      # byte offset in the arena (ws only; set by plan_memory)
    scalar: bool = False  # a 0-d input (the C entry takes it by value)


@dataclass(frozen=True)
class View:
    """Element (i0, i1, ...) of a node lives at buf[offset + sum(ik * strides[k])]."""
    buf: Buffer | None
    offset: int
    strides: tuple[int, ...]
    literal: object = None     # a scalar constant: no buffer at all

    def is_contiguous(self, shape) -> bool:
        return self.literal is None and all(
            s == c for s, c, d in zip(self.strides, contiguous_strides(shape), shape) if d != 1)


def contiguous_strides(shape) -> tuple[int, ...]:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


@dataclass(eq=False)
class Kernel:
    kind: str            # "elementwise" | "copy" | "reduce" | "matmul" | "zero" | "guard"
    node: Node | None
    shape: tuple[int, ...]
    out: View
    srcs: list[View]
    note: str = ""


@dataclass
class Schedule:
    graph: Graph
    kernels: list[Kernel]
    inputs: list[Buffer]
    hidden: list[tuple[Buffer, object]]      # (buffer, numpy array) passed in by the runtime
    outputs: list[Buffer]
    consts: list[tuple[Buffer, object]]      # (buffer, numpy array) emitted as static arrays
    ws_bytes: int
    buffers: int = 0
    stats: dict = field(default_factory=dict)
    aliases: tuple[tuple[int, int], ...] = ()      # (output k, input j): see Graph.aliases


class _Planner:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.views: dict[int, View] = {}
        self.kernels: list[Kernel] = []
        self.n_ws = 0
        self.consts: list = []
        self.hidden: list = []
        n_in = len(graph.inputs)
        self.inputs = [Buffer("in", k, n.dtype, n.size, scalar=n.shape == ())
                       for k, n in enumerate(graph.inputs)]
        for n, b in zip(graph.inputs, self.inputs):
            self.views[id(n)] = View(b, 0, contiguous_strides(n.shape))
        big = [n for n in graph.nodes
               if n.op.name == "const" and n.arg.value.size > INLINE_CONST_MAX]
        for j, n in enumerate(big):
            b = Buffer("hidden", n_in + j, n.dtype, n.size)
            self.hidden.append((b, n.arg.value))
            self.views[id(n)] = View(b, 0, contiguous_strides(n.shape))
        base = n_in + len(big)
        self.outputs = [Buffer("out", base + k, n.dtype, n.size)
                        for k, n in enumerate(graph.outputs)]
        # the first output slot of each computed node receives it directly (not an aliased
        # one: its memory is an input that later kernels may still read)
        aliased = {k for k, _ in graph.aliases}
        self.target: dict[int, Buffer] = {}
        for k, (n, b) in enumerate(zip(graph.outputs, self.outputs)):
            if k not in aliased:
                self.target.setdefault(id(n), b)

    def new_ws(self, node: Node) -> Buffer:
        b = Buffer("ws", self.n_ws, node.dtype, node.size)
        self.n_ws += 1
        return b

    def dest(self, node: Node) -> View:
        buf = self.target.pop(id(node), None) or self.new_ws(node)
        return View(buf, 0, contiguous_strides(node.shape))

    def plan(self) -> Schedule:
        for n in self.graph.nodes:
            if id(n) not in self.views:
                self.views[id(n)] = self.lower(n)
        aliased = {k for k, _ in self.graph.aliases}
        for k, (n, b) in enumerate(zip(self.graph.outputs, self.outputs)):
            v = self.views[id(n)]
            if v.buf is not b and k not in aliased:
                self.kernels.append(Kernel("copy", n, n.shape, View(b, 0, contiguous_strides(
                    n.shape)), [v], note="output"))
        self._alias_copies()
        peak, slots = plan_memory(self.kernels)
        sched = Schedule(self.graph, self.kernels, self.inputs, self.hidden, self.outputs,
                         self.consts, peak, buffers=self.n_ws + len(self.outputs),
                         stats={"ws_buffers": self.n_ws, "arena_slots": slots},
                         aliases=self.graph.aliases)
        check_aliases(sched)
        return sched

    def _alias_copies(self) -> None:
        """Aliased outputs last: values still in caller memory (an input, or a view of one)
        are first copied to the arena, then a guard stops a failed run before any input is
        overwritten, then each value is copied into its input's memory."""
        if not self.graph.aliases:
            return
        values = {}
        for k, _ in self.graph.aliases:
            n = self.graph.outputs[k]
            v = self.views[id(n)]
            if v.buf is not None and v.buf.kind != "ws":
                v = self.materialize(n, v)
            values[k] = v
        if any(n.op.may_fail for n in self.graph.nodes):
            self.kernels.append(Kernel("guard", None, (), View(None, 0, ()), []))
        for k, _ in self.graph.aliases:
            n = self.graph.outputs[k]
            out = View(self.outputs[k], 0, contiguous_strides(n.shape))
            self.kernels.append(Kernel("copy", n, n.shape, out, [values[k]], note="in place"))

    def lower(self, n: Node) -> View:
        name, kind = n.op.name, n.op.kind
        if name == "const":
            return self.const_view(n)
        srcs = [self.views[id(s)] for s in n.src]
        if name == "broadcast_to":
            (v,) = srcs
            strides = tuple(0 if d == 1 and s != 1 else st
                            for d, s, st in zip(n.src[0].shape, n.shape, v.strides))
            return View(v.buf, v.offset, strides, v.literal)
        if name == "transpose":
            (v,) = srcs
            return View(v.buf, v.offset, tuple(v.strides[p] for p in n.arg), v.literal)
        if name == "slice":
            (v,) = srcs
            off = v.offset + sum(start * st for (start, _, _), st in zip(n.arg, v.strides))
            strides = tuple(step * st for (_, step, _), st in zip(n.arg, v.strides))
            return View(v.buf, off, strides, v.literal)
        if name == "reshape":
            (v,) = srcs
            if v.literal is not None:
                return View(None, 0, (0,) * len(n.shape), v.literal)
            if not v.is_contiguous(n.src[0].shape):
                v = self.materialize(n.src[0], v)
            return View(v.buf, v.offset, contiguous_strides(n.shape))
        if name == "stop_gradient" or kind == "alias":
            return srcs[0]
        out = self.dest(n)
        if kind == "elementwise":
            self.kernels.append(Kernel("elementwise", n, n.shape, out, srcs))
        elif kind == "reduce":
            self.kernels.append(Kernel("reduce", n, n.src[0].shape, out, srcs))
        elif kind == "contract":     # gemm reads memory: scalar constants get a buffer
            srcs = [self.materialize(s, v) if v.literal is not None else v
                    for s, v in zip(n.src, srcs)]
            self.kernels.append(Kernel("matmul", n, n.shape, out, srcs))
        elif name == "unslice":
            self.kernels.append(Kernel("zero", n, n.shape, out, []))
            in_shape, window = n.arg
            off = sum(start * st for (start, _, _), st in zip(window, out.strides))
            strides = tuple(step * st for (_, step, _), st in zip(window, out.strides))
            self.kernels.append(Kernel("copy", n, n.src[0].shape,
                                       View(out.buf, off, strides), srcs, note="unslice"))
        elif name == "concatenate":
            start = 0
            for s, v in zip(n.src, srcs):
                region = View(out.buf, start * out.strides[n.arg], out.strides)
                self.kernels.append(Kernel("copy", n, s.shape, region, [v], note="concatenate"))
                start += s.shape[n.arg]
        else:
            raise NotImplementedError(f"no C lowering for op {name}")
        return out

    def materialize(self, node: Node, v: View) -> View:
        out = View(self.new_ws(node), 0, contiguous_strides(node.shape))
        self.kernels.append(Kernel("copy", node, node.shape, out, [v], note="materialize"))
        return out

    def const_view(self, n: Node) -> View:
        value = n.arg.value
        if value.size == 1:            # scalars and splats are literals in the C text
            return View(None, 0, (0,) * len(n.shape), value.reshape(()).item())
        b = Buffer("const", len(self.consts), n.dtype, n.size)
        self.consts.append((b, value))
        return View(b, 0, contiguous_strides(n.shape))


def plan_memory(kernels: list[Kernel]) -> tuple[int, int]:
    """Give each arena buffer an offset, reusing the slot of a buffer whose last use came
    strictly before this one's first write (same aligned size; the most recently freed slot
    first, as it is likeliest still in cache).
    Returns the arena size in bytes and the number of distinct slots."""
    first: dict[Buffer, int] = {}
    last: dict[Buffer, int] = {}
    for k, kern in enumerate(kernels):
        for v in [kern.out, *kern.srcs]:
            if v.buf is not None and v.buf.kind == "ws":
                first.setdefault(v.buf, k)
                last[v.buf] = k
    free: dict[int, list[int]] = {}
    expiring: list[tuple[int, int, int, int]] = []     # (last use, seq, size, offset)
    top = 0
    for seq, b in enumerate(sorted(first, key=first.__getitem__)):
        while expiring and expiring[0][0] < first[b]:
            _, _, size, off = heapq.heappop(expiring)
            free.setdefault(size, []).append(off)
        size = -(-max(b.size * b.dtype.itemsize, 1) // ALIGN) * ALIGN
        if free.get(size):
            b.offset = free[size].pop()
        else:
            b.offset, top = top, top + size
        heapq.heappush(expiring, (last[b], seq, size, b.offset))
    return top, len({b.offset for b in first})


def check_aliases(sched: Schedule) -> None:
    """Verify the in-place plan: once an aliased output's memory is first written, no kernel
    reads it (as that output or as its input) or writes it again, and the value copied in
    comes from the arena or a constant, never from caller memory."""
    for k, j in sched.aliases:
        out, inp = sched.outputs[k], sched.inputs[j]
        writes = [i for i, kern in enumerate(sched.kernels) if kern.out.buf is out]
        if len(writes) != 1:
            raise GraphcError(f"internal: in-place output {k} is written {len(writes)} times")
        w = writes[0]
        src = sched.kernels[w].srcs[0].buf
        if src is not None and src.kind != "ws" and src.kind != "const":
            raise GraphcError(f"internal: in-place output {k} is copied from caller memory")
        for kern in sched.kernels[w + 1:]:
            for v in kern.srcs:
                if v.buf is out or v.buf is inp:
                    raise GraphcError(f"internal: input {j} is read after output {k} "
                                      "overwrote it in place")


def schedule(graph: Graph) -> Schedule:
    return _Planner(graph).plan()


def loop_dims(shape, views: list[View]) -> tuple[list[int], list[list[int]]]:
    """Drop size-1 dims and merge dims that are contiguous in every view (fewer, longer
    loops); returns the loop extents and each view's strides over them."""
    dims = [k for k, d in enumerate(shape) if d != 1]
    extents = [shape[k] for k in dims]
    strides = [[v.strides[k] for k in dims] for v in views]
    k = len(extents) - 1
    while k > 0:
        if all(st[k - 1] == st[k] * extents[k] for st in strides):
            extents[k - 1] *= extents[k]
            del extents[k]
            for st in strides:
                st[k - 1] = st[k]
                del st[k]
        k -= 1
    return extents, strides
