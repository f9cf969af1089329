# Two entry points for a fresh machine: `make run` and `make test`.
# Both create .venv and, when it has no torch, install the CPU wheel pinned below first,
# so the open `torch>=2.4` range in pyproject.toml does not pull several GB of CUDA.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_CPU ?= torch==2.13.0

.PHONY: venv install run test lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

venv: $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet $(TORCH_CPU)

install: venv
	$(BIN)/python -m pip install --quiet -e ".[test]"

run: install
	$(BIN)/brisk train

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check src tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
