# Mediacache — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PYTHON VENV

.PHONY: run test lint format install clean

$(VENV)/.installed: pyproject.toml scripts/bootstrap.sh
	./scripts/bootstrap.sh
	@touch $@

install: $(VENV)/.installed

## Run the service on http://127.0.0.1:8000 with embedded defaults.
run: install
	./scripts/run_dev.sh

## Run the test suite against real PostgreSQL, Redis and an S3 endpoint (started if needed).
test: install
	$(BIN)/python scripts/ensure_test_services.py
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
