"""The call plan of one built signature: a straight-line Python function, written once per
signature, that checks a call's arguments against that signature and, when they match exactly,
runs it and returns the output tree; otherwise (another signature, keyword arguments, the NaN
locator on) it passes the call on to the general path (flatten, signature key, conversions,
retrace of a new signature). The plan is the compiled function's call itself: no Python frame
runs before it.

A match is decided without building a key: per argument leaf a type test and, for arrays,
shape, dtype and C-contiguity; per container its type, length (and a dict's keys in order).
Only arguments that need no conversion match, so the plan passes them to C as they are.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import pytree
from .nans import STATE as NANS

MISS = object()     # returned by a train step's guard whose signature the batch does not have
GENERAL = "return general(*args, **kwargs)"     # what a plan runs on a miss: the general path

MAX_TOKENS = 256    # larger argument or output trees keep the general path
MAX_DEPTH = 32      # and so do output trees nested deeper
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def make_plan(in_treedef: pytree.TreeDef, specs: list, out_treedef: pytree.TreeDef, runner,
              general: Callable, weak_outputs=()) -> Callable | None:
    """`plan(*args, **kwargs) -> outputs` for the signature (in_treedef, specs) of a function
    whose positional arguments are all dynamic, calling `general(*args, **kwargs)` for any
    other call; None where the arguments or outputs are of a form the plan does not write
    (dataclasses, very large trees)."""
    if len(in_treedef.tokens) > MAX_TOKENS or len(out_treedef.tokens) > MAX_TOKENS:
        return None
    fast = _fast_plan(in_treedef, specs, out_treedef, runner, general, weak_outputs)
    if fast is not None:
        return fast
    ns = {**guard_namespace(), "NANS": NANS, "general": general}
    guard = _guard(in_treedef, specs, ns)
    if guard is None:
        return None
    lines, leaves = guard
    dynamic = [(name, kind) for name, kind, spec in leaves if spec[0] != "static"]
    names = [name for name, _ in dynamic]
    emit = getattr(runner, "emit", None)
    if emit is not None:
        exact = {k for k, (_, kind) in enumerate(dynamic) if kind is not None}
        body, outs = emit(ns, names, exact=exact, python=set(weak_outputs))
    else:                          # the numpy interpreter: its own call, then the scalars
        ns["RUN"] = runner
        body = [f"    outs = RUN([{', '.join(names)}])"]
        outs = [f"outs[{j}].item()" if j in weak_outputs else f"outs[{j}]"
                for j in range(out_treedef.num_leaves)]
    result = _tree_expr(out_treedef, outs, ns)
    if result is None:
        return None
    src = ["def plan(*args, **kwargs):", "    if kwargs or NANS['on']:", f"        {GENERAL}",
           *lines, *body, f"    return {result}"]
    exec("\n".join(src), ns)  # noqa: S102  (source built from this signature only)
    return ns["plan"]


def _fast_plan(in_treedef: pytree.TreeDef, specs: list, out_treedef: pytree.TreeDef, runner,
               general: Callable, weak_outputs) -> Callable | None:
    """The plan in C (the runner's fast_call, csrc/fastcall.c) where the arguments are leaves
    (no container) of the kinds it takes ('f' a Python float, 'i' a Python int, 'a' an array
    of the spec's shape and dtype) and the outputs are in tuples, lists and Nones; None
    otherwise."""
    fast_call = getattr(runner, "fast_call", None)
    tokens = in_treedef.tokens
    if (fast_call is None or tokens[0][0] != "tuple"
            or any(tok != pytree.LEAF for tok in tokens[1:])):
        return None
    tree = _tree_codes(out_treedef)
    if tree is None:
        return None
    kinds = "".join("a" if len(spec) <= 2 else "f" if spec[1].is_float else "i"
                    for spec in specs)
    return fast_call(general, kinds, tree, set(weak_outputs))


def _tree_codes(treedef: pytree.TreeDef) -> tuple[int, ...] | None:
    """The output tree as csrc/fastcall.c reads it (preorder: -1 a leaf, -2 None, 2n a tuple
    of n, 2n + 1 a list of n), or None for other containers or a tree deeper than MAX_DEPTH."""
    codes, open_ = [], []      # children still to come per enclosing container
    for tok in treedef.tokens:
        if tok in (pytree.LEAF, pytree.NONE):
            codes.append(-1 if tok == pytree.LEAF else -2)
        elif tok[0] in ("tuple", "list"):
            codes.append(2 * tok[1] + (tok[0] == "list"))
        else:
            return None
        if open_:
            open_[-1] -= 1
        if tok not in (pytree.LEAF, pytree.NONE) and tok[1]:
            open_.append(tok[1])
            if len(open_) > MAX_DEPTH:      # (finished containers counted until popped)
                return None
        while open_ and open_[-1] == 0:
            open_.pop()
    return tuple(codes)


def guard_namespace() -> dict:
    """The globals the generated tests read (a plan's, or a train step's)."""
    return {"MISS": MISS, "ndarray": np.ndarray, "LO": INT64_MIN, "HI": INT64_MAX}


def _unpack_or_miss(names: list[str], value: str, miss: str = "return MISS") -> list[str]:
    """Lines that unpack `value` into `names`, running `miss` if its length differs."""
    return ["    try:", f"        {', '.join(names)}, = {value}",
            "    except ValueError:", f"        {miss}"]


def flat_guard(example: tuple, ns: dict) -> list[str]:
    """Lines that unpack the tuple `batch` into b0, b1, ... and return MISS unless each has
    the form of example's entry as C takes it: a Python float, an int in int64's range, or
    an array of its shape and dtype in C order."""
    names = [f"b{k}" for k in range(len(example))]
    if not names:
        return ["    if batch:", "        return MISS"]
    tests = [_exact_test(name, type(b), k, ns, getattr(b, "shape", None),
                         getattr(b, "dtype", None))
             for k, (b, name) in enumerate(zip(example, names))]
    return [*_unpack_or_miss(names, "batch"), f"    if {' or '.join(tests)}:",
            "        return MISS"]


def _guard(treedef: pytree.TreeDef, specs: list, ns: dict):
    """(lines that pass the call on to the general path unless `args` has this structure
    and these leaf specs, [(leaf variable, its kind, its spec)]), or None for a structure
    not written here. A leaf's kind is the exact type it was checked to be. Tests that
    follow each other share one `if`."""
    lines: list[str] = []
    tests: list[str] = []
    leaves: list[tuple[str, type | None, tuple]] = []
    stack = ["args"]
    count = 0

    def unpack(children: list[str], value: str) -> None:
        if tests:
            lines.append(f"    if {' or '.join(tests)}: {GENERAL}")
            tests.clear()
        if children:
            lines.append(f"    {', '.join(children)}, = {value}")

    for pos, tok in enumerate(treedef.tokens):
        var = stack.pop()
        if tok == pytree.LEAF:
            spec = specs[len(leaves)]
            test, kind = _leaf_test(var, spec, len(leaves), ns)
            tests.append(test)
            leaves.append((var, kind, spec))
            continue
        if tok == pytree.NONE:
            tests.append(f"{var} is not None")
            continue
        kind, n, spec = tok
        if kind == "dataclass":
            return None
        children = [f"x{count + i}" for i in range(n)]
        count += n
        if pos == 0:            # the argument tuple itself: unpacking checks its length
            if children:
                lines += _unpack_or_miss(children, "args", GENERAL)
            else:
                tests.append("args")
        elif kind == "dict":
            ns[f"K{pos}"] = spec
            tests.append(f"type({var}) is not dict or tuple({var}) != K{pos}")
            unpack(children, f"{var}.values()")
        else:
            ns[f"N{pos}"] = {"tuple": tuple, "list": list}.get(kind, spec)
            tests.append(f"type({var}) is not N{pos} or len({var}) != {n}")
            unpack(children, var)
        stack.extend(reversed(children))
    unpack([], "")
    return lines, leaves


def _leaf_test(var: str, spec: tuple, k: int, ns: dict) -> tuple[str, type | None]:
    """The test that fails unless leaf `var` has `spec` in the form C takes as it is, and
    the type it then has."""
    if spec[0] == "static":                 # a bool: its value is part of the signature
        return f"{var} is not {spec[1]!r}", None
    kind = (float if spec[1].is_float else int) if len(spec) > 2 else np.ndarray  # weak: Python
    return _exact_test(var, kind, k, ns, spec[0], spec[1].np), kind


def _exact_test(var: str, kind: type, k: int, ns: dict, shape=None, dtype=None) -> str:
    """The test that fails unless `var` is of type `kind` (a Python float, an int in int64's
    range, or an ndarray of this shape and dtype in C order)."""
    if kind is float:
        return f"type({var}) is not float"
    if kind is int:
        return f"type({var}) is not int or not LO <= {var} <= HI"
    ns[f"S{k}_"], ns[f"D{k}_"] = shape, dtype
    return (f"type({var}) is not ndarray or {var}.shape != S{k}_ or {var}.dtype is not D{k}_ "
            f"or not {var}.flags.c_contiguous")


def _tree_expr(treedef: pytree.TreeDef, outs: list[str], ns: dict) -> str | None:
    """A Python expression building the output tree from the outputs' expressions (None for
    a tree nested deeper than MAX_DEPTH: the parser's limit is near 200)."""
    built: list[str] = []
    depths: list[int] = []
    leaf = len(outs)
    for pos, tok in reversed(list(enumerate(treedef.tokens))):
        if tok == pytree.LEAF:
            leaf -= 1
            built.append(outs[leaf])
            depths.append(0)
            continue
        if tok == pytree.NONE:
            built.append("None")
            depths.append(0)
            continue
        kind, n, spec = tok
        children = [built.pop() for _ in range(n)]
        depths.append(1 + max([depths.pop() for _ in range(n)], default=0))
        if depths[-1] > MAX_DEPTH:
            return None
        if kind == "tuple":
            built.append(f"({', '.join(children)}{',' if n == 1 else ''})")
        elif kind == "list":
            built.append(f"[{', '.join(children)}]")
        else:                               # dicts, namedtuples, dataclasses: as unflatten
            ns[f"B{pos}"], ns["build"] = tok, pytree.build_node
            built.append(f"build(B{pos}, [{', '.join(children)}])")
    return built[0]
