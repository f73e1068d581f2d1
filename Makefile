# Quick start: `make demo` trains a model offline and prints its live URL; `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
export TRAINBOT_TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

.PHONY: demo test lint typecheck bench system services clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(INSTALLED)

system:
	scripts/install-system-packages

services:
	scripts/ensure-services

demo: $(INSTALLED)
	-scripts/install-system-packages bubblewrap
	$(BIN)/trainbot run --name demo --dataset iris

test: $(INSTALLED) system services lint typecheck
	$(BIN)/pytest

lint: $(INSTALLED)
	$(BIN)/ruff check bot pipeline storage tests bench
	$(BIN)/ruff format --check bot pipeline storage tests bench

typecheck: $(INSTALLED)
	$(BIN)/mypy bot pipeline storage

bench: $(INSTALLED)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .trainbot trainbot.db*
