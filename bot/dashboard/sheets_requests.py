"""The Google Sheet dashboard's requests, built without any I/O.

Typed cells (:func:`cell_data`, :func:`serial`), number formats, the ``spreadsheets:batchUpdate``
subrequests (new tabs, rows, formats, charts), the plan of one apply (:func:`plan_tab`,
:func:`plan_charts`) and the split of its body into batches (:func:`batch_bodies`).
``bot/dashboard/sheets.py`` sends them; everything here is a pure function of its arguments.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from bot.dashboard.base import (
    CHARTS_TITLE,
    DAILY,
    MONTHLY,
    SHEETS_CELL_LIMIT,
    Cell,
    DashboardUpdate,
    Row,
    TabSpec,
    cells,
    key_of,
    sink_text,
)
from bot.money import normalize_currency, number_format

MAX_BATCH_BYTES = 2_000_000  # Google's recommended maximum body size
MAX_WRITE_BATCHES = 8  # + the metadata GET + the key read = 10 requests for any one apply()
ROWS_PER_UPDATE = 500  # rows per updateCells, so a huge write can be split between batches
NEW_SHEET_ROWS = 1000  # Google's own default grid for a new sheet
NEW_SHEET_COLUMNS = 26
HELPER_FIRST_COLUMN = 26  # Charts!AA: hidden QUERY helpers feeding the charts start here
CHART_ROWS = 18  # rows between two charts on the Charts tab
CHART_COLUMNS = 8  # columns between the daily and the monthly chart of a currency

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
    """One tab's sheet id and grid size (as read, then as grown by the plan)."""

    sheet_id: int
    rows: int
    cols: int
    created: bool = False


@dataclass(slots=True)
class Plan:
    """What one apply() sends: structure first (new tabs, grid growth), then data and charts."""

    structure: list[dict[str, Any]] = field(default_factory=list)
    data: list[dict[str, Any]] = field(default_factory=list)
    inserted: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)

    def requests(self) -> list[dict[str, Any]]:
        return self.structure + self.data


# --- one apply's plan -----------------------------------------------------------------------


def plan_tab(
    plan: Plan,
    tab: TabSpec,
    rows: Sequence[Row],
    grid: Grid,
    keys: list[tuple[str, ...] | None] | None,
) -> None:
    """Place ``rows`` in ``tab``: a row whose key is in ``keys`` (the tab's keys by data row)
    is rewritten in place, any other row goes after the last one; the grid grows to fit."""
    plan.inserted[tab.title] = plan.updated[tab.title] = 0
    if not rows:
        return
    keys = keys or []
    position: dict[tuple[str, ...], int] = {}
    for i, key in enumerate(keys):
        if key is not None:
            position.setdefault(key, 1 + i)  # row 0 is the header
    next_row = 1 + len(keys)
    placed: list[tuple[int, Row]] = []
    for row in rows:
        at = position.get(key_of(row))
        if at is None:
            at = next_row
            next_row += 1
            plan.inserted[tab.title] += 1
        else:
            plan.updated[tab.title] += 1
        placed.append((at, row))
    if next_row > grid.rows:
        plan.structure.append(_append_dimension(grid.sheet_id, "ROWS", next_row - grid.rows))
        grid.rows = next_row
    if grid.cols < len(tab.columns):
        plan.structure.append(
            _append_dimension(grid.sheet_id, "COLUMNS", len(tab.columns) - grid.cols)
        )
        grid.cols = len(tab.columns)
    placed.sort(key=lambda item: item[0])
    for block in _blocks(placed):
        plan.data += _write_block(grid.sheet_id, block)


def plan_charts(
    plan: Plan,
    update: DashboardUpdate,
    by_title: Mapping[str, Mapping[str, Any]],
    sheets: Sequence[Mapping[str, Any]],
    sheet_ids: set[int],
    grids: Mapping[str, Grid],
) -> None:
    """Add the Charts tab if missing, and a daily and a monthly chart for each currency
    that has none yet. Existing charts are recognised by title and never duplicated."""
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
    if existing is not None:
        props = existing.get("gridProperties", {})
        charts = Grid(
            int(existing.get("sheetId", 0)),
            int(props.get("rowCount", 0)),
            int(props.get("columnCount", 0)),
        )
    else:
        sheet_id = free_id(f"tab:{CHARTS_TITLE}", sheet_ids)
        charts = Grid(sheet_id, NEW_SHEET_ROWS, HELPER_FIRST_COLUMN, created=True)
        plan.structure.append(
            _add_sheet(CHARTS_TITLE, sheet_id, charts.rows, charts.cols, frozen=0)
        )
        used = []

    seen = [r.currency for r in update.daily] + [r.currency for r in update.monthly]
    currencies = sorted({normalize_currency(c).upper() for c in seen})
    wanted = [
        (tab, currency)
        for currency in currencies
        for tab in (DAILY, MONTHLY)
        if _chart_title(tab, currency) not in titles
    ]
    # The QUERY helpers spill one row per day: the Charts grid must be as tall as Daily.
    rows_needed = max(grids[DAILY.title].rows, grids[MONTHLY.title].rows)
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
        chart_id = free_id(f"chart:{_chart_title(tab, currency)}", chart_ids)
        plan.data += _chart(tab, currency, charts.sheet_id, column, chart_id)
        column += 2


def batch_bodies(subrequests: Sequence[dict[str, Any]]) -> list[bytes]:
    """The ``spreadsheets:batchUpdate`` bodies carrying ``subrequests`` in order.

    About 2 MB per request as Google recommends, but never more than MAX_WRITE_BATCHES
    requests: for a huge backfill the bodies grow instead (Google refuses only bodies above
    10 MB). Each full batch holds more than limit - max(sizes) >= total / MAX_WRITE_BATCHES
    bytes.
    """
    if not subrequests:
        return []
    # Serialised once, here: the size decides the split and the bytes are the body.
    parts = [json.dumps(r, separators=(",", ":")).encode() for r in subrequests]
    sizes = [len(p) for p in parts]
    limit = max(MAX_BATCH_BYTES, math.ceil(sum(sizes) / MAX_WRITE_BATCHES) + max(sizes))
    batches: list[list[bytes]] = [[]]
    size = 0
    for part, n in zip(parts, sizes, strict=True):
        if batches[-1] and size + n > limit:
            batches.append([])
            size = 0
        batches[-1].append(part)
        size += n
    return [b'{"requests":[' + b",".join(batch) + b"]}" for batch in batches]


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


_KEY_KINDS = {DAILY.title: ("date", "currency"), MONTHLY.title: ("month", "currency")}


def read_key(tab: TabSpec, values: Sequence[Any]) -> tuple[str, ...] | None:
    kinds = _KEY_KINDS.get(tab.title, ("text",) * tab.key_width)
    if not values or all(v in ("", None) for v in values):
        return None
    padded = [*values, *[""] * tab.key_width][: tab.key_width]
    return tuple(
        _key_part(v, k).upper() if k == "currency" else _key_part(v, k)
        for v, k in zip(padded, kinds, strict=True)
    )


def _blocks(placed: Sequence[tuple[int, Row]]) -> Iterable[list[tuple[int, Row]]]:
    """Runs of consecutive row indices, at most ROWS_PER_UPDATE rows each."""
    block: list[tuple[int, Row]] = []
    for item in placed:
        if block and (item[0] != block[-1][0] + 1 or len(block) >= ROWS_PER_UPDATE):
            yield block
            block = []
        block.append(item)
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


def _write_block(sheet_id: int, block: Sequence[tuple[int, Row]]) -> list[dict[str, Any]]:
    """One updateCells of the values of consecutive rows, then their number formats.

    Values and formats are separate so the (large) per-cell body stays small: formats go as a
    few repeatCell ranges per block (same format for a column, the row's currency for money)."""
    first = block[0][0]
    end = first + len(block)
    row_cells = [cells(row) for _, row in block]
    out: list[dict[str, Any]] = [
        {
            "updateCells": {
                "start": {"sheetId": sheet_id, "rowIndex": first, "columnIndex": 0},
                "rows": [{"values": [cell_data(c) for c in rc]} for rc in row_cells],
                "fields": "userEnteredValue",
            }
        }
    ]
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


def new_tab(tab: TabSpec, sheet_id: int, rows: int) -> list[dict[str, Any]]:
    """addSheet (after the founder's tabs) with a frozen bold header row and column widths."""
    out = [
        _add_sheet(tab.title, sheet_id, rows, NEW_SHEET_COLUMNS, frozen=1),
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
    """A hidden QUERY helper (period, net revenue of one currency) and a native chart of it.

    Daily/Monthly mix currencies row by row, and a chart cannot filter its source, so each
    chart reads two helper columns on the Charts tab. INDIRECT names the tab as text so the
    formula survives the tab being deleted and re-created. ``currency`` went through
    normalize_currency (three ASCII letters): nothing from Stripe can inject into the formula.
    """
    period = column_letter(0)
    net = column_letter(tab.columns.index("net_revenue"))
    last = column_letter(len(tab.columns) - 1)
    source = f"{quote(tab.title)}!A1:{last}"
    formula = (
        f'=QUERY(INDIRECT("{source}"), "select {period}, {net} where B = \'{currency}\' '
        f"and {period} is not null order by {period} label {net} '{currency}'\", 1)"
    )
    slot = (column - HELPER_FIRST_COLUMN) // 2
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
                                {"position": "LEFT_AXIS", "title": f"net revenue ({currency})"},
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
