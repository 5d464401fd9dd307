"""One element of a node as a C expression, from the op's own template (shared by the
straight-line, fused and tape lowerings)."""

from __future__ import annotations

from .. import dtypes, mutants
from ..ir import Node
from ..schedule import Kernel


def node_template(n: Node) -> str:
    op = n.op
    src_dt = n.src[0].dtype if n.src else n.dtype
    if op.name == "where":
        src_dt = n.src[1].dtype
    c = op.c
    if isinstance(c, dict):
        c = c.get(src_dt.kind) or c.get("i" if src_dt.kind == "b" else "f")
    if op.name == "cast" and n.dtype is dtypes.bool_:
        c = "({0} != 0)"
    if op.name == "add" and mutants.active("add_as_sub"):
        c = "({0} - {1})"
    return c


def node_expr(n: Node, operands: list[str], pos: str = "0", site: int = 0,
              in_range: bool = False) -> str:
    """One element of an elementwise node given its operands' C expressions ({arg} is the
    node's static arg; ops that may fail also get the element's flat position {pos} and
    their check {site} number). `in_range`: the op's kernel without its argument clamps
    (OpDef.c_in_range), for arguments proven within its range."""
    f = "f" if n.src[0].dtype is dtypes.float32 else ""
    template = n.op.c_in_range[0] if in_range else node_template(n)
    expr = template.format(*operands, f=f, T=n.dtype.c, arg=n.arg, pos=pos, site=site)
    if n.dtype is dtypes.bool_ and n.src[0].dtype is dtypes.bool_ and n.op.name != "where":
        return f"({expr} != 0)"    # bools are unsigned char: True + True must stay 1, as numpy
    return expr


def src_dtypes(k: Kernel) -> list[dtypes.DType]:
    """The dtype each source view of a kernel is read as."""
    if k.kind == "copy":
        return [k.node.dtype]
    return [s.dtype for s in k.node.src]


def element_expr(k: Kernel, operands: list[str], pos: str = "0", site: int = 0) -> str:
    """One element of an elementwise or copy kernel, from the op's C template."""
    if k.kind == "copy":
        return operands[0]
    return node_expr(k.node, operands, pos, site)
