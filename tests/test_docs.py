"""The API reference in docs/ covers every public name, and every public name has a
docstring."""

import pathlib
import re

import graphc

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"


def _documented() -> set[str]:
    text = "\n".join(p.read_text() for p in DOCS.glob("*.md"))
    names = set(re.findall(r"`(?:graphc\.)?([A-Za-z_][\w.]*)\(", text))
    names |= set(re.findall(r"### `graphc\.([\w.]+)", text))
    return names


def test_every_public_name_is_in_the_api_reference():
    documented = _documented()
    missing = sorted(n for n in graphc.__all__ if n not in documented)
    assert not missing, f"not documented in docs/: {missing}"


def test_every_public_name_has_a_docstring():
    missing = [n for n in graphc.__all__
               if not n.startswith("__") and not (getattr(graphc, n).__doc__ or "").strip()]
    assert not missing, f"no docstring: {missing}"


def test_the_readme_links_to_docs_in_the_repository():
    readme = (DOCS.parent / "README.md").read_text()
    assert "docs/API.md" in readme
    assert "../shared" not in readme
