"""Keyword arguments through the transformations and compile, as in JAX: argnums count
positional arguments only; keyword arguments are passed through, never differentiated, and
their values are inputs of the signature a compiled function is cached on."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import graphc
from graphc.reverse_tape import ReverseTapeRunner

X = np.linspace(0.1, 1.0, 4)
Y = np.linspace(1.0, 2.0, 4)


def _loss(x, y, s=1.0):
    return graphc.sum(graphc.sin(x) * y) * s


def _want(x, y, s):
    """(value, d/dx, d/dy) of _loss, by hand."""
    return np.sum(np.sin(x) * y) * s, np.cos(x) * y * s, np.sin(x) * s


def _counting(fn):
    """fn, and the list that grows by one each time fn is traced."""
    traces = []

    def counted(*args, **kwargs):
        traces.append(1)
        return fn(*args, **kwargs)
    return counted, traces


@pytest.mark.parametrize("compiled", [False, True], ids=["direct", "compiled"])
def test_grad_and_value_and_grad_pass_keywords_through(compiled):
    wrap = graphc.compile if compiled else (lambda f: f)
    value, dx, dy = _want(X, Y, 0.5)
    got_value, got_dx = wrap(graphc.value_and_grad(_loss))(X, Y, s=0.5)
    np.testing.assert_allclose(got_value, value, rtol=1e-13)
    np.testing.assert_allclose(got_dx, dx, rtol=1e-13)
    got_dx, got_dy = wrap(graphc.grad(_loss, argnums=(0, 1)))(X, Y, s=0.5)
    np.testing.assert_allclose(got_dx, dx, rtol=1e-13)
    np.testing.assert_allclose(got_dy, dy, rtol=1e-13)
    # argnums count positionals: -1 is y here, whatever keywords follow
    np.testing.assert_allclose(wrap(graphc.grad(_loss, argnums=-1))(X, Y, s=0.5), dy,
                               rtol=1e-13)
    jac = wrap(graphc.jacobian(lambda x, s: graphc.sin(x) * s))(X, s=2.0)
    np.testing.assert_allclose(jac, np.diag(2.0 * np.cos(X)), rtol=1e-13)
    hess = wrap(graphc.hessian(_loss))(X, Y, s=0.5)
    np.testing.assert_allclose(hess, np.diag(-np.sin(X) * Y * 0.5), rtol=1e-13)


def test_keywords_inside_a_trace_and_under_jvp():
    """A transformation called with keywords on traced values (grad inside compile, grad
    under jvp, grad of grad): the keyword's tracer is passed through, not differentiated."""
    def inner(x, y, s):
        return graphc.grad(_loss)(x, y, s=s * s)
    np.testing.assert_allclose(graphc.compile(inner)(X, Y, 3.0), np.cos(X) * Y * 9.0,
                               rtol=1e-13)
    tangent = np.ones_like(X)
    grad_at = functools.partial(graphc.grad(_loss), s=0.5)
    out, t_out = graphc.jvp(lambda x: grad_at(x, Y), (X,), (tangent,))
    np.testing.assert_allclose(out, np.cos(X) * Y * 0.5, rtol=1e-13)
    np.testing.assert_allclose(t_out, -np.sin(X) * Y * 0.5, rtol=1e-13)
    jvp_c = graphc.compile(lambda x, t, s: graphc.jvp(lambda p: _loss(p, Y, s=s), (x,), (t,)))
    value, tan = jvp_c(X, tangent, s=2.0)
    np.testing.assert_allclose(value, np.sum(np.sin(X) * Y) * 2.0, rtol=1e-13)
    np.testing.assert_allclose(tan, np.sum(np.cos(X) * Y) * 2.0, rtol=1e-13)
    second = graphc.grad(lambda x, s: graphc.sum(graphc.grad(_loss)(x, Y, s=s)))
    np.testing.assert_allclose(second(X, s=0.5), -np.sin(X) * Y * 0.5, rtol=1e-13)


@pytest.mark.parametrize("transform", [graphc.grad, graphc.value_and_grad, None],
                         ids=["grad", "value_and_grad", "plain"])
def test_keyword_signatures_retrace_once(transform):
    fn, traces = _counting(_loss)
    f = graphc.compile(transform(fn) if transform else fn)

    def traced_anew(*args, **kwargs) -> bool:
        before = len(traces)
        got = f(*args, **kwargs)
        s = kwargs.get("s", 1.0)
        want = _want(X, Y, s)
        want = {graphc.grad: want[1], graphc.value_and_grad: want[:2], None: want[0]}[transform]
        for g, w in zip(graphc.tree_leaves(got), graphc.tree_leaves(want)):
            np.testing.assert_allclose(g, w, rtol=1e-13)
        return len(traces) > before

    assert traced_anew(X, Y, s=0.5)
    assert not traced_anew(X, Y, s=0.5)
    assert not traced_anew(X, Y, s=2.0)       # a new value of a seen kind is an input
    assert traced_anew(X, Y, s=np.float32(2.0))     # a new type
    assert traced_anew(X, Y, s=np.array(3.0))       # a strongly typed 0-d array
    assert traced_anew(X, Y)                    # no keyword
    assert traced_anew(X, y=Y, s=0.5)           # another set of keywords
    for args, kwargs in [((X, Y), {"s": 0.25}), ((X, Y), {"s": np.array(0.5)}),
                         ((X, Y), {}), ((X,), {"s": 1.5, "y": Y})]:
        assert not traced_anew(*args, **kwargs)


def test_keywords_reach_the_reverse_tape(monkeypatch):
    """A graph large enough for the reverse tape keeps it when called with keywords; the
    keyword's value is an input, not a differentiation variable, and new values are seen."""
    def chain(v, scale=1.0):
        acc = 0.0
        for i in range(60):
            acc = acc + graphc.sin(v[i % 3] * scale)
        return acc
    v = np.array([0.1, 0.2, 0.3])
    counts = np.array([20, 20, 20])
    monkeypatch.setenv("GRAPHC_REVERSE_TAPE_MIN_NODES", "0")
    f = graphc.compile(graphc.value_and_grad(chain))
    for scale in (2.0, -0.5):
        value, g = f(v, scale=scale)
        np.testing.assert_allclose(value, np.sum(counts * np.sin(v * scale)), rtol=1e-13)
        np.testing.assert_allclose(g, counts * np.cos(v * scale) * scale, rtol=1e-13)
    assert isinstance(f._with_keywords(1, ("scale",)).executable(v, 2.0).runner,
                      ReverseTapeRunner)


def test_keyword_errors_say_what_to_do():
    with pytest.raises(graphc.GraphcError, match="keyword arguments, here x, y, are passed "
                       "through, not differentiated"):
        graphc.grad(_loss)(x=X, y=Y)
    with pytest.raises(graphc.GraphcError, match=r"argnums \(0, 1\) is out of range .* 1 "
                       "positional argument.* here s, y,"):
        graphc.compile(graphc.grad(_loss, argnums=(0, 1)))(X, s=0.5, y=Y)
    with pytest.raises(graphc.GraphcError, match=r"input 2 \(keyword argument 's'.*partial"):
        graphc.compile(graphc.value_and_grad(_loss))(X, Y, s="half")
    with pytest.raises(graphc.GraphcError, match="static arguments must be passed "
                       "positionally"):
        graphc.compile(_loss, static_argnums=2)(X, Y, s=0.5)
