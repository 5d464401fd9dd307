# The README's two commands: `make demo` and `make test`. Both share one venv in .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-mpi test-numpy lint bench clean system-deps fuzz soak mutants sanitize

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
# backend (so both backends pass the same outside tests). One pytest worker per core
# (pytest-xdist); the workers share one kernel cache, which is safe across processes.
test: $(PY) system-deps
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pytest -q -n auto
	GRAPHC_BACKEND=numpy $(PY) -m pytest -q -n auto tests/test_seeds.py tests/test_api_transforms.py \
		tests/test_api_pytrees.py tests/test_api_errors.py

# The MPI tests alone, with the mpi extra (mpi4py, MPICH's mpiexec) installed; `make test`
# runs them too wherever mpi4py and mpiexec are installed, and skips them (saying why) otherwise.
test-mpi: $(PY)
	$(PY) -m pip install -q -e '.[test,mpi]'
	$(PY) -m pytest -q tests/test_distributed.py

# Long campaigns (issue 14): `make fuzz N=20000` runs the differential fuzzer with every
# oracle on every program; `make soak` the slow cache races, leak and 2^31-element runs.
N ?= 20000
fuzz: $(PY)
	$(PY) -m pip install -q -e '.[test]'
	FUZZ_EXAMPLES=$(N) FUZZ_ALL_ORACLES=1 $(PY) -m pytest -q tests/test_fuzz.py

soak: $(PY)
	$(PY) -m pip install -q -e '.[test]'
	GRAPHC_SLOW=1 $(PY) -m pytest -q -s tests/test_leaks.py tests/test_build_cache.py \
		tests/test_bad_inputs.py

# Mutation check of the fuzzer: each bug of graphc/mutants.py, in its own process, must be
# caught within 300 programs and shrunk to <= 4 ops ("5/5 caught").
mutants: $(PY)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) tests/mutants.py

# Generated C under ASan + UBSan (GRAPHC_SANITIZE=1, graphc/sanitize.py): the op suite and
# SANITIZE_N fuzz programs (their C against the numpy backend, 25 per build); any report aborts
# the run (pytest -s, so the report reaches the terminal). The instrumented kernels need the
# ASan runtime preloaded into the (uninstrumented) Python.
SANITIZE_N ?= 2000
sanitize: $(PY)
	$(PY) -m pip install -q -e '.[test]'
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
		UBSAN_OPTIONS=print_stacktrace=1 GRAPHC_SANITIZE=1 FUZZ_EXAMPLES=$(SANITIZE_N) \
		FUZZ_ORACLES=c FUZZ_BATCH=25 $(PY) -m pytest -q -s -x -p no:cacheprovider tests/test_ops.py \
		tests/test_fuzz.py tests/test_bounds.py tests/test_sanitize.py

lint: $(PY)
	$(PY) -m ruff check graphc tests bench

# Every workload against every installed peer in one run on one pinned core; QUICK=1 for a
# short run (under 5 minutes: fewer rounds, a step over 0.5 s once, no torch.compile, no W7 at
# 10,000 ops, jax.jit's W7 only if its first result fits 40 s of CPU: see
# bench/first_result_budget.py; the report lists what was left out). W7 also reports first
# result + 10,000 evaluations, in both loss forms. Then W3
# and W5 (the machine's limits) again on two pinned cores with every implementation given two
# threads. Writes bench/RESULTS.md's side-by-side section and bench/peers.png. jax keeps its
# compiled programs in bench/.cache/jax, as graphc keeps its kernels in its own cache: first
# results are those of a machine where the bench ran before (W6 measures empty caches).
threads = GRAPHC_BENCH_THREADS=$(1) GRAPHC_NUM_THREADS=$(1) OPENBLAS_NUM_THREADS=$(1) \
	OMP_NUM_THREADS=$(1)
BENCH_ENV = JAX_COMPILATION_CACHE_DIR=bench/.cache/jax GRAPHC_BENCH_QUICK=$(QUICK)
BENCH_RUN = $(PY) -m pytest -q -p no:cacheprovider bench/bench_peers.py --benchmark-only \
	--durations=10
bench: $(PY)
	$(PY) -m pip install -q -e '.[test,bench]'
	$(BENCH_ENV) $(call threads,1) taskset -c 0 $(BENCH_RUN) --benchmark-json=bench/.peers.json
	$(BENCH_ENV) GRAPHC_BENCH_WORKLOADS=W3,W5 $(call threads,2) taskset -c 0,1 $(BENCH_RUN) \
		--benchmark-json=bench/.peers-2threads.json
	$(PY) -m bench.report bench/.peers.json bench/.peers-2threads.json \
		--command "make bench$(if $(QUICK), QUICK=1)"

clean:
	rm -rf $(VENV) build *.egg-info graphc/*.so
