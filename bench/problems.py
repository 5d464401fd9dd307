"""The workloads of ../shared/BENCHMARKS.md as data (inputs and initial parameters shared by
graphc and every peer) and a hand-written numpy step for each: a peer of its own, and the
reference every implementation's losses are checked against before it is timed."""

from __future__ import annotations

import functools
import math

import numpy as np

W0_ARGS = (1.5, 0.5, 2.0, 1.0)                    # w, b, x, y
W1_SIZES, W2_SIZES, W3_SIZES = (2, 16, 16, 1), (64, 128, 64, 10), (1024, 2048, 2048, 10)
W1_LR, W2_LR, W3_LR = 0.05, 1e-3, 0.01
W2_BATCH, W3_BATCH = 128, 256
W4_N, W4_A, W4_B = 1_000_000, 0.7, 0.1
W7_SIZES = (1_000, 10_000)
# workload -> (ops, loss as sum(stack(nodes)) instead of a chain of +)
W7_WORKLOADS = {f"W7-{n}{'-stack' if stack else ''}": (n, stack)
                for n in W7_SIZES for stack in (False, True)}


def training_specs() -> dict[str, tuple]:
    """The training workloads: workload -> (loss kind, sizes, dtype, batch, optimizer, lr)."""
    return {"W1": ("hinge", W1_SIZES, "float64", moons, "SGD", W1_LR),
            "W2": ("ce", W2_SIZES, "float32", digits_batch, "Adam", W2_LR),
            "W3": ("ce", W3_SIZES, "float32", w3_batch, "SGD", W3_LR)}


def init_mlp(sizes, seed: int, dtype) -> list[np.ndarray]:
    """He-initialised weights and zero biases, flattened as [W0, b0, W1, b1, ...]."""
    rng = np.random.default_rng(seed)
    out = []
    for a, b in zip(sizes, sizes[1:]):
        out += [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(dtype),
                np.zeros(b, dtype)]
    return out


@functools.cache
def moons() -> tuple[np.ndarray, np.ndarray]:
    """micrograd's demo data: make_moons(100, noise=0.1, random_state=1), labels ±1."""
    from sklearn.datasets import make_moons
    x, y = make_moons(n_samples=100, noise=0.1, random_state=1)
    return x.astype(np.float64), (2.0 * y - 1.0).astype(np.float64)


@functools.cache
def digits_batch() -> tuple[np.ndarray, np.ndarray]:
    """One batch of 128 from scikit-learn's digits (features / 16), float32, int64 labels."""
    from sklearn.datasets import load_digits
    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))[:W2_BATCH]
    return (d.data[order] / 16.0).astype(np.float32), d.target[order].astype(np.int64)


@functools.cache
def w3_batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return (rng.standard_normal((W3_BATCH, W3_SIZES[0])).astype(np.float32),
            rng.integers(0, W3_SIZES[-1], W3_BATCH).astype(np.int64))


@functools.cache
def w4_x() -> np.ndarray:
    return np.random.default_rng(4).uniform(-3, 3, W4_N).astype(np.float32)


@functools.cache
def w7_x() -> np.ndarray:
    return np.random.default_rng(7).uniform(-1, 1, 100)


def mlp(params: list, x, relu):
    """The workloads' MLP for any array library: [W0, b0, W1, b1, ...], `relu` between."""
    n = len(params) // 2
    for i in range(n):
        x = x @ params[2 * i] + params[2 * i + 1]
        if i < n - 1:
            x = relu(x)
    return x


def value_and_grad_call(f, x):
    """A step calling f(x) -> (value, gradient), the value as a float (stateless workloads)."""
    def run():
        value, grad = f(x)
        return float(value), grad
    return run


# ---- the numpy reference (hand-written forward and backward) ----

def w0_numpy(w, b, x, y):
    r = w * x + b - y
    return r * r, 2 * r * x, 2 * r


def _mlp_forward(params, x):
    acts, h = [x], x
    n = len(params) // 2
    for i in range(n):
        h = h @ params[2 * i] + params[2 * i + 1]
        if i < n - 1:
            h = np.maximum(h, 0)
        acts.append(h)
    return acts


def _mlp_backward(params, acts, d_out):
    n = len(params) // 2
    grads = [None] * len(params)
    d = d_out
    for i in reversed(range(n)):
        grads[2 * i] = acts[i].T @ d
        grads[2 * i + 1] = d.sum(axis=0)
        if i:
            d = (d @ params[2 * i].T) * (acts[i] > 0)
    return grads


def w1_loss_grad(params, x, y):
    """mean(relu(1 - y*score)) + 1e-4*sum(p*p) and its gradient."""
    acts = _mlp_forward(params, x)
    score = acts[-1][:, 0]
    margin = 1 - y * score
    reg = sum(float((p * p).sum()) for p in params)
    loss = float(np.maximum(margin, 0).mean()) + 1e-4 * reg
    d_score = np.where(margin > 0, -y, 0.0) / len(y)
    grads = _mlp_backward(params, acts, d_score[:, None])
    return loss, [g + 2e-4 * p for g, p in zip(grads, params)]


def ce_loss_grad(params, x, labels):
    """Softmax cross-entropy (mean over the batch) and its gradient."""
    acts = _mlp_forward(params, x)
    z = acts[-1]
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = float(-np.log(p[np.arange(n), labels]).mean())
    d = p.copy()
    d[np.arange(n), labels] -= 1
    return loss, _mlp_backward(params, acts, (d / n).astype(z.dtype))


class NumpySGD:
    def __init__(self, loss_grad, params, batch, lr):
        self.loss_grad, self.params, self.batch, self.lr = loss_grad, params, batch, lr

    def __call__(self) -> float:
        loss, grads = self.loss_grad(self.params, *self.batch)
        for p, g in zip(self.params, grads):
            p -= self.lr * g
        return loss


class NumpyAdam:
    def __init__(self, loss_grad, params, batch, lr, betas=(0.9, 0.999), eps=1e-8):
        self.loss_grad, self.params, self.batch = loss_grad, params, batch
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def __call__(self) -> float:
        loss, grads = self.loss_grad(self.params, *self.batch)
        b1, b2 = self.betas
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            m_hat = m / (1 - b1 ** self.t)
            v_hat = v / (1 - b2 ** self.t)
            p -= (self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(p.dtype)
        return loss


def w4_numpy(x):
    a, b = np.float32(W4_A), np.float32(W4_B)
    t = np.tanh(a * x + b)
    s = 1 / (1 + np.exp(-x))
    e = np.exp(-x * x)
    value = float((t * s + e).sum(dtype=np.float64))
    grad = (1 - t * t) * a * s + t * s * (1 - s) - 2 * x * e
    return value, grad


def softplus(v: float) -> float:
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


W7_SOFTPLUS, W7_SUM4, W7_MUL, W7_SOFTMAX4 = range(4)


def w7_program(n_ops: int) -> list[tuple[int, int, tuple[int, ...]]]:
    """W7 as a list of (op, first output node, input nodes) over node numbers (x[0..99]
    first): what a tape interpreter runs. softmax4 writes 4 nodes from 4 consecutive ones."""
    program, n = [], 100
    for op in range(n_ops):
        k = op % 4
        if k == 0:
            program.append((W7_SOFTPLUS, n, (n - 10,)))
        elif k == 1:
            program.append((W7_SUM4, n, (n - 30, n - 25, n - 20, n - 15)))
        elif k == 2:
            program.append((W7_MUL, n, (n - 20, n - 10)))
        else:
            program.append((W7_SOFTMAX4, n, (n - 4, n - 3, n - 2, n - 1)))
            n += 3
        n += 1
    return program


def w7_nodes(program) -> int:
    """How many nodes a W7 program fills (x included)."""
    op, o, _ = program[-1]
    return o + (4 if op == W7_SOFTMAX4 else 1)


def w7_python(x, n_ops: int) -> tuple[float, np.ndarray]:
    """W7 in plain Python floats: the loss (the sum of all nodes) and its gradient, by a
    reverse sweep over w7_program (every node's adjoint starts at 1, from the sum)."""
    program = w7_program(n_ops)
    v = list(map(float, x)) + [0.0] * (w7_nodes(program) - 100)
    for op, o, ins in program:
        if op == W7_SOFTPLUS:
            v[o] = softplus(v[ins[0]])
        elif op == W7_SUM4:
            v[o] = v[ins[0]] + v[ins[1]] + v[ins[2]] + v[ins[3]]
        elif op == W7_MUL:
            v[o] = v[ins[0]] * v[ins[1]]
        else:
            m = max(v[i] for i in ins)
            e = [math.exp(v[i] - m) for i in ins]
            s = sum(e)
            for j in range(4):
                v[o + j] = e[j] / s
    g = [1.0] * len(v)
    for op, o, ins in reversed(program):
        if op == W7_SOFTPLUS:
            g[ins[0]] += g[o] / (1.0 + math.exp(-v[ins[0]]))
        elif op == W7_SUM4:
            for i in ins:
                g[i] += g[o]
        elif op == W7_MUL:
            a, b = ins
            g[a] += g[o] * v[b]
            g[b] += g[o] * v[a]
        else:
            dot = sum(g[o + j] * v[o + j] for j in range(4))
            for j, i in enumerate(ins):
                g[i] += v[o + j] * (g[o + j] - dot)
    return math.fsum(v), np.array(g[:100])
