"""graphc's compiled C runtime (``csrc/``, the extension ``graphc._rt``): the gemm and the
thread count of parallel regions.

Generated kernels are separate cffi modules; they call the runtime's gemm through function
pointers and read its thread count through a pointer, addresses that ``runtime_addresses()``
hands them at load time. ``gemm()`` is a thin numpy wrapper for tests and benchmarks.

The thread count (csrc/graphc_threads.h) comes from ``GRAPHC_NUM_THREADS`` when the runtime
loads, else from the cores this process may run on; ``set_num_threads()`` changes it. Results
are bit-identical for any count. A forked child runs on one thread: GNU OpenMP's thread pool
does not survive ``fork()``, and a parallel region in the child would wait for it forever.

The extension is normally built by ``pip install``. In a source checkout where it was never
built, or whose in-place build is older than ``csrc/``, the first call builds it once into a
cache directory under ``tempfile.gettempdir()`` (keyed by a hash of the sources, under a file
lock) and loads it from there. Importing this module builds and loads nothing.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import sys
import threading

import numpy as np

from .errors import CompileError, DTypeError, GraphcError, ShapeError

ISAS = ("generic", "avx2", "avx512")  # the gemm's instruction-set paths, in csrc/graphc_gemm.h

_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_ARRAY_OF = {"float": "float[]", "double": "double[]"}
_POINTER_TO = {"float": "float *", "double": "double *"}

_lock = threading.Lock()
_module = None


def csrc_dir(marker: str = "gemm.c") -> str | None:
    """The C sources (those holding `marker`): ``graphc/csrc`` in an installed wheel,
    ``<repo>/csrc`` in a checkout."""
    pkg = os.path.dirname(os.path.abspath(__file__))
    for d in (os.path.join(pkg, "csrc"), os.path.join(os.path.dirname(pkg), "csrc")):
        if os.path.isfile(os.path.join(d, marker)):
            return d
    return None


def build_once(cache: str, stem: str, build) -> str:
    """The path of extension module `stem` in directory `cache`, made by `build(cache, path)`
    the first time, under a file lock (one process builds, the others wait and load it).
    `build` must write `path` atomically: readers never see a half-written module."""
    from filelock import FileLock

    path = os.path.join(cache, stem + importlib.machinery.EXTENSION_SUFFIXES[0])
    os.makedirs(cache, exist_ok=True)
    with FileLock(os.path.join(cache, "build.lock")):
        if not os.path.exists(path):
            build(cache, path)
    return path


def load_extension(name: str, path: str):
    """Import the extension module at `path` under `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build_in_cache(csrc: str, key: str) -> str:
    """Build graphc._rt from ``csrc`` into a per-key cache directory; return the module path."""
    import tempfile  # builds only, as cffi and filelock

    import cffi

    from . import _build_rt

    def build(cache: str, path: str) -> None:
        tmpdir = tempfile.mkdtemp(dir=cache, prefix="build-")
        try:  # note: cffi chdirs into tmpdir while it compiles
            built = _build_rt.make_ffibuilder(csrc).compile(tmpdir=tmpdir, verbose=False)
            os.replace(built, path)  # atomic: readers see no half-written module
        except Exception as e:
            raise CompileError(f"building graphc._rt from {csrc} failed: {e}") from e
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    tag = f"{key}-{sys.implementation.cache_tag}-cffi{cffi.__version__}"
    return build_once(os.path.join(tempfile.gettempdir(), "graphc-rt", tag), "_rt", build)


def _built_hash(module) -> str:
    fn = getattr(module.lib, "graphc_rt_source_hash", None)  # absent in very old builds
    return module.ffi.string(fn()).decode() if fn else ""


def _runtime():
    """The loaded extension module (with ``ffi`` and ``lib``), built first if need be."""
    global _module
    if _module is not None:  # fast path, no lock
        return _module
    with _lock:
        if _module is not None:
            return _module
        try:
            from . import _rt as module
        except ImportError:
            module = None
        csrc = csrc_dir()
        if csrc is not None:
            from . import _build_rt

            key = _build_rt.source_hash(csrc)
            if module is None or _built_hash(module) != key:  # missing or older than csrc/
                module = load_extension("graphc._rt", _build_in_cache(csrc, key))
        elif module is None:
            raise ImportError("graphc._rt is not built and graphc's csrc/ directory is missing")
        module.lib.graphc_set_num_threads(threads_from_env())
        os.register_at_fork(after_in_child=lambda: module.lib.graphc_set_num_threads(1))
        _module = module
        return module


def threads_from_env() -> int:
    """``GRAPHC_NUM_THREADS`` if set, else the number of cores this process may run on."""
    value = os.environ.get("GRAPHC_NUM_THREADS", "")
    if not value.strip():
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise GraphcError(f"GRAPHC_NUM_THREADS={value!r}: expected a positive integer")
    return n


def num_threads() -> int:
    """How many threads the gemm and the parallel loops of generated kernels may use."""
    return _runtime().lib.graphc_num_threads()


def set_num_threads(n: int | None = None) -> int:
    """Use ``n`` threads from now on (None: back to ``GRAPHC_NUM_THREADS`` or the cores this
    process may use); returns the count in force. Results do not depend on it."""
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"set_num_threads: expected a positive integer, got {n!r}")
    return _runtime().lib.graphc_set_num_threads(threads_from_env() if n is None else n)


def runtime_addresses() -> dict[str, int]:
    """What generated kernels link to: ``graphc_gemm_f32`` and ``graphc_gemm_f64``
    (``graphc_gemm_f{32,64}_fn``), ``threads``, the ``int`` thread count, and the gemm with
    an update epilogue, ``graphc_gemm_update_f32`` and ``_f64`` (``update_f32``, ``update_f64``)."""
    rt = _runtime()
    names = {"f32": "graphc_gemm_f32", "f64": "graphc_gemm_f64", "threads": "graphc_threads",
             "update_f32": "graphc_gemm_update_f32", "update_f64": "graphc_gemm_update_f64"}
    return {key: int(rt.ffi.cast("intptr_t", rt.ffi.addressof(rt.lib, name)))
            for key, name in names.items()}


def gemm_addresses() -> dict[str, int]:
    """Addresses of ``graphc_gemm_f32`` and ``graphc_gemm_f64`` (``graphc_gemm_f{32,64}_fn``)."""
    addresses = runtime_addresses()
    return {"f32": addresses["f32"], "f64": addresses["f64"]}


def set_gemm_isa(isa: str | None = None) -> str:
    """For tests and benchmarks: make every later gemm use the ``isa`` path (one of ``ISAS``;
    clamped to what the CPU supports; None = the best one). Returns the path now in force."""
    if isa is not None and isa not in ISAS:
        raise ValueError(f"unknown gemm path {isa!r}; expected one of {ISAS}")
    level = -1 if isa is None else ISAS.index(isa)
    return ISAS[_runtime().lib.graphc_gemm_set_isa(level)]


def _operand(x: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise ShapeError(f"gemm: {name} must be a 2-D numpy array, got {type(x).__name__} "
                         f"with shape {np.shape(x)}")
    whole = x.flags.c_contiguous or not (x.strides[0] % x.itemsize or x.strides[1] % x.itemsize)
    if not (x.flags.aligned and whole):
        x = np.ascontiguousarray(x)  # the C side indexes whole, aligned elements
    return x


def _pointer(ffi, ctype: str, x: np.ndarray, writable: bool = False):
    """Pointer to x[0, 0]; from_buffer (fast) needs a C-contiguous array."""
    if x.flags.c_contiguous:
        return ffi.from_buffer(_ARRAY_OF[ctype], x, require_writable=writable)
    return ffi.cast(_POINTER_TO[ctype], x.ctypes.data)


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, *,
         accumulate: bool = False) -> np.ndarray:
    """C = a @ b, or out (+)= a @ b, by graphc's C gemm.

    ``a`` [M,K] and ``b`` [K,N] are float32 or float64 arrays with the same dtype and any strides
    (transposed or strided views are not copied). Without ``out`` a new C-ordered array is
    returned. ``out`` [M,N] must have unit stride along N and not overlap ``a`` or ``b``; with
    ``accumulate`` the product is added to its contents.
    """
    a, b, out = _operands(a, b, out)
    if accumulate and out is None:
        raise ValueError("gemm: accumulate=True needs out")
    return _call("graphc_gemm", a, b, out, lambda ffi, ctype: (int(accumulate),))


def _call(name: str, a: np.ndarray, b: np.ndarray, out: np.ndarray | None, tail) -> np.ndarray:
    """The C function `name`_f32 or _f64 on checked operands (a new C-ordered out if None):
    M, N, K, A and B with their strides, C and its row stride, then tail(ffi, ctype)."""
    out = np.empty((a.shape[0], b.shape[1]), a.dtype) if out is None else out
    rt = _runtime()
    ctype, size = _CTYPES[a.dtype], a.itemsize
    fn = getattr(rt.lib, f"{name}_f32" if ctype == "float" else f"{name}_f64")
    fn(a.shape[0], b.shape[1], a.shape[1],
       _pointer(rt.ffi, ctype, a), a.strides[0] // size, a.strides[1] // size,
       _pointer(rt.ffi, ctype, b), b.strides[0] // size, b.strides[1] // size,
       _pointer(rt.ffi, ctype, out, writable=True), out.strides[0] // size,
       *tail(rt.ffi, ctype))
    return out


def _operands(a: np.ndarray, b: np.ndarray, out: np.ndarray | None):
    """a and b as the C side reads them, after the checks of a, b and out (if given)."""
    a, b = _operand(a, "a"), _operand(b, "b")
    if a.dtype != b.dtype or a.dtype not in _CTYPES:
        raise DTypeError(f"gemm: a and b must both be float32 or both float64, "
                         f"got {a.dtype} and {b.dtype}")
    if a.shape[1] != b.shape[0]:
        raise ShapeError(f"gemm: inner dimensions differ: a {a.shape} @ b {b.shape}")
    if out is not None:
        _check_out(out, a, b)
    return a, b, out


def gemm_update(a: np.ndarray, b: np.ndarray, d: np.ndarray, alpha: float,
                out: np.ndarray | None = None) -> np.ndarray:
    """d + alpha * (a @ b) by graphc's C gemm with its update epilogue, for tests and
    benchmarks. Operands as for ``gemm``; ``d`` [M,N] has unit stride along N and is ``out``
    itself (an in-place update) or does not overlap it."""
    a, b, out = _operands(a, b, out)
    _check_out(d, a, b)
    if out is not None and out is not d and np.may_share_memory(out, d):
        raise ValueError("gemm_update: out must be d or not overlap it")
    return _call("graphc_gemm_update", a, b, out, lambda ffi, ctype: (
        _pointer(ffi, ctype, d), d.strides[0] // d.itemsize, alpha))


def _check_out(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    shape = (a.shape[0], b.shape[1])
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != a.dtype:
        raise ShapeError(f"gemm: out must be a {a.dtype} array of shape {shape}, got "
                         f"{getattr(out, 'dtype', type(out).__name__)} {np.shape(out)}")
    if not out.flags.writeable or out.size and (
            not out.flags.aligned or out.strides[0] % out.itemsize
            or (shape[1] > 1 and out.strides[1] != out.itemsize)):
        raise ShapeError("gemm: out must be writeable and aligned, with unit stride along N")
    if np.may_share_memory(out, a) or np.may_share_memory(out, b):
        raise ValueError("gemm: out must not overlap a or b")
