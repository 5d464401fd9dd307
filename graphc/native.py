"""The C backend's executable: a graph's generated C, built and loaded, called once per run
through a Python function written for its signature (inputs converted or checked, fresh
output arrays, one C call on a workspace)."""

from __future__ import annotations

import os
import threading

import numpy as np

from . import fastcall, warm
from .arrays import as_array, in_place_array
from .build import load_built, load_module, load_module_tiered, module_key
from .errors import GraphcError
from .ir import Graph
from .nans import STATE as NANS
from .ops.elementwise import index_error
from .rt import runtime_addresses

THREAD_WS_MAX = 64 * 1024    # bytes: a workspace this small is kept per calling thread


class CRunner:
    """Calls the built entry point: fresh output arrays, a shared workspace, one C call
    (`runner.call(leaves)`, generated per signature).

    A graph lowered before (by any process sharing the cache) starts warm: its record
    (graphc/warm.py) names the built module and holds what the call needs, so the graph is
    neither scheduled nor turned into C; `source`, `describe()` and `annotated_source()`
    generate them when asked."""

    def __init__(self, graph: Graph, fuse: bool = True):
        self._graph, self._fuse = graph, fuse
        self._gen_lock = threading.Lock()
        # Until the optimized module of a tiered build is swapped in, the generated calls'
        # globals (see bind) and graphc._fastcall objects (see fast_call), to switch then;
        # dropped at the swap, as they hold their compiled functions' general path (a cached
        # runner would keep every function compiled to it alive).
        self._namespaces: list[dict] = []
        self._fast_calls: list = []
        self._quick = False                     # running the quick module: a swap is due
        self._swap_lock = threading.Lock()
        digest = warm.digest(graph, fuse)
        plan = warm.load(digest)
        built = load_built(plan["module"]) if plan is not None else None
        pending = None
        if built is not None:
            self.ffi, lib = built
            hidden = [warm.unpack_array(h) for h in plan["hidden"]]
        else:
            self._generated = generate_c(graph, fuse)
            source, cdef, sched, _ = self._generated
            if os.environ.get("GRAPHC_TIERED", "1") not in ("", "0"):
                (self.ffi, lib), pending = load_module_tiered(source, cdef)
            else:
                self.ffi, lib = load_module(source, cdef)
            hidden = [np.ascontiguousarray(v) for _, v in sched.hidden]
            plan = _plan(source, sched, module_key(source, cdef), hidden)
            warm.save(digest, plan)
        self._links_runtime, self._entry_name = plan["runtime"], plan["entry"]
        self._use(lib)
        self._outs = [(n.shape, n.dtype.np) for n in graph.outputs]
        self._in = [(scalar, np.dtype(dt), float if is_float else int)
                    for scalar, dt, is_float in plan["inputs"]]
        # tape, literal pools, big constants: kept alive as exactly the arrays C reads
        self._hidden_keep = hidden
        self._hidden = [self.ffi.from_buffer(v) for v in self._hidden_keep]
        self.aliases = dict(plan["aliases"])    # output k -> input j (written in place)
        ws_bytes = plan["ws_bytes"]
        # the arena, the error record (32 bytes, then 32 spare), then one 8-byte slot per 0-d
        # output whose value is read back (see emit)
        self._scalar_out = {j: (ws_bytes + 64 + 8 * k, n.dtype.c)
                            for k, (j, n) in enumerate(
                                (j, n) for j, n in enumerate(graph.outputs)
                                if n.shape == () and j not in self.aliases)}
        self._ws_bytes = ws_bytes + 64 + 8 * len(self._scalar_out)
        self._ws, self._ws_ptr = self._new_workspace()
        self._lock = threading.Lock()
        # a small workspace is kept per thread (no lock per call); a large one is shared
        self._local = threading.local() if self._ws_bytes <= THREAD_WS_MAX else None
        self._sites = plan["sites"]
        self.ws_offset = ws_bytes
        self.stats = dict(plan["stats"])
        self._quick = pending is not None
        self.call = self._make_call()
        if pending is not None:
            pending.add_done_callback(self._swap)

    @property
    def source(self) -> str:
        """The C the module was built from."""
        return self._generation()[0]

    @property
    def _sched(self):
        return self._generation()[2]

    def _generation(self) -> tuple:
        """generate's (source, cdef, schedule, marks) of the graph: made at a cold start, or
        on demand after a warm one (the same C: the record's digest covers what decides it)."""
        with self._gen_lock:
            if not hasattr(self, "_generated"):
                self._generated = generate_c(self._graph, self._fuse)
            return self._generated

    def _use(self, lib) -> None:
        if self._links_runtime:       # its gemm, or the thread count of parallel loops
            addr = runtime_addresses()
            _, link, linked = self._entry_name[:3]
            getattr(lib, link)(*(addr[key] for key in linked))
        self._entry = getattr(lib, self._entry_name[0])
        packed = self.ffi.addressof(lib, self._entry_name[3])
        self._packed = int(self.ffi.cast("uintptr_t", packed))

    def bind(self, ns: dict) -> None:
        """Put the entry point into the globals of a generated call, and keep it there when
        the optimized module of a tiered build replaces the quick one."""
        with self._swap_lock:
            ns["entry"] = self._entry
            if self._quick:
                self._namespaces.append(ns)

    def _swap(self, pending) -> None:
        """The optimized build is ready: later calls use it (the same C, so the same
        arguments and workspace; a call under way finishes in the quick module)."""
        with self._swap_lock:
            if pending.exception() is None:   # else the quick module stays (the same values)
                self._use(pending.result()[1])
                for ns in self._namespaces:
                    ns["entry"] = self._entry
                for fast in self._fast_calls:
                    fast.entry = self._packed
            self._quick = False
            self._namespaces.clear()
            self._fast_calls.clear()

    def fast_call(self, general, kinds: str, tree: tuple[int, ...], python=()):
        """The call in C (graphc._fastcall) for positional arguments of the exact Python
        types `kinds` ('f' float, 'i' int) whose outputs are all Python scalars (`python`)
        read back from the workspace, in the tree `tree` (csrc/fastcall.c's codes); any other
        call goes to `general`. None where this signature has arrays, the workspace is too
        large for the C stack, or the extension is not available."""
        fast = fastcall.module()
        if (fast is None or self._ws_bytes > fast.WS_MAX
                or kinds != "".join("f" if py is float else "i" for _, _, py in self._in)
                or not all(scalar for scalar, _, _ in self._in)
                or any(j not in self._scalar_out or j not in python
                       for j in range(len(self._outs)))):
            return None
        n_out = len(self._outs)
        fixed = [int(self.ffi.cast("uintptr_t", h)) for h in self._hidden] + [0] * n_out
        ws_offsets = [-1] * len(self._hidden) + [self._scalar_out[j][0] for j in range(n_out)]
        out_kinds = "".join(_OUT_KIND[self._scalar_out[j][1]] for j in range(n_out))
        # a few 0-d nodes (no loop anywhere) hold the GIL, cheaper than releasing it
        quick = len(self._graph.nodes) <= 64 and all(n.shape == () for n in self._graph.nodes)
        return self._fast_call_of(fast, general, NANS, self, kinds, tuple(fixed), tuple(ws_offsets),
                                  self._ws_bytes, tuple(ws_offsets[len(self._hidden):]),
                                  out_kinds, tree, not quick)

    def _fast_call_of(self, fast, *args):
        """fast.FastCall(self's packed entry, *args), its entry swapped with this runner's
        when the optimized build comes in."""
        with self._swap_lock:
            call = fast.FastCall(self._packed, *args)
            if self._quick:
                self._fast_calls.append(call)
        return call

    def fast_step(self, general, kinds: str, slots: list, arrays: tuple, keep):
        """A train step's call in C (graphc._fastcall) on this runner's own workspace, which
        the caller does not share between threads. `slots` lists the entry's arguments:
        ("arg", k), the call's kth positional argument, of kind kinds[k] ('f' float, 'i'
        int, 'a' an ndarray of arrays[k] = (shape, buffer format) in C order); ("at",
        address); or ("out", j), output j, 0-d, written into the workspace and returned
        alone as a Python scalar. Any other call goes to `general`. None where the extension
        is not available or the signature is too large for it."""
        fast = fastcall.module()
        outs = [j for kind, j in slots if kind == "out"]
        if (fast is None or len(outs) != 1 or outs[0] not in self._scalar_out
                or kinds.count("a") > fast.ARRAYS_MAX or len(slots) > fast.SLOTS_MAX):
            return None
        offset, ctype = self._scalar_out[outs[0]]
        fixed = [v if kind == "at" else 0 for kind, v in slots if kind != "arg"]
        ws_offsets = [offset if kind == "out" else -1 for kind, _ in slots if kind != "arg"]
        arg_slots = tuple(at for at, (kind, _) in enumerate(slots) if kind == "arg")
        order = [k for kind, k in slots if kind == "arg"]
        if order != list(range(len(kinds))):
            return None
        return self._fast_call_of(fast, general, NANS, (self, keep), kinds, tuple(fixed),
                                  tuple(ws_offsets), self._ws_bytes, (offset,),
                                  _OUT_KIND[ctype], (-1,), True, arg_slots, np.ndarray, arrays,
                                  int(self.ffi.cast("uintptr_t", self._ws_ptr)))

    def describe(self) -> list[str]:
        """One line per kernel (explain())."""
        from .schedule import describe
        return describe(self._sched)

    def annotated_source(self) -> str:
        """The built C with each kernel's nodes and source lines as comments (f.source())."""
        from .codegen.c import annotate
        source, _, sched, marks = self._generation()
        return annotate(source, marks, sched.graph)

    def _new_workspace(self):
        raw = np.empty(self._ws_bytes + 64, np.uint8)
        start = (-raw.ctypes.data) % 64
        buf = raw[start:start + self._ws_bytes]
        return buf, self.ffi.from_buffer(buf)

    def _thread_workspace(self) -> tuple:
        """(workspace array, its pointer, the pointers of its 0-d output slots) of the calling
        thread, made at its first call (emit's lock-free path)."""
        ws, ptr = self._new_workspace()
        slots = [self.ffi.cast(ctype + " *", ptr + offset)
                 for offset, ctype in self._scalar_out.values()]
        self._local.w = (ws, ptr, *slots)
        return self._local.w

    def fail(self, rc: int, ws: np.ndarray):
        """Raise the error a nonzero return code stands for (its record follows the arena)."""
        code, site, pos, value = ws[self.ws_offset:self.ws_offset + 32].view(np.int64).tolist()
        if code == 1 and 0 <= site < len(self._sites):
            (n, what, lo), shape = self._sites[site]
            raise index_error(what, value, pos, shape, n, lo)
        raise GraphcError(f"generated code returned error code {rc}")

    def _make_call(self):
        """The general per-call path: `call(leaves)` converts each input as needed and
        returns the list of outputs (arrays)."""
        ns: dict = {}
        names = [f"a{k}" for k in range(len(self._in))]
        body, outs = self.emit(ns, names)
        lines = ["def call(leaves):"]
        if names:
            lines.append(f"    {', '.join(names)}, = leaves")
        lines += body + [f"    return [{', '.join(outs)}]"]
        exec("\n".join(lines), ns)  # noqa: S102  (source built from this signature only)
        return ns["call"]

    def emit(self, ns: dict, names: list[str], exact=(), python=()) -> tuple[list[str], list]:
        """Straight-line Python that runs this signature on the inputs held in the variables
        `names`: (body lines indented one level, to run in a function whose globals are
        `ns`, which this fills; each output's expression after them).

        Inputs are converted unless their position is in `exact` (known already to be the
        C-contiguous array of the dtype, or the Python float/int a scalar is passed as). 0-d
        outputs are written into the workspace's tail and read back under its lock (no
        array to allocate and wrap for C): a fresh 0-d array, or, at the positions in
        `python`, the Python scalar itself. Other outputs are fresh arrays; one aliased to
        an input is that input, written in place. One C call under the workspace lock; a
        contending thread gets a fresh workspace. A workspace of at most THREAD_WS_MAX bytes
        is kept per thread instead, with no lock."""
        self.bind(ns)
        ns.update({"fb": self.ffi.from_buffer, "empty": np.empty,
                   "array": np.array, "ndarray": np.ndarray, "as_array": as_array,
                   "acquire": self._lock.acquire, "release": self._lock.release,
                   "ws": self._ws_ptr, "wsa": self._ws,
                   "new_ws": self._new_workspace, "fail": self.fail,
                   "inplace": in_place_array, "cast": self.ffi.cast})
        aliased = {j: k for k, j in self.aliases.items()}
        pre, args = [], []
        for k, (a, (scalar, dt, py)) in enumerate(zip(names, self._in)):
            ns[f"D{k}"], ns[f"P{k}"] = dt, py
            if scalar:
                args.append(a if k in exact else f"{a} if type({a}) is P{k} else P{k}({a})")
            elif k in aliased:
                pre.append(f"    {a} = inplace({a}, D{k}, {k})")
                args.append(f"fb({a})")
            elif k in exact:
                args.append(f"fb({a})")
            else:
                args.append(f"fb({a} if type({a}) is ndarray and {a}.dtype is D{k} and "
                            f"{a}.flags.c_contiguous else as_array({a}, D{k}))")
        for j, h in enumerate(self._hidden):
            ns[f"H{j}"] = h
            args.append(f"H{j}")
        outs, alloc, reads, reads2, in_ws2 = [], [], [], [], {}
        for j, (shape, dt) in enumerate(self._outs):
            ns[f"S{j}"], ns[f"T{j}"] = shape, dt
            if j in self.aliases:
                outs.append(f"{names[self.aliases[j]]}")
                args.append(f"fb({outs[-1]})")
            elif j in self._scalar_out:
                offset, ctype = self._scalar_out[j]
                ns[f"Q{j}"] = self.ffi.cast(ctype + " *", self._ws_ptr + offset)
                ns[f"C{j}"], ns[f"F{j}"] = ctype + " *", offset
                args.append(f"Q{j}")
                in_ws2[f"Q{j}"] = f"cast(C{j}, ws2 + F{j})"
                reads.append(f"            v{j} = Q{j}[0]")
                reads2.append(f"        v{j} = cast(C{j}, ws2 + F{j})[0]")
                outs.append(_scalar_expr(j, dt, j in python))
            else:
                alloc.append(f"    o{j} = empty(S{j}, T{j})")
                outs.append(f"o{j}")
                args.append(f"fb(o{j})")
        if self._local is not None:
            return pre + alloc + self._thread_call(ns, args, reads), outs
        # the contending thread's call: the same arguments, 0-d outputs in its own workspace
        args2 = [in_ws2.get(a, a) for a in args]
        lines = pre + alloc + [
            "    if acquire(False):",
            "        try:",
            f"            rc = entry({', '.join(args + ['ws'])})",
            "            if rc:",
            "                fail(rc, wsa)",
            *reads,
            "        finally:",
            "            release()",
            "    else:",
            "        wsa2, ws2 = new_ws()",
            f"        rc = entry({', '.join(args2 + ['ws2'])})",
            "        if rc:",
            "            fail(rc, wsa2)",
            *reads2]
        return lines, outs

    def _thread_call(self, ns: dict, args: list[str], reads: list[str]) -> list[str]:
        """emit's lines for a per-thread workspace: its pointers (0-d output slots `Q<j>`
        included) from a thread-local, one C call, the 0-d outputs read back."""
        ns.update({"local": self._local, "thread_ws": self._thread_workspace})
        names = ", ".join(["wsa", "ws", *(f"Q{j}" for j in self._scalar_out)])
        return ["    try:",
                f"        {names}, = local.w",
                "    except AttributeError:",
                f"        {names}, = thread_ws()",
                f"    rc = entry({', '.join(args + ['ws'])})",
                "    if rc:",
                "        fail(rc, wsa)",
                *[r[8:] for r in reads]]


_OUT_KIND = {"double": "d", "float": "f", "int64_t": "q", "int32_t": "i", "unsigned char": "?"}


def generate_c(graph: Graph, fuse: bool) -> tuple:
    """codegen's (source, cdef, schedule, marks), its modules loaded only now (a warm start
    does without them)."""
    from .codegen.c import generate
    return generate(graph, fuse)


def _plan(source: str, sched, key: str, hidden: list[np.ndarray]) -> dict:
    """What a runner needs besides the graph, as plain data (a warm start's record): the
    module's key, entry points, inputs, hidden arrays, workspace, aliases, check sites."""
    from .codegen.c import ENTRY, LINK, LINKED, PACKED, by_value, check_sites, uses_runtime
    return {"module": key, "entry": (ENTRY, LINK, LINKED, PACKED), "runtime": uses_runtime(source),
            "inputs": [(by_value(b), b.dtype.np.str, b.dtype.is_float) for b in sched.inputs],
            "hidden": [warm.pack_array(h) for h in hidden],
            "ws_bytes": sched.ws_bytes, "aliases": [tuple(a) for a in sched.aliases],
            "sites": [(k.node.arg, k.node.shape) for k in check_sites(sched)],
            "stats": {"kernels": len(sched.kernels), "buffers": sched.buffers,
                      "peak_bytes": sched.ws_bytes,
                      "allocations_per_call": len(sched.outputs), **sched.stats}}


def _scalar_expr(j: int, dt: np.dtype, python: bool) -> str:
    """A 0-d output read from the workspace as `v<j>`: the Python scalar (bools as bool), or a
    fresh 0-d array of its dtype."""
    if python:
        return f"bool(v{j})" if dt == np.bool_ else f"v{j}"
    return f"array(v{j})" if dt == np.float64 else f"array(v{j}, T{j})"
