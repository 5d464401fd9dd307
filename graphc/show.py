"""Pictures of a function's graph with its values and gradients, as the seeds draw
backpropagation: forward edges carry values, backward edges (in red, pointing back) carry the
gradient each use sends to its source.

`show(fn, *args)` writes a self-contained HTML page (inline SVG, hover for full values, a
toggle between the traced and the optimized graph), or SVG, or DOT text. Rendering uses
Graphviz (the `graphviz` package over the `dot` program); DOT output needs neither.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import numpy as np

from . import pytree
from .autodiff import vjp_nodes
from .capture import leaf_spec, trace_to_graph
from .errors import GraphcError
from .interpret import Interpreter
from .ir import Graph, Node, intern_scope, where_text
from .runtime import paused_gc
from .trace import Tracer, constant

FORMATS = ("html", "svg", "dot")
SMALL = 6                 # nodes with at most this many elements show every value
VANISHING = 1e-7          # a gradient this much smaller than the output's seed (1) vanishes
EXPLODING = 1e7           # and this much larger explodes
_SPARK = "▁▂▃▄▅▆▇█"


def show(fn: Callable, *args, grads: bool = True, optimized: bool = False,
         path: str | None = None, format: str = "html") -> str:  # noqa: A002
    """Draw `fn` at `args`: every node's op, shape, dtype and value; every backward edge's
    gradient (reverse mode from the outputs, each seeded with ones). Writes the picture and
    returns its path. `optimized=True` shows the graph after the passes first (the HTML page
    holds both, with a toggle)."""
    if format not in FORMATS:
        raise GraphcError(f"show: format {format!r}: expected one of {FORMATS}")
    with paused_gc():
        traced, _ = trace_to_graph(fn, args, named_after=fn)
        leaves = [x for x in pytree.flatten(args)[0] if leaf_spec(x)[0] != "static"]
        views = {"traced": traced, "optimized": _optimized(traced)}
        dots = {name: to_dot(g, leaves, grads) for name, g in views.items()}
    first = "optimized" if optimized else "traced"
    name = getattr(fn, "__name__", "fn").strip("<>") or "fn"
    if format == "dot":
        return _write(dots[first], path, name, "dot")
    svgs = {k: render_svg(v) for k, v in dots.items()}
    if format == "svg":
        return _write(svgs[first], path, name, "svg")
    return _write(_page(name, svgs, first), path, name, "html")


def _optimized(graph: Graph) -> Graph:
    from .passes import optimize
    return optimize(graph)


# ---- values and gradients ----

def node_values(graph: Graph, leaves: list) -> dict[int, np.ndarray]:
    """Every node's value at these inputs, by the numpy reference backend."""
    return Interpreter(graph).values(leaves)


def edge_gradients(graph: Graph, leaves: list) -> tuple[dict, dict]:
    """(per edge (id(user), id(source)): the gradient that use sends back, per node: its total
    gradient), by reverse mode from every float output seeded with ones."""
    contributions: list[tuple[Node, Node, Tracer]] = []
    with intern_scope():
        outs = [o for o in graph.outputs if o.dtype.is_float]
        seeds = [Tracer(constant(1, o.dtype, o.shape)) for o in outs]
        wrt = [n for n in graph.inputs if n.dtype.is_float]
        vjp_nodes(outs, seeds, wrt, on_edge=lambda n, s, r: contributions.append((n, s, r)))
        flow = Graph(graph.inputs, [r.node for _, _, r in contributions], name=graph.name)
    values = Interpreter(flow).values(leaves) if contributions else {}
    per_edge, per_node = {}, {}
    for (n, s, r) in contributions:
        g = values[id(r.node)]
        per_edge[(id(n), id(s))] = g
        per_node[id(s)] = per_node[id(s)] + g if id(s) in per_node else g
    for o in outs:
        per_node.setdefault(id(o), np.ones(o.shape, o.dtype.np))
    return per_edge, per_node


# ---- DOT ----

def to_dot(graph: Graph, leaves: list, grads: bool = True) -> str:
    """Graphviz DOT of the graph with values on the forward edges and gradients on the
    backward ones (the picture `show` renders)."""
    values = node_values(graph, leaves)
    per_edge, per_node = edge_gradients(graph, leaves) if grads else ({}, {})
    shown = graph.labels()
    groups = kernel_groups(graph)
    rankdir = "LR" if len(graph.nodes) <= 12 else "TB"     # long chains read downwards
    out = ["digraph graphc {", f"  rankdir={rankdir}; nodesep=0.3; ranksep=0.4;",
           '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica",'
           ' fontsize=11];', '  edge [fontname="Helvetica", fontsize=10];']
    ids = {id(n): f"n{k}" for k, n in enumerate(graph.nodes)}
    for k, (title, members) in enumerate(groups):
        out.append(f'  subgraph cluster_{k} {{ label="{_esc(title)}"; style=dashed; '
                   'color="#7a7a7a"; fontsize=10;')
        out.extend(f"    {ids[id(n)]};" for n in members if id(n) in ids)
        out.append("  }")
    for n in graph.nodes:
        attrs = _node_attrs(n, shown[id(n)], values.get(id(n)), per_node.get(id(n)))
        out.append(f"  {ids[id(n)]} [{attrs}];")
    for n in graph.nodes:
        for s in dict.fromkeys(n.src):          # one forward edge per distinct source
            out.append(f"  {ids[id(s)]} -> {ids[id(n)]} [{_value_edge(values.get(id(s)))}];")
            g = per_edge.get((id(n), id(s)))
            if g is not None:
                out.append(f"  {ids[id(n)]} -> {ids[id(s)]} [{_grad_edge(g)}];")
    for k, o in enumerate(graph.outputs):
        out.append(f'  out{k} [label="output {k}", shape=ellipse, fillcolor="#e8e8e8"];')
        out.append(f"  {ids[id(o)]} -> out{k} [{_value_edge(values.get(id(o)))}];")
        if grads and o.dtype.is_float:
            out.append(f"  out{k} -> {ids[id(o)]} [{_grad_edge(np.ones(o.shape))}];")
    out.append("}")
    return "\n".join(out)


def kernel_groups(graph: Graph) -> list[tuple[str, list[Node]]]:
    """The C kernels the graph lowers to, as (title, nodes) for clusters (only groups of two
    or more nodes are drawn as a cluster)."""
    from .passes import enabled
    from .schedule import schedule
    if not enabled("fuse"):
        return []
    kernels = schedule(graph, fuse=True).kernels
    groups = []
    for k, kern in enumerate(kernels):
        if kern.fused is not None and len(kern.fused.nodes) > 1:
            groups.append((f"C kernel {k}: one fused loop over {list(kern.shape)}",
                           list(kern.fused.nodes)))
    return groups


def _node_attrs(n: Node, label: str, value, grad) -> str:
    title = label if n.op.name == "input" else n.op.name
    if n.op.name == "const":
        title = "const"
    lines = [f"<b>{_esc(title)}</b>", f"{n.dtype.short}[{','.join(map(str, n.shape))}]"]
    if value is not None:
        lines.append(_esc(summary(value)))
    if n.where is not None and n.op.name != "input":
        lines.append(f'<font point-size="8" color="#777777">{_esc(where_text(n.where))}</font>')
    fill = "#cfe3ff" if n.op.name == "input" else "white"
    if value is not None and _nonfinite(value):
        fill = "#ffb3b3"
    health = gradient_health(grad)
    if health == "vanishing":
        fill = "#fff2b3"
    elif health == "exploding":
        fill = "#e6ccff"
    tip = f"{label} = {n.op.name}: {full_text(value)}"
    if grad is not None:
        tip += f"\ngradient: {full_text(grad)}" + (f" ({health})" if health else "")
    return (f'label=<{"<br/>".join(lines)}>, fillcolor="{fill}", tooltip="{_esc(tip)}", '
            f'id="{_esc(label)}"')


def _value_edge(value) -> str:
    if value is None:
        return ""
    return f'label="{_esc(summary(value, short=True))}", color="#333333"'


def _grad_edge(g) -> str:
    health = gradient_health(g)
    color = {"vanishing": "#d4a000", "exploding": "#8e44ad"}.get(health, "#d62728")
    return (f'label="{_esc(summary(g, short=True))}", color="{color}", fontcolor="{color}", '
            'style=dashed, constraint=false, class="grad"')


# ---- text for values ----

def summary(value, short: bool = False) -> str:
    """Small arrays in full; larger ones as min/mean/max and a sparkline histogram."""
    a = np.asarray(value)
    if a.size <= (1 if short else SMALL):
        flat = a.reshape(-1)
        text = ", ".join(_num(v) for v in flat)
        return text if a.ndim == 0 else f"[{text}]"
    if a.size == 0:
        return "[]"
    if a.dtype == bool:
        return f"{int(a.sum())}/{a.size} true"
    finite = a[np.isfinite(a)] if a.dtype.kind == "f" else a
    if finite.size == 0:
        return f"{a.size} non-finite"
    stats = f"{_num(finite.min())}..{_num(finite.max())} mean {_num(finite.mean())}"
    return stats if short else f"{stats}\n{sparkline(finite)}"


def sparkline(a: np.ndarray, bins: int = 8) -> str:
    counts, _ = np.histogram(np.asarray(a, np.float64), bins=bins)
    top = counts.max() or 1
    return "".join(_SPARK[min(len(_SPARK) - 1, int(c * len(_SPARK) / (top + 1)))]
                   for c in counts)


def full_text(value) -> str:
    if value is None:
        return "(not computed)"
    return np.array2string(np.asarray(value), threshold=200, precision=6, separator=", ")


def _num(v) -> str:
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _nonfinite(value) -> bool:
    a = np.asarray(value)
    return a.dtype.kind == "f" and not np.isfinite(a).all()


def gradient_health(g) -> str:
    """'' or 'vanishing' (every |g| below VANISHING, not all exactly 0) or 'exploding'."""
    if g is None:
        return ""
    a = np.abs(np.asarray(g, np.float64))
    if a.size == 0 or not np.isfinite(a).all():
        return ""
    top = a.max()
    if 0 < top < VANISHING:
        return "vanishing"
    if top > EXPLODING:
        return "exploding"
    return ""


def _esc(text: str) -> str:
    import html  # here, not at the top: `import graphc` skips html.entities' table
    return html.escape(str(text), quote=True).replace("\n", "&#10;")


# ---- rendering and files ----

def render_svg(dot: str) -> str:
    """SVG text of DOT, by Graphviz; a clear GraphcError if its `dot` program is missing."""
    try:
        import graphviz
    except ImportError:
        raise GraphcError("show: the `graphviz` Python package is missing: pip install "
                          "'graphc[show]' (format='dot' works without it)") from None
    try:
        return graphviz.Source(dot).pipe(format="svg", encoding="utf-8")
    except graphviz.ExecutableNotFound:
        raise GraphcError("show: Graphviz's `dot` program is not installed: apt-get install "
                          "graphviz (Debian/Ubuntu) or brew install graphviz (macOS); "
                          "format='dot' works without it") from None


def _page(name: str, svgs: dict[str, str], first: str) -> str:
    body = []
    for view, svg in svgs.items():
        svg = svg[svg.index("<svg"):]          # drop the XML prolog and doctype
        hidden = "" if view == first else " hidden"
        body.append(f'<div class="view" id="view-{view}"{hidden}>{svg}</div>')
    return _PAGE.format(name=_esc(name), first=first, views="\n".join(body))


def _write(text: str, path: str | None, name: str, ext: str) -> str:
    if path is None:
        import tempfile  # not on a warm start's path
        folder = os.path.join(tempfile.gettempdir(), "graphc-show")
        os.makedirs(folder, exist_ok=True)
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        path = os.path.join(folder, f"{name}-{digest}.{ext}")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return os.path.abspath(path)


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>graphc: {name}</title>
<style>
body {{ font-family: Helvetica, Arial, sans-serif; margin: 1em; }}
header {{ display: flex; gap: 1em; align-items: center; margin-bottom: .5em; }}
button {{ font-size: 14px; padding: .3em .8em; }}
.legend span {{ margin-right: 1.2em; font-size: 13px; }}
.view {{ overflow: auto; }}
</style></head>
<body>
<header><strong>graphc: {name}</strong>
<button id="toggle">show the other graph</button> <span id="which">{first}</span></header>
<div class="legend"><span>black edges: values (forward)</span>
<span style="color:#d62728">red dashed: gradients (backward)</span>
<span style="background:#ffb3b3">NaN/Inf</span> <span style="background:#fff2b3">vanishing
gradient</span> <span style="background:#e6ccff">exploding gradient</span>
<span>hover a node for its full values</span></div>
{views}
<script>
document.getElementById("toggle").addEventListener("click", function () {{
  var views = document.querySelectorAll(".view");
  views.forEach(function (v) {{ v.hidden = !v.hidden; }});
  var shown = document.querySelector(".view:not([hidden])");
  document.getElementById("which").textContent = shown.id.replace("view-", "");
}});
</script>
</body></html>
"""
