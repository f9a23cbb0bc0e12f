# tinyscale: `make lab` sets up and opens the workbook; `make test` runs every check CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
PORT   ?= 8888

.PHONY: setup lab test sync-check lint nbtest pytest bench readme

setup: $(VENV)/.installed

# torch first and pinned: an unpinned torch (or one pulled in by another package) brings several GB of CUDA wheels.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install "$(TORCH)"
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

# Jupyter refuses to run as root without --allow-root (containers, cloud machines).
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

# JupyterLab with the project's settings (jupyter_server_config.py): served from the project root, opening on
# nbs/index.ipynb, and saving the notebooks under nbs/ and posts/ without outputs, so that scoring never changes them.
# LAB_OPTIONS adds options (tests/test_browser.py runs `make lab` with --no-browser and a token).
LAB_OPTIONS ?=

lab: setup
	$(BIN)/jupyter lab --config=$(CURDIR)/jupyter_server_config.py --port $(PORT) $(ALLOW_ROOT) $(LAB_OPTIONS)

# The generated modules must match the notebooks, and the notebooks must be clean.
sync-check: setup
	$(BIN)/nbdev-export
	git diff --exit-code -- tinyscale
	@untracked=$$(git status --porcelain --untracked-files=all -- tinyscale); \
	  if [ -n "$$untracked" ]; then echo "untracked generated modules (commit them):"; echo "$$untracked"; exit 1; fi
	$(BIN)/nbdev-clean
	git diff --exit-code -- nbs
	@$(BIN)/jupyter nbconvert --to markdown --stdout nbs/index.ipynb 2>/dev/null | diff -u README.md - \
	  || { echo "README.md is out of date: run make readme"; exit 1; }

# README.md is nbs/index.ipynb as Markdown (nbdev-readme needs Quarto; nbconvert does not).
readme: setup
	$(BIN)/jupyter nbconvert --to markdown --stdout nbs/index.ipynb 2>/dev/null > README.md

# Static check of the generated package: an exported cell must never use a name that only a test cell defines.
lint: setup
	$(BIN)/ruff check --select F tinyscale/

# The notebooks' examples write fixture models to temporary folders: they go to one folder, removed afterwards
nbtest: setup
	@scratch=$$(mktemp -d) && echo "HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TMPDIR=$$scratch $(BIN)/nbdev-test --n-workers 2" && \
	HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TMPDIR=$$scratch $(BIN)/nbdev-test --n-workers 2; \
	status=$$?; rm -rf "$$scratch"; exit $$status

pytest: setup
	HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false $(BIN)/python -m pytest

test: sync-check lint nbtest pytest

bench: setup
	$(BIN)/python bench/generate.py --quick
