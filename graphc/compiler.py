"""The pipeline in one place: a traced Graph -> passes -> schedule and fusion -> C -> build ->
an executable runner (or the numpy reference interpreter).

Each stage imports only itself and the stages before it (STAGES below, checked by
tests/test_layers.py); this module is the one that sees them all, and the user-facing API
(runtime's compile, the transformations, training) sits on top of it.
"""

from __future__ import annotations

import collections
import os
import threading
from typing import TYPE_CHECKING

from .errors import GraphcError
from .ir import Graph

if TYPE_CHECKING:       # the stages below load at the first build: `import graphc` stays light
    from .interpret import Interpreter
    from .native import CRunner

# Modules by stage, in pipeline order (a package name covers its submodules unless they
# are listed themselves).
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("errors", "_version", "dtypes", "ir", "pytree",
              "mutants", "sanitize")),                        # test and debug switches
    ("trace", ("ops", "trace", "capture")),                   # op declarations, tracing
    ("autodiff", ("autodiff", "custom", "ops.norm", "ops.api")),    # ops.api: the public ops
    ("passes", ("passes",)),
    ("schedule", ("schedule",)),                              # kernels, buffers, memory plan
    ("codegen", ("codegen",)),
    ("build", ("build", "rt", "_build_rt", "warm", "fastcall", "_build_fastcall")),
    ("execute", ("arrays", "interpret", "native", "nans",     # the two backends' runners,
                 "reverse_tape")),                            # and the reverse tape's
    ("compiler", ("compiler",)),
    ("api", ("callplan", "runtime", "transforms", "eager", "check", "diagnose", "nn", "optim",
             "train", "distributed", "show", "__init__", "__main__", "demo")),
)

BACKENDS = ("c", "numpy")


def default_backend() -> str:
    b = os.environ.get("GRAPHC_BACKEND", "c").strip().lower() or "c"
    if b not in BACKENDS:
        raise GraphcError(f"GRAPHC_BACKEND={b!r}: expected one of {BACKENDS}")
    return b


def build_runner(graph: Graph, backend: str, fuse: bool = True) -> Interpreter | CRunner:
    """The graph as it stands (no passes), made runnable on a backend."""
    if backend == "numpy":
        from .interpret import Interpreter
        return Interpreter(graph)
    from .native import CRunner
    return CRunner(graph, fuse)


# Built runners by what their graph computes, so a retraced function, or another function
# with the same graph, skips optimization and code generation (bounded: runners own arenas).
_RUNNERS: collections.OrderedDict = collections.OrderedDict()
_RUNNERS_MAX = 128
_runners_lock = threading.Lock()
# settings read while optimizing and lowering: a runner built under others is not reused
_LOWERING_ENV = ("GRAPHC_TAPE_MIN_KERNELS", "GRAPHC_DISABLE_PASSES", "GRAPHC_VERIFY",
                 "GRAPHC_VALUE_CHANGING_REWRITES", "GRAPHC_VMATH", "GRAPHC_NO_LIBMVEC",
                 "GRAPHC_MUTANT", "GRAPHC_SANITIZE", "GRAPHC_UPDATE_IN_PLACE")


def lower(graph: Graph, backend: str, optimize: bool) -> tuple[Graph, Interpreter | CRunner]:
    """(the graph as run, its runner): optimized and built once per distinct graph. The key
    holds the nodes' source lines too, so explain() and source() name this trace's lines; an
    identical graph traced from other lines generates the same C, which build.py keys on, so
    it is never compiled again."""
    key = (graph.structure_key(), tuple(n.where for n in graph.nodes), backend, optimize,
           tuple(os.environ.get(v) for v in _LOWERING_ENV))
    with _runners_lock:
        hit = _RUNNERS.get(key)
        if hit is not None:
            _RUNNERS.move_to_end(key)
            return hit
    if optimize:
        from .passes import optimize as run_passes
        graph = run_passes(graph)
    runner = build_runner(graph, backend, fuse=optimize)
    with _runners_lock:
        _RUNNERS[key] = (graph, runner)
        while len(_RUNNERS) > _RUNNERS_MAX:
            _RUNNERS.popitem(last=False)
    return graph, runner
