"""Numeric helpers shared by the outside (contract) tests.

Everything here is plain numpy (or torch, where named): a central-difference gradient in float64,
a numpy reference namespace with the few ops numpy lacks (sigmoid, relu, softmax, ...), and the
table of ops of API.md used by test_api_transforms.py and test_vs_torch.py.

An op spec's ``fn(m, *xs)`` is written once against a namespace ``m``: ``graphc`` itself, ``NP``
(numpy reference) or ``TorchNS`` (see test_vs_torch.py), so each op is defined exactly once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# --------------------------------------------------------------------------------------------
# finite differences
# --------------------------------------------------------------------------------------------


def numeric_grad(f, args, argnum=0, eps=1e-5):
    """Central-difference gradient of scalar ``f(*args)`` w.r.t. ``args[argnum]``, in float64.

    ``f`` must accept numpy arrays (it is evaluated in float64). Returns an array of the
    argument's shape (a 0-d array for a scalar argument).
    """
    args = [np.array(a, dtype=np.float64) for a in args]
    x = args[argnum]
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        orig = float(x[idx])
        x[idx] = orig + eps
        fp = float(np.asarray(f(*args)))
        x[idx] = orig - eps
        fm = float(np.asarray(f(*args)))
        x[idx] = orig
        g[idx] = (fp - fm) / (2.0 * eps)
    return g


def numeric_grads(f, args, argnums, eps=1e-5):
    return tuple(numeric_grad(f, args, i, eps) for i in argnums)


def numeric_jacobian(f, x, eps=1e-5):
    """Central-difference Jacobian of array-valued ``f(x)``: shape ``out.shape + x.shape``."""
    x = np.array(x, dtype=np.float64)
    out0 = np.asarray(f(x))
    jac = np.zeros(out0.shape + x.shape)
    for idx in np.ndindex(x.shape):
        orig = float(x[idx])
        x[idx] = orig + eps
        fp = np.asarray(f(x), dtype=np.float64)
        x[idx] = orig - eps
        fm = np.asarray(f(x), dtype=np.float64)
        x[idx] = orig
        jac[(Ellipsis,) + tuple(idx)] = (fp - fm) / (2.0 * eps)
    return jac


# tolerances of the suite
FWD64 = dict(rtol=1e-10, atol=1e-13)   # exact-math forward results in float64
EXACT = dict(rtol=1e-12, atol=1e-14)   # results that are exact in float64 arithmetic
FD = dict(rtol=1e-6, atol=1e-8)        # central differences vs reverse mode (float64)
F32 = dict(rtol=2e-6, atol=1e-6)       # float32 results vs a float64 reference


def close(actual, desired, **tol):
    tol = tol or FWD64
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64),
                               np.asarray(desired, dtype=np.float64), **tol)


# --------------------------------------------------------------------------------------------
# numpy reference namespace
# --------------------------------------------------------------------------------------------


def _sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _logsumexp(x, axis=None, keepdims=False):
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    if not keepdims:
        out = np.squeeze(out, axis=axis) if axis is not None else out.reshape(())
    return out


def _log_softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float64)
    return x - _logsumexp(x, axis=axis, keepdims=True)


def _softmax(x, axis=-1):
    return np.exp(_log_softmax(x, axis=axis))


def _one_hot(labels, n, dtype=np.float32):
    labels = np.asarray(labels)
    return (labels[..., None] == np.arange(n)).astype(dtype)


class _NumpyRef:
    """numpy, plus the ops of API.md numpy does not have (stable, in float64)."""

    sigmoid = staticmethod(_sigmoid)
    softmax = staticmethod(_softmax)
    log_softmax = staticmethod(_log_softmax)
    logsumexp = staticmethod(_logsumexp)
    one_hot = staticmethod(_one_hot)

    @staticmethod
    def relu(x):
        return np.maximum(x, 0.0)

    @staticmethod
    def leaky_relu(x, slope=0.01):
        return np.where(x > 0, x, slope * x)

    def __getattr__(self, name):
        return getattr(np, name)


NP = _NumpyRef()


def sigmoid(x):
    return _sigmoid(x)


def softmax(x, axis=-1):
    return _softmax(x, axis)


def logsumexp(x, axis=None, keepdims=False):
    return _logsumexp(x, axis, keepdims)


# --------------------------------------------------------------------------------------------
# input makers (all away from kinks, ties and the edges of domains)
# --------------------------------------------------------------------------------------------


def normal(*shape):
    return lambda rng: rng.standard_normal(shape)


def positive(*shape, lo=0.5, hi=2.0):
    return lambda rng: rng.uniform(lo, hi, size=shape)


def uniform(*shape, lo=-1.0, hi=1.0):
    return lambda rng: rng.uniform(lo, hi, size=shape)


def away_from_zero(*shape, gap=0.1):
    """Entries with |x| in [gap, 1.5], random signs (both signs present)."""
    def make(rng):
        mag = rng.uniform(gap, 1.5, size=shape)
        sign = np.where(np.arange(int(np.prod(shape))).reshape(shape) % 2 == 0, 1.0, -1.0)
        return mag * rng.permutation(sign.ravel()).reshape(shape)
    return make


def distinct(*shape, spacing=0.1):
    """Entries pairwise at least ``spacing`` apart (no ties for max/min)."""
    def make(rng):
        n = int(np.prod(shape))
        vals = (rng.permutation(n) - n / 2.0) * spacing + rng.uniform(0, spacing / 4, size=n)
        return vals.reshape(shape)
    return make


def labels(n, classes):
    return lambda rng: rng.integers(0, classes, size=(n,)).astype(np.int64)


def const(value):
    return lambda rng: np.array(value, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# the op table of API.md
# --------------------------------------------------------------------------------------------


@dataclass
class Op:
    id: str
    fn: Callable                    # fn(m, *xs) with m = graphc | NP | TorchNS
    makers: list                    # one maker per input: rng -> np.ndarray
    grad: bool = True               # differentiable w.r.t. its float inputs
    int_args: tuple = ()            # positions of integer (non-differentiable) inputs
    torch: bool = True              # has a torch counterpart in TorchNS
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def inputs(self):
        rng = np.random.default_rng(1000 + self.seed + sum(map(ord, self.id)))
        xs = []
        for mk in self.makers:
            if isinstance(mk, _Group):
                xs.extend(mk(rng))
            else:
                xs.append(mk(rng))
        return xs

    @property
    def n_inputs(self):
        return sum(mk.n if isinstance(mk, _Group) else 1 for mk in self.makers)

    @property
    def float_argnums(self):
        return tuple(i for i in range(self.n_inputs) if i not in self.int_args)


def _maxmin_pair(rng, shape=(3, 4)):
    a = rng.standard_normal(shape)
    b = a + rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 1.0, size=shape)
    return a, b


class _Group:
    """A maker of several inputs at once (e.g. a, b with |a - b| >= 0.1)."""

    def __init__(self, make, n):
        self.make, self.n = make, n

    def __call__(self, rng):
        return self.make(rng)


MAXMIN_PAIR = _Group(_maxmin_pair, 2)


def _clip_input(rng):
    # entries at least 0.05 from the bounds -0.5 and 0.5
    vals = np.array([-0.93, -0.61, -0.42, -0.2, 0.0, 0.13, 0.31, 0.44, 0.57, 0.8, 1.1, -1.3])
    return rng.permutation(vals).reshape(3, 4)


def _where_cond_input(rng):
    return away_from_zero(3, 4)(rng)


ELEMENTWISE = [
    Op("add", lambda m, a, b: m.add(a, b), [normal(3, 4), normal(3, 4)]),
    Op("add_broadcast", lambda m, a, b: m.add(a, b), [normal(3, 4), normal(4)]),
    Op("add_operator", lambda m, a, b: a + b, [normal(2, 3), normal(2, 3)]),
    Op("add_python_scalar", lambda m, a: a + 2.5, [normal(2, 3)]),
    Op("radd_python_scalar", lambda m, a: 2.5 + a, [normal(2, 3)]),
    Op("subtract", lambda m, a, b: m.subtract(a, b), [normal(3, 4), normal(3, 4)]),
    Op("subtract_broadcast", lambda m, a, b: m.subtract(a, b), [normal(3, 1), normal(1, 4)]),
    Op("subtract_operator", lambda m, a, b: a - b, [normal(2, 3), normal(2, 3)]),
    Op("rsub_python_scalar", lambda m, a: 1.5 - a, [normal(2, 3)]),
    Op("multiply", lambda m, a, b: m.multiply(a, b), [normal(3, 4), normal(3, 4)]),
    Op("multiply_broadcast", lambda m, a, b: m.multiply(a, b), [normal(2, 3, 4), normal(3, 1)]),
    Op("multiply_operator", lambda m, a, b: a * b, [normal(2, 3), normal(2, 3)]),
    Op("mul_python_scalar", lambda m, a: a * -0.75, [normal(2, 3)]),
    Op("divide", lambda m, a, b: m.divide(a, b), [normal(3, 4), positive(3, 4)]),
    Op("divide_operator", lambda m, a, b: a / b, [normal(3, 4), positive(3, 4)]),
    Op("rdiv_python_scalar", lambda m, a: 2.0 / a, [positive(3, 4)]),
    Op("divide_broadcast", lambda m, a, b: a / b, [normal(3, 4), positive(4)]),
    Op("negative", lambda m, a: m.negative(a), [normal(3, 4)]),
    Op("unary_minus", lambda m, a: -a, [normal(3, 4)]),
    Op("power", lambda m, a, b: m.power(a, b), [positive(3, 4), uniform(3, 4, lo=-1.5, hi=2.0)]),
    Op("power_operator", lambda m, a, b: a ** b, [positive(3, 4), uniform(3, 4, lo=-1.5, hi=2.0)]),
    Op("pow_int_2_negative_base", lambda m, a: a ** 2, [normal(3, 4)]),
    Op("pow_int_3_negative_base", lambda m, a: a ** 3, [normal(3, 4)]),
    Op("pow_half", lambda m, a: a ** 0.5, [positive(3, 4)]),
    Op("pow_minus_one", lambda m, a: a ** -1.0, [positive(3, 4)]),
    Op("rpow_python_scalar", lambda m, a: 2.0 ** a, [normal(3, 4)]),
    Op("exp", lambda m, a: m.exp(a), [normal(3, 4)]),
    Op("log", lambda m, a: m.log(a), [positive(3, 4)]),
    Op("sqrt", lambda m, a: m.sqrt(a), [positive(3, 4)]),
    Op("sin", lambda m, a: m.sin(a), [normal(3, 4)]),
    Op("cos", lambda m, a: m.cos(a), [normal(3, 4)]),
    Op("tanh", lambda m, a: m.tanh(a), [normal(3, 4)]),
    Op("sigmoid", lambda m, a: m.sigmoid(a), [lambda rng: 3 * rng.standard_normal((3, 4))]),
    Op("relu", lambda m, a: m.relu(a), [away_from_zero(3, 4)]),
    Op("leaky_relu_default", lambda m, a: m.leaky_relu(a), [away_from_zero(3, 4)]),
    Op("leaky_relu_slope", lambda m, a: m.leaky_relu(a, 0.2), [away_from_zero(3, 4)]),
    Op("abs", lambda m, a: m.abs(a), [away_from_zero(3, 4)]),
    Op("maximum", lambda m, a, b: m.maximum(a, b), [MAXMIN_PAIR]),
    Op("minimum", lambda m, a, b: m.minimum(a, b), [MAXMIN_PAIR]),
    Op("maximum_scalar", lambda m, a: m.maximum(a, 0.25),
       [lambda rng: away_from_zero(3, 4)(rng) + 0.25]),
    Op("where", lambda m, c, a, b: m.where(c > 0.0, a, b),
       [_where_cond_input, normal(3, 4), normal(3, 4)]),
    Op("where_compare_lt", lambda m, a, b: m.where(a < b, a * b, a - b),
       [MAXMIN_PAIR]),
    Op("where_broadcast", lambda m, c, a: m.where(c >= 0.0, a, 0.0),
       [_where_cond_input, normal(4)]),
    Op("clip", lambda m, a: m.clip(a, -0.5, 0.5), [_clip_input]),
    Op("square", lambda m, a: m.square(a), [normal(3, 4)]),
    Op("log1p", lambda m, a: m.log1p(a), [uniform(3, 4, lo=-0.5, hi=2.0)]),
    Op("expm1", lambda m, a: m.expm1(a), [uniform(3, 4)]),
]

COMPARISONS = [
    Op("lt", lambda m, a, b: a < b, [MAXMIN_PAIR], grad=False),
    Op("le", lambda m, a, b: a <= b, [MAXMIN_PAIR], grad=False),
    Op("gt", lambda m, a, b: a > b, [MAXMIN_PAIR], grad=False),
    Op("ge", lambda m, a, b: a >= b, [MAXMIN_PAIR], grad=False),
    Op("eq", lambda m, a, b: a == b, [lambda rng: np.array([1.0, 2.0, 3.0, 4.0]),
                                      lambda rng: np.array([1.0, 0.0, 3.0, 5.0])], grad=False),
    Op("ne", lambda m, a, b: a != b, [lambda rng: np.array([1.0, 2.0, 3.0, 4.0]),
                                      lambda rng: np.array([1.0, 0.0, 3.0, 5.0])], grad=False),
    Op("gt_scalar", lambda m, a: a > 0.0, [away_from_zero(3, 4)], grad=False),
]

REDUCTIONS = []
for _name in ("sum", "mean", "max", "min"):
    _maker = distinct(2, 3, 4) if _name in ("max", "min") else normal(2, 3, 4)
    for _axis, _kd in ((None, False), (None, True), (0, False), (1, True), (-1, False),
                       ((0, 2), False), ((0, 2), True), ((-1, -2), False), ((0, 1, 2), True)):
        if True:
            _id = f"{_name}-axis={_axis}-keepdims={_kd}".replace(" ", "")
            REDUCTIONS.append(Op(
                _id,
                (lambda n, ax, kd: lambda m, a: getattr(m, n)(a, axis=ax, keepdims=kd))(
                    _name, _axis, _kd),
                [_maker]))
    REDUCTIONS.append(Op(f"{_name}-default", (lambda n: lambda m, a: getattr(m, n)(a))(_name),
                         [_maker]))

LINALG = [
    Op("matmul_2d", lambda m, a, b: m.matmul(a, b), [normal(3, 4), normal(4, 5)]),
    Op("matmul_operator", lambda m, a, b: a @ b, [normal(3, 4), normal(4, 2)]),
    Op("matmul_batched", lambda m, a, b: m.matmul(a, b), [normal(2, 3, 4), normal(2, 4, 5)]),
    Op("matmul_batched_operator", lambda m, a, b: a @ b, [normal(3, 2, 4), normal(3, 4, 3)]),
    Op("matmul_batched_broadcast_rhs", lambda m, a, b: m.matmul(a, b),
       [normal(2, 3, 4), normal(4, 5)]),
    Op("matmul_batched_broadcast_lhs", lambda m, a, b: m.matmul(a, b),
       [normal(3, 4), normal(2, 4, 5)]),
    Op("matmul_batch_dims_broadcast", lambda m, a, b: m.matmul(a, b),
       [normal(1, 3, 4), normal(2, 4, 5)]),
    Op("matmul_1x1", lambda m, a, b: m.matmul(a, b), [normal(1, 1), normal(1, 1)]),
    Op("matmul_outer_shaped", lambda m, a, b: m.matmul(a, b), [normal(5, 1), normal(1, 3)]),
    Op("dot_1d", lambda m, a, b: m.dot(a, b), [normal(5), normal(5)]),
    Op("dot_2d", lambda m, a, b: m.dot(a, b), [normal(3, 4), normal(4, 2)]),
    Op("outer", lambda m, a, b: m.outer(a, b), [normal(3), normal(4)]),
]

SHAPE_OPS = [
    Op("reshape", lambda m, a: m.reshape(a, (4, 3)), [normal(3, 4)]),
    Op("reshape_3d", lambda m, a: m.reshape(a, (2, 3, 2)), [normal(3, 4)]),
    Op("reshape_minus_one", lambda m, a: m.reshape(a, (-1, 2)), [normal(3, 4)]),
    Op("reshape_flatten", lambda m, a: m.reshape(a, (12,)), [normal(2, 3, 2)]),
    Op("transpose_default", lambda m, a: m.transpose(a), [normal(3, 4)]),
    Op("transpose_axes_3d", lambda m, a: m.transpose(a, (1, 0, 2)), [normal(2, 3, 4)]),
    Op("transpose_axes_3d_cycle", lambda m, a: m.transpose(a, (2, 0, 1)), [normal(2, 3, 4)]),
    Op("broadcast_to_row", lambda m, a: m.broadcast_to(a, (2, 3)), [normal(3)]),
    Op("broadcast_to_col", lambda m, a: m.broadcast_to(a, (3, 4)), [normal(3, 1)]),
    Op("broadcast_to_3d", lambda m, a: m.broadcast_to(a, (2, 3, 4)), [normal(1, 4)]),
    Op("expand_dims_0", lambda m, a: m.expand_dims(a, 0), [normal(3, 4)]),
    Op("expand_dims_1", lambda m, a: m.expand_dims(a, 1), [normal(3, 4)]),
    Op("expand_dims_neg", lambda m, a: m.expand_dims(a, -1), [normal(3, 4)]),
    Op("squeeze_all", lambda m, a: m.squeeze(a), [normal(1, 3, 1, 4)]),
    Op("squeeze_axis", lambda m, a: m.squeeze(a, 2), [normal(1, 3, 1, 4)]),
    Op("squeeze_neg_axis", lambda m, a: m.squeeze(a, -1), [normal(3, 1)]),
    Op("concatenate_0", lambda m, a, b: m.concatenate([a, b], axis=0),
       [normal(2, 3), normal(4, 3)]),
    Op("concatenate_1", lambda m, a, b: m.concatenate([a, b], axis=1),
       [normal(2, 3), normal(2, 5)]),
    Op("concatenate_neg", lambda m, a, b, c: m.concatenate((a, b, c), axis=-1),
       [normal(2, 2, 1), normal(2, 2, 3), normal(2, 2, 2)]),
    Op("concatenate_default_axis", lambda m, a, b: m.concatenate([a, b]),
       [normal(2, 3), normal(1, 3)]),
    Op("stack_0", lambda m, a, b: m.stack([a, b], axis=0), [normal(2, 3), normal(2, 3)]),
    Op("stack_1", lambda m, a, b: m.stack([a, b], axis=1), [normal(2, 3), normal(2, 3)]),
    Op("stack_neg", lambda m, a, b, c: m.stack((a, b, c), axis=-1),
       [normal(2, 3), normal(2, 3), normal(2, 3)]),
    Op("stack_default_axis", lambda m, a, b: m.stack([a, b]), [normal(4), normal(4)]),
]

INDEXING = [
    Op("index_int", lambda m, a: a[0], [normal(3, 4)]),
    Op("index_negative_int", lambda m, a: a[-1], [normal(3, 4)]),
    Op("index_two_ints", lambda m, a: a[1, 2], [normal(3, 4)]),
    Op("slice_cols", lambda m, a: a[:, 1:3], [normal(3, 4)]),
    Op("slice_rows_step", lambda m, a: a[0:3:2], [normal(4, 3)]),
    Op("ellipsis_last", lambda m, a: a[..., -1], [normal(2, 3, 4)]),
    Op("ellipsis_first", lambda m, a: a[0, ...], [normal(2, 3, 4)]),
    Op("reverse_1d", lambda m, a: a[::-1], [normal(5)], torch=False),
    Op("reverse_step_2", lambda m, a: a[::-2], [normal(7)], torch=False),
    Op("reverse_rows_slice_cols", lambda m, a: a[::-1, 1:], [normal(3, 4)], torch=False),
    Op("negative_start_stop", lambda m, a: a[-3:-1], [normal(6)]),
    Op("mixed_int_slice", lambda m, a: a[1, :, 0:2], [normal(2, 3, 4)]),
    Op("T_2d", lambda m, a: a.T, [normal(3, 4)], torch=False),
    Op("T_3d", lambda m, a: a.T, [normal(2, 3, 4)], torch=False),
    Op("scalar_index_1d", lambda m, a: a[3], [normal(5)]),
]

NUMERICS = [
    Op("softmax_default", lambda m, a: m.softmax(a), [lambda r: 3 * r.standard_normal((3, 5))]),
    Op("softmax_axis0", lambda m, a: m.softmax(a, axis=0),
       [lambda r: 3 * r.standard_normal((3, 5))]),
    Op("softmax_1d", lambda m, a: m.softmax(a), [normal(6)]),
    Op("softmax_3d_axis1", lambda m, a: m.softmax(a, axis=1), [normal(2, 3, 4)]),
    Op("log_softmax_default", lambda m, a: m.log_softmax(a),
       [lambda r: 3 * r.standard_normal((3, 5))]),
    Op("log_softmax_axis0", lambda m, a: m.log_softmax(a, axis=0), [normal(3, 5)]),
    Op("log_softmax_axis_neg2", lambda m, a: m.log_softmax(a, axis=-2), [normal(2, 3, 4)]),
    Op("logsumexp_all", lambda m, a: m.logsumexp(a), [lambda r: 3 * r.standard_normal((3, 5))]),
    Op("logsumexp_axis1", lambda m, a: m.logsumexp(a, axis=1), [normal(3, 5)]),
    Op("logsumexp_axis0_keepdims", lambda m, a: m.logsumexp(a, axis=0, keepdims=True),
       [normal(3, 5)]),
    Op("logsumexp_axis_neg1_keepdims", lambda m, a: m.logsumexp(a, axis=-1, keepdims=True),
       [normal(2, 3, 4)]),
    Op("logsumexp_1d", lambda m, a: m.logsumexp(a), [normal(7)]),
]

COMPOSITE = [
    Op("mlp_layer", lambda m, x, w, b: m.tanh(m.matmul(x, w) + b),
       [normal(4, 3), normal(3, 5), normal(5)]),
    Op("sigmoid_of_matmul_sum", lambda m, x, w: m.sum(m.sigmoid(x @ w), axis=0),
       [normal(4, 3), normal(3, 2)]),
    Op("exp_log_chain", lambda m, a: m.log(m.exp(a) + 1.0) * m.sqrt(a * a + 1.0), [normal(3, 4)]),
    Op("mean_sq_residual", lambda m, x, w, y: m.mean((x @ w - y) ** 2),
       [normal(6, 3), normal(3), normal(6)]),
    Op("reused_subexpression", lambda m, a: m.exp(a) * m.exp(a) + m.sin(a) * m.exp(a),
       [normal(5)]),
]

ALL_OPS = (ELEMENTWISE + COMPARISONS + REDUCTIONS + LINALG + SHAPE_OPS + INDEXING + NUMERICS
           + COMPOSITE)


def loss_weights(out_shape, seed=7):
    """Fixed random weights to contract an op's output into a scalar loss."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(out_shape)


def shape_mentioned(msg: str, shape) -> bool:
    """True when ``msg`` names ``shape`` in one of the usual spellings."""
    shape = tuple(shape)
    cands = {str(shape), str(list(shape)), "x".join(map(str, shape)), "×".join(map(str, shape)),
             "(" + ", ".join(map(str, shape)) + ")", "(" + ",".join(map(str, shape)) + ")",
             "[" + ",".join(map(str, shape)) + "]"}
    return any(c in msg for c in cands)


def mentions_any(msg: str, words) -> bool:
    low = msg.lower()
    return any(w.lower() in low for w in words)


def first_line_matching(fn, pattern):
    """Line number (in fn's file) of the first source line of ``fn`` matching ``pattern``."""
    import inspect
    lines, start = inspect.getsourcelines(fn)
    for i, line in enumerate(lines):
        if re.search(pattern, line):
            return start + i
    raise AssertionError(f"pattern {pattern!r} not in source of {fn.__name__}")


def memory_growth(call: Callable[[], object], n: int) -> tuple[int, int]:
    """(bytes still held, peak bytes above the start) over n calls, by tracemalloc."""
    import tracemalloc
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(n):
            call()
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return now - base, peak - base


def run_threads(work: Callable[[int], None], n: int,
                timeout: float | None = 120) -> list[BaseException]:
    """work(0), ..., work(n - 1) on n threads at once; the exceptions they raised."""
    errors: list[BaseException] = []

    def guarded(k: int) -> None:
        try:
            work(k)
        except BaseException as e:  # noqa: BLE001  (reported to the test, not lost)
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return errors
