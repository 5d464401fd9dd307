"""W3 (../shared/BENCHMARKS.md) on one and two threads, the gemm on W3's eight products, and
where threads start to pay for an elementwise loop.

    taskset -c 0 python -m bench.measure_threads w3                  # 1 thread, CPU time
    taskset -c 0,1 python -m bench.measure_threads w3 --threads 2    # 2 threads, wall time
    taskset -c 0 python -m bench.measure_threads gemm                # graphc vs numpy, per product
    taskset -c 0,1 python -m bench.measure_threads threshold         # 1 vs 2 threads by size
    taskset -c 0 python -m bench.measure_threads ab --rev main       # this gemm vs main's
    taskset -c 0,1 python -m bench.measure_threads split             # 2 threads' work split
    taskset -c 0,1 python -m bench.measure_threads scaling --rev main # 1 vs 2 threads, 2 gemms
    taskset -c 0 python -m bench.measure_threads plans               # the SGD update's plans

Every implementation gets the same thread count (GRAPHC_NUM_THREADS, OPENBLAS_NUM_THREADS,
torch.set_num_threads, XLA's intra-op threads), set before any of them is imported. Steps of
the implementations alternate, round after round, so a noisy neighbour slows all of them
alike; on one thread each step is timed in CPU time (what other processes cannot inflate), on
two in wall time (CPU time would count both threads). Prints the median, min and max per step,
and GFLOP/s counted in the 8.62 GFLOP a W3 step does, next to numpy's GEMM rate (2048³).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def set_threads(n: int) -> None:
    """Give every implementation n threads (as the Makefile's bench target does); must run
    before numpy, torch or jax load (bench/peers reads GRAPHC_BENCH_THREADS for those two)."""
    for name in ("GRAPHC_BENCH_THREADS", "GRAPHC_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "OMP_NUM_THREADS"):
        os.environ[name] = str(n)


def alternate(steps: dict, rounds: int, clock) -> dict[str, list[float]]:
    """Seconds per call of each step, the steps interleaved round after round."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            t = clock()
            step()
            times[name].append(clock() - t)
    return times


def w3(threads: int, rounds: int) -> None:
    import numpy as np

    from bench import machine_limits as M
    from bench.bench_peers import check
    from bench.peers import registry
    impls = registry()["W3"]
    wanted = ("graphc", "numpy", "jax.jit", "torch.compile step", "torch")
    steps = {name: impls[name]() for name in wanted if name in impls}
    for step in steps.values():
        check("W3", step)                 # also warms up (and compiles) each of them
    gemm, gemm_gflop = M.gemm()
    steps["numpy GEMM 2048³"] = gemm
    clock = time.process_time if threads == 1 else time.perf_counter
    times = alternate(steps, rounds, clock)
    rate = gemm_gflop / np.median(times.pop("numpy GEMM 2048³"))
    kind = "CPU" if threads == 1 else "wall"
    print(f"W3, {threads} thread(s), {rounds} alternating rounds, {kind} time per step; "
          f"numpy GEMM 2048³: {rate:.1f} GFLOP/s")
    print(f"| implementation | median | min | max | GFLOP/s ({M.W3_GFLOP:.2f} GFLOP) "
          "| vs numpy GEMM rate |")
    print("|---|---|---|---|---|---|")
    for name, ts in sorted(times.items(), key=lambda kv: np.median(kv[1])):
        med = np.median(ts)
        print(f"| {name} | {1e3 * med:.1f} ms | {1e3 * min(ts):.1f} | {1e3 * max(ts):.1f} | "
              f"{M.W3_GFLOP / med:.1f} | {M.W3_GFLOP / med / rate:.0%} |")


# the eight products of a W3 step: M, N, K, A transposed, B transposed
W3_PRODUCTS = [(256, 2048, 1024, 0, 0), (256, 2048, 2048, 0, 0), (256, 10, 2048, 0, 0),
               (256, 2048, 10, 0, 1), (256, 2048, 2048, 0, 1), (1024, 2048, 256, 1, 0),
               (2048, 2048, 256, 1, 0), (2048, 10, 256, 1, 0)]


def gemm(rounds: int) -> None:
    import numpy as np

    from bench.machine_limits import W3_GFLOP
    from graphc import rt
    rng = np.random.default_rng(0)
    times = {}
    for m, n, k, ta, tb in W3_PRODUCTS:     # one product at a time: every call finds it warm
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        a, b, c = (a.T if ta else a), (b.T if tb else b), np.empty((m, n), np.float32)
        name = f"{m}x{n}x{k}{' Aᵀ' if ta else ''}{' Bᵀ' if tb else ''}"
        steps = {f"graphc {name}": lambda a=a, b=b, c=c: rt.gemm(a, b, c),
                 f"numpy {name}": lambda a=a, b=b, c=c: np.matmul(a, b, out=c)}
        times |= {k: float(np.median(v))
                  for k, v in alternate(steps, rounds, time.process_time).items()}
    print("| product | graphc GFLOP/s | numpy GFLOP/s |")
    print("|---|---|---|")
    total = {"graphc": 0.0, "numpy": 0.0}
    for m, n, k, ta, tb in W3_PRODUCTS:
        name = f"{m}x{n}x{k}{' Aᵀ' if ta else ''}{' Bᵀ' if tb else ''}"
        g, p = times[f"graphc {name}"], times[f"numpy {name}"]
        total["graphc"] += g
        total["numpy"] += p
        print(f"| {name} | {2e-9 * m * n * k / g:.1f} | {2e-9 * m * n * k / p:.1f} |")
    print(f"| all eight ({W3_GFLOP:.2f} GFLOP) | {W3_GFLOP / total['graphc']:.1f} | "
          f"{W3_GFLOP / total['numpy']:.1f} |")


def gemm_at(rev: str, where: str) -> dict[str, int]:
    """csrc/ of git revision rev built in the directory where (with graphc._rt's flags) and
    loaded: the addresses of its graphc_gemm_f32 and graphc_gemm_f64."""
    import ctypes
    import subprocess

    from graphc._build_rt import EXTRA_COMPILE_ARGS, HEADERS, SOURCES
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in SOURCES + HEADERS:
        with open(os.path.join(where, name), "wb") as f:
            f.write(subprocess.run(["git", "-C", root, "show", f"{rev}:csrc/{name}"],
                                   check=True, capture_output=True).stdout)
    subprocess.run(["gcc", "-shared", "-fPIC", *EXTRA_COMPILE_ARGS, "-o", "gemm.so", *SOURCES],
                   cwd=where, check=True)
    lib = ctypes.CDLL(os.path.join(where, "gemm.so"))
    _LOADED.append(lib)
    return {key: ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
            for key, name in (("f32", "graphc_gemm_f32"), ("f64", "graphc_gemm_f64"),
                              ("update_f32", "graphc_gemm_update_f32"),
                              ("update_f64", "graphc_gemm_update_f64"))
            if hasattr(lib, name)}


_LOADED: list = []      # libraries loaded by gemm_at, kept for the life of the process


def threads_at(lib) -> int:
    """The address of the thread count of a library loaded by gemm_at (its own, 1 until its
    graphc_set_num_threads is called)."""
    import ctypes
    return ctypes.addressof(ctypes.c_int.in_dll(lib, "graphc_threads"))


def ab(rev: str, rounds: int) -> None:
    """W3's train step and its eight products with this tree's gemm and with git revision
    rev's, alternating, on one thread (CPU time): between steps the step's C module is linked
    to one gemm or the other (graphc_link_runtime), so all else is the same code. A revision
    without graphc_gemm_update (before epilogues) gets this tree's for the step's update
    products: compare the step against a checkout of rev instead (`w3` in both)."""
    import ctypes
    import tempfile

    import numpy as np

    import graphc
    from bench import problems as P
    from bench.machine_limits import W3_GFLOP
    from bench.peers import graphc_impl as G
    from graphc import rt
    from graphc.build import load_module
    from graphc.codegen.c import LINK, LINKED, generate
    where = tempfile.mkdtemp()
    here = rt.runtime_addresses()
    gemms = {"this tree": here, rev: here | gemm_at(rev, where)}
    step = graphc.train_step(G._ce, graphc.optim.SGD(
        G._as_dict(P.init_mlp(P.W3_SIZES, 0, "float32")), lr=P.W3_LR))
    batch = P.w3_batch()
    step(*batch)
    lib = load_module(*generate(step.graph)[:2])[1]     # the step's module (cached in memory)
    assert step.entry == lib.graphc_entry, "not the step's own module"
    link = getattr(lib, LINK)

    def on(name):
        return lambda: (link(*(gemms[name][key] for key in LINKED)), step(*batch))
    times = alternate({name: on(name) for name in gemms}, rounds, time.process_time)
    link(*(here[key] for key in LINKED))
    print(f"W3 step, {rounds} alternating rounds, median CPU ms: " + ", ".join(
        f"{name} {1e3 * np.median(ts):.1f}" for name, ts in times.items()))

    c_long, fp = ctypes.c_long, ctypes.POINTER(ctypes.c_float)
    fn_type = ctypes.CFUNCTYPE(None, c_long, c_long, c_long, fp, c_long, c_long, fp, c_long,
                               c_long, fp, c_long, ctypes.c_int)
    fns = {name: fn_type(g["f32"]) for name, g in gemms.items()}
    rng = np.random.default_rng(0)
    times = {}
    for p, (m, n, k, ta, tb) in enumerate(W3_PRODUCTS):   # one at a time, as in gemm()
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        a, b, c = (a.T if ta else a), (b.T if tb else b), np.empty((m, n), np.float32)
        args = (m, n, k, a.ctypes.data_as(fp), *(s // 4 for s in a.strides),
                b.ctypes.data_as(fp), *(s // 4 for s in b.strides), c.ctypes.data_as(fp), n, 0)
        steps = {name: lambda f=fns[name], args=args: f(*args) for name in gemms}
        steps["numpy"] = lambda a=a, b=b, c=c: np.matmul(a, b, out=c)
        times |= {(name, p): float(np.median(ts))
                  for name, ts in alternate(steps, rounds, time.process_time).items()}
    names = [*gemms, "numpy"]
    print("| product | " + " | ".join(f"{name} GFLOP/s" for name in names) + " |")
    print("|---|" + "---|" * len(names))
    for p, (m, n, k, ta, tb) in enumerate(W3_PRODUCTS):
        print(f"| {m}x{n}x{k}{' Aᵀ' if ta else ''}{' Bᵀ' if tb else ''} | " + " | ".join(
            f"{2e-9 * m * n * k / times[name, p]:.1f}" for name in names) + " |")
    print(f"| all eight ({W3_GFLOP:.2f} GFLOP) | " + " | ".join(
        f"{W3_GFLOP / sum(t for key, t in times.items() if key[0] == name):.1f}"
        for name in names) + " |")


def scaling(rev: str, rounds: int) -> None:
    """W3's graphc step in wall time on 1 and 2 threads, linked to this tree's gemm and to git
    revision rev's in turn (as in ab), the four alternating round after round: each gemm's
    2-thread speed-up over its own 1-thread step, in one process (meaningful on idle cores)."""
    import tempfile

    import numpy as np

    import graphc
    from bench import problems as P
    from bench.peers import graphc_impl as G
    from graphc import rt
    from graphc.build import load_module
    from graphc.codegen.c import LINK, LINKED, generate
    here = rt.runtime_addresses()
    theirs = here | gemm_at(rev, tempfile.mkdtemp())
    theirs["threads"] = threads_at(_LOADED[-1])
    gemms = {"this tree": (here, rt.set_num_threads),
             rev: (theirs, _LOADED[-1].graphc_set_num_threads)}
    step = graphc.train_step(G._ce, graphc.optim.SGD(
        G._as_dict(P.init_mlp(P.W3_SIZES, 0, "float32")), lr=P.W3_LR))
    batch = P.w3_batch()
    step(*batch)
    link = getattr(load_module(*generate(step.graph)[:2])[1], LINK)

    def on(name, n):
        addresses, set_threads = gemms[name]
        return lambda: (link(*(addresses[key] for key in LINKED)), set_threads(n),
                        step(*batch))
    times = alternate({(name, n): on(name, n) for name in gemms for n in (1, 2)}, rounds,
                      time.perf_counter)
    link(*(here[key] for key in LINKED))
    print(f"W3 step, {rounds} alternating rounds, wall ms (median [min])")
    for name in gemms:
        one, two = (times[name, n] for n in (1, 2))
        print(f"| {name} | 1 thread {1e3 * np.median(one):.1f} [{1e3 * min(one):.1f}] | "
              f"2 threads {1e3 * np.median(two):.1f} [{1e3 * min(two):.1f}] | "
              f"{np.median(one) / np.median(two):.2f}x [{min(one) / min(two):.2f}x] |")


def plans(rounds: int) -> None:
    """W3's train step built three ways, alternating on one thread (CPU time): the SGD
    update as an epilogue of the weight-gradient gemms writing the parameters in place (the
    default), the epilogue into the arena (GRAPHC_UPDATE_IN_PLACE=0) and the fused update
    loops (fuse.update_epilogues off); their parameters after a step compared."""
    import numpy as np

    import graphc
    from bench import problems as P
    from bench.peers import graphc_impl as G
    from graphc import schedule

    def build():
        params = G._as_dict(P.init_mlp(P.W3_SIZES, 0, "float32"))
        step = graphc.train_step(G._ce, graphc.optim.SGD(params, lr=P.W3_LR))
        step(*batch)                      # built now, under the settings of the moment
        return step, params

    batch = P.w3_batch()
    found = schedule.update_epilogues
    steps = {}
    for name, flag in (("epilogue in place", "1"), ("epilogue into the arena", "0")):
        os.environ["GRAPHC_UPDATE_IN_PLACE"] = flag
        steps[name] = build()
    os.environ.pop("GRAPHC_UPDATE_IN_PLACE")
    schedule.update_epilogues = lambda graph, groups: {}
    try:
        steps["update loops"] = build()
    finally:
        schedule.update_epilogues = found
    ref = steps["update loops"][1]
    same = all(p[k].tobytes() == ref[k].tobytes() for _, p in steps.values() for k in ref)
    times = alternate({name: (lambda s=s: s(*batch)) for name, (s, _) in steps.items()},
                      rounds, time.process_time)
    print(f"W3 step, {rounds} alternating rounds, CPU ms; parameters after a step "
          f"{'bit-identical' if same else 'DIFFER'}")
    for name, ts in times.items():
        print(f"| {name} | {1e3 * np.median(ts):.1f} ms | {1e3 * min(ts):.1f} |")


def _thread_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each thread of this process, by thread id."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def split(rounds: int) -> None:
    """How W3's graphc step divides its work between 2 threads, which neither the machine's
    load nor wall time affects: the CPU time of each thread over `rounds` steps (threads
    sleep when they wait: OMP_WAIT_POLICY=passive, so waiting costs no CPU), against the
    process's CPU time per step on 1 thread. The work of the busier thread bounds the
    2-thread step from below: 1-thread time / busier thread's time bounds the speed-up
    from above (equal on idle cores with no memory-bandwidth limit)."""
    import numpy as np

    import graphc
    from bench import problems as P
    from bench.peers import graphc_impl as G
    from graphc import rt
    step = graphc.train_step(G._ce, graphc.optim.SGD(
        G._as_dict(P.init_mlp(P.W3_SIZES, 0, "float32")), lr=P.W3_LR))
    batch = P.w3_batch()
    rt.set_num_threads(2)
    step(*batch)                    # builds, and starts the team
    rt.set_num_threads(1)
    one = alternate({"step": lambda: step(*batch)}, rounds, time.process_time)["step"]
    rt.set_num_threads(2)
    before = _thread_cpu()
    for _ in range(rounds):
        step(*batch)
    after = _thread_cpu()
    per = sorted(((after[t] - before.get(t, 0.0)) / rounds for t in after), reverse=True)
    busy = [c for c in per if c > 0.001]
    one_ms = 1e3 * float(np.median(one))
    print(f"W3 step, {rounds} steps: 1 thread {one_ms:.1f} ms CPU (median); on 2 threads "
          "the threads' CPU ms per step: " + ", ".join(f"{1e3 * c:.1f}" for c in busy) +
          f" (sum {1e3 * sum(busy):.1f}); speed-up bound {one_ms / (1e3 * busy[0]):.2f}x")


def threshold(rounds: int) -> None:
    """Wall time of one fused elementwise loop on 1 and 2 threads, by size, every size built
    with a parallel loop (PAR_MIN_ELEMS lowered to 0 for this process)."""
    import numpy as np

    import graphc
    from graphc import rt
    from graphc.codegen import c
    c.PAR_MIN_ELEMS = 0
    print("| elements | 1 thread µs | 2 threads µs | speed-up |")
    print("|---|---|---|---|")
    for n in (1 << 12, 1 << 14, 1 << 15, 1 << 16, 1 << 17, 1 << 18, 1 << 20):
        x = np.linspace(-1, 1, n, dtype=np.float32)
        f = graphc.compile(lambda x: graphc.tanh(0.7 * x + 0.1) * graphc.exp(-x * x))
        f(x)
        per = {}
        for threads in (1, 2):
            rt.set_num_threads(threads)
            per[threads] = alternate({"f": lambda f=f, x=x: f(x)}, rounds,
                                     time.perf_counter)["f"]
        one, two = (float(np.median(per[t])) for t in (1, 2))
        print(f"| {n} | {1e6 * one:.1f} | {1e6 * two:.1f} | {one / two:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("w3", "gemm", "threshold", "ab", "split", "plans",
                                                 "scaling"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rev", default="main", help="ab: the git revision to compare with")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    set_threads(args.threads)
    if args.what == "split":
        os.environ["OMP_WAIT_POLICY"] = "passive"   # a waiting thread sleeps: no CPU time
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    {"w3": lambda: w3(args.threads, args.rounds), "gemm": lambda: gemm(args.rounds),
     "threshold": lambda: threshold(args.rounds), "ab": lambda: ab(args.rev, args.rounds),
     "split": lambda: split(args.rounds), "plans": lambda: plans(args.rounds),
     "scaling": lambda: scaling(args.rev, args.rounds)}[args.what]()


if __name__ == "__main__":
    main()
