"""W7 before and after the reverse tape, against the C tape interpreter written by hand, in
one process: first result (CPU seconds of the process and its children, from building the
step to its first value, graphc's disk cache warm and its memory caches cleared), per
evaluation (CPU time, median of alternating repeats) and total = first + 10,000 evaluations.

    taskset -c 0 python -m bench.measure_w7 [--sizes 1000 10000] [--reps 20]
                                            [--no-symbolic] [--firsts 3]

"before" is graphc's symbolic path (autodiff, passes, schedule, C), forced by setting
GRAPHC_REVERSE_TAPE_MIN_NODES out of reach; "after" the reverse tape (the default).
--no-symbolic leaves "before" out (minutes at 10,000 ops); --firsts k reports the median of
k first results.
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np

import graphc
from bench import problems as P
from bench.compile_latency import cpu_seconds
from bench.measure_passes import per_call_us
from bench.peers import c_limit
from bench.workloads import w7

EVALUATIONS = 10_000


def _graphc(n: int, stack: bool, tape: bool):
    def make():
        os.environ["GRAPHC_REVERSE_TAPE_MIN_NODES"] = "2000" if tape else str(10**12)
        f = graphc.compile(graphc.value_and_grad(w7(n, stack)))
        return P.value_and_grad_call(f, P.w7_x())
    return make


def _cold_memory() -> None:
    """As in a new process: built runners and loaded modules forgotten (the disk cache stays)."""
    from graphc import build, compiler, reverse_tape
    compiler._RUNNERS.clear()
    build._loaded.clear()
    reverse_tape._interpreter.cache_clear()


def first_result(make) -> tuple[float, object]:
    _cold_memory()
    t0 = cpu_seconds()
    step = make()
    value, grad = step()
    return cpu_seconds() - t0, step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--no-symbolic", action="store_true")
    parser.add_argument("--firsts", type=int, default=1)
    args = parser.parse_args()
    print("| workload | implementation | first result s | per evaluation µs | total s | × C |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        for stack in (False, True):
            impls = {"C by hand (limit)": c_limit._w7(n),
                     "graphc before (symbolic)": _graphc(n, stack, False),
                     "graphc after (reverse tape)": _graphc(n, stack, True)}
            if args.no_symbolic:
                del impls["graphc before (symbolic)"]
            value, grad = P.w7_python(P.w7_x(), n)
            firsts, steps = {}, {}
            for name, make in impls.items():
                first_result(make)                     # fills the disk cache (gcc)
                runs = [first_result(make) for _ in range(args.firsts)]
                firsts[name] = statistics.median(t for t, _ in runs)
                steps[name] = runs[-1][1]
                v, g = steps[name]()
                assert abs(v - value) <= 1e-12 * abs(value), (name, v, value)
                np.testing.assert_allclose(g, grad, rtol=1e-12, atol=1e-12, err_msg=name)
            reps = max(1, args.reps * 1000 // n)
            per = per_call_us(list(steps.values()), (), reps, repeat=9)
            c_total = firsts["C by hand (limit)"] + EVALUATIONS * per[0][0] * 1e-6
            label = f"W7-{n}{'-stack' if stack else ''}"
            for (name, first), (med, _) in zip(firsts.items(), per):
                total = first + EVALUATIONS * med * 1e-6
                print(f"| {label} | {name} | {first:.2f} | {med:.1f} | {total:.2f} | "
                      f"{total / c_total:.2f} |", flush=True)


if __name__ == "__main__":
    main()
