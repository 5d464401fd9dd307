"""W4 side by side in one run: graphc, jax.jit and the hand-written AVX C loop (bench/peers),
timed in alternation in CPU time (the machine is shared), each checked against numpy first.

    taskset -c 0 python bench/measure_w4.py [--repeat 41] [--all] [--no-schedule-row] [--wide]

--no-schedule-row adds graphc built without gcc's pre-RA scheduling flags (build._SCHEDULE_FLAGS),
a before/after of that change in one process. --wide adds graphc on x uniform in (-20, 20):
tanh's argument out of the unclamped kernels' range in every block (codegen/ranges.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))    # run as a script from anywhere
import numpy as np  # noqa: E402

import graphc  # noqa: E402
from bench import problems as P  # noqa: E402
from bench.bench_peers import check  # noqa: E402
from bench.measure_passes import per_call_us  # noqa: E402
from bench.peers import registry  # noqa: E402
from bench.workloads import w4  # noqa: E402
from graphc.build import wait_for_optimized_builds  # noqa: E402


@contextlib.contextmanager
def _without_schedule_flags():
    """Build as before the scheduling flags: other flags, a cache of its own, no memo hits."""
    from graphc import build, compiler
    saved = build._BASE_FLAGS, build._KEY_FLAGS, os.environ.get("GRAPHC_CACHE_DIR")
    with tempfile.TemporaryDirectory() as root:
        build._BASE_FLAGS = tuple(f for f in saved[0] if f not in build._SCHEDULE_FLAGS)
        build._KEY_FLAGS = build._BASE_FLAGS + build._NATIVE_FLAGS
        os.environ["GRAPHC_CACHE_DIR"] = root
        build._build_flags.cache_clear()
        build._loaded.clear()
        compiler._RUNNERS.clear()
        try:
            yield
        finally:
            build._BASE_FLAGS, build._KEY_FLAGS = saved[:2]
            if saved[2] is None:
                os.environ.pop("GRAPHC_CACHE_DIR")
            else:
                os.environ["GRAPHC_CACHE_DIR"] = saved[2]
            build._build_flags.cache_clear()
            build._loaded.clear()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=41)
    ap.add_argument("--reps", type=int, default=5, help="calls per timing")
    ap.add_argument("--all", action="store_true", help="every installed peer, not only "
                    "graphc, jax.jit and the C limit")
    ap.add_argument("--no-schedule-row", action="store_true",
                    help="also graphc built without build._SCHEDULE_FLAGS")
    ap.add_argument("--wide", action="store_true", help="also graphc on x in (-20, 20)")
    args = ap.parse_args()
    impls = {k: v for k, v in registry()["W4"].items()
             if args.all or k in ("graphc", "jax.jit") or "limit" in k}
    steps = {name: make() for name, make in impls.items()}
    for step in steps.values():
        check("W4", step)
    if args.no_schedule_row:
        with _without_schedule_flags():
            step = steps["graphc without pre-RA scheduling"] = impls["graphc"]()
            check("W4", step)                       # builds (the first call does)
            wait_for_optimized_builds()             # its -O3 tier, under these flags
    if args.wide:
        wide = np.random.default_rng(7).uniform(-20, 20, P.W4_N).astype(np.float32)
        f = graphc.compile(graphc.value_and_grad(w4))
        steps["graphc, x uniform(-20, 20)"] = P.value_and_grad_call(f, wide)
        steps["graphc, x uniform(-20, 20)"]()
    wait_for_optimized_builds()
    times = per_call_us(list(steps.values()), (), args.reps, args.repeat)
    base = dict(zip(steps, times)).get("jax.jit")
    for name, (med, low) in zip(steps, times):
        ratio = f"  {base[0] / med:5.2f}x jax.jit's speed" if base else ""
        print(f"W4 {name:34s} {med / 1e3:7.3f} ms (median CPU; min {low / 1e3:.3f}){ratio}")


if __name__ == "__main__":
    main()
