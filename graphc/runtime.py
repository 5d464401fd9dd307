"""CompiledFunction: signature -> executable cache, argument checks, one call per run."""

from __future__ import annotations

import contextlib
import functools
import gc
import operator
import threading
from collections.abc import Callable

import numpy as np

from . import nans, pytree
from .callplan import make_plan
from .capture import keywords_last, leaf_spec, trace_to_graph
from .compiler import BACKENDS, default_backend, lower
from .errors import GraphcError, TracerError
from .ir import Graph
from .trace import in_trace, tracing_now


class Executable:
    """One traced and built signature: the graph, the runner, and how to unflatten.

    The runner receives the dynamic leaves as they came (it converts them itself: the C
    runner passes scalars by value and arrays zero-copy)."""

    def __init__(self, graph: Graph, out_treedef, runner, specs, weak_outputs=(),
                 in_treedef=None, traced: Graph | None = None):
        self.graph = graph
        self.traced = traced or graph     # what the NaN locator re-runs (nans.py)
        self.out_treedef = out_treedef
        self.runner = runner
        self.run = getattr(runner, "call", runner)      # the runner's fastest entry
        self.specs = specs
        self.dynamic = [k for k, s in enumerate(specs) if s[0] != "static"]
        self.all_dynamic = len(self.dynamic) == len(specs)
        self.unflatten = pytree.unflattener(out_treedef)
        if weak_outputs:
            self.unflatten = functools.partial(_weak_to_python, self.unflatten, weak_outputs)
        self.weak_outputs = weak_outputs
        self.in_treedef = in_treedef    # all positional arguments' structure, none static
        self._plan: Callable | None = None
        self._to_plan = in_treedef is not None     # made at the first call (it needs `general`)

    def plan(self, general: Callable) -> Callable | None:
        """The call for arguments of exactly this signature (callplan.py), which passes any
        other call to `general`; None where the signature has none."""
        if self._to_plan:
            self._to_plan = False
            self._plan = make_plan(self.in_treedef, self.specs, self.out_treedef, self.runner,
                                   general, self.weak_outputs)
        return self._plan

    def __call__(self, leaves: list) -> object:
        if not self.all_dynamic:
            leaves = [leaves[k] for k in self.dynamic]
        if nans.enabled():
            return self.unflatten(nans.checked_call(self.run, self.traced, leaves))
        return self.unflatten(self.run(leaves))


def _weak_to_python(unflatten, weak: tuple[int, ...], outs: list):
    """Weakly typed 0-d outputs as Python scalars (float, int or bool), which stay weak when
    passed back in."""
    for k in weak:
        outs[k] = outs[k].item()
    return unflatten(outs)


class CompiledFunction:
    """fn traced, optimized and built once per input signature, then called directly.

    With `retrace`, fn is traced on every call instead, so it sees the globals and closure
    values of that moment (the transformations' direct calls work this way, as JAX's); the
    built code is still reused whenever the traced graph is the same."""

    # A call runs `_call`: the call plan of the signature used last (callplan.py), which
    # passes other calls on to `_general`, or `_general` itself before the first plan. A
    # property rather than a method that forwards: no Python frame runs before the plan.
    __call__ = property(operator.attrgetter("_call"))

    def __init__(self, fn: Callable, backend: str | None = None, optimize: bool = True,
                 static_argnums=(), retrace: bool = False):
        self.fn = fn
        self.retrace = retrace
        entry = getattr(fn, "fresh_entry", None)      # graphc transformations trace faster
        self._traced_fn = entry() if entry is not None else fn
        self.backend = backend
        self.optimize = optimize
        self.static_argnums = ((static_argnums,) if isinstance(static_argnums, int)
                               else tuple(static_argnums))
        # Both bounded (SIGNATURES_MAX, oldest first out): a function called with ever new
        # shapes keeps its recent signatures, not all of them (an evicted one retraces, and
        # its built code usually comes back from _RUNNERS or the disk cache).
        self._cache: dict = {}
        self._fast: dict = {}       # per-call shortcut: key from top-level args only
        self._call = self._general
        self._lock = threading.Lock()
        functools.update_wrapper(self, fn, updated=())

    def _static_positions(self, n_args: int) -> tuple[int, ...]:
        """static_argnums as positions in this call (negative numbers count from the end)."""
        for i in self.static_argnums:
            if not isinstance(i, int) or not -n_args <= i < n_args:
                raise GraphcError(f"{self.__name__}: static_argnums {i!r} is out of range for "
                                  f"a call with {n_args} positional argument(s) (static "
                                  "arguments must be passed positionally)")
        return tuple(sorted({i % n_args for i in self.static_argnums}))

    def _signature(self, args) -> tuple[tuple, list, list]:
        static = self._static_positions(len(args)) if self.static_argnums else ()
        dyn = tuple(a for i, a in enumerate(args) if i not in static) if static else args
        leaves, treedef = pytree.flatten(dyn)
        try:
            specs = [leaf_spec(x) for x in leaves]
        except GraphcError:             # again, naming the input at fault (no cost otherwise)
            for x, what in zip(leaves, _input_names(self.fn, dyn, len(leaves))):
                leaf_spec(x, f"{_name(self.fn)}: {what}")
            raise
        statics = tuple(_static_key(args[i]) for i in static)
        try:
            hash(statics)
        except TypeError:
            raise GraphcError(f"{self.__name__}: static arguments must be hashable (they are "
                              f"part of the cache key); got {statics!r}") from None
        return (treedef, tuple(specs), statics, len(args)), leaves, specs

    def executable(self, *args) -> Executable:
        key, _, specs = self._signature(args)
        return self._get(key, args, specs)

    def _get(self, key, args, specs) -> Executable:
        exe = self._cache.get(key)
        if exe is None:
            with self._lock:
                exe = self._cache.get(key)
                if exe is None:
                    exe = self._build(args, specs, key[0])
                    _bounded_put(self._cache, key, exe)
        return exe

    def _build(self, args, specs, treedef=None) -> Executable:
        with paused_gc():
            return self._build_unpaused(args, specs, treedef)

    def _build_unpaused(self, args, specs, treedef) -> Executable:
        static = self._static_positions(len(args)) if self.static_argnums else ()
        backend = self.backend or default_backend()
        plannable = not (self.retrace or self.static_argnums)
        tape = getattr(self.fn, "reverse_tape", None)     # value_and_grad of huge scalar graphs
        if tape is not None and not static and self.optimize and backend == "c":
            exe = tape(args, specs, treedef if plannable else None)
            if exe is not None:
                return exe
        traced, out_td = trace_to_graph(self._traced_fn, args, static, named_after=self.fn)
        graph, runner = lower(traced, backend, self.optimize)
        return Executable(graph, out_td, runner, specs, traced.weak_outputs,
                          treedef if plannable else None, traced if nans.enabled() else None)

    def _general(self, *args, **kwargs):
        """Any call: keywords, the NaN locator, a signature other than the plan's."""
        if kwargs:
            return self._with_keywords(len(args), tuple(sorted(kwargs)))(
                *args, *(kwargs[k] for k in sorted(kwargs)))
        fast = None if self.retrace else _fast_key(args)
        if fast is not None:
            exe = self._fast.get(fast)
            if exe is not None and not nans.enabled():
                self._call = exe.plan(self._general) or self._call
                return exe.unflatten(exe.run(args))
        if in_trace(args):
            if not tracing_now():
                raise TracerError(f"{_name(self.fn)} was called with a traced value that leaked "
                                  "out of the function that traced it (stored in a list, a "
                                  "global or an attribute): return it as an output instead")
            return self.fn(*args)           # inside another trace: inline
        key, leaves, specs = self._signature(args)
        exe = self._build(args, specs) if self.retrace else self._get(key, args, specs)
        if fast is not None and not self.static_argnums:
            _bounded_put(self._fast, fast, exe)
        self._call = exe.plan(self._general) or self._call
        return exe(leaves)

    def _with_keywords(self, n_pos: int, names: tuple[str, ...]) -> CompiledFunction:
        """Keyword arguments become trailing positional ones of a cached variant (their values
        are inputs, part of its signature; a transformation keeps its fast entries)."""
        key = ("kw", n_pos, names)
        variant = self._cache.get(key)
        if variant is None:
            bind = getattr(self.fn, "with_keywords", None)
            fn = bind(n_pos, names) if bind is not None else keywords_last(self.fn, n_pos, names)
            variant = CompiledFunction(fn, self.backend, self.optimize,
                                       self._static_positions(n_pos), self.retrace)
            variant.__name__ = self.__name__
            _bounded_put(self._cache, key, variant)
        return variant

    # ---- introspection ----
    def source(self, *args, annotated: bool = True) -> str:
        """The generated C of this signature; `annotated`: with a comment above each kernel
        naming the nodes it computes and the source lines they came from (the C that is
        built, and cached, has no such comments: annotated=False returns it)."""
        exe = self.executable(*args)
        src = getattr(exe.runner, "source", None)
        if src is None:
            raise GraphcError("source() is only available with backend='c'")
        return exe.runner.annotated_source() if annotated else src

    def stats(self, *args) -> dict:
        exe = self.executable(*args)
        runner_stats = getattr(exe.runner, "stats", None)
        base = {"nodes": len(exe.graph.nodes), "kernels": 0, "buffers": 0, "peak_bytes": 0}
        if runner_stats is not None:
            base.update(runner_stats)
        return base

    def explain(self, *args) -> str:
        """What the compiler did for this signature: passes and their rewrites, kernels and
        the fused groups in them, buffers and their reuse, peak bytes, the graph."""
        exe = self.executable(*args)
        st = self.stats(*args)
        lines = [f"{self.__name__}: {st['nodes']} nodes after optimization"]
        log = getattr(exe.graph, "pass_log", None)
        if "slots" in st:
            lines.append(f"  a reverse tape of {st['tape_rows']} rows over {st['slots']} "
                         "values, run by graphc's prebuilt C interpreter: the forward graph "
                         "below is encoded as is (no passes, no gcc build) and its gradient "
                         "is taken at run time (GRAPHC_REVERSE_TAPE_MIN_NODES)")
            lines.append(str(exe.graph))
            return "\n".join(lines)
        if log is None:
            lines.append("  passes: none (optimize=False)")
        lines += [f"  {record}" for record in log or ()]
        if "ws_buffers" in st:
            mode = (f"a tape of {st['tape_rows']} rows, large fused nests as native "
                    "functions" if st.get("tape_rows") else "straight-line C")
            lines.append(f"  kernels: {st['kernels']} ({mode}; {st['fused_kernels']} fused "
                         f"kernels computing {st['fused_nodes']} nodes; movement ops are "
                         "strided views)")
            lines += [f"    {d}" for d in exe.runner.describe()]
            reused = st["ws_buffers"] - st["arena_slots"]
            lines.append(f"  buffers: {st['buffers']} ({st['ws_buffers']} in the arena sharing "
                         f"{st['arena_slots']} slots: {reused} reuse a dead buffer's slot, "
                         f"{st['inplace']} written in place over a dying input)")
            lines.append(f"  peak_bytes: {st['peak_bytes']} (arena, allocated once per "
                         "signature)")
            lines.append(f"  allocations per call: {st['allocations_per_call']} (the returned "
                         "arrays; results are computed straight into them)")
        else:
            lines.append(f"  kernels: {st['kernels']}")
            lines.append(f"  buffers: {st['buffers']} (numpy reference backend: one fresh array "
                         "per node, no reuse)")
            lines.append(f"  peak_bytes: {st['peak_bytes']} (all intermediates, upper bound)")
        lines.append(str(exe.graph))
        return "\n".join(lines)

    def trace(self, *args) -> Graph:
        return self.executable(*args).graph


SIGNATURES_MAX = 256     # per compiled function


def _name(fn) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__


def _input_names(fn, args: tuple, n_leaves: int) -> list[str]:
    """'input k' for each of the n_leaves leaves of args; those of a keyword argument's value
    (the trailing args of a keyword variant) say whose they are."""
    names = [f"input {k}" for k in range(n_leaves)]
    keywords = getattr(fn, "keyword_names", ())
    counts = [len(pytree.flatten(a)[0]) for a in args[len(args) - len(keywords):]]
    owners = [keyword for keyword, count in zip(keywords, counts) for _ in range(count)]
    for k, keyword in enumerate(owners, n_leaves - len(owners)):
        names[k] += (f" (keyword argument {keyword!r}: a value other than an array or "
                     "scalar can be bound with functools.partial)")
    return names


def _bounded_put(cache: dict, key, value, limit: int | None = None) -> None:
    """Insert, dropping the oldest entries past the limit (dicts keep insertion order)."""
    cache[key] = value
    while len(cache) > (limit or SIGNATURES_MAX):
        try:
            del cache[next(iter(cache))]
        except (KeyError, RuntimeError, StopIteration):     # another thread got there first
            break


@contextlib.contextmanager
def paused_gc():
    """Tracing allocates many small acyclic objects; the cyclic collector's repeated scans of
    the growing heap made tracing superlinear (10k W7 ops: 7.4 s -> 4.8 s without them)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _static_key(v) -> tuple:
    """A static value's part of the cache key, flat (nested tuples as a preorder walk, so no
    depth limit). Keyed by exact type, so 2, 2.0, True and np.float64(2.0) (equal in Python,
    not in dtype) trace separately; floats by their bits, so 0.0 and -0.0 differ and a NaN
    equals itself (else every call would retrace)."""
    key, stack = [], [v]
    while stack:
        x = stack.pop()
        if type(x) is tuple:
            key.append((tuple, len(x)))
            stack.extend(reversed(x))
        elif isinstance(x, float):
            key.append((type(x), float(x).hex()))
        elif isinstance(x, complex):
            key.append((type(x), x.real.hex(), x.imag.hex()))
        elif isinstance(x, np.generic):
            key.append((type(x), x.tobytes()))
        else:
            key.append((type(x), x))
    return tuple(key)


def _fast_key(args):
    """A signature computed without pytree flattening, when every argument is a plain array or
    Python float/int; None otherwise (then the general path runs)."""
    key = []
    for a in args:
        t = type(a)
        if t is np.ndarray:
            key.append((a.shape, a.dtype, a.flags.c_contiguous))
        elif t is float:
            key.append(t)
        elif t is int and -(1 << 63) <= a < (1 << 63):
            key.append(t)
        else:
            return None
    return tuple(key)


def compile(fn: Callable | None = None, backend: str | None = None, optimize: bool = True,
            static_argnums=()):
    """Trace fn, optimize, generate C, build it, and run it (usable as @graphc.compile)."""
    if backend is not None and backend not in BACKENDS:
        raise GraphcError(f"backend {backend!r}: expected one of {BACKENDS}")
    if fn is None:
        return lambda f: CompiledFunction(f, backend, optimize, static_argnums)
    return CompiledFunction(fn, backend, optimize, static_argnums)


jit = compile
