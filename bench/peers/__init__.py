"""Every implementation of every workload, by name: `REGISTRY[workload][impl]` is a factory
returning a fresh step (a zero-argument callable that runs one call or training step and
returns its loss, or a tuple of numbers for the stateless workloads). A peer that is not
installed contributes nothing; none is needed to import graphc or to run its tests."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

THREADS = int(os.environ.get("GRAPHC_BENCH_THREADS", "1"))   # for every implementation

MODULES = ("graphc_impl", "numpy_impl", "torch_impl", "jax_impl", "autograd_impl",
           "pytensor_impl", "micrograd_impl", "c_limit")
WORKLOADS = ("W0", "W1", "W2", "W3", "W4", "W7-1000", "W7-1000-stack", "W7-10000",
             "W7-10000-stack")


def registry() -> dict[str, dict[str, Callable]]:
    """{workload: {implementation name: factory}} for the peers installed here."""
    out: dict[str, dict[str, Callable]] = {w: {} for w in WORKLOADS}
    for name in MODULES:
        try:
            module = importlib.import_module(f"bench.peers.{name}")
        except ImportError:
            continue
        for workload, impls in module.CASES.items():
            out[workload].update(impls)
    return out
