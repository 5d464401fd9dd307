"""The fuzzer's oracles against planted bugs (graphc/mutants.py). `make mutants` runs the full
hunt (search, then shrink) per mutant in a subprocess; here each mutant's shrunk program from
that run must fail with the bug and pass without it, cheaply, and the shrinker is checked on
its own."""

import numpy as np
import pytest
from fuzzgen import Program, replay, shrink
from mutants import ORACLES
from test_fuzz import _check

import graphc
from graphc.mutants import MUTANTS

# the programs `make mutants` shrank each catch to (inputs, steps, seed are its whole state)
CAUGHT = {
    "add_as_sub": Program(inputs=(((), "c"),), steps=(("abs", (0,), None),), seed=0),
    "reduce_bound": Program(inputs=(((1,), "c"),), steps=(
        ("reshape", (0,), (1, 1)), ("broadcast_to", (1,), (1, 3))), seed=4504),
    "broadcast_stride": Program(inputs=(((1, 1, 2), "c"),), steps=(
        ("broadcast_to", (0,), (3, 3, 2)),), seed=537),
    "arena_reuse": Program(inputs=(((1,), "c"), ((), "c"), ((1,), "c")), steps=(
        ("cast", (2,), "I"), ("cast", (1,), "I"), ("reshape", (4,), (1,)), ("add", (3, 5), None)),
        seed=1437),
    "vjp_sign": Program(inputs=(((1, 1), "c"),), steps=(("sub", (0, 0), None),), seed=1025),
}


def _check_program(program):
    with np.errstate(all="ignore"):
        _check([program], ORACLES)


def test_every_mutant_has_a_caught_program():
    assert set(CAUGHT) == set(MUTANTS)


@pytest.mark.parametrize("name", sorted(CAUGHT))
def test_the_oracles_catch_the_mutant(name, monkeypatch):
    program = CAUGHT[name]
    assert len(program.steps) <= 4
    monkeypatch.setenv("GRAPHC_VERIFY", "0")       # the values must show it, not the verifier
    _check_program(program)                         # the real code passes
    monkeypatch.setenv("GRAPHC_MUTANT", name)
    with pytest.raises(AssertionError, match="C vs numpy backend|finite differences"):
        _check_program(program)


def test_an_unknown_mutant_is_refused(monkeypatch):
    monkeypatch.setenv("GRAPHC_MUTANT", "no_such_bug")
    with pytest.raises(graphc.GraphcError, match="GRAPHC_MUTANT='no_such_bug'"):
        graphc.compile(lambda x: x + 1.0)(np.ones(2))


def test_the_mutant_is_part_of_the_kernel_cache_key(monkeypatch):
    from graphc.build import module_key
    plain = module_key("int x;", "")
    monkeypatch.setenv("GRAPHC_MUTANT", "add_as_sub")
    assert module_key("int x;", "") != plain
    monkeypatch.delenv("GRAPHC_MUTANT")
    assert module_key("int x;", "") == plain


def test_shrink_keeps_the_failure_and_drops_the_rest():
    big = Program(inputs=(((2, 3), "fortran"), ((3,), "strided")), steps=(
        ("exp", (0,), None), ("reshape", (1,), (1, 3)), ("broadcast_to", (3,), (2, 3)),
        ("sub", (2, 4), None), ("sin", (5,), None), ("neg", (0,), None),
        ("mul", (6, 7), None)), seed=3)
    assert replay(big) is not None

    def has_sub(p):
        return any(name == "sub" for name, _, _ in p.steps)
    small, tries = shrink(big, has_sub)
    assert [name for name, _, _ in small.steps] == ["sub"]
    assert replay(small) is not None and tries > 0
    assert all(layout == "c" for _, layout in small.inputs)
