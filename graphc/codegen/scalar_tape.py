"""The reverse tape: a forward graph of small values as rows for a prebuilt C interpreter
that runs the forward sweep and then each op's VJP in reverse (csrc/graphc_scalar_tape.h).

For value_and_grad of a huge graph of scalars (W7), symbolic autodiff, the passes and
scheduling cost ~50 µs of Python per node and the result is a tape of ~14 rows per op; a
tape of the forward graph alone, differentiated at run time, is one row per op each way.
Every node gets a place in one flat array of doubles: its slot and a stride (0 for a value
broadcast from one element). Reshapes, broadcasts, 1-d slices and transposes are views
(no row), a concatenate copies its pieces (a view too where they already lie side by
side), every other op is one row. The interpreter's C is rendered from the ops' own
declarations (`c` forward, `tape_vjp` reverse) and does not depend on the graph, so it is
built once and then comes from the disk cache; its scalar math is glibc's (GC_VMATH_LIBM).
Some rows are the interpreter's own, chosen here: a fused softmax (of 4 side by side: one
4-lane exp), a chain of `+` (up to ADD_INLINE terms in the row's cells, no index list), a
scalar softplus that keeps its sigmoid in a stash slot for the reverse sweep (one exp
less: W7's 4 ops cost 1 scalar exp, 1 log1p and one 4-lane exp per evaluation).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from itertools import chain

import numpy as np

from .. import dtypes
from ..ir import Graph, Node
from ..ops import ELEMENTWISE, MOVEMENT, OPS, REDUCE, SOURCE, OpDef, whole
from ..ops.reduce import BLOCK

WIDTH = 10           # int32 cells per row (csrc/graphc_scalar_tape.h)
# the interpreter's own cases (GC_ST_GATHER...), then one per op
GATHER, SOFTMAX, ADDN, SOFTMAX4, SOFTPLUS1, ADD = range(6)
ADD_INLINE = 6       # terms of an ADD row, in its own cells (more: an ADDN row's index list)
LAST_OWN = ADD + ADD_INLINE - 3     # ADD + k - 3: a chain of k terms (3 <= k <= ADD_INLINE)
_VALUE_TYPES = (dtypes.float64, dtypes.bool_)


@dataclass
class ReverseTape:
    cells: np.ndarray           # int32: n_rows rows of WIDTH, then the index lists
    n_rows: int
    init: np.ndarray            # the constants' values: v[0:len(init)] before each run
    layout: np.ndarray          # int64, as gc_scalar_tape reads it
    n_slots: int
    input_sizes: list[int]


class NotTapeable(Exception):
    """The graph has a node the reverse tape cannot run (the caller falls back)."""


def _template(op: OpDef) -> str | None:
    c = op.c.get("f") if isinstance(op.c, dict) else op.c
    return c if isinstance(c, str) and "{arg" not in c and "{pos" not in c else None


def _cased(op: OpDef) -> bool:
    if op.kind == REDUCE:
        return op.tape_vjp is not None
    return (op.kind == ELEMENTWISE and not op.may_fail and _template(op) is not None
            and op.tape_vjp is not None)


@functools.cache
def case_numbers() -> dict[str, int]:
    """A case per op that has one, numbered by name after the interpreter's own (once per
    process: the encoder and the interpreter's C must agree)."""
    return {name: k for k, name in enumerate(sorted(n for n, op in OPS.items() if _cased(op)),
                                              start=LAST_OWN + 1)}


# ---- the interpreter's C ----

def _operands(prefix: str, arity: int, scalar: bool = False) -> list[str]:
    """Element i of each source (element 0 for rows of one element: most rows, and the
    loop costs more than the op there)."""
    return [f"{prefix}{j}[0]" if scalar else f"{prefix}{j}[i * s{j}]" for j in range(arity)]


def _forward_case(op: OpDef, arity: int) -> str:
    if op.kind == REDUCE:
        if op.c.blocked:            # a sum: in blocks and lanes, as graphc's kernels add
            return "d[0] = gc_st_sum(n, a0, s0); break;"
        update = op.c.update
        return ("{ double acc = " + op.c.init["f"] + "; for (long i = 0; i < n; i++) { "
                + update.format(acc="acc", x="a0[i * s0]") + "; } d[0] = acc; } break;")
    template = _template(op)
    one = template.format(*_operands("a", arity, scalar=True), f="", T="double")
    expr = template.format(*_operands("a", arity), f="", T="double")
    return f"if (n == 1) d[0] = {one}; else for (long i = 0; i < n; i++) d[i] = {expr}; break;"


def _reverse_case(op: OpDef, arity: int) -> str:
    rules = [(j, r) for j, r in enumerate(op.tape_vjp or ()) if r is not None]
    if not rules:
        return "break;"
    values = _operands("a", arity)
    if op.kind == REDUCE:
        count = ""
        if any("{count}" in r for _, r in rules):
            count = "long count = 0; for (long i = 0; i < n; i++) count += a0[i * s0] == y[0]; "
        names = {"g": "c", "y": "y[0]", "count": "(double)count"}

        def loop(i: str) -> str:
            body = " ".join(f"g{j}[{i}] += {r.format(f'a0[{i}]', **names)};" for j, r in rules)
            return f"for (long i = 0; i < n; i++) {{ {body} }}"
        # the output's cotangent read once (the loop's stores cannot be to it); contiguous
        # elements in a loop of their own, which gcc vectorizes
        return ("{ const double c = gy[0]; " + count + f"if (s0 == 1) {loop('i')} "
                f"else {loop('i * s0')} }} break;")
    ones = _operands("a", arity, scalar=True)
    one = " ".join(f"g{j}[0] += {r.format(*ones, g='gy[0]', y='y[0]')};" for j, r in rules)
    body = " ".join(f"g{j}[i * s{j}] += {r.format(*values, g='gy[i]', y='y[i]')};"
                    for j, r in rules)
    return f"if (n == 1) {{ {one} }} else for (long i = 0; i < n; i++) {{ {body} }} break;"


def _arity(op: OpDef) -> int:
    if op.kind == REDUCE:
        return 1
    c = _template(op)
    return max((j + 1 for j in range(3) if "{" + str(j) + "}" in c), default=0)


@functools.cache
def interpreter_source() -> tuple[str, str]:
    """(C source, cdef) of the interpreter: one forward and one reverse case per op."""
    forward, reverse = [], []
    for name, k in case_numbers().items():
        op = OPS[name]
        arity = _arity(op)
        forward.append(f"case {k}: {_forward_case(op, arity)}")
        reverse.append(f"case {k}: {_reverse_case(op, arity)}")
    source = "\n".join([
        "/* generated by graphc: the reverse tape interpreter */",
        "#define GC_VMATH_LIBM 1      /* scalar rows: glibc's exp, log1p (graphc_vmath.h) */",
        '#include "graphc_rt.h"',
        f"#define GC_ST_BLOCK {BLOCK}",
        "#define GC_ST_FORWARD_CASES \\\n    " + " \\\n    ".join(forward),
        "#define GC_ST_REVERSE_CASES \\\n    " + " \\\n    ".join(reverse),
        '#include "graphc_scalar_tape.h"', ""])
    cdef = ("double gc_scalar_tape(const int32_t *tape, long rows, const int64_t *layout, "
            "const double *init, void **io, double *v, double *g);")
    return source, cdef


# ---- the encoder ----
# Nodes are numbered by their place in the graph's topological order, and what the passes
# keep per node is a list or bytearray indexed by that number: one dict (node -> number) in
# all, where there were six dicts and sets keyed by node (each a cache miss per lookup once
# the graph outgrows the cache: 100,000 W7 ops encoded in 12-15x the time of 10,000).

def encode(graph: Graph, wrt: list[int]) -> ReverseTape:
    """The rows of `graph` (one float64 scalar output) differentiated with respect to the
    inputs numbered in `wrt`. Raises NotTapeable for a node without a tape case."""
    nodes = graph.nodes
    numbers = dict(zip(nodes, range(len(nodes))))
    number = numbers.__getitem__
    srcs = [tuple(map(number, n.src)) for n in nodes]
    outs = [number(n) for n in graph.outputs]
    order, fused, reached = _needed(nodes, srcs, outs, number)
    slot, stride = [-1] * len(nodes), [1] * len(nodes)
    init: list[float] = []
    for k in order:
        n = nodes[k]
        if n.op.name == "const":
            _check_value(n)
            value = n.arg.value
            slot[k], stride[k] = len(init), 0 if value.size == 1 else 1
            init.extend(value.reshape(-1).astype(np.float64).tolist())
    n_init = top = len(init)
    sizes, inputs = [], []          # an input the output does not need has a slot, no number
    for n in graph.inputs:
        _check_value(n)
        if n.dtype is not dtypes.float64:
            raise NotTapeable(f"input of dtype {n.dtype}")
        k = numbers.get(n)
        if k is not None:
            slot[k] = top
        inputs.append(top)
        sizes.append(n.size)
        top += n.size
    cells: list[int] = []            # the rows, WIDTH cells each
    index: list[int] = []            # GATHER's and ADDN's lists of places, after the rows
    stashed: list[int] = []          # the stash cells of SOFTPLUS1 rows
    cases = case_numbers()
    padding = [0] * WIDTH
    for k in order:
        n = nodes[k]
        op = n.op
        if op.kind == SOURCE:
            if slot[k] < 0:
                raise NotTapeable("a source node that is not an input")
            continue
        shape = n.shape
        if shape or n.dtype is not dtypes.float64:     # all but float64 scalars
            _check_value(n)
            size = n.size
        else:
            size = 1
        f = fused[k]
        if f is not None:
            case, terms = f
            if case == SOFTMAX:
                x = terms[0]
                row = ((SOFTMAX4, 4, top, slot[x], 1) if size == 4 and stride[x] == 1
                       else (SOFTMAX, size, top, slot[x], stride[x]))
            elif len(terms) <= ADD_INLINE:
                row = (ADD + len(terms) - 3, len(terms), top, *[slot[t] for t in terms])
            else:
                row = (ADDN, len(terms), top, len(index))
                index.extend([slot[t] for t in terms])
        elif op.name == "softplus" and size == 1:
            x = srcs[k][0]
            row = (SOFTPLUS1, 1, top, slot[x], stride[x])
            stashed.append(len(cells) + 5)
        elif op.name == "concatenate" or op is whole.stack_p:
            run = _adjacent(n.src, srcs[k], slot, stride)
            if run is not None:          # pieces already side by side: a view, no row
                slot[k], stride[k] = run
                continue
            row = (GATHER, size, top, len(index))
            for s, j in zip(n.src, srcs[k]):
                index.extend(range(slot[j], slot[j] + stride[j] * s.size, stride[j])
                             if stride[j] else [slot[j]] * s.size)
        elif op.kind == MOVEMENT:
            j = srcs[k][0]
            slot[k], stride[k] = _view(n, slot[j], stride[j])
            continue
        else:
            row = _row(n, cases, srcs[k], slot, stride, top)
        cells += row
        cells += padding[:WIDTH - 1 - len(row)]
        cells.append(reached[k])
        slot[k] = top
        top += size
    for k, cell in enumerate(stashed):     # the stashes after every node's slot
        cells[cell] = top + k
    top += len(stashed)
    (out,) = graph.outputs
    if out.shape != () or out.dtype is not dtypes.float64:
        raise NotTapeable("the output is not a float64 scalar")
    out_slot = slot[outs[0]]
    if out_slot < n_init:           # a constant output: the sweep must not write it
        raise NotTapeable("a constant output")
    layout = [top, n_init, out_slot, len(graph.inputs), len(wrt)]
    for at, size in zip(inputs, sizes):
        layout += [at, size]
    for k in wrt:
        layout += [inputs[k], sizes[k]]
    return ReverseTape(np.array(cells + index, dtype=np.int32), len(cells) // WIDTH,
                       np.array(init, dtype=np.float64), np.array(layout, dtype=np.int64),
                       top, sizes)


def _row(n: Node, cases: dict[str, int], srcs: tuple[int, ...], slot: list[int],
         stride: list[int], top: int) -> tuple:
    """The row of an op's own case."""
    op = n.op
    case = cases.get(op.name)
    if case is None or len(srcs) > 3 or (op.kind == REDUCE and n.size != 1):
        raise NotTapeable(f"op {op.name}")
    if n.dtype is dtypes.bool_ and not op.nondiff:
        raise NotTapeable(f"{op.name} of bools")
    cells = [case, n.src[0].size if op.kind == REDUCE else n.size, top]
    for j in srcs:
        cells += (slot[j], stride[j])
    return tuple(cells)


def _needed(nodes: list[Node], srcs: list[tuple[int, ...]], outs: list[int],
            number) -> tuple[list[int], list, bytearray]:
    """One pass from the outputs back: (the numbers of the nodes the outputs need, in
    topological order; per node, None or the (case, sources) of the interpreter's own row
    that computes it, its inner nodes used nowhere else; per node, whether a cotangent
    reaches it). A fused node needs only its row's sources. Cotangents reach the nodes as
    in symbolic autodiff: none passes a comparison or stop_gradient, and only the rows of
    nodes reached run in reverse, so a NaN or inf behind a comparison never turns 0 * NaN
    into the gradient."""
    users = np.bincount(np.fromiter(chain.from_iterable(srcs), np.intp),
                        minlength=len(nodes)).tolist()
    for j in outs:
        users[j] += 1
    live, reached = bytearray(len(nodes)), bytearray(len(nodes))
    fused: list = [None] * len(nodes)
    order = []
    for j in outs:
        live[j] = reached[j] = 1
    for k in range(len(nodes) - 1, -1, -1):
        if not live[k]:
            continue
        order.append(k)
        n = nodes[k]
        f = _fusion(n, k, nodes, srcs, users, number) if n.op in _FUSIBLE else None
        needs = srcs[k] if f is None else f[1]
        fused[k] = f
        for j in needs:
            live[j] = 1
        if not reached[k]:
            continue
        if f is None and n.op.kind != MOVEMENT:
            needs = [j for j, r in zip(needs, n.op.tape_vjp or ()) if r is not None]
        for j in needs:
            reached[j] = 1
    order.reverse()
    return order, fused, reached


def _fusion(y: Node, k: int, nodes: list[Node], srcs: list, users: list[int], number):
    """(case, sources) where one row of the interpreter's own computes y: softmax of a
    vector (whole, or as composite.softmax traces it: exp(x - shift) / sum(exp(x - shift)),
    the shift the guarded, gradient-stopped max of x), or a chain ((a + b) + c) + ... of
    three or more scalars (W7's loss), y its last `+`; else None."""
    op = y.op
    if op is whole.softmax_p:
        return SOFTMAX, srcs[k]
    if op.name == "add":
        if not _scalar_add(y):
            return None
        terms = []
        while True:                 # down the left operands used only by the next `+`
            left, right = srcs[k]
            terms.append(right)
            if users[left] != 1 or not _scalar_add(nodes[left]):
                terms.append(left)
                break
            k = left
        if len(terms) < 3:
            return None
        terms.reverse()
        return ADDN, terms
    if op.name == "div":
        x = _softmax_source(y, lambda n: users[number(n)])
        return None if x is None else (SOFTMAX, [number(x)])
    return None


def _scalar_add(n: Node) -> bool:
    return n.op is _ADD and n.dtype is dtypes.float64 and (not n.shape or n.size == 1)


_ADD = OPS["add"]
_FUSIBLE = (whole.softmax_p, _ADD, OPS["div"])      # the ops _fusion looks at


def _softmax_source(y: Node, users) -> Node | None:
    if len(y.shape) != 1:
        return None
    e, b = y.src
    r = b.src[0] if b.op.name == "broadcast_to" else None
    s = r.src[0] if r is not None and r.op.name == "reshape" else None
    if s is None or s.op.name != "sum" or s.src[0] is not e or e.op.name != "exp":
        return None
    z = e.src[0]
    if z.op.name != "sub" or not _is_max_shift(z.src[1], z.src[0]):
        return None
    if users(e) == 2 and all(users(k) == 1 for k in (b, r, s, z)):
        return z.src[0]
    return None


def _is_max_shift(b: Node, x: Node) -> bool:
    """b = broadcast(where(abs(m) == inf, 0, m)), m = stop_gradient(reshape(max(x)))."""
    w = b.src[0] if b.op.name == "broadcast_to" else None
    if w is None or w.op.name != "where" or w.src[0].op.name != "eq":
        return False
    m = w.src[2]
    r = m.src[0] if m.op.name == "stop_gradient" else None
    mx = r.src[0] if r is not None and r.op.name == "reshape" else None
    return mx is not None and mx.op.name == "max" and mx.src[0] is x and len(x.shape) == 1


def _check_value(n: Node) -> None:
    if n.dtype not in _VALUE_TYPES:
        raise NotTapeable(f"dtype {n.dtype}")
    if len(n.shape) > 1 and n.size > 1:
        raise NotTapeable(f"shape {n.shape}")
    if n.size >= 1 << 30:
        raise NotTapeable("too large")


def _adjacent(pieces: tuple[Node, ...], numbers: tuple[int, ...], slot: list[int],
              stride: list[int]) -> tuple[int, int] | None:
    """The place of the concatenation of pieces that lie one after the other with stride 1
    (W7's stack of the last four nodes, computed in order), else None."""
    end = None
    for s, j in zip(pieces, numbers):
        size = s.size if s.shape else 1
        if (end is not None and slot[j] != end) or (stride[j] != 1 and size != 1):
            return None
        end = slot[j] + size
    return slot[numbers[0]], 1


def _view(n: Node, slot: int, stride: int) -> tuple[int, int]:
    """The place of a movement node that reads its source's elements in place."""
    name, s = n.op.name, n.src[0]
    if name in ("reshape", "transpose") or (name == "broadcast_to" and s.size == n.size):
        return slot, stride
    if name == "broadcast_to" and s.size == 1:
        return slot, 0
    if n.op is whole.element_p:
        return slot + n.arg * stride, stride
    if name == "slice" and len(s.shape) == 1:
        ((start, step, _),) = n.arg
        return slot + start * stride, stride * step
    raise NotTapeable(f"movement {name}")
