"""Kernels -> one C translation unit with one exported entry point, built with cffi.

Each elementwise op renders one element from its OpDef.c template; the loops, strided
indexing and reductions around it are written here. Large graphs are split into several
static functions so the compiler never sees one enormous function.
"""

from __future__ import annotations

import math
import os
import threading

import numpy as np

from .. import dtypes
from ..errors import GraphcError
from ..ir import Graph
from ..ops.reduce import BLOCK
from ..runtime import as_array
from ..schedule import Buffer, Kernel, Schedule, View, loop_dims, schedule
from .elements import element_expr, src_dtypes
from .tape import TapePlan, plan_tape, render_cases
from .writer import CWriter

ENTRY = "graphc_entry"
LINES_PER_PART = 2000


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


def _index(offset: int, strides, ivars) -> str:
    terms = [str(offset)] if offset else []
    for s, i in zip(strides, ivars):
        if s == 1:
            terms.append(i)
        elif s:
            terms.append(f"{i} * {s}")
    return " + ".join(terms) or "0"


class _Emitter:
    def __init__(self, sched: Schedule, tape: TapePlan | None = None):
        self.s = sched
        self.tape = tape
        self.w = CWriter()

    def loops(self, shape, views: list[View], var: str = "i", simd: str = ""):
        """Open loops over `shape` (merged where every view allows); returns each view's index
        expression and the number of loops to close. `simd` (e.g. "reduction(+ : acc)") puts
        `#pragma omp simd <simd>` on the innermost loop."""
        extents, strides = loop_dims(shape, views)
        ivars = [f"{var}{k}" for k in range(len(extents))]
        for k, (i, e) in enumerate(zip(ivars, extents)):
            if simd and k == len(extents) - 1:
                self.w.line(f"#pragma omp simd {simd}")
            self.w.open(f"for (long {i} = 0; {i} < {e}; {i}++)")
        return [_index(v.offset, st, ivars) for v, st in zip(views, strides)], len(extents)

    def close(self, depth: int) -> None:
        self.w.close(depth)

    def elementwise(self, k: Kernel) -> None:
        idx, depth = self.loops(k.shape, [k.out] + k.srcs)
        operands = [_load(v, dt, i) for v, dt, i in zip(k.srcs, src_dtypes(k), idx[1:])]
        self.w.line(f"{_ptr(k.out.buf)}[{idx[0]}] = {element_expr(k, operands)};")
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
                (iidx,), n_outer = self.loops(inner_shape, [inner], var="j",
                                              simd="reduction(+ : acc)" if simd_sum else "")
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
        n = k.node
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
        if self.tape is None:
            calls = [f"gc_part{p}(io, (char *)ws);" for p in range(self._parts())]
        else:
            self._tape_program()
            tape_slot = next(b.index for b, v in s.hidden if v is self.tape.rows)
            calls = [f"gc_tape((const int64_t *)io[{tape_slot}], io, (char *)ws);"]
        n_io = len(s.inputs) + len(s.hidden) + len(s.outputs)
        with w.block(f"int {ENTRY}({entry_params(s, named=True)})"):
            slots = [f"a{i}" for i in range(n_io)]
            for b in s.inputs:
                if by_value(b):
                    w.line(f"{b.dtype.c} s{b.index} = ({b.dtype.c})a{b.index};")
                    slots[b.index] = f"&s{b.index}"
            if n_io:
                w.line("void *io[] = {" + ", ".join(slots) + "};")
            else:
                w.line("void **io = 0;")
            for call in calls:
                w.line(call)
            w.line("(void)io;")
            w.line("return 0;")
        return w.text()

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
        render_cases(w, self.tape.cases)

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


def generate(graph: Graph) -> tuple[str, str, Schedule]:
    """C source, cffi cdef and the schedule of a graph."""
    sched = schedule(graph)
    tape = plan_tape(sched) if len(sched.kernels) > tape_threshold() else None
    source = _Emitter(sched, tape).render()
    cdef = (f"int {ENTRY}({entry_params(sched, named=False)});\n"
            "void graphc_set_gemm(intptr_t, intptr_t);\n")
    return source, cdef, sched


class CRunner:
    """Calls the built entry point: fresh output arrays, a shared workspace, one C call
    (`runner.call(leaves)`, generated per signature)."""

    def __init__(self, graph: Graph):
        from ..build import load_module
        self.source, cdef, sched = generate(graph)
        self.ffi, lib = load_module(self.source, cdef)
        if "graphc_gemm.h" in self.source:
            from ..rt import gemm_addresses
            addr = gemm_addresses()
            lib.graphc_set_gemm(addr["f32"], addr["f64"])
        self._entry = getattr(lib, ENTRY)
        self._outs = [(n.shape, n.dtype.np) for n in graph.outputs]
        self._in = [(by_value(b), b.dtype.np, float if b.dtype.is_float else int)
                    for b in sched.inputs]
        # tape, literal pools, big constants: kept alive as exactly the arrays C reads
        self._hidden_keep = [np.ascontiguousarray(v) for _, v in sched.hidden]
        self._hidden = [self.ffi.from_buffer(v) for v in self._hidden_keep]
        self._ws_bytes = max(sched.ws_bytes, 64)
        self._ws, self._ws_ptr = self._new_workspace()
        self._lock = threading.Lock()
        self.stats = {"kernels": len(sched.kernels), "buffers": sched.buffers,
                      "peak_bytes": sched.ws_bytes, **sched.stats}
        self.call = self._make_call()

    def _new_workspace(self):
        raw = np.empty(self._ws_bytes + 64, np.uint8)
        start = (-raw.ctypes.data) % 64
        buf = raw[start:start + self._ws_bytes]
        return buf, self.ffi.from_buffer(buf)

    def _make_call(self):
        """The per-call path as straight-line Python specialised to this signature (no loops
        over arguments): convert inputs, allocate outputs, one C call under the workspace
        lock (a contending thread gets a fresh workspace), return the outputs."""
        ns = {"fb": self.ffi.from_buffer, "entry": self._entry, "empty": np.empty,
              "ndarray": np.ndarray, "as_array": as_array, "lock": self._lock,
              "ws": self._ws_ptr, "new_ws": self._new_workspace, "fail": _entry_failed}
        params, args = [], []
        for k, (scalar, dt, py) in enumerate(self._in):
            params.append(f"a{k}")
            ns[f"D{k}"], ns[f"P{k}"] = dt, py
            if scalar:
                args.append(f"a{k} if type(a{k}) is P{k} else P{k}(a{k})")
            else:
                args.append(f"fb(a{k} if type(a{k}) is ndarray and a{k}.dtype is D{k} and "
                            f"a{k}.flags.c_contiguous else as_array(a{k}, D{k}))")
        for j, h in enumerate(self._hidden):
            ns[f"H{j}"] = h
            args.append(f"H{j}")
        outs = []
        for j, (shape, dt) in enumerate(self._outs):
            ns[f"S{j}"], ns[f"T{j}"] = shape, dt
            outs.append(f"o{j}")
            args.append(f"fb(o{j})")
        call_args = ", ".join(args)
        lines = ["def call(leaves):"]
        if params:
            lines.append(f"    {', '.join(params)}, = leaves")
        lines += [f"    o{j} = empty(S{j}, T{j})" for j in range(len(outs))]
        lines += [f"    args = ({call_args}{',' if args else ''})",
                  "    if lock.acquire(False):",
                  "        try:",
                  "            rc = entry(*args, ws)",
                  "        finally:",
                  "            lock.release()",
                  "    else:",
                  "        rc = entry(*args, new_ws()[1])",
                  "    if rc:",
                  "        fail(rc)",
                  f"    return [{', '.join(outs)}]"]
        exec("\n".join(lines), ns)  # noqa: S102  (source built from this signature only)
        return ns["call"]


def _entry_failed(rc: int):
    raise GraphcError(f"generated code returned error code {rc}")


def build_graph(graph: Graph) -> CRunner:
    return CRunner(graph)
