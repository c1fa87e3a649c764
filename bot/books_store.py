"""Payouts and the journals posted for the books, in the ledger.

Payouts are kept as Stripe sent them (``raw``, by id, upserted), each automatic one with the
balance transactions it settled (``payout_transactions``: what ``GET
/v1/balance_transactions?payout=po_…`` listed, the payout's own transaction included), and
``listed_status``, the payout's status when that list was read: a payout whose status moved on
since is listed again. ``dirty`` marks a payout whose Payouts row is not written yet; it is
cleared once the dashboard has it, so a run that crashed in between writes it next time.

``journals`` records each month's journal per currency and target: a file written (target
``file``), or a Manual Journal in Xero (target ``xero``). For Xero, the row is written *before*
the journal is posted (``state`` ``posting``, with the Idempotency-Key the post will carry) and
completed *after* (``draft`` with Xero's id), so a crash between the two is resumed by posting
again with the same key, which Xero answers with the journal it already made.

The tables are created by :meth:`bot.ledger.Ledger.open` (schema 4).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.inbound import check_payout, check_transaction
from bot.pnl import Movement

if TYPE_CHECKING:
    from bot.ledger import Ledger

SCHEMA = """
CREATE TABLE IF NOT EXISTS payouts (
    id TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    automatic INTEGER NOT NULL,
    raw TEXT NOT NULL,
    listed_status TEXT,
    dirty INTEGER NOT NULL DEFAULT 1,
    last_changed TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS payout_transactions (
    payout TEXT NOT NULL,
    id TEXT NOT NULL,
    reporting_category TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount INTEGER NOT NULL,
    fee INTEGER NOT NULL,
    net INTEGER NOT NULL,
    PRIMARY KEY (payout, id)
);
CREATE INDEX IF NOT EXISTS payouts_created ON payouts (created);
CREATE TABLE IF NOT EXISTS journals (
    month TEXT NOT NULL,
    currency TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    ref TEXT,
    idempotency_key TEXT,
    digest TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (month, currency, target)
);
"""

# Statuses after which Stripe never changes a payout again.
FINAL = frozenset({"paid", "failed", "canceled"})
# Journal targets and states.
FILE, XERO = "file", "xero"
WRITTEN, POSTING, DRAFT, POSTED = "written", "posting", "draft", "posted"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _has_tables(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'journals'"
    ).fetchone()
    return row is not None


# -- payouts: writing (inside the caller's Ledger.transaction) --------------------------------


def store_payout(conn: sqlite3.Connection, payout: Mapping[str, Any]) -> str:
    """Upsert one payout (checked first); ``inserted``, ``changed`` or ``same``."""
    check_payout(payout)
    raw = json.dumps(payout, sort_keys=True, separators=(",", ":"))
    old = conn.execute("SELECT raw FROM payouts WHERE id = ?", (payout["id"],)).fetchone()
    if old is not None and old[0] == raw:
        return "same"
    conn.execute(
        "INSERT INTO payouts (id, created, currency, status, automatic, raw, dirty, "
        "last_changed) VALUES (?,?,?,?,?,?,1,?) ON CONFLICT (id) DO UPDATE SET "
        "status = excluded.status, raw = excluded.raw, dirty = 1, "
        "last_changed = excluded.last_changed",
        (
            payout["id"],
            payout["created"],
            str(payout["currency"]).lower(),
            payout["status"],
            int(bool(payout["automatic"])),
            raw,
            _now(),
        ),
    )
    return "inserted" if old is None else "changed"


def store_settled(
    conn: sqlite3.Connection, payout_id: str, status: str, txns: Iterable[Mapping[str, Any]]
) -> int:
    """Replace what ``payout_id`` settled with ``txns`` (each checked), listed while the payout
    had ``status``; how many were stored."""
    rows = []
    for t in txns:
        check_transaction(t)
        rows.append(
            (payout_id, t["id"], t["reporting_category"], str(t["currency"]).lower(),
             t["amount"], t["fee"], t["net"])
        )  # fmt: skip
    conn.execute("DELETE FROM payout_transactions WHERE payout = ?", (payout_id,))
    conn.executemany("INSERT INTO payout_transactions VALUES (?,?,?,?,?,?,?)", rows)
    conn.execute(
        "UPDATE payouts SET listed_status = ?, dirty = 1 WHERE id = ?", (status, payout_id)
    )
    return len(rows)


def store_refused(conn: sqlite3.Connection, payout_id: str, status: str) -> None:
    """Stripe refused to list what ``payout_id`` settled: it is a manual payout, whatever its
    object said, and its row says ``n/a``."""
    conn.execute("DELETE FROM payout_transactions WHERE payout = ?", (payout_id,))
    conn.execute(
        "UPDATE payouts SET automatic = 0, listed_status = ?, dirty = 1 WHERE id = ?",
        (status, payout_id),
    )


def mark_written(conn: sqlite3.Connection, ids: Iterable[str]) -> None:
    conn.executemany("UPDATE payouts SET dirty = 0 WHERE id = ?", [(i,) for i in ids])


# -- payouts: reading ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredPayout:
    raw: Mapping[str, Any]
    automatic: bool  # False for a manual payout (or one Stripe would not list)
    listed_status: str | None
    settled: tuple[Movement, ...]  # what it settled, its own transaction left out
    settled_ids: tuple[str, ...]

    @property
    def id(self) -> str:
        return str(self.raw["id"])

    @property
    def listed(self) -> bool:
        return self.listed_status is not None


def payouts(
    ledger: Ledger, *, dirty_only: bool = False, ids: Sequence[str] | None = None
) -> list[StoredPayout]:
    """Stored payouts, oldest first: all, those whose row is not written yet, or ``ids``."""
    with ledger.reading() as conn:
        if not _has_tables(conn):
            return []
        where, params = ("WHERE dirty = 1", []) if dirty_only else ("", [])
        wanted = None if ids is None else set(ids)
        if wanted is not None and len(wanted) <= 900:  # far below SQLite's variable limit
            params = list(wanted)
            where = f"WHERE id IN ({','.join('?' * len(params))})" if params else "WHERE 0"
        rows = conn.execute(
            f"SELECT id, raw, automatic, listed_status FROM payouts {where} ORDER BY created, id",
            params,
        ).fetchall()
        if wanted is not None and len(wanted) > 900:
            rows = [r for r in rows if r[0] in wanted]
        out: list[StoredPayout] = []
        for pid, raw_text, automatic, listed in rows:
            raw = json.loads(raw_text)
            own = raw.get("balance_transaction")
            own = own.get("id") if isinstance(own, Mapping) else own
            settled = conn.execute(
                "SELECT id, reporting_category, currency, amount, fee, net "
                "FROM payout_transactions WHERE payout = ? ORDER BY id",
                (pid,),
            ).fetchall()
            kept = [s for s in settled if s[0] != own]
            out.append(
                StoredPayout(
                    raw=raw,
                    automatic=bool(automatic),
                    listed_status=listed,
                    settled=tuple(Movement(s[1], s[2], s[3], s[4], s[5]) for s in kept),
                    settled_ids=tuple(s[0] for s in kept),
                )
            )
        return out


def not_final(ledger: Ledger) -> list[str]:
    """Ids of stored payouts that may still change (pending, in transit, or a newer status)."""
    with ledger.reading() as conn:
        if not _has_tables(conn):
            return []
        rows = conn.execute("SELECT id, status FROM payouts ORDER BY created, id").fetchall()
    return [pid for pid, status in rows if status not in FINAL]


def to_list(ledger: Ledger) -> list[tuple[str, str]]:
    """(id, status) of automatic payouts whose settled transactions were never listed, or were
    listed under another status."""
    with ledger.reading() as conn:
        if not _has_tables(conn):
            return []
        rows = conn.execute(
            "SELECT id, status FROM payouts WHERE automatic = 1 AND "
            "(listed_status IS NULL OR listed_status != status) ORDER BY created, id"
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def payout_count(ledger: Ledger) -> int:
    with ledger.reading() as conn:
        if not _has_tables(conn):
            return 0
        return int(conn.execute("SELECT COUNT(*) FROM payouts").fetchone()[0])


# -- journals ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JournalRecord:
    month: str
    currency: str
    target: str
    state: str
    ref: str | None  # the file written, or Xero's ManualJournalID
    idempotency_key: str | None
    digest: str | None  # of the lines last sent or written
    updated_at: str


def journal_records(ledger: Ledger, month: str | None = None) -> list[JournalRecord]:
    """Every journal recorded (of ``month``), by month, currency and target."""
    with ledger.reading() as conn:
        if not _has_tables(conn):
            return []
        sql = "SELECT * FROM journals"
        params: tuple[str, ...] = ()
        if month is not None:
            sql += " WHERE month = ?"
            params = (month,)
        rows = conn.execute(sql + " ORDER BY month, currency, target", params).fetchall()
    return [JournalRecord(*r) for r in rows]


def record_journal(
    ledger: Ledger,
    *,
    month: str,
    currency: str,
    target: str,
    state: str,
    ref: str | None,
    idempotency_key: str | None = None,
    digest: str | None = None,
) -> None:
    """Create or replace the record of one journal (committed before this returns)."""
    with ledger.transaction() as conn:
        conn.execute(
            "INSERT INTO journals (month, currency, target, state, ref, idempotency_key, "
            "digest, updated_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (month, currency, target) "
            "DO UPDATE SET state = excluded.state, ref = excluded.ref, "
            "idempotency_key = excluded.idempotency_key, digest = excluded.digest, "
            "updated_at = excluded.updated_at",
            (month, currency, target, state, ref, idempotency_key, digest, _now()),
        )
