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

# In parallel (docs/testing.md): one pytest-xdist worker more than there are cores, since
# part of the suite waits on subprocesses and servers; each worker starts its own PostgreSQL, and
# one that finishes its share takes tests from another's (worksteal). `make test WORKERS=0`, or
# `$(BIN)/pytest -n 0 ...`, runs in one process, to debug.
WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

# Bytecode is cached (in the gitignored __pycache__/) even where PYTHONDONTWRITEBYTECODE is set:
# otherwise every worker and every `labbot` subprocess the tests start compiles the sources again,
# and pytest rewrites every test module's asserts again in every worker.
test: $(STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/pytest -n $(WORKERS) --dist worksteal

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
