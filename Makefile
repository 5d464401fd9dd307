# The README's two commands: `make demo` and `make test`. Both share one venv in .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-mpi test-numpy lint bench clean system-deps

$(PY):
	$(PYTHON) -m venv $(VENV)

# Graphviz's `dot` draws graphc.show's pictures: installed when missing and apt-get can (as
# root); otherwise a note (show(format="dot") works without it).
system-deps:
	@command -v dot >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
		apt-get install -y -q graphviz >/dev/null 2>&1; } || \
		echo "note: install Graphviz (dot) to render graphc.show pictures"

demo: $(PY)
	$(PY) -m pip install -q -e '.[demo]'
	$(PY) -m graphc.demo

# The full suite on the default C backend, then the API-level suites on the numpy reference
# backend (so both backends pass the same outside tests).
test: $(PY) system-deps
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pytest -q
	GRAPHC_BACKEND=numpy $(PY) -m pytest -q tests/test_seeds.py tests/test_api_transforms.py \
		tests/test_api_pytrees.py tests/test_api_errors.py

# The MPI tests alone, with the mpi extra (mpi4py, MPICH's mpiexec) installed; `make test`
# runs them too wherever mpi4py and mpiexec are installed, and skips them (saying why) otherwise.
test-mpi: $(PY)
	$(PY) -m pip install -q -e '.[test,mpi]'
	$(PY) -m pytest -q tests/test_distributed.py

lint: $(PY)
	$(PY) -m ruff check graphc tests bench

# Every workload against every installed peer in one run on one pinned core; QUICK=1 for a
# short run (fewer rounds, no torch.compile, W7 at 1,000 ops). Writes bench/RESULTS.md's
# side-by-side section and bench/peers.png.
bench: $(PY)
	$(PY) -m pip install -q -e '.[test,bench]'
	GRAPHC_BENCH_QUICK=$(QUICK) taskset -c 0 $(PY) -m pytest -q -p no:cacheprovider \
		bench/bench_peers.py --benchmark-only --benchmark-json=bench/.peers.json
	$(PY) -m bench.report bench/.peers.json --command "make bench$(if $(QUICK), QUICK=1)"

clean:
	rm -rf $(VENV) build *.egg-info graphc/*.so
