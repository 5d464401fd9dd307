"""Per-call cost of W0, W1 and W2 for graphc and chosen peers, in one process: each
implementation checked against the numpy reference first, then timed in alternation (CPU
time, so a shared machine's other jobs do not count), median and minimum of 25 rounds.

    taskset -c 0 python bench/measure_step_cost.py W0,W1,W2 "graphc,C by hand (limit),pytensor"

Every peer module is imported (as in the bench run), whichever are timed.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))    # run as a script from anywhere
from bench.bench_peers import check, steady_state  # noqa: E402
from bench.peers import registry  # noqa: E402

REPS = {"W0": 2000, "W1": 200, "W2": 30}       # calls per timed batch


def main(workloads: list[str], impls: list[str] | None) -> None:
    peers = registry()
    for w in workloads:
        steps = {name: make() for name, make in peers[w].items()
                 if impls is None or name in impls}
        for step in steps.values():
            check(w, step)
        steady_state()
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(25):
            for name, step in steps.items():
                t0 = time.process_time()
                for _ in range(REPS[w]):
                    step()
                times[name].append((time.process_time() - t0) / REPS[w] * 1e6)
        for name, ts in times.items():
            print(f"{w} {name:28s} median {statistics.median(ts):9.2f} us  min {min(ts):9.2f}")


if __name__ == "__main__":
    main(sys.argv[1].split(",") if len(sys.argv) > 1 else ["W0", "W1", "W2"],
         sys.argv[2].split(",") if len(sys.argv) > 2 else None)
