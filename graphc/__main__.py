"""`python -m graphc <command>`: maintenance commands (today: `cache info`, `cache clear`).

Each command is a subparser with a `run` function, so `explain` or `bench` can be added later
without touching the others.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cache_info(args: argparse.Namespace) -> int:
    from graphc.build import cache_info

    info = cache_info()
    print(f"path:    {info['path']}")
    print(f"entries: {info['entries']}")
    print(f"size:    {_human(info['bytes'])} ({info['bytes']} bytes)")
    return 0


def _cache_clear(args: argparse.Namespace) -> int:
    from graphc.build import cache_clear, cache_dir

    removed = cache_clear()
    print(f"removed {removed} entries from {cache_dir()}")
    return 0


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m graphc", description="graphc maintenance")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    cache = commands.add_parser("cache", help="inspect or clear the compiled-kernel cache")
    actions = cache.add_subparsers(dest="action", required=True, metavar="action")
    actions.add_parser("info", help="print path, entry count and size").set_defaults(
        run=_cache_info)
    actions.add_parser("clear", help="remove every cached kernel").set_defaults(run=_cache_clear)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]) and run the chosen command; returns the exit code."""
    args = _parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
