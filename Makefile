# genbench: `make demo` (embedded default, whole nightly once) and `make test` (whole suite).
# Both create .venv and install everything on a fresh machine (Debian packages via apt-get when root).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-deps
# Debian packages: bubblewrap sandboxes generated code; chromium renders the report in tests.
SYSTEM_PACKAGES ?= bubblewrap chromium
DEMO_OUT ?= runs/demo

.PHONY: install lock system-deps demo up test test-fast lint bench clean help

help:
	@echo "make demo   - set up, then run the nightly DAG once on the embedded default (Airflow+SQLite, local Ray, local S3)"
	@echo "make up     - set up, then run Airflow (UI, scheduler, triggerer), Ray and S3 on loopback until Ctrl-C"
	@echo "make test   - set up, then run the whole test suite"
	@echo "make lint   - ruff, and the import-direction contract (lint-imports)"
	@echo "make lock   - re-resolve requirements/all.lock (uv)"
	@echo "make bench  - benchmarks (sandbox throughput, training cost)"

# The environment comes from the committed lock (requirements/all.lock, hashes checked), installed by uv.
# torch first, with pip: torch==2.13.0 is a CPU build on this machine's disk that only pip finds; PyPI's wheel
# of that version (what uv would fetch) is a multi-GB CUDA build. The lock leaves torch out.
UV_VERSION ?= 0.13.9
LOCK := requirements/all.lock
UV := $(BIN)/uv
UV_COMPILE := $(UV) pip compile pyproject.toml --extra all -c constraints.txt --python-version 3.11 \
	--python-platform x86_64-unknown-linux-gnu --quiet

$(STAMP): pyproject.toml constraints.txt $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0 uv==$(UV_VERSION)
	$(UV) pip install --python $(BIN)/python --quiet --require-hashes --no-deps -r $(LOCK)
	$(UV) pip install --python $(BIN)/python --quiet --no-deps -e .
	touch $@

# Re-resolve the lock (after changing dependencies in pyproject.toml or constraints.txt).
lock:
	@test -x $(UV) || { $(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet uv==$(UV_VERSION); }
	$(UV_COMPILE) --no-emit-package torch -o $(VENV)/unfiltered.lock
	{ sed -n '1,3p' requirements/no-cuda-overrides.txt; \
	  grep -E '^(nvidia-|cuda-|triton==)' $(VENV)/unfiltered.lock | cut -d= -f1 | sed 's/$$/; sys_platform == "never"/'; \
	} > $(VENV)/overrides.txt && mv $(VENV)/overrides.txt requirements/no-cuda-overrides.txt
	$(UV_COMPILE) --override requirements/no-cuda-overrides.txt --no-emit-package torch --generate-hashes \
		--custom-compile-command 'make lock' -o $(LOCK)
	@echo "locked $$(grep -c '^[a-z0-9]' $(LOCK)) packages in $(LOCK)"

install: $(STAMP) $(SYSTEM_STAMP)

$(SYSTEM_STAMP):
	@mkdir -p $(VENV)
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "system packages present:$(SYSTEM_PACKAGES)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "WARNING: missing$$missing (not root or no apt-get): sandbox falls back to rlimits, browser tests skip"; fi
	@touch $@

demo: install
	$(BIN)/genbench demo --out $(DEMO_OUT)

up: install
	$(BIN)/genbench up --out runs/local

# The suite on every core (at most 4 workers: the heavy modules each start Ray clusters and verl jobs); a
# module and its fixtures stay on one worker, the longest modules start first (tests/conftest.py).
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(max(1, min(os.cpu_count() or 1, 4)))")
test: install
	$(BIN)/pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

lint: $(STAMP)
	$(BIN)/ruff check genbench_tasks dags tests benchmarks
	$(BIN)/ruff format --check genbench_tasks dags tests benchmarks
	$(BIN)/lint-imports --no-cache

bench: install
	$(BIN)/python benchmarks/bench_sandbox.py
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
