"""The workloads of ../shared/BENCHMARKS.md, written once for benchmarks and tests."""

from __future__ import annotations

from collections.abc import Callable

import graphc


def w7(n_ops: int) -> Callable:
    """W7: a large graph of scalar ops over 100 inputs (A. Rogozhnikov's benchmark)."""
    def loss(x):
        nodes = [x[i] for i in range(100)]
        for op in range(n_ops):
            k = op % 4
            if k == 0:
                nodes.append(graphc.softplus(nodes[-10]))
            elif k == 1:
                nodes.append(sum(nodes[-30:-10:5]))
            elif k == 2:
                nodes.append(nodes[-20] * nodes[-10])
            else:
                nodes.extend(graphc.softmax(graphc.stack(nodes[-4:])))
        return sum(nodes)
    return loss
