"""Flatten nested tuples/lists/dicts into leaves and a hashable tree description."""

from __future__ import annotations

from typing import Any

from .errors import GraphcError

# A treedef is a hashable nested tuple: ("*",) for a leaf, ("tuple"|"list", children),
# ("dict", keys, children), ("none",) for None.
LEAF = ("*",)
NONE = ("none",)


def flatten(tree: Any) -> tuple[list, tuple]:
    """Leaves in a stable order (dicts by sorted key, like JAX) and the treedef."""
    leaves: list = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree: Any, leaves: list) -> tuple:
    t = type(tree)
    if t is tuple or t is list:
        return (t.__name__, tuple(_flatten(c, leaves) for c in tree))
    if t is dict:
        try:
            keys = tuple(sorted(tree))
        except TypeError:
            raise GraphcError(f"dict keys {list(tree)!r} cannot be ordered: graphc needs "
                              "dict keys of one sortable type (e.g. all strings)") from None
        return ("dict", keys, tuple(_flatten(tree[k], leaves) for k in keys))
    if tree is None:
        return NONE
    leaves.append(tree)
    return LEAF


def unflatten(treedef: tuple, leaves) -> Any:
    it = iter(leaves)
    out = _unflatten(treedef, it)
    return out


def _unflatten(td: tuple, it) -> Any:
    kind = td[0]
    if kind == "*":
        return next(it)
    if kind == "none":
        return None
    if kind == "dict":
        return {k: _unflatten(c, it) for k, c in zip(td[1], td[2])}
    children = [_unflatten(c, it) for c in td[1]]
    return tuple(children) if kind == "tuple" else children



def describe(treedef: tuple) -> str:
    """A short human description, for error messages."""
    kind = treedef[0]
    if kind == "*":
        return "*"
    if kind == "none":
        return "None"
    if kind == "dict":
        items = (f"{k!r}: {describe(c)}" for k, c in zip(treedef[1], treedef[2]))
        return "{" + ", ".join(items) + "}"
    inner = ", ".join(describe(c) for c in treedef[1])
    return f"({inner},)" if kind == "tuple" and len(treedef[1]) == 1 else (
        f"({inner})" if kind == "tuple" else f"[{inner}]")


def unflattener(treedef: tuple):
    """A function list -> tree specialised to `treedef` (the per-call path avoids recursion)."""
    keys: list = []
    counter = iter(range(1 << 62))

    def expr(td: tuple) -> str:
        kind = td[0]
        if kind == "*":
            return f"o[{next(counter)}]"
        if kind == "none":
            return "None"
        if kind == "dict":
            items = []
            for k, c in zip(td[1], td[2]):
                keys.append(k)
                items.append(f"K[{len(keys) - 1}]: {expr(c)}")
            return "{" + ", ".join(items) + "}"
        inner = ", ".join(expr(c) for c in td[1])
        if kind == "list":
            return f"[{inner}]"
        return f"({inner},)" if inner else "()"

    body = expr(treedef)
    return eval(f"lambda o: {body}", {"K": keys})  # noqa: S307  (built from the treedef only)
