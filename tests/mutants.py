"""Mutation check of the differential fuzzer (`make mutants`): each planted bug of
graphc/mutants.py, in a subprocess of its own, must be caught by the fuzzer's oracles within
BUDGET programs and shrunk (fuzzgen.shrink) to at most MAX_OPS steps.

    python tests/mutants.py [NAME ...]     report every mutant (or those named): "5/5 caught"
    python tests/mutants.py --one NAME     one hunt (run with GRAPHC_MUTANT=NAME), JSON out

The hunt walks the same derandomized program stream as tests/test_fuzz.py in batches, with the
oracles that need one C build per batch ("c": C against the numpy backend, "fd": finite
differences). GRAPHC_VERIFY is off, so the memory-plan verifier cannot catch the arena mutant
before the values do: the oracles alone must.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUDGET = int(os.environ.get("MUTANT_BUDGET", "300"))
MAX_OPS = 4
KEEP = 5                # failing programs collected before shrinking
ORACLES = ("c", "fd")
WHAT = ("C vs", "finite", "Mismatched", "Max absolute")      # the informative lines


def _fails(check, program) -> str | None:
    """The failure message of `check([program])`, or None if it passes (or is rejected)."""
    import numpy as np
    from hypothesis.errors import UnsatisfiedAssumption
    try:
        with np.errstate(all="ignore"):
            check([program])
    except UnsatisfiedAssumption:
        return None
    except Exception as exc:        # noqa: BLE001  (a wrong value, or a crash: both caught)
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        named = [ln for ln in lines if ln.startswith(WHAT)]
        return f"{type(exc).__name__}: {' / '.join((lines[:1] + named[:1]) or [''])}"
    return None


def hunt(name: str, budget: int = BUDGET) -> dict:
    """Search the program stream for failures under the active mutant (up to KEEP of them,
    within `budget` programs), then shrink them in the order found until one is at most
    MAX_OPS steps (greedy shrinking can stop in a local minimum; another failure of the
    same bug often shrinks further); the smallest is reported."""
    sys.path.insert(0, str(HERE))
    import fuzzgen
    import test_fuzz
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    def check(batch):
        test_fuzz._check(batch, ORACLES)

    def caught(program) -> bool:
        """Fails with the mutant and passes without it (not a false alarm of an oracle)."""
        if _fails(check, program) is None:
            return False
        with test_fuzz.env(GRAPHC_MUTANT=""):
            return _fails(check, program) is None

    found: list = []        # (programs seen before it + 1, program)
    seen = [0]

    @settings(max_examples=max(1, budget // test_fuzz.BATCH), derandomize=True, database=None,
              deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.lists(fuzzgen.programs(), min_size=test_fuzz.BATCH, max_size=test_fuzz.BATCH))
    def search(batch):
        if len(found) < KEEP and _fails(check, batch) is not None:
            found.extend((seen[0] + k + 1, p) for k, p in enumerate(batch) if caught(p))
        seen[0] += len(batch)

    start = time.time()
    search()
    if not found:
        return {"mutant": name, "caught": False, "examples": seen[0],
                "seconds": round(time.time() - start, 1)}
    best, tries = None, 0
    for _, program in found:
        small, n = fuzzgen.shrink(program, caught)
        tries += n
        if best is None or len(small.steps) < len(best[1].steps):
            best = (program, small)
        if len(small.steps) <= MAX_OPS:
            break
    message = _fails(check, best[1])
    with test_fuzz.env(GRAPHC_MUTANT=""):
        clean = _fails(check, best[1])           # the shrunk program passes without the bug
    return {"mutant": name, "caught": True, "examples": found[0][0], "failures": len(found),
            "ops_found": len(best[0].steps), "ops": len(best[1].steps),
            "shrink_tries": tries, "passes_unmutated": clean is None, "message": message,
            "program": str(best[1]), "seconds": round(time.time() - start, 1)}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:
        print(json.dumps(hunt(argv[1])))
        return 0
    sys.path.insert(0, str(HERE.parent))
    from graphc.mutants import MUTANTS
    names = argv or list(MUTANTS)
    ok = 0
    for name in names:
        env = dict(os.environ, GRAPHC_MUTANT=name, GRAPHC_VERIFY="0")
        proc = subprocess.run([sys.executable, __file__, "--one", name], env=env,
                              capture_output=True, text=True)
        try:
            r = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            print(f"{name}: the hunt crashed (exit {proc.returncode})\n{proc.stderr[-2000:]}")
            continue
        good = r["caught"] and r["ops"] <= MAX_OPS and r["passes_unmutated"] and \
            r["examples"] <= BUDGET if r["caught"] else False
        ok += good
        if r["caught"]:
            print(f"{name}: caught after {r['examples']} programs ({r['failures']} failures "
                  f"kept), shrunk from {r['ops_found']} to {r['ops']} ops in "
                  f"{r['shrink_tries']} tries "
                  f"({r['seconds']} s; passes unmutated: {r['passes_unmutated']})\n"
                  f"    {r['message'][:160]}\n    {r['program']}")
        else:
            print(f"{name}: NOT caught in {r['examples']} programs ({r['seconds']} s)")
    print(f"{ok}/{len(names)} caught (within {BUDGET} programs, shrunk to <= {MAX_OPS} ops)")
    return 0 if ok == len(names) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
