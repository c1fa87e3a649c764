"""`revbot daily` end to end: the real CLI, the stripe SDK over HTTP, the sandbox, the workbook."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from tests.conftest import TEST_KEY, Cli, days_ago
from tests.oracle import MONEY, pnl


def ts(day: date, hour: int) -> int:
    return int(datetime.combine(day, time(hour), tzinfo=UTC).timestamp())


def expected_for_day(txns: list[dict[str, Any]], day: date) -> dict[str, dict[str, Decimal]]:
    start, end = ts(day, 0), ts(day + timedelta(days=1), 0)
    figures = pnl(txns, lambda t: day if start <= t["created"] < end else None)
    return {ccy: lines for (_, ccy), lines in figures.items()}


def daily_tab(cli: Cli) -> list[tuple[Any, ...]]:
    wb = load_workbook(Path(cli.env["DATA_DIR"]) / "dashboard.xlsx")
    return [tuple(r) for r in wb["Daily"].iter_rows(min_row=2, values_only=True)]


def rows_by_key(rows: list[tuple[Any, ...]]) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {(r[0].date().isoformat(), r[1]): r for r in rows}


def test_a_busy_day_gives_exact_figures(cli: Cli, sandbox_account) -> None:  # type: ignore[no-untyped-def]
    day = days_ago(2)
    add = sandbox_account.add_transaction
    add(
        created=ts(day, 9),
        amount=250000,
        fee=0,
        currency="jpy",
        reporting_category="charge",
        description="JPY plan",
    )
    add(created=ts(day, 10), amount=4999, fee=175, currency="eur", reporting_category="charge")
    add(created=ts(day, 11), amount=-1999, currency="eur", reporting_category="refund")
    add(created=ts(day, 12), amount=-5000, fee=1500, currency="usd", reporting_category="dispute")
    add(
        created=ts(day, 13),
        amount=-2500,
        currency="usd",
        reporting_category="fee",
        type="stripe_fee",
    )
    add(created=ts(day, 14), amount=-30000, currency="jpy", reporting_category="refund")
    add(created=ts(day, 15), amount=12340, fee=0, currency="kwd", reporting_category="charge")

    run = cli("daily", "--date", day.isoformat())
    assert run.exit_code == 0, run.stderr
    expected = expected_for_day(sandbox_account.transactions, day)
    got = rows_by_key(daily_tab(cli))
    todays = {k[1]: v for k, v in got.items() if k[0] == day.isoformat()}
    assert set(todays) == set(expected) and {"EUR", "JPY", "USD", "KWD"} <= set(todays)
    for ccy, lines in expected.items():
        row = todays[ccy]
        for i, name in enumerate(MONEY, start=2):
            assert Decimal(str(row[i])) == lines[name], (ccy, name)
    assert "JPY" in run.stdout and "¥" in run.stdout


def test_twice_the_same_day_leaves_identical_rows(cli: Cli) -> None:
    day = days_ago(3)
    assert cli("daily", "--date", day.isoformat()).exit_code == 0
    first = daily_tab(cli)
    wb_path = Path(cli.env["DATA_DIR"]) / "dashboard.xlsx"
    tx_first = [
        tuple(r) for r in load_workbook(wb_path)["Transactions"].iter_rows(values_only=True)
    ]
    again = cli("daily", "--date", day.isoformat())
    assert again.exit_code == 0, again.stderr
    assert daily_tab(cli) == first
    assert [
        tuple(r) for r in load_workbook(wb_path)["Transactions"].iter_rows(values_only=True)
    ] == tx_first
    keys = [(r[0], r[1]) for r in first]
    assert len(keys) == len(set(keys))
    # the look-back window: the day and the 3 before it (the closed month, reconciled by the
    # monthly report that daily starts, is there too)
    assert {day - timedelta(days=i) for i in range(4)} <= {r[0].date() for r in first}


def test_identity_holds_on_every_daily_row(cli: Cli) -> None:
    assert cli("backfill", "--since", days_ago(20).isoformat()).exit_code == 0
    rows = daily_tab(cli)
    assert len(rows) > 40
    for r in rows:
        gross, refunds, disputes, fees, other, net = (Decimal(str(v)) for v in r[2:8])
        assert (gross + refunds + disputes + fees + other).quantize(
            Decimal("0.001")
        ) == net.quantize(Decimal("0.001")), r


def test_catch_up_and_late_change(cli: Cli, sandbox_account) -> None:  # type: ignore[no-untyped-def]
    assert cli("daily", "--date", days_ago(10).isoformat()).exit_code == 0
    # a transaction of a day inside the next look-back window changes late at Stripe
    victim = next(
        t
        for t in sandbox_account.transactions
        if ts(days_ago(3), 0) <= t["created"] < ts(days_ago(2), 0)
        and t["reporting_category"] == "charge"
    )
    run = cli("daily", "--date", days_ago(2).isoformat())
    assert run.exit_code == 0
    synced = {r[0].date() for r in daily_tab(cli)}
    assert {days_ago(n) for n in range(2, 14)} <= synced  # catch-up 9..3 and look-back
    sandbox_account.update_transaction(
        victim["id"], description='=HYPERLINK("http://evil")', status="available"
    )
    assert cli("daily", "--date", days_ago(1).isoformat()).exit_code == 0
    wb = load_workbook(Path(cli.env["DATA_DIR"]) / "dashboard.xlsx")
    rows = [r for r in wb["Transactions"].iter_rows(min_row=2) if r[0].value == victim["id"]]
    assert len(rows) == 1
    assert rows[0][10].value == '=HYPERLINK("http://evil")' and rows[0][10].data_type == "s"
    assert rows[0][9].value == "available"


def test_dry_run_writes_nothing(cli: Cli) -> None:
    run = cli("daily", "--date", days_ago(2).isoformat(), "--dry-run")
    assert run.exit_code == 0, run.stderr
    assert "would sync" in run.stdout
    data = Path(cli.env["DATA_DIR"])
    assert not (data / "dashboard.xlsx").exists() and not (data / "state.sqlite").exists()


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [(["--date", "2026-13-01"], {}, 2, "not a real calendar date"),
     (["--date", "31/10/2026"], {}, 2, "YYYY-MM-DD"),
     (["--date", (date.today() + timedelta(days=3)).isoformat()], {}, 2, "in the future"),
     ([], {"STRIPE_SECRET_KEY": None}, 78, "STRIPE_SECRET_KEY is not set"),
     ([], {"STRIPE_SECRET_KEY": "pk_test_" + "x" * 24}, 78, "publishable key"),
     ([], {"STRIPE_SECRET_KEY": "sk_test_abc"}, 78, "not a Stripe secret"),
     ([], {"STRIPE_MODE": "live"}, 78, "STRIPE_MODE=live but"),
     ([], {"REPORT_TIMEZONE": "Mars/Olympus_Mons"}, 78, "REPORT_TIMEZONE"),
     ([], {"STRIPE_SECRET_KEY": "sk_live_" + "W" * 24}, 78, "Stripe rejected")],
    ids=["month-13", "wrong-format", "future", "no-key", "pk-key", "truncated-key", "mode-mismatch",
         "unknown-zone", "key-rejected-by-stripe"],
)  # fmt: skip
def test_bad_input_one_line_and_nothing_written(
    cli: Cli, args: list[str], env: dict[str, str | None], code: int, message: str
) -> None:
    run = cli("daily", *args, env=env)
    assert run.exit_code == code, (run.stdout, run.stderr)
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], run.stderr
    assert "Traceback" not in run.stderr
    assert TEST_KEY not in run.stderr + run.stdout
    assert "W" * 24 not in run.stderr + run.stdout
    assert not (Path(cli.env["DATA_DIR"]) / "dashboard.xlsx").exists()


def test_a_deleted_workbook_is_rebuilt_from_the_ledger(cli: Cli) -> None:
    assert (
        cli(
            "backfill", "--since", days_ago(12).isoformat(), "--until", days_ago(6).isoformat()
        ).exit_code
        == 0
    )
    assert cli("daily", "--date", days_ago(2).isoformat()).exit_code == 0
    path = Path(cli.env["DATA_DIR"]) / "dashboard.xlsx"
    before = sorted(daily_tab(cli), key=lambda r: (r[0], r[1]))
    monthly_before = [
        tuple(r) for r in load_workbook(path)["Monthly"].iter_rows(min_row=2, values_only=True)
    ]
    assert monthly_before  # daily reported the last closed month
    path.unlink()
    assert cli("daily", "--date", days_ago(2).isoformat()).exit_code == 0
    after = sorted(daily_tab(cli), key=lambda r: (r[0], r[1]))
    assert [r[:12] for r in after] == [r[:12] for r in before]
    monthly_after = [
        tuple(r) for r in load_workbook(path)["Monthly"].iter_rows(min_row=2, values_only=True)
    ]
    assert monthly_after == monthly_before
