"""The single source of graphc's version (pyproject reads it; the kernel cache keys on it)."""

__version__ = "0.1.0"
