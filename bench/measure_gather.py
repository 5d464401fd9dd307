"""Figures for gathers (issue 17): an embedding lookup, forward and value + gradient.

    OPENBLAS_NUM_THREADS=1 taskset -c 0 python bench/measure_gather.py [rows dim n_idx repeat]

A table of rows x dim float32 (default 50,000 x 64), n_idx indices (default 4,096); the loss
is sum(table[idx] * w), so the gradient w.r.t. the table is a scatter-add. CPU time per call
(process time: other jobs on a shared machine do not count), median of `repeat` calls
(default 5) after a first one.
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

import graphc


def per_call_ms(fn, args, repeat: int) -> float:
    fn(*args)
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn(*args)
        times.append(time.process_time() - t0)
    return statistics.median(times) * 1e3


def main(rows: int = 50_000, dim: int = 64, n_idx: int = 4096, repeat: int = 5) -> None:
    rng = np.random.default_rng(0)
    table = rng.standard_normal((rows, dim)).astype(np.float32)
    idx = rng.integers(0, rows, n_idx)
    w = rng.standard_normal((n_idx, dim)).astype(np.float32)

    def loss(t, i, w):
        return (t[i] * w).sum()

    lookup = graphc.compile(lambda t, i: t[i])
    step = graphc.compile(graphc.value_and_grad(loss))
    np.testing.assert_array_equal(lookup(table, idx), table[idx])
    _, g = step(table, idx, w)
    want = np.zeros_like(table)
    np.add.at(want, idx, w)
    np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-6)
    fwd = per_call_ms(lookup, (table, idx), repeat)
    both = per_call_ms(step, (table, idx, w), repeat)
    ref = per_call_ms(lambda t, i: t[i], (table, idx), repeat)
    print(f"gather {rows}x{dim} f32 table, {n_idx} indices: lookup {fwd:.3f} ms/call, "
          f"value+grad {both:.3f} ms/call (numpy t[i]: {ref:.3f} ms)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
