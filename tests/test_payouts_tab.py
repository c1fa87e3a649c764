"""The Payouts tab, in the local workbook (both ways of writing it) and in the Google Sheet (real
gspread against the fake Sheets API).

One row per payout, keyed by its id: made by the first update that carries a payout, upserted
in place (a payout in transit that is paid, a reconciliation that comes right), never trimmed
with Transactions, placed right after Transactions. The expected cells are written out by hand
from the rows below: money in major units with its currency's format, the arrival a date, the
creation a date and time, a manual payout's breakdown empty and its reconciliation "n/a".
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import sqlite3
import zipfile
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from bot.dashboard.base import (
    PAYOUTS,
    DailyRow,
    DashboardUpdate,
    MonthlyRow,
    PayoutRow,
    TransactionRow,
    cells,
    key_of,
)
from bot.dashboard.sheets import GoogleSheetDashboard
from bot.dashboard.sheets_requests import serial
from bot.dashboard.workbook import WorkbookDashboard
from bot.errors import ServiceError
from bot.money import number_format
from bot.pnl import PnlLines
from tests.fakes.sheets import (
    FakeSheetsServer,
    Formula,
    RecordedRequest,
    gspread_client,
    serving,
    write_service_account_key,
)
from tests.test_metrics_tab import USD_SEP
from tests.test_workbook_fast import METRICS_STEPS, STEPS, everything

COLUMNS = [
    "id", "created", "arrival_date", "currency", "amount", "status", "transactions",
    "gross", "fees", "refunds", "other", "net", "reconciled",
]  # fmt: skip
PARIS = ZoneInfo("Europe/Paris")
WHEN = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)
HOSTILE_ID = '=HYPERLINK("http://evil.example","po")'


def at(day: int, hour: int = 9) -> datetime:
    return datetime(2026, 10, day, hour, 30, tzinfo=PARIS)


USD = PayoutRow(id="po_1Usd", created=at(1), arrival_date=date(2026, 10, 3), currency="usd",
                amount=97_000, status="paid", transactions=3, gross=100_500, fees=-3_000,
                refunds=-500, other=0, net=97_000, reconciled=True)  # fmt: skip
JPY = PayoutRow(id="po_2Jpy", created=at(2), arrival_date=date(2026, 10, 6), currency="jpy",
                amount=5_000, status="in_transit", transactions=1, gross=5_150, fees=-150,
                refunds=0, other=0, net=5_000, reconciled=True)  # fmt: skip
# A manual payout: Stripe lists none of its transactions.
MANUAL = PayoutRow(id="po_3Manual", created=at(3), arrival_date=date(2026, 10, 5),
                   currency="eur", amount=12_345, status="paid", transactions=None, gross=None,
                   fees=None, refunds=None, other=None, net=None, reconciled=None)  # fmt: skip
# Text a spreadsheet would take for a formula, in the key and in the status; no arrival date
# yet; a breakdown one fils short of the amount.
HOSTILE = PayoutRow(id=HOSTILE_ID, created=at(4), arrival_date=None, currency="kwd",
                    amount=6_172, status="=1+1", transactions=2, gross=7_000, fees=-827,
                    refunds=0, other=0, net=6_173, reconciled=False)  # fmt: skip
# In created order; the hostile id sorts first, so a tab ordered by id would show it first.
ROWS = [USD, JPY, MANUAL, HOSTILE]

# Each row as a reader sees it (dates and times as written; a sink turns them into its own).
EXPECTED: dict[str, list[Any]] = {
    "po_1Usd": [datetime(2026, 10, 1, 9, 30), date(2026, 10, 3), "USD", 970.00, "paid",
                3, 1_005.00, -30.00, -5.00, 0, 970.00, "yes"],
    "po_2Jpy": [datetime(2026, 10, 2, 9, 30), date(2026, 10, 6), "JPY", 5_000, "in_transit",
                1, 5_150, -150, 0, 0, 5_000, "yes"],
    "po_3Manual": [datetime(2026, 10, 3, 9, 30), date(2026, 10, 5), "EUR", 123.45, "paid",
                   None, None, None, None, None, None, "n/a"],
    HOSTILE_ID: [datetime(2026, 10, 4, 9, 30), None, "KWD", 6.172, "=1+1",
                 2, 7.0, -0.827, 0, 0, 6.173, "no"],
}  # fmt: skip
MONEY = [4, 7, 8, 9, 10, 11]  # column indexes of money cells


def paid(row: PayoutRow, **changes: Any) -> PayoutRow:
    return dataclasses.replace(row, **changes)


def daily(day: date) -> DailyRow:
    return DailyRow(date=day, currency="usd", lines=PnlLines(gross_revenue=1_000), charges=1,
                    refunds_count=0, transactions=1, updated_at=WHEN)  # fmt: skip


def monthly(month: str) -> MonthlyRow:
    return MonthlyRow(month=month, currency="usd", lines=PnlLines(gross_revenue=5_000),
                      starting_balance=None, ending_balance=None, mom_net_revenue_pct=None,
                      reconciled=True, source="report")  # fmt: skip


def txn(n: int, day: date) -> TransactionRow:
    when = datetime.combine(day, time(), UTC) + timedelta(minutes=n % 1000)
    return TransactionRow(id=f"txn_{n:06d}", created=when, available_on=when, type="charge",
                          reporting_category="charge", currency="usd", amount=1_000, fee=-30,
                          net=970, status="available", description="Order", source="ch")  # fmt: skip


def history(n: int) -> list[PayoutRow]:
    """``n`` automatic payouts, one a day from 2022-01-01, in created order."""
    first = datetime(2022, 1, 1, 8, 0, tzinfo=PARIS)
    return [
        PayoutRow(
            id=f"po_{i:05d}",
            created=first + timedelta(days=i),
            arrival_date=(first + timedelta(days=i + 2)).date(),
            currency="usd",
            amount=10_000 + i,
            status="paid",
            transactions=2,
            gross=10_300 + i,
            fees=-300,
            refunds=0,
            other=0,
            net=10_000 + i,
            reconciled=True,
        )
        for i in range(n)
    ]


BASE = DashboardUpdate(daily=[daily(date(2026, 10, 1))], monthly=[monthly("2026-09")],
                       transactions=[txn(1, date(2026, 10, 1))])  # fmt: skip


def by_id(rows: Sequence[Sequence[Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for row in rows:
        assert row[0] not in out, f"duplicate row {row[0]!r}"
        out[row[0]] = list(row[1:])
    return out


def test_the_columns_and_each_row_has_one_cell_a_column() -> None:
    assert list(PAYOUTS.columns) == COLUMNS
    assert PAYOUTS.title == "Payouts" and PAYOUTS.key_width == 1
    for row in ROWS:
        assert len(cells(row)) == len(COLUMNS)
    assert key_of(HOSTILE) == (HOSTILE_ID,)


# --- the workbook ------------------------------------------------------------------------------

WAYS = ["fast", "openpyxl"]


def founder_touch(path: Path) -> None:
    """Open and save, as a founder's spreadsheet program would: from then on the workbook is
    read and written through openpyxl."""
    load_workbook(path).save(path)


def workbook(tmp_path: Path, way: str, **kwargs: Any) -> WorkbookDashboard:
    """A workbook with the P&L tabs, written the ``way`` asked from now on."""
    dash = WorkbookDashboard(tmp_path / "dashboard.xlsx", **kwargs)
    dash.apply(BASE)
    if way == "openpyxl":
        founder_touch(dash.path)
    return dash


def in_workbook(expected: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The expected cells as openpyxl reads them back: a date as a datetime at midnight."""
    return {
        k: [datetime.combine(v, time()) if type(v) is date else v for v in row]
        for k, row in expected.items()
    }


def payouts_sheet(path: Path) -> list[tuple[Any, ...]]:
    return list(load_workbook(path)["Payouts"].iter_rows(values_only=True))


@pytest.mark.parametrize("way", WAYS)
def test_workbook_has_no_payouts_tab_until_a_payout_comes(tmp_path: Path, way: str) -> None:
    dash = workbook(tmp_path, way)
    result = dash.apply(BASE)

    assert load_workbook(dash.path).sheetnames == ["Daily", "Monthly", "Transactions", "Charts"]
    assert "Payouts" not in result.inserted and result.created == ()

    first = dash.apply(DashboardUpdate(payouts=[USD]))
    assert first.created == ("Payouts",)
    assert (first.inserted["Payouts"], first.updated["Payouts"]) == (1, 0)
    later = dash.apply(BASE)  # a run without payouts keeps the tab and its rows
    assert later.created == () and (later.inserted["Payouts"], later.updated["Payouts"]) == (0, 0)
    assert len(payouts_sheet(dash.path)) == 2


@pytest.mark.parametrize("way", WAYS)
def test_workbook_columns_values_and_formats(tmp_path: Path, way: str) -> None:
    dash = workbook(tmp_path, way)
    result = dash.apply(DashboardUpdate(payouts=ROWS))

    assert result.created == ("Payouts",)
    assert (result.inserted["Payouts"], result.updated["Payouts"]) == (4, 0)
    wb = load_workbook(dash.path)
    assert wb.sheetnames == ["Daily", "Monthly", "Transactions", "Payouts", "Charts"]
    ws = wb["Payouts"]
    assert [c.value for c in ws[1]] == COLUMNS
    assert ws.freeze_panes == "A2" and all(c.font.b for c in ws[1])
    rows = list(ws.iter_rows(min_row=2))
    assert [r[0].value for r in rows] == [p.id for p in ROWS]  # oldest first, not by id
    assert by_id([[c.value for c in r] for r in rows]) == in_workbook(EXPECTED)
    for row in rows:
        currency = str(row[3].value)
        for i in MONEY:
            want = "General" if row[i].value is None else number_format(currency)
            assert row[i].number_format == want, (currency, i)
        assert row[1].number_format == "yyyy-mm-dd hh:mm:ss"
        assert row[2].number_format == ("General" if row[2].value is None else "yyyy-mm-dd")
        assert row[6].value is None or type(row[6].value) is int
        for i in (0, 3, 5, 12):  # text, never a formula
            assert row[i].data_type == "s", (row[0].value, i)
    formats = {r[3].value: r[4].number_format for r in rows}
    assert formats["JPY"] == '"¥"#,##0;-"¥"#,##0'  # no decimals
    assert formats["KWD"].startswith('"KWD"#,##0.000;')  # three
    with zipfile.ZipFile(dash.path) as z:
        assert all("<f>" not in z.read(n).decode() for n in z.namelist() if "worksheets" in n)


@pytest.mark.parametrize("way", WAYS)
def test_workbook_upserts_by_id_and_rewrites_a_changed_payout_in_place(
    tmp_path: Path, way: str
) -> None:
    dash = workbook(tmp_path, way)
    dash.apply(DashboardUpdate(payouts=ROWS))
    for _ in range(2):
        again = dash.apply(DashboardUpdate(payouts=ROWS))
        assert (again.inserted["Payouts"], again.updated["Payouts"], again.created) == (0, 0, ())
    before = payouts_sheet(dash.path)

    # The yen payout arrived; the dinar one's missing fils turned up; a new one failed.
    failed = paid(USD, id="po_5Failed", created=at(5), status="failed", reconciled=False)
    result = dash.apply(DashboardUpdate(payouts=[
        paid(JPY, status="paid"), paid(HOSTILE, net=6_172, other=1, reconciled=True), failed,
    ]))  # fmt: skip

    assert (result.inserted["Payouts"], result.updated["Payouts"]) == (1, 2)
    after = payouts_sheet(dash.path)
    assert [r[0] for r in after] == [*(r[0] for r in before), "po_5Failed"]  # same places
    rows = by_id(after[1:])
    assert rows["po_2Jpy"][4] == "paid"
    assert rows[HOSTILE_ID][9:] == [0.001, 6.172, "yes"]
    assert rows["po_5Failed"][4] == "failed" and rows["po_5Failed"][-1] == "no"
    assert rows["po_1Usd"] == in_workbook(EXPECTED)["po_1Usd"]
    assert rows["po_3Manual"] == in_workbook(EXPECTED)["po_3Manual"]


@pytest.mark.parametrize("way", WAYS)
def test_workbook_manual_payout_shows_na_and_an_empty_breakdown(tmp_path: Path, way: str) -> None:
    dash = workbook(tmp_path, way)
    dash.apply(DashboardUpdate(payouts=[MANUAL]))
    ws = load_workbook(dash.path)["Payouts"]
    row = [c for c in ws[2]]
    assert [c.value for c in row[6:12]] == [None] * 6
    assert all(c.number_format == "General" for c in row[6:12])
    assert row[12].value == "n/a" and row[12].data_type == "s"
    assert row[4].value == 123.45 and row[4].number_format == number_format("eur")


@pytest.mark.parametrize("way", WAYS)
def test_workbook_payouts_tab_deleted_by_a_founder_is_created_again(
    tmp_path: Path, way: str
) -> None:
    dash = workbook(tmp_path, way)
    dash.apply(DashboardUpdate(payouts=ROWS))
    wb = load_workbook(dash.path)
    del wb["Payouts"]
    wb.save(dash.path)

    quiet = dash.apply(BASE)  # no payout rows: the tab stays away, nothing to refill
    assert quiet.created == () and "Payouts" not in load_workbook(dash.path).sheetnames

    result = dash.apply(DashboardUpdate(payouts=ROWS))  # the refill
    assert result.created == ("Payouts",) and result.inserted["Payouts"] == len(ROWS)
    assert by_id(payouts_sheet(dash.path)[1:]) == in_workbook(EXPECTED)
    names = load_workbook(dash.path).sheetnames
    assert names == ["Daily", "Monthly", "Transactions", "Payouts", "Charts"]


@pytest.mark.parametrize("way", WAYS)
def test_workbook_payouts_is_never_trimmed(tmp_path: Path, way: str) -> None:
    dash = workbook(tmp_path, way, row_limit=1 + 5)
    payouts = history(12)
    result = dash.apply(
        DashboardUpdate(
            payouts=payouts,
            transactions=[txn(n, date(2026, 10, 1) + timedelta(days=n)) for n in range(10)],
        )
    )
    assert result.trimmed is not None  # Transactions was cut to the row limit
    assert len(dash.read_rows("Transactions")) == 5
    assert [r[0] for r in dash.read_rows("Payouts")] == [p.id for p in payouts]
    # SHEET_TRANSACTIONS_DAYS: Transactions keeps its last days, Payouts (older) all of it.
    dash.apply(DashboardUpdate(transactions_from=date(2026, 10, 9)))
    assert len(dash.read_rows("Transactions")) == 2
    assert len(dash.read_rows("Payouts")) == 12
    # SHEET_TRANSACTIONS_DAYS=0: no Transactions tab, Payouts stays.
    dash.apply(DashboardUpdate(keep_transactions=False))
    assert load_workbook(dash.path).sheetnames == ["Daily", "Monthly", "Payouts", "Charts"]
    assert len(dash.read_rows("Payouts")) == 12


def test_workbook_payouts_lands_after_transactions_and_a_founders_tab_is_kept(
    tmp_path: Path,
) -> None:
    dash = workbook(tmp_path, "fast")
    wb = load_workbook(dash.path)
    notes = wb.create_sheet("My notes", 3)  # right after Transactions
    notes["A1"] = "=SUM(1,2)"
    notes["B2"] = "keep me"
    wb.save(dash.path)

    dash.apply(DashboardUpdate(payouts=ROWS))
    wb = load_workbook(dash.path)
    names = wb.sheetnames
    assert names == ["Daily", "Monthly", "Transactions", "Payouts", "My notes", "Charts"]
    assert wb["My notes"]["A1"].value == "=SUM(1,2)" and wb["My notes"]["B2"].value == "keep me"
    assert wb["My notes"].max_row == 2 and wb["My notes"].max_column == 2

    # Without Transactions, it goes after the last of our other tabs.
    plain = WorkbookDashboard(tmp_path / "plain" / "dashboard.xlsx")
    plain.apply(DashboardUpdate(daily=BASE.daily, payouts=ROWS, keep_transactions=False))
    assert load_workbook(plain.path).sheetnames == ["Daily", "Monthly", "Payouts", "Charts"]


def test_workbook_payouts_survive_fast_and_openpyxl_rewrites(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dash = workbook(tmp_path, "fast")
    dash.apply(DashboardUpdate(payouts=ROWS))
    first = payouts_sheet(dash.path)
    with sqlite3.connect(dash.cache_path) as conn:
        (cached,) = conn.execute("SELECT count(*) FROM rows WHERE tab = 'Payouts'").fetchone()
    assert cached == len(ROWS)

    with caplog.at_level(logging.INFO, logger="bot.dashboard.workbook"):
        dash.apply(BASE)  # fast: made anew from the cache
        assert not [r for r in caplog.records if "changed outside" in r.getMessage()]
        assert payouts_sheet(dash.path) == first
        founder_touch(dash.path)
        dash.apply(BASE)  # through openpyxl
        assert [r for r in caplog.records if "changed outside" in r.getMessage()]
    assert payouts_sheet(dash.path) == first
    dash.apply(DashboardUpdate(payouts=[paid(JPY, status="paid")]))
    assert [r[0] for r in payouts_sheet(dash.path)] == [r[0] for r in first]

    # Deleted: rebuilt, and every tab reported for the caller to refill from the ledger.
    dash.path.unlink()
    rebuilt = dash.apply(DashboardUpdate(daily=BASE.daily, payouts=ROWS))
    assert rebuilt.created == ("Daily", "Monthly", "Transactions", "Payouts")
    assert payouts_sheet(dash.path) == first


# Payouts come to an account with the P&L tabs, change, and Metrics comes in between.
PAYOUT_STEPS = [
    DashboardUpdate(daily=[daily(date(2026, 10, 4))], payouts=[USD, JPY]),
    DashboardUpdate(payouts=[paid(JPY, status="paid"), MANUAL, HOSTILE]),
    *METRICS_STEPS,
    DashboardUpdate(payouts=[paid(HOSTILE, net=6_172, other=1, reconciled=True),
                             paid(USD, id="po_5Failed", created=at(5), status="failed")],
                    transactions=[txn(7, date(2026, 10, 5))]),
    DashboardUpdate(),
]  # fmt: skip


def test_the_fast_way_writes_the_payouts_the_openpyxl_way_writes(tmp_path: Path) -> None:
    fast = WorkbookDashboard(tmp_path / "fast" / "dashboard.xlsx")
    slow = WorkbookDashboard(tmp_path / "slow" / "dashboard.xlsx")
    for n, update in enumerate([*STEPS, *PAYOUT_STEPS]):
        if n:
            founder_touch(slow.path)  # from now on the slow one is read and written by openpyxl
        got = fast.apply(update)
        want = slow.apply(update)
        assert (got.inserted, got.updated, got.created) == (
            want.inserted,
            want.updated,
            want.created,
        )
        assert everything(fast.path) == everything(slow.path)
        # In the same order, too (everything() sorts the rows).
        assert fast.read_rows("Payouts") == slow.read_rows("Payouts")
    assert fast.cache_path.exists() and not slow.cache_path.exists()
    wb = load_workbook(fast.path)
    assert wb.sheetnames == ["Daily", "Monthly", "Metrics", "Transactions", "Payouts", "Charts"]
    ids = [r[0] for r in fast.read_rows("Payouts")]
    assert ids == ["po_1Usd", "po_2Jpy", "po_3Manual", HOSTILE_ID, "po_5Failed"]


# --- the Google Sheet --------------------------------------------------------------------------

SID = "1PayoutsTabSheet0123456789abcdefghijklmnopqr"


@pytest.fixture
def server() -> Iterator[FakeSheetsServer]:
    with serving(SID) as fake:
        yield fake


@pytest.fixture
def key_file(server: FakeSheetsServer, tmp_path: Path) -> Path:
    path = tmp_path / "service-account.json"
    write_service_account_key(path, token_uri=server.token_uri)
    return path


def sheet(
    server: FakeSheetsServer, key_file: Path, index: Path | None = None, **kwargs: Any
) -> GoogleSheetDashboard:
    return GoogleSheetDashboard(
        spreadsheet_id=SID,
        credentials_file=key_file,
        api_url=server.url,
        timezone="Europe/Paris",
        write_interval=0.0,
        sleep=lambda _: None,
        rng=random.Random(11),
        index_path=index,
        **kwargs,
    )


@pytest.fixture
def dashboard(server: FakeSheetsServer, key_file: Path) -> GoogleSheetDashboard:
    return sheet(server, key_file)


def data_rows(server: FakeSheetsServer, sid: str = SID) -> list[list[Any]]:
    rows = server.grid(sid, "Payouts")[1:]
    width = len(COLUMNS)
    return [[*r, *[None] * width][:width] for r in rows]


def in_sheet(expected: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The expected cells as the sheet holds them: dates and times as serial numbers."""
    return {
        k: [serial(v) if isinstance(v, date) else v for v in row] for k, row in expected.items()
    }


def test_sheet_has_no_payouts_tab_until_a_payout_comes(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    first = dashboard.apply(BASE)
    assert "Payouts" not in server.sheet_titles(SID)
    assert "Payouts" not in first.inserted and "Payouts" not in first.created

    result = dashboard.apply(DashboardUpdate(payouts=[USD]))
    assert result.created == ("Payouts",)
    assert server.sheet_titles(SID) == [
        "Sheet1", "Daily", "Monthly", "Transactions", "Payouts", "Charts",
    ]  # fmt: skip
    later = dashboard.apply(BASE)
    assert later.created == () and later.inserted["Payouts"] == 0
    assert len(data_rows(server)) == 1


def test_sheet_columns_values_and_formats(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    result = dashboard.apply(DashboardUpdate(daily=BASE.daily, payouts=ROWS))

    # Everything new at once: Payouts after Transactions all the same.
    assert server.sheet_titles(SID) == [
        "Sheet1", "Daily", "Monthly", "Transactions", "Payouts", "Charts",
    ]  # fmt: skip
    assert result.created == ("Daily", "Monthly", "Transactions", "Payouts")
    assert (result.inserted["Payouts"], result.updated["Payouts"]) == (4, 0)
    assert server.grid(SID, "Payouts")[0] == COLUMNS
    assert server.sheet_properties(SID, "Payouts")["gridProperties"]["frozenRowCount"] == 1
    header = server.cell(SID, "Payouts", "A1")
    assert header["userEnteredFormat"]["textFormat"]["bold"] is True
    rows = data_rows(server)
    assert [r[0] for r in rows] == [p.id for p in ROWS]
    assert by_id(rows) == in_sheet(EXPECTED)
    text = {"type": "TEXT"}
    when = {"type": "DATE_TIME", "pattern": "yyyy-mm-dd hh:mm:ss"}
    day = {"type": "DATE", "pattern": "yyyy-mm-dd"}
    count = {"type": "NUMBER", "pattern": "0"}
    for row, formats in zip(rows, server.formats(SID, "Payouts")[1:], strict=True):
        money = {"type": "CURRENCY", "pattern": number_format(row[3])}
        assert formats == [text, when, day, text, money, text, count, *[money] * 5, text]
    # Text stays text: never a formula, whatever it looks like.
    hostile = next(r for r in server.grid(SID, "Payouts") if r[0] == HOSTILE_ID)
    assert not any(isinstance(v, Formula) for v in hostile)
    assert server.cell(SID, "Payouts", "F5")["userEnteredValue"] == {"stringValue": "=1+1"}
    # As a founder reads them.
    ws = gspread_client(server).open_by_key(SID).worksheet("Payouts")
    shown = {r[0]: r[1:] for r in ws.get_all_values()[1:]}
    assert shown["po_1Usd"] == [
        "2026-10-01 09:30:00", "2026-10-03", "USD", "$970.00", "paid", "3",
        "$1,005.00", "-$30.00", "-$5.00", "$0.00", "$970.00", "yes",
    ]  # fmt: skip
    assert shown["po_2Jpy"][3] == "¥5,000" and shown["po_2Jpy"][4] == "in_transit"
    # A manual payout: its breakdown empty, its reconciliation not applicable.
    assert shown["po_3Manual"][3:] == ["€123.45", "paid", "", "", "", "", "", "", "n/a"]
    assert shown[HOSTILE_ID][1] == "" and shown[HOSTILE_ID][3:5] == ["KWD6.172", "=1+1"]


def test_sheet_upserts_by_id_and_rewrites_a_changed_payout_in_place(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(DashboardUpdate(payouts=ROWS))
    snapshot = server.grid(SID, "Payouts")
    for _ in range(2):
        again = dashboard.apply(DashboardUpdate(payouts=ROWS))
        assert (again.inserted["Payouts"], again.updated["Payouts"], again.created) == (0, 4, ())
        assert server.grid(SID, "Payouts") == snapshot

    failed = paid(USD, id="po_5Failed", created=at(5), status="failed", reconciled=False)
    result = dashboard.apply(DashboardUpdate(payouts=[
        paid(JPY, status="paid"), paid(HOSTILE, net=6_172, other=1, reconciled=True), failed,
    ]))  # fmt: skip

    assert (result.inserted["Payouts"], result.updated["Payouts"]) == (1, 2)
    rows = data_rows(server)
    assert [r[0] for r in rows] == [*(r[0] for r in snapshot[1:]), "po_5Failed"]
    got = by_id(rows)
    assert got["po_2Jpy"][4] == "paid"
    assert got[HOSTILE_ID][9:] == [0.001, 6.172, "yes"]
    assert got["po_5Failed"][4] == "failed" and got["po_5Failed"][-1] == "no"
    assert {k: got[k] for k in ("po_1Usd", "po_3Manual")} == {
        k: in_sheet(EXPECTED)[k] for k in ("po_1Usd", "po_3Manual")
    }


def test_sheet_payouts_tab_deleted_by_a_founder_is_created_again(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(DashboardUpdate(daily=BASE.daily, payouts=ROWS))
    sh = gspread_client(server).open_by_key(SID)
    sh.del_worksheet(sh.worksheet("Payouts"))

    quiet = dashboard.apply(BASE)
    assert quiet.created == () and "Payouts" not in server.sheet_titles(SID)

    result = dashboard.apply(DashboardUpdate(payouts=ROWS))  # the refill
    assert result.created == ("Payouts",) and result.inserted["Payouts"] == len(ROWS)
    assert by_id(data_rows(server)) == in_sheet(EXPECTED)
    assert server.sheet_titles(SID)[3:5] == ["Transactions", "Payouts"]


def test_sheet_payouts_lands_after_transactions_and_a_founders_tab_is_untouched(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(BASE)
    sh = gspread_client(server).open_by_key(SID)
    notes = sh.add_worksheet("Notes", rows=5, cols=3)
    notes.update([["my", "own", "=SUM(1,2)"]], "A1", value_input_option="USER_ENTERED")
    notes.update_index(4)  # right after Transactions
    sh.sheet1.update([["founder data"]], "A1")
    before = server.grid(SID, "Notes")
    assert server.sheet_titles(SID) == [
        "Sheet1", "Daily", "Monthly", "Transactions", "Notes", "Charts",
    ]  # fmt: skip

    dashboard.apply(DashboardUpdate(payouts=ROWS, metrics=[USD_SEP]))

    assert server.sheet_titles(SID) == [
        "Sheet1", "Daily", "Monthly", "Metrics", "Transactions", "Payouts", "Notes", "Charts",
    ]  # fmt: skip
    assert server.grid(SID, "Notes") == before == [["my", "own", Formula("=SUM(1,2)")]]
    assert server.grid(SID, "Sheet1") == [["founder data"]]


def test_sheet_payouts_without_transactions_goes_after_our_last_tab(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(BASE)
    sh = gspread_client(server).open_by_key(SID)
    sh.worksheet("Transactions").update_index(1)  # a founder moved it first
    sh.add_worksheet("Notes", rows=5, cols=3)

    dashboard.apply(DashboardUpdate(payouts=ROWS, keep_transactions=False))

    assert server.sheet_titles(SID) == ["Sheet1", "Daily", "Monthly", "Payouts", "Charts", "Notes"]
    assert by_id(data_rows(server)) == in_sheet(EXPECTED)


def test_sheet_a_founders_chart_sheet_named_payouts_stops_only_the_payouts(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    sh = gspread_client(server).open_by_key(SID)
    chart = {"spec": {"title": "mine"}, "position": {"newSheet": True}}
    sh.batch_update({"requests": [{"addChart": {"chart": chart}}]})
    sh.worksheet("Chart1").update_title("Payouts")

    dashboard.apply(BASE)  # an account without payouts: nothing in the way
    assert len(server.grid(SID, "Daily")) == 2

    with pytest.raises(ServiceError, match=r"'Payouts' .* is not a grid"):
        dashboard.apply(DashboardUpdate(payouts=ROWS))


def test_sheet_payouts_is_never_trimmed(key_file: Path, tmp_path: Path) -> None:
    limit = 20_000
    with FakeSheetsServer(max_cells=limit) as fake:
        fake.create_spreadsheet(SID, "Revenue", sheets=["Sheet1"])
        write_service_account_key(key_file, token_uri=fake.token_uri)
        gspread_client(fake).open_by_key(SID).sheet1.resize(rows=20, cols=10)
        dashboard = sheet(fake, key_file, tmp_path / "index.sqlite", cell_limit=limit)
        payouts = history(60)
        days = [date(2026, 1, 1) + timedelta(days=d) for d in range(20)]
        result = dashboard.apply(
            DashboardUpdate(
                daily=[daily(d) for d in days],
                payouts=payouts,
                transactions=[txn(100 * i + k, d) for i, d in enumerate(days) for k in range(100)],
            )
        )

        assert result.trimmed is not None and "20,000 cells" in result.trimmed
        assert fake.spreadsheets[SID].total_cells() <= limit
        assert 0 < len(fake.grid(SID, "Transactions")) - 1 < 2_000
        assert [r[0] for r in data_rows(fake)] == [p.id for p in payouts]

        # SHEET_TRANSACTIONS_DAYS: the days before go, Payouts (older still) stays whole.
        dashboard.apply(DashboardUpdate(transactions_from=date(2026, 1, 19)))
        assert len(fake.grid(SID, "Transactions")) - 1 == 200
        assert [r[0] for r in data_rows(fake)] == [p.id for p in payouts]
        assert fake.violations == []


def rows_read(request: RecordedRequest) -> list[int]:
    """How many rows each range of a values.batchGet spans."""
    spans = []
    for text in request.query["ranges"]:
        found = re.search(r"![A-Z]+(\d+):[A-Z]+(\d+)$", text)
        assert found, text
        spans.append(int(found.group(2)) - int(found.group(1)) + 1)
    return spans


def test_sheet_index_holds_payouts_and_a_second_apply_reads_a_few_rows(
    server: FakeSheetsServer, key_file: Path, tmp_path: Path
) -> None:
    index = tmp_path / ".sheet-index.sqlite"
    dashboard = sheet(server, key_file, index)
    payouts = history(300)
    dashboard.apply(DashboardUpdate(payouts=payouts))
    with sqlite3.connect(index) as conn:
        (rows,) = conn.execute("SELECT rows FROM tabs WHERE title = 'Payouts'").fetchone()
        (keys,) = conn.execute(
            "SELECT count(*) FROM keys WHERE tab = (SELECT id FROM tabs WHERE title = 'Payouts')"
        ).fetchone()
    assert rows == keys == 300

    server.reset_counts()
    late = paid(payouts[150], status="failed", reconciled=False)
    new = paid(payouts[0], id="po_99999", created=at(20))
    result = dashboard.apply(DashboardUpdate(payouts=[late, new]))

    assert (result.inserted["Payouts"], result.updated["Payouts"]) == (1, 1)
    assert [r.kind for r in server.requests] == [
        "spreadsheets.get", "values.batchGet", "spreadsheets.batchUpdate",
    ]  # fmt: skip
    [read] = [r for r in server.requests if r.kind == "values.batchGet"]
    assert all("'Payouts'!" in text for text in read.query["ranges"])
    assert sum(rows_read(read)) <= 10
    got = data_rows(server)
    assert len(got) == 301 and got[150][0] == "po_00150" and got[150][5] == "failed"
    assert got[-1][0] == "po_99999"


def test_sheet_payouts_a_founder_sorted_are_still_upserted_in_place(
    server: FakeSheetsServer, key_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dashboard = sheet(server, key_file, tmp_path / ".sheet-index.sqlite")
    dashboard.apply(DashboardUpdate(payouts=ROWS))
    grid = server.grid(SID, "Payouts")
    ws = gspread_client(server).open_by_key(SID).worksheet("Payouts")
    ws.update([grid[2], grid[1]], "A2", value_input_option="RAW")  # JPY first now
    assert [r[0] for r in data_rows(server)][:2] == ["po_2Jpy", "po_1Usd"]

    with caplog.at_level(logging.INFO, logger="bot.dashboard.sheets"):
        result = dashboard.apply(DashboardUpdate(payouts=[paid(USD, status="canceled")]))

    assert [r for r in caplog.records if "differs from the key index" in r.getMessage()]
    assert (result.inserted["Payouts"], result.updated["Payouts"]) == (0, 1)
    rows = data_rows(server)
    assert [r[0] for r in rows] == ["po_2Jpy", "po_1Usd", "po_3Manual", HOSTILE_ID]
    assert rows[1][5] == "canceled" and rows[0][5] == "in_transit"
