"""The numpy reference backend: walks a Graph calling each op's numpy semantics."""

from __future__ import annotations

import numpy as np

from .ir import Graph


class Interpreter:
    """A graph turned into a flat list of steps over numbered value slots."""

    def __init__(self, graph: Graph):
        slot = {id(n): k for k, n in enumerate(graph.inputs)}
        self.slot = slot
        self.n_inputs = len(graph.inputs)
        self.in_dtypes = [n.dtype.np for n in graph.inputs]
        self.consts: list[tuple[int, np.ndarray]] = []
        self.steps = []
        for n in graph.nodes:
            if id(n) in slot:
                continue
            slot[id(n)] = len(slot)
            if n.op.name == "const":
                self.consts.append((slot[id(n)], np.broadcast_to(n.arg.value, n.shape)))
            elif n.op.name == "input":
                raise AssertionError("graph input missing from graph.inputs")
            else:
                kw = {"arg": n.arg} if n.op.has_arg else {}
                self.steps.append((n.op.numpy, [slot[id(s)] for s in n.src], slot[id(n)], kw,
                                   n.dtype.np))
        self.n_slots = len(slot)
        self.outputs = [slot[id(n)] for n in graph.outputs]
        self.aliases = dict(graph.aliases)
        self.stats = {"kernels": len(self.steps), "buffers": len(self.steps),
                      "peak_bytes": sum(n.size * n.dtype.itemsize for n in graph.nodes
                                        if n.src)}

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        env = self.run(inputs)
        outs = [np.array(env[k], copy=True) for k in self.outputs]   # the caller owns them
        for k, j in self.aliases.items():      # in place, once every value is computed
            np.copyto(inputs[j], outs[k])
            outs[k] = inputs[j]
        return outs

    def values(self, inputs: list[np.ndarray]) -> dict[int, np.ndarray]:
        """Every node's value (by id of the node), e.g. to draw them."""
        env = self.run(inputs)
        return {i: env[k] for i, k in self.slot.items()}

    def run(self, inputs: list[np.ndarray]) -> list:
        from .arrays import as_array, in_place_array
        for j in self.aliases.values():
            in_place_array(inputs[j], self.in_dtypes[j], j)
        env: list = [None] * self.n_slots
        env[:self.n_inputs] = [as_array(x, d) for x, d in zip(inputs, self.in_dtypes)]
        for k, v in self.consts:
            env[k] = v
        with np.errstate(all="ignore"):
            for fn, srcs, out, kw, dt in self.steps:
                env[out] = np.asarray(fn(*[env[s] for s in srcs], **kw), dtype=dt)
        return env
