# Plain entry points. Every target bootstraps .venv on a fresh machine and is idempotent.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: install test lint serve bench system-deps clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,postgres,wasm,bench]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

system-deps:
	@scripts/system-deps.sh

test: $(STAMP) system-deps
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tenants
	$(BIN)/ruff format --check src tests benchmarks tenants
	$(BIN)/mypy
	$(BIN)/lint-imports

serve: $(STAMP)
	$(BIN)/dynwf serve $(SERVE_ARGS)

bench: $(STAMP)
	$(BIN)/dynwf bench

clean:
	rm -rf $(VENV) .dynwf .mypy_cache .ruff_cache .pytest_cache
