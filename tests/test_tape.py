"""Tape mode (large graphs run as data by a generated interpreter) against straight-line C."""

import numpy as np
import pytest

import graphc
from bench.workloads import w7


@pytest.fixture
def tape_everywhere(monkeypatch):
    monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", "0")


@pytest.fixture
def never_tape(monkeypatch):
    monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", "1000000")


@pytest.fixture
def symbolic_gradients(monkeypatch):
    """W7's gradient through autodiff and this kernel tape, not the reverse tape
    (tests/test_reverse_tape.py)."""
    monkeypatch.setenv("GRAPHC_REVERSE_TAPE_MIN_NODES", "1000000000")


def _mixed(x, w, labels):
    """Every lowering at once: views, broadcasts, reductions, matmul (a native), concat."""
    h = graphc.tanh(x @ w + 0.5)
    z = graphc.concatenate([h[:, :2] * 3.0, h[:, 2:]], axis=1)
    logp = graphc.log_softmax(z, axis=-1)
    return -(graphc.one_hot(labels, z.shape[1], np.float64) * logp).sum() + z.max(axis=0).sum()


def _mixed_args():
    rng = np.random.default_rng(0)
    return rng.standard_normal((5, 3)), rng.standard_normal((3, 4)), np.array([0, 3, 1, 2, 3])


def _run_mixed():
    return graphc.compile(graphc.value_and_grad(_mixed, (0, 1)))(*_mixed_args())


def _mixed_source():
    return graphc.compile(graphc.value_and_grad(_mixed, (0, 1))).source(*_mixed_args())


def test_tape_matches_straight_line_code(monkeypatch):
    monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", "1000000")
    v1, g1 = _run_mixed()
    monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", "0")
    assert "gc_tape" in _mixed_source()
    v2, g2 = _run_mixed()
    np.testing.assert_allclose(v1, v2, rtol=1e-14)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_w7_value_and_gradient_match_the_reference_backend(symbolic_gradients):
    x = np.random.default_rng(1).uniform(-1, 1, 100)
    f = graphc.value_and_grad(w7(600))
    v, d = graphc.compile(f)(x)
    rv, rd = graphc.compile(f, backend="numpy")(x)
    assert graphc.compile(f).stats(x)["kernels"] > 400       # large enough to run as a tape
    np.testing.assert_allclose(v, rv, rtol=1e-12)
    np.testing.assert_allclose(d, rd, rtol=1e-10, atol=1e-14)


def test_tape_source_does_not_grow_with_the_graph(tape_everywhere, symbolic_gradients):
    x = np.random.default_rng(2).uniform(-1, 1, 100)
    small = graphc.compile(graphc.value_and_grad(w7(40))).source(x, annotated=False)
    large = graphc.compile(graphc.value_and_grad(w7(400))).source(x, annotated=False)
    assert small == large        # same ops, same C: only the tape (data) differs


def test_straight_line_code_for_small_graphs(never_tape):
    src = graphc.compile(lambda a, b: a * b + 1.0).source(np.ones(3), np.ones(3))
    assert "gc_tape" not in src


@pytest.mark.parametrize("train", [False, True], ids=["large nests", "aliased outputs"])
def test_a_tape_with_its_own_schedule_is_scheduled_once(train, monkeypatch):
    """Where the tape plans a schedule of its own (nests of TAPE_FUSE_MIN elements fused, or
    in-place outputs copied at the end), the unfused one is not planned just to count its
    kernels when the count surely passes the threshold; the C is what the count gave."""
    import graphc.codegen.c as codegen
    from graphc.capture import trace_to_graph
    from graphc.passes import optimize
    from graphc.schedule import schedule
    from graphc.train import aliased_graph

    monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", "2")
    x = np.linspace(-1.0, 1.0, codegen.TAPE_FUSE_MIN)
    if train:
        graph = aliased_graph(lambda w, v: [w - 0.1 * graphc.cos(v) * w, w * v], (x[:8], x[:8]),
                              [0])
    else:
        graph = optimize(trace_to_graph(lambda v: graphc.sum(graphc.sin(v) * v + v), (x,))[0])
    plans = []
    monkeypatch.setattr(codegen, "schedule",
                        lambda *a, **kw: plans.append(kw) or schedule(*a, **kw))
    source, _, sched, _ = codegen.generate(graph)
    assert plans == [{"fuse": not train, "min_size": codegen.TAPE_FUSE_MIN if not train else 0,
                      "direct": False}]
    assert sched.stats["tape_rows"] > 0
    monkeypatch.setattr(codegen, "_unfused_floor", lambda graph: 0)     # counted, as before
    assert codegen.generate(graph)[0] == source and len(plans) == 3
