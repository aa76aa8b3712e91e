# nbapps: `make demo` and `make test` each set up everything they need from a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nbapps-installed

.PHONY: demo test lint bench venv system-deps clean

venv: $(STAMP)

EXT_SOURCES := extension/package.json extension/yarn.lock $(shell find extension/src extension/style extension/schema -type f 2>/dev/null)

$(STAMP): pyproject.toml $(EXT_SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,postgres]'
	touch $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

## test: install everything (venv, Python deps, PostgreSQL, Chromium) and run the whole suite
test: venv system-deps
	$(BIN)/ruff check nbapps tests benchmarks
	cd extension && ../$(BIN)/jlpm test
	$(BIN)/python -m pytest

## demo: set up, then run the main job on the embedded default
demo: venv
	$(BIN)/python -m nbapps.demo

lint: venv
	$(BIN)/ruff check nbapps tests benchmarks

bench: venv
	$(BIN)/python benchmarks/publish.py

clean:
	rm -rf $(VENV) build dist *.egg-info
