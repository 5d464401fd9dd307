"""Random programs over the whole op registry, for the differential fuzzer (tests/test_fuzz.py).

A `Program` is plain data (inputs, steps, seed), so a shrunk failure prints as a line that
pastes into a regression test. Each step applies one primitive of `graphc.ops.OPS` by name to
earlier values. What a primitive needs is derived from the registry, not from a hand list:

- elementwise ops: the arity is the number of operands of the C template, the operand dtypes
  are those the op's own `infer` rule accepts (probed at import), and operands of different
  shapes are broadcast with the `broadcast_to` primitive;
- reductions take an axes tuple, contractions (matmul) a partner its `infer` accepts;
- movement ops need a static argument of their own shape (`MOVEMENT_ARGS`, one small maker per
  op; `test_every_registry_op_can_be_generated` fails when an op has none);
- alias ops (custom rules) are applied through the public custom-rule functions.

A program is dtype-generic: "F" is the float dtype it runs in (float32 or float64), "I" int64
and "B" bool, so the same program runs in float32 and in the float64 reference.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from hypothesis import strategies as st

import graphc
from graphc import dtypes
from graphc.errors import GraphcError
from graphc.ops import (
    ALIAS,
    CONTRACT,
    ELEMENTWISE,
    GATHER,
    MOVEMENT,
    OPS,
    REDUCE,
    SCAN,
    SCATTER,
    SOURCE,
)

CLASSES = ("F", "B", "I")
LAYOUTS = ("c", "fortran", "strided", "reversed", "transposed")


def resolve(cls: str, fdtype) -> np.dtype:
    return {"F": np.dtype(fdtype), "B": np.dtype(bool), "I": np.dtype(np.int64)}[cls]


def _dtype_class(dt) -> str:
    return "B" if dt is dtypes.bool_ else ("F" if dt.is_float else "I")


def _standin(shape, cls):
    """What an infer rule reads of a Node."""
    return SimpleNamespace(shape=tuple(shape), size=int(np.prod(shape)), ndim=len(shape),
                           dtype=dtypes.from_numpy(resolve(cls, np.float64)))


def _arity(op) -> int:
    templates = op.c.values() if isinstance(op.c, dict) else [op.c]
    found = [int(i) for t in templates if isinstance(t, str) for i in re.findall(r"{(\d+)}", t)]
    return max(found) + 1


def _signatures(op) -> list[tuple[str, ...]]:
    """The operand dtype classes the op's infer rule accepts (probed on shape (2,))."""
    arg = "float64" if op.has_arg else None     # the one elementwise op with an arg is cast
    ok = []
    for sig in itertools.product(CLASSES, repeat=_arity(op)):
        try:
            op.infer(tuple(_standin((2,), c) for c in sig), arg)
        except GraphcError:
            continue
        ok.append(sig)
    return ok


# custom-rule ops are reached through the public functions that create them
@graphc.custom_jvp
def _sin_times_self(x):
    return graphc.sin(x) * x


@_sin_times_self.defjvp
def _sin_times_self_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return _sin_times_self(x), (graphc.cos(x) * x + graphc.sin(x)) * t


ALIAS_FNS = {
    "custom_vjp": (lambda x: graphc.norm(x), lambda shape: ()),
    "custom_jvp": (_sin_times_self, lambda shape: shape),
}


# Ops that may fail at run time (check_index) raise on data the generator cannot keep in
# range without changing values; their checks have tests of their own (test_training's bad
# labels, test_ops_extra's gathers, the registry spec in test_ops). Gathers and scatters get
# in-range indices made from program values (`_indices_like`).
PRIMITIVES = sorted(n for n, op in OPS.items() if op.kind != SOURCE and not op.may_fail)
SIGNATURES = {n: _signatures(OPS[n]) for n in PRIMITIVES if OPS[n].kind == ELEMENTWISE}


@dataclass(frozen=True)
class Program:
    inputs: tuple      # ((shape, layout), ...): float inputs in the program's dtype
    steps: tuple       # ((op name, source indices, arg), ...); values: inputs, then steps
    seed: int          # input values, cotangent weights

    def __str__(self) -> str:
        return f"Program(inputs={self.inputs!r}, steps={self.steps!r}, seed={self.seed})"


# ---------------------------------------------------------------------------- running


def apply_step(name: str, srcs, arg, fdtype):
    """One step on Tracers (graphc) in float dtype `fdtype`."""
    op = OPS[name]
    if op.kind == ALIAS:
        return ALIAS_FNS[name][0](*srcs)
    if name == "cast":
        return op(*srcs, arg=resolve(arg, fdtype))
    return op(*srcs, arg=arg) if op.has_arg else op(*srcs)


def sinks(program: Program) -> list[int]:
    """Values no later step reads: each feeds the loss and the aux outputs."""
    used = {i for _, srcs, _ in program.steps for i in srcs}
    n = len(program.inputs) + len(program.steps)
    return [i for i in range(len(program.inputs), n) if i not in used] or [n - 1]


def weights(program: Program, shapes: dict) -> list[np.ndarray]:
    rng = np.random.default_rng(program.seed + 1)
    return [rng.uniform(0.5, 1.5, shapes[i]) for i in sinks(program)]


def make_inputs(program: Program, fdtype) -> list[np.ndarray]:
    """Values in [-2, 2] (rounded to fdtype), in the program's memory layouts."""
    rng = np.random.default_rng(program.seed)
    return [lay_out(np.asarray(rng.uniform(-2, 2, shape), fdtype), layout)
            for shape, layout in program.inputs]


def lay_out(x: np.ndarray, layout: str) -> np.ndarray:
    """The same values in another memory layout (a view of a bigger buffer where needed)."""
    if x.ndim == 0:
        return x        # np.asfortranarray and np.ascontiguousarray return 1-d for 0-d
    if layout == "fortran":
        return np.asfortranarray(x)
    if layout == "strided":
        big = np.zeros(tuple(2 * d for d in x.shape), x.dtype)
        view = big[tuple(slice(None, None, 2) for _ in x.shape)]
        view[...] = x
        return view
    if layout == "reversed":
        return np.ascontiguousarray(x[(slice(None, None, -1),) * x.ndim])[
            (slice(None, None, -1),) * x.ndim]
    if layout == "transposed":
        return np.ascontiguousarray(x.T).T
    return np.ascontiguousarray(x)


def loss_fn(program: Program, fdtype, w: list[np.ndarray]):
    """sum(out * u) over the sinks, with the sink values as aux."""
    def loss(*xs):
        env = list(xs)
        for name, srcs, arg in program.steps:
            env.append(apply_step(name, [env[i] for i in srcs], arg, fdtype))
        total, aux = 0.0, []
        for i, u in zip(sinks(program), w):
            out = env[i]
            aux.append(out)
            if not out.dtype == np.dtype(fdtype):
                out = OPS["cast"](out, arg=np.dtype(fdtype))
            total = total + graphc.sum(out * u.astype(fdtype))
        return total, tuple(aux)
    return loss


# ---------------------------------------------------------------------------- generating


def _shape_of(v):
    return v[0]


class _Builder:
    """Grows a program step by step, tracking each value's (shape, class)."""

    def __init__(self, draw, inputs):
        self.draw = draw
        self.values = [(tuple(s), "F") for s, _ in inputs]
        self.steps = []

    def add(self, name, srcs, arg=None):
        op = OPS[name]
        if op.kind == ALIAS:
            shape, cls = ALIAS_FNS[name][1](self.values[srcs[0]][0]), "F"
        else:
            stand = tuple(_standin(*self.values[i]) for i in srcs)
            shape, dt = op.infer(stand, resolve(arg, np.float64) if name == "cast" else arg)
            cls = _dtype_class(dt)
        self.steps.append((name, tuple(srcs), arg))
        self.values.append((tuple(shape), cls))
        return len(self.values) - 1

    def pick(self, pred=lambda v: True) -> int | None:
        ok = [i for i, v in enumerate(self.values) if pred(v)]
        return self.draw(st.sampled_from(ok)) if ok else None

    def convert(self, i: int, cls: str) -> int:
        """Value i as class cls, through registry ops (x > -x gives a mixed bool mask)."""
        have = self.values[i][1]
        if have == cls:
            return i
        if have != "F":
            i = self.add("cast", [i], "F")
        if cls == "B":
            return self.add("gt", [i, self.add("neg", [i])])
        return self.add("cast", [i], cls) if cls != "F" else i

    def broadcast(self, i: int, shape) -> int:
        have = self.values[i][0]
        if have == tuple(shape):
            return i
        if len(have) < len(shape):
            i = self.add("reshape", [i], (1,) * (len(shape) - len(have)) + have)
        return self.add("broadcast_to", [i], tuple(shape))


def _compatible(a, b) -> bool:
    try:
        np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return True


def _elementwise(b: _Builder, name: str) -> None:
    sig = b.draw(st.sampled_from(SIGNATURES[name]))
    first = b.pick()
    srcs = [first]
    for _ in sig[1:]:
        srcs.append(b.pick(lambda v: _compatible(v[0], b.values[first][0])))
    shape = np.broadcast_shapes(*(b.values[i][0] for i in srcs))
    srcs = [b.broadcast(b.convert(i, c), shape) for i, c in zip(srcs, sig)]
    arg = b.draw(st.sampled_from(CLASSES)) if name == "cast" else None
    b.add(name, srcs, arg)


def _reduce(b: _Builder, name: str) -> None:
    i = b.pick(lambda v: v[1] != "B")   # numpy sums bools to ints: the wrappers cast first
    shape = b.values[i][0]
    axes = tuple(a for a in range(len(shape)) if b.draw(st.booleans()))
    if name != "sum" and any(shape[a] == 0 for a in axes):
        axes = tuple(a for a in axes if shape[a] != 0)   # numpy raises: see test_bad_inputs
    b.add(name, [i], axes)


def _matmul(b: _Builder, name: str) -> None:
    i = b.pick(lambda v: v[1] == "F")
    shape = b.values[i][0]
    if len(shape) < 2:
        i = b.add("reshape", [i], (1,) * (2 - len(shape)) + shape)
        shape = b.values[i][0]

    def fits(v):
        try:
            OPS[name].infer((_standin(shape, "F"), _standin(*v)), None)
        except GraphcError:
            return False
        return v[1] == "F"
    j = b.pick(fits)
    if j is None or b.draw(st.booleans()):
        perm = tuple(range(len(shape) - 2)) + (len(shape) - 1, len(shape) - 2)
        j = b.add("transpose", [i], perm)
    b.add(name, [i, j])


def _slice_window(draw, shape):
    window = []
    for d in shape:
        step = draw(st.sampled_from([1, 2, -1, -2]))
        if d == 0:
            window.append((0, 1, 0))
            continue
        start = draw(st.integers(0, d - 1))
        room = (d - start + step - 1) // step if step > 0 else start // -step + 1
        window.append((start, step, draw(st.integers(0, room))))
    return tuple(window)


def _unslice_arg(draw, shape):
    in_shape, window = [], []
    for n in shape:
        start, step = draw(st.integers(0, 2)), draw(st.sampled_from([1, 2]))
        in_shape.append(start + step * max(n - 1, 0) + (1 if n else 0) + draw(st.integers(0, 1)))
        window.append((start, step, n))
    return tuple(in_shape), tuple(window)


def _reshape_arg(draw, shape):
    size = int(np.prod(shape))
    options = [(size,), tuple(reversed(shape)), shape + (1,), (1,) + shape]
    if len(shape) >= 2:
        options.append((shape[0] * shape[1],) + shape[2:])
    return draw(st.sampled_from(options))


def _broadcast_arg(draw, shape):
    return tuple(draw(st.sampled_from([0, 1, 2, 3])) if d == 1 else d for d in shape)


MOVEMENT_ARGS = {
    "broadcast_to": _broadcast_arg,
    "reshape": _reshape_arg,
    "transpose": lambda draw, shape: tuple(draw(st.permutations(range(len(shape))))),
    "slice": _slice_window,
    "unslice": _unslice_arg,
}


def _movement(b: _Builder, name: str) -> None:
    if name == "concatenate":
        i = b.pick(lambda v: len(v[0]) >= 1)
        if i is None:
            i = b.add("reshape", [b.pick()], (1,))
        shape, cls = b.values[i]
        axis = b.draw(st.integers(0, len(shape) - 1))
        rest = shape[:axis] + shape[axis + 1:]
        same = [j for j, (s, c) in enumerate(b.values)
                if c == cls and len(s) == len(shape) and s[:axis] + s[axis + 1:] == rest]
        others = b.draw(st.lists(st.sampled_from(same), min_size=1, max_size=2))
        b.add(name, [i, *others], axis)
        return
    i = b.pick()
    b.add(name, [i], MOVEMENT_ARGS[name](b.draw, b.values[i][0]))


def _alias(b: _Builder, name: str) -> None:
    b.add(name, [b.convert(b.pick(), "F")])


def _scan(b: _Builder, name: str) -> None:
    i = b.convert(b.pick(), "F")        # the wrappers scan bools and ints as int64
    if not b.values[i][0]:
        i = b.add("reshape", [i], (1,))
    b.add(name, [i], b.draw(st.integers(0, len(b.values[i][0]) - 1)))


def _indices_like(b: _Builder, i: int, n: int) -> int:
    """int64 indices of value i's shape, data-dependent and in [0, n): 0 or 1 by the sign of
    the value (`x > -x`, duplicates included) where n > 1, else all 0 (`x > x`)."""
    x = b.convert(i, "F")
    mask = b.add("gt", [x, b.add("neg", [x]) if n > 1 else x])
    return b.add("cast", [mask], "I")


def _float_with_axis(b: _Builder) -> tuple[int, int]:
    """A float value of rank >= 1 and one of its axes."""
    i = b.pick(lambda v: len(v[0]) >= 1 and v[1] == "F")
    if i is None:
        i = b.add("reshape", [b.convert(b.pick(), "F")], (1,))
    return i, b.draw(st.integers(0, len(b.values[i][0]) - 1))


def _gather(b: _Builder, name: str) -> None:
    i, axis = _float_with_axis(b)
    n = max(b.values[i][0][axis], 1)     # an empty axis has no index to draw: empty indices
    b.add(name, [i, _indices_like(b, i, n)], axis)


def _scatter(b: _Builder, name: str) -> None:
    i, axis = _float_with_axis(b)
    n = b.draw(st.integers(1, 3))
    b.add(name, [i, _indices_like(b, i, n)], (axis, n))


BY_KIND = {ELEMENTWISE: _elementwise, REDUCE: _reduce, CONTRACT: _matmul, MOVEMENT: _movement,
           ALIAS: _alias, SCAN: _scan, GATHER: _gather, SCATTER: _scatter}


def _shapes(draw, n):
    """n broadcast-compatible shapes of rank 0..4 (dims 0..3; size-1 dims broadcast)."""
    rank = draw(st.integers(0, 4))
    dims = st.one_of(st.integers(1, 3), st.just(0)) if draw(st.integers(0, 9)) == 0 \
        else st.integers(1, 3)
    full = tuple(draw(dims) for _ in range(rank))
    out = []
    for _ in range(n):
        r = draw(st.integers(0, rank))
        out.append(tuple(1 if draw(st.integers(0, 3)) == 0 else d for d in full[rank - r:]))
    return out


@st.composite
def programs(draw, max_steps: int = 8, ops=None) -> Program:
    n_in = draw(st.integers(1, 3))
    inputs = tuple((s, draw(st.sampled_from(LAYOUTS))) for s in _shapes(draw, n_in))
    b = _Builder(draw, inputs)
    for _ in range(draw(st.integers(1, max_steps))):
        name = draw(st.sampled_from(ops or PRIMITIVES))
        BY_KIND[OPS[name].kind](b, name)
    return Program(inputs, tuple(b.steps), draw(st.integers(0, 2**31 - 1)))


# ---------------------------------------------------------------------------- shrinking


def replay(program: Program) -> list[tuple[tuple, str]] | None:
    """Each value's (shape, class), or None if a step is no longer valid."""
    b = _Builder(None, program.inputs)
    try:
        for name, srcs, arg in program.steps:
            b.add(name, srcs, arg)
    except (GraphcError, IndexError, ValueError, TypeError):
        return None
    return b.values


def _without_value(program: Program, v: int, replacement: int | None = None) -> Program:
    """The program with value v (an input or a step) removed: its readers read `replacement`
    instead, later values are renumbered."""
    def renumber(i):
        i = replacement if i == v else i
        return i - 1 if i > v else i
    n_in = len(program.inputs)
    inputs = tuple(x for k, x in enumerate(program.inputs) if k != v)
    steps = tuple((name, tuple(renumber(i) for i in srcs), arg)
                  for k, (name, srcs, arg) in enumerate(program.steps) if n_in + k != v)
    return Program(inputs, steps, program.seed)


def _as_input(program: Program, v: int) -> Program:
    """The program with float value v (a step) read from a new input of its shape instead, so
    the steps that computed it may go."""
    n_in = len(program.inputs)
    shift = {i: (i + 1 if i >= n_in else i) for i in range(n_in + len(program.steps))}
    shift[v] = n_in
    shape = replay(program)[v][0]
    steps = tuple((name, tuple(shift[i] for i in srcs), arg)
                  for k, (name, srcs, arg) in enumerate(program.steps) if n_in + k != v)
    return Program(program.inputs + ((shape, "c"),), steps, program.seed)


def smaller(program: Program):
    """Candidate simplifications (at least one step is kept), roughly smallest first: a sink
    step dropped; a step bypassed (its readers read one of its sources of the same shape and
    class instead); a float step replaced by a new input (its producers may then go); an
    operand rewired to the earliest value of its shape and class; an unread input dropped;
    an input laid out plainly."""
    values = replay(program)
    n_in = len(program.inputs)
    read = {i for _, srcs, _ in program.steps for i in srcs}
    several = len(program.steps) > 1
    for k in range(len(program.steps) - 1, -1, -1):
        if n_in + k not in read and several:
            yield _without_value(program, n_in + k)
    for k in range(len(program.steps) - 1, -1, -1):
        v = n_in + k
        for s in dict.fromkeys(program.steps[k][1]):
            if values[s] == values[v] and several:
                yield _without_value(program, v, s)
    for k, (_, srcs, _) in enumerate(program.steps):
        if values[n_in + k][1] == "F" and n_in + k in read and any(i >= n_in for i in srcs):
            yield _as_input(program, n_in + k)
    for k, (name, srcs, arg) in enumerate(program.steps):
        for p, i in enumerate(srcs):
            first = values.index(values[i])
            if first < i:
                steps = list(program.steps)
                steps[k] = (name, srcs[:p] + (first,) + srcs[p + 1:], arg)
                yield Program(program.inputs, tuple(steps), program.seed)
    for j in range(n_in):
        if j not in read and n_in > 1:
            yield _without_value(program, j)
    for j, (shape, layout) in enumerate(program.inputs):
        if layout != "c":
            inputs = list(program.inputs)
            inputs[j] = (shape, "c")
            yield Program(tuple(inputs), program.steps, program.seed)


def shrink(program: Program, fails, max_tries: int = 400) -> tuple[Program, int]:
    """A smaller program on which `fails(program)` still holds (greedy: the first failing
    candidate of `smaller` is taken, until none fails); returns it and the tries made."""
    tries = 0
    improved = True
    while improved and tries < max_tries:
        improved = False
        for cand in smaller(program):
            if replay(cand) is None:
                continue
            tries += 1
            if fails(cand):
                program, improved = cand, True
                break
    return program, tries
