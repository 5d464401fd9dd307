"""Kernels -> one C translation unit with one exported entry point, built with cffi.

Each elementwise op renders one element from its OpDef.c template; the loops, strided
indexing and reductions around it are written here. Large graphs are split into several
static functions so the compiler never sees one enormous function.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager

import numpy as np

from .. import dtypes, mutants, sanitize
from ..errors import GraphcError
from ..ir import Graph, Node
from ..ops import CONTRACT, ELEMENTWISE, GATHER, REDUCE, SCAN, SCATTER
from ..ops.reduce import BLOCK
from ..passes import enabled
from ..schedule import (
    Buffer,
    Kernel,
    Schedule,
    View,
    contiguous_strides,
    kernel_origin,
    loop_dims,
    sanitized_sizes,
    schedule,
)
from .bounds import check_bounds
from .elements import element_expr, node_expr, src_dtypes
from .ranges import RangePlan, plan_ranges
from .tape import TapePlan, plan_tape, render_cases
from .writer import CWriter

ENTRY = "graphc_entry"
PACKED = "graphc_entry_packed"  # the entry with its arguments in one array (csrc/fastcall.c)
LINK = "graphc_link_runtime"    # gets the runtime's gemm and thread count (graphc/rt.py)
# LINK's arguments: these keys of graphc.rt.runtime_addresses(), in order
LINKED = ("f32", "f64", "threads", "update_f32", "update_f64")
LINES_PER_PART = 2000
TAPE_FUSE_MIN = 1024         # in tape mode, nests this large fuse into native functions
# A matmul of at most this many multiply-adds (M*N*K) is emitted as loops with its extents and
# strides as literals (rows of whole vectors on explicit vectors: `_vector_rows`) instead of a
# call into the gemm. Issue 11 measured plain loops (bench/measure_small_matmul.py): they won
# only where one extent is 1. With explicit vectors, per-kernel rdtsc in W1's step (issue 13):
# 100x16 @ 16x1 2.1k -> 0.9k cycles, 100x1 @ 1x16 3.6k -> 0.5k, 16x100 @ 100x1 2.0k -> 0.35k,
# and the 3200-MAC products beat the gemm call (100x2 @ 2x16 1.0k -> 0.6k, 2x100 @ 100x16
# 1.3k -> 0.35k); 100x16 @ 16x16 (25600) did not (3.3k -> 14k), so the bound is 4096.
SMALL_MATMUL_MACS = 4096
VECTOR_BYTES = 32            # the explicit vectors of small products (AVX2; AVX-512 runs them)
SMALL_MATMUL_ACCS = 12       # accumulator vectors of a small product: they stay in registers
_LANES = {"double": VECTOR_BYTES // 8, "float": VECTOR_BYTES // 4}   # by C element type
COLUMNS_MAX = 1024           # accumulators of a leading-dims reduction (16 KB of stack)
SHORT_ROWS = 16              # reduced extent up to which trailing-dims reductions run by columns
# Loop nests over at least PAR_MIN_ELEMS elements run their outermost loop in parallel
# (csrc/graphc_threads.h), in chunks of about PAR_CHUNK_ELEMS elements that the threads take
# one at a time (a thread the OS leaves waiting holds up one chunk, not a fixed share). Both
# are fixed by the shapes alone, never by the thread count, and each chunk runs the same code
# on whichever thread, so results are bit-identical for any count. PAR_MIN_ELEMS (~30-60 µs
# of work) is a setting, not yet a measurement: `python -m bench.measure_threads threshold`
# on a quiet machine (bench/RESULTS.md, "Threads").
PAR_MIN_ELEMS = 1 << 16
# A block of a fused sum out of its kernels' range (ranges.py) runs twice, unclamped then
# clamped; the next RANGE_RETRY blocks go straight to the clamped loop.
RANGE_RETRY = 32
PAR_CHUNK_ELEMS = 1 << 13
OMP_PARALLEL = "#pragma omp parallel"
PARALLEL_FOR = f"{OMP_PARALLEL} for schedule(dynamic) num_threads(GC_THREADS) if (GC_THREADS > 1)"


def _part_type(dt: dtypes.DType, acc_t: str) -> str:
    """The C type of a blocked sum's partial over one BLOCK: float for float32 elements (with
    `omp simd`, BLOCK/8 elements per AVX2 lane, then added to the double accumulator), which
    keeps float32 sums more accurate than numpy's pairwise float32 ones; widening every 8
    floats to two vectors of doubles took ~7% of W4's fused loop on Zen 3."""
    return dt.c if dt is dtypes.float32 else acc_t


def c_literal(value, dt: dtypes.DType) -> str:
    if dt.is_float:
        v = float(np.float32(value)) if dt is dtypes.float32 else float(value)
        if math.isnan(v):
            return "NAN"
        if math.isinf(v):
            return "INFINITY" if v > 0 else "(-INFINITY)"
        text = repr(v)
        return f"{text}f" if dt is dtypes.float32 else text
    if dt is dtypes.bool_:
        return "1" if value else "0"
    v = int(value)
    return f"INT64_C({v})" if dt is dtypes.int64 else (str(v) if v != -2**31 else "INT32_MIN")


def _ptr(buf: Buffer, const: bool = False) -> str:
    t = buf.dtype.c
    if buf.kind == "ws":
        return f"GC_BUF({t}, ws, {buf.offset})"
    if buf.kind == "const":
        return f"k{buf.index}"
    q = "const " if const else ""
    return f"(({q}{t} *)io[{buf.index}])"


def _load(v: View, dt: dtypes.DType, idx: str) -> str:
    if v.literal is not None:
        return c_literal(v.literal, dt)
    return f"{_ptr(v.buf, const=True)}[{idx}]"


def _simd(reds, accumulators: list[str]) -> str:
    """The pragma for a fused nest's innermost loop (acted on under -fopenmp-simd): its
    elementwise work has no dependence between iterations (restrict pointers, stores after
    loads), and sums may be split into lanes. max/min (NaN-aware macros) keep the plain loop."""
    if any(not r.op.c.update.startswith("{acc} +=") for r in reds):
        return ""
    clause = f" reduction(+:{', '.join(accumulators)})" if accumulators else ""
    return "#pragma omp simd" + clause


def _mem(b: Buffer) -> tuple:
    """What identifies a buffer's memory: arena buffers by offset (an in-place output shares
    its donor's), the others by kind and slot."""
    return ("ws", b.offset) if b.kind == "ws" else (b.kind, b.index)


def _restrict(v: View, dims, offset: bool = True) -> View:
    """A view's strides over a subset of the loop dims (the kept or the reduced ones)."""
    return View(v.buf, v.offset if offset else 0, tuple(v.strides[d] for d in dims), v.literal)


def _along(v: View, axis: int) -> View:
    """v with `axis` left out of the loop indexing (its coordinate comes from an index)."""
    return View(v.buf, v.offset, tuple(0 if d == axis else s for d, s in enumerate(v.strides)),
                v.literal)


def _at_j(at: str, v: View, axis: int) -> str:
    """Index `at` (computed without `axis`) moved to coordinate `j` along axis."""
    return _join(at, _index(0, (v.strides[axis],), ("j",)))


def _index_load(idx: View, at: str, length: int) -> str:
    """`j`, the index at `at` clamped into an axis of `length` (> 0) elements."""
    return f"long j = gc_clamp_index({_load(idx, dtypes.int64, at)}, {length});"


def _join(a: str, b: str) -> str:
    return a if b == "0" else b if a == "0" else f"{a} + {b}"


def _index(offset: int, strides, ivars) -> str:
    terms = [str(offset)] if offset else []
    for s, i in zip(strides, ivars):
        if s == 1:
            terms.append(i)
        elif s:
            terms.append(f"{i} * {s}")
    return " + ".join(terms) or "0"


def _scalar_in_rows(n: Node) -> bool:
    """Whether a fused member runs scalar in a short row: a max or min reduction (NaN order:
    no simd reduction), or a gc_* vector-math call (vectorized across many elements only;
    a row of 10 takes one vector and a scalar tail)."""
    if n.op.kind == "reduce":
        return not n.op.c.blocked
    return isinstance(n.op.c, str) and "gc_" in n.op.c


def check_sites(sched: Schedule) -> list[Kernel]:
    """The kernels of ops that may fail at run time; a kernel's index here is the `site` its
    failures record in GC_ERR (the error record after the arena: code, site, position,
    value)."""
    return [k for k in sched.kernels if k.node is not None and k.node.op.may_fail]


class _Emitter:
    def __init__(self, sched: Schedule, tape: TapePlan | None = None):
        self.s = sched
        self.tape = tape
        self.w = CWriter()
        self.sites = {id(k): i for i, k in enumerate(check_sites(sched))}
        self.parallel_ok = False
        self.chunk = 0              # elements per chunk of the open chunked_sum
        self.marks: list[tuple[int, Kernel]] = []     # (line of its C, kernel): annotate()
        self.helpers: list[str] = []    # functions the open one calls, written before it
        self.n_helpers = 0

    @contextmanager
    def _function(self, head: str):
        """A function of the unit; the helpers its kernels asked for go before it."""
        start = len(self.w)
        with self.w.block(head):
            yield
        if self.helpers:
            self.w.lines[start:start] = self.helpers
            self.marks = [(at + len(self.helpers) if at >= start else at, k)
                          for at, k in self.marks]
            self.helpers = []

    def loops(self, shape, views: list[View], var: str = "i", pragma: str = "",
              work: int = 0):
        """Open loops over `shape` (merged where every view allows); returns each view's index
        expression and the number of loops to close. `pragma` goes before the innermost. A
        nest doing `work` >= PAR_MIN_ELEMS element steps runs its outermost loop in parallel
        chunks (see `parallel_chunk`)."""
        extents, strides = loop_dims(shape, views)
        ivars = [f"{var}{k}" for k in range(len(extents))]
        chunk = parallel_chunk(extents, work) if self.parallel_ok else 0
        for k, (i, e) in enumerate(zip(ivars, extents)):
            if k == 0 and chunk:
                self.w.line(PARALLEL_FOR)
                if chunk > 1:
                    self.w.open(f"for (long c = 0; c < {-(-e // chunk)}; c++)")
            start = f"c * {chunk}" if k == 0 and chunk > 1 else "0"
            end = e
            if start != "0":
                end = f"{i}_end"
                self.w.line(f"long {end} = {start} + {chunk} < {e} ? {start} + {chunk} : {e};")
            if pragma and k == len(extents) - 1:
                self.w.line(pragma)
            self.w.open(f"for (long {i} = {start}; {i} < {end}; {i}++)")
        depth = len(extents) + (chunk > 1)
        return [_index(v.offset, st, ivars) for v, st in zip(views, strides)], depth

    def close(self, depth: int) -> None:
        self.w.close(depth)

    def elementwise(self, k: Kernel) -> None:
        idx, depth = self.loops(k.shape, [k.out] + k.srcs, work=math.prod(k.shape))
        operands = [_load(v, dt, i) for v, dt, i in zip(k.srcs, src_dtypes(k), idx[1:])]
        expr = element_expr(k, operands, pos=idx[0], site=self.sites.get(id(k), 0))
        self.w.line(f"{_ptr(k.out.buf)}[{idx[0]}] = {expr};")
        self.close(depth)

    def zero(self, k: Kernel) -> None:
        b = k.out.buf
        self.w.line(f"memset({_ptr(b)}, 0, {b.size * b.dtype.itemsize});")

    def reduce(self, k: Kernel) -> None:
        n = k.node
        src, axes = k.srcs[0], n.arg
        full = n.src[0].shape
        kept = [d for d in range(len(full)) if d not in axes]
        src_kept = View(src.buf, src.offset, tuple(src.strides[d] for d in kept), src.literal)
        dt = n.dtype
        acc_t = "double" if dt.is_float else "int64_t"
        red = n.op.c
        init = red.init["f" if dt.is_float else "i"].format(T=acc_t)
        inner = View(src.buf, 0, tuple(src.strides[d] for d in axes), src.literal)
        inner_shape = tuple(full[d] for d in axes)
        blocked = red.blocked and dt.is_float and max(loop_dims(inner_shape, [inner])[0],
                                                      default=0) > BLOCK
        with self.w.block(""):
            idx, depth = self.loops(tuple(full[d] for d in kept), [k.out, src_kept],
                                    work=math.prod(full))
            self.w.line(f"{acc_t} acc = {init};")
            # a float sum vectorizes only if gcc may reorder it (`omp simd reduction`, built
            # with -fopenmp-simd): each block is then summed in per-lane partials (of the type
            # `_part_type` gives) added at the block's end; max/min keep their NaN-propagating
            # scalar order
            simd_sum = red.blocked and dt.is_float
            chunks = None
            if blocked:
                extents = loop_dims(inner_shape, [inner])[0]
                if not depth and len(extents) == 1:
                    chunks = self.chunked_sum(extents[0], math.prod(full), [("acc", acc_t, init)])
                iidx, n_outer = self._blocked_loops(inner_shape, inner, _part_type(dt, acc_t),
                                                    init, simd_sum, chunks is not None)
            else:
                sum_pragma = "#pragma omp simd reduction(+ : acc)" if simd_sum else ""
                (iidx,), n_outer = self.loops(inner_shape, [inner], var="j", pragma=sum_pragma)
            x = _load(src, dt, f"{idx[1]} + {iidx}" if iidx != "0" else idx[1])
            self.w.line(red.update.format(acc="part" if blocked else "acc", x=x) + ";")
            if blocked:
                self.close(1)                                   # the block's elements
                self.w.line(red.update.format(acc="acc_c" if chunks else "acc", x="part") + ";")
                self.close(1)                                   # the blocks
                if chunks:
                    self.close_chunks(chunks, [("acc", red.update)])
            self.close(n_outer)
            self.w.line(f"{_ptr(k.out.buf)}[{idx[0]}] = ({dt.c})acc;")
            self.close(depth)

    def _blocked_loops(self, shape, view: View, part_t: str, init: str, simd: bool = False,
                       chunked: bool = False):
        """Reduction loops whose innermost loop runs in blocks, each summed into `part`
        before joining `acc` (`acc_c`, the chunk's sum, inside `chunked_sum`). Returns the
        index and the number of loops outside the blocked one; the caller closes the element
        loop, adds `part`, closes the block loop, then those."""
        extents, strides = loop_dims(shape, [view])
        ivars = [f"j{k}" for k in range(len(extents))]
        for i, e in zip(ivars[:-1], extents[:-1]):
            self.w.open(f"for (long {i} = 0; {i} < {e}; {i}++)")
        last, e = ivars[-1], extents[-1]
        self._block_loop(e, chunked)
        self.w.line(f"{part_t} part = {init};")
        self.w.line(f"long je = jb + {BLOCK} < {e} ? jb + {BLOCK} : {e};")
        if simd:
            self.w.line("#pragma omp simd reduction(+ : part)")
        self.w.open(f"for (long {last} = jb; {last} < je; {last}++)")
        return _index(0, strides[0], ivars), len(extents) - 1


    def _block_loop(self, extent: int, chunked: bool) -> None:
        """Open the loop over the BLOCK-element blocks of a sum (of one chunk, if chunked)."""
        if chunked:
            start = f"c * {self.chunk}"
            self.w.line(f"long jb_end = {start} + {self.chunk} < {extent} ? {start} + "
                        f"{self.chunk} : {extent};")
            self.w.open(f"for (long jb = {start}; jb < jb_end; jb += {BLOCK})")
        else:
            self.w.open(f"for (long jb = 0; jb < {extent}; jb += {BLOCK})")

    def chunked_sum(self, extent: int, work: int, accs: list[tuple[str, str, str]]):
        """A reduction of everything in one blocked loop, in parallel: open a loop over
        fixed chunks of whole blocks whose sums (`<acc>_c`, per accumulator (name, C type,
        init)) go to an array, combined in chunk order by `close_chunks`, so the result does
        not depend on the thread count. None (nothing opened) if too small to split."""
        if not self.parallel_ok or work < PAR_MIN_ELEMS or extent < 2 * PAR_CHUNK_ELEMS:
            return None
        n_max = 4096                                    # bounds the arrays on the stack
        self.chunk = -(-max(PAR_CHUNK_ELEMS, -(-extent // n_max)) // BLOCK) * BLOCK
        n = -(-extent // self.chunk)
        for name, t, _ in accs:
            self.w.line(f"{t} {name}_chunks[{n}];")
        self.w.line(PARALLEL_FOR)
        self.w.open(f"for (long c = 0; c < {n}; c++)")
        for name, t, init in accs:
            self.w.line(f"{t} {name}_c = {init};")
        return n

    def close_chunks(self, n: int, accs: list[tuple[str, str]]) -> None:
        """Store each chunk's sums, close the chunk loop, add the chunks up in order (accs:
        (name, update template))."""
        for name, _ in accs:
            self.w.line(f"{name}_chunks[c] = {name}_c;")
        self.close(1)
        with self.w.block(f"for (long c = 0; c < {n}; c++)"):
            for name, update in accs:
                self.w.line(update.format(acc=name, x=f"{name}_chunks[c]") + ";")

    def scan(self, k: Kernel) -> None:
        """Loops over the other axes around one accumulating loop along the scanned axis."""
        n, (src,) = k.node, k.srcs
        axis, length = n.arg, n.shape[n.arg]
        kept = [d for d in range(len(n.shape)) if d != axis]
        out = k.out
        with self.w.block(""):
            idx, depth = self.loops(tuple(n.shape[d] for d in kept),
                                    [_restrict(out, kept), _restrict(src, kept)])
            self.w.line(f"{n.dtype.c} acc = {n.op.c.init};")
            with self.w.block(f"for (long j = 0; j < {length}; j++)"):
                x = _load(src, n.dtype, _at_j(idx[1], src, axis))
                self.w.line(n.op.c.update.format(acc="acc", x=x) + ";")
                self.w.line(f"{_ptr(out.buf)}[{_at_j(idx[0], out, axis)}] = acc;")
            self.close(depth)

    def gather(self, k: Kernel) -> None:
        """out[i] = x[i with the axis coordinate replaced by idx[i]]: one index load (clamped
        into the axis) and one data load per element."""
        n, (x, idx) = k.node, k.srcs
        axis, length = n.arg, n.src[0].shape[n.arg]
        if length == 0:                # every index failed its check: nothing to read
            self.zero(k)
            return
        with self.w.block(""):
            at, depth = self.loops(k.shape, [k.out, idx, _along(x, axis)])
            self.w.line(_index_load(idx, at[1], length))
            self.w.line(f"{_ptr(k.out.buf)}[{at[0]}] = {_load(x, n.dtype, _at_j(at[2], x, axis))};")
            self.close(depth)

    def scatter(self, k: Kernel) -> None:
        """out = 0, then out[idx[i] along the axis] += g[i] for every i in row-major order
        (deterministic sums, the order of numpy's np.add.at)."""
        n, (g, idx) = k.node, k.srcs
        (axis, length), shape = n.arg, n.src[0].shape
        self.zero(k)
        if length == 0:
            return
        out = k.out
        with self.w.block(""):
            at, depth = self.loops(shape, [_along(out, axis), g, idx])
            self.w.line(_index_load(idx, at[2], length))
            value = _load(g, n.dtype, at[1])
            self.w.line(f"{_ptr(out.buf)}[{_at_j(at[0], out, axis)}] += {value};")
            self.close(depth)

    def fused(self, k: Kernel) -> None:
        """One loop nest for a fused group: outer loops over the kept dims, inner loops over
        the reduced ones (blocked for float sums, as `reduce`); each element computes the
        members in order into registers (`t<j>`), loads outside sources through restrict
        pointers, stores the members needed later, and accumulates the reductions."""
        f, w = k.fused, self.w
        shape, axes = k.shape, f.axes
        kept = [d for d in range(len(shape)) if d not in axes]
        elem = [(n, v) for n, v in f.stores if n.op.kind != "reduce"]
        reds = [n for n in f.nodes if n.op.kind == "reduce"]
        red_out = [v for n, v in f.stores if n.op.kind == "reduce"]
        full = list(k.srcs) + [v for _, v in elem]
        outer = [_restrict(v, kept) for v in full] + red_out
        inner = [_restrict(v, axes, offset=False) for v in full]
        ptr = self._pointers(k)
        decls = ptr.pop("decls")
        with w.block(""):
            for line in decls:
                w.line(line)
            scalars = self._scalar_sources(k, ptr)
            for j, name in scalars.items():
                w.line(f"const {k.srcs[j].buf.dtype.c} {name} = {ptr[j]}[{k.srcs[j].offset}];")
            if self._by_columns(k, kept):
                self._columns(k, kept, outer, inner, ptr, scalars)
                return
            oidx, odepth = self.loops(tuple(shape[d] for d in kept), outer,
                                      pragma="" if axes else _simd([], []),
                                      work=math.prod(shape))
            accs = []
            for j, r in enumerate(reds):
                acc_t = "double" if r.dtype.is_float else "int64_t"
                init = r.op.c.init["f" if r.dtype.is_float else "i"].format(T=acc_t)
                accs.append((f"acc{j}", f"part{j}", acc_t, init))
                w.line(f"{acc_t} acc{j} = {init};")
            extents, strides = loop_dims(tuple(shape[d] for d in axes), inner)
            if extents and mutants.active("reduce_bound"):
                extents[-1] -= 1
            blocked = bool(extents) and max(extents) > BLOCK and any(
                r.op.c.blocked and r.dtype.is_float for r in reds)
            ivars = [f"j{d}" for d in range(len(extents))]
            simd = _simd(reds, [a[1] if blocked else a[0] for a in accs])
            for d, (i, e) in enumerate(zip(ivars[:-1] if blocked else ivars, extents)):
                if d == len(extents) - 1:
                    if simd:
                        w.line(simd)
                w.open(f"for (long {i} = 0; {i} < {e}; {i}++)")
            chunks = None
            if blocked and not odepth and len(extents) == 1:
                chunks = self.chunked_sum(extents[0], math.prod(shape),
                                          [(a[0], a[2], a[3]) for a in accs])
            idx = [_join(o, _index(0, st, ivars)) for o, st in zip(oidx, strides)]
            plan = None
            if blocked:
                last, e = ivars[-1], extents[-1]
                if simd and not odepth and len(extents) == 1:
                    plan, maxima, updates = self._in_range_plan(k, ptr, scalars, idx)
                if plan:
                    w.line("int gc_skip = 0;")
                self._block_loop(e, chunks is not None)
                parts = [(part, _part_type(r.dtype, acc_t)) for (_, part, acc_t, _), r
                         in zip(accs, reds)]
                for (part, part_t), (_, _, _, init) in zip(parts, accs):
                    w.line(f"{part_t} {part} = {init};")
                w.line(f"long je = jb + {BLOCK} < {e} ? jb + {BLOCK} : {e};")
                if plan:
                    clamped = self._clamped_block(k, decls, ptr, scalars, idx, parts, simd, last)
                    self._skip_block(clamped)
                    for line in maxima:
                        w.line(line)
                if simd:
                    w.line(simd + (f" reduction(max : {', '.join(f'm{j}' for j in plan.sources)})"
                                   if plan else ""))
                w.open(f"for (long {last} = jb; {last} < je; {last}++)")
                for line in updates if plan else ():
                    w.line(line)
            self._members(k, ptr, scalars, idx, [a[1] if blocked else a[0] for a in accs],
                          fast=plan.fast if plan else ())
            if blocked:
                self.close(1)
                if plan:
                    with w.block(f"if (!({plan.test}))"):
                        for (part, _), (_, _, _, init) in zip(parts, accs):
                            w.line(f"{part} = {init};")
                        w.line(clamped + ";")
                        w.line(f"gc_skip = {RANGE_RETRY};")
                    self.close(1)
                for (acc, part, _, _), r in zip(accs, reds):
                    w.line(r.op.c.update.format(acc=f"{acc}_c" if chunks else acc, x=part)
                           + ";")
                self.close(1)
                if chunks:
                    self.close_chunks(chunks, [(a[0], r.op.c.update) for a, r in zip(accs, reds)])
                self.close(len(extents) - 1)
            else:
                self.close(len(extents))
            for j, ((acc, _, _, _), r) in enumerate(zip(accs, reds)):
                w.line(f"{ptr[len(full) + j]}[{oidx[len(full) + j]}] = ({r.dtype.c}){acc};")
            self.close(odepth)

    def _in_range_plan(self, k: Kernel, ptr: dict, scalars: dict, idx: list[str]
                       ) -> tuple[RangePlan | None, list[str], list[str]]:
        """For a block of a fused sum: which members call unclamped kernels (ranges.py), and
        the lines that take the block's largest |source| as it runs (declarations, updates
        inside the loop). The block runs unclamped first; where a bound fails, the caller
        runs it again clamped (`_clamped_block`), so no source may share memory with an
        output, and no member may record an error (GC_ERR is the part function's): None
        then, as when no member has an unclamped kernel."""
        suffix: dict[int, str] = {}

        def source_bound(s):
            j = k.fused.loads.get(id(s))
            if j is None or s.dtype not in (dtypes.float32, dtypes.float64):
                return None
            v = k.srcs[j]
            if v.literal is not None:
                m = abs(float(v.literal))
                return (repr(m), frozenset()) if math.isfinite(m) else None
            if j in scalars:
                return f"fabs((double){scalars[j]})", frozenset()
            suffix[j] = "f" if s.dtype is dtypes.float32 else ""
            return f"gc_bits_mag{suffix[j]}(m{j})", frozenset({j})

        if any(n.op.may_fail for n in k.fused.nodes):
            return None, [], []
        plan = plan_ranges(k.fused.nodes, source_bound)
        written = {name for j, name in ptr.items() if j >= len(k.srcs)}
        # any source written in place, not just the kernels': a block out of range reruns
        # clamped and must read what the unclamped pass read
        if plan is None or any(ptr.get(j) in written for j in range(len(k.srcs))):
            return None, [], []
        return plan, [f"{'uint32_t' if suffix[j] else 'int64_t'} m{j} = 0;"
                      for j in plan.sources], [
            f"m{j} = gc_absmax_bits{suffix[j]}(m{j}, {ptr[j]}[{idx[j]}]);"
            for j in plan.sources]

    def _skip_block(self, clamped: str) -> None:
        """Open the block's unclamped path; the RANGE_RETRY blocks after one out of range
        run clamped without trying it (data out of range throughout costs ~1/RANGE_RETRY
        more, not twice)."""
        with self.w.block("if (gc_skip)"):
            self.w.line("gc_skip--;")
            self.w.line(clamped + ";")
        self.w.open("else")

    def _clamped_block(self, k: Kernel, decls: list[str], ptr: dict, scalars: dict,
                       idx: list[str], parts: list[tuple[str, str]], simd: str,
                       var: str) -> str:
        """A block of a fused sum with the clamped kernels, as a helper function apart (in
        the same function as the unclamped loop, gcc 12 spilled that loop's constants: W4
        ~6% slower; not `cold` either: gcc optimizes those for size, and data out of range
        throughout ran ~10% slower); returns its call. It writes every output of the block."""
        name = f"gc_clamped{self.n_helpers}"
        self.n_helpers += 1
        pointers = [d.split(" = ")[0] for d in decls]
        params = pointers + [f"{k.srcs[j].buf.dtype.c} {s}" for j, s in scalars.items()] + [
            "long jb", "long je"] + [f"{t} *{p}_io" for p, t in parts]
        main, self.w = self.w, CWriter()
        with self.w.block(f"static __attribute__((noinline)) void {name}("
                          f"{', '.join(params)})"):
            for p, t in parts:
                self.w.line(f"{t} {p} = *{p}_io;")
            if simd:
                self.w.line(simd)
            with self.w.block(f"for (long {var} = jb; {var} < je; {var}++)"):
                self._members(k, ptr, scalars, idx, [p for p, _ in parts])
            for p, _ in parts:
                self.w.line(f"*{p}_io = {p};")
        self.helpers += self.w.lines
        self.w = main
        args = [d.split()[-1] for d in pointers] + list(scalars.values()) + [
            "jb", "je"] + [f"&{p}" for p, _ in parts]
        return f"{name}({', '.join(args)})"

    def _members(self, k: Kernel, ptr: dict, scalars: dict, idx: list[str],
                 accs: list, at: str = "", fast=()) -> None:
        """A fused nest's element: the members in order into registers (`t<j>`), each
        reduction added into its accumulator expression (`accs`; an (array, collect) pair
        indexes the array at `at`, and with collect the input is only written there), the
        stored members written (`idx`: each view's index, sources first). Each source is
        loaded once into `l<j>` before its first use: a load inside `where`'s `?:` is
        conditional, which gcc does not vectorize ("control flow in loop"); every index of
        the nest is in bounds. Members in `fast` (ids) call their unclamped kernel."""
        f, temps = k.fused, {}

        def operand(s) -> str:
            if id(s) in temps:
                return temps[id(s)]
            j = f.loads[id(s)]
            v = k.srcs[j]
            if v.literal is not None:
                return c_literal(v.literal, s.dtype)
            if j in scalars:
                return scalars[j]
            temps[id(s)] = f"l{j}"
            self.w.line(f"{s.dtype.c} l{j} = {ptr[j]}[{idx[j]}];")
            return temps[id(s)]

        reds = iter(accs)
        for t, n in enumerate(f.nodes):
            if n.op.kind == "reduce":
                x, acc = operand(n.src[0]), next(reds)
                if isinstance(acc, tuple):
                    acc, collect = f"{acc[0]}[{at}]", acc[1]
                    if collect:
                        self.w.line(f"{acc} = {x};")
                        continue
                self.w.line(n.op.c.update.format(acc=acc, x=x) + ";")
                continue
            args = [operand(s) for s in n.src]
            temps[id(n)] = f"t{t}"
            self.w.line(f"{n.dtype.c} t{t} = {node_expr(n, args, in_range=id(n) in fast)};")
        elem = [n for n, _ in f.stores if n.op.kind != "reduce"]
        for j, n in enumerate(elem, start=len(k.srcs)):
            self.w.line(f"{ptr[j]}[{idx[j]}] = {temps[id(n)]};")

    def _by_columns(self, k: Kernel, kept: list[int]) -> bool:
        """Whether a fused reduction runs with its kept dims innermost: it reduces leading
        dims (a bias gradient: the sum over a batch's rows). More than BLOCK rows need one
        reduced dim (blocked sums over it); more than COLUMNS_MAX accumulators one kept dim
        (taken in blocks of columns). Row order would walk the contiguous dims with a stride
        in the innermost loop, which gcc does not vectorize (W2's ReLU-mask-and-column-sum
        kernels ran at ~4 cycles an element; W3's 256 x 2048 ones ~5% of its step).
        A reduction over short trailing rows (at most SHORT_ROWS elements: softmax over 10
        classes) runs this way too where a row would be scalar (`_scalar_in_rows`): W2's
        row max and exp-and-sum took 4.4k and 10.4k cycles for 128 rows of 10, 1.8k and
        5.0k by columns (each row then adds in plain order, no per-lane partial sums)."""
        axes, shape = k.fused.axes, k.shape
        if not axes or not kept or mutants.active("reduce_bound"):
            return False
        n_reds = sum(n.op.kind == "reduce" for n in k.fused.nodes)
        if min(axes) > max(kept):
            return (math.prod(shape[d] for d in axes) <= SHORT_ROWS
                    and math.prod(shape[d] for d in kept) * n_reds <= COLUMNS_MAX
                    and any(_scalar_in_rows(n) for n in k.fused.nodes))
        if max(axes) > min(kept):
            return False
        return ((math.prod(shape[d] for d in axes) <= BLOCK or len(axes) == 1)
                and (math.prod(shape[d] for d in kept) * n_reds <= COLUMNS_MAX
                     or len(kept) == 1))

    def _columns(self, k: Kernel, kept: list[int], outer: list[View], inner: list[View],
                 ptr: dict, scalars: dict) -> None:
        """A fused reduction over leading dims (or short trailing rows), by rows of the
        reduced dims: one accumulator per kept element
        (an array), the reduced dims outside, the kept dims inside (contiguous, no dependence
        between iterations: `omp simd`), then the accumulators stored. Each accumulator adds
        its elements in row order, in blocks of BLOCK rows (a partial sum per block, as the
        row-order nest) where there are more. More columns than COLUMNS_MAX accumulators
        run in blocks of columns, each block on its own arrays (in parallel when large: a
        column's sum does not depend on the thread that computes it).
        An element is added straight into an accumulator of its own type. One widened into
        a double accumulator (float32) is computed into `row<j>` first and added in a loop of
        its own: gcc 12's PRE turns `acc += (m ? 0 : x)` with a widening into a branch, which
        neither vectorizes nor predicts (a ReLU mask; W2's bias gradients 8x slower). The row
        buffer is not used otherwise: written in 16-byte halves (VF set by a byte mask) and
        read back in 32-byte vectors, it costs a store-forwarding stall per vector (W1's two
        float64 bias-gradient kernels: 4.8k cycles each for 1600 elements, 1.1k without)."""
        f, w, shape = k.fused, self.w, k.shape
        reds = [n for n in f.nodes if n.op.kind == "reduce"]
        kept_shape = tuple(shape[d] for d in kept)
        size = math.prod(kept_shape)
        width = size if size * len(reds) <= COLUMNS_MAX else COLUMNS_MAX // len(reds)
        at = View(None, 0, contiguous_strides(kept_shape))
        n_full = len(inner)

        def kept_loop(views: list[View], pragma: str = ""):
            """Loops over the kept elements (of the column block); each view's index, then
            the accumulators' (`at`), and the loops to close."""
            if width == size:
                return self.loops(kept_shape, views + [at], pragma=pragma)
            if pragma:
                w.line(pragma)
            w.open("for (long c = 0; c < cw; c++)")
            return [_index(v.offset, v.strides, ["(cb + c)"]) for v in views] + ["c"], 1

        extents, strides = loop_dims(tuple(shape[d] for d in f.axes), inner)
        blocked = bool(extents) and max(extents) > BLOCK and any(
            r.op.c.blocked and r.dtype.is_float for r in reds)
        if width < size:
            if self.parallel_ok and math.prod(shape) >= PAR_MIN_ELEMS:
                w.line(PARALLEL_FOR)
            w.open(f"for (long cb = 0; cb < {size}; cb += {width})")
            w.line(f"long cw = cb + {width} < {size} ? {width} : {size} - cb;")
        accs = []
        for j, r in enumerate(reds):
            acc_t = "double" if r.dtype.is_float else "int64_t"
            init = r.op.c.init["f" if r.dtype.is_float else "i"].format(T=acc_t)
            w.line(f"{acc_t} acc{j}[{width}];")
            if blocked:
                w.line(f"{acc_t} part{j}[{width}];")
            row = f"row{j}" if r.src[0].dtype.c != acc_t else None
            if row:
                w.line(f"{r.src[0].dtype.c} {row}[{width}];")      # the element type: above
            w.line(f"for (long c = 0; c < {width}; c++) acc{j}[c] = {init};")
            accs.append((f"acc{j}", f"part{j}" if blocked else f"acc{j}", row, init))
        ivars = [f"j{d}" for d in range(len(extents))]
        for i, e in zip(ivars[:-1] if blocked else ivars, extents):
            w.open(f"for (long {i} = 0; {i} < {e}; {i}++)")
        if blocked:
            last, e = ivars[-1], extents[-1]
            w.open(f"for (long jb = 0; jb < {e}; jb += {BLOCK})")
            w.line(f"long je = jb + {BLOCK} < {e} ? jb + {BLOCK} : {e};")
            for _, part, _, init in accs:
                w.line(f"for (long c = 0; c < {width}; c++) {part}[c] = {init};")
            w.open(f"for (long {last} = jb; {last} < je; {last}++)")
        oidx, depth = kept_loop(outer[:n_full], pragma=_simd([], []))
        idx = [_join(o, _index(0, st, ivars)) for o, st in zip(oidx, strides)]
        self._members(k, ptr, scalars, idx, [(row or target, row is not None)
                                              for _, target, row, _ in accs], at=oidx[n_full])
        self.close(depth)
        if any(row for _, _, row, _ in accs):
            (c,), depth = kept_loop([], pragma=_simd([], []))
            for (_, target, row, _), r in zip(accs, reds):
                if row:
                    w.line(r.op.c.update.format(acc=f"{target}[{c}]", x=f"{row}[{c}]") + ";")
            self.close(depth)
        if blocked:
            self.close(1)
            (c,), depth = kept_loop([])
            for (acc, part, _, _), r in zip(accs, reds):
                w.line(r.op.c.update.format(acc=f"{acc}[{c}]", x=f"{part}[{c}]") + ";")
            self.close(depth + 1)
            self.close(len(extents) - 1)
        else:
            self.close(len(extents))
        red_out = outer[n_full:]
        oidx, depth = kept_loop(red_out)
        for j, ((acc, _, _, _), r) in enumerate(zip(accs, reds)):
            w.line(f"{ptr[n_full + j]}[{oidx[j]}] = ({r.dtype.c}){acc}[{oidx[-1]}];")
        self.close(depth)
        if width < size:
            self.close(1)

    @staticmethod
    def _scalar_sources(k: Kernel, ptr: dict) -> dict[int, str]:
        """Sources read at one address for the whole nest (a broadcast scalar such as Adam's
        `1 - b1**t`) that the kernel does not write, each read once into a local `s<j>` before
        the loops. Read inside the loop, gcc 12 forwards the value a preceding kernel stored
        there into the first iteration only and then leaves the loop scalar ("latch block not
        empty"): W2's 8192-element Adam update ran 4-5x slower than vectorized."""
        if not math.prod(k.shape):
            return {}                               # no iteration: nothing may be read
        written = {_mem(v.buf) for _, v in k.fused.stores}
        return {j: f"s{j}" for j, v in enumerate(k.srcs)
                if v.literal is None and v.buf is not None and not any(v.strides)
                and _mem(v.buf) not in written and j in ptr}

    def _pointers(self, k: Kernel) -> dict:
        """A restrict pointer per distinct memory a fused kernel touches (views of one buffer,
        or an input and the output written over it in place, share one), by view position:
        sources first, then the elementwise stores, then the reductions' stores."""
        f = k.fused
        elem = [v for n, v in f.stores if n.op.kind != "reduce"]
        reds = [v for n, v in f.stores if n.op.kind == "reduce"]
        views = list(k.srcs) + elem + reds
        written = {_mem(v.buf) for v in elem + reds}
        names: dict = {}
        decls = []
        out: dict = {}
        for j, v in enumerate(views):
            if v.buf is None:
                continue
            key = _mem(v.buf)
            if key not in names:
                names[key] = f"p{len(names)}"
                t = v.buf.dtype.c
                q = "" if key in written else "const "
                decls.append(f"{q}{t} *restrict {names[key]} = ({q}{t} *){_ptr(v.buf)};")
            out[j] = names[key]
        out["decls"] = decls
        return out

    def matmul(self, k: Kernel) -> None:
        n = k.node
        a, b = k.srcs[:2]
        batch = n.shape[:-2]
        m, kk, nn = n.src[0].shape[-2], n.src[0].shape[-1], n.shape[-1]
        views = [View(k.out.buf, k.out.offset, k.out.strides[:-2]),
                 View(a.buf, a.offset, a.strides[:-2], a.literal),
                 View(b.buf, b.offset, b.strides[:-2], b.literal)]
        fn = "gc_gemm_f32" if n.dtype is dtypes.float32 else "gc_gemm_f64"
        with self.w.block(""):
            idx, depth = self.loops(batch, views)
            pa = self._matrix_ptr(a, idx[1])
            pb = self._matrix_ptr(b, idx[2])
            pc = f"{_ptr(k.out.buf)} + {idx[0]}"
            if k.epilogue:
                self._update_gemm(k, (m, nn, kk), pa, pb, pc)
            elif m * nn * kk <= SMALL_MATMUL_MACS:
                self._small_matmul(n.dtype.c, (m, nn, kk), (pa, a.strides), (pb, b.strides), pc)
            else:
                self.w.line(f"{fn}({m}, {nn}, {kk}, {pa}, {a.strides[-2]}, {a.strides[-1]}, "
                            f"{pb}, {b.strides[-2]}, {b.strides[-1]}, {pc}, {nn}, 0);")
            self.close(depth)

    def _update_gemm(self, k: Kernel, mnk: tuple, pa: str, pb: str, pc: str) -> None:
        """A matmul with an update epilogue (schedule.Kernel.epilogue): out = D ± s * (A @ B)
        by graphc_gemm_update, or for a small product the loops, then the update in a loop
        (the same rounding: d + alpha * g, contracted to one FMA as in a fused loop)."""
        (m, nn, kk), (a, b, d, s), t = mnk, k.srcs, k.node.dtype
        alpha = ("-" if k.epilogue == "sub" else "") + f"({_load(s, t, str(s.offset))})"
        pd = f"{_ptr(d.buf, const=True)} + {d.offset}"
        if m * nn * kk > SMALL_MATMUL_MACS:
            self.w.line(f"gc_gemm_update_{t.short}({m}, {nn}, {kk}, {pa}, {a.strides[-2]}, "
                        f"{a.strides[-1]}, {pb}, {b.strides[-2]}, {b.strides[-1]}, {pc}, {nn}, "
                        f"{pd}, {d.strides[0]}, {alpha});")
            return
        self.w.line(f"{t.c} gcp[{m * nn}];")          # D may be C (in place): not C yet
        self._small_matmul(t.c, mnk, (pa, a.strides), (pb, b.strides), "gcp")
        self.w.line(f"const {t.c} alpha = {alpha};")
        with self.w.block(f"for (long i = 0; i < {m}; i++)"):
            self.w.line(f"for (long j = 0; j < {nn}; j++) ({pc})[i * {nn} + j] = "
                        f"({pd})[i * {d.strides[0]} + j] + alpha * gcp[i * {nn} + j];")

    def _small_matmul(self, t: str, mnk: tuple, a: tuple, b: tuple, pc: str) -> None:
        """C = A @ B as loops with literal extents (see SMALL_MATMUL_MACS): each C[i, j] sums
        its products in k order from 0, like the dot it is. A column C = A @ b is computed as
        the row C^T = b^T A^T, so its m outputs are the vector axis. A row of `nn` outputs,
        nn a whole number of vectors, runs on explicit vectors (`_vector_rows`); any other
        shape as plain loops."""
        (m, nn, kk), (pa, sa), (pb, sb) = mnk, a, b
        w = self.w
        w.line(f"const {t} *restrict ga = {pa}; const {t} *restrict gb = {pb};")
        w.line(f"{t} *restrict gcm = {pc};")
        # A(i, p) at ga[i*ra + p*ca], B(p, j) at gb[p*rb + j*cb], C(i, j) at gcm[i*ldc + j]
        ra, ca, rb, cb, ldc, names = sa[-2], sa[-1], sb[-2], sb[-1], nn, ("ga", "gb")
        if nn == 1 and m > 1:
            m, nn, ldc, names = 1, m, 0, ("gb", "ga")
            ra, ca, rb, cb = 0, rb, ca, ra
        lanes = _LANES.get(t, 0)
        if lanes and nn % lanes == 0 and nn and m:
            self._vector_rows(t, (m, nn, kk), lanes, (ra, ca, rb, cb, ldc), names)
            return
        with w.block(f"for (long i = 0; i < {m}; i++)"):
            w.line(f"{t} *restrict ci = gcm + i * {ldc};")
            w.line(f"for (long j = 0; j < {nn}; j++) ci[j] = 0;")
            with w.block(f"for (long p = 0; p < {kk}; p++)"):
                w.line(f"const {t} aip = {names[0]}[i * {ra} + p * {ca}];")
                w.line(f"for (long j = 0; j < {nn}; j++) ci[j] += aip * {names[1]}[p * {rb} + "
                       f"j * {cb}];")

    def _vector_rows(self, t: str, mnk: tuple, lanes: int, strides: tuple, names: tuple) -> None:
        """C = A @ B, C's rows a whole number of `lanes`-wide vectors: blocks of rows x
        vectors of accumulators (at most SMALL_MATMUL_ACCS, so they stay in registers), each
        acc += A(i, p) * B(p, j..j+lanes) for p from 0, then stored. gcc vectorizes plain
        loops of these shapes across rows with shuffles (3-10x slower: W1's 100x1 @ 1x16 took
        3.5k cycles); explicit vectors leave it the layout. B's row is loaded as one vector
        when contiguous, else built from its elements."""
        (m, nn, kk), (ra, ca, rb, cb, ldc), (an, bn) = mnk, strides, names
        w = self.w
        vec = f"gc_v{lanes}{'f' if t == 'float' else 'd'}"
        w.line(f"typedef {t} {vec} __attribute__((vector_size({VECTOR_BYTES}), "
               f"aligned(sizeof({t})), may_alias));")
        nq = nn // lanes
        rows = min(m, max(1, SMALL_MATMUL_ACCS // min(nq, 4)))
        cols = min(nq, SMALL_MATMUL_ACCS // rows)

        def block(i0: str, n_rows: int, j0: str, n_cols: int) -> None:
            for r in range(n_rows):
                w.line(f"{vec} " + ", ".join(f"c{r}_{q} = {{0}}" for q in range(n_cols)) + ";")
            with w.block(f"for (long p = 0; p < {kk}; p++)"):
                for q in range(n_cols):
                    at = f"p * {rb} + ({j0} + {q * lanes}) * {cb}"
                    if cb == 1:
                        w.line(f"const {vec} b{q} = *(const {vec} *)({bn} + {at});")
                    else:
                        items = ", ".join(f"{bn}[{at} + {e * cb}]" for e in range(lanes))
                        w.line(f"const {vec} b{q} = {{{items}}};")
                for r in range(n_rows):
                    w.line(f"const {t} a{r} = {an}[({i0} + {r}) * {ra} + p * {ca}];")
                    for q in range(n_cols):
                        w.line(f"c{r}_{q} += a{r} * b{q};")
            for r in range(n_rows):
                for q in range(n_cols):
                    w.line(f"*({vec} *)(gcm + ({i0} + {r}) * {ldc} + {j0} + {q * lanes}) = "
                           f"c{r}_{q};")

        def row_blocks(j0: str, n_cols: int) -> None:
            if m >= rows:
                with w.block(f"for (long i = 0; i + {rows} <= {m}; i += {rows})"):
                    block("i", rows, j0, n_cols)
            if m % rows:
                with w.block(""):
                    block(str(m - m % rows), m % rows, j0, n_cols)

        full = nq - nq % cols
        with w.block(f"for (long jq = 0; jq < {full * lanes}; jq += {cols * lanes})"):
            row_blocks("jq", cols)
        if nq % cols:
            with w.block(""):
                row_blocks(str(full * lanes), nq % cols)

    def _matrix_ptr(self, v: View, idx: str) -> str:
        if v.literal is not None:
            raise GraphcError("internal: matmul of a scalar constant")
        return f"{_ptr(v.buf, const=True)} + {idx}"

    def kernel(self, k: Kernel) -> None:
        if k.kind == "guard":       # a failed check: stop before in-place outputs are written
            self.w.line("if (GC_ERR[0]) return;")
            return
        # a failing element records the first failure: kept in order on one thread
        self.parallel_ok = id(k) not in self.sites
        n = k.node
        self.marks.append((len(self.w), k))
        words = [k.kind, n.op.name, f"{n.dtype.short}{list(k.shape)}", k.note]
        self.w.line(f"/* {' '.join(w for w in words if w)} */")
        if k.kind in ("elementwise", "copy"):
            if k.kind == "copy" or k.shape:
                with self.w.block(""):
                    self.elementwise(k)
            else:
                self.elementwise(k)
        else:
            getattr(self, k.kind)(k)

    def render(self) -> str:
        s, w = self.s, self.w
        w.line("/* generated by graphc */")
        checked = sanitize.enabled()
        if checked:
            w.line("#define GC_SANITIZE 1")
        w.line('#include "graphc_rt.h"')
        uses_gemm = any(k.kind == "matmul" for k in s.kernels)
        if uses_gemm:
            w.line('#include "graphc_gemm.h"')
            for t in ("f32", "f64"):
                w.line(f"static graphc_gemm_{t}_fn gc_gemm_{t};")
                w.line(f"static graphc_gemm_update_{t}_fn gc_gemm_update_{t};")
        # the runtime's thread count (graphc_threads.h), read at each parallel loop
        w.line("static const int gc_one_thread = 1;")
        w.line("static const int *gc_threads = &gc_one_thread;")
        w.line("#define GC_THREADS __atomic_load_n(gc_threads, __ATOMIC_RELAXED)")
        with w.block(f"void {LINK}({', '.join(f'intptr_t {p}' for p in LINKED)})"):
            gemms = [p for p in LINKED if p != "threads"]
            for p in gemms:
                w.line(f"gc_gemm_{p} = (graphc_gemm_{p}_fn){p};" if uses_gemm else f"(void){p};")
            w.line("gc_threads = (const int *)threads;")
        for b, value in s.consts:
            flat = value.reshape(-1)
            items = ", ".join(c_literal(x, b.dtype) for x in flat.tolist())
            w.line(f"static const {b.dtype.c} k{b.index}[{b.size}] = {{{items}}};")
        if self.sites:
            w.line(f"#define GC_ERR ((int64_t *)((char *)ws + {s.ws_bytes}))")
        if self.tape is None:
            calls = [f"gc_part{p}(io, (char *)ws);" for p in range(self._parts())]
        else:
            self._tape_program()
            tape_slot = next(b.index for b, v in s.hidden if v is self.tape.rows)
            calls = [f"gc_tape((const int64_t *)io[{tape_slot}], io, (char *)ws);"]
        n_io = len(s.inputs) + len(s.hidden) + len(s.outputs)
        with w.block(f"{'static int gc_run' if checked else 'int ' + ENTRY}"
                     f"({entry_params(s, named=True)})"):
            slots = [f"a{i}" for i in range(n_io)]
            for b in s.inputs:
                if by_value(b):
                    w.line(f"{b.dtype.c} s{b.index} = ({b.dtype.c})a{b.index};")
                    slots[b.index] = f"&s{b.index}"
            if n_io:
                w.line("void *io[] = {" + ", ".join(slots) + "};")
            else:
                w.line("void **io = 0;")
            if self.sites:
                w.line("memset(GC_ERR, 0, 4 * sizeof(int64_t));")
            for call in calls:
                w.line(call)
                if self.sites:
                    w.line("if (GC_ERR[0]) return (int)GC_ERR[0];")
            w.line("(void)io;")
            w.line("return 0;")
        if checked:
            self._allocating_entry()
        self._packed_entry()
        return w.text()

    def _packed_entry(self) -> None:
        """PACKED(args, ws): the entry with each argument in an 8-byte slot of one array (a
        double, an int64_t or a pointer), so graphc._fastcall calls any signature alike."""
        w, s = self.w, self.s
        slots = [f"a[{k}].{'d' if b.dtype.is_float else 'i'}" if by_value(b) else f"a[{k}].p"
                 for k, b in enumerate(s.inputs)]
        start = len(s.inputs)
        slots += [f"a[{start + i}].p" for i in range(len(s.hidden) + len(s.outputs))]
        with w.block(f"int {PACKED}(const void *args, void *ws)"):
            w.line("const union { double d; int64_t i; void *p; } *a = args;")
            w.line("(void)a;")
            w.line(f"return {ENTRY}({', '.join([*slots, 'ws'])});")

    def _allocating_entry(self) -> None:
        """GRAPHC_SANITIZE: the entry mallocs every buffer into the table `ws` points to,
        runs the kernels (gc_run), and frees them (see sanitize.py)."""
        w, s = self.w, self.s
        sizes = sanitized_sizes(s.kernels)
        params = entry_params(s, named=True)
        names = [p.split()[-1].lstrip("*") for p in params.split(", ")]
        with w.block(f"int {ENTRY}({params})"):
            if sizes:
                w.line(f"static const size_t sizes[{len(sizes)}] = "
                       f"{{{', '.join(map(str, sizes))}}};")
                w.line(f"for (int k = 0; k < {len(sizes)}; k++) ((void **)ws)[k] = "
                       "malloc(sizes[k]);")
            w.line(f"int rc = gc_run({', '.join(names)});")
            if sizes:
                w.line(f"for (int k = 0; k < {len(sizes)}; k++) free(((void **)ws)[k]);")
            w.line("return rc;")

    def _tape_program(self) -> None:
        """Natives as functions, their table, then the interpreter (see tape.py)."""
        w = self.w
        for j, k in enumerate(self.tape.natives):
            with self._function(f"static void gc_native_{j}(void **io, char *ws)"):
                w.line("(void)io; (void)ws;")
                self.kernel(k)
        names = [f"gc_native_{j}" for j in range(len(self.tape.natives))] or ["0"]
        w.line("static void (*const gc_natives[])(void **, char *) = {" + ", ".join(names)
               + "};")
        render_cases(w, self.tape.cases, checks=bool(self.sites))

    def _parts(self) -> int:
        """Emit kernels into static functions of at most LINES_PER_PART lines each."""
        w, part = self.w, 0
        kernels = self.s.kernels
        i = 0
        while i < len(kernels) or part == 0:
            with self._function(f"static void gc_part{part}(void **io, char *ws)"):
                w.line("(void)io; (void)ws;")
                start = len(w)
                while i < len(kernels) and len(w) - start < LINES_PER_PART:
                    self.kernel(kernels[i])
                    i += 1
            part += 1
        return part


def parallel_chunk(extents: list[int], work: int) -> int:
    """Outer iterations per parallel chunk of a nest doing `work` element steps (0: serial).
    A single loop is cut into chunks of PAR_CHUNK_ELEMS (so the vectorized body and its scalar
    tail split the same way whatever thread runs a chunk); an outer loop into chunks of about
    that many elements."""
    if work < PAR_MIN_ELEMS or not extents or extents[0] < 2:
        return 0
    chunk = max(1, -(-PAR_CHUNK_ELEMS * extents[0] // work))
    return chunk if -(-extents[0] // chunk) >= 2 else 0


def has_parallel_loops(source: str) -> bool:
    """Whether C source runs loops on OpenMP threads (then it is built with -fopenmp and
    reads the runtime's thread count)."""
    return OMP_PARALLEL in source


def uses_runtime(source: str) -> bool:
    """Whether a generated module calls the runtime's gemm or reads its thread count."""
    return "graphc_gemm.h" in source or has_parallel_loops(source)


def by_value(b: Buffer) -> bool:
    """Scalar float/int inputs are passed as C values: no array, no buffer lookup per call."""
    return b.kind == "in" and b.scalar and b.dtype.kind in "fi"


def entry_params(s: Schedule, named: bool) -> str:
    params = []
    for b in s.inputs:
        t = ("double" if b.dtype.is_float else "int64_t") if by_value(b) else "void *"
        params.append(f"{t} a{b.index}" if named else t)
    n_rest = len(s.hidden) + len(s.outputs)
    start = len(s.inputs)
    params += [f"void *a{start + i}" if named else "void *" for i in range(n_rest)]
    params.append("void *ws" if named else "void *")
    return ", ".join(params)


def tape_threshold() -> int:
    """Graphs with more kernels than this run as a tape (GRAPHC_TAPE_MIN_KERNELS)."""
    value = os.environ.get("GRAPHC_TAPE_MIN_KERNELS", "400")
    try:
        return int(value)
    except ValueError:
        raise GraphcError(f"GRAPHC_TAPE_MIN_KERNELS={value!r}: expected an integer") from None


_OWN_KERNEL = (ELEMENTWISE, REDUCE, CONTRACT, GATHER, SCATTER, SCAN)


def _unfused_bound(graph: Graph) -> int:
    """At least the number of kernels of the unfused schedule (no planning needed)."""
    return len(graph.outputs) + sum(len(n.src) if n.op.name == "concatenate" else 2
                                    for n in graph.nodes)


def _unfused_floor(graph: Graph) -> int:
    """At most the number of kernels of the unfused schedule: a node that computes has one
    of its own there (inputs, constants, views and aliases have none: schedule.py's lower)."""
    return sum(1 for n in graph.nodes
               if n.op.kind in _OWN_KERNEL and n.op.name != "stop_gradient"
               or n.op.name in ("concatenate", "unslice"))


def annotate(source: str, marks: list[tuple[int, Kernel]], graph: Graph) -> str:
    """The C with a comment above each kernel naming its nodes and their source lines. Only
    f.source() shows it: the built C (and so the cache key) stays free of line numbers, so
    one function moved or copied elsewhere reuses its build."""
    lines = source.split("\n")
    labels = graph.labels()
    for at, k in reversed(marks):
        indent = lines[at][:len(lines[at]) - len(lines[at].lstrip())]
        lines[at:at] = [indent + c for c in kernel_origin(k, labels)]
    return "\n".join(lines)


def generate(graph: Graph, fuse: bool = True) -> tuple[str, str, Schedule, list]:
    """C source, cffi cdef and the schedule of a graph. Graphs whose unfused schedule has
    more kernels than the tape threshold run as a tape: small kernels as rows; fused nests of
    at least TAPE_FUSE_MIN elements, run-time checks, scans, gathers and scatters as native
    functions. The others are fused whole (unless `fuse` is off or GRAPHC_DISABLE_PASSES
    names fuse)."""
    fuse = fuse and enabled("fuse")
    # sanitized code addresses buffers through a table (sanitize.py), tape rows by arena
    # offset: sanitized graphs run as straight-line code
    tape = None
    threshold = tape_threshold()
    if not fuse or _unfused_bound(graph) > threshold:
        big = fuse and any(n.size >= TAPE_FUSE_MIN for n in graph.nodes if n.src)
        # the unfused schedule is planned to count its kernels, and is the tape's own unless
        # the tape's is planned anew below: not planned where the count surely passes
        known = ((big or bool(graph.aliases)) and not sanitize.enabled()
                 and _unfused_floor(graph) > threshold)
        sched = None if known else schedule(graph)
        if known or len(sched.kernels) > threshold and not sanitize.enabled():
            # tape rows copy in-place outputs at the end (no direct writes into inputs)
            if big or graph.aliases:
                sched = schedule(graph, fuse=big, min_size=TAPE_FUSE_MIN if big else 0,
                                 direct=False)
            tape = plan_tape(sched)
            sched.stats["tape_rows"] = len(tape.rows) - 1
        elif fuse:
            sched = schedule(graph, fuse=True)
    else:
        sched = schedule(graph, fuse=True)
    check_bounds(sched.kernels)
    emitter = _Emitter(sched, tape)
    source = emitter.render()
    cdef = (f"int {ENTRY}({entry_params(sched, named=False)});\n"
            f"void {LINK}({', '.join('intptr_t' for _ in LINKED)});\n"
            f"int {PACKED}(const void *, void *);\n")
    return source, cdef, sched, emitter.marks
