# ridehail — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the package with its dev tools

run: $(STAMP) ## Serve the API on the embedded default (SQLite + in-process) at $(HOST):$(PORT)
	$(BIN)/ridehail serve --host $(HOST) --port $(PORT)

services: ## Start PostgreSQL and Redis if they are not running
	bash scripts/ensure-services.sh

lint: $(STAMP) ## ruff (lint and format check), mypy strict, import-linter contracts
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP) services lint ## The whole suite: lint, types, import contracts, pytest on both profiles
	$(BIN)/pytest -q

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix src tests $(wildcard bench)
	$(BIN)/ruff format src tests $(wildcard bench)

demo: $(STAMP) ## A 60-90 s simulated city (300 drivers) against the embedded default; prints the report's path
	$(BIN)/ridehail simulate --drivers 300 --minutes 45 --time-scale 40 --seed 1 --out var/demo

bench: $(STAMP) services ## Benchmarks; results in bench/results/ and docs/benchmarks.md
	bash bench/run.sh

city: $(STAMP) services ## The city-scale run (50,000 drivers, ~25-40 min) and one simulator process with 5,000 drivers (~6 min); not in make bench; updates docs/benchmarks.md
	$(BIN)/python -m bench.city_scale
	$(BIN)/python -m bench.one_simulator
	$(BIN)/python -m bench.report

clean: ## Remove the virtual environment and local state
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

.PHONY: help install run services lint test format demo bench city clean
