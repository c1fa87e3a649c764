"""The Google Sheet dashboard: gspread over google-auth.

One :meth:`GoogleSheetDashboard.apply` costs at most three Sheets API requests once the tabs
exist: (1) one metadata GET (sheets, grid sizes, charts), (2) one ``values:batchGet`` of the key
columns of the tabs being written, (3) one ``spreadsheets:batchUpdate`` that writes every new
and changed row, its number formats, and any missing tab or chart. A very large update (a
year's backfill) is split into a few batchUpdates of about 2 MB, never more than
:data:`~bot.dashboard.sheets_requests.MAX_WRITE_BATCHES`.

Values are written as typed ``CellData`` (``stringValue`` / ``numberValue``), never parsed as
user input, so text from Stripe such as ``=IMPORTXML(...)`` or ``+1`` stays text, and numbers
stay numbers. Only our own columns of our own tabs are written; missing tabs (never created,
deleted, renamed) are created after the founder's own.

Quotas: writes are spaced ``write_interval`` apart (60/minute per user); 429 and 5xx are retried
under :class:`bot.retry.RetryPolicy` for at most ``max_wait`` seconds, then TemporaryError (75).

This module is the dashboard (key file, errors, the three requests); the HTTP client and its
retries are in ``sheets_http.py``, the requests it sends are built in ``sheets_requests.py``.
"""

from __future__ import annotations

import functools
import json
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import google.auth.exceptions
import requests
from google.oauth2 import service_account
from gspread.exceptions import APIError
from gspread.urls import SPREADSHEET_BATCH_UPDATE_URL

from bot.dashboard.base import CHARTS_TITLE, TABS, DashboardUpdate, TabSpec, WriteResult
from bot.dashboard.sheets_http import BASE_DELAY, MAX_ATTEMPTS, MAX_DELAY, SheetsHTTPClient
from bot.dashboard.sheets_requests import (
    NEW_SHEET_COLUMNS,
    NEW_SHEET_ROWS,
    Grid,
    Plan,
    batch_bodies,
    cell_data,
    column_letter,
    dedupe,
    free_id,
    new_tab,
    plan_charts,
    plan_tab,
    quote,
    read_key,
    serial,
)
from bot.errors import ConfigError, ServiceError, TemporaryError
from bot.retry import RetryPolicy

SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)
SPREADSHEET_URL = "https://docs.google.com/spreadsheets/d/{}"
JSON_HEADERS = {"Content-Type": "application/json"}

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
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ConfigError(f"unknown time zone {timezone!r}") from e
        if api_url is not None and not re.match(r"https?://[^/\s]+", api_url):
            raise ConfigError(f"GOOGLE_SHEETS_API_URL {api_url!r} is not an http(s) URL")
        info = _load_key(self.credentials_file)
        self.client_email: str = info["client_email"]
        try:
            credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=list(SCOPES)
            )
        except (ValueError, google.auth.exceptions.MalformedError) as e:
            # The message could quote the key; name the file, never its content.
            raise ConfigError(
                f"{self.credentials_file} has an unusable private_key: download a new JSON key "
                f"for {self.client_email} and point GOOGLE_APPLICATION_CREDENTIALS at it"
            ) from e
        retry = RetryPolicy(
            base=BASE_DELAY,
            cap=MAX_DELAY,
            budget=max_wait,
            attempts=MAX_ATTEMPTS,
            rng=rng or random.Random(),
            sleep=sleep,
        )
        self._http = SheetsHTTPClient(
            credentials,
            api_url=api_url,
            retry=retry,
            write_interval=write_interval,
            sleep=sleep,
            clock=clock,
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
        plan = Plan()

        grids: dict[str, Grid] = {}
        rows_by_tab = {tab.title: dedupe(update.rows_for(tab)) for tab in TABS}
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
                grids[tab.title] = Grid(
                    int(existing.get("sheetId", 0)),
                    int(grid.get("rowCount", 0)),
                    int(grid.get("columnCount", 0)),
                )
            else:
                # Missing (never created, deleted or renamed by a founder): create it now.
                sheet_id = free_id(f"tab:{tab.title}", sheet_ids)
                rows = max(NEW_SHEET_ROWS, 1 + len(rows_by_tab[tab.title]))
                grids[tab.title] = Grid(sheet_id, rows, NEW_SHEET_COLUMNS, created=True)
                plan.structure += new_tab(tab, sheet_id, rows)

        keys = self._read_keys(
            [t for t in TABS if rows_by_tab[t.title] and not grids[t.title].created], grids
        )
        for tab in TABS:
            plan_tab(plan, tab, rows_by_tab[tab.title], grids[tab.title], keys.get(tab.title))

        plan_charts(plan, update, by_title, sheets, sheet_ids, grids)
        self._send(plan.requests())
        created = tuple(t.title for t in TABS if grids[t.title].created)
        return WriteResult(
            inserted=plan.inserted, updated=plan.updated, location=self.describe(), created=created
        )

    # -- reading ------------------------------------------------------------------------------

    def _read_keys(
        self, tabs: Sequence[TabSpec], grids: Mapping[str, Grid]
    ) -> dict[str, list[tuple[str, ...] | None]]:
        """Each tab's keys by data row (``None`` for a row without a key), in one request."""
        tabs = [t for t in tabs if grids[t.title].rows > 1]
        if not tabs:
            return {}
        ranges = [
            f"{quote(t.title)}!A2:{column_letter(t.key_width - 1)}{grids[t.title].rows}"
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
            out[tab.title] = [read_key(tab, values) for values in value_range.get("values", [])]
        return out

    # -- sending ------------------------------------------------------------------------------

    def _send(self, subrequests: Sequence[dict[str, Any]]) -> None:
        url = SPREADSHEET_BATCH_UPDATE_URL % self.spreadsheet_id
        for body in batch_bodies(subrequests):
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
    except FileNotFoundError as e:
        raise ConfigError(f"Google credentials file {path} not found: {fix}") from e
    except OSError as e:
        raise ConfigError(
            f"cannot read Google credentials file {path} ({type(e).__name__}): {fix}"
        ) from e
    try:
        info = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{path} is not JSON: {fix}") from e
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


# serial and cell_data live in sheets_requests; they stay importable from here too.
__all__ = ["GoogleSheetDashboard", "cell_data", "parse_spreadsheet_id", "serial"]
