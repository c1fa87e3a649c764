"""The local workbook's snapshot: a run rebuilds the workbook from the cells revbot last wrote
instead of parsing the xlsx, only while the file is exactly what revbot wrote."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from openpyxl.styles import PatternFill

from bot.dashboard.base import DailyRow, DashboardUpdate, MonthlyRow, TransactionRow
from bot.dashboard.workbook import WorkbookDashboard
from bot.pnl import PnlLines

WHEN = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)


def trow(
    i: int, description: str, status: str = "pending", currency: str = "usd"
) -> TransactionRow:
    return TransactionRow(id=f"txn_{i}", created=WHEN, available_on=WHEN, type="charge",
                          reporting_category="charge", currency=currency, amount=1000 + i, fee=59,
                          net=941 + i, status=status, description=description, source="ch_1")  # fmt: skip


def drow(day: int, currency: str, gross: int) -> DailyRow:
    return DailyRow(date=date(2026, 10, day), currency=currency,
                    lines=PnlLines(gross_revenue=gross, stripe_fees=-59), charges=1,
                    refunds_count=0, transactions=1, updated_at=WHEN)  # fmt: skip


def mrow(month: str, gross: int, pct: Decimal | None) -> MonthlyRow:
    return MonthlyRow(month=month, currency="eur", lines=PnlLines(gross_revenue=gross),
                      starting_balance=None, ending_balance=gross, mom_net_revenue_pct=pct,
                      reconciled=True, source="report")  # fmt: skip


STEPS = [
    DashboardUpdate(daily=[drow(1, "usd", 1000), drow(1, "jpy", 1500)],
                    transactions=[trow(1, '=IMPORTXML("http://x","//a")'), trow(2, "plain")]),
    DashboardUpdate(daily=[drow(1, "usd", 1000), drow(2, "usd", 700)],  # one same, one new
                    transactions=[trow(2, "plain", status="available"), trow(3, "+1+1", currency="jpy")]),
    DashboardUpdate(monthly=[mrow("2026-09", 5000, None), mrow("2026-10", 6000, Decimal("0.2"))]),
    DashboardUpdate(daily=[drow(2, "usd", 900)], monthly=[mrow("2026-10", 6500, Decimal("0.3"))]),
    DashboardUpdate(),
]  # fmt: skip


def everything(path: Path) -> dict[str, Any]:
    """Every cell of every tab, with its format and type, as a reader of the file sees it."""
    wb = load_workbook(path)
    return {
        ws.title: [
            [(c.value, c.number_format, c.data_type, bool(c.font and c.font.b)) for c in row]
            for row in ws.iter_rows()
        ]
        for ws in wb
    } | {"order": wb.sheetnames, "freeze": [ws.freeze_panes for ws in wb]}


def test_the_snapshot_writes_what_reading_the_file_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fast = WorkbookDashboard(tmp_path / "fast" / "dashboard.xlsx")
    slow = WorkbookDashboard(tmp_path / "slow" / "dashboard.xlsx")
    snapshot = fast.path.with_name(".dashboard.xlsx.snapshot")
    for n, update in enumerate(STEPS):
        slow.path.with_name(".dashboard.xlsx.snapshot").unlink(missing_ok=True)
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="bot.dashboard.workbook"):
            got = fast.apply(update)
        used = any("from its snapshot" in r.getMessage() for r in caplog.records)
        assert used == (n > 0)  # the first run has no workbook yet
        want = slow.apply(update)
        assert (got.inserted, got.updated, got.created) == (
            want.inserted,
            want.updated,
            want.created,
        )
        assert everything(fast.path) == everything(slow.path)
        assert snapshot.exists()
    txs = load_workbook(fast.path)["Transactions"]
    assert txs.cell(2, 11).value.startswith("=IMPORTXML") and txs.cell(2, 11).data_type == "s"


def test_a_founders_edit_is_kept_and_turns_the_snapshot_off(tmp_path: Path) -> None:
    dash = WorkbookDashboard(tmp_path / "dashboard.xlsx")
    snapshot = tmp_path / ".dashboard.xlsx.snapshot"
    dash.apply(STEPS[0])
    assert snapshot.exists()
    wb = load_workbook(dash.path)
    wb["Daily"]["B2"].fill = PatternFill("solid", start_color="FFFF00")  # a highlight
    wb.save(dash.path)
    dash.apply(STEPS[1])  # the file is not what revbot wrote: read, and the highlight kept
    assert load_workbook(dash.path)["Daily"]["B2"].fill.start_color.rgb == "00FFFF00"
    wb = load_workbook(dash.path)
    wb.create_sheet("My notes")["A1"] = "keep me"
    wb.save(dash.path)
    dash.apply(STEPS[2])
    assert not snapshot.exists()  # a founder's tab: every run reads the file from now on
    dash.apply(STEPS[3])
    wb = load_workbook(dash.path)
    assert wb["My notes"]["A1"].value == "keep me"
    assert [r[0] for r in wb["Monthly"].iter_rows(min_row=2, values_only=True)] == [
        "2026-09",
        "2026-10",
    ]
    assert wb["Monthly"]["C3"].value == 65.0


@pytest.mark.parametrize("damage", [b"", b"not a pickle", None], ids=["empty", "garbage", "stale"])
def test_a_damaged_or_stale_snapshot_is_ignored(tmp_path: Path, damage: bytes | None) -> None:
    dash = WorkbookDashboard(tmp_path / "a" / "dashboard.xlsx")
    ref = WorkbookDashboard(tmp_path / "b" / "dashboard.xlsx")
    for d in (dash, ref):
        d.apply(STEPS[0])
    snapshot = dash.path.with_name(".dashboard.xlsx.snapshot")
    if damage is None:
        older = snapshot.read_bytes()
        dash.apply(STEPS[1])
        snapshot.write_bytes(older)  # a snapshot of the workbook before: its SHA-256 differs
        ref.apply(STEPS[1])
    else:
        snapshot.write_bytes(damage)
    dash.apply(STEPS[3])
    ref.apply(STEPS[3])
    assert everything(dash.path) == everything(ref.path)
    assert snapshot.exists() and snapshot.read_bytes() != damage
