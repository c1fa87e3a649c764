"""The local workbook dashboard, ``DATA_DIR/dashboard.xlsx`` (openpyxl).

Same tabs, columns and cell meaning as the Google Sheet. Rows are upserted by key; a row whose
cells did not change is left as it is, so re-running a day leaves the file's rows identical.
The file is replaced atomically: a crash leaves the old workbook or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import logging
import os
import sys
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bot.dashboard.base import (
    CHARTS_TITLE,
    DAILY,
    MONTHLY,
    TABS,
    XLSX_CELL_LIMIT,
    Cell,
    DashboardUpdate,
    Row,
    TabSpec,
    WriteResult,
    cells,
    key_of,
    sink_text,
)
from bot.errors import ServiceError
from bot.money import number_format

if TYPE_CHECKING:
    from openpyxl import Workbook
    from openpyxl.worksheet.worksheet import Worksheet

log = logging.getLogger(__name__)

DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
PCT_FORMAT = "0.0%"


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
    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return str(self.path)

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
        snapshot = self._read_snapshot()
        wb = self._rebuild(snapshot) if snapshot is not None else self._load()
        result = WriteResult(location=str(self.path))
        created = tuple(t.title for t in TABS if t.title not in wb.sheetnames)
        result.created = created
        written: dict[str, list[int]] = {}
        for tab in TABS:
            ws = _ensure_tab(wb, tab)
            ins, upd, written[tab.title] = _upsert(ws, tab, update.rows_for(tab))
            result.inserted[tab.title] = ins
            result.updated[tab.title] = upd
        _rebuild_charts(wb)
        digest = self._save(wb)
        self._keep_snapshot(wb, digest, snapshot, written)
        return result

    def _remove_stale_temp_files(self) -> None:
        """Temp files a killed save left behind. Only the run holding the lock writes the
        workbook, so any that exist now belong to a run that is gone."""
        for pattern in (".dashboard-*.xlsx", ".dashboard-*.snapshot"):
            for stale in self.path.parent.glob(pattern):
                with contextlib.suppress(OSError):
                    stale.unlink()
                    log.info("removed %s, left by an interrupted save", stale.name)

    def _save(self, wb: Workbook) -> str:
        """Replace the file atomically; returns its SHA-256."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".dashboard-", suffix=".xlsx", dir=self.path.parent)
        os.close(fd)
        failure: ServiceError | None = None
        hook = sys.unraisablehook
        try:
            wb.save(tmp)
            digest = _sha256(Path(tmp))
            os.replace(tmp, self.path)
        except OSError as e:
            # openpyxl leaves its ZipFile open when a write fails; freed with this exception,
            # the file would try to write its directory again and print a second traceback
            # ("Exception ignored in ZipFile.__del__"). The failure is reported once, below.
            sys.unraisablehook = lambda _: None
            Path(tmp).unlink(missing_ok=True)
            failure = ServiceError(
                f"cannot save {self.path} ({e.strerror or type(e).__name__}); "
                + (
                    "free some space on that disk and run the command again"
                    if e.errno in (errno.ENOSPC, errno.EDQUOT)
                    else "check DATA_DIR and run the command again"
                )
                + " (the ledger kept everything; the dashboard catches up then)"
            )
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if failure is not None:
            gc.collect()
            sys.unraisablehook = hook
            raise failure
        return digest

    # -- the snapshot: the cells revbot last wrote, kept next to the workbook -----------------
    #
    # Reading the xlsx back costs openpyxl as much as writing it (~20 µs a cell), and the file
    # grows with every day of history. So after each save revbot also keeps the values and
    # number formats of its own tabs (plain data as JSON, checked when read back) with the file's
    # SHA-256. While the workbook is still byte for byte that file and holds no tab but
    # revbot's, the next run rebuilds it from the snapshot instead of parsing it. Anything
    # else (a founder's edit or tab, no snapshot, a damaged one) reads the xlsx as before.

    @property
    def _snapshot_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.snapshot")

    def _read_snapshot(self) -> _Snapshot | None:
        if not self.path.exists():
            return None
        try:
            # JSON, never pickle: a file in DATA_DIR is data, and reading it runs nothing.
            data = json.loads(self._snapshot_path.read_bytes())
            snapshot = _decode_snapshot(data)
            if snapshot is None or data["sha256"] != _sha256(self.path):
                return None
            return snapshot
        except (OSError, ValueError, KeyError, TypeError):  # none, damaged: the xlsx is the truth
            return None

    def _rebuild(self, snapshot: _Snapshot) -> Workbook:
        from openpyxl import Workbook

        wb = Workbook()
        assert wb.active is not None
        wb.remove(wb.active)
        for tab in TABS:
            if tab.title not in snapshot.tabs:
                continue
            ws = _ensure_tab(wb, tab)
            rows = snapshot.tabs[tab.title]
            for values, _ in rows:
                ws.append(values)
            for row, (_, codes) in zip(ws.iter_rows(min_row=2), rows, strict=True):
                for cell, code in zip(row, codes, strict=False):
                    if code == _TEXT:
                        cell.data_type = "s"  # literal text, as _write_cell wrote it
                    elif code:
                        cell.number_format = snapshot.formats[code - _FORMATS]
        log.debug("rebuilt %s from its snapshot", self.path)
        return wb

    def _keep_snapshot(
        self,
        wb: Workbook,
        digest: str,
        base: _Snapshot | None,
        written: dict[str, list[int]],
    ) -> None:
        """Save the snapshot of ``wb``: ``base`` with the rows this run wrote, or every row."""
        ours = {t.title for t in TABS} | {CHARTS_TITLE}
        try:
            if not set(wb.sheetnames) <= ours:  # a founder's tab: the xlsx must be read
                self._snapshot_path.unlink(missing_ok=True)
                return
            formats = {f: i + _FORMATS for i, f in enumerate(base.formats if base else ())}

            def code(cell: Any) -> int:
                if cell.data_type == "s":
                    return _TEXT
                if cell.number_format == "General":
                    return 0
                return formats.setdefault(cell.number_format, len(formats) + _FORMATS)

            def entries(ws: Any, width: int, first: int, last: int | None = None) -> list[Any]:
                cells = ws.iter_rows(min_row=first, max_row=last, max_col=width)
                return [(tuple(c.value for c in row), tuple(map(code, row))) for row in cells]

            tabs = {}
            for tab in TABS:
                if tab.title not in wb.sheetnames:
                    continue
                ws, width = wb[tab.title], len(tab.columns)
                rows = list(base.tabs.get(tab.title, ())) if base else []
                if base is None or tab.title not in base.tabs:
                    rows = entries(ws, width, 2)
                for r in sorted(written.get(tab.title, ())):  # new rows come last, in order
                    if r - 2 > len(rows):
                        rows = entries(ws, width, 2)
                        break
                    entry = entries(ws, width, r, r)[0]
                    rows[r - 2 : r - 1] = [entry]
                tabs[tab.title] = rows
            data = {
                "format": _SNAPSHOT_FORMAT,
                "sha256": digest,
                "formats": list(formats),
                "tabs": tabs,
            }
            fd, tmp = tempfile.mkstemp(
                prefix=".dashboard-", suffix=".snapshot", dir=self.path.parent
            )
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(json.dumps(data, default=_json_value, separators=(",", ":")).encode())
                os.replace(tmp, self._snapshot_path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except Exception as e:  # only an optimisation: the next run reads the xlsx
            log.info("could not keep a snapshot of %s (%s)", self.path, type(e).__name__)
            with contextlib.suppress(OSError):
                self._snapshot_path.unlink(missing_ok=True)


@dataclass
class _Snapshot:
    formats: list[str]  # number formats, by code - _FORMATS
    tabs: dict[str, list[tuple[tuple[Any, ...], tuple[int, ...]]]]  # rows: (values, codes)


# A cell's code in a snapshot: 0 General, _TEXT literal text, else formats[code - _FORMATS].
_TEXT, _FORMATS = 1, 2
_SNAPSHOT_FORMAT = 4  # 4: JSON (3 was a pickle, and is never read)
_OWN_TABS = frozenset(t.title for t in TABS)


def _json_value(value: Any) -> Any:
    """A cell value JSON cannot hold as it is: a datetime or a date, tagged."""
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, date):
        return ["d", value.isoformat()]
    raise TypeError(f"a {type(value).__name__} in a snapshot")


_SCALARS = (str, int, float, type(None))


def _cell_from_json(value: Any) -> Any:
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], str):
        if value[0] == "t":
            return datetime.fromisoformat(value[1])
        if value[0] == "d":
            return date.fromisoformat(value[1])
    raise ValueError("not a cell value")


def _decode_snapshot(data: Any) -> _Snapshot | None:
    """The snapshot in ``data`` (parsed JSON), checked cell by cell; None if it is not one."""
    if not isinstance(data, dict) or data.get("format") != _SNAPSHOT_FORMAT:
        return None
    formats, tabs = data.get("formats"), data.get("tabs")
    if not isinstance(data.get("sha256"), str) or not isinstance(formats, list):
        return None
    if not all(isinstance(f, str) for f in formats) or not isinstance(tabs, dict):
        return None
    out: dict[str, list[tuple[tuple[Any, ...], tuple[int, ...]]]] = {}
    limit = len(formats) + _FORMATS
    for title, rows in tabs.items():
        if title not in _OWN_TABS or not isinstance(rows, list):
            return None
        decoded = []
        for row in rows:
            values, codes = row  # ValueError / TypeError: not a snapshot
            if not isinstance(values, list) or not isinstance(codes, list):
                return None
            if not all(type(c) is int and 0 <= c < limit for c in codes):
                return None
            decoded.append((tuple(map(_cell_from_json, values)), tuple(codes)))
        out[title] = decoded
    return _Snapshot(formats=list(formats), tabs=out)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plain(value: Any) -> Any:
    """A cell's value as written or as read back: openpyxl reads a date cell as a datetime."""
    if isinstance(value, datetime) and value.tzinfo is None and value.time() == time():
        return value.date()
    return value


def _ensure_tab(wb: Workbook, tab: TabSpec) -> Worksheet:
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    if tab.title in wb.sheetnames:
        ws = wb[tab.title]
    else:
        ws = wb.create_sheet(tab.title, index=min(TABS.index(tab), len(wb.sheetnames)))
    if ws.max_row < 1 or ws.cell(1, 1).value != tab.columns[0]:
        for col, name in enumerate(tab.columns, 1):
            c = ws.cell(1, col, name)
            c.font = Font(bold=True)
        ws.freeze_panes = "A2"
        for col, name in enumerate(tab.columns, 1):
            letter = get_column_letter(col)
            # Wide enough for a "yyyy-mm-dd hh:mm:ss" or a six-figure amount.
            wide = name in ("updated_at", "created", "available_on", "description")
            ws.column_dimensions[letter].width = max(20 if wide else 13, len(name) + 2)
    return ws


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


def _rebuild_charts(wb: Workbook) -> None:
    """The Charts tab is derived from Daily and Monthly: rebuilt whole on each write."""
    from openpyxl.chart import BarChart, LineChart, Reference

    if CHARTS_TITLE in wb.sheetnames:
        wb.remove(wb[CHARTS_TITLE])
    ws = wb.create_sheet(CHARTS_TITLE)
    net_col_daily = DAILY.columns.index("net_revenue")
    net_col_monthly = MONTHLY.columns.index("net_revenue")
    series: list[tuple[str, dict[str, dict[Any, float]]]] = []
    for title, col in ((DAILY.title, net_col_daily), (MONTHLY.title, net_col_monthly)):
        per_ccy: dict[str, dict[Any, float]] = defaultdict(dict)
        for values in wb[title].iter_rows(min_row=2, values_only=True):
            if values and values[0] is not None and values[1]:
                per_ccy[str(values[1])][_plain(values[0])] = cast(float, values[col])
        series.append((title, per_ccy))

    # A pivot (period x currency) per chart, left of the charts, so each chart has
    # contiguous ranges to point at.
    col0 = 1
    anchor_row = 1
    for title, per_ccy in series:
        if not per_ccy:
            continue
        periods = sorted({p for d in per_ccy.values() for p in d}, key=_key_text)
        currencies = sorted(per_ccy)
        ws.cell(1, col0, "date" if title == DAILY.title else "month")
        for j, ccy in enumerate(currencies, 1):
            ws.cell(1, col0 + j, ccy)
        for i, p in enumerate(periods, 2):
            c = ws.cell(i, col0, p)
            if isinstance(p, date):
                c.number_format = DATE_FORMAT
            for j, ccy in enumerate(currencies, 1):
                # A day without a row for a currency had no activity in it: 0, not a gap.
                ws.cell(i, col0 + j, per_ccy[ccy].get(p, 0))
        for j, ccy in enumerate(currencies, 1):
            chart = LineChart() if title == DAILY.title else BarChart()
            chart.title = f"{title} net revenue, {ccy}"
            # Date labels below the plot even when values go negative.
            chart.x_axis.tickLblPos = "low"
            chart.y_axis.title = ccy
            chart.height, chart.width = 7.5, 16
            data = Reference(ws, min_col=col0 + j, min_row=1, max_row=len(periods) + 1)
            cats = Reference(ws, min_col=col0, min_row=2, max_row=len(periods) + 1)
            chart.add_data(data, titles_from_data=True)
            chart.set_categories(cats)
            for s in chart.series:
                s.smooth = False  # a smoothed line overshoots below zero between days
            chart.legend = None
            ws.add_chart(chart, f"P{anchor_row}")  # right of the pivot tables
            anchor_row += 16
        col0 += len(currencies) + 2
