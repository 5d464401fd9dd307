"""graphc.show: pictures with values on forward edges and gradients on backward edges."""

import html
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import graphc
from graphc.show import gradient_health, sparkline, summary

HAS_DOT = shutil.which("dot") is not None
SVG = "{http://www.w3.org/2000/svg}"


def seeds_example(x, y):
    z = x * y
    return z + 1


def _edges(svg_text: str) -> dict[tuple[str, str], list[str]]:
    """(tail title, head title) -> edge label texts, from Graphviz's SVG."""
    root = ET.fromstring(svg_text[svg_text.index("<svg"):])
    ids = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "node":
            ids[g.find(f"{SVG}title").text] = g
    edges: dict = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class", "").startswith("edge"):
            tail, head = g.find(f"{SVG}title").text.split("->")
            texts = [t.text for t in g.iter(f"{SVG}text")]
            edges.setdefault((tail, head), []).append(
                (texts, "grad" in g.get("class", "")))
    return edges


def _node_names(dot: str) -> dict[str, str]:
    """dot id (n0) -> the first line of its label (argument name or op)."""
    return {m.group(1): m.group(2) for m in re.finditer(r"(n\d+) \[label=<<b>([^<]*)</b>", dot)}


def test_the_seeds_example_has_its_values_and_gradients_on_the_right_edges(tmp_path):
    dot = open(graphc.show(seeds_example, 2.0, 3.0, format="dot",
                           path=str(tmp_path / "g.dot"))).read()
    names = {v: k for k, v in _node_names(dot).items()}
    x, y, mul, add = names["x"], names["y"], names["mul"], names["add"]
    forward = dict(re.findall(r"(n\d+ -> n\d+|n\d+ -> out0) \[label=\"([^\"]*)\", color=\"#333",
                              dot))
    backward = dict(re.findall(r"(n\d+ -> n\d+|out0 -> n\d+) \[label=\"([^\"]*)\", color=\"#d6",
                               dot))
    assert forward[f"{x} -> {mul}"] == "2" and forward[f"{y} -> {mul}"] == "3"
    assert forward[f"{mul} -> {add}"] == "6" and forward[f"{add} -> out0"] == "7"
    assert backward[f"{mul} -> {x}"] == "3" and backward[f"{mul} -> {y}"] == "2"
    assert backward[f"{add} -> {mul}"] == "1" and backward[f"out0 -> {add}"] == "1"
    if not HAS_DOT:
        with pytest.raises(graphc.GraphcError, match="apt-get install graphviz"):
            graphc.show(seeds_example, 2.0, 3.0, format="svg")
        return
    svg = open(graphc.show(seeds_example, 2.0, 3.0, format="svg",
                           path=str(tmp_path / "g.svg"))).read()
    edges = _edges(svg)
    assert (["2"], False) in edges[(x, mul)] and (["3"], False) in edges[(y, mul)]
    assert (["3"], True) in edges[(mul, x)] and (["2"], True) in edges[(mul, y)]
    assert (["6"], False) in edges[(mul, add)] and (["1"], True) in edges[(add, mul)]
    assert (["7"], False) in edges[(add, "out0")] and (["1"], True) in edges[("out0", add)]


def test_an_mlp_step_renders_traced_and_optimized(tmp_path):
    rng = np.random.default_rng(0)
    params = {"w1": rng.standard_normal((4, 8)), "b1": np.zeros(8),
              "w2": rng.standard_normal((8, 1)), "b2": np.zeros(1)}
    x, y = rng.standard_normal((16, 4)), rng.standard_normal((16, 1))

    def loss(params, x, y):
        h = graphc.relu(x @ params["w1"] + params["b1"])
        return graphc.mean((h @ params["w2"] + params["b2"] - y) ** 2)

    dot = open(graphc.show(loss, params, x, y, format="dot", path=str(tmp_path / "m.dot"),
                           optimized=True)).read()
    assert html.escape("params['w1']") in dot and "<b>where</b>" in dot and "<b>matmul</b>" in dot
    assert " mean " in dot                             # large nodes summarized
    assert "subgraph cluster_" in dot and "C kernel" in dot     # fused kernels as clusters
    if not HAS_DOT:
        return
    page = open(graphc.show(loss, params, x, y, path=str(tmp_path / "m.html"))).read()
    assert page.count("<svg") == 2 and 'id="view-traced"' in page
    assert 'id="view-optimized" hidden' in page
    assert "http" not in page.split("<svg", 1)[0].replace("http://www.w3.org", "")
    assert "test_show.py:" in page                    # nodes carry their source lines


def test_nan_and_vanishing_gradients_are_highlighted(tmp_path):
    dot = open(graphc.show(lambda x: graphc.log(x) * 0 + graphc.sqrt(x), np.array([-1.0, 4.0]),
                           format="dot", path=str(tmp_path / "n.dot"))).read()
    assert "#ffb3b3" in dot                            # NaN in log(-1)

    def deep(x):
        for _ in range(20):
            x = graphc.sigmoid(x)
        return x

    dot = open(graphc.show(deep, 0.5, format="dot", path=str(tmp_path / "d.dot"))).read()
    assert "#fff2b3" in dot                            # vanishing near the input
    assert gradient_health(np.array([1e-9, -2e-8])) == "vanishing"
    assert gradient_health(np.array([1e9])) == "exploding"
    assert gradient_health(np.zeros(3)) == "" and gradient_health(np.ones(2)) == ""


def test_value_summaries():
    assert summary(np.array(2.0)) == "2"
    assert summary(np.array([1.0, 2.5])) == "[1, 2.5]"
    big = np.linspace(0, 1, 100)
    text = summary(big)
    assert text.startswith("0..1 mean 0.5") and len(text.splitlines()[1]) == 8
    assert len(sparkline(big)) == 8
    assert summary(np.array([np.nan] * 10)) == "10 non-finite"


def test_the_command_writes_the_page(tmp_path):
    (tmp_path / "seedmod.py").write_text("def loss(x, y):\n    return x * y + 1\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    fmt = "html" if HAS_DOT else "dot"
    out = subprocess.run([sys.executable, "-m", "graphc", "show", "seedmod:loss", "--args",
                          "2.0, 3.0", "--format", fmt, "-o", str(tmp_path / f"p.{fmt}")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    path = out.stdout.strip()
    assert path.endswith(f"p.{fmt}") and os.path.getsize(path) > 200
    out = subprocess.run([sys.executable, "-m", "graphc", "explain", "seedmod:loss", "--args",
                          "2.0, 3.0"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "graph loss(x: f64[], y: f64[])" in out.stdout and "seedmod.py:2" in out.stdout


def test_grad_report_finds_the_vanishing_layers():
    def deep(params, x):
        for k in range(20):
            x = graphc.sigmoid(params[f"w{k:02d}"] * x)
        return x.sum()

    params = {f"w{k:02d}": np.full(3, 1.0) for k in range(20)}
    report = graphc.grad_report(deep, params, np.linspace(-1, 1, 3))
    flags = [s.flag for s in report.stats]
    assert flags[0] == "vanishing" and flags[-1] == ""
    assert report.stats[0].grad_norm < 1e-10 < report.stats[-1].grad_norm
    assert "params['w00']" in str(report)

    def dead(params, x):
        return graphc.relu(x @ params["w"] - 100.0).sum()

    r = graphc.grad_report(dead, {"w": np.ones((2, 3))}, np.ones((4, 2)))
    assert r.stats[0].flag == "dead" and r.stats[0].zero_fraction == 1.0


@pytest.mark.browser
def test_the_page_opens_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None or not HAS_DOT:
        pytest.skip("needs chromium and Graphviz (apt-get install chromium graphviz)")
    page = graphc.show(seeds_example, 2.0, 3.0, path=str(tmp_path / "s.html"))
    shot = tmp_path / "s.png"
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr", "--v=0", f"--screenshot={shot}",
            "--window-size=900,500", f"file://{page}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 5000, out.stderr[-2000:]
    console = [ln for ln in out.stderr.splitlines() if "CONSOLE" in ln and "Error" in ln]
    assert not console, console
    dom = subprocess.run(args[:-3] + ["--dump-dom", f"file://{page}"], capture_output=True,
                         text=True, timeout=120).stdout
    assert "<svg" in dom and "mul" in dom
