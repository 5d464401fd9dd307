"""Issue 17's ops beyond the primitives (composites of them): each against numpy on both
backends and in eager mode, float32 kept, and derivatives against central differences."""

import math

import numpy as np
import pytest

import graphc

RNG_SEED = 3
rng = np.random.default_rng(RNG_SEED)    # reseeded for each test (conftest.py)
X = rng.standard_normal((3, 4))

# name -> (graphc function, numpy reference, differentiable)
CASES = {
    "var": (lambda a: graphc.var(a, axis=1, ddof=1), lambda a: np.var(a, axis=1, ddof=1), True),
    "var_all": (lambda a: graphc.var(a, keepdims=True), lambda a: np.var(a, keepdims=True),
                True),
    "std": (lambda a: graphc.std(a, axis=0), lambda a: np.std(a, axis=0), True),
    "argmax": (lambda a: graphc.argmax(a, axis=1), lambda a: np.argmax(a, axis=1), False),
    "argmin": (lambda a: graphc.argmin(a), lambda a: np.argmin(a), False),
    "argmax_keepdims": (lambda a: graphc.argmax(a, axis=0, keepdims=True),
                        lambda a: np.argmax(a, axis=0, keepdims=True), False),
    "flip": (lambda a: graphc.flip(a, 1), lambda a: np.flip(a, 1), True),
    "flip_all": (graphc.flip, np.flip, True),
    "tile": (lambda a: graphc.tile(a, (2, 1, 2)), lambda a: np.tile(a, (2, 1, 2)), True),
    "tile_int": (lambda a: graphc.tile(a, 2), lambda a: np.tile(a, 2), True),
    "repeat": (lambda a: graphc.repeat(a, 3, axis=1), lambda a: np.repeat(a, 3, axis=1), True),
    "repeat_flat": (lambda a: graphc.repeat(a, 2), lambda a: np.repeat(a, 2), True),
    "pad": (lambda a: graphc.pad(a, ((1, 2), (0, 1)), constant_values=5.0),
            lambda a: np.pad(a, ((1, 2), (0, 1)), constant_values=5.0), True),
    "pad_edge": (lambda a: graphc.pad(a, 2, mode="edge"), lambda a: np.pad(a, 2, mode="edge"),
                 True),
    "gelu": (graphc.gelu, lambda a: 0.5 * a * (1 + np.vectorize(math.erf)(a / math.sqrt(2))),
             True),
    "gelu_tanh": (lambda a: graphc.gelu(a, approximate=True),
                  lambda a: 0.5 * a * (1 + np.tanh(math.sqrt(2 / math.pi)
                                                  * (a + 0.044715 * a ** 3))), True),
    "zeros": (lambda a: a + graphc.zeros((3, 4)), lambda a: a + np.zeros((3, 4)), True),
    "ones": (lambda a: a * graphc.ones(4, np.float32), lambda a: a * np.ones(4, np.float32),
             True),
    "full": (lambda a: a * graphc.full((4,), 2.5), lambda a: a * np.full((4,), 2.5), True),
    "full_traced": (lambda a: graphc.full((2, 3), a.sum()), lambda a: np.full((2, 3), a.sum()),
                    True),
    "full_like": (lambda a: graphc.full_like(a, 3), lambda a: np.full_like(a, 3), False),
    "arange": (lambda a: a * graphc.arange(4), lambda a: a * np.arange(4), True),
    "arange_step": (lambda a: a[0] * graphc.arange(1, 9, 2.0),
                    lambda a: a[0] * np.arange(1, 9, 2.0), True),
    "linspace": (lambda a: a * graphc.linspace(0, 1, 4), lambda a: a * np.linspace(0, 1, 4),
                 True),
    "eye": (lambda a: a @ graphc.eye(4, k=1), lambda a: a @ np.eye(4, k=1), True),
    "zeros_like": (lambda a: graphc.zeros_like(a) + a, lambda a: np.zeros_like(a) + a, True),
    "ones_like": (lambda a: graphc.ones_like(a, dtype=np.int32), lambda a: np.ones_like(
        a, dtype=np.int32), False),
    "np_var": (lambda a: np.var(a, axis=0), lambda a: np.var(a, axis=0), True),
    "np_argmax": (lambda a: np.argmax(a, axis=0), lambda a: np.argmax(a, axis=0), False),
    "np_flip": (lambda a: np.flip(a, 0), lambda a: np.flip(a, 0), True),
    "cumsum": (lambda a: graphc.cumsum(a, axis=1), lambda a: np.cumsum(a, axis=1), True),
    "cumsum_flat": (lambda a: graphc.cumsum(a), lambda a: np.cumsum(a), True),
    "np_cumsum": (lambda a: np.cumsum(a, axis=-2), lambda a: np.cumsum(a, axis=-2), True),
    "cumsum_method": (lambda a: (a * a).cumsum(0), lambda a: (a * a).cumsum(0), True),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("mode", ["eager", "numpy", "c"])
def test_matches_numpy(name, mode):
    fn, ref, _ = CASES[name]
    f = fn if mode == "eager" else graphc.compile(fn, backend=mode)
    got, want = np.asarray(f(X)), np.asarray(ref(X))
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c[2]))
def test_float32_stays_float32(name):
    fn, ref, _ = CASES[name]
    x = X.astype(np.float32)
    want = np.asarray(ref(x))
    if want.dtype != np.float32:        # the reference itself promotes (a float64 constant)
        return
    got = graphc.compile(fn)(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=3e-6, atol=1e-6)


SECOND_ORDER = {"var", "std", "gelu", "gelu_tanh", "cumsum_method"}     # the others are linear in x


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c[2]))
def test_derivatives(name):
    graphc.check_grads(CASES[name][0], (X,), order=2 if name in SECOND_ORDER else 1)


def test_arg_extrema_with_nan_and_ties_follow_numpy():
    for x in (np.array([1.0, np.nan, 3.0, np.nan]), np.array([2.0, 5.0, 5.0, -1.0, -1.0]),
              np.array([True, False, True])):
        for name in ("argmax", "argmin"):
            want = getattr(np, name)(x)
            assert graphc.compile(getattr(graphc, name))(x) == want
            assert getattr(graphc, name)(x) == want
    with pytest.raises(graphc.ShapeError):
        graphc.argmax(np.ones((0, 2)), axis=0)


EINSUMS = [("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("ijk->kji", [(2, 3, 4)]),
           ("ijk", [(2, 3, 4)]), ("ijk->", [(2, 3, 4)]), ("ij,ij->", [(3, 4), (3, 4)]),
           ("ij,ij->ij", [(3, 4), (3, 4)]), ("i,j->ij", [(5,), (3,)]),
           ("bij,bjk,k->bi", [(2, 3, 4), (2, 4, 5), (5,)]),
           ("...jk,...kl->...jl", [(2, 3, 4), (2, 4, 5)]), ("bij,bjk", [(2, 3, 4), (2, 4, 5)]),
           ("ij,kj->ik", [(3, 4), (2, 4)]), ("i->", [(5,)]), ("ij->j", [(3, 4)]),
           ("...k,k->...", [(2, 4, 5), (5,)]), ("ab,cd->abcd", [(2, 3), (2, 2)]),
           ("i j , j k", [(3, 4), (4, 2)]), ("...j,j...->...", [(2, 3), (3, 2)])]


@pytest.mark.parametrize("subscripts,shapes", EINSUMS)
def test_einsum(subscripts, shapes):
    ops = [rng.standard_normal(s) for s in shapes]
    want = np.einsum(subscripts, *ops)
    for f in (lambda *o: graphc.einsum(subscripts, *o),
              graphc.compile(lambda *o: graphc.einsum(subscripts, *o))):
        got = f(*ops)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    graphc.check_grads(lambda *o: graphc.einsum(subscripts, *o), ops)


def test_einsum_lowers_contractions_to_matmul():
    graph = graphc.trace(lambda a, b: graphc.einsum("bij,bjk->bik", a, b), np.ones((2, 3, 4)),
                         np.ones((2, 4, 5)))
    assert "matmul" in {n.op.name for n in graph.nodes}


def test_einsum_errors():
    d = np.ones((3, 3))
    for args in (("ii->i", d), ("ij,jk->ik", d, np.ones((2, 2))), ("ij->ik", d),
                 ("ij,jk", d), ("i", d), ("i1", d)):
        with pytest.raises(graphc.GraphcError):
            graphc.einsum(*args)


def _either(name):
    """graphc's function on traced values, numpy's on arrays (one lambda for both)."""
    return lambda a, *r, **k: getattr(np if isinstance(a, np.ndarray) else graphc, name)(
        a, *r, **k)


G = rng.standard_normal((4, 5, 3))
GATHERS = {
    "x[idx]": lambda a: a[np.array([3, 0, -1])],
    "x[:, idx2d]": lambda a: a[:, np.array([[1, 4], [0, 0]])],
    "x[rows, cols]": lambda a: a[np.array([0, 1, 3]), np.array([4, 2, 0])],
    "x[rows, :, cols]": lambda a: a[np.array([0, 1]), :, np.array([2, 0])],
    "x[1, idx]": lambda a: a[1, np.array([2, 3])],
    "x[..., list]": lambda a: a[..., [0, 2]],
    "take": lambda a: _either("take")(a, np.array([[1, 2]]), axis=1),
    "take_flat": lambda a: _either("take")(a, np.array([0, 59, -1])),
    "take_along_axis": lambda a: _either("take_along_axis")(
        a, np.array([[[0], [2], [1], [0], [1]]] * 4), axis=2),
    "take_along_axis_broadcast": lambda a: _either("take_along_axis")(
        a, np.array([[[2, 0]]]), axis=2),
}


@pytest.mark.parametrize("name", sorted(GATHERS))
def test_gathers_match_numpy_with_scatter_add_gradients(name):
    fn = GATHERS[name]
    want = fn(G)
    for backend in ("c", "numpy"):
        got = graphc.compile(fn, backend=backend)(G)
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    graphc.check_grads(fn, (G,))


def test_gather_indices_are_checked_at_run_time():
    x = np.arange(12.0).reshape(4, 3)
    for backend in ("c", "numpy"):
        f = graphc.compile(lambda a, i: a[i], backend=backend)
        np.testing.assert_array_equal(f(x, np.array([-1, 0])), x[[-1, 0]])
        with pytest.raises(graphc.GraphcError, match=r"7 at position 1 is outside \[-4, 4\)"):
            f(x, np.array([0, 7, 1]))
        with pytest.raises(graphc.GraphcError, match=r"-9 at position 1"):
            f(x, np.array([2, -9]))
    xn = np.array([1.0, np.nan, 3.0])             # a NaN elsewhere stays out of a gather
    np.testing.assert_array_equal(graphc.compile(lambda a: a[np.array([0, 2])])(xn), [1, 3])
    np.testing.assert_array_equal(graphc.grad(lambda a: a[np.array([0, 0, 2])].sum())(xn),
                                  [2.0, 0.0, 1.0])


CUMSUMS = [(np.arange(6).reshape(2, 3).astype(np.int32), 1), (np.array([True, True, False]), 0),
           (np.arange(6.0, dtype=np.float32).reshape(3, 2), None), (np.ones((0, 3)), 0),
           (np.ones((2, 0, 3)), 2), (np.ones((4, 0)), None), (np.ones((3, 1)), -1)]


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_cumsum_dtypes_and_zero_size_dims_follow_numpy(backend):
    for x, axis in CUMSUMS:
        want = np.cumsum(x, axis=axis)
        got = graphc.compile(lambda a, axis=axis: graphc.cumsum(a, axis), backend=backend)(x)
        assert got.dtype == want.dtype and got.shape == want.shape, (x.dtype, x.shape, axis)
        np.testing.assert_array_equal(got, want)
    x = np.arange(5)
    got = graphc.compile(lambda a: graphc.cumsum(a, dtype=np.float32), backend=backend)(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.cumsum(x, dtype=np.float32))


def test_cumsum_is_a_kernel_of_its_own_between_fused_loops():
    def f(a):
        e = graphc.exp(a) * 2.0
        return graphc.cumsum(e, axis=0) * e + graphc.cumsum(a * a, axis=1).sum(axis=1,
                                                                             keepdims=True)

    x = rng.standard_normal((3, 5))
    e = np.exp(x) * 2.0
    want = np.cumsum(e, axis=0) * e + np.cumsum(x * x, axis=1).sum(axis=1, keepdims=True)
    fc = graphc.compile(f)
    np.testing.assert_allclose(fc(x), want, rtol=1e-14)
    kernels = [line for line in fc.explain(x).splitlines() if line.strip().startswith("kernel")]
    scans = [line for line in kernels if ": scan " in line]
    assert len(scans) == 2 and not any("cumsum" in line for line in kernels if "fused" in line)
    graphc.check_grads(f, (x,), order=2)


def test_gathers_and_scatters_with_zero_sizes():
    x = rng.standard_normal((4, 3))
    for backend in ("c", "numpy"):
        f = graphc.compile(lambda a, i: a[i], backend=backend)
        assert f(x, np.zeros(0, np.int64)).shape == (0, 3)
        assert f(np.ones((0, 3)), np.zeros(0, np.int64)).shape == (0, 3)
        with pytest.raises(graphc.GraphcError, match=r"0 at position 0 is outside \[0, 0\)"):
            f(np.ones((0, 3)), np.array([0]))
        g = graphc.compile(graphc.grad(lambda a, i: (a[i] ** 2).sum()), backend=backend)
        np.testing.assert_array_equal(g(x, np.zeros(0, np.int64)), np.zeros_like(x))


def test_gather_and_scatter_run_in_tape_mode(monkeypatch):
    monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", "0")

    def loss(table, idx, w):
        rows = table[idx]
        cols = np.array([[2], [0], [1], [1], [0], [2]])
        return (graphc.tanh(rows) * w).sum() + (graphc.take_along_axis(table, cols, 1) ** 2).sum()

    table = rng.standard_normal((6, 3))
    idx, w = np.array([5, 0, 5, -1, 2]), rng.standard_normal((5, 3))
    f = graphc.compile(graphc.value_and_grad(loss))
    assert f.stats(table, idx, w)["tape_rows"] > 0
    want = graphc.compile(graphc.value_and_grad(loss), backend="numpy")(table, idx, w)
    for got, ref in zip(f(table, idx, w), want):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)   # summation order
    with pytest.raises(graphc.GraphcError, match=r"index for axis 0 7 at position 2"):
        f(table, np.array([0, 1, 7, 2, 3]), w)
    graphc.check_grads(loss, (table, idx, w), argnums=(0, 2))


def test_scatter_add_sums_duplicates_in_numpys_order():
    r = np.random.default_rng(5)
    table = r.standard_normal((7, 3)).astype(np.float32)
    idx, w = r.integers(0, 7, 500), r.standard_normal((500, 3)).astype(np.float32)
    want = np.zeros_like(table)
    np.add.at(want, idx, w)                 # sequential float32 sums in row-major order
    f = graphc.grad(lambda t, w, i: (t[i] * w).sum())
    for backend in ("c", "numpy"):
        got = graphc.compile(f, backend=backend)(table, w, idx)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
