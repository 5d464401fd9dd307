"""Figures for the C backend: per-call overhead (W0), cold build time of a typical graph (the
W2 MLP's loss and gradient), warm start from the disk cache in a new process, and the 512^3
float32 matmul against numpy's BLAS.

    taskset -c 0 python bench/measure_c_backend.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit
from pathlib import Path

import numpy as np

import graphc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))    # run as a script from anywhere
from bench.workloads import w7  # noqa: E402

W2_STEP = textwrap.dedent("""
    import numpy as np, graphc
    def loss(params, x, labels):
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < len(params) - 1:
                h = graphc.relu(h)
        logp = graphc.log_softmax(h, axis=-1)
        return -(graphc.one_hot(labels, 10, np.float32) * logp).sum() / x.shape[0]
    rng = np.random.default_rng(0)
    sizes = [64, 128, 64, 10]
    params = [(rng.standard_normal((a, b)).astype(np.float32) * np.sqrt(2 / a),
               np.zeros(b, np.float32)) for a, b in zip(sizes, sizes[1:])]
    x = rng.standard_normal((128, 64)).astype(np.float32)
    labels = rng.integers(0, 10, 128)
    step = graphc.compile(graphc.value_and_grad(loss))
""")


def w0_us() -> float:
    step = graphc.compile(graphc.value_and_grad(lambda w, b, x, y: (w * x + b - y) ** 2, (0, 1)))
    args = (1.5, 0.5, 2.0, 1.0)
    step(*args)
    n = 200_000
    return min(timeit.repeat(lambda: step(*args), number=n, repeat=5)) / n * 1e6


def child_seconds(cache: str) -> tuple[float, float]:
    """(import graphc, first call of the W2 step) in a fresh process with this cache dir."""
    code = ("import time; t0 = time.perf_counter()\n" + "import graphc\n"
            "t1 = time.perf_counter()\n" + W2_STEP +
            "t2 = time.perf_counter(); step(params, x, labels); t3 = time.perf_counter()\n"
            "print(t1 - t0, t3 - t2)")
    env = {**os.environ, "GRAPHC_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), float(out[1])


def matmul_ratio() -> tuple[float, float]:
    a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    f = graphc.compile(lambda a, b: a @ b)
    f(a, a)
    ours = min(timeit.repeat(lambda: f(a, a), number=10, repeat=5)) / 10
    blas = min(timeit.repeat(lambda: a @ a, number=10, repeat=5)) / 10
    return ours * 1e3, blas * 1e3


def w7_figures(n_ops: int) -> tuple[int, float, float]:
    """(graph nodes, seconds to the first result, us per value+grad call)."""
    x = np.random.default_rng(0).uniform(-1, 1, 100)
    t0 = time.perf_counter()
    step = graphc.compile(graphc.value_and_grad(w7(n_ops)))
    step(x)
    first = time.perf_counter() - t0
    reps = 50
    per_call = min(timeit.repeat(lambda: step(x), number=reps, repeat=3)) / reps
    return step.stats(x)["nodes"], first, per_call * 1e6


def main() -> None:
    print(f"W0 (L=(wx+b-y)^2, value and 2 grads): {w0_us():.2f} us per call")
    with tempfile.TemporaryDirectory() as cache:
        imp, cold = child_seconds(cache)
        _, warm = child_seconds(cache)
    print(f"import graphc: {imp * 1e3:.0f} ms")
    print(f"W2 loss+grad first call, cold cache (trace + codegen + gcc): {cold * 1e3:.0f} ms")
    print(f"W2 loss+grad first call, warm disk cache (new process): {warm * 1e3:.0f} ms")
    ours, blas = matmul_ratio()
    print(f"512^3 float32 matmul: graphc {ours:.2f} ms, numpy BLAS {blas:.2f} ms "
          f"({ours / blas:.2f}x)")
    for n_ops in (1000, 10000):
        nodes, first, per_call = w7_figures(n_ops)
        print(f"W7 N={n_ops}: {nodes} nodes, first result {first:.2f} s (trace, autodiff, "
              f"tape, build or cache), {per_call:.0f} us per value+grad")


if __name__ == "__main__":
    main()
