# Cascade: `make run` starts the local stack with a demo stream; `make test` runs every test.
# Both install what they need first (Debian packages, a virtualenv, npm packages), and
# only what is missing, so a second run starts at once.
#
# Python: a uv workspace (pyproject.toml). Each top-level folder below is one distribution
# (cascade-live-core, -transcoder, -edge, -operator, -cli) with its own pyproject.toml;
# `make setup` installs all of them editable into one virtualenv with the dev tools, every
# version from uv.lock. `make lock` updates uv.lock after a dependency changed.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3
# ffmpeg: the transcoder; redis-server: state; redis-sentinel: the Sentinel failover tests
# and benchmark; chromium + fonts: the browser tests and the clock burnt into the demo;
# nginx + wrk: the reference server and client of the benchmarks; openssl, curl: the test
# control plane's certificates and readiness probes.
APT_PACKAGES := ffmpeg redis-server redis-sentinel chromium fonts-dejavu-core nginx-light varnish wrk procps openssl curl
MEMBERS := core transcoder edge operator cli
# uv itself comes from PyPI into the virtualenv (the same pin is in the dev group, so
# `uv sync` keeps it); it never downloads a Python (tool.uv.python-downloads).
UV_VERSION := 0.13.8
UV := $(VENV)/bin/uv
export UV_PROJECT_ENVIRONMENT := $(VENV)
# CI installs exactly uv.lock (a stale lock fails, naming `uv lock`); a developer's `make
# setup` updates the lock when a pyproject.toml changed.
UV_SYNC_FLAGS := $(if $(CI),--locked,)
# hls.js for the edge's package: copied from npm beside its other static files
# (git-ignored); the edge's wheel refuses to build without it.
HLSJS := edge/cascade/edge/static/hls.min.js

.PHONY: help setup lock run test test-fast lint bench images clean objectstore

help:
	@echo "make run        start Cascade locally (Redis, edge on :8080, the demo stream)"
	@echo "make test       install everything and run the whole test suite (CI runs this)"
	@echo "make test-fast  unit and component tests only (no browser, no slow end-to-end)"
	@echo "make lint       ruff, mypy --strict and the import-linter layer contracts"
	@echo "make bench      benchmarks (print JSON figures)"
	@echo "make images     build the three images with buildah (OCI archives in ~/.cache/cascade/images)"
	@echo "make lock       update uv.lock after changing a dependency in a pyproject.toml"

setup: .cache/apt.stamp $(VENV)/.installed node_modules/.installed $(HLSJS)

.cache/apt.stamp: Makefile scripts/ensure-apt.sh
	@mkdir -p .cache
	@scripts/ensure-apt.sh $(APT_PACKAGES)
	@touch $@

$(VENV)/.installed: pyproject.toml uv.lock $(MEMBERS:%=%/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	@# Written by this Makefile before the workspace; each member's editable .pth does it now.
	@rm -f $(VENV)/lib/python3*/site-packages/cascade-roots.pth
	@$(UV) sync -q --all-packages $(UV_SYNC_FLAGS)
	@touch $@

lock: $(VENV)/.installed
	@$(UV) lock

node_modules/.installed: package.json package-lock.json
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(HLSJS): node_modules/.installed
	@cp node_modules/hls.js/dist/hls.min.js $@

# The object store (Versity Gateway) of `make run` and the tests, built from the Go module
# proxy once into ~/.cache/cascade (cold: ~70 s of CPU; warm: nothing).
objectstore:
	@scripts/objectstore-build.sh >/dev/null

run: setup objectstore
	@$(VENV)/bin/cascade up

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint Dockerfile.operator Dockerfile.edge Dockerfile.transcoder Dockerfile.shield

# The control plane is built before pytest (cold: ~8 minutes on 2 cores, then cached in
# ~/.cache/cascade) so its progress shows instead of running silently inside a fixture.
test: setup lint objectstore cluster-build
	$(VENV)/bin/pytest

test-fast: $(VENV)/.installed
	$(VENV)/bin/pytest -m "not slow"

bench: setup
	$(PY) bench/packager.py
	$(PY) bench/edge_hotpath.py
	$(PY) bench/edge_viewers.py
	$(PY) bench/operator_scale.py
	$(PY) bench/redis_failover.py
	$(PY) bench/recording.py

include mk/cluster.mk
include mk/images.mk

clean:
	rm -rf $(VENV) node_modules .cache .mypy_cache .ruff_cache .pytest_cache $(HLSJS)
