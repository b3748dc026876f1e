# Set-up and test entry points.  `make test` works on a fresh machine: it creates .venv,
# installs the CPU build of PyTorch (pinned: an unpinned torch pulls gigabytes of CUDA) and the
# package with its test and workflow extras, then runs the linters and the test suite.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: test lint env clean-env

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,workflow]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests

test: lint
	$(BIN)/python -m pytest

clean-env:
	rm -rf $(VENV)
