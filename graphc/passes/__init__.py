"""The optimization pipeline: Graph -> Graph passes, each logged for explain()."""

from __future__ import annotations

from ..ir import Graph


def optimize(graph: Graph) -> Graph:
    """Run the pipeline. Interning already merges equal subexpressions and tracing from the
    outputs drops dead nodes; simplification and fusion passes land with the passes issue."""
    graph.pass_log = [("cse+dce (interning)", len(graph.nodes), len(graph.nodes))]
    return graph
