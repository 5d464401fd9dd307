"""Build generated C as a cffi (API-mode) extension and cache it in memory and on disk.

`load_module(source, cdef)` returns `(ffi, lib)`. A repeated call with the same strings is a dict
lookup; otherwise the module comes from the on-disk cache, else gcc builds it. Disk layout::

    <root>/<key[:2]>/<key>/<modname>.so    the extension (loaded only if it matches meta.json)
                           <modname>.c     the C that cffi emitted, kept for debugging
                           meta.json       sha256 and size of the .so, build time, flags
    <root>/locks/<key>.lock                per-key file lock around check-then-build
    <root>/tmp/                            builds in progress; installed by renaming the directory
    <root>/failed/<modname>.c              the source of the last failed build of that module
    <root>/toolchain/<hash>.json           the compiler's verdicts (version, flags, libmvec)
    <root>/plans/<d[:2]>/<d>.pickle        warm starts: a graph's module key and runner data
                                           (graphc/warm.py)

`<root>` is `$GRAPHC_CACHE_DIR`, else `platformdirs.user_cache_dir("graphc")`; if that is not
writable, `<tmpdir>/graphc-cache-<uid>`. `GRAPHC_DEBUG=1` logs builds and disk loads to stderr.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import _cffi_backend  # what a loaded module needs; cffi's Python package is for builds only
import numpy

from graphc._version import __version__ as graphc_version
from graphc.errors import CompileError, GraphcError
from graphc.mutants import current as active_mutant
from graphc.sanitize import SANITIZE_FLAGS, compiler_env, require_runtime
from graphc.sanitize import enabled as sanitizing

if TYPE_CHECKING:
    import cffi

__all__ = [
    "CSRC_DIR",
    "GraphcWarning",
    "cache_clear",
    "cache_dir",
    "cache_info",
    "key_context",
    "load_built",
    "load_module",
    "load_module_tiered",
    "module_key",
]



class GraphcWarning(UserWarning):
    """Something went wrong but graphc recovered (corrupt cache entry, cache dir fallback)."""


def _find_csrc() -> Path:
    """Installed wheels ship the headers as the package `graphc.csrc`; a checkout has `csrc/`."""
    packaged = Path(__file__).parent / "csrc"
    return packaged if packaged.is_dir() else Path(__file__).parents[1] / "csrc"


CSRC_DIR: Path = _find_csrc()

# -march=native is applied only if the compiler accepts it (probed at the first build); the
# outcome is a function of compiler and CPU, both in the key, so the key names the request.
# -fno-math-errno: libm calls may skip setting errno (nothing in graphc reads it), which lets gcc
# vectorize sqrt and calls to `simd`-declared libmvec functions. -fopenmp-simd: honour
# `#pragma omp simd` (codegen puts `reduction(+ : part)` on float-sum loops) and nothing else of
# OpenMP (no runtime, no threads); a source with parallel loops (codegen/c.py's
# has_parallel_loops) is built with -fopenmp instead, so the source decides and the key stays
# whole. Neither changes a value: NaN, inf, signed zeros and subnormals stay IEEE (unlike
# -ffast-math / -ffinite-math-only, which graphc never uses).
# -fwrapv: signed integer overflow wraps, as numpy's integer arithmetic does (without it, C
# leaves it undefined: UBSan's first finding under `make sanitize`).
# -fschedule-insns -fsched-pressure: schedule instructions before register allocation too
# (x86 gcc only schedules after it by default), pressure-aware so it adds no spills. The fused
# vector-math loops are long chains of dependent FMAs (W4: ~110 vector ops per 8 elements);
# spread out, W4's loop is ~12% faster (issue 11, bench/RESULTS.md). Order only: no value
# changes, so the quick tier (which leaves them out, for build time) computes the same bits.
_SCHEDULE_FLAGS = ("-fschedule-insns", "-fsched-pressure")
_BASE_FLAGS = ("-O3", *_SCHEDULE_FLAGS, "-fPIC", "-shared", "-fno-semantic-interposition",
               "-pipe", "-fno-math-errno", "-fopenmp-simd", "-fwrapv",
               "-Werror=implicit-function-declaration")
# 256-bit vectors: gcc 12.2 miscompiles graphc-shaped loops with 512-bit AVX-512 vectors
# (see _SELF_TEST), and on current CPUs 512-bit ops bring nothing for this code.
_NATIVE_FLAGS = ("-march=native", "-mprefer-vector-width=256")
_KEY_FLAGS = _BASE_FLAGS + _NATIVE_FLAGS
# The quick tier of a tiered build (load_module_tiered): -O1 (gcc in about 60% of -O3's
# time on generated kernels) plus the three things -O3 does that can change a float's bits,
# so that both tiers compute the same values bit for bit: FMA contraction of a*b + c (its
# pass runs only with -fexpensive-optimizations), and the vectorizer with -O3's cost model
# (it decides which `omp simd reduction` sums add in lanes and which sin/cos calls become
# libmvec's vector ones) and strict aliasing (without it, the vectorizer skips loops that
# -O3 vectorizes). tests/test_build_cache.py compares the tiers on the fuzzer's programs.
_QUICK_OPT = ("-O1", "-fexpensive-optimizations", "-ftree-vectorize",
              "-fvect-cost-model=dynamic", "-fstrict-aliasing")
# Appended to the source of a quick build: cffi's wrappers, which it emits after the source
# (argument conversion, ~500 lines of C for a 44-argument train step), are compiled without
# optimization; 12-15% of the quick build's gcc time (W2's step: 0.59 -> 0.52 s of CPU).
# gcc only (clang warns about the pragma); the kernels above it keep _QUICK_OPT.
_QUICK_WRAPPERS = """
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize ("O0")
#endif
"""
_LIBS = ("-lm",)
_ERROR_LINE = re.compile(r"\berror\b:", re.IGNORECASE)  # gcc/clang: "x.c:3:5: error: ..."

# (source, cdef) -> (ffi, lib); bounded (oldest out). Python never unloads an extension
# module, so an evicted one stays mapped: the bound caps the memory the key strings hold.
_loaded: dict[tuple[str, str], tuple[cffi.FFI, object]] = {}
_LOADED_MAX = 512
_by_key: dict[str, tuple[cffi.FFI, object]] = {}     # load_built's modules (one per key)
_key_locks: dict[str, threading.Lock] = {}
_exec_roots: dict[Path, Path] = {}   # a noexec cache root -> where this process builds instead
_debug_on = False


# ---------------------------------------------------------------- public API


def load_module(source: str, cdef: str) -> tuple[cffi.FFI, object]:
    """Return `(ffi, lib)` for C `source`; `cdef` declares what Python calls.

    Same (source, cdef, toolchain, ...) -> served from memory, else from disk, else built.
    The memory cache is keyed by (source, cdef) alone, so a repeated call costs one dict lookup:
    within a process the toolchain of the first load wins. Raises `CompileError` if the
    compiler fails or the built module does not load.
    """
    hit = _loaded.get((source, cdef))
    if hit is not None:
        return hit
    if sanitizing():
        require_runtime()
    key = module_key(source, cdef)
    with _key_locks.setdefault(key, threading.Lock()):
        hit = _loaded.get((source, cdef))
        if hit is None:
            root = cache_dir()
            if sanitizing():              # a cache of their own (graphc/sanitize.py)
                root = root / "sanitized"
            root = _exec_roots.get(root, root)
            try:
                hit = _load_from_disk_or_build(root, key, source, cdef)
            except _NoExec:
                _exec_roots[root] = _noexec_fallback(root)
                hit = _load_from_disk_or_build(_exec_roots[root], key, source, cdef)
            _loaded[(source, cdef)] = hit
            _by_key.setdefault(key, hit)
            while len(_loaded) > _LOADED_MAX:
                _loaded.pop(next(iter(_loaded)), None)
    return hit


def load_module_tiered(source: str, cdef: str) -> tuple[tuple[cffi.FFI, object], object]:
    """`((ffi, lib), pending)`: the optimized module and None when it is cached (in memory or
    on disk); otherwise a module built quickly (`_QUICK_OPT`, not cached) and `pending`, a
    Future of `load_module`'s optimized module, built in a background thread (which the
    process waits for at exit, so the cache is filled). Both compute the same bits."""
    hit = _loaded.get((source, cdef))
    if hit is not None:
        return hit, None
    if sanitizing() or "-O3" not in _build_flags(tuple(_compiler_argv())):
        return load_module(source, cdef), None      # instrumented, or -O2 after a miscompile
    key = module_key(source, cdef)
    root = cache_dir()
    root = _exec_roots.get(root, root)
    if _entry_dir(root, key).exists():
        return load_module(source, cdef), None
    _make_dirs(root)
    import tempfile  # not on a warm start's path
    tmp = Path(tempfile.mkdtemp(prefix="quick-", dir=root / "tmp"))
    name = f"_graphc_{key[:20]}_quick"
    try:
        _build(root, tmp, name, source, cdef, quick=True)
        quick = _import(name, tmp / f"{name}.so")
    except (ImportError, OSError, CompileError):
        return load_module(source, cdef), None      # the optimized build reports the error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)      # a loaded module stays mapped
    _debug("loaded a quick build of %s; the -O3 build runs in the background", key[:20])
    return quick, _background().submit(load_module, source, cdef)


def wait_for_optimized_builds() -> None:
    """Block until every -O3 build queued behind a quick one is loaded and swapped in (the
    worker runs them in order, and a build's swap runs before the worker takes the next
    task), e.g. before timing steady-state calls."""
    if _background.cache_info().currsize:
        _background().submit(lambda: None).result()


@functools.cache
def _background():
    """One worker for optimized builds behind quick ones (its thread is joined at exit)."""
    from concurrent.futures import ThreadPoolExecutor
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphc-build")


def module_key(source: str, cdef: str) -> str:
    """sha256 (hex) naming the built module. It covers, one line each:

    - the C source and the cdef;
    - the compiler: `$CC` (default `gcc`), its resolved path and the first line of `--version`;
    - the compile flags (with GRAPHC_SANITIZE=1: SANITIZE_FLAGS; otherwise as
      requested: `-march=native` is dropped at build time only if the
      compiler rejects it, which compiler and CPU flags below determine), and whether
      glibc's libmvec is requested (`-DGC_LIBMVEC -lmvec` if it links: a function of compiler
      and C library, both in the key, so like -march=native the key names the request);
    - the versions of graphc, cffi and numpy;
    - the Python ABI: `sys.implementation.cache_tag` and `EXT_SUFFIX`;
    - the machine: `platform.machine()` and a hash of the CPU feature flags (/proc/cpuinfo);
    - the name and content of every `csrc/*.h`;
    - a planted test bug, if GRAPHC_MUTANT names one (graphc/mutants.py; absent otherwise).
    """
    parts = [source, cdef, *key_context()]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()  # JSON: unambiguous joins


def key_context() -> list[str]:
    """What module_key covers besides the C source and the cdef (see there)."""
    cc = tuple(_compiler_argv())
    mutant = active_mutant()
    flags = SANITIZE_FLAGS if sanitizing() else (*_KEY_FLAGS, _libmvec_request())
    return [*_compiler_id(cc), *flags, *_environment_id(),
            *([f"mutant {mutant}"] if mutant else [])]


def prebuild(root: Path, source: str, cdef: str) -> None:
    """Build the module of (source, cdef) into `root`, a cache root of its own holding that
    one entry (an install step: setup.py builds graphc's prebuilt C this way)."""
    shutil.rmtree(root, ignore_errors=True)
    _load_from_disk_or_build(root, module_key(source, cdef), source, cdef)
    for scratch in ("locks", "tmp"):        # the build's, not the entry's
        shutil.rmtree(root / scratch, ignore_errors=True)


def load_prebuilt(root: Path, source: str, cdef: str) -> tuple[cffi.FFI, object] | None:
    """`(ffi, lib)` of the module of (source, cdef) if `prebuild` left it intact in `root`
    under today's key (source, toolchain, versions...); None where it is absent or stale.
    Never builds."""
    if sanitizing():
        return None
    key = module_key(source, cdef)
    return _load_if_intact(_entry_dir(root, key), f"_graphc_{key[:20]}")


def load_built(key: str) -> tuple[cffi.FFI, object] | None:
    """`(ffi, lib)` of the module named `key` (module_key) if it is built and intact in the
    cache (a warm start, graphc/warm.py, knows the key but not the C); None otherwise. Never
    builds."""
    hit = _by_key.get(key)
    if hit is not None:
        return hit
    root = cache_dir()
    if sanitizing():
        root = root / "sanitized"
    root = _exec_roots.get(root, root)
    with _key_locks.setdefault(key, threading.Lock()):
        hit = _by_key.get(key) or _load_if_intact(_entry_dir(root, key), f"_graphc_{key[:20]}")
        if hit is not None:
            _by_key[key] = hit
    return hit


def cache_dir() -> Path:
    """The active on-disk cache root (evaluated per call: tests and users change the env var)."""
    return _resolve_root(os.environ.get("GRAPHC_CACHE_DIR") or _default_root())


def cache_info() -> dict:
    """`{"path", "entries", "bytes"}` of the active cache root."""
    root = cache_dir()
    entries = _entries(root)
    size = sum(f.stat().st_size for e in entries for f in e.iterdir() if f.is_file())
    return {"path": str(root), "entries": len(entries), "bytes": size}


def cache_clear() -> int:
    """Remove every entry (and stale temp, lock and failed files); return the entry count."""
    root = cache_dir()
    entries = _entries(root)
    for entry in entries:
        _remove_entry(root, entry)
        with contextlib.suppress(OSError):  # the <key[:2]> dir, if now empty
            entry.parent.rmdir()
    for sub in ("failed", "locks", "toolchain", "plans"):
        shutil.rmtree(root / sub, ignore_errors=True)
    _remove_stale_temps(root)
    return len(entries)


# ---------------------------------------------------------------- key ingredients


def _compiler_argv() -> list[str]:
    return shlex.split(os.environ.get("CC") or "gcc")


@functools.cache
def _compiler_id(cc: tuple[str, ...]) -> tuple[str, str, str]:
    """(CC as given, resolved path, first --version line), once per process per CC (and
    per compiler binary on disk: a warm start runs no compiler)."""
    path = shutil.which(cc[0]) or cc[0]

    def version() -> str:
        import subprocess
        try:
            out = subprocess.run([*cc, "--version"], capture_output=True, text=True,
                                 timeout=60)
            return out.stdout.splitlines()[0] if out.stdout else f"exit {out.returncode}"
        except (OSError, subprocess.SubprocessError) as exc:
            return f"unavailable: {exc}"
    return " ".join(cc), path, _toolchain_memo("version", cc, version)


@functools.cache
def _probing_code_hash() -> str:
    """This module's source: the probe programs, flags and how verdicts are reached."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def _toolchain_memo(what: str, cc: tuple[str, ...], compute: Callable[[], Any]) -> Any:
    """compute() (a JSON value) once per compiler binary: kept under <root>/toolchain/, keyed
    by `what`, CC, the size, mtime and inode of each program CC names (the compiler, and a
    compiler behind a wrapper such as ccache), the CPU's flags, graphc's version and this
    module's source (the probe programs, the flags and how they are chosen), so a new process
    asks the compiler only what no process asked it yet.
    Unreadable or missing: computed (and written atomically: concurrent writers agree)."""
    stats = []
    for arg in cc:
        found = shutil.which(arg)
        if found:
            st = os.stat(os.path.realpath(found))
            stats.append([os.path.realpath(found), st.st_size, st.st_mtime_ns, st.st_ino])
    if not stats:
        return compute()
    ident = [what, list(cc), stats, _cpu_flags_hash(), graphc_version, _probing_code_hash(),
             os.environ.get("PATH", "")]
    name = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:32] + ".json"
    folder = cache_dir() / "toolchain"
    with contextlib.suppress(OSError, ValueError, KeyError):
        return json.loads((folder / name).read_text())["value"]
    value = compute()
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{name}.{os.urandom(16).hex()}.tmp"
        tmp.write_text(json.dumps({"what": what, "cc": list(cc), "value": value}))
        os.replace(tmp, folder / name)
    return value


@functools.cache
def _environment_id() -> tuple[str, ...]:
    """Everything in the key that is fixed for the life of the process. (cffi's version is
    its backend's, which cffi requires to match; EXT_SUFFIX is the first extension suffix,
    as sysconfig's EXT_SUFFIX, without loading sysconfig's data: a warm start builds
    nothing.)"""
    return (
        graphc_version,
        _cffi_backend.__version__,
        numpy.__version__,
        sys.implementation.cache_tag or "",
        importlib.machinery.EXTENSION_SUFFIXES[0],
        platform.machine(),
        " ".join(platform.libc_ver()),
        _cpu_flags_hash(),
        _headers_hash(),
    )


def _cpu_flags_hash() -> str:
    """-march=native output depends on the CPU's features, not only on the architecture."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((ln for ln in f if ln.startswith(("flags", "Features"))), "")
    except OSError:
        line = ""
    return hashlib.sha256(line.encode()).hexdigest()


def _headers_hash() -> str:
    digest = hashlib.sha256()
    for header in sorted(CSRC_DIR.glob("*.h")):
        digest.update(header.name.encode() + b"\0" + header.read_bytes() + b"\0")
    return digest.hexdigest()


# ---------------------------------------------------------------- cache root


@functools.cache
def _default_root() -> str:
    import platformdirs  # only without GRAPHC_CACHE_DIR
    return platformdirs.user_cache_dir("graphc")


@functools.cache
def _resolve_root(configured: str) -> Path:
    """`configured` if we can write there, else a per-user temp dir (warned once per root)."""
    root = Path(configured).expanduser()
    if _writable(root):
        return root
    import tempfile  # not on a warm start's path
    fallback = Path(tempfile.gettempdir()) / f"graphc-cache-{_uid()}"
    warnings.warn(
        f"graphc cannot write its kernel cache at {root}; using {fallback} instead. "
        "Set GRAPHC_CACHE_DIR to a writable directory to keep compiled kernels.",
        GraphcWarning,
        stacklevel=5,  # the caller of load_module
    )
    if not _writable(fallback):
        raise GraphcError(f"no writable cache directory: tried {root} and {fallback}")
    return fallback


def _writable(root: Path) -> bool:
    try:
        _make_dirs(root)
    except OSError:  # PermissionError, NotADirectoryError (a file on the path), read-only fs
        return False
    return os.access(root, os.W_OK | os.X_OK)


def _make_dirs(root: Path) -> None:
    for sub in ("tmp", "locks"):
        (root / sub).mkdir(parents=True, exist_ok=True)


def _uid() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")


def _entries(root: Path) -> list[Path]:
    return [e for e in root.glob("??/*") if e.is_dir() and len(e.name) == 64]


def _entry_dir(root: Path, key: str) -> Path:
    return root / key[:2] / key


def _remove_entry(root: Path, entry: Path) -> None:
    """Rename aside, then delete: readers see the whole entry or none of it."""
    _make_dirs(root)
    trash = root / "tmp" / f"stale-{os.urandom(16).hex()}"
    try:
        os.replace(entry, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _remove_stale_temps(root: Path, age: float = 3600.0) -> None:
    """Temp dirs of crashed builds; recent ones may belong to a build running elsewhere."""
    now = time.time()
    for tmp in (root / "tmp").glob("*"):
        with contextlib.suppress(FileNotFoundError):
            if now - tmp.stat().st_mtime > age:
                shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- disk cache


class _NoExec(Exception):
    """The cache root refuses to map code (a noexec mount): built modules cannot load there."""

    def __init__(self, root: Path):
        self.root = root


def _refused_mapping(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "failed to map segment" in text or "operation not permitted" in text


def _noexec_fallback(root: Path) -> Path:
    import tempfile  # not on a warm start's path
    fallback = Path(tempfile.gettempdir()) / f"graphc-cache-{_uid()}-exec"
    if fallback == root or not _writable(fallback):
        raise GraphcError(f"graphc cannot load compiled kernels from {root} (is it mounted "
                          "noexec?) and has no fallback; set GRAPHC_CACHE_DIR to a directory "
                          "where shared libraries may be executed")
    warnings.warn(
        f"graphc cannot load compiled kernels from its cache at {root} (is it mounted noexec?); "
        f"using {fallback} instead. Set GRAPHC_CACHE_DIR to a directory where shared "
        "libraries may be executed.",
        GraphcWarning,
        stacklevel=4,
    )
    return fallback


def _load_from_disk_or_build(root: Path, key: str, source: str,
                             cdef: str) -> tuple[cffi.FFI, object]:
    name = f"_graphc_{key[:20]}"
    entry = _entry_dir(root, key)
    start = time.perf_counter()
    loaded = _load_if_intact(entry, name)       # entries are immutable once installed:
    if loaded is not None:                      # a verified one needs no lock
        _debug("loaded %s from disk in %.1f ms", entry, 1e3 * (time.perf_counter() - start))
        return loaded
    import filelock  # 20 ms to import (asyncio): builds only
    _make_dirs(root)
    with filelock.FileLock(str(root / "locks" / f"{key}.lock")):
        if entry.exists():
            start = time.perf_counter()
            loaded = _load_verified(entry, name)
            if loaded is not None:
                _debug("loaded %s from disk in %.1f ms", entry, 1e3 * (time.perf_counter() - start))
                return loaded
        return _build_and_install(root, entry, name, source, cdef)


def _load_if_intact(entry: Path, name: str) -> tuple[cffi.FFI, object] | None:
    """The entry's module if its .so matches meta.json and loads; None otherwise (quietly:
    the locked path that follows re-checks, warns and rebuilds)."""
    so = entry / f"{name}.so"
    if not entry.exists() or _artifact_problem(entry, so) is not None:
        return None
    try:
        return _import(name, so)
    except (ImportError, OSError):
        return None


def _load_verified(entry: Path, name: str) -> tuple[cffi.FFI, object] | None:
    """Import the entry's .so if it matches meta.json; else warn and return None (rebuild)."""
    so = entry / f"{name}.so"
    problem = _artifact_problem(entry, so)
    if problem is None:
        try:
            return _import(name, so)
        except (ImportError, OSError) as exc:
            problem = f"it failed to load ({exc})"
    warnings.warn(f"graphc rebuilds the corrupt cache entry {entry}: {problem}", GraphcWarning,
                  stacklevel=4)
    return None


def _artifact_problem(entry: Path, so: Path) -> str | None:
    """Why the .so must not be loaded (None if its size and sha256 match meta.json)."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        data = so.read_bytes()
        if len(data) == meta["size"] and hashlib.sha256(data).hexdigest() == meta["sha256"]:
            return None
        return "its size/sha256 does not match meta.json"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"


def _import(name: str, so: Path) -> tuple[cffi.FFI, object]:
    loader = importlib.machinery.ExtensionFileLoader(name, str(so))
    spec = importlib.util.spec_from_file_location(name, so, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module.ffi, module.lib


def _build_and_install(
    root: Path, entry: Path, name: str, source: str, cdef: str
) -> tuple[cffi.FFI, object]:
    """Build and load in a fresh temp dir, then rename it into place (a mapped .so survives).

    A module that does not load (an undefined symbol) is a CompileError and is never installed.
    """
    import tempfile  # not on a warm start's path
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root / "tmp"))
    try:
        start = time.perf_counter()
        flags = _build(root, tmp, name, source, cdef)
        try:
            loaded = _import(name, tmp / f"{name}.so")
        except (ImportError, OSError) as exc:
            if _refused_mapping(exc):
                raise _NoExec(root) from exc
            message = f"the built module does not load: {exc}"
            raise _compile_error(root, tmp / f"{name}.c", message, "") from exc
        try:
            _write_meta(tmp / f"{name}.so", flags, time.perf_counter() - start)
            entry.parent.mkdir(parents=True, exist_ok=True)
            _remove_entry(root, entry)
            os.replace(tmp, entry)
        except OSError as exc:      # ENOSPC, a read-only remount: the module is loaded anyway
            warnings.warn(f"graphc could not install a built kernel into its cache at {root} "
                          f"({exc}); it is used in this process only. Free space there or set "
                          "GRAPHC_CACHE_DIR.", GraphcWarning, stacklevel=5)
            return loaded
        _debug("built %s in %.1f ms", entry, 1e3 * (time.perf_counter() - start))
        return loaded
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_meta(so: Path, flags: list[str], seconds: float) -> None:
    data = so.read_bytes()
    meta = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(seconds, 4),
        "compiler": _compiler_id(tuple(_compiler_argv()))[1:],
        "flags": flags,
    }
    (so.parent / "meta.json").write_text(json.dumps(meta, indent=1))


def _build(root: Path, tmp: Path, name: str, source: str, cdef: str,
           quick: bool = False) -> list[str]:
    """Emit cffi's C into `tmp` and compile it with one direct compiler call (no setuptools);
    `quick`: with `_QUICK_OPT` instead of -O3."""
    import subprocess  # builds only
    import sysconfig

    import cffi

    from graphc.codegen.c import has_parallel_loops
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    # compiler_verbose=False stops emit_c_code from printing "generating <file>" to stdout
    ffi.set_source(name, source + _QUICK_WRAPPERS if quick else source,
                   include_dirs=[str(CSRC_DIR)], compiler_verbose=False)
    c_file = tmp / f"{name}.c"
    ffi.emit_c_code(str(c_file))
    cc = _compiler_argv()
    checked = sanitizing()
    flags = list(SANITIZE_FLAGS) if checked else _build_flags(tuple(cc))
    if quick and not checked:
        flags = [g for f in flags if f not in _SCHEDULE_FLAGS
                 for g in (_QUICK_OPT if f == "-O3" else (f,))]
    if has_parallel_loops(source):
        flags = ["-fopenmp" if f == "-fopenmp-simd" else f for f in flags]
    includes = [f"-I{CSRC_DIR}", f"-I{sysconfig.get_paths()['include']}"]
    vec = () if checked else _libmvec_flags(tuple(cc))
    defines = [f for f in vec if f.startswith("-D")]
    cmd = [*cc, *flags, *defines, *includes, str(c_file), "-o", str(tmp / f"{name}.so"),
           *[f for f in vec if f not in defines], *_LIBS]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True,
                                env=compiler_env() if checked else None)
    except OSError as exc:
        raise _compile_error(root, c_file, f"cannot run {cc[0]}: {exc}", "") from exc
    if result.returncode != 0:
        output = result.stderr + result.stdout
        raise _compile_error(root, c_file, f"{cc[0]} exited with {result.returncode}", output)
    return [*flags, *vec]


# glibc's vector math library: sin/cos declared `simd` in graphc_rt.h under GC_LIBMVEC become
# calls to _ZGVdN4v_sin etc. Used only if a program calling them compiles, links and runs here.
_LIBMVEC_CODE = r"""
__attribute__((noinline)) void vmath(double *y, const double *x, float *yf, const float *xf,
                                     int n) {
    for (int i = 0; i < n; i++) y[i] = sin(x[i]) + cos(x[i]);
    for (int i = 0; i < n; i++) yf[i] = sinf(xf[i]) + cosf(xf[i]);
}
static void run_libmvec(void) {
    double x[64], y[64]; float xf[64], yf[64];
    for (int i = 0; i < 64; i++) { x[i] = i * 0.1; xf[i] = (float)x[i]; }
    vmath(y, x, yf, xf, 64);
    printf("%.6f %.4f", y[10], (double)yf[10]);
}
"""
_LIBMVEC_EXPECTED = "1.381773 1.3818"


def _libmvec_request() -> str:
    """Whether builds try glibc's libmvec, and for what: "off" (GRAPHC_NO_LIBMVEC=1, or not
    Linux: sin/cos stay scalar libm), "sin cos" (default), or "all" (GRAPHC_VMATH=libmvec:
    exp, log, log1p, expm1 and float tanh from libmvec too instead of csrc/graphc_vmath.h)."""
    if os.environ.get("GRAPHC_NO_LIBMVEC", "0") not in ("", "0") or sys.platform != "linux":
        return "libmvec: off"
    vmath = os.environ.get("GRAPHC_VMATH", "own")
    if vmath not in ("own", "libmvec"):
        raise GraphcError(f"GRAPHC_VMATH must be 'own' or 'libmvec', not {vmath!r}")
    return "libmvec: all" if vmath == "libmvec" else "libmvec: sin cos"


@functools.cache
def _probe_libmvec(cc: tuple[str, ...]) -> bool:
    """Compile, link and run a loop calling sin/cos through libmvec (once per compiler: see
    _toolchain_memo; only when something is built, so a disk-cache load never runs it)."""
    return _toolchain_memo("libmvec", cc, lambda: _run_libmvec_probe(cc))


def _run_libmvec_probe(cc: tuple[str, ...]) -> bool:
    flags = [f for f in _build_flags(cc) if f not in ("-shared", "-fPIC")]
    out = _probe_output(cc, flags, _program(_LIBMVEC_CODE, "run_libmvec();"), ("-lmvec", "-lm"))
    return out == _LIBMVEC_EXPECTED


def _program(code: str, main: str) -> str:
    """A probe program: code (with graphc_rt.h's declarations and stdio), then main."""
    return ("#define GC_LIBMVEC 1\n#include \"graphc_rt.h\"\n#include <stdio.h>\n"
            f"{code}\nint main(void) {{ {main} return 0; }}\n")


def _probe_output(cc: tuple[str, ...], flags: list[str], program: str,
                  libs: tuple[str, ...] = ()) -> str | None:
    """What `program`, built with flags, prints (stripped; "exit <code>" if it fails); None if
    it cannot be built or run here."""
    import subprocess  # builds only
    import tempfile  # not on a warm start's path
    with tempfile.TemporaryDirectory(prefix="graphc-probe-") as tmp:
        exe = os.path.join(tmp, "probe")
        cmd = [*cc, *flags, f"-I{CSRC_DIR}", "-x", "c", "-", "-o", exe, *libs]
        try:
            built = subprocess.run(cmd, input=program.encode(), capture_output=True)
            if built.returncode != 0:
                return None
            ran = subprocess.run([exe], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
    return ran.stdout.strip() if ran.returncode == 0 else f"exit {ran.returncode}"


def _libmvec_flags(cc: tuple[str, ...]) -> tuple[str, ...]:
    """("-DGC_LIBMVEC", ["-DGC_VMATH_LIBMVEC",] "-lmvec") if requested and glibc's libmvec
    works here, else ()."""
    request = _libmvec_request()
    if request == "libmvec: off" or not _probe_libmvec(cc):
        return ()
    return ("-DGC_LIBMVEC", *(("-DGC_VMATH_LIBMVEC",) if request == "libmvec: all" else ()),
            "-lmvec")


# A loop pattern graphc generates (arena buffers at offsets of one base pointer, reused in
# place) that gcc 12.2 gets wrong at -O3 -march=native on AVX-512 CPUs. Before its first build
# a process compiles and runs it with the flags it means to use, and steps down to safer
# flags if the answer is wrong, so a miscompiling toolchain costs speed, never correctness.
_SELF_TEST_CODE = r"""
#define B(off) ((double *)(ws + (off)))
__attribute__((noinline)) void f(const double *x, char *ws) {
    for (long i = 0; i < 2; i++) for (long j = 0; j < 3; j++) B(0)[i*3 + j] = x[j] * 1.5;
    for (long i = 0; i < 2; i++) for (long j = 0; j < 3; j++) B(128)[i*6 + j] = B(0)[i*3 + j];
    for (long i = 0; i < 12; i++) B(256)[i] = 1.0 - B(128)[i];
    for (long i = 0; i < 12; i++) B(128)[i] = 0.3 * B(256)[i];
    for (long i = 0; i < 2; i++) for (long j = 0; j < 3; j++)
        B(0)[i*3 + j] = B(128)[i*6 + j] + B(64)[i*3 + j];
}
static void run_self_test(void) {
    double x[3] = {0.9, 0.2, 0.5};
    static double ws[48];
    f(x, (char *)ws);
    for (int i = 0; i < 6; i++) printf("%.6f ", ws[i]);
}
"""
_SELF_TEST_EXPECTED = "-0.105000 0.210000 0.075000 -0.105000 0.210000 0.075000"
# Both probes in one program, built once with the native flags and libmvec: on a machine where
# both work (the common case) one compile and one run answer the three questions (is
# -march=native accepted, is it miscompiled, does libmvec work), ~0.1 s of a cold process's
# CPU less than three compiles and two runs. Any other answer asks them one by one.
_BOTH_PROBES = _program(_SELF_TEST_CODE + _LIBMVEC_CODE,
                        'run_self_test(); printf("|"); run_libmvec();')


@functools.cache
def _build_flags(cc: tuple[str, ...]) -> list[str]:
    """The flags for this compiler: native if accepted and self-tested correct, else safer
    (the verdict is kept per compiler and CPU: see _toolchain_memo)."""
    return _toolchain_memo("flags", cc, lambda: _tested_flags(cc))


def _tested_flags(cc: tuple[str, ...]) -> list[str]:
    native = [*_BASE_FLAGS, *_NATIVE_FLAGS]
    if _native_and_libmvec_work(cc, native):
        return native
    candidates = [native] if _accepts_native(cc) else []
    candidates += [list(_BASE_FLAGS), [f if f != "-O3" else "-O2" for f in _BASE_FLAGS]]
    for flags in candidates:
        if _computes_correctly(cc, [f for f in flags if f not in ("-shared", "-fPIC")]):
            return flags
        _debug("graphc: %s miscompiles its self-test with %s; trying safer flags",
               cc[0], " ".join(flags))
    return candidates[-1]


def _native_and_libmvec_work(cc: tuple[str, ...], native: list[str]) -> bool:
    """Both probes pass in one program built with the native flags; then libmvec's verdict
    (_probe_libmvec, which would build with these flags) is kept too."""
    out = _probe_output(cc, [f for f in native if f not in ("-shared", "-fPIC")], _BOTH_PROBES,
                        ("-lmvec", "-lm"))
    if [part.strip() for part in (out or "").split("|")] != [_SELF_TEST_EXPECTED,
                                                             _LIBMVEC_EXPECTED]:
        return False
    _toolchain_memo("libmvec", cc, lambda: True)
    return True


def _computes_correctly(cc: tuple[str, ...], flags: list[str]) -> bool:
    """The self-test's answer with flags (True if it cannot be built or run here: the build
    itself will tell)."""
    out = _probe_output(cc, flags, _program(_SELF_TEST_CODE, "run_self_test();"))
    return out is None or out == _SELF_TEST_EXPECTED


@functools.cache
def _accepts_native(cc: tuple[str, ...]) -> bool:
    """Some compilers (or targets) reject -march=native; then we build portable -O3 code."""
    import subprocess  # builds only
    import tempfile  # not on a warm start's path
    with tempfile.TemporaryDirectory(prefix="graphc-probe-") as tmp:
        cmd = [*cc, *_NATIVE_FLAGS, "-x", "c", "-c", "-", "-o", os.path.join(tmp, "probe.o")]
        try:
            return subprocess.run(cmd, input=b"int x;\n", capture_output=True).returncode == 0
        except OSError:
            return False


def _compile_error(root: Path, c_file: Path, fallback: str, output: str) -> CompileError:
    """Keep the failed source under <root>/failed/ and name its first error line."""
    kept = root / "failed" / c_file.name
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(c_file, kept)
    output = output.replace(str(c_file), str(kept))
    lines = output.splitlines()
    first = next((ln for ln in lines if _ERROR_LINE.search(ln)), fallback)
    message = "\n".join([f"C compilation failed: {first}", f"  source kept at {kept}", *lines[:20]])
    return CompileError(message)


def _debug(msg: str, *args: object) -> None:
    """Log to the "graphc" logger; with GRAPHC_DEBUG set, make sure it reaches stderr.
    Nothing to do if logging was never imported (no handler can be listening): a warm
    start does without importing it."""
    global _debug_on
    debug = os.environ.get("GRAPHC_DEBUG", "0") not in ("", "0")
    if not debug and "logging" not in sys.modules:
        return
    import logging
    log = logging.getLogger("graphc")
    if debug and not _debug_on:
        _debug_on = True
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("graphc: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
    log.debug(msg, *args)
