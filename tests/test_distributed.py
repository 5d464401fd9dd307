"""graphc.distributed and train_step(comm=...): the helpers in-process, and real MPI runs
(`mpiexec -n 2|4 python tests/mpi_worker.py SCENARIO`, under timeouts) where mpi4py and
mpiexec are installed (`pip install graphc[mpi]`); those are skipped otherwise."""

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from graphc import GraphcError, distributed

WORKER = Path(__file__).with_name("mpi_worker.py")
MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                        os.environ.get("PATH", "")]))
needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
    reason="mpi4py or mpiexec not installed (pip install 'graphc[mpi]')")


class FakeComm:
    def __init__(self, rank: int, size: int):
        self.rank, self.size = rank, size

    def Get_rank(self) -> int:
        return self.rank

    def Get_size(self) -> int:
        return self.size


def test_import_graphc_does_not_import_mpi4py():
    code = ("import sys, graphc, graphc.distributed; "
            "assert 'mpi4py' not in sys.modules, 'imported'; print('clean')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "clean", out.stderr


@pytest.mark.parametrize("shuffle", [False, True])
def test_shard_splits_rows_evenly_and_the_same_way_everywhere(shuffle):
    X = np.arange(22 * 3, dtype=np.float32).reshape(22, 3)
    Y = np.arange(22) * 10
    parts = [distributed.shard(X, Y, FakeComm(r, 4), shuffle=shuffle, seed=5)
             for r in range(4)]
    assert [len(x) for x, _ in parts] == [6, 6, 5, 5]
    rows = np.concatenate([x[:, 0] // 3 for x, _ in parts]).astype(int)
    np.testing.assert_array_equal(np.concatenate([y for _, y in parts]), rows * 10)
    if shuffle:
        np.testing.assert_array_equal(rows, np.random.default_rng(5).permutation(22))
    else:
        np.testing.assert_array_equal(rows, np.arange(22))
    assert all(x.flags.c_contiguous for x, _ in parts)
    (x_only,) = distributed.shard(X, None, FakeComm(3, 4))
    np.testing.assert_array_equal(x_only, X[17:])
    assert [len(distributed.shard(X[:2], Y[:2], FakeComm(r, 4))[0]) for r in range(4)] == \
        [1, 1, 0, 0]
    with pytest.raises(GraphcError, match="X has 22 rows but Y has 21"):
        distributed.shard(X, Y[:21], FakeComm(0, 2))


def _mpiexec(n: int, scenario: str | list, timeout: float, **env) -> tuple[int, str, float]:
    """(exit code, output, seconds) of the worker's scenario (or `python *args`) on n ranks;
    a run still going after `timeout` is killed and fails the test (it hung)."""
    cmd = [MPIEXEC, "-n", str(n)]
    version = subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version or "OpenRTE" in version:
        cmd.append("--oversubscribe")   # 4 ranks on fewer cores (MPICH allows it as is)
    cmd += [sys.executable, *(scenario if isinstance(scenario, list) else [WORKER, scenario])]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **env}, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"mpiexec -n {n} {cmd[-1]} still running after {timeout} s:\n{out}")
    return proc.returncode, out, time.monotonic() - start


def _ok_lines(out: str, n: int, what: str) -> list[str]:
    """Each rank's `[rank R] OK what...` message (one per rank, or the test fails)."""
    found = re.findall(rf"\[rank (\d+)\] (OK {what}[^\n]*?)(?=\[rank \d+\]|\n|$)", out)
    assert sorted(int(r) for r, _ in found) == list(range(n)), out
    return [m for _, m in found]


@needs_mpi
@pytest.mark.parametrize("n,backend", [(2, "c"), (4, "c"), (2, "numpy")])
def test_same_parameters_as_one_process_and_bit_identical_on_every_rank(n, backend):
    """30 steps (uneven shards; on 4 ranks one shard is empty) match one process over the
    whole batches to 1e-10 in float64, SGD+Nesterov+clipping and AdamW with aux; the worker
    checks that every rank's parameters and optimizer state are the same bytes."""
    rc, out, _ = _mpiexec(n, "equal", timeout=400, GRAPHC_BACKEND=backend)
    assert rc == 0, out
    _ok_lines(out, n, "sgd")
    _ok_lines(out, n, "adamw")


@needs_mpi
def test_shape_mismatch_between_ranks_is_a_graphc_error_on_every_rank():
    rc, out, _ = _mpiexec(2, "mismatch", timeout=200)
    assert rc == 0, out
    for what in ("train_step", "broadcast_params"):
        for line in _ok_lines(out, 2, what):
            assert ("rank 1 differs from rank 0: rank 0 has params['W0']: float32[6, 8], "
                    "rank 1 has params['W0']: float32[6, 9]") in line


@needs_mpi
def test_a_rank_failing_inside_the_step_fails_the_step_everywhere_at_once():
    rc, out, seconds = _mpiexec(2, "contract", timeout=200, GRAPHC_MPI_TIMEOUT="100")
    assert rc == 0, out
    lines = _ok_lines(out, 2, "GraphcError")
    assert any("label 99 at position 0 is outside [0, 4)" in line for line in lines), out
    assert any("another rank failed to compute its gradient" in line for line in lines), out
    _ok_lines(out, 2, "no allocation")
    assert seconds < 100        # nobody waited for the timeout


@needs_mpi
@pytest.mark.parametrize("how", ["kill", "hang", "raise"])
def test_a_failed_rank_ends_the_job_instead_of_hanging(how):
    """Rank 1 is SIGKILLed, hangs, or its script dies outside the step at step 10. Killed:
    MPICH's mpiexec ends the job. Hung or gone: the others' allreduce gives up after
    GRAPHC_MPI_TIMEOUT seconds with a GraphcError and the job ends by MPI_Abort."""
    rc, out, seconds = _mpiexec(2, how, timeout=120, GRAPHC_MPI_TIMEOUT="3")
    assert rc != 0, out
    assert "the failure went unnoticed" not in out
    if how == "kill":
        assert "signal 9" in out or "Killed" in out, out
    else:
        # the wait times out (or MPI reports the peer gone first, also a GraphcError)
        assert ("GraphcError: train_step (rank 0 of 2): the gradient allreduce of step 11 "
                "waited 3 s for the other ranks; one of them has probably died or hangs" in out
                or "GraphcError: train_step (rank 0): the gradient allreduce of step 11 "
                   "failed" in out), out
    assert seconds < 60, out


@needs_mpi
def test_the_readme_example_trains_digits_to_the_parameters_of_one_process():
    pytest.importorskip("sklearn")
    rc, out, _ = _mpiexec(2, ["-m", "graphc.demo", "mpi", "--compare"], timeout=400)
    assert rc == 0, out
    accuracy = float(re.search(r"held-out accuracy ([\d.]+)%", out).group(1))
    gap = float(re.search(r"max \|parameter - one process\| = (\S+)", out).group(1))
    # float32, 10 epochs of Adam: the split gradient sums and the fused loops' FMAs round
    # differently from one process, and Adam's g/sqrt(v) amplifies that a little
    assert accuracy > 95 and gap < 2e-4, out
