"""Builds graphc's hand-written C: the runtime (csrc/) as the cffi extension ``graphc._rt``, the
C call path (csrc/fastcall.c) as the CPython extension ``graphc._fastcall``, and the reverse
tape's interpreter (rendered from the ops' declarations) into ``graphc/_prebuilt``.

Everything else lives in pyproject.toml. Generated kernels include ``csrc/graphc_rt.h`` and
call the runtime's compiled helpers (the gemm) through function pointers handed over at load.
"""

import os
import runpy
import sys
import tempfile

from setuptools import setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """The extensions, then the tape interpreter: built by graphc itself (graphc/build.py,
    the flags and checks of every generated module), so this imports graphc from the tree.
    Where that fails, the interpreter is built at its first use instead, as before."""

    def run(self):
        super().run()
        in_tree = self.inplace or getattr(self, "editable_mode", False)
        package = os.path.abspath("graphc" if in_tree else os.path.join(self.build_lib, "graphc"))
        os.makedirs(package, exist_ok=True)
        sys.path.insert(0, os.path.abspath("."))
        previous = os.environ.get("GRAPHC_CACHE_DIR")
        try:
            with tempfile.TemporaryDirectory() as scratch:    # the compiler checks' verdicts
                os.environ["GRAPHC_CACHE_DIR"] = scratch
                from graphc.reverse_tape import prebuild
                prebuild(package)
        except Exception as e:      # noqa: BLE001  (any failure: the first use builds it)
            print(f"graphc: the tape interpreter is built at first use instead: {e!r}")
        finally:
            sys.path.remove(os.path.abspath("."))
            if previous is None:
                os.environ.pop("GRAPHC_CACHE_DIR", None)
            else:
                os.environ["GRAPHC_CACHE_DIR"] = previous


fastcall = runpy.run_path("graphc/_build_fastcall.py")["extension"]()

setup(cffi_modules=["graphc/_build_rt.py:ffibuilder"], ext_modules=[fastcall],
      cmdclass={"build_ext": BuildExt})
