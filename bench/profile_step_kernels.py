"""TSC cycles per kernel of a W1 or W2 train step: the generated C is built with an `rdtsc`
mark between kernels (the first `gc_part` function's kernels: all of W1's and W2's), then the
step runs in rounds of `reps` calls; the median per kernel over 30 rounds is printed.

    taskset -c 1 python bench/profile_step_kernels.py W1 [reps]

The marks cost ~30 cycles each and keep gcc from moving work across kernels, so the total is
a little above the uninstrumented step's. Cycles are TSC ticks (this VM: 2.445 GHz).
"""

from __future__ import annotations

import os
import re
import statistics
import sys
from pathlib import Path

os.environ["GRAPHC_TIERED"] = "0"      # one build: the -O3 module is the one profiled
os.environ["GRAPHC_WARM_START"] = "0"  # generate every time (graphc/warm.py): marks the C
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))    # run as a script from anywhere
import graphc  # noqa: E402
import graphc.native as native  # noqa: E402
from bench import problems as P  # noqa: E402
from bench.peers import graphc_impl as G  # noqa: E402

MAX_KERNELS = 512
_MARK = re.compile(r"^    /\* (.*) \*/$")     # the comment codegen writes above each kernel


def instrument(source: str) -> tuple[str, list[str]]:
    """The C with a TSC mark before each kernel of gc_part0 and at its end, accumulating into
    gc_prof[k]; and the kernels' comments."""
    out, labels, inside = [], [], False
    for line in source.split("\n"):
        if line.startswith("static void gc_part0"):
            inside = True
        elif inside and line == "}":
            out.append(f"    gc_prof[{len(labels) - 1}] += __rdtsc() - gc_t0;")
            inside = False
        elif inside and (m := _MARK.match(line)):
            if labels:
                out.append(f"    {{ unsigned long long t = __rdtsc(); "
                           f"gc_prof[{len(labels) - 1}] += t - gc_t0; gc_t0 = t; }}")
            else:
                out.append("    gc_t0 = __rdtsc();")
            labels.append(m.group(1))
        out.append(line)
    header = ("#include <x86intrin.h>\n"
              f"static unsigned long long gc_prof[{MAX_KERNELS}], gc_t0;\n"
              "void gc_prof_take(unsigned long long *o) {\n"
              f"    for (int i = 0; i < {MAX_KERNELS}; i++) {{ o[i] = gc_prof[i]; "
              "gc_prof[i] = 0; }\n}\n")
    text = "\n".join(out).replace('#include "graphc_rt.h"', '#include "graphc_rt.h"\n' + header,
                                  1)
    return text, labels


def main(workload: str, reps: int) -> None:
    labels: list[str] = []
    libs: list = []
    generate, use = native.generate_c, native.CRunner._use

    def generate_marked(graph, fuse=True):
        source, cdef, sched, marks = generate(graph, fuse)
        source, names = instrument(source)
        labels[:] = names
        return source, cdef + "void gc_prof_take(unsigned long long *);\n", sched, marks

    def use_kept(self, lib):
        libs.append((self.ffi, lib))
        use(self, lib)
    native.generate_c, native.CRunner._use = generate_marked, use_kept
    loss, sizes, dtype, batch_fn, optimizer, lr = P.training_specs()[workload]
    params = G._as_dict(P.init_mlp(sizes, 0, dtype))
    step = graphc.train_step({"hinge": G._hinge, "ce": G._ce}[loss],
                             getattr(graphc.optim, optimizer)(params, lr=lr))
    batch = batch_fn()
    step(*batch)
    ffi, lib = libs[-1]
    counts = ffi.new(f"unsigned long long[{MAX_KERNELS}]")
    rounds: list[list[float]] = [[] for _ in labels]
    for _ in range(30):
        lib.gc_prof_take(counts)
        for _ in range(reps):
            step(*batch)
        lib.gc_prof_take(counts)
        for k, r in enumerate(rounds):
            r.append(counts[k] / reps)
    medians = [statistics.median(r) for r in rounds]
    for k, (cycles, label) in enumerate(zip(medians, labels)):
        print(f"{k:3d} {cycles:9.0f}  {label}")
    print(f"total {sum(medians):.0f} TSC cycles per step")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "W1", int(sys.argv[2]) if len(sys.argv) > 2
         else 200)
