"""The call plan in C (graphc._fastcall, csrc/fastcall.c) for signatures of Python floats and
ints with Python-scalar outputs, for train steps (batch arrays checked in C) and for a
reverse tape's float64 arrays: the same values and types as the Python path, every other
call passed on to it, safe across threads, no references leaked, and the Python plan where
the extension is off."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
from helpers import run_threads

import graphc
from graphc import build, callplan, fastcall, pytree

pytestmark = pytest.mark.skipif(fastcall.module() is None,
                                reason="graphc._fastcall could not be built here")


def loss(w, b, x, y):
    return (w * x + b - y) ** 2


def w0():
    return graphc.compile(graphc.value_and_grad(loss, argnums=(0, 1)))


def reference(w, b, x, y):
    r = w * x + b - y
    return r * r, (2.0 * r * x, 2.0 * r)


def is_fast(f) -> bool:
    return isinstance(f._call, fastcall.module().FastCall)


def test_w0_values_and_types():
    f = w0()
    for args in [(1.5, 0.5, 2.0, 1.0), (1.5, 0.5, 2.0, 1.0), (-3.25, 7.0, 0.125, 2.5)]:
        got = f(*args)
        assert is_fast(f)
        assert type(got) is tuple and type(got[1]) is tuple
        assert all(type(v) is float for v in (got[0], *got[1]))
        np.testing.assert_allclose([got[0], *got[1]], [reference(*args)[0],
                                   *reference(*args)[1]], rtol=1e-15)


def test_ints_lists_and_nones_in_the_output_tree():
    f = graphc.compile(lambda a, n: [(a * n, None), [n + n, n * 3, a - n], ()])
    f(2.0, 3)
    f(2.0, 3)
    assert is_fast(f)
    got = f(-1.5, 7)
    assert got == [(-10.5, None), [14, 21, -8.5], ()]
    assert [type(v) for v in got] == [tuple, list, tuple]
    assert [type(v) for v in got[1]] == [int, int, float] and type(got[0][0]) is float


def test_other_calls_take_the_general_path():
    f = w0()
    f(1.5, 0.5, 2.0, 1.0)
    fast = f._call
    assert is_fast(f)
    want = f(1.5, 0.5, 2.0, 1.0)
    # other types and counts: the Python path converts, retraces, or raises its error
    assert fast(np.float64(1.5), 0.5, 2.0, 1.0)[0] == want[0]
    assert fast(1.5, 0.5, 2, 1.0) == want
    plain = graphc.compile(loss)
    plain(1.5, 0.5, 2.0, 1.0)
    assert isinstance(plain._call, type(fast)) and plain._call(1.5, 0.5, 2.0, y=1.0) == want[0]
    with pytest.raises(graphc.GraphcError, match="missing 1 required positional"):
        fast(1.5, 0.5, 2.0)
    with pytest.raises(graphc.GraphcError, match="not supported"):
        fast(1.5, 0.5, "2", 1.0)
    previous = graphc.debug_nans(True)
    try:
        with pytest.raises(graphc.NaNError):
            fast(1e200, 0.5, 1e200, 1.0)     # w * x overflows
    finally:
        graphc.debug_nans(previous)
    assert fast(1.5, 0.5, 2.0, 1.0) == want


def test_ints_out_of_int64_range_take_the_general_path():
    f = graphc.compile(lambda n, x: n * x)
    assert f(3, 2.0) == 6.0 and f(3, 2.0) == 6.0 and is_fast(f)
    with pytest.raises(graphc.DTypeError, match="out of bounds for int64"):
        f(1 << 63, 2.0)
    assert f(-(1 << 63), 1.0) == float(-(1 << 63))
    assert f(True, 2.0) == 2.0      # a bool is its own signature


def test_threads_get_their_own_workspace():
    f = w0()
    f(0.0, 0.0, 0.0, 0.0)
    f(0.0, 0.0, 0.0, 0.0)
    assert is_fast(f)
    results = {}

    def work(k):
        for j in range(2000):
            args = (float(k), float(j), 0.5, 1.0)
            results[(k, j)] = (args, f(*args))

    assert run_threads(work, 4) == []
    for args, got in results.values():
        assert got == reference(*args)


def test_no_references_leak_and_the_outputs_are_fresh():
    f = w0()
    args = (1.5, 0.5, 2.0, 1.0)
    f(*args)
    f(*args)
    before = [sys.getrefcount(a) for a in args]
    outs = [f(*args) for _ in range(1000)]
    assert [sys.getrefcount(a) for a in args] == before
    assert outs[0][0] is not outs[1][0] and outs[0][1] is not outs[1][1]
    del outs
    blocks = sys.getallocatedblocks()
    for _ in range(10000):
        f(*args)
    assert sys.getallocatedblocks() - blocks < 100      # no outputs or tuples left behind
    # the fast call and its compiled function form a cycle: the collector sees its links
    referents = gc.get_referents(f._call)
    assert any(r is f._call.general for r in referents) and graphc.nans.STATE in referents


def test_output_tree_codes_are_preorder():
    _, td = pytree.flatten([(1.0, None), [2.0, 3.0], ()])
    assert callplan._tree_codes(td) == (7, 4, -1, -2, 5, -1, -1, 0)
    deep = 1.0
    for _ in range(callplan.MAX_DEPTH + 1):
        deep = (deep,)
    assert callplan._tree_codes(pytree.flatten(deep)[1]) is None
    assert callplan._tree_codes(pytree.flatten({"a": 1.0})[1]) is None


def test_the_python_plan_where_the_extension_is_off():
    code = ("import graphc\n"
            "f = graphc.compile(graphc.value_and_grad(lambda w, b: (w * 2.0 + b) ** 2, "
            "argnums=(0, 1)))\n"
            "print(f(1.5, 0.5), f(1.5, 0.5), f._call.__name__)\n")
    env = {**os.environ, "GRAPHC_FASTCALL": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[-1] == "plan" and " ".join(out[:-1]) == "(12.25, (14.0, 7.0)) (12.25, (14.0, 7.0))"


def test_a_tiered_build_swaps_the_entry(monkeypatch):
    monkeypatch.setenv("GRAPHC_TIERED", "1")
    scale = 1.0 + uuid.uuid4().int % 1000 / 1e4      # a graph no earlier test built
    f = graphc.compile(graphc.value_and_grad(lambda w, x: graphc.tanh(w * x) * scale))
    before = [f(0.5, 2.0), f(0.5, 2.0)]
    assert is_fast(f)
    runner = f.executable(0.5, 2.0).runner
    quick = f._call.entry
    build.wait_for_optimized_builds()
    if runner._packed != quick:          # the -O3 module was not cached already: swapped
        assert f._call.entry == runner._packed
    assert f(0.5, 2.0) == before[1]
    np.testing.assert_allclose(before[0], (np.tanh(1.0) * scale,
                                           (1.0 - np.tanh(1.0) ** 2) * 2.0 * scale), rtol=1e-13)


def _train_step(seed: int = 0):
    model = graphc.nn.MLP([5, 8, 3], seed=seed, dtype=np.float32)
    step = graphc.train_step(lambda p, x, y: graphc.nn.cross_entropy(model.apply(p, x), y),
                             graphc.optim.Adam(model.params, lr=1e-2))
    return model, step


def test_a_train_step_runs_in_c_with_the_python_plans_results():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 5)).astype(np.float32), rng.integers(0, 3, 16)
    results = []
    for in_c in (True, False):
        model, step = _train_step()
        losses = [step(x, y)]
        assert isinstance(step._plan, fastcall.module().FastCall)
        if not in_c:
            step._plan = step._plan.general             # the Python plan it stands for
        losses += [step(x, y, lr=0.02 + k / 100) for k in range(5)]
        results.append((losses, {k: v.copy() for k, v in model.params.items()}))
    assert all(type(v) is float for v in results[0][0])
    assert results[0][0] == results[1][0] and results[0][0][-1] < results[0][0][0]
    for k, v in results[0][1].items():
        np.testing.assert_array_equal(v, results[1][1][k])


def test_a_failed_check_in_the_c_plan_updates_nothing_and_raises_the_python_plans_error():
    """A bad label fails the step's run-time check inside the C plan, which then passes the
    call to the Python plan: that reruns the step and raises. The guard before every
    in-place write stopped the failed run, so the rerun sees every array as it was and
    stops the same way: the same error, nothing updated (once or twice), and the next steps
    equal those of a twin step that never saw the bad batch."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 5)).astype(np.float32), rng.integers(0, 3, 16)
    bad = y.copy()
    bad[5] = 3
    _, twin = _train_step()
    _, step = _train_step()
    assert step(x, y) == twin(x, y)
    assert isinstance(step._plan, fastcall.module().FastCall)
    before = [a.copy() for a in step.memory]
    errors = []
    for plan in (step._plan, step._plan.general):     # the C plan, the Python plan behind it
        with pytest.raises(graphc.GraphcError) as caught:
            plan(0.01, x, bad)
        errors.append((type(caught.value), str(caught.value)))
        for a, b in zip(step.memory, before):
            np.testing.assert_array_equal(a, b)
    assert errors[0] == errors[1] and "label 3 at position 5" in errors[0][1]
    assert [step(x, y) for _ in range(3)] == [twin(x, y) for _ in range(3)]
    for a, b in zip(step.memory, twin.memory):
        np.testing.assert_array_equal(a, b)


def test_a_train_steps_other_batches_take_the_python_path():
    """Another shape, dtype, byte order or layout, a subclass, a list or an int lr: the
    Python plan or the slow path, with the losses of a twin step on the Python plan; the C
    plan's buffers are released (no reference kept, nothing left exported)."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 5)).astype(np.float32), rng.integers(0, 3, 16)
    calls = [((x[:8], y[:8]), {}), ((x.astype(np.float64), y), {}),
             ((x.astype(">f4"), y), {}), ((np.asfortranarray(x), y), {}),
             ((x.view(np.matrix), y), {}), ((x.tolist(), y), {}),
             ((x, y.astype(np.int32)), {}), ((x, y), {"lr": 1}), ((x, y), {})]
    steps = [_train_step()[1], _train_step()[1]]
    fast = [s(x, y) and s._plan for s in steps]
    assert isinstance(fast[0], fastcall.module().FastCall)
    refs = [sys.getrefcount(x), sys.getrefcount(y)]
    for args, kw in calls:
        steps[0]._plan = fast[0]           # the C plan of the first signature, tried first
        steps[1]._plan = fast[1].general   # the Python plan of the same signature
        assert steps[0](*args, **kw) == steps[1](*args, **kw)
    assert [sys.getrefcount(x), sys.getrefcount(y)] == refs
    z = x.copy()
    steps[0]._plan = fast[0]
    steps[0](z, y)
    z.resize((4, 5), refcheck=False)        # raises BufferError while a buffer is exported


def test_a_train_steps_scalar_batch_leaves_pass_by_value():
    """A float and an int in the batch go to C by value (kinds 'f', 'i'), with the Python
    plan's results; an int where the signature has a float takes the Python path."""
    x, y = np.ones((4, 3)), np.zeros((4, 2))
    results = []
    for in_c in (True, False):
        model = graphc.nn.MLP([3, 2], seed=0)
        step = graphc.train_step(
            lambda p, x, y, w, n: w * n * graphc.nn.mse_loss(model.apply(p, x), y),  # noqa: B023
            graphc.optim.SGD(model.params, lr=0.1))
        losses = [step(x, y, 0.5, 3)]
        assert isinstance(step._plan, fastcall.module().FastCall)
        if not in_c:
            step._plan = step._plan.general
        losses += [step(x, y, 0.5, 3) for _ in range(3)]
        plan = step._plan
        losses.append(step(x, y, 1, 3))             # another signature: its own step
        step._plan = plan
        losses.append(step(x, y, 0.25, -2))
        results.append((losses, model.params["W0"].copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert results[0][0][3] < results[0][0][0] and results[0][0][-1] < 0


def test_a_train_step_with_more_batch_arrays_than_the_c_plan_takes_keeps_python():
    n = fastcall.module().ARRAYS_MAX + 1
    w = {"w": np.ones(3)}
    step = graphc.train_step(lambda p, *xs: graphc.sum(p["w"] * sum(xs)),
                             graphc.optim.SGD(w, lr=1e-3))
    xs = [np.full(3, float(k)) for k in range(n)]
    assert step(*xs) == 3 * sum(range(n)) and step(*xs) < 3 * sum(range(n))
    assert not isinstance(step._plan, fastcall.module().FastCall)
    np.testing.assert_allclose(w["w"], 1 - 2 * 1e-3 * sum(range(n)))


# ---- a reverse tape's call (TapeCall): float64 arrays in, fresh arrays out ----

def tape_loss(v, s, t):
    return graphc.sum(graphc.softplus(v * s) * t) + graphc.softmax(v[:4])[1] * s


def tape_reference(v, s, t):
    """value_and_grad of tape_loss over (v, s), by the symbolic path."""
    return graphc.compile(graphc.value_and_grad(tape_loss, argnums=(0, 1)))(v, s, t)


@pytest.fixture
def tape(monkeypatch):
    monkeypatch.setenv("GRAPHC_REVERSE_TAPE_MIN_NODES", "0")
    f = graphc.compile(graphc.value_and_grad(tape_loss, argnums=(0, 1)))
    args = (np.linspace(-1.0, 2.0, 6), 0.75, np.array(1.5))
    f(*args)
    assert isinstance(f._call, fastcall.module().TapeCall)
    monkeypatch.setenv("GRAPHC_REVERSE_TAPE_MIN_NODES", str(10**9))
    return f, args


def _same(got, want, s_type=float):
    value, (gv, gs) = got
    assert type(value) is np.ndarray and value.shape == () and gv.shape == (6,)
    # a Python float's gradient is a float (also from the symbolic path); a numpy scalar's
    # a 0-d array
    assert type(gs) is (float if s_type is float else np.ndarray) and type(want[1][1]) is float
    np.testing.assert_allclose(value, want[0], rtol=1e-13)
    np.testing.assert_allclose(gv, want[1][0], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(gs, want[1][1], rtol=1e-13)


def test_a_tape_call_reads_arrays_in_place_and_returns_fresh_ones(tape):
    f, (v, s, t) = tape
    keep = v.copy(), t.copy()
    first, second = f(v, s, t), f(v, s, t)
    _same(first, tape_reference(v, s, t))
    _same(second, tape_reference(v, s, t))
    assert np.array_equal(v, keep[0]) and np.array_equal(t, keep[1])
    assert all(a.flags.owndata and a.flags.writeable for a in (first[0], first[1][0]))
    assert first[0] is not second[0] and first[1][0] is not second[1][0]
    first[1][0][:] = 7.0                         # the caller's to change
    _same(f(v, s, t), tape_reference(v, s, t))
    before = [sys.getrefcount(a) for a in (v, s, t)]
    for _ in range(1000):
        f(v, s, t)
    assert [sys.getrefcount(a) for a in (v, s, t)] == before
    blocks = sys.getallocatedblocks()
    for _ in range(5000):
        f(v, s, t)
    assert sys.getallocatedblocks() - blocks < 100


def test_other_arrays_take_the_general_path(tape):
    f, (v, s, t) = tape
    fast = f._call
    wide = np.linspace(-1.0, 2.0, 12)
    cases = [(wide[::2], s, t),                           # not contiguous
             (v.astype(">f8"), s, t),                     # another byte order
             (v, np.float64(s), t),                       # a numpy scalar for a float
             (v, s, 1.5)]                                 # a float for a 0-d array
    for args in cases:
        _same(fast(*args), tape_reference(np.asarray(args[0], np.float64), s, t),
              type(args[1]))
    with pytest.raises(graphc.GraphcError):
        fast(v, s)
    _same(fast(v, s, t), tape_reference(v, s, t))


def test_tape_calls_on_threads(tape):
    f, (v, s, t) = tape
    results = {}

    def work(k):
        for j in range(300):
            x = v * (1 + k) + j / 100
            results[(k, j)] = (x, f(x, s, t))

    assert run_threads(work, 4) == []
    for x, got in list(results.values())[::37]:
        _same(got, tape_reference(x, s, t))
