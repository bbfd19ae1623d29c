# osad-companion: `make demo` runs the series on the embedded data, `make test` runs the tests.
# Both create (or reuse) the local virtual environment .venv from env/ first.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.osad-installed
KERNEL := $(VENV)/.osad-kernel

# OpenMP threads sleep instead of spinning while waiting: spinning makes 2-thread torch many
# times slower whenever another process (a notebook kernel, pytest) shares the cores.
export OMP_WAIT_POLICY ?= PASSIVE
# glibc keeps freed tensor memory for reuse instead of unmapping it (osad_lib.runner.ALLOCATOR_ENV):
# without this a third of the demo's CPU time went to page faults. Notebook kernels get it from
# the runner and from the kernelspec; this covers pytest and other direct calls.
export MALLOC_MMAP_THRESHOLD_ ?= 4294967296
export MALLOC_TRIM_THRESHOLD_ ?= 4294967296

.PHONY: demo demo-budget smoke paper test test-unit test-integration test-notebooks test-dry-run lock-smoke lab bench gpu-check wheels venv clean-runs

venv: $(STAMP) $(KERNEL)

# Re-installs only when the pins or the package metadata change. torch is installed on its own
# first, so no other package can pull a different torch build.
$(STAMP): env/requirements.txt env/requirements-torch.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r env/requirements-torch.txt
	$(BIN)/python -m pip install --quiet -r env/requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

# The notebooks' kernel "python3" inside .venv, with the same environment as the headless runner.
$(KERNEL): $(STAMP) Makefile
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (osad-companion)" \
		--env MALLOC_MMAP_THRESHOLD_ 4294967296 --env MALLOC_TRIM_THRESHOLD_ 4294967296 \
		--env OMP_WAIT_POLICY PASSIVE >/dev/null
	@touch $@

demo: venv
	$(BIN)/python run_all.py --profile demo

smoke: venv
	$(BIN)/python run_all.py --profile smoke

paper: venv
	$(BIN)/python run_all.py --profile paper --data-root "$(DATA_ROOT)"

# Every tier of tests (unit, integration, notebooks with the paper profile's CI-sized dry run) on two
# pytest workers, each test file on one worker (its module and session fixtures, e.g. the smoke run
# of the whole series, run once), handed out in collection order (tests/conftest.py puts the runs
# of the whole series first; xdist's default would reorder files by test count).
TEST_WORKERS ?= 2
PYTEST_XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: venv
	$(BIN)/python -m pytest $(PYTEST_XDIST) --durations=30 tests/unit tests/integration tests/notebooks

# One tier: unit (the default of a bare `pytest`: no notebook kernel, no run of the series),
# integration (run_all.py, faults, conversions of downloads, benchmarks end to end), notebooks
# (the smoke run of the series and the tests that read it).
test-unit test-integration test-notebooks: test-%: venv
	$(BIN)/python -m pytest $(PYTEST_XDIST) tests/$*

# The paper profile's CI-sized dry run of every notebook (run_all.py --profile paper --dry-run ci)
# and its checks alone (make test runs them too, beside the smoke run).
test-dry-run: venv
	$(BIN)/python -m pytest -m dryrun tests/notebooks/test_dry_run.py

# Rewrite the smoke profile's locked numbers (tests/expected/smoke_results.csv) after a change
# that is meant to move them; the diff of that file shows which did.
LOCK_RUN ?= runs-lock
lock-smoke: venv
	rm -rf $(LOCK_RUN)
	env -u OSAD_DATA -u OSAD_ADBENCH -u OSAD_OUTPUT $(BIN)/python run_all.py --profile smoke --output-dir $(LOCK_RUN)
	$(BIN)/python -m tests.smoke_numbers $(LOCK_RUN)

# Containers often run as root, which Jupyter refuses without --allow-root.
lab: venv
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

bench: venv
	$(BIN)/python -m osad_lib.bench

# The demo as a new user meets it, timed: a fresh clone in a temporary folder, an empty cache, the
# per-notebook times against the 30-minute budget (README "Demo time").
demo-budget: venv
	$(BIN)/python -m osad_lib.demo_budget

# The GPU check (README "GPU check") needs no .venv: any Python with torch/torchvision and the
# packages of env/requirements-gpu-check*.txt (offline: from the folder `make wheels` fills).
CHECK_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
WHEELS ?= wheels

gpu-check:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(CHECK_PYTHON) -m osad_lib.gpucheck

# Run where pip can reach the package index, with the GPU machine's Python version and platform
# (or add e.g. PIP_PLATFORM="--platform manylinux2014_x86_64 --python-version 3.11 --only-binary=:all:").
wheels:
	$(PYTHON) -m pip download --dest $(WHEELS) $(PIP_PLATFORM) -r env/requirements-gpu-check.txt
	$(PYTHON) -m pip download --dest $(WHEELS) $(PIP_PLATFORM) --no-deps -r env/requirements-gpu-check-nodeps.txt

clean-runs:
	rm -rf runs figures/smoke figures/demo figures/paper
