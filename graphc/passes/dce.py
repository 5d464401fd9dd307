"""Dead-code elimination: keep exactly the nodes the outputs depend on.

A Graph's node list is computed from its outputs (`ir.toposort`), so dead nodes are dropped by
rebuilding that list; nodes that earlier rewrites orphaned never reach the schedule. Unused
inputs stay (they are part of the signature). CSE needs no pass: nodes are interned.
"""

from __future__ import annotations

from collections import Counter

from ..ir import Graph
from . import live_order


def run(graph: Graph) -> tuple[Graph, Counter]:
    live = Graph(graph.inputs, graph.outputs, graph.name,
                 nodes=live_order(graph.nodes, graph.outputs))
    dropped = len(graph.nodes) - len(live.nodes)
    return live, Counter({"dead_nodes": dropped} if dropped else {})
