# The README's two commands: `make demo` and `make test`. Each creates its own venv in .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

demo: $(PY)
	$(PY) -m pip install -q -e .
	$(PY) -m graphc.demo

test: $(PY)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pytest -q

lint: $(PY)
	$(PY) -m ruff check graphc tests bench

clean:
	rm -rf $(VENV) build *.egg-info graphc/*.so
