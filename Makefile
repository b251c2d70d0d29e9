# Two entry points (README): `make run` and `make test`. Both create/update .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
# GPU users who installed their own torch into .venv: make run TORCH=keep
TORCH ?= pinned
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
export XDG_CACHE_HOME := $(CURDIR)/.cache

TORCH_REQ := $(if $(filter keep,$(TORCH)),,-r requirements-torch.txt)

$(BIN)/.installed: requirements.txt requirements-torch.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_REQ) -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

.PHONY: venv run test test-slurm test-browser lint report
# The package's bytecode, refreshed for files that changed. Python writes it on first import unless
# PYTHONDONTWRITEBYTECODE is set (CI images set it); then every process (each Snakemake run, worker
# and cluster job) compiles the package again: ~0.5 s each, a dry run 3.2 s instead of 2.6 s.
venv: $(BIN)/.installed
	$(BIN)/python -m compileall -q src

run: venv
	$(BIN)/snakemake --cores $(CORES)

# Test workers: most of the suite's time is end-to-end runs that wait on subprocesses and on the
# SLURM cluster, so a few more workers than cores keep the cores busy (TEST_WORKERS=0: no workers).
# loadfile: a file's tests stay on one worker (the SLURM tests share one cluster); files start in
# collection order (tests/conftest.py puts the longest first), not xdist's most-tests-first.
TEST_WORKERS ?= 3
test: venv
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# Only the tests against a real single-node SLURM cluster (root: they start it, see tests/slurm/).
test-slurm: venv
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -m slurm $(PYTEST_ARGS)

# Only the HTML report in a real browser (installs Debian's chromium when root, see the test).
test-browser: venv
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -m browser $(PYTEST_ARGS)

# Static checks CI runs next to the tests: Python lint, Snakemake formatting and lint.
lint: venv
	$(BIN)/ruff check src tests workflow benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

report: venv
	$(BIN)/snakemake --cores $(CORES) --report results/report.html
