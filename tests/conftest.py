"""Shared fixtures: the sandbox on 127.0.0.1, a clean environment, and a CLI runner."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from typer.testing import CliRunner

from bot.cli import app

REPO = Path(__file__).resolve().parents[1]
TEST_KEY = "sk_test_" + "T3stKeyForRevbot0001"

# Every variable revbot reads: tests start from none of them, whatever the machine has.
REVBOT_VARS = (
    "STRIPE_SECRET_KEY", "STRIPE_MODE", "STRIPE_API_BASE", "STRIPE_MAX_RPS", "REPORT_TIMEZONE",
    "GOOGLE_SHEET_ID", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_SHEETS_API_URL", "RESEND_API_KEY",
    "RESEND_API_URL", "EMAIL_FROM", "INVESTOR_EMAILS", "COMPANY_NAME", "DATA_DIR",
    "SLACK_WEBHOOK_URL", "ALERT_EMAILS", "SHEET_TRANSACTIONS_DAYS", "ACCOUNTING_ACCOUNTS",
    "XERO_CLIENT_ID", "XERO_CLIENT_SECRET", "XERO_API_URL", "XERO_IDENTITY_URL",
)  # fmt: skip


def today_utc() -> date:
    return datetime.now(UTC).date()


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str


class Cli:
    """Runs the real typer app in-process, with a given environment, in a working directory."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env

    def __call__(self, *args: str, env: Mapping[str, str | None] | None = None) -> Run:
        merged: dict[str, str | None] = {k: None for k in REVBOT_VARS}
        merged.update(self.env)
        merged.update(env or {})
        runner = CliRunner()
        old = Path.cwd()
        os.chdir(self.cwd)
        try:
            result = runner.invoke(app, list(args), env=merged, catch_exceptions=False)
        finally:
            os.chdir(old)
        return Run(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def sandbox_account():  # type: ignore[no-untyped-def]
    from bot.sandbox import SandboxAccount

    return SandboxAccount.generate(end=today_utc(), days=75, tz="UTC", seed=11)


@pytest.fixture(scope="session")
def sandbox_billing():  # type: ignore[no-untyped-def]
    """The sandbox's subscriptions and invoices (read-only, so one for the whole session)."""
    from bot.sandbox import SandboxBilling

    return SandboxBilling.generate(end=today_utc(), seed=11, tz="UTC")


@pytest.fixture
def sandbox(sandbox_account, sandbox_billing):  # type: ignore[no-untyped-def]
    """The sandbox account, its subscriptions and invoices included (``sandbox.billing``: the
    BillingApi, whose ``restricted_key_lacks`` a test may change)."""
    from bot.sandbox import BillingApi, SandboxServer

    with SandboxServer(sandbox_account, billing=BillingApi(sandbox_billing)) as server:
        yield server


@pytest.fixture
def cli(tmp_path: Path, sandbox) -> Iterator[Cli]:  # type: ignore[no-untyped-def]
    work = tmp_path / "work"
    work.mkdir()
    yield Cli(
        work,
        {
            "STRIPE_SECRET_KEY": TEST_KEY,
            "STRIPE_API_BASE": sandbox.url,
            "DATA_DIR": str(work / "data"),
            "REPORT_TIMEZONE": "UTC",
        },
    )


def days_ago(n: int) -> date:
    return today_utc() - timedelta(days=n)


def drain_faults(server: Any, route: str, key: str = TEST_KEY) -> None:
    """Use up the faults still injected on ``route`` of a sandbox with plain requests."""
    for _ in range(1000):
        try:
            r = requests.get(
                server.url + route, headers={"Authorization": f"Bearer {key}"}, timeout=10
            )
        except requests.ConnectionError:
            continue  # an injected reset
        if r.status_code == 200:
            return
    raise AssertionError("the fault never cleared")
