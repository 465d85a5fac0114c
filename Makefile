# Entry points: `make run` starts the demo server, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test generate lint bench install breaking

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/switchboard serve --demo

test: $(STAMP)
	$(BIN)/python -m pytest

generate: $(STAMP)
	$(BIN)/python protos/generate.py generated

lint: $(STAMP)
	$(BIN)/buf lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy server http_edge

bench: $(STAMP)
	$(BIN)/python -m bench

breaking: $(STAMP)
	$(BIN)/buf breaking --against '.git#branch=main'
