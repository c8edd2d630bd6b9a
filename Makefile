# cartoonist — `make help` lists the targets.
SHELL := /bin/bash
PY_SYS ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export WANDB_MODE ?= offline

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	@# The CPU build of torch on local disk; installed first so nothing pulls a CUDA torch.
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install cartoonist with its dev extras

test: $(STAMP) ## Run the fast test suite (< 3 min on 2 cores)
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP) ## Run only the slow numerical checks
	$(PY) -m pytest -q -m slow

test-all: $(STAMP) ## Run every test, slow ones included
	$(PY) -m pytest -q

clean: ## Remove caches (keeps .venv and outputs/)
	rm -rf .pytest_cache build src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: help install test test-slow test-all clean
