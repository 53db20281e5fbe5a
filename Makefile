# Two commands matter: `make demo` and `make test`. Both build the virtualenv themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
# As root: create the local executor's job user and let it reach Python and the examples
# (docs/jobs.md, "Local executor: isolation and resources"); otherwise there is nothing to do.
JOB_USER := if [ "$$(id -u)" = 0 ]; then $(BIN)/python -m aifactory.executors._jobuser examples; fi

.PHONY: demo test install dev services lint typecheck unit serve clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[train,interactive]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e '.[dev,train,interactive]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
	@$(JOB_USER)

dev: $(VENV)/.dev-installed
	@$(JOB_USER)

demo: install
	$(BIN)/aif demo

serve: install
	$(BIN)/aif serve

services:
	bash scripts/services.sh
	bash scripts/slurm/harness.sh up

lint: dev
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: dev
	$(BIN)/mypy src

unit: dev
	$(BIN)/pytest -q

# Several workers: most tests wait on processes, not the CPU. tests/conftest.py keeps each file
# on one worker and all real-Slurm tests on one worker.
TEST_WORKERS ?= 3

test: dev services lint typecheck
	$(BIN)/pytest -q -n $(TEST_WORKERS)

clean:
	rm -rf $(VENV) build *.egg-info test-output
