"""`make demo`: train an MLP 64-128-64-10 on scikit-learn's bundled digits (1797 8x8 images,
no download) with one generated C call per step, report held-out accuracy and speed, compare
the same step in hand-written numpy and in micrograd, and save the loss curve as a PNG.

Needs the `demo` extra (scikit-learn, tqdm, matplotlib, micrograd): pip install -e '.[demo]'.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time

import numpy as np

import graphc
from graphc import nn, optim

SIZES = [64, 128, 64, 10]
BATCH = 128
EPOCHS = 40
LR = 3e-3
MICROGRAD_SAMPLES = 2        # micrograd runs this many of the batch's samples, then scales
PNG = "graphc-digits-loss.png"


def load(seed: int = 0):
    """Digits scaled to [0, 1] as float32, split 80/20 by a seeded permutation."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(X))
    cut = int(0.8 * len(X))
    return X[order[:cut]], y[order[:cut]], X[order[cut:]], y[order[cut:]]


def loss_fn(model):
    return lambda params, x, y: nn.cross_entropy(model.apply(params, x), y)


def train(X, y):
    from tqdm import tqdm
    model = nn.MLP(SIZES, activation="relu", init="he", seed=0)
    opt = optim.Adam(model.params, lr=LR)
    t0 = time.perf_counter()
    step = graphc.train_step(loss_fn(model), opt)
    losses = []
    steps_per_epoch = len(X) // BATCH
    with tqdm(total=EPOCHS * steps_per_epoch, unit="step", ncols=80, file=sys.stdout,
              desc="training") as bar:
        for epoch in range(EPOCHS):
            for xb, yb in nn.batches(X, y, BATCH, shuffle=True, seed=epoch, drop_last=True):
                losses.append(step(xb, yb))
                if len(losses) == 1:
                    first = time.perf_counter() - t0
                if len(losses) % 10 == 0:
                    bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
                bar.update()
    print(f"first step (trace + build or cache load + run): {first:.2f} s")
    return model, losses


# ---- the same training step three ways, timed on one batch ----

def time_graphc(X, y, repeats: int = 2000) -> float:
    model = nn.MLP(SIZES, seed=1)
    step = graphc.train_step(loss_fn(model), optim.Adam(model.params, lr=1e-3))
    xb, yb = X[:BATCH].copy(), y[:BATCH].copy()
    step(xb, yb)
    return _median_us(lambda: step(xb, yb), repeats)


def time_numpy(X, y, repeats: int = 300) -> float:
    """Forward, backward and Adam written by hand in numpy (float32)."""
    params = dict(nn.MLP(SIZES, seed=1).params)
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(v) for k, v in params.items()}
    xb, yb = X[:BATCH], y[:BATCH]
    t = [0]

    def step():
        h0 = np.maximum(xb @ params["W0"] + params["b0"], 0)
        h1 = np.maximum(h0 @ params["W1"] + params["b1"], 0)
        z = h1 @ params["W2"] + params["b2"]
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.log(p[np.arange(BATCH), yb]).mean()
        dz = p
        dz[np.arange(BATCH), yb] -= 1
        dz /= BATCH
        grads = {"W2": h1.T @ dz, "b2": dz.sum(0)}
        d1 = (dz @ params["W2"].T) * (h1 > 0)
        grads.update(W1=h0.T @ d1, b1=d1.sum(0))
        d0 = (d1 @ params["W1"].T) * (h0 > 0)
        grads.update(W0=xb.T @ d0, b0=d0.sum(0))
        t[0] += 1
        numpy_adam(params, grads, m, v, t[0], 1e-3)
        return loss
    step()
    return _median_us(step, repeats)


def numpy_adam(params: dict, grads: dict, m: dict, v: dict, t: int, lr: float) -> None:
    """Adam step t (torch.optim's rule, default betas and eps) on dicts of arrays, in place."""
    c1, c2 = 1 - 0.9 ** t, math.sqrt(1 - 0.999 ** t)
    for k, g in grads.items():
        m[k] += 0.1 * (g - m[k])
        v[k] = v[k] * 0.999 + 0.001 * g * g
        params[k] -= (lr / c1) * m[k] / (np.sqrt(v[k]) / c2 + 1e-8)


def time_micrograd(X, y) -> tuple[float, str]:
    """micrograd (pure-Python scalar autograd) on MICROGRAD_SAMPLES samples of the batch,
    forward + backward scaled to the whole batch, plus its Adam update over every weight."""
    from micrograd.engine import Value
    from micrograd.nn import MLP

    def exp(a):
        out = Value(math.exp(a.data), (a,), "exp")

        def backward():
            a.grad += out.data * out.grad
        out._backward = backward
        return out

    def log(a):
        out = Value(math.log(a.data), (a,), "log")

        def backward():
            a.grad += out.grad / a.data
        out._backward = backward
        return out

    random.seed(0)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 100_000))
    model = MLP(SIZES[0], SIZES[1:])
    params = model.parameters()
    t0 = time.perf_counter()
    loss = Value(0.0)
    for row, label in zip(X[:MICROGRAD_SAMPLES], y[:MICROGRAD_SAMPLES]):
        z = model([float(a) for a in row])
        shift = max(zi.data for zi in z)
        total = sum((exp(zi - shift) for zi in z), Value(0.0))
        loss = loss + (log(total) - (z[int(label)] - shift)) * (1.0 / MICROGRAD_SAMPLES)
    model.zero_grad()
    loss.backward()
    t1 = time.perf_counter()
    m = [0.0] * len(params)
    v = [0.0] * len(params)
    for i, p in enumerate(params):         # one Adam step, written out per scalar
        m[i] = 0.9 * m[i] + 0.1 * p.grad
        v[i] = 0.999 * v[i] + 0.001 * p.grad * p.grad
        p.data -= 1e-3 / 0.1 * m[i] / (math.sqrt(v[i] / 0.001) + 1e-8)
    t2 = time.perf_counter()
    us = ((t1 - t0) * BATCH / MICROGRAD_SAMPLES + (t2 - t1)) * 1e6
    return us, (f"forward+backward of {MICROGRAD_SAMPLES} of the {BATCH} samples, "
                f"x{BATCH // MICROGRAD_SAMPLES}, + update: extrapolated")


def _median_us(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e6


def plot(losses: list[float]) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses, lw=1, label="minibatch loss")
    k = 20
    if len(losses) > k:
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(k - 1, len(losses)), smooth, lw=2, label=f"mean of {k}")
    ax.set(xlabel="step", ylabel="cross-entropy", yscale="log",
           title=f"MLP {'-'.join(map(str, SIZES))} on digits, Adam lr {LR}, batch {BATCH}")
    ax.legend()
    fig.tight_layout()
    path = os.path.abspath(PNG)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    start = time.perf_counter()
    print(f"graphc demo: an MLP {'-'.join(map(str, SIZES))} (ReLU) learns scikit-learn's "
          "handwritten digits;\neach training step (forward, backward, Adam update) is ONE "
          "generated C call.\n")
    X, y, X_test, y_test = load()
    print(f"data: {len(X)} training and {len(X_test)} held-out 8x8 images, batch {BATCH}, "
          f"{EPOCHS} epochs")
    model, losses = train(X, y)
    predict = graphc.compile(model.apply)
    accuracy = float(np.mean(np.argmax(predict(model.params, X_test), axis=1) == y_test))
    print(f"held-out accuracy: {100 * accuracy:.1f}%")

    print("\ntiming the same training step (batch 128, forward + backward + Adam), median:")
    g_us = time_graphc(X, y)
    print(f"graphc train step: {g_us:.1f} us/step")
    np_us = time_numpy(X, y)
    mg_us, how = time_micrograd(X, y)
    rows = [("graphc (one C call)", g_us, "measured"),
            ("numpy, hand-written", np_us, "measured"),
            ("micrograd (PyPI)", mg_us, how)]
    print(f"  {'implementation':<22}{'us/step':>14}{'vs graphc':>11}  how")
    for name, us, note in rows:
        print(f"  {name:<22}{us:>14,.{1 if us < 1e4 else 0}f}{us / g_us:>10,.1f}x  {note}")
    path = plot(losses)
    print(f"\nloss curve saved to {path}")
    print(f"demo finished in {time.perf_counter() - start:.1f} s")
    if accuracy < 0.95:
        raise SystemExit(f"demo: held-out accuracy {100 * accuracy:.1f}% is below 95%")
