"""Fusion and memory planning: what fuses, W4's kernel and memory budget, in-place writes,
no allocation per call, and random programs with each pass disabled in turn (straight-line
and tape), compared with optimize=False on the numpy reference backend.

Tolerances: float64 results agree with the unoptimized reference to 1e-12 (fusion only
reorders blocked partial sums and lets gcc contract a*b+c into fma); fused float32 results
agree with a float64 reference to rtol 1e-5 (a few float32 ulps per op)."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from test_c_backend import inputs_and_loss, programs

import graphc
from bench.workloads import w4
from graphc import compiler
from graphc.capture import trace_to_graph
from graphc.passes import fuse as fuse_module
from graphc.passes.fuse import fuse
from graphc.schedule import schedule, verify_memory

X32 = np.random.default_rng(0).uniform(-2, 2, 1_000_000).astype(np.float32)


def test_w4_is_at_most_two_kernels_with_small_peak_memory():
    f = graphc.compile(graphc.value_and_grad(w4))
    st = f.stats(X32)
    assert st["kernels"] <= 2
    assert st["peak_bytes"] <= 2 * X32.nbytes
    value, grad = f(X32)
    ref_v, ref_g = graphc.compile(graphc.value_and_grad(w4))(X32.astype(np.float64))
    np.testing.assert_allclose(value, ref_v, rtol=1e-5)
    np.testing.assert_allclose(grad, ref_g, rtol=1e-5, atol=1e-6)
    unopt_v, unopt_g = graphc.compile(graphc.value_and_grad(w4), optimize=False)(X32)
    np.testing.assert_allclose(value, unopt_v, rtol=1e-6)
    np.testing.assert_allclose(grad, unopt_g, rtol=1e-5, atol=1e-6)


def test_w4_backward_reads_forward_values_from_registers_not_memory():
    """Issue 11, item 2: the forward values W4's gradient needs (tanh, sigmoid, exp of each
    element) are used inside the one fused loop instead of being stored: no arena, no
    workspace buffer, only the two returned arrays."""
    st = graphc.compile(graphc.value_and_grad(w4)).stats(X32)
    assert (st["kernels"], st["fused_kernels"]) == (1, 1)
    assert (st["peak_bytes"], st["ws_buffers"], st["arena_slots"]) == (0, 0, 0)
    assert st["buffers"] == 2 and st["allocations_per_call"] == 2


def test_tape_mode_runs_large_fused_nests_as_natives(monkeypatch):
    monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", "0")
    x = X32[:5000].astype(np.float64)
    f = graphc.compile(graphc.value_and_grad(w4))
    st = f.stats(x)
    assert st["tape_rows"] == 1 and st["kernels"] == 1 and st["fused_kernels"] == 1
    monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", "1000000")
    ref_v, ref_g = graphc.compile(graphc.value_and_grad(w4), optimize=False)(x)
    value, grad = f(x)
    np.testing.assert_allclose(value, ref_v, rtol=1e-12)
    np.testing.assert_allclose(grad, ref_g, rtol=1e-12, atol=1e-15)


def test_a_call_allocates_only_the_returned_arrays():
    f = graphc.compile(graphc.value_and_grad(lambda x: graphc.sum(graphc.exp(x) * x)))
    x = X32[:200_000]
    f(x)
    tracemalloc.start()
    tracemalloc.reset_peak()
    out = f(x)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    returned = sum(np.asarray(o).nbytes for o in out)
    assert peak < returned + 16_384          # outputs + Python's small objects, no temporaries


def test_sum_of_a_product_never_materializes_the_product():
    f = graphc.compile(lambda x, y: graphc.sum(x * y))
    x, y = np.arange(6.0).reshape(2, 3), np.ones((2, 3))
    st = f.stats(x, y)
    assert st["kernels"] == 1 and st["peak_bytes"] == 0
    assert f(x, y) == 15.0


def test_elementwise_chain_with_broadcasts_and_casts_is_one_loop():
    def f(x, b):
        return graphc.tanh(x.astype(np.float64) * 2.0 + b) - b
    x, b = np.ones((3, 4), np.float32), np.arange(4.0)
    st = graphc.compile(f).stats(x, b)
    assert st["kernels"] == 1 and st["fused_nodes"] == 5
    np.testing.assert_allclose(graphc.compile(f)(x, b), np.tanh(2.0 + b) - b + 0 * x,
                               rtol=1e-15)


def test_row_reductions_fuse_their_producers_and_consumers_run_after():
    def f(x):
        return graphc.softmax(x * 2.0, axis=-1)
    x = np.random.default_rng(1).standard_normal((5, 7))
    c = graphc.compile(f)
    e = np.exp(2 * x - (2 * x).max(-1, keepdims=True))
    np.testing.assert_allclose(c(x), e / e.sum(-1, keepdims=True), rtol=1e-14)
    assert c.stats(x)["kernels"] < graphc.compile(f, optimize=False).stats(x)["kernels"]


def test_backward_fuses_like_forward():
    def f(x, y):
        return graphc.sum(graphc.tanh(x) * y)
    x, y = np.ones((4, 5)), np.full((4, 5), 2.0)
    st = graphc.compile(graphc.value_and_grad(f, (0, 1))).stats(x, y)
    assert st["kernels"] == 1          # value, dx and dy in one loop over x and y
    v, (dx, dy) = graphc.compile(graphc.value_and_grad(f, (0, 1)))(x, y)
    np.testing.assert_allclose(dx, 2 * (1 - np.tanh(1.0) ** 2) * np.ones((4, 5)))
    np.testing.assert_allclose(dy, np.tanh(1.0) * np.ones((4, 5)))


def test_mlp_step_has_fewer_kernels_than_half_its_nodes():
    from bench.workloads import w1_step, w2_step
    for make in (w1_step, w2_step):
        step, args = make()
        st = graphc.compile(step).stats(*args)
        assert st["kernels"] < st["nodes"] / 2


def test_fusion_keeps_the_group_graph_acyclic():
    def f(x):
        a = graphc.exp(x)
        m = graphc.sum(a)              # a reduction in between: b cannot join a's nest
        b = a * m
        return b + a
    x = np.arange(4.0)
    graph = trace_to_graph(f, (x,))[0]
    _, groups = fuse(graph)
    sched = schedule(graph, fuse=True)
    assert len(sched.kernels) == 2 and len(groups) == 2
    np.testing.assert_allclose(graphc.compile(f)(x), np.exp(x) * np.exp(x).sum() + np.exp(x))


def test_elementwise_kernels_write_in_place_over_dying_inputs(monkeypatch):
    monkeypatch.setenv("GRAPHC_DISABLE_PASSES", "fuse")
    f = graphc.compile(lambda x: graphc.sum(graphc.exp(graphc.sin(x) * 2.0) + 1.0))
    x = np.linspace(0, 1, 1000)
    st = f.stats(x)
    assert st["inplace"] >= 2 and st["arena_slots"] == 1
    assert "in place" in f.explain(x)
    np.testing.assert_allclose(f(x), np.sum(np.exp(np.sin(x) * 2.0) + 1.0), rtol=1e-13)


def test_memory_verification_catches_shared_live_bytes():
    graph = trace_to_graph(lambda x: graphc.exp(x) * graphc.sin(x) + graphc.cos(x),
                           (np.ones(100),))[0]
    sched = schedule(graph)
    verify_memory(sched.kernels, sched.inplace)
    bufs = {v.buf for k in sched.kernels for v in k.srcs if v.buf and v.buf.kind == "ws"}
    assert len(bufs) >= 2
    for b in bufs:
        b.offset = 0
    with pytest.raises(AssertionError, match="share bytes"):
        verify_memory(sched.kernels, sched.inplace)


def test_explain_shows_passes_groups_and_memory():
    f = graphc.compile(graphc.value_and_grad(w4))
    text = f.explain(X32[:1000])
    for word in ("pass fold+simplify", "mul_one", "fused 22 nodes", "reducing axes (0,)",
                 "peak_bytes: 0", "allocations per call: 2", "stores"):
        assert word in text, word


# ---- random programs with each pass disabled, in both lowerings -------------------------

CONFIGS = ["", "fold", "simplify", "dce", "fuse", "fold,simplify,dce,fuse", "optimize=False"]


def check_against_unoptimized(case, disable: str, monkeypatch):
    xs, _, loss = inputs_and_loss(case)
    vg = graphc.value_and_grad(loss, tuple(range(len(xs))))
    ref_v, ref_g = graphc.compile(vg, backend="numpy", optimize=False)(*xs)
    if disable != "optimize=False":
        monkeypatch.setenv("GRAPHC_DISABLE_PASSES", disable)
    value, grads = graphc.compile(vg, optimize=disable != "optimize=False")(*xs)
    np.testing.assert_allclose(value, ref_v, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads, ref_g):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)


def _suite(n: int):
    @settings(max_examples=n, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow,
                                     HealthCheck.function_scoped_fixture])
    @given(case=programs())
    def run(monkeypatch, disable, tape, case):
        monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", "0" if tape else "1000000")
        check_against_unoptimized(case, disable, monkeypatch)
    return run


@pytest.mark.parametrize("tape", [False, True], ids=["straight", "tape"])
@pytest.mark.parametrize("disable", CONFIGS)
def test_random_programs_with_passes_disabled(monkeypatch, disable, tape):
    _suite(6)(monkeypatch, disable, tape)


@pytest.mark.slow
@pytest.mark.parametrize("tape", [False, True], ids=["straight", "tape"])
@pytest.mark.parametrize("disable", CONFIGS)
def test_random_programs_with_passes_disabled_long(monkeypatch, disable, tape):
    _suite(60)(monkeypatch, disable, tape)


def test_deep_chains_fuse_without_recursion():
    def chain(x):
        for k in range(6_000):      # 9,000 nodes: far past Python's recursion limit
            x = graphc.tanh(x) * 1.0001 if k % 2 else x + 0.5
        return graphc.sum(x)
    graph = trace_to_graph(chain, (np.ones(4),))[0]
    sched = schedule(graph, fuse=True)
    assert len(sched.kernels) <= 9_001 // 256 * 2 + 2          # groups of at most 256 nodes
    assert all(k.kind == "fused" for k in sched.kernels)


def test_fusion_never_builds_a_cycle_through_a_group_that_spans_the_merge():
    """Found through the MPI gradient graph: a group starting before two siblings and ending
    after them (it waits for one of them) must stop their horizontal merge."""
    from graphc import nn
    model = nn.MLP((6, 8, 4), activation="tanh", seed=7, dtype=np.float64)

    def f(p, x, y):
        loss, g = graphc.value_and_grad(lambda p: nn.cross_entropy(model.apply(p, x), y))(p)
        return graphc.concatenate([graphc.reshape(v, (-1,)) for v in (*g.values(), loss)])

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(16, 6)), rng.integers(0, 4, 16)
    want = graphc.compile(f, backend="numpy", optimize=False)(model.params, x, y)
    np.testing.assert_allclose(graphc.compile(f)(model.params, x, y), want, rtol=1e-12,
                               atol=1e-15)


def test_a_reduction_over_no_axes_never_joins_a_fused_loop():
    """Shrunk by the fuzzer: min over axes () joined min over axis 0 of the same input
    horizontally, and was then reduced over axis 0 too."""
    from graphc.ops import OPS
    from graphc.trace import to_tracer

    def f(x):
        return OPS["min"](to_tracer(x), arg=(0,)), OPS["min"](to_tracer(x), arg=())

    x = np.array([0.25, -1.5])[::-1]
    low, same = graphc.compile(f)(x)
    assert low == -1.5
    np.testing.assert_array_equal(same, x)


def test_a_reduction_over_no_axes_never_feeds_its_own_group():
    """Shrunk by the fuzzer: max over axes () of a 0-d value has the nest of an elementwise
    op, so horizontal fusion joined it with its own users; its value only exists after the
    loop."""
    from graphc.ops import OPS
    from graphc.trace import to_tracer

    def loss(x):
        return graphc.sum(OPS["max"](to_tracer(x), arg=()) * 0.7)

    value, grad = graphc.compile(graphc.value_and_grad(loss))(np.float64(-0.5))
    assert value == -0.35 and grad == 0.7


def test_a_broadcast_scalar_is_read_once_before_the_fused_loop():
    """An Adam-style update divides by a scalar another kernel just stored. Read inside the
    loop, gcc left the loop scalar; the fused kernel reads it once into a local instead."""
    def step(p, g, t):
        scale = 1 - 0.9 ** t                       # one kernel, stored in the arena
        return p - 1e-3 * (0.1 * g / scale) / (graphc.sqrt(g * g / scale) + 1e-8)
    rng = np.random.default_rng(2)
    p, g = rng.standard_normal(300).astype(np.float32), rng.standard_normal(300).astype(np.float32)
    t = np.float32(3.0)
    f = graphc.compile(step)
    src = f.source(p, g, t)
    loop = src.index("for (long i0 = 0; i0 < 300; i0++)")
    read = src.rindex("const float s", 0, loop)
    assert "[i0]" not in src[read:loop] and src[read:loop].count("const float s") == 1
    assert "/ s" in src[loop:src.index("}", loop)]
    np.testing.assert_array_equal(f(p, g, t), graphc.compile(step, optimize=False)(p, g, t))


def _logits_softmax_sum(x, b):
    z = x + b                                    # cheap: read by the max and the sum nests
    e = graphc.exp(z - graphc.max(z, axis=1, keepdims=True))
    return graphc.sum(e, axis=1)


def _plan(fn, *args, max_flops=None, monkeypatch=None):
    if max_flops is not None:
        monkeypatch.setenv("GRAPHC_WARM_START", "0")   # a patched plan: no records
        monkeypatch.setattr(fuse_module, "RECOMPUTE_MAX_FLOPS", max_flops)
    return schedule(trace_to_graph(fn, args)[0], fuse=True)


def test_a_cheap_value_two_nests_read_is_recomputed_not_stored(monkeypatch):
    """Issue 11, item 2 across nests: x + b feeds a row max and, in another nest, a row sum.
    Stored, it costs a buffer (a store and a load per element); recomputed in the sum's nest
    (1 flop), it is never written."""
    rng = np.random.default_rng(4)
    x, b = rng.standard_normal((6, 5)), rng.standard_normal(5)
    after = _plan(_logits_softmax_sum, x, b)
    before = _plan(_logits_softmax_sum, x, b, max_flops=0, monkeypatch=monkeypatch)
    assert len(after.kernels) == len(before.kernels) == 2
    assert after.stats["ws_buffers"] == before.stats["ws_buffers"] - 1
    assert before.ws_bytes - after.ws_bytes >= x.nbytes      # z (6x5 doubles) is gone
    adds = [sum(n.op.name == "add" for n in k.fused.nodes) for k in after.kernels]
    assert adds == [1, 1]                        # computed in both nests
    z = x + b
    want = np.exp(z - z.max(1, keepdims=True)).sum(1)
    np.testing.assert_allclose(graphc.compile(_logits_softmax_sum)(x, b), want, rtol=1e-14)


def test_a_relu_mask_is_read_back_from_the_output_not_stored(monkeypatch):
    """The backward pass of relu(x) @ v reads (h <= 0) from h = relu(x), which the product
    stores anyway, instead of a byte mask the forward nest would store beside it: no bool
    buffer, and values and gradients bit for bit those of the stored mask, at 0, -0.0, NaN
    and +-inf too."""
    def f(x, v):
        return graphc.sum((graphc.relu(x) @ v) ** 2)     # the mask's reader waits for h
    vg = graphc.value_and_grad(f, argnums=(0, 1))
    rng = np.random.default_rng(7)
    x, v = rng.standard_normal((8, 6)), rng.standard_normal((6, 3))
    x[0, :5] = [0.0, -0.0, np.nan, np.inf, -np.inf]
    graph = trace_to_graph(vg, (x, v))[0]

    def masks(sched):
        return sum(v.buf.kind == "ws" and v.buf.dtype.name == "bool"
                   for k in sched.kernels for v in k.outs() if v.buf is not None)
    runs = []
    for stored_mask in (False, True):
        if stored_mask:             # a patched plan: no records, and no runner built before
            monkeypatch.setenv("GRAPHC_WARM_START", "0")
            monkeypatch.setattr(fuse_module, "masks_from_outputs", lambda g, _: (g, frozenset()))
            monkeypatch.setattr(compiler, "_RUNNERS", type(compiler._RUNNERS)())
        runs.append((masks(schedule(graph, fuse=True)), graphc.compile(vg)(x, v)))
    (after, got), (before, want) = runs
    assert after == 0 and before == 1
    np.testing.assert_array_equal(got[0], want[0])
    for g, w in zip(got[1], want[1]):
        np.testing.assert_array_equal(g, w)
    assert np.isnan(got[1][0][0, 2]) and got[1][0][0, 1] == 0 and got[1][0][0, 0] == 0


def test_a_transcendental_is_never_computed_twice_per_element():
    def f(x, b):
        return _logits_softmax_sum(graphc.exp(x), b)      # exp(x) + b: the chain holds exp
    rng = np.random.default_rng(5)
    x, b = rng.standard_normal((6, 5)), rng.standard_normal(5)
    sched = _plan(f, x, b)
    exps = sum(n.op.name == "exp" and n.src[0].op.name == "input" for k in sched.kernels
               for n in (k.fused.nodes if k.fused else [k.node]))
    assert exps == 1
    z = np.exp(x) + b
    want = np.exp(z - z.max(1, keepdims=True)).sum(1)
    np.testing.assert_allclose(graphc.compile(f)(x, b), want, rtol=1e-14)


def test_recomputation_stops_at_its_flop_bound(monkeypatch):
    def f(x, b):
        z = x + b
        for _ in range(9):                       # 10 flops per element: past the bound of 8
            z = z * 1.5 + b
        e = graphc.exp(z - graphc.max(z, axis=1, keepdims=True))
        return graphc.sum(e, axis=1)
    rng = np.random.default_rng(6)
    x, b = rng.standard_normal((6, 5)), rng.standard_normal(5)
    assert fuse_module.recompute_flops(trace_to_graph(lambda x: x * 2.0, (x,))[0].outputs[0]) == 1
    stored = _plan(f, x, b)
    assert stored.stats["ws_buffers"] == _plan(f, x, b, max_flops=0,
                                               monkeypatch=monkeypatch).stats["ws_buffers"]
    monkeypatch.setenv("GRAPHC_WARM_START", "0")   # a patched plan: no records
    monkeypatch.setattr(fuse_module, "RECOMPUTE_MAX_FLOPS", 64)
    recomputed = _plan(f, x, b)
    assert recomputed.stats["ws_buffers"] == stored.stats["ws_buffers"] - 1
    np.testing.assert_allclose(graphc.compile(f)(x, b),
                               graphc.compile(f, optimize=False)(x, b), rtol=1e-13)


@pytest.mark.parametrize("rows", [40, 300])         # 300 > BLOCK: partial sums per block
def test_a_reduction_over_leading_dims_keeps_the_contiguous_dims_innermost(rows):
    """A bias gradient (sum over the batch of a masked value, also stored): with the kept
    dims innermost, the loop reads rows contiguously; values as numpy's, NaN included."""
    def f(x, y):
        g = graphc.where(x > 0, y, 0.0) * 2.0
        return graphc.sum(g, axis=0), graphc.max(g, axis=(0, 1)), g
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((rows, 3, 5)), rng.standard_normal((rows, 3, 5))
    x[1, 2, 3], y[1, 2, 3] = 1.0, np.nan
    c = graphc.compile(f)
    s, m, g = c(x, y)
    want = np.where(x > 0, y, 0.0) * 2.0
    np.testing.assert_array_equal(g, want)
    np.testing.assert_allclose(s, want.sum(0), rtol=1e-13)
    np.testing.assert_array_equal(m, want.max((0, 1)))
    assert np.isnan(s[2, 3]) and np.isnan(m[3])
    src = c.source(x, y)
    assert "acc0[15]" in src and ("part0[15]" in src) == (rows > 128)


def test_a_reduction_over_more_columns_than_accumulators_runs_in_column_blocks():
    """W3's bias gradients (256 x 2048, float32): blocks of COLUMNS_MAX columns, each summing
    its rows contiguously in blocks of BLOCK; values as numpy's in float64."""
    def f(z, g):
        return graphc.sum(graphc.where(z > 0, g, 0.0), axis=0)
    rng = np.random.default_rng(3)
    z, g = (rng.standard_normal((200, 2500)).astype(np.float32) for _ in range(2))
    c = graphc.compile(f)
    want = np.where(z > 0, g, 0).astype(np.float64).sum(0).astype(np.float32)
    np.testing.assert_allclose(c(z, g), want, rtol=1e-6, atol=1e-6)
    src = c.source(z, g)
    assert "cb += 1024" in src and "part0[1024]" in src


def test_short_rows_with_a_max_or_exp_reduce_by_columns():
    """Softmax over 10 classes (128 rows): the row max and the exp-and-sum run with the rows
    innermost (one accumulator per row), each row in plain order; a NaN in a row is its max;
    a sum of light arithmetic over short rows keeps the row order."""
    def f(x, b):
        z = x + b
        m = graphc.max(z, axis=-1, keepdims=True)
        return m, graphc.sum(graphc.exp(z - m), axis=-1)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((128, 10)).astype(np.float32)
    b = rng.standard_normal(10).astype(np.float32)
    x[5, 3] = np.nan
    c = graphc.compile(f)
    m, s = c(x, b)
    z = x + b
    want_m = z.max(-1, keepdims=True)
    np.testing.assert_array_equal(m, want_m)
    want_s = np.exp(z.astype(np.float64) - want_m).sum(-1).astype(np.float32)
    np.testing.assert_allclose(s, want_s, rtol=1e-6)
    assert np.isnan(s[5]) and np.isnan(m[5, 0])
    assert c.source(x, b).count("acc0[128]") == 2
    light = graphc.compile(lambda z: graphc.sum(z * 2.0, axis=-1))
    np.testing.assert_allclose(light(z), (2 * z.astype(np.float64)).sum(-1), rtol=1e-6)
    assert "acc0[" not in light.source(z) and "reduction(+:acc0)" in light.source(z)


def _w4_numpy(x):
    """W4's value and gradient in float64 (numpy's inf and NaN)."""
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        s = np.where(x64 >= 0, 1 / (1 + np.exp(-np.abs(x64))),
                     np.exp(-np.abs(x64)) / (1 + np.exp(-np.abs(x64))))
        t = np.tanh(np.float64(x.dtype.type(0.7)) * x64 + np.float64(x.dtype.type(0.1)))
        e = np.exp(-x64 * x64)
        return np.sum(t * s + e), 0.7 * s * (1 - t * t) + t * s * (1 - s) - 2 * x64 * e


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_sum_blocks_in_range_call_unclamped_kernels_and_others_stay_exact(dt):
    """W4's fused sum calls exp/tanh/sigmoid without clamps (`_in`) where a block's largest |x|
    bounds their arguments within range (codegen/ranges.py); blocks with a large value, inf or
    NaN run the clamped kernels: each element's gradient is numpy's, NaN and inf as numpy's."""
    f = graphc.compile(graphc.value_and_grad(w4))
    x = np.random.default_rng(5).uniform(-3, 3, 128 * 40 + 77).astype(dt)
    src = f.source(x, annotated=False)
    f_ = "f" if dt == np.float32 else ""
    assert all(f"gc_{fn}{f_}_in(" in src for fn in ("tanh", "exp", "sigmoid"))
    assert f"gc_tanh{f_}(" in src and "gc_clamped0(" in src          # the clamped blocks
    x[[5, 128 * 3 + 1, 128 * 7 + 100]] = [40.0, -2e30, 12.5]
    wide = np.random.default_rng(6).uniform(-20, 20, x.size).astype(dt)   # out of range
    for special in (None, np.inf, -np.inf, np.nan, "wide"):
        y = wide if special == "wide" else x.copy()
        if special not in (None, "wide"):
            y[128 * 9 + 3] = special
        want_value, want_grad = _w4_numpy(y)
        value, grad = f(y)
        assert np.array_equal(np.isnan(grad), np.isnan(want_grad))
        ok = ~np.isnan(want_grad)
        tol = 2e-6 if dt == np.float32 else 1e-13
        atol = tol / 10 if special != "wide" else tol / 2     # 1 - t*t cancels near |t| = 1
        np.testing.assert_allclose(grad[ok], want_grad[ok], rtol=tol, atol=atol)
        np.testing.assert_allclose(value, want_value, rtol=tol * 5)


@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=["f32", "f64"])
def test_sum_blocks_out_of_range_do_not_reread_a_parameter_updated_in_place(dt):
    """A train step whose SGD update fuses with a sum through tanh of the batch: the parameter
    is read and written in place by the fused loop, so a block out of tanh's range must not
    rerun clamped after the unclamped pass has already stored the update (it would read the
    updated weights: the loss and the update both wrong)."""
    rng = np.random.default_rng(11)
    w = rng.standard_normal(4096).astype(dt)
    x = (rng.standard_normal(4096) * 3).astype(dt)
    x[:300] *= 10                                       # blocks 0-2 out of tanh's range
    params = [w.copy()]
    step = graphc.train_step(lambda p, x: graphc.sum(p[0] * graphc.tanh(x)),
                             graphc.optim.SGD(params, lr=0.1))
    loss = step(x)
    t = np.tanh(x.astype(np.float64))
    tol = 1e-5 if dt == np.float32 else 1e-12
    np.testing.assert_allclose(float(loss), float(np.sum(w.astype(np.float64) * t)),
                               rtol=tol, atol=tol)
    np.testing.assert_allclose(params[0], w - 0.1 * t, rtol=tol, atol=tol)
