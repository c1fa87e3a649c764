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

# The crontab line for this checkout; add it with `crontab -e`. Paths are absolute because cron
# starts in $HOME with a bare PATH; the log goes to DATA_DIR as revbot itself resolves it
# (environment > .env > ./revbot-data), so `make -s cron` prints exactly what revbot will use.
cron:
	@test -x $(BIN)/revbot || { echo "make cron: revbot is not installed in $(VENV) yet; run 'make install' first" >&2; exit 1; }
	@$(BIN)/python -c 'import shlex, sys; from pathlib import Path; from bot.config import resolve; sys.excepthook = lambda t, e, tb: sys.exit(f"make cron: {e}"); d = resolve(require_stripe=False).data_dir; log = d / "daily.log"; q = lambda p: shlex.quote(str(p)).replace("%", "\\%"); print(f"15 6 * * * cd {q(Path.cwd())} && mkdir -p {q(d)} && {q(sys.argv[1])} daily >> {q(log)} 2>&1")' '$(abspath $(BIN))/revbot'

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
