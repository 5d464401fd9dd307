"""The workloads of ../shared/BENCHMARKS.md, written once for benchmarks and tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import graphc


def w7(n_ops: int, stack: bool = False) -> Callable:
    """W7: a large graph of scalar ops over 100 inputs (A. Rogozhnikov's benchmark). The loss
    sums all nodes with a chain of `+`, or with `stack` as sum(stack(nodes)): one node with a
    source per scalar."""
    def loss(x):
        nodes = [x[i] for i in range(100)]
        for op in range(n_ops):
            k = op % 4
            if k == 0:
                nodes.append(graphc.softplus(nodes[-10]))
            elif k == 1:
                nodes.append(sum(nodes[-30:-10:5]))
            elif k == 2:
                nodes.append(nodes[-20] * nodes[-10])
            else:
                nodes.extend(graphc.softmax(graphc.stack(nodes[-4:])))
        return graphc.sum(graphc.stack(nodes)) if stack else sum(nodes)
    return loss


def w4(x):
    """W4: sum(tanh(a*x + b) * sigmoid(x) + exp(-x*x)), a=0.7, b=0.1 (value and df/dx)."""
    return graphc.sum(graphc.tanh(0.7 * x + 0.1) * graphc.sigmoid(x) + graphc.exp(-x * x))


def _mlp(params, x, activation):
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = activation(h)
    return h


def _init(sizes, rng, dtype):
    return [((rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(dtype), np.zeros(b, dtype))
            for a, b in zip(sizes, sizes[1:])]


def w1_step():
    """W1: micrograd's moons MLP 2-16-16-1, hinge loss + L2, one full-batch SGD step
    (forward, backward, update in one compiled call). Returns (step, args)."""
    rng = np.random.default_rng(1)
    n = 100
    t = rng.uniform(0, np.pi, n)
    outer = np.arange(n) < n // 2
    x = np.where(outer[:, None], np.c_[np.cos(t), np.sin(t)],
                 np.c_[1 - np.cos(t), 0.5 - np.sin(t)]) + rng.normal(0, 0.1, (n, 2))
    y = np.where(outer, 1.0, -1.0)

    def loss(params, x, y):
        score = _mlp(params, x, graphc.relu)[:, 0]
        reg = sum((p * p).sum() for wb in params for p in wb)
        return graphc.mean(graphc.relu(1 - y * score)) + 1e-4 * reg

    def step(params, x, y):
        value, grads = graphc.value_and_grad(loss)(params, x, y)
        new = [(w - 0.05 * gw, b - 0.05 * gb) for (w, b), (gw, gb) in zip(params, grads)]
        return value, new

    return step, (_init([2, 16, 16, 1], rng, np.float64), x, y)


def w2_step():
    """W2: digits-shaped MLP 64-128-64-10, ReLU, softmax cross-entropy, one Adam step on a
    batch of 128 (lr 1e-3), in one compiled call. Returns (step, args)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (128, 64)).astype(np.float32)
    labels = rng.integers(0, 10, 128)
    params = _init([64, 128, 64, 10], rng, np.float32)
    zeros = [(np.zeros_like(w), np.zeros_like(b)) for w, b in params]

    def loss(params, x, labels):
        logp = graphc.log_softmax(_mlp(params, x, graphc.relu), axis=-1)
        return -(graphc.one_hot(labels, 10, np.float32) * logp).sum() / x.shape[0]

    def step(params, m, v, t, x, labels):
        value, grads = graphc.value_and_grad(loss)(params, x, labels)
        b1, b2, lr, eps = 0.9, 0.999, 1e-3, 1e-8
        new_p, new_m, new_v = [], [], []
        for pair, mpair, vpair, gpair in zip(params, m, v, grads):
            ps, ms, vs = [], [], []
            for p, mp, vp, g in zip(pair, mpair, vpair, gpair):
                mp = b1 * mp + (1 - b1) * g
                vp = b2 * vp + (1 - b2) * g * g
                mhat = mp / (1 - b1 ** t)
                vhat = vp / (1 - b2 ** t)
                ps.append(p - lr * mhat / (graphc.sqrt(vhat) + eps))
                ms.append(mp)
                vs.append(vp)
            new_p.append(tuple(ps))
            new_m.append(tuple(ms))
            new_v.append(tuple(vs))
        return value, new_p, new_m, new_v

    return step, (params, zeros, zeros, np.float32(1.0), x, labels)


def wide_stack(n: int) -> Callable:
    """sum(stack([x[0]², ..., x[n-1]²])): one node with n sources (linear-cost checks)."""
    def loss(x):
        return graphc.sum(graphc.stack([x[i] * x[i] for i in range(n)]))
    return loss


def deep_chain(n: int) -> Callable:
    """y <- sin(y)/2 + x, n times: a chain n deep (linear-cost checks; no recursion limit)."""
    def loss(x):
        y = x
        for _ in range(n):
            y = graphc.sin(y) * 0.5 + x
        return y
    return loss
