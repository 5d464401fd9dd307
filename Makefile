# The README's two commands: `make demo` and `make test`. Each creates its own venv in .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-numpy lint bench clean fuzz soak

$(PY):
	$(PYTHON) -m venv $(VENV)

demo: $(PY)
	$(PY) -m pip install -q -e .
	$(PY) -m graphc.demo

# The full suite on the default C backend, then the API-level suites on the numpy reference
# backend (so both backends pass the same outside tests).
test: $(PY)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pytest -q
	GRAPHC_BACKEND=numpy $(PY) -m pytest -q tests/test_seeds.py tests/test_api_transforms.py \
		tests/test_api_pytrees.py tests/test_api_errors.py

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

lint: $(PY)
	$(PY) -m ruff check graphc tests bench

bench: $(PY)
	$(PY) -m pip install -q -e '.[test]'
	taskset -c 0 $(PY) -m pytest -q bench --benchmark-only

clean:
	rm -rf $(VENV) build *.egg-info graphc/*.so
