"""Linear cost at any graph shape (issue 13, item 5): CPU seconds from tracing to the C text
(trace, autodiff, passes, scheduling, fusion, tape encoding; gcc excluded, as the tape's C
does not grow with the graph) of value_and_grad of each shape at two sizes; for the reverse
tape (W7's default path), tracing the forward graph and encoding it. Ten times the
size may cost at most RATIO_MAX times the time.

    taskset -c 0 python -m bench.measure_scale [--small 10000 --large 100000] [--repeats 3]
                                               [--only "reverse tape"]

CPU time of this process, with the collector paused (the machine is shared), best of 3
repeats of each size by default (with 2 the wide stack measured 12.1x once for the 12x
bound): a burst of load must then hit every run of a size to move its time. A size's repeats
run one after the other, each finding the memory its previous run freed (alternating the
sizes, or timing ten small runs in a row, did not lower the ratio: bench/RESULTS.md, "Review
leftovers folded").
W7's size is its number of ops (about 20 nodes each), so W7 runs at a tenth of the other
sizes by default.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from bench.workloads import deep_chain, w7, wide_stack

RATIO_MAX = 12.0


def _w7_args(n: int) -> tuple:
    return (np.random.default_rng(7).uniform(-1, 1, 100),)


SHAPES = {   # name -> (loss for a size, its arguments, size scale)
    "wide stack": (wide_stack, lambda n: (np.ones(n),), 1.0),
    "deep chain": (deep_chain, lambda n: (1.0,), 1.0),
    "W7, loss sum(stack(nodes))": (lambda n: w7(n, stack=True), _w7_args, 0.1),
    "W7, loss a chain of +": (w7, _w7_args, 0.1),
    "W7, reverse tape, stack": (lambda n: w7(n, stack=True), _w7_args, 0.1),
    "W7, reverse tape, chain of +": (w7, _w7_args, 0.1),
}


def frontend_seconds(shape: str, n: int, repeats: int) -> float:
    """Best CPU seconds over `repeats` from tracing value_and_grad to the C source."""
    import graphc
    from graphc.capture import leaf_spec, trace_to_graph
    from graphc.codegen.c import generate
    from graphc.passes import optimize
    from graphc.runtime import paused_gc
    make, args, _ = SHAPES[shape]
    best = float("inf")
    for _ in range(repeats):
        fn = graphc.value_and_grad(make(n))
        with paused_gc():
            t0 = time.process_time()
            if "reverse tape" in shape:     # trace the forward graph, encode it (any size)
                a, saved = args(n), os.environ.get("GRAPHC_REVERSE_TAPE_MIN_NODES")
                os.environ["GRAPHC_REVERSE_TAPE_MIN_NODES"] = "0"
                try:
                    assert fn.reverse_tape(a, [leaf_spec(x) for x in a], None) is not None
                finally:
                    if saved is None:
                        del os.environ["GRAPHC_REVERSE_TAPE_MIN_NODES"]
                    else:
                        os.environ["GRAPHC_REVERSE_TAPE_MIN_NODES"] = saved
            else:
                graph, _ = trace_to_graph(fn.fresh_entry(), args(n))
                graph.structure_key()
                generate(optimize(graph))
            best = min(best, time.process_time() - t0)
    return best


def growth(shape: str, small: int, large: int, repeats: int = 3) -> tuple[float, float]:
    """(seconds at the small size, seconds at the large size), each scaled by the shape."""
    scale = SHAPES[shape][2]
    return (frontend_seconds(shape, max(1, int(small * scale)), repeats),
            frontend_seconds(shape, max(1, int(large * scale)), repeats))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="the shapes whose name contains this")
    args = parser.parse_args()
    print(f"| shape | size | CPU s | size ×{args.large / args.small:g} | CPU s | ratio |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for shape, (_, _, scale) in SHAPES.items():
        if args.only not in shape:
            continue
        t_small, t_large = growth(shape, args.small, args.large, args.repeats)
        worst = max(worst, t_large / t_small)
        print(f"| {shape} | {int(args.small * scale):,} | {t_small:.2f} | "
              f"{int(args.large * scale):,} | {t_large:.2f} | {t_large / t_small:.1f} |",
              flush=True)
    assert worst <= RATIO_MAX * args.large / args.small / 10, \
        f"cost grows superlinearly: {worst:.1f}x for {args.large / args.small:g}x the size"


if __name__ == "__main__":
    main()
