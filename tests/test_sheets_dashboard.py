"""GoogleSheetDashboard through real gspread + google-auth over HTTP, against the fake Sheets API.

Each test checks the resulting grid cell by cell, counts the requests the fake received, and
ends with the fake having seen no request that breaks the discovery document.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.dashboard.base import (
    DAILY,
    MONTHLY,
    TRANSACTIONS,
    DailyRow,
    DashboardUpdate,
    MonthlyRow,
    TransactionRow,
)
from bot.dashboard.sheets import GoogleSheetDashboard, parse_spreadsheet_id, serial
from bot.errors import ConfigError, ServiceError, TemporaryError
from bot.money import number_format
from bot.pnl import PnlLines
from tests.fakes.sheets import (
    FakeSheetsServer,
    Formula,
    gspread_client,
    to_serial,
    write_service_account_key,
)

SID = "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcd"
EMAIL = "revbot@test-project.iam.gserviceaccount.com"
PARIS = ZoneInfo("Europe/Paris")
UPDATED_AT = datetime(2024, 3, 2, 6, 15, 30, tzinfo=PARIS)


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeSheetsServer]:
    with FakeSheetsServer() as fake:
        fake.create_spreadsheet(SID, "Revenue", sheets=["Sheet1"])
        yield fake
        # Every request any test made was valid against the discovery document.
        assert fake.violations == []


@pytest.fixture
def key_file(server: FakeSheetsServer, tmp_path: Path) -> Path:
    path = tmp_path / "service-account.json"
    write_service_account_key(path, token_uri=server.token_uri, client_email=EMAIL)
    return path


class Sleeps(list[float]):
    """An injected sleep: records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def dashboard(server: FakeSheetsServer, key_file: Path, sleeps: Sleeps) -> GoogleSheetDashboard:
    return make_dashboard(server, key_file, sleeps)


def make_dashboard(
    server: FakeSheetsServer, key_file: Path, sleeps: Sleeps, **kwargs: Any
) -> GoogleSheetDashboard:
    options: dict[str, Any] = {"write_interval": 0.0, "rng": random.Random(7)} | kwargs
    return GoogleSheetDashboard(
        spreadsheet_id=SID,
        credentials_file=key_file,
        api_url=server.url,
        timezone="Europe/Paris",
        sleep=sleeps,
        **options,
    )


# --- rows --------------------------------------------------------------------------------------


def daily(day: date, currency: str = "usd", gross: int = 10_000) -> DailyRow:
    return DailyRow(
        date=day,
        currency=currency,
        lines=PnlLines(gross_revenue=gross, refunds=-1_500, stripe_fees=-320),
        charges=3,
        refunds_count=1,
        transactions=5,
        updated_at=UPDATED_AT,
    )


def monthly(month: str = "2024-02", currency: str = "usd") -> MonthlyRow:
    return MonthlyRow(
        month=month,
        currency=currency,
        lines=PnlLines(gross_revenue=250_000, stripe_fees=-7_300, payouts=-200_000),
        starting_balance=1_000_00,
        ending_balance=None,
        mom_net_revenue_pct=Decimal("0.125"),
        reconciled=True,
        source="report",
    )


def txn(
    n: int, *, amount: int = 1_999, description: str = "Order", currency: str = "usd"
) -> TransactionRow:
    created = datetime(2024, 3, 1, 23, 30, tzinfo=PARIS) + timedelta(minutes=n)
    return TransactionRow(
        id=f"txn_{n:08d}",
        created=created,
        available_on=created + timedelta(days=2),
        type="charge",
        reporting_category="charge",
        currency=currency,
        amount=amount,
        fee=-88,
        net=amount - 88,
        status="available",
        description=description,
        source=f"ch_{n:08d}",
    )


SMALL = DashboardUpdate(
    daily=[daily(date(2024, 3, 1)), daily(date(2024, 3, 1), "eur", 5_000)],
    monthly=[monthly()],
    transactions=[txn(1), txn(2), txn(3)],
)


def data_rows(server: FakeSheetsServer, title: str) -> list[list[Any]]:
    return server.grid(SID, title)[1:]


def kinds(server: FakeSheetsServer) -> list[str]:
    return [r.kind for r in server.requests]


# --- first run ---------------------------------------------------------------------------------


def test_first_apply_creates_tabs_headers_and_typed_cells(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    result = dashboard.apply(SMALL)

    assert server.sheet_titles(SID) == ["Sheet1", "Daily", "Monthly", "Transactions", "Charts"]
    for tab in (DAILY, MONTHLY, TRANSACTIONS):
        assert server.grid(SID, tab.title)[0] == list(tab.columns)
        props = server.sheet_properties(SID, tab.title)
        assert props["gridProperties"]["frozenRowCount"] == 1
        assert server.cell(SID, tab.title, "A1")["userEnteredFormat"]["textFormat"]["bold"]
    assert result.inserted == {"Daily": 2, "Monthly": 1, "Transactions": 3}
    assert result.updated == {"Daily": 0, "Monthly": 0, "Transactions": 0}
    assert result.location == f"https://docs.google.com/spreadsheets/d/{SID}"
    # Nothing to read on a brand-new tab: one metadata GET and one batchUpdate.
    assert kinds(server) == ["spreadsheets.get", "spreadsheets.batchUpdate"]
    # The token was asked for the spreadsheets scope only.
    assert [c["scope"] for c in server.token_requests] == [
        "https://www.googleapis.com/auth/spreadsheets"
    ]

    day = to_serial(date(2024, 3, 1))
    stamp = to_serial(datetime(2024, 3, 2, 6, 15, 30))  # Paris wall-clock time
    assert data_rows(server, "Daily") == [
        [day, "USD", 100, -15, 0, -3.2, 0, 81.8, 0, 3, 1, 5, pytest.approx(stamp, abs=1e-9)],
        [day, "EUR", 50, -15, 0, -3.2, 0, 31.8, 0, 3, 1, 5, pytest.approx(stamp, abs=1e-9)],
    ]
    usd = {"type": "CURRENCY", "pattern": number_format("usd")}
    eur = {"type": "CURRENCY", "pattern": number_format("eur")}
    date_fmt = {"type": "DATE", "pattern": "yyyy-mm-dd"}
    stamp_fmt = {"type": "DATE_TIME", "pattern": "yyyy-mm-dd hh:mm:ss"}
    count = {"type": "NUMBER", "pattern": "0"}
    text = {"type": "TEXT"}
    assert server.formats(SID, "Daily")[1:] == [
        [date_fmt, text, *[usd] * 7, count, count, count, stamp_fmt],
        [date_fmt, text, *[eur] * 7, count, count, count, stamp_fmt],
    ]
    assert data_rows(server, "Monthly") == [
        ["2024-02", "USD", 2500, 0, 0, -73, 0, 2427, -2000, 1000, None, 0.125, "yes", "report"]
    ]
    pct = server.cell(SID, "Monthly", "L2")["userEnteredFormat"]["numberFormat"]
    assert pct == {"type": "PERCENT", "pattern": "0.0%"}
    assert server.cell(SID, "Monthly", "A2")["userEnteredValue"] == {"stringValue": "2024-02"}
    created = to_serial(datetime(2024, 3, 1, 23, 31))
    assert data_rows(server, "Transactions")[0] == [
        "txn_00000001",
        pytest.approx(created, abs=1e-9),
        pytest.approx(created + 2, abs=1e-9),
        "charge",
        "charge",
        "USD",
        19.99,
        -0.88,
        19.11,
        "available",
        "Order",
        "ch_00000001",
    ]


def test_cells_read_back_formatted_through_gspread(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(SMALL)
    ws = gspread_client(server).open_by_key(SID).worksheet("Daily")

    assert ws.row_values(2) == [
        "2024-03-01", "USD", "$100.00", "-$15.00", "$0.00", "-$3.20", "$0.00", "$81.80",
        "$0.00", "3", "1", "5", "2024-03-02 06:15:30",
    ]  # fmt: skip


def test_serial_numbers_use_the_wall_clock_of_the_zone_carried() -> None:
    assert serial(date(1900, 1, 1)) == 2
    assert serial(datetime(1900, 1, 1, 12, tzinfo=UTC)) == 2.5
    tokyo = datetime(2024, 1, 1, 9, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert serial(tokyo) == serial(datetime(2024, 1, 1, 9))


# --- re-runs -----------------------------------------------------------------------------------


def test_three_identical_applies_no_duplicates_three_requests(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(SMALL)
    snapshot = {t: server.grid(SID, t) for t in server.sheet_titles(SID)}
    for _ in range(2):
        server.reset_counts()
        result = dashboard.apply(SMALL)

        assert kinds(server) == ["spreadsheets.get", "values.batchGet", "spreadsheets.batchUpdate"]
        assert result.inserted == {"Daily": 0, "Monthly": 0, "Transactions": 0}
        assert result.updated == {"Daily": 2, "Monthly": 1, "Transactions": 3}
        assert {t: server.grid(SID, t) for t in server.sheet_titles(SID)} == snapshot
    assert len(data_rows(server, "Transactions")) == 3


def test_key_read_is_one_unformatted_batch_get_of_key_columns(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(SMALL)
    server.reset_counts()
    dashboard.apply(DashboardUpdate(daily=[daily(date(2024, 3, 2))], transactions=[txn(9)]))

    [read] = [r for r in server.requests if r.kind == "values.batchGet"]
    # New tabs are as tall as their rows (every cell counts against Google's limit), so the
    # key columns end where the grid does: two Daily rows, three Transactions rows.
    assert read.query["ranges"] == ["'Daily'!A2:B3", "'Transactions'!A2:A4"]
    assert read.query["valueRenderOption"] == ["UNFORMATTED_VALUE"]
    assert [r[0] for r in data_rows(server, "Daily")] == [
        to_serial(date(2024, 3, 1)),
        to_serial(date(2024, 3, 1)),
        to_serial(date(2024, 3, 2)),
    ]


def test_changed_transaction_is_updated_in_place(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(SMALL)
    late = txn(2, amount=2_500, description="Order (amended)")
    result = dashboard.apply(DashboardUpdate(transactions=[late, txn(4)]))

    rows = data_rows(server, "Transactions")
    assert [r[0] for r in rows] == ["txn_00000001", "txn_00000002", "txn_00000003", "txn_00000004"]
    assert rows[1][6:11] == [25, -0.88, 24.12, "available", "Order (amended)"]
    assert rows[0][6] == 19.99
    assert result.inserted["Transactions"] == 1
    assert result.updated["Transactions"] == 1


def test_duplicate_keys_in_one_update_write_one_row(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(DashboardUpdate(transactions=[txn(1), txn(1, amount=5_000)]))

    assert [r[:1] + r[6:7] for r in data_rows(server, "Transactions")] == [["txn_00000001", 50]]


def test_a_date_key_matches_whatever_format_a_founder_gave_it(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(SMALL)
    ws = gspread_client(server).open_by_key(SID).worksheet("Daily")
    ws.format("A2:A3", {"numberFormat": {"type": "DATE", "pattern": "d mmm yyyy"}})
    dashboard.apply(SMALL)

    assert len(data_rows(server, "Daily")) == 2


# --- safety of text and numbers -------------------------------------------------------------

FORMULA_LOOKING = ['=IMPORTXML("http://x","//a")', "+1", "-1", "@SUM(A1)", "=1+1", "'quoted"]


def test_formula_looking_text_stays_literal_text(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    rows = [txn(i, description=d) for i, d in enumerate(FORMULA_LOOKING)]
    dashboard.apply(DashboardUpdate(transactions=rows))

    for i, description in enumerate(FORMULA_LOOKING):
        cell = server.cell(SID, "Transactions", f"K{i + 2}")
        assert cell["userEnteredValue"] == {"stringValue": description}
    assert [r[10] for r in data_rows(server, "Transactions")] == FORMULA_LOOKING
    assert not any(isinstance(v, Formula) for r in data_rows(server, "Transactions") for v in r)


def test_numbers_stay_numbers_in_each_currency(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    rows = [txn(1, amount=123_456, currency="jpy"), txn(2, amount=1_234, currency="kwd")]
    dashboard.apply(DashboardUpdate(transactions=rows))

    jpy, kwd = data_rows(server, "Transactions")
    assert jpy[6:9] == [123456, -88, 123368] and all(isinstance(v, int) for v in jpy[6:9])
    assert kwd[6:9] == [1.234, -0.088, 1.146]
    assert server.cell(SID, "Transactions", "G2")["userEnteredValue"] == {"numberValue": 123456}
    jpy_format = server.cell(SID, "Transactions", "G2")["userEnteredFormat"]["numberFormat"]
    kwd_format = server.cell(SID, "Transactions", "I3")["userEnteredFormat"]["numberFormat"]
    assert jpy_format == {"type": "CURRENCY", "pattern": number_format("jpy")}
    assert kwd_format == {"type": "CURRENCY", "pattern": number_format("kwd")}


# --- charts ---------------------------------------------------------------------------------


def test_charts_created_once_and_per_new_currency(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    for _ in range(3):
        dashboard.apply(SMALL)

    titles = sorted(c["spec"]["title"] for c in server.charts(SID))
    assert titles == [
        "Daily net revenue (EUR)", "Daily net revenue (USD)",
        "Monthly net revenue (EUR)", "Monthly net revenue (USD)",
    ]  # fmt: skip

    dashboard.apply(DashboardUpdate(daily=[daily(date(2024, 3, 1), "gbp")]))
    dashboard.apply(DashboardUpdate(daily=[daily(date(2024, 3, 2), "gbp")]))

    charts = server.charts(SID)
    assert len(charts) == 6
    assert len({c["chartId"] for c in charts}) == 6
    gbp = next(c for c in charts if c["spec"]["title"] == "Daily net revenue (GBP)")
    basic = gbp["spec"]["basicChart"]
    assert basic["chartType"] == "LINE"
    [source] = basic["domains"][0]["domain"]["sourceRange"]["sources"]
    column = source["startColumnIndex"]
    helper = server.grid(SID, "Charts")[0][column]
    assert helper == Formula(
        "=QUERY(INDIRECT(\"'Daily'!A1:M\"), \"select A, H where B = 'GBP' and A is not null "
        "order by A label H 'GBP'\", 1)"
    )
    # Each chart has its own helper columns, hidden, read whatever is hidden.
    columns = [
        c["spec"]["basicChart"]["domains"][0]["domain"]["sourceRange"]["sources"][0][
            "startColumnIndex"
        ]
        for c in charts
    ]
    assert len(set(columns)) == 6
    hidden = server.dimension_properties(SID, "Charts")
    assert all(hidden[("COLUMNS", c)]["hiddenByUser"] for c in columns)
    assert all(c["spec"]["hiddenDimensionStrategy"] == "SHOW_ALL" for c in charts)


def test_charts_tab_deleted_is_recreated_with_its_charts(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(SMALL)
    sh = gspread_client(server).open_by_key(SID)
    sh.del_worksheet(sh.worksheet("Charts"))
    assert server.charts(SID) == []

    dashboard.apply(SMALL)
    assert len(server.charts(SID)) == 4
    assert "Charts" in server.sheet_titles(SID)


# --- founders' own things ---------------------------------------------------------------------


def test_founders_tab_and_columns_right_of_ours_are_untouched(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(SMALL)
    sh = gspread_client(server).open_by_key(SID)
    notes = sh.add_worksheet("Notes", rows=5, cols=3)
    notes.update([["my", "own", "=SUM(1,2)"]], "A1", value_input_option="USER_ENTERED")
    sh.sheet1.update([["founder data"]], "A1")
    daily_ws = sh.worksheet("Daily")
    daily_ws.update([["comment"], ["looks good"], ["check"]], "N1")
    before_notes = server.grid(SID, "Notes")

    late = DashboardUpdate(daily=[daily(date(2024, 3, 1), gross=20_000), daily(date(2024, 3, 2))])
    dashboard.apply(late)

    assert server.grid(SID, "Notes") == before_notes == [["my", "own", Formula("=SUM(1,2)")]]
    assert server.grid(SID, "Sheet1") == [["founder data"]]
    grid = server.grid(SID, "Daily")
    assert [row[13] for row in grid] == ["comment", "looks good", "check", None]
    assert grid[1][2] == 200  # our column of the same row was updated
    assert grid[3][0] == to_serial(date(2024, 3, 2))


def test_deleted_or_renamed_tab_is_recreated(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(SMALL)
    sh = gspread_client(server).open_by_key(SID)
    sh.del_worksheet(sh.worksheet("Transactions"))
    sh.worksheet("Monthly").update_title("Monthly (old)")

    dashboard.apply(SMALL)

    titles = server.sheet_titles(SID)
    assert {"Daily", "Monthly", "Monthly (old)", "Transactions", "Charts"} <= set(titles)
    assert [r[0] for r in data_rows(server, "Transactions")] == [
        "txn_00000001", "txn_00000002", "txn_00000003",
    ]  # fmt: skip
    assert len(data_rows(server, "Monthly")) == 1
    assert len(data_rows(server, "Monthly (old)")) == 1  # the founder's copy is left alone
    assert server.sheet_properties(SID, "Transactions")["gridProperties"]["frozenRowCount"] == 1


# --- a year's backfill ---------------------------------------------------------------------


def test_year_backfill_is_bodies_of_at_most_two_megabytes(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    """Google recommends bodies of at most 2 MB: a big write is as many as it takes (it used to
    be at most eight, bodies growing instead, until Google's 10 MiB refusal). Each is more than
    half full, so their number is what the bytes need, not one per subrequest."""
    dashboard.apply(SMALL)  # the tabs exist, as after a first daily run
    start = date(2023, 3, 1)
    currencies = ("usd", "eur", "gbp", "jpy")
    update = DashboardUpdate(
        daily=[daily(start + timedelta(days=i), c) for i in range(365) for c in currencies],
        monthly=[monthly(f"2023-{m:02d}", c) for m in range(1, 13) for c in currencies],
        transactions=[txn(i, currency=currencies[i % 4]) for i in range(20_000)],
    )
    server.reset_counts()
    result = dashboard.apply(update)

    assert kinds(server)[:2] == ["spreadsheets.get", "values.batchGet"]
    writes = [r.body_bytes for r in server.requests if r.kind == "spreadsheets.batchUpdate"]
    assert len(writes) == server.count() - 2 > 1
    assert max(writes) <= 2_000_000
    assert min(writes[:-1]) > 1_000_000
    assert max(len(json.dumps(r.query)) for r in server.requests) < 1000
    assert result.inserted == {"Daily": 1460, "Monthly": 48, "Transactions": 19_997}
    transactions = data_rows(server, "Transactions")
    assert len(transactions) == 20_000
    assert len({r[0] for r in transactions}) == 20_000
    assert transactions[-1][0] == "txn_00019999" and transactions[-1][5] == "JPY"
    last = server.cell(SID, "Transactions", "G20001")["userEnteredFormat"]["numberFormat"]
    assert last == {"type": "CURRENCY", "pattern": number_format("jpy")}
    assert len(data_rows(server, "Daily")) == 2 + 1460
    assert len(server.charts(SID)) == 8
    # The chart helpers spill one row per day: the Charts grid grew with Daily.
    rows = {
        t: server.sheet_properties(SID, t)["gridProperties"]["rowCount"]
        for t in ("Daily", "Charts")
    }
    assert rows["Charts"] >= rows["Daily"] == 1463


# --- quotas and errors ------------------------------------------------------------------------


def test_429_for_a_while_then_success(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard, sleeps: Sleeps
) -> None:
    dashboard.apply(SMALL)
    server.inject(429, times=4, kind="spreadsheets.batchUpdate")
    result = dashboard.apply(DashboardUpdate(transactions=[txn(7)]))

    assert result.inserted["Transactions"] == 1
    assert len(sleeps) == 4
    assert all(0 < s <= 32 for s in sleeps) and sum(sleeps) <= 120
    assert sleeps[3] > sleeps[0]  # exponential
    assert [r[0] for r in data_rows(server, "Transactions")][-1] == "txn_00000007"


def test_5xx_and_read_errors_are_retried_too(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard, sleeps: Sleeps
) -> None:
    server.inject(503, kind="spreadsheets.get")
    server.inject(500, kind="spreadsheets.batchUpdate")
    dashboard.apply(SMALL)

    assert len(sleeps) == 2
    assert len(data_rows(server, "Transactions")) == 3


def test_429_past_the_budget_is_a_temporary_error_and_the_next_run_completes(
    server: FakeSheetsServer, key_file: Path, sleeps: Sleeps
) -> None:
    dashboard = make_dashboard(server, key_file, sleeps, max_wait=60.0)
    dashboard.apply(SMALL)
    server.inject(429, times=1_000, kind="spreadsheets.batchUpdate")

    with pytest.raises(TemporaryError, match=r"quota exceeded.*try again later") as info:
        dashboard.apply(DashboardUpdate(transactions=[txn(8)]))

    assert info.value.exit_code == 75
    # The shared policy (bot.retry) gives up when the next wait would pass the budget: never
    # past it, and not before the refused wait (at most min(32, 2**n) s) would have. (Before,
    # the last wait was cut short to fill the budget exactly.)
    assert sum(sleeps) <= 60.0 < sum(sleeps) + min(32.0, 2.0 ** len(sleeps))
    server.clear_injections()
    dashboard.apply(DashboardUpdate(transactions=[txn(8)]))
    assert [r[0] for r in data_rows(server, "Transactions")][-1] == "txn_00000008"


def test_writes_are_paced(server: FakeSheetsServer, key_file: Path, sleeps: Sleeps) -> None:
    now = [100.0]
    dashboard = make_dashboard(server, key_file, sleeps, write_interval=1.0, clock=lambda: now[0])
    dashboard.apply(SMALL)
    assert sleeps == []
    now[0] += 0.25
    dashboard.apply(SMALL)  # the second write comes 0.25 s after the first
    assert sleeps == [pytest.approx(0.75)]


def test_403_names_the_service_account(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    server.unshare(SID)
    with pytest.raises(ServiceError) as info:
        dashboard.apply(SMALL)

    assert str(info.value) == (
        f"Google Sheets denied access to spreadsheet {SID}: share the sheet with {EMAIL} as Editor"
    )
    assert info.value.exit_code == 1


def test_404_says_the_sheet_id_is_wrong(
    server: FakeSheetsServer, key_file: Path, sleeps: Sleeps
) -> None:
    dashboard = GoogleSheetDashboard(
        spreadsheet_id="https://docs.google.com/spreadsheets/d/missing-id/edit#gid=0",
        credentials_file=key_file,
        api_url=server.url,
        sleep=sleeps,
    )
    with pytest.raises(ConfigError, match="GOOGLE_SHEET_ID is wrong") as info:
        dashboard.apply(SMALL)
    assert "missing-id" in str(info.value)
    assert info.value.exit_code == 78


def test_other_errors_are_one_line_service_errors(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    server.inject(400, body={"error": {"code": 400, "message": "Bad\nthing", "status": "X"}})
    with pytest.raises(ServiceError, match=r"^Google Sheets error \(HTTP 400\): Bad thing$"):
        dashboard.apply(SMALL)


def test_a_chart_sheet_named_like_our_tab_is_reported(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    sh = gspread_client(server).open_by_key(SID)
    chart = {"spec": {"title": "mine"}, "position": {"newSheet": True}}
    sh.batch_update({"requests": [{"addChart": {"chart": chart}}]})
    sh.worksheet("Chart1").update_title("Daily")

    with pytest.raises(ServiceError, match=r"'Daily' .* is not a grid"):
        dashboard.apply(SMALL)
    assert server.count("spreadsheets.batchUpdate") == 2  # the founder's two, none of ours


def test_check_reads_the_title(server: FakeSheetsServer, dashboard: GoogleSheetDashboard) -> None:
    assert dashboard.check() == "Revenue"
    assert kinds(server) == ["spreadsheets.get"]


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "not found"),
        ("{not json", "is not JSON"),
        ('{"type": "authorized_user", "client_id": "x"}', "is not a service-account key"),
        ('{"type": "service_account", "client_email": "a@b"}', "lacks private_key, token_uri"),
        (
            '{"type": "service_account", "client_email": "a@b", "token_uri": "http://t",'
            ' "private_key": "-----BEGIN PRIVATE KEY-----\\nSECRETSTUFF\\n'
            '-----END PRIVATE KEY-----\\n"}',
            "unusable private_key",
        ),
    ],
    ids=["missing", "not-json", "wrong-type", "incomplete", "bad-key"],
)
def test_bad_credentials_file_is_a_config_error(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "creds.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=expected) as info:
        GoogleSheetDashboard(spreadsheet_id=SID, credentials_file=path)

    message = str(info.value)
    assert str(path) in message
    assert "SECRET" not in message and "PRIVATE KEY" not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (SID, SID),
        (f"  {SID}\n", SID),
        (f"https://docs.google.com/spreadsheets/d/{SID}/edit#gid=0", SID),
        (f"https://docs.google.com/spreadsheets/d/{SID}", SID),
        (f"https://docs.google.com/spreadsheets/u/1/d/{SID}/edit?usp=sharing", SID),
    ],
    ids=["bare", "whitespace", "edit-url", "short-url", "user-url"],
)
def test_parse_spreadsheet_id(value: str, expected: str) -> None:
    assert parse_spreadsheet_id(value) == expected


@pytest.mark.parametrize("value", ["", "not an id", "https://example.com/sheet"], ids=str)
def test_parse_spreadsheet_id_rejects(value: str) -> None:
    with pytest.raises(ConfigError, match="GOOGLE_SHEET_ID"):
        parse_spreadsheet_id(value)


def test_describe_is_the_sheet_url_and_makes_no_request(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    assert dashboard.describe() == f"https://docs.google.com/spreadsheets/d/{SID}"
    assert server.count() == 0 and server.token_requests == []
