"""Every workload of ../shared/BENCHMARKS.md, for graphc and each installed peer, side by side
in one run (pytest-benchmark). Each implementation is first checked to compute the same
losses (or values and gradients) as the hand-written numpy reference.

    make bench                  # taskset -c 0, then bench/report.py writes RESULTS.md + chart
    GRAPHC_BENCH_QUICK=1 ...    # fewer rounds, a step over 0.5 s runs once, no
                                #   torch.compile, no W7 at 10,000 ops, jax.jit's W7 only
                                #   if its first result fits a CPU budget (under 5 minutes)
    GRAPHC_BENCH_THREADS=2 GRAPHC_BENCH_WORKLOADS=W3,W5 ...   # the 2-thread rows (Makefile)

GRAPHC_BENCH_WORKLOADS (comma-separated; default all) selects workloads, W5 and W6 included.

GRAPHC_BENCH_THREADS (default 1) is the thread count every implementation gets: the Makefile
sets it with GRAPHC_NUM_THREADS, OPENBLAS_NUM_THREADS and OMP_NUM_THREADS before anything
loads; torch and jax read it in bench/peers. Rows of a run on n > 1 threads are grouped as
"<workload>, <n> threads".

W7 also records each implementation's first result (CPU seconds of this process and its
children, from building the step to its first value): report.py adds W7's total, the first
result plus 10,000 evaluations.

What quick mode leaves out is not dropped silently: each such case is skipped with its reason,
which bench/conftest.py adds to the JSON (`not_timed`) for report.py to list. jax.jit's W7
first result is an XLA compile of minutes on an empty cache: quick mode times jax.jit on W7
only if a child builds and runs its step within `first_result_budget.budget()` CPU seconds
(bench/first_result_budget.py), which leaves the program in jax's cache for the timed run.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

from bench import compile_latency as L
from bench import first_result_budget as FB
from bench import machine_limits as M
from bench import problems as P
from bench.peers import THREADS, WORKLOADS, registry

QUICK = bool(os.environ.get("GRAPHC_BENCH_QUICK"))
SELECTED = os.environ.get("GRAPHC_BENCH_WORKLOADS", "").split(",") if os.environ.get(
    "GRAPHC_BENCH_WORKLOADS") else (*WORKLOADS, "W5", "W6")
REGISTRY = registry()
SLOW = {"micrograd", "autograd"}
# calls per timed round, by (workload, not a slow peer)
BATCH = {("W0", True): 1000, ("W0", False): 100, ("W1", True): 100, ("W2", True): 10,
         ("W7-1000", True): 10, ("W7-1000-stack", True): 10}
CASES = [(w, name) for w in WORKLOADS if w in SELECTED for name in REGISTRY[w]]
# timed in CPU time (every implementation alike): steps of microseconds on one thread, whose
# cases run seconds apart. In wall time a 2-core VM shared with other jobs put W2's graphc at
# 194-305 us and PyTensor at 321-406 us in three runs of one day; a case's 20 rounds last
# 4-10 ms, so a median takes whatever load the moment has (bench/RESULTS.md, W2 harness).
CPU_TIMED = {"W0", "W1", "W2"}
# peers whose W7 first result (building and compiling the step) can outlast the quick run
BUDGETED = {"jax.jit"}


def left_out(workload: str, impl: str) -> str | None:
    """Why quick mode does not time this case (None: it does)."""
    if not QUICK:
        return None
    if "compile" in impl and "graphc" not in impl:
        return "quick mode runs no torch.compile (its compiles take minutes)"
    if workload.startswith("W7-10000"):
        return "quick mode runs W7 at 1,000 ops only"
    return None


def _group(workload: str) -> str:
    return workload if THREADS == 1 else f"{workload}, {THREADS} threads"


def _not_timed(request, workload: str, impl: str, reason: str) -> None:
    """Skip this case, recording why for the JSON (bench/conftest.py) and report.py."""
    request.node.user_properties.append(
        ("not_timed", {"group": _group(workload), "impl": impl, "reason": reason}))
    pytest.skip(reason)


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


def steady_state() -> None:
    """Wait until every tiered build has its -O3 module swapped in, so the timing is not
    of the quick build."""
    if "graphc.build" in sys.modules:
        sys.modules["graphc.build"].wait_for_optimized_builds()


@pytest.mark.parametrize("workload,impl", CASES, ids=[f"{w}-{i}" for w, i in CASES])
def test_workload(benchmark, request, workload, impl):
    reason = left_out(workload, impl)
    if reason:
        _not_timed(request, workload, impl, reason)
    if QUICK and workload.startswith("W7") and impl in BUDGETED:
        seconds = FB.budget()
        child = FB.first_result(REGISTRY[workload][impl].__module__, workload, impl, seconds)
        if not child["fits"]:
            _not_timed(request, workload, impl, f"its first result (trace, XLA compile, first "
                       f"call) did not fit quick mode's budget of {seconds} s CPU (RLIMIT_CPU "
                       f"stopped it; {child['cpu']:.1f} s of CPU measured)")
    t0 = L.cpu_seconds()
    step = REGISTRY[workload][impl]()
    if workload.startswith("W7"):      # stateless: a first call does not shift the checks
        step()
        benchmark.extra_info["first_result"] = L.cpu_seconds() - t0
    checked = time.process_time()
    check(workload, step)
    per_step = (time.process_time() - checked) / 3
    steady_state()
    benchmark.group = _group(workload)
    benchmark.extra_info["impl"] = impl
    slow = impl in SLOW and workload in ("W1", "W2") or workload.startswith("W7") \
        and impl != "graphc" or workload == "W3"
    rounds = (3 if QUICK else 7) if slow else (20 if QUICK else 100)
    if QUICK and per_step > 0.5:        # micrograd's W1 (1.6 s a step): once
        rounds = 1
    # a call of microseconds is timed in batches (one timer read per call would weigh as
    # much as the call, and one preempted call would be a whole round); micrograd's 14 µs
    # step too, in smaller ones
    iterations = 1 if rounds == 1 else BATCH.get((workload, impl not in SLOW), 1)
    if workload in CPU_TIMED and THREADS == 1:
        # one thread, microseconds: CPU time, which a shared machine's other processes do
        # not add to (pytest-benchmark has no per-test timer option: its private attribute)
        benchmark._timer = time.process_time
    benchmark.pedantic(step, rounds=rounds, iterations=iterations,
                       warmup_rounds=0 if rounds == 1 else 1)


@pytest.mark.skipif("W5" not in SELECTED, reason="W5 not selected")
@pytest.mark.parametrize("limit", list(M.LIMITS))
def test_machine_limit(benchmark, limit):
    """W5: the roofline (bench/machine_limits.py); report.py turns the median into a rate.
    Wall time, as W3 is timed, which report.py reads against it."""
    step, work = M.LIMITS[limit]()
    benchmark.group = "W5" if THREADS == 1 else f"W5, {THREADS} threads"
    benchmark.extra_info.update(impl=limit, work=work)
    benchmark.pedantic(step, rounds=5 if QUICK else 15, iterations=1, warmup_rounds=1)


W6_CASES = [(what, impl) for what in ("cold", "warm", "import") for impl in L.IMPLS
            if "W6" in SELECTED and (impl.startswith("graphc") or impl in REGISTRY["W2"])
            and not (what != "cold" and impl == "graphc untiered")]  # as graphc there


@pytest.mark.parametrize("what,impl", W6_CASES, ids=[f"W6-{w}-{i}" for w, i in W6_CASES])
def test_compile_latency(benchmark, tmp_path, what, impl):
    """W6: one new process per round (bench/compile_latency.py). The figure reported is the
    median of the children's CPU seconds (extra_info["cpu"]); pytest-benchmark's own stats
    are the wall time of the whole child, interpreter start included."""
    caches = iter(range(10**6))
    warm = str(tmp_path / "warm")
    if what == "warm":
        L.measure(impl, "step", warm)           # fills the cache

    def child():
        cache = str(tmp_path / f"cold{next(caches)}") if what == "cold" else warm
        return L.measure(impl, "import" if what == "import" else "step", cache)

    results = []
    benchmark.group = f"W6-{what}"
    benchmark.extra_info["impl"] = impl
    benchmark.pedantic(lambda: results.append(child()), rounds=3 if QUICK else 7,
                       iterations=1, warmup_rounds=1)
    losses = {round(r["loss"], 4) for r in results if "loss" in r}
    assert len(losses) <= 1, losses
    if losses:
        check("W2", lambda: losses.pop(), n=1)
    benchmark.extra_info["cpu"] = [r["cpu"] for r in results[1:]]   # after the warm-up round
