"""Pytrees (nested tuples, lists, dicts) and Python scalars as inputs and outputs.

API.md, section Values.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import EXACT, FD, FWD64, close, numeric_grad

import graphc


def _assert_same_structure(a, b, path="root"):
    """Same containers (tuple/list/dict with the same keys) and leaf shapes."""
    assert type(a) is type(b) or (not isinstance(a, (tuple, list, dict))
                                  and not isinstance(b, (tuple, list, dict))), (path, type(a),
                                                                                 type(b))
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _assert_same_structure(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_structure(x, y, f"{path}[{i}]")
    else:
        assert np.shape(a) == np.shape(b), (path, np.shape(a), np.shape(b))


# --------------------------------------------------------------------------------------------
# inputs and outputs
# --------------------------------------------------------------------------------------------


def test_dict_input():
    f = graphc.compile(lambda p: p["w"] * p["x"] + p["b"])
    p = {"w": np.array([1.0, 2.0]), "x": np.array([3.0, -1.0]), "b": np.array([0.5, 0.5])}
    close(f(p), [3.5, -1.5], **EXACT)


def test_nested_input_tuple_list_dict():
    def f(tree):
        (a, [b, c]), d = tree
        return a * b + c - d["e"][0] * d["e"][1]

    tree = ((np.array([1.0, 2.0]), [np.array([3.0, 4.0]), np.array([0.5, 0.25])]),
            {"e": (np.array([2.0, 2.0]), np.array([1.0, -1.0]))})
    close(graphc.compile(f)(tree), [1.5, 10.25], **EXACT)


def test_nested_output_structure_mirrors():
    def f(x, y):
        return {"sum": x + y, "pair": (x * y, [graphc.sum(x), {"neg": -y}]), "list": [x, y]}

    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    out = graphc.compile(f)(x, y)
    assert isinstance(out, dict) and set(out) == {"sum", "pair", "list"}
    assert isinstance(out["pair"], tuple) and len(out["pair"]) == 2
    assert isinstance(out["pair"][1], list) and isinstance(out["pair"][1][1], dict)
    assert isinstance(out["list"], list)
    close(out["sum"], [4.0, 6.0], **EXACT)
    close(out["pair"][0], [3.0, 8.0], **EXACT)
    close(out["pair"][1][0], 3.0, **EXACT)
    close(out["pair"][1][1]["neg"], [-3.0, -4.0], **EXACT)
    close(out["list"][0], x, **EXACT)
    close(out["list"][1], y, **EXACT)
    for leaf in (out["sum"], out["pair"][0], out["list"][0]):
        assert isinstance(leaf, np.ndarray)


def test_single_element_containers_are_kept():
    out = graphc.compile(lambda x: ((x,), [x * 2.0], {"only": x + 1.0}))(np.array([1.0]))
    assert isinstance(out, tuple) and len(out) == 3
    assert isinstance(out[0], tuple) and len(out[0]) == 1
    assert isinstance(out[1], list) and len(out[1]) == 1
    assert isinstance(out[2], dict) and list(out[2]) == ["only"]
    close(out[1][0], [2.0], **EXACT)


def test_dict_output_with_many_keys_values_by_key():
    # the mapping from keys to values survives whatever order the leaves are flattened in
    keys = ["zeta", "alpha", "mid", "b", "A"]

    def f(x):
        return {k: x * float(i + 1) for i, k in enumerate(keys)}

    out = graphc.compile(f)(np.array([1.0, 10.0]))
    for i, k in enumerate(keys):
        close(out[k], [i + 1.0, 10.0 * (i + 1)], **EXACT)


def test_dict_input_keys_not_sorted_by_insertion():
    p = {"b": np.array([1.0]), "a": np.array([100.0]), "c": np.array([10000.0])}
    out = graphc.compile(lambda p: p["a"] - p["b"] + 2.0 * p["c"])(p)
    close(out, [20099.0], **EXACT)
    p2 = {"c": np.array([10000.0]), "a": np.array([100.0]), "b": np.array([1.0])}
    close(graphc.compile(lambda p: p["a"] - p["b"] + 2.0 * p["c"])(p2), [20099.0], **EXACT)


# --------------------------------------------------------------------------------------------
# gradients have the structure of the arguments
# --------------------------------------------------------------------------------------------


def _mlp_loss(params, x, y):
    h = graphc.tanh(x @ params["layers"][0]["w"] + params["layers"][0]["b"])
    out = h @ params["layers"][1]["w"] + params["layers"][1]["b"]
    return graphc.mean((out - y) ** 2) + params["scale"][0] * graphc.sum(params["scale"][1] ** 2)


def _mlp_params(rng):
    return {"layers": [{"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)},
                       {"w": rng.standard_normal((4, 2)), "b": rng.standard_normal(2)}],
            "scale": (np.array(0.1), rng.standard_normal(3))}


def _flat(p):
    return [p["layers"][0]["w"], p["layers"][0]["b"], p["layers"][1]["w"], p["layers"][1]["b"],
            p["scale"][0], p["scale"][1]]


def _mlp_loss_flat_np(x, y):
    def f(w0, b0, w1, b1, s0, s1):
        h = np.tanh(x @ w0 + b0)
        out = h @ w1 + b1
        return np.mean((out - y) ** 2) + s0 * np.sum(s1 ** 2)
    return f


def test_grad_of_nested_params_has_their_structure():
    rng = np.random.default_rng(0)
    p = _mlp_params(rng)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    g = graphc.grad(_mlp_loss)(p, x, y)
    _assert_same_structure(g, p)
    fnp = _mlp_loss_flat_np(x, y)
    flat = _flat(p)
    for i, gi in enumerate(_flat(g)):
        close(gi, numeric_grad(fnp, flat, i), **FD)


def test_value_and_grad_nested_params_and_argnums_tuple():
    rng = np.random.default_rng(1)
    p = _mlp_params(rng)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    v, (gp, gx) = graphc.value_and_grad(_mlp_loss, argnums=(0, 1))(p, x, y)
    _assert_same_structure(gp, p)
    assert gx.shape == x.shape
    fnp = _mlp_loss_flat_np(x, y)
    close(v, fnp(*_flat(p)), **FWD64)

    def loss_x(x):
        return _mlp_loss_flat_np(x, y)(*_flat(p))

    close(gx, numeric_grad(loss_x, (x,)), **FD)


@pytest.mark.parametrize("container", [tuple, list])
def test_grad_of_sequence_params(container):
    def loss(ps):
        a, b, c = ps
        return graphc.sum(a * b) + graphc.sum(c ** 2)

    a, b, c = np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array([[1.0, -1.0]])
    g = graphc.grad(loss)(container([a, b, c]))
    assert type(g) is container and len(g) == 3
    close(g[0], b, **EXACT)
    close(g[1], a, **EXACT)
    close(g[2], 2 * c, **EXACT)


def test_grad_of_dict_params_keys_and_values():
    def loss(p):
        return graphc.sum(p["w"] * 3.0) + graphc.sum(p["b"] ** 2) * p["k"]

    p = {"w": np.array([1.0, 2.0, 3.0]), "b": np.array([0.5, -1.0]), "k": np.array(2.0)}
    g = graphc.grad(loss)(p)
    assert isinstance(g, dict) and set(g) == {"w", "b", "k"}
    close(g["w"], [3.0, 3.0, 3.0], **EXACT)
    close(g["b"], 2 * p["b"] * 2.0, **EXACT)
    close(g["k"], 1.25, **EXACT)
    assert np.shape(g["k"]) == ()


def test_grad_argnums_tuple_dict_and_list():
    def loss(d, lst, c):
        return graphc.sum(d["u"] * lst[0]) + graphc.sum(lst[1]) * c

    d, lst = {"u": np.array([1.0, 2.0])}, [np.array([3.0, 5.0]), np.array([1.0, 1.0, 1.0])]
    gd, gl = graphc.grad(loss, argnums=(0, 1))(d, lst, 2.0)
    assert isinstance(gd, dict) and isinstance(gl, list)
    close(gd["u"], [3.0, 5.0], **EXACT)
    close(gl[0], [1.0, 2.0], **EXACT)
    close(gl[1], [2.0, 2.0, 2.0], **EXACT)


def test_vjp_with_pytree_primal():
    def f(p):
        return {"out": p["a"] * p["b"], "s": graphc.sum(p["a"])}

    p = {"a": np.array([1.0, 2.0]), "b": np.array([3.0, 4.0])}
    out, vjp_fn = graphc.vjp(f, p)
    close(out["out"], [3.0, 8.0], **EXACT)
    (ct,) = vjp_fn({"out": np.array([1.0, 1.0]), "s": np.array(2.0)})
    assert isinstance(ct, dict) and set(ct) == {"a", "b"}
    close(ct["a"], p["b"] + 2.0, **EXACT)
    close(ct["b"], p["a"], **EXACT)


def test_value_and_grad_has_aux_with_pytree_aux():
    def f(p):
        loss = graphc.sum(p[0] ** 2)
        return loss, {"first": p[0][0], "stats": [graphc.mean(p[1]), p[1] * 2.0]}

    p = (np.array([1.0, -2.0]), np.array([4.0, 6.0]))
    (v, aux), g = graphc.value_and_grad(f, has_aux=True)(p)
    close(v, 5.0, **EXACT)
    assert isinstance(aux, dict) and isinstance(aux["stats"], list)
    close(aux["first"], 1.0, **EXACT)
    close(aux["stats"][0], 5.0, **EXACT)
    close(aux["stats"][1], [8.0, 12.0], **EXACT)
    assert isinstance(g, tuple) and len(g) == 2
    close(g[0], [2.0, -4.0], **EXACT)
    close(g[1], [0.0, 0.0], **EXACT)


# --------------------------------------------------------------------------------------------
# Python scalars (weakly typed)
# --------------------------------------------------------------------------------------------


def test_python_scalars_as_inputs():
    f = graphc.compile(lambda a, x, n: a * x + n)
    out = f(2.5, np.array([1.0, 2.0]), 3)
    close(out, [5.5, 8.0], **EXACT)
    assert out.dtype == np.float64


def test_python_scalars_take_dtype_of_float32_array():
    f = graphc.compile(lambda a, x, n: a * x + n)
    out = f(2.5, np.array([1.0, 2.0], dtype=np.float32), 3)
    assert out.dtype == np.float32
    close(out, [5.5, 8.0], **EXACT)


def test_python_float_alone_is_float64():
    out = graphc.compile(lambda a, b: a * b + 0.5)(1.5, 2.0)
    assert np.asarray(out).dtype == np.float64
    close(out, 3.5, **EXACT)


def test_python_scalar_new_value_same_signature():
    calls = []

    def f(a, x):
        calls.append(1)
        return a * x

    g = graphc.compile(f)
    close(g(2.0, np.array([1.0, 3.0])), [2.0, 6.0], **EXACT)
    close(g(-4.0, np.array([1.0, 3.0])), [-4.0, -12.0], **EXACT)  # a is an input, not baked in
    close(g(0.5, np.array([2.0, 4.0])), [1.0, 2.0], **EXACT)
    # a Python float's value is not part of the signature (shapes, dtypes, structure)
    assert len(calls) == 1


def test_python_scalars_inside_pytree():
    f = graphc.compile(lambda p: p["w"] * p["s"] + p["t"][0])
    close(f({"w": np.array([1.0, 2.0]), "s": 0.5, "t": (1.0,)}), [1.5, 2.0], **EXACT)
    close(f({"w": np.array([1.0, 2.0]), "s": 3.0, "t": (-1.0,)}), [2.0, 5.0], **EXACT)
    out32 = f({"w": np.array([1.0, 2.0], np.float32), "s": 3.0, "t": (-1.0,)})
    assert out32.dtype == np.float32


def test_grad_wrt_python_float():
    g = graphc.grad(lambda a, x: graphc.sum(a * x * a))(1.5, np.array([1.0, 2.0, 3.0]))
    assert np.shape(g) == ()
    close(g, 2 * 1.5 * 6.0, **EXACT)


def test_grad_wrt_python_float_next_to_float32():
    g = graphc.grad(lambda a, x: graphc.sum(a * x), argnums=(0, 1))(
        2.0, np.array([1.0, 2.0], np.float32))
    close(g[0], 3.0, **EXACT)
    assert np.asarray(g[1]).dtype == np.float32
    close(g[1], [2.0, 2.0], **EXACT)


def test_grad_wrt_dict_of_python_floats():
    g = graphc.grad(lambda p: p["a"] ** 2 * p["b"])({"a": 3.0, "b": 2.0})
    assert isinstance(g, dict)
    close(g["a"], 12.0, **EXACT)
    close(g["b"], 9.0, **EXACT)


# --------------------------------------------------------------------------------------------
# another structure: compiles afresh; a structure fn cannot accept: GraphcError
# --------------------------------------------------------------------------------------------


def test_new_list_length_compiles_afresh():
    calls = []

    def f(xs):
        calls.append(1)
        total = xs[0]
        for x in xs[1:]:
            total = total + x
        return total

    g = graphc.compile(f)
    close(g([np.ones(2), np.ones(2)]), [2.0, 2.0], **EXACT)
    close(g([np.ones(2), np.ones(2), np.ones(2)]), [3.0, 3.0], **EXACT)
    assert len(calls) == 2
    close(g([np.ones(2) * 4, np.ones(2)]), [5.0, 5.0], **EXACT)
    assert len(calls) == 2


def test_new_dict_keys_compile_afresh():
    def f(d):
        return graphc.sum(graphc.stack([graphc.sum(v) for v in d.values()]))

    g = graphc.compile(f)
    close(g({"a": np.ones(2), "b": np.ones(3)}), 5.0, **EXACT)
    close(g({"a": np.ones(2), "b": np.ones(3), "c": np.ones(4)}), 9.0, **EXACT)
    close(g({"x": np.ones(1)}), 1.0, **EXACT)


def test_tuple_vs_list_is_a_new_structure_not_an_error():
    g = graphc.compile(lambda s: s[0] * s[1])
    close(g((np.array([2.0]), np.array([3.0]))), [6.0], **EXACT)
    close(g([np.array([2.0]), np.array([5.0])]), [10.0], **EXACT)


def test_grad_with_new_structure_compiles_afresh():
    df = graphc.grad(lambda ps: graphc.sum(graphc.stack([graphc.sum(p * p) for p in ps])))
    g2 = df([np.array([1.0]), np.array([2.0])])
    g3 = df([np.array([1.0]), np.array([2.0]), np.array([3.0, 4.0])])
    assert len(g2) == 2 and len(g3) == 3
    close(g3[2], [6.0, 8.0], **EXACT)


def test_structure_fn_cannot_accept_list_for_dict_is_graphc_error():
    f = graphc.compile(lambda p: p["w"] * 2.0)
    close(f({"w": np.array([1.0])}), [2.0], **EXACT)
    with pytest.raises(graphc.GraphcError):
        f([np.array([1.0])])


def test_structure_fn_cannot_accept_missing_key_is_graphc_error():
    f = graphc.compile(lambda p: p["w"] * p["b"])
    with pytest.raises(graphc.GraphcError):
        f({"w": np.array([1.0])})


def test_structure_fn_cannot_accept_wrong_tuple_arity_is_graphc_error():
    def f(p):
        a, b = p
        return a + b

    g = graphc.compile(f)
    close(g((np.array([1.0]), np.array([2.0]))), [3.0], **EXACT)
    with pytest.raises(graphc.GraphcError):
        g((np.array([1.0]), np.array([2.0]), np.array([3.0])))


def test_structure_error_inside_grad_is_graphc_error():
    df = graphc.grad(lambda p: graphc.sum(p["w"] ** 2))
    close(df({"w": np.array([1.0, 2.0])})["w"], [2.0, 4.0], **EXACT)
    with pytest.raises(graphc.GraphcError):
        df((np.array([1.0, 2.0]),))
