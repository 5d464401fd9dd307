"""The per-signature call plan (graphc/callplan.py): a call whose arguments have the signature
used last runs one generated straight line; anything else takes the general path. Both must
give the same results, a seen signature never retraces, and bad input still gets its error."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from helpers import run_threads

import graphc
from graphc import compiler, native

Pair = collections.namedtuple("Pair", "a b")


def counted(fn):
    """fn and the list its traces append to."""
    traces = []

    def f(*args):
        traces.append(1)
        return fn(*args)
    return f, traces


def same(got, want):
    """Equal trees: same container types, leaf types, dtypes, shapes and values."""
    assert type(got) is type(want), (got, want)
    if isinstance(want, dict):
        assert list(got) == list(want)
        for k in want:
            same(got[k], want[k])
    elif isinstance(want, tuple | list):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            same(g, w)
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    else:
        assert got == want


def general(f, *args):
    """f's result through the general path (flatten, signature, executable), not the plan."""
    key, leaves, specs = f._signature(args)
    return f._get(key, args, specs)(leaves)


CASES = {
    "w0 scalars": (graphc.value_and_grad(lambda w, b, x, y: (w * x + b - y) ** 2,
                                         argnums=(0, 1)), (1.5, 0.5, 2.0, 1.0)),
    "ints and bools": (lambda n, x, flag: (n * 2, graphc.sum(x) > 1.0, x * n if flag else x),
                       (3, np.arange(3.0), True)),
    "dict, tuple, None": (lambda d, t, z: {"s": d["a"] * t[0], "r": (graphc.sum(d["b"]), None)},
                          ({"a": np.ones(3), "b": np.arange(4, dtype=np.float32)},
                           (2.0, np.int64(5)), None)),
    "namedtuple": (lambda p: Pair(p.a + p.b, graphc.mean(p.a)),
                   (Pair(np.arange(4.0).reshape(2, 2), np.float32(1.5)),)),
    "no arguments": (lambda: graphc.ones((2,)) * 3.0, ()),
}


@pytest.mark.parametrize("backend", ["c", "numpy"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_plan_gives_what_the_general_path_gives(case, backend):
    fn, args = CASES[case]
    fn, traces = counted(fn)
    f = graphc.compile(fn, backend=backend)
    first = f(*args)
    assert f._call is not f._general    # the Python plan, or (scalars only) the C one
    assert getattr(f._call, "__name__", None) == "plan" or type(f._call).__name__ == "FastCall"
    for _ in range(3):
        same(f(*args), first)
        same(general(f, *args), first)
    assert len(traces) == 1


def test_the_plan_is_the_call_and_passes_other_signatures_on(monkeypatch):
    f = graphc.compile(lambda x, s: graphc.sum(x * s))
    x = np.arange(6.0)
    f(x, 2.0)
    plan = f._call
    assert f.__call__ is plan and plan(x, 3.0) == 45.0
    passed_on = []
    monkeypatch.setitem(plan.__globals__, "general",
                        lambda *args, **kwargs: passed_on.append((args, kwargs)))
    others = [(x, 3), (x.astype(np.float32), 3.0), (x[::2], 3.0), (list(x), 3.0),
              (x.reshape(2, 3), 3.0), (x, np.float64(3.0)), (x,), (x, 3.0, 1.0)]
    for other in others:
        assert plan(*other) is None, other
    assert plan(x, s=3.0) is None
    assert len(passed_on) == len(others) + 1
    for (args, kwargs), other in zip(passed_on, others):
        assert args is not other and len(args) == len(other) and not kwargs
        assert all(a is b for a, b in zip(args, other))
    assert passed_on[-1] == ((x,), {"s": 3.0})
    previous = graphc.debug_nans(True)
    try:
        assert plan(x, 3.0) is None     # the NaN locator runs on the general path
    finally:
        graphc.debug_nans(previous)
    assert len(passed_on) == len(others) + 2


def test_seen_signatures_never_retrace_in_any_order():
    fn, traces = counted(lambda x, s: graphc.sum(graphc.exp(x)) * s)
    f = graphc.compile(fn)
    signatures = [(np.arange(3.0), 2.0), (np.arange(4.0), 2.0), (np.arange(3.0), 2),
                  (np.arange(3.0, dtype=np.float32), 2.0), (np.arange(3.0)[::-1], 2.0)]
    for _ in range(3):
        for x, s in signatures:
            np.testing.assert_allclose(f(x, s), np.exp(x.astype(np.float64)).sum() * s,
                                       rtol=1e-6)
    assert len(traces) == 4     # the reversed view has the first one's signature


def test_dict_key_order_is_part_of_the_signature():
    fn, traces = counted(lambda d: [v * (k + 1.0) for k, v in enumerate(d.values())])
    f = graphc.compile(fn)
    a, b = np.ones(2), np.full(2, 3.0)
    same(f({"a": a, "b": b}), [a * 1.0, b * 2.0])
    same(f({"b": b, "a": a}), [b * 1.0, a * 2.0])
    same(f({"a": a, "b": b}), [a * 1.0, b * 2.0])
    assert len(traces) == 2


def test_bad_input_after_the_plan_still_gets_its_error():
    f = graphc.compile(lambda x, n: x * n)
    f(np.ones(2), 3)
    with pytest.raises(graphc.DTypeError, match="out of bounds for int64"):
        f(np.ones(2), 1 << 63)
    with pytest.raises(graphc.DTypeError, match="float16"):
        f(np.ones(2, np.float16), 3)
    with pytest.raises(graphc.GraphcError, match="not supported"):
        f(np.ones(2), "3")
    np.testing.assert_array_equal(f(np.ones(2), 3), [3.0, 3.0])


def test_inputs_are_not_modified_and_outputs_are_fresh():
    f = graphc.compile(lambda x, s: (x * s, graphc.sum(x), x))
    x = np.arange(4.0)
    f(x, 2.0)
    a1, s1, x1 = f(x, 2.0)
    a2, s2, x2 = f(x, 2.0)
    a1[...] = -1.0
    s1[...] = -1.0
    x1[...] = -1.0
    np.testing.assert_array_equal(x, np.arange(4.0))
    np.testing.assert_array_equal(a2, np.arange(4.0) * 2.0)
    assert s2 == 6.0 and not np.shares_memory(s1, s2)
    np.testing.assert_array_equal(x2, np.arange(4.0))


def test_a_contended_workspace_gives_the_same_scalars(monkeypatch):
    """A thread that finds a shared workspace busy runs on a fresh one (0-d outputs
    included); workspaces are shared from THREAD_WS_MAX bytes on."""
    monkeypatch.setattr(native, "THREAD_WS_MAX", 0)
    monkeypatch.setattr(compiler, "_RUNNERS", collections.OrderedDict())
    f = graphc.compile(graphc.value_and_grad(lambda w, x: graphc.sum(w * x) ** 2), backend="c")
    x = np.arange(3.0)
    want = f(1.5, x)
    runner = f.executable(1.5, x).runner
    assert runner._local is None
    with runner._lock:
        same(f(1.5, x), want)
        same(general(f, 1.5, x), want)


def test_small_workspaces_are_per_thread():
    """Below THREAD_WS_MAX each thread runs on its own workspace, made at its first call."""
    f = graphc.compile(graphc.value_and_grad(lambda w, x: graphc.sum(w * x) ** 2), backend="c")
    x = np.arange(3.0)
    want = f(1.5, x)
    runner = f.executable(1.5, x).runner
    seen = []

    def work(k):
        for _ in range(50):
            same(f(1.5, x), want)
        seen.append(runner._local.w[0])     # kept alive: its memory is not reused

    assert run_threads(work, 3) == []
    seen.append(runner._local.w[0])
    assert len({a.ctypes.data for a in seen}) == 4


def test_threads_share_a_plan():
    f = graphc.compile(graphc.value_and_grad(lambda w, b: (w * 2.0 + b) ** 2, argnums=(0, 1)))
    f(0.0, 0.0)
    results = {}

    def work(k):
        for j in range(300):
            w = float(k * 1000 + j)
            results[(k, j)] = (w, f(w, 1.0))

    errors = run_threads(work, 4)
    assert not errors, errors
    assert len(results) == 1200
    for w, (value, (dw, db)) in results.values():
        r = w * 2.0 + 1.0
        assert (value, float(dw), float(db)) == (r * r, 4.0 * r, 2.0 * r)
