"""`python -m graphc.demo [digits|seeds|mpi]`: train an MLP on scikit-learn's digits (the
default), print the seeds' worked derivative examples, or (under mpiexec) train the digits MLP
data-parallel over MPI."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    which = argv[0] if argv else "digits"
    if which == "seeds":
        from .seeds import main as run
    elif which == "digits":
        from .digits import main as run
    elif which == "mpi":
        from .mpi_digits import main
        return main(argv[1:])
    else:
        raise SystemExit(f"usage: python -m graphc.demo [digits|seeds|mpi] (got {which!r})")
    run()


main(sys.argv[1:])
