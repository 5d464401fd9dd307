"""The MPI side of tests/test_distributed.py, run as `mpiexec -n N python tests/mpi_worker.py
SCENARIO`. Every rank prints lines `[rank R] ...`; a scenario that checks values prints
`[rank R] OK ...` when they hold (and raises otherwise)."""

import os
import signal
import sys
import time

import numpy as np
from helpers import memory_growth
from mpi4py import MPI

import graphc
from graphc import distributed, nn, optim

comm = MPI.COMM_WORLD
RANK, SIZE = comm.Get_rank(), comm.Get_size()
SIZES = (6, 8, 4)
STEPS = 30


def say(*words) -> None:
    sys.stdout.write(f"[rank {RANK}] {' '.join(map(str, words))}\n")     # one write per line
    sys.stdout.flush()


def batches(dtype=np.float64) -> list:
    """Global batches of 16, 17, 18 and 3 rows: uneven shards, and an empty one on 4 ranks."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(54, SIZES[0])).astype(dtype)
    Y = rng.integers(0, SIZES[-1], 54)
    bounds = [0, 16, 33, 51, 54]
    return [(X[a:b], Y[a:b]) for a, b in zip(bounds, bounds[1:])]


def train(cfg: dict, comm=None, seed: int = 7, hidden: int = SIZES[1]):
    model = nn.MLP((SIZES[0], hidden, SIZES[2]), activation="tanh", seed=seed,
                   dtype=np.float64)
    if cfg["opt"] == "sgd":
        opt = optim.SGD(model.params, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    else:
        opt = optim.AdamW(model.params, lr=1e-2)

    def loss_fn(p, x, y):
        logits = model.apply(p, x)
        loss = nn.cross_entropy(logits, y)
        return (loss, {"logits": logits}) if cfg.get("aux") else loss
    if comm is not None:
        distributed.broadcast_params(model.params, comm)
    step = graphc.train_step(loss_fn, opt, clip_norm=cfg.get("clip"), has_aux=cfg.get("aux", False),
                             comm=comm)
    losses = []
    for t in range(STEPS):
        xb, yb = batches()[t % 4]
        if comm is not None:
            xb, yb = distributed.shard(xb, yb, comm)
        out = step(xb, yb, lr=0.1 * 0.97 ** t if cfg["opt"] == "sgd" else None)
        if cfg.get("aux"):
            out, aux = out
            assert aux is None if len(xb) == 0 else aux["logits"].shape == (len(xb), SIZES[-1])
        losses.append(out)
    return np.array(losses), model.params, opt


def equal_to_one_process() -> None:
    """30 steps on SIZE ranks equal 30 steps of one process over the whole batches (float64,
    1e-10), and every rank holds bit-identical parameters and optimizer state."""
    for cfg in ({"opt": "sgd", "clip": 0.5}, {"opt": "adamw", "aux": True}):
        want_losses, want, _ = train(cfg)
        # every rank starts from its own random init: broadcast_params makes them rank 0's
        losses, params, opt = train(cfg, comm, seed=7 + RANK)
        np.testing.assert_allclose(losses, want_losses, rtol=1e-10)
        for k in want:
            np.testing.assert_allclose(params[k], want[k], rtol=1e-10, atol=1e-12)
        leaves = graphc.tree_leaves((params, opt.state))
        mine = b"".join(np.ascontiguousarray(a).tobytes() for a in leaves)
        assert all(theirs == mine for theirs in comm.allgather(mine)), "ranks differ"
        worst = max(float(np.max(np.abs(params[k] - want[k]))) for k in want)
        say(f"OK {cfg['opt']} losses {losses[0]:.6f} -> {losses[-1]:.6f}, "
            f"max |param - one process| {worst:.1e}")


def shape_mismatch() -> None:
    """Rank 1 builds a wider hidden layer: train_step and broadcast_params both raise."""
    for what in ("train_step", "broadcast_params"):
        try:
            model = nn.MLP((SIZES[0], SIZES[1] + (RANK == 1), SIZES[2]), seed=0)
            if what == "broadcast_params":
                distributed.broadcast_params(model.params, comm)
            else:
                graphc.train_step(lambda p, x, y: nn.cross_entropy(model.apply(p, x), y),  # noqa: B023
                                  optim.SGD(model.params, lr=0.1), comm=comm)
        except graphc.GraphcError as e:
            say("OK", what, "GraphcError:", e)
        else:
            raise AssertionError(f"{what}: no error")


def contract() -> None:
    """A label out of range on rank 1 only: every rank raises at that step (no hang), no
    rank updates, and the next step trains on as usual. Then 200 steps allocate nothing."""
    model = nn.MLP(SIZES, seed=0)
    step = graphc.train_step(lambda p, x, y: nn.cross_entropy(model.apply(p, x), y),
                             optim.SGD(model.params, lr=0.1), comm=comm)
    x, y = distributed.shard(*batches(np.float32)[0], comm)
    step(x, y)
    before = {k: v.copy() for k, v in model.params.items()}
    bad = y.copy()
    if RANK == 1:
        bad[0] = 99
    try:
        step(x, bad)
    except graphc.GraphcError as e:
        message = str(e)
    else:
        raise AssertionError("no error")
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, before[k])
    step(x, y)
    assert not np.array_equal(model.params["W0"], before["W0"])
    say("OK GraphcError:", message)
    model = nn.MLP([64, 128, 10], seed=0)         # float32: a 33 KB gradient buffer
    step = graphc.train_step(lambda p, x, y: nn.cross_entropy(model.apply(p, x), y),
                             optim.Adam(model.params), comm=comm)
    rng = np.random.default_rng(RANK)
    x, y = rng.normal(size=(32, 64)).astype(np.float32), rng.integers(0, 10, 32)
    step(x, y)
    step(x, y)
    kept, peak = memory_growth(lambda: step(x, y), 200)
    assert kept < 512 and peak < 8192, (kept, peak)   # no array
    say(f"OK no allocation: {kept} bytes kept, peak {peak} over 200 steps")


def peer_fails(how: str) -> None:
    """Rank 1 fails at step 10 (killed, hung, or its script raised outside the step); the
    others must not wait forever."""
    model = nn.MLP(SIZES, seed=0)
    step = graphc.train_step(lambda p, x, y: nn.cross_entropy(model.apply(p, x), y),
                             optim.SGD(model.params, lr=0.1), comm=comm)
    x, y = distributed.shard(*batches(np.float32)[0], comm)
    for t in range(1000):
        if t == 10 and RANK == 1:
            say(f"failing ({how})")
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif how == "hang":
                time.sleep(600)
            raise RuntimeError("rank 1's script failed outside the step")
        step(x, y)
    say("finished 1000 steps: the failure went unnoticed")


if __name__ == "__main__":
    scenario = sys.argv[1]
    if scenario == "equal":
        equal_to_one_process()
    elif scenario == "mismatch":
        shape_mismatch()
    elif scenario == "contract":
        contract()
    else:
        peer_fails(scenario)
