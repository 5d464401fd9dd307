"""Reverse (VJP) and forward (JVP) sweeps over the node DAG, and substitution of nodes.

Both sweeps only walk nodes that depend on the `wrt` nodes, so values a function closes over
are constants to it. Cotangents and tangents are graph nodes built with the ops' own rules,
which is what makes every derivative differentiable again.
"""

from __future__ import annotations

from .errors import GraphcError
from .ir import Node, built_for, make_node, toposort
from .ops import BILINEAR, LINEAR, bind
from .trace import Tracer, constant


def _rule_kwargs(node: Node) -> dict:
    return {"arg": node.arg} if node.op.has_arg else {}


def _depends_on(order: list[Node], wrt_ids: set[int]) -> set[int]:
    dep = set(wrt_ids)
    for n in order:
        if n.src and any(id(s) in dep for s in n.src):
            dep.add(id(n))
    return dep


def _total(parts: list[Tracer]) -> Tracer:
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def zeros(shape, dtype) -> Tracer:
    return Tracer(constant(0, dtype, shape))


def vjp_nodes(outputs, cotangents, wrt, on_edge=None) -> list[Tracer | None]:
    """Cotangents of `wrt` given cotangents of `outputs` (None stands for zero). `on_edge(n,
    s, r)` sees each contribution r that node n sends back to its source s (for pictures)."""
    wrt_ids = {id(w) for w in wrt}
    order = toposort(outputs)
    dep = _depends_on(order, wrt_ids)
    acc: dict[int, list[Tracer]] = {}
    for o, c in zip(outputs, cotangents):
        if c is not None and id(o) in dep and o.dtype.is_float:
            acc.setdefault(id(o), []).append(c)
    for n in reversed(order):
        if id(n) in wrt_ids or id(n) not in acc:
            continue
        if n.op.nondiff:
            continue
        if n.op.vjp is None:
            raise GraphcError(f"op {n.op.name} has no derivative rule")
        with built_for(n):
            g = _total(acc.pop(id(n)))
            results = n.op.vjp(g, Tracer(n), *(Tracer(s) for s in n.src), **_rule_kwargs(n))
        for s, r in zip(n.src, results):
            if r is None or id(s) not in dep or not s.dtype.is_float:
                continue
            if r.shape != s.shape or r.node.dtype is not s.dtype:
                raise GraphcError(f"internal: VJP of {n.op.name} gave {r.node.dtype}{r.shape} "
                                  f"for a {s.dtype}{s.shape} input")
            acc.setdefault(id(s), []).append(r)
            if on_edge is not None:
                on_edge(n, s, r)
    return [_total(acc[id(w)]) if id(w) in acc else None for w in wrt]


def jvp_nodes(outputs, wrt, tangents) -> list[Tracer | None]:
    """Tangents of `outputs` given tangents of `wrt` (None stands for zero)."""
    tan: dict[int, Tracer] = {id(w): t for w, t in zip(wrt, tangents) if t is not None}
    wrt_ids = {id(w) for w in wrt}
    for n in toposort(outputs):
        if id(n) in wrt_ids or not n.src or not n.dtype.is_float or n.op.nondiff:
            continue
        ts = [tan.get(id(s)) for s in n.src]
        if any(t is not None for t in ts):
            with built_for(n):
                t = _jvp_rule(n, ts)
            if t is not None:
                tan[id(n)] = t
    return [tan.get(id(o)) for o in outputs]


def _apply_like(n: Node, srcs: list[Tracer]) -> Tracer:
    return Tracer(bind(n.op, tuple(s.node for s in srcs), n.arg))


def _jvp_rule(n: Node, ts: list[Tracer | None]) -> Tracer | None:
    rule = n.op.jvp
    if rule == LINEAR:
        return _apply_like(n, [t if t is not None else zeros(s.shape, s.dtype)
                               for s, t in zip(n.src, ts)])
    srcs = [Tracer(s) for s in n.src]
    if rule == BILINEAR:
        parts = [_apply_like(n, srcs[:i] + [t] + srcs[i + 1:])
                 for i, t in enumerate(ts) if t is not None]
        return _total(parts)
    if rule is None:
        return _jvp_by_transposition(n, ts)
    if callable(rule):
        return rule(ts, Tracer(n), *srcs, **_rule_kwargs(n))
    parts = []
    for r, t in zip(rule, ts):
        if t is not None and r is not None:
            p = r(t, Tracer(n), *srcs, **_rule_kwargs(n))
            if p is not None:
                parts.append(p)
    return _total(parts) if parts else None


def _jvp_by_transposition(n: Node, ts) -> Tracer | None:
    """J·t from the VJP rule: g -> Jᵀg is linear in g, and its own VJP with cotangent t is J·t."""
    from .trace import new_input
    g = new_input(n.shape, n.dtype, "g")
    results = n.op.vjp(Tracer(g), Tracer(n), *(Tracer(s) for s in n.src), **_rule_kwargs(n))
    parts = []
    for r, t in zip(results, ts):
        if r is not None and t is not None:
            (jt,) = vjp_nodes([r.node], [t], [g])
            if jt is not None:
                parts.append(jt)
    return _total(parts) if parts else None


def substitute(outputs, mapping: dict[int, Node]) -> list[Node]:
    """Rebuild `outputs` with nodes replaced per `mapping` (keyed by id of the old node)."""
    new = dict(mapping)
    for n in toposort(outputs):
        if id(n) not in new and n.src and any(id(s) in new for s in n.src):
            new[id(n)] = make_node(n.op, tuple(new.get(id(s), s) for s in n.src), n.shape,
                                   n.dtype, n.arg, n.where)
    return [new.get(id(o), o) for o in outputs]
