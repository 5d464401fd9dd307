"""cffi build script for ``graphc._rt``, graphc's hand-written C runtime in ``csrc/`` (the gemm).

``setup.py`` runs it from the repository root (``cffi_modules=["graphc/_build_rt.py:ffibuilder"]``)
as a standalone file, so it imports nothing from graphc. ``graphc/rt.py`` calls
``make_ffibuilder`` with an absolute ``csrc`` directory to build the same module at run time in a
source checkout where the extension was never built.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import cffi

SOURCES = ("gemm.c", "threads.c")
HEADERS = ("graphc_gemm.h", "graphc_threads.h")

# Portable: no -march. gemm.c compiles its AVX2/AVX-512 paths with target attributes and picks
# one at run time. -ffp-contract=fast lets a*b+c become one FMA (the default in GNU C, made
# explicit for -std=c* builds); it is not -ffast-math. -fopenmp: the gemm's parallel region
# (graphc_threads.h); it links libgomp, which generated kernels with parallel loops share.
EXTRA_COMPILE_ARGS = ["-O3", "-std=gnu11", "-ffp-contract=fast", "-fopenmp"]
EXTRA_LINK_ARGS = ["-fopenmp"]

# cffi's cdef cannot read the headers' preprocessor lines: each header marks the blocks of plain
# declarations it shares with the cdef, so the C and the Python see one text.
_CDEF_BLOCK = re.compile(r"/\* cdef:begin\b.*?\*/(.*?)/\* cdef:end \*/", re.S)
_CDEF_OWN = "const char *graphc_rt_source_hash(void);\n"     # defined in the preamble


def cdef(csrc: str) -> str:
    """The cdef of graphc._rt: the marked blocks of HEADERS in ``csrc``, and the source hash."""
    blocks = []
    for name in HEADERS:
        with open(os.path.join(csrc, name)) as f:
            blocks += _CDEF_BLOCK.findall(f.read())
    return "".join(blocks) + _CDEF_OWN


def source_hash(csrc: str) -> str:
    """Hash of everything that determines the built module: C sources and headers (the cdef
    is read from the headers), compile flags."""
    h = hashlib.sha256()
    for name in SOURCES + HEADERS:
        with open(os.path.join(csrc, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read() + b"\0")
    h.update(_CDEF_OWN.encode() + " ".join(EXTRA_COMPILE_ARGS + EXTRA_LINK_ARGS).encode())
    return h.hexdigest()[:20]


def make_ffibuilder(csrc: str = "csrc") -> cffi.FFI:
    """An FFI that builds ``graphc._rt`` from the C files in ``csrc`` (relative to the cwd)."""
    import cffi  # here: rt.py imports this module for source_hash in every process
    ffi = cffi.FFI()
    ffi.cdef(cdef(csrc))
    # The module records its sources' hash, so rt.py can tell a stale in-place build.
    preamble = (
        '#include "graphc_gemm.h"\n'
        '#include "graphc_threads.h"\n'
        f'const char *graphc_rt_source_hash(void) {{ return "{source_hash(csrc)}"; }}\n'
    )
    ffi.set_source(
        "graphc._rt",
        preamble,
        sources=[os.path.join(csrc, name) for name in SOURCES],
        include_dirs=[csrc],
        depends=[os.path.join(csrc, name) for name in HEADERS],
        extra_compile_args=EXTRA_COMPILE_ARGS,
        extra_link_args=EXTRA_LINK_ARGS,
    )
    return ffi


# setup.py execs this file with __name__ == "__cffi__" and the repository root as cwd; rt.py
# imports it as graphc._build_rt and calls make_ffibuilder itself.
if __name__ in ("__cffi__", "__main__"):
    ffibuilder = make_ffibuilder()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
