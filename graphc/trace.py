"""Tracing: Tracer values that record graphc ops, and TracerError messages that point home."""

from __future__ import annotations

import itertools
import linecache
import math
import threading
from collections.abc import Callable

import numpy as np

from . import dtypes
from .errors import GraphcError, TracerError
from .ir import Graph, Literal, Node, intern_scope, make_node, scalar_memo, user_frame
from .ops import SOURCE, defop

_uids = itertools.count()
_local = threading.local()


def _infer_source(src, arg):
    raise GraphcError("source nodes are built by trace.new_input / trace.constant")


INPUT = defop("input", SOURCE, infer=_infer_source, numpy=None)
CONST = defop("const", SOURCE, infer=_infer_source, numpy=None)


def new_input(shape, dtype: dtypes.DType, label: str = "") -> Node:
    """A fresh input (placeholder) node; never equal to any other."""
    return make_node(INPUT, (), tuple(shape), dtype, (next(_uids), label))


def constant(value, dtype: dtypes.DType | None = None, shape=None) -> Node:
    """A constant node; with `shape`, a single value splatted to that shape (no buffer)."""
    arr = np.asarray(value)
    dt = dtype or dtypes.from_numpy(arr.dtype, "constant")
    arr = arr.astype(dt.np, copy=False)
    if shape is not None:
        arr = arr.reshape(())
    return make_node(CONST, (), arr.shape if shape is None else tuple(shape), dt, Literal(arr))


def scalar_constant(value: float | int, dtype: dtypes.DType, shape: tuple[int, ...]) -> Node:
    """constant(value, dtype, shape) of a Python float or int, memoised for the running trace
    (keyed by the value's type and sign too: 0 and 0.0 and -0.0 are distinct)."""
    memo = scalar_memo()
    if memo is None:
        return constant(value, dtype, shape)
    key = (type(value), value, math.copysign(1.0, value), dtype, shape)
    node = memo.get(key)
    if node is None:
        node = memo[key] = constant(value, dtype, shape)
    return node


def splat_value(node: Node):
    """The single value of a constant whose elements are all equal (else None)."""
    if node.op is CONST and node.arg.value.size == 1:
        return node.arg.value.reshape(())
    return None


class Tracer:
    """A symbolic array: each operation on it records a node instead of computing."""

    __slots__ = ("node", "weak")
    __array_priority__ = 1000   # numpy defers `ndarray (op) Tracer` to our reflected operators
    __hash__ = None             # like numpy arrays: == builds a mask, so no hashing

    def __init__(self, node: Node, weak: bool = False):
        self.node = node
        self.weak = weak

    # ---- static metadata ----
    @property
    def shape(self) -> tuple[int, ...]:
        return self.node.shape

    @property
    def dtype(self) -> np.dtype:
        return self.node.dtype.np

    @property
    def ndim(self) -> int:
        return len(self.node.shape)

    @property
    def size(self) -> int:
        return self.node.size

    @property
    def T(self) -> Tracer:
        return F.transpose(self)

    def __repr__(self) -> str:
        return f"Tracer<{self.node.dtype.short}{list(self.shape)}>"

    # ---- arithmetic ----
    def __add__(self, o): return F.add(self, o)
    def __radd__(self, o): return F.add(o, self)
    def __sub__(self, o): return F.subtract(self, o)
    def __rsub__(self, o): return F.subtract(o, self)
    def __mul__(self, o): return F.multiply(self, o)
    def __rmul__(self, o): return F.multiply(o, self)
    def __truediv__(self, o): return F.divide(self, o)
    def __rtruediv__(self, o): return F.divide(o, self)
    def __pow__(self, o): return F.power(self, o)
    def __rpow__(self, o): return F.power(o, self)
    def __matmul__(self, o): return F.matmul(self, o)
    def __rmatmul__(self, o): return F.matmul(o, self)
    def __neg__(self): return F.negative(self)
    def __pos__(self): return F.positive(self)
    def __abs__(self): return F.abs(self)
    def __lt__(self, o): return F.less(self, o)
    def __le__(self, o): return F.less_equal(self, o)
    def __gt__(self, o): return F.greater(self, o)
    def __ge__(self, o): return F.greater_equal(self, o)
    def __eq__(self, o): return F.equal(self, o)
    def __ne__(self, o): return F.not_equal(self, o)
    def __and__(self, o): return F.bitwise_and(self, o)
    def __rand__(self, o): return F.bitwise_and(o, self)
    def __or__(self, o): return F.bitwise_or(self, o)
    def __ror__(self, o): return F.bitwise_or(o, self)
    def __xor__(self, o): return F.bitwise_xor(self, o)
    def __rxor__(self, o): return F.bitwise_xor(o, self)
    def __invert__(self): return F.invert(self)
    def __getitem__(self, idx): return F.getitem(self, idx)

    def __iter__(self):
        if not self.shape:
            raise TracerError(_message("iteration over a 0-d traced value", "index it statically"))
        return (self[i] for i in range(self.shape[0]))

    # ---- methods ----
    def sum(self, axis=None, keepdims=False): return F.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return F.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return F.max(self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return F.min(self, axis, keepdims)
    def cumsum(self, axis=None, dtype=None): return F.cumsum(self, axis, dtype)
    def reshape(self, *shape): return F.reshape(self, shape[0] if len(shape) == 1 else shape)
    def transpose(self, *axes): return F.transpose(self, axes[0] if len(axes) == 1 else
                                                   (axes or None))
    def astype(self, dtype): return F.astype(self, dtype)
    def squeeze(self, axis=None): return F.squeeze(self, axis)
    def clip(self, lo=None, hi=None): return F.clip(self, lo, hi)
    def dot(self, o): return F.dot(self, o)
    def exp(self): return F.exp(self)
    def log(self): return F.log(self)
    def sqrt(self): return F.sqrt(self)
    def sin(self): return F.sin(self)
    def cos(self): return F.cos(self)
    def tanh(self): return F.tanh(self)
    def sigmoid(self): return F.sigmoid(self)
    def relu(self): return F.relu(self)
    def square(self): return F.square(self)
    def log1p(self): return F.log1p(self)
    def expm1(self): return F.expm1(self)
    def flatten(self): return F.reshape(self, (-1,))
    def ravel(self): return F.reshape(self, (-1,))

    # ---- what cannot be traced ----
    def __bool__(self):
        raise TracerError(_message("bool() of a traced value (e.g. `if x > 0:`)",
                                   "use graphc.where(cond, a, b) to select values"))

    def __float__(self):
        raise TracerError(_message("float() of a traced value", "return it as an output"))

    def __int__(self):
        raise TracerError(_message("int() of a traced value", "make the argument static"))

    def __index__(self):
        raise TracerError(_message("a traced value used as a Python index",
                                   "use static ints/slices, or graphc.one_hot / graphc.where"))

    def __len__(self):
        raise TracerError(_message("len() of a traced value", "use x.shape[0], which is static"))

    def item(self):
        raise TracerError(_message("x.item() on a traced value", "return it as an output"))

    def tolist(self):
        raise TracerError(_message("x.tolist() on a traced value", "return it as an output"))

    def __array__(self, dtype=None, copy=None):
        raise TracerError(_message("np.asarray() of a traced value (numpy cannot see "
                                   "inside a trace)", "compute it with graphc's ops "
                                   "(graphc.exp, graphc.sum, ...) instead of numpy's"))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        fn = F.UFUNCS.get(ufunc.__name__) if method == "__call__" and not kwargs else None
        if fn is None:
            what = (f"numpy ufunc {ufunc.__name__}" if method == "__call__"
                    else f"numpy ufunc method {ufunc.__name__}.{method}")
            raise TracerError(_message(f"{what} on a traced value" + (
                f" with {sorted(kwargs)}" if kwargs else ""), _graphc_equivalent(
                    ufunc.__name__ if method == "__call__" else None)))
        return fn(*inputs)

    def __array_function__(self, func, types, args, kwargs):
        fn = F.ARRAY_FUNCTIONS.get(func.__name__) if func.__module__ == "numpy" else None
        if fn is None:
            name = f"{func.__module__.replace('numpy', 'np')}.{func.__name__}"
            raise TracerError(_message(f"{name} on a traced value", _graphc_equivalent(
                func.__name__ if func.__module__ == "numpy" else None)))
        try:
            return fn(*args, **kwargs)
        except TypeError as e:
            if "keyword argument" not in str(e):
                raise
            raise TracerError(_message(f"np.{func.__name__} with keywords {sorted(kwargs)} on a "
                                       f"traced value ({e})", f"call graphc.{func.__name__} "
                                       "with the arguments it takes")) from None


def _graphc_equivalent(name: str | None) -> str:
    """The fix to suggest for a numpy call graphc cannot trace: a graphc op only if one
    exists by that name."""
    if name is not None and name in F.__all__:
        return f"use graphc.{name} (numpy's version cannot see inside a trace)"
    return ("graphc has no op for this yet; express it with graphc's ops (see docs/API.md), "
            "or compute it outside the traced function and pass the result in")


# Anything a graphc op accepts as an array: a traced value, a numpy array, a Python scalar.
ArrayLike = Tracer | np.ndarray | np.generic | float | int | bool
Axis = int | tuple[int, ...] | None


def to_tracer(x, what: str = "value") -> Tracer:
    """A Tracer for a traced value, Python scalar (weakly typed) or numpy array (a constant)."""
    if isinstance(x, Tracer):
        return x
    if isinstance(x, (bool, int, float)) and not isinstance(x, np.generic):
        return Tracer(constant(x, dtypes.python_scalar_dtype(x)), weak=True)
    if isinstance(x, (np.ndarray, np.generic, list, tuple)):
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as e:
            raise GraphcError(f"{what}: cannot convert {type(x).__name__} to an array: "
                              f"{e}") from None
        if arr.dtype == object:
            raise GraphcError(f"{what}: cannot convert {type(x).__name__} to an array")
        return Tracer(constant(arr, dtypes.from_numpy(arr.dtype, what)))
    raise GraphcError(f"{what}: graphc cannot use a {type(x).__name__} as an array")


def in_trace(tree) -> bool:
    """Whether a call with these arguments must build nodes rather than compute: a trace is
    running on this thread, or some leaf is a traced value."""
    if _stack():
        return True
    from . import pytree
    return any(isinstance(x, Tracer) for x in pytree.flatten(tree)[0])


def tracing_now() -> bool:
    """Whether a trace is running on this thread."""
    return bool(_stack())


# ---- which user function is being traced (for messages) ----

def _stack() -> list:
    st = getattr(_local, "stack", None)
    if st is None:
        st = _local.stack = []
    return st


class tracing:
    """Context manager marking that `fn` is being traced on this thread."""

    def __init__(self, fn: Callable):
        self.name = getattr(fn, "__qualname__", None) or repr(fn)
        self._scope = intern_scope()

    def __enter__(self):
        self._scope.__enter__()
        _stack().append(self.name)

    def __exit__(self, *exc):
        _stack().pop()
        self._scope.__exit__(*exc)


# Messages by where they were raised: list.extend(tracer) asks len() and drops the error,
# once per call at the same line (W7: per softmax); composing one costs more than the op.
# Bounded (cleared past _MESSAGES_MAX). The key names the file as well as the code object:
# code objects compare by content, and two files can hold the same function at one line.
_messages: dict = {}
_MESSAGES_MAX = 1024


def _message(what: str, fix: str) -> str:
    frame = user_frame()    # cheap: the walk caches per code object
    st = _stack()
    code = frame and frame.f_code
    key = (what, fix, st[-1] if st else None, code, code and code.co_filename,
           frame and frame.f_lineno)
    text = _messages.get(key)
    if text is None:
        if len(_messages) >= _MESSAGES_MAX:
            _messages.clear()
        text = _messages[key] = _compose(what, fix, st, frame)
    return text


def _compose(what: str, fix: str, st: list, frame) -> str:
    where = f" while tracing {st[-1]!s}" if st else ""
    loc = ""
    if frame is not None:
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
        loc = (f"\n  at {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
               + (f"\n    {line}" if line else ""))
    return (f"{what}{where}: the value is symbolic while graphc traces the function, so Python "
            f"cannot branch on it or convert it.{loc}\n  Fix: {fix}; or pass the value as a "
            "static argument (graphc.compile(fn, static_argnums=...)).")


def trace(fn: Callable, *args, static_argnums=()) -> Graph:
    """The Graph of `fn` at these example arguments (shapes and dtypes; values are ignored)."""
    from .capture import trace_to_graph
    graph, _ = trace_to_graph(fn, args, static_argnums)
    return graph


# The public op namespace (graphc.ops.api) that Tracer's operators and numpy's dispatch
# resolve to. That namespace is a later stage (it holds ops built on autodiff, such as
# norm's custom derivative), so it binds itself here when it loads (graphc/__init__ loads
# it before any trace can run) rather than being imported from here.
F = None


def bind_operators(namespace) -> None:
    global F
    F = namespace
