"""Every workload of ../shared/BENCHMARKS.md, for graphc and each installed peer, side by side
in one run (pytest-benchmark). Each implementation is first checked to compute the same
losses (or values and gradients) as the hand-written numpy reference.

    make bench                  # taskset -c 0, then bench/report.py writes RESULTS.md + chart
    GRAPHC_BENCH_QUICK=1 ...    # fewer rounds, no torch.compile, W7 at 10,000 ops for graphc
                                #   and the C limit only

W7 also records each implementation's first result (CPU seconds of this process and its
children, from building the step to its first value): report.py adds W7's total, the first
result plus 10,000 evaluations.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from bench import problems as P
from bench.peers import WORKLOADS, registry

QUICK = bool(os.environ.get("GRAPHC_BENCH_QUICK"))
REGISTRY = registry()
SLOW = {"micrograd", "autograd"}
CASES = [(w, name) for w in WORKLOADS for name in REGISTRY[w]
         if not (QUICK and ("compile" in name and "graphc" not in name or w.startswith(
             "W7-10000") and not name.startswith(("graphc", "C by hand"))))]


def _reference(workload: str, n: int) -> list:
    """The first n results of the reference implementation."""
    if workload.startswith("W7"):
        return [P.w7_python(P.w7_x(), P.W7_WORKLOADS[workload][0])] * n
    from bench.peers import numpy_impl
    step = numpy_impl.CASES[workload]["numpy"]()
    return [step() for _ in range(n)]


def _numbers(result) -> list[float]:
    """Comparable numbers: a loss, or a value with its gradient (whole up to 100 elements,
    else its sum and first element)."""
    if isinstance(result, tuple):
        out = [float(result[0])]
        for g in result[1:]:
            g = np.asarray(g, np.float64).reshape(-1)
            out += g.tolist() if g.size <= 100 else [float(g.sum()), float(g[0])]
        return out
    return [float(result)]


def check(workload: str, step, n: int = 3) -> None:
    """Raise unless step's first n results match the reference's."""
    rtol = 2e-3 if workload in ("W2", "W3", "W4") else 1e-6
    for k, (got, want) in enumerate(zip([step() for _ in range(n)], _reference(workload, n))):
        g, w = _numbers(got), _numbers(want)[:len(_numbers(got))]
        np.testing.assert_allclose(g[:len(w)], w, rtol=rtol, atol=1e-6,
                                   err_msg=f"{workload} call {k}")


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (gcc)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@pytest.mark.parametrize("workload,impl", CASES, ids=[f"{w}-{i}" for w, i in CASES])
def test_workload(benchmark, workload, impl):
    t0 = cpu_seconds()
    step = REGISTRY[workload][impl]()
    step()
    benchmark.extra_info["first_result"] = cpu_seconds() - t0
    check(workload, step)
    benchmark.group = workload
    benchmark.extra_info["impl"] = impl
    slow = impl in SLOW and workload in ("W1", "W2") or workload.startswith("W7") \
        and impl != "graphc" or workload == "W3"
    rounds = (3 if QUICK else 7) if slow else (20 if QUICK else 100)
    benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=1)
