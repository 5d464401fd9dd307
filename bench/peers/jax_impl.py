"""JAX: jax.jit of a whole step (value_and_grad and the update), on GRAPHC_BENCH_THREADS CPU
threads (default 1)."""

from __future__ import annotations

import os

from bench.peers import THREADS

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                      "intra_op_parallelism_threads=1" if THREADS == 1 else
                      f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={THREADS}")
os.environ.setdefault("JAX_ENABLE_X64", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from bench import problems as P  # noqa: E402


def _w0():
    f = jax.jit(jax.value_and_grad(lambda w, b, x, y: (w * x + b - y) ** 2, argnums=(0, 1)))

    def run():
        value, (dw, db) = f(*P.W0_ARGS)
        return float(value), float(dw), float(db)
    return run


def _mlp(params, x):
    return P.mlp(params, x, jax.nn.relu)


def _hinge(params, x, y):
    score = _mlp(params, x)[:, 0]
    return jnp.mean(jax.nn.relu(1 - y * score)) + 1e-4 * sum(jnp.sum(p * p) for p in params)


def _ce(params, x, labels):
    logp = jax.nn.log_softmax(_mlp(params, x), axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def _training(loss_fn, sizes, dtype, batch_fn, optimizer, lr):
    def make():
        params = [jnp.asarray(p) for p in P.init_mlp(sizes, 0, dtype)]
        batch = tuple(jnp.asarray(b) for b in batch_fn())
        vg = jax.value_and_grad(loss_fn)

        @jax.jit
        def sgd(params, *batch):
            loss, grads = vg(params, *batch)
            return loss, [p - lr * g for p, g in zip(params, grads)]

        @jax.jit
        def adam(params, m, v, t, *batch):
            loss, grads = vg(params, *batch)
            t = t + 1
            m = [0.9 * a + 0.1 * g for a, g in zip(m, grads)]
            v = [0.999 * a + 0.001 * g * g for a, g in zip(v, grads)]
            new = [p - (lr * (a / (1 - 0.9 ** t)) / (jnp.sqrt(b / (1 - 0.999 ** t)) + 1e-8))
                   .astype(p.dtype) for p, a, b in zip(params, m, v)]
            return loss, new, m, v, t

        state = {"p": params, "m": [jnp.zeros_like(p) for p in params],
                 "v": [jnp.zeros_like(p) for p in params], "t": jnp.zeros((), jnp.float64)}

        def run_sgd():
            loss, state["p"] = sgd(state["p"], *batch)
            return float(loss)

        def run_adam():
            loss, state["p"], state["m"], state["v"], state["t"] = adam(
                state["p"], state["m"], state["v"], state["t"], *batch)
            return float(loss)
        return run_sgd if optimizer == "SGD" else run_adam
    return {"jax.jit": make}


def _w4():
    f = jax.jit(jax.value_and_grad(lambda x: jnp.sum(
        jnp.tanh(P.W4_A * x + P.W4_B) * jax.nn.sigmoid(x) + jnp.exp(-x * x))))
    x = jnp.asarray(P.w4_x())

    def run():
        value, grad = f(x)
        grad.block_until_ready()
        return float(value), grad
    return run


def _w7(n, stack=False):
    def loss(x):
        nodes = [x[i] for i in range(100)]
        for op in range(n):
            k = op % 4
            if k == 0:
                nodes.append(jax.nn.softplus(nodes[-10]))
            elif k == 1:
                nodes.append(sum(nodes[-30:-10:5]))
            elif k == 2:
                nodes.append(nodes[-20] * nodes[-10])
            else:
                nodes.extend(jax.nn.softmax(jnp.stack(nodes[-4:])))
        return jnp.sum(jnp.stack(nodes)) if stack else sum(nodes)

    def make():
        f = jax.jit(jax.value_and_grad(loss))
        return P.value_and_grad_call(f, jnp.asarray(P.w7_x()))
    return make


CASES = {
    "W0": {"jax.jit": _w0},
    **{w: _training({"hinge": _hinge, "ce": _ce}[loss], *spec)
       for w, (loss, *spec) in P.training_specs().items()},
    "W4": {"jax.jit": _w4},
    "W7-1000": {"jax.jit": _w7(1000)},
    "W7-1000-stack": {"jax.jit": _w7(1000, stack=True)},
}
