"""Linear cost at any graph shape (issue 13, item 5): a node with thousands of sources, a
chain thousands deep and W7 go from tracing to C text in time proportional to their size.

The one timed assertion the suite allows (the issue asks for it): a bounded ratio of CPU
times at two small sizes, never an absolute time. bench/measure_scale.py asserts the same
at 100,000."""

import numpy as np
import pytest

import graphc
from bench.measure_scale import RATIO_MAX, SHAPES, growth
from bench.workloads import wide_stack
from graphc.codegen.c import TAPE_FUSE_MIN

# Both sizes above the size from which a tape's nests are fused natively (the wide stack is
# then scheduled twice): at 1,000 against 10,000 that step alone made the ratio 16x.
SMALL = TAPE_FUSE_MIN + TAPE_FUSE_MIN // 10
LARGE = 10 * SMALL
# The suite shares its machine: at these small sizes cache contention and the n log n of
# sorting and heaps move the ratio by about a fifth, so it gets that much room over the
# 12x the bench asserts at 100,000. A quadratic step shows as 20x and more.
TEST_RATIO_MAX = RATIO_MAX * 1.25


@pytest.mark.parametrize("shape", list(SHAPES))
def test_cost_grows_linearly(shape, monkeypatch):
    # the compile path as users run it (GRAPHC_VERIFY's checks add noise to a timed ratio)
    monkeypatch.setenv("GRAPHC_VERIFY", "0")
    t_small, t_large = growth(shape, SMALL, LARGE, repeats=2)
    assert t_large / t_small <= TEST_RATIO_MAX, (shape, t_small, t_large)


def test_wide_stack_gradient():
    """The cotangents of x[0], ..., x[n-1] join into one concatenate: right values, no
    full-size array per element."""
    x = np.random.default_rng(0).uniform(-1, 1, 300)
    f = graphc.compile(graphc.value_and_grad(wide_stack(300)))
    value, grad = f(x)
    np.testing.assert_allclose(value, (x * x).sum(), rtol=1e-12)
    np.testing.assert_allclose(grad, 2 * x, rtol=1e-12)
    ops = [n.op.name for n in f.trace(x).nodes]
    assert "unslice" not in ops and ops.count("concatenate") == 2


def test_overlapping_and_strided_windows_gradient():
    """Windows that overlap, leave gaps, or step are summed as before."""
    def f(x):
        return ((x[0:3] * 2.0).sum() + (x[1:4] ** 2).sum() + x[6] * x[7] + x[::3].sum()
                + x[2, None].sum() * 3.0)
    x = np.random.default_rng(1).uniform(-1, 1, 10)
    want = np.zeros(10)
    want[0:3] += 2.0
    want[1:4] += 2 * x[1:4]
    want[6], want[7] = x[7], x[6]
    want[::3] += 1.0
    want[2] += 3.0
    np.testing.assert_allclose(graphc.grad(f)(x), want, rtol=1e-12)
    graphc.check_grads(f, (x,), order=2)
