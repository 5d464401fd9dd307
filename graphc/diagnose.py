"""grad_report: how healthy each parameter's gradient is (the seeds' vanishing-gradient
story as a tool): its norm, its share of exact zeros (dead ReLUs), its size relative to the
parameter, and a flag when it vanishes or explodes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import pytree
from .transforms import value_and_grad


@dataclass(frozen=True)
class GradStat:
    name: str                # the parameter's pytree path, e.g. "params['w1']"
    shape: tuple[int, ...]
    grad_norm: float
    zero_fraction: float     # share of elements whose gradient is exactly 0
    ratio: float             # |grad| / |param| (inf for a zero parameter with a gradient)
    flag: str                # "", "vanishing", "exploding" or "dead" (every element 0)


@dataclass(frozen=True)
class GradReport:
    loss: float
    stats: tuple[GradStat, ...]

    def __str__(self) -> str:
        width = max([len(s.name) for s in self.stats] + [9])
        lines = [f"loss {self.loss:.6g}",
                 f"{'parameter':<{width}}  {'shape':<12} {'|grad|':>10} {'zeros':>6} "
                 f"{'|grad|/|p|':>11}  flag"]
        for s in self.stats:
            lines.append(f"{s.name:<{width}}  {str(s.shape):<12} {s.grad_norm:>10.3g} "
                         f"{s.zero_fraction:>6.0%} {s.ratio:>11.3g}  {s.flag}")
        return "\n".join(lines)

    def flagged(self) -> list[GradStat]:
        return [s for s in self.stats if s.flag]


def grad_report(fn: Callable, params, *args, vanishing: float = 1e-6,
                exploding: float = 1e3) -> GradReport:
    """Per parameter (each leaf of `params`, the first argument of `fn`): the gradient's norm,
    its fraction of exact zeros and its norm relative to the parameter's, flagged
    "vanishing" below `vanishing`, "exploding" above `exploding`, or "dead" if all zero."""
    loss, grads = value_and_grad(fn)(params, *args)
    p_leaves, td = pytree.flatten(params)
    g_leaves = pytree.flatten(grads)[0]
    stats = []
    for path, p, g in zip(pytree.leaf_paths(td), p_leaves, g_leaves):
        p, g = np.asarray(p, np.float64), np.asarray(g, np.float64)
        g_norm, p_norm = float(np.linalg.norm(g)), float(np.linalg.norm(p))
        ratio = g_norm / p_norm if p_norm else (np.inf if g_norm else 0.0)
        zeros = float(np.mean(g == 0)) if g.size else 0.0
        if g.size and zeros == 1.0:
            flag = "dead"
        elif ratio < vanishing:
            flag = "vanishing"
        elif ratio > exploding:
            flag = "exploding"
        else:
            flag = ""
        stats.append(GradStat("params" + path, p.shape, g_norm, zeros, ratio, flag))
    return GradReport(float(loss), tuple(stats))
