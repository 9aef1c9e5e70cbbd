# Two entry points for a fresh machine: `make test` and `make demo`.
# Each creates .venv and installs what it needs; torch comes from the pinned CPU build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: test demo lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q torch==2.13.0 -c constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy --strict protocol/ ledger/ verifier/

demo: $(STAMP)
	$(BIN)/darwin demo

bench: $(STAMP)
	$(BIN)/python bench/span_chain.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
