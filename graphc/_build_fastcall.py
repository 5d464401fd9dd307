"""Build description of ``graphc._fastcall`` (``csrc/fastcall.c``), the C call path.

``setup.py`` runs this file standalone (``runpy``), so it imports nothing from graphc;
``graphc/fastcall.py`` uses it to build the same module at run time in a source checkout
where it was never built (or is older than ``csrc/fastcall.c``).
"""

from __future__ import annotations

import hashlib
import os

SOURCE = "fastcall.c"
COMPILE_ARGS = ["-O2", "-std=gnu11"]


def source_hash(csrc: str) -> str:
    """Hash of what determines the built module: its source and flags (the module records
    it as SOURCE_HASH, so a stale in-place build is told apart)."""
    h = hashlib.sha256()
    with open(os.path.join(csrc, SOURCE), "rb") as f:
        h.update(f.read())
    h.update(" ".join(COMPILE_ARGS).encode())
    return h.hexdigest()[:20]


def hash_macro(csrc: str) -> tuple[str, str]:
    """The define that records the source hash in the module."""
    return "GRAPHC_FASTCALL_HASH", f'"{source_hash(csrc)}"'


def extension(csrc: str = "csrc"):
    """The setuptools Extension (setup.py; paths relative to the repository root)."""
    from setuptools import Extension
    return Extension("graphc._fastcall", [os.path.join(csrc, SOURCE)],
                     define_macros=[hash_macro(csrc)], extra_compile_args=COMPILE_ARGS)
