"""graphc's C gemm (csrc/gemm.c) against numpy's BLAS (OpenBLAS here), single-threaded.

    OPENBLAS_NUM_THREADS=1 taskset -c 0 python -m pytest bench/bench_gemm.py --benchmark-only
    OPENBLAS_NUM_THREADS=1 taskset -c 0 python bench/bench_gemm.py [--isa avx2]

(with graphc installed, e.g. ``pip install -e .``, or ``PYTHONPATH=.`` in a checkout). The
second prints a GFLOP/s table. "graphc" goes through the numpy wrapper ``graphc.rt.gemm``
(argument checks and pointer casts: a few microseconds); "direct" calls the C function with
prepared pointers, as generated kernels do, which shows the C cost of the small shapes.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from graphc import rt  # noqa: E402

SHAPES = [(512, 512, 512), (1024, 1024, 1024), (128, 64, 128), (100, 2, 16), (37, 53, 29)]
DTYPES = [np.float32, np.float64]


def operands(m, k, n, dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    return a, b, np.empty((m, n), dtype)


def runners(a, b, c):
    """name -> zero-argument callable computing c = a @ b."""
    lib, ffi = rt._runtime().lib, rt._runtime().ffi  # "direct": bypass the wrapper
    f32 = a.dtype == np.float32
    fn = lib.graphc_gemm_f32 if f32 else lib.graphc_gemm_f64
    (m, k), n = a.shape, b.shape[1]
    pa, pb, pc = (ffi.from_buffer("float[]" if f32 else "double[]", x) for x in (a, b, c))
    return {
        "graphc": lambda: rt.gemm(a, b, c),
        "direct": lambda: fn(m, n, k, pa, k, 1, pb, n, 1, pc, n, 0),
        "numpy": lambda: np.matmul(a, b, out=c),
    }


@pytest.mark.parametrize("impl", ["graphc", "direct", "numpy"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("m,k,n", SHAPES, ids=lambda s: str(s))
def test_gemm(benchmark, m, k, n, dtype, impl):
    a, b, c = operands(m, k, n, dtype)
    benchmark.group = f"{np.dtype(dtype).name} {m}x{k}x{n}"
    benchmark.extra_info["gflops"] = 2 * m * k * n / 1e9
    benchmark(runners(a, b, c)[impl])
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    assert np.allclose(c, a64 @ b64, rtol=1e-3, atol=1e-3 * np.sqrt(k))


def best_time(fn, budget=0.5, batches=10):
    """Best per-call time over several batches, each sized to take ~budget / batches seconds."""
    fn()
    t = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t, 1e-7)
    number = max(1, int(budget / batches / once))
    best = float("inf")
    for _ in range(batches):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t) / number)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--isa", choices=rt.ISAS, help="force one gemm path (default: best)")
    isa = rt.set_gemm_isa(parser.parse_args().isa)
    print(f"graphc gemm path: {isa}; numpy {np.__version__}; "
          f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    columns = ("M x K x N", "dtype", "graphc", "direct", "numpy", "graphc/np", "direct/np",
               "direct us", "numpy us")
    print("GFLOP/s of graphc (wrapper), direct (C call) and numpy; time ratios to numpy "
          "(< 1: graphc faster)")
    print(" ".join(f"{c:>10}" for c in columns))
    for dtype in DTYPES:
        for m, k, n in SHAPES:
            a, b, c = operands(m, k, n, dtype)
            t = {name: best_time(fn) for name, fn in runners(a, b, c).items()}
            gf = [2 * m * k * n / t[name] / 1e9 for name in ("graphc", "direct", "numpy")]
            row = [f"{m}x{k}x{n}", np.dtype(dtype).name, *(f"{g:.1f}" for g in gf),
                   f"{t['graphc'] / t['numpy']:.2f}", f"{t['direct'] / t['numpy']:.2f}",
                   f"{t['direct'] * 1e6:.2f}", f"{t['numpy'] * 1e6:.2f}"]
            print(" ".join(f"{c:>10}" for c in row))


if __name__ == "__main__":
    main()
