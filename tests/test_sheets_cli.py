"""The real `revbot daily` / `revbot backfill` paths writing a Google Sheet through gspread,
against the fake Sheets API (validated against Google's discovery document)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.dashboard.base import DAILY_COLUMNS, TRANSACTION_COLUMNS
from bot.dashboard.sheets import GoogleSheetDashboard
from bot.errors import TemporaryError
from bot.jobs.context import Context
from bot.jobs.daily import daily
from bot.ledger import Ledger
from tests.conftest import Cli, days_ago, today_utc
from tests.fakes.sheets import (
    FakeSheetsServer,
    Formula,
    serving,
    to_serial,
    write_service_account_key,
)

SID = "1RevbotTestSheet0123456789abcdefghijklmnopqrs"
EMAIL = "revbot@test-project.iam.gserviceaccount.com"


@pytest.fixture
def sheets() -> Iterator[FakeSheetsServer]:
    with serving(SID) as fake:
        yield fake


@pytest.fixture
def sheet_cli(cli: Cli, sheets: FakeSheetsServer, tmp_path: Path) -> Cli:
    key = tmp_path / "credentials.json"
    write_service_account_key(key, token_uri=sheets.token_uri, client_email=EMAIL)
    key.chmod(0o600)
    cli.env.update({
        "GOOGLE_SHEET_ID": f"https://docs.google.com/spreadsheets/d/{SID}/edit#gid=0",
        "GOOGLE_APPLICATION_CREDENTIALS": str(key), "GOOGLE_SHEETS_API_URL": sheets.url,
    })  # fmt: skip
    return cli


def rows(sheets: FakeSheetsServer, title: str) -> list[list[Any]]:
    return sheets.grid(SID, title)[1:]


def ts(day: Any, hour: int) -> int:
    return int(datetime.combine(day, time(hour), tzinfo=UTC).timestamp())


def test_three_daily_runs_no_duplicates_and_at_most_three_requests(
    sheet_cli: Cli,
    sheets: FakeSheetsServer,
    sandbox_account,  # type: ignore[no-untyped-def]
) -> None:
    day = days_ago(2)
    sandbox_account.add_transaction(created=ts(day, 8), amount=1000, fee=59, currency="usd",
                                    reporting_category="charge", description='=IMPORTXML("http://x","//a")')  # fmt: skip
    sandbox_account.add_transaction(created=ts(day, 9), amount=500, fee=0, currency="usd",
                                    reporting_category="charge", description="+1-2@SUM(A1)")  # fmt: skip
    for _ in range(2):
        run = sheet_cli("daily", "--date", day.isoformat())
        assert run.exit_code == 0, run.stderr
    first_daily, first_tx = rows(sheets, "Daily"), rows(sheets, "Transactions")
    sheets.reset_counts()
    run = sheet_cli("daily", "--date", day.isoformat())
    assert run.exit_code == 0, run.stderr
    assert sheets.count() <= 3, [r.kind for r in sheets.requests]
    assert rows(sheets, "Daily") == first_daily and rows(sheets, "Transactions") == first_tx
    assert sheets.grid(SID, "Daily")[0][: len(DAILY_COLUMNS)] == list(DAILY_COLUMNS)
    assert sheets.grid(SID, "Transactions")[0][: len(TRANSACTION_COLUMNS)] == list(
        TRANSACTION_COLUMNS
    )
    keys = [(r[0], r[1]) for r in first_daily]
    assert len(keys) == len(set(keys))
    ids = [r[0] for r in first_tx]
    assert len(ids) == len(set(ids))
    # formula-looking Stripe text is literal text, numbers are numbers
    by_desc = {r[10]: r for r in first_tx}
    for text in ('=IMPORTXML("http://x","//a")', "+1-2@SUM(A1)"):
        assert text in by_desc and not isinstance(by_desc[text], Formula)
    assert by_desc["+1-2@SUM(A1)"][6] == 5  # amount, major units, a number
    # the day's row is there with exact figures for USD
    usd = next(r for r in first_daily if r[0] == to_serial(day) and r[1] == "USD")
    assert abs(usd[7] - sum(x for x in usd[2:7])) < 1e-9  # net = the five lines
    # charts: present exactly once each after three runs
    titles = [c["spec"].get("title") for c in sheets.charts(SID)]
    assert titles and len(titles) == len(set(titles))


def test_late_change_updated_in_place(
    sheet_cli: Cli, sheets: FakeSheetsServer, sandbox_account
) -> None:  # type: ignore[no-untyped-def]
    day = days_ago(3)
    txn = sandbox_account.add_transaction(created=ts(day, 10), amount=2000, fee=88, currency="eur",
                                          reporting_category="charge", description="Order 1", status="pending")  # fmt: skip
    assert sheet_cli("daily", "--date", day.isoformat()).exit_code == 0
    before = len(rows(sheets, "Transactions"))
    sandbox_account.update_transaction(txn["id"], status="available", description="Order 1 (paid)")
    assert sheet_cli("daily", "--date", days_ago(1).isoformat()).exit_code == 0
    mine = [r for r in rows(sheets, "Transactions") if r[0] == txn["id"]]
    assert len(mine) == 1 and mine[0][9] == "available" and mine[0][10] == "Order 1 (paid)"
    assert len(rows(sheets, "Transactions")) >= before


def test_backfill_a_year_in_bodies_of_at_most_two_megabytes(
    tmp_path: Path, sheets: FakeSheetsServer
) -> None:
    """A year is as many batchUpdates as its bytes need, each at most 2 MB as Google advises
    (an apply used to send at most eight, growing past 2 MB instead)."""
    from bot.sandbox import SandboxAccount, SandboxServer

    account = SandboxAccount.generate(end=today_utc(), days=370, tz="UTC", seed=3, scale=0.3)
    with SandboxServer(account) as stripe:
        key = tmp_path / "credentials.json"
        write_service_account_key(key, token_uri=sheets.token_uri, client_email=EMAIL)
        cli = Cli(tmp_path, {"STRIPE_SECRET_KEY": "sk_test_" + "B" * 20, "STRIPE_API_BASE": stripe.url,
                             "DATA_DIR": str(tmp_path / "data"), "GOOGLE_SHEET_ID": SID,
                             "GOOGLE_APPLICATION_CREDENTIALS": str(key), "GOOGLE_SHEETS_API_URL": sheets.url})  # fmt: skip
        run = cli("backfill", "--since", (today_utc() - timedelta(days=365)).isoformat())
        assert run.exit_code == 0, run.stderr
    writes = [r.body_bytes for r in sheets.requests if r.kind == "spreadsheets.batchUpdate"]
    assert writes and max(writes) <= 2_000_000
    assert sum(writes) > 2_000_000  # a year that needs more than one body
    tx = rows(sheets, "Transactions")
    year = [t for t in account.transactions if t["created"] >= ts(today_utc() - timedelta(days=365), 0)
            and t["created"] < ts(today_utc(), 0)]  # fmt: skip
    assert sorted(r[0] for r in tx) == sorted(t["id"] for t in year)
    assert len({(r[0], r[1]) for r in rows(sheets, "Daily")}) == len(rows(sheets, "Daily"))


def test_429_for_a_while_then_done(sheet_cli: Cli, sheets: FakeSheetsServer) -> None:
    assert sheet_cli("daily", "--date", days_ago(2).isoformat()).exit_code == 0
    sheets.inject(429, times=2)
    run = sheet_cli("daily", "--date", days_ago(1).isoformat())
    assert run.exit_code == 0, run.stderr
    assert any(r[0] == to_serial(days_ago(1)) for r in rows(sheets, "Daily"))


def test_429_past_the_budget_exits_75_and_next_run_completes(
    tmp_path: Path,
    sheets: FakeSheetsServer,
    sandbox,  # type: ignore[no-untyped-def]
) -> None:
    """Through the daily job with a dashboard whose sleeps are recorded, not slept."""
    from bot.config import Secret
    from bot.stripe_source import StripeSource

    key = tmp_path / "credentials.json"
    write_service_account_key(key, token_uri=sheets.token_uri, client_email=EMAIL)
    waited: list[float] = []
    dash = GoogleSheetDashboard(spreadsheet_id=SID, credentials_file=key, api_url=sheets.url,
                                max_wait=30.0, sleep=waited.append)  # fmt: skip
    ledger = Ledger.open(tmp_path / "state.sqlite")
    source = StripeSource(api_key=Secret("sk_test_" + "C" * 20), api_base=sandbox.url)
    ctx = Context(
        ledger=ledger, dashboard=dash, source=source, tz=ZoneInfo("UTC"), now=datetime.now(UTC)
    )
    sheets.inject(429, times=1000)
    with pytest.raises(TemporaryError, match="quota"):
        daily(ctx, day=days_ago(2))
    # Most of the budget, never past it: it stops when the next wait (at most min(32, 2**n) s,
    # bot.retry) would pass the 30 s.
    assert sum(waited) <= 30 < sum(waited) + min(32, 2 ** len(waited))
    assert ledger.transaction_count() > 0  # the ledger was committed before the sheet
    pending = ledger.pending_dashboard_days("UTC")
    assert days_ago(2) in pending
    sheets.clear_injections()
    daily(ctx, day=days_ago(2))
    assert ledger.pending_dashboard_days("UTC") == []
    assert any(r[0] == to_serial(days_ago(2)) for r in rows(sheets, "Daily"))


def test_403_names_the_service_account(sheet_cli: Cli, sheets: FakeSheetsServer) -> None:
    sheets.unshare(SID)
    run = sheet_cli("daily", "--date", days_ago(2).isoformat())
    assert run.exit_code == 1
    assert EMAIL in run.stderr and len(run.stderr.strip().splitlines()) == 1
