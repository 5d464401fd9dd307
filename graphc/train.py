"""train_step: forward, backward, gradient clipping and the optimizer update of every parameter
as ONE generated C call per step, writing parameters and optimizer state in place.

The step is traced once per batch signature into one graph whose outputs are the loss (and
aux), then every new parameter and state array, each aliased to the input it replaces
(`Graph.aliases`): the schedule writes each straight into the caller's memory once nothing
reads the old value any more, or computes it in the arena and copies it in after every read
(schedule.plan_in_place). The learning rate is a run-time scalar input. The per-step Python is
a pre-built argument tuple, the batch pointers and one cffi call.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import nans, pytree
from .callplan import MISS, flat_guard, guard_namespace
from .capture import trace_to_graph
from .compiler import default_backend
from .errors import GraphcError
from .ir import Graph
from .ops import api as ops
from .optim import Optimizer, clip_by_global_norm
from .runtime import paused_gc
from .transforms import value_and_grad


def train_step(loss_fn: Callable, opt: Optimizer, clip_norm: float | None = None,
               has_aux: bool = False, comm=None) -> TrainStep:
    """A compiled training step: `step(*batch, lr=None)` computes loss_fn(opt.params, *batch)
    and its gradient, clips it to global norm clip_norm, applies opt's update in place and
    returns the loss as a float (and aux, a fresh pytree, with has_aux). With comm (an mpi4py
    communicator) it trains data-parallel over MPI: see graphc.distributed."""
    if not isinstance(opt, Optimizer):
        raise GraphcError(f"train_step: opt must be a graphc.optim optimizer, got "
                          f"{type(opt).__name__}")
    if clip_norm is not None and not clip_norm > 0:
        raise GraphcError(f"train_step: clip_norm must be positive, got {clip_norm}")
    if comm is not None:        # mpi4py is imported only here
        from .distributed import DataParallelStep
        return DataParallelStep(loss_fn, opt, clip_norm, has_aux, comm)
    return TrainStep(loss_fn, opt, clip_norm, has_aux)


def normalized_batch(batch: tuple) -> tuple[tuple, tuple]:
    """(batch, its signature key): Python scalars stay weakly typed (as in graphc.compile),
    anything else becomes a C-contiguous array of its own shape (np.ascontiguousarray would
    turn a numpy scalar or 0-d array into shape (1,))."""
    batch = tuple(b if type(b) in (float, int) else np.asarray(b, order="C") for b in batch)
    return batch, tuple([type(b) if type(b) in (float, int) else (b.shape, b.dtype)
                         for b in batch])


def aliased_graph(fn: Callable, args: tuple, written) -> Graph:
    """fn traced at args and optimized; its last outputs are written in place into the
    inputs numbered `written`, in order."""
    graph, _ = trace_to_graph(fn, args)
    from .passes import optimize
    graph = optimize(graph)
    first = len(graph.outputs) - len(written)
    aliased = Graph(graph.inputs, graph.outputs, graph.name,
                    aliases=[(first + i, j) for i, j in enumerate(written)])
    aliased.pass_log = getattr(graph, "pass_log", [])
    return aliased


class TrainStep:
    """See train_step. Binds the arrays of opt.params and opt.state when created: to load
    values, write into them (np.copyto(p, saved)); an array replaced in the dict afterwards is
    not seen (make a new step). Not thread-safe: the step updates shared arrays. With
    has_aux, the aux arrays are the only allocation per step (they belong to the caller)."""

    def __init__(self, loss_fn: Callable, opt: Optimizer, clip_norm: float | None,
                 has_aux: bool, backend: str | None = None):
        self.loss_fn, self.opt, self.clip_norm, self.has_aux = loss_fn, opt, clip_norm, has_aux
        self.backend = backend or default_backend()
        p_leaves, self._p_td = pytree.flatten(opt.params)
        s_leaves, self._s_td = pytree.flatten(opt.state)
        # the caller's arrays, 0-d ones as 1-element views (in-place outputs need a dimension)
        self._scalar = [a.ndim == 0 for a in p_leaves + s_leaves]
        self.memory = [a.reshape(1) if a.ndim == 0 else a for a in p_leaves + s_leaves]
        for i, a in enumerate(self.memory):      # each is written in place from its own value
            for b in self.memory[:i]:
                if np.may_share_memory(a, b):
                    raise GraphcError("train_step: two parameter or optimizer-state arrays "
                                      "share memory; each must be its own array (tie weights "
                                      "inside loss_fn instead)")
        self._n_p = len(p_leaves)
        self._calls: dict = {}
        self._plan = _no_plan       # plan(lr, batch) of the signature used last, or MISS
        self._graphs: dict = {}     # signature -> its graph (for the NaN locator)
        self._aux_td = None

    def __call__(self, *batch, lr: float | None = None):
        if nans.STATE["on"]:
            return self._call_checked(batch, lr)
        try:        # fast path: the plan of the signature used last (see _c_call)
            out = self._plan(self.opt.lr if lr is None else lr, *batch)
            if out is not MISS:
                return out
        except (BufferError, ValueError):
            pass        # a buffer cffi refuses: the slow path converts it
        return self._call_slow(batch, lr)

    def _call_slow(self, batch: tuple, lr):
        batch, key = normalized_batch(batch)
        return self._call_for(key, batch)(self.opt.lr if lr is None else lr, *batch)

    def _call_for(self, key, batch: tuple) -> Callable:
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = self._build(batch)
            self._graphs[key] = self.graph
        self._plan = getattr(call, "plan", _no_plan)
        return call

    def _call_checked(self, batch: tuple, lr):
        """One step under graphc.debug_nans: a NaN/Inf in the loss, aux or updated memory
        is located by re-running the step's graph on the memory as it was (nans.py)."""
        batch, key = normalized_batch(batch)
        call = self._call_for(key, batch)
        lr = self.opt.lr if lr is None else lr
        result = []

        def run(leaves):
            result.append(call(lr, *batch))
            return [*pytree.tree_leaves(result[0]), *self.memory]
        nans.checked_call(run, self._graphs[key], [*self.memory, float(lr), *batch])
        return result[0]

    # ---- building one batch signature ----

    def _traced_step(self, memory: list, lr, *batch) -> list:
        """The whole step on traced values: [loss, *aux, *new memory]."""
        params, state = self._trees(memory)
        loss, aux_leaves, g = self._loss_and_grads(params, batch, self.has_aux)
        return [loss, *aux_leaves, *self._updated(params, state, g, lr)]

    def _trees(self, memory: list) -> tuple:
        """(params, state) pytrees of the traced memory, 0-d arrays as scalars again."""
        views = [ops.reshape(m, ()) if s else m for m, s in zip(memory, self._scalar)]
        return (pytree.unflatten(self._p_td, views[:self._n_p]),
                pytree.unflatten(self._s_td, views[self._n_p:]))

    def _loss_and_grads(self, params, batch: tuple, has_aux: bool) -> tuple:
        """(loss, aux leaves, gradient leaves) of loss_fn at params on traced values."""
        out, grads = value_and_grad(self.loss_fn, has_aux=has_aux)(params, *batch)
        loss, aux = out if has_aux else (out, None)
        aux_leaves, self._aux_td = pytree.flatten(aux)
        return loss, aux_leaves, pytree.flatten(grads)[0]

    def _updated(self, params, state, g: list, lr) -> list:
        """The new memory (traced) after clipping the gradient leaves g and one update."""
        if self.clip_norm is not None:
            g = clip_by_global_norm(g, self.clip_norm)
        new_p, new_s = self.opt.update(params, pytree.unflatten(self._p_td, g), state, lr)
        new = pytree.flatten(new_p)[0] + pytree.flatten(new_s)[0]
        return [ops.reshape(n, (1,)) if s else n for n, s in zip(new, self._scalar)]

    def _build(self, batch: tuple) -> Callable:
        with paused_gc():
            aliased = aliased_graph(self._traced_step, (self.memory, 1.0, *batch),
                                    range(len(self.memory)))
            first = len(aliased.outputs) - len(self.memory)
            self.graph = aliased
            if self.backend == "numpy":
                from .interpret import Interpreter
                return self._numpy_call(Interpreter(aliased), first)
            from .native import CRunner
            return self._c_call(CRunner(aliased), first, batch)

    def _unflatten_aux(self, leaves: list):
        return pytree.unflatten(self._aux_td, leaves)

    def _numpy_call(self, interp, first: int) -> Callable:
        memory = self.memory

        def call(lr, *batch):
            outs = interp([*memory, float(lr), *batch])
            if self.has_aux:
                return float(outs[0]), self._unflatten_aux(outs[1:first])
            return float(outs[0])
        return call

    def _c_call(self, runner, first: int, example: tuple) -> Callable:
        """Straight-line Python for this signature: fixed pointers for parameters, state,
        hidden inputs and the loss; per step only the batch pointers and the lr. Its `plan`
        attribute, `plan(lr, *batch)`, first checks that batch has this signature (each
        leaf's type, and an array's shape, dtype and C order: callplan.flat_guard), else
        returns MISS; the same in C where it can be (`_fast_plan`)."""
        ffi = runner.ffi
        n_batch = len(runner._in) - len(self.memory) - 1
        loss = np.zeros((), runner._outs[0][1])
        loss_ptr = ffi.cast("double *" if loss.dtype == np.float64 else "float *",
                            ffi.from_buffer(loss))
        ns = {"fb": ffi.from_buffer, "ws": runner._ws_ptr,
              "wsa": runner._ws, "fail": runner.fail, "L": ffi.from_buffer(loss),
              "LP": loss_ptr, "empty": np.empty,
              "keep": (loss, self.memory), "aux": self._unflatten_aux}
        mem = []
        for k, a in enumerate(self.memory):
            ns[f"M{k}"] = ffi.from_buffer(a)
            mem.append(f"M{k}")
        batch = [f"b{k}" for k in range(n_batch)]
        first_batch = len(self.memory) + 1
        batch_args = []
        for k, b in enumerate(batch):
            by_value, _, py = runner._in[first_batch + k]
            ns[f"P{k}"] = py
            batch_args.append(f"P{k}({b})" if by_value else f"fb({b})")
        hidden = []
        for k, h in enumerate(runner._hidden):
            ns[f"H{k}"] = h
            hidden.append(f"H{k}")
        aux_outs = []
        for k in range(1, first):
            ns[f"S{k}"], ns[f"T{k}"] = runner._outs[k]
            aux_outs.append(f"o{k}")
        args = (mem + ["lr"] + batch_args + hidden + ["L"]
                + [f"fb({o})" for o in aux_outs] + mem + ["ws"])
        body = [f"    o{k} = empty(S{k}, T{k})" for k in range(1, first)]
        body += [f"    rc = entry({', '.join(args)})",
                 "    if rc:",
                 "        fail(rc, wsa)"]
        if self.has_aux:
            body.append(f"    return LP[0], aux([{', '.join(aux_outs)}])")
        else:
            body.append("    return LP[0]")
        ns.update(guard_namespace())
        lines = [f"def call(lr, {', '.join(batch)}):", *body,
                 "def plan(lr, *batch):", *flat_guard(example, ns), *body]
        # and the bare C call's arguments, to measure what the Python side costs
        lines += [f"def args_of(lr, {', '.join(batch)}):"]
        lines += [f"    o{k} = empty(S{k}, T{k})" for k in range(1, first)]
        lines += [f"    return ({', '.join(args)},)"]
        runner.bind(ns)
        exec("\n".join(lines), ns)  # noqa: S102  (source built from this signature only)
        self.entry, self.entry_args = runner._entry, ns["args_of"]
        # the C plan returns the loss alone: only for steps without aux (an aux with no
        # leaves also leaves the loss the only output, yet must be returned)
        ns["call"].plan = (not self.has_aux and self._fast_plan(runner, ns, example, len(mem))
                           or ns["plan"])
        return ns["call"]

    @staticmethod
    def _fast_plan(runner, ns: dict, example: tuple, n_mem: int):
        """The plan in C (csrc/fastcall.c) where every batch leaf is a Python float or int
        or an ndarray and the step returns the loss alone: the batch checked and passed,
        the entry called on the step's workspace, the loss read back, with no Python
        between; None otherwise. Any other call goes to the Python plan."""
        kinds = ""
        for b, (by_value, _, py) in zip(example, runner._in[n_mem + 1:]):
            if type(b) is not (py if by_value else np.ndarray):
                return None             # converted on the way (a 0-d array passed by value)
            kinds += "a" if not by_value else "f" if py is float else "i"
        address = [int(runner.ffi.cast("uintptr_t", ns[f"M{k}"])) for k in range(n_mem)]
        hidden = [int(runner.ffi.cast("uintptr_t", h)) for h in runner._hidden]
        slots = ([("at", a) for a in address] + [("arg", k) for k in range(len(example) + 1)]
                 + [("at", h) for h in hidden] + [("out", 0)] + [("at", a) for a in address])
        arrays = (None, *((b.shape, memoryview(b).format.encode()) if type(b) is np.ndarray
                          else None for b in example))
        return runner.fast_step(ns["plan"], "f" + kinds, slots, arrays, ns["keep"])


def _no_plan(lr, *batch):
    return MISS
