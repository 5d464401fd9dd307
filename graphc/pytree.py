"""Flatten nested tuples/lists/dicts into leaves and a hashable tree description.

Everything here is iterative, and a treedef is flat (its nodes in preorder), so a tree nested
thousands of levels deep costs no recursion: not here, and not in hashing or comparing
treedefs as cache keys.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from .errors import GraphcError

# Preorder tokens: LEAF, NONE, ("tuple"|"list", n_children), ("dict", sorted_keys).
LEAF = "*"
NONE = "none"


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
    """Leaves in a stable order (dicts by sorted key, like JAX) and the treedef."""
    leaves: list = []
    tokens: list = []
    stack = [tree]
    while stack:
        t = stack.pop()
        kind = type(t)
        if kind is tuple or kind is list:
            tokens.append((kind.__name__, len(t)))
            stack.extend(reversed(t))
        elif kind is dict:
            try:
                keys = tuple(sorted(t))
            except TypeError:
                raise GraphcError(f"dict keys {list(t)!r} cannot be ordered: graphc needs "
                                  "dict keys of one sortable type (e.g. all strings)") from None
            tokens.append(("dict", keys))
            stack.extend(t[k] for k in reversed(keys))
        elif t is None:
            tokens.append(NONE)
        else:
            leaves.append(t)
            tokens.append(LEAF)
    return leaves, TreeDef(tuple(tokens))


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
            kind, spec = tok
            n = len(spec) if kind == "dict" else spec
            children = [built.pop() for _ in range(n)]
            if kind == "dict":
                built.append(dict(zip(spec, children)))
            else:
                built.append(tuple(children) if kind == "tuple" else children)
    return built[0]


def unflattener(treedef: TreeDef) -> Callable[[list], Any]:
    """list -> tree for `treedef`, with direct shortcuts for the common flat shapes."""
    toks = treedef.tokens
    if toks == (LEAF,):
        return _first
    if len(toks) == treedef.num_leaves + 1 and toks[0][0] in ("tuple", "list"):
        return tuple if toks[0][0] == "tuple" else list
    return functools.partial(unflatten, treedef)


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
            kind, spec = tok
            n = len(spec) if kind == "dict" else spec
            children = [built.pop() for _ in range(n)]
            if kind == "dict":
                built.append("{" + ", ".join(f"{k!r}: {c}" for k, c in zip(spec, children))
                             + "}")
            elif kind == "list":
                built.append("[" + ", ".join(children) + "]")
            else:
                built.append("(" + ", ".join(children) + ("," if n == 1 else "") + ")")
    return built[0]
