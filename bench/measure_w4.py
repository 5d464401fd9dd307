"""W4 side by side in one run: graphc, jax.jit and the hand-written AVX C loop (bench/peers),
timed in alternation in CPU time (the machine is shared), each checked against numpy first.

    taskset -c 0 python bench/measure_w4.py [--repeat 41] [--all]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))    # run as a script from anywhere
from bench.bench_peers import check  # noqa: E402
from bench.measure_passes import per_call_us  # noqa: E402
from bench.peers import registry  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=41)
    ap.add_argument("--reps", type=int, default=5, help="calls per timing")
    ap.add_argument("--all", action="store_true", help="every installed peer, not only "
                    "graphc, jax.jit and the C limit")
    args = ap.parse_args()
    impls = {k: v for k, v in registry()["W4"].items()
             if args.all or k in ("graphc", "jax.jit") or "limit" in k}
    steps = {name: make() for name, make in impls.items()}
    for step in steps.values():
        check("W4", step)
    times = per_call_us(list(steps.values()), (), args.reps, args.repeat)
    base = dict(zip(steps, times)).get("jax.jit")
    for name, (med, low) in zip(steps, times):
        ratio = f"  {base[0] / med:5.2f}x jax.jit's speed" if base else ""
        print(f"W4 {name:34s} {med / 1e3:7.3f} ms (median CPU; min {low / 1e3:.3f}){ratio}")


if __name__ == "__main__":
    main()
