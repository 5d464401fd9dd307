"""The optimization pipeline: Graph -> Graph passes, each logged for explain().

A pass is a module with a `run(graph) -> Graph` function and a docstring. Rule-based passes use
`rewrite`: rules indexed by op name, applied bottom-up (every node after its sources) in one
iterative sweep, each node rewritten until no rule fires; sweeps repeat until a whole sweep
fires nothing. No recursion, so graphs of any depth go through in time linear in their size
(per sweep). Interning inside the sweep keeps the rewritten graph free of duplicates (CSE).

`GRAPHC_DISABLE_PASSES=simplify,fuse,...` turns passes off by name (fusion, done while
scheduling, reads `enabled("fuse")`); `graphc.compile(..., optimize=False)` skips them all.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ..ir import Graph, Node, adopt, build_location, intern_scope, make_node, toposort

Rule = Callable[[Node], "Node | None"]
MAX_FIRES_PER_NODE = 16

@dataclass
class PassRecord:
    """One pass as explain() shows it."""
    name: str
    nodes_before: int
    nodes_after: int
    fired: Counter = field(default_factory=Counter)     # rule name -> times it fired

    def __str__(self) -> str:
        rules = ", ".join(f"{k} x{v}" for k, v in self.fired.most_common())
        return (f"pass {self.name}: {self.nodes_before} -> {self.nodes_after} nodes"
                + (f" ({rules})" if rules else ""))


def disabled() -> set[str]:
    return {p.strip() for p in os.environ.get("GRAPHC_DISABLE_PASSES", "").split(",")
            if p.strip()}


def enabled(name: str) -> bool:
    return name not in disabled()


class _Rewriter:
    """One bottom-up sweep. Every node is rewritten to a local fixpoint once its sources
    are final, and nodes that rules build are normalized as they are built (`build`), so
    every node of the result is final: one sweep reaches the global fixpoint."""

    def __init__(self, rules: dict[str, list[Rule]]):
        self.rules = rules
        self.fired: Counter = Counter()
        self.order: list[Node] = []        # every final node, first occurrence, topological
        self.seen: set[int] = set()

    def normalize(self, m: Node) -> Node:
        rules = self.rules
        for _ in range(MAX_FIRES_PER_NODE):
            for rule in rules.get(m.op.name, ()):
                r = rule(m)
                if r is not None and r is not m:
                    self.fired[rule.__name__] += 1
                    m = r
                    break
            else:
                break
        return m

    def emit(self, m: Node) -> Node:
        if id(m) not in self.seen:
            self.seen.add(id(m))
            self.order.append(m)
        return m

    def sweep(self, graph: Graph) -> Graph:
        new: dict[int, Node] = {}
        rules, normalize, emit = self.rules, self.normalize, self.emit
        previous = build_location(None)
        try:
            for n in graph.nodes:
                src = n.src
                if src:
                    src = tuple([new[id(s)] for s in src])
                # unchanged nodes and leaves keep their identity (rules' constants reuse them)
                m = adopt(n) if src == n.src else make_node(n.op, src, n.shape, n.dtype, n.arg,
                                                             n.where)
                if m.op.name in rules:
                    build_location(n.where)         # what rules build keeps n's source line
                    m = normalize(m)
                new[id(n)] = emit(m)
        finally:
            build_location(previous)
        outputs = tuple(new[id(o)] for o in graph.outputs)
        return Graph(graph.inputs, outputs, graph.name, nodes=live_order(self.order, outputs))


_state = threading.local()          # the rewrites running on this thread, innermost last


def _active() -> list[_Rewriter]:
    if not hasattr(_state, "stack"):
        _state.stack = []
    return _state.stack


def build(op_name: str, *src: Node, arg=None) -> Node:
    """A node built by a rule, already normalized by the running rewrite."""
    from ..ops import OPS, bind
    n = bind(OPS[op_name], src, arg)
    stack = _active()
    if not stack:
        return n
    rw = stack[-1]
    return rw.emit(rw.normalize(n))


def live_order(order: list[Node], outputs) -> list[Node]:
    """The nodes the outputs need, topologically. `order` is topological without duplicates
    and holds every node the rewrite produced except, possibly, leaves that rules created
    (they go first); anything else missing falls back to a depth-first sort."""
    need = {id(o) for o in outputs}
    rev: list[Node] = []
    for n in reversed(order):
        if id(n) in need:
            rev.append(n)
            need.update([id(s) for s in n.src])
    rev.reverse()
    if len(need) == len(rev):
        return rev
    have = {id(n) for n in rev}
    missing = {id(s): s for n in [*rev, *outputs] for s in (n, *n.src) if id(s) not in have}
    if any(n.src for n in missing.values()):
        return toposort(outputs)
    return list(missing.values()) + rev


def rewrite(graph: Graph, rules: dict[str, list[Rule]], name: str) -> tuple[Graph, Counter]:
    """Apply `rules` (op name -> rules; a rule returns a replacement node or None) bottom-up
    to a fixpoint. Returns the new graph and how often each rule fired."""
    rw = _Rewriter(rules)
    _active().append(rw)
    try:
        with intern_scope():
            out = rw.sweep(graph)
    finally:
        _active().pop()
    return out, rw.fired


@dataclass(frozen=True)
class Pass:
    """A pipeline entry: a rule pass (`rules()` gives its rules by op name; adjacent rule
    passes share one sweep, their rules tried in pipeline order) or a whole-graph pass."""
    name: str
    rules: Callable[[], dict[str, list[Rule]]] | None = None
    run: Callable[[Graph], tuple[Graph, Counter]] | None = None


def pipeline() -> list[Pass]:
    """The Graph -> Graph passes in order (fusion follows, in schedule.py)."""
    from . import dce, fold, simplify
    return [Pass("fold", rules=fold.rules), Pass("simplify", rules=simplify.rules),
            Pass("dce", run=dce.run)]


def optimize(graph: Graph) -> Graph:
    """Run the enabled passes; the result carries `pass_log` (a list of PassRecord)."""
    off = disabled()
    passes = [p for p in pipeline() if p.name not in off]
    log: list[PassRecord] = []
    k = 0
    while k < len(passes):
        before = len(graph.nodes)
        if passes[k].rules is None:
            name = passes[k].name
            graph, fired = passes[k].run(graph)
            k += 1
        else:
            batch = [passes[k]]
            while k + len(batch) < len(passes) and passes[k + len(batch)].rules is not None:
                batch.append(passes[k + len(batch)])
            k += len(batch)
            name = "+".join(p.name for p in batch)
            merged: dict[str, list[Rule]] = {}
            for p in batch:
                for op, rs in p.rules().items():
                    merged[op] = merged.get(op, []) + list(rs)
            graph, fired = rewrite(graph, merged, name)
        if os.environ.get("GRAPHC_VERIFY") == "1":
            graph.verify(full=True)
        log.append(PassRecord(name, before, len(graph.nodes), fired))
    graph.pass_log = log
    return graph
