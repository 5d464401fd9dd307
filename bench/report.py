"""Turn a pytest-benchmark JSON of bench/bench_peers.py into the side-by-side table (medians and
each peer's time over graphc's), a log-scale bar chart, and the section of bench/RESULTS.md
between the markers below.

    python -m bench.report bench/.peers.json [bench/.peers-2threads.json ...] [--command ...]

Several JSON files (runs with different thread counts) make one table; their groups differ
("W3" and "W3, 2 threads").
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
from importlib import metadata

from bench.machine_limits import W3_GFLOP

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "RESULTS.md")
CHART = os.path.join(HERE, "peers.png")
BEGIN, END = "<!-- peers:begin -->", "<!-- peers:end -->"
PACKAGES = ("numpy", "torch", "jax", "autograd", "micrograd", "pytensor", "cffi")


def load(*paths: str) -> dict[str, dict[str, float]]:
    """{workload: {implementation: median seconds}} of one or more runs: wall time, or for
    the workloads that run child processes (W6) the median of the CPU seconds the children
    reported."""
    out: dict[str, dict[str, float]] = {}
    for path in paths:
        for b in json.load(open(path))["benchmarks"]:
            cpu = b["extra_info"].get("cpu")
            out.setdefault(b["group"], {})[b["extra_info"]["impl"]] = (
                statistics.median(cpu) if cpu else b["stats"]["median"])
    return out


def load_not_timed(*paths: str) -> list[dict]:
    """The cases a run left out untimed, with why ({"group", "impl", "reason"}: quick mode's,
    recorded by bench/conftest.py)."""
    return [entry for path in paths for entry in json.load(open(path)).get("not_timed", [])]


def not_timed_note(entries: list[dict]) -> str:
    """One line per reason: the cases it left out."""
    by_reason: dict[str, list[str]] = {}
    for e in entries:
        by_reason.setdefault(e["reason"], []).append(f"{e['group']} {e['impl']}")
    return "\n".join(f"- {', '.join(cases)}: {reason}" for reason, cases in by_reason.items())


def thread_scaling(results) -> str:
    """graphc's speed-up on n threads over its own 1-thread time, per workload run on both."""
    lines = []
    for group in sorted(results):
        workload, _, threads = group.partition(", ")
        one, many = _graphc(results.get(workload, {})), _graphc(results[group])
        if threads and one and many:
            lines.append(f"graphc {workload} on {threads}: {one / many:.2f}× its 1-thread speed")
    return "\n".join(lines)


def load_first_results(*paths: str, key: str = "first_result") -> dict[str, dict[str, float]]:
    """{workload: {implementation: extra_info[key]}} where recorded: by default the CPU seconds
    to the first result (W7); "work" is what one call of a W5 limit does (GFLOP or GB)."""
    out: dict[str, dict[str, float]] = {}
    for path in paths:
        for b in json.load(open(path))["benchmarks"]:
            v = b["extra_info"].get(key)
            if v is not None:
                out.setdefault(b["group"], {})[b["extra_info"]["impl"]] = v
    return out


def roofline(results, work) -> str:
    """W5's rates (GFLOP/s, GB/s), and W3 read against them: each implementation's GFLOP/s
    (the `W3_GFLOP` a step does over its median) next to numpy's GEMM rate on as many
    threads."""
    lines = ["| run | limit | median | rate |", "|---|---|---|---|"]
    gemm = {}
    for group in sorted(g for g in results if g.startswith("W5")):
        for name, t in sorted(results[group].items()):
            rate = work[group][name] / t
            lines.append(f"| {group} | {name} | {_fmt(t)} | {rate:.1f} |")
            if "GEMM" in name:
                gemm[group.replace("W5", "W3")] = rate
    lines += ["", f"W3 against the GEMM rate (a step does {W3_GFLOP:.2f} GFLOP of products):",
              "", "| run | implementation | median | GFLOP/s | × numpy GEMM rate |",
              "|---|---|---|---|---|"]
    for group in sorted(g for g in gemm if g in results):
        for name, t in sorted(results[group].items(), key=lambda kv: kv[1]):
            rate = W3_GFLOP / t
            lines.append(f"| {group} | {name} | {_fmt(t)} | {rate:.1f} | "
                         f"{rate / gemm[group]:.0%} |")
    return "\n".join(lines)


def w7_totals(results, firsts, evaluations: int = 10_000) -> str:
    """W7's target: first result + `evaluations` evaluations, against the C limit's."""
    lines = ["| workload | implementation | first result | per evaluation | "
             f"total (first + {evaluations:,}) | × C limit's total |", "|---|---|---|---|---|---|"]
    for workload in sorted(w for w in results if w.startswith("W7")):
        totals = {name: firsts[workload][name] + evaluations * t
                  for name, t in results[workload].items() if name in firsts.get(workload, {})}
        limit = next((t for name, t in totals.items() if name.startswith("C by hand")), None)
        for name, total in sorted(totals.items(), key=lambda kv: kv[1]):
            ratio = f"{total / limit:.2f}" if limit else "—"
            lines.append(f"| {workload} | {name} | {_fmt(firsts[workload][name])} | "
                         f"{_fmt(results[workload][name])} | {_fmt(total)} | {ratio} |")
    return "\n".join(lines)


def _fmt(seconds: float) -> str:
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _graphc(impls: dict[str, float]) -> float | None:
    """graphc's figure: its main path ("graphc"), else its fastest variant."""
    ours = [t for name, t in impls.items() if name.startswith("graphc")]
    return impls.get("graphc", min(ours, default=None))


def table(results: dict[str, dict[str, float]]) -> str:
    """Markdown: per workload, each implementation's median and its time over graphc's
    (above 1: graphc is that many times faster)."""
    lines = ["| workload | implementation | median | × graphc's time |", "|---|---|---|---|"]
    for workload in sorted(results):
        impls = results[workload]
        base = _graphc(impls)
        for name, t in sorted(impls.items(), key=lambda kv: kv[1]):
            ratio = f"{t / base:.2f}" if base else "—"
            lines.append(f"| {workload} | {name} | {_fmt(t)} | {ratio} |")
    return "\n".join(lines)


# Workloads whose target (issue 13) is phrased against autodiff peers: W0 "faster than every
# autodiff peer". Hand-written numpy derives the gradient by hand, so there it is shown beside
# the fastest autodiff peer, not compared with graphc (every table still lists it).
AUTODIFF_TARGETS = {"W0"}
HAND_WRITTEN = "numpy"


def fastest_peers(results) -> str:
    lines = ["| workload | graphc | fastest peer | graphc vs fastest peer |", "|---|---|---|---|"]
    for workload in sorted(results):
        impls = results[workload]
        base = _graphc(impls)
        peers = {k: v for k, v in impls.items() if not k.startswith(("graphc", "C by hand"))}
        autodiff_only = workload.partition(",")[0] in AUTODIFF_TARGETS
        beside = ""
        if autodiff_only and HAND_WRITTEN in peers:
            by_hand = _fmt(peers.pop(HAND_WRITTEN))
            beside = f" (fastest autodiff peer; {HAND_WRITTEN} by hand {by_hand})"
        if base is None or not peers:
            continue
        name, t = min(peers.items(), key=lambda kv: kv[1])
        verdict = f"{t / base:.2f}× faster" if t >= base else f"{base / t:.2f}× slower"
        lines.append(f"| {workload} | {_fmt(base)} | {name} {_fmt(t)}{beside} | {verdict} |")
    return "\n".join(lines)


def chart(results, path: str = CHART) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    workloads = sorted(w for w in results if not w.startswith("W5"))   # rates, not times
    fig, axes = plt.subplots(1, len(workloads), figsize=(3.2 * len(workloads), 4.2))
    for ax, workload in zip(axes if len(workloads) > 1 else [axes], workloads):
        items = sorted(results[workload].items(), key=lambda kv: kv[1])
        names = [k for k, _ in items]
        colors = ["#d62728" if n == "graphc" else "#ff9896" if n.startswith("graphc")
                  else "#7f7f7f" if n.startswith("C by hand") else "#1f77b4" for n in names]
        ax.barh(names, [v for _, v in items], color=colors)
        ax.set_xscale("log")
        ax.set_title(workload)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlabel("seconds (log)")
    fig.suptitle("median time per call or step, one pinned core unless the title says "
                 "threads (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def machine() -> str:
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                     if ln.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    versions = []
    for p in PACKAGES:
        try:
            versions.append(f"{p} {metadata.version(p)}")
        except metadata.PackageNotFoundError:
            pass
    gcc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout
    return (f"{model}, Python {platform.python_version()}, gcc {gcc.strip()}; "
            + ", ".join(versions))


TIMING_NOTE = ("W0 is CPU time per call (batches of 1,000 calls; 100 for the slow peers), "
               "W1 and W2 CPU time per step (batches of 100 and 10 steps). "
               "W6 (compile latency of the W2 step) is CPU seconds of a new process (user + "
               "system, gcc included), from `import` of the library to the first step's loss, "
               "numpy and the batch already loaded; cold: empty compilation cache, warm: "
               "filled; `import`: the library alone. Bytecode is precompiled for every "
               "library. The others are wall time per call or step.")


def write_results(results, command: str, w7: str = "", limits: str = "",
                  not_timed: str = "") -> None:
    date = datetime.date.today().isoformat()
    section = "\n".join([
        BEGIN, "## Side by side with the peers", "",
        f"{date}, {machine()}.",
        f"Command: `{command}` (medians; one pinned core, except the rows named \"2 threads\": "
        "two pinned cores, every implementation given two threads).", "",
        TIMING_NOTE, "",
        fastest_peers(results), "",
        *(["Not timed in this run (in no table below):", "", not_timed, ""] if not_timed else []),
        thread_scaling(results), "",
        "![medians per workload](peers.png)", "",
        *(["W5, the machine's limits (wall time, as W3; the copy counts bytes read and "
           "written), and W3 against them:", "", limits, ""]
          if limits else []),
        *(["W7's target, the total of the first result (CPU seconds, building included) and "
           "10,000 evaluations (the median):", "", w7, ""] if w7 else []),
        "<details><summary>every implementation</summary>", "", table(results), "",
        "</details>", END])
    text = open(RESULTS).read() if os.path.exists(RESULTS) else "# Benchmark results\n"
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: section, text,
                      flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    open(RESULTS, "w").write(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("json", nargs="+")
    parser.add_argument("--command", default="make bench")
    args = parser.parse_args()
    results = load(*args.json)
    w7 = w7_totals(results, load_first_results(*args.json))
    limits = roofline(results, load_first_results(*args.json, key="work"))
    not_timed = not_timed_note(load_not_timed(*args.json))
    print(fastest_peers(results))
    print()
    if not_timed:
        print(f"Not timed in this run:\n{not_timed}\n")
    print(thread_scaling(results))
    print()
    print(table(results))
    print()
    print(w7)
    print()
    print(limits)
    chart(results)
    write_results(results, args.command, w7, limits, not_timed)
    print(f"\nwrote {RESULTS} and {CHART}")


if __name__ == "__main__":
    main()
