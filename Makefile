# Two entry points for a fresh machine: `make test` and `make demo`.
# Each creates .venv and installs the lock: every package at an exact version with its hashes,
# darwin itself on top without resolving anything (README, "Installs are pinned").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
DEV_LOCK := requirements/dev-lock.txt
RUNTIME_STAMP := $(VENV)/.installed-lock
DEV_STAMP := $(VENV)/.installed-dev-lock
LATEST := .venv-latest
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

# pip-compile's options for both locks; torch is held at the CPU build by constraints.txt.
COMPILE := $(BIN)/pip-compile --quiet --upgrade --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-find-links --no-emit-index-url --constraint constraints.txt

.PHONY: test test-latest demo lint lock bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# pip and setuptools come from the lock too; darwin is installed without build isolation so
# that its build uses the locked setuptools rather than whatever the index has today.
$(RUNTIME_STAMP): $(LOCK) pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

$(DEV_STAMP): $(DEV_LOCK) pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install -q --require-hashes --no-deps -r $(DEV_LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@ $(RUNTIME_STAMP)

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q

demo: $(RUNTIME_STAMP)
	$(BIN)/darwin demo

# mypy checks the distribution as one package, so every `darwin.*` import is typed: the folders
# are linked under .typecheck/darwin/ as the installed package maps them (pyproject.toml).
PACKAGES := protocol model ledger verifier net gossip node client explorer simulations
TYPECHECK := .typecheck

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	rm -rf $(TYPECHECK) && mkdir -p $(TYPECHECK)/darwin
	for package in $(PACKAGES); do ln -s ../../$$package $(TYPECHECK)/darwin/$$package; done
	for module in darwin/*.py; do ln -s ../../$$module $(TYPECHECK)/darwin/; done
	MYPYPATH=$(TYPECHECK) $(BIN)/mypy -p darwin

# Regenerate both locks against today's releases of the ranges in pyproject.toml. The runtime
# lock is compiled under the dev lock, so the two never disagree on a shared package.
lock: $(DEV_STAMP)
	$(COMPILE) --extra dev --output-file $(DEV_LOCK) pyproject.toml
	$(COMPILE) --constraint $(DEV_LOCK) --output-file $(LOCK) pyproject.toml

# The suite against the newest releases the ranges allow (torch stays the pinned CPU build),
# in a venv of its own: the next break shows here before a user meets it.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install -q --upgrade pip setuptools wheel
	$(LATEST)/bin/pip install -q --upgrade --upgrade-strategy eager -c constraints.txt -e '.[dev]'
	$(LATEST)/bin/pip freeze --exclude-editable
	$(LATEST)/bin/python -m pytest -q

bench: $(RUNTIME_STAMP)
	$(BIN)/python bench/span_chain.py

clean:
	rm -rf $(VENV) $(LATEST) $(TYPECHECK) .pytest_cache .mypy_cache .ruff_cache
