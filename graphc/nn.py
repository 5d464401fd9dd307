"""Layers and losses. Parameters are dicts of plain numpy arrays; `apply(params, x)` is a pure
function of them (traceable, differentiable, compilable), and calling a layer uses its own.

Losses are means over the batch (the first axis). Called on traced values they add nodes;
called on arrays outside a trace they return numpy values.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .eager import eager as _eager
from .errors import GraphcError
from .ops import api as ops
from .trace import ArrayLike, Tracer, to_tracer

ACTIVATIONS = {"relu": ops.relu, "tanh": ops.tanh, "sigmoid": ops.sigmoid}


def init_weight(n_in: int, n_out: int, init: str, rng: np.random.Generator,
                dtype=np.float32) -> np.ndarray:
    """He/Kaiming normal (std sqrt(2/n_in), for ReLU) or Xavier/Glorot uniform
    (limit sqrt(6/(n_in+n_out)), for tanh/sigmoid)."""
    if init == "he":
        w = rng.normal(0.0, np.sqrt(2.0 / n_in), (n_in, n_out))
    elif init == "xavier":
        limit = np.sqrt(6.0 / (n_in + n_out))
        w = rng.uniform(-limit, limit, (n_in, n_out))
    else:
        raise GraphcError(f"init {init!r}: expected 'he' or 'xavier'")
    return w.astype(dtype)


class Module:
    """Holds `params` (a dict of numpy arrays); `self(x)` is `self.apply(self.params, x)`."""

    params: dict[str, np.ndarray]

    def apply(self, params: dict, x: ArrayLike) -> Tracer:
        raise NotImplementedError

    def __call__(self, x: ArrayLike) -> np.ndarray:
        return _eager(self.apply)(self.params, x)


class Linear(Module):
    """y = x @ W + b with W of shape (n_in, n_out) and b = 0 at initialisation."""

    def __init__(self, n_in: int, n_out: int, init: str = "he", seed: int = 0,
                 dtype=np.float32):
        rng = np.random.default_rng(seed)
        self.params = {"W": init_weight(n_in, n_out, init, rng, dtype),
                       "b": np.zeros(n_out, dtype)}

    def apply(self, params: dict, x: ArrayLike) -> Tracer:
        return ops.matmul(x, params["W"]) + params["b"]


class MLP(Module):
    """Linear layers of the given sizes with `activation` between them (none after the last).
    Parameters W0, b0, W1, b1, ...; init defaults to He for ReLU and Xavier otherwise."""

    def __init__(self, sizes: Sequence[int], activation: str = "relu", init: str | None = None,
                 seed: int = 0, dtype=np.float32):
        if activation not in ACTIVATIONS:
            raise GraphcError(f"activation {activation!r}: expected one of {list(ACTIVATIONS)}")
        if len(sizes) < 2:
            raise GraphcError(f"MLP sizes {list(sizes)}: need at least input and output sizes")
        init = init or ("he" if activation == "relu" else "xavier")
        rng = np.random.default_rng(seed)
        self.sizes = tuple(int(s) for s in sizes)
        self.activation = activation
        self.params = {}
        for i, (n_in, n_out) in enumerate(zip(self.sizes, self.sizes[1:])):
            self.params[f"W{i}"] = init_weight(n_in, n_out, init, rng, dtype)
            self.params[f"b{i}"] = np.zeros(n_out, dtype)

    def apply(self, params: dict, x: ArrayLike) -> Tracer:
        act = ACTIVATIONS[self.activation]
        n = len(self.sizes) - 1
        for i in range(n):
            x = ops.matmul(x, params[f"W{i}"]) + params[f"b{i}"]
            if i < n - 1:
                x = act(x)
        return x


# ---- losses (means over the batch) ----

def mse_loss(pred: ArrayLike, target: ArrayLike) -> Tracer:
    """mean((pred - target)^2)."""
    return ops.mean(ops.square(ops.subtract(pred, target)))


def cross_entropy(logits: ArrayLike, labels: ArrayLike) -> Tracer:
    """mean over rows of -log softmax(logits)[label]: integer labels in [0, n_classes), checked
    at run time by one_hot (a GraphcError names a bad label and its position). Its gradient is
    (softmax - one_hot) / batch."""
    n = to_tracer(logits).shape[-1]
    logp = ops.log_softmax(logits, axis=-1)
    picked = ops.sum(logp * ops.one_hot(labels, n, dtype=logp.dtype), axis=-1)
    return -ops.mean(picked)


def binary_cross_entropy_with_logits(logits: ArrayLike, targets: ArrayLike) -> Tracer:
    """mean(softplus(z) - z*t) = mean(-t log σ(z) - (1-t) log(1-σ(z))), stable for large |z|."""
    return ops.mean(ops.softplus(logits) - ops.multiply(logits, targets))


def hinge_loss(scores: ArrayLike, y: ArrayLike) -> Tracer:
    """mean(max(0, 1 - y*scores)) with y = ±1."""
    return ops.mean(ops.relu(1 - ops.multiply(y, scores)))


for _loss in (mse_loss, cross_entropy, binary_cross_entropy_with_logits, hinge_loss):
    globals()[_loss.__name__] = _eager(_loss)      # numpy in, numpy out outside a trace
del _loss


def batches(X: np.ndarray, Y: np.ndarray | None, batch_size: int, shuffle: bool = False,
            seed: int = 0, drop_last: bool = False) -> Iterator[tuple[np.ndarray, ...]]:
    """Minibatches (X[i], Y[i]) of batch_size rows (contiguous arrays), in order or shuffled
    by a permutation from `seed`; the last, shorter batch is dropped with drop_last."""
    n = len(X)
    if Y is not None and len(Y) != n:
        raise GraphcError(f"batches: X has {n} rows but Y has {len(Y)}")
    if batch_size < 1:
        raise GraphcError(f"batches: batch_size must be positive, got {batch_size}")
    order = np.random.default_rng(seed).permutation(n) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        sel = (order[start:start + batch_size] if order is not None
               else slice(start, start + batch_size))
        xb = np.ascontiguousarray(X[sel])
        yield (xb,) if Y is None else (xb, np.ascontiguousarray(Y[sel]))
