"""Where W6's CPU time goes: new processes building the W2 train step with an empty (cold) or
filled (warm) cache, with CPU timers (this process and its children, gcc included) around
each stage of the pipeline; medians over the processes.

    taskset -c 1 python bench/measure_w6_stages.py [--rounds 5] [--root CHECKOUT]

Bytecode is precompiled (as after `pip install`) and the batch is loaded before the timers,
as in bench/compile_latency.py, whose figure the stages add up to.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (module, function, stage): the wrapped functions; a stage's time includes what it calls
STAGES = (("graphc.train", "trace_to_graph", "trace + autodiff"),
          ("graphc.passes", "optimize", "passes"),
          ("graphc.native", "generate", "schedule + C text"),      # before warm records
          ("graphc.native", "generate_c", "schedule + C text"),
          ("graphc.warm", "digest", "warm record key"),
          ("graphc.build", "load_built", "warm record's module"),
          ("graphc.build", "module_key", "cache key"),
          ("graphc.build", "_build_flags", "compiler probes"),
          ("graphc.build", "_build", "gcc (quick tier when cold)"),
          ("graphc.build", "_import", "dlopen"))

_CHILD = """
import functools, importlib, json, resource, sys
sys.path.insert(0, {root!r})
import numpy as np
from bench import problems as P
data = np.load({batch!r})
P.digits_batch = lambda: (data["x"], data["labels"])

def cpu():
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

times = {{}}
start = cpu()
import graphc
times["import graphc"] = cpu() - start
for module, name, stage in {stages!r}:
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        continue                    # a stage of another version of graphc (--root)
    mod = sys.modules[module]

    def timed(*args, _fn=fn, _stage=stage, **kwargs):
        t = cpu()
        try:
            return _fn(*args, **kwargs)
        finally:
            times[_stage] = times.get(_stage, 0.0) + cpu() - t
    setattr(mod, name, timed)
times["pipeline imports"] = cpu() - start - times["import graphc"]
from bench.peers import graphc_impl
loss = graphc_impl.CASES["W2"]["graphc"]()()
times["total"] = cpu() - start
print(json.dumps(times))
"""


def child(root: Path, cache: str) -> dict:
    from bench.compile_latency import PYCACHE, batch_file
    env = {**os.environ, "GRAPHC_CACHE_DIR": cache, "PYTHONPYCACHEPREFIX": PYCACHE}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    code = _CHILD.format(root=str(root), batch=batch_file(), stages=STAGES)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    runs: dict[str, list[dict]] = {"cold": [], "warm": []}
    for _ in range(args.rounds + 1):            # the first round fills the bytecode cache
        with tempfile.TemporaryDirectory() as cache:
            runs["cold"].append(child(args.root, cache))
            runs["warm"].append(child(args.root, cache))
    for what, rows in runs.items():
        rows = rows[1:]
        print(f"{what} ({len(rows)} processes), CPU ms, median (min):")
        for stage in rows[0]:
            values = [r.get(stage, 0.0) * 1e3 for r in rows]
            print(f"  {stage:28s} {statistics.median(values):8.1f} ({min(values):.1f})")


if __name__ == "__main__":
    main()
