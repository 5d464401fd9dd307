"""Indices proved in range at codegen time; data-dependent ones checked at run time."""

import dataclasses

import numpy as np
import pytest

import graphc
from graphc.codegen.bounds import check_bounds, index_range
from graphc.schedule import View, schedule


def _kernels(fn, *args):
    return schedule(graphc.trace(fn, *args), fuse=True).kernels


def test_index_range_covers_offsets_and_negative_strides():
    v = View(None, 11, (-4, 1))                 # x[::-1] of a (3, 4) array, as a view
    assert index_range(v, (3, 4)) == (3, 14)
    assert index_range(View(None, 5, (0, 2)), (7, 3)) == (5, 9)
    assert index_range(v, (0, 4)) is None       # an empty loop reads nothing


def test_every_kernel_of_real_graphs_is_in_bounds():
    x = np.arange(24.0).reshape(2, 3, 4)
    fns = [lambda a: a[:, ::-1, 1:3].sum(axis=1) * 2.0,
           lambda a: graphc.concatenate([a, a[:, ::2]], axis=1).max(axis=(0, 2)),
           lambda a: graphc.grad(lambda b: (b.transpose(2, 0, 1) ** 2).sum())(a),
           lambda a: a.reshape(6, 4) @ a.reshape(4, 6)]
    for fn in fns:
        kernels = _kernels(fn, x)
        check_bounds(kernels)           # no error
        assert kernels


def test_an_index_past_the_buffer_is_an_internal_error():
    kernels = _kernels(lambda a: a[1:] + 1.0, np.arange(5.0))
    k = next(k for k in kernels if k.srcs and k.srcs[0].buf is not None)
    src = k.srcs[0]
    k.srcs[0] = dataclasses.replace(src, offset=src.offset + 1)     # one element too far
    with pytest.raises(graphc.GraphcError, match=r"internal: kernel \d+ .*loads indices \[2, 5\] "
                       r"of in buffer 0 of 5 elements"):
        check_bounds(kernels)


def test_a_negative_index_is_an_internal_error():
    kernels = _kernels(lambda a: a[::-1] * 2.0, np.arange(4.0))
    k = next(k for k in kernels if k.srcs and k.srcs[0].buf is not None)
    k.srcs[0] = dataclasses.replace(k.srcs[0], offset=2)
    with pytest.raises(graphc.GraphcError, match=r"loads indices \[-1, 2\]"):
        check_bounds(kernels)


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_one_hot_rejects_out_of_range_labels(backend):
    f = graphc.compile(lambda y: graphc.one_hot(y, 10), backend=backend)
    ok = f(np.array([0, 9, 3]))
    np.testing.assert_array_equal(ok, np.eye(10, dtype=np.float32)[[0, 9, 3]])
    with pytest.raises(graphc.GraphcError, match=r"label 10 at position 3 is outside \[0, 10\)"):
        f(np.array([1, 2, 3, 10]))
    with pytest.raises(graphc.GraphcError, match=r"label -1 at position \(1, 0\) is outside"):
        f(np.array([[0, 1], [-1, 2]]))


@pytest.mark.parametrize("backend", ["c", "numpy"])
def test_cross_entropy_gradient_rejects_out_of_range_labels(backend):
    loss = graphc.compile(graphc.grad(graphc.nn.cross_entropy), backend=backend)
    z = np.zeros((3, 4))
    np.testing.assert_allclose(loss(z, np.array([0, 1, 3])).sum(), 0.0, atol=1e-15)
    with pytest.raises(graphc.GraphcError, match=r"label 4 at position 2 is outside \[0, 4\)"):
        loss(z, np.array([0, 1, 4]))


def test_int64_overflow_wraps_as_in_numpy():
    """Signed overflow is undefined in C: built with -fwrapv it wraps, as numpy does (UBSan
    stopped `make sanitize`, which runs this file, on it: a NaN cast to int64 then squared)."""
    a = np.array([2**62, -(2**63), 3], np.int64)
    f = graphc.compile(lambda a: a * a + a)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(f(a), a * a + a)
