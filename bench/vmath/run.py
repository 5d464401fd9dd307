"""Build bench/vmath/vmath_bench.c once per vector-math option, run each pinned, print tables.

    python bench/vmath/run.py [--cpu 0] [--vec-report]

Options: scalar libm (graphc's old flags), glibc libmvec, SLEEF (libsleefgnuabi, if installed),
graphc's own kernels (csrc/graphc_vmath.h). Flags are graphc's (graphc/build.py) plus
-fopenmp-simd for W4's `#pragma omp simd reduction`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
CSRC = HERE.parents[1] / "csrc"
BASE = ["-O3", "-march=native", "-mprefer-vector-width=256", "-fopenmp-simd"]
OPTIONS = {
    "scalar libm": ([*BASE, "-DOPT_SCALAR"], ["-lm"]),
    "libmvec": ([*BASE, "-fno-math-errno", "-DOPT_VEC"], ["-lmvec", "-lm"]),
    "SLEEF": ([*BASE, "-fno-math-errno", "-DOPT_VEC"], ["-lsleefgnuabi", "-lm"]),
    "own (graphc_vmath.h)": ([*BASE, "-fno-math-errno", "-DOPT_OWN", f"-I{CSRC}"], ["-lm"]),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu", default="0")
    ap.add_argument("--rounds", type=int, default=3,
                    help="run every option this many times, interleaved; report the minimum "
                         "of the per-run medians (the machine is shared)")
    ap.add_argument("--vec-report", action="store_true", help="print gcc -fopt-info-vec")
    args = ap.parse_args()
    results: dict[str, dict[tuple[str, str], str]] = {}
    exes: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for opt, (flags, libs) in OPTIONS.items():
            exe = os.path.join(tmp, f"b{len(exes)}")
            cmd = ["gcc", *flags, str(HERE / "vmath_bench.c"), "-o", exe, *libs]
            if args.vec_report:
                cmd.insert(1, "-fopt-info-vec-optimized")
            built = subprocess.run(cmd, capture_output=True, text=True)
            if built.returncode != 0:
                print(f"# {opt}: build failed: {built.stderr.strip().splitlines()[-1]}")
                continue
            print("#", " ".join(cmd))
            if args.vec_report:
                print(built.stderr)
            exes[opt] = exe
        best: dict[str, dict[tuple[str, str], tuple[float, str]]] = {o: {} for o in exes}
        for _ in range(args.rounds):
            for opt, exe in exes.items():
                out = subprocess.run(["taskset", "-c", args.cpu, exe], capture_output=True,
                                     text=True, check=True).stdout
                for line in out.splitlines():
                    dt, name, rest = line.split(" ", 2)
                    t = float(rest.split()[0])
                    old = best[opt].get((dt, name))
                    if old is None or t < old[0]:
                        best[opt][(dt, name)] = (t, rest)
        results = {o: {k: v[1] for k, v in r.items()} for o, r in best.items()}
    opts = list(results)
    keys = list(next(iter(results.values())))
    print("| dtype | function | " + " | ".join(opts) + " |")
    print("|---|---|" + "---|" * len(opts))
    for key in keys:
        print(f"| {key[0]} | {key[1]} | " + " | ".join(results[o].get(key, "-") for o in opts)
              + " |")


if __name__ == "__main__":
    main()
