"""The local workbook written from its cache (bot/dashboard/workbook_fast.py): the same cells as
the openpyxl way, a run that re-renders only the days it changes, the founders' changes kept,
a damaged cache or a crash costing a rebuild and never a wrong row, and the row limit."""

from __future__ import annotations

import io
import logging
import os
import sqlite3
import zipfile
import zlib
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from openpyxl.styles import PatternFill

from bot.dashboard.base import DailyRow, DashboardUpdate, MonthlyRow, TransactionRow
from bot.dashboard.workbook import WorkbookDashboard
from bot.dashboard.xlsx_parts import crc32_combine, deflate_part, joined, write_zip
from bot.metrics import MetricsRow
from bot.periods import Month
from bot.pnl import PnlLines

WHEN = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)
ALL_TABS = ("Daily", "Monthly", "Transactions")


def trow(
    i: int,
    description: str,
    status: str = "pending",
    currency: str = "usd",
    when: datetime = WHEN,
) -> TransactionRow:
    return TransactionRow(id=f"txn_{i:05d}", created=when, available_on=when, type="charge",
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


def xrow(
    month: int, currency: str, start: Fraction, new: Fraction, churn: int, subs: tuple[int, ...]
) -> MetricsRow:
    """A Metrics row; ``subs``: subscribers at the start, new, churned."""
    s0, n, c = subs
    return MetricsRow(month=Month(2026, month), currency=currency, mrr_start=start, new=new,
                      reactivation=Fraction(0), expansion=Fraction(0), contraction=Fraction(0),
                      churn=Fraction(churn), mrr_end=start + new - churn, subscribers_start=s0,
                      new_subscribers=n, reactivated_subscribers=0, churned_subscribers=c,
                      subscribers_end=s0 + n - c)  # fmt: skip


STEPS = [
    DashboardUpdate(daily=[drow(1, "usd", 1000), drow(1, "jpy", 1500)],
                    transactions=[trow(1, '=IMPORTXML("http://x","//a")'), trow(2, "plain")]),
    DashboardUpdate(daily=[drow(1, "usd", 1000), drow(2, "usd", 700)],  # one same, one new
                    transactions=[trow(2, "plain", status="available"),
                                  trow(3, " +1+1 ", currency="jpy", when=WHEN + timedelta(days=1)),
                                  trow(4, "", currency="bhd", when=WHEN + timedelta(seconds=1))]),
    DashboardUpdate(monthly=[mrow("2026-09", 5000, None), mrow("2026-10", 6000, Decimal("0.2"))]),
    DashboardUpdate(daily=[drow(2, "usd", 900)], monthly=[mrow("2026-10", 6500, Decimal("0.3"))]),
    DashboardUpdate(),
]  # fmt: skip
# The Metrics tab comes later, as on an account that starts billing subscriptions: money in
# each currency's decimals (JPY none, KWD three), empty rates and ARPA, then a changed month
# whose rate empties, and a run without metrics rows that keeps the tab.
HALF_CENTS = Fraction(100_001, 2), Fraction(2_501, 2)  # $500.00 and $12.50, half-even
METRICS_STEPS = [
    DashboardUpdate(daily=[drow(3, "usd", 100)],
                    metrics=[xrow(9, "usd", *HALF_CENTS, 1_000, (10, 2, 1)),
                             xrow(9, "jpy", Fraction(2_001, 2), Fraction(3, 2), 0, (4, 1, 0)),
                             xrow(9, "kwd", Fraction(0), Fraction(12_345, 2), 0, (0, 1, 0))]),
    DashboardUpdate(metrics=[xrow(9, "usd", *HALF_CENTS, 1_000, (0, 2, 0)),
                             xrow(10, "usd", Fraction(50_751), Fraction(0), 0, (2, 0, 0)),
                             xrow(10, "eur", Fraction(3_000), Fraction(0), 3_000, (1, 0, 1))]),
    DashboardUpdate(),
]  # fmt: skip


def everything(path: Path) -> dict[str, Any]:
    """Every cell of every tab, with its format and type, as a reader of the file sees it; the
    data rows of each tab in sorted order (the openpyxl way keeps the order rows came in, the
    fast way sorts them by key)."""
    wb = load_workbook(path)
    out: dict[str, Any] = {"order": wb.sheetnames, "freeze": [ws.freeze_panes for ws in wb]}
    for ws in wb:
        rows = [
            [
                (
                    c.value,
                    c.number_format,
                    c.value is not None and c.data_type,
                    bool(c.font and c.font.b),
                )
                for c in row
            ]
            for row in ws.iter_rows()
        ]
        out[ws.title] = rows if ws.title == "Charts" else rows[:1] + sorted(rows[1:], key=repr)
    return out


def founder_touch(path: Path) -> None:
    """Open the workbook and save it, as a founder's spreadsheet program would."""
    load_workbook(path).save(path)


def test_the_fast_way_writes_what_the_openpyxl_way_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fast = WorkbookDashboard(tmp_path / "fast" / "dashboard.xlsx")
    slow = WorkbookDashboard(tmp_path / "slow" / "dashboard.xlsx")
    for n, update in enumerate([*STEPS, *METRICS_STEPS]):
        if n:
            founder_touch(slow.path)  # from now on the slow one is read and written by openpyxl
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="bot.dashboard.workbook"):
            got = fast.apply(update)
            want = slow.apply(update)
        outside = [r for r in caplog.records if "changed outside revbot" in r.getMessage()]
        assert len(outside) == (1 if n else 0)  # only the slow one, only after the first step
        assert (got.inserted, got.updated, got.created) == (
            want.inserted,
            want.updated,
            want.created,
        )
        assert everything(fast.path) == everything(slow.path)
    assert fast.cache_path.exists() and not slow.cache_path.exists()
    # The metrics steps did their work: the tab next to Monthly, every row, an MRR chart per
    # currency in the Charts tab's pivot, and a rate emptied by the change.
    wb = load_workbook(fast.path)
    assert wb.sheetnames == ["Daily", "Monthly", "Metrics", "Transactions", "Charts"]
    metrics = {(r[0], r[1]): r for r in wb["Metrics"].iter_rows(min_row=2, values_only=True)}
    assert sorted(metrics) == [("2026-09", "JPY"), ("2026-09", "KWD"), ("2026-09", "USD"),
                               ("2026-10", "EUR"), ("2026-10", "USD")]  # fmt: skip
    assert metrics[("2026-09", "USD")][15] is None and metrics[("2026-10", "USD")][8] == 507.51
    pivot_headers = [c.value for c in wb["Charts"][1]]
    assert pivot_headers.count("month") == 2  # Monthly's and Metrics'
    txs = load_workbook(fast.path)["Transactions"]
    injected = [c for c in txs["K"] if str(c.value).startswith("=IMPORTXML")]
    assert len(injected) == 1 and injected[0].data_type == "s"
    assert " +1+1 " in [c.value for c in txs["K"]]  # spaces kept
    with zipfile.ZipFile(fast.path) as z:
        assert z.testzip() is None
        assert all("<f>" not in z.read(n).decode() for n in z.namelist() if "worksheets" in n)


def _chunks(dash: WorkbookDashboard) -> dict[str, bytes]:
    with sqlite3.connect(dash.cache_path) as conn:
        return {d: bytes(b) for d, b in conn.execute("SELECT day, data FROM chunks")}


def _days(first: date, n: int, per_day: int, start: int = 0) -> list[TransactionRow]:
    rows = []
    for d in range(n):
        when = datetime.combine(first + timedelta(days=d), datetime.min.time(), UTC)
        for k in range(per_day):
            i = start + d * per_day + k
            rows.append(trow(i, f"payment {i}", when=when + timedelta(minutes=k)))
    return rows


def test_a_run_renders_only_the_days_it_changes(tmp_path: Path) -> None:
    dash = WorkbookDashboard(tmp_path / "dashboard.xlsx")
    history = _days(date(2026, 9, 1), 30, 20)
    dash.apply(DashboardUpdate(transactions=history))
    before = _chunks(dash)
    assert len(before) == 30
    last = date(2026, 9, 30)
    changed = [r for r in history if r.created.date() == last][:1]
    changed = [
        TransactionRow(**{**{f: getattr(r, f) for f in r.__slots__}, "status": "available"})
        for r in changed
    ]
    new_day = _days(date(2026, 10, 1), 1, 20, start=10_000)
    res = dash.apply(DashboardUpdate(transactions=changed + new_day))
    assert (res.inserted["Transactions"], res.updated["Transactions"]) == (20, 1)
    after = _chunks(dash)
    untouched = {d for d in before if d != last.isoformat()}
    assert {d for d in untouched if after[d] == before[d]} == untouched
    assert after[last.isoformat()] != before[last.isoformat()] and "2026-10-01" in after
    rows = dash.read_rows("Transactions")
    assert len(rows) == 30 * 20 + 20
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)  # oldest first, by time and id
    assert {r[0]: r[9] for r in rows}[changed[0].id] == "available"


def test_a_founders_edit_is_kept_and_deleting_the_file_brings_the_fast_way_back(
    tmp_path: Path,
) -> None:
    dash = WorkbookDashboard(tmp_path / "dashboard.xlsx")
    dash.apply(STEPS[0])
    wb = load_workbook(dash.path)
    wb["Daily"]["B2"].fill = PatternFill("solid", start_color="FFFF00")  # a highlight
    wb.create_sheet("My notes")["A1"] = "keep me"
    wb.save(dash.path)
    dash.apply(STEPS[1])  # not what revbot wrote: read, and the founder's changes kept
    assert not dash.cache_path.exists()
    dash.apply(STEPS[2])
    wb = load_workbook(dash.path)
    assert wb["Daily"]["B2"].fill.start_color.rgb == "00FFFF00"
    assert wb["My notes"]["A1"].value == "keep me"
    assert [r[0] for r in wb["Monthly"].iter_rows(min_row=2, values_only=True)] == [
        "2026-09",
        "2026-10",
    ]
    dash.path.unlink()
    res = dash.apply(STEPS[3])
    assert res.created == ALL_TABS  # the caller refills every tab from the ledger
    assert dash.cache_path.exists()


@pytest.mark.parametrize("damage", ["garbage", "piece", "stale"])
def test_a_damaged_cache_means_a_rebuild_never_a_wrong_row(tmp_path: Path, damage: str) -> None:
    dash = WorkbookDashboard(tmp_path / "dashboard.xlsx")
    dash.apply(STEPS[0])
    dash.apply(STEPS[1])
    if damage == "garbage":
        dash.cache_path.write_bytes(b"not a database at all" * 100)
    elif damage == "piece":
        with sqlite3.connect(dash.cache_path) as conn:
            conn.execute("UPDATE chunks SET data = ?", (b"\x00garbage",))
    else:  # a cache that lost a row the file has: the file is no longer the cache's
        with sqlite3.connect(dash.cache_path) as conn:
            conn.execute("UPDATE meta SET value = '[]' WHERE key = 'written'")
    res = dash.apply(DashboardUpdate(transactions=[trow(9, "after")]))
    ids = sorted(r[0] for r in dash.read_rows("Transactions"))
    if damage == "piece":
        # The file is revbot's but its cache cannot be trusted: the tabs come back as new, and
        # the caller refills them from the ledger.
        assert res.created == ALL_TABS
        assert ids == ["txn_00009"]
    else:
        # Nothing says the file is revbot's own: it is read and written back, as a founder's.
        assert res.created == ()
        assert ids == [f"txn_{i:05d}" for i in (1, 2, 3, 4, 9)]


def test_a_crash_between_the_cache_and_the_file_costs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dash = WorkbookDashboard(tmp_path / "dashboard.xlsx")
    dash.apply(STEPS[0])
    real = os.replace

    def killed(src: Any, dst: Any) -> None:
        raise KeyboardInterrupt  # as if the process died before the file took its place

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        dash.apply(STEPS[1])
    monkeypatch.setattr(os, "replace", real)
    with caplog.at_level(logging.INFO, logger="bot.dashboard.workbook"):
        res = dash.apply(DashboardUpdate())
    assert not [r for r in caplog.records if "changed outside" in r.getMessage()]
    assert res.created == ()
    assert sorted(r[0] for r in dash.read_rows("Transactions")) == [
        "txn_00001",
        "txn_00002",
        "txn_00003",
        "txn_00004",
    ]


@pytest.mark.parametrize("way", ["fast", "openpyxl"])
def test_transactions_keep_their_days_and_fit_the_row_limit(tmp_path: Path, way: str) -> None:
    dash = WorkbookDashboard(tmp_path / "dashboard.xlsx", row_limit=1 + 50)
    first = date(2026, 9, 1)
    dash.apply(DashboardUpdate(daily=[drow(1, "usd", 1000)], transactions=_days(first, 3, 10)))
    if way == "openpyxl":
        founder_touch(dash.path)
    # SHEET_TRANSACTIONS_DAYS: the days before Sep 2 go, Daily stays.
    res = dash.apply(DashboardUpdate(transactions_from=first + timedelta(days=1)))
    assert res.trimmed is None
    days = {r[1].date() for r in dash.read_rows("Transactions")}
    assert days == {date(2026, 9, 2), date(2026, 9, 3)}
    # 20 rows now; 4 more days of 10 would make 60 > 50: the oldest days go, whole.
    more = _days(first + timedelta(days=3), 4, 10, start=1000)
    res = dash.apply(DashboardUpdate(transactions=more))
    assert res.trimmed is not None and "2026-09-03" in res.trimmed and "50" in res.trimmed
    rows = dash.read_rows("Transactions")
    assert len(rows) == 50
    assert min(r[1].date() for r in rows) == date(2026, 9, 3)
    assert len(dash.read_rows("Daily")) == 1
    # SHEET_TRANSACTIONS_DAYS=0: no tab.
    res = dash.apply(DashboardUpdate(keep_transactions=False))
    assert "Transactions" not in load_workbook(dash.path).sheetnames
    assert load_workbook(dash.path).sheetnames[:2] == ["Daily", "Monthly"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=6))
def test_pieces_join_into_one_stream_with_the_crc_of_the_whole(pieces: list[bytes]) -> None:
    parts = [deflate_part(p) for p in pieces[:-1]] + [deflate_part(pieces[-1], last=True)]
    whole = joined(parts)
    raw = b"".join(pieces)
    assert zlib.decompress(whole.data, -15) == raw
    assert whole.crc == zlib.crc32(raw) and whole.size == len(raw)
    assert crc32_combine(
        zlib.crc32(pieces[0]), zlib.crc32(raw[len(pieces[0]) :]), len(raw) - len(pieces[0])
    ) == zlib.crc32(raw)
    out = io.BytesIO()
    write_zip(out, [("a.bin", whole)])
    with zipfile.ZipFile(out) as z:
        assert z.read("a.bin") == raw


def test_a_trim_is_said_once_and_shown_by_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from zoneinfo import ZoneInfo

    from bot import status
    from bot.jobs.context import Context
    from bot.jobs.projection import apply_to_dashboard
    from bot.ledger import Ledger

    with Ledger.open(tmp_path / "state.sqlite") as ledger:
        ctx = Context(
            ledger=ledger,
            dashboard=WorkbookDashboard(tmp_path / "dashboard.xlsx", row_limit=1 + 25),
            source=None,
            tz=ZoneInfo("UTC"),
            now=datetime(2026, 10, 1, tzinfo=UTC),
        )
        assert status.collect(ledger, "UTC")["dashboard_trimmed"] is None
        with caplog.at_level(logging.INFO, logger="bot.jobs.projection"):
            for d in range(4):  # 10 a day: the third and the fourth day trim the oldest
                rows = _days(date(2026, 9, 1) + timedelta(days=d), 1, 10, start=100 * d)
                apply_to_dashboard(ctx, DashboardUpdate(transactions=rows))
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "2026-09-02" in warnings[0].getMessage()
        report = status.collect(ledger, "UTC")
        assert "2026-09-03" in report["dashboard_trimmed"]  # the latest trim
        assert (
            "1,048,576" not in report["dashboard_trimmed"]
            and "26 rows" in report["dashboard_trimmed"]
        )
        assert "dashboard: Transactions keeps the days from 2026-09-03" in status.render_text(
            report
        )


def test_sheet_transactions_days_keeps_the_recent_days(cli: Any, sandbox: Any) -> None:
    from tests.conftest import days_ago

    data = Path(cli.env["DATA_DIR"])
    env = {"SHEET_TRANSACTIONS_DAYS": "3"}  # today and the two days before
    run = cli("backfill", "--since", days_ago(10).isoformat(), env=env)
    assert run.exit_code == 0, run.stderr
    wb = load_workbook(data / "dashboard.xlsx")
    kept = {r[1].date() for r in wb["Transactions"].iter_rows(min_row=2, values_only=True)}
    assert kept and kept <= {days_ago(2), days_ago(1)}
    daily = {r[0].date() for r in wb["Daily"].iter_rows(min_row=2, values_only=True)}
    assert min(daily) == days_ago(10)  # Daily is never trimmed
    run = cli("daily", env={"SHEET_TRANSACTIONS_DAYS": "0"})
    assert run.exit_code == 0, run.stderr
    wb = load_workbook(data / "dashboard.xlsx")
    assert "Transactions" not in wb.sheetnames and len(list(wb["Daily"].iter_rows())) > 10


def test_a_workbook_of_the_previous_version_is_rebuilt_once_then_fast(tmp_path: Path) -> None:
    import hashlib
    import json

    dash = WorkbookDashboard(tmp_path / "dashboard.xlsx")
    dash.apply(STEPS[0])
    dash.cache_path.unlink()  # as the previous version left it: a snapshot, no cache
    digest = hashlib.sha256(dash.path.read_bytes()).hexdigest()
    old = tmp_path / ".dashboard.xlsx.snapshot"
    old.write_text(json.dumps({"format": 4, "sha256": digest, "formats": [], "tabs": {}}))
    res = dash.apply(STEPS[1])
    assert res.created == ALL_TABS  # the caller refills from the ledger
    assert dash.cache_path.exists() and not old.exists()
    assert dash.apply(DashboardUpdate()).created == ()  # fast from now on
