"""The optimization passes: before/after structure of each rule, exactness (NaN, Inf, -0.0),
linear-time rewriting of deep graphs, and the pipeline's switches."""

import numpy as np
import pytest

import graphc
from graphc.capture import trace_to_graph
from graphc.passes import dce, fold, optimize, simplify


def graph_of(fn, *args):
    return trace_to_graph(fn, args)[0]


def ops(graph) -> list[str]:
    return [n.op.name for n in graph.nodes if n.src]


def simplified(fn, *args):
    g, fired = simplify.run(graph_of(fn, *args))
    g.verify(full=True)
    return g, fired


X = np.linspace(-2, 2, 6).reshape(2, 3)


# ---- simplify: one test per rule, comparing structure ----------------------------------

@pytest.mark.parametrize("fn,rule", [
    (lambda x: x * 1.0, "mul_one"),
    (lambda x: 1.0 * x, "mul_one"),
    (lambda x: x / 1.0, "div_one"),
    (lambda x: x - 0.0, "sub_zero"),
    (lambda x: x + (-0.0), "add_zero"),
    (lambda x: graphc.negative(graphc.negative(x)), "neg_neg"),
    (lambda x: graphc.where(x > 0, x, x), "where_same"),
    (lambda x: x.astype(np.float32).astype(np.float64).astype(np.float32),
     "cast_roundtrip"),
    (lambda x: graphc.transpose(graphc.transpose(x)), "transpose_transpose"),
    (lambda x: graphc.reshape(graphc.reshape(x, (3, 2)), (2, 3)), "reshape_reshape"),
    (lambda x: graphc.stop_gradient(x), "stop_gradient_identity"),
])
def test_rule_removes_the_identity(fn, rule):
    x = X.astype(np.float32) if rule == "cast_roundtrip" else X
    g, fired = simplified(fn, x)
    assert fired[rule] >= 1
    assert g.outputs[0] is g.inputs[0]          # nothing left but the input


def test_mul_by_minus_one_is_a_negation():
    g, fired = simplified(lambda x: x * -1.0, X)
    assert ops(g) == ["neg"] and fired["mul_minus_one"] == 1


def test_broadcast_of_broadcast_is_one_broadcast():
    g, fired = simplified(lambda x: graphc.broadcast_to(graphc.broadcast_to(x, (1, 3)),
                                                        (4, 3)), np.ones((1, 1)))
    assert ops(g) == ["broadcast_to"] and fired["broadcast_broadcast"] == 1
    assert g.outputs[0].src[0] is g.inputs[0]


def test_sum_of_a_broadcast_is_a_multiply_by_the_count():
    def f(v):
        return graphc.sum(graphc.broadcast_to(v, (5, 3)), axis=0)
    g, fired = simplified(f, np.arange(3.0))
    assert fired["sum_broadcast"] == 1
    assert "broadcast_to" not in ops(g) and "sum" not in ops(g)
    np.testing.assert_array_equal(graphc.compile(f)(np.arange(3.0)), np.arange(3.0) * 5)


def test_sum_of_a_broadcast_over_real_and_stretched_axes():
    def f(v):
        return graphc.sum(graphc.broadcast_to(v, (4, 3)))
    g, fired = simplified(f, np.arange(3.0).reshape(1, 3))
    assert fired["sum_broadcast"] == 1 and "broadcast_to" not in ops(g)
    assert graphc.compile(f)(np.arange(3.0).reshape(1, 3)) == 12.0


def test_exp_log_only_where_x_is_nonnegative():
    g, fired = simplified(lambda x: graphc.exp(graphc.log(graphc.exp(x))), X)
    assert ops(g) == ["exp"] and fired["exp_log"] == 1
    g, fired = simplified(lambda x: graphc.exp(graphc.log(x)), X)     # x may be negative
    assert ops(g) == ["log", "exp"] and not fired
    g, _ = simplified(lambda x: graphc.log(graphc.exp(x)), X)      # exp overflows: kept
    assert ops(g) == ["exp", "log"]


def test_value_changing_rules_are_off_by_default(monkeypatch):
    def f(x):
        return x * 0.0 + (x + 0.0)
    g, fired = simplified(f, X)
    assert ops(g).count("mul") == 1 and ops(g).count("add") == 2 and not fired
    monkeypatch.setenv("GRAPHC_VALUE_CHANGING_REWRITES", "1")
    g, fired = simplified(f, X)
    assert fired["mul_zero_value_changing"] == 1 and fired["add_zero_value_changing"] >= 1


def test_nan_inf_and_signed_zero_survive_optimization():
    x = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.5])

    def f(x):
        return (x * 0.0, x + 0.0, x * 1.0 - 0.0, graphc.negative(graphc.negative(x)),
                graphc.exp(graphc.log(x * x)), graphc.sum(graphc.broadcast_to(x[3:4], (3,))))
    got = graphc.compile(f)(x)
    with np.errstate(all="ignore"):
        want = (x * 0.0, x + 0.0, x * 1.0 - 0.0, x, np.exp(np.log(x * x)),
                np.sum(np.broadcast_to(x[3:4], (3,))))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


# ---- constant folding and dce ----------------------------------------------------------

def test_fold_computes_constant_subgraphs():
    def f(x):
        c = graphc.sum(graphc.transpose(np.arange(6.0).reshape(2, 3)) * 2.0, axis=0)
        return x + c
    g, fired = fold.run(graph_of(f, np.ones(2)))
    assert fired["fold_constant"] >= 1 and ops(g) == ["add"]
    np.testing.assert_array_equal(graphc.compile(f)(np.ones(2)), 1 + np.array([6.0, 24.0]))


def test_fold_keeps_runtime_semantics():
    g, _ = fold.run(graph_of(lambda x: x + graphc.sum(np.array([np.inf, -np.inf])), X))
    (c,) = [s for s in g.outputs[0].src if not s.op.name == "input"]
    assert np.isnan(c.arg.value).all()


def test_dce_keeps_the_live_nodes_and_unused_inputs():
    g, _ = dce.run(graph_of(lambda x, y: x * 2.0, X, X))
    assert ops(g) == ["mul"] and len(g.inputs) == 2


def test_pass_log_names_passes_nodes_and_rules():
    g = optimize(graph_of(lambda x: graphc.sum(graphc.negative(graphc.negative(x)) * 1.0), X))
    names = [r.name for r in g.pass_log]
    assert names == ["fold+simplify", "dce"]         # adjacent rule passes: one sweep
    simp = g.pass_log[0]
    assert simp.nodes_before > simp.nodes_after and simp.fired["neg_neg"] == 1
    assert "mul_one x1" in str(simp)


def test_disabled_passes_are_skipped(monkeypatch):
    monkeypatch.setenv("GRAPHC_DISABLE_PASSES", "simplify,fuse")
    g = optimize(graph_of(lambda x: x * 1.0, X))
    assert [r.name for r in g.pass_log] == ["fold", "dce"] and ops(g) == ["mul"]
    f = graphc.compile(lambda x: graphc.sum(graphc.exp(x) * 2.0))
    assert f.stats(X)["kernels"] == 3 and f.stats(X)["fused_kernels"] == 0
    monkeypatch.setenv("GRAPHC_DISABLE_PASSES", "fold")
    g = optimize(graph_of(lambda x: x * 1.0, X))
    assert [r.name for r in g.pass_log] == ["simplify", "dce"] and ops(g) == []


def test_optimize_false_skips_every_pass():
    f = graphc.compile(lambda x: graphc.sum(graphc.exp(x) * 1.0), optimize=False)
    assert f.stats(X)["nodes"] == 5 and f.stats(X)["kernels"] == 3
    assert "optimize=False" in f.explain(X)


def test_deep_graphs_rewrite_without_recursion():
    def chain(x):
        for k in range(30_000):
            x = -(x * 1.0) if k % 2 else x * 1.0001
        return x
    g = optimize(graph_of(chain, np.float64(1.0)))
    assert ops(g).count("mul") == 15_000 and ops(g).count("neg") == 15_000
    assert len(g.nodes) == 30_002           # and the input and the constant 1.0001
