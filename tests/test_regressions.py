"""Bugs found by review, each pinned on both backends (and the tape lowering where C)."""

import numpy as np
import pytest

import graphc

MODES = ["numpy", "c", "tape"]


@pytest.fixture(params=MODES)
def compile_(request, monkeypatch):
    if request.param == "tape":
        monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", "0")
    backend = "numpy" if request.param == "numpy" else "c"
    return lambda fn, **kw: graphc.compile(fn, backend=backend, **kw)


def test_bool_arithmetic_follows_numpy(compile_):
    b = np.array([True, False, True])
    np.testing.assert_array_equal(compile_(lambda x: (x + x).astype(np.float64))(b),
                                  (b + b).astype(np.float64))
    assert compile_(lambda x: (x + x).sum())(b) == (b + b).sum()
    np.testing.assert_array_equal(compile_(lambda x, y: x * y)(b, ~b), b * ~b)
    for fn in (lambda x: -x, lambda x: x - x):
        with pytest.raises(graphc.DTypeError):
            compile_(fn)(b)


def test_python_int_that_does_not_fit_is_an_error(compile_):
    x = np.array([1, 2, 3], np.int32)
    for big in (2**40, 3_000_000_000):
        with pytest.raises(graphc.DTypeError):
            compile_(lambda x, big=big: x + big)(x)
    with pytest.raises(graphc.DTypeError):
        compile_(lambda x, k: x * k)(x, 2**65)


def test_relu_keeps_nan(compile_):
    x = np.array([1.0, np.nan, -1.0, 0.0])
    np.testing.assert_array_equal(compile_(graphc.relu)(x), np.maximum(x, 0))


def test_logsumexp_with_infinities(compile_):
    f = compile_(lambda x: graphc.logsumexp(x, axis=-1))
    np.testing.assert_array_equal(f(np.array([np.inf, 1.0, 2.0])), np.inf)
    np.testing.assert_array_equal(f(np.array([-np.inf, -np.inf])), -np.inf)
    np.testing.assert_allclose(f(np.array([1000.0, 1000.0])), 1000 + np.log(2), rtol=1e-15)


def test_softmax_and_logsumexp_over_an_empty_axis(compile_):
    x = np.ones((3, 0))
    assert compile_(lambda x: graphc.softmax(x, axis=-1))(x).shape == (3, 0)
    np.testing.assert_array_equal(compile_(lambda x: graphc.logsumexp(x, axis=-1))(x),
                                  np.full(3, -np.inf))


def test_bool_index_and_bool_labels_are_refused(compile_):
    with pytest.raises(graphc.GraphcError):
        compile_(lambda x: x[True])(np.ones((2, 3)))
    with pytest.raises(graphc.DTypeError):
        compile_(lambda labels: graphc.one_hot(labels, 3))(np.array([True, False]))


def test_empty_tuples_in_outputs(compile_):
    assert compile_(lambda x: ())(np.ones(2)) == ()
    out, empty = compile_(lambda x: (x * 2, ()))(np.ones(2))
    np.testing.assert_array_equal(out, 2.0)
    assert empty == ()
    (value, aux), g = graphc.value_and_grad(lambda x: ((x * x).sum(), ()), has_aux=True)(
        np.ones(2))
    assert aux == () and value == 2.0


def test_power_dtypes_follow_numpy(compile_):
    i = np.array([1, 2, 3], np.int32)
    f32 = np.array([1.5, 2.0], np.float32)
    cases = [(lambda x: x ** 2.0, i), (lambda x: x ** 3, i), (lambda x: x ** 2, i),
             (lambda x: x ** np.float64(2), f32), (lambda x: x ** 2, f32)]
    for fn, x in cases:
        got, want = compile_(fn)(x), fn(x)
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(graphc.DTypeError):
        compile_(lambda x: x ** -1)(i)


def test_static_and_keyword_arguments(compile_):
    with pytest.raises(graphc.GraphcError):
        compile_(lambda x, n: x * len(n), static_argnums=1)(np.ones(2), [1, 2])
    f = compile_(lambda x, n: x * n, static_argnums=-1)
    np.testing.assert_array_equal(f(np.ones(2), 3), 3.0)
    g = compile_(lambda x, y=2.0, z=1.0: x * y + z)
    np.testing.assert_array_equal(g(np.ones(2), y=5.0), 6.0)
    np.testing.assert_array_equal(g(np.ones(2), z=0.5, y=1.0), 1.5)


def test_dict_with_unorderable_keys_works(compile_):
    # dicts keep insertion order, so keys need not be sortable
    out = compile_(lambda d: {"s": d[1] + d["a"], 0: d[1]})({1: np.ones(2), "a": np.ones(2)})
    assert list(out) == ["s", 0]
    np.testing.assert_array_equal(out["s"], 2.0)


def test_static_metadata_through_numpy_functions(compile_):
    def f(x):
        assert np.shape(x) == (2, 3) and np.ndim(x) == 2 and np.size(x) == 6
        return np.zeros_like(x) + np.ones_like(x) * x
    np.testing.assert_array_equal(compile_(f)(np.full((2, 3), 4.0)), 4.0)
    with pytest.raises(graphc.TracerError, match="np.linalg.norm"):
        compile_(lambda x: np.linalg.norm(x))(np.ones(3))


def test_gcc_avx512_miscompile_pattern_gives_right_gradients(compile_):
    """gcc 12.2 at -O3 -march=native (512-bit vectors) got this gradient wrong."""
    x = np.array([[0.9], [0.2], [0.5]])

    def loss(x):
        a = graphc.broadcast_to(graphc.reshape(x, (1, 1, 3, 1)), (2, 1, 3, 1)) * 1.5
        o1 = graphc.concatenate([a, a * 0.3], axis=2)
        return graphc.sum(graphc.tanh(o1) * 0.3)

    got = compile_(graphc.grad(loss))(x)
    a = np.broadcast_to(x.reshape(1, 1, 3, 1), (2, 1, 3, 1)) * 1.5
    d = lambda v: 0.3 * (1 - np.tanh(v) ** 2)        # noqa: E731
    want = 1.5 * (d(a) + 0.3 * d(a * 0.3)).sum(axis=(0, 1))
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_the_flags_graphc_builds_with_pass_the_miscompile_self_test():
    from graphc.build import _build_flags, _compiler_argv, _computes_correctly
    cc = tuple(_compiler_argv())
    flags = [f for f in _build_flags(cc) if f not in ("-shared", "-fPIC")]
    assert _computes_correctly(cc, flags)


def test_static_values_that_compare_equal_still_trace_separately(compile_):
    traces = []

    def f(x, n):
        traces.append(n)
        return x * n

    cf = compile_(f, static_argnums=1)
    xi = np.array([1, 2, 3])
    assert cf(xi, 2).dtype == np.int64 and cf(xi, 2.0).dtype == np.float64
    cf(xi, True)
    cf(xi, 0.0)
    cf(xi, -0.0)
    cf(xi, 2)
    assert len(traces) == 5


def test_vjp_keeps_the_primal_values_of_the_call(compile_):
    x = np.array([1.0, 2.0, 3.0])
    out, vjp_fn = graphc.vjp(lambda a: graphc.sum(a * a), x)
    x *= 10
    (ct,) = vjp_fn(1.0)
    np.testing.assert_array_equal(ct, [2.0, 4.0, 6.0])
    assert out == 14.0


def test_jvp_tangent_dtypes_are_checked():
    x = np.ones(2)
    with pytest.raises(graphc.DTypeError):
        graphc.jvp(lambda a: a * 2, (x,), (np.ones(2, np.float32),))
    with pytest.raises(graphc.DTypeError):
        graphc.jvp(lambda n: n * 2, (np.array([1, 2]),), (np.array([0.5, 0.5]),))
    _, t = graphc.jvp(lambda a: a * 2, (x,), (np.full(2, 0.5),))
    np.testing.assert_array_equal(t, 1.0)


def test_bad_tape_threshold_is_a_graphc_error(monkeypatch):
    monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", "abc")
    with pytest.raises(graphc.GraphcError):
        graphc.compile(lambda x: x * 3.25 + 0.125, backend="c")(np.ones(7))


def test_vjp_of_a_primal_the_output_ignores_is_zero(compile_):
    def f(a, b, n):
        return a * 2.0

    out, vjp_fn = graphc.vjp(f, np.ones(2), np.ones(3, np.float32), np.array([1, 2]))
    ca, cb, cn = vjp_fn(np.ones(2))
    np.testing.assert_array_equal(ca, 2.0)
    assert cb.dtype == np.float32 and cb.shape == (3,) and not cb.any()
    assert cn.dtype == np.array([1, 2]).dtype and not cn.any()


# ---- found by the differential fuzzer (tests/test_fuzz.py) ----

def test_primitives_reject_mixed_dtypes_and_bool_arithmetic():
    """Primitive infer rules hold what the wrappers guarantee (equal dtypes; no numpy-refused
    arithmetic on bools), so the IR verifier and the fuzzer see the same contract numpy has."""
    from graphc.ops import OPS

    def apply(op, *dts):
        def f(x):
            return OPS[op](*[OPS["cast"](x, arg=np.dtype(d)) for d in dts])
        return graphc.trace(f, np.ones(3))

    for op in ("neg", "sign"):
        with pytest.raises(graphc.DTypeError, match="numeric"):
            apply(op, bool)
    for op in ("sub", "pow"):
        with pytest.raises(graphc.DTypeError, match="numeric"):
            apply(op, bool, bool)
    with pytest.raises(graphc.DTypeError, match="float32 and float64"):
        apply("add", np.float32, np.float64)


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_bool_sum_of_masks_stays_a_bool(backend):
    from graphc.ops import OPS

    def f(x):
        m = OPS["gt"](x, -x)
        both = OPS["add"](m, m)           # numpy: logical or, True + True is True
        return OPS["cast"](both, arg=np.dtype(np.float64)) * 3.0

    x = np.array([-1.0, 0.5, 2.0])
    np.testing.assert_array_equal(graphc.compile(f, backend=backend)(x), [0.0, 3.0, 3.0])
