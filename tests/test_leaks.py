"""Long runs: memory stays flat over many calls and many signatures (the in-memory caches
are bounded), no file descriptors leak, and threads sharing one compiled function get
correct results. The long versions are marked slow (GRAPHC_SLOW=1, `make soak`)."""

from __future__ import annotations

import gc
import os
import weakref

import numpy as np
import pytest
from helpers import run_threads

import graphc
from graphc import build, compiler, runtime

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def mlp_step():
    rng = np.random.default_rng(0)
    params = {"w1": rng.standard_normal((8, 16)) * 0.3, "b1": np.zeros(16),
              "w2": rng.standard_normal((16, 3)) * 0.3, "b2": np.zeros(3)}
    x, y = rng.standard_normal((32, 8)), rng.standard_normal((32, 3))

    def loss(p, x, y):
        h = graphc.tanh(x @ p["w1"] + p["b1"])
        return graphc.mean((h @ p["w2"] + p["b2"] - y) ** 2)

    step = graphc.compile(graphc.value_and_grad(loss))
    return step, params, x, y


def calls_rss_growth(n: int) -> tuple[float, float]:
    step, params, x, y = mlp_step()
    first = step(params, x, y)
    for _ in range(2000):                      # warm up: allocator pools, caches
        step(params, x, y)
    gc.collect()
    before = rss_mb()
    for _ in range(n):
        value, grads = step(params, x, y)
    gc.collect()
    after = rss_mb()
    assert value == first[0]
    np.testing.assert_array_equal(grads["w1"], first[1]["w1"])
    return before, after


def test_rss_flat_over_20000_calls():
    before, after = calls_rss_growth(20_000)
    print(f"RSS over 20,000 MLP loss+grad calls: {before:.1f} MB -> {after:.1f} MB")
    assert after - before < 2.0


@pytest.mark.slow
def test_rss_flat_over_100000_calls():
    before, after = calls_rss_growth(100_000)
    print(f"RSS over 100,000 MLP loss+grad calls: {before:.1f} MB -> {after:.1f} MB")
    assert after - before < 2.0


def _distinct_signatures(n: int, shapes: bool) -> tuple[graphc.CompiledFunction, list[float]]:
    """n signatures: new dict keys (same graph: no build) or new shapes (one build each)."""
    f = graphc.compile(lambda d: sum(graphc.sum(graphc.sin(v) * 2.0) for v in d.values()))
    samples = []
    for i in range(n):
        x = np.full(i + 1 if shapes else 4, 0.5)
        got = f({f"k{i}": x})
        assert abs(float(got) - 2 * np.sin(0.5) * x.size) < 1e-12
        if i % (n // 10) == 0:
            gc.collect()
            samples.append(rss_mb())
    return f, samples


def test_2000_signatures_keep_memory_bounded():
    f, samples = _distinct_signatures(2000, shapes=False)
    print("RSS over 2,000 signatures (MB):", " ".join(f"{s:.1f}" for s in samples))
    assert len(f._cache) <= runtime.SIGNATURES_MAX and len(f._fast) <= runtime.SIGNATURES_MAX
    assert samples[-1] - samples[len(samples) // 2] < 4.0     # flat once the caches are full


@pytest.mark.slow
def test_2000_shapes_each_built_keep_memory_bounded():
    f, samples = _distinct_signatures(2000, shapes=True)
    print("RSS over 2,000 built signatures (MB):", " ".join(f"{s:.1f}" for s in samples))
    assert len(f._cache) <= runtime.SIGNATURES_MAX
    assert len(build._loaded) <= build._LOADED_MAX
    assert len(compiler._RUNNERS) <= compiler._RUNNERS_MAX
    # each new module stays mapped (Python never unloads one): ~35 KB apiece measured, so
    # memory grows with the number of distinct kernels ever built, and by nothing else
    assert (samples[-1] - samples[len(samples) // 2]) / 1000 < 0.1


def test_a_compiled_function_out_of_scope_is_freed():
    """compiler._RUNNERS shares built runners between functions of the same graph, by design
    (bounded); it must not keep the functions themselves: their call plans hold their general
    path, and a runner keeps the plans only until a tiered build's optimized module is in."""
    c = float(np.random.default_rng().integers(1, 2**40))      # a new graph: built fresh
    x = np.arange(3.0)
    refs = []
    for _ in range(3):                  # the same graph each time: one shared runner
        f = graphc.compile(lambda v: graphc.sum(v * c))      # a generated plan (arrays)
        g = graphc.compile(lambda a: a * c + 1.0)            # a C fast call (Python floats)
        assert [f(x), f(x), g(1.5), g(1.5)] == [3 * c, 3 * c, 1.5 * c + 1.0, 1.5 * c + 1.0]
        refs += [weakref.ref(f), weakref.ref(g)]
        del f, g
    build.wait_for_optimized_builds()
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)


def test_no_file_descriptor_leaks():
    step, params, x, y = mlp_step()
    step(params, x, y)
    before = fds()
    for i in range(20):                         # new builds (disk cache, locks) and calls
        g = graphc.compile(lambda v, i=i: graphc.sum(graphc.exp(v) * float(i + 0.25)))
        assert np.isfinite(g(np.full(3 + i, 0.1)))
        step(params, x, y)
    gc.collect()
    assert fds() == before


def test_eight_threads_share_one_compiled_function():
    step, params, x, y = mlp_step()
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((32, 8)) for _ in range(8)]
    want = [step(params, b, y) for b in batches]
    errors = []

    def work(k):
        for i in range(10_000):
            value, grads = step(params, batches[k], y)
            if value != want[k][0] or not np.array_equal(grads["w2"], want[k][1]["w2"]):
                errors.append((k, i))
                return

    assert run_threads(work, 8, timeout=None) == []
    assert errors == []
