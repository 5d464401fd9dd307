"""`mpiexec -n 4 python -m graphc.demo mpi`: the digits MLP trained data-parallel over MPI,
every rank taking its share of each global batch (the README's "Training on several processes
or machines"). `--compare` also trains it in one process on rank 0 and prints how far apart
the two parameter sets are. Needs the `mpi` and `demo` extras.
"""

from __future__ import annotations

import sys

import numpy as np

import graphc
from graphc import distributed, nn, optim

from .digits import BATCH, LR, SIZES, load

EPOCHS = 10


def train(X, y, comm=None) -> tuple[nn.MLP, float]:
    """The digits MLP after EPOCHS epochs of Adam on global batches of BATCH rows; with comm,
    each rank runs its shard of every batch."""
    model = nn.MLP(SIZES, activation="relu", init="he", seed=0)
    if comm is not None:
        distributed.broadcast_params(model.params, comm)    # rank 0's initial values
    step = graphc.train_step(lambda p, x, t: nn.cross_entropy(model.apply(p, x), t),
                             optim.Adam(model.params, lr=LR), comm=comm)
    for epoch in range(EPOCHS):
        for xb, yb in nn.batches(X, y, BATCH, shuffle=True, seed=epoch):
            loss = step(*distributed.shard(xb, yb, comm)) if comm else step(xb, yb)
    return model, loss


def main(argv: list[str]) -> None:
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    X, y, X_test, y_test = load()
    model, loss = train(X, y, comm)
    accuracy = float(np.mean(model(X_test).argmax(axis=1) == y_test))
    if comm.Get_rank() == 0:
        print(f"{comm.Get_size()} ranks, {EPOCHS} epochs: last loss {loss:.4f}, "
              f"held-out accuracy {accuracy:.1%}")
        if "--compare" in argv:
            alone, _ = train(X, y)
            worst = max(float(np.max(np.abs(model.params[k] - alone.params[k])))
                        for k in alone.params)
            print(f"max |parameter - one process| = {worst:.1e} (float32)")


if __name__ == "__main__":
    main(sys.argv[1:])
