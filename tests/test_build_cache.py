"""graphc.build: build + call, memory and disk cache, processes and threads, integrity, fallbacks.

Hand-written C only (no other graphc module). Every test gets its own cache root and sources made
unique with a uuid, so nothing is served from an earlier test's cache.
"""

import array
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import uuid
import warnings
from pathlib import Path

import pytest
from fuzzgen import programs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphc import build
from graphc.build import GraphcWarning, cache_clear, cache_dir, cache_info, load_module
from graphc.errors import CompileError

REPO = Path(__file__).resolve().parents[1]
CDEF = "double total(const double *x, long n);"

# Loads argv[1] with CDEF and prints total(0..9) = 45.0.
CHILD = f"""
import array, sys
from graphc.build import load_module
ffi, lib = load_module(sys.argv[1], {CDEF!r})
x = array.array("d", range(10))
print(lib.total(ffi.from_buffer("double[]", x), len(x)))
"""

# A compiler that logs every call and, when GRAPHC_TEST_NO_COMPILE is set, refuses to compile.
CC_WRAPPER = """#!/bin/sh
echo "$*" >> "$GRAPHC_TEST_CC_LOG"
if [ "$1" != "--version" ] && [ -n "$GRAPHC_TEST_NO_COMPILE" ]; then exit 1; fi
exec gcc "$@"
"""


def unique_source() -> str:
    return f"""/* {uuid.uuid4().hex} */
double total(const double *x, long n) {{
    double s = 0;
    for (long i = 0; i < n; i++) s += x[i];
    return s;
}}
"""


def total(module: tuple, values: list[float]) -> float:
    ffi, lib = module
    x = array.array("d", values)
    return lib.total(ffi.from_buffer("double[]", x), len(x))


def entries(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("??/*") if p.is_dir())


def only_so(root: Path) -> Path:
    (entry,) = entries(root)
    (so,) = entry.glob("*.so")
    return so


def child_env(**extra: str) -> dict[str, str]:
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath, **extra}


def run_child(source: str, **env: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", CHILD, source]
    return subprocess.run(cmd, env=child_env(**env), capture_output=True, text=True, timeout=60)


@pytest.fixture(autouse=True)
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("GRAPHC_DEBUG", raising=False)
    return tmp_path / "cache"


def test_build_and_call(root: Path) -> None:
    module = load_module(unique_source(), CDEF)
    assert total(module, [1.0, 2.0, 3.5]) == 6.5
    assert cache_dir() == root
    (entry,) = entries(root)
    so = only_so(root)
    assert so.name.startswith("_graphc_") and (entry / f"{so.stem}.c").exists()
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["sha256"] == hashlib.sha256(so.read_bytes()).hexdigest()
    assert "-O3" in meta["flags"] and "-ffast-math" not in meta["flags"]


def test_second_load_comes_from_memory(root: Path) -> None:
    source = unique_source()
    first = load_module(source, CDEF)
    cache_clear()  # nothing left on disk: only memory can serve the second call
    assert load_module(source, CDEF) is first
    assert entries(root) == []


def test_threads_share_one_build(root: Path) -> None:
    for _ in range(3):          # rounds: a new module each time, 8 threads racing for it
        source = unique_source()
        results = []
        barrier = threading.Barrier(8)

        def load(source=source, results=results, barrier=barrier):
            barrier.wait()
            results.append(load_module(source, CDEF))
        threads = [threading.Thread(target=load) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 8 and all(r is results[0] for r in results)
        assert total(results[0], [1.0, 2.0]) == 3.0
    assert len(entries(root)) == 3
    assert list((root / "tmp").iterdir()) == []


def test_new_process_loads_from_disk_without_compiling(root: Path, tmp_path: Path) -> None:
    # CC=/bin/false would change the key (the compiler is part of it); a wrapper keeps the key
    # and proves, through its log, that the second process never runs it.
    wrapper = tmp_path / "cc-wrapper"
    wrapper.write_text(CC_WRAPPER)
    wrapper.chmod(0o755)
    log = tmp_path / "cc.log"
    env = {"CC": str(wrapper), "GRAPHC_TEST_CC_LOG": str(log), "GRAPHC_DEBUG": "1"}
    source = unique_source()

    built = run_child(source, **env)
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip() == "45.0" and "built" in built.stderr
    assert any(line.startswith("-O3") for line in log.read_text().splitlines())

    log.unlink()
    loaded = run_child(source, GRAPHC_TEST_NO_COMPILE="1", **env)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "45.0" and "from disk" in loaded.stderr
    assert not log.exists()     # not even --version: the first process's answer is on disk


def test_compiler_is_part_of_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    source = unique_source()
    key = build.module_key(source, CDEF)
    monkeypatch.setenv("CC", "/bin/false")
    assert build.module_key(source, CDEF) != key


def test_four_processes_build_one_entry(root: Path) -> None:
    source = unique_source()
    cmd = [sys.executable, "-c", CHILD, source]
    procs = [subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=60) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "45.0"
    assert len(entries(root)) == 1
    assert list((root / "tmp").iterdir()) == []


CORRUPTIONS = {
    "truncated": lambda data: b"",
    "cut_in_half": lambda data: data[: len(data) // 2],
    "flipped": lambda data: data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF])
    + data[len(data) // 2 + 1 :],
    "text": lambda data: b"this is not a shared object\n",
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_artifact_is_rebuilt(root: Path, monkeypatch: pytest.MonkeyPatch,
                                     corrupt) -> None:
    source = unique_source()
    load_module(source, CDEF)
    monkeypatch.setattr(build, "_loaded", {})
    so = only_so(root)
    data = so.read_bytes()
    # Write a new file instead of rewriting in place: this process has the old one mapped.
    so.unlink()
    so.write_bytes(corrupt(data))
    with pytest.warns(GraphcWarning, match="corrupt cache entry"):
        module = load_module(source, CDEF)
    assert total(module, [1.0, 2.0]) == 3.0
    assert build._artifact_problem(so.parent, only_so(root)) is None


def test_missing_meta_is_rebuilt(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = unique_source()
    load_module(source, CDEF)
    monkeypatch.setattr(build, "_loaded", {})
    (meta,) = root.glob("??/*/meta.json")
    meta.unlink()
    with pytest.warns(GraphcWarning, match="meta.json"):
        module = load_module(source, CDEF)
    assert total(module, [4.0]) == 4.0
    assert meta.exists()


def test_unwritable_cache_dir_falls_back_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests run as root, where chmod does not stop writes; a file on the path always does.
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "afile" / "cache"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "systmp"))
    (tmp_path / "systmp").mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert total(load_module(unique_source(), CDEF), [1.0]) == 1.0
        assert total(load_module(unique_source(), CDEF), [2.0]) == 2.0
    ours = [w for w in caught if issubclass(w.category, GraphcWarning)]
    assert len(ours) == 1 and "GRAPHC_CACHE_DIR" in str(ours[0].message)
    assert cache_dir().parent == tmp_path / "systmp"
    assert len(entries(cache_dir())) == 2


BROKEN = {
    "syntax": ("double total(const double *x, long n) { return x[0] +; }",
               "error: expected expression"),
    "undefined symbol": ("double nowhere(void);\n"
                         "double total(const double *x, long n) { return nowhere(); }",
                         "undefined symbol: nowhere"),
}


@pytest.mark.parametrize(("source", "first_line"), BROKEN.values(), ids=BROKEN.keys())
def test_broken_source_raises_compile_error(root: Path, source: str, first_line: str) -> None:
    with pytest.raises(CompileError) as info:
        load_module(f"/* {uuid.uuid4().hex} */\n{source}", CDEF)
    message = str(info.value)
    assert first_line in message.splitlines()[0]
    kept = Path(re.search(r"source kept at (\S+)", message).group(1))
    assert kept.is_file() and source in kept.read_text()
    assert entries(root) == [] and list((root / "tmp").iterdir()) == []


def test_cli_cache_info_and_clear(root: Path) -> None:
    load_module(unique_source(), CDEF)

    def cli(*args: str) -> str:
        cmd = [sys.executable, "-m", "graphc", "cache", *args]
        done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    info = cli("info")
    assert str(root) in info and re.search(r"entries:\s+1\b", info)
    assert "removed 1 entries" in cli("clear")
    assert re.search(r"entries:\s+0\b", cli("info"))
    assert cache_info()["entries"] == 0 and cache_clear() == 0


# ---------------------------------------------------------------- at scale and under faults


def race(root: Path, procs: int, rounds: int) -> None:
    """`procs` processes start at once on a new module, `rounds` times."""
    for _ in range(rounds):
        source = unique_source()
        cmd = [sys.executable, "-c", CHILD, source]
        running = [subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(procs)]
        outputs = [p.communicate(timeout=300) for p in running]
        for proc, (out, err) in zip(running, outputs, strict=True):
            assert proc.returncode == 0, err
            assert out == outputs[0][0] == "45.0\n"          # bit-equal: the same printed repr
    assert len(entries(root)) == rounds
    assert all(len(list(e.glob("*.so"))) == 1 for e in entries(root))
    assert list((root / "tmp").iterdir()) == []


def test_eight_processes_race_two_rounds(root: Path) -> None:
    race(root, 8, 2)


@pytest.mark.slow
def test_sixteen_processes_race_five_rounds(root: Path) -> None:
    race(root, 16, 5)


HASHSEED_CHILD = """
import hashlib, sys
import numpy as np
import graphc
def f(p, x):
    h = graphc.tanh(x @ p["w"] + p["b"])
    return graphc.sum(graphc.softmax(h, axis=-1) * p["s"]) + graphc.logsumexp(h)
g = graphc.compile(graphc.value_and_grad(f))
p = {"w": np.ones((3, 4)), "b": np.zeros(4), "s": np.arange(4.0)}
args = (p, np.linspace(-1, 1, 6).reshape(2, 3))
print(hashlib.sha256(g.source(*args).encode()).hexdigest(), repr(float(g(*args)[0])))
"""


def test_same_graph_under_five_hash_seeds_gives_one_c_source_and_one_build(root: Path) -> None:
    outs, builds = set(), 0
    for seed in range(5):
        done = subprocess.run([sys.executable, "-c", HASHSEED_CHILD], capture_output=True,
                              text=True, timeout=120,
                              env=child_env(PYTHONHASHSEED=str(seed), GRAPHC_DEBUG="1"))
        assert done.returncode == 0, done.stderr
        outs.add(done.stdout)
        builds += len(re.findall(r"graphc: built ", done.stderr))
    assert len(outs) == 1, outs
    assert builds == 1


def one_warning_at_most(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    ours = [w for w in caught if issubclass(w.category, GraphcWarning)]
    assert len(ours) <= 1, [str(w.message) for w in ours]
    return result, ours


def test_so_without_meta_and_meta_without_so_are_rebuilt(root: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for remove in ("meta.json", "so"):
        source = unique_source()
        load_module(source, CDEF)
        monkeypatch.setattr(build, "_loaded", {})
        (entry,) = [e for e in entries(root) if source in next(e.glob("*.c")).read_text()]
        victim = next(entry.glob("*.so")) if remove == "so" else entry / "meta.json"
        victim.unlink()
        module, ours = one_warning_at_most(lambda source=source: load_module(source, CDEF))
        assert total(module, [2.0, 5.0]) == 7.0 and len(ours) == 1
        assert build._artifact_problem(entry, next(entry.glob("*.so"))) is None


SLOW_CC = """#!/bin/sh
case "$*" in *_graphc_*) if [ -n "$GRAPHC_TEST_STARTED" ]; then
    touch "$GRAPHC_TEST_STARTED"; sleep 30; fi;; esac
exec gcc "$@"
"""


def test_build_killed_with_sigkill_leaves_nothing_that_blocks(root: Path, tmp_path: Path) -> None:
    """A build killed mid-compile leaves its lock file and temp dir; the next build goes on."""
    import signal
    import time
    wrapper = tmp_path / "slow-cc"
    wrapper.write_text(SLOW_CC)
    wrapper.chmod(0o755)
    started = tmp_path / "started"
    source = unique_source()
    child = subprocess.Popen([sys.executable, "-c", CHILD, source],
                             env=child_env(CC=str(wrapper), GRAPHC_TEST_STARTED=str(started)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)      # the child and its sleeping compiler
    child.wait()
    assert list((root / "locks").glob("*.lock")) and list((root / "tmp").iterdir())
    # the same key (same CC) after the kill: the lock is free, the stale temp dir ignored
    done = run_child(source, CC=str(wrapper))
    assert done.returncode == 0 and done.stdout.strip() == "45.0", done.stderr
    assert "Warning" not in done.stderr
    # and a fresh process with the default compiler
    module, _ = one_warning_at_most(lambda: load_module(source, CDEF))
    assert total(module, [1.0]) == 1.0


@pytest.fixture
def mounted(tmp_path: Path):
    """A tmpfs mount point (root in a container may mount; otherwise the test simulates)."""
    point = tmp_path / "mnt"
    point.mkdir()
    mounted = []

    def mount(*options: str) -> bool:
        opts = ",".join(("size=64m", *options))
        cmd = ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)]
        if mounted:
            cmd = ["mount", "-o", f"remount,{opts}", str(point)]
        ok = subprocess.run(cmd, capture_output=True).returncode == 0
        if ok:
            mounted.append(point)
        return ok
    yield point, mount
    if mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)   # .so still mapped


def test_read_only_cache_dir_still_serves_and_builds(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path, mounted) -> None:
    point, mount = mounted
    if not mount():
        pytest.skip("cannot mount a tmpfs here (the unwritable-dir test covers the fallback)")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(point / "cache"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "systmp"))
    (tmp_path / "systmp").mkdir()
    built = unique_source()
    load_module(built, CDEF)
    assert mount("ro")
    build._resolve_root.cache_clear()
    monkeypatch.setattr(build, "_loaded", {})
    # the read-only root is left for a writable fallback, with one warning naming the variable
    module, ours = one_warning_at_most(lambda: load_module(built, CDEF))
    assert total(module, [3.0]) == 3.0 and len(ours) == 1
    assert "GRAPHC_CACHE_DIR" in str(ours[0].message)
    module, ours = one_warning_at_most(lambda: load_module(unique_source(), CDEF))
    assert total(module, [3.0, 1.0]) == 4.0 and not ours
    build._resolve_root.cache_clear()


def test_noexec_cache_dir_falls_back_naming_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path, mounted) -> None:
    point, mount = mounted
    if mount("noexec"):
        monkeypatch.setenv("GRAPHC_CACHE_DIR", str(point / "cache"))
    else:    # simulated: the loader refuses to map code under the cache root, as noexec does
        real = build._import

        def refuse(name, so):
            if str(so).startswith(str(build.cache_dir())):
                raise ImportError(f"{so}: failed to map segment from shared object")
            return real(name, so)
        monkeypatch.setattr(build, "_import", refuse)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "systmp"))
    (tmp_path / "systmp").mkdir()
    monkeypatch.setattr(build, "_exec_roots", {})
    module, ours = one_warning_at_most(lambda: load_module(unique_source(), CDEF))
    assert total(module, [1.5, 1.5]) == 3.0
    assert len(ours) == 1 and "GRAPHC_CACHE_DIR" in str(ours[0].message)
    assert "noexec" in str(ours[0].message)
    module, ours = one_warning_at_most(lambda: load_module(unique_source(), CDEF))
    assert total(module, [2.0]) == 2.0 and not ours         # warned once per root


def test_enospc_while_installing_gives_a_working_module(root: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(build, "_write_meta", full)
    module, ours = one_warning_at_most(lambda: load_module(unique_source(), CDEF))
    assert total(module, [1.0, 2.0, 3.0]) == 6.0
    assert len(ours) == 1 and "No space left" in str(ours[0].message)
    assert entries(root) == [] and list((root / "tmp").iterdir()) == []


FAILING_CC = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "failing-cc 1.0"; exit 0; fi
echo "cc1: error: simulated internal compiler failure" >&2
exit 4
"""


def test_missing_or_failing_compiler_raises_compile_error(root: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    failing = tmp_path / "failing-cc"
    failing.write_text(FAILING_CC)
    failing.chmod(0o755)
    for cc, first in ((str(tmp_path / "no-such-cc"), "cannot run"),
                      (str(failing), "cc1: error: simulated internal compiler failure")):
        monkeypatch.setenv("CC", cc)
        with pytest.raises(CompileError) as info:
            load_module(unique_source(), CDEF)
        message = str(info.value)
        assert first in message.splitlines()[0], message
        kept = Path(re.search(r"source kept at (\S+)", message).group(1))
        assert kept.is_file() and "total" in kept.read_text()
    assert entries(root) == [] and list((root / "tmp").iterdir()) == []


# ---- tiered builds (GRAPHC_TIERED=1): a quick -O1 module first, -O3 in the background ----


def test_tiered_build_answers_at_once_and_fills_the_cache(root: Path) -> None:
    source = unique_source()
    (quick, pending) = build.load_module_tiered(source, CDEF)
    assert pending is not None and total(quick, [1.0, 2.0, 3.5]) == 6.5
    optimized = pending.result(timeout=300)
    assert total(optimized, [1.0, 2.0, 3.5]) == 6.5
    (entry,) = entries(root)                        # only the -O3 module is installed
    assert "-O3" in json.loads((entry / "meta.json").read_text())["flags"]
    assert list((root / "tmp").iterdir()) == []
    again, none = build.load_module_tiered(source, CDEF)
    assert none is None and again is optimized


def test_tiered_runner_swaps_to_the_optimized_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls before and after the swap (the call plan, the general path and a train step,
    whose generated calls were written before it) give the same values."""
    import numpy as np

    import graphc
    monkeypatch.setenv("GRAPHC_TIERED", "1")
    scale = 1.0 + uuid.uuid4().int % 1000 / 1e4      # a graph no earlier test built
    f = graphc.compile(graphc.value_and_grad(lambda x: graphc.sum(graphc.tanh(x) * scale)))
    x = np.linspace(0.1, 2.0, 64)
    before = f(x)
    runner = f.executable(x).runner
    quick_entry = runner._entry
    params = {"w": np.ones(3)}
    step = graphc.train_step(lambda p, b: graphc.sum((p["w"] * scale - b) ** 2),
                             graphc.optim.SGD(params, lr=0.1))
    first = step(np.arange(3.0))
    build.wait_for_optimized_builds()
    assert runner._entry is not quick_entry
    after = f(x)
    np.testing.assert_allclose(after[0], before[0], rtol=1e-13)
    np.testing.assert_allclose(after[1], before[1], rtol=1e-13)
    want = (1.0 - np.tanh(x) ** 2) * scale
    np.testing.assert_allclose(after[1], want, rtol=1e-12)
    np.testing.assert_allclose(f.executable(x)([x])[1], want, rtol=1e-12)   # general path
    w = params["w"].copy()
    second = step(np.arange(3.0))
    np.testing.assert_allclose(second, np.sum((w * scale - np.arange(3.0)) ** 2), rtol=1e-12)
    assert second < first


def outputs_of_both_tiers(fn, *args) -> tuple[list, list]:
    """fn's outputs (leaves, copied) from the quick module, then from the -O3 one that
    replaced it: in a new cache dir, so neither tier comes from an earlier build."""
    import numpy as np

    import graphc
    from graphc.pytree import flatten
    f = graphc.compile(fn)
    quick = [np.array(v) for v in flatten(f(*args))[0]]
    runner = f.executable(*args).runner
    entry = runner._entry
    build.wait_for_optimized_builds()
    assert runner._entry is not entry, "the first call did not run a quick build"
    return quick, [np.array(v) for v in flatten(f(*args))[0]]


def assert_same_bits(quick: list, optimized: list) -> None:
    """Equal bit for bit, except that a NaN may differ in sign (IEEE leaves a NaN result's
    sign open: x86 makes -NaN, and an operand's NaN passes through with its own sign)."""
    import numpy as np
    assert len(quick) == len(optimized) > 0
    for k, (q, o) in enumerate(zip(quick, optimized)):
        assert (q.dtype, q.shape) == (o.dtype, o.shape), k
        if q.dtype.kind in "fc":
            nan = np.isnan(q)
            assert np.array_equal(nan, np.isnan(o)), f"output {k}: NaN where the other has none"
            q, o = np.where(nan, 0, q), np.where(nan, 0, o)
        assert q.tobytes() == o.tobytes(), f"output {k}: {q!r} != {o!r}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tiers_compute_the_same_bits_on_vectorized_sums(
        root: Path, monkeypatch: pytest.MonkeyPatch, dtype: str) -> None:
    """W4 (a long fused sum of tanh, sigmoid and exp, vectorized in lanes at -O3) and a
    matmul with sin, cos and a sum per row, at sizes with a vector remainder: one build."""
    import numpy as np

    import graphc
    from bench.workloads import w4
    monkeypatch.setenv("GRAPHC_TIERED", "1")

    def rows(a, b):
        return graphc.sum(graphc.sin(a @ b) * graphc.cos(a @ b), axis=1)
    w4_vg = graphc.value_and_grad(w4)
    rows_vg = graphc.value_and_grad(lambda a, b: graphc.sum(rows(a, b) ** 2), argnums=(0, 1))
    x = np.random.default_rng(4).standard_normal(4099).astype(dtype)
    a = np.random.default_rng(5).standard_normal((37, 29)).astype(dtype)
    assert_same_bits(*outputs_of_both_tiers(lambda x, a, b: (w4_vg(x), rows_vg(a, b)),
                                            x, a, a.T.copy()))


@settings(max_examples=2, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.lists(programs(), min_size=8, max_size=8), st.sampled_from(["float64", "float32"]))
def test_tiers_compute_the_same_bits_on_fuzzed_programs(batch, fdtype) -> None:
    """The quick and the -O3 module of the fuzzer's programs (tests/fuzzgen.py), values
    and gradients, agree bit for bit."""
    import numpy as np
    from fuzzgen import make_inputs
    from test_fuzz import env, value_and_grad_fn

    import graphc
    fdtype = np.dtype(fdtype)
    fns = [value_and_grad_fn(p, fdtype) for p in batch]
    inputs = [tuple(make_inputs(p, fdtype)) for p in batch]

    scale = 1.0 + uuid.uuid4().int % 10**9 / 1e12     # a graph no earlier run built

    def programs_(*groups):
        return tuple(f(*g) for f, g in zip(fns, groups)), graphc.sum(groups[0][0]) * scale
    with tempfile.TemporaryDirectory() as cache, np.errstate(all="ignore"), \
            env(GRAPHC_CACHE_DIR=cache, GRAPHC_TIERED="1"):
        assert_same_bits(*outputs_of_both_tiers(programs_, *inputs))


# ---- the compiler's verdicts on disk (<root>/toolchain/) ----

PROBES = ("_compiler_id", "_build_flags", "_probe_libmvec")


def forget_probes() -> None:
    """What a new process starts with: no verdict in memory."""
    for name in PROBES:
        getattr(build, name).cache_clear()


def test_a_new_process_runs_no_compiler_probe_twice(root: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    forget_probes()
    source = unique_source()
    total(load_module(source, CDEF), [1.0])
    cc = tuple(build._compiler_argv())
    before = [getattr(build, name)(cc) for name in PROBES]
    assert len(list((root / "toolchain").glob("*.json"))) == 3
    forget_probes()

    def no_compiler(argv, *args, **kwargs):
        raise AssertionError(f"ran {argv}")
    monkeypatch.setattr(subprocess, "run", no_compiler)
    assert [getattr(build, name)(cc) for name in PROBES] == before
    assert build.module_key(source, CDEF) == build.module_key(source, CDEF)
    monkeypatch.undo()
    forget_probes()


def test_a_changed_compiler_is_asked_again(root: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "runs"
    cc = tmp_path / "cc"
    cc.write_text(f'#!/bin/sh\necho run >> {log}\nexec gcc "$@"\n')
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    forget_probes()
    first = build._compiler_id((str(cc),))
    build._compiler_id.cache_clear()
    assert build._compiler_id((str(cc),)) == first and log.read_text().count("run") == 1
    cc.write_text(cc.read_text() + "# upgraded\n")
    os.utime(cc, ns=(0, 10**18))
    build._compiler_id.cache_clear()
    assert build._compiler_id((str(cc),)) == first and log.read_text().count("run") == 2
    forget_probes()


def test_one_probe_program_decides_as_the_probes_one_by_one(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The self-test and the libmvec probe built and run as one program give the flags and
    libmvec verdict of the separate probes; when that program fails, the separate probes
    decide."""
    cc = tuple(build._compiler_argv())
    native = [*build._BASE_FLAGS, *build._NATIVE_FLAGS]
    program = [f for f in native if f not in ("-shared", "-fPIC")]
    libmvec = build._program(build._LIBMVEC_CODE, "run_libmvec();")
    one_by_one = (build._accepts_native(cc) and build._computes_correctly(cc, program)
                  and build._probe_output(cc, program, libmvec, ("-lmvec", "-lm"))
                  == build._LIBMVEC_EXPECTED)
    assert build._native_and_libmvec_work(cc, native) == one_by_one
    flags = build._tested_flags(cc)
    monkeypatch.setattr(build, "_BOTH_PROBES", build._program("", 'printf("wrong");'))
    assert not build._native_and_libmvec_work(cc, native)
    assert build._tested_flags(cc) == flags
    assert (flags == native) == (build._accepts_native(cc)
                                 and build._computes_correctly(cc, program))
