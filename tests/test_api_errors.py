"""The errors of API.md: GraphcError and its subclasses, raised on purpose with clear messages."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import first_line_matching, mentions_any, shape_mentioned

import graphc

# --------------------------------------------------------------------------------------------
# the hierarchy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,bases", [
    ("TracerError", (TypeError,)),
    ("ShapeError", (ValueError,)),
    ("DTypeError", (TypeError,)),
    ("CompileError", ()),
])
def test_error_hierarchy(name, bases):
    cls = getattr(graphc, name)
    assert issubclass(cls, graphc.GraphcError)
    assert issubclass(graphc.GraphcError, Exception)
    for b in bases:
        assert issubclass(cls, b)


# --------------------------------------------------------------------------------------------
# TracerError: Python control flow / conversions on traced values
# --------------------------------------------------------------------------------------------


def branch_on_tracer(x):
    if x > 0:  # TRACER-LINE
        return x * 2.0
    return -x


def float_of_tracer(x):
    y = x * 3.0
    return x + float(y)  # TRACER-LINE


def int_of_tracer(x):
    n = int(x)  # TRACER-LINE
    return x * n


def item_of_tracer(x):
    v = (x * x).item()  # TRACER-LINE
    return x + v


def bool_of_tracer(x):
    flag = bool(x < 1.0)  # TRACER-LINE
    return x if flag else -x


def while_on_tracer(x):
    while x < 10.0:  # TRACER-LINE
        x = x * 2.0
    return x


def and_on_tracer(x):
    return (x > 0.0) and (x < 2.0) and x  # TRACER-LINE


def asarray_of_tracer(x):
    a = np.asarray(x)  # TRACER-LINE
    return x + a


TRACER_CASES = [branch_on_tracer, float_of_tracer, int_of_tracer, item_of_tracer, bool_of_tracer,
                while_on_tracer, and_on_tracer, asarray_of_tracer]


def _check_tracer_message(err, fn):
    msg = str(err)
    assert fn.__name__ in msg, msg  # names the function
    line = first_line_matching(fn, r"TRACER-LINE")
    src = open(fn.__code__.co_filename).read().splitlines()[line - 1]
    code = src.split("#")[0].strip()
    # names the line: by number (with or without the file), or by its source text
    assert str(line) in msg or code in msg, msg
    # and the fix
    assert mentions_any(msg, ["graphc.where", "where(", "static"]), msg


_SCALAR = np.array(1.5)


@pytest.mark.parametrize("fn", TRACER_CASES, ids=lambda f: f.__name__)
def test_tracer_error_inside_compile(fn):
    with pytest.raises(graphc.TracerError) as ei:
        graphc.compile(fn)(_SCALAR)
    assert isinstance(ei.value, TypeError)
    assert isinstance(ei.value, graphc.GraphcError)
    _check_tracer_message(ei.value, fn)


@pytest.mark.parametrize("fn", TRACER_CASES, ids=lambda f: f.__name__)
def test_tracer_error_inside_grad(fn):
    with pytest.raises(graphc.TracerError) as ei:
        graphc.grad(fn)(_SCALAR)
    _check_tracer_message(ei.value, fn)


@pytest.mark.parametrize("fn", [branch_on_tracer, float_of_tracer, item_of_tracer],
                         ids=lambda f: f.__name__)
def test_tracer_error_with_python_float_input(fn):
    with pytest.raises(graphc.TracerError):
        graphc.compile(fn)(1.5)


@pytest.mark.parametrize("transform", [
    lambda f, x: graphc.value_and_grad(f)(x),
    lambda f, x: graphc.jacobian(f)(x),
    lambda f, x: graphc.hessian(f)(x),
    lambda f, x: graphc.vjp(f, x),
    lambda f, x: graphc.jvp(f, (x,), (x,)),
    lambda f, x: graphc.trace(f, x),
], ids=["value_and_grad", "jacobian", "hessian", "vjp", "jvp", "trace"])
def test_tracer_error_inside_other_transforms(transform):
    with pytest.raises(graphc.TracerError) as ei:
        transform(branch_on_tracer, _SCALAR)
    _check_tracer_message(ei.value, branch_on_tracer)


def test_tracer_error_in_array_branch():
    def branch_on_reduced_sum(x):
        if graphc.sum(x) > 0:  # TRACER-LINE
            return x
        return -x

    with pytest.raises(graphc.TracerError) as ei:
        graphc.compile(branch_on_reduced_sum)(np.array([1.0, -2.0, 3.0]))
    _check_tracer_message(ei.value, branch_on_reduced_sum)


def test_tracer_error_names_the_file_of_the_function_traced(tmp_path):
    """The same function at the same line of two files has equal code objects: each error
    (messages are cached by where they were raised) names its own file."""
    for name in ("first.py", "second.py"):
        path = tmp_path / name
        path.write_text("def f(x):\n    if x > 0:\n        return x\n    return -x\n")
        namespace: dict = {}
        exec(compile(path.read_text(), str(path), "exec"), namespace)
        with pytest.raises(graphc.TracerError) as ei:
            graphc.compile(namespace["f"])(_SCALAR)
        assert f"at {path}:2 in f\n    if x > 0:" in str(ei.value)


def test_tracer_error_is_catchable_as_type_error():
    with pytest.raises(TypeError):
        graphc.compile(float_of_tracer)(_SCALAR)


def test_graphc_where_is_the_fix():
    # the fix the message names works: same function with graphc.where
    f = graphc.compile(lambda x: graphc.where(x > 0, x * 2.0, -x))
    np.testing.assert_array_equal(f(np.array([1.5, -2.0])), [3.0, 2.0])


def test_static_python_values_are_fine():
    # Python control flow on static things (shapes, Python numbers) is not an error
    def f(x, n=3):
        for _ in range(n):
            x = x * 2.0
        if x.ndim == 2 and x.shape[1] > 1:
            x = x.sum(axis=1)
        return x

    np.testing.assert_array_equal(graphc.compile(f)(np.ones((2, 3))), [24.0, 24.0])


# --------------------------------------------------------------------------------------------
# ShapeError
# --------------------------------------------------------------------------------------------


def _shape_err(fn, *args):
    with pytest.raises(graphc.ShapeError) as ei:
        graphc.compile(fn)(*args)
    assert isinstance(ei.value, ValueError)
    assert isinstance(ei.value, graphc.GraphcError)
    return str(ei.value)


SHAPE_CASES = [
    ("add_3_4", lambda a, b: graphc.add(a, b), ((3,), (4,)), ["add", "+"]),
    ("add_operator_2x3_3x2", lambda a, b: a + b, ((2, 3), (3, 2)), ["add", "+"]),
    ("multiply_2x3_4", lambda a, b: a * b, ((2, 3), (4,)), ["mul", "*"]),
    ("subtract_5_2", lambda a, b: graphc.subtract(a, b), ((5,), (2,)), ["sub", "-"]),
    ("maximum_3_4", lambda a, b: graphc.maximum(a, b), ((3,), (4,)), ["maximum"]),
    ("where_mismatch", lambda a, b: graphc.where(a > 0, a, b), ((3,), (4,)), ["where"]),
    ("matmul_2x3_4x5", lambda a, b: graphc.matmul(a, b), ((2, 3), (4, 5)), ["matmul", "@"]),
    ("matmul_operator_2x3_4x5", lambda a, b: a @ b, ((2, 3), (4, 5)), ["matmul", "@"]),
    ("matmul_batched_mismatch", lambda a, b: a @ b, ((2, 3, 4), (3, 4, 5)), ["matmul", "@"]),
    ("dot_3_4", lambda a, b: graphc.dot(a, b), ((3,), (4,)), ["dot"]),
    ("concatenate_2x3_2x4_axis0", lambda a, b: graphc.concatenate([a, b], axis=0),
     ((2, 3), (2, 4)), ["concatenate"]),
    ("stack_3_4", lambda a, b: graphc.stack([a, b]), ((3,), (4,)), ["stack"]),
]


@pytest.mark.parametrize("name,fn,shapes,opnames", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
def test_shape_error_names_op_and_both_shapes(name, fn, shapes, opnames):
    msg = _shape_err(fn, *(np.ones(s) for s in shapes))
    assert mentions_any(msg, opnames), msg
    for s in shapes:
        assert shape_mentioned(msg, s), (s, msg)


def test_shape_error_reshape_wrong_size():
    msg = _shape_err(lambda x: graphc.reshape(x, (4, 2)), np.ones((2, 3)))
    assert "reshape" in msg.lower()
    assert shape_mentioned(msg, (2, 3)) and shape_mentioned(msg, (4, 2)), msg


def test_shape_error_reshape_method_wrong_size():
    msg = _shape_err(lambda x: x.reshape(5), np.ones((2, 3)))
    assert "reshape" in msg.lower()
    assert shape_mentioned(msg, (2, 3)), msg


def test_shape_error_broadcast_to_incompatible():
    msg = _shape_err(lambda x: graphc.broadcast_to(x, (2, 4)), np.ones(3))
    assert "broadcast" in msg.lower()
    assert shape_mentioned(msg, (3,)) and shape_mentioned(msg, (2, 4)), msg


BAD_AXIS = [
    ("sum_axis_2_of_2d", lambda x: graphc.sum(x, axis=2)),
    ("sum_axis_minus_3_of_2d", lambda x: graphc.sum(x, axis=-3)),
    ("mean_axis_tuple_out_of_range", lambda x: graphc.mean(x, axis=(0, 5))),
    ("max_axis_2", lambda x: graphc.max(x, axis=2)),
    ("softmax_axis_3", lambda x: graphc.softmax(x, axis=3)),
    ("logsumexp_axis_2", lambda x: graphc.logsumexp(x, axis=2)),
    ("concatenate_axis_2", lambda x: graphc.concatenate([x, x], axis=2)),
    ("expand_dims_axis_4", lambda x: graphc.expand_dims(x, 4)),
    ("squeeze_non_unit_axis", lambda x: graphc.squeeze(x, 0)),
    ("transpose_bad_axes", lambda x: graphc.transpose(x, (0, 2))),
]


@pytest.mark.parametrize("name,fn", BAD_AXIS, ids=[c[0] for c in BAD_AXIS])
def test_shape_error_bad_axis(name, fn):
    _shape_err(fn, np.ones((2, 3)))


def test_shape_error_inside_grad():
    with pytest.raises(graphc.ShapeError):
        graphc.grad(lambda a, b: graphc.sum(a + b))(np.ones(3), np.ones(4))


def test_out_of_range_static_index_raises():
    # never silently wrong numbers: an out-of-range static index is refused
    with pytest.raises((graphc.GraphcError, IndexError)):
        graphc.compile(lambda x: x[5])(np.ones(3))


# --------------------------------------------------------------------------------------------
# DTypeError
# --------------------------------------------------------------------------------------------


BAD_DTYPES = [
    ("float16", np.ones(3, dtype=np.float16)),
    ("complex128", np.ones(3, dtype=np.complex128)),
    ("complex64", np.ones(3, dtype=np.complex64)),
    ("object", np.array([1.0, 2.0, 3.0], dtype=object)),
    ("str", np.array(["a", "b", "c"])),
    ("bytes", np.array([b"a", b"b", b"c"])),
]


@pytest.mark.parametrize("name,arr", BAD_DTYPES, ids=[c[0] for c in BAD_DTYPES])
def test_dtype_error_for_unsupported_input(name, arr):
    with pytest.raises(graphc.DTypeError) as ei:
        graphc.compile(lambda x: x * 2.0)(arr)
    assert isinstance(ei.value, TypeError)
    assert isinstance(ei.value, graphc.GraphcError)


@pytest.mark.parametrize("name,arr", BAD_DTYPES[:3], ids=[c[0] for c in BAD_DTYPES[:3]])
def test_dtype_error_names_the_dtype(name, arr):
    with pytest.raises(graphc.DTypeError) as ei:
        graphc.compile(lambda x: graphc.exp(x))(arr)
    assert str(arr.dtype) in str(ei.value)


@pytest.mark.parametrize("name,arr", BAD_DTYPES[:4], ids=[c[0] for c in BAD_DTYPES[:4]])
def test_dtype_error_inside_grad(name, arr):
    with pytest.raises(graphc.DTypeError):
        graphc.grad(lambda x: graphc.sum(x * x))(arr)


def test_dtype_error_in_pytree_leaf():
    with pytest.raises(graphc.DTypeError):
        graphc.compile(lambda p: p["a"] + p["b"])({"a": np.ones(2), "b": np.ones(2, np.float16)})


# --------------------------------------------------------------------------------------------
# misuse of the transformations
# --------------------------------------------------------------------------------------------


def test_grad_of_non_scalar_output_is_graphc_error():
    with pytest.raises(graphc.GraphcError):
        graphc.grad(lambda x: x * 2.0)(np.ones(3))


def test_grad_of_matrix_output_is_graphc_error():
    with pytest.raises(graphc.GraphcError):
        graphc.grad(lambda x: graphc.outer(x, x))(np.ones(3))


def test_value_and_grad_of_non_scalar_output_is_graphc_error():
    with pytest.raises(graphc.GraphcError):
        graphc.value_and_grad(lambda x: graphc.exp(x))(np.ones(2))


def test_hessian_of_non_scalar_output_is_graphc_error():
    with pytest.raises(graphc.GraphcError):
        graphc.hessian(lambda x: x * x)(np.ones(2))


@pytest.mark.parametrize("argnums", [1, 2, (0, 1), (0, 3)])
def test_grad_argnums_out_of_range_is_graphc_error(argnums):
    with pytest.raises(graphc.GraphcError):
        graphc.grad(lambda x: graphc.sum(x * x), argnums=argnums)(np.ones(3))


def test_value_and_grad_argnums_out_of_range_is_graphc_error():
    with pytest.raises(graphc.GraphcError):
        graphc.value_and_grad(lambda x, y: graphc.sum(x * y), argnums=2)(np.ones(3), np.ones(3))


def test_jacobian_argnums_out_of_range_is_graphc_error():
    with pytest.raises(graphc.GraphcError):
        graphc.jacobian(lambda x: x * 2.0, argnums=1)(np.ones(3))


def test_errors_do_not_poison_the_cache():
    # after a ShapeError, the same compiled function still works for a good signature
    f = graphc.compile(lambda a, b: a + b)
    with pytest.raises(graphc.ShapeError):
        f(np.ones(3), np.ones(4))
    np.testing.assert_array_equal(f(np.ones(3), np.ones(3)), [2.0, 2.0, 2.0])
    with pytest.raises(graphc.ShapeError):
        f(np.ones(3), np.ones(4))



def test_tracer_error_is_raised_again_on_a_later_call():
    # a failed trace is not cached as a success
    g = graphc.compile(branch_on_tracer)
    for _ in range(2):
        with pytest.raises(graphc.TracerError):
            g(_SCALAR)
