# One entry point. Every target creates .venv and installs what it needs, so a fresh clone
# needs nothing but Python 3.11+ and make.
#
# Installs are reproducible: uv (pinned below, installed into .venv with pip) installs exactly
# the versions and hashes recorded in uv.lock, and refuses to start when pyproject.toml no
# longer matches the lock (run `make lock` then). What each target installs:
#   make install / demo / daily / bench   revbot and its runtime dependencies only
#   make test                             + the test extra (pytest, hypothesis, ...)
#   make lint                             + the dev extra (ruff, mypy, stubs)
#   make dev                              all of the above at once
# Installs only ever add to .venv (--inexact), so `make test` after `make lint` keeps both;
# `make clean` and a new `make ...` start from exactly the lock again.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
UV_STAMP := $(VENV)/.uv-$(UV_VERSION)
# uv's project environment is this checkout's .venv whatever VIRTUAL_ENV says.
UV := UV_PROJECT_ENVIRONMENT=$(abspath $(VENV)) $(BIN)/uv
SYNC := $(UV) sync -q --locked --inexact
LOWEST := .venv-lowest

.PHONY: install dev test test-lowest lint bench demo daily lock lock-upgrade cron clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(UV_STAMP): $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	rm -f $(VENV)/.uv-*
	touch $@

# One stamp per set of extras, remade when pyproject.toml or uv.lock changes.
$(VENV)/.installed-runtime: $(UV_STAMP) pyproject.toml uv.lock
	$(SYNC)
	touch $@

$(VENV)/.installed-test: $(UV_STAMP) pyproject.toml uv.lock
	$(SYNC) --extra test
	touch $@

$(VENV)/.installed-dev: $(UV_STAMP) pyproject.toml uv.lock
	$(SYNC) --extra dev
	touch $@

install: $(VENV)/.installed-runtime

dev: $(VENV)/.installed-runtime $(VENV)/.installed-test $(VENV)/.installed-dev

# -n auto: one worker per core (pytest-xdist); the tests share no port, file or process.
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n auto

# The suite against the lowest versions pyproject.toml allows for every direct dependency, in
# a venv of its own (the lock plays no part): proves the lower bounds are true.
test-lowest: $(UV_STAMP)
	rm -rf $(LOWEST)
	$(BIN)/uv venv -q --python $(PY) $(LOWEST)
	$(BIN)/uv pip install -q --python $(LOWEST)/bin/python --resolution lowest-direct -e '.[test]'
	$(LOWEST)/bin/python -m pytest -p no:cacheprovider -n auto

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check bot tests bench scripts
	$(BIN)/ruff format --check bot tests bench scripts
	$(BIN)/mypy bot

bench: $(VENV)/.installed-runtime
	$(BIN)/python -m bench

demo: $(VENV)/.installed-runtime
	$(BIN)/revbot demo

daily: $(VENV)/.installed-runtime
	$(BIN)/revbot daily

# After editing the dependencies in pyproject.toml: re-resolve uv.lock, keeping every other
# pinned version. `make lock-upgrade` moves every pin to the newest version allowed instead.
lock: $(UV_STAMP)
	$(UV) lock

lock-upgrade: $(UV_STAMP)
	$(UV) lock --upgrade

# The crontab line for this checkout; add it with `crontab -e`. Paths are absolute because cron
# starts in $HOME with a bare PATH; the log goes to DATA_DIR as revbot itself resolves it
# (environment > .env > ./revbot-data), so `make -s cron` prints exactly what revbot will use.
cron:
	@test -x $(BIN)/revbot || { echo "make cron: revbot is not installed in $(VENV) yet; run 'make install' first" >&2; exit 1; }
	@$(BIN)/python -c 'import shlex, sys; from pathlib import Path; from bot.config import resolve; sys.excepthook = lambda t, e, tb: sys.exit(f"make cron: {e}"); d = resolve(require_stripe=False).data_dir; log = d / "daily.log"; q = lambda p: shlex.quote(str(p)).replace("%", "\\%"); print(f"15 6 * * * cd {q(Path.cwd())} && mkdir -p {q(d)} && {q(sys.argv[1])} daily >> {q(log)} 2>&1")' '$(abspath $(BIN))/revbot'

clean:
	rm -rf $(VENV) $(LOWEST) .pytest_cache .mypy_cache .ruff_cache
