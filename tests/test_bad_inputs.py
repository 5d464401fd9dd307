"""The bad-inputs catalogue (tests/bad_inputs_cases.py), run in child processes so that a
crash shows: each case raises its documented error with a message naming the op and the
values at fault, or (layouts, zero-size dims) gives the right result; none crashes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bad_inputs_cases import CASES, SLOW

import graphc

HERE = Path(__file__).resolve().parent
IDS = [c.id for c in CASES if os.environ.get("GRAPHC_SLOW") or c.id not in SLOW]


def run_in_children(ids: list[str]) -> dict[str, dict]:
    """One child runs the cases in order; if it dies, the case it had started is recorded as
    a crash and a new child goes on with the rest."""
    results: dict[str, dict] = {}
    todo = list(ids)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
    while todo:
        done = subprocess.run([sys.executable, str(HERE / "bad_inputs_cases.py"), *todo],
                              capture_output=True, text=True, env=env, timeout=900)
        started = None
        for line in done.stdout.splitlines():
            record = json.loads(line)
            if "start" in record:
                started = record["start"]
            else:
                results[record["id"]] = record
                started = None
        if started is not None:
            results[started] = {"id": started, "crash": done.returncode,
                                "stderr": done.stderr[-2000:]}
        elif done.returncode != 0:
            raise AssertionError(f"the case runner failed: {done.stderr[-2000:]}")
        todo = [i for i in todo if i not in results]
    return results


@pytest.fixture(scope="module")
def results() -> dict[str, dict]:
    return run_in_children(IDS)


def test_catalogue_size():
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", [c for c in CASES if c.id in IDS], ids=lambda c: c.id)
def test_bad_input(case, results):
    got = results[case.id]
    assert "crash" not in got, f"{case.id} crashed the interpreter ({got['crash']}): " \
        f"{got['stderr']}"
    if case.error is None:
        assert got["raised"] is None, f"{got['raised']}: {got.get('message')}"
        return
    errors = case.error if isinstance(case.error, tuple) else (case.error,)
    assert got["raised"] is not None, "no error raised"
    assert any(e.__name__ in got["mro"] for e in errors), f"{got['raised']}: {got['message']}"
    assert re.search(case.pattern, got["message"]), got["message"]
    assert issubclass(getattr(graphc, got["raised"], Exception), Exception)


def test_crash_detector_sees_a_crash(tmp_path):
    """A case that kills its interpreter is reported as a crash, and the cases after it run."""
    import bad_inputs_cases
    assert bad_inputs_cases.main      # the runner's entry point
    script = tmp_path / "bad_inputs_cases.py"
    script.write_text(
        "import json, os, sys\n"
        "for i in sys.argv[1:]:\n"
        "    print(json.dumps({'start': i}), flush=True)\n"
        "    if i == 'boom':\n"
        "        os.abort()\n"
        "    print(json.dumps({'id': i, 'raised': None}), flush=True)\n")
    global HERE
    saved, HERE = HERE, tmp_path
    try:
        got = run_in_children(["a", "boom", "b"])
    finally:
        HERE = saved
    assert got["a"]["raised"] is None and got["b"]["raised"] is None
    assert got["boom"]["crash"] != 0
