"""The C backend end to end: random programs against torch (or the numpy backend), builds
shared across processes, the disk cache, numerics of reductions, and the call boundary."""

import math
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc

REPO = Path(__file__).resolve().parents[1]

try:
    import torch
except ImportError:          # the comparison falls back to the numpy reference backend
    torch = None

# ---- random programs -------------------------------------------------------------------
# A program is a list of steps applied to a stack of values that starts with the inputs. Each
# step is written once and runs on graphc (tracers) or torch (tensors) through `lib`.

UNARY = {
    "exp": lambda lib, x: lib.exp(x * 0.5),
    "tanh": lambda lib, x: lib.tanh(x),
    "sigmoid": lambda lib, x: lib.sigmoid(x),
    "log": lambda lib, x: lib.log(x * x + 1.0),
    "sqrt": lambda lib, x: lib.sqrt(x * x + 0.5),
    "sin": lambda lib, x: lib.sin(x),
    "neg_square": lambda lib, x: -(x * x),
    "softmax": lambda lib, x: lib.softmax(x, -1),
    "log_softmax": lambda lib, x: lib.log_softmax(x, -1),
    "logsumexp_keep": lambda lib, x: lib.logsumexp(x, -1, True),
    "sum_keep": lambda lib, x: lib.sum(x, 0, True),
    "mean_keep": lambda lib, x: lib.mean(x, -1, True),
    "max_keep": lambda lib, x: lib.max(x, -1, True),
    "transpose_back": lambda lib, x: lib.T(lib.T(x) * 1.5),
    "slice_pad": lambda lib, x: lib.cat([x[..., :1] * 2.0, x[..., 1:]], -1),
}
BINARY = {
    "add": lambda lib, a, b: a + b,
    "mul": lambda lib, a, b: a * b,
    "sub": lambda lib, a, b: a - b,
    "div": lambda lib, a, b: a / (b * b + 1.0),
    "maximum": lambda lib, a, b: lib.maximum(a, b * 0.999 + 0.0001),
    "matmul": lambda lib, a, b: lib.matmul(a, lib.T(b)),
}


class GraphcLib:
    exp, tanh, sigmoid, log, sqrt, sin = (graphc.exp, graphc.tanh, graphc.sigmoid, graphc.log,
                                          graphc.sqrt, graphc.sin)
    maximum, matmul = graphc.maximum, graphc.matmul
    softmax = staticmethod(lambda x, a: graphc.softmax(x, axis=a))
    log_softmax = staticmethod(lambda x, a: graphc.log_softmax(x, axis=a))
    logsumexp = staticmethod(lambda x, a, k: graphc.logsumexp(x, axis=a, keepdims=k))
    sum = staticmethod(lambda x, a, k: graphc.sum(x, axis=a, keepdims=k))
    mean = staticmethod(lambda x, a, k: graphc.mean(x, axis=a, keepdims=k))
    max = staticmethod(lambda x, a, k: graphc.max(x, axis=a, keepdims=k))
    T = staticmethod(lambda x: graphc.swapaxes(x, -1, -2))
    cat = staticmethod(lambda xs, a: graphc.concatenate(xs, axis=a))


class TorchLib:
    if torch is not None:
        exp, tanh, sigmoid, log, sqrt, sin = (torch.exp, torch.tanh, torch.sigmoid, torch.log,
                                              torch.sqrt, torch.sin)
        maximum, matmul = torch.maximum, torch.matmul
        softmax = staticmethod(lambda x, a: torch.softmax(x, a))
        log_softmax = staticmethod(lambda x, a: torch.log_softmax(x, a))
        logsumexp = staticmethod(lambda x, a, k: torch.logsumexp(x, a, keepdim=k))
        sum = staticmethod(lambda x, a, k: torch.sum(x, a, keepdim=k))
        mean = staticmethod(lambda x, a, k: torch.mean(x, a, keepdim=k))
        max = staticmethod(lambda x, a, k: torch.amax(x, a, keepdim=k))
        T = staticmethod(lambda x: torch.swapaxes(x, -1, -2))
        cat = staticmethod(lambda xs, a: torch.cat(xs, a))


def run_program(lib, program, inputs, weights):
    stack = list(inputs)
    for kind, name, i, j in program:
        if kind == "u":
            stack.append(UNARY[name](lib, stack[i % len(stack)]))
        else:
            a, b = stack[i % len(stack)], stack[j % len(stack)]
            if name == "matmul" and (a.ndim != 2 or b.ndim != 2 or a.shape[-1] != b.shape[-1]):
                continue
            try:
                np.broadcast_shapes(tuple(a.shape), tuple(b.shape))
            except ValueError:
                continue
            stack.append(BINARY[name](lib, a, b))
    total = 0.0
    for v, w in zip(stack[len(inputs):] or stack, weights):
        total = total + (v * w).sum()      # every value feeds the loss
    return total


@st.composite
def programs(draw):
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(2, 5))
    n_in = draw(st.integers(1, 3))
    shapes = [draw(st.sampled_from([(rows, cols), (1, cols), (rows, 1), (cols,)]))
              for _ in range(n_in)]
    shapes[0] = (rows, cols)
    steps = draw(st.lists(st.tuples(st.sampled_from(["u", "b"]), st.integers(0, 99),
                                    st.integers(0, 7), st.integers(0, 7)), min_size=1,
                          max_size=6))
    program = [(k, sorted(UNARY)[n % len(UNARY)] if k == "u" else sorted(BINARY)[n % len(BINARY)],
                i, j) for k, n, i, j in steps]
    seed = draw(st.integers(0, 2**31 - 1))
    return shapes, program, seed


def inputs_and_loss(case):
    """A drawn case's inputs, its weights and its program as a loss of the inputs."""
    shapes, program, seed = case
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(-1.5, 1.5, s) for s in shapes]
    weights = [float(w) for w in rng.uniform(0.5, 1.5, len(program) + len(shapes))]

    def loss(*inputs):
        return run_program(GraphcLib, program, inputs, weights)
    return xs, weights, loss


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_programs_match_reference(case):
    check_program(case)


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=programs())
def test_random_programs_match_reference_in_tape_mode(monkeypatch, case):
    monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", "0")
    check_program(case)


def check_program(case):
    program = case[1]
    xs, weights, loss = inputs_and_loss(case)
    value, grads = graphc.compile(graphc.value_and_grad(loss, tuple(range(len(xs)))),
                                  backend="c")(*xs)
    if torch is not None:
        ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
        ref = run_program(TorchLib, program, ts, weights)
        ref.backward()
        ref_value = ref.item()
        ref_grads = [np.zeros_like(x) if t.grad is None else t.grad.numpy()
                     for t, x in zip(ts, xs)]
    else:
        ref_value, ref_grads = graphc.compile(
            graphc.value_and_grad(loss, tuple(range(len(xs)))), backend="numpy")(*xs)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)


# ---- numerics ------------------------------------------------------------------------------

def test_float32_sum_of_a_million_elements():
    x = np.random.default_rng(1).uniform(0, 1, 1_000_000).astype(np.float32)
    got = graphc.compile(lambda v: v.sum())(x)
    exact = np.sum(x.astype(np.float64))
    assert got.dtype == np.float32
    assert abs(float(got) - exact) <= 1e-6 * exact         # float32 rounding of the exact sum
    assert abs(float(got) - float(np.sum(x))) <= 2e-6 * exact


def test_float32_sums_in_float_block_partials_stay_more_accurate_than_numpy():
    """float32 sums add each 128-element block in float (per SIMD lane) and the blocks in
    double: the error stays below numpy's pairwise float32 sum, also for signed values of
    mixed magnitude, a length that is no multiple of the block, and a sum fused into a loop."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(1_000_003) * rng.lognormal(0, 3, 1_000_003)).astype(np.float32)
    exact = math.fsum(x.astype(np.float64))
    scale = float(np.abs(x).astype(np.float64).sum())
    for got in (graphc.compile(lambda v: v.sum())(x),
                graphc.compile(lambda v: (v * 2.0).sum())(x) / np.float32(2)):
        assert got.dtype == np.float32
        err = abs(float(got) - exact)
        assert err <= abs(exact) * 2.0 ** -24 + 1e-8 * scale          # half an ulp + partials
        assert err <= abs(float(np.sum(x)) - exact) + abs(exact) * 2.0 ** -23


@pytest.mark.parametrize("tape", ["0", "1000000"])
def test_float64_sums_are_accurate_in_both_lowerings(tape, monkeypatch):
    import math
    monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", tape)
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, 1_000_003)
    exact = math.fsum(x)
    assert abs(float(graphc.compile(lambda v: v.sum())(x)) - exact) <= 4e-15 * exact
    y = rng.standard_normal((3, 700, 4))          # blocked inner loop inside other loops
    for axis in ((1,), (0, 1), (1, 2), None):
        got = graphc.compile(lambda v, axis=axis: v.sum(axis=axis))(y)
        np.testing.assert_allclose(got, y.sum(axis=axis), rtol=1e-13, atol=1e-13)


def test_nan_and_inf_behave_as_in_numpy():
    x = np.array([np.nan, 1.0, -np.inf, np.inf, 0.0])
    f = graphc.compile(lambda v: (graphc.maximum(v, 0.5), v.max(), graphc.exp(v), v * 0.0))
    with np.errstate(invalid="ignore"):              # inf * 0 is NaN, as expected here
        wants = (np.maximum(x, 0.5), np.max(x), np.exp(x), x * 0.0)
    for got, want in zip(f(x), wants):
        np.testing.assert_array_equal(got, want)


def test_matmul_matches_numpy_both_dtypes_and_layouts():
    rng = np.random.default_rng(2)
    for dt, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        a, b = rng.standard_normal((37, 53)).astype(dt), rng.standard_normal((29, 53)).astype(dt)
        got = graphc.compile(lambda a, b: a @ b.T)(a, b)
        np.testing.assert_allclose(got, a @ b.T, rtol=tol, atol=tol)
        batched = graphc.compile(lambda a, b: graphc.matmul(a, b))(
            rng.standard_normal((3, 4, 5)).astype(dt), rng.standard_normal((5, 2)).astype(dt))
        assert batched.shape == (3, 4, 2) and batched.dtype == dt


# ---- the call boundary ---------------------------------------------------------------------

def test_inputs_of_any_layout_are_read_correctly_and_never_modified():
    f = graphc.compile(lambda x: graphc.tanh(x) * 2.0 + x.sum(axis=0))
    base = np.random.default_rng(3).standard_normal((6, 8))
    views = [base, np.asfortranarray(base), base[::-1], base[:, ::2], base.T.copy().T,
             base.astype(">f8")]
    for v in views:
        v_copy = v.copy()
        np.testing.assert_allclose(f(v), np.tanh(v) * 2.0 + v.sum(axis=0), rtol=1e-14)
        np.testing.assert_array_equal(v, v_copy)
    ro = base.copy()
    ro.flags.writeable = False
    np.testing.assert_allclose(f(ro), np.tanh(ro) * 2.0 + ro.sum(axis=0), rtol=1e-14)


def test_outputs_belong_to_the_caller():
    f = graphc.compile(lambda x: (x * 2.0, x))
    a = np.ones(3)
    first, same = f(a)
    second, _ = f(a * 5)
    np.testing.assert_array_equal(first, 2.0)
    assert same is not a and not np.shares_memory(same, a)
    np.testing.assert_array_equal(second, 10.0)


def test_threads_call_one_compiled_function_at_once():
    f = graphc.compile(lambda x: graphc.softmax(x @ x.T, axis=-1).sum(axis=0))
    xs = [np.random.default_rng(k).standard_normal((64, 32)) for k in range(8)]
    want = [f(x) for x in xs]
    errors = []

    def worker(k):
        for _ in range(50):
            if not np.allclose(f(xs[k]), want[k], rtol=1e-13):
                errors.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_source_and_stats():
    f = graphc.compile(lambda x, y: (x * y + 1.0).sum())
    x = np.ones((2, 3))
    src = f.source(x, x)
    assert '#include "graphc_rt.h"' in src and "graphc_entry" in src
    stats = f.stats(x, x)
    assert {"nodes", "kernels", "buffers", "peak_bytes"} <= set(stats)
    assert all(isinstance(stats[k], int) for k in ("nodes", "kernels", "buffers", "peak_bytes"))
    with pytest.raises(graphc.GraphcError):
        graphc.compile(lambda x: x * 2, backend="numpy").source(x)


# ---- builds across processes ---------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, numpy as np, graphc
    k = float(sys.argv[1])
    f = graphc.compile(lambda x: graphc.tanh(x * k) .sum() + {token})
    print(repr(float(f(np.linspace(-1, 1, 7)))))
""")


def _child(code, token, env, k="0.5"):
    env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.Popen([sys.executable, "-c", code.replace("{token}", token), k], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_four_processes_build_the_same_new_graph(tmp_path):
    token = f"{uuid.uuid4().int % 10**9}.0"          # a graph no cache has seen
    env = {"GRAPHC_CACHE_DIR": str(tmp_path)}
    procs = [_child(CHILD, token, env) for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    want = float(np.tanh(np.linspace(-1, 1, 7) * 0.5).sum() + float(token))
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert float(out) == pytest.approx(want, rel=1e-14)
    assert len([d for d in tmp_path.glob("??/*") if d.is_dir()]) == 1
    assert not any((tmp_path / "tmp").glob("*")) if (tmp_path / "tmp").exists() else True


def test_second_process_starts_from_the_disk_cache(tmp_path):
    token = f"{uuid.uuid4().int % 10**9}.0"
    log = tmp_path / "cc.log"
    cc = tmp_path / "cc.sh"
    cc.write_text('#!/bin/sh\necho "$*" >> "$CC_LOG"\n'
                  'if [ "$1" != "--version" ] && [ -n "$NO_COMPILE" ]; then exit 1; fi\n'
                  'exec gcc "$@"\n')
    cc.chmod(0o755)
    env = {"GRAPHC_CACHE_DIR": str(tmp_path / "cache"), "CC": str(cc), "CC_LOG": str(log)}
    first = _child(CHILD, token, env)
    out1, err1 = first.communicate(timeout=120)
    assert first.returncode == 0, err1
    log.write_text("")
    second = _child(CHILD, token, {**env, "NO_COMPILE": "1"})
    out2, err2 = second.communicate(timeout=120)
    assert second.returncode == 0, err2
    assert out1 == out2
    calls = [line for line in log.read_text().splitlines() if line.strip()]
    assert all(c.strip() == "--version" for c in calls), calls


def test_compiler_failure_is_a_compile_error(tmp_path, monkeypatch):
    cc = tmp_path / "broken-cc"
    cc.write_text('#!/bin/sh\nif [ "$1" = "--version" ]; then echo "broken 1.0"; exit 0; fi\n'
                  'echo "x.c:1:1: error: the compiler is broken" >&2\nexit 1\n')
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", "1000000")   # the constant must be in the C
    token = float(uuid.uuid4().int % 10**6)
    with pytest.raises(graphc.CompileError) as info:
        graphc.compile(lambda x: x * token)(np.ones(2))
    msg = str(info.value)
    assert "the compiler is broken" in msg
    kept = [w for w in msg.split() if w.endswith(".c")]
    assert kept and any(Path(k.strip("'\"(),")).exists() for k in kept), msg


def test_source_names_each_kernels_nodes_and_lines_without_changing_the_built_c():
    def f(x):
        h = graphc.exp(x) * 2.0
        return graphc.cumsum(h, axis=0).sum()

    def g(x):
        h = graphc.exp(x) * 2.0
        return graphc.cumsum(h, axis=0).sum()

    x = np.ones((3, 2))
    fc, gc = graphc.compile(f), graphc.compile(g)
    a, b = fc.source(x), gc.source(x)
    line_f, line_g = f.__code__.co_firstlineno, g.__code__.co_firstlineno
    assert f"test_c_backend.py:{line_f + 1}: " in a and f"test_c_backend.py:{line_f + 2}: " in a
    assert f"test_c_backend.py:{line_g + 1}: " in b and f"test_c_backend.py:{line_f + 1}" not in b
    comments = [s.strip() for s in a.splitlines() if s.strip().startswith("/* from")]
    assert any(" exp" in c and " mul" in c for c in comments)      # the fused loop's nodes
    assert any(c.endswith("cumsum */") for c in comments)
    assert len(comments) == fc.stats(x)["kernels"]
    plain = fc.source(x, annotated=False)         # what is built and cached: no lines in it
    assert plain == gc.source(x, annotated=False) and "/* from" not in plain
    assert fc.executable(x).runner.ffi is gc.executable(x).runner.ffi     # one build, loaded once
    assert [s for s in a.splitlines() if "/* from" not in s] == plain.splitlines()
