"""Builds graphc's hand-written C: the runtime (csrc/) as the cffi extension ``graphc._rt``, and
the C call path (csrc/fastcall.c) as the CPython extension ``graphc._fastcall``.

Everything else lives in pyproject.toml. Generated kernels include ``csrc/graphc_rt.h`` and
call the runtime's compiled helpers (the gemm) through function pointers handed over at load.
"""

import runpy

from setuptools import setup

fastcall = runpy.run_path("graphc/_build_fastcall.py")["extension"]()

setup(cffi_modules=["graphc/_build_rt.py:ffibuilder"], ext_modules=[fastcall])
