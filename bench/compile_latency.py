"""W6, compile latency: a new process to the first step of the W2 step (digits MLP + Adam),
with an empty and with a filled compilation cache, and `import` of each library alone.

`measure(impl, what, cache)` runs one child process (this file as a script) and returns its
CPU seconds (user + system, the child and every process it started, e.g. gcc): the machines
are shared, and CPU time does not count the waits for a busy core. The child loads numpy and
the batch first (common to every library), then times from `import <library>` to the first
step's loss. The caller gives the cache directory: a fresh one for cold, a filled one for warm.

    python bench/compile_latency.py graphc step    # one child's figures, as JSON
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPLS = ("graphc", "graphc untiered", "jax.jit")
CACHE_ENV = {"graphc": "GRAPHC_CACHE_DIR", "graphc untiered": "GRAPHC_CACHE_DIR",
             "jax.jit": "JAX_COMPILATION_CACHE_DIR"}
# graphc builds a kernel missing from its cache in two tiers: a quick build first, the -O3
# one in the background (its CPU time, spent after the first step, is not in the figure);
# graphc untiered (GRAPHC_TIERED=0) waits for the -O3 build
LIBRARY = {"graphc": "graphc", "graphc untiered": "graphc", "jax.jit": "jax"}
PEER = {"graphc": ("graphc_impl", "graphc"), "graphc untiered": ("graphc_impl", "graphc"),
        "jax.jit": ("jax_impl", "jax.jit")}
# jax writes every compiled program to its persistent cache (by default only slow ones)
# Bytecode is compiled once and reused, as after `pip install` (which compiles the installed
# packages; an editable graphc would otherwise be compiled from source in every child)
PYCACHE = os.path.join(tempfile.gettempdir(), "graphc-bench-pycache")
JAX_CACHE_ALL = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                 "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children."""
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def batch_file() -> str:
    """The W2 batch saved once, so that a child needs no scikit-learn."""
    path = os.path.join(tempfile.gettempdir(), "graphc-bench-w2-batch.npz")
    if not os.path.exists(path):
        import numpy as np

        from bench import problems as P
        x, labels = P.digits_batch()
        np.savez(path + ".tmp.npz", x=x, labels=labels)
        os.replace(path + ".tmp.npz", path)
    return path


def measure(impl: str, what: str, cache: str | None = None) -> dict:
    """One child: {"cpu": seconds, "wall": seconds, "loss": first loss (step only)}."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRAPHC_W2_BATCH": batch_file(),
           "PYTHONPYCACHEPREFIX": PYCACHE}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if cache is not None:
        env[CACHE_ENV[impl]] = cache
        if impl == "jax.jit":
            env.update(JAX_CACHE_ALL)
    if impl.startswith("graphc"):
        env["GRAPHC_TIERED"] = "0" if impl == "graphc untiered" else "1"
    done = subprocess.run([sys.executable, __file__, impl, what], env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{impl} {what} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def _first_step(impl: str) -> float:
    """Build the W2 step of `impl` (the bench's own implementation) and run it once."""
    import numpy as np

    from bench import problems as P
    data = np.load(os.environ["GRAPHC_W2_BATCH"])
    P.digits_batch = lambda: (data["x"], data["labels"])
    module, name = PEER[impl]
    cpu, wall = cpu_seconds(), time.perf_counter()
    peer = __import__(f"bench.peers.{module}", fromlist=["CASES"])
    loss = peer.CASES["W2"][name]()()
    return {"cpu": cpu_seconds() - cpu, "wall": time.perf_counter() - wall, "loss": float(loss)}


def _import(impl: str) -> dict:
    import numpy  # noqa: F401  (both libraries need it: not part of the figure)
    cpu, wall = cpu_seconds(), time.perf_counter()
    __import__(LIBRARY[impl])
    return {"cpu": cpu_seconds() - cpu, "wall": time.perf_counter() - wall}


def main() -> None:
    impl, what = sys.argv[1], sys.argv[2]
    result = _first_step(impl) if what == "step" else _import(impl)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
