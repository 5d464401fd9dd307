"""graphc: each workload through `graphc.train_step` (one in-place C call per training step)
where the training API exists, and through the functional path (`compile(value_and_grad)`
with the update in numpy) for comparison."""

from __future__ import annotations

import graphc
from bench import problems as P
from bench.workloads import w7


def _w0():
    step = graphc.compile(graphc.value_and_grad(lambda w, b, x, y: (w * x + b - y) ** 2,
                                                argnums=(0, 1)))
    args = P.W0_ARGS

    def run():
        value, (dw, db) = step(*args)
        return value, dw, db
    return run


def _mlp(params, x):
    return P.mlp(list(params.values()), x, graphc.relu)     # W0, b0, W1, ... in order


def _hinge(params, x, y):
    score = _mlp(params, x)[:, 0]
    reg = sum(graphc.sum(p * p) for p in params.values())
    return graphc.mean(graphc.relu(1 - y * score)) + 1e-4 * reg


def _ce(params, x, labels):
    logits = _mlp(params, x)
    logp = graphc.log_softmax(logits, axis=-1)
    return -graphc.mean(graphc.sum(logp * graphc.one_hot(labels, logits.shape[-1],
                                                         dtype=logp.dtype), axis=-1))


def _as_dict(flat):
    return {f"{'W' if k % 2 == 0 else 'b'}{k // 2}": p for k, p in enumerate(flat)}


def _train_step(loss, sizes, dtype, batch, optimizer, lr):
    params = _as_dict(P.init_mlp(sizes, 0, dtype))
    opt = getattr(graphc.optim, optimizer)(params, lr=lr)
    step = graphc.train_step(loss, opt)
    return lambda: step(*batch)


def _functional(loss, sizes, dtype, batch, update, lr):
    """compile(value_and_grad(loss)), the update in numpy (SGD, or the reference Adam)."""
    vg = graphc.compile(graphc.value_and_grad(loss))
    params = _as_dict(P.init_mlp(sizes, 0, dtype))
    if update == "Adam":
        adam = P.NumpyAdam(lambda p, *b: _flat_vg(vg, p, b), list(params.values()), batch, lr)
        return adam

    def run():
        value, grads = vg(params, *batch)
        for k, g in grads.items():
            params[k] -= lr * g
        return float(value)
    return run


def _flat_vg(vg, flat, batch):
    value, grads = vg(_as_dict(flat), *batch)
    return float(value), list(grads.values())


def _training(name, loss, sizes, dtype, batch_fn, optimizer, lr):
    cases = {f"graphc {name}": lambda: _functional(loss, sizes, dtype, batch_fn(), optimizer,
                                                    lr)}
    if hasattr(graphc, "train_step"):
        cases["graphc"] = lambda: _train_step(loss, sizes, dtype, batch_fn(), optimizer, lr)
    return cases


def _w4():
    f = graphc.compile(graphc.value_and_grad(lambda x: graphc.sum(
        graphc.tanh(P.W4_A * x + P.W4_B) * graphc.sigmoid(x) + graphc.exp(-x * x))))
    return P.value_and_grad_call(f, P.w4_x())


def _w7(n, stack):
    def make():
        f = graphc.compile(graphc.value_and_grad(w7(n, stack)))
        return P.value_and_grad_call(f, P.w7_x())
    return make


CASES = {
    "W0": {"graphc": _w0},
    **{w: _training("compile(vg)", {"hinge": _hinge, "ce": _ce}[loss], *spec)
       for w, (loss, *spec) in P.training_specs().items()},
    "W4": {"graphc": _w4},
    **{w: {"graphc": _w7(*spec)} for w, spec in P.W7_WORKLOADS.items()},
}
