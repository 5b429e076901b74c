# Mediacache — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PYTHON VENV

.PHONY: run test test-unit test-host lint format install clean bench replay scale chaos dist

$(VENV)/.installed: pyproject.toml scripts/bootstrap.sh
	./scripts/bootstrap.sh
	@touch $@

install: $(VENV)/.installed

## Run the service on http://127.0.0.1:8000 (PORT=, HOST=) with embedded defaults; the first
## run installs into $(VENV) and writes a development .env (scripts/run_dev.sh).
run: install
	@echo "==> Starting Mediacache (scripts/run_dev.sh)"
	./scripts/run_dev.sh

## Run the test suite against real PostgreSQL, Redis and an S3 endpoint (started if needed),
## then the example host project against the built wheel.
test: install
	$(BIN)/python scripts/ensure_test_services.py
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	./scripts/test_host_project.sh -q

## Only the tests that need no PostgreSQL, Redis or S3 endpoint (tests/unit/), pointed at
## closed ports so that a test reaching for one fails instead of passing by luck.
test-unit: install
	TEST_DATABASE_URL=postgres://nobody@127.0.0.1:9/none TEST_REDIS_URL=redis://127.0.0.1:9/0 \
	  $(BIN)/python -m pytest tests/unit --confcutdir=tests/unit -p no:cacheprovider $(PYTEST_ARGS)

## Only the example host project (examples/hostproject) against the built wheel.
test-host: install
	$(BIN)/python scripts/ensure_test_services.py
	./scripts/test_host_project.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis

## Benchmark the serving path against nginx and the naive design (bench/README.md).
bench: install
	./bench/install.sh
	$(BIN)/python -m bench.run $(BENCH_ARGS)

## Replay a day of chat traffic against Redis budgets of 64/128/256 MB.
replay: install
	./bench/install.sh
	$(BIN)/python -m bench.replay $(REPLAY_ARGS)

## Past one process: 2 replicas x 2 workers behind nginx (deploy/nginx/balancer.conf) and
## the nginx and Varnish edges (deploy/edge/), on PostgreSQL, moto S3 and a private Redis
## (SCALE_ARGS="--topologies standalone,sentinel,cluster,cluster-replicas" for a row each, with
## a master killed under load); one table. SCALE_ARGS=--quick for a smoke run;
## SCALE_ARGS=--edge-only for the edge lines alone; SCALE_ARGS="--database postgres://..."
## for another server.
scale: install
	./bench/install.sh
	$(BIN)/python scripts/ensure_test_services.py
	$(BIN)/python -m bench.scale $(SCALE_ARGS)

## Faults under load: private PostgreSQL, Redis and S3 broken and restored while a load
## generator checks every byte; prints one table (chaos/README.md). SOAK=600 for 10 minutes.
SOAK ?= 60
chaos: install
	$(BIN)/python scripts/ensure_test_services.py
	$(BIN)/python -m chaos.run --soak $(SOAK) $(CHAOS_ARGS)

## The package: sdist and wheel in dist/, checked by twine (metadata, README rendering).
dist: install
	rm -rf dist
	$(BIN)/python -m build --sdist --wheel -o dist .
	$(BIN)/twine check --strict dist/*

## Pin the service's dependencies with their hashes (requirements/service.lock, which the
## Dockerfile installs) from pyproject's [service] extra, with pip-tools in a throwaway venv.
## Local pip settings (extra indexes, wheel folders) are ignored, so the hashes are the
## registry's own; the lock is for Python 3.11 on Linux, like the image. Pins still allowed by
## pyproject.toml are kept; LOCK_ARGS=--upgrade takes the newest releases it allows.
LOCK_VENV ?= /tmp/mediacache-lock-venv
PIP_TOOLS ?= pip-tools==7.6.2
.PHONY: lock
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || \
	  { $(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install -q "$(PIP_TOOLS)"; }
	$(LOCK_VENV)/bin/python -c "import sys; sys.exit(sys.version_info[:2] != (3, 11) and \
	  'make lock needs Python 3.11, as in the image: PYTHON=python3.11 make lock')"
	env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="make lock" \
	  $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --extra service --strip-extras \
	  --allow-unsafe --no-emit-index-url --no-emit-find-links $(LOCK_ARGS) \
	  --output-file requirements/service.lock pyproject.toml
