# Cascade: `make run` starts the local stack with a demo stream; `make test` runs every test.
# Both install what they need first (Debian packages, a virtualenv, npm packages), and
# only what is missing, so a second run starts at once.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3
# ffmpeg: the transcoder; redis-server: state; redis-sentinel: the Sentinel failover tests
# and benchmark; chromium + fonts: the browser tests and the clock burnt into the demo;
# nginx + wrk: the reference server and client of the benchmarks; openssl, curl: the test
# control plane's certificates and readiness probes.
APT_PACKAGES := ffmpeg redis-server redis-sentinel chromium fonts-dejavu-core nginx-light wrk procps openssl curl
ROOTS := core transcoder edge operator cli

.PHONY: help setup run test test-fast lint bench clean

help:
	@echo "make run        start Cascade locally (Redis, edge on :8080, the demo stream)"
	@echo "make test       install everything and run the whole test suite (CI runs this)"
	@echo "make test-fast  unit and component tests only (no browser, no slow end-to-end)"
	@echo "make lint       ruff, mypy --strict and the import-linter layer contracts"
	@echo "make bench      benchmarks (print JSON figures)"

setup: .cache/apt.stamp $(VENV)/.installed node_modules/.installed

.cache/apt.stamp: Makefile scripts/ensure-apt.sh
	@mkdir -p .cache
	@scripts/ensure-apt.sh $(APT_PACKAGES)
	@touch $@

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -U pip
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@# One import root over several source folders: list them for every tool (mypy too).
	@site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  for r in $(ROOTS); do echo "$(CURDIR)/$$r"; done > "$$site/cascade-roots.pth"
	@touch $@

node_modules/.installed: package.json package-lock.json
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

run: setup
	@$(VENV)/bin/cascade up

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint Dockerfile.operator Dockerfile.edge Dockerfile.transcoder

# The control plane is built before pytest (cold: ~8 minutes on 2 cores, then cached in
# ~/.cache/cascade) so its progress shows instead of running silently inside a fixture.
test: setup lint cluster-build
	$(VENV)/bin/pytest

test-fast: $(VENV)/.installed
	$(VENV)/bin/pytest -m "not slow"

bench: setup
	$(PY) bench/packager.py
	$(PY) bench/edge_hotpath.py
	$(PY) bench/edge_viewers.py
	$(PY) bench/operator_scale.py
	$(PY) bench/redis_failover.py

include mk/cluster.mk

clean:
	rm -rf $(VENV) node_modules .cache .mypy_cache .ruff_cache .pytest_cache
