"""W7's reverse-tape front end phase by phase, at two sizes in one process: the trace of the
forward graph, its topological order, the tape's encoding (what `reverse_tape` does before
the runner), CPU seconds, best of `--repeats` per size, the collector paused.

    taskset -c 1 python -m bench.measure_w7_front [--sizes 10000 100000] [--repeats 3]

bench.measure_scale times the same path as one figure (its "reverse tape" shapes); this
splits it, to see which phase grows faster than the size.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.workloads import w7

PHASES = ("trace", "toposort", "encode")


def phases(n_ops: int, stack: bool) -> tuple[list[float], int]:
    """(CPU seconds per phase, number of nodes) of one build."""
    from graphc.capture import _as_traced, call_traced, leaf_spec
    from graphc.codegen.scalar_tape import encode
    from graphc.ir import Graph, build_location, keep_whole, toposort
    from graphc.runtime import paused_gc
    fn, x = w7(n_ops, stack), np.random.default_rng(7).uniform(-1, 1, 100)
    with paused_gc():
        t0 = time.process_time()
        previous, was = build_location((__file__, 1)), keep_whole(True)
        try:
            traced = _as_traced(leaf_spec(x), "x")
            out = call_traced(fn, (traced,))
        finally:
            build_location(previous)
            keep_whole(was)
        t1 = time.process_time()
        nodes = toposort([out.node])
        t2 = time.process_time()
        encode(Graph([traced.node], [out.node], nodes=nodes), [0])
        t3 = time.process_time()
    return [t1 - t0, t2 - t1, t3 - t2], len(nodes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs=2, default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    small, large = args.sizes
    print(f"| loss | phase | {small:,} ops | {large:,} ops | ratio |")
    print("|---|---|---|---|---|")
    for stack in (True, False):
        best = {}
        for n in (small, large):
            runs = [phases(n, stack)[0] for _ in range(args.repeats)]
            best[n] = [min(r[k] for r in runs) for k in range(len(PHASES))]
            best[n].append(min(sum(r) for r in runs))
        for k, name in enumerate((*PHASES, "total")):
            a, b = best[small][k], best[large][k]
            print(f"| {'stack' if stack else 'chain of +'} | {name} | {a:.3f} | {b:.3f} | "
                  f"{b / a:.1f} |", flush=True)


if __name__ == "__main__":
    main()
