"""Issue 18: the review's reproducers, each in the three modes (numpy backend, straight-line C,
tape), plus the other members of each bug's class found while fixing it."""

import dataclasses

import numpy as np
import pytest

import graphc

MODES = ["numpy", "c", "tape"]


@pytest.fixture(params=MODES, autouse=True)
def mode(request, monkeypatch):
    """Every path (compile, and the direct grad/vjp/jvp/check_grads calls) runs in the mode."""
    monkeypatch.setenv("GRAPHC_BACKEND", "numpy" if request.param == "numpy" else "c")
    if request.param == "tape":
        monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", "0")
    return request.param


# ---- 1. transformations called directly see the values of the moment ----

def test_vjp_and_jvp_read_captured_values_at_each_call():
    w = np.array([1.0, 1.0])
    x = np.array([1.0, 2.0])

    def fn(x):
        return x * w

    graphc.vjp(fn, x)
    w = np.array([5.0, 5.0])
    out, vjp_fn = graphc.vjp(fn, x)
    np.testing.assert_array_equal(out, [5.0, 10.0])
    np.testing.assert_array_equal(vjp_fn(np.ones(2))[0], [5.0, 5.0])
    np.testing.assert_array_equal(graphc.jvp(fn, (x,), (np.ones(2),))[1], [5.0, 5.0])
    w = np.array([-1.0, 2.0])
    np.testing.assert_array_equal(graphc.jvp(fn, (x,), (np.ones(2),))[0], [-1.0, 4.0])


def test_vjp_fn_keeps_the_values_of_the_vjp_call():
    scale = 2.0
    _, vjp_fn = graphc.vjp(lambda x: x * scale, np.ones(3))
    scale = 100.0
    np.testing.assert_array_equal(vjp_fn(np.ones(3))[0], 2.0)


def test_a_held_transformation_reads_globals_at_each_call():
    state = {"w": 3.0}
    g = graphc.grad(lambda x: (x * state["w"]).sum())
    x = np.ones(2)
    np.testing.assert_array_equal(g(x), 3.0)
    state["w"] = -7.0
    np.testing.assert_array_equal(g(x), -7.0)
    j = graphc.jacobian(lambda x: x * state["w"])
    state["w"] = 0.5
    np.testing.assert_array_equal(j(x), 0.5 * np.eye(2))
    h = graphc.hessian(lambda x: (x ** 3).sum() * state["w"])
    state["w"] = 2.0
    np.testing.assert_allclose(h(x), 12.0 * np.eye(2))
    vg = graphc.value_and_grad(lambda x: (x * state["w"]).sum())
    state["w"] = 4.0
    value, grad = vg(x)
    assert value == 8.0
    np.testing.assert_array_equal(grad, 4.0)


def test_check_grads_sees_the_current_function():
    state = {"p": 2}
    f = lambda x: (x ** state["p"]).sum()        # noqa: E731
    graphc.check_grads(f, (np.array([0.5, 1.5]),))
    state["p"] = 3
    graphc.check_grads(f, (np.array([0.5, 1.5]),), order=2)


def test_retracing_reuses_the_built_code():
    from graphc import compiler
    f = lambda x: graphc.tanh(x) * 3.0       # noqa: E731
    x = np.linspace(-1, 1, 5)
    graphc.grad(lambda x: f(x).sum())(x)
    before = len(compiler._RUNNERS)
    for _ in range(3):
        graphc.grad(lambda x: f(x).sum())(x)
    assert len(compiler._RUNNERS) == before


# ---- 2. & | ^ ~ are bitwise on integers, logical on bools, refused on floats ----

INTS = np.array([1, 2, 3, -4, 0, 7])


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_bitwise_operators_on_integers(dtype):
    x = INTS.astype(dtype)
    y = np.array([3, 6, -1, 5, 9, 2], dtype)
    cases = [lambda a, b: a & 1, lambda a, b: a | b, lambda a, b: a ^ b, lambda a, b: ~a,
             lambda a, b: 6 & a, lambda a, b: (a & b) | (~b ^ 5),
             lambda a, b: np.bitwise_and(a, b), lambda a, b: np.invert(a)]
    for fn in cases:
        got, want = graphc.compile(fn)(x, y), fn(x, y)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert graphc.compile(lambda a: a & 1)(INTS)[0] == 1


def test_bitwise_operators_on_bools_are_logical():
    p = np.array([True, False, True, False])
    q = np.array([True, True, False, False])
    for fn in (lambda a, b: a & b, lambda a, b: a | b, lambda a, b: a ^ b, lambda a, b: ~a,
               lambda a, b: a & True, lambda a, b: (a | b) & ~(a & b)):
        got, want = graphc.compile(fn)(p, q), fn(p, q)
        assert got.dtype == np.bool_
        np.testing.assert_array_equal(got, want)
    mixed = graphc.compile(lambda a, n: a & n)(p, INTS[:4])
    np.testing.assert_array_equal(mixed, p & INTS[:4])
    assert mixed.dtype == (p & INTS[:4]).dtype


def test_bitwise_operators_on_floats_are_refused():
    for fn in (lambda a: a & 1, lambda a: a | a, lambda a: ~a, lambda a: a ^ 1.5):
        with pytest.raises(graphc.DTypeError):
            graphc.compile(fn)(np.ones(3))


def test_masks_still_combine():
    x = np.linspace(-2, 2, 9)
    fn = lambda a: graphc.where((a > -1) & ~(a > 1) | (a == 2), a, 0.0)     # noqa: E731
    np.testing.assert_array_equal(graphc.compile(fn)(x), fn(x))


def test_other_operators_follow_numpy_dtypes():
    b = np.array([True, False])
    with pytest.raises(graphc.DTypeError):      # numpy: int8, which graphc does not have
        graphc.compile(lambda a: a ** a)(b)
    with pytest.raises(graphc.DTypeError):      # numpy refuses unary + on bools
        graphc.compile(lambda a: +a)(b)
    np.testing.assert_array_equal(graphc.compile(lambda a: +a)(INTS), INTS)


# ---- 3. derivatives of x**n are exact at 0 ----

def test_derivative_of_x_to_the_zero_at_zero():
    np.testing.assert_equal(graphc.grad(lambda x: sum(x ** k for k in range(4)))(0.0), 1.0)
    d = lambda f: graphc.grad(f)         # noqa: E731
    assert d(d(d(d(lambda x: x ** 3))))(0.0) == 0.0
    assert d(d(d(lambda x: x ** 3)))(0.0) == 6.0
    assert d(lambda x: x ** 0)(0.0) == 0.0
    assert d(lambda x: x ** 1)(0.0) == 1.0
    assert d(d(lambda x: x ** 5))(0.0) == 0.0


def test_forward_mode_derivative_of_powers_at_zero():
    for k in range(5):
        _, t = graphc.jvp(lambda x, k=k: x ** k, (np.zeros(3),), (np.ones(3),))
        np.testing.assert_array_equal(t, 1.0 if k == 1 else 0.0)
    fwd = graphc.jacobian(lambda v: graphc.stack([v[0] ** 0, v[0] ** 3, v[1] ** 2]))
    np.testing.assert_array_equal(fwd(np.zeros(2)), np.zeros((3, 2)))


def test_traced_exponent_zero_at_base_zero():
    # d/da a**b at a = 0, b = 0 is 0 (as torch); at b = 1 it is 1; b = 2 gives 0
    a = np.zeros(3)
    b = np.array([0.0, 1.0, 2.0])
    da, db = graphc.grad(lambda a, b: (a ** b).sum(), argnums=(0, 1))(a, b)
    np.testing.assert_array_equal(da, [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(db, [0.0, 0.0, 0.0])


def test_power_values_and_derivatives_elsewhere_are_unchanged():
    x = np.array([0.5, 1.5, 2.5])
    for k in (0, 1, 2, 3, -1, 0.5, 2.5, -2.0):
        np.testing.assert_allclose(graphc.compile(lambda x, k=k: x ** k)(x), x ** k,
                                   rtol=1e-15)
        graphc.check_grads(lambda x, k=k: x ** k, (x,), order=2)
    assert graphc.compile(lambda x: x ** 0)(np.array([np.nan, np.inf]))[0] == 1.0


# ---- 4. static arguments are keyed by type and bits ----

def test_static_numpy_float_is_not_a_python_float():
    f = graphc.compile(lambda x, s: x * s, static_argnums=1)
    x32 = np.ones(2, np.float32)
    assert f(x32, 2.0).dtype == np.float32
    assert f(x32, np.float64(2.0)).dtype == np.float64       # numpy: a strong float64
    assert f(x32, np.float32(2.0)).dtype == np.float32


def test_static_nan_is_cached_once():
    traces = []

    def f(x, s):
        traces.append(s)
        return x + s

    cf = graphc.compile(f, static_argnums=1)
    for _ in range(20):
        out = cf(np.ones(2), float("nan"))
    assert np.isnan(out).all()
    assert len(traces) == 1
    cf(np.ones(2), (float("nan"), 1.0))
    cf(np.ones(2), (float("nan"), 1.0))
    assert len(traces) == 2


def test_static_argnums_out_of_range_is_an_error():
    with pytest.raises(graphc.GraphcError, match="static_argnums"):
        graphc.compile(lambda a: a, static_argnums=3)(np.ones(2))


# ---- 5. any callable works, hashable or not ----

@dataclasses.dataclass
class Scale:
    w: float = 2.0

    def __call__(self, x):
        return x * self.w


def test_unhashable_callables():
    m = Scale()
    with pytest.raises(TypeError):
        hash(m)
    out, vjp_fn = graphc.vjp(m, np.ones(2))
    np.testing.assert_array_equal(vjp_fn(np.ones(2))[0], 2.0)
    np.testing.assert_array_equal(graphc.jvp(m, (np.ones(2),), (np.ones(2),))[1], 2.0)
    graphc.check_grads(m, (np.ones(2),))
    np.testing.assert_array_equal(graphc.grad(lambda x: m(x).sum())(np.ones(2)), 2.0)


# ---- 6. deep pytrees ----

def _nest(x, depth):
    for _ in range(depth):
        x = (x,)
    return x


def _unnest(t, depth):
    for _ in range(depth):
        (t,) = t
    return t


def test_deep_pytrees_in_and_out():
    out = graphc.compile(lambda x: _nest(x * 2, 300))(np.ones(2))
    np.testing.assert_array_equal(_unnest(out, 300), 2.0)
    deep = _nest(np.full(2, 3.0), 2000)
    np.testing.assert_array_equal(graphc.compile(lambda t: _unnest(t, 2000) + 1)(deep), 4.0)
    g = graphc.grad(lambda t: (_unnest(t, 1000) ** 2).sum())(_nest(np.ones(2), 1000))
    np.testing.assert_array_equal(_unnest(g, 1000), 2.0)


def test_pytree_round_trip():
    from graphc import pytree
    trees = [1.0, (), [], {}, None, (1, [2, {"a": 3, "b": (4, None)}], ()),
             {"z": [1, 2], "a": {"k": ()}}, [[[]], [()]]]
    for tree in trees:
        leaves, td = pytree.flatten(tree)
        assert pytree.unflatten(td, leaves) == tree
        assert pytree.unflattener(td)(leaves) == tree
        assert td == pytree.flatten(tree)[1] and hash(td) == hash(pytree.flatten(tree)[1])
    assert pytree.describe(pytree.flatten((1, [2], {"a": None}))[1]) == "(*, [*], {'a': None})"


# ---- 7. smaller ones ----

def test_broadcast_to_takes_an_int_shape():
    for shape in (5, np.int64(5), [5], (np.int32(5),)):
        np.testing.assert_array_equal(graphc.broadcast_to(np.ones(1), shape), np.ones(5))
        out = graphc.compile(lambda x, s=shape: graphc.broadcast_to(x, s))(np.ones(1))
        np.testing.assert_array_equal(out, np.ones(5))
    for bad in ((2.5,), "ab", (1, -1)):
        with pytest.raises(graphc.ShapeError):
            graphc.broadcast_to(np.ones(1), bad)


def test_duplicate_argnums_are_refused_everywhere():
    f = lambda a, b: (a * b).sum()     # noqa: E731
    x = np.ones(2)
    for transform in (graphc.grad, graphc.value_and_grad, graphc.jacobian, graphc.hessian):
        with pytest.raises(graphc.GraphcError, match="twice"):
            transform(f, argnums=(0, 0))(x, x)
        with pytest.raises(graphc.GraphcError, match="twice"):
            graphc.compile(transform(f, argnums=(1, -1)))(x, x)
        with pytest.raises(graphc.GraphcError, match="twice"):
            graphc.compile(lambda a, b, t=transform: t(f, argnums=(0, 0))(a, b))(x, x)


def test_bad_arguments_to_ops_are_graphc_errors():
    x = np.ones((2, 3))
    calls = [lambda: graphc.sum(x, axis="a"), lambda: graphc.sum(x, axis=1.5),
             lambda: graphc.transpose(x, "ab"), lambda: graphc.exp([1, [2, 3]]),
             lambda: graphc.stack(5), lambda: graphc.concatenate(x),
             lambda: graphc.where(x > 0), lambda: graphc.logsumexp(x, axis="a"),
             lambda: graphc.one_hot(np.array([0, 1]), 2.5),
             lambda: graphc.expand_dims(x, 0.5), lambda: graphc.squeeze(x, "a")]
    for call in calls:
        with pytest.raises(graphc.GraphcError):
            call()
    for call in calls:
        with pytest.raises(graphc.GraphcError):
            graphc.compile(lambda a, call=call: call() + a)(1.0)
