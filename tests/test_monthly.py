"""`revbot monthly` end to end: Reporting API runs at the sandbox, reconciliation, Monthly tab."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from bot.ledger import Ledger
from bot.periods import Month
from tests.conftest import REVBOT_VARS, Cli, today_utc
from tests.oracle import pnl

LAST = Month.of(today_utc()).previous()


def month_bounds(m: Month) -> tuple[int, int]:
    iv = m.interval(UTC)  # type: ignore[arg-type]
    return iv.start, iv.end


def independent_pnl(txns: list[dict[str, Any]], m: Month) -> dict[str, dict[str, Decimal]]:
    start, end = month_bounds(m)
    figures = pnl(txns, lambda t: m if start <= t["created"] < end else None)
    return {ccy: lines for (_, ccy), lines in figures.items()}


def monthly_tab(cli: Cli) -> dict[tuple[str, str], tuple[Any, ...]]:
    wb = load_workbook(Path(cli.env["DATA_DIR"]) / "dashboard.xlsx")
    return {(r[0], r[1]): r for r in wb["Monthly"].iter_rows(min_row=2, values_only=True)}


COLS = ["month", "currency", "gross_revenue", "refunds", "disputes", "stripe_fees", "other",
        "net_revenue", "payouts", "starting_balance", "ending_balance", "mom_net_revenue_pct",
        "reconciled", "source"]  # fmt: skip


def backfill_month(cli: Cli, m: Month) -> None:
    run = cli("backfill", "--since", m.first_day.isoformat(), "--until", m.last_day.isoformat())
    assert run.exit_code == 0, run.stderr


def test_report_equals_ledger_to_the_cent_and_reconciles(
    cli: Cli, sandbox_account, sandbox
) -> None:  # type: ignore[no-untyped-def]
    backfill_month(cli, LAST)
    run = cli("monthly", "--month", str(LAST), "--no-send")
    assert run.exit_code == 0, run.stderr
    assert "reconciled" in run.stdout and "NOT" not in run.stdout
    expected = independent_pnl(sandbox_account.transactions, LAST)
    tab = monthly_tab(cli)
    assert {k[1] for k in tab if k[0] == str(LAST)} == set(expected)
    for ccy, lines in expected.items():
        row = dict(zip(COLS, tab[(str(LAST), ccy)], strict=True))
        for name, value in lines.items():
            assert Decimal(str(row[name])) == value, (ccy, name)
        assert row["reconciled"] == "yes" and row["source"] == "report"
        total = sum(
            Decimal(str(row[k]))
            for k in ("gross_revenue", "refunds", "disputes", "stripe_fees", "other")
        )
        assert total.quantize(Decimal("0.001")) == Decimal(str(row["net_revenue"])).quantize(
            Decimal("0.001")
        )
    # The P&L's two reports, and the payouts' reconciliation.
    assert sandbox.stats.report_runs_created == 3
    archive = Path(cli.env["DATA_DIR"]) / "archive"
    assert len(list(archive.glob("*.csv"))) == 3
    # A second run reuses the recorded runs and files: no new run at Stripe, no duplicate row.
    assert cli("monthly", "--month", str(LAST), "--no-send").exit_code == 0
    assert sandbox.stats.report_runs_created == 3
    assert len([k for k in monthly_tab(cli) if k[0] == str(LAST)]) == len(expected)


def test_mismatch_healed_by_resync(cli: Cli, sandbox_account) -> None:  # type: ignore[no-untyped-def]
    backfill_month(cli, LAST)
    start, end = month_bounds(LAST)
    victim = next(
        t
        for t in sandbox_account.transactions
        if start <= t["created"] < end and t["reporting_category"] == "charge"
    )
    sandbox_account.update_transaction(
        victim["id"], amount=victim["amount"] + 1000
    )  # changed at Stripe later
    run = cli("monthly", "--month", str(LAST), "--no-send")
    assert run.exit_code == 0, run.stderr
    assert "re-syncing" in run.stderr
    assert all(
        r[COLS.index("reconciled")] == "yes"
        for k, r in monthly_tab(cli).items()
        if k[0] == str(LAST)
    )


def test_mismatch_that_stays_is_marked(cli: Cli) -> None:
    backfill_month(cli, LAST)
    ledger = Ledger.open(Path(cli.env["DATA_DIR"]) / "state.sqlite")
    start, _ = month_bounds(LAST)
    with ledger.transaction() as conn:  # a transaction Stripe does not know about
        ledger.upsert_transactions(conn, [{
            "id": "txn_ghost", "created": start + 60, "available_on": start + 60, "currency": "usd",
            "amount": 777, "fee": 0, "net": 777, "reporting_category": "charge", "type": "charge",
            "status": "available", "description": "", "source": ""}])  # fmt: skip
    ledger.close()
    run = cli("monthly", "--month", str(LAST), "--no-send")
    assert run.exit_code == 0, run.stderr
    assert "NOT reconciled" in run.stdout and "USD charge" in run.stdout
    row = dict(zip(COLS, monthly_tab(cli)[(str(LAST), "USD")], strict=True))
    assert row["reconciled"] == "no" and "differs" in row["source"]


def test_deferral_then_daily_retries(cli: Cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    _, end = month_bounds(LAST)
    sandbox.data_available_end = end - 86400
    run = cli("monthly", "--no-send")
    assert run.exit_code == 75, (run.stdout, run.stderr)
    assert "not ready yet" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    run = cli("daily")
    assert run.exit_code == 0, run.stderr
    assert "deferred" in run.stdout
    assert sandbox.stats.report_runs_created == 0
    sandbox.data_available_end = None
    run = cli("daily")
    assert run.exit_code == 0, run.stderr
    assert str(LAST) in run.stdout
    assert sandbox.stats.report_runs_created == 3
    assert any(k[0] == str(LAST) for k in monthly_tab(cli))


def test_failed_run_is_one_clear_line(cli: Cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox.fail_next_report_run("Internal error while running the report")
    run = cli("monthly", "--month", str(LAST), "--no-send")
    assert run.exit_code == 1
    assert len(run.stderr.strip().splitlines()) == 1 and "failed" in run.stderr
    # the next attempt creates a fresh run and succeeds
    run = cli("monthly", "--month", str(LAST), "--no-send")
    assert run.exit_code == 0, run.stderr


def test_csv_without_net_column(cli: Cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox.inject("/v1/files/", status=200, times=50,
                   body=b"reporting_category,currency,count,gross,fee\r\ncharge,usd,1,10.00,0.59\r\n",
                   headers={"Content-Type": "text/csv"})  # fmt: skip
    run = cli("monthly", "--month", str(LAST), "--no-send")
    assert run.exit_code == 1
    line = run.stderr.strip()
    assert len(line.splitlines()) == 1 and "'net'" in line and "kept" in line
    kept = list((Path(cli.env["DATA_DIR"]) / "archive").glob("balance_change*.csv"))
    assert kept and "gross,fee" in kept[0].read_text()


@pytest.mark.parametrize("which", ["current", "future", "malformed"])
def test_unfinished_or_bad_month_refused(cli: Cli, which: str) -> None:
    month = {"current": str(Month.of(today_utc())), "future": str(Month.of(today_utc()).next().next()),
             "malformed": "2026-13"}[which]  # fmt: skip
    run = cli("monthly", "--month", month, "--no-send")
    assert run.exit_code == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "--month" in run.stderr
    assert not Path(cli.env["DATA_DIR"]).exists()


def test_killed_while_polling_creates_no_second_run(cli: Cli, sandbox, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sandbox.report_pending_seconds = 3.0
    env = {k: v for k, v in os.environ.items() if k not in REVBOT_VARS}
    env.update(cli.env)
    args = [sys.executable, "-m", "bot", "monthly", "--month", str(LAST), "--no-send"]
    proc = subprocess.Popen(
        args, cwd=cli.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while sandbox.stats.report_runs_created < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    created = sandbox.stats.report_runs_created
    assert created >= 1
    sandbox.report_pending_seconds = 0.0
    run = cli("monthly", "--month", str(LAST), "--no-send")
    assert run.exit_code == 0, run.stderr
    assert sandbox.stats.report_runs_created == 3  # one per report type, however the kill fell
