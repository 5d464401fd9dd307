"""W5, the machine's limits (../shared/BENCHMARKS.md): float32 GEMM 2048³ with numpy's BLAS
(GFLOP/s) and the copy bandwidth of a 256 MB array (GB/s). They are the roofline the other
workloads are read against: W3's step does `W3_GFLOP` of matrix products, so its GFLOP/s next
to the GEMM rate says how far it is from what this core can do.

`LIMITS[name]()` returns `(step, work)`: a zero-argument step and what one call does, in GFLOP
or GB; the rate is work / seconds per call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench import problems as P


def _w3_gflop() -> float:
    """GFLOP of a W3 step's products: forward, the weight gradients and the input gradients
    of every layer but the first (2 flops per multiply-add)."""
    sizes, batch = P.W3_SIZES, P.W3_BATCH
    layers = [batch * a * b for a, b in zip(sizes, sizes[1:])]
    return 2 * (3 * sum(layers) - layers[0]) / 1e9


W3_GFLOP = _w3_gflop()        # 8.62


def gemm(n: int = 2048) -> tuple[Callable, float]:
    """C = A @ B, float32 n x n (numpy's BLAS, the thread count it was given)."""
    a, b = (np.random.default_rng(k).standard_normal((n, n)).astype(np.float32) for k in (0, 1))
    c = np.empty((n, n), np.float32)
    return (lambda: np.matmul(a, b, out=c)), 2 * n ** 3 / 1e9


def copy(megabytes: int = 256) -> tuple[Callable, float]:
    """dst[:] = src of `megabytes` MB; counted as bytes read + bytes written."""
    src = np.ones(megabytes * 2 ** 20 // 8)
    dst = np.empty_like(src)
    return (lambda: np.copyto(dst, src)), 2 * src.nbytes / 1e9


LIMITS = {"numpy GEMM 2048³ float32 (GFLOP/s)": gemm,
          "copy 256 MB (GB/s)": copy}
