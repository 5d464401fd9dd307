"""The C call path (``graphc._fastcall``, csrc/fastcall.c): loaded, or built once at run time.

The extension is normally built by ``pip install``. In a source checkout where it was never
built, or whose in-place build is older than ``csrc/fastcall.c``, the first call builds it with
``$CC`` into a cache directory under ``tempfile.gettempdir()`` (keyed by the source's hash,
under a file lock). Where it cannot be built or loaded, or ``GRAPHC_FASTCALL=0``, ``module()``
is None and compiled functions keep their Python call plans (callplan.py).
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import tempfile
import threading

from . import rt

_lock = threading.Lock()
_loaded: list = []          # [the module or None] once decided
_log = logging.getLogger("graphc")


def module():
    """graphc._fastcall, or None where it is switched off or cannot be had."""
    if _loaded:
        return _loaded[0]
    with _lock:
        if not _loaded:
            _loaded.append(_load() if os.environ.get("GRAPHC_FASTCALL", "1") not in ("", "0")
                           else None)
    return _loaded[0]


def _load():
    from . import _build_fastcall
    csrc = rt.csrc_dir("fastcall.c")
    try:
        from . import _fastcall as built
    except ImportError:
        built = None
    if csrc is None or built is not None and built.SOURCE_HASH == _build_fastcall.source_hash(
            csrc):
        return built
    try:
        return rt.load_extension("graphc._fastcall", _build_in_cache(csrc, _build_fastcall))
    except (OSError, ImportError, subprocess.SubprocessError) as e:
        _log.debug("graphc._fastcall unavailable, Python call plans only: %s", e)
        return None


def _build_in_cache(csrc: str, spec) -> str:
    import sys
    import sysconfig

    def build(cache: str, path: str) -> None:
        name, value = spec.hash_macro(csrc)
        tmp = f"{path}.{os.getpid()}.tmp"
        cc = shlex.split(os.environ.get("CC") or "gcc")
        subprocess.run([*cc, "-shared", "-fPIC", *spec.COMPILE_ARGS, f"-D{name}={value}",
                        "-I", sysconfig.get_path("include"),
                        os.path.join(csrc, spec.SOURCE), "-o", tmp],
                       check=True, capture_output=True)
        os.replace(tmp, path)       # atomic: readers see no half-written module

    cache = os.path.join(tempfile.gettempdir(), "graphc-fastcall",
                         f"{spec.source_hash(csrc)}-{sys.implementation.cache_tag}")
    return rt.build_once(cache, "_fastcall", build)
