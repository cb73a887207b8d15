# unlearn-ops: two commands set up everything on a fresh machine.
#   make demo       install into .venv and run the main job on the embedded default
#   make test       install the same way, then lint and run the whole test suite (what CI runs)
#   make test-fast  the everyday tier: no Prefect flows, no servers, no browser
# Installs use constraints.txt: pins verified on this project's machines (torch 2.13.0
# CPU wheel, fastapi<0.151 for Prefect 3.8). The package itself keeps honest ranges.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHROMIUM_STAMP := $(VENV)/.chromium
COMPOSE_STAMP  := $(VENV)/.compose
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT := true
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

.PHONY: install flower demo test test-fast lint format bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,s3,dask,dp]'
	touch $(STAMP)

# The federation's own environment: flwr 1.42 pins fastapi below Prefect's, so the Flower
# App (federation/) runs from .venv-flower; unlearn-ops goes in with --no-deps, so the
# ClientApp imports unlearn_ops.federated and sisa without Prefect's tree.
FLOWER_VENV  := .venv-flower
FLOWER_STAMP := $(FLOWER_VENV)/.installed

flower: $(FLOWER_STAMP)

$(FLOWER_STAMP): federation/requirements.txt pyproject.toml
	test -x $(FLOWER_VENV)/bin/python || $(PYTHON) -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOWER_VENV)/bin/python -m pip install --quiet -r federation/requirements.txt
	$(FLOWER_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $(FLOWER_STAMP)

demo: install
	$(BIN)/unlearn-ops demo --workspace .demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The tests write bytecode caches (__pycache__, git-ignored) even where the environment
# sets PYTHONDONTWRITEBYTECODE: without them each run, and each xdist worker, compiles and
# rewrites every test module again (collection 24 s instead of 7 s).
test test-fast: export PYTHONDONTWRITEBYTECODE :=

test: lint $(CHROMIUM_STAMP) $(COMPOSE_STAMP) $(FLOWER_STAMP)
	$(BIN)/python -m pytest -q --durations=25

# Markers in pyproject.toml; tests/conftest.py marks all of tests/pipelines, integration, infra.
test-fast: install
	$(BIN)/python -m pytest -q -n auto -m "not flows and not servers and not browser and not slow"

# With CI=true a browser or compose client that cannot be installed fails `make test`
# (and the tests fail rather than skip); elsewhere their tests are skipped, with a warning.
IN_CI := $(filter true 1 TRUE True,$(CI))

# Headless Chromium (Debian's `chromium`) for the browser test of the MLflow UI,
# tests/pipelines/test_ui.py: installed with apt as root, else through `sudo -n`.
$(CHROMIUM_STAMP): | $(STAMP)
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
	  true; \
	elif [ "$$(id -u)" = 0 ]; then \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium) \
	    || echo "WARNING: apt could not install chromium"; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	  (sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium) \
	    || echo "WARNING: apt could not install chromium"; \
	else \
	  echo "chromium is not installed and this user cannot install it (not root, no sudo):"; \
	  echo "  run 'apt-get install chromium' as root"; \
	fi
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
	  touch $@; \
	elif [ -n "$(IN_CI)" ]; then \
	  echo "ERROR: CI=true and no chromium: tests/pipelines/test_ui.py must run in CI"; exit 1; \
	else \
	  echo "WARNING: without chromium, tests/pipelines/test_ui.py is skipped"; \
	fi

# A compose client (Debian's `docker-compose` 1.29) for tests/infra/test_compose.py, which
# checks infra/docker-compose.yml with `config` (no Docker engine needed): installed with
# apt as root, else through `sudo -n`, unless `docker compose` or `docker-compose` works.
$(COMPOSE_STAMP): | $(STAMP)
	@if docker compose version >/dev/null 2>&1 || docker-compose version >/dev/null 2>&1; then \
	  true; \
	elif [ "$$(id -u)" = 0 ]; then \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-compose) \
	    || echo "WARNING: apt could not install docker-compose"; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
	  (sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-compose) \
	    || echo "WARNING: apt could not install docker-compose"; \
	else \
	  echo "no compose client is installed and this user cannot install one (not root, no sudo):"; \
	  echo "  run 'apt-get install docker-compose' as root"; \
	fi
	@if docker compose version >/dev/null 2>&1 || docker-compose version >/dev/null 2>&1; then \
	  touch $@; \
	elif [ -n "$(IN_CI)" ]; then \
	  echo "ERROR: CI=true and no compose client: tests/infra/test_compose.py must run in CI"; exit 1; \
	else \
	  echo "WARNING: without a compose client, tests/infra/test_compose.py is skipped"; \
	fi

bench: install
	$(BIN)/unlearn-ops bench --output bench-results

bench-quick: install
	$(BIN)/unlearn-ops bench --quick --output bench-results/quick

clean:
	rm -rf .demo bench-results .pytest_cache .mypy_cache .ruff_cache
