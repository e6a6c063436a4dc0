# PELBIOT: `make demo` runs the product, `make test` runs every check. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

.PHONY: demo test test-sqlite test-postgres lint fmt typecheck bench install system-deps services clean web screenshots
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) web/index.html web/package.json \
	web/package-lock.json web/vite.config.ts web/tsconfig.json web/copy-swagger.mjs
DASHBOARD := src/pelbiot/static/index.html

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The dashboard: npm packages from the lockfile, built into the Python package's static files.
$(DASHBOARD): $(WEB_SOURCES)
	@bash scripts/system-deps.sh node
	cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build
	touch $(DASHBOARD)

web: $(DASHBOARD)

## Debian packages the tests use (the broker and its clients); installed only when missing.
system-deps:
	@bash scripts/system-deps.sh

## Start PostgreSQL if it is installed but not running (CI machines start it; laptops may not).
services:
	@bash scripts/services.sh

demo: install web
	$(BIN)/pelbiot demo

lint: install
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench

fmt: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

typecheck: install
	$(BIN)/mypy

test-sqlite: install system-deps web
	$(BIN)/pytest -q

test-postgres: install system-deps services web
	PELBIOT_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest -q

test: lint typecheck test-sqlite test-postgres

## Refresh docs/screenshots/ from the real app (the browser tests take them; by default into a
## temporary folder, so that `make test` leaves the tree clean).
screenshots: install system-deps web
	PELBIOT_SCREENSHOT_DIR=$(CURDIR)/docs/screenshots $(BIN)/pytest -q tests/test_dashboard.py

bench: install system-deps services
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.live

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache data web/node_modules src/pelbiot/static
