"""micrograd (pure-Python scalar autograd, from PyPI): W0 and the W1 moons step it was made
for (about a second per step; the larger workloads would take minutes per step)."""

from __future__ import annotations

from micrograd.engine import Value

from bench import problems as P


def _w0():
    def run():
        w, b = Value(P.W0_ARGS[0]), Value(P.W0_ARGS[1])
        loss = (w * P.W0_ARGS[2] + b - P.W0_ARGS[3]) ** 2
        loss.backward()
        return loss.data, w.grad, b.grad
    return run


def _w1():
    flat = P.init_mlp(P.W1_SIZES, 0, "float64")
    layers = [([[Value(float(v)) for v in row] for row in w], [Value(float(v)) for v in b])
              for w, b in zip(flat[::2], flat[1::2])]
    params = [v for w, b in layers for row in w for v in row] + \
        [v for _, b in layers for v in b]
    x, y = P.moons()
    xs, ys = x.tolist(), y.tolist()

    def forward(row):
        h = row
        for i, (w, b) in enumerate(layers):
            h = [sum((h[k] * w[k][j] for k in range(len(h))), b[j]) for j in range(len(b))]
            if i < len(layers) - 1:
                h = [v.relu() for v in h]
        return h[0]

    def run():
        scores = [forward(row) for row in xs]
        losses = [(1 + -yi * s).relu() for yi, s in zip(ys, scores)]
        loss = sum(losses) * (1.0 / len(losses)) + 1e-4 * sum(p * p for p in params)
        for p in params:
            p.grad = 0.0
        loss.backward()
        for p in params:
            p.data -= P.W1_LR * p.grad
        return loss.data
    return run


CASES = {"W0": {"micrograd": _w0}, "W1": {"micrograd": _w1}}
