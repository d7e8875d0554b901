# Two commands on a fresh machine: `make lab` (the product's main job) and `make test`.
# Each installs what it needs itself: a virtual environment, pip packages, Debian packages.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CHECKOV_VENV ?= .venv-checkov
STAMP  := $(VENV)/.installed

.PHONY: lab test setup system-packages lint clean mutate

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[lab,test]'
	touch $(STAMP)

# PyTorch's CPU build, for the stand-in's `compute: torch` tests (tests/e2e/test_standin_torch_unit.py;
# under CI=true they fail where it is missing). This exact version: the machines CI runs on have its
# CPU wheel on local disk (pip's find-links; 192 MB, ~16 s to install), while plain `torch` or another
# version is PyPI's CUDA build (GBs of nvidia-* wheels). Elsewhere, take the CPU build from PyTorch's
# index: make test TORCH_PIP_ARGS='--index-url https://download.pytorch.org/whl/cpu'
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
TORCH_STAMP := $(VENV)/.torch-installed

$(TORCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet '$(TORCH)' $(TORCH_PIP_ARGS)
	touch $@

$(CHECKOV_VENV)/.installed:
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov==3.2.*'
	touch $@

# Prometheus/promtool (the lab and the rule tests), OpenMPI and OpenSSH (multi-rank and multi-node
# serving), shellcheck (monitoring/install.sh).
system-packages:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v mpirun >/dev/null || missing="$$missing openmpi-bin"; \
	command -v shellcheck >/dev/null || missing="$$missing shellcheck"; \
	command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || missing="$$missing openssh-server openssh-client"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

setup: $(STAMP) $(TORCH_STAMP) $(CHECKOV_VENV)/.installed system-packages

lab: $(STAMP) system-packages
	$(BIN)/llmprep lab --out lab-out

lint: setup
	$(BIN)/ruff check llmprep tests bench scripts
	$(BIN)/ruff format --check llmprep tests bench scripts
	$(BIN)/mypy

test: setup lint
	PATH="$(CURDIR)/$(BIN):$$PATH" CHECKOV="$(CURDIR)/$(CHECKOV_VENV)/bin/checkov" $(BIN)/pytest -q

# Mutation testing (not in CI): mutmut on one module against the tests that cover it, in a scratch
# copy; writes its row of docs/benchmarks.md. MODULE: python -m bench.mutation --list.
MODULE ?= load/stats
mutate: $(STAMP)
	test -x $(BIN)/mutmut || $(BIN)/pip install --quiet 'mutmut==3.*'
	$(BIN)/python -m bench.mutation --module $(MODULE)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) lab-out .pytest_cache .mypy_cache .ruff_cache
