"""The IR: immutable, interned nodes in SSA form, and graphs of them.

A Node is one primitive applied to earlier nodes, with its static shape and dtype. Nodes are
interned on (op, src, shape, dtype, arg), so building the same expression twice yields the same
object: common-subexpression elimination happens at construction.
"""

from __future__ import annotations

import os
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

    @property
    def size(self) -> int:
        return prod(self.shape)

    def __repr__(self) -> str:
        return f"<Node {self.op.name} {self.dtype.short}{list(self.shape)}>"


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
        _scope.depth = depth + 1

    def __exit__(self, *exc):
        _scope.depth -= 1
        if _scope.depth == 0:
            _scope.table = None


def make_node(op: OpDef, src: tuple[Node, ...], shape: tuple[int, ...], dtype: DType,
              arg: Hashable = None) -> Node:
    """The unique node for this (op, src, shape, dtype, arg). Args are ints, strings, tuples of
    them, or Literals (which key on their bytes), so equal keys mean equal nodes."""
    key = (op, src, shape, dtype, arg)
    table = getattr(_scope, "table", None)
    if table is not None:
        node = table.get(key)
        if node is None:
            node = table[key] = Node(op, src, shape, dtype, arg)
        return node
    node = _interned.get(key)
    if node is None:
        with _intern_lock:
            node = _interned.get(key)
            if node is None:
                node = Node(op, src, shape, dtype, arg)
                _interned[key] = node
    return node


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
    seen: set[int] = set()
    for root in outputs:
        if id(root) in seen:
            continue
        stack = [(root, iter(root.src))]
        seen.add(id(root))
        while stack:
            node, it = stack[-1]
            for s in it:
                if id(s) not in seen:
                    seen.add(id(s))
                    stack.append((s, iter(s.src)))
                    break
            else:
                stack.pop()
                order.append(node)
    return order


class Graph:
    """Inputs and outputs of a traced function; the nodes between them in topological order."""

    def __init__(self, inputs, outputs, name: str = "fn", nodes: list[Node] | None = None):
        """`nodes`, if given, must be exactly the ancestors of `outputs` in a topological
        order (passes that already walked the graph pass it on instead of sorting again)."""
        self.inputs: tuple[Node, ...] = tuple(inputs)
        self.outputs: tuple[Node, ...] = tuple(outputs)
        self.name = name
        self._nodes: list[Node] | None = nodes

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

    def __str__(self) -> str:
        names = self.numbering()
        lines = [f"graph {self.name}(" + ", ".join(
            f"%{names[id(n)]}: {_ty(n)}" for n in self.inputs) + ")"]
        for n in self.nodes:
            if n.op.name == "input":
                continue
            args = " ".join(f"%{names[id(s)]}" for s in n.src)
            attr = "" if n.arg is None else f"[{_fmt_arg(n)}]"
            lines.append(f"  %{names[id(n)]} = {n.op.name}{attr} {args}".rstrip()
                         + f" : {_ty(n)}")
        lines.append("  return " + ", ".join(f"%{names[id(n)]}" for n in self.outputs))
        return "\n".join(lines)

    def __len__(self) -> int:
        return len(self.nodes)

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


def _ty(n: Node) -> str:
    return f"{n.dtype.short}[{','.join(map(str, n.shape))}]"


def _fmt_arg(n: Node) -> str:
    a = n.arg
    if isinstance(a, Literal):
        return repr(a)
    if n.op.name == "input":
        return str(a[1]) if isinstance(a, tuple) else str(a)
    return str(a).replace(" ", "")
