"""Quick mode's CPU budget for a peer's first result (build, compile, first call).

jax.jit's XLA compile of W7 grows about quadratically with the ops: on an empty compilation
cache its two W7-1000 programs take 2-4 minutes of CPU each, more than the whole quick run may
take (issue 13: under 5 minutes). So, in quick mode, a child process first builds such a step
and runs it once under a CPU-time limit (RLIMIT_CPU, so the figure does not depend on the
machine's load). In time, the child leaves the compiled program in jax's persistent cache
(bench/.cache/jax) and the bench times the peer as usual, its first call loading the program;
over it, the peer is not timed, and the bench reports that with the CPU seconds the child
spent before it was stopped.

    python -m bench.first_result_budget bench.peers.jax_impl W7-1000 jax.jit 40   # one child
"""

from __future__ import annotations

import importlib
import os
import resource
import signal
import subprocess
import sys

from bench.compile_latency import PYCACHE, ROOT, cpu_seconds

BUDGET_ENV = "GRAPHC_BENCH_FIRST_RESULT_BUDGET"
DEFAULT_BUDGET = 40     # CPU seconds; a filled cache's W7-1000 first result takes ~12 (trace)


def budget() -> int:
    """The CPU seconds a budgeted first result may take: $GRAPHC_BENCH_FIRST_RESULT_BUDGET."""
    return int(os.environ.get(BUDGET_ENV) or DEFAULT_BUDGET)


def first_result(module: str, workload: str, impl: str, seconds: int) -> dict:
    """Run `impl`'s `workload` step (from the peer module `module`) once in a child limited to
    `seconds` of CPU: {"fits": whether it finished, "cpu": the child's CPU seconds, up to when
    it was stopped}."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": PYCACHE}
    before = cpu_seconds()
    try:
        done = subprocess.run([sys.executable, "-m", "bench.first_result_budget", module, workload,
                               impl, str(seconds)], env=env, cwd=os.getcwd(), capture_output=True,
                              text=True, timeout=max(600, 20 * seconds))   # a loaded machine
    except subprocess.TimeoutExpired:
        return {"fits": False, "cpu": cpu_seconds() - before}
    stopped = done.returncode in (-signal.SIGXCPU, -signal.SIGKILL)
    if done.returncode != 0 and not stopped:
        raise RuntimeError(f"{impl} {workload} child failed:\n{done.stderr[-3000:]}")
    return {"fits": not stopped, "cpu": cpu_seconds() - before}


def main() -> None:
    module, workload, impl, seconds = *sys.argv[1:4], int(sys.argv[4])
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 5))   # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))                  # and no core file
    importlib.import_module(module).CASES[workload][impl]()()


if __name__ == "__main__":
    main()
