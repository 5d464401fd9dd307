"""GRAPHC_SANITIZE=1: kernels under ASan/UBSan, every buffer its own allocation. Each test runs
Python in a subprocess, with and without the ASan runtime preloaded."""

import os
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _libasan() -> str | None:
    try:
        out = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                             text=True).stdout.strip()
    except OSError:
        return None
    return out if os.path.isabs(out) and os.path.exists(out) else None


LIBASAN = _libasan()
needs_asan = pytest.mark.skipif(LIBASAN is None, reason="gcc has no libasan here")


def _python(code: str, preload: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env.update(GRAPHC_SANITIZE="1", ASAN_OPTIONS="detect_leaks=0", PYTHONPATH=ROOT)
    if preload:
        env["LD_PRELOAD"] = LIBASAN
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=600)


def test_without_the_asan_runtime_the_error_says_how_to_run():
    out = _python("""
        import numpy as np, graphc
        try:
            graphc.compile(lambda x: x + 1.0)(np.ones(2))
        except graphc.GraphcError as e:
            print("refused:", e)
    """, preload=False)
    assert "refused: GRAPHC_SANITIZE=1 needs the ASan runtime" in out.stdout, out.stderr
    assert "LD_PRELOAD=$(gcc -print-file-name=libasan.so)" in out.stdout


@needs_asan
def test_every_buffer_is_its_own_allocation_and_asan_sees_an_overflow():
    # The same graph twice: once as built (correct values, its own cache, a malloc per
    # buffer), once with the bounds proof switched off and one kernel reading its source one
    # element too far: ASan must stop the process at that read.
    code = """
        import numpy as np, graphc
        from graphc import build
        from graphc.codegen import c as cgen
        fn = lambda x: graphc.exp(graphc.sum(x, axis=0)) * 2.0
        x = np.arange(12.0).reshape(3, 4)
        src = graphc.compile(fn, optimize=False).source(x)
        assert "malloc(sizes[k])" in src and "#define GC_SANITIZE 1" in src
        assert "sanitized" in str(build._entry_dir(build.cache_dir() / "sanitized", "k" * 64))
        got = graphc.compile(fn, optimize=False)(x)
        assert np.allclose(got, np.exp(x.sum(axis=0)) * 2.0), got
        print("correct", flush=True)
        plain = cgen.schedule
        def shifted(graph, *a, **k):
            s = plain(graph, *a, **k)
            kern = next(k for k in s.kernels if k.kind == "elementwise"
                        and k.srcs[0].buf is not None and k.srcs[0].buf.kind == "ws")
            src = kern.srcs[0]
            kern.srcs[0] = type(src)(src.buf, src.offset + 1, src.strides)
            return s
        cgen.schedule = shifted
        cgen.check_bounds = lambda kernels: None
        graphc.compile(lambda x: fn(x) + 1.0, optimize=False)(x)
        print("not caught")
    """
    out = _python(code, preload=True)
    assert "correct" in out.stdout, out.stderr[-3000:]
    assert "not caught" not in out.stdout
    assert out.returncode != 0
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in out.stderr, out.stderr[-3000:]
    # the 4 column sums' own 32-byte allocation, read one element past its end
    assert re.search(r"0 bytes (to the right of|after) 32-byte region", out.stderr)
