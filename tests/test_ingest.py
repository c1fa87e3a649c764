"""An itemized activity report into the ledger (``backfill --via report``): bot/ingest.py.

Every way of loading (the column-wise fast path or the row-by-row one, in this process or split
with child processes, upserts or a bulk load) must store exactly the same rows.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.jobs import ingest
from bot.ledger import SCHEMA_VERSION, Ledger
from bot.reports import CsvError

BASE = 1_790_000_000 - 1_790_000_000 % 86_400  # a UTC midnight in 2026
NOW = datetime(2026, 3, 2, tzinfo=UTC)

ITEMIZED = (
    "balance_transaction_id", "created_utc", "created", "available_on_utc", "available_on",
    "currency", "gross", "fee", "net", "reporting_category", "source_id", "description",
)  # fmt: skip


def itemized_file(path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    header = header or list(ITEMIZED)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\r\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def row(i: int, *, created: str = "2026-03-01 10:00:00", currency: str = "usd", gross: str = "49.00",
        net: str = "47.28", category: str = "charge", description: str = "Invoice 1") -> list[str]:  # fmt: skip
    return [f"txn_{i:024d}", created, created, "2026-03-03 00:00:00", "2026-03-03 00:00:00", currency,
            gross, "x", net, category, f"ch_{i}", description]  # fmt: skip


def tid(i: int) -> str:
    return f"txn_{i:024d}"


def stored_rows(ledger: Ledger) -> list[tuple[Any, ...]]:
    """Every column of every row but the rowid and the two times of the ingest."""
    with ledger.transaction() as conn:
        return conn.execute(
            "SELECT id, created, available_on, currency, amount, fee, net, reporting_category, "
            "type, status, description, source, livemode, raw FROM transactions ORDER BY id"
        ).fetchall()


def cells(raw: str) -> list[str]:
    """A report row's raw line, read back as CSV."""
    return next(csv.reader(io.StringIO(raw, newline="")))


@pytest.mark.parametrize("parallel", [False, True], ids=["in-process", "children"])
def test_ingest_reads_every_kind_of_row(tmp_path: Path, parallel: bool) -> None:
    rows = [
        row(1),
        row(2, description='Order "A", with commas, quotes\nand a new line'),
        row(3, currency="jpy", gross="4980", net="4801", created="2026-03-01 23:59:59"),
        row(4, currency="kwd", gross="12.340", net="12.000"),
        row(5, gross="-12.50", net="-12.50", category="refund", description="Déjà vu ✓"),
        row(6, currency="USD", gross="5", net="4.5"),  # fewer decimals, upper case: slow path
        row(7, created="2026-03-01T10:00:00Z", description="back\\slash\ttab"),
        row(8, gross="-0.50", net="-0.75", category="dispute"),
    ]
    path = itemized_file(tmp_path / "it.csv", rows)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\r\n")  # a trailing blank line
    ledger = Ledger.open(tmp_path / "state.sqlite")
    stats = ingest.ingest_itemized(
        ledger, path, livemode=False, now=NOW, parallel=parallel, block_bytes=300
    )
    assert (stats.rows, stats.inserted, stats.changed) == (8, 8, 0)
    got = {t.id: t for t in ledger.transactions_between(0, 2**40)}
    t1 = got[tid(1)]
    assert (t1.amount, t1.fee, t1.net, t1.currency, t1.type, t1.status) == (
        4900,
        172,
        4728,
        "usd",
        "",
        "pending",
    )
    assert t1.created == int(datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp())
    assert got[tid(2)].description == 'Order "A", with commas, quotes\nand a new line'
    t3 = got[tid(3)]
    assert (t3.amount, t3.fee, t3.net, t3.currency) == (4980, 179, 4801, "jpy")
    assert got[tid(4)].amount == 12340 and got[tid(4)].fee == 340
    assert got[tid(5)].description == "Déjà vu ✓"
    t6 = got[tid(6)]
    assert (t6.amount, t6.net, t6.currency) == (500, 450, "usd")
    assert got[tid(7)].created == t1.created
    t8 = got[tid(8)]
    assert (t8.amount, t8.fee, t8.net, t8.reporting_category) == (-50, 25, -75, "dispute")
    # A report row keeps its record, as Stripe wrote it, in raw; the API's objects are apart.
    raws = {r[0]: r[13] for r in stored_rows(ledger)}
    assert [cells(raws[tid(i + 1)]) for i in range(8)] == rows
    assert raws[tid(1)] == ",".join(rows[0])
    assert ledger.raw_transactions() == []
    # Ingesting the same file again changes nothing.
    again = ingest.ingest_itemized(ledger, path, livemode=False, now=NOW, parallel=parallel)
    assert (again.rows, again.inserted, again.changed) == (8, 0, 0)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (row(1, gross="12.5.0"), "not an amount"),
        (row(1, net="47.28x"), "not an amount"),
        (row(1, currency="zz"), "not a currency"),
        (row(1, created="yesterday"), "not a UTC timestamp"),
        (row(1)[:5], "5 cells for 12 columns"),
    ],
    ids=["amount", "suffix", "currency", "timestamp", "short-row"],
)
@pytest.mark.parametrize("parallel", [False, True], ids=["in-process", "children"])
def test_a_bad_row_is_refused_with_its_number_and_nothing_is_stored(
    tmp_path: Path, bad: list[str], message: str, parallel: bool
) -> None:
    # Many good rows first, so that with children the bad one is in a child's part.
    rows = [row(10 + i, description='a "quoted"\nline' if i == 3 else "x") for i in range(40)]
    path = itemized_file(tmp_path / "it.csv", [*rows, bad, row(99)])
    ledger = Ledger.open(tmp_path / "state.sqlite")
    with pytest.raises(CsvError, match=message) as e:
        ingest.ingest_itemized(
            ledger, path, livemode=False, now=NOW, parallel=parallel, block_bytes=700
        )
    assert "row 42:" in str(e.value)  # the header is row 1; the quoted cell's two lines are one
    assert ledger.transaction_count() == 0  # one transaction for the whole file
    assert not list(tmp_path.glob(".ingest-*"))  # the children's scratch files are gone


def test_a_file_that_is_not_utf8_is_refused_with_the_row(tmp_path: Path) -> None:
    path = itemized_file(tmp_path / "it.csv", [row(1), row(2), row(3)])
    path.write_bytes(path.read_bytes().replace(b"ch_3", b"ch_\xff3"))
    with pytest.raises(CsvError, match=r"row 4: not UTF-8 text"):
        ingest.ingest_itemized(Ledger.open(tmp_path / "s.sqlite"), path, livemode=False, now=NOW)


def test_a_file_with_only_a_header_stores_nothing(tmp_path: Path) -> None:
    path = itemized_file(tmp_path / "it.csv", [])
    for parallel in (False, True):
        ledger = Ledger.open(tmp_path / f"{parallel}.sqlite")
        stats = ingest.ingest_itemized(ledger, path, livemode=False, now=NOW, parallel=parallel)
        assert (stats.rows, stats.inserted, ledger.transaction_count()) == (0, 0, 0)


def test_a_bulk_ingest_leaves_the_ledger_in_wal_mode_even_with_a_reader(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "state.sqlite")
    path = itemized_file(tmp_path / "it.csv", [row(i) for i in range(50)])
    ingest.ingest_itemized(ledger, path, livemode=False, now=NOW)  # alone: rollback journal
    mode = sqlite3.connect(tmp_path / "state.sqlite").execute("PRAGMA journal_mode").fetchone()
    assert mode == ("wal",)
    reader = sqlite3.connect(tmp_path / "state.sqlite")  # `revbot status` looking meanwhile
    assert reader.execute("SELECT COUNT(*) FROM transactions").fetchone() == (50,)
    more = itemized_file(tmp_path / "more.csv", [row(i) for i in range(50, 80)])
    assert ingest.ingest_itemized(ledger, more, livemode=False, now=NOW).inserted == 30
    assert reader.execute("SELECT COUNT(*) FROM transactions").fetchone() == (80,)
    assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_file_without_a_needed_column_is_refused(tmp_path: Path) -> None:
    header = [c for c in ITEMIZED if c != "net"]
    path = itemized_file(tmp_path / "it.csv", [row(1)[:8] + row(1)[9:]], header=header)
    with pytest.raises(CsvError, match="no 'net' column"):
        ingest.ingest_itemized(
            Ledger.open(tmp_path / "state.sqlite"), path, livemode=False, now=NOW
        )


@pytest.mark.parametrize("bulk", [False, True], ids=["upserts", "bulk"])
def test_the_api_object_wins_over_a_report_row(tmp_path: Path, bulk: bool) -> None:
    ledger = Ledger.open(tmp_path / "state.sqlite")
    path = itemized_file(tmp_path / "it.csv", [row(1), row(2)])
    ingest.ingest_itemized(ledger, path, livemode=True, now=NOW, bulk=bulk)
    api: dict[str, Any] = {
        "id": tid(1), "object": "balance_transaction", "amount": 4900, "fee": 172,
        "net": 4728, "currency": "usd", "created": int(datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp()),
        "available_on": 0, "reporting_category": "charge", "type": "charge", "status": "available",
        "description": "Invoice 1", "source": "ch_1", "livemode": True,
    }  # fmt: skip
    with ledger.transaction() as conn:
        assert ledger.upsert_transactions(conn, [api]) == (0, 1)  # the API row replaces it
    again = ingest.ingest_itemized(ledger, path, livemode=True, now=NOW, bulk=bulk)
    assert (again.inserted, again.changed) == (0, 0)  # and a report never overwrites it
    got = {t.id: t for t in ledger.transactions_between(0, 2**40)}
    assert got[api["id"]].type == "charge" and got[api["id"]].status == "available"
    assert ledger.livemodes(0, 2**40) == {True}
    assert ledger.raw_transactions() == [api]


def test_ingest_memory_stays_bounded(tmp_path: Path) -> None:
    from bench import itemized_csv

    path = tmp_path / "it.csv"
    itemized_csv.write(path, rows=12_000, start=BASE)
    ledger = Ledger.open(tmp_path / "state.sqlite")
    tracemalloc.start()
    try:
        stats = ingest.ingest_itemized(
            ledger, path, livemode=False, now=NOW, block_bytes=64 * 1024, parallel=False
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.rows == 12_000 == ledger.transaction_count()
    # The file is 2 MB; all its rows at once would take ~12 MB of tuples, a block 0.5 MB.
    assert path.stat().st_size > 2 * 2**20
    assert peak < 2 * 2**20, peak


def tricky_rows() -> list[list[str]]:
    rows = [
        row(i, gross=f"{i}.{i % 100:02d}", net=f"{i - 1}.{(i * 7) % 100:02d}") for i in range(40)
    ]
    rows += [
        row(100, currency="jpy", gross="4980", net="4801"),
        row(101, currency="jpy", gross="-300", net="-300", category="refund"),
        row(102, currency="kwd", gross="12.340", net="12.000"),
        row(103, currency="kwd", gross="-0.005", net="-0.105"),
        row(104, gross="-0.50", net="-0.75", category="dispute"),
        row(105, gross="0.05", net="-0.25"),
        row(106, gross="-1234.56", net="-1234.56", category="refund"),
        row(107, gross="0.00", net="-0.30", category=""),
        row(108, gross="5", net="4.5", currency="USD"),  # the row path, inside a plain block
        row(109, gross="-0.00", net="00.10"),
        row(110, created="2026-03-01T10:00:00Z"),
        row(111, created="2026-03-01 23:59:59", currency="eur"),
        row(112, description='Order "A", with commas, quotes\nand a new line'),
        row(113, description="Déjà vu ✓"),
        row(114, description="tab\there, back\\slash"),
        row(115, description="a, b", gross="1.00", net="0.70"),
        row(116, description="100% off"),
        row(117, currency="jpy", gross="49.00", net="47.00"),  # not a JPY amount as written
        row(118, currency=" usd", gross="1_000.00", net=" 999.70"),
        row(119, gross="-.50", net="-.75", created="2026-03-01T10:00:00"),
        row(120, gross="١٢.٠٠", net="1.00"),  # Arabic-Indic digits: Decimal reads them
        row(121, created="2026-03-01 10:00:00+01:00"),
        row(122, description="lone\rreturn"),
    ]
    rows += [
        row(i, gross=f"-{i}.99", net=f"-{i + 1}.29", category="refund") for i in range(200, 230)
    ]
    return rows


@pytest.mark.parametrize("block_bytes", [1, 700, 1 << 20])
def test_every_way_of_loading_stores_the_same_rows(tmp_path: Path, block_bytes: int) -> None:
    rows = tricky_rows()
    path = itemized_file(tmp_path / "it.csv", rows)
    results = {}
    for name, options in {
        "slow": {"fast": False, "parallel": False, "bulk": False},
        "fast": {"fast": True, "parallel": False, "bulk": False},
        "fast-bulk": {"fast": True, "parallel": False, "bulk": True},
        "children": {"fast": True, "parallel": True, "bulk": False},
        "children-bulk": {"fast": True, "parallel": True, "bulk": True},
    }.items():
        ledger = Ledger.open(tmp_path / f"{name}.sqlite")
        stats = ingest.ingest_itemized(
            ledger, path, livemode=True, now=NOW, block_bytes=block_bytes, **options
        )
        assert (stats.rows, stats.inserted, stats.changed) == (len(rows), len(rows), 0), name
        results[name] = stored_rows(ledger)
    assert all(r == results["slow"] for r in results.values())
    got = {r[0]: r for r in results["fast"]}
    assert got[tid(103)][4:7] == (-5, 100, -105)
    assert got[tid(104)][4:7] == (-50, 25, -75)
    assert got[tid(109)][4:7] == (0, -10, 10)
    assert got[tid(107)][7] == "other"
    assert got[tid(120)][4] == 1200
    assert got[tid(121)][1] == got[tid(1)][1] - 3600
    assert cells(got[tid(114)][13])[11] == "tab\there, back\\slash"
    assert cells(got[tid(122)][13])[11] == "lone\rreturn"


def test_the_column_path_takes_plain_blocks_and_refuses_the_rest(tmp_path: Path) -> None:
    path = itemized_file(tmp_path / "it.csv", [row(1)])
    parser = ingest._Parser(path, list(ITEMIZED))
    plain = "\r\n".join(",".join(row(i)) for i in (3, 1, 2)) + "\r\n"
    columns = parser.fast(plain)
    assert columns is not None
    assert list(ingest.column_rows(columns)) == list(
        ingest._ledger_rows(plain, path=path, header=list(ITEMIZED))
    )
    tab = plain.replace("Invoice 1", "Invoice\t1")  # nothing to escape in a CSV line
    accented = plain.replace("ch_1", "ch_1\u00e9")
    for text in (tab, accented, plain.replace("\r\n", "\n")):
        assert parser.fast(text) is not None, text
    quoted = plain + '"' + '","'.join(row(9)) + '"\r\n'
    short = plain + ",".join(row(9)[:5]) + "\r\n"
    odd = [plain.replace("49.00", "49.001"), plain.replace("usd", "USD"), plain + "\r\n",
           plain.replace("10:00:00", "10:60:00"), plain.replace("Invoice 1", "Invoice\r1"),
           plain.replace("Invoice 1", "Invoice\x001"), plain.replace("49.00", "٤9.00"),
           plain.replace("2026-03-01 10:00:00", "2026-03-01 10:00:00 ", 1),
           plain.replace(",2026-03-01 10:00:00,", ",2026-03-0110:00:00,", 1)]  # fmt: skip
    for text in (quoted, short, *odd):
        assert parser.fast(text) is None, text


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    amounts=st.lists(
        st.tuples(
            st.sampled_from(["usd", "jpy", "kwd", "eur", "USD", "bif"]),
            st.integers(-(10**9), 10**9),
            st.sampled_from(["canonical", "plus", "zeros", "short", "long"]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_any_amount_is_read_the_same_by_both_paths(
    tmp_path_factory: pytest.TempPathFactory, amounts: list[tuple[str, int, str]]
) -> None:
    from bot.money import exponent

    def text(minor: int, ccy: str, style: str) -> str:
        exp = exponent(ccy)
        sign, digits = ("-" if minor < 0 else ""), str(abs(minor)).rjust(exp + 1, "0")
        whole, frac = (digits[:-exp], digits[-exp:]) if exp else (digits, "")
        body = f"{whole}.{frac}" if exp else whole
        return {
            "canonical": sign + body,
            "plus": (sign or "+") + body,
            "zeros": sign + "0" + body,
            "short": sign + (body[:-1] if exp else body),
            "long": sign + body + ("0" if exp else ".0"),
        }[style]

    tmp = tmp_path_factory.mktemp("amounts")
    rows = [row(i, currency=c, gross=text(m, c, s), net=text(m // 3, c, "canonical"))
            for i, (c, m, s) in enumerate(amounts)]  # fmt: skip
    path = itemized_file(tmp / "it.csv", rows)
    outcome: list[object] = []
    for fast in (False, True):
        ledger = Ledger.open(tmp / f"{fast}.sqlite")
        try:
            ingest.ingest_itemized(ledger, path, livemode=False, now=NOW, fast=fast, parallel=False)
            outcome.append(stored_rows(ledger))
        except CsvError as e:
            outcome.append(str(e).replace(str(tmp), ""))
        ledger.close()
    assert outcome[0] == outcome[1]


# -- a bulk load is the upserts, faster ----------------------------------------------------------

API_TXN = {
    "object": "balance_transaction", "amount": 100, "fee": 3, "net": 97, "currency": "usd",
    "created": BASE, "available_on": BASE, "reporting_category": "charge", "type": "charge",
    "status": "available", "description": "from the API", "source": "ch_api", "livemode": False,
}  # fmt: skip


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[int], list[list[str]], list[list[str]]]:
    """Ids already read from the API, an earlier report, and a new report, over few ids (so
    that they collide), with repeated ids and changed amounts."""
    ids = st.integers(0, 12)

    def report() -> list[list[str]]:
        picks = draw(
            st.lists(st.tuples(ids, st.sampled_from(["1.00", "2.00", "3.00"])), max_size=30)
        )
        return [row(i, gross=g, net="0.50") for i, g in picks]

    return draw(st.lists(ids, max_size=5, unique=True)), report(), report()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history=histories(), parallel=st.booleans())
def test_a_bulk_load_stores_and_counts_what_the_upserts_do(
    tmp_path_factory: pytest.TempPathFactory,
    history: tuple[list[int], list[list[str]], list[list[str]]],
    parallel: bool,
) -> None:
    api_ids, earlier, new = history
    tmp = tmp_path_factory.mktemp("bulk")
    first = itemized_file(tmp / "first.csv", earlier)
    second = itemized_file(tmp / "second.csv", new)
    outcome = {}
    for bulk in (False, True):
        ledger = Ledger.open(tmp / f"{bulk}.sqlite")
        with ledger.transaction() as conn:
            ledger.upsert_transactions(conn, [{**API_TXN, "id": tid(i)} for i in api_ids])
        counts = [
            ingest.ingest_itemized(ledger, path, livemode=False, now=NOW, bulk=bulk,
                                   parallel=parallel, block_bytes=400)
            for path in (first, second)
        ]  # fmt: skip
        outcome[bulk] = ([(c.rows, c.inserted, c.changed) for c in counts], stored_rows(ledger))
        assert len({r[0] for r in outcome[bulk][1]}) == len(outcome[bulk][1])  # ids unique
        ledger.close()
    assert outcome[True] == outcome[False]


def test_a_large_report_into_a_small_ledger_is_a_bulk_load(tmp_path: Path) -> None:
    path = itemized_file(tmp_path / "it.csv", [row(i) for i in range(200)])
    ledger = Ledger.open(tmp_path / "state.sqlite")
    size = path.stat().st_size
    assert ingest._bulk_pays(ledger, path, size, None)  # an empty ledger
    ingest.ingest_itemized(ledger, path, livemode=False, now=NOW)
    # The same rows again: most would collide, so row by row it is.
    assert not ingest._bulk_pays(ledger, path, size, None)
    day = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    assert not ingest._bulk_pays(ledger, path, size, (day, day + 86_400))
    # A report for another range, as large as what the ledger holds: bulk again.
    assert ingest._bulk_pays(ledger, path, size, (day + 86_400, day + 2 * 86_400))
    small = itemized_file(tmp_path / "small.csv", [row(i) for i in range(500, 510)])
    assert not ingest._bulk_pays(ledger, small, small.stat().st_size, (0, 1))


def test_the_scratch_files_of_a_killed_ingest_are_removed(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "state.sqlite")
    left = tmp_path / ".ingest-killed"
    left.mkdir()
    (left / "part1.sqlite").write_bytes(b"half a file")
    path = itemized_file(tmp_path / "it.csv", [row(i) for i in range(30)])
    stats = ingest.ingest_itemized(ledger, path, livemode=False, now=NOW, parallel=True)
    assert stats.inserted == 30 == ledger.transaction_count()
    assert not list(tmp_path.glob(".ingest-*"))


# -- the ledger's schema ---------------------------------------------------------------------


def test_a_schema_1_ledger_is_upgraded_in_place(tmp_path: Path) -> None:
    """Schema 1 made transactions.id the PRIMARY KEY; schema 2 a unique index a bulk load can
    drop. Opening an old ledger copies its rows over once."""
    path = tmp_path / "state.sqlite"
    ledger = Ledger.open(path)
    with ledger.transaction() as conn:
        ledger.upsert_transactions(conn, [{**API_TXN, "id": tid(i)} for i in range(5)])
    before = stored_rows(ledger)
    ledger.close()
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(
        "BEGIN; ALTER TABLE transactions RENAME TO t2; DROP INDEX transactions_id;"
        "DROP INDEX transactions_created;"
        + ingest_v1_table()
        + "INSERT INTO transactions SELECT * FROM t2; DROP TABLE t2;"
        "CREATE INDEX transactions_created ON transactions (created);"
        "UPDATE meta SET value = '1' WHERE key = 'schema_version'; COMMIT;"
    )
    assert old.execute(
        "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'sqlite_autoindex_transactions%'"
    ).fetchone() == (1,)
    old.close()

    ledger = Ledger.open(path)
    assert stored_rows(ledger) == before
    assert ledger.get_meta("schema_version") == str(SCHEMA_VERSION) == "4"
    with ledger.transaction() as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"transactions_id", "transactions_created"} <= names
    assert not any(n.startswith("sqlite_autoindex_transactions") for n in names)
    report = itemized_file(tmp_path / "it.csv", [row(i) for i in range(3, 9)])
    stats = ingest.ingest_itemized(ledger, report, livemode=False, now=NOW, bulk=True)
    assert (stats.inserted, ledger.transaction_count()) == (4, 9)


def ingest_v1_table() -> str:
    from bot.ledger import _TRANSACTIONS_TABLE

    return _TRANSACTIONS_TABLE.replace("id TEXT NOT NULL", "id TEXT PRIMARY KEY")
