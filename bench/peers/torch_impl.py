"""PyTorch (CPU): eager, torch.compile of the loss, and torch.compile of a whole torch.func
step (forward, backward and update in one compiled function)."""

from __future__ import annotations

import numpy as np
import torch

from bench import problems as P
from bench.peers import THREADS

torch.set_num_threads(THREADS)


def _t(a):
    return torch.from_numpy(np.array(a))


def _w0():
    w, b, x, y = (torch.tensor(v, dtype=torch.float64, requires_grad=i < 2)
                  for i, v in enumerate(P.W0_ARGS))

    def run():
        w.grad = b.grad = None
        loss = (w * x + b - y) ** 2
        loss.backward()
        return loss.item(), w.grad.item(), b.grad.item()
    return run


def _mlp(params, x):
    return P.mlp(params, x, torch.relu)


def _hinge(params, x, y):
    score = _mlp(params, x)[:, 0]
    reg = sum((p * p).sum() for p in params)
    return torch.relu(1 - y * score).mean() + 1e-4 * reg


def _ce(params, x, labels):
    return torch.nn.functional.cross_entropy(_mlp(params, x), labels)


def _setup(sizes, dtype, batch_fn):
    params = [_t(p).requires_grad_() for p in P.init_mlp(sizes, 0, dtype)]
    return params, tuple(_t(b) for b in batch_fn())


def _eager(loss_fn, sizes, dtype, batch_fn, optimizer, lr, compile_loss=False):
    def make():
        params, batch = _setup(sizes, dtype, batch_fn)
        opt = getattr(torch.optim, optimizer)(params, lr=lr)
        f = torch.compile(loss_fn) if compile_loss else loss_fn

        def run():
            opt.zero_grad(set_to_none=True)
            loss = f(params, *batch)
            loss.backward()
            opt.step()
            return loss.item()
        return run
    return make


def _func_step(loss_fn, sizes, dtype, batch_fn, optimizer, lr):
    """One torch.compile'd function: value and gradient by torch.func, then the update."""
    def make():
        params, batch = _setup(sizes, dtype, batch_fn)
        params = [p.detach() for p in params]
        grad_and_value = torch.func.grad_and_value(loss_fn)
        state = {"m": [torch.zeros_like(p) for p in params],
                 "v": [torch.zeros_like(p) for p in params],
                 "t": torch.zeros((), dtype=torch.float64)}

        @torch.compile
        def sgd(params, *batch):
            grads, loss = grad_and_value(params, *batch)
            for p, g in zip(params, grads):
                p.sub_(lr * g)
            return loss

        @torch.compile
        def adam(params, m_list, v_list, t, *batch):
            grads, loss = grad_and_value(params, *batch)
            t.add_(1)
            for p, g, m, v in zip(params, grads, m_list, v_list):
                m.mul_(0.9).add_(0.1 * g)
                v.mul_(0.999).add_(0.001 * g * g)
                m_hat = m / (1 - 0.9 ** t)
                v_hat = v / (1 - 0.999 ** t)
                p.sub_((lr * m_hat / (v_hat.sqrt() + 1e-8)).to(p.dtype))
            return loss

        if optimizer == "SGD":
            return lambda: sgd(params, *batch).item()
        return lambda: adam(params, state["m"], state["v"], state["t"], *batch).item()
    return make


def _training(loss_fn, sizes, dtype, batch_fn, optimizer, lr):
    args = (loss_fn, sizes, dtype, batch_fn, optimizer, lr)
    return {"torch": _eager(*args), "torch.compile": _eager(*args, compile_loss=True),
            "torch.compile step": _func_step(*args)}


def _w4_fn(x):
    return (torch.tanh(P.W4_A * x + P.W4_B) * torch.sigmoid(x) + torch.exp(-x * x)).sum()


def _w4(compiled):
    def make():
        x = _t(P.w4_x())
        if compiled:
            f = torch.compile(torch.func.grad_and_value(_w4_fn))

            def run():
                grad, value = f(x)
                return value.item(), grad.numpy()
            return run

        def run_eager():
            xr = x.detach().requires_grad_()
            value = _w4_fn(xr)
            value.backward()
            return value.item(), xr.grad.numpy()
        return run_eager
    return make


def _w7(n, stack=False):
    def make():
        x0 = _t(P.w7_x())

        def run():
            x = x0.detach().requires_grad_()
            nodes = list(x.unbind())
            for op in range(n):
                k = op % 4
                if k == 0:
                    nodes.append(torch.nn.functional.softplus(nodes[-10]))
                elif k == 1:
                    nodes.append(sum(nodes[-30:-10:5]))
                elif k == 2:
                    nodes.append(nodes[-20] * nodes[-10])
                else:
                    nodes.extend(torch.softmax(torch.stack(nodes[-4:]), 0).unbind())
            loss = torch.stack(nodes).sum() if stack else sum(nodes)
            loss.backward()
            return loss.item(), x.grad.numpy()
        return run
    return make


CASES = {
    "W0": {"torch": _w0},
    **{w: _training({"hinge": _hinge, "ce": _ce}[loss], *spec)
       for w, (loss, *spec) in P.training_specs().items()},
    "W4": {"torch": _w4(False), "torch.compile": _w4(True)},
    "W7-1000": {"torch": _w7(1000)},
    "W7-1000-stack": {"torch": _w7(1000, stack=True)},
}
