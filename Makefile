# The two set-up commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# The suite's processes (pytest-xdist; each has its own test database, Redis database and var folder: tests/parallel.py).
# 0 runs it in one process.
TEST_WORKERS ?= 2

.PHONY: demo test lint bench audit loadtest faults serve prod install install-test clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-runtime: requirements.txt requirements-nodeps.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed-runtime
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

install: $(VENV)/.installed-runtime
install-test: $(VENV)/.installed-test

demo: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py demo_setup --url http://$(HOST):$(PORT)/
	@# exec: serve is make's own child, so the SIGTERM make forwards (and the terminal's Ctrl-C) reaches it; it stops its processes.
	exec $(PY) manage.py serve --host $(HOST) --port $(PORT)

serve: install
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

# The production stack on this machine under honcho: PostgreSQL, Redis, nginx (TLS), granian, daphne, Celery workers.
prod: install
	exec deploy/prod.sh

# The house's tools first (as pre-commit runs them): a lint, format, layer or type error fails before the suite starts.
lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test: lint
	HEALTHAGENT_VAR_DIR=$(CURDIR)/var/test $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

bench: install-test
	$(PY) -m bench

# Known vulnerabilities in every installed package (pip-audit, OSV); exit 2 = the service was unreachable, nothing audited.
audit: install-test
	PY=$(PY) bash .ci/audit-dependencies

# Starts its own PostgreSQL, Redis and daphne processes (root, Debian packages); see README "Load and faults".
LOADTEST_ARGS ?=
loadtest: install-test
	$(PY) -m loadtest $(LOADTEST_ARGS)

# The fault scenarios (also part of `make test`), against a private PostgreSQL and Redis; one PASS/FAIL line each.
faults: install-test
	$(PY) -m loadtest.faults

clean:
	rm -rf var/static var/celery var/log
