# Everything a newcomer runs: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint cassettes bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/aib-audit --demo --format csv --output demo.csv || [ $$? -eq 1 ]
	$(BIN)/aib-audit --demo || [ $$? -eq 1 ]
	@echo "CSV written to demo.csv"

test: $(STAMP)
	$(BIN)/ruff check auditor checks fixtures tests
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check auditor checks fixtures tests
	$(BIN)/mypy

cassettes: $(STAMP)
	$(BIN)/python -m fixtures.record_cassettes

bench: $(STAMP)
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache demo.csv
