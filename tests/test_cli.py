"""The command-line surface: every command documented, both entry points, usage errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer.main

from bot import __version__
from bot.cli import app
from tests.conftest import Cli

COMMANDS = [
    "daily",
    "monthly",
    "resend",
    "preview",
    "backfill",
    "doctor",
    "status",
    "demo",
    "sandbox",
]


def test_every_command_has_help_text() -> None:
    group = typer.main.get_command(app)
    names = set(group.commands)  # type: ignore[attr-defined]
    assert set(COMMANDS) <= names
    for name in names:
        cmd = group.commands[name]  # type: ignore[attr-defined]
        assert (cmd.help or "").strip(), name
        for param in cmd.params:
            if param.param_type_name == "option" and param.name != "help":
                assert (getattr(param, "help", "") or "").strip(), f"{name} {param.name}"


@pytest.mark.parametrize(
    "entry", [["-m", "bot"], ["-c", "from bot.cli import main; main()"]], ids=["module", "script"]
)
def test_entry_points(entry: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, *entry, "--version"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == f"revbot {__version__}"


def test_unknown_option_is_usage_error(cli: Cli) -> None:
    run = cli("daily", "--dte", "2026-01-01")
    assert run.exit_code == 2


def test_status_without_ledger(cli: Cli) -> None:
    run = cli("status")
    assert run.exit_code == 1 and "no ledger" in run.stderr
