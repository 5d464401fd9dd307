"""Builds graphc's hand-written C runtime (csrc/) as the cffi extension ``graphc._rt``.

Everything else lives in pyproject.toml. Generated kernels include ``csrc/graphc_rt.h`` and
call the runtime's compiled helpers (the gemm) through function pointers handed over at load.
"""

from setuptools import setup

setup(cffi_modules=["graphc/_build_rt.py:ffibuilder"])
