"""Cold build cost of generated C (issue 11: inlined vector math slowed gcc): W7 N=1,000, the
W2 train step, and the value_and_grad of a sum over all ten vector-math functions (float32,
float64), each compiled into an empty cache directory, in a fresh process.

    python bench/measure_build.py [--rounds 3] [--root CHECKOUT]   (--root: another version)

Reports gcc's CPU seconds (getrusage of the children: the machine is shared, so wall time
mostly measures the other jobs) and the wall time to the first result, minimum over rounds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
import numpy as np
import graphc
from bench.workloads import w2_step, w7
t0 = time.perf_counter()
if {which!r} == "w7":
    f = graphc.compile(graphc.value_and_grad(w7(1000)))
    f(np.random.default_rng(0).uniform(-1, 1, 100))
elif {which!r}.startswith("ten"):
    names = ["exp", "log", "tanh", "sigmoid", "softplus", "sin", "cos", "log1p", "expm1", "sqrt"]
    f = graphc.compile(graphc.value_and_grad(
        lambda x: graphc.sum(sum(getattr(graphc, n)(x) for n in names))))
    f(np.random.default_rng(0).uniform(0.1, 2, 1000).astype({which!r}[3:]))
else:
    step, args = w2_step()
    graphc.compile(step)(*args)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(ru.ru_utime + ru.ru_stime, time.perf_counter() - t0)
"""


def cold(which: str, root: Path) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "GRAPHC_CACHE_DIR": cache}
        out = subprocess.run([sys.executable, "-c", _CHILD.format(root=str(root), which=which)],
                             env=env, capture_output=True, text=True, check=True).stdout
    cc_cpu, wall = map(float, out.split())
    return cc_cpu, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout whose graphc to time")
    args = ap.parse_args()
    for which, label in (("w7", "W7 N=1000"), ("w2", "W2 step"), ("tenfloat32", "ten f32"),
                         ("tenfloat64", "ten f64")):
        runs = [cold(which, args.root) for _ in range(args.rounds)]
        print(f"{label:10s} cold build: compiler CPU {min(r[0] for r in runs):.2f} s, "
              f"wall to first result {min(r[1] for r in runs):.2f} s (min of {args.rounds})")


if __name__ == "__main__":
    main()
