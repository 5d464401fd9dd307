# The README's two commands: `make demo` and `make test`. Each creates its own venv in .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-numpy lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

demo: $(PY)
	$(PY) -m pip install -q -e '.[demo]'
	$(PY) -m graphc.demo

# The full suite on the default C backend, then the API-level suites on the numpy reference
# backend (so both backends pass the same outside tests).
test: $(PY)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pytest -q
	GRAPHC_BACKEND=numpy $(PY) -m pytest -q tests/test_seeds.py tests/test_api_transforms.py \
		tests/test_api_pytrees.py tests/test_api_errors.py

lint: $(PY)
	$(PY) -m ruff check graphc tests bench

bench: $(PY)
	$(PY) -m pip install -q -e '.[test]'
	taskset -c 0 $(PY) -m pytest -q bench --benchmark-only

clean:
	rm -rf $(VENV) build *.egg-info graphc/*.so
