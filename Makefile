# streetnode — the two README commands, plus benchmarks.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test lint bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed-dev: $(VENV)/bin/python pyproject.toml
	$(PIP) install --quiet -e '.[dev,central]'
	touch $@

# make demo: emulated hardware, embedded central, the storm scenario (#6)
demo: $(VENV)/.installed-dev
	$(VENV)/bin/streetnode demo

# make test: ruff + the whole pytest suite
test: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed-dev
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
