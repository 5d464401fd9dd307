"""One kernel cache for the whole test session (and across sessions on this machine)."""

import os
import tempfile

import numpy as np
import pytest

os.environ.setdefault("GRAPHC_VERIFY", "1")     # full IR verification of every traced graph
os.environ.setdefault(
    "GRAPHC_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"graphc-test-cache-{os.getuid()}"))
# one build per kernel: tiered builds (the default) would add a quick one to each; the tiers'
# tests turn them on (test_build_cache.py)
os.environ.setdefault("GRAPHC_TIERED", "0")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one worker per core already fills the machine: more threads per worker would only wait
    # for one another (tests/test_threads.py sets its own counts)
    os.environ.setdefault("GRAPHC_NUM_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("GRAPHC_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: set GRAPHC_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _order_independent_data(request):
    """A module that declares `RNG_SEED` gets a fresh `rng` for each test: a test's inputs are
    then the ones it gets when run alone, whatever ran before it on its xdist worker (with one
    stream per module, they depended on how `-n 2` happened to split the module's tests)."""
    seed = getattr(request.module, "RNG_SEED", None)
    if seed is not None:
        request.module.rng = np.random.default_rng(seed)
