"""The C runtime's gemm (csrc/gemm.c via graphc.rt) against numpy, on every instruction-set path
this CPU has: shapes around the micro-tile and cache-block edges, strided and transposed
operands, accumulate, K = 0, concurrent calls, the addresses handed to generated code, and the
build-on-first-use fallback of a source checkout."""

import os
import re
import subprocess
import sys
import threading

import cffi
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphc import rt
from graphc.errors import DTypeError, ShapeError

RTOL = {np.float32: 1e-5, np.float64: 1e-12}  # relative to sum_k |a_ik| |b_kj|
ISAS = [isa for isa in rt.ISAS if rt.set_gemm_isa(isa) == isa]
rt.set_gemm_isa(None)

# (M, K, N): one element, primes, the exact AVX-512 tile (12 x 32) and one off either way, the
# brief's small shapes, several KC (256) and MC (144) blocks, and N over the B block (NC); the
# M give every edge of 1 to MR - 1 rows on the 4- and 6-row tiles (9: 3 rows on AVX2).
SHAPES = [
    (1, 1, 1), (37, 53, 29), (12, 256, 32), (13, 257, 33), (11, 255, 31), (6, 7, 16),
    (100, 2, 16), (128, 64, 128), (2, 3, 1000), (300, 600, 70), (20, 300, 1100), (9, 40, 20),
]


@pytest.fixture(params=ISAS)
def isa(request):
    rt.set_gemm_isa(request.param)
    yield request.param
    rt.set_gemm_isa(None)


def operand(rng, shape, dtype, layout="c"):
    """A random array of ``shape``: C-ordered, transposed ("t") or a strided view ("s")."""
    if layout == "t":
        return rng.standard_normal(shape[::-1]).astype(dtype).T
    if layout == "s":
        return rng.standard_normal((shape[0] * 2, shape[1] * 3)).astype(dtype)[::2, 1::3]
    return rng.standard_normal(shape).astype(dtype)


def assert_matmul(c, a, b, c0=None):
    """c == c0 + a @ b within RTOL, with the reference computed in float64."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = a64 @ b64 if c0 is None else c0.astype(np.float64) + a64 @ b64
    scale = np.abs(a64) @ np.abs(b64) + (0 if c0 is None else np.abs(c0))
    err = np.abs(c.astype(np.float64) - ref)
    tol = RTOL[c.dtype.type] * scale
    assert c.shape == ref.shape
    worst = np.unravel_index(np.argmax(err - tol), err.shape) if err.size else None
    assert np.all(err <= tol), f"error {err[worst]} > tolerance {tol[worst]} at {worst}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_shapes(isa, m, k, n, dtype):
    rng = np.random.default_rng(m * 10007 + k * 101 + n)
    a, b = operand(rng, (m, k), dtype), operand(rng, (k, n), dtype)
    assert_matmul(rt.gemm(a, b), a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("la,lb", [("t", "c"), ("c", "t"), ("t", "t"), ("s", "s"), ("c", "s")])
def test_strided_and_transposed(isa, la, lb, dtype):
    rng = np.random.default_rng(1)
    for m, k, n in [(37, 53, 29), (13, 300, 45), (150, 20, 70)]:
        a, b = operand(rng, (m, k), dtype, la), operand(rng, (k, n), dtype, lb)
        assert_matmul(rt.gemm(a, b), a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("la,lb", [("c", "c"), ("t", "t")])
def test_small_and_blocked_paths_give_the_same_bits(isa, la, lb, dtype):
    """Rows of a product above the small-product size (packed, blocked) equal the same rows
    computed alone (small path: A read in place), bit for bit, N ragged or not."""
    rng = np.random.default_rng(3)
    for k, n in [(64, 20), (100, 16), (30, 10)]:
        a, b = operand(rng, (8000, k), dtype, la), operand(rng, (k, n), dtype, lb)
        whole = rt.gemm(a, b)
        for rows in (slice(0, 7), slice(100, 150)):
            assert rt.gemm(a[rows], b).tobytes() == whole[rows].tobytes()
        assert_matmul(whole, a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_path_b_in_place_or_packed_gives_the_same_bits(isa, dtype):
    """The small path reads B in place when its rows lie close (W1's 16-column weights) and
    packs it when they lie far apart (W2's 64 x 128 weight: 512-byte rows on few L1 sets),
    and computes a ragged last panel (N = 10) straight into C: the same bits either way."""
    rng = np.random.default_rng(6)
    a, b = operand(rng, (128, 64), dtype), operand(rng, (64, 128), dtype)
    whole = rt.gemm(a, b)                                   # B's rows 128 elements apart
    for cols in (slice(0, 16), slice(8, 18), slice(0, 10)):
        near = np.ascontiguousarray(b[:, cols])             # 16 or 10 elements apart
        assert rt.gemm(a, near).tobytes() == np.ascontiguousarray(whole[:, cols]).tobytes()
    c0 = operand(rng, (128, 10), dtype)
    out = c0.copy()
    rt.gemm(a, b[:, :10], out, accumulate=True)
    assert_matmul(out, a, b[:, :10], c0)


def test_column_slices_and_wide_ldc(isa):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((40, 31))
    b = rng.standard_normal((31, 90))[:, ::2]  # B[:, ::2]
    big = np.full((40, 64), 7.0)
    out = big[:, 5:50]  # ldc = 64 > N = 45
    assert rt.gemm(a, b, out) is out
    assert_matmul(out, a, b)
    assert np.all(big[:, :5] == 7.0) and np.all(big[:, 50:] == 7.0)  # nothing outside out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (37, 53, 29), (13, 600, 33), (150, 70, 40)])
def test_accumulate(isa, m, k, n, dtype):
    rng = np.random.default_rng(3)
    a, b = operand(rng, (m, k), dtype), operand(rng, (k, n), dtype)
    c0 = operand(rng, (m, n), dtype)
    out = c0.copy()
    rt.gemm(a, b, out, accumulate=True)
    assert_matmul(out, a, b, c0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lb", ["c", "t"])
def test_rows_of_c_do_not_depend_on_how_many_rows(isa, dtype, lb):
    """A row of C has the same bits whether A has few rows (gemm_few_rows: A packed whole, B
    a few panels at a time) or many (the general blocking): thread slabs of rows rely on it.
    B row-major and transposed (packed by register transposes), N over one group of panels."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((700, 900)).astype(dtype)
    b = operand(rng, (900, 170), dtype, lb)
    rt.set_num_threads(1)       # else thread slabs of rows take the few-rows path too
    try:
        whole = rt.gemm(a, b)
        for lo, hi in [(0, 1), (0, 250), (300, 590)]:
            assert rt.gemm(a[lo:hi], b).tobytes() == whole[lo:hi].tobytes()
        assert_matmul(whole, a, b)
    finally:
        rt.set_num_threads(None)


def test_overwrite_never_reads_out(isa):
    rng = np.random.default_rng(4)
    for m, k, n in [(37, 53, 29), (12, 256, 32), (5, 3, 7)]:
        a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
        out = np.full((m, n), np.nan)
        assert_matmul(rt.gemm(a, b, out), a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_dimensions(isa, dtype):
    a, b = np.ones((4, 0), dtype), np.ones((0, 3), dtype)
    assert np.array_equal(rt.gemm(a, b), np.zeros((4, 3)))  # K = 0: C = 0
    out = np.full((4, 3), np.nan, dtype)
    assert np.array_equal(rt.gemm(a, b, out), np.zeros((4, 3)))
    out = np.full((4, 3), 2.5, dtype)
    rt.gemm(a, b, out, accumulate=True)  # K = 0, accumulate: unchanged
    assert np.all(out == 2.5)
    assert rt.gemm(np.ones((0, 5), dtype), np.ones((5, 3), dtype)).shape == (0, 3)
    assert rt.gemm(np.ones((4, 5), dtype), np.ones((5, 0), dtype)).shape == (4, 0)


@settings(max_examples=50, derandomize=True, deadline=None)
@given(
    m=st.integers(0, 40), k=st.integers(0, 40), n=st.integers(0, 70),
    dtype=st.sampled_from([np.float32, np.float64]),
    la=st.sampled_from("cts"), lb=st.sampled_from("cts"),
    accumulate=st.booleans(), isa=st.sampled_from(ISAS),
)
def test_random_shapes(m, k, n, dtype, la, lb, accumulate, isa):
    rng = np.random.default_rng(m + 41 * k + 1681 * n)
    a, b = operand(rng, (m, k), dtype, la), operand(rng, (k, n), dtype, lb)
    c0 = operand(rng, (m, n), dtype)
    out = c0.copy() if accumulate else np.full((m, n), np.nan, dtype)
    rt.set_gemm_isa(isa)
    try:
        rt.gemm(a, b, out, accumulate=accumulate)
    finally:
        rt.set_gemm_isa(None)
    assert_matmul(out, a, b, c0 if accumulate else None)


def test_two_threads_at_once():
    """Concurrent calls (the GIL is released) use separate packing buffers."""
    barrier = threading.Barrier(2)
    failures = []

    def work(seed, dtype):
        rng = np.random.default_rng(seed)
        cases = [(operand(rng, (m, k), dtype), operand(rng, (k, n), dtype))
                 for m, k, n in [(150, 300, 200), (37, 53, 29), (100, 2, 16), (64, 700, 40)]]
        barrier.wait()
        try:
            for _ in range(5):
                for a, b in cases:
                    assert_matmul(rt.gemm(a, b), a, b)
        except AssertionError as e:
            failures.append(e)

    threads = [threading.Thread(target=work, args=(i, dt))
               for i, dt in enumerate([np.float32, np.float64])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_addresses_callable_through_function_pointers():
    """What generated code does: cast the integers to the header's pointer types and call."""
    addresses = rt.gemm_addresses()
    assert set(addresses) == {"f32", "f64"}
    ffi = cffi.FFI()
    ffi.cdef("""
        typedef void (*graphc_gemm_f32_fn)(long, long, long, const float *, long, long,
                                           const float *, long, long, float *, long, int);
        typedef void (*graphc_gemm_f64_fn)(long, long, long, const double *, long, long,
                                           const double *, long, long, double *, long, int);
    """)
    rng = np.random.default_rng(5)
    for sfx, dtype, ctype in [("f32", np.float32, "float"), ("f64", np.float64, "double")]:
        fn = ffi.cast(f"graphc_gemm_{sfx}_fn", addresses[sfx])
        a, b = operand(rng, (9, 14), dtype), operand(rng, (14, 5), dtype)
        c = np.empty((9, 5), dtype)
        a_p, b_p, c_p = (ffi.cast(f"{ctype} *", x.ctypes.data) for x in (a, b, c))
        fn(9, 5, 14, a_p, 14, 1, b_p, 5, 1, c_p, 5, 0)
        assert_matmul(c, a, b)


def test_bad_arguments():
    f32, f64 = np.ones((3, 4), np.float32), np.ones((4, 2), np.float64)
    with pytest.raises(DTypeError):
        rt.gemm(f32, f64)
    with pytest.raises(DTypeError):
        rt.gemm(np.ones((3, 4), np.int64), np.ones((4, 2), np.int64))
    with pytest.raises(ShapeError):
        rt.gemm(np.ones((3, 4)), np.ones((5, 2)))
    with pytest.raises(ShapeError):
        rt.gemm(np.ones(4), np.ones((4, 2)))
    with pytest.raises(ShapeError):
        rt.gemm(np.ones((3, 4)), np.ones((4, 2)), np.ones((3, 3)))
    with pytest.raises(ShapeError):  # out must have unit stride along N
        rt.gemm(np.ones((3, 4)), np.ones((4, 2)), np.ones((2, 3)).T)
    a = np.ones((4, 4))
    with pytest.raises(ValueError):
        rt.gemm(a, a, a)


def test_import_builds_nothing_and_source_checkout_builds_once(tmp_path):
    """Without graphc._rt, the first gemm_addresses() builds csrc/ into TMPDIR, once."""
    script = (
        "import os, sys\n"
        "sys.modules['graphc._rt'] = None  # as if the extension was never built\n"
        "before = os.listdir(os.environ['TMPDIR'])\n"
        "import graphc.rt as rt\n"
        "assert os.listdir(os.environ['TMPDIR']) == before, 'import must build nothing'\n"
        "import numpy as np\n"
        "assert set(rt.gemm_addresses()) == {'f32', 'f64'}\n"
        "a = np.arange(6.0).reshape(2, 3)\n"
        "assert np.array_equal(rt.gemm(a, a.T), a @ a.T)\n"
    )
    env = dict(os.environ, TMPDIR=str(tmp_path))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for _ in range(2):  # the second run loads the cached build
        subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=root)
    builds = os.listdir(tmp_path / "graphc-rt")
    assert len(builds) == 1
    assert any(f.startswith("_rt") for f in os.listdir(tmp_path / "graphc-rt" / builds[0]))


def test_the_cdef_is_read_from_the_headers():
    """graphc._rt's cffi cdef is the headers' marked declarations (one source): it declares
    every function the headers declare, and the built module has each of them."""
    from graphc import _build_rt
    csrc = rt.csrc_dir()
    cdef = _build_rt.cdef(csrc)
    in_cdef = re.findall(r"(graphc_\w+)\(", cdef)
    for name in _build_rt.HEADERS:
        with open(os.path.join(csrc, name)) as f:
            declared = re.findall(r"^(?:void|int) (graphc_\w+)\(", f.read(), re.M)
        assert declared and set(declared) <= set(in_cdef), name
    lib = rt._runtime().lib
    assert all(callable(getattr(lib, fn)) for fn in in_cdef)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape_a,shape_b,transpose", [
    ((100, 16), (16, 1), False), ((100, 1), (100, 16), True), ((3, 5, 7), (7, 4), False),
    ((2, 50, 2), (2, 16), False), ((7, 3), (3, 40), False), ((2, 9, 5), (5, 24), False)])
def test_small_matmul_is_loops_and_matches_numpy(shape_a, shape_b, transpose, dtype):
    """Below SMALL_MATMUL_MACS codegen writes loops with literal extents (no gemm call), for
    batched and transposed (strided) operands too, and rows of whole vectors (explicit
    vectors, with row and column blocks left over: 7 rows of 10 float64 vectors, 9 rows of 3
    float32 vectors); value and gradients (whose matmuls are small as well) agree with
    float64 numpy."""
    import re

    import graphc
    from graphc.codegen.c import SMALL_MATMUL_MACS
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=shape_a).astype(dtype), rng.normal(size=shape_b).astype(dtype)

    def f(a, b):
        return graphc.sum((a.T if transpose else a) @ b * 1.5)
    g = graphc.compile(graphc.value_and_grad(f, argnums=(0, 1)))
    value, (da, db) = g(a, b)
    source = g.source(a, b)
    assert re.search(r"gc_gemm_f(32|64)\(", source) is None
    if shape_b[-1] % (32 // a.itemsize) == 0:      # rows of whole vectors
        assert "vector_size" in source
    a64 = (a.T if transpose else a).astype(np.float64)
    m, k, n = a64.shape[-2], a64.shape[-1], b.shape[-1]
    assert m * k * n <= SMALL_MATMUL_MACS
    ones = np.full(a64.shape[:-1] + (n,), 1.5)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(value, 1.5 * (a64 @ b).sum(), rtol=rtol)
    want_da = ones @ b.astype(np.float64).T
    np.testing.assert_allclose(da, want_da.T if transpose else want_da, rtol=rtol, atol=1e-5)
    want_db = a64.reshape(-1, k).T @ ones.reshape(-1, n)
    np.testing.assert_allclose(db, want_db, rtol=rtol, atol=1e-4)
