"""The limit rows: workloads written by hand in C and called through cffi. W0: the
arithmetic plus cffi's call overhead. W7: a tape interpreter (a flat int32 array of
(opcode, output, inputs) run by a switch loop, then its reverse pass), the bar for graphs of
scalar ops; its first result includes building the tape from the op list in Python."""

from __future__ import annotations

import functools

import cffi
import numpy as np

from bench import problems as P

_CDEF = """
void w0(double w, double b, double x, double y, double *out);
double w7(const int32_t *tape, long n_ops, long n_nodes, const double *x, double *v,
          double *g, double *grad);
"""

_SOURCE = """
#include <math.h>
#include <stdint.h>

void w0(double w, double b, double x, double y, double *out) {
    double r = w * x + b - y;
    out[0] = r * r; out[1] = 2 * r * x; out[2] = 2 * r;
}

/* W7: row = {op, out, in0, in1, in2, in3}; ops as bench/problems.py's w7_program. */
enum { SOFTPLUS, SUM4, MUL, SOFTMAX4 };

double w7(const int32_t *tape, long n_ops, long n_nodes, const double *x, double *v,
          double *g, double *grad) {
    for (long i = 0; i < 100; i++) v[i] = x[i];
    const int32_t *t = tape;
    for (long r = 0; r < n_ops; r++, t += 6) {
        switch (t[0]) {
        case SOFTPLUS: { double a = v[t[2]]; v[t[1]] = fmax(a, 0.0) + log1p(exp(-fabs(a)));
                         break; }
        case SUM4: v[t[1]] = v[t[2]] + v[t[3]] + v[t[4]] + v[t[5]]; break;
        case MUL: v[t[1]] = v[t[2]] * v[t[3]]; break;
        default: {
            const double *a = v + t[2];
            double m = fmax(fmax(a[0], a[1]), fmax(a[2], a[3]));
            double e0 = exp(a[0] - m), e1 = exp(a[1] - m), e2 = exp(a[2] - m),
                   e3 = exp(a[3] - m);
            double inv = 1.0 / (e0 + e1 + e2 + e3);
            double *o = v + t[1];
            o[0] = e0 * inv; o[1] = e1 * inv; o[2] = e2 * inv; o[3] = e3 * inv;
        }
        }
    }
    double loss = 0.0;
    for (long i = 0; i < n_nodes; i++) { loss += v[i]; g[i] = 1.0; }
    for (long r = n_ops - 1; r >= 0; r--) {
        t = tape + 6 * r;
        double go = g[t[1]];
        switch (t[0]) {
        case SOFTPLUS: g[t[2]] += go / (1.0 + exp(-v[t[2]])); break;
        case SUM4: g[t[2]] += go; g[t[3]] += go; g[t[4]] += go; g[t[5]] += go; break;
        case MUL: g[t[2]] += go * v[t[3]]; g[t[3]] += go * v[t[2]]; break;
        default: {
            const double *y = v + t[1], *gy = g + t[1];
            double dot = gy[0] * y[0] + gy[1] * y[1] + gy[2] * y[2] + gy[3] * y[3];
            double *ga = g + t[2];
            ga[0] += y[0] * (gy[0] - dot); ga[1] += y[1] * (gy[1] - dot);
            ga[2] += y[2] * (gy[2] - dot); ga[3] += y[3] * (gy[3] - dot);
        }
        }
    }
    for (long i = 0; i < 100; i++) grad[i] = g[i];
    return loss;
}
"""


@functools.cache
def _lib():
    import importlib.util
    import os
    import tempfile
    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    ffi.set_source("_graphc_bench_limit", _SOURCE, extra_compile_args=["-O2"])
    tmp = os.path.join(tempfile.gettempdir(), f"graphc-bench-limit-{os.getuid()}")
    os.makedirs(tmp, exist_ok=True)
    path = ffi.compile(tmpdir=tmp, verbose=False)
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


def w7_tape(n_ops: int) -> tuple[np.ndarray, int]:
    """The W7 tape (n_ops rows of 6 int32) and the node count, built from the op list."""
    program = P.w7_program(n_ops)
    tape = np.zeros((len(program), 6), np.int32)
    for r, (op, out, ins) in enumerate(program):
        tape[r, :2 + len(ins)] = (op, out, *ins)
    return tape, P.w7_nodes(program)


def _w7(n_ops: int):
    def make():
        mod = _lib()
        ffi, fn = mod.ffi, mod.lib.w7
        tape, n_nodes = w7_tape(n_ops)
        x = P.w7_x()
        v, g, grad = np.empty(n_nodes), np.empty(n_nodes), np.empty(100)
        args = [ffi.from_buffer("int32_t[]", tape), n_ops, n_nodes,
                ffi.from_buffer("double[]", x), ffi.from_buffer("double[]", v),
                ffi.from_buffer("double[]", g), ffi.from_buffer("double[]", grad)]

        def run():
            return fn(*args), grad
        return run
    return make


CASES = {"W0": {"C by hand (limit)": _w0},
         **{w: {"C by hand (limit)": _w7(n)} for w, (n, _) in P.W7_WORKLOADS.items()}}
