"""`python -m graphc.demo [digits|seeds]`: train an MLP on scikit-learn's digits (the default),
or print the seeds' worked derivative examples."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    which = argv[0] if argv else "digits"
    if which == "seeds":
        from .seeds import main as run
    elif which == "digits":
        from .digits import main as run
    else:
        raise SystemExit(f"usage: python -m graphc.demo [digits|seeds] (got {which!r})")
    run()


main(sys.argv[1:])
