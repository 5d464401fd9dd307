"""Pytrees: nested tuples, lists, dicts, namedtuples and dataclasses, flattened into leaves
and a hashable tree description.

Everything here is iterative, and a treedef is flat (its nodes in preorder), so a tree nested
thousands of levels deep costs no recursion: not here, and not in hashing or comparing
treedefs as cache keys. Dicts keep their insertion order (as PyTorch's pytrees), so a
function's dict outputs come back in the order it built them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import Any

from .errors import GraphcError

# Preorder tokens: LEAF, NONE, or (kind, n_children, spec) for a container:
#   ("tuple"|"list", n, None), ("dict", n, keys), ("namedtuple", n, cls),
#   ("dataclass", n, (cls, data_fields, meta_values))
LEAF = "*"
NONE = "none"

_DATACLASSES: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def register_dataclass(cls: type, data_fields: Iterable[str] | None = None,
                       meta_fields: Iterable[str] = ()) -> type:
    """Make a dataclass a pytree node: `data_fields` hold arrays (traced), `meta_fields` hold
    static, hashable values that become part of the signature. Frozen dataclasses are
    registered automatically with every field as data. Usable as a decorator."""
    if not dataclasses.is_dataclass(cls):
        raise GraphcError(f"register_dataclass: {cls!r} is not a dataclass")
    meta = tuple(meta_fields)
    fields = tuple(f.name for f in dataclasses.fields(cls) if f.name not in meta)
    _DATACLASSES[cls] = (fields if data_fields is None else tuple(data_fields), meta)
    return cls


def _dataclass_fields(cls: type):
    spec = _DATACLASSES.get(cls)
    if spec is None and dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen:
        spec = _DATACLASSES[cls] = (tuple(f.name for f in dataclasses.fields(cls)), ())
    return spec


class TreeDef:
    """The structure of a pytree: preorder tokens, with the number of leaves."""

    __slots__ = ("tokens", "num_leaves", "_hash")

    def __init__(self, tokens: tuple):
        self.tokens = tokens
        self.num_leaves = tokens.count(LEAF)
        self._hash = hash(tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, TreeDef) and self.tokens == other.tokens

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"TreeDef({describe(self)})"


def flatten(tree: Any) -> tuple[list, TreeDef]:
    """Leaves in a stable order (dicts in insertion order) and the treedef."""
    leaves: list = []
    tokens: list = []
    stack = [tree]
    while stack:
        t = stack.pop()
        kind = type(t)
        if kind is tuple or kind is list:
            tokens.append((kind.__name__, len(t), None))
            stack.extend(reversed(t))
        elif kind is dict:
            keys = tuple(t)
            tokens.append(("dict", len(keys), keys))
            stack.extend(reversed(t.values()))
        elif t is None:
            tokens.append(NONE)
        elif isinstance(t, tuple) and hasattr(kind, "_fields"):
            tokens.append(("namedtuple", len(t), kind))
            stack.extend(reversed(t))
        elif (spec := _dataclass_fields(kind)) is not None:
            data, meta = spec
            meta_values = tuple(getattr(t, m) for m in meta)
            try:
                hash(meta_values)
            except TypeError:
                raise GraphcError(f"{kind.__name__}: meta fields {meta} must be hashable (they "
                                  "are part of the signature)") from None
            tokens.append(("dataclass", len(data), (kind, data, meta_values)))
            stack.extend(getattr(t, f) for f in reversed(data))
        else:
            leaves.append(t)
            tokens.append(LEAF)
    return leaves, TreeDef(tuple(tokens))


def build_node(tok: tuple, children: list) -> Any:
    """One container of token `tok` (not a leaf or None) holding `children`."""
    kind, _, spec = tok
    if kind == "tuple":
        return tuple(children)
    if kind == "list":
        return children
    if kind == "dict":
        return dict(zip(spec, children))
    if kind == "namedtuple":
        return spec(*children)
    cls, data, meta_values = spec
    fields = dict(zip(data, children))
    fields.update(zip(_DATACLASSES[cls][1], meta_values))
    return cls(**fields)


def unflatten(treedef: TreeDef, leaves) -> Any:
    """The tree of `treedef` with `leaves` in flatten's order."""
    leaves = list(leaves)
    if len(leaves) != treedef.num_leaves:
        raise GraphcError(f"internal: {len(leaves)} leaves for a tree of "
                          f"{treedef.num_leaves}")
    built: list = []        # finished subtrees; the last one is the leftmost child so far
    for tok in reversed(treedef.tokens):
        if tok == LEAF:
            built.append(leaves.pop())
        elif tok == NONE:
            built.append(None)
        else:
            built.append(build_node(tok, [built.pop() for _ in range(tok[1])]))
    return built[0]


def unflattener(treedef: TreeDef) -> Callable[[list], Any]:
    """list -> tree for `treedef`, fast on the per-call path: flat shapes map to tuple/list,
    small trees to nested closures built once (no source code generated), and large or deep
    ones to the iterative `unflatten`."""
    toks = treedef.tokens
    if toks == (LEAF,):
        return _first
    if len(toks) == treedef.num_leaves + 1 and toks[0][0] in ("tuple", "list"):
        return tuple if toks[0][0] == "tuple" else list
    if len(toks) <= SMALL_TREE:
        return _builder(toks)
    return functools.partial(unflatten, treedef)


SMALL_TREE = 64       # tokens: closures nest at most this deep


def _builder(tokens: tuple) -> Callable[[list], Any]:
    """Nested closures for a small treedef (each leaf reads its index of the list)."""
    built: list = []
    n_leaves = tokens.count(LEAF)
    leaf = n_leaves
    for tok in reversed(tokens):
        if tok == LEAF:
            leaf -= 1
            built.append(functools.partial(_leaf_at, leaf))
        elif tok == NONE:
            built.append(_none)
        else:
            children = [built.pop() for _ in range(tok[1])]
            built.append(functools.partial(_node, tok, children))
    return built[0]


def _leaf_at(k: int, leaves: list) -> Any:
    return leaves[k]


def _none(leaves: list) -> None:
    return None


def _node(tok: tuple, children: list, leaves: list) -> Any:
    return build_node(tok, [c(leaves) for c in children])


def _first(leaves: list) -> Any:
    return leaves[0]


def describe(treedef: TreeDef) -> str:
    """A short human description, for error messages."""
    built: list[str] = []
    for tok in reversed(treedef.tokens):
        if tok == LEAF:
            built.append("*")
        elif tok == NONE:
            built.append("None")
        else:
            kind, n, spec = tok
            children = [built.pop() for _ in range(n)]
            if kind == "dict":
                built.append("{" + ", ".join(f"{k!r}: {c}" for k, c in zip(spec, children))
                             + "}")
            elif kind == "list":
                built.append("[" + ", ".join(children) + "]")
            elif kind == "tuple":
                built.append("(" + ", ".join(children) + ("," if n == 1 else "") + ")")
            else:
                cls, names = (spec, spec._fields) if kind == "namedtuple" else spec[:2]
                built.append(f"{cls.__name__}(" + ", ".join(
                    f"{k}={c}" for k, c in zip(names, children)) + ")")
    return built[0]


def leaf_paths(treedef: TreeDef) -> list[str]:
    """Each leaf's path as Python would index it, e.g. `['w1']`, `[0]`, `.bias` (so that an
    argument name followed by the path names the leaf: `params['w1']`)."""
    paths: list[str] = []
    stack: list[tuple[int, str]] = []        # (children still to visit, their path prefix)
    names: list[list[str]] = []              # the path suffix of each pending child
    for tok in treedef.tokens:
        prefix = ""
        if stack:
            stack[-1] = (stack[-1][0] - 1, stack[-1][1])
            prefix = stack[-1][1] + names[-1].pop(0)
        if tok == LEAF:
            paths.append(prefix)
        elif tok != NONE:
            kind, n, spec = tok
            if kind == "dict":
                children = [f"[{k!r}]" for k in spec]
            elif kind == "namedtuple":
                children = [f".{f}" for f in spec._fields]
            elif kind == "dataclass":
                children = [f".{f}" for f in spec[1]]
            else:
                children = [f"[{i}]" for i in range(n)]
            stack.append((n, prefix))
            names.append(children)
        while stack and stack[-1][0] == 0:
            stack.pop()
            names.pop()
    return paths


# ---- the public helpers (as jax.tree_util) ----

def tree_leaves(tree: Any) -> list:
    """The leaves of a pytree, in the order graphc flattens it."""
    return flatten(tree)[0]


def tree_structure(tree: Any) -> TreeDef:
    """The treedef of a pytree (hashable; equal for trees of the same structure)."""
    return flatten(tree)[1]


def tree_map(fn: Callable, tree: Any, *rest: Any) -> Any:
    """fn applied to each leaf of `tree` (and the matching leaves of `rest`, which must have
    the same structure); the results in that structure."""
    leaves, td = flatten(tree)
    others = []
    for other in rest:
        o_leaves, o_td = flatten(other)
        if o_td != td:
            raise GraphcError(f"tree_map: structures differ: {describe(td)} vs "
                              f"{describe(o_td)}")
        others.append(o_leaves)
    return unflatten(td, [fn(*xs) for xs in zip(leaves, *others)])
