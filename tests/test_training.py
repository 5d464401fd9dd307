"""train_step, graphc.optim and graphc.nn against a hand-written numpy reference (always) and
torch.optim (when torch is installed): same initial parameters, same batches, 50 steps.

Tolerances: float64 1e-9 relative (per-step losses and final parameters); float32 against
torch 2e-4 relative / 2e-5 absolute (float32 rounding accumulated over 50 steps).
"""

import numpy as np
import pytest
from helpers import memory_growth

import graphc
from graphc import nn, optim
from graphc.codegen.c import generate
from graphc.ir import Graph

SIZES = (6, 8, 4)
STEPS = 50


def _data(dtype=np.float64, batch=16, n_batches=5):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(batch * n_batches, SIZES[0])).astype(dtype)
    Y = rng.integers(0, SIZES[-1], batch * n_batches)
    return [(X[i:i + batch], Y[i:i + batch]) for i in range(0, len(X), batch)]


def _model(dtype=np.float64):
    return nn.MLP(SIZES, activation="tanh", seed=7, dtype=dtype)


def _loss_fn(model):
    return lambda p, x, y: nn.cross_entropy(model.apply(p, x), y)


# ---- the hand-written numpy reference: forward, backward, and torch's update rules ----

def _np_loss_grad(p, x, y):
    h = np.tanh(x @ p["W0"] + p["b0"])
    z = h @ p["W1"] + p["b1"]
    zs = z - z.max(axis=1, keepdims=True)
    logp = zs - np.log(np.exp(zs).sum(axis=1, keepdims=True))
    n = len(y)
    loss = -logp[np.arange(n), y].mean()
    dz = np.exp(logp)
    dz[np.arange(n), y] -= 1
    dz /= n
    da = (dz @ p["W1"].T) * (1 - h * h)
    return loss, {"W0": x.T @ da, "b0": da.sum(0), "W1": h.T @ dz, "b1": dz.sum(0)}


def _np_train(params, batches, cfg, lrs):
    p = {k: v.copy() for k, v in params.items()}
    state = {k: {"buf": np.zeros_like(v), "m": np.zeros_like(v), "v": np.zeros_like(v)}
             for k, v in p.items()}
    losses, clipped = [], 0
    for t in range(1, STEPS + 1):
        x, y = batches[(t - 1) % len(batches)]
        loss, g = _np_loss_grad(p, x, y)
        losses.append(loss)
        lr = lrs[t - 1]
        if cfg.get("clip"):
            norm = np.sqrt(sum((gk * gk).sum() for gk in g.values()))
            coef = min(cfg["clip"] / (norm + 1e-6), 1.0)
            clipped += coef < 1
            g = {k: gk * coef for k, gk in g.items()}
        for k in p:
            gk, s, wd = g[k], state[k], cfg.get("wd", 0.0)
            if cfg["opt"] == "sgd":
                gk = gk + wd * p[k]
                if cfg.get("momentum"):
                    s["buf"] = s["buf"] * cfg["momentum"] + gk
                    gk = gk + cfg["momentum"] * s["buf"] if cfg.get("nesterov") else s["buf"]
                p[k] = p[k] - lr * gk
            else:
                if cfg["opt"] == "adamw":
                    p[k] = p[k] * (1 - lr * wd)
                else:
                    gk = gk + wd * p[k]
                s["m"] = s["m"] + 0.1 * (gk - s["m"])
                s["v"] = s["v"] * 0.999 + 0.001 * gk * gk
                denom = np.sqrt(s["v"]) / np.sqrt(1 - 0.999 ** t) + 1e-8
                p[k] = p[k] - (lr / (1 - 0.9 ** t)) * s["m"] / denom
    return np.array(losses), p, clipped


CONFIGS = {
    "sgd": {"opt": "sgd", "lr": 0.1},
    "sgd_momentum": {"opt": "sgd", "lr": 0.05, "momentum": 0.9},
    "nesterov_weight_decay": {"opt": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True,
                              "wd": 1e-2},
    "adam": {"opt": "adam", "lr": 1e-2},
    "adam_l2": {"opt": "adam", "lr": 1e-2, "wd": 1e-2},
    "adamw": {"opt": "adamw", "lr": 1e-2, "wd": 0.1},
    "adam_clipped": {"opt": "adam", "lr": 1e-2, "clip": 0.3},
    "sgd_lr_schedule": {"opt": "sgd", "lr": 0.2, "momentum": 0.5, "schedule": True},
}


def _lrs(cfg):
    return [cfg["lr"] * 0.95 ** t if cfg.get("schedule") else cfg["lr"] for t in range(STEPS)]


def _graphc_optimizer(cfg, params):
    if cfg["opt"] == "sgd":
        return optim.SGD(params, lr=cfg["lr"], momentum=cfg.get("momentum", 0.0),
                         nesterov=cfg.get("nesterov", False), weight_decay=cfg.get("wd", 0.0))
    cls = optim.AdamW if cfg["opt"] == "adamw" else optim.Adam
    return cls(params, lr=cfg["lr"], weight_decay=cfg.get("wd", 0.0))


def _graphc_train(cfg, dtype=np.float64):
    model, batches = _model(dtype), _data(dtype)
    opt = _graphc_optimizer(cfg, model.params)
    step = graphc.train_step(_loss_fn(model), opt, clip_norm=cfg.get("clip"))
    lrs = _lrs(cfg)
    losses = []
    for t in range(STEPS):
        x, y = batches[t % len(batches)]
        losses.append(step(x, y, lr=lrs[t]) if cfg.get("schedule") else step(x, y))
    assert all(type(v) is float for v in losses)
    return np.array(losses), model.params, opt


def _train_against_numpy(cfg):
    """Train with graphc and with the numpy reference from the same start and assert that the
    losses and parameters agree; return graphc's losses and optimizer, and how many steps the
    reference clipped."""
    init = {k: v.copy() for k, v in _model().params.items()}
    want_losses, want_params, clipped = _np_train(init, _data(), cfg, _lrs(cfg))
    losses, params, opt = _graphc_train(cfg)
    np.testing.assert_allclose(losses, want_losses, rtol=1e-9)
    for k in want_params:
        np.testing.assert_allclose(params[k], want_params[k], rtol=1e-9, atol=1e-12)
    return losses, opt, clipped


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_numpy_reference_float64(name):
    cfg = CONFIGS[name]
    losses, _, clipped = _train_against_numpy(cfg)
    assert losses[-1] < losses[0]
    if cfg.get("clip"):
        assert clipped >= STEPS // 2      # the clipping run really clips


def _torch_train(cfg, dtype):
    torch = pytest.importorskip("torch")
    model, batches = _model(dtype), _data(dtype)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    order = list(tp)
    if cfg["opt"] == "sgd":
        opt = torch.optim.SGD([tp[k] for k in order], lr=cfg["lr"],
                              momentum=cfg.get("momentum", 0.0),
                              nesterov=cfg.get("nesterov", False),
                              weight_decay=cfg.get("wd", 0.0))
    else:
        cls = torch.optim.AdamW if cfg["opt"] == "adamw" else torch.optim.Adam
        opt = cls([tp[k] for k in order], lr=cfg["lr"], weight_decay=cfg.get("wd", 0.0))
    losses = []
    for t, lr in enumerate(_lrs(cfg)):
        x, y = batches[t % len(batches)]
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        h = torch.tanh(torch.from_numpy(x) @ tp["W0"] + tp["b0"])
        loss = torch.nn.functional.cross_entropy(h @ tp["W1"] + tp["b1"],
                                                 torch.from_numpy(y))
        loss.backward()
        if cfg.get("clip"):
            torch.nn.utils.clip_grad_norm_([tp[k] for k in order], cfg["clip"])
        opt.step()
        losses.append(loss.item())
    return np.array(losses), {k: v.detach().numpy() for k, v in tp.items()}


@pytest.mark.parametrize("dtype,rtol,atol", [(np.float64, 1e-9, 1e-12),
                                             (np.float32, 2e-4, 2e-5)])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_torch_optim(name, dtype, rtol, atol):
    cfg = CONFIGS[name]
    want_losses, want_params = _torch_train(cfg, dtype)
    losses, params, _ = _graphc_train(cfg, dtype)
    np.testing.assert_allclose(losses, want_losses, rtol=rtol, atol=atol)
    for k in want_params:
        assert params[k].dtype == dtype
        np.testing.assert_allclose(params[k], want_params[k], rtol=rtol, atol=atol)


@pytest.mark.parametrize("backend", ["numpy", "c"])
def test_backends_agree(backend, monkeypatch):
    monkeypatch.setenv("GRAPHC_BACKEND", backend)
    _, opt, _ = _train_against_numpy(CONFIGS["adam_clipped"])
    assert float(opt.state["step"]) == STEPS


# ---- the step's contract ----

def _counting_step(opt_cls=optim.Adam, **kw):
    model = _model()
    calls = []

    def loss_fn(p, x, y):
        calls.append(x.shape)
        return nn.cross_entropy(model.apply(p, x), y)
    opt = opt_cls(model.params, lr=1e-2)
    return model, opt, graphc.train_step(loss_fn, opt, **kw), calls


def test_updates_in_place_and_traces_once():
    model, opt, step, calls = _counting_step()
    params = dict(model.params)
    before = {k: v.copy() for k, v in params.items()}
    state_arrays = [opt.state["step"], *opt.state["exp_avg"].values(),
                    *opt.state["exp_avg_sq"].values()]
    x, y = _data()[0]
    for _ in range(5):
        step(x, y)
    assert len(calls) == 1                          # traced at the first step only
    for k, v in model.params.items():
        assert v is params[k] and opt.params[k] is v          # the same array objects
        assert not np.array_equal(v, before[k])
    now = [opt.state["step"], *opt.state["exp_avg"].values(),
           *opt.state["exp_avg_sq"].values()]
    assert all(a is b for a, b in zip(now, state_arrays))
    assert float(opt.state["step"]) == 5.0
    assert np.all(opt.state["exp_avg_sq"]["W0"] > 0)


def test_lr_per_step_does_not_recompile():
    model, opt, step, calls = _counting_step(optim.SGD)
    x, y = _data()[0]
    w = model.params["W1"]
    start = w.copy()
    _, g = _np_loss_grad({k: v.copy() for k, v in model.params.items()}, x, y)
    step(x, y, lr=0.5)
    np.testing.assert_allclose(w, start - 0.5 * g["W1"], rtol=1e-12, atol=1e-15)
    mid = w.copy()
    _, g = _np_loss_grad({k: v.copy() for k, v in model.params.items()}, x, y)
    step(x, y, lr=0.125)
    np.testing.assert_allclose(w, mid - 0.125 * g["W1"], rtol=1e-12, atol=1e-15)
    after = w.copy()
    opt.lr = 0.0                      # the optimizer's lr is read at each step
    step(x, y)
    np.testing.assert_array_equal(w, after)
    assert len(calls) == 1


def test_new_batch_size_compiles_once_more():
    model, opt, step, calls = _counting_step(optim.SGD)
    batches = _data()
    x, y = batches[0]
    for xb, yb in [(x, y), (x[:5], y[:5]), (x, y), (x[:5], y[:5])]:
        p = {k: v.copy() for k, v in model.params.items()}
        want_loss, g = _np_loss_grad(p, xb, yb)
        assert step(xb, yb) == pytest.approx(want_loss, rel=1e-12)
        for k in p:
            np.testing.assert_allclose(model.params[k], p[k] - 1e-2 * g[k], rtol=1e-12,
                                       atol=1e-15)
    assert calls == [(16, 6), (5, 6)]


def test_batches_of_any_layout_and_the_tape_lowering(monkeypatch):
    """Fortran-ordered, sliced and list batches go through the slow path (copied once);
    the in-place plan also holds when the step is lowered to a tape."""
    results = []
    for tape in ("100000", "0"):
        monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", tape)
        model = _model()
        apply = model.apply
        step = graphc.train_step(lambda p, x, y: nn.mse_loss(apply(p, x), y),  # noqa: B023
                                 optim.Adam(model.params, lr=0.01), clip_norm=0.5)
        x = np.asfortranarray(np.random.default_rng(0).normal(size=(7, SIZES[0])))
        y = np.ones((7, SIZES[-1]))
        losses = [step(x, y), step(np.ascontiguousarray(x), y), step(x.tolist(), y[:, :])]
        assert len(step._calls) == 1
        assert ("gc_tape(" in generate(step.graph)[0]) == (tape == "0")
        results.append((losses, {k: v.copy() for k, v in model.params.items()}))
    # fused straight-line loops may contract a*b+c into one FMA where the tape's rows round
    # twice: last-bit differences, amplified a little by Adam's division
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-11)
    for k, v in results[0][1].items():
        np.testing.assert_allclose(v, results[1][1][k], rtol=1e-11)
    assert results[0][0][2] < results[0][0][0]


def test_scalar_batch_inputs_stay_weak():
    """A Python float in the batch is a weak run-time scalar: float32 stays float32."""
    model = nn.MLP([3, 2], seed=0)
    step = graphc.train_step(lambda p, x, y, w: w * nn.mse_loss(model.apply(p, x), y),
                             optim.SGD(model.params, lr=0.1))
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    w0 = model.params["W0"].copy()
    pred = x @ w0 + model.params["b0"]
    assert step(x, y, 0.0) == 0.0
    np.testing.assert_array_equal(model.params["W0"], w0)      # weight 0: no change
    loss = step(x, y, 2.0)
    assert loss == pytest.approx(2 * float(np.mean(pred ** 2)), rel=1e-6)
    assert model.params["W0"].dtype == np.float32 and not np.array_equal(model.params["W0"], w0)
    assert len(step._calls) == 1


def test_numpy_scalar_batch_inputs_keep_their_shape():
    """A numpy scalar or 0-d array in the batch is a 0-d input, not a (1,) array."""
    w = np.ones(3)
    step = graphc.train_step(lambda p, x, s: graphc.sum((p[0] * x) ** 2) * s,
                             optim.SGD([w], lr=0.1))
    x = np.arange(3.0)
    expected = 2.0 * float(np.sum(x ** 2))
    assert step(x, np.float64(2.0)) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(w, 1 - 0.1 * 2 * 2.0 * x ** 2, rtol=1e-12)
    assert step(x, np.array(0.0)) == 0.0


def test_the_last_signatures_plan_steps_aside():
    """A step whose batch differs from the last call's signature (dtype, a scalar's kind, a
    transposed array) runs its own signature, with the same losses as a fresh step's."""
    def make():
        model = nn.MLP([3, 2], seed=0)
        return graphc.train_step(lambda p, x, y, w: w * nn.mse_loss(model.apply(p, x), y),
                                 optim.SGD(model.params, lr=0.1))
    x = np.random.default_rng(1).normal(size=(4, 3))
    y = np.zeros((4, 2))
    calls = [(x, y, 1.0), (x.astype(np.float32), y, 1.0), (x, y, 2), (x, y, 1.0),
             (np.asfortranarray(x), y, 1.0), (x, y.T.copy().T, 0.5)]
    step = make()
    losses = [step(*c) for c in calls]
    assert len(step._calls) == 3
    for k, c in enumerate(calls):
        again = make()
        for done in calls[:k]:
            again._call_slow(done, None)
        assert again._call_slow(c, None) == losses[k]


def test_no_allocation_per_step():
    model = nn.MLP([64, 128, 64, 10], seed=0)          # float32: ~50 KB of parameters
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 64)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    opt = optim.Adam(model.params)
    step = graphc.train_step(lambda p, x, y: nn.cross_entropy(model.apply(p, x), y), opt)
    step(x, y)
    step(x, y)
    kept, peak = memory_growth(lambda: step(x, y), 200)
    assert kept < 512, kept         # nothing kept
    assert peak < 2048, peak      # no array allocated (one W0 is 32 KB)


def test_bad_label_raises_and_leaves_params_untouched(monkeypatch):
    for backend, tape in (("c", "100000"), ("c", "0"), ("numpy", "100000")):
        monkeypatch.setenv("GRAPHC_TAPE_MIN_KERNELS", tape)     # "0": checks in tape mode
        model = _model()
        opt = optim.Adam(model.params, lr=1e-2)
        step = graphc.train_step(_loss_fn(model), opt)
        step.backend = backend
        x, y = _data()[0]
        step(x, y)
        before = {k: v.copy() for k, v in model.params.items()}
        m_before = opt.state["exp_avg"]["W0"].copy()
        bad = y.copy()
        bad[11] = SIZES[-1]
        with pytest.raises(graphc.GraphcError, match=r"label 4 at position 11 is outside "
                                                     r"\[0, 4\)"):
            step(x, bad)
        bad[11] = -1
        with pytest.raises(graphc.GraphcError, match="label -1 at position 11"):
            step(x, bad)
        for k, v in model.params.items():
            np.testing.assert_array_equal(v, before[k])
        np.testing.assert_array_equal(opt.state["exp_avg"]["W0"], m_before)
        assert float(opt.state["step"]) == 1.0
        step(x, y)
        assert float(opt.state["step"]) == 2.0


def test_has_aux_returns_fresh_aux():
    model = _model()
    opt = optim.SGD(model.params, lr=0.1)

    def loss_fn(p, x, y):
        logits = model.apply(p, x)
        return nn.cross_entropy(logits, y), {"logits": logits}
    step = graphc.train_step(loss_fn, opt, has_aux=True)
    x, y = _data()[0]
    want = model(x)
    loss, aux = step(x, y)
    assert type(loss) is float
    np.testing.assert_allclose(aux["logits"], want, rtol=1e-12)
    loss2, aux2 = step(x, y)
    assert aux2["logits"] is not aux["logits"] and loss2 < loss


@pytest.mark.parametrize("empty", [{}, None, ()], ids=["dict", "none", "tuple"])
def test_has_aux_without_leaves_returns_it_every_step(empty):
    """An aux with no arrays leaves the loss the step's only output; it is still returned."""
    w = np.ones(3)
    step = graphc.train_step(lambda p, x: (graphc.sum(p[0] * x), empty),
                             optim.SGD([w], lr=0.5), has_aux=True)
    x = np.ones(3)
    for want in (3.0, 1.5, 0.0):
        loss, aux = step(x)
        assert loss == want and aux == empty


def test_comm_and_bad_arguments_are_clear_errors():
    model = _model()
    opt = optim.SGD(model.params, lr=0.1)
    with pytest.raises(graphc.GraphcError, match="comm"):
        graphc.train_step(_loss_fn(model), opt, comm=object())
    with pytest.raises(graphc.GraphcError, match="optimizer"):
        graphc.train_step(_loss_fn(model), object())
    with pytest.raises(graphc.GraphcError, match="in place"):
        optim.SGD({"w": np.arange(3)}, lr=0.1)
    w = np.ones(3)
    with pytest.raises(graphc.GraphcError, match="share memory"):
        graphc.train_step(lambda p, x: (p["a"] * p["b"] * x).sum(),
                          optim.SGD({"a": w, "b": w}, lr=0.1))
    with pytest.raises(graphc.GraphcError, match="Nesterov"):
        optim.SGD(model.params, lr=0.1, nesterov=True)


def test_optimizer_defaults_are_torchs():
    p = {"w": np.zeros(3)}
    adam, adamw, sgd = optim.Adam(p), optim.AdamW(p), optim.SGD(p, lr=0.1)
    assert (adam.lr, adam.betas, adam.eps, adam.weight_decay) == (1e-3, (0.9, 0.999), 1e-8, 0.0)
    assert (adamw.lr, adamw.weight_decay) == (1e-3, 1e-2)
    assert (sgd.momentum, sgd.nesterov, sgd.weight_decay) == (0.0, False, 0.0)
    assert set(adam.state) == {"step", "exp_avg", "exp_avg_sq"} and set(sgd.state) == set()


# ---- in-place outputs below train_step ----

def test_aliased_output_is_written_after_every_read():
    """out0 = x + 1 written into x, while out1 = 2x still reads the old x."""
    def f(x):
        return x + 1, x * 2
    graph, _ = graphc.capture.trace_to_graph(f, (np.zeros(3),))
    aliased = Graph(graph.inputs, graph.outputs, aliases=[(0, 0)])
    from graphc.interpret import Interpreter
    from graphc.native import CRunner
    for runner in (CRunner(aliased), Interpreter(aliased)):
        run = getattr(runner, "call", runner)
        x = np.array([1.0, 2.0, 3.0])
        new, doubled = run([x])
        assert new is x
        np.testing.assert_array_equal(x, [2.0, 3.0, 4.0])
        np.testing.assert_array_equal(doubled, [2.0, 4.0, 6.0])
        with pytest.raises(graphc.GraphcError, match="in place"):
            run([np.zeros(3, np.float32)])


def test_updates_are_written_straight_into_parameters_after_every_check(monkeypatch):
    """An Adam step whose loss checks its labels (one_hot): every parameter and moment is
    computed straight into its own memory (no arena copy), behind one guard placed after the
    check, so a bad label leaves every array as it was; values equal the copy-back plan's."""
    import functools

    import graphc.codegen.c as codegen
    from graphc.schedule import schedule

    def loss(p, x, labels):
        logits = x @ p["W"] + p["b"]
        return -(graphc.one_hot(labels, 3, np.float64) * graphc.log_softmax(logits)).sum()

    def run():
        rng = np.random.default_rng(0)
        params = {"W": rng.normal(size=(4, 3)), "b": np.zeros(3)}
        step = graphc.train_step(loss, optim.Adam(params, lr=0.1))
        x, labels = rng.normal(size=(8, 4)), np.arange(8) % 3
        losses = [step(x, labels) for _ in range(3)]
        return generate(step.graph)[2], losses, [a.copy() for a in step.memory], step, x

    sched, losses, memory, step, x = run()
    assert not any(k.note == "in place" and k.node.size > 1 for k in sched.kernels)
    guard = [k.kind for k in sched.kernels].index("guard")
    checks = [i for i, k in enumerate(sched.kernels) if k.node is not None
              and k.node.op.may_fail]
    writes = [i for i, k in enumerate(sched.kernels) for v in k.outs()
              if v.buf is not None and v.buf.kind == "in"]
    assert checks and len(writes) >= 4 and max(checks) < guard < min(writes)
    assert [k.kind for k in sched.kernels].count("guard") == 1
    with pytest.raises(graphc.GraphcError, match="label"):
        step(x, np.full(8, 7))
    for a, b in zip(step.memory, memory):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setenv("GRAPHC_WARM_START", "0")     # the patched plan: no record read or written
    monkeypatch.setattr(codegen, "schedule", functools.partial(schedule, direct=False))
    ref_sched, ref_losses, ref_memory, _, _ = run()
    assert sum(k.note == "in place" for k in ref_sched.kernels) == len(memory)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-12)
    for a, b in zip(memory, ref_memory):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_alias_plan_is_verified():
    from graphc.schedule import check_aliases, schedule
    graph, _ = graphc.capture.trace_to_graph(lambda x: (x + 1, x * 2), (np.zeros(3),))
    sched = schedule(Graph(graph.inputs, graph.outputs, aliases=[(0, 0)]))
    check_aliases(sched)
    copy = next(k for k in sched.kernels if k.note == "in place")
    sched.kernels.remove(copy)
    sched.kernels.insert(0, copy)            # overwrite x before 2x reads it
    with pytest.raises(graphc.GraphcError, match="read after"):
        check_aliases(sched)
    with pytest.raises(graphc.GraphcError, match="at most once"):
        Graph(graph.inputs, graph.outputs, aliases=[(0, 0), (1, 0)])


def test_an_input_also_returned_is_copied_out_before_it_is_overwritten():
    """x returned as it is and x * 2 aliased to x: x * 2 cannot be written straight into x
    (the copy of x to its output slot reads x after every kernel), so it is copied back last."""
    from graphc.schedule import schedule
    graph, _ = graphc.capture.trace_to_graph(lambda x: (x, x * 2), (np.zeros(3),))
    sched = schedule(Graph(graph.inputs, graph.outputs, aliases=[(1, 0)]), fuse=True)
    notes = [k.note for k in sched.kernels if k.kind == "copy"]
    assert notes == ["output", "in place"]
    assert not any(v.buf.kind == "in" for k in sched.kernels for v in k.outs())


# ---- nn ----

def test_mlp_init_and_apply():
    m = nn.MLP([64, 128, 10], seed=0)
    assert list(m.params) == ["W0", "b0", "W1", "b1"]
    assert all(v.dtype == np.float32 for v in m.params.values())
    assert m.params["W0"].std() == pytest.approx(np.sqrt(2 / 64), rel=0.05)     # He
    x = nn.MLP([64, 128, 10], activation="tanh", seed=0).params["W0"]
    limit = np.sqrt(6 / (64 + 128))                                              # Xavier
    assert np.abs(x).max() <= limit and np.abs(x).max() > 0.95 * limit
    np.testing.assert_array_equal(nn.MLP([64, 128, 10], seed=0).params["W0"], m.params["W0"])
    assert not np.array_equal(nn.MLP([64, 128, 10], seed=1).params["W0"], m.params["W0"])
    xs = np.random.default_rng(0).normal(size=(5, 64)).astype(np.float32)
    want = np.maximum(xs @ m.params["W0"] + m.params["b0"], 0) @ m.params["W1"] + m.params["b1"]
    np.testing.assert_allclose(m(xs), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(graphc.compile(m.apply)(m.params, xs), want, rtol=1e-5,
                               atol=1e-6)
    lin = nn.Linear(3, 2, init="xavier", seed=0, dtype=np.float64)
    np.testing.assert_allclose(lin(np.eye(3)), lin.params["W"] + lin.params["b"])
    with pytest.raises(graphc.GraphcError, match="activation"):
        nn.MLP([2, 2], activation="gelu")


def test_losses_match_numpy():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(6, 3)) * 3
    y = np.array([0, 2, 1, 1, 0, 2])
    zs = z - z.max(1, keepdims=True)
    logp = zs - np.log(np.exp(zs).sum(1, keepdims=True))
    assert float(nn.cross_entropy(z, y)) == pytest.approx(-logp[np.arange(6), y].mean(),
                                                          rel=1e-13)
    g = graphc.grad(lambda z: nn.cross_entropy(z, y))(z)
    np.testing.assert_allclose(g, (np.exp(logp) - np.eye(3)[y]) / 6, rtol=1e-12, atol=1e-15)
    t = rng.uniform(size=(6, 3))
    assert float(nn.mse_loss(z, t)) == pytest.approx(((z - t) ** 2).mean(), rel=1e-13)
    bce = np.mean(np.logaddexp(0, z) - z * t)
    assert float(nn.binary_cross_entropy_with_logits(z, t)) == pytest.approx(bce, rel=1e-13)
    big = np.array([1000.0, -1000.0])
    assert float(nn.binary_cross_entropy_with_logits(big, np.array([1.0, 0.0]))) == 0.0
    s, sign = rng.normal(size=8), rng.choice([-1.0, 1.0], 8)
    assert float(nn.hinge_loss(s, sign)) == pytest.approx(np.maximum(0, 1 - sign * s).mean())
    for bad in ([0, 2, 3, 1, 0, 2], [0, 2, 1, 1, -2, 2]):
        with pytest.raises(graphc.GraphcError, match="label"):
            nn.cross_entropy(z, np.array(bad))
    with pytest.raises(graphc.GraphcError, match=r"label 7 at position 4 is outside \[0, 3\)"):
        graphc.compile(nn.cross_entropy)(z, np.array([0, 2, 1, 1, 7, 2]))


def test_batches():
    X, Y = np.arange(20.0).reshape(10, 2), np.arange(10)
    got = list(nn.batches(X, Y, 4))
    assert [len(b[0]) for b in got] == [4, 4, 2]
    np.testing.assert_array_equal(got[1][1], [4, 5, 6, 7])
    assert [len(b[0]) for b in nn.batches(X, Y, 4, drop_last=True)] == [4, 4]
    shuffled = list(nn.batches(X, Y, 4, shuffle=True, seed=3))
    order = np.concatenate([b[1] for b in shuffled])
    assert sorted(order) == list(range(10)) and list(order) != list(range(10))
    for xb, yb in shuffled:
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)
        assert xb.flags.c_contiguous
    again = np.concatenate([b[1] for b in nn.batches(X, Y, 4, shuffle=True, seed=3)])
    np.testing.assert_array_equal(order, again)


# ---- minimize ----

def _rosenbrock(v):
    return (1 - v[0]) ** 2 + 100 * (v[1] - v[0] ** 2) ** 2


@pytest.mark.parametrize("method", ["newton", "lbfgs"])
def test_minimize_rosenbrock(method):
    x, info = optim.minimize(_rosenbrock, np.array([-1.2, 1.0]), method=method, maxiter=200)
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-6)
    assert info["converged"] and info["grad_norm"] < 1e-8 and info["fun"] < 1e-12


def test_newton_solves_a_quadratic_in_one_step():
    A = np.array([[3.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 2.0]])
    b = np.array([1.0, -2.0, 0.5])

    def f(v):
        return 0.5 * v @ (A @ v) - b @ v
    x, info = optim.minimize(f, np.zeros(3), method="newton")
    np.testing.assert_allclose(x, np.linalg.solve(A, b), rtol=1e-12)
    assert info["nit"] == 1 and info["converged"]
    x, info = optim.minimize(f, np.zeros(3), method="gd", maxiter=500, tol=1e-6)
    np.testing.assert_allclose(x, np.linalg.solve(A, b), atol=1e-5)
    assert info["converged"]
    with pytest.raises(graphc.GraphcError, match="method"):
        optim.minimize(f, np.zeros(3), method="bfgs")
