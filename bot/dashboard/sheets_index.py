"""The Google Sheet dashboard's key index: a small SQLite file (``DATA_DIR/.sheet-index.sqlite``).

It records which key each data row of our tabs holds, by row position, as revbot last wrote or
read it, and on Transactions each row's local day. With it a daily run plans its write from the
index after checking a few cells, instead of reading every key of a tab that grows every day,
and finds the oldest days to remove without reading them.

It is a cache, never a source. The dashboard checks it against the sheet on each run and
rebuilds it from a full read of the keys whenever it is missing, of another spreadsheet, or
wrong (a founder sorted, inserted or deleted rows); a damaged file is replaced. It is changed
only after a write succeeded, so a failed or killed write leaves the index of the sheet as it
was before, which the next check either finds still true or rejects.

Tables: ``meta`` (the format's version), ``tabs`` (one row per spreadsheet and tab: the sheet id,
how many data rows, and ``base``), ``keys`` (one row per data row holding a key: its tab,
``seq``, the key as a JSON list, the day as an ordinal or NULL). A row's position in the grid
(1 is the first row under the header) is ``seq - base``: removing the oldest rows at the top,
what a daily trim does, moves ``base`` instead of renumbering every row.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Protocol

from bot.dashboard.base import immediate

log = logging.getLogger(__name__)

Key = tuple[str, ...]
Ranges = Sequence[tuple[int, int]]  # half-open ranges of grid rows, ascending, not overlapping

VERSION = "1"
_BATCH = 500  # SQL parameters per query

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tabs (
    id INTEGER PRIMARY KEY, spreadsheet_id TEXT NOT NULL, title TEXT NOT NULL,
    sheet_id INTEGER NOT NULL, rows INTEGER NOT NULL, base INTEGER NOT NULL,
    UNIQUE (spreadsheet_id, title)
);
CREATE TABLE IF NOT EXISTS keys (
    tab INTEGER NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL, day INTEGER
);
CREATE INDEX IF NOT EXISTS keys_seq ON keys (tab, seq);
CREATE INDEX IF NOT EXISTS keys_key ON keys (tab, key);
CREATE INDEX IF NOT EXISTS keys_day ON keys (tab, day);
"""


def _text(key: Key) -> str:
    # ASCII JSON: any text a founder typed in a key cell is stored, lone surrogates included.
    return json.dumps(list(key), separators=(",", ":"))


def _key(text: str) -> Key:
    return tuple(str(part) for part in json.loads(text))


def removed_before(ranges: Ranges, position: int) -> int:
    """How many of the removed rows ``ranges`` lie above ``position``."""
    return sum(min(end, position) - start for start, end in ranges if start < position)


class TabRows(Protocol):
    """The data rows of one tab as known before a write, by grid row (1 is under the header).

    ``count`` is the position of the last row holding a key (0: none); rows above it may be
    empty. Answers cost what is asked, not what the tab holds, for the index."""

    count: int

    def find(self, keys: Collection[Key]) -> dict[Key, int]:
        """The first position of each of ``keys`` found in the tab."""
        ...

    def keys_at(self, positions: Collection[int]) -> dict[int, Key]:
        """The key at each of ``positions`` that holds one."""
        ...

    def positions_before(self, day: date) -> list[int]:
        """The positions of the rows of days before ``day``, ascending."""
        ...

    def days_from(self, day: date | None) -> Iterator[tuple[date, int]]:
        """(day, rows) of each day from ``day`` on (every day if None), oldest first."""
        ...


class ReadRows:
    """A tab's rows as a full read of its key columns found them (or a new, empty tab)."""

    def __init__(
        self, keys: Sequence[Key | None] = (), days: Sequence[date | None] | None = None
    ) -> None:
        last = max((i for i, k in enumerate(keys) if k is not None), default=-1)
        self.keys = list(keys[: last + 1])
        self.days = list((days or [])[: last + 1])
        self.days += [None] * (len(self.keys) - len(self.days))
        self.count = len(self.keys)
        self._first: dict[Key, int] = {}
        for i, key in enumerate(self.keys):
            if key is not None:
                self._first.setdefault(key, i + 1)

    def find(self, keys: Collection[Key]) -> dict[Key, int]:
        return {k: self._first[k] for k in keys if k in self._first}

    def keys_at(self, positions: Collection[int]) -> dict[int, Key]:
        out: dict[int, Key] = {}
        for p in positions:
            key = self.keys[p - 1] if 1 <= p <= self.count else None
            if key is not None:
                out[p] = key
        return out

    def positions_before(self, day: date) -> list[int]:
        return [i + 1 for i, d in enumerate(self.days) if d is not None and d < day]

    def days_from(self, day: date | None) -> Iterator[tuple[date, int]]:
        counts: dict[date, int] = {}
        for d in self.days:
            if d is not None and (day is None or d >= day):
                counts[d] = counts.get(d, 0) + 1
        yield from sorted(counts.items())

    def after(
        self, removed: Ranges, inserted: Sequence[tuple[int, Key, date | None]]
    ) -> list[tuple[Key | None, date | None]]:
        """The rows once ``removed`` are gone and ``inserted`` are written."""
        gone = {p for start, end in removed for p in range(start, end)}
        rows = [(k, d) for p, (k, d) in enumerate(zip(self.keys, self.days, strict=True), 1)
                if p not in gone]  # fmt: skip
        for position, key, day in inserted:
            rows += [(None, None)] * (position - len(rows))
            rows[position - 1] = (key, day)
        return rows


class IndexedRows:
    """A tab's rows as the index holds them; every answer is one indexed query."""

    def __init__(self, conn: sqlite3.Connection, tab: int, count: int, base: int) -> None:
        self._conn = conn
        self.tab = tab
        self.count = count
        self.base = base
        # An apply asks for the same keys up to three times (check, trim, plan): once is enough.
        self._found: dict[Key, int | None] = {}

    def find(self, keys: Collection[Key]) -> dict[Key, int]:
        texts = {_text(k): k for k in keys if k not in self._found}
        for k in texts.values():
            self._found[k] = None
        items = list(texts)
        for i in range(0, len(items), _BATCH):
            batch = items[i : i + _BATCH]
            marks = ",".join("?" * len(batch))
            sql = f"SELECT key, MIN(seq) FROM keys WHERE tab = ? AND key IN ({marks}) GROUP BY key"
            for text, seq in self._conn.execute(sql, (self.tab, *batch)):
                self._found[texts[text]] = int(seq) - self.base
        return {k: p for k in keys if (p := self._found[k]) is not None}

    def keys_at(self, positions: Collection[int]) -> dict[int, Key]:
        seqs = [p + self.base for p in positions]
        out: dict[int, Key] = {}
        for i in range(0, len(seqs), _BATCH):
            batch = seqs[i : i + _BATCH]
            marks = ",".join("?" * len(batch))
            sql = f"SELECT seq, key FROM keys WHERE tab = ? AND seq IN ({marks})"
            for seq, text in self._conn.execute(sql, (self.tab, *batch)):
                out[int(seq) - self.base] = _key(text)
        return out

    def positions_before(self, day: date) -> list[int]:
        cur = self._conn.execute(
            "SELECT seq FROM keys WHERE tab = ? AND day < ? ORDER BY seq",
            (self.tab, day.toordinal()),
        )
        return [int(seq) - self.base for (seq,) in cur]

    def days_from(self, day: date | None) -> Iterator[tuple[date, int]]:
        # Streamed in day order through keys_day: the caller stops at the days it needs.
        cur = self._conn.execute(
            "SELECT day, count(*) FROM keys WHERE tab = ? AND day >= ? GROUP BY day ORDER BY day",
            (self.tab, day.toordinal() if day else 0),
        )
        for ordinal, n in cur:
            yield date.fromordinal(int(ordinal)), int(n)


@dataclass(slots=True)
class TabWrite:
    """What one successful apply did to one tab, for :meth:`SheetIndex.save`.

    ``known`` is what the plan started from (None: a tab created by this write); ``removed``
    the grid rows deleted, as numbered before; ``inserted`` the new rows, numbered after;
    ``dropped``: the tab itself was deleted."""

    title: str
    sheet_id: int
    known: TabRows | None
    removed: list[tuple[int, int]] = field(default_factory=list)
    inserted: list[tuple[int, Key, date | None]] = field(default_factory=list)
    dropped: bool = False


class SheetIndex:
    """One open index file; :meth:`save` changes it in one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Readable by its owner alone, as the ledger; SQLite gives its journal the same mode.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        self.conn = sqlite3.connect(path, isolation_level=None)
        try:
            self._start()
        except sqlite3.DatabaseError:
            # Not an index of ours (damaged, or another file): it is a cache, start again.
            log.warning("%s is not a usable sheet index; rebuilding it", path)
            self.conn.close()
            path.unlink(missing_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            self.conn = sqlite3.connect(path, isolation_level=None)
            self._start()

    def _start(self) -> None:
        self.conn.executescript(_SCHEMA)
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        if row is None or row[0] != VERSION:
            with self._transaction():
                self.conn.execute("DELETE FROM keys")
                self.conn.execute("DELETE FROM tabs")
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (VERSION,))

    def close(self) -> None:
        self.conn.close()

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        return immediate(self.conn)

    def rows(self, spreadsheet_id: str, title: str, sheet_id: int) -> IndexedRows | None:
        """The tab's rows as indexed; None when the index has no such tab, or one of another
        sheet id (the tab was deleted and created again since)."""
        found = self.conn.execute(
            "SELECT id, sheet_id, rows, base FROM tabs WHERE spreadsheet_id = ? AND title = ?",
            (spreadsheet_id, title),
        ).fetchone()
        if found is None or int(found[1]) != sheet_id:
            return None
        return IndexedRows(self.conn, int(found[0]), int(found[2]), int(found[3]))

    def save(self, spreadsheet_id: str, writes: Sequence[TabWrite]) -> None:
        """Record what a successful apply did (and forget any other spreadsheet)."""
        with self._transaction():
            self.conn.execute(
                "DELETE FROM keys WHERE tab IN (SELECT id FROM tabs WHERE spreadsheet_id != ?)",
                (spreadsheet_id,),
            )
            self.conn.execute("DELETE FROM tabs WHERE spreadsheet_id != ?", (spreadsheet_id,))
            for write in writes:
                self._save_tab(spreadsheet_id, write)

    def _save_tab(self, spreadsheet_id: str, write: TabWrite) -> None:
        known = write.known
        if isinstance(known, IndexedRows) and not write.dropped:
            self._change(known, write)
            return
        found = self.conn.execute(
            "SELECT id FROM tabs WHERE spreadsheet_id = ? AND title = ?",
            (spreadsheet_id, write.title),
        ).fetchone()
        if found is not None:
            self.conn.execute("DELETE FROM keys WHERE tab = ?", (found[0],))
            self.conn.execute("DELETE FROM tabs WHERE id = ?", (found[0],))
        if write.dropped:
            return
        start = known if isinstance(known, ReadRows) else ReadRows()
        rows = start.after(write.removed, write.inserted)
        cur = self.conn.execute(
            "INSERT INTO tabs (spreadsheet_id, title, sheet_id, rows, base) VALUES (?, ?, ?, ?, 0)",
            (spreadsheet_id, write.title, write.sheet_id, len(rows)),
        )
        tab = cur.lastrowid
        self.conn.executemany(
            "INSERT INTO keys VALUES (?, ?, ?, ?)",
            (
                (tab, position, _text(key), day.toordinal() if day else None)
                for position, (key, day) in enumerate(rows, 1)
                if key is not None
            ),
        )

    def _change(self, known: IndexedRows, write: TabWrite) -> None:
        tab, base = known.tab, known.base
        removed = sorted(write.removed)
        for start, end in removed:
            self.conn.execute(
                "DELETE FROM keys WHERE tab = ? AND seq >= ? AND seq < ?",
                (tab, start + base, end + base),
            )
        # The rows below each removed range move up: the top range by moving base (the usual
        # daily trim), the others by renumbering what is below them, the lowest range last.
        top = removed[0][1] - 1 if removed and removed[0][0] == 1 else 0
        for start, end in reversed(removed[1:] if top else removed):
            self.conn.execute(
                "UPDATE keys SET seq = seq - ? WHERE tab = ? AND seq >= ?",
                (end - start, tab, end + base),
            )
        base += top
        count = known.count - removed_before(removed, known.count + 1)
        count = max([count, *(p for p, _, _ in write.inserted)])
        self.conn.executemany(
            "INSERT INTO keys VALUES (?, ?, ?, ?)",
            (
                (tab, position + base, _text(key), day.toordinal() if day else None)
                for position, key, day in write.inserted
            ),
        )
        self.conn.execute(
            "UPDATE tabs SET rows = ?, base = ?, sheet_id = ? WHERE id = ?",
            (count, base, write.sheet_id, tab),
        )


def open_index(path: Path | None) -> SheetIndex | None:
    """The index at ``path`` (None: no index); an index that cannot be opened is skipped with a
    warning, and the dashboard reads every key as it would without one."""
    if path is None:
        return None
    try:
        return SheetIndex(path)
    except (sqlite3.Error, OSError) as e:
        log.warning("cannot open the sheet index %s (%s); reading every key", path, e)
        return None


__all__ = [
    "IndexedRows",
    "Key",
    "ReadRows",
    "SheetIndex",
    "TabRows",
    "TabWrite",
    "open_index",
    "removed_before",
]
