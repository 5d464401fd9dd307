"""PyTensor with its default backend (pytensor.config.mode): symbolic graphs compiled by
pytensor.function, parameters and optimizer state held in shared variables updated in place
(`updates=`), one call per step."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402

from bench import problems as P  # noqa: E402

NAME = "pytensor"


def _w0():
    w, b, x, y = (pt.dscalar(n) for n in "wbxy")
    loss = (w * x + b - y) ** 2
    f = pytensor.function([w, b, x, y], [loss, *pytensor.grad(loss, [w, b])])

    def run():
        value, dw, db = f(*P.W0_ARGS)
        return float(value), float(dw), float(db)
    return run


def _relu(v):
    return pt.maximum(v, 0)


def _hinge(params, x, y):
    score = P.mlp(params, x, _relu)[:, 0]
    return pt.mean(_relu(1 - y * score)) + 1e-4 * sum(pt.sum(p * p) for p in params)


def _ce(params, x, labels):
    z = P.mlp(params, x, _relu)
    logp = z - pt.logsumexp(z, axis=1, keepdims=True)
    return -pt.mean(logp[pt.arange(labels.shape[0]), labels])


def _training(loss_fn, sizes, dtype, batch_fn, optimizer, lr):
    def make():
        params = [pytensor.shared(p) for p in P.init_mlp(sizes, 0, dtype)]
        data = batch_fn()
        x = pt.matrix("x", dtype=data[0].dtype)
        y = (pt.lvector("y") if data[1].dtype == np.int64
             else pt.vector("y", dtype=data[1].dtype))
        loss = loss_fn(params, x, y)
        grads = pytensor.grad(loss, params)
        if optimizer == "SGD":
            updates = [(p, (p - lr * g).astype(dtype)) for p, g in zip(params, grads)]
        else:
            t = pytensor.shared(np.float64(0.0))
            t_new = t + 1
            updates = [(t, t_new)]
            for p, g in zip(params, grads):
                m = pytensor.shared(np.zeros_like(p.get_value()))
                v = pytensor.shared(np.zeros_like(p.get_value()))
                m_new = 0.9 * m + 0.1 * g
                v_new = 0.999 * v + 0.001 * g * g
                step = lr * (m_new / (1 - 0.9 ** t_new)) / (
                    pt.sqrt(v_new / (1 - 0.999 ** t_new)) + 1e-8)
                updates += [(m, m_new.astype(dtype)), (v, v_new.astype(dtype)),
                            (p, (p - step).astype(dtype))]
        f = pytensor.function([x, y], loss, updates=updates)
        return lambda: float(f(*data))
    return {NAME: make}


def _w4():
    x = pt.vector("x", dtype="float32")
    a, b = np.float32(P.W4_A), np.float32(P.W4_B)
    total = pt.sum(pt.tanh(a * x + b) * pt.sigmoid(x) + pt.exp(-x * x))
    f = pytensor.function([x], [total, pytensor.grad(total, x)])
    return P.value_and_grad_call(f, P.w4_x())


CASES = {
    "W0": {NAME: _w0},
    **{w: _training({"hinge": _hinge, "ce": _ce}[loss], *spec)
       for w, (loss, *spec) in P.training_specs().items()},
    "W4": {NAME: _w4},
}
