# unlearn-ops: two commands set up everything on a fresh machine.
#   make demo   install into .venv and run the main job on the embedded default
#   make test   install the same way, then lint and run the whole test suite
# Installs use constraints.txt: pins verified on this project's machines (torch 2.13.0
# CPU wheel, fastapi<0.151 for Prefect 3.8). The package itself keeps honest ranges.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT := true
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

.PHONY: install demo test lint format bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,s3,dask]'
	touch $(STAMP)

demo: install
	$(BIN)/unlearn-ops demo --workspace .demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/unlearn-ops bench --output bench-results

bench-quick: install
	$(BIN)/unlearn-ops bench --quick --output bench-results/quick

clean:
	rm -rf .demo bench-results .pytest_cache .mypy_cache .ruff_cache
