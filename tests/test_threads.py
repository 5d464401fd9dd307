"""Threads (csrc/graphc_threads.h): the gemm and the large loops of generated kernels give
bit-identical results for any thread count, the count comes from GRAPHC_NUM_THREADS, and
concurrent calls and forked children stay safe."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import run_threads

import graphc
from graphc import rt
from graphc.errors import GraphcError

COUNTS = (1, 2, 3)
DTYPES = (np.float32, np.float64)
ISAS = [isa for isa in rt.ISAS if rt.set_gemm_isa(isa) == isa]   # this CPU's gemm paths
rt.set_gemm_isa(None)


@pytest.fixture
def restore_threads():
    yield
    rt.set_num_threads(None)


def per_count(fn) -> list:
    """fn() under each thread count of COUNTS."""
    out = []
    for n in COUNTS:
        assert rt.set_num_threads(n) == n
        out.append(fn())
    return out


def assert_bit_identical(results: list) -> None:
    first = [np.asarray(r) for r in results[0]]
    for n, res in zip(COUNTS[1:], results[1:]):
        for a, b in zip(first, res):
            b = np.asarray(b)
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes(), f"{n} threads differ from 1 thread"


# (a, b): split by B panels; by A blocks (N = 10, M large); transposed operands; K not a
# multiple of the blocking. Slabs are cut at whole micro-tiles of the path in force, so each
# path cuts C in its own places.
GEMM_SHAPES = [((300, 700), (700, 500)), ((3000, 200), (200, 10)), ((257, 1000), (1000, 300))]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_bit_identical_for_any_thread_count(dtype, isa, restore_threads):
    rt.set_gemm_isa(isa)
    try:
        gemm_bit_identical_for_any_thread_count(dtype)
    finally:
        rt.set_gemm_isa(None)


def gemm_bit_identical_for_any_thread_count(dtype) -> None:
    rng = np.random.default_rng(0)
    cases = []
    for sa, sb in GEMM_SHAPES:
        a, b = rng.standard_normal(sa).astype(dtype), rng.standard_normal(sb).astype(dtype)
        cases += [(a, b), (np.ascontiguousarray(a.T).T, b), (a, np.ascontiguousarray(b.T).T)]

    addends = [rng.standard_normal((a.shape[0], b.shape[1])).astype(dtype) for a, b in cases]

    def run():      # the product, and the product as an update (its epilogue on each slab)
        return [rt.gemm(a, b) for a, b in cases] + [
            rt.gemm_update(a, b, d, -0.01) for (a, b), d in zip(cases, addends)]

    results = per_count(run)
    assert_bit_identical(results)
    tol = 2e-3 if dtype == np.float32 else 1e-10
    for (a, b), d, u in zip(cases, addends, results[0][len(cases):]):
        np.testing.assert_allclose(u, d + np.float64(dtype(-0.01)) * rt.gemm(a, b), rtol=tol,
                                   atol=tol)
    for (a, b), c in zip(cases, results[0]):
        want = a.astype(np.float64) @ b.astype(np.float64)
        np.testing.assert_allclose(c, want, rtol=tol, atol=tol * np.abs(want).max())


def fused(x, y):
    """An elementwise chain that fuses into one loop nest."""
    return graphc.tanh(0.7 * x + 0.1) * graphc.sigmoid(y) + graphc.exp(-x * y)


def fused_numpy(x, y):
    return np.tanh(0.7 * x + 0.1) * (1 / (1 + np.exp(-y))) + np.exp(-x * y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_bit_identical_for_any_thread_count(dtype, restore_threads):
    """Large full sums (fused, and a plain reduce kernel), a sum over an axis, a fused
    elementwise kernel over one long loop and over rows, matmuls with transposed operands
    (the gradient): each chunked or split across threads."""
    rng = np.random.default_rng(1)
    big = rng.standard_normal(1_000_003).astype(dtype)
    x = rng.standard_normal((700, 300)).astype(dtype)
    y = rng.standard_normal((700, 300)).astype(dtype)
    w = rng.standard_normal((300, 200)).astype(dtype)

    def f(big, x, y, w):
        return (graphc.sum(big * big), graphc.sum(big), graphc.sum(x, axis=0), fused(big, big),
                fused(x, y), graphc.sum(graphc.relu(x @ w) ** 2))

    g = graphc.compile(f)
    vg = graphc.compile(graphc.value_and_grad(lambda x, w: f(big, x, y, w)[-1], argnums=(0, 1)))
    for fn, args in ((g, (big, x, y, w)), (vg, (x, w))):
        assert "#pragma omp parallel" in fn.source(*args)   # the threaded path is exercised
    results = per_count(lambda: [*g(big, x, y, w), *vg(x, w)[1]])
    assert_bit_identical(results)

    total, plain, colsum, fbig, fxy, mm, gx, gw = results[0]
    tol = 1e-4 if dtype == np.float32 else 1e-10
    big64, x64, y64, w64 = (a.astype(np.float64) for a in (big, x, y, w))
    np.testing.assert_allclose(total, np.sum(big64 * big64), rtol=tol)
    np.testing.assert_allclose(plain, np.sum(big64), rtol=tol, atol=tol * np.sqrt(big.size))
    np.testing.assert_allclose(colsum, x64.sum(axis=0), rtol=tol, atol=tol)
    np.testing.assert_allclose(fbig, fused_numpy(big64, big64), rtol=tol, atol=tol)
    np.testing.assert_allclose(fxy, fused_numpy(x64, y64), rtol=tol, atol=tol)
    h = x64 @ w64
    np.testing.assert_allclose(mm, np.sum(np.maximum(h, 0) ** 2), rtol=10 * tol)
    dh = 2 * np.maximum(h, 0)
    np.testing.assert_allclose(gw, x64.T @ dh, rtol=10 * tol, atol=10 * tol * np.abs(gw).max())
    np.testing.assert_allclose(gx, dh @ w64.T, rtol=10 * tol, atol=10 * tol * np.abs(gx).max())


def test_concurrent_calls_with_threads(restore_threads):
    """Python threads calling threaded kernels at once: each gets the serial answer."""
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((400, 400)) for _ in range(4)]
    f = graphc.compile(lambda x: (fused(x, x.T), x @ x))
    rt.set_num_threads(1)
    want = [f(x) for x in xs]
    rt.set_num_threads(2)
    errors = []

    def work(k):
        for _ in range(20):
            got = f(xs[k])
            if not all(np.array_equal(a, b) for a, b in zip(got, want[k])):
                errors.append(k)
                return

    assert run_threads(work, 4, timeout=None) == []
    assert errors == []


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=root, timeout=120,
                          env={**os.environ, **env}, capture_output=True, text=True)


def test_count_from_environment(monkeypatch):
    code = "import graphc.rt as rt; print(rt.num_threads())"
    assert run_python(code, GRAPHC_NUM_THREADS="3").stdout.split() == ["3"]
    default = len(os.sched_getaffinity(0))
    assert run_python(code, GRAPHC_NUM_THREADS="").stdout.split() == [str(default)]
    bad = run_python(code, GRAPHC_NUM_THREADS="many")
    assert bad.returncode != 0 and "GRAPHC_NUM_THREADS='many'" in bad.stderr
    with pytest.raises(ValueError):
        rt.set_num_threads(0)
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "0")
    with pytest.raises(GraphcError):
        rt.threads_from_env()


def test_forked_child_runs_threaded_kernels():
    """GNU OpenMP's pool does not survive fork(): the child must fall back to one thread
    instead of waiting for it forever."""
    done = run_python("""
        import os
        import numpy as np
        import graphc, graphc.rt as rt
        rt.set_num_threads(2)
        x = np.linspace(-1, 1, 300_000)
        f = graphc.compile(lambda x: graphc.exp(-x * x) * 2.0)
        want = f(x)
        pid = os.fork()
        if pid == 0:
            ok = np.array_equal(f(x), want) and rt.num_threads() == 1
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
    """)
    assert done.stdout.split() == ["child", "0"], done.stderr
