"""HIPS autograd (numpy tracing at every call)."""

from __future__ import annotations

import autograd
import autograd.numpy as anp

from bench import problems as P


def _w0():
    f = autograd.value_and_grad(lambda wb, x, y: (wb[0] * x + wb[1] - y) ** 2)

    def run():
        value, g = f((P.W0_ARGS[0], P.W0_ARGS[1]), P.W0_ARGS[2], P.W0_ARGS[3])
        return float(value), float(g[0]), float(g[1])
    return run


def _mlp(params, x):
    return P.mlp(params, x, lambda v: anp.maximum(v, 0))


def _hinge(params, x, y):
    score = _mlp(params, x)[:, 0]
    return anp.mean(anp.maximum(1 - y * score, 0)) + 1e-4 * sum(anp.sum(p * p) for p in params)


def _ce(params, x, labels):
    z = _mlp(params, x)
    z = z - anp.max(z, axis=1, keepdims=True)
    logp = z - anp.log(anp.sum(anp.exp(z), axis=1, keepdims=True))
    return -anp.mean(logp[anp.arange(len(labels)), labels])


def _training(loss_fn, sizes, dtype, batch_fn, optimizer, lr):
    vg = autograd.value_and_grad(loss_fn)

    def loss_grad(params, *batch):
        value, grads = vg(list(params), *batch)
        return float(value), grads

    def make():
        params = P.init_mlp(sizes, 0, dtype)
        cls = P.NumpySGD if optimizer == "SGD" else P.NumpyAdam
        return cls(loss_grad, params, batch_fn(), lr)
    return {"autograd": make}


def _w4():
    f = autograd.value_and_grad(lambda x: anp.sum(
        anp.tanh(P.W4_A * x + P.W4_B) / (1 + anp.exp(-x)) + anp.exp(-x * x)))
    return P.value_and_grad_call(f, P.w4_x())


CASES = {
    "W0": {"autograd": _w0},
    **{w: _training({"hinge": _hinge, "ce": _ce}[loss], *spec)
       for w, (loss, *spec) in P.training_specs().items() if w != "W3"},
    "W4": {"autograd": _w4},
}
