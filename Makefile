# Two entry points (see README): `make run` and `make test`.
# Only python3 (3.11+), git and make are assumed; uv is bootstrapped into .cache/.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
UV_VERSION := 0.13.9
BOOT := .cache/bootstrap
UV := $(BOOT)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
# Use the operating system's CA store, so that TLS-intercepting proxies trusted
# by the machine also work for uv.
export UV_SYSTEM_CERTS := 1
export UV_PYTHON_DOWNLOADS := never

.PHONY: help run nginx test lint typecheck check pytest system-deps venv venv-bench

help:
	@echo "make run   - render the production config on embedded defaults and run supervisord (:9380)"
	@echo "make test  - install everything the tests need, then lint, typecheck, check configs, pytest"

$(UV):
	$(PYTHON) -m venv $(BOOT)
	$(BOOT)/bin/pip install --quiet "uv==$(UV_VERSION)"

# The project and the dev group; --inexact keeps what `make test` added (the bench group).
$(VENV)/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --inexact --python $(PYTHON)
	@touch $@

# Tests and benchmarks also get the bench group (matplotlib, for bench/report.py's charts);
# `make run` and the image do not install it.
$(VENV)/.synced-bench: $(VENV)/.synced
	$(UV) sync --frozen --group bench --python $(PYTHON)
	@touch $@

venv: $(VENV)/.synced
venv-bench: $(VENV)/.synced-bench

# Production mode puts nginx in front of Gunicorn (PROXY=nginx). Where nginx is missing, root
# installs it; anyone else serves without the proxy (PROXY=none) and is told so on one line.
NGINX_FOUND = command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || [ -x /usr/local/sbin/nginx ]
# Without any API key every call answers 401: say, on one line, how to create one.
NO_KEY_HINT = No API key yet: create one with `$(PY) -m api.admin create-key` (it prints the key once; see README, First steps).
run: venv
	@if [ -z "$${RAGFLOW_API_KEY:-}$${RAGFLOW_API_KEY_FILE:-}" ] && [ -z "$$($(PY) -m api.admin list-keys 2>/dev/null)" ]; then \
	  echo '$(NO_KEY_HINT)' >&2; fi
	@if ! { $(NGINX_FOUND); } && [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory nginx; fi
	@if { $(NGINX_FOUND); } || [ "$${PROXY:-}" = none ]; then \
	  exec $(PY) render_config.py --production-mode --output-dir run --exec; \
	else \
	  echo "WARNING: nginx is not installed and this is not root: serving WITHOUT the buffering proxy (PROXY=none); slow clients can tie up every worker. Install nginx (apt-get install nginx) for production." >&2; \
	  PROXY=none exec $(PY) render_config.py --production-mode --output-dir run --exec; \
	fi

nginx:
	DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx

# System packages the test suite needs (nginx: the proxy; prometheus: the metrics end-to-end test
# and promtool for the alert rules; container tests: buildah, podman, runc, debootstrap; chromium:
# the API page's headless-browser test; wrk: the bench's load generator, whose script a test runs;
# postgresql: the throwaway clusters of the PostgreSQL backend's tests, whose binaries live under
# /usr/lib/postgresql/<version>/bin). Each name in SYSTEM_TOOLS is both a command and its Debian
# package. Installed only when missing; needs root (CI runs as root).
SYSTEM_TOOLS := nginx prometheus buildah podman runc debootstrap chromium wrk
system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do PATH="$$PATH:/usr/sbin" command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "not root: cannot install$$missing (install them as root; the tests that need them say so)"; fi; \
	fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: venv
	$(VENV)/bin/mypy

check: venv
	$(PY) render_config.py --check

pytest: venv-bench
	$(VENV)/bin/pytest

test: system-deps venv-bench lint typecheck check pytest
