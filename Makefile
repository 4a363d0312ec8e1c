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

.PHONY: install system-deps demo up test test-fast lint bench clean help

help:
	@echo "make demo   - set up, then run the nightly DAG once on the embedded default (Airflow+SQLite, local Ray, local S3)"
	@echo "make up     - set up, then run Airflow (UI, scheduler, triggerer), Ray and S3 on loopback until Ctrl-C"
	@echo "make test   - set up, then run the whole test suite"
	@echo "make lint   - ruff"
	@echo "make bench  - benchmarks (sandbox throughput, training cost)"

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first (a looser pin would pull a multi-GB CUDA build).
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[all]'
	touch $@

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

test: install
	$(BIN)/pytest -q tests

lint: $(STAMP)
	$(BIN)/ruff check genbench_tasks dags tests benchmarks
	$(BIN)/ruff format --check genbench_tasks dags tests benchmarks

bench: install
	$(BIN)/python benchmarks/bench_sandbox.py
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
