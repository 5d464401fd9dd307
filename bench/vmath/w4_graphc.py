"""W4 (value and gradient of sum(tanh(a*x+b)*sigmoid(x) + exp(-x*x)), 1M float32) through graphc.

    taskset -c 0 python bench/vmath/w4_graphc.py [--reps 15]

Prints the median CPU time (time.thread_time: the machine is shared) per call of the compiled
value_and_grad (today's unfused kernels).
Run it with PYTHONPATH pointing at another checkout to compare versions.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import graphc


def w4(x, a, b):
    return graphc.sum(graphc.tanh(a * x + b) * graphc.sigmoid(x) + graphc.exp(-x * x))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    x = np.random.default_rng(0).normal(size=1_000_000).astype(np.float32)
    a, b = np.float32(0.7), np.float32(0.1)
    f = graphc.compile(graphc.value_and_grad(w4))
    v, g = f(x, a, b)
    times = []
    for _ in range(args.reps):
        t0 = time.thread_time()
        f(x, a, b)
        times.append(time.thread_time() - t0)
    print(f"graphc {graphc.__file__}: W4 value+grad {1e3 * statistics.median(times):.2f} ms "
          f"(median of {args.reps}), value {float(v):.6f}")


if __name__ == "__main__":
    main()
