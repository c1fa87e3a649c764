"""The command-line surface: every command documented, both entry points, usage errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize(
    ("args", "code", "stream", "text"),
    [
        (["no-such-command"], 2, "stderr", "No such command"),
        (["status"], 1, "stderr", "no ledger at"),
        (["doctor", "--help"], 0, "stdout", "Usage: revbot doctor"),
    ],
)
def test_the_entry_point_leaves_with_the_exit_code_and_all_output(
    tmp_path: Path, args: list[str], code: int, stream: str, text: str
) -> None:
    """main() leaves with os._exit (no interpreter teardown): output must still be flushed
    through a pipe, and the exit code be the command's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DATA_DIR"))}
    out = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**env, "DATA_DIR": str(tmp_path / "data")},
    )  # fmt: skip
    assert out.returncode == code, out.stderr
    assert text in getattr(out, stream)


def test_unknown_option_is_usage_error(cli: Cli) -> None:
    run = cli("daily", "--dte", "2026-01-01")
    assert run.exit_code == 2


def test_status_without_ledger(cli: Cli) -> None:
    run = cli("status")
    assert run.exit_code == 1 and "no ledger" in run.stderr
