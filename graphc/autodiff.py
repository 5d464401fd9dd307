"""Reverse (VJP) and forward (JVP) sweeps over the node DAG, and substitution of nodes.

Both sweeps only walk nodes that depend on the `wrt` nodes, so values a function closes over
are constants to it. Cotangents and tangents are graph nodes built with the ops' own rules,
which is what makes every derivative differentiable again.
"""

from __future__ import annotations

from .errors import GraphcError
from .ir import Node, built_for, make_node, toposort
from .ops import BILINEAR, LINEAR, OPS, bind
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
    if len(parts) > 2:
        parts = _joined_windows(parts)
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def _window(t: Tracer) -> tuple[int, int, int] | None:
    """(axis, start, count) if t places its source into zeros as one contiguous block along
    one axis, whole along the others (what reading x[i] or x[a:b] gives back); else None."""
    n = t.node
    if n.op.name != "unslice":
        return None
    in_shape, window = n.arg
    partial = [d for d, ((start, step, count), size) in enumerate(zip(window, in_shape))
               if not (start == 0 and count == size and (step == 1 or size == 1))]
    if len(partial) != 1:
        return None
    d = partial[0]
    start, step, count = window[d]
    return (d, start, count) if step == 1 or count == 1 else None


def _joined_windows(parts: list[Tracer]) -> list[Tracer]:
    """Cotangents that fill disjoint windows of one array (a source read piece by piece:
    stack([x[0], ..., x[n-1]])) become one concatenate of the pieces and the zeros between
    them, instead of n full-size arrays summed: the gradient stays linear in n, in nodes and
    in work. Overlapping or other parts are left to be summed."""
    by_axis: dict[int, list[tuple[int, int, Tracer]]] = {}
    rest = []
    for p in parts:
        w = _window(p)
        if w is None:
            rest.append(p)
        else:
            by_axis.setdefault(w[0], []).append((w[1], w[2], p))
    for axis, windows in by_axis.items():
        if len(windows) < 2:
            rest += [p for _, _, p in windows]
            continue
        windows.sort(key=lambda w: w[0])
        shape = list(windows[0][2].shape)
        dtype = windows[0][2].node.dtype
        pieces: list[Node] = []
        end = 0
        for start, count, p in windows:
            if start < end:                  # overlaps a piece already placed: summed
                rest.append(p)
                continue
            if start > end:
                pieces.append(_zeros_along(shape, axis, start - end, dtype))
            pieces.append(p.node.src[0])
            end = start + count
        if end < shape[axis]:
            pieces.append(_zeros_along(shape, axis, shape[axis] - end, dtype))
        rest.insert(0, Tracer(bind(OPS["concatenate"], tuple(pieces), axis)))
    return rest


def _zeros_along(shape: list[int], axis: int, size: int, dtype) -> Node:
    return constant(0, dtype, tuple(size if d == axis else n for d, n in enumerate(shape)))


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
