# The two commands of the README's quick start, and the pieces they are made of.
# Each target installs what it needs first; re-running does only what changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint typecheck pytest clean

# The main job: a short real experiment (embedded database, service, Prometheus when installed, a headless fleet),
# its report in .fleetbed/runs/latest/report.html.
run: $(INSTALLED)
	$(BIN)/fleetbed experiment --devices 200 --duration 60s --out .fleetbed/runs/latest

# Everything CI checks: formatting, lint, types, the test suite.
test: lint typecheck pytest

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,fast]'
	touch $@

lint: $(INSTALLED)
	$(BIN)/ruff format --check app tests locustfiles bench monitoring
	$(BIN)/ruff check app tests locustfiles bench monitoring

typecheck: $(INSTALLED)
	$(BIN)/mypy

pytest: $(INSTALLED)
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tests/timescaledb/node_modules
