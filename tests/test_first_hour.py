"""The first hour of a new user (issue 13, item 5): each surprise found by trying revbot as one
would, with the test that keeps it fixed.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import app
from bot.periods import Month
from bot.sandbox import SandboxServer
from tests.conftest import REPO, TEST_KEY, Cli, days_ago, today_utc
from tests.fakes.slack_server import FakeSlackWebhook

DAY = days_ago(2)
LAST = Month.of(today_utc()).previous()
MAIL = {"EMAIL_FROM": "Acme Finance <finance@acme.example>", "INVESTOR_EMAILS": "ann@fund.example"}


def digest(path: Path) -> str:
    """The ledger's bytes, WAL included. The in-process CLI leaves its ledger connection to the
    garbage collector, whose checkpoint would change the file later: collect it first."""
    gc.collect()
    parts = [p for p in (path, path.with_name(path.name + "-wal")) if p.exists()]
    return hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest()


def test_the_key_sandbox_serve_prints_works(cli: Cli) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "sandbox", "serve", "--port", "0"],
        cwd=cli.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        export = proc.stdout.readline().strip()
        assert export.startswith("export "), export
        env = dict(pair.split("=", 1) for pair in shlex.split(export)[1:])
        run = cli("daily", "--date", DAY.isoformat(), env=env)
        assert run.exit_code == 0, run.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_demo_keeps_out_of_a_real_ledger(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.data_available_end = 0
    assert cli("daily", "--date", DAY.isoformat()).exit_code == 0
    real = Path(cli.env["DATA_DIR"]) / "state.sqlite"
    before = digest(real)
    # DATA_DIR (from the environment, as from a .env) names the real ledger: the demo ignores it.
    run = cli("demo", "--days", "40")  # covers a closed month: its email is written
    assert run.exit_code == 0, run.stderr
    assert digest(real) == before
    demo_dir = cli.cwd / "revbot-demo-data"
    [eml] = (demo_dir / "outbox").glob("*.eml")
    assert "Subject: Demo Company (sandbox) revenue report" in eml.read_text()
    # Told to use the real folder, it refuses, and touches nothing.
    run = cli("demo", "--days", "7", "--data-dir", cli.env["DATA_DIR"])
    assert run.exit_code == 78, run.stderr
    assert "did not create" in run.stderr and digest(real) == before
    # A second demo into its own folder is fine.
    assert cli("demo", "--days", "7").exit_code == 0


def test_the_demo_hint_works_as_typed(cli: Cli) -> None:
    run = cli("demo", "--days", "7")
    assert run.exit_code == 0, run.stderr
    [hint] = [ln[len("Try: ") :] for ln in run.stdout.splitlines() if ln.startswith("Try: ")]
    path = f"{REPO / '.venv' / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "STRIPE_SECRET_KEY")}
    done = subprocess.run(["sh", "-c", hint], cwd=cli.cwd, env={**env, "PATH": path},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, (hint, done.stderr)
    assert "last synced day" in done.stdout.lower(), done.stdout


def test_a_first_daily_is_not_alarming(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.data_available_end = None  # the closed month is due: daily reports it too
    run = cli("daily")
    assert run.exit_code == 0, run.stderr
    assert "reconciled" in run.stdout
    assert "differs" not in run.stderr, run.stderr


def test_output_into_a_pipe_is_never_cut(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.data_available_end = None
    # Five currencies: a table wider than 80 columns. CliRunner's stdout is not a terminal.
    run = cli("monthly", "--month", str(LAST), "--no-send")
    assert run.exit_code == 0, run.stderr
    assert run.stdout.count("│ net_revenue") == 1 and "KWD" in run.stdout
    assert "gross_revenue" in run.stdout and "…" not in run.stdout, run.stdout
    rows = [ln for ln in run.stdout.splitlines() if "net_revenue" in ln]
    assert rows and all(re.search(r"\d", ln) for ln in rows)  # the amounts are on that line


def test_resend_without_investors_names_a_way_that_works(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.data_available_end = None
    assert cli("monthly", "--month", str(LAST), "--no-send").exit_code == 0
    env = {"EMAIL_FROM": MAIL["EMAIL_FROM"]}
    run = cli("resend", "--month", str(LAST), env=env)
    assert run.exit_code == 78 and "--to ADDR" in run.stderr and "--no-send" not in run.stderr
    run = cli("resend", "--month", str(LAST), "--to", "ann@fund.example", env=env)
    assert run.exit_code == 0, run.stderr
    assert "written to the outbox" in run.stdout and ": sent" not in run.stdout


def test_preview_of_an_open_month_names_the_latest_closed_one(cli: Cli) -> None:
    this = Month.of(today_utc())
    run = cli("preview", "--month", str(this))
    assert run.exit_code == 2
    assert f"the latest is {this.previous()}" in run.stderr
    assert "revbot monthly --month" not in run.stderr  # that command would fail too


def test_an_email_to_the_outbox_is_not_called_sent(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.data_available_end = None
    run = cli("monthly", "--month", str(LAST), env=MAIL)
    assert run.exit_code == 0, run.stderr
    assert "email to ann@fund.example: written to the outbox" in run.stdout
    assert ": sent" not in run.stdout
    run = cli("monthly", "--month", str(LAST), env=MAIL)
    assert "email to ann@fund.example: already in the outbox" in run.stdout


def test_status_needs_no_stripe_key(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.data_available_end = 0
    assert cli("daily", "--date", DAY.isoformat()).exit_code == 0
    for key in (None, "sk_test_abc"):  # none, or one cut short
        run = cli("status", env={"STRIPE_SECRET_KEY": key})
        assert run.exit_code == 0, run.stderr
        assert DAY.isoformat() in run.stdout


def test_doctor_shows_dates_tests_alerts_and_says_where_keys_come_from(
    cli: Cli, sandbox: SandboxServer
) -> None:
    with FakeSlackWebhook() as slack:
        run = cli("doctor", env={"SLACK_WEBHOOK_URL": slack.url, "ALERT_EMAILS": "cto@acme.example",
                                 "EMAIL_FROM": MAIL["EMAIL_FROM"]})  # fmt: skip
        texts = slack.texts
    [reports] = [ln for ln in run.stdout.splitlines() if "report types readable" in ln]
    assert re.search(r"until (\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC|not yet)", reports), reports
    assert not re.search(r"\b\d{9,}\b", reports), reports
    assert any("this webhook works" in t for t in texts), texts
    assert any(ln.startswith("[ok  ] Slack: test message posted") for ln in run.stdout.splitlines())
    [alert] = [ln for ln in run.stdout.splitlines() if "alert e-mail" in ln]
    assert alert.startswith("[warn]") and "RESEND_API_KEY" in alert, alert
    run = cli("doctor", env={"STRIPE_SECRET_KEY": None})
    [key] = [ln for ln in run.stdout.splitlines() if ln.startswith("[FAIL] Stripe key")]
    assert "dashboard.stripe.com/apikeys" in key


def test_doctor_says_a_revoked_webhook_fails(cli: Cli, sandbox: SandboxServer) -> None:
    with FakeSlackWebhook() as slack:
        url = slack.url + "x"
        run = cli("doctor", env={"SLACK_WEBHOOK_URL": url})
    [line] = [ln for ln in run.stdout.splitlines() if "Slack" in ln]
    assert line.startswith("[FAIL] Slack") and "HTTP 404" in line and url not in line


@pytest.mark.parametrize(
    "command", ["", "daily", "monthly", "resend", "preview", "backfill", "doctor", "status", "demo",
                "sandbox", "sandbox serve"],
)  # fmt: skip
def test_help_has_real_placeholders_and_nothing_cut(command: str) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [*command.split(), "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    text = result.stdout
    assert "…" not in text and "..." not in text.replace("COMMAND [ARGS]...", ""), text
    assert not re.search(r"<(str|int|list\[str\]|int range)>", text), text
    if command == "backfill":
        assert "--via api|report" in text
    if command == "resend":
        assert "--to ADDR" in text


def test_verbose_logs_requests_not_bodies(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.data_available_end = 0
    run = cli("-v", "daily", "--date", DAY.isoformat())
    assert run.exit_code == 0, run.stderr
    lines = run.stderr.splitlines()
    assert any("/v1/balance_transactions" in ln and "200" in ln for ln in lines)
    assert max(map(len, lines)) < 600, max(lines, key=len)[:200]
    assert TEST_KEY not in run.stderr
