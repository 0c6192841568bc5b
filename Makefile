# The two commands of the README's quick start, plus the checks CI runs.
#   make run   - create .venv, install plugstore, start the chat host (plugstore chat) on
#                the embedded SQLite store
#   make test  - install (if needed) and run the whole test suite (then the real-Errbot
#                tests, in their own venv)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Errbot pins versions of requests, Pygments, pyOpenSSL and setuptools that the dev tools
# conflict with, so the tests against real Errbot run in a venv of their own, with
# plugstore installed from a built wheel: that is also how Errbot's entry-point discovery
# finds plugstore.plug for users (it misses editable installs).
ERRBOT_VENV ?= .venv-errbot
ERRBOT_BIN := $(ERRBOT_VENV)/bin
ERRBOT_VERSION ?= 6.2.1
SOURCES := $(shell find src -type f ! -path '*/__pycache__/*')

.PHONY: run test test-errbot lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(ERRBOT_BIN)/.installed: pyproject.toml $(SOURCES)
	$(PYTHON) -m venv $(ERRBOT_VENV)
	$(ERRBOT_BIN)/python -m pip install --quiet --upgrade pip
	$(ERRBOT_BIN)/python -m pip install --quiet 'errbot==$(ERRBOT_VERSION)' \
		'.[testing,postgresql,redis]' 'pytest-timeout>=2.2'
	$(ERRBOT_BIN)/python -m pip install --quiet --no-deps --force-reinstall .
	touch $@

run: $(BIN)/.installed
	$(BIN)/plugstore chat

test: $(BIN)/.installed $(ERRBOT_BIN)/.installed
	$(BIN)/python -m pytest
	$(ERRBOT_BIN)/python -m pytest tests/real_errbot

test-errbot: $(ERRBOT_BIN)/.installed
	$(ERRBOT_BIN)/python -m pytest tests/real_errbot

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(ERRBOT_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
