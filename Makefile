# Every target installs what it needs into .venv/ on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)

.PHONY: install test test-faults lint migrate demo run api worker scheduler notifier refresh sync-all bench up down lock

$(STAMP): requirements.lock pyproject.toml
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
	$(BIN)/python -m services.worker

scheduler: $(STAMP)
	$(BIN)/python -m services.scheduler

notifier: $(STAMP)
	$(BIN)/python -m services.notifier

refresh: $(STAMP)
	$(BIN)/integrations refresh-tokens

sync-all: $(STAMP)
	$(BIN)/integrations sync-all

bench: $(STAMP)
	$(BIN)/python -m bench

up:
	docker compose up -d --build

down:
	docker compose down

# Regenerate the lock file from pyproject.toml's dependencies (needs network access to PyPI).
lock:
	rm -rf .lockvenv && $(PY) -m venv .lockvenv
	.lockvenv/bin/python -m pip install --quiet --upgrade pip
	.lockvenv/bin/python -m pip install --quiet ".[dev]"
	.lockvenv/bin/python -m pip freeze --exclude integrations > requirements.lock
	rm -rf .lockvenv
