"""graphc against torch autograd (float64): every op of API.md, value and gradient, on random
inputs; composites (softmax family, sigmoid, batched matmul, max/min reductions) and a small MLP.

One graphc call per op: ``value_and_grad(loss, argnums, has_aux=True)`` gives the loss, the op's
forward output (as aux) and the gradients at once.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import ALL_OPS, close, loss_weights

import graphc

torch = pytest.importorskip("torch")
F = torch.nn.functional

VAL = dict(rtol=1e-10, atol=1e-12)
GRAD = dict(rtol=1e-9, atol=1e-11)


class _TorchNS:
    """The op names of API.md, on torch tensors."""

    add = staticmethod(torch.add)
    subtract = staticmethod(torch.sub)
    multiply = staticmethod(torch.mul)
    divide = staticmethod(torch.div)
    negative = staticmethod(torch.neg)
    exp = staticmethod(torch.exp)
    log = staticmethod(torch.log)
    sqrt = staticmethod(torch.sqrt)
    sin = staticmethod(torch.sin)
    cos = staticmethod(torch.cos)
    tanh = staticmethod(torch.tanh)
    sigmoid = staticmethod(torch.sigmoid)
    relu = staticmethod(torch.relu)
    abs = staticmethod(torch.abs)
    square = staticmethod(torch.square)
    log1p = staticmethod(torch.log1p)
    expm1 = staticmethod(torch.expm1)
    matmul = staticmethod(torch.matmul)
    outer = staticmethod(torch.outer)

    @staticmethod
    def _t(x):
        if isinstance(x, torch.Tensor):
            return x
        return torch.as_tensor(x, dtype=torch.float64)

    @staticmethod
    def power(a, b):
        return torch.pow(a, b)

    @staticmethod
    def leaky_relu(x, slope=0.01):
        return F.leaky_relu(x, slope)

    @classmethod
    def maximum(cls, a, b):
        return torch.maximum(cls._t(a), cls._t(b))

    @classmethod
    def minimum(cls, a, b):
        return torch.minimum(cls._t(a), cls._t(b))

    @classmethod
    def where(cls, c, a, b):
        return torch.where(c, cls._t(a), cls._t(b))

    @staticmethod
    def clip(x, lo, hi):
        return torch.clamp(x, lo, hi)

    @staticmethod
    def _reduce(fn, x, axis, keepdims):
        if axis is None:
            out = fn(x, dim=tuple(range(x.ndim)), keepdim=keepdims)
        else:
            out = fn(x, dim=axis if isinstance(axis, tuple) else (axis,), keepdim=keepdims)
        return out

    @classmethod
    def sum(cls, x, axis=None, keepdims=False):
        return cls._reduce(torch.sum, x, axis, keepdims)

    @classmethod
    def mean(cls, x, axis=None, keepdims=False):
        return cls._reduce(torch.mean, x, axis, keepdims)

    @classmethod
    def max(cls, x, axis=None, keepdims=False):
        return cls._reduce(torch.amax, x, axis, keepdims)

    @classmethod
    def min(cls, x, axis=None, keepdims=False):
        return cls._reduce(torch.amin, x, axis, keepdims)

    @staticmethod
    def dot(a, b):
        return torch.dot(a, b) if a.ndim == 1 else torch.matmul(a, b)

    @staticmethod
    def reshape(x, shape):
        return torch.reshape(x, shape)

    @staticmethod
    def transpose(x, axes=None):
        if axes is None:
            axes = tuple(reversed(range(x.ndim)))
        return x.permute(*axes)

    @staticmethod
    def broadcast_to(x, shape):
        return torch.broadcast_to(x, shape)

    @staticmethod
    def expand_dims(x, axis):
        return torch.unsqueeze(x, axis)

    @staticmethod
    def squeeze(x, axis=None):
        return torch.squeeze(x) if axis is None else torch.squeeze(x, axis)

    @staticmethod
    def concatenate(xs, axis=0):
        return torch.cat(list(xs), dim=axis)

    @staticmethod
    def stack(xs, axis=0):
        return torch.stack(list(xs), dim=axis)

    @staticmethod
    def softmax(x, axis=-1):
        return torch.softmax(x, dim=axis)

    @staticmethod
    def log_softmax(x, axis=-1):
        return torch.log_softmax(x, dim=axis)

    @staticmethod
    def logsumexp(x, axis=None, keepdims=False):
        dims = tuple(range(x.ndim)) if axis is None else (
            axis if isinstance(axis, tuple) else (axis,))
        return torch.logsumexp(x, dim=dims, keepdim=keepdims)


TorchNS = _TorchNS()

TORCH_OPS = [op for op in ALL_OPS if op.torch and op.grad]


def _graphc_loss(op, w):
    n = op.n_inputs

    def body(*xs):
        out = op.fn(graphc, *xs)
        return graphc.sum(out * w), out

    if n == 1:
        return lambda a: body(a)
    if n == 2:
        return lambda a, b: body(a, b)
    return lambda a, b, c: body(a, b, c)


def _torch_value_and_grad(op, xs, w):
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    out = op.fn(TorchNS, *ts)
    loss = torch.sum(out * torch.as_tensor(w))
    loss.backward()
    # an input used only through a comparison has no torch grad: its gradient is zero
    grads = [np.zeros(t.shape) if t.grad is None else t.grad.numpy() for t in ts]
    return out.detach().numpy(), loss.item(), grads


@pytest.mark.parametrize("op", TORCH_OPS, ids=lambda o: o.id)
def test_op_value_and_gradient_vs_torch(op):
    xs = op.inputs()
    # shape of the output from torch, then weights for the scalar loss
    with torch.no_grad():
        probe = op.fn(TorchNS, *[torch.as_tensor(x) for x in xs])
    w = loss_weights(tuple(probe.shape))
    t_out, t_loss, t_grads = _torch_value_and_grad(op, xs, w)
    argnums = tuple(range(op.n_inputs))
    (loss, out), grads = graphc.value_and_grad(_graphc_loss(op, w), argnums=argnums,
                                               has_aux=True)(*xs)
    assert np.shape(out) == t_out.shape
    close(out, t_out, **VAL)
    close(loss, t_loss, **VAL)
    for g, tg in zip(grads, t_grads):
        assert np.shape(g) == tg.shape
        close(g, tg, **GRAD)


@pytest.mark.parametrize("op", [op for op in ALL_OPS if op.torch and not op.grad],
                         ids=lambda o: o.id)
def test_comparison_vs_torch(op):
    xs = op.inputs()
    ref = op.fn(TorchNS, *[torch.as_tensor(x) for x in xs]).numpy()
    fn = (lambda a, b: op.fn(graphc, a, b)) if op.n_inputs == 2 else (lambda a: op.fn(graphc, a))
    out = graphc.compile(fn)(*xs)
    np.testing.assert_array_equal(np.asarray(out), ref)


# --------------------------------------------------------------------------------------------
# reversed slices and .T (torch has no negative steps; use flip / permute)
# --------------------------------------------------------------------------------------------


REVERSED = [
    ("reverse_1d", lambda x: x[::-1], lambda t: torch.flip(t, (0,)), (7,)),
    ("reverse_step_2", lambda x: x[::-2], lambda t: torch.flip(t, (0,))[::2], (7,)),
    ("reverse_rows", lambda x: x[::-1, 1:], lambda t: torch.flip(t, (0,))[:, 1:], (3, 4)),
    ("T_2d", lambda x: x.T, lambda t: t.T, (3, 4)),
    ("T_3d", lambda x: x.T, lambda t: t.permute(2, 1, 0), (2, 3, 4)),
]


@pytest.mark.parametrize("name,gf,tf,shape", REVERSED, ids=[r[0] for r in REVERSED])
def test_reversal_vs_torch(name, gf, tf, shape):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape)
    t = torch.tensor(x, requires_grad=True)
    tout = tf(t)
    w = loss_weights(tuple(tout.shape))
    (torch.sum(tout * torch.as_tensor(w))).backward()
    (v, out), g = graphc.value_and_grad(lambda x: (graphc.sum(gf(x) * w), gf(x)),
                                        has_aux=True)(x)
    close(out, tout.detach().numpy(), **VAL)
    close(g, t.grad.numpy(), **GRAD)


# --------------------------------------------------------------------------------------------
# composites
# --------------------------------------------------------------------------------------------


def _vg_both(gfn, tfn, xs):
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    tl = tfn(*ts)
    tl.backward()
    argnums = tuple(range(len(xs)))
    v, gs = graphc.value_and_grad(gfn, argnums=argnums)(*xs)
    close(v, tl.item(), **VAL)
    for g, t in zip(gs, ts):
        close(g, t.grad.numpy(), **GRAD)


def test_softmax_log_softmax_logsumexp_sigmoid_composite():
    rng = np.random.default_rng(31)
    z = 4.0 * rng.standard_normal((6, 5))
    w = rng.standard_normal((6, 5))

    def g(z):
        return (graphc.sum(graphc.softmax(z, axis=0) * w) + graphc.sum(graphc.log_softmax(z) * w)
                + graphc.sum(graphc.logsumexp(z, axis=1) ** 2) + graphc.mean(graphc.sigmoid(z * w)))

    def t(z):
        W = torch.as_tensor(w)
        return (torch.sum(torch.softmax(z, 0) * W) + torch.sum(torch.log_softmax(z, 1) * W)
                + torch.sum(torch.logsumexp(z, 1) ** 2) + torch.mean(torch.sigmoid(z * W)))

    _vg_both(g, t, [z])


def test_extreme_logits_vs_torch():
    z = np.array([[1000.0, -1000.0, 0.0, 999.5], [-800.0, -801.0, -799.0, 5.0]])
    w = np.array([[1.0, 2.0, -1.0, 0.5], [0.3, -0.2, 0.1, 2.0]])

    def g(z):
        return (graphc.sum(graphc.log_softmax(z) * w) + graphc.sum(graphc.logsumexp(z, axis=-1))
                + graphc.sum(graphc.sigmoid(z) * w))

    def t(z):
        W = torch.as_tensor(w)
        return (torch.sum(torch.log_softmax(z, -1) * W) + torch.sum(torch.logsumexp(z, -1))
                + torch.sum(torch.sigmoid(z) * W))

    _vg_both(g, t, [z])


def test_batched_matmul_chain_vs_torch():
    rng = np.random.default_rng(32)
    a, b, c = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 5, 2)), rng.standard_normal(
        (2, 6))

    def g(a, b, c):
        return graphc.sum(graphc.tanh(graphc.matmul(a, b) @ c) ** 2)

    def t(a, b, c):
        return torch.sum(torch.tanh(torch.matmul(a, b) @ c) ** 2)

    _vg_both(g, t, [a, b, c])


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
def test_max_min_reductions_no_ties_vs_torch(axis):
    rng = np.random.default_rng(33)
    x = (rng.permutation(24).reshape(2, 3, 4) - 12.0) * 0.1 + 0.01 * rng.uniform(size=(2, 3, 4))

    def g(x):
        return graphc.sum(graphc.max(x, axis=axis) ** 2) - graphc.sum(
            graphc.exp(graphc.min(x, axis=axis)))

    def t(x):
        return torch.sum(TorchNS.max(x, axis) ** 2) - torch.sum(torch.exp(TorchNS.min(x, axis)))

    _vg_both(g, t, [x])


def _mlp_params(rng):
    return {"w1": rng.standard_normal((4, 16)) * 0.5, "b1": rng.standard_normal(16) * 0.1,
            "w2": rng.standard_normal((16, 8)) * 0.3, "b2": rng.standard_normal(8) * 0.1,
            "w3": rng.standard_normal((8, 3)) * 0.3, "b3": np.zeros(3)}


def test_small_mlp_cross_entropy_loss_vs_torch():
    rng = np.random.default_rng(34)
    p = _mlp_params(rng)
    x = rng.standard_normal((10, 4))
    labels = rng.integers(0, 3, size=10)

    def loss(p, x, labels):
        h = graphc.relu(x @ p["w1"] + p["b1"])
        h = graphc.tanh(h @ p["w2"] + p["b2"])
        logits = h @ p["w3"] + p["b3"]
        y = graphc.one_hot(labels, 3, dtype=np.float64)
        ce = -graphc.mean(graphc.sum(y * graphc.log_softmax(logits), axis=-1))
        l2 = 1e-3 * (graphc.sum(p["w1"] ** 2) + graphc.sum(p["w2"] ** 2) + graphc.sum(p["w3"] ** 2))
        return ce + l2

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    xt = torch.as_tensor(x)
    h = torch.relu(xt @ tp["w1"] + tp["b1"])
    h = torch.tanh(h @ tp["w2"] + tp["b2"])
    logits = h @ tp["w3"] + tp["b3"]
    tl = F.cross_entropy(logits, torch.as_tensor(labels)) + 1e-3 * (
        torch.sum(tp["w1"] ** 2) + torch.sum(tp["w2"] ** 2) + torch.sum(tp["w3"] ** 2))
    tl.backward()
    pre = (x @ p["w1"] + p["b1"])
    assert np.min(np.abs(pre)) > 1e-4  # away from the relu kink

    v, g = graphc.value_and_grad(loss)(p, x, labels)
    close(v, tl.item(), **VAL)
    assert isinstance(g, dict) and set(g) == set(p)
    for k in p:
        close(g[k], tp[k].grad.numpy(), **GRAD)


def test_small_mlp_mse_hinge_vs_torch_float32():
    rng = np.random.default_rng(35)
    p = {k: v.astype(np.float32) for k, v in _mlp_params(rng).items()}
    x = rng.standard_normal((10, 4)).astype(np.float32)
    y = np.where(rng.standard_normal((10, 3)) > 0, 1.0, -1.0).astype(np.float32)

    def loss(p, x, y):
        h = graphc.relu(x @ p["w1"] + p["b1"])
        h = graphc.sigmoid(h @ p["w2"] + p["b2"])
        s = h @ p["w3"] + p["b3"]
        return graphc.mean(graphc.relu(1.0 - y * s)) + graphc.mean((s - y) ** 2)

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    h = torch.relu(xt @ tp["w1"] + tp["b1"])
    h = torch.sigmoid(h @ tp["w2"] + tp["b2"])
    s = h @ tp["w3"] + tp["b3"]
    tl = torch.mean(torch.relu(1.0 - yt * s)) + torch.mean((s - yt) ** 2)
    tl.backward()
    margin = 1.0 - y * s.detach().numpy()
    assert np.min(np.abs(margin)) > 1e-3  # away from the hinge kink

    v, g = graphc.value_and_grad(loss)(p, x, y)
    assert np.asarray(v).dtype == np.float32
    close(v, tl.item(), rtol=1e-5, atol=1e-6)
    for k in p:
        assert g[k].dtype == np.float32
        close(g[k], tp[k].grad.numpy(), rtol=1e-4, atol=1e-5)


def test_hessian_vs_torch():
    rng = np.random.default_rng(36)
    x = rng.standard_normal(4)
    A = rng.standard_normal((4, 4))

    def g(x):
        return graphc.sum(graphc.tanh(A @ x) ** 2) + graphc.logsumexp(x)

    def t(x):
        return torch.sum(torch.tanh(torch.as_tensor(A) @ x) ** 2) + torch.logsumexp(x, 0)

    H = graphc.hessian(g)(x)
    Ht = torch.autograd.functional.hessian(t, torch.as_tensor(x)).numpy()
    close(H, Ht, rtol=1e-9, atol=1e-11)


def test_jacobian_vs_torch():
    rng = np.random.default_rng(37)
    x = rng.standard_normal((2, 3))
    W = rng.standard_normal((3, 4))

    def g(x):
        return graphc.softmax(x @ W, axis=-1)

    J = graphc.jacobian(g)(x)
    Jt = torch.autograd.functional.jacobian(lambda x: torch.softmax(x @ torch.as_tensor(W), -1),
                                            torch.as_tensor(x)).numpy()
    assert J.shape == Jt.shape == (2, 4, 2, 3)
    close(J, Jt, rtol=1e-10, atol=1e-12)
