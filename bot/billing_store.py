"""Subscriptions and invoices in the ledger: what investor metrics are computed from.

Stripe's objects are kept as they came (``raw``, by id, upserted), each invoice with the full
list of its lines (``billing_invoice_lines``: the lines an invoice embeds are only its first
page). Beside them, what makes the next sync cheap: the ranges of ``created`` already listed
(``slices``, one job per resource, kept merged), and a change counter (``billing_version`` in
``meta``) that grows with every stored change, so that whoever computes from these objects
knows when to compute again (:func:`billing_version`, :func:`billing_changed_since`).

The tables are created by :meth:`bot.ledger.Ledger.open` (schema 3), which upgrades an older
ledger when it opens it. A ledger opened read-only before that upgrade has none of them: the
readers here then see an empty store.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.inbound import check_invoice, check_invoice_line, check_subscription

if TYPE_CHECKING:
    from bot.ledger import Ledger

SCHEMA = """
CREATE TABLE IF NOT EXISTS billing_subscriptions (
    id TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    status TEXT NOT NULL,
    raw TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_changed TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS billing_invoices (
    id TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    status TEXT NOT NULL,
    raw TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_changed TEXT NOT NULL
);
-- Every line of an invoice, in Stripe's order (the invoice's raw embeds only the first page).
CREATE TABLE IF NOT EXISTS billing_invoice_lines (
    invoice TEXT NOT NULL,
    position INTEGER NOT NULL,
    raw TEXT NOT NULL,
    PRIMARY KEY (invoice, position)
);
CREATE INDEX IF NOT EXISTS billing_subscriptions_status ON billing_subscriptions (status);
CREATE INDEX IF NOT EXISTS billing_invoices_status ON billing_invoices (status);
"""

SUBSCRIPTIONS = "subscriptions"
INVOICES = "invoices"
RESOURCES = (SUBSCRIPTIONS, INVOICES)
_TABLE = {SUBSCRIPTIONS: "billing_subscriptions", INVOICES: "billing_invoices"}
# Statuses after which Stripe never changes an object again; every other one may still change
# (an unknown, newer status included).
ENDED_SUBSCRIPTION = frozenset({"canceled", "incomplete_expired"})
CHANGING_INVOICE = ("draft", "open")
# Meta keys: the change counter, and why a resource cannot be read (JSON resource -> message).
VERSION_KEY = "billing_version"
UNAVAILABLE_KEY = "billing_unavailable"


def slice_job(resource: str) -> str:
    """The key of a resource's listed ranges in the ledger's ``slices``."""
    return f"billing:{resource}"


@dataclass(frozen=True, slots=True)
class Stored:
    """What the refresh rule needs of a stored object."""

    id: str
    created: int
    status: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _dump(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _has_tables(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'billing_invoices'"
    ).fetchone()
    return row is not None


def _bump(conn: sqlite3.Connection, changes: int) -> None:
    if changes:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
            "value = CAST(CAST(value AS INTEGER) + ? AS TEXT)",
            (VERSION_KEY, str(changes), changes),
        )


# -- writing (inside the caller's Ledger.transaction) ----------------------------------------


def _upsert(
    conn: sqlite3.Connection, table: str, obj: Mapping[str, Any], status: str, now: str
) -> str:
    """``inserted``, ``changed`` or ``same``."""
    raw = _dump(obj)
    old = conn.execute(f"SELECT raw FROM {table} WHERE id = ?", (obj["id"],)).fetchone()
    if old is None:
        conn.execute(
            f"INSERT INTO {table} (id, created, status, raw, first_seen, last_changed) "
            "VALUES (?,?,?,?,?,?)",
            (obj["id"], obj["created"], status, raw, now, now),
        )
        return "inserted"
    if old[0] == raw:
        return "same"
    conn.execute(
        f"UPDATE {table} SET created = ?, status = ?, raw = ?, last_changed = ? WHERE id = ?",
        (obj["created"], status, raw, now, obj["id"]),
    )
    return "changed"


def store_subscriptions(
    conn: sqlite3.Connection, subscriptions: Iterable[Mapping[str, Any]]
) -> tuple[int, int]:
    """Insert new and update changed subscriptions; (inserted, changed). Each is checked
    first (:class:`~bot.inbound.InvalidStripeData`), so a malformed one stores nothing."""
    subs = list(subscriptions)
    for sub in subs:
        check_subscription(sub)
    now = _now()
    done = [_upsert(conn, "billing_subscriptions", s, str(s["status"]), now) for s in subs]
    inserted, changed = done.count("inserted"), done.count("changed")
    _bump(conn, inserted + changed)
    return inserted, changed


def store_invoices(
    conn: sqlite3.Connection,
    invoices: Iterable[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]] | None]],
) -> tuple[int, int]:
    """Insert new and update changed invoices, each with every one of its lines (``None``:
    keep the lines stored, for an invoice whose lines cannot have changed); (inserted,
    changed). A new invoice must come with its lines."""
    pairs = list(invoices)
    for invoice, lines in pairs:
        check_invoice(invoice)
        for line in lines or ():
            check_invoice_line(line, str(invoice["id"]))
    now = _now()
    inserted = changed = 0
    for invoice, lines in pairs:
        status = str(invoice.get("status") or "")
        done = _upsert(conn, "billing_invoices", invoice, status, now)
        if done == "inserted" and lines is None:
            raise ValueError(f"invoice {invoice['id']} is new: its lines are needed")
        if lines is not None:
            old = [r[0] for r in conn.execute(
                "SELECT raw FROM billing_invoice_lines WHERE invoice = ? ORDER BY position",
                (invoice["id"],),
            )]  # fmt: skip
            new = [_dump(line) for line in lines]
            if old != new:
                conn.execute(
                    "DELETE FROM billing_invoice_lines WHERE invoice = ?", (invoice["id"],)
                )
                conn.executemany(
                    "INSERT INTO billing_invoice_lines (invoice, position, raw) VALUES (?,?,?)",
                    [(invoice["id"], n, raw) for n, raw in enumerate(new)],
                )
                if done == "same":
                    done = "changed"
        inserted += done == "inserted"
        changed += done == "changed"
    _bump(conn, inserted + changed)
    return inserted, changed


def remove(conn: sqlite3.Connection, resource: str, ids: Iterable[str]) -> int:
    """Forget objects Stripe no longer has (a deleted draft invoice); how many were stored."""
    removed = 0
    for oid in ids:
        cur = conn.execute(f"DELETE FROM {_TABLE[resource]} WHERE id = ?", (oid,))
        removed += cur.rowcount
        if resource == INVOICES:
            conn.execute("DELETE FROM billing_invoice_lines WHERE invoice = ?", (oid,))
    _bump(conn, removed)
    return removed


def cover(conn: sqlite3.Connection, resource: str, start: int, end: int, count: int) -> None:
    """Record ``[start, end)`` of ``created`` as listed, merged with the ranges it overlaps or
    touches, so the table keeps one row per stretch listed."""
    if end <= start:
        return
    job = slice_job(resource)
    rows = conn.execute(
        "SELECT start, end, transactions FROM slices WHERE job = ? AND start <= ? AND end >= ?",
        (job, end, start),
    ).fetchall()
    lo = min([start, *(r[0] for r in rows)])
    hi = max([end, *(r[1] for r in rows)])
    total = count + sum(int(r[2]) for r in rows)
    conn.executemany(
        "DELETE FROM slices WHERE job = ? AND start = ? AND end = ?",
        [(job, r[0], r[1]) for r in rows],
    )
    conn.execute(
        "INSERT OR REPLACE INTO slices (job, start, end, transactions, completed_at) "
        "VALUES (?,?,?,?,?)",
        (job, lo, hi, total, _now()),
    )


# -- reading ----------------------------------------------------------------------------------


def uncovered(ledger: Ledger, resource: str, start: int, end: int) -> list[tuple[int, int]]:
    """The parts of ``[start, end)`` of ``created`` never listed, newest first."""
    done = sorted(ledger.completed_slices(slice_job(resource)))
    gaps: list[tuple[int, int]] = []
    cursor = start
    for lo, hi in done:
        if hi <= cursor or lo >= end:
            continue
        if lo > cursor:
            gaps.append((cursor, lo))
        cursor = max(cursor, hi)
    if cursor < end:
        gaps.append((cursor, end))
    return gaps[::-1]


def changeable(ledger: Ledger, resource: str) -> list[Stored]:
    """Stored objects whose status can still change, oldest first."""
    if resource == SUBSCRIPTIONS:
        ended = sorted(ENDED_SUBSCRIPTION)
        sql = (
            "SELECT id, created, status FROM billing_subscriptions WHERE status NOT IN "
            f"({', '.join('?' * len(ended))}) ORDER BY created, id"
        )
        params: tuple[str, ...] = tuple(ended)
    else:
        sql = (
            "SELECT id, created, status FROM billing_invoices WHERE status IN "
            f"({', '.join('?' * len(CHANGING_INVOICE))}) ORDER BY created, id"
        )
        params = CHANGING_INVOICE
    with ledger.reading() as conn:
        if not _has_tables(conn):
            return []
        return [Stored(*r) for r in conn.execute(sql, params)]


def stored_invoices(ledger: Ledger, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``id -> (raw, status)`` of the stored invoices among ``ids``."""
    wanted = list(ids)
    out: dict[str, tuple[str, str]] = {}
    with ledger.reading() as conn:
        if not _has_tables(conn):
            return out
        for n in range(0, len(wanted), 500):
            part = wanted[n : n + 500]
            rows = conn.execute(
                "SELECT id, raw, status FROM billing_invoices WHERE id IN "
                f"({', '.join('?' * len(part))})",
                part,
            )
            out.update({r[0]: (r[1], r[2]) for r in rows})
    return out


def same_as_stored(obj: Mapping[str, Any], stored: tuple[str, str] | None) -> bool:
    """Whether ``obj`` is exactly what the ledger holds (``stored``: from stored_invoices)."""
    return stored is not None and stored[0] == _dump(obj)


def billing_objects(
    ledger: Ledger,
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], list[dict[str, Any]]]]]:
    """Every stored subscription, and every stored invoice with all its lines, as Stripe sent
    them, oldest first: the input of :func:`bot.metrics_input.parse_subscription` and
    ``parse_invoice(invoice, lines)``. Read in one transaction, so both sides agree."""
    with ledger.reading() as conn:
        if not _has_tables(conn):
            return [], []
        subs = [
            json.loads(r[0])
            for r in conn.execute("SELECT raw FROM billing_subscriptions ORDER BY created, id")
        ]
        lines: dict[str, list[dict[str, Any]]] = {}
        for invoice_id, raw in conn.execute(
            "SELECT invoice, raw FROM billing_invoice_lines ORDER BY invoice, position"
        ):
            lines.setdefault(invoice_id, []).append(json.loads(raw))
        invoices = [
            (json.loads(r[1]), lines.get(r[0], []))
            for r in conn.execute("SELECT id, raw FROM billing_invoices ORDER BY created, id")
        ]
    return subs, invoices


def billing_counts(ledger: Ledger) -> dict[str, int]:
    """How many subscriptions, invoices and invoice lines the ledger holds."""
    with ledger.reading() as conn:
        if not _has_tables(conn):
            return {"subscriptions": 0, "invoices": 0, "invoice_lines": 0}
        return {
            name: int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            for name, table in (
                ("subscriptions", "billing_subscriptions"),
                ("invoices", "billing_invoices"),
                ("invoice_lines", "billing_invoice_lines"),
            )
        }


def billing_version(ledger: Ledger) -> int:
    """A counter that grows with every change to the stored subscriptions and invoices (0: none
    ever stored)."""
    value = ledger.get_meta(VERSION_KEY)
    return int(value) if value and value.isdigit() else 0


def billing_changed_since(ledger: Ledger, version: int) -> bool:
    """Whether anything stored changed since :func:`billing_version` returned ``version``."""
    return billing_version(ledger) != version


# -- what cannot be read ----------------------------------------------------------------------


def unavailable(ledger: Ledger) -> dict[str, dict[str, str]]:
    """``resource -> {"message", "fix"}`` for each resource the last sync could not read."""
    value = ledger.get_meta(UNAVAILABLE_KEY)
    try:
        data = json.loads(value) if value else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def set_unavailable(ledger: Ledger, resource: str, note: Mapping[str, str] | None) -> bool:
    """Record why ``resource`` cannot be read (``None``: it can again); whether this changed
    what was recorded, i.e. whether it is news worth a warning."""
    with ledger.transaction() as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (UNAVAILABLE_KEY,)).fetchone()
        try:
            notes = json.loads(row[0]) if row else {}
        except ValueError:
            notes = {}
        if not isinstance(notes, dict):
            notes = {}
        before = notes.get(resource)
        if note is None:
            notes.pop(resource, None)
        else:
            notes[resource] = dict(note)
        if notes.get(resource) == before:
            return False
        ledger.set_meta(conn, UNAVAILABLE_KEY, json.dumps(notes, sort_keys=True))
        return True
