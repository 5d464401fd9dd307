"""custom_vjp / custom_jvp: rules traced into the graph, compiled, differentiable again."""

import numpy as np
import pytest

import graphc


@pytest.fixture(params=["numpy", "c", "tape"], autouse=True)
def mode(request, monkeypatch):
    monkeypatch.setenv("GRAPHC_BACKEND", "numpy" if request.param == "numpy" else "c")
    if request.param == "tape":
        monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", "0")


@graphc.custom_vjp
def clip_gradient(x, lo, hi):
    return x


def _clip_fwd(x, lo, hi):
    return x, (lo, hi)


def _clip_bwd(res, g):
    lo, hi = res
    return (graphc.clip(g, lo, hi), None, None)


clip_gradient.defvjp(_clip_fwd, _clip_bwd)


def test_custom_vjp_rule_is_used_and_compiled():
    x = np.array([1.0, 2.0, 3.0])
    f = lambda x: (clip_gradient(x, -1.0, 1.0) * np.array([0.5, 3.0, -4.0])).sum()  # noqa: E731
    np.testing.assert_array_equal(graphc.grad(f)(x), [0.5, 1.0, -1.0])
    np.testing.assert_array_equal(graphc.compile(graphc.grad(f))(x), [0.5, 1.0, -1.0])
    assert graphc.compile(f)(x) == f(x)


def test_norm_has_a_zero_gradient_at_zero_and_checks_out_elsewhere():
    assert np.array_equal(graphc.grad(graphc.norm)(np.zeros(3)), np.zeros(3))
    g = graphc.grad(lambda x: graphc.norm(x, axis=1).sum())(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(g, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-15)
    x = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
    graphc.check_grads(graphc.norm, (x,), order=2)
    graphc.check_grads(lambda x: graphc.norm(x, axis=0, keepdims=True), (x,), order=2)
    assert graphc.grad(graphc.grad(graphc.norm))(1.5) == 0.0


def test_custom_vjp_with_pytrees_and_several_outputs():
    @graphc.custom_vjp
    def split(p):
        return {"sum": p["a"] + p["b"], "prod": p["a"] * p["b"]}

    def fwd(p):
        return split(p), p

    def bwd(p, g):
        # deliberately 2x the true derivative, so the test sees the rule is used
        return ({"a": 2 * (g["sum"] + g["prod"] * p["b"]),
                 "b": 2 * (g["sum"] + g["prod"] * p["a"])},)

    split.defvjp(fwd, bwd)
    p = {"a": np.array([1.0, 2.0]), "b": np.array([3.0, 5.0])}
    g = graphc.grad(lambda p: (split(p)["sum"] + split(p)["prod"]).sum())(p)
    np.testing.assert_array_equal(g["a"], 2 * (1 + p["b"]))
    np.testing.assert_array_equal(g["b"], 2 * (1 + p["a"]))


def test_custom_jvp_forward_and_reverse():
    @graphc.custom_jvp
    def softplus(x):
        return graphc.log(1 + graphc.exp(x))

    @softplus.defjvp
    def softplus_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return softplus(x), t * graphc.sigmoid(x)

    x = np.array([-2.0, 0.0, 3.0])
    _, t = graphc.jvp(softplus, (x,), (np.ones(3),))
    np.testing.assert_allclose(t, 1 / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_allclose(graphc.grad(lambda x: softplus(x).sum())(x), 1 / (1 + np.exp(-x)),
                               rtol=1e-15)
    graphc.check_grads(softplus, (x,), order=2)


def test_custom_jvp_rule_must_be_linear_for_reverse_mode():
    @graphc.custom_jvp
    def f(x):
        return x * 2

    @f.defjvp
    def f_jvp(primals, tangents):
        return f(*primals), tangents[0] * tangents[0]

    with pytest.raises(graphc.GraphcError, match="linear"):
        graphc.grad(lambda x: f(x).sum())(np.ones(2))


def test_rules_must_be_defined():
    @graphc.custom_vjp
    def g(x):
        return x

    with pytest.raises(graphc.GraphcError, match="defvjp"):
        graphc.compile(g)(np.ones(2))
    with pytest.raises(graphc.GraphcError, match="one cotangent"):
        g.defvjp(lambda x: (x, None), lambda res, ct: ct)
        graphc.grad(lambda x: g(x).sum())(np.ones(2))
