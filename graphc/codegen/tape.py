"""Tape mode: large graphs become data run by a small generated C interpreter.

Straight-line C costs gcc about half a millisecond per statement, so a graph of 100,000
scalar ops would take minutes to build. Instead, every kernel whose loops collapse to at most
one (the overwhelming majority in big scalar graphs) becomes one row of an int64 tape, passed
to C as a hidden input; the C source holds one `switch` case per distinct (op, dtypes)
signature, rendered from the op's own C template, plus the few kernels that need real loop
nests or gemm as native functions. The C text therefore depends on which ops occur, not on
how many, and builds in a fraction of a second whatever the graph size.

Row layout (int64): [case, n, d_slot, d_off, d_str, s0_slot, s0_off, s0_str, s1..., s2...,
m, s0_inner_str]. A slot < 0 means the workspace arena, otherwise io[slot]; offsets and
strides count elements of the operand's own type.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import dtypes
from ..ops.reduce import BLOCK
from ..schedule import Buffer, Kernel, Schedule, View, loop_dims
from .elements import element_expr, src_dtypes

WIDTH = 16
NATIVE = 0


@dataclass
class TapePlan:
    rows: np.ndarray                 # (n_rows + 1) x WIDTH int64; row 0 holds the row count
    cases: list[tuple]               # case keys in case-number order (case 0 is NATIVE)
    natives: list[Kernel]            # kernels compiled as functions, called from the tape
    pools: dict[dtypes.DType, Buffer]


def single_loops(k: Kernel):
    """The kernel's loops if they collapse to at most one per level (so it fits one tape row):
    (extents, strides) for elementwise kinds, ((outer...), (inner...)) for reductions; else
    None. Checks (ops that may fail) stay native: their failures report the element's
    position, which only their own loop knows."""
    if k.node is not None and k.node.op.may_fail:
        return None
    if k.kind in ("elementwise", "copy", "zero"):
        loops = loop_dims(k.shape, [k.out, *k.srcs])
        return loops if len(loops[0]) <= 1 else None
    if k.kind == "reduce":
        outer_views, inner_view = _reduce_views(k)
        outer = loop_dims(_kept_shape(k), outer_views)
        inner = loop_dims(_axes_shape(k), [inner_view])
        return (outer, inner) if len(outer[0]) <= 1 and len(inner[0]) <= 1 else None
    return None


def _kept_shape(k: Kernel):
    full = k.node.src[0].shape
    return tuple(d for i, d in enumerate(full) if i not in k.node.arg)


def _axes_shape(k: Kernel):
    full = k.node.src[0].shape
    return tuple(full[i] for i in k.node.arg)


def _reduce_views(k: Kernel) -> tuple[list[View], View]:
    src, axes = k.srcs[0], k.node.arg
    kept = [d for d in range(len(k.node.src[0].shape)) if d not in axes]
    outer = [k.out, View(src.buf, src.offset, tuple(src.strides[d] for d in kept), src.literal)]
    inner = View(src.buf, 0, tuple(src.strides[d] for d in axes), src.literal)
    return outer, inner


def case_key(k: Kernel) -> tuple:
    """What the C of a case depends on: the element expression and the operand types."""
    out_t = k.out.buf.dtype
    if k.kind == "zero":
        return ("map", "0", out_t.name, ())
    if k.kind == "reduce":
        red = k.node.op.c
        return ("reduce", red.update, red.init["f" if out_t.is_float else "i"], out_t.name,
                red.blocked and out_t.is_float)
    ins = tuple(dt.name for dt in src_dtypes(k))
    expr = element_expr(k, [f"@{j}" for j in range(len(k.srcs))])
    return ("map", expr, out_t.name, ins)


class _Encoder:
    """Builds the rows. Slots that are only known at the end (outputs move behind the new
    hidden inputs; literal pools get theirs) are recorded as fixups, not resolved per cell."""

    def __init__(self, sched: Schedule):
        self.s = sched
        self.literals: dict[dtypes.DType, list] = {}
        self.cases: dict[tuple, int] = {("native",): NATIVE}
        self.case_of: dict[tuple, int] = {}
        self.natives: list[Kernel] = []
        self.rows: list[list[int]] = []
        self.fixups: list[tuple[int, int, object]] = []   # (row, column, Buffer or DType)

    def operand(self, row: list[int], v: View, dt: dtypes.DType, stride: int) -> None:
        if v.literal is not None:
            pool = self.literals.setdefault(dt, [])
            pool.append(v.literal)
            self.fixups.append((len(self.rows), len(row), dt))
            row += [0, len(pool) - 1, 0]
            return
        b = v.buf
        if b.kind == "ws":
            row += [-1, b.offset // b.dtype.itemsize + v.offset, stride]
            return
        if b.kind == "const":
            raise AssertionError("tape mode moves constant tables into hidden inputs")
        if b.kind == "out":
            self.fixups.append((len(self.rows), len(row), b))
        row += [b.index, v.offset, stride]

    def case(self, k: Kernel) -> int:
        """The case number; the C-relevant signature is memoised per op and dtypes."""
        sig = (k.kind, k.node.op, k.out.buf.dtype, k.node.dtype, tuple(src_dtypes(k)))
        number = self.case_of.get(sig)
        if number is None:
            number = self.cases.setdefault(case_key(k), len(self.cases))
            self.case_of[sig] = number
        return number

    def encode(self, k: Kernel) -> None:
        loops = single_loops(k)
        if loops is None:
            self.natives.append(k)
            self.rows.append([NATIVE, len(self.natives) - 1] + [0] * (WIDTH - 2))
            return
        row = [self.case(k)]
        if k.kind == "reduce":
            (n, (d_st, s_st)), (m, (i_st,)) = _one_loop(loops[0]), _one_loop(loops[1])
            row.append(n)
            self.operand(row, k.out, k.out.buf.dtype, d_st)
            self.operand(row, _reduce_views(k)[0][1], k.node.dtype, s_st)
            row += [0] * 6 + [m, i_st]
        else:
            n, strides = _one_loop(loops)
            row.append(n)
            self.operand(row, k.out, k.out.buf.dtype, strides[0])
            dts = src_dtypes(k) if k.kind != "zero" else []
            for v, dt, st in zip(k.srcs, dts, strides[1:]):
                self.operand(row, v, dt, st)
            row += [0] * (WIDTH - len(row))
        self.rows.append(row)


def _one_loop(loops) -> tuple[int, list[int]]:
    """(extent, one stride per view) of a loop nest of depth 0 or 1."""
    extents, strides = loops
    if not extents:
        return 1, [0] * len(strides)
    return extents[0], [st[0] for st in strides]


def plan_tape(sched: Schedule) -> TapePlan:
    """Encode the schedule's kernels as tape rows. Constant tables, the tape and the literal
    pools all become hidden inputs (so the C text does not depend on them)."""
    n_before = len(sched.hidden)
    for b, value in sched.consts:
        b.kind, b.index = "hidden", len(sched.inputs) + len(sched.hidden)
        sched.hidden.append((b, value))
    sched.consts = []
    enc = _Encoder(sched)
    for k in sched.kernels:
        enc.encode(k)
    first_hidden = len(sched.inputs) + len(sched.hidden)
    rows = np.array([[len(enc.rows)] + [0] * (WIDTH - 1)] + enc.rows, dtype=np.int64)
    sched.hidden.append((Buffer("hidden", first_hidden, dtypes.int64, rows.size), rows))
    pools = {}
    for dt in sorted(enc.literals, key=lambda d: d.name):
        b = Buffer("hidden", first_hidden + 1 + len(pools), dt, len(enc.literals[dt]))
        sched.hidden.append((b, np.array(enc.literals[dt], dtype=dt.np)))
        pools[dt] = b
    for b in sched.outputs:
        b.index += len(sched.hidden) - n_before
    for r, c, ref in enc.fixups:          # row 0 of `rows` holds the count
        rows[r + 1, c] = ref.index if isinstance(ref, Buffer) else pools[ref].index
    cases = [key for key, _ in sorted(enc.cases.items(), key=lambda kv: kv[1])]
    return TapePlan(rows, cases, enc.natives, pools)


def render_cases(w, cases: list[tuple], checks: bool = False) -> None:
    """The interpreter: one switch case per signature, each a single loop. With `checks`,
    the tape stops after a native that recorded a failure in GC_ERR (so no later kernel, in
    particular no in-place copy, runs)."""
    with w.block("static void gc_tape(const int64_t *t, void **io, char *ws)"):
        w.line("long rows = (long)t[0];")
        with w.block("for (long r = 0; r < rows; r++)"):
            w.line(f"t += {WIDTH};")
            with w.block("switch (t[0])"):
                stop = " if (GC_ERR[0]) return;" if checks else ""
                w.line(f"case 0: gc_natives[t[1]](io, ws);{stop} break;")
                for number, key in enumerate(cases[1:], start=1):
                    with w.block(f"case {number}:"):
                        _render_case(w, key)
                        w.line("break;")


def _operand_ptr(t_name: str, field: int, const: bool = True) -> str:
    q = "const " if const else ""
    return (f"(({q}{t_name} *)(t[{field}] < 0 ? (void *)ws : io[t[{field}]]) + t[{field + 1}])")


def _render_case(w, key: tuple) -> None:
    if key[0] == "reduce":
        _, update, init, out_name, blocked = key
        out_t = dtypes.from_numpy(out_name)
        acc_t = "double" if out_t.is_float else "int64_t"
        init = init.format(T=acc_t)
        x = "a[o * t[7] + j * t[15]]"
        w.line(f"{out_t.c} *d = {_operand_ptr(out_t.c, 2, const=False)};")
        w.line(f"const {out_t.c} *a = {_operand_ptr(out_t.c, 5)};")
        with w.block("for (long o = 0; o < t[1]; o++)"):
            w.line(f"{acc_t} acc = {init};")
            if blocked:      # partial sums per block, as the straight-line code (Reduce)
                with w.block(f"for (long jb = 0; jb < t[14]; jb += {BLOCK})"):
                    w.line(f"{acc_t} part = {init};")
                    w.line(f"long je = jb + {BLOCK} < t[14] ? jb + {BLOCK} : t[14];")
                    with w.block("for (long j = jb; j < je; j++)"):
                        w.line(update.format(acc="part", x=x) + ";")
                    w.line(update.format(acc="acc", x="part") + ";")
            else:
                with w.block("for (long j = 0; j < t[14]; j++)"):
                    w.line(update.format(acc="acc", x=x) + ";")
            w.line(f"d[o * t[4]] = ({out_t.c})acc;")
        return
    _, expr, out_name, ins = key
    out_t = dtypes.from_numpy(out_name)
    w.line(f"{out_t.c} *d = {_operand_ptr(out_t.c, 2, const=False)};")
    for j, name in enumerate(ins):
        c_t = dtypes.from_numpy(name).c
        w.line(f"const {c_t} *s{j} = {_operand_ptr(c_t, 5 + 3 * j)};")
    for j in range(len(ins)):
        expr = expr.replace(f"@{j}", f"s{j}[i * t[{7 + 3 * j}]]")
    with w.block("for (long i = 0; i < t[1]; i++)"):
        w.line(f"d[i * t[4]] = {expr};")
