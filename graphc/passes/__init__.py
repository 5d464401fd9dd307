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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ..ir import Graph, Node, adopt, intern_scope, make_node

Rule = Callable[[Node], "Node | None"]
MAX_SWEEPS = 8
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


def rewrite(graph: Graph, rules: dict[str, list[Rule]], name: str) -> tuple[Graph, Counter]:
    """Apply `rules` (op name -> rules; a rule returns a replacement node or None) bottom-up
    to a fixpoint. Returns the new graph and how often each rule fired."""
    fired: Counter = Counter()
    outputs = graph.outputs
    with intern_scope():
        for _ in range(MAX_SWEEPS):
            before = sum(fired.values())
            outputs = _sweep(outputs, graph.inputs, rules, fired)
            if sum(fired.values()) == before:
                break
    out = Graph(graph.inputs, outputs, graph.name)
    return out, fired


def _sweep(outputs, inputs, rules, fired: Counter) -> tuple[Node, ...]:
    from ..ir import toposort
    new: dict[int, Node] = {}
    for n in toposort(outputs):
        if not n.src:
            new[id(n)] = adopt(n)     # leaves keep their identity; rules' constants reuse them
            continue
        src = tuple(new[id(s)] for s in n.src)
        m = adopt(n) if src == n.src else make_node(n.op, src, n.shape, n.dtype, n.arg)
        for _ in range(MAX_FIRES_PER_NODE):
            r = _first(rules.get(m.op.name, ()), m, fired)
            if r is None:
                break
            m = r
        new[id(n)] = m
    for n in inputs:
        new.setdefault(id(n), n)
    return tuple(new[id(o)] for o in outputs)


def _first(rules, n: Node, fired: Counter) -> Node | None:
    for rule in rules:
        r = rule(n)
        if r is not None and r is not n:
            fired[rule.__name__] += 1
            return r
    return None


def pipeline() -> list[tuple[str, Callable[[Graph], tuple[Graph, Counter]]]]:
    """The Graph -> Graph passes in order (fusion follows, in schedule.py)."""
    from . import dce, fold, simplify
    return [("fold", fold.run), ("simplify", simplify.run), ("dce", dce.run)]


def optimize(graph: Graph) -> Graph:
    """Run the enabled passes; the result carries `pass_log` (a list of PassRecord)."""
    off = disabled()
    log: list[PassRecord] = []
    for name, run in pipeline():
        if name in off:
            continue
        before = len(graph.nodes)
        new, fired = run(graph)
        if os.environ.get("GRAPHC_VERIFY") == "1":
            new.verify(full=True)
        log.append(PassRecord(name, before, len(new.nodes), fired))
        graph = new
    graph.pass_log = log
    return graph
