"""Figures for the optimizer: W4 (fusion, memory), W1/W2 steps (nodes vs kernels, time with
and without optimization), W7 N=10,000 (CPU time of trace, passes and code generation).

    taskset -c 0 python bench/measure_passes.py [w4 w1 w2 w7]

Everything is measured in the same run with `optimize=True` and `optimize=False`. W1 and W2
use data of the benchmark's shapes (moons drawn in numpy; random digits-like features, since
scikit-learn is not a dependency): kernel counts and per-step times depend on shapes only.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

import graphc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))    # run as a script from anywhere
from bench.workloads import w1_step, w2_step, w4, w7  # noqa: E402


def per_call_us(fns, args, reps: int, repeat: int = 21) -> list[tuple[float, float]]:
    """(median, min) CPU time per call of each function (process time: a shared machine's
    other jobs preempt us, they do not count), the functions timed in alternation."""
    for fn in fns:
        fn(*args)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            t0 = time.process_time()
            for _ in range(reps):
                fn(*args)
            ts.append((time.process_time() - t0) / reps)
    return [(statistics.median(ts) * 1e6, min(ts) * 1e6) for ts in times]


def report(name: str, make, args, reps: int) -> None:
    fns = [graphc.compile(make(), optimize=opt) for opt in (True, False)]
    us = per_call_us(fns, args, reps)
    for opt, f, (med, low) in zip((True, False), fns, us):
        st = f.stats(*args)
        print(f"{name} optimize={opt!s:5}: nodes {st['nodes']:5d}  kernels {st['kernels']:4d}  "
              f"buffers {st['buffers']:4d}  peak_bytes {st['peak_bytes']:9d}  "
              f"{med:9.1f} us/call (median; min {low:.1f})")


def main(which) -> None:
    if "w4" in which:
        x = np.random.default_rng(0).uniform(-2, 2, 1_000_000).astype(np.float32)
        report("W4", lambda: graphc.value_and_grad(w4), (x,), reps=3)
        print(f"W4 input bytes: {x.nbytes}")
    if "w1" in which:
        step, args = w1_step()
        report("W1", lambda: step, args, reps=200)
    if "w2" in which:
        step, args = w2_step()
        report("W2", lambda: step, args, reps=100)
    if "w7" in which:
        w7_phases(10_000)


def w7_phases(n_ops: int) -> None:
    """CPU seconds of each stage up to the C text (gcc excluded: the tape's C is cached)."""
    from graphc.capture import trace_to_graph
    from graphc.codegen.c import generate
    from graphc.passes import optimize
    from graphc.runtime import paused_gc
    x = np.random.default_rng(0).uniform(-1, 1, 100)
    f = graphc.value_and_grad(w7(n_ops))
    with paused_gc():
        t0 = time.process_time()
        g, _ = trace_to_graph(f.fresh_entry(), (x,))
        t1 = time.process_time()
        g2 = optimize(g)
        t2 = time.process_time()
        sched = generate(g2)[2]
        t3 = time.process_time()
    print(f"W7 N={n_ops}: {len(g.nodes)} -> {len(g2.nodes)} nodes, {len(sched.kernels)} "
          f"kernels; CPU s: trace {t1 - t0:.2f}, passes {t2 - t1:.2f}, schedule+tape+C "
          f"{t3 - t2:.2f}, total {t3 - t0:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["w4", "w1", "w2", "w7"])
