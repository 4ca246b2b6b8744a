# Every target installs what it needs into .venv/ on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)

.PHONY: install test test-faults lint migrate demo run api worker scheduler notifier fake-google refresh sync-all bench dotenv up up-demo down lock

# The check the Makefile runs on an interpreter before it builds or uses .venv/ with it.
PY_CHECK := -c 'import sys; sys.exit(sys.version_info < (3, 11))'

$(STAMP): requirements.lock pyproject.toml
	@$(PY) $(PY_CHECK) 2>/dev/null || { echo "error: Python 3.11 or newer is needed; $(PY) is $$($(PY) --version 2>&1). Run make with PY=python3.11 (or newer)." >&2; exit 2; }
	@if [ -e $(BIN)/python ] && ! $(BIN)/python $(PY_CHECK) 2>/dev/null; then echo "Rebuilding $(VENV): it was made by $$($(BIN)/python --version 2>&1), older than 3.11"; rm -rf $(VENV); fi
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not faults" $(PYTEST_ARGS)

test-faults: $(STAMP)
	$(BIN)/python -m pytest -q -m faults $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy common services

migrate: $(STAMP)
	$(BIN)/integrations db upgrade

demo: $(STAMP)
	$(BIN)/python -m services.demo

run: $(STAMP)
	$(BIN)/python -m services.standalone

api: $(STAMP)
	$(BIN)/python -m services.api

worker: $(STAMP)
	$(BIN)/python -m services.worker $(WORKER_ARGS)

scheduler: $(STAMP)
	$(BIN)/python -m services.scheduler

notifier: $(STAMP)
	$(BIN)/python -m services.notifier

FAKE_GOOGLE_PORT ?= 8765
fake-google: $(STAMP)
	$(BIN)/python -m services.fake_google --port $(FAKE_GOOGLE_PORT) --env-file var/fake-google.env

refresh: $(STAMP)
	$(BIN)/integrations refresh-tokens

sync-all: $(STAMP)
	$(BIN)/integrations sync-all

bench: $(STAMP)
	$(BIN)/python -m bench

# Docker Compose (no local Python needed): `make dotenv` once, then `make up` (your Google client in .env),
# or `make dotenv DEMO=1` once, then `make up-demo` (the fake Google). `make down` stops the stack; its volumes (the database) are kept.
dotenv:
	DEMO=$(DEMO) sh scripts/dotenv.sh

up:
	docker compose up -d --build

up-demo:
	docker compose -f compose.yaml -f compose.demo.yaml --profile demo up -d --build

down:
	docker compose -f compose.yaml -f compose.demo.yaml --profile demo down

# Regenerate the lock file from pyproject.toml's dependencies (needs network access to PyPI).
lock:
	rm -rf .lockvenv && $(PY) -m venv .lockvenv
	.lockvenv/bin/python -m pip install --quiet --upgrade pip
	.lockvenv/bin/python -m pip install --quiet ".[dev]"
	.lockvenv/bin/python -m pip freeze --exclude integrations > requirements.lock
	rm -rf .lockvenv && $(PY) -m venv .lockvenv
	.lockvenv/bin/python -m pip install --quiet -c requirements.lock .
	{ sed -n 1,2p requirements-prod.lock; .lockvenv/bin/python -m pip freeze --exclude integrations; } > requirements-prod.lock.new
	mv requirements-prod.lock.new requirements-prod.lock
	rm -rf .lockvenv
