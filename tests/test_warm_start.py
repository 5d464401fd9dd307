"""Warm starts (graphc/warm.py): a runner whose graph was lowered before loads its module from
the record without scheduling or generating C, and computes what a cold runner computes. A
wrong hit would be silently wrong numbers, so every part of the record's key is changed once
here and must miss."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc
from graphc import build, native, warm
from graphc.ir import Graph

REPO = Path(__file__).resolve().parents[1]


def _f(x, y):
    return graphc.sum(graphc.exp(x * 2.5) + y, axis=0) - 0.5


def _graph(fn=_f, shape=(3, 4), dtype=np.float64) -> Graph:
    return graphc.trace(fn, np.ones(shape, dtype), np.ones(shape, dtype))


def _args(shape=(3, 4)):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape), rng.standard_normal(shape)]


def _forget_loaded_modules(monkeypatch) -> None:
    """As in a new process: no module in memory (the disk cache and records stay)."""
    monkeypatch.setattr(build, "_loaded", {})
    monkeypatch.setattr(build, "_by_key", {})


def _no_codegen(*_):
    raise AssertionError("a warm start generated C")


def test_a_second_runner_starts_warm_and_computes_the_same(monkeypatch):
    g = _graph()
    cold = native.CRunner(g)
    want = cold.call(_args())
    _forget_loaded_modules(monkeypatch)
    monkeypatch.setattr(native, "generate_c", _no_codegen)
    hot = native.CRunner(g)
    got = hot.call(_args())
    np.testing.assert_array_equal(got[0], want[0])
    assert hot.stats == cold.stats and hot.aliases == cold.aliases
    monkeypatch.undo()
    # on demand: the same C, the C the loaded module was built from, and its description
    source, cdef = hot._generation()[:2]
    assert source == cold.source
    assert build.module_key(source, cdef) == warm.load(warm.digest(g, True))["module"]
    assert hot.describe() == cold.describe()
    assert "/* " in hot.annotated_source()


def test_compiled_function_warm_keeps_explain_and_source(monkeypatch):
    def fn(x):
        return graphc.tanh(x) * 3.0 + 1.0
    f = graphc.compile(fn)
    x = np.linspace(-2, 2, 7)
    want = f(x)
    from graphc import compiler
    monkeypatch.setattr(compiler, "_RUNNERS", type(compiler._RUNNERS)())
    _forget_loaded_modules(monkeypatch)
    g = graphc.compile(fn)
    with monkeypatch.context() as m:
        m.setattr(native, "generate_c", _no_codegen)
        np.testing.assert_array_equal(g(x), want)
    assert g.source(x, annotated=False) == f.source(x, annotated=False)
    assert g.explain(x) == f.explain(x)


def test_a_train_step_starts_warm(monkeypatch):
    def step():
        rng = np.random.default_rng(1)
        params = {"w": rng.standard_normal((4, 2)), "b": np.zeros(2)}
        opt = graphc.optim.Adam(params, lr=0.01)

        def loss(p, x):
            return graphc.mean((x @ p["w"] + p["b"]) ** 2)
        return graphc.train_step(loss, opt), params
    x = np.arange(12.0).reshape(3, 4) / 10
    s1, p1 = step()
    want = [s1(x) for _ in range(3)]
    _forget_loaded_modules(monkeypatch)
    monkeypatch.setattr(native, "generate_c", _no_codegen)
    s2, p2 = step()
    assert [s2(x) for _ in range(3)] == want
    np.testing.assert_array_equal(p2["w"], p1["w"])


def test_every_part_of_the_key_matters(monkeypatch):
    base = warm.digest(_graph(), True)
    assert base is not None and base == warm.digest(_graph(), True)
    others = {
        "a constant": warm.digest(_graph(lambda x, y: graphc.sum(graphc.exp(x * 2.25) + y,
                                                                 axis=0) - 0.5), True),
        "a shape": warm.digest(_graph(shape=(4, 3)), True),
        "a dtype": warm.digest(_graph(dtype=np.float32), True),
        "an attribute": warm.digest(_graph(lambda x, y: graphc.sum(graphc.exp(x * 2.5) + y,
                                                                   axis=1) - 0.5), True),
        "the edges": warm.digest(_graph(lambda x, y: graphc.sum(graphc.exp(y * 2.5) + x,
                                                                axis=0) - 0.5), True),
        "fuse": warm.digest(_graph(), False),
    }
    assert (warm.digest(_graph(lambda x, y: x + y * 0.0), True)
            != warm.digest(_graph(lambda x, y: x + y * -0.0), True))
    g = _graph(lambda x, y: (x + y, x * 2.0))
    aliased = Graph(g.inputs, g.outputs, g.name, aliases=[(0, 0)])
    assert warm.digest(aliased, True) != warm.digest(g, True)
    with monkeypatch.context() as m:
        m.setenv("GRAPHC_TAPE_MIN_KERNELS", "7")
        others["a setting"] = warm.digest(_graph(), True)
    with monkeypatch.context() as m:
        m.setattr(build, "_KEY_FLAGS", (*build._KEY_FLAGS, "-fno-tree-vectorize"))
        others["a compile flag"] = warm.digest(_graph(), True)
    with monkeypatch.context() as m:
        m.setenv("CC", "gcc -O0")
        others["the compiler"] = warm.digest(_graph(), True)
    with monkeypatch.context() as m:
        m.setattr(warm, "_code_hash", lambda: "edited")
        others["graphc's code"] = warm.digest(_graph(), True)
    with monkeypatch.context() as m:
        m.setattr(build, "graphc_version", "0.0.0")
        build._environment_id.cache_clear()
        others["graphc's version"] = warm.digest(_graph(), True)
    build._environment_id.cache_clear()
    assert base == warm.digest(_graph(), True)
    changed = {what for what, d in others.items() if d is None or d == base}
    assert not changed, f"no miss when changing {sorted(changed)}"
    assert len(set(others.values())) == len(others)


def test_the_key_is_the_same_in_another_process():
    code = ("import numpy as np, graphc; from graphc import warm;"
            "print(warm.digest(graphc.trace(lambda x: graphc.exp(x * 2.5) - 0.5,"
            " np.ones(3)), True))")
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    keys = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={**env, "PYTHONHASHSEED": seed}).stdout.strip()
            for seed in ("1", "2")}
    here = warm.digest(graphc.trace(lambda x: graphc.exp(x * 2.5) - 0.5, np.ones(3)), True)
    assert keys == {here}


def test_an_arg_without_a_stable_encoding_or_the_switch_off_has_no_key(monkeypatch):
    monkeypatch.setenv("GRAPHC_WARM_START", "0")
    assert warm.digest(_graph(), True) is None
    with pytest.raises(warm._Unstable):
        warm._encode(("axis", object()))
    assert warm._encode(1) != warm._encode(True) != warm._encode(1.0)


def test_a_missing_module_or_a_corrupt_record_falls_back_to_a_cold_start(monkeypatch):
    g = _graph(lambda x, y: graphc.maximum(x, y) * 1.75)
    want = native.CRunner(g).call(_args())
    key = warm.digest(g, True)
    record = warm.load(key)
    warm.save(key, {**record, "module": "0" * 64})          # names no built module
    _forget_loaded_modules(monkeypatch)
    np.testing.assert_array_equal(native.CRunner(g).call(_args())[0], want[0])
    assert warm.load(key)["module"] == record["module"]     # the cold start rewrote it
    warm._path(key).write_bytes(b"not a pickle")
    assert warm.load(key) is None
    _forget_loaded_modules(monkeypatch)
    np.testing.assert_array_equal(native.CRunner(g).call(_args())[0], want[0])
    assert warm.load(key) == record


def test_cache_clear_removes_the_records(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    key = warm.digest(_graph(), True)
    warm.save(key, {"module": "0" * 64})
    assert warm.load(key)["module"] == "0" * 64
    build.cache_clear()
    assert warm.load(key) is None and not (tmp_path / "plans").exists()
