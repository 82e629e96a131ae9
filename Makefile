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

# The demo estate with its accepted risks, every report from one collection; then the same estate a week later
# against that run's JSON: new and fixed findings. Exit 1 (the demo has FAILs) is the expected outcome.
DEMO_EXCEPTIONS := fixtures/demo-exceptions.toml

demo: $(STAMP)
	$(BIN)/aib-audit --demo --expand-groups --exceptions $(DEMO_EXCEPTIONS) --report csv=demo.csv --report json=demo.json \
		--report html=demo.html --report sarif=demo.sarif || [ $$? -eq 1 ]
	@echo "Reports written: demo.csv demo.json demo.html demo.sarif"
	@echo
	@echo "A week later (fixtures/estates/demo-changed.json), compared with demo.json:"
	$(BIN)/aib-audit --snapshot fixtures/estates/demo-changed.json --expand-groups --exceptions $(DEMO_EXCEPTIONS) --baseline demo.json \
		--report csv=demo-changed.csv || [ $$? -eq 1 ]
	@echo "Reports written: demo-changed.csv (column change: new, regressed, unchanged, fixed)"

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
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache demo.csv demo.json demo.html demo.sarif demo-changed.csv
