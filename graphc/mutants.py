"""Planted bugs, switched on one at a time by GRAPHC_MUTANT=<name>, to measure the
differential fuzzer (tests/mutants.py, `make mutants`): each must be caught. Test-only: unset,
every site below is the correct code.

The active name is part of the kernel cache key (build.module_key) and of the runner cache's
settings (runtime._LOWERING_ENV), so a mutant build never serves a normal call.
"""

from __future__ import annotations

import os

from .errors import GraphcError

MUTANTS = {
    "add_as_sub": "codegen/elements.py: add's C template renders `-` for `+`",
    "reduce_bound": "codegen/c.py: a fused reduction's innermost loop stops one element early",
    "broadcast_stride": "schedule.py: a broadcast view drops the stride of its last kept dim",
    "arena_reuse": "schedule.py: a dead buffer's arena slot is reused by the kernel that reads "
                   "it last (one kernel too early)",
    "vjp_sign": "ops/elementwise.py: sub's VJP sends +g, not -g, to its second operand",
}


def current() -> str:
    """The active mutant's name, or "" (none)."""
    name = os.environ.get("GRAPHC_MUTANT", "")
    if name and name not in MUTANTS:
        raise GraphcError(f"GRAPHC_MUTANT={name!r}: expected one of {sorted(MUTANTS)}")
    return name


def active(name: str) -> bool:
    return current() == name


def drop_kept_stride(strides: tuple[int, ...], src_shape, shape) -> tuple[int, ...]:
    """broadcast_stride: the last non-broadcast dim of a broadcast (with more than one
    element) reads with stride 0, i.e. repeats its first element (indices stay in bounds)."""
    if not any(d == 1 and s != 1 for d, s in zip(src_shape, shape)):
        return strides
    kept = [k for k, (d, s) in enumerate(zip(src_shape, shape)) if d == s and d > 1]
    if not kept:
        return strides
    return tuple(0 if k == kept[-1] else st for k, st in enumerate(strides))
