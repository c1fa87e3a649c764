# One entry point. Every target creates .venv and installs what it needs, so a fresh clone
# needs nothing but Python 3.11+ and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint bench demo daily cron clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check bot tests bench
	$(BIN)/mypy bot

bench: $(STAMP)
	$(BIN)/python -m bench

demo: $(STAMP)
	$(BIN)/revbot demo

daily: $(STAMP)
	$(BIN)/revbot daily

cron:
	@echo "15 6 * * * cd $(CURDIR) && $(CURDIR)/$(BIN)/revbot daily >> $(CURDIR)/revbot-data/daily.log 2>&1"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
