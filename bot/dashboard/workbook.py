"""The local workbook dashboard, ``DATA_DIR/dashboard.xlsx``.

Same tabs, columns and cell meaning as the Google Sheet. Rows are upserted by key; a row whose
cells did not change is left as it is, so re-running a day leaves the file's rows identical.
The file is replaced atomically: a crash leaves the old workbook or the new one.

Two ways to write it:

- fast (:mod:`bot.dashboard.workbook_fast`), whenever the file on disk is one revbot wrote (its
  SHA-256 is among the last ones recorded in the cache) or there is none yet: the file is made
  anew from the cache, and a run costs the rows it changes, not the history;
- through openpyxl, reading the file and writing it back whole, once a founder has changed it
  (a tab of their own, a highlight, a column): slower on a big account, but every change of
  theirs is kept. Deleting the workbook brings the fast way back: it is rebuilt from the ledger.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import logging
import os
import sqlite3
import sys
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from bot.dashboard.base import (
    CHART_COLUMN,
    DAILY,
    METRICS,
    MONTHLY,
    TRANSACTIONS,
    XLSX_CELL_LIMIT,
    XLSX_ROW_LIMIT,
    Cell,
    DashboardUpdate,
    Row,
    TabSpec,
    TransactionRow,
    WriteResult,
    cells,
    key_of,
    sink_text,
)
from bot.dashboard.workbook_cache import WorkbookCache
from bot.dashboard.workbook_fast import FastWriter, Series, add_charts, ensure_tab
from bot.dashboard.xlsx_parts import DATE_FORMAT, DATETIME_FORMAT, PCT_FORMAT
from bot.errors import ServiceError
from bot.money import number_format

if TYPE_CHECKING:
    from openpyxl import Workbook
    from openpyxl.worksheet.worksheet import Worksheet

log = logging.getLogger(__name__)

KEEP_DIGESTS = 3  # files written lately that still count as revbot's own


def cell_value(cell: Cell) -> tuple[Any, str | None]:
    """(value openpyxl stores, number format) for a typed cell."""
    v = cell.value
    if v is None:
        return None, None
    if cell.kind == "money":
        assert isinstance(v, Decimal) and cell.currency
        # The only float in revbot: the cell itself. Decimal -> float is exact enough for
        # display (≤ 15 significant digits); the ledger keeps the exact integers.
        return float(v), number_format(cell.currency)
    if cell.kind == "pct":
        assert isinstance(v, Decimal)
        return float(v), PCT_FORMAT
    if cell.kind == "bool":
        return ("yes" if v else "no"), None
    if cell.kind == "datetime":
        assert isinstance(v, datetime)
        return v.replace(tzinfo=None), DATETIME_FORMAT
    if cell.kind == "date":
        return v, DATE_FORMAT
    if isinstance(v, str):
        return sink_text(v, XLSX_CELL_LIMIT), None
    return v, None


def _key_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else str(value)


class WorkbookDashboard:
    def __init__(self, path: Path, *, row_limit: int = XLSX_ROW_LIMIT) -> None:
        self.path = path
        self.row_limit = row_limit  # rows of a sheet, header included (a test makes it small)

    def describe(self) -> str:
        return str(self.path)

    @property
    def cache_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.cache")

    def _load(self) -> Workbook:
        from openpyxl import Workbook, load_workbook

        if not self.path.exists():
            wb = Workbook()
            assert wb.active is not None
            wb.remove(wb.active)
            return wb
        try:
            return load_workbook(self.path)
        except (zipfile.BadZipFile, KeyError, OSError, ValueError) as e:
            raise ServiceError(
                f"{self.path} is not a valid xlsx workbook ({type(e).__name__}); move it aside "
                "and run `revbot daily` again to rebuild it from the ledger"
            ) from e

    def read_rows(self, title: str) -> list[tuple[Any, ...]]:
        """Data rows of one tab (header excluded), for tests and for the Charts tab."""
        if not self.path.exists():
            return []
        wb = self._load()
        if title not in wb.sheetnames:
            return []
        ws = wb[title]
        return [tuple(r) for r in ws.iter_rows(min_row=2, values_only=True)]

    def apply(self, update: DashboardUpdate) -> WriteResult:
        self._remove_stale_temp_files()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            cache = WorkbookCache(self.cache_path)
        except (OSError, sqlite3.Error) as e:
            log.info("cannot open %s (%s): writing through openpyxl", self.cache_path, e)
            return self._apply_openpyxl(update)
        try:
            on_disk = _sha256(self.path) if self.path.exists() else None
            ours = cache.get_json("written", [])
            if on_disk is not None and on_disk not in ours and not self._was_ours(on_disk):
                cache.close()
                self.cache_path.unlink(missing_ok=True)  # stale from now on
                log.info(
                    "%s was changed outside revbot: it is read and written back whole, to keep "
                    "those changes (slower on a big account; delete the file to have it rebuilt "
                    "from the ledger)",
                    self.path,
                )
                return self._apply_openpyxl(update)
            try:
                return self._apply_fast(cache, update, fresh=on_disk not in ours)
            except (ValueError, sqlite3.DatabaseError) as e:  # a damaged cache: start again
                log.info("rebuilding %s from the ledger (%s)", self.path, e)
                return self._apply_fast(cache, update, fresh=True)
        finally:
            cache.close()

    def _was_ours(self, digest: str) -> bool:
        """The workbook as an earlier version of revbot left it (its snapshot names the file's
        SHA-256): rebuilt from the ledger once, then written the fast way."""
        old = self.path.with_name(f".{self.path.name}.snapshot")
        try:
            return bool(json.loads(old.read_bytes()).get("sha256") == digest)
        except (OSError, ValueError, AttributeError):
            return False

    def _apply_fast(
        self, cache: WorkbookCache, update: DashboardUpdate, *, fresh: bool
    ) -> WriteResult:
        with cache.transaction():
            if fresh:
                cache.reset()  # every tab is new: the caller refills them from the ledger
            writer = FastWriter(cache, row_limit=self.row_limit)
            fd, tmp = tempfile.mkstemp(prefix=".dashboard-", suffix=".xlsx", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    out = _Hashing(fh)
                    result = writer.write(update, out)
                digest = out.hexdigest()
                # Recorded before the file takes its place: a crash in between leaves a cache
                # that knows both the old file and the new one.
                ours = cache.get_json("written", [])
                cache.put_json("written", [*ours, digest][-KEEP_DIGESTS:])
            except OSError as e:
                Path(tmp).unlink(missing_ok=True)
                raise self._save_error(e) from e
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        try:
            os.replace(tmp, self.path)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise self._save_error(e) from e
        self.path.with_name(f".{self.path.name}.snapshot").unlink(missing_ok=True)
        result.location = str(self.path)
        return result

    def _apply_openpyxl(self, update: DashboardUpdate) -> WriteResult:
        wb = self._load()
        result = WriteResult(location=str(self.path))
        tabs = update.tabs(wb.sheetnames)
        result.created = tuple(t.title for t in tabs if t.title not in wb.sheetnames)
        if not update.keep_transactions and TRANSACTIONS.title in wb.sheetnames:
            wb.remove(wb[TRANSACTIONS.title])
        for tab in tabs:
            ws = ensure_tab(wb, tab)
            rows = update.rows_for(tab)
            if tab is TRANSACTIONS and update.transactions_from is not None:
                first = update.transactions_from
                rows = [
                    r for r in rows if isinstance(r, TransactionRow) and r.created.date() >= first
                ]
                _delete_rows_before(ws, first)
            ins, upd, _ = _upsert(ws, tab, rows)
            result.inserted[tab.title] = ins
            result.updated[tab.title] = upd
            if tab is TRANSACTIONS:
                result.trimmed = _fit_rows(ws, self.row_limit)
        add_charts(wb, _series(wb))
        self._save(wb)
        return result

    def _remove_stale_temp_files(self) -> None:
        """Temp files a killed save left behind. Only the run holding the lock writes the
        workbook, so any that exist now belong to a run that is gone."""
        for pattern in (".dashboard-*.xlsx", ".dashboard-*.snapshot"):
            for stale in self.path.parent.glob(pattern):
                with contextlib.suppress(OSError):
                    stale.unlink()
                    log.info("removed %s, left by an interrupted save", stale.name)

    def _save(self, wb: Workbook) -> None:
        """Replace the file atomically."""
        fd, tmp = tempfile.mkstemp(prefix=".dashboard-", suffix=".xlsx", dir=self.path.parent)
        os.close(fd)
        failure: ServiceError | None = None
        hook = sys.unraisablehook
        try:
            wb.save(tmp)
            os.replace(tmp, self.path)
        except OSError as e:
            # openpyxl leaves its ZipFile open when a write fails; freed with this exception,
            # the file would try to write its directory again and print a second traceback
            # ("Exception ignored in ZipFile.__del__"). The failure is reported once, below.
            sys.unraisablehook = lambda _: None
            Path(tmp).unlink(missing_ok=True)
            failure = self._save_error(e)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if failure is not None:
            gc.collect()
            sys.unraisablehook = hook
            raise failure

    def _save_error(self, e: OSError) -> ServiceError:
        return ServiceError(
            f"cannot save {self.path} ({e.strerror or type(e).__name__}); "
            + (
                "free some space on that disk and run the command again"
                if e.errno in (errno.ENOSPC, errno.EDQUOT)
                else "check DATA_DIR and run the command again"
            )
            + " (the ledger kept everything; the dashboard catches up then)"
        )


class _Hashing:
    """A binary file that hashes what goes through it."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self._sha.update(data)
        return self._fh.write(data)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _plain(value: Any) -> Any:
    """A cell's value as written or as read back: openpyxl reads a date cell as a datetime."""
    if isinstance(value, datetime) and value.tzinfo is None and value.time() == time():
        return value.date()
    return value


def _write_cell(ws: Worksheet, r: int, c: int, cell: Cell) -> None:
    value, fmt = cell_value(cell)
    target = ws.cell(r, c)
    target.value = value
    if cell.kind == "text" and isinstance(value, str):
        # openpyxl turns any string starting with "=" into a formula; Stripe text must stay
        # literal text whatever it looks like.
        target.data_type = "s"
    if fmt:
        target.number_format = fmt
    elif value is None:
        # An emptied cell (a rate whose denominator became 0) loses the format it had, as in
        # the file made from the cache.
        target.number_format = "General"


def _same(ws: Worksheet, r: int, row_cells: Sequence[Cell], compare: int) -> bool:
    for c, cell in enumerate(row_cells[:compare], 1):
        value, _ = cell_value(cell)
        if _plain(ws.cell(r, c).value) != _plain(value):
            return False
    return True


def _upsert(ws: Worksheet, tab: TabSpec, rows: Sequence[Row]) -> tuple[int, int, list[int]]:
    """Insert or update ``rows``; returns (inserted, updated, the row numbers written)."""
    index: dict[tuple[str, ...], int] = {}
    for r, values in enumerate(
        ws.iter_rows(min_row=2, max_col=tab.key_width, values_only=True), start=2
    ):
        if values and values[0] is not None:
            index[tuple(_key_text(v) for v in values)] = r
    # Daily's last column, updated_at, says when the figures changed: it is not compared.
    compare = len(tab.columns) - 1 if tab is DAILY else len(tab.columns)
    next_row = max(index.values(), default=1) + 1
    inserted = updated = 0
    written: list[int] = []
    for row in rows:
        key = key_of(row)
        row_cells = cells(row)
        found = index.get(key)
        if found is None:
            r = next_row
            next_row += 1
            index[key] = r
            inserted += 1
        elif _same(ws, found, row_cells, compare):
            continue
        else:
            r = found
            updated += 1
        for c, cell in enumerate(row_cells, 1):
            _write_cell(ws, r, c, cell)
        written.append(r)
    return inserted, updated, written


def _series(wb: Workbook) -> Series:
    """Daily and Monthly net revenue, and Metrics' MRR, per currency, as the tabs hold them."""
    series: Series = []
    for tab in (DAILY, MONTHLY, METRICS):
        if tab.title not in wb.sheetnames:
            continue  # Metrics, on an account without subscriptions
        col = tab.columns.index(CHART_COLUMN[tab.title])
        per_ccy: dict[str, dict[Any, float]] = defaultdict(dict)
        for values in wb[tab.title].iter_rows(min_row=2, values_only=True):
            if values and values[0] is not None and values[1]:
                per_ccy[str(values[1])][_plain(values[0])] = cast(float, values[col])
        series.append((tab.title, per_ccy))
    return series


def _row_day(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else None


def _delete_rows_before(ws: Worksheet, first: date) -> None:
    """Remove the Transactions rows of days before ``first`` (by ``created``)."""
    col = TRANSACTIONS.columns.index("created") + 1
    old = [
        r
        for r, (value,) in enumerate(
            ws.iter_rows(min_row=2, min_col=col, max_col=col, values_only=True), start=2
        )
        if (d := _row_day(value)) is not None and d < first
    ]
    _delete(ws, old)


def _delete(ws: Worksheet, rows: Sequence[int]) -> None:
    """Delete ``rows`` (numbers, ascending), as few runs as possible, from the bottom up."""
    runs: list[list[int]] = []
    for r in rows:
        if runs and r == runs[-1][1] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    for start, end in reversed(runs):
        ws.delete_rows(start, end - start + 1)


def _fit_rows(ws: Worksheet, limit: int) -> str | None:
    """Keep Transactions within ``limit`` rows (header included): its oldest days go."""
    if ws.max_row <= limit:
        return None
    col = TRANSACTIONS.columns.index("created") + 1
    days = [
        (_row_day(v) or date.min, r)
        for r, (v,) in enumerate(
            ws.iter_rows(min_row=2, min_col=col, max_col=col, values_only=True), start=2
        )
    ]
    per_day: dict[date, int] = defaultdict(int)
    for d, _ in days:
        per_day[d] += 1
    room, kept, first = limit - 1, 0, date.max
    for d in sorted(per_day, reverse=True):
        if kept + per_day[d] > room:
            break
        kept += per_day[d]
        first = d
    _delete(ws, sorted(r for d, r in days if d < first))
    return (
        f"Transactions keeps the days from {first} on ({kept:,} rows): an xlsx sheet holds "
        f"at most {limit:,} rows (the ledger keeps every transaction)"
    )
