"""The NaN locator: `debug_nans(True)` (or GRAPHC_DEBUG_NANS=1) makes every compiled call
raise NaNError at the first op whose NaN/Inf its finite inputs did not already hold.

Design: a compiled call whose float outputs are all finite is accepted as it is. Only when an
output holds a NaN or Inf is the call re-run on the numpy reference interpreter
(interpret.py) over the traced graph, which yields every node's value; the nodes are then
scanned in topological order for the first one that turns finite inputs into a non-finite
output (elementwise ops: at an element whose inputs are all finite there; other ops: with
all-finite inputs). Why a re-run, not checks compiled into the kernels:

- off costs nothing: the generated C, its cache key and its hot loops are the same either way
  (a fused kernel keeps most values in registers, where a per-op check would break fusion);
- on costs one finiteness scan of the outputs per call, plus the re-run only on failure;
- the interpreter's nodes are the traced ones, each with the user's file:line (`Node.where`;
  derivative nodes carry their forward op's line and name, see ir.built_for), so the report
  names what the user wrote, in the forward or the backward pass.

A NaN that never reaches an output (masked by `where`) changed no result and is not reported.
In-place updates (train_step) are re-run on copies of the inputs taken before the call.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import NaNError
from .ir import Graph, Node, where_text
from .ops import ALIAS, ELEMENTWISE, MOVEMENT

# {"on": bool}; the per-call fast paths read it directly (a call to enabled() costs more)
STATE = {"on": os.environ.get("GRAPHC_DEBUG_NANS", "0") not in ("", "0")}


def debug_nans(enable: bool = True) -> bool:
    """Turn the NaN locator on or off for every compiled function; returns the previous
    setting (to restore it)."""
    previous = STATE["on"]
    STATE["on"] = bool(enable)
    return previous


def enabled() -> bool:
    return STATE["on"]


def checked_call(run, graph: Graph, leaves: list) -> list:
    """`run(leaves)`, raising NaNError if an op of `graph` made a NaN/Inf of finite inputs."""
    saved = [np.array(x, copy=True) for x in leaves] if graph.aliases else leaves
    outs = run(leaves)
    if all(_finite(o) for o in outs):
        return outs
    locate(graph, saved)
    return outs


def _finite(x) -> bool:
    a = np.asarray(x)
    return a.dtype.kind != "f" or bool(np.isfinite(a).all())


def locate(graph: Graph, inputs: list) -> None:
    """Run `graph` node by node on the numpy interpreter; raise NaNError at the first node
    whose non-finite output its inputs did not already hold (return if there is none)."""
    from .interpret import Interpreter
    values = Interpreter(graph).values(inputs)
    for n in graph.nodes:
        if not n.src or not n.dtype.is_float or n.op.kind in (MOVEMENT, ALIAS):
            continue
        out = np.asarray(values[id(n)])
        bad = ~np.isfinite(out)
        if not bad.any():
            continue
        srcs = [np.asarray(values[id(s)]) for s in n.src]
        if n.op.kind == ELEMENTWISE:
            for s in srcs:
                if s.dtype.kind == "f":
                    bad &= np.isfinite(np.broadcast_to(s, out.shape))
        elif not all(_finite(s) for s in srcs):
            continue
        if bad.any():
            raise NaNError(_message(n, out, srcs, bad))


def _message(n: Node, out: np.ndarray, srcs: list[np.ndarray], bad: np.ndarray) -> str:
    pos = tuple(int(i) for i in np.argwhere(bad)[0]) if out.ndim else ()
    what = "NaN" if np.isnan(out[pos]) else "Inf"
    shown = pos[0] if len(pos) == 1 else pos
    op = n.op.name
    if n.where is not None and len(n.where) > 2:
        op = f"{op} (in the derivative of {n.where[2]})"
    at = f"at {where_text(n.where)}" if n.where is not None else "(source line unknown)"
    lines = [f"{op} {at} gave {what} from finite inputs"
             + (f" at position {shown}" if pos else "")]
    if n.op.kind == ELEMENTWISE:
        args = ", ".join(_number(s[pos] if s.ndim else s) for s in srcs)
        lines[0] += f": {n.op.name}({args}) = {_number(out[pos])}"
    for k, s in enumerate(srcs):
        lines.append(f"  input {k}: {_range(s)}")
    return "\n".join(lines)


def _number(x) -> str:
    return repr(x.item()) if isinstance(x, np.generic | np.ndarray) else repr(x)


def _range(a: np.ndarray) -> str:
    kind = f"{a.dtype}{list(a.shape)}"
    if a.size == 0:
        return f"{kind} (empty)"
    if a.dtype.kind == "b":
        return f"{kind} with {int(a.sum())} true"
    return f"{kind} in [{_number(a.min())}, {_number(a.max())}]"
