"""From a Graph to an ordered list of kernels over buffers and strided views.

Movement ops (broadcast_to, transpose, slice, and reshape of contiguous data) become index
arithmetic on views and cost nothing at run time; everything else is a kernel writing a
buffer. Graph outputs are written straight into the caller's arrays where possible. An output
aliased to an input (an in-place update) is written straight into the input's memory, by its
own kernel or by the update gemm that computes it, when no later kernel reads that input
(`plan_in_place`, which also places the one guard that stops a failed run before an input is
written); otherwise it is computed in the arena and copied into the input's memory by kernels
placed after every other kernel (`_Planner.copy_back`).
"""

from __future__ import annotations

import bisect
import heapq
import os
import textwrap
from collections import Counter
from dataclasses import dataclass, field

from . import mutants, sanitize
from .dtypes import DType
from .errors import GraphcError
from .ir import Graph, Node, where_text
from .passes.fuse import Group, update_epilogues
from .passes.fuse import fuse as fuse_groups

ALIGN = 64
INLINE_CONST_MAX = 256       # larger constant arrays are passed in as hidden inputs
UPDATE_IN_PLACE_MAX_K = 256  # GRAPHC_GEMM_UPDATE_IN_PLACE_MAX_K of csrc/graphc_gemm.h
VIEW_OPS = ("broadcast_to", "transpose", "slice", "reshape", "stop_gradient")  # no kernel


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
class Fused:
    """What a fused kernel computes: its nodes in order, in one loop nest over the kernel's
    shape reducing `axes`; `loads` maps each outside source to its index in Kernel.srcs;
    `stores` are the members written to memory (the rest live in registers)."""
    nodes: list[Node]
    axes: tuple[int, ...]
    loads: dict[int, int]
    stores: list[tuple[Node, View]]


@dataclass(eq=False)
class Kernel:
    kind: str            # "elementwise" | "copy" | "reduce" | "matmul" | "zero" | "fused"
                         # | "scan" | "gather" | "scatter" | "guard"
    node: Node | None
    shape: tuple[int, ...]
    out: View
    srcs: list[View]
    note: str = ""
    fused: Fused | None = None
    inplace: bool = False      # writes over an input buffer that dies here (plan_memory)
    epilogue: str = ""         # matmul: "add" / "sub": out = srcs[2] ± srcs[3] * (A @ B)

    def outs(self) -> list[View]:
        return [v for _, v in self.fused.stores] if self.fused else [self.out]


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
    inplace: dict = field(default_factory=dict)    # donor buffer -> buffer written over it


@dataclass(frozen=True)
class InPlaceWrite:
    """Aliased output k computed straight into input j's memory (no copy from the arena) by
    the kernel of unit `at` of the unit order: the output's own unit, or with `gemm` the
    update gemm at its matmul's place (`_Planner.lower_update`)."""
    k: int
    j: int
    at: int
    gemm: bool = False


@dataclass
class InPlacePlan:
    """Which aliased outputs are written in place and by which writer (`plan_in_place`), and
    where the one guard goes: before unit `guard` of the unit order (len(order): before the
    copies into place at the end); None when no check may fail or nothing is aliased."""
    writes: list[InPlaceWrite]
    guard: int | None

    def written(self, gemm: bool) -> dict[int, int]:
        """Output k -> input j of the writes by an update gemm (`gemm`) or by the others."""
        return {w.k: w.j for w in self.writes if w.gemm == gemm}


def guard_kernel() -> Kernel:
    """A kernel that stops the run if a check has failed (codegen: before inputs are written)."""
    return Kernel("guard", None, (), View(None, 0, ()), [])


class _Planner:
    def __init__(self, graph: Graph, groups: list[Group], direct: bool = True):
        self.graph = graph
        self.direct_ok = direct
        self.groups = [g for g in groups if len(g.nodes) > 1]
        self.views: dict[int, View] = {}
        self.kernels: list[Kernel] = []
        self.updates = update_epilogues(graph, self.groups)    # by matmul (lower_update)
        self.direct: dict[int, Buffer] = {}      # node -> input its own kernel writes
        self.by_gemm: dict[int, Buffer] = {}     # update group's top -> input its gemm writes
        self.in_gemm: set[int] = set()      # groups the gemm computed as its epilogue
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
        buf = self.target.pop(id(node), None) or self.direct.get(id(node)) or self.new_ws(node)
        return View(buf, 0, contiguous_strides(node.shape))

    def plan(self) -> Schedule:
        groups = self.groups
        self.outside = used_outside(self.graph, groups) if groups else set()
        order = unit_order(self.graph, groups)
        plan = plan_in_place(self.graph, order, self.updates, kernels=self.direct_ok,
                             gemm=os.environ.get("GRAPHC_UPDATE_IN_PLACE", "1") != "0")
        out = self.graph.outputs
        self.direct = {id(out[k]): self.inputs[j] for k, j in plan.written(False).items()}
        self.by_gemm = {id(out[k]): self.inputs[j] for k, j in plan.written(True).items()}
        for u, unit in enumerate(order):
            if u == plan.guard:     # a failed check stops the run before an input is written
                self.kernels.append(guard_kernel())
            if isinstance(unit, Group):
                if id(unit) not in self.in_gemm:
                    self.lower_group(unit)
            elif id(unit) not in self.views:
                self.views[id(unit)] = self.lower(unit)
        aliased = {k for k, _ in self.graph.aliases}
        for k, (n, b) in enumerate(zip(self.graph.outputs, self.outputs)):
            v = self.views[id(n)]
            if v.buf is not b and k not in aliased:
                self.kernels.append(Kernel("copy", n, n.shape, View(b, 0, contiguous_strides(
                    n.shape)), [v], note="output"))
        self.copy_back(guard=plan.guard == len(order))
        peak, slots, handed = plan_memory(self.kernels)
        sched = Schedule(self.graph, self.kernels, self.inputs, self.hidden, self.outputs,
                         self.consts, peak, buffers=self.n_ws + len(self.outputs),
                         stats={"ws_buffers": self.n_ws, "arena_slots": slots,
                                "inplace": len(handed), "fused_kernels": len(groups),
                                "fused_nodes": sum(len(g.nodes) for g in groups)},
                         aliases=self.graph.aliases, inplace=handed)
        check_aliases(sched)
        return sched

    def copy_back(self, guard: bool) -> None:
        """Aliased outputs not written in place, after every other kernel: values still in
        caller memory (an input, or a view of one) are first copied to the arena, then (with
        `guard`) a failed run stops, then each value is copied into its input's memory."""
        values = {}
        for k, j in self.graph.aliases:
            n = self.graph.outputs[k]
            v = self.views[id(n)]
            if v.buf is self.inputs[j] and (id(n) in self.direct or id(n) in self.by_gemm):
                continue                         # computed straight into the input's memory
            if v.buf is not None and v.buf.kind != "ws":
                v = self.materialize(n, v)
            values[k] = v
        if guard:
            self.kernels.append(guard_kernel())
        for k, v in values.items():
            n = self.graph.outputs[k]
            out = View(self.outputs[k], 0, contiguous_strides(n.shape))
            self.kernels.append(Kernel("copy", n, n.shape, out, [v], note="in place"))

    def lower_group(self, g: Group) -> None:
        """One fused kernel: outside sources are loaded through their views, members used
        outside the group (or returned) are stored, the rest stay in registers."""
        srcs, loads = [], {}
        for k, e in enumerate(g.ext.values()):
            loads[id(e)] = k
            srcs.append(self.views[id(e)])
        stores = []
        for n in g.nodes:
            if id(n) in self.outside:
                self.views[id(n)] = self.dest(n)
                stores.append((n, self.views[id(n)]))
        self.kernels.append(Kernel("fused", g.nodes[-1], g.shape, stores[0][1], srcs,
                                   note=f"{len(g.nodes)} nodes",
                                   fused=Fused(g.nodes, g.axes, loads, stores)))

    def lower(self, n: Node) -> View:
        name, kind = n.op.name, n.op.kind
        if name == "const":
            return self.const_view(n)
        srcs = [self.views[id(s)] for s in n.src]
        if name == "broadcast_to":
            (v,) = srcs
            strides = tuple(0 if d == 1 and s != 1 else st
                            for d, s, st in zip(n.src[0].shape, n.shape, v.strides))
            if mutants.active("broadcast_stride"):
                strides = mutants.drop_kept_stride(strides, n.src[0].shape, n.shape)
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
        if kind == "contract" and id(n) in self.updates:
            out = self.lower_update(n, srcs)
            if out is not None:
                return out
        out = self.dest(n)
        if kind == "elementwise":
            self.kernels.append(Kernel("elementwise", n, n.shape, out, srcs))
        elif kind == "reduce":
            self.kernels.append(Kernel("reduce", n, n.src[0].shape, out, srcs))
        elif kind in ("scan", "gather", "scatter"):     # kernels of their own (codegen/c.py)
            self.kernels.append(Kernel(kind, n, n.shape, out, srcs))
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

    def lower_update(self, n: Node, srcs: list[View]) -> View | None:
        """The matmul n and the update group that reads it (fuse.update_epilogues) as one
        gemm with an epilogue, when the group's addend and scale are already computed (the
        group's work moves to the matmul's place), the addend is in memory with unit stride
        along columns and the scale is one value. The gemm writes the group's value straight
        into an input's memory where `plan_in_place` chose it and its addend is that input,
        whole (graphc_gemm_update then reads each element of D before it stores it in C).
        Returns the group's value, or None."""
        upd = self.updates[id(n)]
        addend = self.views.get(id(upd.addend))
        scale = self._scalar_view(upd.scale)
        if (addend is None or scale is None or any(scale.strides) or addend.buf is None
                or (n.shape[1] > 1 and addend.strides[1] != 1)
                or any(v.literal is not None for v in srcs)):
            return None
        top = upd.group.nodes[-1]
        inp = self.by_gemm.get(id(top))
        if (inp is not None and addend.buf is inp and not addend.offset
                and addend.is_contiguous(top.shape)):
            out = View(inp, 0, contiguous_strides(top.shape))
        else:
            out = self.dest(top)
        self.kernels.append(Kernel("matmul", n, n.shape, out, [*srcs, addend, scale],
                                   note=f"{top.op.name} update",
                                   epilogue=top.op.name))
        self.views[id(top)] = out
        self.in_gemm.add(id(upd.group))
        return out

    def _scalar_view(self, node: Node) -> View | None:
        """The view of a one-value node already computed, or of one that costs no kernel (a
        splat constant, a broadcast of a computed scalar) made now; else None."""
        v = self.views.get(id(node))
        if v is None and node.op.name == "const" and node.arg.value.size == 1:
            v = self.const_view(node)
        if v is None and node.op.name == "broadcast_to":
            one = self._scalar_view(node.src[0])
            v = None if one is None else View(one.buf, one.offset, (0,) * len(node.shape),
                                              one.literal)
        return v

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


def plan_in_place(graph: Graph, order: list, updates: dict, kernels: bool = True,
                  gemm: bool = True) -> InPlacePlan:
    """The aliased outputs (k, j) computed straight into input j's memory in a run of the units
    in `order` (no copy from the arena afterwards), by which writer, and where the guard goes.

    Output k's node n must be computed by a kernel (not a view of memory), read by no other
    unit (in its own fused nest a value passes in a register) and returned once, its writer
    must come after every run-time check (the guard before the first writer stops a failed
    run with every input intact), and input j must not be 0-d (passed by value). The writer:
    - when n is the value of an update group (`updates`, fuse.update_epilogues) and `gemm`:
      the update gemm, at its matmul's unit, with K <= UPDATE_IN_PLACE_MAX_K (one pass:
      csrc/graphc_gemm.h) and every read of input j before it, except the group's own (the
      addend, which lower_update checks is input j whole); else nothing (copied back);
    - else, with `kernels`, n's own unit's kernel, when every read of input j (through any
      view) comes before n's unit, or is in it: an elementwise n reading input j itself,
      each element read before it is written in the same iteration (`_reads_in_step`).
    An output that is (a view of) input j reads it after every kernel."""
    if not graph.aliases:
        return InPlacePlan([], None)
    base = {id(x): j for j, x in enumerate(graph.inputs) if x.shape != ()}
    readers: dict[int, set[int]] = {}
    unit_at: dict[int, int] = {}
    reads: dict[int, list[int]] = {}         # input j -> the units reading it, in order
    fails = -1                                  # the last unit with a run-time check

    def read(j: int, u: int) -> None:
        units = reads.setdefault(j, [-1])
        if units[-1] != u:
            units.append(u)

    for u, unit in enumerate(order):
        members = unit.nodes if isinstance(unit, Group) else [unit]
        for n in members:
            unit_at[id(n)] = u
            if n.op.may_fail:
                fails = u
            for s in n.src:
                readers.setdefault(id(s), set()).add(u)
                if id(s) in base:
                    read(base[id(s)], u)
            if (n.op.name in VIEW_OPS or n.op.kind == "alias") and id(n.src[0]) in base:
                base[id(n)] = base[id(n.src[0])]
    for n in graph.outputs:                     # copied out after every kernel
        if id(n) in base:
            read(base[id(n)], len(order))
    returned = Counter(id(n) for n in graph.outputs)
    update_of = {id(upd.group.nodes[-1]): upd for upd in updates.values()}
    writes = []
    for k, j in graph.aliases:
        n = graph.outputs[k]
        u = unit_at.get(id(n))
        if (u is None or readers.get(id(n), {u}) != {u} or returned[id(n)] > 1 or id(n) in base
                or n.op.name in VIEW_OPS or n.op.kind in ("alias", "source")):
            continue
        units = reads.get(j, [-1])
        upd = update_of.get(id(n))
        if upd is not None:
            at = unit_at[id(upd.product)]
            before = max(r for r in units[-2:] if r != u)      # reads outside the group
            if (gemm and fails < at and before < at
                    and upd.product.src[0].shape[-1] <= UPDATE_IN_PLACE_MAX_K):
                writes.append(InPlaceWrite(k, j, at, gemm=True))
        elif kernels and fails < u and (units[-1] < u or units[-1] == u and _reads_in_step(
                order[u], n, graph.inputs[j], base, j)):
            writes.append(InPlaceWrite(k, j, u))
    guard = min((w.at for w in writes), default=len(order)) if fails >= 0 else None
    return InPlacePlan(writes, guard)


def _reads_in_step(unit, n: Node, x: Node, base: dict, j: int) -> bool:
    """Whether unit's every read of input j (node x, or a view of it) is x itself, read by
    elementwise nodes of n's shape in n's unit, n elementwise too: each element of x is then
    loaded before the element of n at the same position is stored."""
    members = unit.nodes if isinstance(unit, Group) else [unit]
    if n.op.kind != "elementwise" or (isinstance(unit, Group) and unit.shape != n.shape):
        return False
    return all(s is x and m.op.kind == "elementwise" and m.shape == n.shape
               for m in members for s in m.src if base.get(id(s)) == j)


def used_outside(graph: Graph, groups: list[Group]) -> set[int]:
    """Nodes whose values leave their kernel: graph outputs and sources of another unit."""
    unit = {id(n): id(g) for g in groups for n in g.nodes}
    used = {id(n) for n in graph.outputs}
    for n in graph.nodes:
        for s in n.src:
            if unit.get(id(s), id(s)) != unit.get(id(n), id(n)):
                used.add(id(s))
    return used


def unit_order(graph: Graph, groups: list[Group]) -> list:
    """Fused groups and the remaining nodes in an executable order (Kahn's algorithm on the
    group graph, which fusion keeps acyclic; ties go to the earliest node in the graph's own
    topological order, so unfused graphs keep it exactly)."""
    order = graph.nodes
    if not groups:
        return order
    pos = {id(n): i for i, n in enumerate(order)}
    unit_of: dict[int, object] = {id(n): g for g in groups for n in g.nodes}
    units = list(groups) + [n for n in order if id(n) not in unit_of]
    for n in order:
        unit_of.setdefault(id(n), n)
    deps: dict[int, int] = {}
    users: dict[int, list] = {}
    for u in units:
        srcs = u.ext.values() if isinstance(u, Group) else u.src
        ids = {id(unit_of[id(s)]) for s in srcs} - {id(u)}
        deps[id(u)] = len(ids)
        for d in ids:
            users.setdefault(d, []).append(u)
    first = {id(u): (u.lo if isinstance(u, Group) else pos[id(u)]) for u in units}
    ready = [(first[id(u)], k, u) for k, u in enumerate(units) if deps[id(u)] == 0]
    heapq.heapify(ready)
    out = []
    tie = len(units)
    while ready:
        _, _, u = heapq.heappop(ready)
        out.append(u)
        for v in users.get(id(u), ()):
            deps[id(v)] -= 1
            if deps[id(v)] == 0:
                tie += 1
                heapq.heappush(ready, (first[id(v)], tie, v))
    if len(out) != len(units):
        raise AssertionError("internal: fused groups form a cycle")
    return out


def _lifetimes(kernels: list[Kernel]) -> tuple[dict[Buffer, int], dict[Buffer, int]]:
    first: dict[Buffer, int] = {}
    last: dict[Buffer, int] = {}
    for k, kern in enumerate(kernels):
        for v in [*kern.outs(), *kern.srcs]:
            if v.buf is not None and v.buf.kind == "ws":
                first.setdefault(v.buf, k)
                last[v.buf] = k
    return first, last


def _aligned(b: Buffer) -> int:
    return -(-max(b.size * b.dtype.itemsize, 1) // ALIGN) * ALIGN


INPLACE_KINDS = ("elementwise", "fused")
INPLACE_MIN_BYTES = 1024     # smaller buffers gain nothing over reusing a freed slot


def inplace_donors(kern: Kernel, b: Buffer, dying) -> list[Buffer]:
    """Input buffers kernel `kern` may overwrite with its output `b`: each dies here
    (`dying(buffer)`), b is written element by element over the kernel's whole iteration
    space (an elementwise store), and every read of the donor in this kernel is of the same
    element at the same position (identical view), so each element is read before it is
    overwritten; same dtype and size."""
    if kern.kind not in INPLACE_KINDS:
        return []
    cands = [v.buf for v in kern.srcs if v.buf is not None and v.buf.kind == "ws"
             and v.buf.dtype is b.dtype and v.buf.size == b.size and dying(v.buf)]
    if not cands:
        return []
    if kern.kind == "elementwise":
        out = kern.out if kern.out.buf is b else None
    else:
        out = next((v for n, v in kern.fused.stores if v.buf is b and n.shape == kern.shape
                    and n.op.kind == "elementwise"), None)
    if out is None or out.offset or (kern.shape and not out.is_contiguous(kern.shape)):
        return []
    donors = []
    for d in cands:
        if d not in donors and all(w.offset == out.offset and w.strides == out.strides
                                   for w in kern.srcs if w.buf is d):
            donors.append(d)
    return donors


def plan_memory(kernels: list[Kernel]) -> tuple[int, int, dict]:
    """Give each arena buffer an offset: an elementwise kernel's output (of INPLACE_MIN_BYTES
    or more) takes over the slot of an input that dies in that kernel (in place, see
    inplace_donors); otherwise the slot of a
    buffer whose last use came strictly before this one's first write (same aligned size; the
    most recently freed slot first, as it is likeliest still in cache).
    Returns the arena size in bytes, the number of distinct slots, and the in-place pairs
    (donor -> the buffer written over it)."""
    first, last = _lifetimes(kernels)
    if sanitize.enabled():
        return _own_allocations(list(first))
    free: dict[int, list[int]] = {}
    expiring: list[tuple[int, int, int, int]] = []     # (last use, seq, size, offset)
    handed: dict[Buffer, Buffer] = {}                 # donor -> the buffer now in its slot
    seq_of: dict[Buffer, int] = {}
    void: set[int] = set()         # expiries cancelled: the slot lives on in place
    top = 0
    early = 1 if mutants.active("arena_reuse") else 0
    for seq, b in enumerate(sorted(first, key=first.__getitem__)):
        while expiring and expiring[0][0] < first[b] + early:
            _, s, size, off = heapq.heappop(expiring)
            if s not in void:
                free.setdefault(size, []).append(off)
        size = _aligned(b)
        k = first[b]
        kern = kernels[k]
        donor = None
        if size >= INPLACE_MIN_BYTES and kern.kind in INPLACE_KINDS and any(
                v.buf is not None and v.buf.kind == "ws" and last[v.buf] == k
                for v in kern.srcs):
            donor = next(iter(inplace_donors(kern, b, lambda d, k=k: (
                last[d] == k and d not in handed and d in seq_of))), None)
        if donor is not None:
            b.offset = donor.offset
            handed[donor] = b
            kern.inplace = True
            void.add(seq_of[donor])
        elif free.get(size):
            b.offset = free[size].pop()
        else:
            b.offset, top = top, top + size
        seq_of[b] = seq
        heapq.heappush(expiring, (last[b], seq, size, b.offset))
    if os.environ.get("GRAPHC_VERIFY") == "1":
        verify_memory(kernels, handed)
    return top, len({b.offset for b in first}), handed


def _own_allocations(buffers: list[Buffer]) -> tuple[int, int, dict]:
    """GRAPHC_SANITIZE: no arena. Buffer k's offset is the byte offset of entry k in a table
    of pointers that the generated entry fills with one malloc per buffer (sanitize.py)."""
    for k, b in enumerate(buffers):
        b.offset = 8 * k
    return -(-8 * len(buffers) // ALIGN) * ALIGN, len(buffers), {}


def sanitized_sizes(kernels: list[Kernel]) -> list[int]:
    """The byte size of each buffer of `_own_allocations`' table, in table order."""
    first, _ = _lifetimes(kernels)
    return [max(b.size * b.dtype.itemsize, 1) for b in sorted(first, key=lambda b: b.offset)]


def check_aliases(sched: Schedule) -> None:
    """Verify the in-place plan: an aliased output's memory (the output's slot, or its input
    written directly) is written by one kernel, after which no kernel reads it (as that
    output or as its input) or writes it again; a value copied in comes from the arena or a
    constant, never from caller memory. Linear in the kernels (a train step aliases every
    parameter and moment: W2 has 38)."""
    writers: dict[int, list[int]] = {}      # id(buffer) -> the kernels writing it, in order
    last_read: dict[int, int] = {}          # id(buffer) -> the last kernel reading it
    for i, kern in enumerate(sched.kernels):
        for v in kern.outs():
            w = writers.setdefault(id(v.buf), [])
            if not w or w[-1] != i:
                w.append(i)
        for v in kern.srcs:
            last_read[id(v.buf)] = i
    for k, j in sched.aliases:
        out, inp = sched.outputs[k], sched.inputs[j]
        writes = sorted({*writers.get(id(out), []), *writers.get(id(inp), [])})
        if len(writes) != 1:
            raise GraphcError(f"internal: in-place output {k} is written {len(writes)} times")
        w = writes[0]
        src = sched.kernels[w].srcs[0].buf if sched.kernels[w].kind == "copy" else None
        if sched.kernels[w].epilogue:        # an update gemm: reads the input only as addend
            if any(v.buf is inp for v in sched.kernels[w].srcs[:2]):
                raise GraphcError(f"internal: in-place output {k}'s product reads input {j}")
        elif src is not None and src.kind != "ws" and src.kind != "const":
            raise GraphcError(f"internal: in-place output {k} is copied from caller memory")
        if max(last_read.get(id(out), -1), last_read.get(id(inp), -1)) > w:
            raise GraphcError(f"internal: input {j} is read after output {k} overwrote it "
                              "in place")


def verify_memory(kernels: list[Kernel], handed: dict[Buffer, Buffer]) -> None:
    """Plan-time check (GRAPHC_VERIFY=1): no two arena buffers whose lifetimes overlap share
    a byte, except a donor and the buffer a kernel writes over it in place.

    A sweep in order of first use that keeps the live buffers sorted by offset: they share no
    byte (each was checked on arrival), so a new buffer can only overlap its two neighbours
    there. O(n log n) comparisons, where checking every live pair was quadratic (W7's stack
    form keeps 17,600 scalars live)."""
    first, last = _lifetimes(kernels)
    donor_of = {b: a for a, b in handed.items() if last.get(a) == first.get(b)}
    starts: list[int] = []                       # offsets of the live buffers, sorted
    live: dict[int, Buffer] = {}                 # offset -> the live buffer starting there
    expiring: list[tuple[int, int, Buffer]] = []   # (last use, order of arrival, buffer)

    def leave(a: Buffer) -> None:
        if live.get(a.offset) is a:
            del live[a.offset]
            starts.pop(bisect.bisect_left(starts, a.offset))

    for seq, b in enumerate(sorted(first, key=first.__getitem__)):
        while expiring and expiring[0][0] < first[b]:
            leave(heapq.heappop(expiring)[2])
        if b in donor_of:
            leave(donor_of[b])                   # written over in place: its bytes pass to b
        i = bisect.bisect_right(starts, b.offset)
        for a in (live[starts[j]] for j in (i - 1, i) if 0 <= j < len(starts)):
            if a.offset < b.offset + _aligned(b) and b.offset < a.offset + _aligned(a):
                raise AssertionError(f"memory plan: arena buffers {a.index} and {b.index} "
                                     f"share bytes while both are live (kernel {first[b]})")
        starts.insert(i, b.offset)
        live[b.offset] = b
        heapq.heappush(expiring, (last[b], seq, b))


def schedule(graph: Graph, fuse: bool = False, min_size: int = 0,
             direct: bool = True) -> Schedule:
    """Kernels in order and the memory plan; with `fuse`, nests of at least `min_size`
    elements are fused (passes/fuse.py); with `direct`, aliased outputs may be written
    straight into their inputs by their own kernels (`plan_in_place`; an update gemm's write
    in place is switched off by GRAPHC_UPDATE_IN_PLACE=0 instead)."""
    groups: list[Group] = []
    if fuse:
        graph, groups = fuse_groups(graph, min_size)
    return _Planner(graph, groups, direct).plan()


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


def _where(v: View) -> str:
    if v.literal is not None:
        return "literal"
    b = v.buf
    return f"arena@{b.offset}" if b.kind == "ws" else f"{b.kind}{b.index}"


def describe(sched: Schedule) -> list[str]:
    """One line per kernel for explain(): its nest, the nodes it computes (fused groups list
    every member, in the order computed) and where its results go."""
    names = sched.graph.numbering()

    def name(n: Node) -> str:
        return f"%{names.get(id(n), '?')}"

    lines = []
    for i, k in enumerate(sched.kernels):
        shape = f"{k.node.dtype.short}{list(k.shape)}"
        extra = " (in place)" if k.inplace else ""
        if k.fused:
            nest = f"loop over {shape}" + (f" reducing axes {k.fused.axes}" if k.fused.axes
                                             else "")
            members = " ".join(f"{name(n)}:{n.op.name}" for n in k.fused.nodes)
            stores = ", ".join(f"{name(n)}->{_where(v)}" for n, v in k.fused.stores)
            lines.append(f"kernel {i}: fused {len(k.fused.nodes)} nodes, {nest}{extra}: "
                         f"{members}; stores {stores}")
        else:
            note = f" ({k.note})" if k.note else ""
            lines.append(f"kernel {i}: {k.kind} {name(k.node)}:{k.node.op.name} {shape}{note}"
                         f"{extra} -> {_where(k.out)}")
    return lines


def kernel_origin(k: Kernel, labels: dict[int, str], width: int = 92) -> list[str]:
    """A C comment naming the nodes a kernel computes, grouped by the user's source line that
    built them (derivative nodes carry their forward node's line), for f.source()."""
    by_line: dict[str, list[str]] = {}
    for n in k.fused.nodes if k.fused else [k.node]:
        line = where_text(n.where) if n.where is not None else "no source line"
        by_line.setdefault(line, []).append(f"{labels.get(id(n), '%?')} {n.op.name}")
    body = "; ".join(f"{line}: {', '.join(names)}" for line, names in by_line.items())
    text = textwrap.wrap(f"from {body}".replace("*/", "* /"), width)
    if len(text) == 1:
        return [f"/* {text[0]} */"]
    return [f"/* {text[0]}"] + [f" * {t}" for t in text[1:]] + [" */"]
