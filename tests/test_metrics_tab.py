"""The Metrics tab and the MRR charts, in the local workbook (both ways of writing it) and in the
Google Sheet (real gspread against the fake Sheets API).

The expected cells are written out by hand from the rows below: each money figure rounded
half-even to the minor unit on its own (so a shown row need not add up), in major units with
its currency's format; counts as integers; rates as fractions shown as percentages, empty when
their denominator is 0.
"""

from __future__ import annotations

import random
import re
import zipfile
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from bot.dashboard.base import (
    METRICS,
    DailyRow,
    DashboardUpdate,
    MonthlyRow,
    TransactionRow,
    cells,
    key_of,
)
from bot.dashboard.sheets import GoogleSheetDashboard
from bot.dashboard.workbook import WorkbookDashboard
from bot.errors import ServiceError
from bot.metrics import MetricsRow
from bot.money import number_format
from bot.periods import Month
from bot.pnl import PnlLines
from tests.fakes.sheets import (
    FakeSheetsServer,
    Formula,
    RecordedRequest,
    gspread_client,
    serving,
    write_service_account_key,
)

COLUMNS = [
    "month", "currency", "mrr_start", "new", "reactivation", "expansion", "contraction",
    "churn", "mrr_end", "arr", "subscribers_start", "new_subscribers",
    "reactivated_subscribers", "churned_subscribers", "subscribers_end",
    "subscriber_churn_rate", "gross_mrr_churn_rate", "net_revenue_retention", "arpa",
]  # fmt: skip
F = Fraction
WHEN = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)


def mrow(
    month: str,
    currency: str,
    *,
    start: Fraction | int = 0,
    new: Fraction | int = 0,
    reactivation: Fraction | int = 0,
    expansion: Fraction | int = 0,
    contraction: Fraction | int = 0,
    churn: Fraction | int = 0,
    subscribers: tuple[int, int, int, int] = (0, 0, 0, 0),  # start, new, reactivated, churned
) -> MetricsRow:
    s0, n, r, c = subscribers
    return MetricsRow(
        month=Month(int(month[:4]), int(month[5:])),
        currency=currency,
        mrr_start=F(start),
        new=F(new),
        reactivation=F(reactivation),
        expansion=F(expansion),
        contraction=F(contraction),
        churn=F(churn),
        mrr_end=F(start) + new + reactivation + expansion - contraction - churn,
        subscribers_start=s0,
        new_subscribers=n,
        reactivated_subscribers=r,
        churned_subscribers=c,
        subscribers_end=s0 + n + r - c,
    )


# Half-even cases where half-up would differ: 50000.5 cents -> $500.00, 150.5 -> $1.50,
# 1000.5 yen -> ¥1,000, 6172.5 fils -> KWD 6.172.
USD_SEP = mrow("2026-09", "usd", start=F(100_001, 2), new=F(2_501, 2), expansion=F(1_003, 2),
               contraction=F(301, 2), churn=1_000, subscribers=(10, 2, 0, 1))  # fmt: skip
USD_OCT = mrow("2026-10", "usd", start=50_602, reactivation=F(1_999, 2), churn=F(2_001, 2),
               subscribers=(11, 0, 1, 1))  # fmt: skip
JPY_SEP = mrow("2026-09", "jpy", start=F(2_001, 2), new=F(3, 2), subscribers=(4, 1, 0, 0))
KWD_OCT = mrow("2026-10", "kwd", new=F(12_345, 2), subscribers=(0, 1, 0, 0))
EUR_OCT = mrow("2026-10", "eur", start=3_000, churn=3_000, subscribers=(1, 0, 0, 1))
ROWS = [USD_SEP, JPY_SEP, USD_OCT, KWD_OCT, EUR_OCT]


def approx(value: float) -> Any:
    return pytest.approx(value, abs=1e-10)


# Each row as a reader sees it: (month, CURRENCY) -> the other 17 cells.
EXPECTED: dict[tuple[str, str], list[Any]] = {
    ("2026-09", "USD"): [500.00, 12.50, 0, 5.02, 1.50, 10.00, 506.02, 6_072.24,
                         10, 2, 0, 1, 11,
                         0.1, approx(1150.5 / 50000.5), approx(49351.5 / 50000.5), 46.00],
    ("2026-10", "USD"): [506.02, 0, 10.00, 0, 0, 10.00, 506.01, 6_072.12,
                         11, 0, 1, 1, 11,
                         approx(1 / 11), approx(1000.5 / 50602), approx(49601.5 / 50602), 46.00],
    ("2026-09", "JPY"): [1_000, 2, 0, 0, 0, 0, 1_002, 12_024, 4, 1, 0, 0, 5, 0, 0, 1, 200],
    ("2026-10", "KWD"): [0, 6.172, 0, 0, 0, 0, 6.172, 74.07, 0, 1, 0, 0, 1,
                         None, None, None, 6.172],
    ("2026-10", "EUR"): [30, 0, 0, 0, 0, 30, 0, 0, 1, 0, 0, 1, 0, 1, 1, 0, None],
}  # fmt: skip
MONEY = [*range(2, 10), 18]  # column indexes of money cells
COUNTS = range(10, 15)
RATES = range(15, 18)


def by_key(rows: Sequence[Sequence[Any]]) -> dict[tuple[str, str], list[Any]]:
    out: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        assert (row[0], row[1]) not in out, f"duplicate row {row[:2]}"
        out[(row[0], row[1])] = list(row[2:])
    return out


def history(months: int, currencies: Sequence[str]) -> list[MetricsRow]:
    """A chain of months from 2022-01 per currency, each starting where the last ended."""
    rows = []
    month = Month(2022, 1)
    for i in range(months):
        for c in currencies:
            start = 10_000 + 100 * i
            rows.append(mrow(str(month), c, start=start, new=500, churn=400,
                             subscribers=(10 + i, 2, 0, 1)))  # fmt: skip
        month = month.next()
    return rows


def daily(day: date, currency: str = "usd") -> DailyRow:
    return DailyRow(date=day, currency=currency, lines=PnlLines(gross_revenue=1_000),
                    charges=1, refunds_count=0, transactions=1, updated_at=WHEN)  # fmt: skip


def monthly(month: str, currency: str = "usd") -> MonthlyRow:
    return MonthlyRow(month=month, currency=currency, lines=PnlLines(gross_revenue=5_000),
                      starting_balance=None, ending_balance=None, mom_net_revenue_pct=None,
                      reconciled=True, source="report")  # fmt: skip


def txn(n: int, day: date) -> TransactionRow:
    when = datetime.combine(day, datetime.min.time(), UTC) + timedelta(minutes=n % 1000)
    return TransactionRow(id=f"txn_{n:06d}", created=when, available_on=when, type="charge",
                          reporting_category="charge", currency="usd", amount=1_000, fee=-30,
                          net=970, status="available", description="Order", source="ch")  # fmt: skip


BASE = DashboardUpdate(daily=[daily(date(2026, 10, 1))], monthly=[monthly("2026-09")],
                       transactions=[txn(1, date(2026, 10, 1))])  # fmt: skip


def test_the_columns_are_the_products_list_and_each_row_has_one_cell_a_column() -> None:
    assert list(METRICS.columns) == COLUMNS
    assert METRICS.title == "Metrics" and METRICS.key_width == 2
    for row in ROWS:
        assert len(cells(row)) == len(COLUMNS)
    assert key_of(USD_SEP) == ("2026-09", "USD")


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


def metrics_sheet(path: Path) -> list[tuple[Any, ...]]:
    return list(load_workbook(path)["Metrics"].iter_rows(values_only=True))


@pytest.mark.parametrize("way", WAYS)
def test_workbook_columns_values_and_formats(tmp_path: Path, way: str) -> None:
    dash = workbook(tmp_path, way)
    result = dash.apply(DashboardUpdate(metrics=ROWS))

    assert result.created == ("Metrics",)
    assert (result.inserted["Metrics"], result.updated["Metrics"]) == (5, 0)
    wb = load_workbook(dash.path)
    assert wb.sheetnames == ["Daily", "Monthly", "Metrics", "Transactions", "Charts"]
    ws = wb["Metrics"]
    assert [c.value for c in ws[1]] == COLUMNS
    assert ws.freeze_panes == "A2" and all(c.font.b for c in ws[1])
    rows = list(ws.iter_rows(min_row=2))
    assert by_key([[c.value for c in r] for r in rows]) == EXPECTED
    for row in rows:
        currency = row[1].value
        for i in MONEY:
            if row[i].value is not None:
                assert row[i].number_format == number_format(currency), (currency, i)
        for i in COUNTS:
            assert type(row[i].value) is int
        for i in RATES:
            assert row[i].number_format == ("0.0%" if row[i].value is not None else "General")
        assert row[0].data_type == row[1].data_type == "s"
    formats = {r[1].value: r[2].number_format for r in rows}
    assert formats["JPY"] == '"¥"#,##0;-"¥"#,##0'  # no decimals
    assert formats["KWD"].startswith('"KWD"#,##0.000;')  # three
    assert formats["USD"] == '"$"#,##0.00;-"$"#,##0.00'


@pytest.mark.parametrize("way", WAYS)
def test_workbook_upserts_by_key_and_rewrites_a_changed_month_in_place(
    tmp_path: Path, way: str
) -> None:
    dash = workbook(tmp_path, way)
    dash.apply(DashboardUpdate(metrics=ROWS))
    for _ in range(2):
        again = dash.apply(DashboardUpdate(metrics=ROWS))
        assert (again.inserted["Metrics"], again.updated["Metrics"], again.created) == (0, 0, ())
    before = metrics_sheet(dash.path)
    assert len(before) == 1 + len(ROWS)

    # October's USD figures changed (a late invoice), and its subscribers at the start became
    # 0 (its rate is empty now); November comes.
    changed = mrow("2026-10", "usd", start=50_602, expansion=1_000, subscribers=(0, 0, 0, 0))
    november = mrow("2026-11", "usd", start=51_602, subscribers=(0, 0, 0, 0))
    result = dash.apply(DashboardUpdate(metrics=[changed, november]))

    assert (result.inserted["Metrics"], result.updated["Metrics"]) == (1, 1)
    after = metrics_sheet(dash.path)
    assert len(after) == 2 + len(ROWS)
    rows = by_key(after[1:])
    assert rows[("2026-10", "USD")][:9] == [506.02, 0, 0, 10, 0, 0, 516.02, 6_192.24, 0]
    assert rows[("2026-10", "USD")][13] is None  # subscriber churn: 0 at the start
    assert rows[("2026-11", "USD")][6] == 516.02
    place = [r[:2] for r in before].index(("2026-10", "USD"))
    assert after[place][:2] == ("2026-10", "USD")  # the same row, rewritten
    others = {k: v for k, v in rows.items() if k[0] != "2026-11" and k != ("2026-10", "USD")}
    assert others == {k: v for k, v in EXPECTED.items() if k != ("2026-10", "USD")}
    ws = load_workbook(dash.path)["Metrics"]
    emptied = ws.cell(place + 1, COLUMNS.index("subscriber_churn_rate") + 1)
    assert emptied.value is None and emptied.number_format == "General"


@pytest.mark.parametrize("way", WAYS)
def test_workbook_has_no_metrics_tab_until_a_metrics_row_comes(tmp_path: Path, way: str) -> None:
    dash = workbook(tmp_path, way)
    result = dash.apply(BASE)

    wb = load_workbook(dash.path)
    assert wb.sheetnames == ["Daily", "Monthly", "Transactions", "Charts"]
    assert "Metrics" not in result.inserted and result.created == ()
    assert not [t for t in chart_titles(dash.path) if t.startswith("MRR")]

    dash.apply(DashboardUpdate(metrics=[USD_SEP]))
    later = dash.apply(BASE)  # a run without metrics rows keeps the tab, its rows and chart
    assert later.created == () and (later.inserted["Metrics"], later.updated["Metrics"]) == (0, 0)
    assert len(metrics_sheet(dash.path)) == 2
    assert "MRR, USD" in chart_titles(dash.path)


def chart_titles(path: Path) -> list[str]:
    return [title for title, _ in charts(path)]


def charts(path: Path) -> list[tuple[str, str]]:
    """(title, the range its values come from) of each chart in the file."""
    out = []
    with zipfile.ZipFile(path) as z:
        for name in sorted(n for n in z.namelist() if re.match(r"xl/charts/chart\d+\.xml", n)):
            xml = z.read(name).decode()
            title = re.search(r"<a:t>([^<]*)</a:t>", xml)
            values = re.search(r"<val><numRef><f>([^<]*)</f>", xml)
            assert title and values, name
            out.append((title.group(1), values.group(1)))
    return out


def _cell(ref: str) -> tuple[int, int]:
    """(row, column) of the first cell of a reference like 'Charts'!$H$2:$H$4."""
    found = re.search(r"\$([A-Z]+)\$(\d+)", ref)
    assert found, ref
    col = 0
    for ch in found.group(1):
        col = col * 26 + ord(ch) - 64
    return int(found.group(2)), col


@pytest.mark.parametrize("way", WAYS)
def test_workbook_has_an_mrr_chart_per_currency(tmp_path: Path, way: str) -> None:
    dash = workbook(tmp_path, way)
    dash.apply(DashboardUpdate(metrics=ROWS))
    dash.apply(DashboardUpdate(metrics=ROWS))  # not twice

    found = charts(dash.path)
    mrr = {t: ref for t, ref in found if t.startswith("MRR")}
    assert sorted(mrr) == ["MRR, EUR", "MRR, JPY", "MRR, KWD", "MRR, USD"]
    assert len(found) == 2 + len(mrr)  # the net revenue charts of USD, daily and monthly
    ws = load_workbook(dash.path)["Charts"]
    for title, ref in mrr.items():
        row, col = _cell(ref)
        assert ws.cell(row - 1, col).value == title[-3:]  # the series is that currency's
        month_col = next(c for c in range(col, 0, -1) if ws.cell(1, c).value == "month")
        series = {
            ws.cell(r, month_col).value: ws.cell(r, col).value for r in range(row, ws.max_row + 1)
        }
        series.pop(None, None)
        want = {k[0]: v[6] for k, v in EXPECTED.items() if k[1] == title[-3:]}
        assert {m: v for m, v in series.items() if m in want} == want
        assert all(v == 0 for m, v in series.items() if m not in want)  # before its first month


@pytest.mark.parametrize("way", WAYS)
def test_workbook_metrics_tab_deleted_by_a_founder_is_created_again(
    tmp_path: Path, way: str
) -> None:
    dash = workbook(tmp_path, way)
    dash.apply(DashboardUpdate(metrics=ROWS))
    wb = load_workbook(dash.path)
    del wb["Metrics"]
    wb.save(dash.path)

    quiet = dash.apply(BASE)  # no metrics rows: the tab stays away, nothing to refill
    assert quiet.created == () and "Metrics" not in load_workbook(dash.path).sheetnames

    result = dash.apply(DashboardUpdate(metrics=ROWS))  # the refill
    assert result.created == ("Metrics",) and result.inserted["Metrics"] == len(ROWS)
    assert by_key(metrics_sheet(dash.path)[1:]) == EXPECTED
    sheetnames = load_workbook(dash.path).sheetnames
    assert sheetnames[:4] == ["Daily", "Monthly", "Metrics", "Transactions"]


def test_workbook_metrics_lands_next_to_monthly_wherever_a_founder_moved_the_tabs(
    tmp_path: Path,
) -> None:
    dash = workbook(tmp_path, "fast")
    wb = load_workbook(dash.path)
    notes = wb.create_sheet("My notes", 0)
    notes["A1"] = "keep me"
    wb.move_sheet("Transactions", offset=-2)  # before Daily
    wb.save(dash.path)
    assert wb.sheetnames == ["My notes", "Transactions", "Daily", "Monthly", "Charts"]

    dash.apply(DashboardUpdate(metrics=ROWS))

    wb = load_workbook(dash.path)
    assert wb.sheetnames == ["My notes", "Transactions", "Daily", "Monthly", "Metrics", "Charts"]
    assert wb["My notes"]["A1"].value == "keep me"


@pytest.mark.parametrize("way", WAYS)
def test_workbook_metrics_is_never_trimmed(tmp_path: Path, way: str) -> None:
    dash = workbook(tmp_path, way, row_limit=1 + 5)
    rows = history(12, ["usd"])
    result = dash.apply(
        DashboardUpdate(
            metrics=rows,
            transactions=[txn(n, date(2026, 10, 1) + timedelta(days=n)) for n in range(10)],
        )
    )
    assert result.trimmed is not None  # Transactions was cut to the row limit
    assert len(dash.read_rows("Transactions")) == 5
    assert len(dash.read_rows("Metrics")) == 12


def test_a_workbook_rebuilt_from_nothing_reports_metrics_among_the_new_tabs(
    tmp_path: Path,
) -> None:
    dash = workbook(tmp_path, "fast")
    dash.apply(DashboardUpdate(metrics=ROWS))
    dash.path.unlink()
    result = dash.apply(DashboardUpdate(daily=BASE.daily, metrics=ROWS))
    assert result.created == ("Daily", "Monthly", "Metrics", "Transactions")
    assert by_key(metrics_sheet(dash.path)[1:]) == EXPECTED


# --- the Google Sheet --------------------------------------------------------------------------

SID = "1MetricsTabSheet0123456789abcdefghijklmnopqr"
PARIS = ZoneInfo("Europe/Paris")


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


def data_rows(server: FakeSheetsServer, title: str = "Metrics") -> list[list[Any]]:
    rows = server.grid(SID, title)[1:]
    width = len(COLUMNS)
    return [[*r, *[None] * width][:width] for r in rows]


def test_sheet_columns_values_and_formats(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    result = dashboard.apply(DashboardUpdate(daily=BASE.daily, metrics=ROWS))

    assert server.sheet_titles(SID) == [
        "Sheet1", "Daily", "Monthly", "Metrics", "Transactions", "Charts",
    ]  # fmt: skip
    assert result.created == ("Daily", "Monthly", "Metrics", "Transactions")
    assert (result.inserted["Metrics"], result.updated["Metrics"]) == (5, 0)
    assert server.grid(SID, "Metrics")[0] == COLUMNS
    assert server.sheet_properties(SID, "Metrics")["gridProperties"]["frozenRowCount"] == 1
    assert by_key(data_rows(server)) == EXPECTED
    money = {c: {"type": "CURRENCY", "pattern": number_format(c)} for c in EXPECTED_CCYS}
    pct = {"type": "PERCENT", "pattern": "0.0%"}
    count = {"type": "NUMBER", "pattern": "0"}
    text = {"type": "TEXT"}
    for row, formats in zip(data_rows(server), server.formats(SID, "Metrics")[1:], strict=True):
        ccy = row[1]
        assert formats == [text, text, *[money[ccy]] * 8, *[count] * 5, *[pct] * 3, money[ccy]]
    # As a founder reads them.
    ws = gspread_client(server).open_by_key(SID).worksheet("Metrics")
    shown = {tuple(r[:2]): r[2:] for r in ws.get_all_values()[1:]}
    assert shown[("2026-09", "USD")] == [
        "$500.00", "$12.50", "$0.00", "$5.02", "$1.50", "$10.00", "$506.02", "$6,072.24",
        "10", "2", "0", "1", "11", "10.0%", "2.3%", "98.7%", "$46.00",
    ]  # fmt: skip
    assert shown[("2026-09", "JPY")][:8] == [
        "¥1,000", "¥2", "¥0", "¥0", "¥0", "¥0", "¥1,002", "¥12,024",
    ]  # fmt: skip
    assert shown[("2026-09", "JPY")][-4:] == ["0.0%", "0.0%", "100.0%", "¥200"]
    assert shown[("2026-10", "KWD")][-4:] == ["", "", "", "KWD6.172"]  # empty rates
    assert shown[("2026-10", "KWD")][7] == "KWD74.070"
    assert shown[("2026-10", "EUR")][-1] == ""  # no subscriber at the end: no ARPA


EXPECTED_CCYS = ("USD", "JPY", "KWD", "EUR")


def test_sheet_upserts_by_key_and_rewrites_a_changed_month_in_place(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(DashboardUpdate(metrics=ROWS))
    snapshot = server.grid(SID, "Metrics")
    for _ in range(2):
        again = dashboard.apply(DashboardUpdate(metrics=ROWS))
        assert (again.inserted["Metrics"], again.updated["Metrics"], again.created) == (0, 5, ())
        assert server.grid(SID, "Metrics") == snapshot

    changed = mrow("2026-10", "usd", start=50_602, expansion=1_000, subscribers=(0, 0, 0, 0))
    november = mrow("2026-11", "usd", start=51_602, subscribers=(0, 0, 0, 0))
    result = dashboard.apply(DashboardUpdate(metrics=[changed, november]))

    assert (result.inserted["Metrics"], result.updated["Metrics"]) == (1, 1)
    rows = data_rows(server)
    assert len(rows) == len(ROWS) + 1
    place = [r[:2] for r in snapshot[1:]].index(["2026-10", "USD"])
    assert rows[place][:2] == ["2026-10", "USD"]
    assert rows[place][2:11] == [506.02, 0, 0, 10, 0, 0, 516.02, 6_192.24, 0]
    assert rows[place][15] is None  # the rate it had is cleared
    assert rows[-1][:2] == ["2026-11", "USD"]
    others = {k: v for k, v in by_key(rows).items() if k[0] != "2026-11"}
    assert others == EXPECTED | {("2026-10", "USD"): rows[place][2:]}


def test_sheet_has_no_metrics_tab_until_a_metrics_row_comes(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    first = dashboard.apply(BASE)
    assert "Metrics" not in server.sheet_titles(SID)
    assert "Metrics" not in first.inserted and "Metrics" not in first.created
    assert not [c for c in server.charts(SID) if c["spec"]["title"].startswith("MRR")]

    gspread_client(server).open_by_key(SID).add_worksheet("Notes", rows=5, cols=3)
    result = dashboard.apply(DashboardUpdate(metrics=[USD_SEP]))

    assert result.created == ("Metrics",)
    # Next to Monthly, not after the founder's tab like other new tabs.
    assert server.sheet_titles(SID) == [
        "Sheet1", "Daily", "Monthly", "Metrics", "Transactions", "Charts", "Notes",
    ]  # fmt: skip
    later = dashboard.apply(BASE)
    assert later.created == () and later.inserted["Metrics"] == 0
    assert len(data_rows(server)) == 1


def test_sheet_has_an_mrr_chart_per_currency(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    for _ in range(2):
        dashboard.apply(DashboardUpdate(daily=BASE.daily, metrics=[USD_SEP, JPY_SEP]))

    titles = sorted(c["spec"]["title"] for c in server.charts(SID))
    assert titles == [
        "Daily net revenue (USD)", "MRR (JPY)", "MRR (USD)", "Monthly net revenue (USD)",
    ]  # fmt: skip
    dashboard.apply(DashboardUpdate(metrics=[KWD_OCT]))
    charts = {c["spec"]["title"]: c for c in server.charts(SID)}
    assert len(charts) == 5 and "MRR (KWD)" in charts
    kwd = charts["MRR (KWD)"]["spec"]
    basic = kwd["basicChart"]
    assert basic["chartType"] == "COLUMN"
    assert basic["axis"][1]["title"] == "MRR (KWD)"
    [source] = basic["domains"][0]["domain"]["sourceRange"]["sources"]
    helper = server.grid(SID, "Charts")[0][source["startColumnIndex"]]
    assert helper == Formula(
        "=QUERY(INDIRECT(\"'Metrics'!A1:S\"), \"select A, I where B = 'KWD' and A is not null "
        "order by A label I 'KWD'\", 1)"
    )
    assert COLUMNS[8] == "mrr_end"  # column I
    [series] = basic["series"][0]["series"]["sourceRange"]["sources"]
    assert series["startColumnIndex"] == source["startColumnIndex"] + 1
    hidden = server.dimension_properties(SID, "Charts")
    assert hidden[("COLUMNS", source["startColumnIndex"])]["hiddenByUser"]
    # The MRR charts sit on a row of their own, under the net-revenue charts.
    anchors = {
        t: c["position"]["overlayPosition"]["anchorCell"]["rowIndex"] for t, c in charts.items()
    }
    assert anchors["MRR (JPY)"] == anchors["MRR (USD)"] > anchors["Daily net revenue (USD)"]


def test_sheet_metrics_tab_deleted_by_a_founder_is_created_again(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(DashboardUpdate(daily=BASE.daily, metrics=ROWS))
    sh = gspread_client(server).open_by_key(SID)
    sh.del_worksheet(sh.worksheet("Metrics"))

    quiet = dashboard.apply(BASE)
    assert quiet.created == () and "Metrics" not in server.sheet_titles(SID)

    result = dashboard.apply(DashboardUpdate(metrics=ROWS))  # the refill
    assert result.created == ("Metrics",) and result.inserted["Metrics"] == len(ROWS)
    assert by_key(data_rows(server)) == EXPECTED
    assert server.sheet_titles(SID)[1:4] == ["Daily", "Monthly", "Metrics"]
    assert len([c for c in server.charts(SID) if c["spec"]["title"].startswith("MRR")]) == 4


def test_sheet_metrics_goes_after_monthly_when_transactions_before_it_is_dropped(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(BASE)
    sh = gspread_client(server).open_by_key(SID)
    sh.worksheet("Transactions").update_index(1)  # a founder moved it first
    assert server.sheet_titles(SID) == ["Sheet1", "Transactions", "Daily", "Monthly", "Charts"]

    dashboard.apply(DashboardUpdate(metrics=ROWS, keep_transactions=False))

    assert server.sheet_titles(SID) == ["Sheet1", "Daily", "Monthly", "Metrics", "Charts"]


def test_sheet_a_month_a_founder_typed_as_a_date_is_still_its_key(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    dashboard.apply(DashboardUpdate(metrics=ROWS))
    ws = gspread_client(server).open_by_key(SID).worksheet("Metrics")
    at = [r[:2] for r in data_rows(server)].index(["2026-09", "USD"]) + 2
    ws.update([["2026-09-01"]], f"A{at}", value_input_option="USER_ENTERED")  # a date now
    assert isinstance(server.grid(SID, "Metrics")[at - 1][0], int | float)

    result = dashboard.apply(DashboardUpdate(metrics=ROWS))

    assert (result.inserted["Metrics"], result.updated["Metrics"]) == (0, 5)
    assert by_key(data_rows(server)) == EXPECTED  # no second 2026-09 USD row


def test_sheet_a_founders_chart_sheet_named_metrics_stops_only_the_metrics(
    server: FakeSheetsServer, dashboard: GoogleSheetDashboard
) -> None:
    sh = gspread_client(server).open_by_key(SID)
    chart = {"spec": {"title": "mine"}, "position": {"newSheet": True}}
    sh.batch_update({"requests": [{"addChart": {"chart": chart}}]})
    sh.worksheet("Chart1").update_title("Metrics")

    dashboard.apply(BASE)  # an account without subscriptions: nothing in the way
    assert len(server.grid(SID, "Daily")) == 2

    with pytest.raises(ServiceError, match=r"'Metrics' .* is not a grid"):
        dashboard.apply(DashboardUpdate(metrics=ROWS))


def rows_read(request: RecordedRequest) -> list[int]:
    """How many rows each range of a values.batchGet spans."""
    spans = []
    for text in request.query["ranges"]:
        found = re.search(r"![A-Z]+(\d+):[A-Z]+(\d+)$", text)
        assert found, text
        spans.append(int(found.group(2)) - int(found.group(1)) + 1)
    return spans


def second_apply(tmp_path: Path, months: int, *, indexed: bool) -> list[RecordedRequest]:
    """The requests of an apply that changes one month and adds one, on a Metrics tab of
    ``months`` months in two currencies."""
    with serving(SID) as fake:
        key = tmp_path / f"key-{months}.json"
        write_service_account_key(key, token_uri=fake.token_uri)
        index = tmp_path / f"index-{months}.sqlite" if indexed else None
        dashboard = sheet(fake, key, index)
        dashboard.apply(DashboardUpdate(metrics=history(months, ["eur", "usd"])))
        late = mrow("2022-06", "usd", start=10_500, expansion=77, subscribers=(15, 0, 0, 0))
        new = mrow("2099-01", "usd", start=99_999, subscribers=(1, 0, 0, 0))
        fake.reset_counts()
        result = dashboard.apply(DashboardUpdate(metrics=[late, new]))
        assert (result.inserted["Metrics"], result.updated["Metrics"]) == (1, 1)
        got = by_key(data_rows(fake))
        assert len(got) == 2 * months + 1
        assert got[("2022-06", "USD")][3] == 0.77 and got[("2099-01", "USD")][0] == 999.99
        return list(fake.requests)


@pytest.mark.parametrize("indexed", [True, False], ids=["index", "no-index"])
def test_sheet_second_apply_costs_the_rows_it_changes(tmp_path: Path, indexed: bool) -> None:
    small = second_apply(tmp_path, 24, indexed=indexed)
    large = second_apply(tmp_path, 240, indexed=indexed)  # ten times the tab

    for run in (small, large):
        assert [r.kind for r in run] == [
            "spreadsheets.get", "values.batchGet", "spreadsheets.batchUpdate",
        ]  # fmt: skip
    reads = [rows_read(r) for run in (small, large) for r in run if r.kind == "values.batchGet"]
    sent = [sum(r.request_bytes for r in run) for run in (small, large)]
    received = [sum(r.response_bytes for r in run) for run in (small, large)]
    # The write is the two rows either way: the same bytes but for a few digits of row numbers.
    assert abs(sent[1] - sent[0]) < 0.02 * sent[0], sent
    if indexed:
        assert all(sum(spans) <= 10 for spans in reads), reads  # a few rows checked
        # The same but for row numbers, and a random row of the check that may coincide
        # with another one in the small tab and not in the large one.
        assert abs(received[1] - received[0]) < 250, received
    else:
        assert reads == [[48], [480]]  # the whole key column
        assert received[1] - received[0] > (480 - 48) * 15  # at least 15 bytes a row


def test_sheet_metrics_is_never_trimmed_for_the_cell_limit(key_file: Path, tmp_path: Path) -> None:
    limit = 20_000
    with FakeSheetsServer(max_cells=limit) as fake:
        fake.create_spreadsheet(SID, "Revenue", sheets=["Sheet1"])
        write_service_account_key(key_file, token_uri=fake.token_uri)
        gspread_client(fake).open_by_key(SID).sheet1.resize(rows=20, cols=10)
        dashboard = sheet(fake, key_file, tmp_path / "index.sqlite", cell_limit=limit)
        metrics = history(60, ["usd"])
        days = [date(2026, 1, 1) + timedelta(days=d) for d in range(20)]
        result = dashboard.apply(
            DashboardUpdate(
                daily=[daily(d) for d in days],
                metrics=metrics,
                transactions=[txn(100 * i + k, d) for i, d in enumerate(days) for k in range(100)],
            )
        )

        assert result.trimmed is not None and "20,000 cells" in result.trimmed
        assert fake.spreadsheets[SID].total_cells() <= limit
        assert 0 < len(fake.grid(SID, "Transactions")) - 1 < 2_000
        assert len(fake.grid(SID, "Metrics")) - 1 == 60
        assert fake.violations == []
