"""Vector math (csrc/graphc_vmath.h, libmvec): accuracy in ulps and IEEE special values.

Each op's C template (`OpDef.c`, exactly what codegen emits) is compiled into a plain loop
`y[i] = <template>(x[i])` with graphc's own build flags (so the loop is vectorized as in
generated code) and compared against a higher-precision reference:

- float32 results against the float64 numpy value (numpy's float64 functions are within
  1 ulp of float64, i.e. 2^-29 float32 ulps);
- float64 results against numpy's long double (x87 80-bit, 11 more bits) functions.

The error is |y - ref| / ulp(ref), ulp(ref) the spacing of the target dtype at |ref| (2^-149 or
2^-1074 for subnormal results). Where the reference, rounded to the dtype, is inf or NaN (or
±0 at an exact zero) the result must be exactly that. `python tests/test_vmath.py` prints the
table of measured maxima.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

import graphc
from graphc.build import load_module
from graphc.ops import OPS

LD = np.longdouble
HAVE_LD = np.finfo(LD).nmant >= 63            # x87 extended (x86-64 Linux); else skip f64 ulps

FUNCS = ["exp", "log", "tanh", "sigmoid", "softplus", "sin", "cos", "log1p", "expm1", "sqrt"]

# Stated bounds (max ulps over the samples below); measured maxima are in bench/RESULTS.md.
# exp..softplus, log1p, expm1: csrc/graphc_vmath.h; sin/cos: glibc libmvec (documented <= 4
# ulps; scalar libm where libmvec is missing); sqrt: the IEEE instruction (correctly rounded).
# float32 tanh is a float rational (issue 11, W4): its roundings cost ~5 ulps just below 1.
OWN_BOUND = {
    "float32": {"exp": 1.0, "log": 1.0, "tanh": 5.5, "sigmoid": 2.5, "softplus": 2.0,
                "sin": 2.0, "cos": 2.0, "log1p": 1.0, "expm1": 1.5, "sqrt": 0.5},
    "float64": {"exp": 1.0, "log": 1.0, "tanh": 2.5, "sigmoid": 2.5, "softplus": 2.0,
                "sin": 4.0, "cos": 4.0, "log1p": 1.0, "expm1": 1.5, "sqrt": 0.5},
}
# GRAPHC_VMATH=libmvec: exp, log, log1p, expm1 and float tanh from glibc's libmvec (<= 4 ulps
# documented), sigmoid and softplus composed from them.
LIBMVEC_BOUND = {
    "float32": {**OWN_BOUND["float32"], "exp": 3.0, "log": 4.0, "tanh": 1.5, "sigmoid": 4.0,
                "softplus": 4.0, "log1p": 2.5, "expm1": 2.0},
    "float64": {**OWN_BOUND["float64"], "exp": 3.0, "log": 2.0, "sigmoid": 4.5,
                "softplus": 4.0, "log1p": 3.0, "expm1": 3.5},
}


ULP_BOUND = LIBMVEC_BOUND if os.environ.get("GRAPHC_VMATH") == "libmvec" else OWN_BOUND


def _np_sigmoid(x):
    e = np.exp(-np.abs(x))
    with np.errstate(invalid="ignore"):
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _np_softplus(x):
    return np.logaddexp(x.dtype.type(0), x)


REF = {"exp": np.exp, "log": np.log, "tanh": np.tanh, "sigmoid": _np_sigmoid,
       "softplus": _np_softplus, "sin": np.sin, "cos": np.cos, "log1p": np.log1p,
       "expm1": np.expm1, "sqrt": np.sqrt}


# ------------------------------------------------------------------------------- C loops


IN_RANGE = [name for name in FUNCS if OPS[name].c_in_range]


@functools.cache
def _module():
    lines = ['#include "graphc_rt.h"']
    cdef = []
    for dt, c_t, suffix in (("float32", "float", "f"), ("float64", "double", "")):
        loops = [(name, OPS[name].c) for name in FUNCS]
        loops += [(name + "_in", OPS[name].c_in_range[0]) for name in IN_RANGE]
        for name, template in loops:
            expr = template.format("x[i]", f=suffix, T=c_t)
            sig = f"void v_{name}_{dt}(const {c_t} *x, {c_t} *y, long n)"
            lines.append(f"{sig} {{ for (long i = 0; i < n; i++) y[i] = {expr}; }}")
            cdef.append(sig + ";")
    return load_module("\n".join(lines), "\n".join(cdef))


def run_c(name: str, x: np.ndarray) -> np.ndarray:
    """The op's kernel over x (`<name>_in`: its kernel without argument clamps)."""
    ffi, lib = _module()
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    ctype = "float" if x.dtype == np.float32 else "double"
    getattr(lib, f"v_{name}_{x.dtype.name}")(
        ffi.cast(f"{ctype} *", ffi.from_buffer(x)), ffi.cast(f"{ctype} *", ffi.from_buffer(y)),
        x.size)
    return y


# ------------------------------------------------------------------------------- samples


def special_values(dt) -> np.ndarray:
    fi = np.finfo(dt)
    tiny_sub = fi.smallest_subnormal
    base = [0.0, 1.0, 2.0, 0.5, fi.tiny, fi.tiny * 0.75, tiny_sub, tiny_sub * 3, fi.max,
            fi.max / 2, fi.eps, fi.eps / 2, 1e-5, 1e-10, 1e-20, 1e-30, 0.1, 0.3, 0.35, 0.7,
            1.5, 3.0, 10.0, 17.0, 20.0, 30.0, 40.0, 88.0, 88.7, 88.72, 89.0, 103.9, 104.0,
            150.0, 700.0, 709.0, 709.78, 709.79, 710.0, 745.0, 745.1, 745.2, 746.0, 1e5, 1e10,
            1e20, 1e30, 1e100, 1e300, np.pi / 4, np.pi / 2, np.pi, 1e6 * np.pi, np.inf]
    v = np.array(base, dtype=np.float64)
    v = np.concatenate([v, -v, [np.nan, -np.nan]])
    v = v[(np.abs(v) <= np.finfo(dt).max) | ~np.isfinite(v)].astype(dt)
    ones = np.array([1.0, -1.0, 0.5, 2.0], dtype=dt)
    v = np.concatenate([v, np.nextafter(ones, np.inf), np.nextafter(ones, -np.inf)])
    return v


def sample(dt, n: int, seed: int = 0) -> np.ndarray:
    """Specials, random bit patterns (every finite magnitude, subnormals included), and dense
    uniform samples where each function does its work."""
    rng = np.random.default_rng(seed)
    ut = np.uint32 if dt == np.float32 else np.uint64
    bits = rng.integers(0, np.iinfo(ut).max, size=n, dtype=ut, endpoint=True)
    rand = bits.view(dt)
    rand = rand[np.isfinite(rand)]
    parts = [special_values(dt), rand]
    for lo, hi in ((-1, 1), (-5, 5), (-30, 30), (-800, 800), (-1, 3), (0, 1e-3)):
        parts.append(rng.uniform(lo, hi, n).astype(dt))
    parts.append(-1 + rng.uniform(0, 1e-3, n // 4).astype(dt))
    parts.append(np.ldexp(rng.uniform(0.5, 1, n // 4), rng.integers(-60, 8, n // 4)).astype(dt))
    return np.concatenate(parts)


# ------------------------------------------------------------------------------- reference


def reference(name: str, x: np.ndarray) -> np.ndarray:
    """The function at x in float64 (for float32 x) or long double (for float64 x)."""
    hi = np.float64 if x.dtype == np.float32 else LD
    with np.errstate(all="ignore"):
        return REF[name](x.astype(hi))


def ulp_error(y: np.ndarray, ref: np.ndarray, dt) -> np.ndarray:
    """|y - ref| in ulps of dt at ref; 0 where both are the same inf/NaN; inf on a mismatch."""
    fi = np.finfo(dt)
    with np.errstate(all="ignore"):
        r_dt = ref.astype(dt)
        hi = ref.dtype.type
        exact = ~np.isfinite(r_dt) | ~np.isfinite(y)
        _, e = np.frexp(np.abs(ref))
        ulp = np.ldexp(hi(1), np.maximum(e - 1 - fi.nmant, fi.minexp - fi.nmant))
        err = np.abs(y.astype(hi) - ref) / ulp
    same = (np.isnan(y) & np.isnan(r_dt)) | (y == r_dt)
    err = np.where(exact, np.where(same, 0.0, np.inf), err)
    return err.astype(np.float64)


def max_ulps(name: str, dt, n: int = 100_000) -> tuple[float, float]:
    x = sample(dt, n)
    if name in ("log", "sqrt"):
        x = np.concatenate([x, np.abs(x)])       # mostly the domain, negatives too
    err = ulp_error(run_c(name, x), reference(name, x), dt)
    i = int(np.argmax(err))
    return float(err[i]), float(x[i])


# ------------------------------------------------------------------------------- tests

DTYPES = [np.float32, pytest.param(np.float64, marks=pytest.mark.skipif(
    not HAVE_LD, reason="float64 ulps need an 80-bit long double reference"))]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("name", FUNCS)
def test_ulps_within_stated_bound(name, dt):
    err, at = max_ulps(name, dt)
    assert err <= ULP_BOUND[np.dtype(dt).name][name], f"{name} {err} ulps at x={at!r}"


def nan_payloads(dt) -> np.ndarray:
    """NaNs with payload bits (quiet and signalling, both signs): bit tricks on a kernel's
    integer path (exponent arithmetic) must not turn any of them into a number."""
    if dt == np.float32:
        bits = np.array([0x7FC00003, 0xFFC12345, 0x7F800001, 0x7FFFFFFF, 0xFFBFFFFF], np.uint32)
    else:
        bits = np.array([0x7FF8000000000003, 0xFFF8000000012345, 0x7FF0000000000001,
                         0x7FFFFFFFFFFFFFFF, 0xFFF7FFFFFFFFFFFF], np.uint64)
    return bits.view(dt)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("name", FUNCS)
def test_special_values_exactly_as_numpy(name, dt):
    """NaN, ±inf, ±0 (and its sign), overflow to inf, underflow to 0: bit-for-bit numpy's class."""
    fi = np.finfo(dt)
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, fi.max, -fi.max,
                  fi.smallest_subnormal, -fi.smallest_subnormal, fi.tiny, -fi.tiny, 1.0, -1.0,
                  1e4, -1e4, 800.0, -800.0], dtype=dt)
    x = np.concatenate([x, nan_payloads(dt)])
    with np.errstate(all="ignore"):
        want = REF[name](x)
    got = run_c(name, x)
    assert np.array_equal(np.isnan(got), np.isnan(want)), (x, got, want)
    fin = ~np.isnan(want) & (~np.isfinite(want) | (want == 0))
    assert np.array_equal(got[fin], want[fin]), (x[fin], got[fin], want[fin])
    assert np.array_equal(np.signbit(got[fin]), np.signbit(want[fin])), (x[fin], got[fin])


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("name", IN_RANGE)
def test_unclamped_kernels_give_the_same_bits_within_their_range(name, dt):
    """OpDef.c_in_range: wherever |x| <= the declared bound (fused sums call it only there,
    codegen/ranges.py), the kernel without clamps returns exactly the clamped kernel's bits."""
    limit = OPS[name].c_in_range[1]["f" if dt == np.float32 else ""]
    x = sample(dt, 20_000)
    x = x[np.abs(x) <= limit]
    edge = np.nextafter(dt(limit), dt(0))
    x = np.concatenate([x, np.linspace(-limit, limit, 200_001).astype(dt),
                        np.array([limit, -limit, edge, -edge], dt)])
    x = x[np.abs(x) <= limit]
    assert x.size > 200_000
    assert np.array_equal(run_c(name + "_in", x).view(_UINT[dt]), run_c(name, x).view(_UINT[dt]))


_UINT = {np.float32: np.uint32, np.float64: np.uint64}


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("name", FUNCS)
def test_end_to_end_through_graphc(name, dt):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 4, 4099).astype(dt)        # odd size: the loop's scalar tail runs too
    if name in ("log", "sqrt", "log1p"):
        x = np.abs(x)
    got = graphc.compile(getattr(graphc, name))(x)
    assert got.dtype == dt
    bound = ULP_BOUND[np.dtype(dt).name][name]
    ref = reference(name, x) if HAVE_LD or dt == np.float32 else REF[name](x)
    assert ulp_error(got, ref, dt).max() <= max(bound, 1.0 if not HAVE_LD else 0)


def test_w4_expression_vectorized_matches_numpy():
    """W4's expression over 1M float32 through graphc, within float32 rounding of float64."""
    rng = np.random.default_rng(2)
    x = rng.normal(0, 2, 1_000_003).astype(np.float32)
    f = graphc.compile(lambda x: graphc.tanh(0.7 * x + 0.1) * graphc.sigmoid(x)
                       + graphc.exp(-x * x))
    x64 = x.astype(np.float64)
    want = np.tanh(np.float32(0.7) * x64 + np.float32(0.1)) * _np_sigmoid(x64) + np.exp(-x64 * x64)
    np.testing.assert_allclose(f(x), want, rtol=2e-6, atol=2e-7)


def test_without_libmvec_sin_cos_fall_back_to_scalar_libm():
    """Where libmvec is missing (not glibc/x86-64, GRAPHC_NO_LIBMVEC=1), sin/cos are plain libm."""
    src = ("#undef GC_LIBMVEC\n#include \"graphc_rt.h\"\n"
           "void f(const double *x, double *y, long n) "
           "{ for (long i = 0; i < n; i++) y[i] = sin(x[i]) + gc_exp(x[i]); }")
    ffi, lib = load_module(src, "void f(const double *x, double *y, long n);")
    x = np.array([0.0, 1.0, -3.0, 1e10, np.nan, np.inf])
    y = np.empty_like(x)
    lib.f(ffi.cast("double *", ffi.from_buffer(x)), ffi.cast("double *", ffi.from_buffer(y)), 6)
    with np.errstate(invalid="ignore", over="ignore"):
        np.testing.assert_allclose(y, np.sin(x) + np.exp(x), rtol=1e-15)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to read its -fopt-info")
def test_every_kernel_loop_vectorizes(tmp_path):
    """gcc -fopt-info-vec with graphc's own flags reports each kernel's loop vectorized (a branch
    that gcc cannot if-convert, or a libm call, would silently make it scalar)."""
    from graphc.build import CSRC_DIR, _build_flags, _libmvec_flags
    cc = ("gcc",)
    lines = ['#include "graphc_rt.h"']
    for c_t, suffix in (("float", "f"), ("double", "")):
        for name in FUNCS:
            expr = OPS[name].c.format("x[i]", f=suffix, T=c_t)
            lines.append(f"void v_{name}_{c_t}(const {c_t} *restrict x, {c_t} *restrict y, "
                         f"long n) {{ for (long i = 0; i < n; i++) y[i] = {expr}; }}")
    src = tmp_path / "k.c"
    src.write_text("\n".join(lines) + "\n")
    vec = _libmvec_flags(cc)
    flags = [f for f in _build_flags(cc) if f != "-shared"] + [f for f in vec if f[:2] == "-D"]
    if "-march=native" not in flags:
        pytest.skip("graphc builds without -march=native here")
    out = subprocess.run([*cc, *flags, f"-I{CSRC_DIR}", "-fopt-info-vec-optimized", "-c",
                          str(src), "-o", str(tmp_path / "k.o")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    vectorized = {int(m) for m in re.findall(r"k\.c:(\d+):\d+: optimized: loop vectorized",
                                             out.stderr)}
    if not _libmvec_flags(cc):          # scalar libm sin/cos: those loops stay scalar
        vectorized |= {i + 2 for i, ln in enumerate(lines[1:]) if "sin" in ln or "cos" in ln}
    assert vectorized == set(range(2, len(lines) + 1)), out.stderr


if __name__ == "__main__":
    for dt in (np.float32, np.float64):
        for name in FUNCS:
            err, at = max_ulps(name, dt, 300_000)
            print(f"{np.dtype(dt).name:8s} {name:9s} max {err:8.3f} ulp  at x={at!r}")
