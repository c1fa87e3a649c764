"""The Google Sheet dashboard's requests, built without any I/O.

Typed cells (:func:`cell_data`, :func:`serial`), number formats, the ``spreadsheets:batchUpdate``
subrequests (new tabs, rows, formats, charts, removed rows), the plan of one apply
(:func:`plan_tab`, :func:`plan_charts`, :func:`plan_trim`) and the split of its body into
batches (:func:`batch_bodies`). ``bot/dashboard/sheets.py`` sends them; everything here is a
function of its arguments (a tab's rows are asked of a :class:`~.sheets_index.TabRows`).
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from bot.dashboard.base import (
    CHART_COLUMN,
    CHARTS_TITLE,
    DAILY,
    METRICS,
    MONTHLY,
    SHEETS_CELL_LIMIT,
    Cell,
    DashboardUpdate,
    Row,
    TabSpec,
    TransactionRow,
    cells,
    key_of,
    sink_text,
)
from bot.dashboard.sheets_index import Key, ReadRows, TabRows, removed_before
from bot.money import normalize_currency, number_format

MAX_BATCH_BYTES = 2_000_000  # Google's recommended maximum body size
# The most bytes one updateCells may take (an upper bound, see _cell_bytes): half a body, so a
# body is never more than half empty, and no row however long makes a body too big.
MAX_UPDATE_BYTES = MAX_BATCH_BYTES // 2
ROWS_PER_UPDATE = 500  # rows per updateCells, so a huge write can be split between batches
# Daily and Monthly get Google's usual 26 columns (room for a founder's notes); Transactions,
# the tab that grows to 100,000s of rows, exactly its own, so no cell of the limit is wasted.
NEW_SHEET_COLUMNS = 26
# Trimming Transactions for the cell limit goes down to this share of it, so that the next
# days' rows fit without trimming again every morning.
HEADROOM = 0.95
HELPER_FIRST_COLUMN = 26  # Charts!AA: hidden QUERY helpers feeding the charts start here
CHART_ROWS = 18  # rows between two charts on the Charts tab
CHART_COLUMNS = 8  # columns between the two charts of a row (daily and monthly of a currency)

SERIAL_EPOCH = date(1899, 12, 30)  # Sheets' day 0
EPOCH_ORDINAL = SERIAL_EPOCH.toordinal()

# The same patterns as the workbook (bot/dashboard/workbook.py); money uses number_format().
FORMATS: dict[str, dict[str, str]] = {
    "text": {"type": "TEXT"},
    "bool": {"type": "TEXT"},
    "date": {"type": "DATE", "pattern": "yyyy-mm-dd"},
    "datetime": {"type": "DATE_TIME", "pattern": "yyyy-mm-dd hh:mm:ss"},
    "int": {"type": "NUMBER", "pattern": "0"},
    "pct": {"type": "PERCENT", "pattern": "0.0%"},
}
COLUMN_WIDTHS = {"id": 240, "description": 300, "reporting_category": 160}


# --- cells ----------------------------------------------------------------------------------


def serial(value: date | datetime) -> float | int:
    """Sheets' serial number: days since 1899-12-30; a datetime as its wall-clock time."""
    days = value.toordinal() - EPOCH_ORDINAL  # the date of the wall clock, whatever the zone
    if isinstance(value, datetime):
        micros = ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000
        return days + (micros + value.microsecond) / 86_400_000_000
    return days


def _number(value: Decimal | int) -> int | float:
    # The last step of writing a cell: Decimal major units -> a JSON number.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def cell_data(cell: Cell) -> dict[str, Any]:
    """The ``CellData`` (``userEnteredValue`` only) of a typed cell; ``{}`` for an empty cell.

    Text goes as ``stringValue``, which Sheets stores as-is: never parsed, so it can never
    become a formula, a number or a date. Numbers go as ``numberValue``."""
    v = cell.value
    kind = cell.kind
    if v is None:
        return {}
    if kind == "text":
        return {"userEnteredValue": {"stringValue": sink_text(str(v), SHEETS_CELL_LIMIT)}}
    if kind == "money" or kind == "pct":
        assert isinstance(v, Decimal)
        return {"userEnteredValue": {"numberValue": _number(v)}}
    if kind == "date" or kind == "datetime":
        assert isinstance(v, date)
        return {"userEnteredValue": {"numberValue": serial(v)}}
    if kind == "bool":
        return {"userEnteredValue": {"stringValue": "yes" if v else "no"}}
    assert isinstance(v, int)
    return {"userEnteredValue": {"numberValue": v}}


# --- a plan ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Grid:
    """One tab's sheet id and grid size (as read, then as changed by the plan)."""

    sheet_id: int
    rows: int
    cols: int
    created: bool = False
    frozen: int = 0

    @property
    def cells(self) -> int:
        return self.rows * self.cols


@dataclass(slots=True)
class Plan:
    """What one apply() sends: removals first (so the spreadsheet never holds more cells than
    before them), then structure (new tabs, grid growth), then data and charts."""

    removals: list[dict[str, Any]] = field(default_factory=list)
    structure: list[dict[str, Any]] = field(default_factory=list)
    data: list[dict[str, Any]] = field(default_factory=list)
    inserted: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)

    def requests(self) -> list[dict[str, Any]]:
        return self.removals + self.structure + self.data


# --- one apply's plan -----------------------------------------------------------------------


def place(
    rows: Sequence[Row], known: TabRows | None, removed: Sequence[tuple[int, int]] = ()
) -> tuple[list[tuple[int, Row]], list[tuple[int, Row]]]:
    """(rewritten in place, inserted after the last row) with their grid rows once
    ``removed`` are gone: a row whose key the tab holds keeps its row, any other is new."""
    known = known or ReadRows()
    found = known.find({key_of(row) for row in rows})
    gone = {p for start, end in removed for p in range(start, end)}
    next_row = 1 + known.count - removed_before(removed, known.count + 1)
    updated: list[tuple[int, Row]] = []
    inserted: list[tuple[int, Row]] = []
    for row in rows:
        at = found.get(key_of(row))
        if at is None or at in gone:
            inserted.append((next_row, row))
            next_row += 1
        else:
            updated.append((at - removed_before(removed, at), row))
    return updated, inserted


def plan_tab(
    plan: Plan,
    tab: TabSpec,
    rows: Sequence[Row],
    grid: Grid,
    known: TabRows | None,
    removed: Sequence[tuple[int, int]] = (),
) -> list[tuple[int, Row]]:
    """Place ``rows`` in ``tab`` (see :func:`place`) and write them; the grid grows to fit.
    The rows inserted, with their grid rows."""
    plan.inserted[tab.title] = plan.updated[tab.title] = 0
    if not rows:
        return []
    updated, inserted = place(rows, known, removed)
    plan.inserted[tab.title] = len(inserted)
    plan.updated[tab.title] = len(updated)
    placed = updated + inserted
    next_row = max(at for at, _ in placed) + 1
    if next_row > grid.rows:
        plan.structure.append(_append_dimension(grid.sheet_id, "ROWS", next_row - grid.rows))
        grid.rows = next_row
    if grid.cols < len(tab.columns):
        plan.structure.append(
            _append_dimension(grid.sheet_id, "COLUMNS", len(tab.columns) - grid.cols)
        )
        grid.cols = len(tab.columns)
    placed.sort(key=lambda item: item[0])
    for block in _blocks([(at, cells(row)) for at, row in placed]):
        plan.data += _write_block(grid.sheet_id, block)
    return inserted


@dataclass(frozen=True, slots=True)
class Trim:
    """What the Transactions tab keeps: the days from ``first_day`` on (None: every day), and
    the grid rows ``removed`` (ascending, numbered before the write); ``limited``: the cell
    limit took days that ``transactions_from`` would have kept, and ``kept`` is then the
    oldest day left (None if no day is)."""

    first_day: date | None
    removed: list[tuple[int, int]]
    limited: bool = False
    kept: date | None = None


def plan_trim(
    *,
    known: TabRows | None,
    rows: Sequence[TransactionRow],
    grid: Grid,
    first_day: date | None,
    other_cells: int,
    limit: int,
) -> Trim | None:
    """The Transactions rows to remove so that the spreadsheet, whose other sheets hold
    ``other_cells`` cells after this write, stays within ``limit`` cells.

    Rows of days before ``first_day`` go first. If the tab would still take the spreadsheet
    above the limit, whole days more go from the oldest end (and the empty rows under the last
    one) until it is at most :data:`HEADROOM` of the limit. None: not even an empty tab fits."""
    known = known or ReadRows()
    cols = max(grid.cols, 1)
    least = max(2, grid.frozen + 1)  # a grid keeps a row under its frozen ones

    def outcome(day: date | None) -> tuple[list[int], list[TransactionRow], int]:
        kept = [r for r in rows if day is None or r.created.date() >= day]
        gone = known.positions_before(day) if day is not None else []
        _, inserted = place(kept, known, consecutive_ranges(gone))
        new = [r for _, r in inserted if isinstance(r, TransactionRow)]
        return gone, new, known.count - len(gone) + len(inserted)

    gone, new, data = outcome(first_day)
    if other_cells + max(grid.rows - len(gone), 1 + data, least) * cols <= limit:
        return Trim(first_day, consecutive_ranges(gone))
    allowed = (math.floor(limit * HEADROOM) - other_cells) // cols
    if allowed < least:
        allowed = (limit - other_cells) // cols
    if allowed < least:
        return None
    # Whole days from the oldest, among the rows kept so far and the new ones, until it fits.
    days = heapq.merge(
        known.days_from(first_day), sorted(Counter(r.created.date() for r in new).items())
    )
    cut = first_day
    excess = 1 + data - allowed
    for day, group in itertools.groupby(days, key=lambda item: item[0]):
        if excess <= 0:
            break
        excess -= sum(n for _, n in group)
        cut = day + timedelta(days=1)
    gone, new, data = outcome(cut)
    rows_after = max(1 + data, least)
    if other_cells + rows_after * cols > limit:
        return None  # rows without a day (a founder's) are more than the limit leaves room for
    # The empty rows under the last one go too: they count against the limit as much as any.
    tail = grid.rows - len(gone) - rows_after
    removed = consecutive_ranges(gone) + ([(grid.rows - tail, grid.rows)] if tail > 0 else [])
    kept = next((d for d, _ in heapq.merge(
        known.days_from(cut), sorted(Counter(r.created.date() for r in new).items())
    )), None)  # fmt: skip
    return Trim(cut, removed, limited=cut != first_day, kept=kept)


def consecutive_ranges(positions: Sequence[int]) -> list[tuple[int, int]]:
    """Ascending positions as half-open ranges of consecutive ones."""
    out: list[tuple[int, int]] = []
    for p in sorted(positions):
        if out and out[-1][1] == p:
            out[-1] = (out[-1][0], p + 1)
        else:
            out.append((p, p + 1))
    return out


def remove_rows(plan: Plan, grid: Grid, removed: Sequence[tuple[int, int]]) -> None:
    """Delete ``removed`` rows of ``grid``, the highest first so each range's numbers hold.

    Google refuses to delete every row under the frozen header, so when the grid would keep
    none, one is added first (the write that follows fills it or leaves it empty)."""
    count = sum(end - start for start, end in removed)
    if not count:
        return
    least = max(2, grid.frozen + 1)
    if grid.rows - count < least:
        plan.removals.append(_append_dimension(grid.sheet_id, "ROWS", least - grid.rows + count))
        grid.rows = least + count
    for start, end in sorted(removed, reverse=True):
        plan.removals.append(
            {
                "deleteDimension": {
                    "range": {
                        "sheetId": grid.sheet_id,
                        "dimension": "ROWS",
                        "startIndex": start,
                        "endIndex": end,
                    }
                }
            }
        )
    grid.rows -= count


def delete_sheet(sheet_id: int) -> dict[str, Any]:
    return {"deleteSheet": {"sheetId": sheet_id}}


def plan_charts(
    plan: Plan,
    update: DashboardUpdate,
    by_title: Mapping[str, Mapping[str, Any]],
    sheets: Sequence[Mapping[str, Any]],
    sheet_ids: set[int],
    grids: Mapping[str, Grid],
) -> Grid:
    """Add the Charts tab if missing, a daily and a monthly chart for each currency that has
    none yet, and an MRR chart for each currency of the update's metrics rows that has none.
    Existing charts are recognised by title and never duplicated. The Charts tab's grid, as
    this write leaves it."""
    existing = by_title.get(CHARTS_TITLE)
    chart_ids: set[int] = set()
    titles: set[str] = set()
    used: list[int] = []
    for sheet in sheets:
        on_charts_tab = existing is not None and sheet["properties"].get(
            "sheetId", 0
        ) == existing.get("sheetId", 0)
        for chart in sheet.get("charts", []):
            chart_ids.add(int(chart.get("chartId", 0)))
            titles.add(str(chart.get("spec", {}).get("title", "")))
            if on_charts_tab:
                used += _helper_columns(chart)
    seen = [r.currency for r in update.daily] + [r.currency for r in update.monthly]
    currencies = sorted({normalize_currency(c).upper() for c in seen})
    with_mrr = sorted({normalize_currency(r.currency).upper() for r in update.metrics})
    # The MRR charts after the net-revenue ones: two charts a row, they get rows of their own.
    wanted = [
        (tab, currency)
        for tab, currency in [
            *((tab, c) for c in currencies for tab in (DAILY, MONTHLY)),
            *((METRICS, c) for c in with_mrr),
        ]
        if _chart_title(tab, currency) not in titles
    ]
    # The QUERY helpers spill one row per day: the Charts grid must be as tall as Daily.
    rows_needed = max(g.rows for t, g in grids.items() if t in CHART_COLUMN)
    if existing is not None:
        props = existing.get("gridProperties", {})
        charts = Grid(
            int(existing.get("sheetId", 0)),
            int(props.get("rowCount", 0)),
            int(props.get("columnCount", 0)),
        )
    else:
        # Sized to what it holds (each cell counts against the spreadsheet's limit).
        sheet_id = free_id(f"tab:{CHARTS_TITLE}", sheet_ids)
        below = (len(wanted) + 1) // 2 * CHART_ROWS
        cols = HELPER_FIRST_COLUMN + 2 * len(wanted)
        charts = Grid(sheet_id, max(2, rows_needed, below), cols, created=True)
        plan.structure.append(
            _add_sheet(CHARTS_TITLE, sheet_id, charts.rows, charts.cols, frozen=0)
        )
        used = []
    if (wanted or used) and charts.rows < rows_needed:
        plan.structure.append(_append_dimension(charts.sheet_id, "ROWS", rows_needed - charts.rows))
        charts.rows = rows_needed
    column = max([HELPER_FIRST_COLUMN, *(c + 2 for c in used)])
    for tab, currency in wanted:
        if column + 2 > charts.cols:
            plan.structure.append(
                _append_dimension(charts.sheet_id, "COLUMNS", column + 2 - charts.cols)
            )
            charts.cols = column + 2
        # The chart's anchor cell must be in the grid, and the chart's height below it.
        slot = (column - HELPER_FIRST_COLUMN) // 2
        below = (slot // 2 + 1) * CHART_ROWS
        if charts.rows < below:
            plan.structure.append(_append_dimension(charts.sheet_id, "ROWS", below - charts.rows))
            charts.rows = below
        chart_id = free_id(f"chart:{_chart_title(tab, currency)}", chart_ids)
        plan.data += _chart(tab, currency, charts.sheet_id, column, chart_id)
        column += 2
    return charts


def batch_bodies(subrequests: Sequence[dict[str, Any]]) -> list[bytes]:
    """The ``spreadsheets:batchUpdate`` bodies carrying ``subrequests`` in order, each at most
    MAX_BATCH_BYTES (Google's recommended 2 MB; it refuses bodies above 10 MiB).

    There is no cap on their number: a huge backfill is many bodies, paced like every write.
    No subrequest comes near the size (:func:`_write_block` keeps each updateCells under
    MAX_UPDATE_BYTES), so each body but the last is more than half full.
    """
    head, tail = b'{"requests":[', b"]}"
    room = MAX_BATCH_BYTES - len(head) - len(tail)
    bodies: list[bytes] = []
    batch: list[bytes] = []
    size = -1  # the parts' bytes and the commas between them
    for request in subrequests:
        # Serialised once, here: the size decides the split and the bytes are the body.
        part = json.dumps(request, separators=(",", ":")).encode()
        if len(part) > room:
            raise ValueError(f"one subrequest of {len(part)} bytes cannot fit a request body")
        if batch and size + 1 + len(part) > room:
            bodies.append(head + b",".join(batch) + tail)
            batch, size = [], -1
        batch.append(part)
        size += 1 + len(part)
    if batch:
        bodies.append(head + b",".join(batch) + tail)
    return bodies


# --- builders -------------------------------------------------------------------------------


def quote(title: str) -> str:
    return "'" + title.replace("'", "''") + "'"


def column_letter(index: int) -> str:
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


def free_id(name: str, taken: set[int]) -> int:
    """A stable id for a sheet or chart we create. Sending our own ids makes a retried
    batchUpdate fail loudly instead of adding a second copy."""
    candidate = zlib.crc32(f"revbot:{name}".encode()) & 0x7FFFFFFF
    while candidate in taken or candidate == 0:
        candidate = (candidate + 1) & 0x7FFFFFFF
    taken.add(candidate)
    return candidate


def dedupe(rows: Iterable[Row]) -> list[Row]:
    """One row per key, the last one winning, in first-seen order."""
    by_key: dict[tuple[str, ...], Row] = {}
    for row in rows:
        by_key[key_of(row)] = row
    return list(by_key.values())


def _key_part(value: Any, kind: str) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        if kind in ("date", "month"):
            day = SERIAL_EPOCH + timedelta(days=math.floor(value))
            return day.isoformat() if kind == "date" else day.isoformat()[:7]
        return str(int(value)) if float(value).is_integer() else str(value)
    return str(value).strip()


_KEY_KINDS = {
    DAILY.title: ("date", "currency"),
    MONTHLY.title: ("month", "currency"),
    METRICS.title: ("month", "currency"),
}


def read_key(tab: TabSpec, values: Sequence[Any]) -> Key | None:
    """The key in a row's first cells as read unformatted (None: no key there)."""
    kinds = _KEY_KINDS.get(tab.title, ("text",) * tab.key_width)
    values = values[: tab.key_width]
    if not values or all(v in ("", None) for v in values):
        return None
    padded = [*values, *[""] * tab.key_width][: tab.key_width]
    return tuple(
        _key_part(v, k).upper() if k == "currency" else _key_part(v, k)
        for v, k in zip(padded, kinds, strict=True)
    )


def read_day(value: Any) -> date | None:
    """The date of a serial number read unformatted (a ``created`` cell); None for any other
    value a founder may have typed there."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    try:
        return SERIAL_EPOCH + timedelta(days=math.floor(value))
    except OverflowError:
        return None


def _text_bytes(text: str) -> int:
    """At most the bytes of ``text`` as a JSON string (``json.dumps`` escapes non-ASCII)."""
    if text.isascii():
        return 2 + (2 if text.isprintable() else 6) * len(text)  # \" or \u001f at worst
    return 2 + 12 * len(text)  # a character outside the BMP is two \uXXXX escapes


def _cell_bytes(cell: Cell) -> int:
    """At most the bytes of the cell's CellData in an updateCells (with its comma). Measured
    before sink_text, which only shortens text or puts U+FFFD (6 bytes) for a control."""
    if cell.kind == "text" and isinstance(cell.value, str):
        return 40 + _text_bytes(cell.value)
    return 64


Placed = tuple[int, tuple[Cell, ...]]  # a grid row and the cells written there


def _blocks(placed: Sequence[Placed]) -> Iterator[list[Placed]]:
    """Runs of consecutive row indices, at most ROWS_PER_UPDATE rows and (by an upper bound)
    MAX_UPDATE_BYTES each; a row longer than that is a block of its own."""
    block: list[Placed] = []
    size = 0
    for item in placed:
        n = 16 + sum(_cell_bytes(c) for c in item[1])
        if block and (
            item[0] != block[-1][0] + 1
            or len(block) >= ROWS_PER_UPDATE
            or size + n > MAX_UPDATE_BYTES
        ):
            yield block
            block, size = [], 0
        block.append(item)
        size += n
    if block:
        yield block


def _grid_range(sheet_id: int, row0: int, row1: int, col0: int, col1: int) -> dict[str, int]:
    return {
        "sheetId": sheet_id,
        "startRowIndex": row0,
        "endRowIndex": row1,
        "startColumnIndex": col0,
        "endColumnIndex": col1,
    }


def _format_request(
    sheet_id: int, area: tuple[int, int, int, int], fmt: Mapping[str, str]
) -> dict[str, Any]:
    return {
        "repeatCell": {
            "range": _grid_range(sheet_id, *area),
            "cell": {"userEnteredFormat": {"numberFormat": dict(fmt)}},
            "fields": "userEnteredFormat.numberFormat",
        }
    }


def _runs(items: Sequence[Any]) -> Iterable[tuple[int, int, Any]]:
    """(start, end, value) of runs of equal consecutive items."""
    start = 0
    for i in range(1, len(items) + 1):
        if i == len(items) or items[i] != items[start]:
            yield start, i, items[start]
            start = i


def _write_block(sheet_id: int, block: Sequence[Placed]) -> list[dict[str, Any]]:
    """One updateCells of the values of consecutive rows, then their number formats.

    Values and formats are separate so the (large) per-cell body stays small: formats go as a
    few repeatCell ranges per block (same format for a column, the row's currency for money)."""
    first = block[0][0]
    end = first + len(block)
    row_cells = [rc for _, rc in block]
    out: list[dict[str, Any]] = []
    # A block is one row when that row alone is too long for an updateCells: then its cells go
    # in runs of columns, each under MAX_UPDATE_BYTES (one cell is at most 50,000 characters).
    pieces = [(0, len(row_cells[0]))] if len(block) > 1 else _column_runs(row_cells[0])
    for c0, c1 in pieces:
        out.append(
            {
                "updateCells": {
                    "start": {"sheetId": sheet_id, "rowIndex": first, "columnIndex": c0},
                    "rows": [{"values": [cell_data(c) for c in rc[c0:c1]]} for rc in row_cells],
                    "fields": "userEnteredValue",
                }
            }
        )
    kinds = [c.kind for c in row_cells[0]]
    # Non-money columns: one format per run of columns sharing it, over the whole block.
    plain = [None if k == "money" else tuple(sorted(FORMATS[k].items())) for k in kinds]
    for c0, c1, fmt in _runs(plain):
        if fmt is not None:
            out.append(_format_request(sheet_id, (first, end, c0, c1), dict(fmt)))
    # Money columns: the currency's format, per run of rows in the same currency.
    money = [c0c1 for c0c1 in _runs([k == "money" for k in kinds]) if c0c1[2]]
    currencies = [next(c.currency for c in rc if c.kind == "money") for rc in row_cells]
    for r0, r1, currency in _runs(currencies):
        fmt = {"type": "CURRENCY", "pattern": number_format(str(currency))}
        for c0, c1, _ in money:
            out.append(_format_request(sheet_id, (first + r0, first + r1, c0, c1), fmt))
    return out


def _column_runs(row: Sequence[Cell]) -> list[tuple[int, int]]:
    """The row's columns as runs of at most MAX_UPDATE_BYTES (by :func:`_cell_bytes`)."""
    runs: list[tuple[int, int]] = []
    start, size = 0, 16
    for i, cell in enumerate(row):
        n = _cell_bytes(cell)
        if i > start and size + n > MAX_UPDATE_BYTES:
            runs.append((start, i))
            start, size = i, 16
        size += n
    runs.append((start, len(row)))
    return runs


def _append_dimension(sheet_id: int, dimension: str, length: int) -> dict[str, Any]:
    return {"appendDimension": {"sheetId": sheet_id, "dimension": dimension, "length": length}}


def _add_sheet(title: str, sheet_id: int, rows: int, cols: int, *, frozen: int) -> dict[str, Any]:
    grid: dict[str, int] = {"rowCount": rows, "columnCount": cols}
    if frozen:
        grid["frozenRowCount"] = frozen
    return {
        "addSheet": {
            "properties": {
                "sheetId": sheet_id,
                "title": title,
                "gridProperties": grid,
            }
        }
    }


def new_tab(
    tab: TabSpec, sheet_id: int, rows: int, cols: int, *, index: int | None = None
) -> list[dict[str, Any]]:
    """addSheet (after the founder's tabs, or at ``index``) with a frozen bold header row and
    column widths."""
    add = _add_sheet(tab.title, sheet_id, rows, cols, frozen=1)
    if index is not None:
        add["addSheet"]["properties"]["index"] = index
    out = [
        add,
        {
            "updateCells": {
                "start": {"sheetId": sheet_id, "rowIndex": 0, "columnIndex": 0},
                "rows": [
                    {
                        "values": [
                            {
                                "userEnteredValue": {"stringValue": name},
                                "userEnteredFormat": {"textFormat": {"bold": True}},
                            }
                            for name in tab.columns
                        ]
                    }
                ],
                "fields": "userEnteredValue,userEnteredFormat.textFormat.bold",
            }
        },
    ]
    widths = [COLUMN_WIDTHS.get(name, 120) for name in tab.columns]
    for c0, c1, width in _runs(widths):
        out.append(
            {
                "updateDimensionProperties": {
                    "range": {
                        "sheetId": sheet_id,
                        "dimension": "COLUMNS",
                        "startIndex": c0,
                        "endIndex": c1,
                    },
                    "properties": {"pixelSize": width},
                    "fields": "pixelSize",
                }
            }
        )
    return out


def _chart_title(tab: TabSpec, currency: str) -> str:
    if tab is METRICS:
        return f"MRR ({currency})"
    return f"{tab.title} net revenue ({currency})"


def _helper_columns(chart: Mapping[str, Any]) -> list[int]:
    """The Charts-tab columns our chart reads its domain from (so new helpers go elsewhere)."""
    basic = chart.get("spec", {}).get("basicChart", {})
    out = []
    for domain in basic.get("domains", []):
        for source in domain.get("domain", {}).get("sourceRange", {}).get("sources", []):
            out.append(int(source.get("startColumnIndex", 0)))
    return out


def _chart(
    tab: TabSpec, currency: str, charts_id: int, column: int, chart_id: int
) -> list[dict[str, Any]]:
    """A hidden QUERY helper (period, net revenue of one currency; MRR for Metrics) and a
    native chart of it.

    Daily, Monthly and Metrics mix currencies row by row, and a chart cannot filter its
    source, so each chart reads two helper columns on the Charts tab. INDIRECT names the tab
    as text so the formula survives the tab being deleted and re-created. ``currency`` went
    through normalize_currency (three ASCII letters): nothing from Stripe can inject into the
    formula.
    """
    period = column_letter(0)
    net = column_letter(tab.columns.index(CHART_COLUMN[tab.title]))
    last = column_letter(len(tab.columns) - 1)
    source = f"{quote(tab.title)}!A1:{last}"
    formula = (
        f'=QUERY(INDIRECT("{source}"), "select {period}, {net} where B = \'{currency}\' '
        f"and {period} is not null order by {period} label {net} '{currency}'\", 1)"
    )
    slot = (column - HELPER_FIRST_COLUMN) // 2
    what = "MRR" if tab is METRICS else "net revenue"
    domain = {
        "sheetId": charts_id,
        "startRowIndex": 0,
        "startColumnIndex": column,
        "endColumnIndex": column + 1,
    }
    series = {
        "sheetId": charts_id,
        "startRowIndex": 0,
        "startColumnIndex": column + 1,
        "endColumnIndex": column + 2,
    }
    return [
        {
            "updateCells": {
                "start": {"sheetId": charts_id, "rowIndex": 0, "columnIndex": column},
                "rows": [{"values": [{"userEnteredValue": {"formulaValue": formula}}]}],
                "fields": "userEnteredValue",
            }
        },
        {
            "updateDimensionProperties": {
                "range": {
                    "sheetId": charts_id,
                    "dimension": "COLUMNS",
                    "startIndex": column,
                    "endIndex": column + 2,
                },
                "properties": {"hiddenByUser": True},
                "fields": "hiddenByUser",
            }
        },
        {
            "addChart": {
                "chart": {
                    "chartId": chart_id,
                    "spec": {
                        "title": _chart_title(tab, currency),
                        # The helpers are hidden; charts skip hidden data unless told.
                        "hiddenDimensionStrategy": "SHOW_ALL",
                        "basicChart": {
                            "chartType": "LINE" if tab is DAILY else "COLUMN",
                            "legendPosition": "NO_LEGEND",
                            "headerCount": 1,
                            "axis": [
                                {"position": "BOTTOM_AXIS", "title": tab.columns[0]},
                                {"position": "LEFT_AXIS", "title": f"{what} ({currency})"},
                            ],
                            "domains": [{"domain": {"sourceRange": {"sources": [domain]}}}],
                            "series": [
                                {
                                    "series": {"sourceRange": {"sources": [series]}},
                                    "targetAxis": "LEFT_AXIS",
                                }
                            ],
                        },
                    },
                    "position": {
                        "overlayPosition": {
                            "anchorCell": {
                                "sheetId": charts_id,
                                "rowIndex": (slot // 2) * CHART_ROWS,
                                "columnIndex": (slot % 2) * CHART_COLUMNS,
                            },
                            "widthPixels": 600,
                            "heightPixels": 320,
                        }
                    },
                }
            }
        },
    ]
