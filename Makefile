# Two commands do the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test messages test-clock-ahead test-sqlite test-postgres lint bench bench-quick screenshots clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	./scripts/dev-server.sh

# axe-core for the browser tests (tests/browser/package.json); without npm those tests say so.
AXE := tests/browser/node_modules/axe-core/axe.min.js
$(AXE): tests/browser/package-lock.json
	-npm ci --prefix tests/browser --no-audit --no-fund

# Pytest arguments go in ARGS, e.g. `make test ARGS="-x tests/test_sending.py"`.
test: $(STAMP) $(AXE)
	./scripts/test.sh $(ARGS)

# The suite again with the wall clock of the tests and of every process they start a year
# ahead (`pytest --clock-offset`, see tests/conftest.py): no test may depend on today's date.
test-clock-ahead: $(STAMP) $(AXE)
	./scripts/test.sh --clock-offset=365d $(ARGS)

screenshots: $(STAMP)
	$(BIN)/python scripts/screenshots.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# Benchmarks (not tests): about 5 minutes; `make bench-quick` or `make bench ARGS=--quick` for small N.
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(ARGS)

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick $(ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache

# Translations: extract every marked string (code and templates) into messages.pot, merge it into
# each language's messages.po, and compile the .mo files the app reads (both are committed, so a
# checkout or a wheel works without this step). tests/test_translations.py fails until every
# string of the .pot has a translation.
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _l -k N_ --no-location --sort-output -o mailer/translations/messages.pot .
	$(BIN)/pybabel update -i mailer/translations/messages.pot -d mailer/translations --no-wrap --no-fuzzy-matching
	$(BIN)/pybabel compile -d mailer/translations --statistics
