"""`python -m graphc.demo seeds`: the seeds' worked examples, computed by graphc (compiled
to C)."""

from __future__ import annotations

import time

import numpy as np

import graphc
from graphc import optim


def _row(what: str, got, want) -> None:
    ok = np.allclose(got, want, rtol=1e-9, atol=1e-12)
    print(f"  {'ok ' if ok else 'BAD'} {what:<52} {np.array2string(np.asarray(got), precision=6)}")
    if not ok:
        raise SystemExit(f"demo: {what} gave {got}, expected {want}")


def seeds_example(x, y):
    """The seeds' first computation graph: z = x * y, loss = z + 1."""
    z = x * y
    return z + 1


def main() -> None:
    print("graphc demo: derivatives of the seeds' worked examples, run as generated C\n")

    print("derivatives and the chain rule")
    _row("d/dx x^2 at x=3", graphc.grad(lambda x: x**2)(3.0), 6.0)
    _row("z=x*y, loss=z+1: (dloss/dx, dloss/dy) at (2,3)",
         graphc.grad(lambda x, y: x * y + 1, argnums=(0, 1))(2.0, 3.0), (3.0, 2.0))
    _row("d/dx (x^2+1)^3 at x=1 (= 6x(x^2+1)^2)",
         graphc.grad(lambda x: (x**2 + 1) ** 3)(1.0), 24.0)
    _row("sigma'(0) = sigma(0)(1-sigma(0))", graphc.grad(graphc.sigmoid)(0.0), 0.25)
    _row("d2/dx2 sin at 1 (= -sin 1)", graphc.grad(graphc.grad(graphc.sin))(1.0), -np.sin(1.0))

    print("\npartials, gradients, Jacobians, Hessians")
    _row("f=x^2 y+3y: (df/dx, df/dy) at (2,1)",
         graphc.grad(lambda x, y: x**2 * y + 3 * y, argnums=(0, 1))(2.0, 1.0), (4.0, 7.0))
    _row("grad of x^2+2y^2 at (3,2)",
         graphc.grad(lambda v: v[0] ** 2 + 2 * v[1] ** 2)(np.array([3.0, 2.0])), [6.0, 8.0])
    jac = graphc.jacobian(lambda v: graphc.stack([v[0] ** 2 + v[1], v[0] * v[1]]))
    _row("Jacobian of [x1^2+x2, x1 x2] at (3,2)", jac(np.array([3.0, 2.0])), [[6, 1], [2, 3]])
    hess = graphc.hessian(lambda v: v[0] ** 2 + 3 * v[0] * v[1] + v[1] ** 2)
    _row("Hessian of x^2+3xy+y^2", hess(np.array([1.0, 4.0])), [[2, 3], [3, 2]])

    print("\nbackprop through L = (w x + b - y)^2 at w=1.5, b=0.5, x=2, y=1")
    loss = lambda w, b, x, y: (w * x + b - y) ** 2  # noqa: E731
    step = graphc.compile(graphc.value_and_grad(loss, argnums=(0, 1)))
    value, (dw, db) = step(1.5, 0.5, 2.0, 1.0)
    _row("L, dL/dw, dL/db", [value, dw, db], [6.25, 10.0, 5.0])
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        step(1.5, 0.5, 2.0, 1.0)
    per_call = (time.perf_counter() - t0) / n * 1e6
    print(f"      one compiled call (forward + backward): {per_call:.2f} us")

    print("\nsoftmax + cross-entropy, log-sum-exp")
    z = np.array([2.0, 1.0, 0.1])
    y = np.array([1.0, 0.0, 0.0])
    ce = graphc.grad(lambda z: -(y * graphc.log_softmax(z)).sum())
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    _row("d cross-entropy / d logits = p - y", ce(z), p - y)
    big = np.array([1000.0, 1000.0])
    _row("logsumexp([1000, 1000]) = 1000 + log 2", graphc.logsumexp(big), 1000 + np.log(2))
    _row("its gradient = softmax", graphc.grad(graphc.logsumexp)(big), [0.5, 0.5])

    print("\nvanishing gradient through 20 stacked sigmoids")

    def deep(x):
        for _ in range(20):
            x = graphc.sigmoid(x)
        return x
    g20 = graphc.grad(deep)(0.5)
    print(f"      d/dx = {float(g20):.3e}  (< 0.25**20 = {0.25**20:.3e})")

    print("\nthe house-price loss (w1*1200 + w2*3 - 350000)^2")
    house_loss = lambda w: (w[0] * 1200 + w[1] * 3 - 350000) ** 2  # noqa: E731
    house = graphc.compile(graphc.grad(house_loss))
    w = np.zeros(2)
    for _ in range(5000):
        w = w - 1e-10 * house(w)
    print(f"      gradient descent, 5000 steps of 1e-10: prediction {w[0] * 1200 + w[1] * 3:.0f}"
          " (target 350000: the step is too small for this badly scaled loss)")
    w, info = optim.minimize(house_loss, np.zeros(2), method="lbfgs", tol=1e-6)
    _row(f"L-BFGS ({info['nit']} iterations): prediction", w[0] * 1200 + w[1] * 3, 350000.0)
    print("\nall examples match the seeds' derivations")
