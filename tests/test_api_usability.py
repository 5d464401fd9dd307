"""Issue 17: pytrees beyond tuples/lists/dicts, weak types across calls, check_grads with
integer arguments (each in the numpy backend and in C)."""

import dataclasses
from typing import NamedTuple

import numpy as np
import pytest

import graphc


@pytest.fixture(params=["numpy", "c"], autouse=True)
def backend(request, monkeypatch):
    monkeypatch.setenv("GRAPHC_BACKEND", request.param)
    return request.param


class Pair(NamedTuple):
    w: np.ndarray
    b: np.ndarray


@dataclasses.dataclass(frozen=True)
class Layer:
    w: np.ndarray
    b: np.ndarray


@dataclasses.dataclass
class Model:
    layers: list
    activation: str = "tanh"


graphc.register_dataclass(Model, meta_fields=["activation"])


def _apply(model: Model, x):
    act = getattr(graphc, model.activation)
    for layer in model.layers:
        x = act(x @ layer.w + layer.b)
    return x.sum()


def test_namedtuples_in_and_out():
    p = Pair(np.ones(2), np.full(2, 3.0))
    out = graphc.compile(lambda p: Pair(p.w * 2, p.b + p.w))(p)
    assert isinstance(out, Pair)
    np.testing.assert_array_equal(out.w, 2.0)
    np.testing.assert_array_equal(out.b, 4.0)
    g = graphc.grad(lambda p: (p.w * p.b).sum())(p)
    assert isinstance(g, Pair)
    np.testing.assert_array_equal(g.w, 3.0)
    np.testing.assert_array_equal(g.b, 1.0)


def test_dataclasses_frozen_and_registered():
    rng = np.random.default_rng(0)
    model = Model([Layer(rng.standard_normal((3, 4)), np.zeros(4)),
                   Layer(rng.standard_normal((4, 2)), np.zeros(2))])
    x = rng.standard_normal((5, 3))
    g = graphc.grad(_apply)(model, x)
    assert isinstance(g, Model) and isinstance(g.layers[0], Layer)
    assert g.activation == "tanh"
    graphc.check_grads(lambda w0: _apply(Model([Layer(w0, np.zeros(4)), model.layers[1]]), x),
                       (model.layers[0].w,))
    f = graphc.compile(_apply)
    f(model, x)
    f(dataclasses.replace(model, activation="sigmoid"), x)     # meta field: a new signature
    assert len(f._cache) == 2
    np.testing.assert_allclose(
        f(dataclasses.replace(model, activation="sigmoid"), x),
        _apply(Model(model.layers, "sigmoid"), x), rtol=1e-12)


def test_unregistered_mutable_dataclass_is_refused():
    @dataclasses.dataclass
    class Loose:
        w: np.ndarray

    with pytest.raises(graphc.GraphcError):
        graphc.compile(lambda m: m.w * 2)(Loose(np.ones(2)))


def test_dict_outputs_keep_insertion_order():
    out = graphc.compile(lambda x: {"z": x, "a": x * 2, "m": x * 3})(np.ones(1))
    assert list(out) == ["z", "a", "m"]
    g = graphc.grad(lambda p: p["z"].sum() + 2 * p["a"].sum())({"z": np.ones(2), "a": np.ones(2)})
    assert list(g) == ["z", "a"]
    np.testing.assert_array_equal(g["a"], 2.0)


def test_none_leaves():
    out = graphc.compile(lambda t: (t[0] * 2, None, {"k": None}))((np.ones(2), None))
    assert out[1] is None and out[2] == {"k": None}


def test_tree_helpers():
    tree = {"a": (np.ones(2), 3.0), "b": [np.zeros(1)], "c": None}
    leaves = graphc.tree_leaves(tree)
    assert len(leaves) == 3
    doubled = graphc.tree_map(lambda x, y: x * 2 + y, tree, tree)
    assert doubled["a"][1] == 9.0 and doubled["c"] is None
    assert graphc.tree_structure(tree) == graphc.tree_structure(doubled)
    leaves, td = graphc.tree_flatten(tree)
    assert graphc.tree_unflatten(td, leaves)["a"][1] == 3.0
    with pytest.raises(graphc.GraphcError):
        graphc.tree_map(lambda x, y: x, tree, {"a": 1})


def test_carried_python_scalars_stay_weak():
    traces = []

    def step(w, t):
        traces.append(1)
        return w * (1.0 / (t + 1)), t + 1

    f = graphc.compile(step)
    w, t = np.ones(3, np.float32), 0
    for _ in range(4):
        w, t = f(w, t)
    assert w.dtype == np.float32 and isinstance(t, int) and t == 4
    assert len(traces) == 1
    np.testing.assert_allclose(w, 1 / 24, rtol=1e-6)
    lr = graphc.compile(lambda w, lr: (w - lr * w, lr * 0.5))
    w, rate = np.ones(2, np.float32), 0.1
    for _ in range(3):
        w, rate = lr(w, rate)
    assert w.dtype == np.float32 and isinstance(rate, float) and rate == 0.0125
    assert len(lr._cache) == 1


def test_gradients_of_python_scalars_stay_weak():
    """A Python float's gradient is weak (as in JAX): a Python float back, so a loop that
    feeds it in again keeps one signature, and float32 arrays it meets stay float32."""
    vg = graphc.compile(graphc.value_and_grad(lambda w, b, x: (w * x + b) ** 2, argnums=(0, 1)))
    value, (dw, db) = vg(1.5, 0.5, 2.0)
    assert (type(value), type(dw), type(db)) == (float, float, float)
    assert (value, dw, db) == (12.25, 14.0, 7.0)
    g = graphc.compile(graphc.grad(lambda w, x: graphc.sum(w * x)))
    x = np.arange(3, dtype=np.float32)
    dw = g(2.0, x)
    assert type(dw) is float and dw == 3.0
    step = graphc.compile(lambda w, x: w * x + graphc.grad(lambda v: v * v)(w))
    assert step(dw, x).dtype == np.float32 and len(step._cache) == 1
    _, vjp_fn = graphc.vjp(lambda a: a * 3.0, 2.0)
    assert vjp_fn(1.0)[0] == 3.0


def test_check_grads_passes_integer_arguments_through():
    labels = np.array([0, 2])
    seen = []

    def f(x, labels, n):
        seen.append(labels)
        return graphc.sum(graphc.one_hot(labels, 3) * x ** n)

    graphc.check_grads(f, (np.ones((2, 3)), labels, 3), order=2)
    assert all(getattr(s, "dtype", np.int64) == np.int64 for s in seen)
    mask = np.array([True, False, True])
    graphc.check_grads(lambda x, m: graphc.sum(graphc.where(m, x * x, 0.0)),
                       (np.linspace(0.5, 1.5, 3), mask), argnums=0)
    with pytest.raises(graphc.GraphcError):
        graphc.check_grads(lambda x, m: x, (np.ones(2), mask), argnums=1)
    with pytest.raises(AssertionError, match="argument 0"):      # still catches a wrong rule
        graphc.check_grads(lambda x, k: graphc.sum(graphc.stop_gradient(x) * x * k),
                           (np.ones(2), np.array([1, 2])))


def test_tracer_error_hints_name_only_existing_ops():
    for fn, name in ((lambda x: np.cumprod(x), "cumprod"), (lambda x: np.add.reduce(x), "add")):
        with pytest.raises(graphc.TracerError) as info:
            graphc.compile(fn)(np.ones(3))
        assert f"graphc.{name}" not in str(info.value)
        assert "no op for this" in str(info.value)
    with pytest.raises(graphc.TracerError, match="graphc.einsum"):
        graphc.compile(lambda x: np.einsum("i->", x, optimize=True))(np.ones(3))
    with pytest.raises(graphc.TracerError, match="graphc.cumsum"):
        graphc.compile(lambda x: np.cumsum(x, out=x))(np.ones(3))
    for name in ("argmax", "var", "std", "einsum", "cumsum"):       # these numpy calls trace
        assert name in graphc.ops.api.ARRAY_FUNCTIONS


def test_traces_name_the_function_its_arguments_and_source_lines():
    def loss(params, x):
        h = graphc.tanh(x @ params["w1"])      # the line the matmul and tanh come from
        return (h * h).sum()

    text = str(graphc.trace(graphc.value_and_grad(loss), {"w1": np.ones((3, 2))},
                            np.ones((1, 3))))
    assert text.startswith("graph loss(params['w1']: f64[3,2], x: f64[1,3])")
    assert "matmul x params['w1']" in text
    line = loss.__code__.co_firstlineno + 1
    assert f"test_api_usability.py:{line}" in text
    explained = graphc.compile(graphc.grad(loss)).explain({"w1": np.ones((3, 2))}, np.ones(3))
    assert "params['w1']" in explained and "graph loss(" in explained


def test_backward_nodes_carry_their_forward_lines():
    def f(x):
        y = graphc.exp(x)
        return graphc.log(y).sum()

    graph = graphc.trace(graphc.grad(f), np.ones(2))
    lines = {n.op.name: n.where[1] for n in graph.nodes if n.where is not None}
    first = f.__code__.co_firstlineno
    assert lines["exp"] == first + 1 and lines["div"] == first + 2
