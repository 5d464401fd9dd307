"""The catalogue of bad (and awkward) inputs, OpInfo-style: `Case(id, fn, error, pattern)`.

`fn()` runs the case. With an `error`, it must raise that class with a message matching
`pattern` (which names the op and the values at fault); with `error=None` it must return
normally (it asserts its own result). tests/test_bad_inputs.py runs the whole table in a
child process (`python bad_inputs_cases.py id ...` prints one JSON line per case), so a crash
of the interpreter shows as a crash of the case that caused it, not of the test session.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import graphc
from graphc import DTypeError, GraphcError, ShapeError, TracerError


@dataclass(frozen=True)
class Case:
    id: str
    fn: Callable
    error: type | None
    pattern: str = ""


X = np.arange(12.0).reshape(3, 4)
V = np.arange(4.0)


def jit(f, *args, **kw):
    return lambda: graphc.compile(f, **kw)(*args)


def _leak():
    leaked = []

    def f(x):
        leaked.append(x)
        return x * 2
    graphc.compile(f)(V)
    return graphc.compile(lambda y: y + 1.0)(leaked[0])


def _while_loop(x):
    while x.sum() < 100:
        x = x * 2
    return x


def _same(got, want):
    rtol = 1e-6 if np.asarray(got).dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


def _layout(make):
    def run():
        x = make()
        _same(graphc.compile(lambda a: graphc.sum(a * a, axis=0) + a[0])(x),
              np.sum(x * x, axis=0) + x[0])
        _same(graphc.grad(lambda a: graphc.sum(graphc.sin(a) * a))(x),
              np.cos(x) * x + np.sin(x))
    return run


def _read_only():
    x = X.copy()
    x.flags.writeable = False
    return x


def _zero_size_sum():
    got = graphc.compile(lambda a: (graphc.sum(a), graphc.sum(a, axis=0), graphc.mean(a, axis=1)))(
        np.zeros((0, 3)))
    assert float(got[0]) == 0.0 and got[1].shape == (3,) and np.all(got[1] == 0)
    assert got[2].shape == (0,)


def _zero_size_grad():
    g = graphc.grad(lambda a: graphc.sum(graphc.exp(a)))(np.zeros((2, 0)))
    assert g.shape == (2, 0)


def _huge():
    """2**31 + 8 bools (2 GiB): a slice past element 2**31 needs 64-bit index arithmetic."""
    n = 2**31 + 8
    x = np.zeros(n, dtype=np.bool_)
    x[-3:] = True
    x[2**31 - 1] = True             # just below the slice: must not be read
    got = graphc.compile(lambda m: graphc.sum(graphc.where(m[2**31:], 1.0, 0.0)))(x)
    assert float(got) == 3.0, got


CASES = [
    # ---- Python control flow and conversions on tracers
    Case("if_on_tracer", jit(lambda x: x if x.sum() > 0 else -x, V), TracerError,
         r"(?s)bool.*graphc\.where"),
    Case("bool_of_tracer", jit(lambda x: bool(x[0]), V), TracerError, r"bool"),
    Case("float_of_tracer", jit(lambda x: float(x.sum()), V), TracerError, r"float"),
    Case("int_of_tracer", jit(lambda x: int(x[0]), V), TracerError, r"int"),
    Case("item_of_tracer", jit(lambda x: x.sum().item(), V), TracerError, r"item"),
    Case("numpy_on_tracer", jit(lambda x: np.asarray(x) + 1, V), TracerError, r"numpy|array"),
    Case("while_on_tracer", jit(_while_loop, V), TracerError, r"bool"),
    Case("tracer_leaked_out_of_compile", _leak, TracerError,
         r"<lambda> was called with a traced value that leaked"),
    # ---- incompatible shapes, one per op kind
    Case("elementwise_shapes", jit(lambda a, b: a + b, X, np.ones(3)), ShapeError,
         r"add.*\(3, 4\).*\(3,\)"),
    Case("where_shapes", jit(lambda c, a, b: graphc.where(c > 0, a, b), X, np.ones(3), V),
         ShapeError, r"where.*\(3,\)"),
    Case("reduce_axis_out_of_range", jit(lambda a: a.sum(axis=2), X), ShapeError,
         r"sum: axis 2 is out of bounds for an array of dimension 2"),
    Case("reduce_duplicate_axis", jit(lambda a: a.max(axis=(0, 0)), X), ShapeError,
         r"max.*(duplicate|repeated).*0"),
    Case("reduce_axis_negative_out_of_range", jit(lambda a: a.mean(axis=-3), X), ShapeError,
         r"mean.*-3"),
    Case("matmul_shapes", jit(lambda a, b: a @ b, X, X), ShapeError,
         r"matmul.*\(3, 4\).*\(3, 4\)"),
    Case("matmul_scalar", jit(lambda a: graphc.matmul(a, 2.0), X), ShapeError, r"matmul.*scalar"),
    Case("dot_shapes", jit(lambda a, b: graphc.dot(a, b), V, np.ones(3)), ShapeError,
         r"dot.*\(4,\).*\(3,\)"),
    Case("reshape_size", jit(lambda a: a.reshape(5, 3), X), ShapeError,
         r"reshape.*\(3, 4\).*\(5, 3\)"),
    Case("reshape_two_minus_ones", jit(lambda a: a.reshape(-1, -1), X), ShapeError,
         r"reshape.*-1"),
    Case("transpose_bad_perm", jit(lambda a: a.transpose((0, 0)), X), ShapeError,
         r"transpose.*\(0, 0\)"),
    Case("broadcast_to_incompatible", jit(lambda a: graphc.broadcast_to(a, (4, 3)), X),
         ShapeError, r"broadcast_to.*\(3, 4\).*\(4, 3\)"),
    Case("concatenate_shapes",
         jit(lambda a, b: graphc.concatenate([a, b], axis=0), X, np.ones((2, 3))), ShapeError,
         r"concatenate.*\(3, 4\).*\(2, 3\)"),
    Case("concatenate_axis_out_of_range", jit(lambda a: graphc.concatenate([a, a], axis=2), X),
         ShapeError, r"concatenate.*axis 2"),
    Case("stack_shapes", jit(lambda a, b: graphc.stack([a, b]), V, np.ones(3)), ShapeError,
         r"stack.*\(3,\), \(4,\)"),
    Case("squeeze_non_unit", jit(lambda a: graphc.squeeze(a, 0), X), ShapeError,
         r"squeeze.*axis 0.*size 3"),
    Case("expand_dims_out_of_range", jit(lambda a: graphc.expand_dims(a, 4), X), ShapeError,
         r"expand_dims.*4"),
    Case("index_out_of_range", jit(lambda a: a[3], X), (ShapeError, IndexError),
         r"index 3.*size 3"),
    Case("index_too_many", jit(lambda a: a[0, 0, 0], X), (ShapeError, IndexError),
         r"(?i)too many indices"),
    Case("index_with_float_tracer", jit(lambda a, i: a[i], X, np.float64(1.0)), GraphcError,
         r"indices must be integers, got float64"),
    Case("index_with_tracer_out_of_range", jit(lambda a, i: a[i], X, np.int64(7)), GraphcError,
         r"index for axis 0 7 at position 0 is outside"),
    Case("index_with_float", jit(lambda a: a[1.0], X), (GraphcError, IndexError, TypeError),
         r"1\.0"),
    Case("softmax_axis_out_of_range", jit(lambda a: graphc.softmax(a, axis=5), X), ShapeError,
         r"softmax.*5"),
    Case("one_hot_float_labels", jit(lambda y: graphc.one_hot(y, 3), np.array([0.0, 1.0])),
         DTypeError, r"one_hot.*float64"),
    # ---- dtypes
    Case("float16_input", jit(lambda a, b: a * b, V, X.astype(np.float16)), DTypeError,
         r"<lambda>: input 1 of shape \(3, 4\): dtype float16 is not supported"),
    Case("complex_input", jit(lambda a: a * 2, X.astype(np.complex128)), DTypeError,
         r"input 0 of shape \(3, 4\): dtype complex128"),
    Case("object_input", jit(lambda a: a * 2, np.array([1, "a"], dtype=object)), DTypeError,
         r"input 0 of shape \(2,\): dtype object"),
    Case("string_input", jit(lambda a: a * 2, "abc"), GraphcError,
         r"input 0 of type str is not supported"),
    Case("int_where_float_needed", lambda: _same(graphc.compile(graphc.exp)(np.arange(3)),
                                                 np.exp(np.arange(3))), None),
    Case("bitwise_on_float", jit(lambda a: a & a, X), DTypeError, r"float64"),
    Case("grad_of_int_input", lambda: graphc.grad(lambda a: graphc.sum(a * 1.0))(np.arange(3)),
         (DTypeError, GraphcError), r"argument 0: differentiation needs float inputs, got int64"),
    # ---- transformations
    Case("grad_of_non_scalar", lambda: graphc.grad(lambda a: a * 2)(V), (GraphcError, TypeError),
         r"(?i)scalar.*\(4,\)"),
    Case("grad_argnums_out_of_range", lambda: graphc.grad(lambda a: a.sum(), argnums=2)(V),
         GraphcError, r"argnums.*2"),
    Case("grad_argnums_not_int", lambda: graphc.grad(lambda a: a.sum(), argnums="a")(V),
         GraphcError, r"grad: argnums must be an int or a tuple of ints, got 'a'"),
    Case("grad_argnums_duplicate", lambda: graphc.grad(lambda a: a.sum(), argnums=(0, -1))(V),
         GraphcError, r"argnums \(0, -1\) names an argument twice"),
    Case("pytree_of_another_structure", lambda: _pytree_mismatch(), GraphcError,
         r"(?i)structure|pytree"),
    Case("vjp_cotangent_shape", lambda: graphc.vjp(lambda a: a * 2, V)[1](np.ones(3)),
         (ShapeError, GraphcError), r"\(3,\).*\(4,\)|\(4,\).*\(3,\)"),
    # ---- zero-size dims
    Case("zero_size_sum_is_zero", _zero_size_sum, None),
    Case("zero_size_grad", _zero_size_grad, None),
    Case("max_over_empty_axis", jit(lambda a: a.max(axis=0), np.zeros((0, 3))),
         (GraphcError, ValueError), r"max.*(empty|zero-size).*\(0, 3\)"),
    Case("min_of_empty", jit(lambda a: graphc.min(a), np.zeros((0,))),
         (GraphcError, ValueError), r"min.*(empty|zero-size)"),
    # ---- layouts: must give correct results
    Case("non_contiguous_input", _layout(lambda: np.arange(24.0).reshape(3, 8)[:, ::2]), None),
    Case("fortran_order_input", _layout(lambda: np.asfortranarray(X)), None),
    Case("negative_stride_input", _layout(lambda: X[::-1, ::-1]), None),
    Case("read_only_input", _layout(_read_only), None),
    Case("big_endian_input", _layout(lambda: X.astype(">f8")), None),
    Case("big_endian_float32_input", _layout(lambda: X.astype(">f4")), None),
    Case("transposed_view_input", _layout(lambda: np.arange(12.0).reshape(4, 3).T), None),
    Case("huge_array_2_31_elements", _huge, None),
]

SLOW = {"huge_array_2_31_elements"}     # 2 GiB of input: GRAPHC_SLOW=1


def _pytree_mismatch():
    f = graphc.compile(lambda p: p["a"] * p["b"])
    f({"a": V, "b": V})
    return f({"a": V})


def run_case(case: Case) -> dict:
    try:
        case.fn()
    except Exception as exc:       # the table judges which exceptions are right
        return {"id": case.id, "raised": type(exc).__name__,
                "mro": [c.__name__ for c in type(exc).__mro__], "message": str(exc)}
    return {"id": case.id, "raised": None}


def main(ids: list[str]) -> None:
    by_id = {c.id: c for c in CASES}
    for i in ids:
        print(json.dumps({"start": i}), flush=True)
        print(json.dumps(run_case(by_id[i])), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
