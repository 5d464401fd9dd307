"""Cost per kernel of a W1, W2 or W3 train step: the generated C is built with a mark between
kernels (the first `gc_part` function's kernels: all of W1's, W2's and W3's), then the step
runs in rounds of `reps` calls; the median per kernel over the rounds is printed.

    taskset -c 1 python bench/profile_step_kernels.py W1 [reps]
    taskset -c 0,1 python bench/profile_step_kernels.py W3 [reps] --threads 2 [--rev main]

One thread: the marks read the TSC. They cost ~30 cycles each and keep gcc from moving work
across kernels, so the total is a little above the uninstrumented step's. Cycles are TSC
ticks (this VM: 2.445 GHz).

--threads n (n >= 2): the marks read the CPU clock of each thread of the OpenMP team (waiting
threads sleep, OMP_WAIT_POLICY=passive, so a clock advances only while its thread works), and
rounds on 1 and on n threads alternate. What other processes on the machine cannot change:
per kernel, its CPU µs on 1 thread and each team thread's on n. The 1-thread step's CPU time
over the n-thread step's critical path (the sum over kernels of the busiest thread's share,
plus the calling thread's time outside the kernels: Python, the call) bounds the speed-up
from above on idle cores; so does it over the busiest thread's total (a looser bound: a
thread idle in one kernel cannot make up for it in another). With --rev, the step is also
linked to git revision rev's gemm (built from its csrc/, bench/measure_threads.py gemm_at) in
alternate rounds: before and after in one process.

A worker that sleeps is woken at each parallel region; with the gemm's slabs handed out as
threads arrive, the calling thread may take every slab of a short product (the N = 10 ones)
before the worker runs: on an idle machine the worker still spins from the last region and
takes its share, so their busiest-thread figures here are pessimistic.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

os.environ["GRAPHC_TIERED"] = "0"      # one build: the -O3 module is the one profiled
os.environ["GRAPHC_WARM_START"] = "0"  # generate every time (graphc/warm.py): marks the C
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))    # run as a script from anywhere

MAX_KERNELS = 512
MAX_THREADS = 8
_MARK = re.compile(r"^    /\* (.*) \*/$")     # the comment codegen writes above each kernel

_TSC = ("#include <x86intrin.h>\n"
        f"static unsigned long long gc_prof[{MAX_KERNELS}], gc_t0;\n"
        "void gc_prof_take(unsigned long long *o) {\n"
        f"    for (int i = 0; i < {MAX_KERNELS}; i++) {{ o[i] = gc_prof[i]; gc_prof[i] = 0; }}\n"
        "}\n"
        "void gc_prof_team(int n) { (void)n; }\n")
# CPU ns of each team thread: slot k * MAX_THREADS + t is thread t's time in kernel k
_CPU = ("#include <pthread.h>\n#include <time.h>\n#include <omp.h>\n"
        f"static unsigned long long gc_prof[{MAX_KERNELS * MAX_THREADS}], "
        f"gc_t0[{MAX_THREADS}];\n"
        f"static clockid_t gc_clock[{MAX_THREADS}];\n"
        "static int gc_team;\n"
        "void gc_prof_team(int n) {\n"
        "    gc_team = n;\n"
        "    #pragma omp parallel num_threads(n)\n"
        "    pthread_getcpuclockid(pthread_self(), &gc_clock[omp_get_thread_num()]);\n"
        "}\n"
        "static void gc_now(unsigned long long *t) {\n"
        "    for (int i = 0; i < gc_team; i++) {\n"
        "        struct timespec s;\n"
        "        clock_gettime(gc_clock[i], &s);\n"
        "        t[i] = 1000000000ull * (unsigned long long)s.tv_sec\n"
        "               + (unsigned long long)s.tv_nsec;\n"
        "    }\n"
        "}\n"
        "static void gc_mark(int k) {\n"
        f"    unsigned long long t[{MAX_THREADS}];\n"
        "    gc_now(t);\n"
        "    for (int i = 0; i < gc_team; i++) {\n"
        f"        if (k >= 0) gc_prof[k * {MAX_THREADS} + i] += t[i] - gc_t0[i];\n"
        "        gc_t0[i] = t[i];\n"
        "    }\n"
        "}\n"
        "void gc_prof_take(unsigned long long *o) {\n"
        f"    for (int i = 0; i < {MAX_KERNELS * MAX_THREADS}; i++) "
        "{ o[i] = gc_prof[i]; gc_prof[i] = 0; }\n"
        "}\n")


def instrument(source: str, threads: bool = False) -> tuple[str, list[str]]:
    """The C with a mark before each kernel of gc_part0 and at its end, accumulating into
    gc_prof (TSC ticks per kernel, or with `threads` CPU ns per kernel and team thread); and
    the kernels' comments."""
    def mark(k: int) -> str:
        if threads:
            return f"    gc_mark({k});"
        if k < 0:
            return "    gc_t0 = __rdtsc();"
        return (f"    {{ unsigned long long t = __rdtsc(); "
                f"gc_prof[{k}] += t - gc_t0; gc_t0 = t; }}")
    out, labels, inside = [], [], False
    for line in source.split("\n"):
        if line.startswith("static void gc_part0"):
            inside = True
        elif inside and line == "}":
            out.append(mark(len(labels) - 1))
            inside = False
        elif inside and (m := _MARK.match(line)):
            out.append(mark(len(labels) - 1))
            labels.append(m.group(1))
        out.append(line)
    text = "\n".join(out).replace('#include "graphc_rt.h"',
                                  '#include "graphc_rt.h"\n' + (_CPU if threads else _TSC), 1)
    return text, labels


def build(workload: str, threads: bool):
    """The workload's train step with marked C, its batch, the kernels' labels and the
    module's (ffi, lib)."""
    import graphc
    import graphc.native as native
    from bench import problems as P
    from bench.peers import graphc_impl as G
    labels: list[str] = []
    libs: list = []
    generate, use = native.generate_c, native.CRunner._use

    def generate_marked(graph, fuse=True):
        source, cdef, sched, marks = generate(graph, fuse)
        source, names = instrument(source, threads)
        labels[:] = names
        return source, cdef + ("void gc_prof_take(unsigned long long *);\n"
                               "void gc_prof_team(int);\n"), sched, marks

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
    native.generate_c, native.CRunner._use = generate, use
    return step, batch, labels, libs[-1]


def tsc(workload: str, reps: int) -> None:
    step, batch, labels, (ffi, lib) = build(workload, False)
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


def runtimes(lib, rev: str | None) -> dict[str, tuple]:
    """The gemms to link the step's module to: this tree's, and rev's if given; each as
    (LINK's arguments, the function that sets that runtime's thread count)."""
    from graphc import rt
    from graphc.codegen.c import LINKED
    here = rt.runtime_addresses()
    out = {"this tree": (tuple(here[key] for key in LINKED), rt.set_num_threads)}
    if rev:
        import tempfile

        from bench import measure_threads as M
        theirs = here | M.gemm_at(rev, tempfile.mkdtemp())
        theirs["threads"] = M.threads_at(M._LOADED[-1])
        out[rev] = (tuple(theirs[key] for key in LINKED), M._LOADED[-1].graphc_set_num_threads)
    return out


def team_cpu(workload: str, reps: int, threads: int, rounds: int, rev: str | None) -> None:
    from graphc import rt
    from graphc.codegen.c import LINK
    rt.set_num_threads(threads)
    step, batch, labels, (ffi, lib) = build(workload, True)
    lib.gc_prof_team(threads)
    gemms = runtimes(lib, rev)
    counts = ffi.new(f"unsigned long long[{MAX_KERNELS * MAX_THREADS}]")
    # per[g, n][k][t]: CPU µs of team thread t in kernel k per step, one list per round
    runs = [(g, n) for g in gemms for n in (1, threads)]
    per: dict[tuple, list] = {r: [[[] for _ in range(threads)] for _ in labels] for r in runs}
    outside: dict[tuple, list[float]] = {r: [] for r in runs}
    for _ in range(rounds):
        for g, n in runs:
            args, set_threads = gemms[g]
            getattr(lib, LINK)(*args)
            set_threads(n)
            step(*batch)
            lib.gc_prof_take(counts)
            t = time.thread_time()
            for _ in range(reps):
                step(*batch)
            main_us = 1e6 * (time.thread_time() - t) / reps
            lib.gc_prof_take(counts)
            for k in range(len(labels)):
                for i in range(threads):
                    per[g, n][k][i].append(counts[k * MAX_THREADS + i] / 1e3 / reps)
            outside[g, n].append(main_us - sum(counts[k * MAX_THREADS] / 1e3 / reps
                                               for k in range(len(labels))))
    getattr(lib, LINK)(*gemms["this tree"][0])
    for g in gemms:
        report(workload, labels, threads, {n: per[g, n] for n in (1, threads)},
               {n: outside[g, n] for n in (1, threads)},
               f"{rounds} rounds of {reps} steps, 1 and {threads} threads alternating"
               + (f" with {', '.join(gemms)}; gemm of {g}" if rev else ""))


def report(workload: str, labels: list[str], threads: int, per: dict, outside: dict,
           how: str) -> None:
    """The per-kernel table and the bounds."""
    med = {n: [[statistics.median(ts) for ts in kernel] for kernel in per[n]] for n in per}
    print(f"{workload} step, {how}; CPU µs per step (median)")
    print(f"| kernel | 1 thread | {' | '.join(f'thread {i}' for i in range(threads))} | "
          "busiest | extra work |")
    print("|---|---|" + "---|" * threads + "---|---|")
    for k, label in enumerate(labels):
        one, team = med[1][k][0], med[threads][k]
        print(f"| {k} {label} | {one:.0f} | {' | '.join(f'{c:.0f}' for c in team)} | "
              f"{max(team):.0f} | {sum(team) - one:+.0f} |")
    out1, outn = statistics.median(outside[1]), statistics.median(outside[threads])
    print(f"| outside the kernels (calling thread) | {out1:.0f} | {outn:.0f} | | {outn:.0f} | "
          f"{outn - out1:+.0f} |")
    one = sum(m[0] for m in med[1]) + out1
    totals = [sum(m[i] for m in med[threads]) + (outn if i == 0 else 0)
              for i in range(threads)]
    path = sum(max(m) for m in med[threads]) + outn
    print(f"1 thread: {one:.0f} µs; {threads} threads: " + ", ".join(
        f"{c:.0f}" for c in totals) + f" µs (sum {sum(totals):.0f}, {sum(totals) / one - 1:+.1%}"
          f"); critical path {path:.0f} µs. Speed-up bounds: {one / path:.2f}x (critical path), "
          f"{one / max(totals):.2f}x (busiest thread), {threads * one / sum(totals):.2f}x "
          "(the work alone)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workload", nargs="?", default="W1", choices=("W1", "W2", "W3"))
    parser.add_argument("reps", nargs="?", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--rev", help="--threads: also the step with this git revision's gemm")
    args = parser.parse_args()
    if args.threads > 1:
        os.environ["OMP_WAIT_POLICY"] = "passive"   # set before libgomp loads
        team_cpu(args.workload, args.reps, args.threads, args.rounds, args.rev)
    else:
        tsc(args.workload, args.reps)


if __name__ == "__main__":
    main()
