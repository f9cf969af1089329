# Two entry points for a fresh machine: `make run` and `make test`.
# Both create .venv and, when it lacks torch or torchvision, install the CPU wheel pinned
# below first (with the torchvision of that release), so the open `torch>=2.4` range in
# pyproject.toml, and torchvision's own pin on a newer torch, do not pull several GB of CUDA.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_CPU ?= torch==2.13.0 torchvision==0.28.0

.PHONY: venv install run test lint bench clean mutate mutate-full seeded-bugs

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# find_spec, not import, for torchvision: PyPI's build (CUDA) imports beside the CPU torch
# only through brisk.applications' workaround (src/brisk/applications/_deps.py).
venv: $(BIN)/python
	@$(BIN)/python -c "import importlib.util as u, torch; assert u.find_spec('torchvision')" 2>/dev/null || $(BIN)/python -m pip install --quiet $(TORCH_CPU)

install: venv
	$(BIN)/python -m pip install --quiet -e ".[test]"

run: install
	$(BIN)/brisk train

test: install
	$(BIN)/python -m pytest -q --durations=15

lint: install
	$(BIN)/ruff check src tests benchmarks examples tools

# Mutation testing (not in CI; see RESULTS.md): mutmut over the modules and fast tests in
# [tool.mutmut] of pyproject.toml; then the score per module.
# Survivors: `$(BIN)/mutmut browse`, or `$(BIN)/python tools/mutation/score.py --survivors F`.
# Incremental: the verdicts cached in tools/mutation/cache/ (committed) are restored,
# mutmut re-tests the mutants of changed functions and retest.py's live ones (new tests may
# kill them), and the verdicts are cached again; mutate-full starts from nothing (~90 min
# on 2 cores). See tools/mutation/README.md.
mutate: install
	$(BIN)/python -m pip install --quiet -e ".[test,mutation]"
	$(BIN)/python tools/mutation/cache.py restore
	$(BIN)/python tools/mutation/retest.py
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/mutmut run; \
	  rc=$$?; $(BIN)/python tools/mutation/cache.py save; exit $$rc
	$(BIN)/python tools/mutation/score.py

mutate-full: install
	$(BIN)/python -m pip install --quiet -e ".[test,mutation]"
	rm -rf mutants
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/mutmut run; \
	  rc=$$?; $(BIN)/python tools/mutation/cache.py save; exit $$rc
	$(BIN)/python tools/mutation/score.py

# Re-inserts, one at a time, bugs that once passed the whole suite; each must make its
# tests fail (tools/seeded_bugs.py; ~2 min, not in CI).
seeded-bugs: install
	$(BIN)/python tools/seeded_bugs.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
