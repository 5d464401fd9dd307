"""The limit row: W0 written by hand in C and called through cffi (what an ideal compiled
call costs: the arithmetic plus cffi's call overhead)."""

from __future__ import annotations

import functools

import cffi

from bench import problems as P

_SOURCE = """
void w0(double w, double b, double x, double y, double *out) {
    double r = w * x + b - y;
    out[0] = r * r; out[1] = 2 * r * x; out[2] = 2 * r;
}
"""


@functools.cache
def _lib():
    import os
    import tempfile
    ffi = cffi.FFI()
    ffi.cdef("void w0(double w, double b, double x, double y, double *out);")
    ffi.set_source("_graphc_bench_limit", _SOURCE, extra_compile_args=["-O2"])
    tmp = os.path.join(tempfile.gettempdir(), "graphc-bench-limit")
    os.makedirs(tmp, exist_ok=True)
    path = ffi.compile(tmpdir=tmp, verbose=False)
    import importlib.util
    spec = importlib.util.spec_from_file_location("_graphc_bench_limit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _w0():
    mod = _lib()
    out = mod.ffi.new("double[3]")
    fn, args = mod.lib.w0, P.W0_ARGS

    def run():
        fn(*args, out)
        return out[0], out[1], out[2]
    return run


CASES = {"W0": {"C by hand (limit)": _w0}}
