# nbapps: `make demo` and `make test` each set up everything they need from a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nbapps-installed

.PHONY: demo test check lint bench venv system-deps clean widgets

venv: $(STAMP)

EXT_SOURCES := extension/package.json extension/yarn.lock $(shell find extension/src extension/style extension/schema -type f 2>/dev/null)

$(STAMP): pyproject.toml $(EXT_SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,postgres,s3]'
	touch $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

## test: install everything (venv, Python deps, PostgreSQL, Chromium) and run the whole suite
test: venv system-deps widgets
	$(BIN)/ruff check nbapps tests benchmarks
	cd extension && ../$(BIN)/jlpm test
	$(BIN)/python -m pytest

## demo: set up, then run the main job on the embedded default
demo: venv widgets
	$(BIN)/python -m nbapps.demo

## widgets: the ipywidgets HTML manager bundle for the review preview (pinned, from npm)
widgets: venv
	$(BIN)/python scripts/widget_embed.py

lint: venv
	$(BIN)/ruff check nbapps tests benchmarks

## check: the edit loop (< 3 min): ruff, then the tests that start no kernel, browser or
## PostgreSQL, without the slowest end-to-end files (CLI subprocesses, whole-server flows,
## security and hostile-input sweeps, lifecycle): `make test` runs them all
CHECK_MARKERS := not kernel and not browser and not slow and not binder and not postgres
CHECK_IGNORE := tests/test_binder.py tests/test_cli_publish_review.py tests/test_cli_validate.py \
	tests/test_server_flows.py tests/test_server_hostile_input.py \
	tests/test_server_lifecycle.py tests/test_server_security.py
check: venv
	$(BIN)/ruff check nbapps tests benchmarks
	$(BIN)/python -m pytest -q -m "$(CHECK_MARKERS)" $(addprefix --ignore=,$(CHECK_IGNORE)) \
		--durations=10

bench: venv
	$(BIN)/python benchmarks/publish.py

clean:
	rm -rf $(VENV) build dist *.egg-info
