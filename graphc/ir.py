"""The IR: immutable, interned nodes in SSA form, and graphs of them.

A Node is one primitive applied to earlier nodes, with its static shape and dtype. Nodes are
interned on (op, src, shape, dtype, arg), so building the same expression twice yields the same
object: common-subexpression elimination happens at construction.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .dtypes import DType
from .errors import GraphcError

if TYPE_CHECKING:
    from .ops import OpDef


@dataclass(frozen=True, eq=False, slots=True, weakref_slot=True)
class Node:
    op: OpDef
    src: tuple[Node, ...]
    shape: tuple[int, ...]
    dtype: DType
    arg: Hashable = None
    where: tuple | None = None    # the user's (file, line[, forward op]) that built it; not a key

    def __init__(self, op: OpDef, src: tuple[Node, ...], shape: tuple[int, ...], dtype: DType,
                 arg: Hashable = None, where: tuple | None = None):
        # the slots written directly: twice as fast as the frozen dataclass's generated
        # __init__ (object.__setattr__ per field), and tracing builds a node per op
        _set_op(self, op)
        _set_src(self, src)
        _set_shape(self, shape)
        _set_dtype(self, dtype)
        _set_arg(self, arg)
        _set_where(self, where)

    @property
    def size(self) -> int:
        shape = self.shape
        if len(shape) < 2:          # scalars and vectors (most nodes of large graphs)
            return shape[0] if shape else 1
        return prod(shape)

    def __repr__(self) -> str:
        return f"<Node {self.op.name} {self.dtype.short}{list(self.shape)}>"


_set_op, _set_src, _set_shape, _set_dtype, _set_arg, _set_where = (
    Node.__dict__[name].__set__ for name in ("op", "src", "shape", "dtype", "arg", "where"))


def prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class Literal:
    """A constant array keyed by its bytes, so 0.0 and -0.0 (or 1 and True) stay distinct."""

    __slots__ = ("value", "_key")

    def __init__(self, value: np.ndarray):
        value = np.array(value, order="C", copy=True)
        value.flags.writeable = False
        self.value = value
        self._key = (value.dtype.str, value.shape, value.tobytes())

    def __eq__(self, other) -> bool:
        return isinstance(other, Literal) and self._key == other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        v = self.value
        if v.size == 1:
            return repr(v.reshape(()).item())
        return f"array{list(v.shape)}"


# Nodes built while a trace runs are interned in that trace's plain dict (per thread, shared
# by nested transformations, dropped when the trace ends: fast, no locks). Nodes built outside
# any trace (eager calls) use a process-wide weak table.
_interned: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_intern_lock = threading.Lock()
_scope = threading.local()


class intern_scope:
    """Context manager: the outermost one on a thread opens a fresh intern table."""

    def __enter__(self):
        depth = getattr(_scope, "depth", 0)
        if depth == 0:
            _scope.table = {}
            _scope.scalars = {}
        _scope.depth = depth + 1

    def __exit__(self, *exc):
        _scope.depth -= 1
        if _scope.depth == 0:
            _scope.table = _scope.scalars = None


def scalar_memo() -> dict | None:
    """The running trace's memo of constants made from Python scalars (None outside a
    trace): W7-like functions meet the same few scalars thousands of times, and building a
    constant (an array, its bytes) costs more than the op that uses it."""
    return getattr(_scope, "scalars", None)


def make_node(op: OpDef, src: tuple[Node, ...], shape: tuple[int, ...], dtype: DType,
              arg: Hashable = None, where: tuple | None = None) -> Node:
    """The unique node for this (op, src, shape, dtype, arg). Args are ints, strings, tuples of
    them, or Literals (which key on their bytes), so equal keys mean equal nodes. A new node
    inside a trace records `where` (default: the user's line that is building it)."""
    key = (op, src, shape, dtype, arg)
    table = getattr(_scope, "table", None)
    if table is not None:
        node = table.get(key)
        if node is None:
            where = where or getattr(_scope, "where", None) or user_location()
            node = table[key] = Node(op, src, shape, dtype, arg, where)
        return node
    node = _interned.get(key)
    if node is None:
        with _intern_lock:
            node = _interned.get(key)
            if node is None:
                node = Node(op, src, shape, dtype, arg)
                _interned[key] = node
    return node


# ---- where in the user's code a node was traced ----

_PKG_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__)) + os.sep
_internal: dict = {}       # file name -> whether it is graphc's or numpy's own


def user_frame():
    """The innermost caller's frame outside graphc and numpy (None if there is none)."""
    f = sys._getframe(1)
    while f is not None:
        fname = f.f_code.co_filename
        internal = _internal.get(fname)
        if internal is None:
            internal = _internal[fname] = fname.startswith((_PKG_DIR, _NUMPY_DIR))
        if not internal:
            return f
        f = f.f_back
    return None


def user_location() -> tuple[str, int] | None:
    """(file, line) of the innermost caller outside graphc and numpy."""
    f = user_frame()
    return None if f is None else (f.f_code.co_filename, f.f_lineno)


def build_location(where: tuple | None) -> tuple | None:
    """Make `where` the source line of nodes built from now on (None: the caller's line);
    returns the previous setting, to restore."""
    previous = getattr(_scope, "where", None)
    _scope.where = where
    return previous


def keep_whole(on: bool) -> bool:
    """Whether the ops of ops/whole.py build one node each from now on (the reverse tape's
    trace) instead of their primitives; returns the previous setting, to restore."""
    previous = getattr(_scope, "whole", False)
    _scope.whole = on
    return previous


def keeping_whole() -> bool:
    return getattr(_scope, "whole", False)


class built_for:
    """Context manager: nodes built inside (e.g. by a derivative rule) are attributed to
    `node`'s source line, with its op's name as a third item (`(file, line, op)`: the NaN
    locator names the forward op whose derivative a backward node computes)."""

    def __init__(self, node: Node):
        self.where = None if node.where is None else (*node.where[:2], node.op.name)

    def __enter__(self):
        self.saved = getattr(_scope, "where", None)
        _scope.where = self.where or self.saved

    def __exit__(self, *exc):
        _scope.where = self.saved


def adopt(node: Node) -> Node:
    """Register an existing node in the current trace's intern table (passes rebuilding a
    graph keep its leaves and unchanged nodes); returns the table's node for that key."""
    table = getattr(_scope, "table", None)
    if table is None:
        return node
    return table.setdefault((node.op, node.src, node.shape, node.dtype, node.arg), node)


def toposort(outputs) -> list[Node]:
    """All ancestors of `outputs`, each after its sources (iterative: no recursion limit)."""
    order: list[Node] = []
    seen: set[Node] = set()         # nodes hash by identity: no id() per visit
    for root in outputs:
        if root in seen:
            continue
        stack = [(root, iter(root.src))]
        seen.add(root)
        while stack:
            node, it = stack[-1]
            for s in it:
                if s not in seen:
                    seen.add(s)
                    stack.append((s, iter(s.src)))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


class Graph:
    """Inputs and outputs of a traced function; the nodes between them in topological order.

    `aliases` holds pairs (k, j): output k is written into the memory of input j (an in-place
    update, e.g. of parameters and optimizer state), after every read of input j."""

    def __init__(self, inputs, outputs, name: str = "fn", aliases=(),
                 nodes: list[Node] | None = None):
        """`nodes`, if given, must be exactly the ancestors of `outputs` in a topological
        order (passes that already walked the graph pass it on instead of sorting again)."""
        self.inputs: tuple[Node, ...] = tuple(inputs)
        self.outputs: tuple[Node, ...] = tuple(outputs)
        self.name = name
        self.aliases: tuple[tuple[int, int], ...] = tuple(aliases)
        self._nodes: list[Node] | None = nodes
        if self.aliases:
            self._check_aliases()

    def _check_aliases(self) -> None:
        ins = [j for _, j in self.aliases]
        if len(set(ins)) != len(ins) or len({k for k, _ in self.aliases}) != len(ins):
            raise GraphcError(f"graph {self.name}: each input and output is aliased at most once")
        for k, j in self.aliases:
            o, i = self.outputs[k], self.inputs[j]
            if o.shape != i.shape or o.dtype is not i.dtype or not i.shape:
                raise GraphcError(f"graph {self.name}: output {k} ({_ty(o)}) cannot be written "
                                  f"in place into input {j} ({_ty(i)}): in-place outputs need "
                                  "the input's shape and dtype, and at least one dimension")

    @property
    def nodes(self) -> list[Node]:
        if self._nodes is None:
            self._nodes = toposort(self.outputs)
        return self._nodes

    def numbering(self) -> dict[int, int]:
        """Stable names: inputs first (in order), then the rest in topological order."""
        names: dict[int, int] = {}
        for n in self.inputs:
            names.setdefault(id(n), len(names))
        for n in self.nodes:
            names.setdefault(id(n), len(names))
        return names

    def labels(self) -> dict[int, str]:
        """How each node is shown: inputs by their argument name and pytree path (`x`,
        `params['w1']`) where those are unique, the rest as %k in topological order."""
        names = self.numbering()
        given = [n.arg[1] if isinstance(n.arg, tuple) else "" for n in self.inputs]
        unique = len(set(given)) == len(given) and all(given)
        out = {i: f"%{k}" for i, k in names.items()}
        if unique:
            out.update({id(n): g for n, g in zip(self.inputs, given)})
        return out

    def __str__(self) -> str:
        shown = self.labels()
        lines = [f"graph {self.name}(" + ", ".join(
            f"{shown[id(n)]}: {_ty(n)}" for n in self.inputs) + ")"]
        for n in self.nodes:
            if n.op.name == "input":
                continue
            args = " ".join(shown[id(s)] for s in n.src)
            attr = "" if n.arg is None else f"[{_fmt_arg(n)}]"
            text = f"  {shown[id(n)]} = {n.op.name}{attr} {args}".rstrip() + f" : {_ty(n)}"
            if n.where is not None:
                text = f"{text:<60}  # {where_text(n.where)}"
            lines.append(text)
        lines.append("  return " + ", ".join(shown[id(n)] for n in self.outputs))
        lines += [f"  alias out{k} -> {shown[id(self.inputs[j])]}" for k, j in self.aliases]
        return "\n".join(lines)

    def __len__(self) -> int:
        return len(self.nodes)

    def structure_key(self) -> tuple:
        """A hashable key equal for two graphs exactly when they compute the same thing:
        inputs by position, nodes by (op, sources, shape, dtype, arg), constants by value."""
        names = {id(n): k for k, n in enumerate(self.inputs)}
        items = [tuple((n.shape, n.dtype.name) for n in self.inputs)]
        for n in self.nodes:
            if id(n) not in names:
                names[id(n)] = len(names)
                items.append((n.op.name, tuple(names[id(s)] for s in n.src), n.shape,
                              n.dtype.name, n.arg))
        items.append(tuple(names[id(n)] for n in self.outputs))
        return tuple(items)

    def to_dot(self) -> str:
        """Graphviz DOT text: one box per node, edges from sources to users."""
        names = self.numbering()
        out = ["digraph graphc {", "  rankdir=TB;", '  node [shape=box, fontname="monospace"];']
        for n in self.nodes:
            i = names[id(n)]
            attr = "" if n.arg is None else f"[{_fmt_arg(n)}]"
            label = f"%{i} {n.op.name}{attr}\\n{_ty(n)}".replace('"', "'")
            style = ", style=filled, fillcolor=lightblue" if n.op.name == "input" else ""
            out.append(f'  n{i} [label="{label}"{style}];')
            out.extend(f"  n{names[id(s)]} -> n{i};" for s in n.src)
        for k, n in enumerate(self.outputs):
            out.append(f'  out{k} [label="out {k}", shape=ellipse];')
            out.append(f"  n{names[id(n)]} -> out{k};")
        out.append("}")
        return "\n".join(out)

    def verify(self, full: bool | None = None) -> None:
        """Check the invariants every pass must keep; raise GraphcError naming the node.
        Leaked inputs are always checked; shapes and dtypes are re-inferred when `full` (by
        default when GRAPHC_VERIFY=1, as in the test suite)."""
        if full is None:
            full = os.environ.get("GRAPHC_VERIFY") == "1"
        inputs = {id(n) for n in self.inputs}
        for n in self.nodes:
            if n.op.name == "input" and id(n) not in inputs:
                raise GraphcError(
                    f"graph {self.name} uses a traced value that is not one of its inputs "
                    "(a tracer leaked out of another transformation, e.g. stored in a global)")
            if not full:
                continue
            if n.op.name == "const" and n.arg.value.shape not in ((), n.shape):
                raise GraphcError(f"IR verify: constant {n} holds a {n.arg.value.shape} value")
            shape, dtype = n.op.infer(n.src, n.arg) if n.src else (n.shape, n.dtype)
            if shape != n.shape or dtype is not n.dtype:
                raise GraphcError(f"IR verify: {n} should be {dtype}{list(shape)}")


def where_text(where: tuple) -> str:
    """`file.py:12` (the file's base name: enough to find it, short enough to read)."""
    return f"{os.path.basename(where[0])}:{where[1]}"


def _ty(n: Node) -> str:
    return f"{n.dtype.short}[{','.join(map(str, n.shape))}]"


def _fmt_arg(n: Node) -> str:
    a = n.arg
    if isinstance(a, Literal):
        return repr(a)
    if n.op.name == "input":
        return str(a[1]) if isinstance(a, tuple) else str(a)
    return str(a).replace(" ", "")
