"""The Google Sheet dashboard as the account grows: the key index, trimming, the cell limit and
body sizes, through real gspread + google-auth over HTTP against the fake Sheets API.

What a run costs is read off the fake's record of each request (its bytes both ways and the
ranges it read); what the sheet holds is read cell by cell. A founder's edits go through plain
gspread, as they would through the Sheets UI.
"""

from __future__ import annotations

import itertools
import random
import re
import shutil
import stat
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.dashboard.base import (
    TRANSACTION_COLUMNS,
    DailyRow,
    DashboardUpdate,
    MonthlyRow,
    TransactionRow,
)
from bot.dashboard.sheets import GoogleSheetDashboard
from bot.errors import ServiceError
from bot.pnl import PnlLines
from tests.fakes.sheets import (
    FakeSheetsServer,
    RecordedRequest,
    gspread_client,
    to_serial,
    write_service_account_key,
)

SID = "1ScaleTestSheet0123456789abcdefghijklmnopqrst"
PARIS = ZoneInfo("Europe/Paris")
DAY0 = date(2024, 1, 1)
PER_DAY = 100


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeSheetsServer]:
    with FakeSheetsServer() as fake:
        fake.create_spreadsheet(SID, "Revenue", sheets=["Sheet1"])
        yield fake
        assert fake.violations == []


@pytest.fixture
def key_file(server: FakeSheetsServer, tmp_path: Path) -> Path:
    path = tmp_path / "service-account.json"
    write_service_account_key(path, token_uri=server.token_uri)
    return path


@pytest.fixture
def index_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / ".sheet-index.sqlite"


def make_dashboard(
    server: FakeSheetsServer, key_file: Path, index: Path | None, **kwargs: Any
) -> GoogleSheetDashboard:
    return GoogleSheetDashboard(
        spreadsheet_id=SID,
        credentials_file=key_file,
        api_url=server.url,
        timezone="Europe/Paris",
        write_interval=0.0,
        sleep=lambda _: None,
        rng=random.Random(3),
        index_path=index,
        **kwargs,
    )


# --- rows --------------------------------------------------------------------------------------


def txn(
    n: int, *, amount: int | None = None, per_day: int = PER_DAY, **fields: Any
) -> TransactionRow:
    """Transaction ``n``: ``per_day`` of them a day from DAY0, in order."""
    created = datetime.combine(DAY0, datetime.min.time(), tzinfo=PARIS) + timedelta(
        days=n // per_day, minutes=10 * (n % per_day)
    )
    value = 1_000 + n if amount is None else amount
    row = {
        "id": f"txn_{n:08d}",
        "created": created,
        "available_on": created + timedelta(days=2),
        "type": "charge",
        "reporting_category": "charge",
        "currency": "usd",
        "amount": value,
        "fee": -30,
        "net": value - 30,
        "status": "available",
        "description": f"Order {n}",
        "source": f"ch_{n:08d}",
    } | fields
    return TransactionRow(**row)


def day_txns(day: int, per_day: int = PER_DAY) -> list[TransactionRow]:
    return [txn(n, per_day=per_day) for n in range(day * per_day, (day + 1) * per_day)]


def daily(day: int) -> DailyRow:
    return DailyRow(
        date=DAY0 + timedelta(days=day),
        currency="usd",
        lines=PnlLines(gross_revenue=10_000, stripe_fees=-300),
        charges=3,
        refunds_count=0,
        transactions=3,
        updated_at=datetime(2024, 6, 1, 6, tzinfo=PARIS),
    )


def ids(server: FakeSheetsServer) -> list[str]:
    return [row[0] for row in server.grid(SID, "Transactions")[1:]]


def tx_rows(server: FakeSheetsServer) -> dict[str, list[Any]]:
    rows = server.grid(SID, "Transactions")[1:]
    return {row[0]: row for row in rows}


def kinds(server: FakeSheetsServer) -> list[str]:
    return [r.kind for r in server.requests]


_A1 = re.compile(r"![A-Z]+(\d+):[A-Z]+(\d+)$")


def rows_read(request: RecordedRequest) -> list[int]:
    """How many rows each range of a values.batchGet spans."""
    spans = []
    for text in request.query["ranges"]:
        found = _A1.search(text)
        assert found, text
        spans.append(int(found.group(2)) - int(found.group(1)) + 1)
    return spans


def full_reads(server: FakeSheetsServer) -> list[int]:
    """The longest range of each values.batchGet (a full key read spans the whole tab)."""
    return [max(rows_read(r)) for r in server.requests if r.kind == "values.batchGet"]


def seed(dashboard: GoogleSheetDashboard, days: int, per_day: int = PER_DAY) -> None:
    dashboard.apply(
        DashboardUpdate(
            daily=[daily(d) for d in range(days)],
            transactions=[t for d in range(days) for t in day_txns(d, per_day)],
        )
    )


# --- (a) a daily run costs the day, not the tab ------------------------------------------------


DAYS = 50


def new_day(day: int, before: int) -> list[TransactionRow]:
    """The day's 100 transactions, numbered after the ``before`` of the days before it."""
    return [txn(before + i, per_day=10**9) for i in range(PER_DAY)]


def daily_cost(tmp_path: Path, total: int) -> tuple[list[RecordedRequest], int]:
    """The requests of one new day's apply (a Daily row, 100 transactions) on a Transactions
    tab of ``total`` rows over 50 days (with an index), and the bytes the same apply receives
    without one."""
    with FakeSheetsServer() as fake:
        fake.create_spreadsheet(SID, "Revenue", sheets=["Sheet1"])
        key = tmp_path / f"key-{total}.json"
        write_service_account_key(key, token_uri=fake.token_uri)
        dashboard = make_dashboard(fake, key, tmp_path / f"index-{total}.sqlite")
        seed(dashboard, DAYS, per_day=total // DAYS)
        today = DashboardUpdate(daily=[daily(DAYS)], transactions=new_day(DAYS, total))
        fake.reset_counts()
        dashboard.apply(today)
        with_index = list(fake.requests)
        assert len(ids(fake)) == len(set(ids(fake))) == total + PER_DAY

        tomorrow = DashboardUpdate(
            daily=[daily(DAYS + 1)], transactions=new_day(DAYS + 1, total + PER_DAY)
        )
        fake.reset_counts()
        make_dashboard(fake, key, None).apply(tomorrow)
        _, received = fake.traffic_bytes()
        assert fake.violations == []
        return with_index, received


def test_a_daily_run_with_the_index_sends_and_receives_what_the_day_costs(tmp_path: Path) -> None:
    small, small_without = daily_cost(tmp_path, 1_000)
    large, large_without = daily_cost(tmp_path, 10_000)

    for run in (small, large):
        assert [r.kind for r in run] == [
            "spreadsheets.get",
            "values.batchGet",
            "spreadsheets.batchUpdate",
        ]
        # The check reads single rows, never a key column.
        [check] = [r for r in run if r.kind == "values.batchGet"]
        assert max(rows_read(check)) <= 2
    sent = [sum(r.request_bytes for r in run) for run in (small, large)]
    received = [sum(r.response_bytes for r in run) for run in (small, large)]
    # Ten times the tab, the same traffic but for a few digits of row numbers.
    assert abs(sent[1] - sent[0]) < 0.01 * sent[0], sent
    assert abs(received[1] - received[0]) < 100, received
    assert received[1] < 3_000
    # What the index saves: without it the read grows with the tab (about 15 bytes a row).
    assert large_without > 10 * 1_000 * 15 > small_without


def test_the_index_file_is_private_and_a_damaged_one_is_rebuilt(
    server: FakeSheetsServer, key_file: Path, index_path: Path
) -> None:
    dashboard = make_dashboard(server, key_file, index_path)
    seed(dashboard, 3)
    assert stat.S_IMODE(index_path.stat().st_mode) == 0o600

    index_path.write_bytes(b"not a database" * 100)
    server.reset_counts()
    dashboard.apply(DashboardUpdate(transactions=[txn(5, amount=7), *day_txns(3)]))

    assert full_reads(server) == [300]  # no usable index: the whole key column, once
    assert len(ids(server)) == len(set(ids(server))) == 400
    assert tx_rows(server)["txn_00000005"][6] == 0.07
    server.reset_counts()
    dashboard.apply(DashboardUpdate(transactions=day_txns(4)))
    assert max(full_reads(server)) <= 2  # rebuilt: the next run checks a few rows again
    assert stat.S_IMODE(index_path.stat().st_mode) == 0o600


# --- (b) a founder changed the rows ----------------------------------------------------------


def founder_sorts(server: FakeSheetsServer) -> None:
    sh = gspread_client(server).open_by_key(SID)
    sheet_id = sh.worksheet("Transactions").id
    sort = {
        "range": {"sheetId": sheet_id, "startRowIndex": 1},
        "sortSpecs": [{"dimensionIndex": 6, "sortOrder": "DESCENDING"}],
    }
    sh.batch_update({"requests": [{"sortRange": sort}]})


def founder_inserts(server: FakeSheetsServer) -> None:
    """Insert > Row above, then type in it (the fake's values.append, which gspread's
    insert_row uses, does not find the inserted row as Google does)."""
    ws = gspread_client(server).open_by_key(SID).worksheet("Transactions")
    rows = {"sheetId": ws.id, "dimension": "ROWS", "startIndex": 119, "endIndex": 120}
    ws.spreadsheet.batch_update({"requests": [{"insertDimension": {"range": rows}}]})
    ws.update([["my note"]], "A120")


def founder_deletes(server: FakeSheetsServer) -> None:
    ws = gspread_client(server).open_by_key(SID).worksheet("Transactions")
    ws.delete_rows(150, 152)


def founder_moves_one(server: FakeSheetsServer) -> None:
    """A row cut from near the end and pasted near the top: the first and last rows, and the
    row count, are as before; only the rows in between moved by one."""
    ws = gspread_client(server).open_by_key(SID).worksheet("Transactions")
    row = ws.row_values(290, value_render_option="UNFORMATTED_VALUE")
    ws.delete_rows(290)
    rows = {"sheetId": ws.id, "dimension": "ROWS", "startIndex": 9, "endIndex": 10}
    ws.spreadsheet.batch_update({"requests": [{"insertDimension": {"range": rows}}]})
    ws.update([row], "A10")


@pytest.mark.parametrize(
    "edit",
    [founder_sorts, founder_inserts, founder_deletes, founder_moves_one],
    ids=["sort", "insert", "delete", "move"],
)
def test_a_founders_edit_is_noticed_and_every_key_stays_right(
    server: FakeSheetsServer, key_file: Path, index_path: Path, edit: Any
) -> None:
    dashboard = make_dashboard(server, key_file, index_path)
    seed(dashboard, 3)  # 300 rows
    deleted: set[str] = set()
    edit(server)
    if edit is founder_deletes:
        deleted = {f"txn_{n:08d}" for n in range(148, 151)}
        assert deleted.isdisjoint(ids(server))
    # Late changes to rows spread over the tab, and a new day.
    changed = [txn(n, amount=99_900 + n) for n in (5, 150, 250, 289)]
    server.reset_counts()
    result = dashboard.apply(DashboardUpdate(transactions=[*changed, *day_txns(3)]))

    assert max(full_reads(server)) >= 297  # the check failed and the keys were read in full
    got = tx_rows(server)
    found = [i for i in ids(server) if i != "my note"]
    assert len(found) == len(set(found))  # no duplicate
    expected = {f"txn_{n:08d}" for n in range(400)} - (deleted - {t.id for t in changed})
    assert set(found) == expected  # no row lost (a deleted one comes back when it changes)
    for t in changed:
        assert got[t.id][6] == t.amount / 100
    assert result.inserted["Transactions"] + result.updated["Transactions"] == 104
    # The index was rebuilt from that read: the next run checks a few rows, and is right.
    server.reset_counts()
    dashboard.apply(DashboardUpdate(transactions=[txn(7, amount=123_400), *day_txns(4)]))
    assert max(full_reads(server)) <= 2
    assert tx_rows(server)["txn_00000007"][6] == 1234
    found = [i for i in ids(server) if i != "my note"]
    assert len(found) == len(set(found)) == len(expected) + PER_DAY


def test_a_tab_deleted_and_created_again_is_not_mistaken_for_the_indexed_one(
    server: FakeSheetsServer, key_file: Path, index_path: Path
) -> None:
    dashboard = make_dashboard(server, key_file, index_path)
    seed(dashboard, 2)
    sh = gspread_client(server).open_by_key(SID)
    sh.del_worksheet(sh.worksheet("Transactions"))
    sh.add_worksheet("Transactions", rows=50, cols=12)  # the same name, another sheet id

    result = dashboard.apply(DashboardUpdate(transactions=day_txns(2)))

    assert result.inserted["Transactions"] == PER_DAY
    assert ids(server)[:PER_DAY] == [t.id for t in day_txns(2)]
    server.reset_counts()
    dashboard.apply(DashboardUpdate(transactions=[txn(205, amount=5), *day_txns(3)]))
    assert max(full_reads(server)) <= 2
    assert len(ids(server)) == len(set(ids(server))) == 2 * PER_DAY


# --- (c) a write that failed or was killed --------------------------------------------------------


def test_a_write_failing_half_way_then_a_rerun_loses_and_duplicates_nothing(
    server: FakeSheetsServer, key_file: Path, index_path: Path
) -> None:
    dashboard = make_dashboard(server, key_file, index_path)
    seed(dashboard, 10)  # 1,000 rows
    # A backfill of 20,000 rows (several bodies) and late changes; its second body fails.
    big = [txn(n) for n in range(1_000, 21_000)]
    changed = [txn(3, amount=777), txn(999, amount=888)]
    update = DashboardUpdate(transactions=[*changed, *big])
    server.inject(400, kind="spreadsheets.batchUpdate", skip=1)
    with pytest.raises(ServiceError):
        dashboard.apply(update)
    assert 1_000 < len(ids(server)) < 21_000  # the first body was written

    server.reset_counts()
    result = dashboard.apply(update)

    assert max(full_reads(server)) > 1_000  # the index, of the sheet before, was rejected
    assert sorted(ids(server)) == [f"txn_{n:08d}" for n in range(21_000)]
    assert tx_rows(server)["txn_00000003"][6] == 7.77
    assert tx_rows(server)["txn_00000999"][6] == 8.88
    assert result.inserted["Transactions"] + result.updated["Transactions"] == 20_002


@pytest.mark.parametrize("trim", [False, True], ids=["append", "trim-and-append"])
def test_a_run_killed_after_its_write_before_the_index_then_a_rerun(
    server: FakeSheetsServer, key_file: Path, index_path: Path, tmp_path: Path, trim: bool
) -> None:
    """The index is saved after the write: a process killed in between leaves the index of the
    sheet before the write, here put back by hand."""
    dashboard = make_dashboard(server, key_file, index_path)
    seed(dashboard, 5)
    kept = tmp_path / "index-before.sqlite"
    shutil.copy(index_path, kept)
    first = DAY0 + timedelta(days=2) if trim else None
    dashboard.apply(DashboardUpdate(transactions=day_txns(5), transactions_from=first))
    shutil.copy(kept, index_path)

    server.reset_counts()
    dashboard.apply(
        DashboardUpdate(transactions=[txn(450, amount=1), *day_txns(6)], transactions_from=first)
    )

    assert max(full_reads(server)) > 2  # the stale index was rejected
    start = 200 if trim else 0
    assert sorted(ids(server)) == [f"txn_{n:08d}" for n in range(start, 700)]
    assert tx_rows(server)["txn_00000450"][6] == 0.01


# --- (d) Transactions keeps the days from transactions_from on ---------------------------------


@pytest.mark.parametrize("order", ["chronological", "shuffled"])
@pytest.mark.parametrize("indexed", [True, False], ids=["index", "no-index"])
def test_transactions_from_removes_the_older_days(
    server: FakeSheetsServer, key_file: Path, index_path: Path, order: str, indexed: bool
) -> None:
    dashboard = make_dashboard(server, key_file, index_path if indexed else None)
    rows = [t for d in range(10) for t in day_txns(d, per_day=30)]
    if order == "shuffled":
        random.Random(5).shuffle(rows)
    dashboard.apply(DashboardUpdate(transactions=rows))
    first = DAY0 + timedelta(days=4)
    old_and_new = [txn(5, per_day=30), *day_txns(10, per_day=30)]  # day 0 is not written

    result = dashboard.apply(DashboardUpdate(transactions=old_and_new, transactions_from=first))

    expected = {t.id for t in rows if t.created.date() >= first} | {t.id for t in day_txns(10, 30)}
    assert sorted(ids(server)) == sorted(expected)
    grid = server.sheet_properties(SID, "Transactions")["gridProperties"]
    assert grid["rowCount"] == 1 + len(expected)  # the removed rows are gone, not emptied
    assert result.trimmed is None  # what was asked for, not a limit
    assert result.inserted["Transactions"] == 30
    removals = [r for r in server.requests if r.kind == "spreadsheets.batchUpdate"]
    assert removals
    # The index follows the rows up: a change to a kept row lands on it, without a full read.
    server.reset_counts()
    late = txn(200, per_day=30, amount=4_200)  # day 6
    dashboard.apply(DashboardUpdate(transactions=[late], transactions_from=first))
    assert tx_rows(server)[late.id][6] == 42
    assert sorted(ids(server)) == sorted(expected)
    if indexed:
        assert max(full_reads(server)) <= 2


# --- (e) the cell limit -----------------------------------------------------------------------


@pytest.mark.parametrize("indexed", [True, False], ids=["index", "no-index"])
def test_the_cell_limit_trims_the_oldest_transaction_days_and_says_so(
    key_file: Path, index_path: Path, indexed: bool
) -> None:
    """Issue #15: a spreadsheet of 20,000 cells; 55 days written at once, then a day (a Daily
    row and 20 transactions) each morning until Transactions no longer fits whole."""
    limit = 20_000
    with FakeSheetsServer(max_cells=limit) as fake:
        fake.create_spreadsheet(SID, "Revenue", sheets=["Sheet1"])
        write_service_account_key(key_file, token_uri=fake.token_uri)
        gspread_client(fake).open_by_key(SID).sheet1.resize(rows=20, cols=10)  # a founder's tab
        dashboard = make_dashboard(
            fake, key_file, index_path if indexed else None, cell_limit=limit
        )
        month = MonthlyRow(
            "2024-01", "usd", PnlLines(gross_revenue=1), None, None, None, True, "ledger"
        )
        first = dashboard.apply(
            DashboardUpdate(
                daily=[daily(d) for d in range(55)],
                monthly=[month],
                transactions=[t for d in range(55) for t in day_txns(d, per_day=20)],
            )
        )
        assert first.trimmed is None
        messages: dict[int, str | None] = {}
        for day in range(55, 80):
            result = dashboard.apply(
                DashboardUpdate(daily=[daily(day)], transactions=day_txns(day, per_day=20))
            )
            messages[day] = result.trimmed
            book = fake.spreadsheets[SID]
            assert book.total_cells() <= limit

        trims = [day for day, text in messages.items() if text]
        assert trims, "the limit was never reached"
        tx = fake.grid(SID, "Transactions")[1:]
        first_kept = min(datetime(1899, 12, 30) + timedelta(days=row[1]) for row in tx).date()
        assert messages[trims[-1]] == (
            f"Transactions keeps the days from {first_kept.isoformat()} on: "
            "Google Sheets' limit of 20,000 cells per spreadsheet"
        )
        # Whole days: every day from the first kept one is there, complete.
        kept_days = (DAY0 + timedelta(days=79) - first_kept).days + 1
        assert sorted(row[0] for row in tx) == sorted(
            t.id for d in range(80 - kept_days, 80) for t in day_txns(d, per_day=20)
        )
        # With headroom, not every morning: the day after a trim writes without one.
        assert all(b - a > 1 for a, b in itertools.pairwise(trims))
        assert not messages[trims[0] + 1]
        # Daily and Monthly are never trimmed; the founder's tab is left alone.
        assert [row[0] for row in fake.grid(SID, "Daily")[1:]] == [
            to_serial(DAY0 + timedelta(days=d)) for d in range(80)
        ]
        assert [row[0] for row in fake.grid(SID, "Monthly")[1:]] == ["2024-01"]
        assert fake.sheet_properties(SID, "Sheet1")["gridProperties"]["rowCount"] == 20
        assert book.total_cells() > 0.85 * limit  # trimmed to fit, not emptied
        assert fake.violations == []


def test_a_backfill_bigger_than_the_limit_keeps_the_newest_days(
    key_file: Path, index_path: Path
) -> None:
    limit = 30_000
    with FakeSheetsServer(max_cells=limit) as fake:
        fake.create_spreadsheet(SID, "Revenue", sheets=["Sheet1"])
        write_service_account_key(key_file, token_uri=fake.token_uri)
        gspread_client(fake).open_by_key(SID).sheet1.resize(rows=20, cols=10)
        dashboard = make_dashboard(fake, key_file, index_path, cell_limit=limit)

        result = dashboard.apply(
            DashboardUpdate(
                daily=[daily(d) for d in range(30)],
                transactions=[t for d in range(30) for t in day_txns(d, per_day=100)],
            )
        )

        assert fake.spreadsheets[SID].total_cells() <= limit
        assert result.trimmed is not None and "limit of 30,000 cells" in result.trimmed
        tx_ids = ids(fake)
        assert tx_ids and tx_ids[-1] == "txn_00002999"
        assert len(tx_ids) % 100 == 0  # whole days
        assert len(fake.grid(SID, "Daily")) == 31
        assert fake.violations == []


def test_when_daily_and_monthly_alone_do_not_fit_the_run_fails_in_one_line(
    key_file: Path, index_path: Path
) -> None:
    with FakeSheetsServer(max_cells=3_000) as fake:
        fake.create_spreadsheet(SID, "Revenue", sheets=["Sheet1"])
        write_service_account_key(key_file, token_uri=fake.token_uri)
        gspread_client(fake).open_by_key(SID).sheet1.resize(rows=20, cols=10)
        dashboard = make_dashboard(fake, key_file, index_path, cell_limit=3_000)

        with pytest.raises(ServiceError) as info:
            dashboard.apply(DashboardUpdate(daily=[daily(d) for d in range(200)]))

        message = str(info.value)
        assert "\n" not in message and "limit of 3,000 cells" in message
        assert fake.sheet_titles(SID) == ["Sheet1"]  # nothing was written


# --- (f) a dashboard without Transactions -------------------------------------------------------


def test_keep_transactions_false_deletes_the_tab_and_writes_none(
    server: FakeSheetsServer, key_file: Path, index_path: Path
) -> None:
    dashboard = make_dashboard(server, key_file, index_path)
    seed(dashboard, 2)
    assert "Transactions" in server.sheet_titles(SID)

    result = dashboard.apply(
        DashboardUpdate(daily=[daily(2)], transactions=day_txns(2), keep_transactions=False)
    )

    assert "Transactions" not in server.sheet_titles(SID)
    assert result.created == () and result.inserted["Daily"] == 1
    server.reset_counts()
    again = dashboard.apply(DashboardUpdate(daily=[daily(3)], keep_transactions=False))
    assert "Transactions" not in server.sheet_titles(SID) and again.created == ()
    assert kinds(server) == ["spreadsheets.get", "values.batchGet", "spreadsheets.batchUpdate"]
    # Kept again: a new tab, which the caller refills from the ledger.
    back = dashboard.apply(DashboardUpdate(transactions=day_txns(3)))
    assert back.created == ("Transactions",)
    assert ids(server) == [t.id for t in day_txns(3)]


def test_a_new_transactions_tab_has_only_its_own_columns(
    server: FakeSheetsServer, key_file: Path
) -> None:
    make_dashboard(server, key_file, None).apply(DashboardUpdate(transactions=day_txns(0)))

    grid = server.sheet_properties(SID, "Transactions")["gridProperties"]
    assert grid["columnCount"] == len(TRANSACTION_COLUMNS) == 12
    assert grid["rowCount"] == 1 + PER_DAY
    assert server.sheet_properties(SID, "Daily")["gridProperties"]["rowCount"] == 2


# --- (g) request bodies -------------------------------------------------------------------------


def test_a_huge_update_is_split_into_bodies_of_at_most_two_megabytes(
    server: FakeSheetsServer, key_file: Path, index_path: Path
) -> None:
    dashboard = make_dashboard(server, key_file, index_path)
    dashboard.apply(DashboardUpdate(transactions=[txn(n) for n in range(50_000)]))

    bodies = [r.body_bytes for r in server.requests if r.kind == "spreadsheets.batchUpdate"]
    assert len(bodies) > 5 and max(bodies) <= 2_000_000
    assert sum(bodies) / len(bodies) > 1_000_000  # full bodies, not one per subrequest
    assert len(ids(server)) == 50_000 and ids(server)[-1] == "txn_00049999"


def test_a_row_longer_than_a_body_is_split_by_columns(
    server: FakeSheetsServer, key_file: Path
) -> None:
    emoji = "\U0001f600" * 50_000  # 600,000 bytes as JSON: four such cells are one row
    long = txn(1, type=emoji, reporting_category=emoji, description=emoji, source="s" + emoji[1:])
    make_dashboard(server, key_file, None).apply(
        DashboardUpdate(transactions=[txn(0), long, txn(2)])
    )

    bodies = [r.body_bytes for r in server.requests if r.kind == "spreadsheets.batchUpdate"]
    assert len(bodies) >= 2 and max(bodies) <= 2_000_000
    rows = tx_rows(server)
    assert rows["txn_00000001"][3] == rows["txn_00000001"][4] == emoji
    assert rows["txn_00000001"][10] == emoji
    assert rows["txn_00000001"][11] == "s" + emoji[1:]
    assert list(rows) == ["txn_00000000", "txn_00000001", "txn_00000002"]
