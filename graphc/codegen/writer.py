"""CWriter: C text with scoped indentation (`with w.block("for (...)"):` emits the braces)."""

from __future__ import annotations

from contextlib import contextmanager


class CWriter:
    def __init__(self, indent: str = "    "):
        self.lines: list[str] = []
        self._depth = 0
        self._indent = indent

    def line(self, text: str = "") -> None:
        self.lines.append(self._indent * self._depth + text if text else "")

    def open(self, head: str) -> None:
        """Start a braced scope that a later close() ends (for scopes opened in loops)."""
        self.line(head + " {")
        self._depth += 1

    def close(self, count: int = 1) -> None:
        for _ in range(count):
            self._depth -= 1
            self.line("}")

    @contextmanager
    def block(self, head: str):
        self.open(head)
        try:
            yield
        finally:
            self.close()

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def __len__(self) -> int:
        return len(self.lines)
