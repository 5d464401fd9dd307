"""Every workload of ../shared/BENCHMARKS.md, for graphc and each installed peer, side by side
in one run (pytest-benchmark). Each implementation is first checked to compute the same
losses (or values and gradients) as the hand-written numpy reference.

    make bench                  # taskset -c 0, then bench/report.py writes RESULTS.md + chart
    GRAPHC_BENCH_QUICK=1 ...    # fewer rounds, no torch.compile, W7 at 1,000 ops only
    GRAPHC_BENCH_THREADS=2 GRAPHC_BENCH_WORKLOADS=W3 ...   # the 2-thread rows (see Makefile)

GRAPHC_BENCH_THREADS (default 1) is the thread count every implementation gets: the Makefile
sets it with GRAPHC_NUM_THREADS, OPENBLAS_NUM_THREADS and OMP_NUM_THREADS before anything
loads; torch and jax read it in bench/peers. Rows of a run on n > 1 threads are grouped as
"<workload>, <n> threads".
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from bench import problems as P
from bench.peers import THREADS, WORKLOADS, registry

QUICK = bool(os.environ.get("GRAPHC_BENCH_QUICK"))
SELECTED = os.environ.get("GRAPHC_BENCH_WORKLOADS", "").split(",") if os.environ.get(
    "GRAPHC_BENCH_WORKLOADS") else WORKLOADS
REGISTRY = registry()
SLOW = {"micrograd", "autograd"}
CASES = [(w, name) for w in WORKLOADS if w in SELECTED for name in REGISTRY[w]
         if not (QUICK and ("compile" in name and "graphc" not in name or w == "W7-10000"))]


def _reference(workload: str, n: int) -> list:
    """The first n results of the reference implementation."""
    if workload.startswith("W7"):
        value = P.w7_python(P.w7_x(), int(workload.split("-")[1]))
        return [(value,)] * n
    from bench.peers import numpy_impl
    step = numpy_impl.CASES[workload]["numpy"]()
    return [step() for _ in range(n)]


def _numbers(result) -> list[float]:
    """Comparable numbers: a loss, or a value with its gradient's sum and first element."""
    if isinstance(result, tuple):
        out = [float(result[0])]
        for g in result[1:]:
            g = np.asarray(g, np.float64).reshape(-1)
            out += [float(g.sum()), float(g[0])]
        return out
    return [float(result)]


def check(workload: str, step, n: int = 3) -> None:
    """Raise unless step's first n results match the reference's."""
    rtol = 2e-3 if workload in ("W2", "W3", "W4") else 1e-6
    for k, (got, want) in enumerate(zip([step() for _ in range(n)], _reference(workload, n))):
        g, w = _numbers(got), _numbers(want)[:len(_numbers(got))]
        np.testing.assert_allclose(g[:len(w)], w, rtol=rtol, atol=1e-6,
                                   err_msg=f"{workload} call {k}")


@pytest.mark.parametrize("workload,impl", CASES, ids=[f"{w}-{i}" for w, i in CASES])
def test_workload(benchmark, workload, impl):
    step = REGISTRY[workload][impl]()
    check(workload, step)
    benchmark.group = workload if THREADS == 1 else f"{workload}, {THREADS} threads"
    benchmark.extra_info["impl"] = impl
    slow = impl in SLOW and workload in ("W1", "W2") or workload.startswith("W7") \
        and impl != "graphc" or workload == "W3"
    rounds = (3 if QUICK else 7) if slow else (20 if QUICK else 100)
    benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=1)
