"""The limit rows: W0 and W4 written by hand in C and called through cffi (what an ideal
compiled call costs: the arithmetic plus cffi's call overhead)."""

from __future__ import annotations

import functools

import cffi
import numpy as np

from bench import problems as P

_W0_SOURCE = """
void w0(double w, double b, double x, double y, double *out) {
    double r = w * x + b - y;
    out[0] = r * r; out[1] = 2 * r * x; out[2] = 2 * r;
}
"""

# W4 as one AVX loop over x: glibc's libmvec for expf and tanhf (declared `simd` so gcc calls
# _ZGVdN8v_expf etc.), the float sum in double in blocks of 128 like graphc's fused loop.
_W4_SOURCE = """
#include <math.h>
__attribute__((simd("notinbranch"))) float expf(float);
__attribute__((simd("notinbranch"))) float tanhf(float);
double w4(const float *restrict x, float *restrict g, long n, float a, float b) {
    double acc = 0.0;
    for (long jb = 0; jb < n; jb += 128) {
        long je = jb + 128 < n ? jb + 128 : n;
        double part = 0.0;
#pragma omp simd reduction(+ : part)
        for (long i = jb; i < je; i++) {
            float xi = x[i], t = tanhf(a * xi + b), s = 1.0f / (1.0f + expf(-xi));
            float e = expf(-xi * xi);
            part += (double)(t * s + e);
            g[i] = (1.0f - t * t) * a * s + t * s * (1.0f - s) - 2.0f * xi * e;
        }
        acc += part;
    }
    return acc;
}
"""

_BUILDS = {
    "w0": (_W0_SOURCE, "void w0(double w, double b, double x, double y, double *out);",
           ["-O2"], []),
    "w4": (_W4_SOURCE, "double w4(const float *x, float *g, long n, float a, float b);",
           ["-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno"], ["mvec", "m"]),
}


@functools.cache
def _lib(name: str):
    import importlib.util
    import os
    import tempfile
    source, cdef, flags, libs = _BUILDS[name]
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    module_name = f"_graphc_bench_limit_{name}"
    ffi.set_source(module_name, source, extra_compile_args=flags, libraries=libs)
    tmp = os.path.join(tempfile.gettempdir(), "graphc-bench-limit")
    os.makedirs(tmp, exist_ok=True)
    path = ffi.compile(tmpdir=tmp, verbose=False)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _w0():
    mod = _lib("w0")
    out = mod.ffi.new("double[3]")
    fn, args = mod.lib.w0, P.W0_ARGS

    def run():
        fn(*args, out)
        return out[0], out[1], out[2]
    return run


def _w4():
    mod = _lib("w4")
    x = P.w4_x()
    grad = np.empty_like(x)
    xp = mod.ffi.cast("const float *", x.ctypes.data)
    gp = mod.ffi.cast("float *", grad.ctypes.data)

    def run():
        value = mod.lib.w4(xp, gp, x.size, P.W4_A, P.W4_B)
        return value, grad
    return run


CASES = {"W0": {"C by hand (limit)": _w0}, "W4": {"C by hand, AVX + libmvec (limit)": _w4}}
