# `make run` and `make test` are all a fresh machine needs: each builds .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/labbot demo

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Every benchmark at full size (minutes of both cores); ENGINE_SCALE=0.02 runs the engine's at 2%
# of its rows, to check that it works (its figures then say nothing about the targets).
bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Replicas on one PostgreSQL under load, one killed mid-run (benchmarks/soak.py); size with
# SOAK_REQUESTS and SOAK_USERS.
soak: $(STAMP)
	$(BIN)/python -m benchmarks soak

clean:
	rm -rf $(VENV) *.egg-info labbot.db
