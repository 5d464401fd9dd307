"""Differential fuzzer: random programs over the whole op registry (tests/fuzzgen.py), each
run through every lowering graphc has and judged against references.

Oracles, per program (loss = sum(out * u) over its sink values, gradients w.r.t. every input):

- C backend against the numpy reference backend (float64, tight), values and gradients;
- straight-line C against tape mode (GRAPHC_TAPE_MIN_KERNELS=0);
- optimize=True against optimize=False, and each pass of `pass_names()` disabled in turn;
- the IR verifier on the traced and on the optimized graph;
- inputs (in C, Fortran, strided, reversed and transposed layouts) unchanged by the call;
- NaN/Inf only where the reference has them;
- float32: rmse(graphc, f64) <= 2 * rmse(numpy backend in float32, f64) + 1e-6 * scale;
- the gradient's directional derivative against central differences of the loss (numpy
  backend, float64): the one oracle that does not trust graphc's own derivative rules;
- torch float64 autograd, where torch is installed, for programs of ops it has.

tests/mutants.py (`make mutants`) plants bugs (graphc/mutants.py) and checks that these
oracles catch each one and that `fuzzgen.shrink` cuts the failure down to a few ops.

CI runs `FUZZ_EXAMPLES` (300, as issue 14 asks) derandomized examples;
`make fuzz N=20000` a long campaign.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
from fuzzgen import (
    ALIAS_FNS,
    MOVEMENT_ARGS,
    PRIMITIVES,
    SIGNATURES,
    Program,
    loss_fn,
    make_inputs,
    programs,
    sinks,
    weights,
)
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

import graphc
import graphc.passes
from graphc.ops import ALIAS, ELEMENTWISE, MOVEMENT, OPS

N_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
TIGHT = dict(rtol=1e-9, atol=1e-12)     # float64, the same math through another lowering
STRAIGHT = "1000000"                    # GRAPHC_TAPE_MIN_KERNELS for straight-line C


def pass_names() -> list[str]:
    """Names GRAPHC_DISABLE_PASSES accepts: the pipeline's passes, then fusion (done while
    scheduling); each is disabled in turn below."""
    from graphc.passes import pipeline
    return [p.name for p in pipeline()] + ["fuse"]


@contextlib.contextmanager
def env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def value_shapes(program: Program) -> dict[int, tuple]:
    from fuzzgen import _Builder
    b = _Builder(None, program.inputs)
    for name, srcs, arg in program.steps:
        b.add(name, srcs, arg)
    return {i: v[0] for i, v in enumerate(b.values)}


def value_and_grad_fn(program: Program, fdtype):
    w = weights(program, value_shapes(program))
    return graphc.value_and_grad(loss_fn(program, fdtype, w),
                                 argnums=tuple(range(len(program.inputs))), has_aux=True)


def run(batch: list[Program], fdtype, backend="c", optimize=True, inputs=None) -> list[list]:
    """Per program, [loss, *sink values, *gradients]. The whole batch is one compiled function
    (one C build: gcc's fixed cost per module dominates small programs); the inputs must
    come back unchanged."""
    xss = [make_inputs(p, fdtype) for p in batch] if inputs is None else inputs
    before = [[x.copy() for x in xs] for xs in xss]
    fns = [value_and_grad_fn(p, fdtype) for p in batch]

    def programs_(*groups):
        return tuple(f(*g) for f, g in zip(fns, groups))
    outs = graphc.compile(programs_, backend=backend, optimize=optimize)(*map(tuple, xss))
    for xs, bs in zip(xss, before):
        for x, b in zip(xs, bs):
            np.testing.assert_array_equal(x, b, err_msg="the call changed its input")
    return [[np.asarray(v) for v in (loss, *aux, *grads)] for (loss, aux), grads in outs]


def agree(got: list, ref: list, what: str, **tol) -> None:
    """Same shapes and dtypes; non-finite only where ref is; finite values close."""
    for k, (g, r) in enumerate(zip(got, ref, strict=True)):
        where = f"{what}: output {k}"
        assert g.shape == r.shape, f"{where}: shape {g.shape} vs {r.shape}"
        assert g.dtype == r.dtype, f"{where}: dtype {g.dtype} vs {r.dtype}"
        if g.dtype.kind != "f":
            np.testing.assert_array_equal(g, r, err_msg=where)
            continue
        bad = ~np.isfinite(g) & np.isfinite(r)
        assert not bad.any(), f"{where}: non-finite where the reference is finite: {g[bad]}"
        both = np.isfinite(g) & np.isfinite(r)
        scale = max(1.0, float(np.max(np.abs(r[both]), initial=0.0)))
        np.testing.assert_allclose(g[both], r[both], rtol=tol["rtol"],
                                   atol=tol["atol"] * scale, err_msg=where)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r), err_msg=f"{where}: NaN mask")


def _rmse(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else 0.0


def agree_f32(got32: list, np32: list, ref64: list, what: str) -> None:
    """float32 judged against float64 by the error numpy itself makes in float32."""
    for k, (g, n, r) in enumerate(zip(got32, np32, ref64, strict=True)):
        where = f"{what}: output {k}"
        assert g.shape == r.shape and g.dtype == n.dtype, where
        if g.dtype.kind != "f":
            continue        # ints and masks from float32 math may differ from float64 ones
        bad = ~np.isfinite(g) & np.isfinite(n)
        assert not bad.any(), f"{where}: non-finite where numpy float32 is finite: {g[bad]}"
        both = np.isfinite(g) & np.isfinite(n) & np.isfinite(r)
        g64, n64, r64 = (a[both].astype(np.float64) for a in (g, n, r))
        scale = max(1.0, float(np.sqrt(np.mean(r64 ** 2))) if r64.size else 1.0)
        err, base = _rmse(g64, r64), _rmse(n64, r64)
        assert err <= 2 * base + 1e-6 * scale, (
            f"{where}: rmse {err:.3g} vs numpy float32's {base:.3g} (scale {scale:.3g})")


def check_verifier(batch: list[Program], fdtype) -> None:
    fns = [value_and_grad_fn(p, fdtype) for p in batch]
    graph = graphc.trace(lambda *groups: tuple(f(*g) for f, g in zip(fns, groups)),
                         *[tuple(make_inputs(p, fdtype)) for p in batch])
    graph.verify(full=True)
    graphc.passes.optimize(graph).verify(full=True)


def agree_all(got, ref, what, batch, check=None, **tol):
    for k, (g, r) in enumerate(zip(got, ref, strict=True)):
        try:
            (check or agree)(g, r, what, **tol)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n  in {batch[k]}") from None


ORACLES = ("c", "tape", "noopt", "f32", "fd", "torch")


def check_batch(batch: list[Program], oracles=ORACLES) -> None:
    """Every oracle on a batch of programs; a failing batch is re-run program by program so
    the message names the one at fault."""
    try:
        _check(batch, oracles)
    except Exception:
        if len(batch) > 1:
            for program in batch:
                _check([program], oracles)
        raise


def check_program(program: Program, oracles=ORACLES) -> None:
    check_batch([program], oracles)


def _check(batch: list[Program], oracles) -> None:
    check_verifier(batch, np.float64)
    try:
        ref = run(batch, np.float64, backend="numpy")
    except ValueError as exc:
        # numpy refuses integers to negative integer powers at run time; graphc's C has no
        # run-time check for it yet (issue 14 item 3 adds data-dependent checks): not judged
        if "negative integer powers" not in str(exc):
            raise
        reject()
    with env(GRAPHC_TAPE_MIN_KERNELS=STRAIGHT):        # a batch may pass the tape threshold
        got = run(batch, np.float64)
    agree_all(got, ref, "C vs numpy backend", batch, **TIGHT)
    if "noopt" in oracles:
        with env(GRAPHC_TAPE_MIN_KERNELS=STRAIGHT):
            agree_all(run(batch, np.float64, optimize=False), got, "optimize=False", batch,
                      **TIGHT)
        for name in pass_names():
            with env(GRAPHC_DISABLE_PASSES=name, GRAPHC_TAPE_MIN_KERNELS=STRAIGHT):
                agree_all(run(batch, np.float64), got, f"pass {name} disabled", batch, **TIGHT)
    if "tape" in oracles:
        with env(GRAPHC_TAPE_MIN_KERNELS="0"):
            agree_all(run(batch, np.float64), got, "tape vs straight-line C", batch, **TIGHT)
    if "f32" in oracles:
        xs32 = [make_inputs(p, np.float32) for p in batch]
        ref64 = run(batch, np.float64, backend="numpy",
                    inputs=[[x.astype(np.float64) for x in xs] for xs in xs32])
        np32 = run(batch, np.float32, backend="numpy")
        c32 = run(batch, np.float32)
        for k, program in enumerate(batch):
            try:
                agree_f32(c32[k], np32[k], ref64[k], "float32")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n  in {program}") from None
    if "fd" in oracles:
        check_finite_differences(batch, got)
    if "torch" in oracles:
        for program, g in zip(batch, got):
            check_torch(program, g)


# ------------------------------------------------------------------ finite-difference oracle

FD_STEPS = (1e-4, 1e-6)
FD_RTOL = 1e-5


def check_finite_differences(batch: list[Program], got: list) -> None:
    """<grad, v> against (L(x + hv) - L(x - hv)) / 2h for a random direction v, in float64 on
    the numpy backend. A mismatch counts only if it holds at both steps of FD_STEPS (beyond
    the rounding error of the loss): a kink or
    a jump (abs, casts, comparisons) crossed by one step is not crossed by the other, and the
    truncation error of a curved loss shrinks 100-fold between them. Skipped: non-finite
    values, and stop_gradient (whose derivative is zero by definition, unlike its values')."""
    xss = [make_inputs(p, np.float64) for p in batch]
    dirs = [[np.random.default_rng(p.seed + 2).uniform(-1, 1, np.shape(x)) for x in xs]
            for p, xs in zip(batch, xss)]
    fns = [loss_fn(p, np.float64, weights(p, value_shapes(p))) for p in batch]
    losses = graphc.compile(lambda *groups: tuple(f(*g)[0] for f, g in zip(fns, groups)),
                            backend="numpy")
    slopes = []
    for h in FD_STEPS:
        up = losses(*[tuple(x + h * v for x, v in zip(xs, vs)) for xs, vs in zip(xss, dirs)])
        down = losses(*[tuple(x - h * v for x, v in zip(xs, vs)) for xs, vs in zip(xss, dirs)])
        slopes.append([(u - d) / (2 * h) for u, d in zip(up, down)])
    for k, (program, g) in enumerate(zip(batch, got)):
        grads = g[len(g) - len(program.inputs):]
        terms = [float(np.sum(gi * vi)) for gi, vi in zip(grads, dirs[k])]
        fd = [s[k] for s in slopes]
        if any(name == "stop_gradient" for name, _, _ in program.steps) or not np.isfinite(
                [*terms, *fd, *(np.sum(np.abs(gi)) for gi in grads)]).all():
            continue
        exact = sum(terms)
        scale = 1.0 + sum(float(np.sum(np.abs(gi * vi))) for gi, vi in zip(grads, dirs[k]))
        # rounding the loss itself costs |L| * eps / h in the quotient (a huge loss hides a
        # small slope)
        noise = [8 * abs(float(g[0])) * np.finfo(np.float64).eps / h for h in FD_STEPS]
        if all(abs(s - exact) > FD_RTOL * scale + e for s, e in zip(fd, noise)):
            raise AssertionError(f"finite differences: directional derivative {exact!r} from the "
                                 f"gradient, {fd} from the loss at steps {FD_STEPS}\n"
                                 f"  in {program}")


# ------------------------------------------------------------------------------ torch oracle

def _torch_ops():
    try:
        import torch
    except (ImportError, OSError):      # absent, or a broken install
        return None
    t = torch

    def reduce(fn):
        return lambda x, arg: fn(x, dim=arg) if arg else x.clone()

    def unslice(g, arg):
        in_shape, window = arg
        out = t.zeros(in_shape, dtype=g.dtype)
        if not in_shape:
            return g.clone()
        return out.index_put(_torch_index(window, in_shape), g) if g.numel() else out

    return {
        "abs": t.abs, "add": t.add, "sub": t.sub, "mul": t.mul, "div": t.div, "neg": t.neg,
        "exp": t.exp, "log": t.log, "sqrt": t.sqrt, "sin": t.sin, "cos": t.cos, "tanh": t.tanh,
        "log1p": t.log1p, "expm1": t.expm1, "erf": t.erf, "sigmoid": t.sigmoid,
        "softplus": t.nn.functional.softplus, "pow": t.pow,
        "sum": reduce(t.sum), "transpose": lambda x, arg: x.permute(arg),
        "reshape": lambda x, arg: x.reshape(arg), "broadcast_to": lambda x, arg: x.expand(arg),
        "concatenate": lambda *xs, arg: t.cat(xs, dim=arg),
        "matmul": t.matmul, "custom_vjp": t.linalg.norm,
        "custom_jvp": lambda x: t.sin(x) * x, "unslice": unslice, "cumsum": t.cumsum,
        "gather": lambda x, idx, arg: t.gather(x, arg, idx),
        "scatter_add": lambda g, idx, arg: t.zeros(
            g.shape[:arg[0]] + (arg[1],) + g.shape[arg[0] + 1:], dtype=g.dtype).scatter_add(
            arg[0], idx, g),
        "gt": t.gt,
        "cast": lambda x, arg: x.to({"F": t.float64, "I": t.int64, "B": t.bool}[arg]),
    }


def _torch_index(window, in_shape=None):
    """A (start, step, count) window as torch index tensors (torch has no negative steps)."""
    import torch
    axes = [torch.arange(count) * step + start for start, step, count in window]
    return tuple(torch.meshgrid(*axes, indexing="ij")) if axes else ()


TORCH = _torch_ops()


def _torch_step(name: str, args: list, arg):
    if name == "slice":
        return (args[0][_torch_index(arg)] if all(c for *_, c in arg)
                else args[0].new_zeros([c for *_, c in arg]))
    if OPS[name].has_arg and OPS[name].kind != ALIAS:
        return (TORCH[name](*args, arg=arg) if name == "concatenate"
                else TORCH[name](*args, arg))
    return TORCH[name](*args)


def check_torch(program: Program, got: list) -> None:
    """Loss and gradients against torch float64 autograd (smooth ops only: the comparison,
    rounding and extremum ops have conventions at ties that differ between the two)."""
    if TORCH is None or any(name not in TORCH and name != "slice"
                            for name, _, _ in program.steps):
        return
    import torch
    xs = [torch.tensor(np.array(x), requires_grad=True)
          for x in make_inputs(program, np.float64)]
    vals = list(xs)
    try:
        for name, srcs, arg in program.steps:
            vals.append(_torch_step(name, [vals[i] for i in srcs], arg))
    except (NotImplementedError, RuntimeError):     # torch refuses some dtype combinations
        return                                      # numpy takes (abs of bool, bool - bool)
    w = weights(program, value_shapes(program))
    loss = sum(torch.sum(vals[i] * torch.as_tensor(u)) for i, u in zip(sinks(program), w))
    loss = torch.as_tensor(loss, dtype=torch.float64)     # 0 when no output has elements
    grads = (torch.autograd.grad(loss, xs, allow_unused=True) if loss.requires_grad
             else [None] * len(xs))           # e.g. every output an empty slice: no path back
    ref = [loss.detach().numpy()] + [vals[i].detach().numpy() for i in sinks(program)] + [
        np.zeros(x.shape) if g is None else g.numpy() for x, g in zip(xs, grads)]
    agree([np.asarray(g, np.float64) for g in got], [np.asarray(r, np.float64) for r in ref],
          "torch", rtol=1e-7, atol=1e-9)


# ------------------------------------------------------------------------------ the tests

def test_every_registry_op_can_be_generated():
    for name in PRIMITIVES:
        kind = OPS[name].kind
        if kind == ELEMENTWISE:
            assert SIGNATURES[name], f"{name}: its infer rule accepts no dtype combination"
        elif kind == MOVEMENT:
            assert name in MOVEMENT_ARGS or name == "concatenate", f"{name}: no arg maker"
        elif kind == ALIAS:
            assert name in ALIAS_FNS, f"{name}: no public function creates it"


def test_fuzz_programs_cover_every_op():
    """The CI examples draw every primitive of the registry at least once."""
    seen = set()

    @settings(max_examples=max(1, N_EXAMPLES // BATCH), derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(programs(), min_size=BATCH, max_size=BATCH), st.sampled_from(["tape", "f32"]))
    def collect(batch, extra):
        seen.update(name for p in batch for name, _, _ in p.steps)
    collect()
    assert seen == set(PRIMITIVES), sorted(set(PRIMITIVES) - seen)


# A gcc build costs 0.3-2 s (cffi's Python.h prologue), far more than a small program, so
# programs run in batches of BATCH, one compiled function each. Every program gets the C
# backend, optimize=False, the verifier and torch; tape mode or float32 (one more build)
# alternate between batches. `make fuzz` (FUZZ_ALL_ORACLES=1) runs every oracle every time.
ALL_ORACLES = os.environ.get("FUZZ_ALL_ORACLES") == "1"
BATCH = int(os.environ.get("FUZZ_BATCH", "10"))      # `make sanitize`: larger, fewer builds


@settings(max_examples=max(1, N_EXAMPLES // BATCH), deadline=None, derandomize=True,
          database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(programs(), min_size=BATCH, max_size=BATCH), st.sampled_from(["tape", "f32"]))
def test_fuzz(batch, extra):
    oracles = ORACLES if ALL_ORACLES else ("c", "noopt", "fd", "torch", extra)
    if os.environ.get("FUZZ_ORACLES"):          # e.g. `make sanitize`: the C builds only
        oracles = tuple(os.environ["FUZZ_ORACLES"].split(","))
    with np.errstate(all="ignore"):
        check_batch(batch, oracles)


# Shrunk failures found by the fuzzer, each fixed.
REGRESSIONS: list[tuple[str, Program]] = [
    # bools are unsigned char in C: add(True, True) stored 2 where numpy has True, and a cast
    # to float then gave 2.0 (fixed in codegen/elements.py)
    ("bool_add_is_logical_or", Program(
        inputs=(((), "fortran"), ((), "c"), ((), "fortran")),
        steps=(("neg", (1,), None), ("gt", (1, 3), None), ("neg", (1,), None),
               ("gt", (1, 5), None), ("add", (4, 6), None), ("abs", (0,), None)), seed=12)),
    ("bool_mul_max_sum_of_masks", Program(
        inputs=(((2, 3), "c"),),
        steps=(("neg", (0,), None), ("gt", (0, 1), None), ("add", (2, 2), None),
               ("maximum", (3, 2), None), ("cast", (4,), "I"), ("sum", (5,), (0, 1))),
        seed=5)),
]


@pytest.mark.parametrize("program", [p for _, p in REGRESSIONS],
                         ids=[n for n, _ in REGRESSIONS])
def test_fuzz_regressions(program):
    with np.errstate(all="ignore"):
        check_program(program)
