"""Scaling of data-parallel train_step(comm=...) on the digits MLP (64-128-64-10, batch 128,
Adam) and W3 (1024-2048-2048-10, batch 256, float32, SGD), the global batch split over the
ranks (strong scaling), one thread per rank:

    OMP_NUM_THREADS=1 mpiexec -n 1 python -m bench.measure_mpi       (then -n 2)
    OMP_NUM_THREADS=1 python -m bench.measure_mpi --project          (the 8-64 rank model)

Per step (medians of timed steps, rank 0): the whole step; its parts: the gradient C call,
the allreduce (including waiting for the slower rank), the update C call; the allreduce alone
on the same buffer after a barrier, and its bandwidth (buffer bytes / time). A 1-rank run
also times plain train_step (one C call, no comm) for reference.

--project measures, in one process, the gradient call at the per-rank batch of 8..64 ranks
and the update call, and models the allreduce on a 10 Gb/s network (stated as a simulation):
t_ar(p) = 2 log2(p) alpha + 2 (p-1)/p S / B + t_reduce(S), with B = 1.25 GB/s, alpha = 25 us
(TCP/Ethernet latency per message round), t_reduce = the measured 2-rank shared-memory
allreduce of S bytes (the summing and copying every rank still does).
"""

from __future__ import annotations

import sys
import time

import numpy as np

import graphc
from graphc import distributed, nn, optim
from graphc.train import TrainStep

WORKLOADS = {"digits": ([64, 128, 64, 10], 128, "adam"),
             "w3": ([1024, 2048, 2048, 10], 256, "sgd")}
STEPS = {"digits": 400, "w3": 12}
NET_BYTES_PER_S = 10e9 / 8
LATENCY_S = 25e-6


def setup(name: str, comm=None, rows: int | None = None):
    sizes, batch, kind = WORKLOADS[name]
    model = nn.MLP(sizes, activation="relu", init="he", seed=0)
    opt = (optim.Adam(model.params, lr=3e-3) if kind == "adam"
           else optim.SGD(model.params, lr=0.01))
    step = graphc.train_step(lambda p, x, y: nn.cross_entropy(model.apply(p, x), y), opt,
                             comm=comm)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(batch, sizes[0])).astype(np.float32)
    Y = rng.integers(0, sizes[-1], batch)
    if rows is not None:
        return step, (X[:rows], Y[:rows])
    return step, (distributed.shard(X, Y, comm) if comm is not None else (X, Y))


def median_ms(times: list[float]) -> float:
    return float(np.median(times)) * 1e3


def parts(step, batch: tuple, n: int) -> dict:
    """Median ms of the whole step and of its three parts (the step's own calls, timed)."""
    key = tuple([(b.shape, b.dtype) for b in batch])
    grads = step._grad_calls[key]
    whole, g, ar, up = [], [], [], []
    for _ in range(n):
        step.comm.Barrier()
        t0 = time.perf_counter()
        step(*batch)
        whole.append(time.perf_counter() - t0)
    for _ in range(n):
        step.comm.Barrier()
        t0 = time.perf_counter()
        grads(*batch)
        t1 = time.perf_counter()
        step._reduce()
        t2 = time.perf_counter()
        TrainStep.__call__(step, step.buffer)
        t3 = time.perf_counter()
        g.append(t1 - t0)
        ar.append(t2 - t1)
        up.append(t3 - t2)
    return {"step": median_ms(whole), "grad": median_ms(g), "allreduce": median_ms(ar),
            "update": median_ms(up)}


def allreduce_alone(step, n: int) -> float:
    """Median ms of the step's allreduce on its own buffer, ranks lined up by a barrier."""
    saved = step.buffer.copy()
    times = []
    for _ in range(n):
        step.buffer.fill(1)
        step.comm.Barrier()
        t0 = time.perf_counter()
        step._allreduce(step.timeout, 0)
        times.append(time.perf_counter() - t0)
    step.buffer[:] = saved
    return median_ms(times)


def measure(comm) -> None:
    rank, size = comm.Get_rank(), comm.Get_size()
    for name in WORKLOADS:
        step, batch = setup(name, comm)
        for _ in range(3):
            step(*batch)
        n = STEPS[name]
        r = parts(step, batch, n)
        r["allreduce alone"] = allreduce_alone(step, max(n, 20))
        mb = step.buffer.nbytes / 1e6
        if size == 1:
            plain, pbatch = setup(name)
            for _ in range(3):
                plain(*pbatch)
            t = []
            for _ in range(n):
                t0 = time.perf_counter()
                plain(*pbatch)
                t.append(time.perf_counter() - t0)
            r["plain train_step"] = median_ms(t)
        if rank == 0:
            cells = ", ".join(f"{k} {v:.3f} ms" for k, v in r.items())
            print(f"{name} ranks={size} rows/rank={len(batch[0])} buffer={mb:.2f} MB: {cells}; "
                  f"allreduce share {r['allreduce'] / r['step']:.1%}; allreduce alone "
                  f"{mb / r['allreduce alone']:.2f} GB/s", flush=True)


def project(t_reduce_ms: dict) -> None:
    """The simulated 8-64 rank table (see the module docstring); t_reduce_ms: the measured
    2-rank shared-memory allreduce of each workload's buffer."""
    from mpi4py import MPI
    comm = MPI.COMM_SELF
    for name, (_, batch, _) in WORKLOADS.items():
        rows_list = [batch] + [max(batch // p, 1) for p in (8, 16, 32, 64)]
        t_grad = {}
        for rows in rows_list:
            step, b = setup(name, comm, rows)
            for _ in range(3):
                step(*b)
            t_grad[rows] = parts(step, b, STEPS[name])
        base = t_grad[batch]["grad"] + t_grad[batch]["update"]
        nbytes = step.buffer.nbytes
        print(f"\n{name}: 1 rank {base:.3f} ms per step (gradient + update), buffer "
              f"{nbytes / 1e6:.2f} MB")
        print("| ranks | rows/rank | gradient (measured) | update (measured) | allreduce "
              "(model) | step | speed-up | efficiency | allreduce share | weak scaling "
              f"efficiency ({batch} rows/rank) |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for p, rows in zip((8, 16, 32, 64), rows_list[1:]):
            g, u = t_grad[rows]["grad"], t_grad[rows]["update"]
            ar = (2 * np.log2(p) * LATENCY_S + 2 * (p - 1) / p * nbytes / NET_BYTES_PER_S
                  ) * 1e3 + t_reduce_ms[name]
            total = g + u + ar
            print(f"| {p} | {rows} | {g:.3f} ms | {u:.3f} ms | {ar:.3f} ms | {total:.3f} ms | "
                  f"{base / total:.2f}x | {base / total / p:.0%} | {ar / total:.0%} | "
                  f"{base / (base + ar):.0%} |")


if __name__ == "__main__":
    if "--project" in sys.argv:
        # the 2-rank shared-memory allreduce of each buffer, from the -n 2 run (ms)
        t_reduce = dict(a.split("=") for a in sys.argv[2:] if "=" in a)
        project({k: float(v) for k, v in t_reduce.items()})
    else:
        from mpi4py import MPI
        measure(MPI.COMM_WORLD)
