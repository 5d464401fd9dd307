"""Kernels -> one C translation unit with one exported entry point, built with cffi.

Each elementwise op renders one element from its OpDef.c template; the loops, strided
indexing and reductions around it are written here. Large graphs are split into several
static functions so the compiler never sees one enormous function.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .. import dtypes, mutants, sanitize
from ..errors import GraphcError
from ..ir import Graph
from ..ops.reduce import BLOCK
from ..passes import enabled
from ..schedule import (
    Buffer,
    Kernel,
    Schedule,
    View,
    kernel_origin,
    loop_dims,
    sanitized_sizes,
    schedule,
)
from .bounds import check_bounds
from .elements import element_expr, node_expr, src_dtypes
from .tape import TapePlan, plan_tape, render_cases
from .writer import CWriter

ENTRY = "graphc_entry"
LINES_PER_PART = 2000
TAPE_FUSE_MIN = 1024         # in tape mode, nests this large fuse into native functions


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
        self.marks: list[tuple[int, Kernel]] = []     # (line of its C, kernel): annotate()

    def loops(self, shape, views: list[View], var: str = "i", pragma: str = ""):
        """Open loops over `shape` (merged where every view allows); returns each view's index
        expression and the number of loops to close. `pragma` goes before the innermost."""
        extents, strides = loop_dims(shape, views)
        ivars = [f"{var}{k}" for k in range(len(extents))]
        for k, (i, e) in enumerate(zip(ivars, extents)):
            if pragma and k == len(extents) - 1:
                self.w.line(pragma)
            self.w.open(f"for (long {i} = 0; {i} < {e}; {i}++)")
        return [_index(v.offset, st, ivars) for v, st in zip(views, strides)], len(extents)

    def close(self, depth: int) -> None:
        self.w.close(depth)

    def elementwise(self, k: Kernel) -> None:
        idx, depth = self.loops(k.shape, [k.out] + k.srcs)
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
            idx, depth = self.loops(tuple(full[d] for d in kept), [k.out, src_kept])
            self.w.line(f"{acc_t} acc = {init};")
            # a float sum vectorizes only if gcc may reorder it (`omp simd reduction`, built
            # with -fopenmp-simd): each block is then summed in per-lane partials (4 doubles
            # per AVX2 vector) added at the block's end; max/min keep their NaN-propagating
            # scalar order
            simd_sum = red.blocked and dt.is_float
            if blocked:
                iidx, n_outer = self._blocked_loops(inner_shape, inner, acc_t, init, simd_sum)
            else:
                sum_pragma = "#pragma omp simd reduction(+ : acc)" if simd_sum else ""
                (iidx,), n_outer = self.loops(inner_shape, [inner], var="j", pragma=sum_pragma)
            x = _load(src, dt, f"{idx[1]} + {iidx}" if iidx != "0" else idx[1])
            self.w.line(red.update.format(acc="part" if blocked else "acc", x=x) + ";")
            if blocked:
                self.close(1)                                   # the block's elements
                self.w.line(red.update.format(acc="acc", x="part") + ";")
                self.close(1)                                   # the blocks
            self.close(n_outer)
            self.w.line(f"{_ptr(k.out.buf)}[{idx[0]}] = ({dt.c})acc;")
            self.close(depth)

    def _blocked_loops(self, shape, view: View, acc_t: str, init: str, simd: bool = False):
        """Reduction loops whose innermost loop runs in blocks, each summed into `part`
        before joining `acc`. Returns the index and the number of loops outside the blocked
        one; the caller closes the element loop, adds `part`, closes the block loop, then
        those."""
        extents, strides = loop_dims(shape, [view])
        ivars = [f"j{k}" for k in range(len(extents))]
        for i, e in zip(ivars[:-1], extents[:-1]):
            self.w.open(f"for (long {i} = 0; {i} < {e}; {i}++)")
        last, e = ivars[-1], extents[-1]
        self.w.open(f"for (long jb = 0; jb < {e}; jb += {BLOCK})")
        self.w.line(f"{acc_t} part = {init};")
        self.w.line(f"long je = jb + {BLOCK} < {e} ? jb + {BLOCK} : {e};")
        if simd:
            self.w.line("#pragma omp simd reduction(+ : part)")
        self.w.open(f"for (long {last} = jb; {last} < je; {last}++)")
        return _index(0, strides[0], ivars), len(extents) - 1


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
        temps: dict[int, str] = {}
        with w.block(""):
            for line in ptr.pop("decls"):
                w.line(line)
            oidx, odepth = self.loops(tuple(shape[d] for d in kept), outer,
                                      pragma="" if axes else _simd([], []))
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
            if blocked:
                last, e = ivars[-1], extents[-1]
                w.open(f"for (long jb = 0; jb < {e}; jb += {BLOCK})")
                for _, part, acc_t, init in accs:
                    w.line(f"{acc_t} {part} = {init};")
                w.line(f"long je = jb + {BLOCK} < {e} ? jb + {BLOCK} : {e};")
                if simd:
                    w.line(simd)
                w.open(f"for (long {last} = jb; {last} < je; {last}++)")
            idx = [_join(o, _index(0, st, ivars)) for o, st in zip(oidx, strides)]

            def operand(s) -> str:
                if id(s) in temps:
                    return temps[id(s)]
                j = f.loads[id(s)]
                v = k.srcs[j]
                if v.literal is not None:
                    return c_literal(v.literal, s.dtype)
                return f"{ptr[j]}[{idx[j]}]"

            red_j = 0
            for t, n in enumerate(f.nodes):
                if n.op.kind == "reduce":
                    acc, part, _, _ = accs[red_j]
                    w.line(n.op.c.update.format(acc=part if blocked else acc,
                                                x=operand(n.src[0])) + ";")
                    red_j += 1
                    continue
                temps[id(n)] = f"t{t}"
                w.line(f"{n.dtype.c} t{t} = {node_expr(n, [operand(s) for s in n.src])};")
            for j, (n, _) in enumerate(elem, start=len(k.srcs)):
                w.line(f"{ptr[j]}[{idx[j]}] = {temps[id(n)]};")
            if blocked:
                self.close(1)
                for (acc, part, _, _), r in zip(accs, reds):
                    w.line(r.op.c.update.format(acc=acc, x=part) + ";")
                self.close(1)
                self.close(len(extents) - 1)
            else:
                self.close(len(extents))
            for j, ((acc, _, _, _), r) in enumerate(zip(accs, reds)):
                w.line(f"{ptr[len(full) + j]}[{oidx[len(full) + j]}] = ({r.dtype.c}){acc};")
            self.close(odepth)

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
        a, b = k.srcs
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
            self.w.line(f"{fn}({m}, {nn}, {kk}, {pa}, {a.strides[-2]}, {a.strides[-1]}, {pb}, "
                        f"{b.strides[-2]}, {b.strides[-1]}, {_ptr(k.out.buf)} + {idx[0]}, "
                        f"{nn}, 0);")
            self.close(depth)

    def _matrix_ptr(self, v: View, idx: str) -> str:
        if v.literal is not None:
            raise GraphcError("internal: matmul of a scalar constant")
        return f"{_ptr(v.buf, const=True)} + {idx}"

    def kernel(self, k: Kernel) -> None:
        if k.kind == "guard":       # a failed check: stop before in-place outputs are written
            self.w.line("if (GC_ERR[0]) return;")
            return
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
            w.line("static graphc_gemm_f32_fn gc_gemm_f32;")
            w.line("static graphc_gemm_f64_fn gc_gemm_f64;")
        with w.block("void graphc_set_gemm(intptr_t f32, intptr_t f64)"):
            if uses_gemm:
                w.line("gc_gemm_f32 = (graphc_gemm_f32_fn)f32;")
                w.line("gc_gemm_f64 = (graphc_gemm_f64_fn)f64;")
            else:
                w.line("(void)f32; (void)f64;")
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
        return w.text()

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
            with w.block(f"static void gc_native_{j}(void **io, char *ws)"):
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
            with w.block(f"static void gc_part{part}(void **io, char *ws)"):
                w.line("(void)io; (void)ws;")
                start = len(w)
                while i < len(kernels) and len(w) - start < LINES_PER_PART:
                    self.kernel(kernels[i])
                    i += 1
            part += 1
        return part


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


def _unfused_bound(graph: Graph) -> int:
    """At least the number of kernels of the unfused schedule (no planning needed)."""
    return len(graph.outputs) + sum(len(n.src) if n.op.name == "concatenate" else 2
                                    for n in graph.nodes)


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
    if not fuse or _unfused_bound(graph) > tape_threshold():
        sched = schedule(graph)
        if len(sched.kernels) > tape_threshold() and not sanitize.enabled():
            if fuse and any(n.size >= TAPE_FUSE_MIN for n in graph.nodes if n.src):
                sched = schedule(graph, fuse=True, min_size=TAPE_FUSE_MIN)
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
            "void graphc_set_gemm(intptr_t, intptr_t);\n")
    return source, cdef, sched, emitter.marks
