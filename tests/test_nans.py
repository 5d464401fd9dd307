"""graphc.debug_nans: the first op that makes a NaN/Inf of finite inputs raises NaNError
naming it, the line that traced it and its inputs' ranges, forward and backward, on both
backends."""

import os
import subprocess
import sys

import numpy as np
import pytest

import graphc

BACKENDS = ["c", "numpy"]


@pytest.fixture(autouse=True)
def nans_on():
    previous = graphc.debug_nans(True)
    yield
    graphc.debug_nans(previous)


def _line_of(fn, text: str) -> int:
    import inspect
    lines, start = inspect.getsourcelines(fn)
    return start + next(k for k, line in enumerate(lines) if text in line)


def log_of_negative(x):
    y = x * 2.0 - 1.0
    return graphc.log(y).sum()


def sqrt_norm(x):
    return graphc.sqrt(x * x).sum()


def zero_over_zero(x, y):
    return (x / y).sum() + y.sum()


@pytest.mark.parametrize("backend", BACKENDS)
def test_log_of_negative_names_the_op_line_and_ranges(backend):
    f = graphc.compile(log_of_negative, backend=backend)
    assert np.isfinite(f(np.array([1.0, 2.0])))
    line = _line_of(log_of_negative, "graphc.log(y)")
    with pytest.raises(graphc.NaNError, match=(
            rf"log at test_nans.py:{line} gave NaN from finite inputs at position 1: "
            r"log\(-0.5\) = nan\n  input 0: float64\[3\] in \[-0.5, 5.0\]")):
        f(np.array([1.0, 0.25, 3.0]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_sqrt_at_zero_in_backward_names_the_forward_op(backend):
    g = graphc.compile(graphc.grad(sqrt_norm), backend=backend)
    np.testing.assert_allclose(g(np.array([-2.0, 3.0])), [-1.0, 1.0])
    line = _line_of(sqrt_norm, "graphc.sqrt")
    with pytest.raises(graphc.NaNError, match=(
            rf"div \(in the derivative of sqrt\) at test_nans.py:{line} gave Inf from finite "
            r"inputs at position 1: div\(0.5, 0.0\) = inf\n.*\n  input 1: float64\[2\] in "
            r"\[0.0, 1.0\]")):
        g(np.array([1.0, 0.0]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("transform", ["compile", "grad"])
def test_zero_over_zero(backend, transform):
    fn = zero_over_zero if transform == "compile" else graphc.grad(zero_over_zero, (0, 1))
    f = graphc.compile(fn, backend=backend)
    x, y = np.array([[1.0, 0.0]]), np.array([[2.0, 0.0]])
    line = _line_of(zero_over_zero, "x / y")
    # forward: 0/0 is NaN; backward: the first new non-finite is 1/0 in div's derivative
    first = (r"div at .*NaN .* div\(0.0, 0.0\) = nan" if transform == "compile" else
             r"div \(in the derivative of div\) at .*Inf .*position \(0, 1\)")
    with pytest.raises(graphc.NaNError, match=rf"{first}"):
        f(x, y)
    with pytest.raises(graphc.NaNError, match=rf"test_nans.py:{line}"):
        f(x, y)


def test_an_input_nan_or_a_masked_nan_is_not_reported():
    f = graphc.compile(lambda x: x * 2.0)
    assert np.isnan(f(np.array([np.nan, 1.0]))[0])
    # log(x) is NaN at x < 0, but where() discards it: no result changes
    g = graphc.compile(lambda x: graphc.where(x > 0, graphc.log(graphc.abs(x) + 1.0), 0.0)
                       + graphc.where(x > 0, 0.0, graphc.sqrt(-x)))
    np.testing.assert_allclose(g(np.array([-4.0, 1.0])), [2.0, np.log(2.0)])


def test_off_the_generated_code_and_results_are_unchanged():
    x = np.array([1.0, 0.25])
    on = graphc.compile(log_of_negative)
    source_on = on.source(x)
    graphc.debug_nans(False)
    off = graphc.compile(log_of_negative)
    assert off.source(x) == source_on
    assert np.isnan(off(x))                 # no error: the NaN is returned, as numpy would


def test_in_place_updates_are_located_on_the_inputs_before_the_call():
    from graphc import nn, optim
    model = nn.Linear(3, 2, seed=0, dtype=np.float64)
    opt = optim.SGD(model.params, lr=0.1)

    def inner(params, x):
        return graphc.sum(model.apply(params, x) ** 2) - 1e3

    def loss_fn(params, x):
        return graphc.log(inner(params, x))
    x = np.ones((4, 3))
    before = {k: v.copy() for k, v in opt.params.items()}
    expected = float(graphc.compile(inner, backend="numpy")(before, x))
    assert expected < 0
    step = graphc.train_step(loss_fn, opt)
    with pytest.raises(graphc.NaNError, match=r"log at test_nans.py:\d+ gave NaN") as err:
        step(x)
    # the located value is the one of the parameters before the step wrote them in place
    assert f"input 0: float64[] in [{expected!r}, {expected!r}]" in str(err.value)


def test_env_var_turns_it_on():
    code = ("import numpy as np, graphc\n"
            "f = graphc.compile(lambda x: graphc.log(x), backend='numpy')\n"
            "try:\n    f(np.array([-1.0]))\nexcept graphc.NaNError as e:\n    print('raised', e)\n")
    env = dict(os.environ, GRAPHC_DEBUG_NANS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert "raised log at <string>:2 gave NaN" in out.stdout, out.stderr
