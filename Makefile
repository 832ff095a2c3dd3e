# streetnode — the two README commands, plus benchmarks.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test lint bench clean

# pip's output goes to $(VENV)/pip.log and is shown only when pip fails
QUIET_PIP = $(PIP) --disable-pip-version-check --no-input install --quiet

$(VENV)/bin/python:
	@echo "make: setting up $(VENV) (first run only, about a minute)..."
	@$(PYTHON) -m venv $(VENV)
	@$(QUIET_PIP) --upgrade pip >$(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }

$(VENV)/.installed-dev: $(VENV)/bin/python pyproject.toml
	@echo "make: installing streetnode and its dependencies into $(VENV) (pip; log in $(VENV)/pip.log)..."
	@$(QUIET_PIP) -e '.[dev,central]' >$(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@touch $@
	@echo "make: $(VENV) ready"

# make demo: emulated hardware, embedded central, the storm scenario (#6)
demo: $(VENV)/.installed-dev
	$(VENV)/bin/streetnode demo

# make test: ruff + the whole pytest suite
test: $(VENV)/.installed-dev
	sh deploy/ci-deps.sh
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed-dev
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
