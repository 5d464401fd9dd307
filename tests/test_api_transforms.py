"""The transformations of API.md, their composition and semantics, and every op of API.md
(forward inside ``graphc.compile`` against numpy, gradient against central differences).

Only the public contract (/work/shared/API.md) is exercised. The backend is never passed except in
the tests that compare backends: the suite runs once per GRAPHC_BACKEND.
"""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
from helpers import (
    ALL_OPS,
    COMPOSITE,
    ELEMENTWISE,
    EXACT,
    F32,
    FD,
    FWD64,
    LINALG,
    NP,
    NUMERICS,
    REDUCTIONS,
    close,
    loss_weights,
    numeric_grad,
    numeric_jacobian,
    run_threads,
    sigmoid,
    softmax,
)

import graphc

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _bind(op, m):
    """op.fn bound to namespace m, as a function with an explicit positional arity."""
    n = op.n_inputs
    if n == 1:
        return lambda a: op.fn(m, a)
    if n == 2:
        return lambda a, b: op.fn(m, a, b)
    if n == 3:
        return lambda a, b, c: op.fn(m, a, b, c)
    raise AssertionError(n)


def _bind_loss(op, m, w):
    n = op.n_inputs
    s = graphc.sum if m is graphc else np.sum
    if n == 1:
        return lambda a: s(op.fn(m, a) * w)
    if n == 2:
        return lambda a, b: s(op.fn(m, a, b) * w)
    if n == 3:
        return lambda a, b, c: s(op.fn(m, a, b, c) * w)
    raise AssertionError(n)


# --------------------------------------------------------------------------------------------
# every op of API.md: forward in compile, gradient vs central differences
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ALL_OPS, ids=lambda o: o.id)
def test_op_forward_matches_numpy(op):
    xs = op.inputs()
    ref = np.asarray(op.fn(NP, *xs))
    out = graphc.compile(_bind(op, graphc))(*xs)
    assert isinstance(out, (np.ndarray, np.generic)), type(out)
    out = np.asarray(out)
    assert out.shape == ref.shape
    if ref.dtype == np.bool_:
        assert out.dtype == np.bool_
        np.testing.assert_array_equal(out, ref)
    else:
        assert out.dtype == np.float64
        close(out, ref, **FWD64)


GRAD_OPS = [op for op in ALL_OPS if op.grad]


@pytest.mark.parametrize("op", GRAD_OPS, ids=lambda o: o.id)
def test_op_gradient_matches_central_differences(op):
    xs = op.inputs()
    w = loss_weights(np.shape(op.fn(NP, *xs)))
    loss_np = _bind_loss(op, NP, w)
    argnums = op.float_argnums
    value, grads = graphc.value_and_grad(_bind_loss(op, graphc, w), argnums=argnums)(*xs)
    close(value, loss_np(*xs), **FWD64)
    assert isinstance(grads, tuple) and len(grads) == len(argnums)
    for i, g in zip(argnums, grads):
        g = np.asarray(g)
        assert g.shape == np.shape(xs[i]), (i, g.shape)
        assert g.dtype == np.float64
        close(g, numeric_grad(loss_np, xs, i), **FD)


F32_OPS = (ELEMENTWISE + LINALG + NUMERICS + COMPOSITE
           + [r for r in REDUCTIONS if r.id.endswith("default") or "axis=-1" in r.id])


@pytest.mark.parametrize("op", F32_OPS, ids=lambda o: o.id)
def test_op_float32_forward_and_gradient(op):
    """float32 in -> float32 out (values and gradients), close to the float64 reference."""
    xs = [x.astype(np.float32) for x in op.inputs()]
    xs64 = [x.astype(np.float64) for x in xs]
    ref = np.asarray(op.fn(NP, *xs64))
    w = loss_weights(ref.shape).astype(np.float32)
    n = op.n_inputs

    def body(*a):
        out = op.fn(graphc, *a)
        return graphc.sum(out * w), out

    fn = {1: lambda a: body(a), 2: lambda a, b: body(a, b), 3: lambda a, b, c: body(a, b, c)}[n]
    (v, out), grads = graphc.value_and_grad(fn, argnums=tuple(range(n)), has_aux=True)(*xs)
    assert np.asarray(out).dtype == np.float32 and np.asarray(v).dtype == np.float32
    close(out, ref, rtol=1e-5, atol=1e-5)
    loss_np = _bind_loss(op, NP, w.astype(np.float64))
    close(v, loss_np(*xs64), rtol=1e-5, atol=1e-4)
    for i, g in enumerate(grads):
        assert g.dtype == np.float32 and g.shape == xs[i].shape
        close(g, numeric_grad(loss_np, xs64, i), rtol=1e-4, atol=1e-4)


METHODS = [
    ("sum", lambda x: x.sum(), lambda x: x.sum()),
    ("sum_axis_keepdims", lambda x: x.sum(axis=0, keepdims=True),
     lambda x: x.sum(axis=0, keepdims=True)),
    ("mean", lambda x: x.mean(), lambda x: x.mean()),
    ("mean_axis", lambda x: x.mean(axis=-1), lambda x: x.mean(axis=-1)),
    ("max", lambda x: x.max(), lambda x: x.max()),
    ("max_axis", lambda x: x.max(axis=1), lambda x: x.max(axis=1)),
    ("min", lambda x: x.min(), lambda x: x.min()),
    ("reshape_varargs", lambda x: x.reshape(4, 3), lambda x: x.reshape(4, 3)),
    ("reshape_tuple", lambda x: x.reshape((2, 6)), lambda x: x.reshape((2, 6))),
    ("transpose", lambda x: x.transpose(), lambda x: x.transpose()),
    ("exp", lambda x: x.exp(), lambda x: np.exp(x)),
    ("log", lambda x: (x * x + 0.5).log(), lambda x: np.log(x * x + 0.5)),
    ("chain", lambda x: (x.exp() * 2.0).sum(axis=1).reshape(3, 1).T,
     lambda x: (np.exp(x) * 2.0).sum(axis=1).reshape(3, 1).T),
]


@pytest.mark.parametrize("name,gfn,nfn", METHODS, ids=[m[0] for m in METHODS])
def test_methods_forward_and_gradient(name, gfn, nfn):
    rng = np.random.default_rng(11)
    # distinct values: no ties for max/min
    x = (rng.permutation(12).reshape(3, 4) - 6.0) * 0.1 + 0.01 * rng.uniform(size=(3, 4))
    ref = nfn(x)
    close(graphc.compile(gfn)(x), ref, **FWD64)
    w = loss_weights(np.shape(ref))
    g = graphc.grad(lambda x: graphc.sum(gfn(x) * w))(x)
    close(g, numeric_grad(lambda x: np.sum(nfn(x) * w), (x,)), **FD)


def test_shape_dtype_ndim_properties_inside_trace():
    seen = {}

    def f(x):
        seen["shape"] = x.shape
        seen["ndim"] = x.ndim
        seen["dtype"] = x.dtype
        return x.reshape(x.shape[0] * x.shape[1]) * float(x.ndim)

    x = np.arange(6.0).reshape(2, 3)
    close(graphc.compile(f)(x), x.reshape(6) * 2.0, **EXACT)
    assert tuple(seen["shape"]) == (2, 3)
    assert all(isinstance(d, int) for d in seen["shape"])
    assert seen["ndim"] == 2
    assert np.dtype(str(seen["dtype"])) == np.float64


def test_properties_float32():
    seen = {}

    def f(x):
        seen["dtype"] = x.dtype
        return x * 2.0

    graphc.compile(f)(np.ones((2, 2), np.float32))
    assert np.dtype(str(seen["dtype"])) == np.float32


# --------------------------------------------------------------------------------------------
# numpy arrays meeting traced values
# --------------------------------------------------------------------------------------------

_A = np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.5]])

NP_MIX = [
    ("ndarray_mul_tracer", lambda x: _A * x, lambda x: _A * x),
    ("tracer_mul_ndarray", lambda x: x * _A, lambda x: x * _A),
    ("ndarray_add_tracer", lambda x: _A + x, lambda x: _A + x),
    ("ndarray_sub_tracer", lambda x: _A - x, lambda x: _A - x),
    ("ndarray_div_tracer", lambda x: _A / (x * x + 1.0), lambda x: _A / (x * x + 1.0)),
    ("ndarray_matmul_tracer", lambda x: _A.T @ x, lambda x: _A.T @ x),
    ("tracer_matmul_ndarray", lambda x: x @ _A.T, lambda x: x @ _A.T),
    ("ndarray_broadcast_mul", lambda x: _A[0] * x, lambda x: _A[0] * x),
]


@pytest.mark.parametrize("name,gfn,nfn", NP_MIX, ids=[m[0] for m in NP_MIX])
def test_numpy_array_operand_with_tracer(name, gfn, nfn):
    x = np.array([[0.3, -1.1, 2.0], [0.7, 1.3, -0.4]])
    ref = nfn(x)
    out = graphc.compile(gfn)(x)
    assert isinstance(out, np.ndarray)
    close(out, ref, **FWD64)
    w = loss_weights(ref.shape)
    g = graphc.grad(lambda x: graphc.sum(gfn(x) * w))(x)
    close(g, numeric_grad(lambda x: np.sum(nfn(x) * w), (x,)), **FD)
    assert np.any(np.asarray(g) != 0.0)  # the gradient flows through the numpy operand op


# --------------------------------------------------------------------------------------------
# one_hot, softmax family vs a stable numpy reference
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32])
def test_one_hot_traced_int_labels(label_dtype):
    labels = np.array([0, 3, 1, 4, 3], dtype=label_dtype)
    out = graphc.compile(lambda lab: graphc.one_hot(lab, 5))(labels)
    assert out.dtype == np.float32
    assert out.shape == (5, 5)
    np.testing.assert_array_equal(out, np.eye(5, dtype=np.float32)[labels])


def test_one_hot_dtype_float64_and_constant_labels():
    labels = np.array([2, 0, 1])
    out = graphc.compile(lambda x: graphc.one_hot(labels, 3, dtype=np.float64) * x)(
        np.full((3, 3), 2.0))
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, 2.0 * np.eye(3)[labels])


def test_one_hot_with_float_argument_in_same_call():
    labels = np.array([1, 0, 2, 1])
    z = np.random.default_rng(3).standard_normal((4, 3))

    def nll(z, labels):
        return -graphc.sum(graphc.one_hot(labels, 3, dtype=np.float64) * graphc.log_softmax(z))

    g = graphc.grad(nll)(z, labels)
    close(g, softmax(z) - np.eye(3)[labels], **FWD64)


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_axis_sums_to_one_and_stable(axis):
    z = np.array([[1000.0, 999.0, -1000.0], [0.5, -0.25, 3.0]])
    p = graphc.compile(lambda z: graphc.softmax(z, axis=axis))(z)
    assert np.all(np.isfinite(p))
    close(p, softmax(z, axis=axis), **FWD64)
    close(np.sum(p, axis=axis), np.ones(np.delete(z.shape, axis % 2)), **FWD64)


@pytest.mark.parametrize("axis", [-1, 0])
def test_log_softmax_axis_stable(axis):
    z = np.array([[1000.0, 0.0, -1000.0], [2.0, 1.0, 0.0]])
    out = graphc.compile(lambda z: graphc.log_softmax(z, axis=axis))(z)
    assert np.all(np.isfinite(out))
    close(out, NP.log_softmax(z, axis=axis), **FWD64)


@pytest.mark.parametrize("axis,keepdims", [(None, False), (None, True), (0, False), (1, True),
                                           (-1, False), ((0, 1), False)])
def test_logsumexp_axis_keepdims_stable(axis, keepdims):
    z = np.array([[1000.0, 1000.0, 999.0], [-1000.0, -1000.0, -1001.0]])
    out = graphc.compile(lambda z: graphc.logsumexp(z, axis=axis, keepdims=keepdims))(z)
    ref = NP.logsumexp(z, axis=axis, keepdims=keepdims)
    assert np.shape(out) == np.shape(ref)
    assert np.all(np.isfinite(out))
    close(out, ref, **FWD64)


# --------------------------------------------------------------------------------------------
# grad / value_and_grad
# --------------------------------------------------------------------------------------------


def _f3(x, y, z):
    return graphc.sum(x * y) + graphc.sum(graphc.sin(y) * z) + graphc.sum(z * z * x)


def _f3_np(x, y, z):
    return np.sum(x * y) + np.sum(np.sin(y) * z) + np.sum(z * z * x)


_X3 = (np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.25, -0.75]), np.array([-0.3, 0.8, 1.1]))


def test_grad_default_argnum_is_zero():
    g = graphc.grad(_f3)(*_X3)
    assert isinstance(g, np.ndarray) and g.shape == (3,)
    close(g, _X3[1] + _X3[2] ** 2, **FWD64)


@pytest.mark.parametrize("argnum", [0, 1, 2])
def test_grad_argnums_int(argnum):
    g = graphc.grad(_f3, argnums=argnum)(*_X3)
    assert isinstance(g, np.ndarray)
    close(g, numeric_grad(_f3_np, _X3, argnum), **FD)


@pytest.mark.parametrize("argnums", [(0,), (0, 2), (2, 0), (0, 1, 2), (1,)])
def test_grad_argnums_tuple(argnums):
    g = graphc.grad(_f3, argnums=argnums)(*_X3)
    assert isinstance(g, tuple) and len(g) == len(argnums)
    for i, gi in zip(argnums, g):
        close(gi, numeric_grad(_f3_np, _X3, i), **FD)


def test_value_and_grad():
    v, g = graphc.value_and_grad(_f3, argnums=(0, 1))(*_X3)
    close(v, _f3_np(*_X3), **FWD64)
    assert np.shape(v) == ()
    close(g[0], numeric_grad(_f3_np, _X3, 0), **FD)
    close(g[1], numeric_grad(_f3_np, _X3, 1), **FD)


def test_value_and_grad_default_argnum():
    v, g = graphc.value_and_grad(_f3)(*_X3)
    close(v, _f3_np(*_X3), **FWD64)
    assert isinstance(g, np.ndarray)
    close(g, _X3[1] + _X3[2] ** 2, **FWD64)


def test_value_and_grad_has_aux():
    def f(w, x):
        pred = x @ w
        loss = graphc.mean((pred - 1.0) ** 2)
        return loss, {"pred": pred, "norm": graphc.sum(w * w)}

    w = np.array([0.5, -0.25])
    x = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    (value, aux), g = graphc.value_and_grad(f, has_aux=True)(w, x)
    pred = x @ w
    close(value, np.mean((pred - 1.0) ** 2), **FWD64)
    assert isinstance(aux, dict) and set(aux) == {"pred", "norm"}
    close(aux["pred"], pred, **FWD64)
    close(aux["norm"], np.sum(w * w), **FWD64)
    close(g, 2.0 * x.T @ (pred - 1.0) / 3.0, **FWD64)


def test_value_and_grad_has_aux_argnums_tuple():
    def f(a, b):
        return graphc.sum(a * b), a + b

    a, b = np.array([1.0, 2.0]), np.array([3.0, -4.0])
    (v, aux), (ga, gb) = graphc.value_and_grad(f, argnums=(0, 1), has_aux=True)(a, b)
    close(v, -5.0, **EXACT)
    close(aux, a + b, **EXACT)
    close(ga, b, **EXACT)
    close(gb, a, **EXACT)


# --------------------------------------------------------------------------------------------
# vjp / jvp / jacobian / hessian
# --------------------------------------------------------------------------------------------


def _vecfn(x):
    return graphc.stack([x[0] * x[1], graphc.sin(x[2]) + x[0], graphc.exp(x[1]) * x[2],
                         x[0] ** 2])


def _vecfn_np(x):
    return np.stack([x[0] * x[1], np.sin(x[2]) + x[0], np.exp(x[1]) * x[2], x[0] ** 2])


_XV = np.array([0.7, -0.4, 1.3])


def test_vjp_single_primal_returns_tuple():
    out, vjp_fn = graphc.vjp(_vecfn, _XV)
    close(out, _vecfn_np(_XV), **FWD64)
    ct = np.array([1.0, -2.0, 0.5, 3.0])
    res = vjp_fn(ct)
    assert isinstance(res, tuple) and len(res) == 1
    close(res[0], ct @ numeric_jacobian(_vecfn_np, _XV), **FD)


def test_vjp_two_primals_and_reuse():
    def f(a, b):
        return graphc.matmul(a, b) + graphc.sin(a).sum()

    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    out, vjp_fn = graphc.vjp(f, a, b)
    close(out, a @ b + np.sin(a).sum(), **FWD64)
    for seed in (1, 2):
        ct = np.random.default_rng(seed).standard_normal((2, 4))
        ga, gb = vjp_fn(ct)
        assert ga.shape == a.shape and gb.shape == b.shape
        close(ga, ct @ b.T + ct.sum() * np.cos(a), **FWD64)
        close(gb, a.T @ ct, **FWD64)


def test_jvp_equals_jacobian_times_tangent():
    t = np.array([0.3, -1.0, 2.0])
    out, tout = graphc.jvp(_vecfn, (_XV,), (t,))
    close(out, _vecfn_np(_XV), **FWD64)
    close(tout, numeric_jacobian(_vecfn_np, _XV) @ t, **FD)


def test_jvp_two_primals():
    def f(a, b):
        return a * graphc.exp(b)

    a, b = np.array([1.0, 2.0]), np.array([0.5, -0.5])
    ta, tb = np.array([0.1, -0.2]), np.array([1.0, 3.0])
    out, tout = graphc.jvp(f, (a, b), (ta, tb))
    close(out, a * np.exp(b), **FWD64)
    close(tout, ta * np.exp(b) + a * np.exp(b) * tb, **FWD64)


def test_jacobian_vector_to_vector():
    jac = graphc.jacobian(_vecfn)(_XV)
    assert jac.shape == (4, 3)
    close(jac, numeric_jacobian(_vecfn_np, _XV), **FD)


def test_jacobian_matrix_to_scalar():
    x = np.array([[0.5, 1.0, -2.0], [1.5, 0.2, 0.3]])
    jac = graphc.jacobian(lambda x: graphc.sum(x ** 3))(x)
    assert jac.shape == (2, 3)
    close(jac, 3 * x ** 2, **FWD64)


def test_jacobian_scalar_to_vector():
    def f(t):
        return graphc.stack([graphc.sin(t), t * t, graphc.exp(t)])

    jac = graphc.jacobian(f)(np.array(0.6))
    assert jac.shape == (3,)
    close(jac, [np.cos(0.6), 1.2, np.exp(0.6)], **FWD64)


def test_jacobian_matrix_to_matrix():
    w = np.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]])

    def f(x):
        return graphc.tanh(x @ w)

    x = np.array([[0.1, 0.2, -0.3], [0.4, -0.5, 0.6]])
    jac = graphc.jacobian(f)(x)
    assert jac.shape == (2, 2, 2, 3)
    close(jac, numeric_jacobian(lambda x: np.tanh(x @ w), x), **FD)


def test_jacobian_argnums():
    def f(a, b):
        return a * b[0] + b[1]

    a, b = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0])
    ja = graphc.jacobian(f, argnums=0)(a, b)
    jb = graphc.jacobian(f, argnums=1)(a, b)
    assert ja.shape == (3, 3) and jb.shape == (3, 2)
    close(ja, 4.0 * np.eye(3), **EXACT)
    close(jb, np.stack([a, np.ones(3)], axis=1), **EXACT)


def test_hessian_vector_input():
    def f(x):
        return graphc.sum(x ** 3) + x[0] * x[1] * x[2]

    x = np.array([1.0, 2.0, -1.0])
    h = graphc.hessian(f)(x)
    assert h.shape == (3, 3)
    ref = np.diag(6 * x) + np.array([[0, x[2], x[1]], [x[2], 0, x[0]], [x[1], x[0], 0]])
    close(h, ref, **FWD64)
    close(h, h.T, **EXACT)


def test_hessian_matrix_input_shape():
    def f(x):
        return graphc.sum(graphc.sin(x) * x[0:1, :])

    x = np.array([[0.3, -0.7, 1.1], [0.2, 0.5, -1.4]])
    h = graphc.hessian(f)(x)
    assert h.shape == (2, 3, 2, 3)
    num = numeric_jacobian(
        lambda x: numeric_grad(lambda x: np.sum(np.sin(x) * x[0:1, :]), (x,), eps=1e-4), x,
        eps=1e-4)
    close(h, num, rtol=1e-5, atol=1e-6)
    close(h.reshape(6, 6), h.reshape(6, 6).T, rtol=1e-12, atol=1e-12)


def test_hessian_scalar_input():
    h = graphc.hessian(lambda t: t ** 4 + graphc.sin(t))(np.array(0.5))
    assert np.shape(h) == ()
    close(h, 12 * 0.25 - np.sin(0.5), **FWD64)


# --------------------------------------------------------------------------------------------
# composition
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("x", [0.0, 0.4, -1.3, 2.5])
def test_grad_of_grad_sin_is_minus_sin(x):
    d2 = graphc.grad(graphc.grad(graphc.sin))
    close(d2(x), -np.sin(x), **FWD64)


def test_third_derivative():
    d3 = graphc.grad(graphc.grad(graphc.grad(lambda x: x ** 5 + graphc.exp(2.0 * x))))
    for x in (0.3, -0.8):
        close(d3(x), 60 * x ** 2 + 8 * np.exp(2 * x), **FWD64)


def test_grad_of_grad_array_input():
    # d/dx sum(grad f) for f = sum(x^3): grad = 3x^2, d/dx sum(3x^2) = 6x
    def g(x):
        return graphc.sum(graphc.grad(lambda x: graphc.sum(x ** 3))(x))

    x = np.array([1.0, -2.0, 0.5])
    close(graphc.grad(g)(x), 6 * x, **FWD64)


def test_jacobian_of_grad_equals_hessian():
    def f(x):
        return graphc.sum(graphc.exp(x[:2]) * x[1:]) + graphc.sum(x ** 2) * x[0]

    x = np.array([0.2, -0.5, 0.9])
    h = graphc.hessian(f)(x)
    jg = graphc.jacobian(graphc.grad(f))(x)
    assert h.shape == jg.shape == (3, 3)
    close(jg, h, rtol=1e-12, atol=1e-12)
    num = numeric_jacobian(
        lambda x: numeric_grad(lambda x: np.sum(np.exp(x[:2]) * x[1:]) + np.sum(x ** 2) * x[0],
                               (x,), eps=1e-4), x, eps=1e-4)
    close(h, num, rtol=1e-5, atol=1e-6)


def test_grad_inside_compile():
    def loss(w, x):
        return graphc.sum(graphc.tanh(x @ w) ** 2)

    @graphc.compile
    def step(w, x):
        return w - 0.1 * graphc.grad(loss)(w, x)

    rng = np.random.default_rng(2)
    w, x = rng.standard_normal(3), rng.standard_normal((4, 3))
    t = np.tanh(x @ w)
    ref_grad = x.T @ (2 * t * (1 - t ** 2))
    close(step(w, x), w - 0.1 * ref_grad, **FWD64)


def test_value_and_grad_inside_compile():
    @graphc.compile
    def f(x):
        v, g = graphc.value_and_grad(lambda x: graphc.sum(graphc.exp(x)))(x)
        return v * 2.0, g + 1.0

    x = np.array([0.1, 0.2])
    v, g = f(x)
    close(v, 2 * np.exp(x).sum(), **FWD64)
    close(g, np.exp(x) + 1.0, **FWD64)


def test_compile_of_function_returning_pytree_of_gradients():
    def loss(p, x):
        h = graphc.relu(x @ p["w1"] + p["b1"])
        return graphc.mean((h @ p["w2"]) ** 2)

    grads_fn = graphc.compile(graphc.grad(loss))
    rng = np.random.default_rng(4)
    p = {"w1": rng.standard_normal((3, 4)), "b1": rng.standard_normal(4) + 0.05,
         "w2": rng.standard_normal(4)}
    x = rng.standard_normal((5, 3))
    g = grads_fn(p, x)
    assert isinstance(g, dict) and set(g) == set(p)

    def loss_np(w1, b1, w2):
        h = np.maximum(x @ w1 + b1, 0.0)
        return np.mean((h @ w2) ** 2)

    pre = x @ p["w1"] + p["b1"]
    assert np.min(np.abs(pre)) > 1e-3  # away from the relu kink
    args = (p["w1"], p["b1"], p["w2"])
    for k, i in (("w1", 0), ("b1", 1), ("w2", 2)):
        assert g[k].shape == p[k].shape
        close(g[k], numeric_grad(loss_np, args, i), **FD)


def test_compile_of_explicit_pytree_of_grads():
    @graphc.compile
    def f(a, b):
        ga, gb = graphc.grad(lambda a, b: graphc.sum(a * a * b), argnums=(0, 1))(a, b)
        return {"ga": ga, "pair": [gb, ga + gb]}

    a, b = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    out = f(a, b)
    assert isinstance(out, dict) and isinstance(out["pair"], list)
    close(out["ga"], 2 * a * b, **EXACT)
    close(out["pair"][0], a * a, **EXACT)
    close(out["pair"][1], 2 * a * b + a * a, **EXACT)


def test_jvp_of_grad_is_hessian_vector_product():
    def f(x):
        return graphc.sum(x ** 4) / 4.0 + x[0] * x[1]

    x, v = np.array([1.0, 2.0]), np.array([0.5, -1.0])
    _, hv = graphc.jvp(graphc.grad(f), (x,), (v,))
    h = np.diag(3 * x ** 2) + np.array([[0.0, 1.0], [1.0, 0.0]])
    close(hv, h @ v, **FWD64)


def test_grad_of_compiled_function():
    f = graphc.compile(lambda x: graphc.sum(graphc.sin(x) * x))
    x = np.array([0.3, 1.2])
    close(graphc.grad(f)(x), np.sin(x) + x * np.cos(x), **FWD64)


def test_vjp_of_jacobian_free_composition():
    # vjp of a function that itself calls grad
    def f(x):
        return graphc.grad(lambda y: graphc.sum(graphc.sin(y)))(x) * x

    x = np.array([0.5, -0.2, 1.0])
    out, vjp_fn = graphc.vjp(f, x)
    close(out, np.cos(x) * x, **FWD64)
    (g,) = vjp_fn(np.ones(3))
    close(g, np.cos(x) - x * np.sin(x), **FWD64)


def _cf(x):
    return graphc.stack([x[0] * x[1], graphc.sin(x[1])])


_CX = np.array([0.5, 1.2])

COMPOSITIONS = [
    ("compile(jacobian)", lambda: graphc.compile(graphc.jacobian(_cf))(_CX),
     [[1.2, 0.5], [0.0, np.cos(1.2)]]),
    ("compile(hessian)", lambda: graphc.compile(graphc.hessian(lambda x: graphc.sum(x ** 3)))(_CX),
     np.diag(6 * _CX)),
    ("jacobian(jacobian)", lambda: graphc.jacobian(graphc.jacobian(_cf))(_CX),
     [[[0.0, 1.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, -np.sin(1.2)]]]),
    ("grad(jvp)", lambda: graphc.grad(lambda x: graphc.jvp(
        lambda y: graphc.sum(y ** 3), (x,), (np.ones(2),))[1])(_CX), 6 * _CX),
    ("compile(vjp)", lambda: graphc.compile(lambda x: graphc.vjp(_cf, x)[1](np.ones(2))[0])(_CX),
     [1.2, 0.5 + np.cos(1.2)]),
    ("compile(jvp)", lambda: graphc.compile(lambda x: graphc.jvp(_cf, (x,), (np.ones(2),))[1])(
        _CX), [1.7, np.cos(1.2)]),
    ("jacobian(compile)", lambda: graphc.jacobian(graphc.compile(_cf))(_CX),
     [[1.2, 0.5], [0.0, np.cos(1.2)]]),
    ("hessian(compile)", lambda: graphc.hessian(graphc.compile(
        lambda x: graphc.sum(graphc.exp(x))))(_CX), np.diag(np.exp(_CX))),
    ("grad(value_and_grad[1])", lambda: graphc.grad(
        lambda x: graphc.sum(graphc.value_and_grad(lambda y: graphc.sum(y ** 4))(x)[1]))(_CX),
     12 * _CX ** 2),
]


@pytest.mark.parametrize("name,run,expected", COMPOSITIONS, ids=[c[0] for c in COMPOSITIONS])
def test_transformations_compose(name, run, expected):
    close(run(), expected, **FWD64)


def test_check_grads_of_grad():
    graphc.check_grads(graphc.grad(lambda x: graphc.sum(graphc.sin(x) * x)), (_CX,))


# --------------------------------------------------------------------------------------------
# compile: decorator, alias, backends, optimize
# --------------------------------------------------------------------------------------------


def test_compile_as_decorator():
    @graphc.compile
    def f(x, y):
        return graphc.exp(x) * y - x

    x, y = np.array([0.1, 0.5]), np.array([2.0, -1.0])
    close(f(x, y), np.exp(x) * y - x, **FWD64)


def test_jit_alias():
    @graphc.jit
    def f(x):
        return graphc.tanh(x) * 3.0

    x = np.array([0.25, -0.75])
    close(f(x), np.tanh(x) * 3.0, **FWD64)
    close(graphc.jit(lambda x: x @ x.T)(np.eye(2) * 2.0), 4.0 * np.eye(2), **EXACT)


def _backend_fn(x, w):
    h = graphc.tanh(x @ w)
    return graphc.sum(graphc.softmax(h, axis=-1) * h, axis=0), graphc.logsumexp(h)


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_explicit_backends_agree_with_numpy(backend):
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((5, 3)), rng.standard_normal((3, 4))
    h = np.tanh(x @ w)
    ref = (np.sum(softmax(h) * h, axis=0), NP.logsumexp(h))
    out = graphc.compile(_backend_fn, backend=backend)(x, w)
    close(out[0], ref[0], **FWD64)
    close(out[1], ref[1], **FWD64)


def test_default_backend_agrees_with_numpy_backend():
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal((5, 3)), rng.standard_normal((3, 4))
    a = graphc.compile(_backend_fn)(x, w)
    b = graphc.compile(_backend_fn, backend="numpy")(x, w)
    c = graphc.compile(_backend_fn, backend="c")(x, w)
    for u, v, z in zip(a, b, c):
        close(u, v, rtol=1e-12, atol=1e-14)
        close(z, v, rtol=1e-12, atol=1e-14)


def test_backends_agree_on_gradients_float32():
    def loss(w, x):
        return graphc.mean(graphc.sigmoid(x @ w) ** 2)

    rng = np.random.default_rng(10)
    w = rng.standard_normal((3, 2)).astype(np.float32)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    gc = graphc.compile(graphc.grad(loss), backend="c")(w, x)
    gn = graphc.compile(graphc.grad(loss), backend="numpy")(w, x)
    assert gc.dtype == gn.dtype == np.float32
    close(gc, gn, rtol=1e-5, atol=1e-6)


def _opt_fn(x, y):
    # constant folding, common subexpressions, dead code, fusable chains
    a = graphc.exp(x) * 2.0 * 3.0
    b = graphc.exp(x) * 6.0
    dead = graphc.sin(y) * 100.0  # noqa: F841
    c = (a - b) + graphc.tanh(y) * (1.0 + 1.0)
    d = graphc.sum(c * c, axis=0) + graphc.sum(x * 0.0 + 1.0)
    return c, d, graphc.transpose(graphc.transpose(x)) + y


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_optimize_false_agrees_with_optimize_true(backend):
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    on = graphc.compile(_opt_fn, backend=backend, optimize=True)(x, y)
    off = graphc.compile(_opt_fn, backend=backend, optimize=False)(x, y)
    c = np.tanh(y) * 2.0
    ref = (c, np.sum(c * c, axis=0) + 12.0, x + y)
    for u, v, r in zip(on, off, ref):
        close(u, v, rtol=1e-12, atol=1e-13)
        close(u, r, **FWD64)


def test_optimize_false_gradients():
    def loss(x):
        return graphc.sum(graphc.exp(x) * graphc.exp(x) + graphc.log(x) * 1.0)

    x = np.array([0.5, 1.5, 2.0])
    on = graphc.compile(graphc.grad(loss), optimize=True)(x)
    off = graphc.compile(graphc.grad(loss), optimize=False)(x)
    close(on, 2 * np.exp(2 * x) + 1 / x, **FWD64)
    close(off, on, rtol=1e-12, atol=1e-13)


def test_explain_reports_passes_kernels_buffers_peak():
    # kernels and buffers are the C pipeline's: ask for it explicitly
    f = graphc.compile(lambda x, w: graphc.sum(graphc.relu(x @ w) * 2.0 + 1.0), backend="c")
    x, w = np.ones((4, 3)), np.ones((3, 2))
    text = str(f.explain(x, w)).lower()
    st = f.stats(x, w)
    for word in ("nodes", "kernel", "buffer", "peak"):
        assert word in text, (word, text)
    assert str(st["nodes"]) in text and str(st["peak_bytes"]) in text


def test_explain_reports_fused_groups_and_buffer_reuse():
    # API.md: "nodes before/after, kernels, fused groups, buffers and their reuse, peak bytes"
    def f(x):
        a = graphc.exp(x) * 2.0 + 1.0
        b = graphc.tanh(a) * a
        return graphc.sum(graphc.sin(b) + b, axis=0)

    text = str(graphc.compile(f, backend="c").explain(np.ones((8, 4)))).lower()
    assert "fus" in text, text
    assert "reus" in text, text


def test_stats_explain_source():
    f = graphc.compile(lambda x, w: graphc.sum(graphc.relu(x @ w)))
    x, w = np.ones((4, 3)), np.ones((3, 2))
    st = f.stats(x, w)
    for k in ("nodes", "kernels", "buffers", "peak_bytes"):
        assert k in st and isinstance(st[k], (int, np.integer)) and st[k] >= 0, (k, st)
    assert st["nodes"] >= 1
    assert len(str(f.explain(x, w)).strip()) > 0
    src = graphc.compile(lambda x: graphc.exp(x) + 1.0, backend="c").source(x)
    assert isinstance(src, str) and "exp" in src


def test_cache_distinguishes_constants():
    # graphs that differ only in a constant value or a captured array must not share a kernel
    x = np.array([1.0, 2.0, 3.0])
    for c in (2.0, 3.0, -0.5):
        close(graphc.compile(lambda x, c=c: x * c)(x), x * c, **EXACT)
    rng = np.random.default_rng(44)
    for _ in range(3):
        W = rng.standard_normal((3, 2))
        close(graphc.compile(lambda x, W=W: x @ W)(x), x @ W, **FWD64)
        close(graphc.grad(lambda x, W=W: graphc.sum(graphc.sin(x @ W)))(x),
              W @ np.cos(x @ W), **FWD64)


def test_cache_distinguishes_axis_and_op():
    x = np.arange(6.0).reshape(2, 3)
    close(graphc.compile(lambda x: graphc.sum(x, axis=0))(x), [3.0, 5.0, 7.0], **EXACT)
    close(graphc.compile(lambda x: graphc.sum(x, axis=1))(x), [3.0, 12.0], **EXACT)
    close(graphc.compile(lambda x: graphc.max(x, axis=1))(x), [2.0, 5.0], **EXACT)
    close(graphc.compile(lambda x: graphc.min(x, axis=1))(x), [0.0, 3.0], **EXACT)


def test_ieee_special_values_like_numpy():
    # inf and nan follow IEEE/numpy semantics (no fast-math): never silently other numbers
    def f(x, y):
        return (1.0 / x, graphc.log(x), graphc.exp(y), graphc.sqrt(x - 1.0), x * np.inf,
                (x - x) / (x - x), y + np.nan)

    x = np.array([0.0, 1.0, 4.0])
    y = np.array([1000.0, -1000.0, 0.5])
    with np.errstate(all="ignore"):
        ref = (1.0 / x, np.log(x), np.exp(y), np.sqrt(x - 1.0), x * np.inf, (x - x) / (x - x),
               y + np.nan)
    out = graphc.compile(f)(x, y)
    for o, r in zip(out, ref):
        np.testing.assert_array_equal(np.asarray(o), r)


def test_ieee_special_values_float32():
    x = np.array([0.0, 100.0, -100.0], dtype=np.float32)
    out = graphc.compile(lambda x: (graphc.exp(x), 1.0 / x, graphc.sigmoid(x)))(x)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(out[0], np.exp(x))
        np.testing.assert_array_equal(out[1], np.float32(1.0) / x)
    assert np.all(np.isfinite(out[2]))
    assert out[0].dtype == out[1].dtype == out[2].dtype == np.float32


# --------------------------------------------------------------------------------------------
# trace
# --------------------------------------------------------------------------------------------


def _lines(graph):
    return [ln for ln in str(graph).splitlines() if ln.strip()]


def test_trace_one_line_per_node():
    x = np.array([0.5, 1.0, 2.0])
    g1 = graphc.trace(lambda x: graphc.exp(x), x)
    g2 = graphc.trace(lambda x: graphc.sin(graphc.exp(x)), x)
    g4 = graphc.trace(lambda x: graphc.tanh(graphc.cos(graphc.sin(graphc.exp(x)))), x)
    assert len(_lines(g2)) == len(_lines(g1)) + 1
    assert len(_lines(g4)) == len(_lines(g1)) + 3
    text = str(g4)
    for name in ("exp", "sin", "cos", "tanh"):
        assert name in text


def test_trace_two_inputs_and_dot():
    g = graphc.trace(lambda a, b: graphc.matmul(a, b) + 1.0, np.ones((2, 3)), np.ones((3, 4)))
    assert len(_lines(g)) >= 3  # two inputs and a matmul at least
    dot = g.to_dot()
    assert isinstance(dot, str)
    assert dot.lstrip().startswith("digraph")
    assert "->" in dot and dot.rstrip().endswith("}")


def test_trace_does_not_run_or_compile_but_is_a_graph_of_grad():
    g = graphc.trace(graphc.grad(lambda x: graphc.sum(x * x)), np.ones(3))
    assert len(_lines(g)) >= 2
    assert g.to_dot().lstrip().startswith("digraph")


# --------------------------------------------------------------------------------------------
# check_grads
# --------------------------------------------------------------------------------------------


def test_check_grads_passes_order1():
    graphc.check_grads(lambda x: graphc.sum(graphc.tanh(x) * graphc.exp(x)),
                       (np.array([0.1, -0.5, 0.9]),))


def test_check_grads_passes_order2():
    graphc.check_grads(lambda x: graphc.sum(graphc.sin(x) * x ** 2),
                       (np.array([0.3, 1.2, -0.7]),), order=2)


def test_check_grads_multiple_args_and_vector_output():
    def f(w, x):
        return graphc.sigmoid(x @ w)

    rng = np.random.default_rng(13)
    graphc.check_grads(f, (rng.standard_normal(3), rng.standard_normal((4, 3))))
    graphc.check_grads(f, (rng.standard_normal(3), rng.standard_normal((4, 3))), order=2)


def test_check_grads_with_eps_and_rtol():
    graphc.check_grads(lambda x: graphc.sum(graphc.log(x)), (np.array([0.5, 2.0]),),
                       eps=1e-6, rtol=1e-4)


def test_check_grads_raises_on_kink_naming_argument():
    # relu is not differentiable at 0: central differences give 0.5 there, while reverse mode
    # gives its convention (0 or 1). The kink is in the second argument, element 2.
    def f(smooth_arg, kinked_arg):
        return graphc.sum(smooth_arg ** 2) + graphc.sum(graphc.relu(kinked_arg))

    a = np.array([0.5, 1.0, -0.25])
    b = np.array([1.0, -1.0, 0.0, 2.0])
    with pytest.raises(AssertionError) as ei:
        graphc.check_grads(f, (a, b))
    msg = str(ei.value)
    assert "kinked_arg" in msg or re.search(
        r"(arg\w*|argnums?|argument|args)\s*[\[#(]?\s*1\b", msg, re.I), msg
    # the worst element: index 2 of that argument
    assert re.search(r"[\[(]\s*2\s*[,\])]|index\D{0,3}2\b|element\D{0,3}2\b", msg, re.I), msg


def test_check_grads_raises_on_jump():
    def f(x):
        return graphc.sum(graphc.where(x > 0.0, x + 1.0, x))

    with pytest.raises(AssertionError):
        graphc.check_grads(f, (np.array([0.0, 0.7]),))


# --------------------------------------------------------------------------------------------
# caching, purity, threads
# --------------------------------------------------------------------------------------------


def test_same_signature_traces_once_new_signature_retraces():
    calls = []

    def f(x):
        calls.append(1)
        return graphc.exp(x) * 2.0

    g = graphc.compile(f)
    x = np.array([0.1, 0.2, 0.3])
    close(g(x), np.exp(x) * 2.0, **FWD64)
    close(g(x + 1.0), np.exp(x + 1.0) * 2.0, **FWD64)
    assert len(calls) == 1
    x4 = np.linspace(0.0, 1.0, 4)
    close(g(x4), np.exp(x4) * 2.0, **FWD64)  # new shape
    assert len(calls) == 2
    out32 = g(x4.astype(np.float32))  # new dtype
    assert out32.dtype == np.float32
    assert len(calls) == 3
    g(x)
    g(x4)
    assert len(calls) == 3


def test_grad_same_signature_does_not_rebuild_and_compiled_grad_does_not_retrace():
    """grad(f) called directly traces at each call (so it sees current globals, as JAX's
    grad) but reuses the built code; compile(grad(f)) traces once per signature."""
    from graphc import compiler
    calls = []

    def f(x):
        calls.append(1)
        return graphc.sum(x ** 3)

    df = graphc.grad(f)
    close(df(np.array([1.0, 2.0])), [3.0, 12.0], **EXACT)
    runners = len(compiler._RUNNERS)
    close(df(np.array([2.0, 3.0])), [12.0, 27.0], **EXACT)
    close(df(np.array([-1.0, 0.5])), [3.0, 0.75], **EXACT)
    assert len(compiler._RUNNERS) == runners
    cdf = graphc.compile(df)
    close(cdf(np.array([1.0, 2.0])), [3.0, 12.0], **EXACT)
    n = len(calls)
    close(cdf(np.array([2.0, 3.0])), [12.0, 27.0], **EXACT)
    close(cdf(np.array([-1.0, 0.5])), [3.0, 0.75], **EXACT)
    assert len(calls) == n


def test_inputs_are_not_modified():
    def f(x, y):
        a = graphc.exp(x) * y
        b = a + x
        return graphc.sum(b * b) + graphc.sum(graphc.relu(y - 0.1))

    rng = np.random.default_rng(14)
    for dtype in (np.float64, np.float32):
        x = rng.standard_normal((4, 3)).astype(dtype)
        y = rng.standard_normal((4, 3)).astype(dtype)
        xc, yc = x.copy(), y.copy()
        graphc.compile(f)(x, y)
        graphc.grad(f, argnums=(0, 1))(x, y)
        graphc.value_and_grad(f)(x, y)
        np.testing.assert_array_equal(x, xc)
        np.testing.assert_array_equal(y, yc)


def test_inputs_not_modified_by_identity_like_outputs():
    f = graphc.compile(lambda x: (x, x * 1.0, graphc.reshape(x, (6,))))
    x = np.arange(6.0).reshape(2, 3)
    xc = x.copy()
    a, b, c = f(x)
    for o in (a, b, c):
        o[...] = -7.0  # writing to outputs must not touch the input
    np.testing.assert_array_equal(x, xc)


def test_returned_arrays_are_not_overwritten_by_later_calls():
    f = graphc.compile(lambda x: (graphc.tanh(x) * 2.0, graphc.sum(x)))
    x1, x2 = np.array([0.1, 0.2, 0.3]), np.array([-1.0, 5.0, 2.0])
    r1 = f(x1)
    saved = [np.array(r, copy=True) for r in r1]
    r2 = f(x2)
    for a, b in zip(r1, saved):
        np.testing.assert_array_equal(a, b)
    assert not np.shares_memory(r1[0], r2[0])
    close(r2[0], np.tanh(x2) * 2.0, **FWD64)


def test_returned_gradients_are_not_overwritten():
    df = graphc.grad(lambda x: graphc.sum(x ** 2))
    g1 = df(np.array([1.0, 2.0]))
    g2 = df(np.array([5.0, 6.0]))
    np.testing.assert_array_equal(g1, [2.0, 4.0])
    np.testing.assert_array_equal(g2, [10.0, 12.0])


def _thread_fn(x, w):
    return graphc.sum(graphc.tanh(x @ w), axis=0) + graphc.exp(-graphc.sum(x * x))


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "cold"])
def test_calls_from_four_threads(warm):
    f = graphc.compile(_thread_fn)
    rng = np.random.default_rng(15)
    w = rng.standard_normal((8, 5))
    inputs = [rng.standard_normal((16, 8)) for _ in range(4 * 12)]
    if warm:
        f(inputs[0], w)
    results = [None] * len(inputs)
    barrier = threading.Barrier(4)

    def work(k):
        barrier.wait()
        for j in range(k, len(inputs), 4):
            results[j] = f(inputs[j], w)

    errors = run_threads(work, 4)
    assert not errors, errors
    for x, r in zip(inputs, results):
        close(r, np.sum(np.tanh(x @ w), axis=0) + np.exp(-np.sum(x * x)), **FWD64)


def test_grad_from_four_threads():
    df = graphc.grad(lambda w, x: graphc.sum(graphc.sin(x @ w)))
    rng = np.random.default_rng(16)
    w = rng.standard_normal(3)
    xs = [rng.standard_normal((5, 3)) for _ in range(16)]
    df(w, xs[0])
    res = [None] * 16

    def work(k):
        for j in range(k, 16, 4):
            res[j] = df(w, xs[j])

    ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    for x, g in zip(xs, res):
        close(g, x.T @ np.cos(x @ w), **FWD64)


# --------------------------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------------------------


def test_float32_in_float32_out():
    x = np.array([0.5, 1.5, -2.0], dtype=np.float32)
    out = graphc.compile(lambda x: graphc.exp(x) * x + graphc.tanh(x))(x)
    assert out.dtype == np.float32
    x64 = x.astype(np.float64)
    close(out, np.exp(x64) * x64 + np.tanh(x64), **F32)


def test_float32_op_python_float_stays_float32():
    x = np.array([1.0, 2.0], dtype=np.float32)
    out = graphc.compile(lambda x: x * 0.1 + 2.5 - 1.0 / (x + 0.3) + x ** 2.0)(x)
    assert out.dtype == np.float32
    x64 = x.astype(np.float64)
    close(out, x64 * 0.1 + 2.5 - 1.0 / (x64 + 0.3) + x64 ** 2, **F32)


def test_float32_op_python_int_stays_float32():
    x = np.array([1.0, 2.0], dtype=np.float32)
    out = graphc.compile(lambda x: x * 3 + 1)(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([4.0, 7.0], np.float32))


def test_python_float_alone_is_float64():
    out = graphc.compile(lambda a: a * 2.0 + 0.1)(1.5)
    assert np.asarray(out).dtype == np.float64
    close(out, 3.1, **EXACT)


def test_float32_reductions_and_matmul_stay_float32():
    rng = np.random.default_rng(17)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    w = rng.standard_normal((3, 2)).astype(np.float32)
    out = graphc.compile(lambda x, w: (graphc.mean(x @ w, axis=0), graphc.softmax(x),
                                       graphc.logsumexp(x)))(x, w)
    for o in out:
        assert np.asarray(o).dtype == np.float32
    close(out[0], np.mean(x.astype(np.float64) @ w.astype(np.float64), axis=0), **F32)


def test_float32_gradient_is_float32():
    x = np.array([0.5, -0.3], dtype=np.float32)
    g = graphc.grad(lambda x: graphc.sum(graphc.sigmoid(x) * 2.0))(x)
    assert g.dtype == np.float32
    s = sigmoid(x.astype(np.float64))
    close(g, 2.0 * s * (1 - s), **F32)


def test_float64_inputs_give_float64_everywhere():
    x = np.array([0.5, -0.3])
    v, g = graphc.value_and_grad(lambda x: graphc.sum(x * 0.5))(x)
    assert np.asarray(v).dtype == np.float64 and g.dtype == np.float64



# --------------------------------------------------------------------------------------------
# input layouts, aliasing, sizes, depth
# --------------------------------------------------------------------------------------------

_BASE = np.arange(48.0).reshape(6, 8) / 10.0 - 2.0

LAYOUTS = [
    ("transposed_view", lambda: _BASE.T),
    ("fortran_order", lambda: np.asfortranarray(_BASE)),
    ("strided_view", lambda: _BASE[::2, 1::3]),
    ("negative_strides", lambda: _BASE[::-1, ::-1]),
    ("column_view", lambda: _BASE[:, 3]),
    ("broadcast_view", lambda: np.broadcast_to(_BASE[0], (3, 8))),
    ("readonly", lambda: _readonly(_BASE)),
]


def _readonly(a):
    b = a.copy()
    b.flags.writeable = False
    return b


@pytest.mark.parametrize("name,make", LAYOUTS, ids=[c[0] for c in LAYOUTS])
def test_non_contiguous_and_readonly_inputs(name, make):
    x = make()
    xc = np.array(x, copy=True)
    w = loss_weights(x.shape)

    def f(x):
        return graphc.tanh(x) * 2.0 + graphc.sum(x, axis=0)

    out = graphc.compile(f)(x)
    close(out, np.tanh(xc) * 2.0 + np.sum(xc, axis=0), **FWD64)
    g = graphc.grad(lambda x: graphc.sum(f(x) * w))(x)
    # d/dx[i, j] of sum(w * sum(x, axis=0)) is sum(w[:, j]) (or sum(w) for 1-D x)
    col = np.sum(w) if x.ndim == 1 else np.sum(w, axis=0)
    close(g, w * 2.0 * (1 - np.tanh(xc) ** 2) + col, **FWD64)
    np.testing.assert_array_equal(x, xc)


def test_non_contiguous_matmul_operands():
    rng = np.random.default_rng(40)
    a = rng.standard_normal((7, 5))
    b = rng.standard_normal((9, 7))
    lhs = a[:, ::-1].T  # (5, 7): a transposed view with a negative stride
    rhs = b.T  # (7, 9): a transposed view
    out = graphc.compile(lambda a, b: a @ b)(lhs, rhs)
    close(out, lhs @ rhs, **FWD64)
    out2 = graphc.compile(lambda a, b: a @ b)(lhs[::2], rhs[:, 1::2])  # strided views
    close(out2, lhs[::2] @ rhs[:, 1::2], **FWD64)


def test_same_array_passed_twice():
    x = np.array([0.5, -1.0, 2.0])
    f = graphc.compile(lambda a, b: (a * 2.0, b + 1.0, a * b))
    o1, o2, o3 = f(x, x)
    close(o1, 2 * x, **EXACT)
    close(o2, x + 1.0, **EXACT)
    close(o3, x * x, **EXACT)
    ga, gb = graphc.grad(lambda a, b: graphc.sum(a * b * a), argnums=(0, 1))(x, x)
    close(ga, 2 * x * x, **EXACT)
    close(gb, x * x, **EXACT)


def test_same_value_returned_twice():
    a, b = graphc.compile(lambda x: (graphc.exp(x), graphc.exp(x)))(np.array([0.0, 1.0]))
    close(a, [1.0, np.e], **FWD64)
    close(b, [1.0, np.e], **FWD64)


LARGE = [
    ("matmul_odd_sizes", (65, 33), (33, 17)),
    ("matmul_tall", (257, 3), (3, 129)),
    ("matmul_batched_odd", (3, 31, 47), (3, 47, 29)),
]


@pytest.mark.parametrize("name,sa,sb", LARGE, ids=[c[0] for c in LARGE])
def test_larger_matmul_forward_and_gradient(name, sa, sb):
    rng = np.random.default_rng(41)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    out = graphc.compile(lambda a, b: a @ b)(a, b)
    close(out, a @ b, rtol=1e-11, atol=1e-11)
    w = rng.standard_normal(out.shape)
    ga, gb = graphc.grad(lambda a, b: graphc.sum((a @ b) * w), argnums=(0, 1))(a, b)
    close(ga, w @ np.swapaxes(b, -1, -2), rtol=1e-11, atol=1e-11)
    gb_ref = np.swapaxes(a, -1, -2) @ w
    close(gb, gb_ref, rtol=1e-11, atol=1e-11)


def test_larger_reductions_and_softmax():
    rng = np.random.default_rng(42)
    x = rng.standard_normal((37, 1031))
    f = graphc.compile(lambda x: (graphc.sum(x), graphc.mean(x, axis=0), graphc.max(x, axis=1),
                                  graphc.softmax(x, axis=-1), graphc.logsumexp(x, axis=0)))
    s, m, mx, sm, lse = f(x)
    close(s, np.sum(x), rtol=1e-11, atol=1e-10)
    close(m, np.mean(x, axis=0), rtol=1e-11, atol=1e-13)
    close(mx, np.max(x, axis=1), **EXACT)
    close(sm, softmax(x, axis=-1), rtol=1e-11, atol=1e-15)
    close(lse, NP.logsumexp(x, axis=0), rtol=1e-11)
    g = graphc.grad(lambda x: graphc.sum(graphc.logsumexp(x, axis=1)))(x)
    close(g, softmax(x, axis=1), rtol=1e-11, atol=1e-15)


def test_large_elementwise_vector():
    x = np.linspace(-3.0, 3.0, 100_003)
    def f(x):
        return graphc.sum(graphc.tanh(0.7 * x + 0.1) * graphc.sigmoid(x) + graphc.exp(-x * x))

    v, g = graphc.value_and_grad(f)(x)
    t, s = np.tanh(0.7 * x + 0.1), sigmoid(x)
    close(v, np.sum(t * s + np.exp(-x * x)), rtol=1e-11)
    close(g, 0.7 * (1 - t ** 2) * s + t * s * (1 - s) - 2 * x * np.exp(-x * x), rtol=1e-10,
          atol=1e-13)


def test_float32_large_sum_is_accurate():
    # W4-sized float32 reductions: no naive float32 accumulation drift
    rng = np.random.default_rng(45)
    x = rng.uniform(0.0, 1.0, 2_000_000).astype(np.float32)
    s, m = graphc.compile(lambda x: (graphc.sum(x), graphc.mean(x)))(x)
    ref = x.astype(np.float64).sum()
    assert np.asarray(s).dtype == np.float32
    close(s, ref, rtol=1e-5)
    close(m, ref / x.size, rtol=1e-5)
    g = graphc.grad(lambda x: graphc.mean(x * x))(x[:1000])
    close(g, 2.0 * x[:1000].astype(np.float64) / 1000, rtol=1e-6)


def test_deep_chain_no_recursion_limit():
    # 3000 chained ops: tracing, differentiating and interpreting must not recurse per node
    n = 1000

    def f(x):
        for _ in range(n):
            x = graphc.sin(x) * 0.5 + x * 0.5
        return graphc.sum(x)

    x = np.array([0.3, -0.7])
    v, g = graphc.compile(graphc.value_and_grad(f), backend="numpy")(x)
    y, d = x.copy(), np.ones_like(x)
    for _ in range(n):
        d = d * (0.5 * np.cos(y) + 0.5)
        y = np.sin(y) * 0.5 + y * 0.5
    close(v, np.sum(y), rtol=1e-10)
    close(g, d, rtol=1e-9)


def test_many_scalar_nodes_like_W7():
    # a small instance of BENCHMARKS.md W7 (N = 240), value and gradient of the node sum
    def softplus(v):
        return graphc.log1p(graphc.exp(v))

    def build(xs, m):
        nodes = [xs[i] for i in range(100)]
        for op in range(240):
            k = op % 4
            if k == 0:
                nodes.append(softplus(nodes[-10]) if m is graphc else np.log1p(np.exp(nodes[-10])))
            elif k == 1:
                s = nodes[-30]
                for t in nodes[-25:-10:5]:
                    s = s + t
                nodes.append(s)
            elif k == 2:
                nodes.append(nodes[-20] * nodes[-10])
            else:
                st = m.stack(nodes[-4:]) if m is graphc else np.stack(nodes[-4:])
                sm = graphc.softmax(st) if m is graphc else softmax(st)
                nodes.extend(sm[i] for i in range(4))
        total = nodes[0]
        for v in nodes[1:]:
            total = total + v
        return total

    x = np.random.default_rng(43).uniform(-0.5, 0.5, size=100)
    v, g = graphc.value_and_grad(lambda x: build(x, graphc))(x)
    close(v, build(x, np), rtol=1e-10)
    close(g, numeric_grad(lambda x: build(x, np), (x,), eps=1e-6), rtol=1e-5, atol=1e-7)


def test_empty_arrays():
    f = graphc.compile(lambda x: (x * 2.0, graphc.sum(x), graphc.exp(x)))
    a, s, e = f(np.zeros((0,)))
    assert a.shape == (0,) and e.shape == (0,)
    close(s, 0.0, **EXACT)
    g = graphc.grad(lambda x: graphc.sum(x * x))(np.zeros((2, 0)))
    assert g.shape == (2, 0)
