"""Data-parallel training over MPI (mpi4py): `train_step(loss_fn, opt, comm=...)`, and the
helpers `shard` (each rank's share of the data) and `broadcast_params` (rank 0's values).

Each rank computes the gradient of its shard of the batch with one generated C call that
writes it, weighted by the shard's size, into one preallocated flat buffer:
`[n_r * grads..., n_r * loss, n_r]`. One in-place allreduce (sum) over that buffer gives
every rank `[sum n_r g_r, sum n_r loss_r, N]`, so a second C call divides by N (the global
mean gradient and loss, however unevenly the batch was split), clips and updates the
parameters and optimizer state in place: the same bits on every rank.

mpi4py is imported only when a communicator is used, never by `import graphc`.
"""

from __future__ import annotations

import atexit
import math
import os
import time
from collections.abc import Callable
from itertools import zip_longest

import numpy as np

from . import pytree
from .errors import GraphcError
from .ops import api as ops
from .optim import Optimizer
from .runtime import paused_gc
from .train import TrainStep, aliased_graph, normalized_batch

# how long a rank waits in the gradient allreduce for the others (seconds; 0: forever)
DEFAULT_TIMEOUT = 300.0


def shard(X, Y, comm, shuffle: bool = False, seed: int = 0) -> tuple[np.ndarray, ...]:
    """This rank's share of the rows of X (and Y): `(X_r, Y_r)`, or `(X_r,)` when Y is None.
    The rows are split into `comm.Get_size()` contiguous parts whose sizes differ by at most
    one, after a permutation from `seed` (the same on every rank) with shuffle."""
    X = np.asarray(X)
    n, rank, size = len(X), comm.Get_rank(), comm.Get_size()
    if Y is not None and len(Y) != n:
        raise GraphcError(f"shard: X has {n} rows but Y has {len(Y)}")
    q, extra = divmod(n, size)
    start = rank * q + min(rank, extra)
    rows = slice(start, start + q + (rank < extra))
    if shuffle:
        rows = np.random.default_rng(seed).permutation(n)[rows]
    arrays = (X,) if Y is None else (X, np.asarray(Y))
    return tuple(np.ascontiguousarray(a[rows]) for a in arrays)


def broadcast_params(params, comm, root: int = 0):
    """Overwrite every array of the pytree `params` (e.g. model.params, opt.state) in place
    with rank `root`'s values; returns params. A different structure, shape or dtype on some
    rank is a GraphcError on every rank."""
    leaves, treedef = pytree.flatten(params)
    for k, a in enumerate(leaves):
        if not (isinstance(a, np.ndarray) and a.flags.c_contiguous and a.flags.writeable):
            raise GraphcError(f"broadcast_params: leaf {k} must be a writeable C-contiguous "
                              f"numpy array (it is overwritten in place), got "
                              f"{type(a).__name__}")
    same_on_every_rank(comm, _describe("params", leaves, treedef), "broadcast_params")
    for a in leaves:
        comm.Bcast(a, root=root)
    return params


def same_on_every_rank(comm, lines: list[str], what: str) -> None:
    """Raise the same GraphcError on every rank unless all ranks hold the same `lines`
    (one collective: an allgather)."""
    everyone = comm.allgather(lines)
    for rank, theirs in enumerate(everyone):
        if theirs != everyone[0]:
            mine, other = next((a, b) for a, b in zip_longest(everyone[0], theirs,
                                                              fillvalue="nothing")
                               if a != b)
            raise GraphcError(f"{what}: rank {rank} differs from rank 0: rank 0 has {mine}, "
                              f"rank {rank} has {other} (every rank must build the same "
                              f"parameters and optimizer)")


def _describe(name: str, leaves: list, treedef) -> list[str]:
    return [f"{name}{path}: {np.dtype(a.dtype)}{list(np.shape(a))}"
            for path, a in zip(pytree.leaf_paths(treedef), leaves)]


class DataParallelStep(TrainStep):
    """train_step(loss_fn, opt, comm=comm): two C calls per step around one allreduce.

    Every rank calls the step with its own shard of the batch (`shard`); the loss and the
    gradient are means over all ranks' rows together, each rank's weighted by the length of
    its batch's first array. The loss returned is that global mean; `aux` (with has_aux) is
    this rank's own. All ranks must start from the same parameters (`broadcast_params`) and
    pass the same lr. The allreduce waits at most `timeout` seconds (GRAPHC_MPI_TIMEOUT,
    default 300; 0 waits forever) for the other ranks, then raises GraphcError."""

    def __init__(self, loss_fn: Callable, opt: Optimizer, clip_norm: float | None,
                 has_aux: bool, comm):
        if not all(hasattr(comm, a) for a in ("Get_rank", "Get_size", "allgather",
                                               "Iallreduce")):
            raise GraphcError(f"train_step: comm must be an mpi4py communicator such as "
                              f"MPI.COMM_WORLD, got {type(comm).__name__}")
        super().__init__(loss_fn, opt, clip_norm, has_aux=False)   # the update call's aux
        self.comm, self.aux = comm, has_aux
        self.timeout = float(os.environ.get("GRAPHC_MPI_TIMEOUT", DEFAULT_TIMEOUT))
        params = self.memory[:self._n_p]
        self._sizes = [p.size for p in params]
        n_grad = sum(self._sizes)
        # [n_r * grads..., n_r * loss, n_r]: the first C call writes all but the count
        self.buffer = np.zeros(n_grad + 2, np.result_type(*[p.dtype for p in params]))
        self._written = self.buffer[:-1]
        same_on_every_rank(comm, self._signature(), "train_step(comm=...)")
        self._allreduce = Allreduce(comm, self.buffer)
        self._grad_calls: dict = {}
        self.steps = 0

    def _signature(self) -> list[str]:
        p_leaves, s_leaves = self.memory[:self._n_p], self.memory[self._n_p:]
        hyper = {k: v for k, v in sorted(vars(self.opt).items())
                 if isinstance(v, (bool, int, float, str, tuple))}
        return (_describe("params", p_leaves, self._p_td)
                + _describe("opt.state", s_leaves, self._s_td)
                + [f"optimizer {type(self.opt).__name__}{hyper}",
                   f"clip_norm={self.clip_norm}", f"has_aux={self.aux}"])

    def __call__(self, *batch, lr: float | None = None):
        try:
            try:        # fast path: numpy arrays of a signature seen before
                grads = self._grad_calls[tuple([(b.shape, b.dtype) for b in batch])]
            except (KeyError, AttributeError):
                batch, key = normalized_batch(batch)
                grads = self._grad_calls.get(key) or self._build_grads(key, batch)
            aux = grads(*batch)
        except BaseException:
            self._fail_together()
            raise
        self._reduce()
        loss = TrainStep.__call__(self, self.buffer, lr=lr)
        return (loss, aux) if self.aux else loss

    def _reduce(self) -> None:
        self.steps += 1
        self._allreduce(self.timeout, self.steps)
        count = self.buffer[-1]
        if not count > 0:
            raise GraphcError(
                f"train_step (rank {self.comm.Get_rank()}): step {self.steps} applied no "
                f"update: " + ("another rank failed to compute its gradient (see its error)"
                               if count < 0 else "the batch is empty on every rank"))

    def _fail_together(self) -> None:
        """This rank failed before the allreduce: still take part in it, with a count of
        -inf, so that the other ranks raise at once instead of waiting for it."""
        self.buffer.fill(0)
        self.buffer[-1] = -math.inf
        try:
            self._allreduce(self.timeout, self.steps + 1)
        except GraphcError:
            pass        # the error being raised is this rank's own
        self.steps += 1

    # ---- the gradient call of one batch signature ----

    def _build_grads(self, key: tuple, batch: tuple) -> Callable:
        """The first C call for this batch signature: writes this rank's size-weighted
        gradient and loss into the buffer; returns aux (this rank's)."""
        n = next((b.shape[0] for b in batch if np.ndim(b) > 0), 1)
        buffer, written, memory = self.buffer, self._written, self.memory
        if n == 0:              # an empty shard: it weighs nothing
            def call(*batch):
                buffer.fill(0)
            self._grad_calls[key] = call
            return call
        dtype = buffer.dtype

        def weighted(memory, written, *batch):
            params, _ = self._trees(memory)
            loss, aux, g = self._loss_and_grads(params, batch, self.aux)
            flat = [ops.reshape(ops.astype(x, dtype), (-1,)) for x in (*g, loss)]
            return [*aux, ops.concatenate(flat) * float(n)]

        with paused_gc():
            graph = aliased_graph(weighted, (memory, written, *batch), [len(memory)])
            if self.backend == "numpy":
                from .interpret import Interpreter
                run = Interpreter(graph)
            else:
                from .native import CRunner
                run = CRunner(graph).call
        unflatten_aux, n_aux = self._unflatten_aux, len(graph.outputs) - 1

        def call(*batch):
            outs = run([*memory, written, *batch])
            buffer[-1] = n
            return unflatten_aux(outs[:n_aux]) if self.aux else None
        self.grad_graph = graph
        self._grad_calls[key] = call
        return call

    def _traced_step(self, memory: list, lr, buffer) -> list:
        """The second C call: the global mean gradient and loss from the reduced buffer,
        then clipping and the update (TrainStep's, with the buffer as its batch)."""
        params, state = self._trees(memory)
        count = buffer[-1]
        grads, start = [], 0
        for p, scalar, size in zip(self.memory, self._scalar, self._sizes):
            g = ops.reshape(buffer[start:start + size], () if scalar else p.shape) / count
            grads.append(ops.astype(g, p.dtype))
            start += size
        return [buffer[-2] / count, *self._updated(params, state, grads, lr)]


class Allreduce:
    """`buffer` summed over all ranks in place by one nonblocking MPI allreduce per call
    (no array allocated), polled so that a rank waits for the others at most `timeout`
    seconds (0: forever) and then raises GraphcError; an MPI error is a GraphcError too."""

    def __init__(self, comm, buffer: np.ndarray):
        from mpi4py import MPI
        self.comm, self.buffer, self._mpi = comm, buffer, MPI

    def __call__(self, timeout: float, step: int) -> None:
        mpi = self._mpi
        try:
            request = self.comm.Iallreduce(mpi.IN_PLACE, self.buffer, mpi.SUM)
            if not timeout:
                request.Wait()
                return
            deadline = time.monotonic() + timeout
            while not request.Test():
                if time.monotonic() > deadline:
                    abort_at_exit(self.comm)
                    raise GraphcError(
                        f"train_step (rank {self.comm.Get_rank()} of "
                        f"{self.comm.Get_size()}): the gradient allreduce of step {step} "
                        f"waited {timeout:g} s for the other ranks; one of them has "
                        f"probably died or hangs (GRAPHC_MPI_TIMEOUT sets the wait)")
        except mpi.Exception as e:
            abort_at_exit(self.comm)
            raise GraphcError(f"train_step (rank {self.comm.Get_rank()}): the gradient "
                              f"allreduce of step {step} failed: {e}") from e


def abort_at_exit(comm) -> None:
    """After a collective that timed out or failed, MPI_Finalize at exit could wait for the
    missing rank forever: end the job with MPI_Abort instead (atexit runs before mpi4py finalizes).
    The GraphcError is raised first, so a script can still catch it and save its work."""
    global _aborting
    if not _aborting:
        _aborting = True
        atexit.register(comm.Abort, 1)


_aborting = False
