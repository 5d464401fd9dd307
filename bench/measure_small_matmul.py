"""Where plain loops beat the gemm call for a small matmul (graphc/codegen/c.py,
SMALL_MATMUL_MACS): each shape compiled both ways and timed in alternation (CPU time).

    taskset -c 0 python bench/measure_small_matmul.py

Shapes: W1's forward and backward matmuls, W2's, and square sizes around the crossover.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))    # run as a script from anywhere
import graphc  # noqa: E402
from bench.measure_passes import per_call_us  # noqa: E402
from graphc import compiler  # noqa: E402
from graphc.codegen import c as codegen  # noqa: E402

SHAPES = [(100, 2, 16), (100, 16, 16), (100, 16, 1), (16, 100, 16), (2, 100, 16),
          (128, 64, 128), (128, 128, 64), (64, 128, 10), (16, 16, 16), (24, 24, 24),
          (32, 32, 32), (40, 40, 40), (48, 48, 48), (64, 64, 64)]


def compiled(macs_limit: int, a: np.ndarray, b: np.ndarray):
    old = codegen.SMALL_MATMUL_MACS
    codegen.SMALL_MATMUL_MACS = macs_limit
    compiler._RUNNERS.clear()                      # built runners are shared per graph
    try:
        f = graphc.compile(lambda a, b: a @ b)
        calls_gemm = re.search(r"gc_gemm_f(32|64)\(", f.source(a, b)) is not None
        assert calls_gemm == (a.shape[0] * a.shape[1] * b.shape[1] > macs_limit)
    finally:
        codegen.SMALL_MATMUL_MACS = old
    return f


def main() -> None:
    rng = np.random.default_rng(0)
    print("| dtype | M x K @ K x N | MACs | gemm call (us) | loops (us) | gemm / loops |")
    print("|---|---|---|---|---|---|")
    for dt in (np.float64, np.float32):
        for m, k, n in SHAPES:
            a, b = rng.normal(size=(m, k)).astype(dt), rng.normal(size=(k, n)).astype(dt)
            gemm, loops = compiled(0, a, b), compiled(1 << 62, a, b)
            np.testing.assert_allclose(loops(a, b), gemm(a, b), rtol=1e-4, atol=1e-4)
            (tg, _), (tl, _) = per_call_us([gemm, loops], (a, b), reps=200, repeat=15)
            print(f"| {np.dtype(dt).name} | {m}x{k} @ {k}x{n} | {m * k * n} | {tg:.2f} | "
                  f"{tl:.2f} | {tg / tl:.2f} |")


if __name__ == "__main__":
    main()
