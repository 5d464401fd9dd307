"""Figures for the optimizer: W4 (fusion, memory), W1/W2 steps (nodes vs kernels, time with
and without optimization), W7 N=10,000 (trace + optimize + compile time stays linear).

    taskset -c 0 python bench/measure_passes.py [w4 w1 w2 w7]

Everything is measured in the same run with `optimize=True` and `optimize=False`. W1 and W2
use data of the benchmark's shapes (moons drawn in numpy; random digits-like features, since
scikit-learn is not a dependency): kernel counts and per-step times depend on shapes only.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import graphc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))    # run as a script from anywhere
from bench.workloads import w1_step, w2_step, w4, w7  # noqa: E402


def per_call_ms(fn, args, reps: int = 20, repeat: int = 7) -> float:
    fn(*args)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn(*args)
        times.append((time.perf_counter() - t0) / reps)
    return statistics.median(times) * 1e3


def report(name: str, make, args, reps: int) -> None:
    for optimize in (True, False):
        f = graphc.compile(make(), optimize=optimize)
        st = f.stats(*args)
        ms = per_call_ms(f, args, reps)
        print(f"{name} optimize={optimize!s:5}: nodes {st['nodes']:5d}  kernels "
              f"{st['kernels']:4d}  buffers {st['buffers']:4d}  peak_bytes "
              f"{st['peak_bytes']:9d}  {ms * 1e3:9.1f} us/call")


def main(which) -> None:
    if "w4" in which:
        x = np.random.default_rng(0).uniform(-2, 2, 1_000_000).astype(np.float32)
        report("W4", lambda: graphc.value_and_grad(w4), (x,), reps=10)
        print(f"W4 input bytes: {x.nbytes}")
    if "w1" in which:
        step, args = w1_step()
        report("W1", lambda: step, args, reps=200)
    if "w2" in which:
        step, args = w2_step()
        report("W2", lambda: step, args, reps=100)
    if "w7" in which:
        x = np.random.default_rng(0).uniform(-1, 1, 100)
        with tempfile.TemporaryDirectory() as cache:
            os.environ["GRAPHC_CACHE_DIR"] = cache
            for optimize in (True, False):
                t0 = time.perf_counter()
                f = graphc.compile(graphc.value_and_grad(w7(10_000)), optimize=optimize)
                f(x)
                first = time.perf_counter() - t0
                st = f.stats(x)
                print(f"W7 N=10000 optimize={optimize!s:5}: nodes {st['nodes']} kernels "
                      f"{st['kernels']}  first result {first:.2f} s (trace, passes, tape, "
                      "build in an empty cache)")


if __name__ == "__main__":
    main(sys.argv[1:] or ["w4", "w1", "w2", "w7"])
