"""The gemm's update epilogue: graphc_gemm_update computes d + alpha * (a @ b) with the
product's bits from the gemm, and a compiled `w - lr * (x.T @ g)` (SGD's update) runs as one
gemm call with it, giving the same bits as the fused loop it replaces."""

import numpy as np
import pytest
from test_gemm import ISAS, operand

import graphc
from graphc import compiler, rt
from graphc import schedule as schedule_module
from graphc.capture import trace_to_graph
from graphc.codegen.c import generate
from graphc.schedule import schedule


@pytest.fixture(params=ISAS)
def isa(request):
    rt.set_gemm_isa(request.param)
    yield request.param
    rt.set_gemm_isa(None)


# (M, K, N, layout of a, layout of b): the small path, edge tiles of every path, K = 0,
# several rank-KC updates (K > 384: the epilogue follows the last), few rows (M <= 288) and
# the general blocking (M > 288), N over one B block
CASES = [(1, 1, 1, "c", "c"), (37, 53, 29, "t", "c"), (13, 600, 33, "c", "t"),
         (150, 70, 40, "t", "t"), (300, 900, 70, "c", "c"), (20, 300, 1100, "s", "c"),
         (5, 0, 7, "c", "c"), (400, 256, 130, "t", "c")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n,la,lb", CASES)
def test_update_is_d_plus_alpha_times_the_gemm_product(isa, m, k, n, la, lb, dtype):
    """Each element is d + alpha * g with g the gemm's own product, rounded once (FMA) or
    twice (no FMA: the generic path): within 2 ulps of the float64 value of d + alpha * g,
    ulps of the larger of the result and alpha * g (which cancellation may leave larger)."""
    rng = np.random.default_rng(m + k + n)
    a, b = operand(rng, (m, k), dtype, la), operand(rng, (k, n), dtype, lb)
    d = operand(rng, (m, n), dtype)
    alpha = -0.37
    out = rt.gemm_update(a, b, d, alpha)
    g = rt.gemm(a, b).astype(np.float64)
    want = d.astype(np.float64) + float(dtype(alpha)) * g
    big = np.maximum(np.abs(want), np.abs(alpha * g))
    ulp = np.spacing(big.astype(dtype)).astype(np.float64)
    assert np.all(np.abs(out - want) <= 2 * ulp)
    before = d.copy()
    rt.gemm_update(a, b, d, alpha, out=out)
    assert np.array_equal(d, before)             # d is only read
    rt.gemm_update(a, b, d, alpha, out=d)        # in place: the same bits up to K = 256
    if k <= 256:
        assert d.tobytes() == out.tobytes()
    else:                                        # block by block through a buffer
        assert np.all(np.abs(d - want) <= 2 * ulp)


def test_update_rejects_out_overlapping_d_partly():
    a, b, d = np.ones((4, 3)), np.ones((3, 5)), np.ones((5, 5))
    with pytest.raises(ValueError, match="overlap"):
        rt.gemm_update(a, b, d[1:], 0.5, out=d[:4])


def sgd(w, x, g, v, h, lr):
    # scaled by a value, and by a literal; shapes differ, else both updates fuse into one
    # nest (a group of two updates: no epilogue)
    return w - lr * (x.T @ g), (x.T @ h) * 0.5 + v


def _args(dtype, rows, cols, batch):
    rng = np.random.default_rng(rows)
    return (rng.standard_normal((rows, cols)).astype(dtype),
            rng.standard_normal((batch, rows)).astype(dtype),
            rng.standard_normal((batch, cols)).astype(dtype),
            rng.standard_normal((rows, cols + 1)).astype(dtype),
            rng.standard_normal((batch, cols + 1)).astype(dtype), 0.05)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,cols,batch", [(40, 50, 30), (4, 5, 3)])   # gemm, loops
def test_sgd_update_is_the_gemm_epilogue_with_the_fused_loops_bits(dtype, rows, cols, batch,
                                                                   monkeypatch):
    args = _args(dtype, rows, cols, batch)
    sched = schedule(trace_to_graph(sgd, args)[0], fuse=True)
    updates = [k for k in sched.kernels if k.kind == "matmul"]
    assert [k.epilogue for k in updates] == ["sub", "add"]
    assert not [k for k in sched.kernels if k.kind == "fused"]     # no loop left for them
    if rows * cols * batch > 2048:
        assert graphc.compile(sgd).source(*args).count("gc_gemm_update_") >= 2
    fused = graphc.compile(sgd)(*args)
    monkeypatch.setattr(schedule_module, "update_epilogues", lambda graph, groups: {})
    monkeypatch.setenv("GRAPHC_WARM_START", "0")     # a patched plan: no records, and no
    monkeypatch.setattr(compiler, "_RUNNERS", type(compiler._RUNNERS)())   # runner reused
    loops = graphc.compile(sgd)(*args)
    for a, b in zip(fused, loops):
        assert a.tobytes() == b.tobytes()
    w, x, g, v, h, lr = (np.asarray(a, np.float64) for a in args)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(fused[0], w - lr * (x.T @ g), rtol=tol, atol=tol)
    np.testing.assert_allclose(fused[1], (x.T @ h) * 0.5 + v, rtol=tol, atol=tol)


def test_no_epilogue_when_the_product_is_read_elsewhere():
    def f(w, x, g, v, h, lr):
        p = x.T @ g
        return w - lr * p, p
    args = _args(np.float32, 40, 50, 30)
    sched = schedule(trace_to_graph(f, args)[0], fuse=True)
    assert [k.epilogue for k in sched.kernels if k.kind == "matmul"] == [""]
    new_w, p = graphc.compile(f)(*args)
    np.testing.assert_allclose(new_w, args[0] - 0.05 * p, rtol=1e-5, atol=1e-6)


def _sgd_step(sizes, dtype, monkeypatch=None, in_place="1"):
    if monkeypatch is not None:
        monkeypatch.setenv("GRAPHC_UPDATE_IN_PLACE", in_place)
    model = graphc.nn.MLP(sizes, activation="relu", seed=7, dtype=dtype)
    step = graphc.train_step(lambda p, x, y: graphc.nn.cross_entropy(model.apply(p, x), y),
                             graphc.optim.SGD(model.params, lr=0.1))
    return model, step


@pytest.mark.parametrize("sizes", [(48, 64, 5), (4, 6, 3)])     # gemm calls, loops
def test_sgd_step_updates_parameters_in_place_with_the_same_bits(sizes, monkeypatch):
    """train_step's SGD: each weight gradient gemm (K = batch <= 256, after the label check)
    writes W - lr * dW straight into W: no copy into place, the same bits as the copy, and a
    bad label still leaves every parameter as it was (the guard runs before the gemm)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], 40)
    runs = {}
    for in_place in ("1", "0"):
        model, step = _sgd_step(sizes, np.float32, monkeypatch, in_place)
        losses = [float(step(x, y)) for _ in range(3)]
        runs[in_place] = (losses, {k: v.copy() for k, v in model.params.items()})
        sched = generate(step.graph)[2]
        updates = [k for k in sched.kernels if k.epilogue]
        direct = [k for k in updates if k.out.buf.kind == "in"]
        copied = [k for k in sched.kernels if k.note == "in place"
                  and any(k.srcs[0].buf is u.out.buf for u in updates)]
        assert len(updates) == 2                                   # W0 and W1
        assert len(direct) == (2 if in_place == "1" else 0)
        assert len(copied) == (0 if in_place == "1" else 2)
        kinds = [k.kind for k in sched.kernels]         # one guard, before any input is written
        writes = [i for i, k in enumerate(sched.kernels) for v in k.outs()
                  if v.buf is not None and v.buf.kind == "in"]
        assert kinds.count("guard") == 1 and kinds.index("guard") < min(writes)
        if in_place == "1":
            bad = y.copy()
            bad[7] = sizes[-1]
            before = {k: v.copy() for k, v in model.params.items()}
            with pytest.raises(graphc.GraphcError, match="label"):
                step(x, bad)
            for k, v in model.params.items():
                assert v.tobytes() == before[k].tobytes()
    assert runs["1"][0] == runs["0"][0]
    for k, v in runs["1"][1].items():
        assert v.tobytes() == runs["0"][1][k].tobytes()
