# The two commands of the README. Each creates .venv if it is missing, installs torch from
# $(TORCH_SPEC) first (a plain "torch" requirement could pull a multi-GB CUDA build), then the
# package. Stamps make a second call with nothing changed skip the installs.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.stamp-run
DEV_STAMP := $(VENV)/.stamp-dev
CHROMIUM_STAMP := $(VENV)/.stamp-chromium
POSTGRES_STAMP := $(VENV)/.stamp-postgres
ARGS ?=

.PHONY: run test lint clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[all]"
	touch $@

$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e ".[all,dev]"
	touch $@

# Browser tests need Debian's chromium; install it where we can (root + apt-get; apt's output
# goes to $(VENV)/apt-chromium.log, one line here), else the tests that need it are skipped with
# a visible reason.
$(CHROMIUM_STAMP): | $(BIN)/python
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests (log: $(VENV)/apt-chromium.log)"; \
	    (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium) \
	      >$(VENV)/apt-chromium.log 2>&1 \
	      || echo "chromium could not be installed (see $(VENV)/apt-chromium.log): browser tests will be skipped"; \
	  else \
	    echo "chromium is not installed (needs root and apt-get): browser tests will be skipped"; \
	  fi; \
	fi
	touch $@

# The store's tests run on SQLite and on a throwaway PostgreSQL server (tests/_postgres.py),
# which needs Debian's postgresql binaries (initdb, postgres); install them where we can (root
# + apt-get; apt's output goes to $(VENV)/apt-postgresql.log), else those tests are skipped
# with a visible reason. The driver, psycopg, comes with the package's [all] extra.
$(POSTGRES_STAMP): | $(BIN)/python
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's postgresql for the store's tests (log: $(VENV)/apt-postgresql.log)"; \
	    (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql) \
	      >$(VENV)/apt-postgresql.log 2>&1 \
	      || echo "postgresql could not be installed (see $(VENV)/apt-postgresql.log): PostgreSQL tests will be skipped"; \
	  else \
	    echo "postgresql is not installed (needs root and apt-get): PostgreSQL tests will be skipped"; \
	  fi; \
	fi
	touch $@

run: $(RUN_STAMP)
	$(BIN)/selfimprove run $(ARGS)

test: $(DEV_STAMP) $(CHROMIUM_STAMP) $(POSTGRES_STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q $(ARGS)

# Benchmarks against Optuna, random search, Ray Tune PBT, ...: JSON in benchmarks/results/ and
# benchmarks/RESULTS.md generated from it. Not part of `make test`.
.PHONY: bench bench-quick
bench: $(DEV_STAMP)
	$(BIN)/python -m benchmarks --mode full $(ARGS)

bench-quick: $(DEV_STAMP)
	$(BIN)/python -m benchmarks --mode quick $(ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check selfimprove tests
	$(BIN)/ruff format --check selfimprove tests
	$(BIN)/mypy

clean-venv:
	rm -rf $(VENV)
