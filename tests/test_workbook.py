import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook

from bot.dashboard.base import (
    DAILY_COLUMNS,
    TRANSACTION_COLUMNS,
    DailyRow,
    DashboardUpdate,
    TransactionRow,
)
from bot.dashboard.workbook import WorkbookDashboard
from bot.errors import RevbotError
from bot.pnl import PnlLines

WHEN = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)


def trow(id_: str, description: str, amount: int = 1000, currency: str = "usd") -> TransactionRow:
    return TransactionRow(id=id_, created=WHEN, available_on=WHEN, type="charge",
                          reporting_category="charge", currency=currency, amount=amount, fee=59,
                          net=amount - 59, status="pending", description=description, source="ch_1")  # fmt: skip


def drow(day: date, currency: str, gross: int) -> DailyRow:
    return DailyRow(date=day, currency=currency, lines=PnlLines(gross_revenue=gross, stripe_fees=-59),
                    charges=1, refunds_count=0, transactions=1, updated_at=WHEN)  # fmt: skip


INJECTIONS = ['=IMPORTXML("http://x","//a")', "+1+1", "-2+3", "@SUM(A1)", "=1+1"]


def test_upsert_formats_and_literal_text(tmp_path: Path) -> None:
    dash = WorkbookDashboard(tmp_path / "dashboard.xlsx")
    update = DashboardUpdate(
        daily=[drow(date(2026, 10, 5), "usd", 1000), drow(date(2026, 10, 5), "jpy", 1500)],
        transactions=[trow(f"txn_{i}", d) for i, d in enumerate(INJECTIONS)],
    )
    dash.apply(update)
    dash.apply(update)
    res = dash.apply(update)
    assert res.inserted == {"Daily": 0, "Monthly": 0, "Transactions": 0}
    wb = load_workbook(tmp_path / "dashboard.xlsx")
    assert wb.sheetnames[:3] == ["Daily", "Monthly", "Transactions"] and "Charts" in wb.sheetnames
    daily = wb["Daily"]
    assert [c.value for c in daily[1]] == list(DAILY_COLUMNS)
    assert daily.max_row == 3
    assert daily.freeze_panes == "A2"
    jpy, usd = daily[2], daily[3]  # a day's rows in currency order
    assert usd[0].value == datetime(2026, 10, 5) and usd[0].number_format == "yyyy-mm-dd"
    assert usd[2].value == 10.0 and usd[2].number_format == '"$"#,##0.00;-"$"#,##0.00'
    assert jpy[2].value == 1500 and jpy[2].number_format == '"¥"#,##0;-"¥"#,##0'
    assert usd[7].value == pytest.approx(9.41)  # net = 10.00 - 0.59
    txs = wb["Transactions"]
    assert [c.value for c in txs[1]] == list(TRANSACTION_COLUMNS)
    descriptions = [txs.cell(r, 11) for r in range(2, txs.max_row + 1)]
    assert [c.value for c in descriptions] == INJECTIONS
    assert all(c.data_type == "s" for c in descriptions)
    # The file itself holds them as strings, not <f> formula elements.
    with zipfile.ZipFile(tmp_path / "dashboard.xlsx") as z:
        sheet_xml = z.read("xl/worksheets/sheet3.xml").decode()
    assert "<f>" not in sheet_xml


def test_changed_row_updated_in_place_and_user_tabs_kept(tmp_path: Path) -> None:
    path = tmp_path / "dashboard.xlsx"
    dash = WorkbookDashboard(path)
    dash.apply(DashboardUpdate(transactions=[trow("txn_1", "first"), trow("txn_2", "second")]))
    wb = load_workbook(path)
    mine = wb.create_sheet("My notes")
    mine["A1"] = "keep me"
    wb["Transactions"].cell(2, len(TRANSACTION_COLUMNS) + 2, "founder's column")
    wb.save(path)
    res = dash.apply(DashboardUpdate(transactions=[trow("txn_1", "refunded later")]))
    assert res.updated["Transactions"] == 1 and res.inserted["Transactions"] == 0
    wb = load_workbook(path)
    txs = wb["Transactions"]
    assert txs.max_row == 3
    assert txs.cell(2, 11).value == "refunded later"
    assert txs.cell(2, len(TRANSACTION_COLUMNS) + 2).value == "founder's column"
    assert wb["My notes"]["A1"].value == "keep me"


def test_invalid_workbook_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dashboard.xlsx"
    path.write_text("not a zip")
    with pytest.raises(RevbotError, match="not a valid xlsx"):
        WorkbookDashboard(path).apply(DashboardUpdate())
    assert path.read_text() == "not a zip"


@pytest.mark.parametrize("founder_saved", [True, False], ids=["read-back", "cache"])
def test_a_day_read_back_and_a_day_just_written_are_one_day_in_the_charts(
    tmp_path: Path, founder_saved: bool
) -> None:
    path = tmp_path / "dashboard.xlsx"
    dash = WorkbookDashboard(path)
    day = date(2026, 10, 5)
    dash.apply(DashboardUpdate(daily=[drow(day, "usd", 1000)]))
    if founder_saved:  # opened and saved by a founder: read back, the USD row is a datetime
        load_workbook(path).save(path)
    res = dash.apply(DashboardUpdate(daily=[drow(day, "usd", 1000), drow(day, "eur", 500)]))
    assert (res.inserted["Daily"], res.updated["Daily"]) == (1, 0)  # the USD row is unchanged
    pivot = [r[:3] for r in load_workbook(path)["Charts"].iter_rows(values_only=True) if r[0]]
    assert pivot == [("date", "EUR", "USD"), (datetime(2026, 10, 5), 4.41, 9.41)]
