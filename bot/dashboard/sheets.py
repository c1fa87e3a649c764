"""The Google Sheet dashboard (PRODUCT.md §6, issue 3): gspread over google-auth.

One :meth:`GoogleSheetDashboard.apply` costs at most three Sheets API requests once the tabs
exist: (1) one metadata GET (sheets, grid sizes, charts), (2) one ``values:batchGet`` of the key
columns of the tabs being written, (3) one ``spreadsheets:batchUpdate`` that writes every new
and changed row, its number formats, and any missing tab or chart. A very large update (a
year's backfill) is split into a few batchUpdates of about 2 MB, never more than
:data:`MAX_WRITE_BATCHES`.

Values are written as typed ``CellData`` (``stringValue`` / ``numberValue``), never parsed as
user input, so text from Stripe such as ``=IMPORTXML(...)`` or ``+1`` stays text, and numbers
stay numbers. Only our own columns of our own tabs are written; missing tabs (never created,
deleted, renamed) are created after the founder's own.

Quotas: writes are spaced ``write_interval`` apart (60/minute per user); 429 and 5xx are retried
with jittered exponential back-off for at most ``max_wait`` seconds, then TemporaryError (75).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import re
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import google.auth.exceptions
import gspread
import requests
from google.oauth2 import service_account
from gspread.exceptions import APIError
from gspread.urls import SPREADSHEET_BATCH_UPDATE_URL

from bot.dashboard.base import (
    CHARTS_TITLE,
    DAILY,
    MONTHLY,
    SHEETS_CELL_LIMIT,
    TABS,
    Cell,
    DashboardUpdate,
    Row,
    TabSpec,
    WriteResult,
    cells,
    key_of,
    sink_text,
)
from bot.deadline import bounded
from bot.errors import ConfigError, ServiceError, TemporaryError
from bot.money import normalize_currency, number_format

log = logging.getLogger(__name__)

SHEETS_ROOT = "https://sheets.googleapis.com"
SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)
SPREADSHEET_URL = "https://docs.google.com/spreadsheets/d/{}"

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
JSON_HEADERS = {"Content-Type": "application/json"}
TIMEOUT = (10.0, 180.0)  # connect, read: Google gives up on a request after 180 s
CALL_DEADLINE = 240.0  # a request's total, however slowly the answer trickles in

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

# Only what apply() needs: grid sizes to grow, charts to not duplicate, helper columns in use.
METADATA_FIELDS = (
    "sheets(properties(sheetId,title,index,sheetType,gridProperties(rowCount,columnCount)),"
    "charts(chartId,spec(title,basicChart(domains(domain(sourceRange(sources)))))))"
)

_ID = re.compile(r"[A-Za-z0-9_-]+")
_URL_ID = re.compile(r"/spreadsheets/(?:u/\d+/)?d/([A-Za-z0-9_-]+)")


def parse_spreadsheet_id(value: str) -> str:
    """The spreadsheet id from a bare id or a ``https://docs.google.com/spreadsheets/d/<id>/...``
    URL."""
    text = value.strip()
    found = _URL_ID.search(text)
    if found:
        return found.group(1)
    if _ID.fullmatch(text):
        return text
    raise ConfigError(
        f"GOOGLE_SHEET_ID {text[:80]!r} is neither a spreadsheet id nor a "
        "https://docs.google.com/spreadsheets/d/<id>/edit URL"
    )


# --- HTTP: base URL, pacing, bounded retries ------------------------------------------------


class _SheetsHTTPClient(gspread.HTTPClient):
    """gspread's HTTP client with three additions at the one method every call goes through.

    Why a ``gspread.HTTPClient`` subclass rather than a rewriting ``requests.Session``: gspread
    copies its URL constants into ``gspread.http_client`` at import (patching ``gspread.urls``
    does nothing), and this ``request()`` is the single choke point for every Sheets call, so the
    base-URL swap, the write pacing and the bounded retry live together here, while the session
    stays google-auth's own ``AuthorizedSession`` (token refresh, 401 retry). gspread's
    ``BackOffHTTPClient`` is not used: it never gives up (reference §0.1).
    """

    def __init__(
        self,
        credentials: service_account.Credentials,
        *,
        api_url: str | None,
        max_wait: float,
        write_interval: float,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        super().__init__(credentials)
        self.set_timeout(TIMEOUT)
        self.api_url = (api_url or SHEETS_ROOT).rstrip("/")
        self.max_wait = max_wait
        self.write_interval = write_interval
        self.sleep = sleep
        self.clock = clock
        self.rng = rng
        self._next_write = -math.inf

    def _pace(self) -> None:
        # Google allows 60 write requests per minute per user: keep writes write_interval apart.
        now = self.clock()
        if now < self._next_write:
            self.sleep(self._next_write - now)
            now = self._next_write
        self._next_write = now + self.write_interval

    def request(self, method: str, endpoint: str, *args: Any, **kwargs: Any) -> requests.Response:
        if endpoint.startswith(SHEETS_ROOT):
            endpoint = self.api_url + endpoint[len(SHEETS_ROOT) :]
        waited = 0.0
        attempt = 0
        while True:
            if method.lower() != "get":
                self._pace()
            retry_after = 0.0
            try:
                return bounded(
                    lambda: super(_SheetsHTTPClient, self).request(
                        method, endpoint, *args, **kwargs
                    ),
                    seconds=CALL_DEADLINE,
                    what="Google Sheets",
                )
            except APIError as e:
                status = e.response.status_code
                if status not in (408, 429) and status < 500:
                    raise
                why = f"HTTP {status}"
                retry_after = _retry_after(e.response)
            except (requests.ConnectionError, requests.Timeout) as e:
                status, why = 0, type(e).__name__
            # Full-jitter exponential back-off (Google's advice for 429/5xx), capped by the
            # total time this command may wait: after that the run exits 75 and cron retries.
            delay = max(retry_after, min(32.0, 2.0**attempt) * (0.5 + self.rng.random() / 2))
            remaining = self.max_wait - waited
            if remaining <= 0:
                raise _exhausted(status, why, waited)
            delay = min(delay, remaining)
            log.warning("Google Sheets answered %s; retrying in %.1f s", why, delay)
            self.sleep(delay)
            waited += delay
            attempt += 1


def _retry_after(response: requests.Response) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0


def _exhausted(status: int, why: str, waited: float) -> TemporaryError:
    if status == 429:
        return TemporaryError(
            f"Google Sheets quota exceeded (HTTP 429) after retrying for {waited:.0f} s; "
            "try again later"
        )
    return TemporaryError(
        f"Google Sheets unavailable ({why}) after retrying for {waited:.0f} s; try again later"
    )


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


# --- the dashboard --------------------------------------------------------------------------


@dataclass(slots=True)
class _Grid:
    sheet_id: int
    rows: int
    cols: int
    created: bool = False


@dataclass(slots=True)
class _Plan:
    """What one apply() sends: structure first (new tabs, grid growth), then data and charts."""

    structure: list[dict[str, Any]] = field(default_factory=list)
    data: list[dict[str, Any]] = field(default_factory=list)
    inserted: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)

    def requests(self) -> list[dict[str, Any]]:
        return self.structure + self.data


class GoogleSheetDashboard:
    """The dashboard in a Google Sheet shared with a service account (see the README)."""

    def __init__(
        self,
        *,
        spreadsheet_id: str,
        credentials_file: Path,
        api_url: str | None = None,
        timezone: str = "UTC",
        max_wait: float = 120.0,
        write_interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.spreadsheet_id = parse_spreadsheet_id(spreadsheet_id)
        self.credentials_file = Path(credentials_file)
        try:
            # Datetime cells arrive aware and are written as their own wall-clock time; a naive
            # one is taken to be in this zone already.
            self.timezone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"unknown time zone {timezone!r}") from None
        if api_url is not None and not re.match(r"https?://[^/\s]+", api_url):
            raise ConfigError(f"GOOGLE_SHEETS_API_URL {api_url!r} is not an http(s) URL")
        info = _load_key(self.credentials_file)
        self.client_email: str = info["client_email"]
        try:
            credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=list(SCOPES)
            )
        except (ValueError, google.auth.exceptions.MalformedError):
            # The message could quote the key; name the file, never its content.
            raise ConfigError(
                f"{self.credentials_file} has an unusable private_key: download a new JSON key "
                f"for {self.client_email} and point GOOGLE_APPLICATION_CREDENTIALS at it"
            ) from None
        self._http = _SheetsHTTPClient(
            credentials,
            api_url=api_url,
            max_wait=max_wait,
            write_interval=write_interval,
            sleep=sleep,
            clock=clock,
            rng=rng or random.Random(),
        )

    def describe(self) -> str:
        return SPREADSHEET_URL.format(self.spreadsheet_id)

    def check(self) -> str:
        """The spreadsheet's title, proving the key works and the sheet is shared (one GET)."""
        meta = self._call(
            lambda: self._http.fetch_sheet_metadata(
                self.spreadsheet_id, params={"fields": "properties.title"}
            )
        )
        return str(meta.get("properties", {}).get("title", ""))

    def apply(self, update: DashboardUpdate) -> WriteResult:
        """Upsert ``update``: 3 requests once the tabs exist (see the module docstring).

        ``updated`` counts rows whose key was already in the tab: they are rewritten in place.
        """
        meta = self._call(
            lambda: self._http.fetch_sheet_metadata(
                self.spreadsheet_id,
                params={"includeGridData": "false", "fields": METADATA_FIELDS},
            )
        )
        sheets = [s for s in meta.get("sheets", []) if "properties" in s]
        by_title = {s["properties"]["title"]: s["properties"] for s in sheets}
        sheet_ids = {int(s["properties"].get("sheetId", 0)) for s in sheets}
        plan = _Plan()

        grids: dict[str, _Grid] = {}
        rows_by_tab = {tab.title: _dedupe(update.rows_for(tab)) for tab in TABS}
        for title in (*(t.title for t in TABS), CHARTS_TITLE):
            if by_title.get(title, {}).get("sheetType", "GRID") != "GRID":
                raise ServiceError(
                    f"the sheet {title!r} of spreadsheet {self.spreadsheet_id} is not a grid "
                    "(a chart moved to its own sheet?): rename it so revbot can create its tab"
                )
        for tab in TABS:
            existing = by_title.get(tab.title)
            if existing is not None:
                grid = existing.get("gridProperties", {})
                grids[tab.title] = _Grid(
                    int(existing.get("sheetId", 0)),
                    int(grid.get("rowCount", 0)),
                    int(grid.get("columnCount", 0)),
                )
            else:
                # Missing (never created, deleted or renamed by a founder): create it now.
                sheet_id = _free_id(f"tab:{tab.title}", sheet_ids)
                rows = max(NEW_SHEET_ROWS, 1 + len(rows_by_tab[tab.title]))
                grids[tab.title] = _Grid(sheet_id, rows, NEW_SHEET_COLUMNS, created=True)
                plan.structure += _new_tab(tab, sheet_id, rows)

        keys = self._read_keys(
            [t for t in TABS if rows_by_tab[t.title] and not grids[t.title].created], grids
        )
        for tab in TABS:
            self._plan_tab(plan, tab, rows_by_tab[tab.title], grids[tab.title], keys.get(tab.title))

        self._plan_charts(plan, update, by_title, sheets, sheet_ids, grids)
        self._send(plan.requests())
        created = tuple(t.title for t in TABS if grids[t.title].created)
        return WriteResult(
            inserted=plan.inserted, updated=plan.updated, location=self.describe(), created=created
        )

    # -- reading ------------------------------------------------------------------------------

    def _read_keys(
        self, tabs: Sequence[TabSpec], grids: Mapping[str, _Grid]
    ) -> dict[str, list[tuple[str, ...] | None]]:
        """Each tab's keys by data row (``None`` for a row without a key), in one request."""
        tabs = [t for t in tabs if grids[t.title].rows > 1]
        if not tabs:
            return {}
        ranges = [
            f"{_quote(t.title)}!A2:{_column_letter(t.key_width - 1)}{grids[t.title].rows}"
            for t in tabs
        ]
        # Unformatted, so a date key is its serial number whatever format a founder applied.
        reply = self._call(
            lambda: self._http.values_batch_get(
                self.spreadsheet_id,
                ranges,
                params={
                    "valueRenderOption": "UNFORMATTED_VALUE",
                    "dateTimeRenderOption": "SERIAL_NUMBER",
                    "majorDimension": "ROWS",
                },
            )
        )
        out: dict[str, list[tuple[str, ...] | None]] = {}
        for tab, value_range in zip(tabs, reply.get("valueRanges", []), strict=False):
            out[tab.title] = [_read_key(tab, values) for values in value_range.get("values", [])]
        return out

    # -- planning -----------------------------------------------------------------------------

    def _plan_tab(
        self,
        plan: _Plan,
        tab: TabSpec,
        rows: Sequence[Row],
        grid: _Grid,
        keys: list[tuple[str, ...] | None] | None,
    ) -> None:
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

    def _plan_charts(
        self,
        plan: _Plan,
        update: DashboardUpdate,
        by_title: Mapping[str, Mapping[str, Any]],
        sheets: Sequence[Mapping[str, Any]],
        sheet_ids: set[int],
        grids: Mapping[str, _Grid],
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
            charts = _Grid(
                int(existing.get("sheetId", 0)),
                int(props.get("rowCount", 0)),
                int(props.get("columnCount", 0)),
            )
        else:
            sheet_id = _free_id(f"tab:{CHARTS_TITLE}", sheet_ids)
            charts = _Grid(sheet_id, NEW_SHEET_ROWS, HELPER_FIRST_COLUMN, created=True)
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
            plan.structure.append(
                _append_dimension(charts.sheet_id, "ROWS", rows_needed - charts.rows)
            )
            charts.rows = rows_needed
        column = max([HELPER_FIRST_COLUMN, *(c + 2 for c in used)])
        for tab, currency in wanted:
            if column + 2 > charts.cols:
                plan.structure.append(
                    _append_dimension(charts.sheet_id, "COLUMNS", column + 2 - charts.cols)
                )
                charts.cols = column + 2
            chart_id = _free_id(f"chart:{_chart_title(tab, currency)}", chart_ids)
            plan.data += _chart(tab, currency, charts.sheet_id, column, chart_id)
            column += 2

    # -- sending ------------------------------------------------------------------------------

    def _send(self, subrequests: Sequence[dict[str, Any]]) -> None:
        if not subrequests:
            return
        # Serialised once, here: the size decides the split and the bytes are the body.
        parts = [json.dumps(r, separators=(",", ":")).encode() for r in subrequests]
        sizes = [len(p) for p in parts]
        # About 2 MB per request as Google recommends, but never more than MAX_WRITE_BATCHES
        # requests: for a huge backfill the bodies grow instead (no hard limit, §1). Each full
        # batch holds more than limit - max(sizes) >= total / MAX_WRITE_BATCHES bytes.
        limit = max(MAX_BATCH_BYTES, math.ceil(sum(sizes) / MAX_WRITE_BATCHES) + max(sizes))
        batches: list[list[bytes]] = [[]]
        size = 0
        for part, n in zip(parts, sizes, strict=True):
            if batches[-1] and size + n > limit:
                batches.append([])
                size = 0
            batches[-1].append(part)
            size += n
        url = SPREADSHEET_BATCH_UPDATE_URL % self.spreadsheet_id
        for batch in batches:
            body = b'{"requests":[' + b",".join(batch) + b"]}"
            self._call(
                functools.partial(self._http.request, "post", url, data=body, headers=JSON_HEADERS)
            )

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run one gspread call, turning vendor errors into revbot's own."""
        try:
            return fn()
        except APIError as e:
            raise self._error(e) from e
        except google.auth.exceptions.RefreshError as e:
            if getattr(e, "retryable", False):
                raise TemporaryError(
                    "Google's token endpoint is unavailable; try again later"
                ) from e
            reason = e.args[0] if e.args and isinstance(e.args[0], str) else type(e).__name__
            raise ConfigError(
                f"Google refused the service-account key {self.credentials_file} "
                f"({_one_line(reason)}): create a new JSON key for {self.client_email}"
            ) from e
        except (google.auth.exceptions.TransportError, requests.RequestException) as e:
            raise TemporaryError(
                f"cannot reach Google ({type(e).__name__}); try again later"
            ) from e

    def _error(self, e: APIError) -> Exception:
        status = e.response.status_code
        message = _one_line(str(e.error.get("message", ""))) if isinstance(e.error, dict) else ""
        if status == 403:
            return ServiceError(
                f"Google Sheets denied access to spreadsheet {self.spreadsheet_id}: share the "
                f"sheet with {self.client_email} as Editor"
            )
        if status == 404:
            return ConfigError(
                f"no spreadsheet {self.spreadsheet_id} in Google Sheets: GOOGLE_SHEET_ID is "
                "wrong (copy the id between /d/ and /edit from the sheet's URL)"
            )
        if status == 401:
            return ConfigError(
                f"Google Sheets rejected the credentials of {self.client_email}: check "
                f"{self.credentials_file} and that the Google Sheets API is enabled"
            )
        return ServiceError(f"Google Sheets error (HTTP {status}): {message}")


# --- helpers --------------------------------------------------------------------------------


def _load_key(path: Path) -> dict[str, Any]:
    fix = "create a service-account JSON key and set GOOGLE_APPLICATION_CREDENTIALS to its path"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Google credentials file {path} not found: {fix}") from None
    except OSError as e:
        raise ConfigError(
            f"cannot read Google credentials file {path} ({type(e).__name__}): {fix}"
        ) from None
    try:
        info = json.loads(text)
    except ValueError:
        raise ConfigError(f"{path} is not JSON: {fix}") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        kind = info.get("type") if isinstance(info, dict) else None
        raise ConfigError(f"{path} is not a service-account key (type {kind!r}): {fix}")
    missing = [k for k in ("client_email", "private_key", "token_uri") if not info.get(k)]
    if missing:
        raise ConfigError(f"{path} lacks {', '.join(missing)}: {fix}")
    return info


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _quote(title: str) -> str:
    return "'" + title.replace("'", "''") + "'"


def _column_letter(index: int) -> str:
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


def _free_id(name: str, taken: set[int]) -> int:
    """A stable id for a sheet or chart we create. Sending our own ids makes a retried
    batchUpdate fail loudly instead of adding a second copy."""
    candidate = zlib.crc32(f"revbot:{name}".encode()) & 0x7FFFFFFF
    while candidate in taken or candidate == 0:
        candidate = (candidate + 1) & 0x7FFFFFFF
    taken.add(candidate)
    return candidate


def _dedupe(rows: Iterable[Row]) -> list[Row]:
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


def _read_key(tab: TabSpec, values: Sequence[Any]) -> tuple[str, ...] | None:
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


def _new_tab(tab: TabSpec, sheet_id: int, rows: int) -> list[dict[str, Any]]:
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
    period = _column_letter(0)
    net = _column_letter(tab.columns.index("net_revenue"))
    last = _column_letter(len(tab.columns) - 1)
    source = f"{_quote(tab.title)}!A1:{last}"
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
