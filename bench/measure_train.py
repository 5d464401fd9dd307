"""W1 and W2 (../shared/BENCHMARKS.md) through graphc.train_step, next to the functional paths,
and the Python cost of a train step over its bare C call.

    taskset -c 0 python bench/measure_train.py        (needs scikit-learn; micrograd for W1)

Rows, per workload (median µs per step over repeated blocks):
  train_step            one C call, parameters and state updated in place
  bare C call           the same entry called with a pre-built argument tuple (the floor)
  overhead (min - min)  train_step minus bare C call, fastest of 100 interleaved blocks each
  Python side, no-op C  train_step with its C entry replaced by a Python no-op
  compile(step fn)      one compiled call of a pure step returning new params (and state)
  compile(vg) + numpy   compiled value_and_grad, the update in numpy
  compile(vg) alone     compiled value_and_grad, no update (a lower bound of that path)
"""

from __future__ import annotations

import random
import sys
import time
import timeit

import numpy as np

import graphc
from graphc import nn, optim
from graphc.demo.digits import numpy_adam


def median_us(fn, number: int, repeat: int = 15) -> float:
    times = timeit.repeat(fn, number=number, repeat=repeat)
    return float(np.median(times)) / number * 1e6


def w1():
    """micrograd's demo: moons(100), labels ±1, MLP 2-16-16-1, hinge + 1e-4 L2, SGD 0.05."""
    from sklearn.datasets import make_moons
    X, y = make_moons(n_samples=100, noise=0.1, random_state=1)
    y = (y * 2 - 1).astype(np.float64)
    model = nn.MLP([2, 16, 16, 1], seed=0, dtype=np.float64)

    def loss(p, x, y):
        score = model.apply(p, x)[:, 0]
        reg = sum((w * w).sum() for w in p.values())
        return nn.hinge_loss(score, y) + 1e-4 * reg
    return model, loss, (X, y), lambda params: optim.SGD(params, lr=0.05), 0.05


def w2():
    """digits /16, MLP 64-128-64-10 ReLU, softmax cross-entropy, Adam 1e-3, batch 128."""
    from sklearn.datasets import load_digits
    d = load_digits()
    X = (d.data[:128] / 16).astype(np.float32)
    y = d.target[:128].astype(np.int64)
    model = nn.MLP([64, 128, 64, 10], seed=0)

    def loss(p, x, y):
        return nn.cross_entropy(model.apply(p, x), y)
    return model, loss, (X, y), lambda params: optim.Adam(params, lr=1e-3), 1e-3


def measure(name: str, make, number: int) -> dict:
    model, loss, batch, make_opt, lr = make()
    rows = {}
    # train_step, and its bare C call
    opt = make_opt(model.params)
    step = graphc.train_step(loss, opt)
    first = step(*batch)
    for _ in range(20):
        last = step(*batch)
    assert last < first, (name, first, last)
    args = step.entry_args(lr, *batch)
    entry = step.entry
    pairs = [(timeit.timeit(lambda: step(*batch), number=number // 10) / (number // 10),
              timeit.timeit(lambda: entry(*args), number=number // 10) / (number // 10))
             for _ in range(100)]          # interleaved: both see the same machine load
    rows["train_step"] = float(np.median([a for a, _ in pairs])) * 1e6
    rows["bare C call"] = float(np.median([b for _, b in pairs])) * 1e6
    rows["overhead (min - min)"] = (min(a for a, _ in pairs) - min(b for _, b in pairs)) * 1e6
    call = next(iter(step._calls.values()))
    call.__globals__["entry"] = lambda *a: 0        # the Python side alone
    rows["Python side, no-op C"] = min(timeit.repeat(lambda: step(*batch), number=1000,
                                                     repeat=20)) / 1000 * 1e6
    call.__globals__["entry"] = entry
    # one compiled pure step: new params and state out
    opt2 = make_opt({k: v.copy() for k, v in model.params.items()})
    vg = graphc.value_and_grad(loss)

    def pure_step(params, state, x, y):
        value, grads = vg(params, x, y)
        new_p, new_s = opt2.update(params, grads, state, lr)
        return value, new_p, new_s
    fstep = graphc.compile(pure_step)
    params, state = opt2.params, opt2.state

    def functional():
        nonlocal params, state
        _, params, state = fstep(params, state, *batch)
    functional()
    rows["compile(step fn)"] = median_us(functional, number)
    # compiled value_and_grad + the update in numpy (Adam or SGD written by hand)
    cvg = graphc.compile(graphc.value_and_grad(loss))
    p3 = {k: v.copy() for k, v in model.params.items()}
    m = {k: np.zeros_like(v) for k, v in p3.items()}
    v2 = {k: np.zeros_like(v) for k, v in p3.items()}
    t = [0]

    def vg_numpy():
        _, g = cvg(p3, *batch)
        if name == "W1":
            for k in p3:
                p3[k] -= lr * g[k]
            return
        t[0] += 1
        numpy_adam(p3, g, m, v2, t[0], lr)
    vg_numpy()
    rows["compile(vg) + numpy"] = median_us(vg_numpy, number)
    rows["compile(vg) alone"] = median_us(lambda: cvg(p3, *batch), number)
    return rows


def micrograd_w1() -> float:
    """micrograd's own demo step (its MLP, hinge + L2, SGD), µs per step over 3 steps."""
    from micrograd.engine import Value
    from micrograd.nn import MLP
    from sklearn.datasets import make_moons
    X, y = make_moons(n_samples=100, noise=0.1, random_state=1)
    X, y = X.tolist(), (y * 2 - 1).tolist()      # Python numbers, as micrograd expects
    random.seed(1337)
    model = MLP(2, [16, 16, 1])
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        scores = [model([Value(a) for a in row]) for row in X]
        losses = [(1 + -yi * si).relu() for yi, si in zip(y, scores)]
        loss = sum(losses) * (1.0 / len(losses)) + 1e-4 * sum(p * p for p in model.parameters())
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= 0.05 * p.grad
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6


def main() -> None:
    for name, make, number in (("W1", w1, 2000), ("W2", w2, 200)):
        rows = measure(name, make, number)
        print(f"{name}: µs per step (median)")
        for k, us in rows.items():
            print(f"  {k:<22}{us:>10.1f}")
        if name == "W1":
            try:
                mg = micrograd_w1()
            except ImportError:
                continue
            print(f"  micrograd               {mg:>10.1f}   ({mg / rows['train_step']:,.0f}x "
                  "the train_step)")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
