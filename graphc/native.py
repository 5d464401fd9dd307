"""The C backend's executable: a graph's generated C, built and loaded, called once per run
through a Python function written for its signature (inputs converted or checked, fresh
output arrays, one C call on a workspace)."""

from __future__ import annotations

import threading

import numpy as np

from .arrays import as_array, in_place_array
from .build import load_module
from .codegen.c import ENTRY, annotate, by_value, check_sites, generate
from .errors import GraphcError
from .ir import Graph
from .ops.elementwise import index_error
from .rt import gemm_addresses
from .schedule import describe


class CRunner:
    """Calls the built entry point: fresh output arrays, a shared workspace, one C call
    (`runner.call(leaves)`, generated per signature)."""

    def __init__(self, graph: Graph, fuse: bool = True):
        self.source, cdef, sched, self._marks = generate(graph, fuse)
        self.ffi, lib = load_module(self.source, cdef)
        if "graphc_gemm.h" in self.source:
            addr = gemm_addresses()
            lib.graphc_set_gemm(addr["f32"], addr["f64"])
        self._entry = getattr(lib, ENTRY)
        self._outs = [(n.shape, n.dtype.np) for n in graph.outputs]
        self._in = [(by_value(b), b.dtype.np, float if b.dtype.is_float else int)
                    for b in sched.inputs]
        # tape, literal pools, big constants: kept alive as exactly the arrays C reads
        self._hidden_keep = [np.ascontiguousarray(v) for _, v in sched.hidden]
        self._hidden = [self.ffi.from_buffer(v) for v in self._hidden_keep]
        self._ws_bytes = sched.ws_bytes + 64          # the arena, then the error record
        self._ws, self._ws_ptr = self._new_workspace()
        self._lock = threading.Lock()
        self._sites = [(k.node.arg, k.node.shape) for k in check_sites(sched)]
        self.ws_offset = sched.ws_bytes
        self.aliases = dict(sched.aliases)      # output k -> input j (written in place)
        self.stats = {"kernels": len(sched.kernels), "buffers": sched.buffers,
                      "peak_bytes": sched.ws_bytes,
                      "allocations_per_call": len(sched.outputs), **sched.stats}
        self._sched = sched
        self.call = self._make_call()

    def describe(self) -> list[str]:
        """One line per kernel (explain())."""
        return describe(self._sched)

    def annotated_source(self) -> str:
        """The built C with each kernel's nodes and source lines as comments (f.source())."""
        return annotate(self.source, self._marks, self._sched.graph)

    def _new_workspace(self):
        raw = np.empty(self._ws_bytes + 64, np.uint8)
        start = (-raw.ctypes.data) % 64
        buf = raw[start:start + self._ws_bytes]
        return buf, self.ffi.from_buffer(buf)

    def fail(self, rc: int, ws: np.ndarray):
        """Raise the error a nonzero return code stands for (its record follows the arena)."""
        code, site, pos, value = ws[self.ws_offset:self.ws_offset + 32].view(np.int64).tolist()
        if code == 1 and 0 <= site < len(self._sites):
            (n, what, lo), shape = self._sites[site]
            raise index_error(what, value, pos, shape, n, lo)
        raise GraphcError(f"generated code returned error code {rc}")

    def _make_call(self):
        """The per-call path as straight-line Python specialised to this signature (no loops
        over arguments): convert inputs, allocate outputs, one C call under the workspace
        lock (a contending thread gets a fresh workspace), return the outputs. An output
        aliased to an input is that input array, written in place."""
        ns = {"fb": self.ffi.from_buffer, "entry": self._entry, "empty": np.empty,
              "ndarray": np.ndarray, "as_array": as_array, "lock": self._lock,
              "ws": self._ws_ptr, "wsa": self._ws, "new_ws": self._new_workspace,
              "fail": self.fail, "inplace": in_place_array}
        aliased = {j: k for k, j in self.aliases.items()}
        params, args, pre = [], [], []
        for k, (scalar, dt, py) in enumerate(self._in):
            params.append(f"a{k}")
            ns[f"D{k}"], ns[f"P{k}"] = dt, py
            if scalar:
                args.append(f"a{k} if type(a{k}) is P{k} else P{k}(a{k})")
            elif k in aliased:
                pre.append(f"    a{k} = inplace(a{k}, D{k}, {k})")
                args.append(f"fb(a{k})")
            else:
                args.append(f"fb(a{k} if type(a{k}) is ndarray and a{k}.dtype is D{k} and "
                            f"a{k}.flags.c_contiguous else as_array(a{k}, D{k}))")
        for j, h in enumerate(self._hidden):
            ns[f"H{j}"] = h
            args.append(f"H{j}")
        outs = []
        for j, (shape, dt) in enumerate(self._outs):
            ns[f"S{j}"], ns[f"T{j}"] = shape, dt
            outs.append(f"a{self.aliases[j]}" if j in self.aliases else f"o{j}")
            args.append(f"fb({outs[-1]})")
        call_args = ", ".join(args)
        lines = ["def call(leaves):"]
        if params:
            lines.append(f"    {', '.join(params)}, = leaves")
        lines += pre
        lines += [f"    o{j} = empty(S{j}, T{j})" for j in range(len(outs))
                  if j not in self.aliases]
        lines += [f"    args = ({call_args}{',' if args else ''})",
                  "    if lock.acquire(False):",
                  "        try:",
                  "            rc = entry(*args, ws)",
                  "            if rc:",
                  "                fail(rc, wsa)",
                  "        finally:",
                  "            lock.release()",
                  "    else:",
                  "        wsa2, ws2 = new_ws()",
                  "        rc = entry(*args, ws2)",
                  "        if rc:",
                  "            fail(rc, wsa2)",
                  f"    return [{', '.join(outs)}]"]
        exec("\n".join(lines), ns)  # noqa: S102  (source built from this signature only)
        return ns["call"]
