"""A Python function at example arguments -> a Graph: inputs from the arguments' signature
(shape, dtype, weak type), labelled with their names and pytree paths; the outputs' treedef."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from . import dtypes, pytree
from .errors import DTypeError, GraphcError
from .ir import Graph
from .trace import Tracer, new_input, to_tracer, tracing


def leaf_spec(leaf, what: str = "argument") -> tuple:
    """The part of a signature one leaf contributes: shape+dtype, or a Python scalar kind
    (`what` names the leaf in errors, e.g. "f: input 2")."""
    if isinstance(leaf, np.ndarray):
        return (leaf.shape, dtypes.from_numpy(leaf.dtype, f"{what} of shape {leaf.shape}"))
    if isinstance(leaf, np.generic):          # numpy scalars are strongly typed
        return ((), dtypes.from_numpy(leaf.dtype, f"{what} of shape {leaf.shape}"))
    if isinstance(leaf, bool):
        return ("static", leaf)
    if isinstance(leaf, float):
        return ((), dtypes.float64, "weak")
    if isinstance(leaf, int):
        if not -(1 << 63) <= leaf < (1 << 63):
            raise DTypeError(f"{what} {leaf}: Python integer out of bounds for int64")
        return ((), dtypes.int64, "weak")
    if isinstance(leaf, Tracer):
        return (leaf.shape, leaf.node.dtype) + (("weak",) if leaf.weak else ())
    if isinstance(leaf, complex):
        raise DTypeError(f"{what} {leaf!r}: complex numbers are not supported")
    raise GraphcError(f"{what} of type {type(leaf).__name__} is not supported: pass numpy "
                      "arrays, Python scalars, or pytrees of them (tuples, lists, dicts, "
                      "namedtuples, frozen or registered dataclasses), or make it static "
                      "with static_argnums")


def _as_traced(spec: tuple, label: str) -> Any:
    if spec[0] == "static":
        return spec[1]
    return Tracer(new_input(spec[0], spec[1], label), weak=len(spec) > 2)


def call_traced(fn: Callable, args: tuple, kwargs: dict | None = None) -> Any:
    """Call fn on tracers; turn user mistakes about input structure into GraphcErrors."""
    with tracing(fn):
        try:
            return fn(*args, **kwargs or {})
        except GraphcError:
            raise
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
            structure = pytree.describe(pytree.flatten(args)[1])
            raise GraphcError(
                f"{getattr(fn, '__qualname__', fn)} failed while being traced with inputs of "
                f"structure {structure}: {type(e).__name__}: {e}") from e


def trace_to_graph(fn: Callable, args: tuple, static_argnums=(),
                   named_after: Callable | None = None) -> tuple[Graph, tuple]:
    """Trace fn at the signature of args; returns the Graph and the output treedef. Inputs
    are labelled with the argument names and pytree paths of `named_after` (default fn)."""
    static = set(static_argnums)
    dyn = tuple(a for i, a in enumerate(args) if i not in static)
    leaves, treedef = pytree.flatten(dyn)
    labels = input_labels(named_after or fn, args, static)
    traced = [_as_traced(leaf_spec(x), label) for x, label in zip(leaves, labels)]
    dyn_t = iter(pytree.unflatten(treedef, traced))
    full = tuple(a if i in static else next(dyn_t) for i, a in enumerate(args))
    out = call_traced(fn, full)
    out_leaves, out_td = pytree.flatten(out)
    out_t = [to_tracer(o, "output") for o in out_leaves]
    inputs = [t.node for t in traced if isinstance(t, Tracer)]
    graph = Graph(inputs, [t.node for t in out_t], name=function_name(named_after or fn))
    # 0-d outputs still weakly typed (Python scalars carried through) return as Python
    # scalars, so a loop that feeds them back keeps one signature and the arrays' dtypes
    graph.weak_outputs = tuple(k for k, t in enumerate(out_t) if t.weak and t.shape == ())
    graph.verify()
    return graph, out_td


def input_labels(fn: Callable, args: tuple, static=()) -> list[str]:
    """A label per dynamic leaf: the parameter's name and the leaf's pytree path, such as
    `params['w1']` (positions beyond the named parameters are `args[i]`)."""
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    labels = []
    for i, a in enumerate(args):
        if i in static:
            continue
        name = params[i].name if i < len(params) else f"args[{i}]"
        labels += [name + path for path in pytree.leaf_paths(pytree.flatten(a)[1])]
    return labels



def keywords_last(fn: Callable, n_pos: int, names: tuple[str, ...]) -> Callable:
    """fn taking the values of its keyword arguments `names` as trailing positional ones (so
    a call with keywords traces and caches like any other: the values are inputs)."""
    if not names:
        return fn

    def call(*args):
        return fn(*args[:n_pos], **dict(zip(names, args[n_pos:])))
    call.__name__ = call.__qualname__ = function_name(fn)
    call.keyword_names = names
    return call


def function_name(fn) -> str:
    return getattr(fn, "__name__", type(fn).__name__)
