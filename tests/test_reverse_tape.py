"""The reverse tape (codegen/scalar_tape.py): value_and_grad/grad of large graphs of float64
scalars run as a forward tape differentiated at run time; everything else falls back to
symbolic autodiff. Each case compares with the symbolic path (threshold out of reach)."""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from bench import problems as P
from bench.workloads import w7
from graphc.native import CRunner
from graphc.ops import composite
from graphc.reverse_tape import ReverseTapeRunner

TIGHT = {"rtol": 1e-12, "atol": 1e-13}


def _both(transform, fn, args, monkeypatch, **kw):
    """(runner of the reverse-tape attempt, its result, the symbolic path's result)."""
    monkeypatch.setenv("GRAPHC_REVERSE_TAPE_MIN_NODES", "0")
    tape = graphc.compile(transform(fn, **kw))
    got = tape(*args)
    monkeypatch.setenv("GRAPHC_REVERSE_TAPE_MIN_NODES", str(10**9))
    ref = graphc.compile(transform(fn, **kw))(*args)
    return type(tape.executable(*args).runner), got, ref


def _close(got, ref):
    gl, rl = graphc.pytree.flatten(got)[0], graphc.pytree.flatten(ref)[0]
    assert len(gl) == len(rl)
    for g, r in zip(gl, rl):
        assert type(g) is type(r)     # a Python float's gradient is a float on both paths
        assert np.shape(g) == np.shape(r) and np.asarray(g).dtype == np.asarray(r).dtype
        tol = TIGHT if np.asarray(g).dtype == np.float64 else {"rtol": 1e-6}
        np.testing.assert_allclose(g, r, **tol)


@pytest.mark.parametrize("stack", [False, True], ids=["chain", "stack"])
def test_w7_matches_symbolic_and_python(stack, monkeypatch):
    x = P.w7_x()
    runner, got, ref = _both(graphc.value_and_grad, w7(40, stack), (x,), monkeypatch)
    assert runner is ReverseTapeRunner
    _close(got, ref)
    monkeypatch.setenv("GRAPHC_REVERSE_TAPE_MIN_NODES", "0")
    f = graphc.compile(graphc.value_and_grad(w7(40, stack)))
    rows = f.stats(x)["tape_rows"]
    assert 40 <= rows <= 60      # 4 rows per 4 ops and the loss (1,000 primitives traced)
    assert f"reverse tape: {rows} rows" in f.source(x)
    said = f.explain(x)
    assert f"a reverse tape of {rows} rows" in said and "optimize=False" not in said
    value, grad = P.w7_python(x, 40)
    np.testing.assert_allclose(float(got[0]), value, rtol=1e-12)
    np.testing.assert_allclose(got[1], grad, rtol=1e-12, atol=1e-13)


def _mixed(params, s, y):
    """Vectors, a scalar, broadcasts, slices, reductions, ties of max, where, comparisons."""
    a, b = params["a"], params["b"]
    z = graphc.concatenate([a[::2] * s, graphc.tanh(b[1:3]) / (1.5 + a[1:2] ** 2)])
    m = graphc.maximum(z[:5], graphc.stack([z[1], z[1], z[0], z[2], z[3]]))
    u = graphc.where(m > 0.1, graphc.exp(-m), graphc.sigmoid(m) - y)
    return (graphc.sum(u * graphc.sqrt(1 + a * a)[:5]) + graphc.max(z) - graphc.min(b)
            + graphc.log1p(graphc.abs(s)) * graphc.sin(y) + graphc.cos(b[0]))


def test_pytrees_argnums_and_grad(monkeypatch):
    params = {"a": np.linspace(-1, 1, 9), "b": np.array([0.3, -0.2, 0.7, 0.7])}
    args = (params, -0.4, 0.25)
    runner, got, ref = _both(graphc.value_and_grad, _mixed, args, monkeypatch, argnums=(0, 2))
    assert runner is ReverseTapeRunner
    _close(got, ref)
    runner, got, ref = _both(graphc.grad, _mixed, args, monkeypatch, argnums=1)
    assert runner is ReverseTapeRunner
    assert type(got) is float       # the gradient of a Python float, as on the symbolic path
    _close(got, ref)


def _specialised(x, s):
    """Each specialised row and its general form beside it: softplus of scalars (a stash for
    the reverse sweep) and of a vector, softmax of 4 side by side, of 4 with a stride, of 5
    and of a broadcast scalar, chains of `+` of 3 to 8 terms (in the row, or an index list),
    a term used twice, a softplus past which no cotangent flows, sums of contiguous and of
    strided elements (W7's stack form sums more than a block of them)."""
    p = [graphc.softplus(x[i] * s) for i in range(4)]
    m4 = graphc.softmax(graphc.stack(p))
    strided = graphc.softmax(x[1:9:2])
    five = graphc.softmax(x[:5] * 3.0)
    flat = graphc.softmax(graphc.broadcast_to(s, (4,)))
    chain = p[0] + p[1] + p[0] + m4[2]
    long = sum(x[i] * p[i % 4] for i in range(8))
    dead = graphc.where(graphc.softplus(s) > 0.5, 1.0, 0.0)
    return (chain * chain + long * 0.5 + graphc.sum(graphc.softplus(x) * strided[0])
            + graphc.sum(five * m4[1]) + flat[3] * x[9] + dead + graphc.sum(x[::3]) * s)


def test_specialised_rows_match_symbolic(monkeypatch):
    x = np.random.default_rng(3).uniform(-3, 3, 10)
    runner, got, ref = _both(graphc.value_and_grad, _specialised, (x, 0.8), monkeypatch,
                             argnums=(0, 1))
    assert runner is ReverseTapeRunner
    _close(got, ref)


def test_a_fused_softmax_leaves_its_inner_nodes_out(monkeypatch):
    """composite.softmax's primitives (as traced where softmax is not kept whole) are one
    SOFTMAX row: its max, exp, sum, the inf guard and its constants get no row and no slot."""
    def f(x):
        return graphc.sum(composite.softmax(x * 2.0) * x)

    x = np.random.default_rng(5).uniform(-2, 2, 6)
    runner, got, ref = _both(graphc.value_and_grad, f, (x,), monkeypatch)
    assert runner is ReverseTapeRunner
    _close(got, ref)
    monkeypatch.setenv("GRAPHC_REVERSE_TAPE_MIN_NODES", "0")
    tape = graphc.compile(graphc.value_and_grad(f)).executable(x).runner.tape
    assert tape.n_rows == 4                      # x * 2, SOFTMAX, * x, sum
    assert tape.init.tolist() == [2.0]           # the guard's inf and 0 are not placed
    assert tape.n_slots == 1 + 6 + 6 + 6 + 6 + 1


def test_an_input_the_output_does_not_need(monkeypatch):
    """An unused input (not among the graph's nodes) still has its place: a zero gradient."""
    def f(x, y, z):
        return graphc.sum(graphc.softplus(x) * z)

    x, y = np.linspace(-1, 1, 5), np.ones(3)
    runner, got, ref = _both(graphc.value_and_grad, f, (x, y, 0.5), monkeypatch,
                             argnums=(0, 1, 2))
    assert runner is ReverseTapeRunner
    _close(got, ref)
    np.testing.assert_array_equal(got[1][1], np.zeros(3))
    np.testing.assert_allclose(got[1][2], float(np.sum(np.logaddexp(0, x))), rtol=1e-12)


def test_inputs_unchanged_and_outputs_owned(monkeypatch):
    monkeypatch.setenv("GRAPHC_REVERSE_TAPE_MIN_NODES", "0")
    f = graphc.compile(graphc.value_and_grad(lambda x: graphc.sum(x * x)))
    x = np.arange(3.0)
    v1, g1 = f(x)
    v2, g2 = f(x)
    assert g1 is not g2 and np.array_equal(x, np.arange(3.0))
    np.testing.assert_array_equal(g1, 2 * x)
    assert float(v1) == 5.0


@pytest.mark.parametrize("case", ["matrix", "float32", "no_tape_case", "has_aux",
                                  "higher_order", "small_graph"])
def test_falls_back(case, monkeypatch):
    """Arguments, ops or transformations the tape does not take keep the symbolic path."""
    x = np.linspace(0.1, 0.9, 4)
    fn, transform, kw = (lambda v: graphc.sum(graphc.sin(v) * v)), graphc.value_and_grad, {}
    if case == "matrix":
        x = x.reshape(2, 2)
    elif case == "float32":
        x = x.astype(np.float32)
    elif case == "no_tape_case":
        fn = lambda v: graphc.sum(graphc.cumsum(v) ** 3)   # noqa: E731
    elif case == "has_aux":
        fn, kw = (lambda v: (graphc.sum(v * v), v[0])), {"has_aux": True}   # noqa: E731
    elif case == "higher_order":
        transform = lambda f: graphc.grad(graphc.grad(lambda v: graphc.sum(v ** 3)))  # noqa
        fn, x = None, 0.7
    if case != "small_graph":
        monkeypatch.setenv("GRAPHC_REVERSE_TAPE_MIN_NODES", "0")
    f = graphc.compile(transform(fn, **kw))
    got = f(x)
    assert type(f.executable(x).runner) is CRunner
    if case == "higher_order":
        np.testing.assert_allclose(got, 6 * 0.7, rtol=1e-12)
    else:
        ref = graphc.compile(transform(fn, **kw), backend="numpy")(x)
        _close(got, ref)


def test_a_declined_trace_is_reused(monkeypatch):
    """A large graph the tape cannot run (cumsum has no tape case) is traced once: the
    symbolic path rebuilds the tape's trace on its own inputs."""
    monkeypatch.setenv("GRAPHC_REVERSE_TAPE_MIN_NODES", "0")
    calls = []

    def fn(v):
        calls.append(1)
        return graphc.sum(graphc.cumsum(v) ** 3) + graphc.sin(v[1]) * 2.0

    x = np.linspace(0.1, 0.9, 4)
    f = graphc.compile(graphc.value_and_grad(fn))
    value, grad = f(x)
    assert len(calls) == 1 and type(f.executable(x).runner) is CRunner
    c = np.cumsum(x)
    np.testing.assert_allclose(float(value), np.sum(c ** 3) + 2 * np.sin(x[1]), rtol=1e-12)
    expected = np.cumsum((3 * c ** 2)[::-1])[::-1]
    expected[1] += 2 * np.cos(x[1])
    np.testing.assert_allclose(grad, expected, rtol=1e-12)


def test_forward_mode_is_unaffected(monkeypatch):
    monkeypatch.setenv("GRAPHC_REVERSE_TAPE_MIN_NODES", "0")
    x, t = np.linspace(0.1, 0.9, 4), np.ones(4)
    out, tangent = graphc.compile(lambda a, b: graphc.jvp(graphc.tanh, (a,), (b,)))(x, t)
    np.testing.assert_allclose(tangent, 1 - np.tanh(x) ** 2, rtol=1e-12)


_W = np.array([0.3, -1.2, 2.0, 0.5])


def _scalars_softmax(v):
    """x[i], stack of scalars and softmax: one node each in the tape's trace (ops/whole.py)."""
    s = graphc.stack([v[0] * v[1], v[2], graphc.sin(v[3]), v[1]])
    return graphc.sum(graphc.softmax(s) * _W)


def _nested(v):
    g = graphc.grad(_scalars_softmax)(v)
    _, t = graphc.jvp(_scalars_softmax, (v,), (v * v,))
    return graphc.sum(g * g * _W) + t * _scalars_softmax(v)


@pytest.mark.parametrize("declined", [False, True], ids=["tape", "declined"])
def test_whole_ops_rules_and_expansion(declined, monkeypatch):
    """Derivatives taken inside the tape's trace apply the whole ops' own rules (reverse, and
    forward by transposition or linearity); a trace the tape declines (cumsum has no case)
    expands them into primitives for the symbolic path."""
    fn = (lambda v: _nested(v) + graphc.sum(graphc.cumsum(v))) if declined else _nested
    x = np.array([0.2, -0.7, 1.1, 0.4])
    runner, got, ref = _both(graphc.value_and_grad, fn, (x,), monkeypatch)
    assert runner is (CRunner if declined else ReverseTapeRunner)
    _close(got, ref)


def test_whole_ops_numpy_references():
    from graphc.interpret import Interpreter
    from graphc.ir import keep_whole

    x = np.array([0.2, -0.7, 1.1, 0.4])
    previous = keep_whole(True)
    try:
        graph = graphc.trace(_scalars_softmax, x)
    finally:
        keep_whole(previous)
    assert {"element", "stack", "softmax"} <= {n.op.name for n in graph.nodes}
    (got,) = Interpreter(graph)([x])
    np.testing.assert_allclose(got, graphc.compile(_scalars_softmax)(x), **TIGHT)


@pytest.mark.parametrize("stack", [False, True], ids=["chain", "stack"])
def test_size_threshold_counts_primitives(stack, monkeypatch):
    """GRAPHC_REVERSE_TAPE_MIN_NODES counts nodes as primitives: a whole softmax, x[i] or
    stack counts as the nodes it expands to (the tape trace has 2-3x fewer)."""
    x = P.w7_x()
    primitives = len(graphc.trace(w7(40, stack), x).nodes)
    monkeypatch.setenv("GRAPHC_REVERSE_TAPE_MIN_NODES", str(int(0.9 * primitives)))
    f = graphc.compile(graphc.value_and_grad(w7(40, stack)))
    assert type(f.executable(x).runner) is ReverseTapeRunner
    monkeypatch.setenv("GRAPHC_REVERSE_TAPE_MIN_NODES", str(int(1.2 * primitives)))
    f = graphc.compile(graphc.value_and_grad(w7(40, stack)))
    assert type(f.executable(x).runner) is CRunner


def test_the_interpreter_built_at_install_is_used_unless_stale(tmp_path, monkeypatch):
    """setup.py builds the interpreter into the package (reverse_tape.prebuild): the first
    tape then runs no compiler; where that build is absent or of other C (an op changed since
    the install), the first use builds it into the disk cache instead. A tiny C source, new
    to the cache, stands for the interpreter's (the same path, without its gcc time)."""
    import os

    from graphc import build, reverse_tape

    token = os.urandom(8).hex()

    def source(value: int) -> tuple[str, str]:
        return f"int gc_probe(void) {{ return {value}; }} /* {token} */\n", "int gc_probe(void);"

    def in_cache(value: int) -> bool:
        return build._entry_dir(build.cache_dir(), build.module_key(*source(value))).exists()

    monkeypatch.setattr(reverse_tape, "PREBUILT", tmp_path / "package" / "_prebuilt")
    monkeypatch.setattr(reverse_tape, "interpreter_source", lambda: source(7))
    reverse_tape.prebuild(str(tmp_path / "package"))
    assert reverse_tape._interpreter.__wrapped__()[1].gc_probe() == 7
    assert not in_cache(7)                                  # no build at first use
    monkeypatch.setattr(reverse_tape, "interpreter_source", lambda: source(8))
    assert build.load_prebuilt(reverse_tape.PREBUILT, *source(8)) is None      # stale
    assert reverse_tape._interpreter.__wrapped__()[1].gc_probe() == 8
    assert in_cache(8)                                      # built at first use
