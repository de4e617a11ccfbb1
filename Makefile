# bgkit: `make demo` and `make test` install what they need, then run.
# Both are idempotent: a second run skips what is already installed.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Build tools and the real services the tests and the sandbox use.
# chromium: the browser test drives JupyterLab in headless Debian Chromium via Playwright.
# sudo: for visudo, which checks the sudoers file `bgkit host setup` renders.
APT_PACKAGES := build-essential cmake git openssh-server openssh-client haproxy systemd systemd-container chromium sudo
SANDBOX := .sandbox
SANDBOX_CONFIG := $(SANDBOX)/bgkit.toml
# What `make demo` switches through: ovh-iplb (default), ovh-cloud-lb or haproxy.
LB ?= ovh-iplb

.PHONY: help deps apt venv demo test lint typecheck pytest bench clean

help:
	@echo "make demo   sandbox + OVH API emulator: release 1.0.0, then 2.0.0 under load, then a rollback drill; runs archived under runs/"
	@echo "make test   lint, type-check and run every test (unit, integration, notebooks)"
	@echo "make deps   only install the system packages and the .venv"

deps: apt venv

apt:
	@missing=""; \
	for pkg in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "bgkit needs Python >= 3.11")'
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Two releases go live through the OVH API emulator, then a rollback drill, under load.
# `make demo LB=ovh-cloud-lb` (or LB=haproxy) runs it through another provider.
demo: deps
	$(BIN)/python -m bgkit.demo $(SANDBOX)-demo $(CURDIR)/runs --lb $(LB)

lint: venv
	$(BIN)/ruff check bgkit tests benchmarks

typecheck: venv
	$(BIN)/mypy --strict bgkit

# The tests start their own sandboxes on free ports in temporary folders. The notebooks run
# under nbval with their defaults, against a sandbox of their own in a temporary folder on
# free ports ($$BGKIT_CONFIG): never your .sandbox, its ports or its dist/.
# Most tests wait on real services (sshd, HAProxy, kernels, watch windows), so two workers
# (pytest-xdist, one test file each at a time; each worker has its own port range, see
# tests/conftest.py) take about half the time on two cores. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
pytest: deps
	$(BIN)/pytest -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --durations=30 tests
	@tier=$$(mktemp -d /tmp/bgkit-notebooks.XXXXXX); \
	$(BIN)/bgkit sandbox up --dir $$tier/sandbox --free-ports > /dev/null || exit $$?; \
	status=0; BGKIT_CONFIG=$$tier/sandbox/bgkit.toml $(BIN)/pytest -p no:cacheprovider \
	  --nbval-lax notebooks || status=$$?; \
	$(BIN)/bgkit sandbox down --dir $$tier/sandbox > /dev/null; rm -rf $$tier; exit $$status

test: deps lint typecheck pytest

bench: deps
	$(BIN)/python benchmarks/build_bench.py

clean:
	rm -rf dist .mypy_cache .ruff_cache
