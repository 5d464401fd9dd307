"""`python -m graphc <command>`: `show` (a picture of a function's graph), `explain` (what
the compiler did with it), `cache info` and `cache clear`.

Each command is a subparser with a `run` function. Functions are named `module:function`
(the module imported from the current directory or sys.path) and their arguments given as
a Python expression (`--args "np.ones(3), 2.0"`, with `np` imported).
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


def _target(spec: str):
    """The function named by `module:function` (a dotted attribute path after the colon)."""
    import importlib
    import os

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"expected module:function, got {spec!r}")
    sys.path.insert(0, os.getcwd())
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _arguments(text: str) -> tuple:
    import numpy

    value = eval(text, {"np": numpy, "numpy": numpy})  # noqa: S307  (the user's own command)
    return value if isinstance(value, tuple) else (value,)


def _show(args: argparse.Namespace) -> int:
    from graphc.show import show

    path = show(_target(args.function), *_arguments(args.args), grads=not args.no_grads,
                optimized=args.optimized, path=args.output, format=args.format)
    print(path)
    return 0


def _explain(args: argparse.Namespace) -> int:
    import graphc

    fn = _target(args.function)
    compiled = fn if isinstance(fn, graphc.CompiledFunction) else graphc.compile(fn)
    print(compiled.explain(*_arguments(args.args)))
    return 0


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m graphc", description="graphc commands")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    show = commands.add_parser("show", help="draw a function's graph with values and "
                               "gradients; prints the file's path")
    show.add_argument("function", help="module:function")
    show.add_argument("--args", default="()", help='the arguments, e.g. "np.ones(3), 2.0"')
    show.add_argument("--format", default="html", choices=("html", "svg", "dot"))
    show.add_argument("--optimized", action="store_true", help="the optimized graph first")
    show.add_argument("--no-grads", action="store_true", help="values only")
    show.add_argument("-o", "--output", default=None, help="where to write (default: a "
                      "temporary file)")
    show.set_defaults(run=_show)

    explain = commands.add_parser("explain", help="what the compiler did with a function")
    explain.add_argument("function", help="module:function")
    explain.add_argument("--args", default="()", help='the arguments, e.g. "np.ones(3), 2.0"')
    explain.set_defaults(run=_explain)

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
