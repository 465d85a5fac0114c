# Entry points: `make run` starts the demo server, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test generate lint bench bench-retrieval bench-upstream bench-streams install breaking

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/switchboard serve --demo

# The whole suite, then the API suites again with the shared server on PostgreSQL, then the
# edge's suites on PostgreSQL with the edge as its own process (`serve --grpc-only` + `edge --core`).
test: $(STAMP)
	$(BIN)/python -m pytest
	SWITCHBOARD_TEST_DATABASE=postgresql $(BIN)/python -m pytest tests/grpc tests/http tests/openai_sdk
	SWITCHBOARD_TEST_DATABASE=postgresql SWITCHBOARD_TEST_LAYOUT=split \
		$(BIN)/python -m pytest tests/http tests/openai_sdk

generate: $(STAMP)
	$(BIN)/python protos/generate.py generated

lint: $(STAMP)
	$(BIN)/buf lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy contract launcher server http_edge

bench: $(STAMP)
	$(BIN)/python -m bench

bench-retrieval: $(STAMP)
	$(BIN)/python -m bench.retrieval

# Thousands of paced SSE replies held at once: completed, failed, memory per open stream.
bench-streams: $(STAMP)
	$(BIN)/python -m bench.streams

# Completions against an instant OpenAI-compatible upstream: direct, HTTP edge and gRPC door.
bench-upstream: $(STAMP)
	$(BIN)/python -m bench.upstream

breaking: $(STAMP)
	$(BIN)/buf breaking --against '.git#branch=main'
