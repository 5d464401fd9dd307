"""The pipeline reads one way: no module imports a later stage (graphc.compiler.STAGES),
not even lazily inside a function, and every module has a stage."""

from __future__ import annotations

import ast
from pathlib import Path

from graphc.compiler import STAGES

PACKAGE = Path(__file__).resolve().parent.parent / "graphc"
RANK = {name: rank for rank, (_, names) in enumerate(STAGES) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return "__init__" if parts == ("__init__",) else ".".join(
        parts[:-1] if parts[-1] == "__init__" else parts)


def stage_of(module: str) -> int | None:
    """A module's rank: its own entry, else its package's."""
    while module:
        if module in RANK:
            return RANK[module]
        module = module.rpartition(".")[0]
    return None


def imported_modules(path: Path, module: str) -> set[str]:
    """graphc modules this file imports anywhere in it, named relative to the package."""
    here = [] if module == "__init__" else module.split(".")
    if path.name != "__init__.py":
        here = here[:-1]                    # a plain module's relative imports start beside it
    found = set()
    for node in _executed(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = ".".join(["graphc", *here[:len(here) - node.level + 1]])
            names = ([f"{base}.{node.module}"] if node.module
                     else [f"{base}.{a.name}" for a in node.names])
        elif isinstance(node, ast.ImportFrom):
            names = [node.module]
        else:
            continue
        for name in names:
            if name == "graphc":
                found.add("__init__")
            elif name.startswith("graphc."):
                found.add(name[len("graphc."):])
    return found


def _executed(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (annotations only, never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not (isinstance(child, ast.If) and isinstance(child.test, ast.Name)
                    and child.test.id == "TYPE_CHECKING"):
                stack.append(child)


def test_every_module_has_a_stage():
    missing = [module_name(p) for p in PACKAGE.rglob("*.py")
               if stage_of(module_name(p)) is None]
    assert missing == []


def test_no_stage_imports_a_later_stage():
    later = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        for target in imported_modules(path, module):
            if stage_of(target) is not None and stage_of(target) > stage_of(module):
                later.append(f"{module} ({STAGES[stage_of(module)][0]}) imports {target} "
                             f"({STAGES[stage_of(target)][0]})")
    assert later == []


def test_the_checker_sees_relative_and_lazy_imports(tmp_path):
    """The walk must not miss the imports it exists to catch."""
    pkg = tmp_path / "graphc" / "codegen"
    pkg.mkdir(parents=True)
    f = pkg / "c.py"
    f.write_text("from typing import TYPE_CHECKING\nfrom ..runtime import as_array\n"
                 "if TYPE_CHECKING:\n    from ..show import show\n"
                 "def g():\n    from .. import build\n    from . import tape\n")
    found = imported_modules(f, "codegen.c")
    assert found == {"runtime", "build", "codegen.tape"}
