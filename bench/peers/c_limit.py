"""The limit rows: workloads written by hand in C and called through cffi. W0: the
arithmetic plus cffi's call overhead. W1: the moons MLP's SGD step (forward, hinge loss,
backward, update) over its fixed sizes, vectorized by hand over the hidden units and built
-O3 -march=native like graphc's kernels. W7: a tape interpreter (a flat int32 array of
(opcode, output, inputs) run by a switch loop, then its reverse pass), the bar for graphs of
scalar ops; its first result includes building the tape from the op list in Python. W4: one AVX
loop with glibc's libmvec."""

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


# W1 over its fixed sizes, built like graphc's kernels (-O3 -march=native, FMA contraction).
# Written with vector types: the same loops in plain C ran 3x slower vectorized by gcc 12
# (it vectorizes across samples, with shuffles) than not vectorized at all.
_W1_SOURCE = """
/* W1: 2-16-16-1 ReLU MLP on 100 points, mean(relu(1 - y*score)) + 1e-4 * sum(p*p), one
   SGD step; returns the loss before the update. Weights are (in, out) row-major. A row of 16
   hidden units is 4 vectors of 4 doubles (GCC vector extensions): every loop over the units
   is 4 vector operations. */
#include <string.h>
enum { N = 100, D = 2, H = 16, Q = H / 4 };
typedef double v4 __attribute__((vector_size(32)));
typedef long m4 __attribute__((vector_size(32)));

static inline v4 ld(const double *p) { v4 v; memcpy(&v, p, sizeof v); return v; }
static inline void st(double *p, v4 v) { memcpy(p, &v, sizeof v); }
static inline v4 relu(v4 v) { return (v4)((m4)v & (v > 0)); }
static inline v4 keep(v4 v, v4 where) { return (v4)((m4)v & (where > 0)); }
static inline double hsum(v4 v) { return (v[0] + v[1]) + (v[2] + v[3]); }

static double sumsq(const double *p, int n) {
    v4 s = {0};
    int i = 0;
    for (; i + 4 <= n; i += 4) s += ld(p + i) * ld(p + i);
    double r = hsum(s);
    for (; i < n; i++) r += p[i] * p[i];
    return r;
}

static void sgd(double *restrict p, const double *restrict g, int n, double lr) {
    for (int i = 0; i < n; i++) p[i] -= lr * (g[i] + 2e-4 * p[i]);
}

double w1(const double *restrict x, const double *restrict y, double *restrict W0,
          double *restrict b0, double *restrict W1, double *restrict b1, double *restrict W2,
          double *restrict b2, double lr) {
    v4 h1[N][Q], h2[N][Q], w0[D][Q], w1r[H][Q], w1t[H][Q], w2[Q], c0[Q], c1[Q];
    v4 gW0[D][Q], gb0[Q], gW1[H][Q], gb1[Q], gW2[Q];
    double ds[N], gb2 = 0.0, loss = 0.0;
    memset(gW0, 0, sizeof gW0), memset(gb0, 0, sizeof gb0), memset(gW1, 0, sizeof gW1);
    memset(gb1, 0, sizeof gb1), memset(gW2, 0, sizeof gW2);
    for (int q = 0; q < Q; q++) {
        w0[0][q] = ld(W0 + 4 * q), w0[1][q] = ld(W0 + H + 4 * q);
        c0[q] = ld(b0 + 4 * q), c1[q] = ld(b1 + 4 * q), w2[q] = ld(W2 + 4 * q);
    }
    for (int k = 0; k < H; k++)
        for (int q = 0; q < Q; q++) {
            w1r[k][q] = ld(W1 + k * H + 4 * q);
            for (int l = 0; l < 4; l++) w1t[k][q][l] = W1[(4 * q + l) * H + k];
        }
    for (int n = 0; n < N; n++) {
        v4 a[Q], s = {0};
        for (int q = 0; q < Q; q++) {
            h1[n][q] = relu(c0[q] + x[n * D] * w0[0][q] + x[n * D + 1] * w0[1][q]);
            a[q] = c1[q];
        }
        for (int k = 0; k < H; k++) {
            double hk = h1[n][k / 4][k % 4];
            for (int q = 0; q < Q; q++) a[q] += hk * w1r[k][q];
        }
        for (int q = 0; q < Q; q++) {
            h2[n][q] = relu(a[q]);
            s += h2[n][q] * w2[q];
        }
        double margin = 1.0 - y[n] * (b2[0] + hsum(s));
        loss += margin > 0 ? margin : 0.0;
        ds[n] = margin > 0 ? -y[n] / N : 0.0;
    }
    loss = loss / N + 1e-4 * (sumsq(W0, D * H) + sumsq(b0, H) + sumsq(W1, H * H)
                              + sumsq(b1, H) + sumsq(W2, H) + sumsq(b2, 1));
    for (int n = 0; n < N; n++) {
        double d = ds[n];
        if (d == 0.0) continue;
        v4 dh2[Q], dh1[Q] = {{0}};
        gb2 += d;
        for (int q = 0; q < Q; q++) {
            gW2[q] += h2[n][q] * d;
            dh2[q] = keep(d * w2[q], h2[n][q]);
            gb1[q] += dh2[q];
        }
        for (int i = 0; i < H; i++) {
            double hi = h1[n][i / 4][i % 4];
            for (int q = 0; q < Q; q++) gW1[i][q] += hi * dh2[q];
        }
        for (int k = 0; k < H; k++) {
            double g = dh2[k / 4][k % 4];
            for (int q = 0; q < Q; q++) dh1[q] += g * w1t[k][q];
        }
        for (int q = 0; q < Q; q++) {
            dh1[q] = keep(dh1[q], h1[n][q]);
            gb0[q] += dh1[q];
            gW0[0][q] += x[n * D] * dh1[q];
            gW0[1][q] += x[n * D + 1] * dh1[q];
        }
    }
    sgd(W0, (const double *)gW0, D * H, lr); sgd(b0, (const double *)gb0, H, lr);
    sgd(W1, (const double *)gW1, H * H, lr); sgd(b1, (const double *)gb1, H, lr);
    sgd(W2, (const double *)gW2, H, lr); sgd(b2, &gb2, 1, lr);
    return loss;
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
    "scalar": (_SOURCE, _CDEF, ["-O2"], []),
    "w1": (_W1_SOURCE, """double w1(const double *x, const double *y, double *W0, double *b0,
                                  double *W1, double *b1, double *W2, double *b2, double lr);""",
           ["-O3", "-march=native", "-ffp-contract=fast"], []),
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
    tmp = os.path.join(tempfile.gettempdir(), f"graphc-bench-limit-{os.getuid()}")
    os.makedirs(tmp, exist_ok=True)
    path = ffi.compile(tmpdir=tmp, verbose=False)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _w0():
    mod = _lib("scalar")
    out = mod.ffi.new("double[3]")
    fn, args = mod.lib.w0, P.W0_ARGS

    def run():
        fn(*args, out)
        return out[0], out[1], out[2]
    return run


def _w1():
    if P.W1_SIZES != (2, 16, 16, 1) or len(P.moons()[1]) != 100:
        raise AssertionError("the C of W1 is written for a 2-16-16-1 MLP on 100 points")
    mod = _lib("w1")
    x, y = (np.ascontiguousarray(a) for a in P.moons())
    params = P.init_mlp(P.W1_SIZES, 0, "float64")
    args = [mod.ffi.from_buffer("double[]", a) for a in (x, y, *params)] + [P.W1_LR]
    fn = mod.lib.w1
    return lambda: fn(*args)


def w7_tape(n_ops: int) -> tuple[np.ndarray, int]:
    """The W7 tape (n_ops rows of 6 int32) and the node count, built from the op list."""
    program = P.w7_program(n_ops)
    tape = np.zeros((len(program), 6), np.int32)
    for r, (op, out, ins) in enumerate(program):
        tape[r, :2 + len(ins)] = (op, out, *ins)
    return tape, P.w7_nodes(program)


def _w7(n_ops: int):
    def make():
        mod = _lib("scalar")
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


CASES = {"W0": {"C by hand (limit)": _w0}, "W1": {"C by hand (limit)": _w1},
         "W4": {"C by hand, AVX + libmvec (limit)": _w4},
         **{w: {"C by hand (limit)": _w7(n)} for w, (n, _) in P.W7_WORKLOADS.items()}}
