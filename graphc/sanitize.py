"""GRAPHC_SANITIZE=1: generated kernels built with AddressSanitizer and UBSan, each arena
buffer in an allocation of its own, in a kernel cache of their own.

- build.py compiles with SANITIZE_FLAGS (no -march=native, no libmvec, no self-test) under
  `<cache root>/sanitized/`;
- schedule.plan_memory gives every buffer its own slot in a table of pointers (no reuse, no
  in-place writes), and the generated entry mallocs each buffer before the kernels run and
  frees it after (csrc/graphc_rt.h's GC_BUF reads through the table under GC_SANITIZE), so an
  access outside any buffer lands in an ASan redzone instead of a neighbour in the arena;
- large graphs run as straight-line C, never as a tape (whose rows address the arena by
  offset).

An instrumented module loads only into a process that has the ASan runtime first in its
library list: `make sanitize` runs Python with
`LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0`.
"""

from __future__ import annotations

import os

from .errors import GraphcError

SANITIZE_FLAGS = ("-O1", "-g", "-fno-omit-frame-pointer", "-fPIC", "-shared", "-pipe",
                  "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                  "-fno-math-errno", "-fopenmp-simd", "-fwrapv",
                  "-Werror=implicit-function-declaration")


def enabled() -> bool:
    return os.environ.get("GRAPHC_SANITIZE", "0") not in ("", "0")


def compiler_env() -> dict | None:
    """The compiler's environment: without LD_PRELOAD (gcc itself needs no ASan runtime,
    and runs several times slower under it); None (inherit) when nothing is preloaded."""
    if "LD_PRELOAD" not in os.environ:
        return None
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def require_runtime() -> None:
    """Loading an instrumented module without the ASan runtime preloaded kills the process
    (ASan's own check): refuse first, with the fix."""
    try:
        with open("/proc/self/maps") as f:
            loaded = "libasan" in f.read()
    except OSError:
        loaded = "libasan" in os.environ.get("LD_PRELOAD", "")
    if not loaded:
        raise GraphcError("GRAPHC_SANITIZE=1 needs the ASan runtime loaded before Python "
                          "starts: run with LD_PRELOAD=$(gcc -print-file-name=libasan.so) "
                          "ASAN_OPTIONS=detect_leaks=0 (as `make sanitize` does)")
