"""Fusion: group nodes into loop nests, so values pass between ops in registers.

A group is one loop nest over an iteration shape, optionally reducing some of its axes: its
elementwise members compute element i from element i of their sources, its reductions
accumulate over the reduced axes. Members whose values are used outside the group (or are
graph outputs) are stored; every other value lives only in a register. So `sum(x*y)` never
materializes `x*y`, an elementwise chain is one loop, and a forward pass and the backward pass
that reuses its values (W4: f and df/dx) run as one loop that reads x once and writes df/dx.

What may fuse is decided in one place, `loop_nest` + `fusible`, from each op's kind. Groups
are formed greedily in topological order and merged only if the group graph stays acyclic
(checked by a bounded search over the quotient graph), so the kernels can still be ordered.
Movement ops are not fused: they stay strided views (broadcasts and transposes of buffers are
read with stride arithmetic inside the loop); a value read through a view of a value computed
in the same nest is stored and read back in the next kernel.

Recomputation (`_Recompute`): a cheap elementwise value that one nest computes and other nests
read (e.g. a bias add feeding both a row max and a row sum over another nest) is computed again
inside each reader, from values already in memory, instead of being stored and loaded, when
the stated cost says so (`recompute_flops`, `RECOMPUTE_MAX_FLOPS`, bytes saved vs added).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..ir import Graph, Node, prod
from ..ops import CONTRACT, ELEMENTWISE, REDUCE

RECOMPUTE_MAX_FLOPS = 8  # per element: the most a reader nest computes again to skip a store
MAX_GROUP = 256          # nodes per kernel: keeps generated functions a size gcc handles fast
SEARCH_BUDGET = 4096     # units visited per legality check before giving up (no fusion)
SEARCH_PER_NODE = 32     # ... and in all checks together, per node of the graph (linear time)
SEARCH_FLOOR = 1 << 18   # ... but at least this many (small graphs never run out)
FEEDS_CHECK_MAX = 64     # outside users a group may have for the quick legality test


def loop_nest(n: Node) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The loop nest a node runs in, from its kind: (iteration shape, reduced axes).
    Elementwise ops loop over their own shape, reductions over their source's; other kinds
    (matmul, movement, sources) are not fused, nor are ops that may fail at run time (their
    check reports the element's position, which only a kernel of their own knows)."""
    if n.op.may_fail:
        return None
    if n.op.kind == ELEMENTWISE and n.op.name != "stop_gradient":
        return n.shape, ()
    if n.op.kind == REDUCE:        # over no axes it reduces nothing: a nest of its own
        return (n.src[0].shape, n.arg) if n.arg else None
    return None


def fusible(producer: Node, nest: tuple) -> bool:
    """A producer computes inside a consumer's nest if it is elementwise over the same
    iteration shape (element i feeds element i). Reductions end a chain: their result is
    complete only after the nest."""
    return producer.op.kind == ELEMENTWISE and loop_nest(producer) == (nest[0], ())


_CALL = re.compile(r"[A-Za-z_][\w{}]*\s*\(")      # `gc_exp{f}(`, `sqrt{f}(`, `pow{f}(`


def recompute_flops(n: Node) -> int | None:
    """What computing n again costs per element, from its C: 1 for arithmetic, comparisons,
    selects and casts, 4 for a division; None (never recomputed) for an op whose C calls a
    function (transcendentals, sqrt, pow, abs): each runs at most once per element."""
    c = n.op.c
    templates = c.values() if isinstance(c, dict) else (c,)
    if (n.op.kind != ELEMENTWISE or n.op.may_fail or n.op.name == "stop_gradient"
            or not all(isinstance(t, str) and not _CALL.search(t) for t in templates)):
        return None
    return 4 if any("/" in t for t in templates) else 1


def _bytes_per_element(f: Node, n: Node) -> float:
    """Bytes a nest over n's shape loads per element to read f (a broadcast reads its source's
    memory; splat constants are literals in the C text: nothing)."""
    while f.op.name == "broadcast_to":
        f = f.src[0]
    if f.op.name == "const" and f.arg.value.size == 1:
        return 0.0
    return f.dtype.itemsize * f.size / max(n.size, 1)


def _joined_axes(a: tuple, b: tuple) -> tuple | None:
    """Nests over one shape combine if at most one reduces, or both reduce the same axes."""
    return a if not b or a == b else b if not a else None


def _reads_own_reduction(a: Group, b: Group) -> bool:
    """Whether a member of a or b reads a reduction of a or b: a reduction's value exists
    only after the nest, so its users cannot run inside it (reductions over no axes, whose
    nest looks elementwise, reach here through horizontal fusion)."""
    return any(r in a.member or r in b.member for g in (a, b) for r in g.reduces_read)


@dataclass(eq=False)
class Group:
    shape: tuple[int, ...]
    axes: tuple[int, ...]
    nodes: list[Node] = field(default_factory=list)
    member: set[int] = field(default_factory=set)
    ext: dict[int, Node] = field(default_factory=dict)   # sources outside the group
    lo: int = 0                                          # topological positions spanned
    hi: int = 0
    users: set[int] = field(default_factory=set)    # positions of outside users of members
    reduces_read: set[int] = field(default_factory=set)  # ids of reductions members read


class _Spans:
    """How many groups span each position p (lo < p <= hi), under merges: a Fenwick tree
    of range additions, so asking costs O(log n) instead of a scan over every group."""

    def __init__(self, n: int):
        self.tree = [0] * (n + 2)

    def _add(self, i: int, delta: int) -> None:
        i += 1
        while i < len(self.tree):
            self.tree[i] += delta
            i += i & -i

    def change(self, g: Group, delta: int) -> None:
        if g.hi > g.lo:
            self._add(g.lo + 1, delta)
            self._add(g.hi + 1, -delta)

    def count(self, p: int) -> int:
        i, total = p + 1, 0
        while i > 0:
            total += self.tree[i]
            i -= i & -i
        return total


class _Fuser:
    def __init__(self, graph: Graph, min_size: int = 0, clones: frozenset = frozenset()):
        self.min_size = min_size
        self.clones = clones      # ids of recomputed copies: they join their readers' nests
        self.order = graph.nodes
        self.pos = {id(n): i for i, n in enumerate(self.order)}
        self.group_of: dict[int, Group] = {}
        self.spans = _Spans(len(self.order))
        self.users: dict[int, list[int]] = {}
        for i, n in enumerate(self.order):
            for s in n.src:
                self.users.setdefault(id(s), []).append(i)
        self.horizon = len(self.order)   # users past it cannot lead back (see _feeds_only)
        # the legality searches share one budget linear in the graph (see _legal)
        self.budget = max(SEARCH_FLOOR, SEARCH_PER_NODE * len(self.order))

    def run(self) -> list[Group]:
        for i, n in enumerate(self.order):
            nest = loop_nest(n)
            if nest is None or prod(nest[0]) < self.min_size:
                continue
            self.horizon = i
            g = Group(nest[0], nest[1], [n], {id(n)}, {}, i, i,
                      users=set(self.users.get(id(n), ())),
                      reduces_read={id(s) for s in n.src if s.op.kind == REDUCE})
            g.ext = {id(s): s for s in n.src}
            cands = {id(h): h for s in n.src if fusible(s, nest)
                     and (id(n) not in self.clones or id(s) in self.clones)
                     and (h := self.group_of.get(id(s))) is not None}
            for h in sorted(cands.values(), key=lambda h: -h.hi):
                g = self._try(g, h)
            self.group_of[id(n)] = g          # _merge has moved the other members
        self.horizon = len(self.order)
        self._siblings()
        seen, groups = set(), []
        for g in self.group_of.values():
            if id(g) not in seen:
                seen.add(id(g))
                groups.append(g)
        return groups

    def _try(self, g: Group, h: Group) -> Group:
        """g and h merged if their nests combine and the result stays acyclic, else g."""
        axes = _joined_axes(g.axes, h.axes)
        if (axes is None or g.shape != h.shape or len(g.nodes) + len(h.nodes) > MAX_GROUP
                or _reads_own_reduction(g, h) or not self._legal(g, h)):
            return g
        return self._merge(g, h, axes)

    def _siblings(self) -> None:
        """Horizontal fusion: groups over the same nest that read the same computed value or
        input (not a constant) merge, so it is loaded once (e.g. sum(x) and max(x))."""
        readers: dict[int, list[Group]] = {}
        for g in {id(g): g for g in self.group_of.values()}.values():
            for e in g.ext.values():
                if e.op.name != "const":
                    readers.setdefault(id(e), []).append(g)
        for gs in readers.values():
            if len(gs) < 2:
                continue
            current = list({id(c): c for c in (self.group_of[id(h.nodes[0])] for h in gs)}
                           .values())
            g = current[0]
            for h in current[1:]:
                g = self._try(g, h)

    def _merge(self, a: Group, b: Group, axes) -> Group:
        """The smaller group joins the larger one (in place: linear time along chains)."""
        big, small = (a, b) if len(a.nodes) >= len(b.nodes) else (b, a)
        big.axes = axes
        big.member |= small.member
        if self.pos[id(small.nodes[0])] > self.pos[id(big.nodes[-1])]:
            big.nodes.extend(small.nodes)
        else:
            big.nodes = sorted(big.nodes + small.nodes, key=lambda n: self.pos[id(n)])
        big.ext.update(small.ext)
        for k in [k for k in big.ext if k in big.member]:
            del big.ext[k]
        self.spans.change(big, -1)
        self.spans.change(small, -1)
        big.lo, big.hi = min(a.lo, b.lo), max(a.hi, b.hi)
        self.spans.change(big, 1)
        big.users |= small.users
        big.users -= {self.pos[id(m)] for m in small.nodes}
        big.users -= {p for p in small.users if id(self.order[p]) in big.member}
        big.reduces_read |= small.reduces_read
        for m in small.nodes:
            self.group_of[id(m)] = big
        return big

    def _feeds_only(self, a: Group, b: Group) -> bool:
        """Whether every value a's members pass outside a goes to b (or to nodes past the
        horizon: while groups grow in topological order, none holds a node after the one
        being added, so paths through later nodes never come back). Then no path leaves a
        except into b."""
        if len(a.users) > FEEDS_CHECK_MAX:
            return False
        return all(p > self.horizon or id(self.order[p]) in b.member for p in a.users)

    def _legal(self, a: Group, b: Group) -> bool:
        """a and b may merge unless a source outside both depends on either (a cycle).

        The search walks whole groups (a group runs as one kernel, so it waits for all its
        sources). Nodes and groups entirely before a and b (positions below lo) cannot depend
        on them, unless some other group spans lo: it may start before a and b and wait for
        them, and a node reading its early members then depends on a and b too. So the
        search is cut at lo only when no group spans it. Past SEARCH_BUDGET units, or once
        the searches of the whole fusion have used up their shared budget (linear in the
        graph's size), the answer is no. Most merges need no search: when neither group
        passes a value outside the pair (_feeds_only), no path can leave one and come back."""
        if self._feeds_only(a, b) and self._feeds_only(b, a):
            return True
        member = a.member | b.member
        lo = min(a.lo, b.lo)
        cut = -1 if self.spans.count(lo) else lo      # a and b themselves never span lo
        stack = [s for s in {**a.ext, **b.ext}.values() if id(s) not in member]
        seen: set[int] = set()
        visited = 0
        while stack:
            u = stack.pop()
            if id(u) in member:
                return False
            if id(u) in seen:
                continue
            seen.add(id(u))
            visited += 1
            self.budget -= 1
            if visited > SEARCH_BUDGET or self.budget < 0:
                return False
            h = self.group_of.get(id(u))
            if h is not None:            # a group runs as a whole: it needs all its sources
                if h.hi < cut:
                    continue
                stack.extend(h.ext.values())
                seen.update(h.member)
            elif self.pos.get(id(u), -1) >= cut:
                stack.extend(u.src)
        return True


class _Recompute:
    """Which values to compute again in the nests that read them, and the graph with those
    copies. A value e of nest H qualifies when:

    - every reader of e outside H runs in a nest over e's shape (e fuses there), and e is not
      a graph output, so with copies in every reader H need not store e at all;
    - e's chain (e and its ancestors inside H, down to values in memory, through values
      recomputed themselves) costs at most RECOMPUTE_MAX_FLOPS per element and calls no
      function (`recompute_flops`);
    - the bytes saved, e's store in H and its load in each reader nest, exceed the bytes the
      readers load in addition (the chain's sources they do not read already).
    """

    def __init__(self, graph: Graph, fuser: _Fuser):
        self.graph = graph
        self.group_of = fuser.group_of
        self.users = fuser.users
        self.pos = fuser.pos
        self.outputs = {id(n) for n in graph.outputs}
        self.plan: dict[int, list[Node]] = {}     # id(e) -> its chain, in topological order

    def find(self) -> None:
        for e in self.graph.nodes:
            chain = self._chain(e) if id(e) not in self.outputs else None
            if chain is not None:
                self.plan[id(e)] = chain

    def _readers(self, e: Node) -> list[Group] | None:
        home = self.group_of.get(id(e))
        readers = {}
        for p in self.users.get(id(e), ()):
            g = self.group_of.get(id(self.graph.nodes[p]))
            if g is home:
                continue
            if g is None or not fusible(e, (g.shape, g.axes)):
                return None
            readers[id(g)] = g
        return list(readers.values()) or None

    def _chain(self, e: Node) -> list[Node] | None:
        home = self.group_of.get(id(e))
        if home is None or recompute_flops(e) is None or (readers := self._readers(e)) is None:
            return None
        chain, frontier, stack, seen = [], {}, [(e, home)], {id(e)}
        flops = 0
        while stack:
            n, nest = stack.pop()
            chain.append(n)
            flops += recompute_flops(n)
            if flops > RECOMPUTE_MAX_FLOPS:
                return None
            for s in n.src:
                if id(s) in seen:
                    continue
                seen.add(id(s))
                g = self.group_of.get(id(s))
                if id(s) in self.plan:    # recomputed itself: the copy recomputes it too
                    stack.append((s, g))
                elif g is not nest:
                    frontier[id(s)] = s
                elif recompute_flops(s) is None:
                    return None           # an expensive value only H has: H computes it once
                else:
                    stack.append((s, nest))
        saved = e.dtype.itemsize * (1 + len(readers))
        added = sum(_bytes_per_element(f, e) for g in readers
                    for k, f in frontier.items() if k not in g.ext)
        if added >= saved:
            return None
        return sorted(chain, key=lambda n: self.pos[id(n)])

    def rewrite(self) -> tuple[Graph, frozenset]:
        """The graph where each reader of a planned value reads a copy of its chain made for
        the reader's nest (one copy per nest), and the ids of the copies."""
        new: dict[int, Node] = {}
        copies: dict[tuple[int, int], Node] = {}

        def now(n: Node) -> Node:
            return new.get(id(n), n)

        def copy_for(g: Group, e: Node) -> Node:
            for c in self.plan[id(e)]:
                key = (id(g), id(c))
                if key not in copies:
                    src = tuple(copies.get((id(g), id(s))) or now(s) for s in c.src)
                    copies[key] = Node(c.op, src, c.shape, c.dtype, c.arg, c.where)
            return copies[(id(g), id(e))]

        for n in self.graph.nodes:
            g = self.group_of.get(id(n))
            src = tuple(copy_for(g, s) if id(s) in self.plan and g is not self.group_of[id(s)]
                        else now(s) for s in n.src)
            if src != n.src:
                new[id(n)] = Node(n.op, src, n.shape, n.dtype, n.arg, n.where)
        graph = Graph(self.graph.inputs, [now(n) for n in self.graph.outputs], self.graph.name,
                      self.graph.aliases)
        return graph, frozenset(id(c) for c in copies.values())


def _clamp_of(h: Node) -> Node | None:
    """m if h = where(m, z, x) with m = (x <= z) or (x >= z), z a constant splat (a ReLU:
    where(x <= 0, 0, x)), else None."""
    if h.op.name != "where":
        return None
    m, z, x = h.src
    if m.op.name not in ("le", "ge") or m.src[0] is not x:
        return None
    zc = m.src[1]
    if zc is not z and not (_splat(zc) is not None and _splat(zc) == _splat(z)
                            and zc.dtype is z.dtype):
        return None
    return m


def _splat(n: Node):
    """A constant splat's value with its sign bit (so 0.0 and -0.0 differ), else None."""
    if n.op.name != "const" or n.arg.value.size != 1:
        return None
    return n.arg.value.reshape(-1)[:1].tobytes()


def masks_from_outputs(graph: Graph, group_of: dict) -> tuple[Graph, frozenset]:
    """A clamp h = where(x <= z, z, x) (a ReLU) otherwise stores its mask m = (x <= z) too,
    for the nests that read it later (the backward pass; `group_of`: the nest of each node,
    as fused without this rewrite). They read (h <= z) instead, which
    is m bit for bit: x > z gives h = x > z; x <= z gives h = z <= z; a NaN x gives h = NaN,
    false both ways (likewise >=). Done only where h is stored anyway (a graph output, or
    read by a node that never fuses, such as a matmul), so m then lives in a register: the
    forward nest stores one array instead of two, and no byte mask sets the vector width of
    a float loop (W1's forward ReLU kernels 1.2k -> 0.6k cycles each). Done only where m is
    stored, i.e. read outside its nest. Returns the graph and the ids of the new masks: like
    recomputed copies, they join their readers' nests."""
    readers: dict[int, list[Node]] = {}
    for n in graph.nodes:
        for s in n.src:
            readers.setdefault(id(s), []).append(n)
    outputs = {id(n) for n in graph.outputs}
    swap: dict[int, Node] = {}          # id(m) -> h, for the readers of m other than h
    for h in graph.nodes:
        m = _clamp_of(h)
        if m is None or id(m) in swap:
            continue
        home = group_of.get(id(m))
        stored = any(r is not h and (home is None or group_of.get(id(r)) is not home)
                     for r in readers[id(m)])
        if stored and (id(h) in outputs
                       or any(loop_nest(r) is None for r in readers.get(id(h), ()))):
            swap[id(m)] = h
    if not swap:
        return graph, frozenset()
    new: dict[int, Node] = {}
    masks: dict[int, Node] = {}

    def now(n: Node) -> Node:
        return new.get(id(n), n)

    for n in graph.nodes:
        src = []
        for s in n.src:
            h = swap.get(id(s))
            if h is not None and n is not h:
                if id(s) not in masks:
                    masks[id(s)] = Node(s.op, (now(h), now(s.src[1])), s.shape, s.dtype,
                                        s.arg, s.where)
                src.append(masks[id(s)])
            else:
                src.append(now(s))
        if tuple(src) != n.src:
            new[id(n)] = Node(n.op, tuple(src), n.shape, n.dtype, n.arg, n.where)
    graph = Graph(graph.inputs, [now(n) for n in graph.outputs], graph.name, graph.aliases)
    return graph, frozenset(id(m) for m in masks.values())


def fuse(graph: Graph, min_size: int = 0) -> tuple[Graph, list[Group]]:
    """The fused groups of a graph (nodes not in any group run as their own kernels) and the
    graph they group: the input, or a copy where cheap values are recomputed in the nests
    that read them (`_Recompute`). Only nests of at least `min_size` elements fuse (tape mode
    keeps small ones as tape rows)."""
    fuser = _Fuser(graph, min_size)
    groups = fuser.run()
    graph, masks = masks_from_outputs(graph, fuser.group_of)
    if masks:
        fuser = _Fuser(graph, min_size, masks)
        groups = fuser.run()
    recompute = _Recompute(graph, fuser)
    recompute.find()
    if not recompute.plan:
        return graph, groups
    graph, clones = recompute.rewrite()
    return graph, _Fuser(graph, min_size, clones | masks).run()


@dataclass
class Update:
    """A group that the gemm of a matmul can compute as its epilogue: the group's value is
    `addend + alpha * product` (SGD's `W - lr * dW`), with `scale` the scalar (alpha, or
    -alpha when `negate`) and `addend` a tensor of the product's shape (schedule.py lowers it
    with graphc_gemm_update, csrc/graphc_gemm.h)."""
    group: Group
    product: Node
    addend: Node
    scale: Node
    negate: bool


def update_epilogues(graph: Graph, groups: list[Group]) -> dict[int, Update]:
    """Fused groups of exactly `addend ± scale * product` over a 2-D matmul's shape, where
    the product (a matmul, not a graph output) is read by nothing else, by the id of the
    matmul. The gemm then adds it to the addend as it stores each tile of C, instead of
    writing the product for a separate loop to read back (one pass over the matrix, not
    three)."""
    users: dict[int, int] = {}
    for n in graph.nodes:
        for s in n.src:
            users[id(s)] = users.get(id(s), 0) + 1
    outputs = {id(n) for n in graph.outputs}
    found: dict[int, Update] = {}
    for g in groups:
        if len(g.nodes) != 2 or g.axes:
            continue
        mul, top = g.nodes
        if mul.op.name != "mul" or top.op.name not in ("add", "sub") or id(mul) in outputs:
            continue
        products = [s for s in mul.src if s.op.kind == CONTRACT]
        if len(products) != 1 or top.src.count(mul) != 1 or (
                top.op.name == "sub" and top.src[1] is not mul):
            continue
        product = products[0]
        scale = mul.src[1] if mul.src[0] is product else mul.src[0]
        addend = top.src[1] if top.src[0] is mul else top.src[0]
        one = scale.src[0] if scale.op.name == "broadcast_to" else scale
        if (len(product.shape) == 2 and users.get(id(product)) == 1 and users.get(id(mul)) == 1
                and id(product) not in outputs and addend.shape == product.shape
                and (one.size == 1 or one.op.name == "const" and one.arg.value.size == 1)
                and mul.dtype == top.dtype == product.dtype == addend.dtype == scale.dtype
                and product.dtype.is_float and id(product) not in found):
            found[id(product)] = Update(g, product, addend, scale, top.op.name == "sub")
    return found
