"""What the fast workbook writer keeps between runs: ``DATA_DIR/.dashboard.xlsx.cache``.

A SQLite file next to the workbook, owned by :class:`~bot.dashboard.workbook.WorkbookDashboard`
and rebuilt from the ledger whenever it is missing or doubtful (it is a cache, never a source):

- ``rows``: the XML of each Daily, Monthly, Metrics and Payouts row, by key, with the value its
  chart plots (``net``: net revenue; MRR for Metrics; none for Payouts) and the ``period`` it
  is ordered by (its first key column; a payout's local creation time);
- ``txns``: each Transactions row's id, local day, sort key and a digest of its XML;
- ``chunks``: each day of Transactions as one compressed piece (:mod:`bot.dashboard.xlsx_parts`),
  so a run re-renders the days it changes and copies every other day's bytes as they are;
- ``meta``: the number formats in use (an append-only list), the cellXfs index they start at,
  the tabs the workbook has, and the SHA-256 of the last files written, by which a run knows
  the workbook on disk is still one revbot wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from bot.dashboard.base import immediate
from bot.dashboard.xlsx_parts import Part

VERSION = "2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    tab TEXT NOT NULL, key TEXT NOT NULL, digest BLOB NOT NULL, xml TEXT NOT NULL,
    xml_check BLOB NOT NULL,
    period TEXT NOT NULL, currency TEXT NOT NULL, net REAL,
    PRIMARY KEY (tab, key)
);
CREATE TABLE IF NOT EXISTS txns (
    id TEXT PRIMARY KEY, day TEXT NOT NULL, sort TEXT NOT NULL, digest BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS txns_day ON txns (day, sort);
CREATE TABLE IF NOT EXISTS chunks (
    day TEXT PRIMARY KEY, nrows INTEGER NOT NULL, size INTEGER NOT NULL, crc INTEGER NOT NULL,
    data BLOB NOT NULL, data_check BLOB NOT NULL
);
"""


def check(data: bytes) -> bytes:
    """What a stored piece or row is checked against when read back: a damaged cache is
    rebuilt, never copied into the workbook."""
    return hashlib.blake2b(data, digest_size=16).digest()


def _part(data: bytes, size: int, crc: int, stored: bytes) -> Part:
    if check(bytes(data)) != bytes(stored):
        raise ValueError("a cached piece of the Transactions tab is damaged")
    return Part(bytes(data), int(size), int(crc))


class WorkbookCache:
    """One open cache; every change happens inside :meth:`transaction`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fresh = not path.exists()
        if fresh:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        self.conn = sqlite3.connect(path, isolation_level=None)
        try:
            self.conn.executescript(_SCHEMA)
            if self.get("version") != VERSION:
                self._clear()
        except sqlite3.DatabaseError:  # not a cache of ours (damaged): start again
            self.conn.close()
            path.unlink(missing_ok=True)
            self.conn = sqlite3.connect(path, isolation_level=None)
            self.conn.executescript(_SCHEMA)
            self._clear()

    def close(self) -> None:
        self.conn.close()

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return immediate(self.conn)

    def _clear(self) -> None:
        for table in ("meta", "rows", "txns", "chunks"):
            self.conn.execute(f"DELETE FROM {table}")
        self.conn.execute("INSERT INTO meta VALUES ('version', ?)", (VERSION,))

    def reset(self) -> None:
        """Forget everything (the caller holds a transaction): the workbook starts anew."""
        self._clear()

    # -- meta -------------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def get_json(self, key: str, default: Any) -> Any:
        text = self.get(key)
        return default if text is None else json.loads(text)

    def put_json(self, key: str, value: Any) -> None:
        self.put(key, json.dumps(value))

    # -- Daily, Monthly, Metrics and Payouts rows -----------------------------------------------

    def row_digest(self, tab: str, key: str) -> bytes | None:
        row = self.conn.execute(
            "SELECT digest FROM rows WHERE tab = ? AND key = ?", (tab, key)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def put_row(
        self,
        tab: str,
        key: str,
        digest: bytes,
        xml: str,
        *,
        period: str,
        currency: str,
        net: float | None,
    ) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (tab, key, digest, xml, check(xml.encode()), period, currency, net),
        )

    def rows_xml(self, tab: str) -> list[str]:
        cur = self.conn.execute(
            "SELECT xml, xml_check FROM rows WHERE tab = ? ORDER BY period, key", (tab,)
        )
        out = []
        for xml, stored in cur:
            if check(str(xml).encode()) != bytes(stored):
                raise ValueError(f"a cached row of {tab} is damaged")
            out.append(str(xml))
        return out

    def chart_points(self, tab: str) -> list[tuple[str, str, float | None]]:
        cur = self.conn.execute(
            "SELECT period, currency, net FROM rows WHERE tab = ? ORDER BY key", (tab,)
        )
        return [(str(p), str(c), n) for p, c, n in cur]

    def restyle_rows(self, remap: Any) -> None:
        """Apply ``remap`` (xml -> xml) to every stored row."""
        for tab, key, xml in list(self.conn.execute("SELECT tab, key, xml FROM rows")):
            new = remap(xml)
            self.conn.execute(
                "UPDATE rows SET xml = ?, xml_check = ? WHERE tab = ? AND key = ?",
                (new, check(new.encode()), tab, key),
            )

    # -- Transactions -----------------------------------------------------------------------

    def txn_digests(self, ids: Iterable[str]) -> dict[str, tuple[str, bytes]]:
        """(day, digest) of each id already in the tab."""
        out: dict[str, tuple[str, bytes]] = {}
        ids = list(ids)
        for i in range(0, len(ids), 500):
            batch = ids[i : i + 500]
            marks = ",".join("?" * len(batch))
            sql = f"SELECT id, day, digest FROM txns WHERE id IN ({marks})"
            for tid, day, digest in self.conn.execute(sql, batch):
                out[str(tid)] = (str(day), bytes(digest))
        return out

    def day_ids(self, day: str) -> list[str]:
        cur = self.conn.execute("SELECT id FROM txns WHERE day = ? ORDER BY sort, id", (day,))
        return [str(r[0]) for r in cur]

    def put_txn(self, tid: str, day: str, sort: str, digest: bytes) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO txns VALUES (?, ?, ?, ?)", (tid, day, sort, digest)
        )

    def drop_txn(self, tid: str) -> None:
        self.conn.execute("DELETE FROM txns WHERE id = ?", (tid,))

    def chunk(self, day: str) -> Part | None:
        row = self.conn.execute(
            "SELECT data, size, crc, data_check FROM chunks WHERE day = ?", (day,)
        ).fetchone()
        return None if row is None else _part(*row)

    def put_chunk(self, day: str, nrows: int, part: Part) -> None:
        if nrows == 0:
            self.conn.execute("DELETE FROM chunks WHERE day = ?", (day,))
            return
        self.conn.execute(
            "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
            (day, nrows, part.size, part.crc, part.data, check(part.data)),
        )

    def day_sizes(self) -> list[tuple[str, int]]:
        """(day, rows) of every day in the tab, oldest first."""
        return [
            (str(d), int(n))
            for d, n in self.conn.execute("SELECT day, nrows FROM chunks ORDER BY day")
        ]

    def chunks_from(self, first: str | None) -> Iterator[Part]:
        """The pieces of the days from ``first`` on (every day if None), oldest first."""
        cur = self.conn.execute(
            "SELECT data, size, crc, data_check FROM chunks WHERE day >= ? ORDER BY day",
            (first or "",),
        )
        for row in cur:
            yield _part(*row)

    def drop_days_before(self, first: str) -> int:
        """Forget the days before ``first``; how many rows they held."""
        (n,) = self.conn.execute("SELECT count(*) FROM txns WHERE day < ?", (first,)).fetchone()
        self.conn.execute("DELETE FROM txns WHERE day < ?", (first,))
        self.conn.execute("DELETE FROM chunks WHERE day < ?", (first,))
        return int(n)

    def drop_transactions(self) -> None:
        self.conn.execute("DELETE FROM txns")
        self.conn.execute("DELETE FROM chunks")

    def all_chunk_days(self) -> list[str]:
        return [str(r[0]) for r in self.conn.execute("SELECT day FROM chunks ORDER BY day")]
