# The two commands of the README. Each creates .venv if it is missing, installs torch from
# $(TORCH_SPEC) first (a plain "torch" requirement could pull a multi-GB CUDA build), then the
# package. Stamps make a second call with nothing changed skip the installs.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.stamp-run
DEV_STAMP := $(VENV)/.stamp-dev
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

run: $(RUN_STAMP)
	$(BIN)/selfimprove run $(ARGS)

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check selfimprove tests
	$(BIN)/ruff format --check selfimprove tests
	$(BIN)/mypy

clean-venv:
	rm -rf $(VENV)
