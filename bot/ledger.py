"""The SQLite ledger at ``DATA_DIR/state.sqlite``: the local source of truth.

All SQL lives here, but for subscriptions and invoices (:mod:`bot.billing_store`). Every write
happens inside :meth:`Ledger.transaction`, so a crash leaves either the old or the new state.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bot.billing_store import SCHEMA as BILLING_SCHEMA
from bot.books_store import SCHEMA as BOOKS_SCHEMA
from bot.errors import RevbotError
from bot.inbound import check_transaction
from bot.pnl import CurrencyFigures, Movement
from bot.records import MonthlyRecord, ReportRun, Send
from bot.text import escaped

# 2: transactions.id a unique index, not the PRIMARY KEY; 3: subscriptions and invoices;
# 4: payouts and journals.
SCHEMA_VERSION = 4

_TRANSACTIONS_TABLE = """
CREATE TABLE transactions (
    id TEXT NOT NULL,
    created INTEGER NOT NULL,
    available_on INTEGER NOT NULL,
    currency TEXT NOT NULL,
    amount INTEGER NOT NULL,
    fee INTEGER NOT NULL,
    net INTEGER NOT NULL,
    reporting_category TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    description TEXT NOT NULL,
    source TEXT NOT NULL,
    livemode INTEGER,
    raw TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_changed TEXT NOT NULL
);
"""
# Indexes, not a PRIMARY KEY: a large report load drops and rebuilds them (see ReportLoad).
_TRANSACTIONS_INDEXES = (
    "CREATE UNIQUE INDEX IF NOT EXISTS transactions_id ON transactions (id)",
    "CREATE INDEX IF NOT EXISTS transactions_created ON transactions (created)",
)

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
{transactions}-- Days are local to a time zone; a change of REPORT_TIMEZONE makes them new days.
CREATE TABLE IF NOT EXISTS synced_days (
    timezone TEXT NOT NULL,
    day TEXT NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    transactions INTEGER NOT NULL,
    synced_at TEXT NOT NULL,
    PRIMARY KEY (timezone, day)
);
-- Days whose dashboard rows must be (re)written: set in the same transaction as the sync,
-- cleared only after the dashboard write succeeded, so a crash in between is healed.
CREATE TABLE IF NOT EXISTS dashboard_pending (
    timezone TEXT NOT NULL,
    day TEXT NOT NULL,
    PRIMARY KEY (timezone, day)
);
CREATE TABLE IF NOT EXISTS slices (
    job TEXT NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    transactions INTEGER NOT NULL,
    completed_at TEXT NOT NULL,
    PRIMARY KEY (job, start, end)
);
CREATE TABLE IF NOT EXISTS report_runs (
    report_type TEXT NOT NULL,
    interval_start INTEGER NOT NULL,
    interval_end INTEGER NOT NULL,
    timezone TEXT NOT NULL,
    mode TEXT NOT NULL,
    run_id TEXT,
    status TEXT NOT NULL,
    file_path TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (report_type, interval_start, interval_end, timezone, mode)
);
CREATE TABLE IF NOT EXISTS monthly_results (
    month TEXT NOT NULL,
    timezone TEXT NOT NULL,
    mode TEXT NOT NULL,
    data TEXT NOT NULL,
    reconciled INTEGER NOT NULL,
    computed_at TEXT NOT NULL,
    PRIMARY KEY (month, timezone, mode)
);
CREATE TABLE IF NOT EXISTS sends (
    month TEXT NOT NULL,
    recipient TEXT NOT NULL,
    generation INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    status TEXT NOT NULL,
    provider_id TEXT,
    intent_at TEXT NOT NULL,
    sent_at TEXT,
    PRIMARY KEY (month, recipient, generation)
);
CREATE TABLE IF NOT EXISTS alerts (
    incident TEXT PRIMARY KEY,
    raised_at TEXT NOT NULL,
    message TEXT NOT NULL,
    resolved_at TEXT
);
""".replace(
        "{transactions}",
        _TRANSACTIONS_TABLE.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS").lstrip()
        + "".join(f"{ddl};\n" for ddl in _TRANSACTIONS_INDEXES),
    )
    + BILLING_SCHEMA
    + BOOKS_SCHEMA
)


# A meta key: the last time a dashboard limit trimmed the Transactions tab, in one sentence.
DASHBOARD_TRIMMED = "dashboard_trimmed"


class LedgerError(RevbotError):
    """The ledger file cannot be used as it is."""


@dataclass(frozen=True, slots=True)
class StoredTransaction:
    id: str
    created: int
    available_on: int
    currency: str
    amount: int
    fee: int
    net: int
    reporting_category: str
    type: str
    status: str
    description: str
    source: str
    last_changed: str  # when revbot last saw this transaction change (ISO 8601, UTC)

    def movement(self) -> Movement:
        return Movement(self.reporting_category, self.currency, self.amount, self.fee, self.net)


_TXN_COLUMNS = (
    "id, created, available_on, currency, amount, fee, net, reporting_category, type, status, "
    "description, source"
)
_STORED_COLUMNS = _TXN_COLUMNS + ", last_changed"
_RUN_COLUMNS = (
    "report_type, interval_start, interval_end, timezone, mode, run_id, status, file_path, "
    "error, updated_at"
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _source_id(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("id") or "")
    return "" if value is None else str(value)


def _row_from_api(txn: Mapping[str, Any]) -> tuple[Any, ...]:
    """The stored columns of an API balance transaction; refuses a malformed one
    (:class:`~bot.inbound.InvalidStripeData`) before anything is stored."""
    check_transaction(txn)
    amount, fee, net = (txn["amount"], txn["fee"], txn["net"])
    return (
        str(txn["id"]),
        int(txn["created"]),
        int(txn.get("available_on") or txn["created"]),
        str(txn["currency"]).lower(),
        amount,
        fee,
        net,
        str(txn.get("reporting_category") or "other"),
        str(txn.get("type") or ""),
        str(txn.get("status") or ""),
        str(txn.get("description") or ""),
        _source_id(txn.get("source")),
        None if txn.get("livemode") is None else int(bool(txn["livemode"])),
        json.dumps(txn, sort_keys=True, separators=(",", ":")),
    )


# The layout of a row of an itemized report for :class:`ReportLoad`. What is the same for
# every row of a report (``livemode``; ``changed_at``, which fills both ``first_seen`` and
# ``last_changed``; ``now``, for the status) is given once, as :class:`ReportConstants`. The fee
# is stored as ``amount - net`` (no assumption about the sign of the report's fee column), and
# ``type`` empty: the report has none, which is also how a report row is told apart from one
# read from the API. The report has no status either: a transaction whose funds are available
# by ``now`` is ``available``.
REPORT_ROW_COLUMNS = (
    "id", "created", "available_on", "currency", "amount", "net", "reporting_category",
    "description", "source", "raw",
)  # fmt: skip


@dataclass(frozen=True)
class ReportConstants:
    livemode: int | None
    now: int
    changed_at: str

    def values(self, row: Sequence[str]) -> str:
        """The VALUES of an insert into ``transactions`` from ``row``: the expressions of
        REPORT_ROW_COLUMNS, constants as literals (bound once, not once per row)."""
        id_, created, available_on, currency, amount, net, category, description, source, raw = row
        status = f"CASE WHEN {available_on} <= {int(self.now)} THEN 'available' ELSE 'pending' END"
        livemode = "NULL" if self.livemode is None else str(int(self.livemode))
        changed_at = "'" + self.changed_at.replace("'", "''") + "'"
        return (
            f"{id_}, {created}, {available_on}, {currency}, {amount}, {amount} - {net}, {net}, "
            f"{category}, '', {status}, {description}, {source}, {livemode}, {raw}, "
            f"{changed_at}, {changed_at}"
        )


_REPORT_TARGET = (
    f"INSERT INTO transactions ({_TXN_COLUMNS}, livemode, raw, first_seen, last_changed) "
)
# The API's rows are richer (type, status, fee details): a report row never overwrites one.
_REPORT_ON_CONFLICT = (
    " ON CONFLICT (id) DO UPDATE SET created=excluded.created, "
    "available_on=excluded.available_on, currency=excluded.currency, amount=excluded.amount, "
    "fee=excluded.fee, net=excluded.net, reporting_category=excluded.reporting_category, "
    "status=excluded.status, description=excluded.description, source=excluded.source, "
    "livemode=excluded.livemode, raw=excluded.raw, last_changed=excluded.last_changed "
    "WHERE transactions.type = '' AND transactions.raw <> excluded.raw"
)
# New rows get rowid max+1 in turn: the growth of MAX(rowid) counts inserts (an index lookup,
# where COUNT(*) scans the table).
_MAX_ROWID = "SELECT COALESCE(MAX(rowid), 0) FROM transactions"
_SCRATCH_INSERT = (
    f"INSERT INTO report_rows ({', '.join(REPORT_ROW_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(REPORT_ROW_COLUMNS))})"
)


# The page cache while a bulk load rebuilds the indexes (see ReportLoad.finish).
SORT_CACHE_MB = 4


class ReportScratch:
    """A disposable SQLite file that a child process parsing part of a report writes its rows
    into (no journal, no index), for :meth:`ReportLoad.add_scratch` to copy in one statement.
    Several children write their own files at once, which one ledger cannot take."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute(f"CREATE TABLE report_rows ({', '.join(REPORT_ROW_COLUMNS)})")
        self.conn.execute("BEGIN")

    def add(self, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(_SCRATCH_INSERT, rows)

    def close(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()


_REPORT_COPY = (
    "UPDATE transactions SET (created, available_on, currency, amount, fee, net, "
    "reporting_category, status, description, source, livemode, raw, last_changed) = "
    "(SELECT created, available_on, currency, amount, fee, net, reporting_category, status, "
    "description, source, livemode, raw, last_changed FROM transactions WHERE rowid = ?) "
    "WHERE rowid = ?"
)


class ReportLoad:
    """Rows of an itemized report going into the ledger, inside one write transaction.

    Row by row (``bulk=False``), each row is an upsert: a new id is inserted, a report row whose
    ``raw`` changed is updated, an API row is left alone. A bulk load (``bulk=True``, for a
    report that is large next to the ledger) gives the same result faster: it drops the two
    indexes of ``transactions``, appends every row, then rebuilds them, which costs a sort where
    the upserts cost a random index update per row. Rows whose id was already there (or came
    twice) are found when the unique index is rebuilt and merged as the upserts would have
    merged them, in file order. The transaction makes either way all or nothing.
    """

    def __init__(self, conn: sqlite3.Connection, constants: ReportConstants, *, bulk: bool) -> None:
        self.conn, self.bulk = conn, bulk
        upsert = "" if bulk else _REPORT_ON_CONFLICT
        params = [f"?{i}" for i in range(1, len(REPORT_ROW_COLUMNS) + 1)]
        self.insert = f"{_REPORT_TARGET}VALUES ({constants.values(params)}){upsert}"
        # From a scratch file's rows, in the order they were written ("WHERE true" lets SQLite
        # tell the upsert clause from a join).
        self.copy = (
            f"{_REPORT_TARGET}SELECT {constants.values(REPORT_ROW_COLUMNS)} "
            "FROM {schema}.report_rows WHERE true ORDER BY rowid" + upsert
        )
        self.top = self._top()
        self.changes = conn.total_changes
        self.changed = 0
        if bulk:
            conn.execute("DROP INDEX transactions_created")
            conn.execute("DROP INDEX transactions_id")

    def _top(self) -> int:
        return int(self.conn.execute(_MAX_ROWID).fetchone()[0])

    def add(self, rows: Iterable[Sequence[Any]]) -> None:
        """Store rows laid out as :data:`REPORT_ROW_COLUMNS`."""
        self.conn.executemany(self.insert, rows)

    def add_scratch(self, schema: str) -> None:
        """Store the rows of a :class:`ReportScratch` attached as ``schema``, in its order."""
        self.conn.execute(self.copy.replace("{schema}", schema))

    def finish(self) -> tuple[int, int]:
        """Rebuild what a bulk load dropped; returns (inserted, changed)."""
        conn = self.conn
        if not self.bulk:
            inserted = self._top() - self.top
            return inserted, conn.total_changes - self.changes - inserted
        unique, created = _TRANSACTIONS_INDEXES
        # A small page cache makes SQLite sort in cache-sized runs that it merges (with a
        # helper thread), which takes about half the time of one large in-memory sort.
        cache = conn.execute("PRAGMA cache_size").fetchone()[0]
        conn.execute(f"PRAGMA cache_size = {-1024 * SORT_CACHE_MB}")
        conn.execute("PRAGMA threads = 2")
        try:
            try:
                conn.execute(unique)
            except sqlite3.IntegrityError:  # an id that was already there, or came twice
                self._merge_duplicates()
                conn.execute(unique)
            conn.execute(created)
        finally:
            conn.execute("PRAGMA threads = 0")
            conn.execute(f"PRAGMA cache_size = {int(cache)}")
        inserted = conn.execute(
            "SELECT COUNT(*) FROM transactions WHERE rowid > ?", (self.top,)
        ).fetchone()[0]
        return int(inserted), self.changed

    def _merge_duplicates(self) -> None:
        """Keep one row per id: the first (the one already in the ledger, if any) with the
        content of the last, as successive upserts would; an API row keeps its own content."""
        conn = self.conn
        conn.execute("CREATE INDEX transactions_id_load ON transactions (id)")
        ids = conn.execute("SELECT id FROM transactions GROUP BY id HAVING COUNT(*) > 1")
        for (txn_id,) in ids.fetchall():
            rows = conn.execute(
                "SELECT rowid, type, raw FROM transactions WHERE id = ? ORDER BY rowid", (txn_id,)
            ).fetchall()
            keep = rows[0][0]
            if rows[0][1] == "":
                # An upsert writes when raw differs from what is stored, i.e. from the row before.
                updates = sum(a[2] != b[2] for a, b in itertools.pairwise(rows))
                if updates:
                    conn.execute(_REPORT_COPY, (rows[-1][0], keep))
                    self.changed += updates
            conn.execute("DELETE FROM transactions WHERE id = ? AND rowid <> ?", (txn_id, keep))
        conn.execute("DROP INDEX transactions_id_load")


def _upgrade_id_key(conn: sqlite3.Connection) -> None:
    """Schema 1 made ``transactions.id`` the PRIMARY KEY, an index SQLite cannot drop; schema 2
    has a unique index instead, so that a large report load can rebuild it (:class:`ReportLoad`).
    Copies the table once, in one transaction; a crash leaves the old table as it was."""
    old = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'index' AND tbl_name = 'transactions' "
        "AND name LIKE 'sqlite_autoindex_transactions%'"
    ).fetchone()
    if old is None:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("ALTER TABLE transactions RENAME TO transactions_v1")
        conn.execute("DROP INDEX IF EXISTS transactions_created")
        conn.execute(_TRANSACTIONS_TABLE)
        conn.execute("INSERT INTO transactions SELECT * FROM transactions_v1 ORDER BY rowid")
        conn.execute("DROP TABLE transactions_v1")
        for ddl in _TRANSACTIONS_INDEXES:
            conn.execute(ddl)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _schema_version(conn: sqlite3.Connection, path: Path) -> int | None:
    """The ledger's schema version (None for a new or pre-versioning one); refuses one this
    revbot cannot read, so that no command, not even a dry run, works on a newer ledger."""
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if not has_meta:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    if row is None:
        return None
    text = str(row[0])
    if not text.isascii() or not text.isdigit():
        raise LedgerError(
            f"{path} has schema_version {escaped(repr(text))[:40]}, which no revbot writes; "
            "move it aside and restore a backup"
        )
    if int(text) > SCHEMA_VERSION:
        raise LedgerError(f"{path} was written by a newer revbot (schema {text}); upgrade revbot")
    return int(text)


def _private(path: Path) -> None:
    """The ledger (and its WAL) readable by its owner alone, even if made under a looser umask:
    it holds the account's figures and the investors' addresses."""
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with suppress(OSError):
            if p.exists() and p.stat().st_mode & 0o077:
                p.chmod(0o600)


class Ledger:
    """One SQLite connection shared by the process; a lock serialises writers across threads."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False) -> Ledger:
        """Open (creating if needed) the ledger at ``path``.

        ``read_only`` (for ``--dry-run``) never creates or changes the file: writes go to an
        in-memory copy of the schema when the file does not exist yet, and fail otherwise.
        """
        conn: sqlite3.Connection | None = None
        try:
            if read_only and not path.exists():
                conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            elif read_only:
                # The version first, through a connection that creates no -wal or -shm file:
                # a ledger this revbot refuses is left exactly as it was.
                probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
                try:
                    _schema_version(probe, path)
                finally:
                    probe.close()
                conn = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    path, isolation_level=None, check_same_thread=False, timeout=30
                )
                conn.execute("PRAGMA main.journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            if read_only and path.exists():
                _schema_version(conn, path)
                return cls(conn, path)
            _private(path)
            _upgrade_id_key(conn)
            conn.executescript(_SCHEMA)
            version = _schema_version(conn, path)
            if version is None or version < SCHEMA_VERSION:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )
        except LedgerError:
            if conn is not None:
                conn.close()  # a refused ledger is left as it was: no -wal or -shm beside it
            raise
        except sqlite3.DatabaseError as e:
            # Never start over silently: the ledger holds report runs and sent e-mails.
            raise LedgerError(
                f"{path} is not a readable revbot ledger ({e}); move it aside and restore a "
                "backup, or move it aside and run `revbot backfill` to rebuild it "
                "(the send history would be lost)"
            ) from e
        return cls(conn, path)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; rolls back on any exception."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for reads that must agree with each other (one read transaction)."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._conn.execute(sql, tuple(params))
            return cur.fetchall()

    # -- meta -----------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- balance transactions -------------------------------------------------------------

    def upsert_transactions(
        self, conn: sqlite3.Connection, txns: Iterable[Mapping[str, Any]]
    ) -> tuple[int, int]:
        """Insert new and update changed transactions; returns (inserted, changed)."""
        now = _now()
        inserted = changed = 0
        for txn in txns:
            row = _row_from_api(txn)
            old = conn.execute("SELECT raw FROM transactions WHERE id = ?", (row[0],)).fetchone()
            if old is None:
                conn.execute(
                    f"INSERT INTO transactions ({_TXN_COLUMNS}, livemode, raw, first_seen, "
                    "last_changed) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (*row, now, now),
                )
                inserted += 1
            elif old[0] != row[-1]:
                conn.execute(
                    "UPDATE transactions SET created=?, available_on=?, currency=?, amount=?, "
                    "fee=?, net=?, reporting_category=?, type=?, status=?, description=?, "
                    "source=?, livemode=?, raw=?, last_changed=? WHERE id=?",
                    (*row[1:], now, row[0]),
                )
                changed += 1
        return inserted, changed

    def transactions_between(self, start: int, end: int) -> list[StoredTransaction]:
        """Transactions created in ``[start, end)``, oldest first."""
        rows = self._query(
            f"SELECT {_STORED_COLUMNS} FROM transactions WHERE created >= ? AND created < ? "
            "ORDER BY created, id",
            (start, end),
        )
        return [StoredTransaction(*r) for r in rows]

    def created_count(self, start: int, end: int) -> int:
        """How many transactions were created in ``[start, end)``."""
        sql = "SELECT COUNT(*) FROM transactions WHERE created >= ? AND created < ?"
        return int(self._query(sql, (start, end))[0][0])

    def row_estimate(self) -> int:
        """About how many transactions the ledger holds (exact unless rows were deleted)."""
        return int(self._query(_MAX_ROWID)[0][0])

    def transaction_count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM transactions")[0][0])

    def raw_transactions(self) -> list[dict[str, Any]]:
        """The balance transactions read from the API, as Stripe sent them (a report row keeps
        its CSV line in ``raw`` instead: see :func:`bot.ingest.ingest_itemized`)."""
        sql = "SELECT raw FROM transactions WHERE type <> '' ORDER BY id"
        return [json.loads(r[0]) for r in self._query(sql)]

    def livemodes(self, start: int, end: int) -> set[bool]:
        rows = self._query(
            "SELECT DISTINCT livemode FROM transactions WHERE created >= ? AND created < ? "
            "AND livemode IS NOT NULL",
            (start, end),
        )
        return {bool(r[0]) for r in rows}

    # -- synced days and the dashboard queue ----------------------------------------------

    def mark_days_synced(
        self,
        conn: sqlite3.Connection,
        timezone: str,
        days: Mapping[date, tuple[int, int, int]],
    ) -> None:
        """Record ``day -> (start, end, transactions)`` as synced and queue its dashboard rows."""
        now = _now()
        for day, (start, end, count) in days.items():
            conn.execute(
                "INSERT INTO synced_days (timezone, day, start, end, transactions, synced_at) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT (timezone, day) DO UPDATE SET "
                "start=excluded.start, end=excluded.end, transactions=excluded.transactions, "
                "synced_at=excluded.synced_at",
                (timezone, day.isoformat(), start, end, count, now),
            )
            conn.execute(
                "INSERT OR IGNORE INTO dashboard_pending (timezone, day) VALUES (?, ?)",
                (timezone, day.isoformat()),
            )

    def synced_days(self, timezone: str) -> dict[date, str]:
        rows = self._query(
            "SELECT day, synced_at FROM synced_days WHERE timezone = ? ORDER BY day", (timezone,)
        )
        return {date.fromisoformat(r[0]): r[1] for r in rows}

    def pending_dashboard_days(self, timezone: str) -> list[date]:
        rows = self._query(
            "SELECT day FROM dashboard_pending WHERE timezone = ? ORDER BY day", (timezone,)
        )
        return [date.fromisoformat(r[0]) for r in rows]

    def clear_dashboard_pending(self, timezone: str, days: Iterable[date]) -> None:
        with self.transaction() as conn:
            conn.executemany(
                "DELETE FROM dashboard_pending WHERE timezone = ? AND day = ?",
                [(timezone, d.isoformat()) for d in days],
            )

    # -- backfill slices ------------------------------------------------------------------

    def completed_slices(self, job: str) -> set[tuple[int, int]]:
        rows = self._query("SELECT start, end FROM slices WHERE job = ?", (job,))
        return {(int(r[0]), int(r[1])) for r in rows}

    def complete_slice(
        self, conn: sqlite3.Connection, job: str, start: int, end: int, count: int
    ) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO slices (job, start, end, transactions, completed_at) "
            "VALUES (?,?,?,?,?)",
            (job, start, end, count, _now()),
        )

    # -- report runs ----------------------------------------------------------------------

    def report_run(
        self, report_type: str, start: int, end: int, timezone: str, mode: str
    ) -> ReportRun | None:
        rows = self._query(
            f"SELECT {_RUN_COLUMNS} FROM report_runs WHERE report_type=? AND interval_start=? "
            "AND interval_end=? AND timezone=? AND mode=?",
            (report_type, start, end, timezone, mode),
        )
        return ReportRun(*rows[0]) if rows else None

    def record_report_run(
        self,
        report_type: str,
        start: int,
        end: int,
        timezone: str,
        mode: str,
        *,
        run_id: str | None,
        status: str,
        file_path: str | None = None,
        error: str | None = None,
    ) -> None:
        now = _now()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO report_runs (report_type, interval_start, interval_end, timezone, "
                "mode, run_id, status, file_path, error, created_at, updated_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (report_type, interval_start, "
                "interval_end, timezone, mode) DO UPDATE SET run_id=excluded.run_id, "
                "status=excluded.status, file_path=excluded.file_path, error=excluded.error, "
                "updated_at=excluded.updated_at",
                (report_type, start, end, timezone, mode, run_id, status, file_path, error, now,
                 now),
            )  # fmt: skip

    def report_runs(self) -> list[ReportRun]:
        rows = self._query(
            f"SELECT {_RUN_COLUMNS} FROM report_runs ORDER BY interval_start, report_type"
        )
        return [ReportRun(*r) for r in rows]

    # -- monthly results ------------------------------------------------------------------

    def save_monthly_result(
        self, month: str, timezone: str, mode: str, record: MonthlyRecord
    ) -> None:
        data = {
            "currencies": {ccy: f.to_json() for ccy, f in record.figures.items()},
            "mismatches": list(record.mismatches),
            "source": record.source,
            "livemode": record.livemode,
            "generated_at": record.generated_at,
        }
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO monthly_results (month, timezone, mode, data, reconciled, "
                "computed_at) VALUES (?,?,?,?,?,?) ON CONFLICT (month, timezone, mode) DO "
                "UPDATE SET data=excluded.data, reconciled=excluded.reconciled, "
                "computed_at=excluded.computed_at",
                (month, timezone, mode, json.dumps(data, sort_keys=True), int(record.reconciled),
                 _now()),
            )  # fmt: skip

    def monthly_result(self, month: str, timezone: str, mode: str) -> MonthlyRecord | None:
        rows = self._query(
            "SELECT data, reconciled FROM monthly_results WHERE month=? AND timezone=? AND mode=?",
            (month, timezone, mode),
        )
        if not rows:
            return None
        data: dict[str, Any] = json.loads(rows[0][0])
        return MonthlyRecord(
            figures={
                ccy: CurrencyFigures.from_json(ccy, d) for ccy, d in data["currencies"].items()
            },
            mismatches=tuple(data.get("mismatches") or ()),
            source=str(data.get("source") or "report"),
            livemode=bool(data.get("livemode")),
            reconciled=bool(rows[0][1]),
            generated_at=data.get("generated_at"),
        )

    def monthly_months(self, timezone: str, mode: str) -> list[str]:
        rows = self._query(
            "SELECT month FROM monthly_results WHERE timezone=? AND mode=? ORDER BY month",
            (timezone, mode),
        )
        return [r[0] for r in rows]

    # -- sends ----------------------------------------------------------------------------

    def sends(self, month: str | None = None) -> list[Send]:
        sql = (
            "SELECT month, recipient, generation, idempotency_key, status, provider_id, "
            "intent_at, sent_at FROM sends"
        )
        params: tuple[Any, ...] = ()
        if month is not None:
            sql += " WHERE month = ?"
            params = (month,)
        rows = self._query(sql + " ORDER BY month, recipient, generation", params)
        return [Send(*r) for r in rows]

    def record_send_intent(self, month: str, recipient: str, generation: int, key: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO sends (month, recipient, generation, idempotency_key, "
                "status, intent_at) VALUES (?,?,?,?, 'intent', ?)",
                (month, recipient, generation, key, _now()),
            )

    def record_sent(self, month: str, recipient: str, generation: int, provider_id: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE sends SET status='sent', provider_id=?, sent_at=? WHERE month=? AND "
                "recipient=? AND generation=?",
                (provider_id, _now(), month, recipient, generation),
            )

    # -- alerts ---------------------------------------------------------------------------

    def open_incident(self, incident: str, message: str) -> bool:
        """Record an incident; False if it was already open (so the alert is not repeated)."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT resolved_at FROM alerts WHERE incident = ?", (incident,)
            ).fetchone()
            if row is not None and row[0] is None:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO alerts (incident, raised_at, message, resolved_at) "
                "VALUES (?,?,?,NULL)",
                (incident, _now(), message),
            )
            return True

    def resolve_incidents(self, prefix: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE alerts SET resolved_at = ? WHERE incident LIKE ? AND resolved_at IS NULL",
                (_now(), prefix + "%"),
            )

    # -- backfill: slices that grow, and the itemized report's bulk path ---------

    def replace_slice(
        self,
        conn: sqlite3.Connection,
        job: str,
        *,
        start: int,
        end: int,
        count: int,
        replaces: tuple[int, int] | None = None,
    ) -> None:
        """Record ``[start, end)`` as completed, dropping the narrower record it grew from.

        A backfill slice is committed page by page, each commit widening the same slice, so
        the table keeps one row per slice instead of one per page.
        """
        if replaces is not None and replaces != (start, end):
            conn.execute(
                "DELETE FROM slices WHERE job = ? AND start = ? AND end = ?", (job, *replaces)
            )
        self.complete_slice(conn, job, start, end, count)

    def count_between(self, conn: sqlite3.Connection, start: int, end: int) -> int:
        """How many transactions were created in ``[start, end)`` (inside a transaction)."""
        row = conn.execute(
            "SELECT COUNT(*) FROM transactions WHERE created >= ? AND created < ?", (start, end)
        ).fetchone()
        return int(row[0])

    @contextmanager
    def attached(self, path: Path, schema: str) -> Iterator[None]:
        """Another SQLite file attached as ``schema``; leave the transaction that reads it
        before this context (SQLite cannot detach a file in use)."""
        with self._lock:
            self._conn.execute("ATTACH DATABASE ? AS " + schema, (str(path),))
            try:
                yield
            finally:
                self._conn.execute("DETACH DATABASE " + schema)

    @contextmanager
    def bulk_transaction(self, *, cache_mb: int = 32) -> Iterator[sqlite3.Connection]:
        """One large write transaction (a million-row report), as fast as SQLite allows.

        Meanwhile the file uses a rollback journal instead of the WAL: pages new to the file
        are then written once, where the WAL writes them twice (to the log, then at the
        checkpoint), which takes about a third off a bulk load; a larger page cache keeps the
        id index in memory. When another connection holds the file (WAL mode cannot be left
        then) this is a plain transaction. The WAL comes back afterwards, whatever happens, and
        ``Ledger.open`` sets it again in any case.
        """
        with self._lock:
            conn = self._conn
            cache = conn.execute("PRAGMA cache_size").fetchone()[0]
            timeout = conn.execute("PRAGMA busy_timeout").fetchone()[0]
            mode = str(conn.execute("PRAGMA main.journal_mode").fetchone()[0]).lower()
            switched = False
            if mode == "wal":
                conn.execute("PRAGMA busy_timeout = 200")
                try:
                    switched = conn.execute("PRAGMA main.journal_mode=DELETE").fetchone()[0] in (
                        "delete",
                    )
                except sqlite3.OperationalError:  # another connection has the file open
                    switched = False
                finally:
                    conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")
            conn.execute(f"PRAGMA cache_size = {-1024 * int(cache_mb)}")
            try:
                with self.transaction() as tx:
                    yield tx
            finally:
                conn.execute(f"PRAGMA cache_size = {int(cache)}")
                if switched:
                    # A reader that came meanwhile blocks this; Ledger.open sets WAL again.
                    with suppress(sqlite3.OperationalError):
                        conn.execute("PRAGMA main.journal_mode=WAL")
