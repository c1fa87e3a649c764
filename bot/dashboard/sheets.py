"""The Google Sheet dashboard: gspread over google-auth.

One :meth:`GoogleSheetDashboard.apply` sends three Sheets API requests once the tabs exist:
(1) one metadata GET (sheets, grid sizes, charts), (2) one ``values:batchGet``, (3) one
``spreadsheets:batchUpdate`` that removes rows, writes every new and changed row, its number
formats, and any missing tab or chart. A large write (a year's backfill) is several
batchUpdates of at most 2 MB, paced like every write.

The read (2) is what keeps a daily run's traffic the size of the day. With a key index
(``index_path``, see ``sheets_index.py``) it reads a few cells of each tab being written: the
first and last rows the index knows, the row after them (which must be empty), a few rows
picked at random and the rows about to be rewritten or removed. If they all hold the keys the
index says, the write is planned from the index; if not (a founder sorted, inserted or deleted
rows, a tab was recreated), a second read takes the tab's whole key column and the index is
rebuilt from it. Without an index, or without an entry for the tab, (2) is that whole read.

Transactions keeps the days from ``DashboardUpdate.transactions_from`` on: older rows are
removed and none is written. Before a write that would take the spreadsheet above Google's
cell limit, more of its oldest days go (whole days, down to 95 % of the limit) and
``WriteResult.trimmed`` says so; Daily, Monthly, Metrics, Payouts and Charts are never trimmed.

Values are written as typed ``CellData`` (``stringValue`` / ``numberValue``), never parsed as
user input, so text from Stripe such as ``=IMPORTXML(...)`` or ``+1`` stays text, and numbers
stay numbers. Only our own columns of our own tabs are written; missing tabs (never created,
deleted, renamed) are created after the founder's own, except Metrics, which goes right after
Monthly when Monthly is there (it comes later, with the first metrics row), and Payouts (which
comes with the first payout row), right after Transactions, else after the last of our other
tabs.

Quotas: writes are spaced ``write_interval`` apart (60/minute per user); 429 and 5xx are retried
under :class:`bot.retry.RetryPolicy` for at most ``max_wait`` seconds, then TemporaryError (75).

This module is the dashboard (key file, errors, reads, the order of a write); the HTTP client
and its retries are in ``sheets_http.py``, the requests it sends are built in
``sheets_requests.py``, the key index is ``sheets_index.py``.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import re
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import google.auth.exceptions
import requests
from google.oauth2 import service_account
from gspread.exceptions import APIError
from gspread.urls import SPREADSHEET_BATCH_UPDATE_URL

from bot.dashboard.base import (
    CHARTS_TITLE,
    METRICS,
    MONTHLY,
    ON_FIRST_ROW,
    PAYOUTS,
    SHEETS_SPREADSHEET_CELL_LIMIT,
    TABS,
    TRANSACTIONS,
    DashboardUpdate,
    Row,
    TabSpec,
    TransactionRow,
    WriteResult,
    key_of,
)
from bot.dashboard.sheets_http import BASE_DELAY, MAX_ATTEMPTS, MAX_DELAY, SheetsHTTPClient
from bot.dashboard.sheets_index import (
    IndexedRows,
    Key,
    ReadRows,
    SheetIndex,
    TabRows,
    TabWrite,
    open_index,
)
from bot.dashboard.sheets_requests import (
    CHART_ROWS,
    NEW_SHEET_COLUMNS,
    Grid,
    Plan,
    Trim,
    batch_bodies,
    cell_data,
    column_letter,
    consecutive_ranges,
    dedupe,
    delete_sheet,
    free_id,
    new_tab,
    plan_charts,
    plan_tab,
    plan_trim,
    quote,
    read_day,
    read_key,
    remove_rows,
    serial,
)
from bot.errors import ConfigError, ServiceError, TemporaryError
from bot.retry import RetryPolicy

SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)
SPREADSHEET_URL = "https://docs.google.com/spreadsheets/d/{}"
JSON_HEADERS = {"Content-Type": "application/json"}

# Only what apply() needs: grid sizes to grow (and to count against the cell limit), charts to
# not duplicate, helper columns in use.
METADATA_FIELDS = (
    "sheets(properties(sheetId,title,index,sheetType,"
    "gridProperties(rowCount,columnCount,frozenRowCount)),"
    "charts(chartId,spec(title,basicChart(domains(domain(sourceRange(sources)))))))"
)
# Rows of a tab the index check reads besides the first, the last and the one after: picked
# at random, and at most this many of the rows about to be rewritten in place.
SAMPLES = 4
CHECKED_UPDATES = 8
CHECKED_REMOVALS = 3  # removed ranges whose ends are read

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One apply, planned: its requests, what the index records once they are sent, the trim
    of Transactions, and the tabs it creates."""

    plan: Plan
    writes: list[TabWrite]
    trim: Trim | None
    created: tuple[str, ...]


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
        index_path: Path | None = None,
        cell_limit: int = SHEETS_SPREADSHEET_CELL_LIMIT,
    ) -> None:
        """``index_path``: the key index's SQLite file (owned by this dashboard; None: every
        apply reads the key columns in full). ``cell_limit``: the most cells the spreadsheet
        may hold (Google's limit; a test sets a small one)."""
        self.spreadsheet_id = parse_spreadsheet_id(spreadsheet_id)
        self.credentials_file = Path(credentials_file)
        self.index_path = None if index_path is None else Path(index_path)
        self.cell_limit = cell_limit
        self._rng = rng or random.Random()
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
            rng=self._rng,
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
        """Upsert ``update`` (see the module docstring for the requests it takes).

        ``updated`` counts rows whose key was already in the tab: they are rewritten in place.
        """
        meta = self._call(
            lambda: self._http.fetch_sheet_metadata(
                self.spreadsheet_id,
                params={"includeGridData": "false", "fields": METADATA_FIELDS},
            )
        )
        index = open_index(self.index_path)
        try:
            try:
                prepared = self._prepare(update, meta, index)
            except sqlite3.DatabaseError as e:
                if index is None:
                    raise
                # Damaged past what opening it showed: a cache, so start it again.
                log.warning("the sheet index %s is damaged (%s); rebuilding it", index.path, e)
                index.close()
                index.path.unlink(missing_ok=True)
                index = open_index(self.index_path)
                prepared = self._prepare(update, meta, index)
            self._send(prepared.plan.requests())
            # Only now, with every batch written: a write that failed half-way leaves the index
            # as it was, which the next run's check finds true or rejects (see sheets_index).
            if index is not None:
                self._save_index(index, prepared.writes)
        finally:
            if index is not None:
                index.close()
        return WriteResult(
            inserted=prepared.plan.inserted,
            updated=prepared.plan.updated,
            location=self.describe(),
            created=prepared.created,
            trimmed=self._trimmed(prepared.trim),
        )

    def _prepare(
        self, update: DashboardUpdate, meta: Mapping[str, Any], index: SheetIndex | None
    ) -> _Prepared:
        """The whole write, planned from the metadata and what is read (nothing is written)."""
        sheets = [s for s in meta.get("sheets", []) if "properties" in s]
        by_title = {s["properties"]["title"]: s["properties"] for s in sheets}
        sheet_ids = {int(s["properties"].get("sheetId", 0)) for s in sheets}
        grids_there = {t for t, p in by_title.items() if p.get("sheetType", "GRID") == "GRID"}
        # Metrics and Payouts only when there are rows for them: a founder's own chart sheet of
        # that name stops nothing on an account without subscriptions (or payouts).
        needed = [t.title for t in TABS if t not in ON_FIRST_ROW or update.rows_for(t)]
        for title in (*needed, CHARTS_TITLE):
            if title in by_title and title not in grids_there:
                raise ServiceError(
                    f"the sheet {title!r} of spreadsheet {self.spreadsheet_id} is not a grid "
                    "(a chart moved to its own sheet?): rename it so revbot can create its tab"
                )
        tabs = update.tabs(grids_there)
        rows_by_tab = {tab.title: dedupe(update.rows_for(tab)) for tab in tabs}
        plan = Plan()
        grids: dict[str, Grid] = {}
        for tab in tabs:
            existing = by_title.get(tab.title)
            if existing is not None:
                grids[tab.title] = _grid(existing)
            else:
                # Missing (never created, deleted or renamed by a founder): create it now, its
                # grid the size of what it receives (Transactions' once its trim is known).
                sheet_id = free_id(f"tab:{tab.title}", sheet_ids)
                wide = len(tab.columns) if tab is TRANSACTIONS else NEW_SHEET_COLUMNS
                rows = max(2, 1 + len(rows_by_tab[tab.title]))
                grids[tab.title] = Grid(sheet_id, rows, wide, created=True, frozen=1)
                if tab is not TRANSACTIONS and tab is not PAYOUTS:  # those two: once placed
                    at = _after_monthly(update, by_title) if tab is METRICS else None
                    plan.structure += new_tab(tab, sheet_id, rows, wide, index=at)
        known = self._known(update, tabs, rows_by_tab, grids, sheets, index)
        writes, trim = self._plan(update, rows_by_tab, grids, known, plan, sheets, sheet_ids)
        dropped = by_title.get(TRANSACTIONS.title)
        if not update.keep_transactions:
            plan.inserted[TRANSACTIONS.title] = plan.updated[TRANSACTIONS.title] = 0
        if not update.keep_transactions and dropped is not None:
            # First, so the cells it frees count before anything grows; after the new tabs
            # when it is the only sheet (a spreadsheet cannot be left without one).
            removal = delete_sheet(int(dropped.get("sheetId", 0)))
            if len(sheets) > 1:
                plan.removals.insert(0, removal)
            else:
                plan.structure.append(removal)
            writes.append(TabWrite(TRANSACTIONS.title, 0, None, dropped=True))
        payouts = grids.get(PAYOUTS.title)
        if payouts is not None and payouts.created:
            # Last, once every other tab is where this write leaves it (Transactions too). A
            # new grid is sized to its rows: no request of the plan refers to it before.
            gone = None if update.keep_transactions else TRANSACTIONS.title
            at = _after_ours(PAYOUTS, sheets, plan.structure, gone=gone)
            plan.structure += new_tab(
                PAYOUTS, payouts.sheet_id, payouts.rows, payouts.cols, index=at
            )
        created = tuple(t.title for t in tabs if grids[t.title].created)
        return _Prepared(plan, writes, trim, created)

    def _plan(
        self,
        update: DashboardUpdate,
        rows_by_tab: Mapping[str, Sequence[Row]],
        grids: dict[str, Grid],
        known: Mapping[str, TabRows],
        plan: Plan,
        sheets: Sequence[Mapping[str, Any]],
        sheet_ids: set[int],
    ) -> tuple[list[TabWrite], Trim | None]:
        """Every tab's requests into ``plan``; what the index records once they are sent (the
        tabs read or created: another tab's entry, if any, is left as it is)."""
        writes: list[TabWrite] = []
        for tab in TABS:
            if tab is TRANSACTIONS or tab.title not in grids:
                continue
            grid = grids[tab.title]
            inserted = plan_tab(plan, tab, rows_by_tab[tab.title], grid, known.get(tab.title))
            if tab.title in known or grid.created:
                writes.append(_tab_write(tab, grid, known, [], inserted))
        by_title = {s["properties"]["title"]: s["properties"] for s in sheets}
        charts = plan_charts(plan, update, by_title, sheets, sheet_ids, grids)
        # What the other sheets hold once written: ours as planned, the founders' as they are.
        ours = {t.title for t in TABS} | {CHARTS_TITLE}
        others = sum(_grid(s["properties"]).cells for s in sheets
                     if s["properties"]["title"] not in ours)  # fmt: skip
        others += charts.cells + sum(g.cells for t, g in grids.items() if t != TRANSACTIONS.title)
        tx_grid = grids.get(TRANSACTIONS.title)
        if tx_grid is None:  # Transactions is not kept
            if others > self.cell_limit:
                raise self._no_room()
            return writes, None
        grid = tx_grid
        tx_rows = [r for r in rows_by_tab[TRANSACTIONS.title] if isinstance(r, TransactionRow)]
        known_tx = known.get(TRANSACTIONS.title)
        trim = plan_trim(
            known=known_tx,
            rows=tx_rows,
            # A new tab is sized once its rows are known: plan as if it had the least grid.
            grid=Grid(grid.sheet_id, 2, grid.cols, frozen=1) if grid.created else grid,
            first_day=update.transactions_from,
            other_cells=others,
            limit=self.cell_limit,
        )
        if trim is None:
            raise self._no_room()
        kept = [r for r in tx_rows if trim.first_day is None or r.created.date() >= trim.first_day]
        if grid.created:
            grid.rows = max(2, 1 + len(kept))
            # Before a new Charts tab, as the tabs' order is when all are new.
            at = next(
                (i for i, r in enumerate(plan.structure) if _adds(r, CHARTS_TITLE)),
                len(plan.structure),
            )
            plan.structure[at:at] = new_tab(TRANSACTIONS, grid.sheet_id, grid.rows, grid.cols)
        else:
            remove_rows(plan, grid, trim.removed)
        inserted = plan_tab(plan, TRANSACTIONS, kept, grid, known_tx, trim.removed)
        if known_tx is not None or grid.created:
            writes.append(_tab_write(TRANSACTIONS, grid, known, trim.removed, inserted))
        return writes, trim

    def _no_room(self) -> ServiceError:
        return ServiceError(
            f"spreadsheet {self.spreadsheet_id} would hold more than Google Sheets' limit of "
            f"{self.cell_limit:,} cells even without Transactions rows: delete tabs, rows or "
            "columns you do not need, or point GOOGLE_SHEET_ID at a new spreadsheet"
        )

    def _trimmed(self, trim: Trim | None) -> str | None:
        if trim is None or not trim.limited:
            return None
        kept = (
            f"keeps the days from {trim.kept.isoformat()} on"
            if trim.kept is not None
            else "keeps no day"
        )
        return (
            f"Transactions {kept}: Google Sheets' limit of {self.cell_limit:,} cells per "
            "spreadsheet"
        )

    def _save_index(self, index: SheetIndex, writes: Sequence[TabWrite]) -> None:
        try:
            index.save(self.spreadsheet_id, writes)
        except sqlite3.Error as e:
            # The sheet is written; an index left as it was is checked (and rebuilt) next run.
            log.warning("cannot update the sheet index %s (%s)", index.path, e)

    # -- reading ------------------------------------------------------------------------------

    def _known(
        self,
        update: DashboardUpdate,
        tabs: Sequence[TabSpec],
        rows_by_tab: Mapping[str, Sequence[Row]],
        grids: Mapping[str, Grid],
        sheets: Sequence[Mapping[str, Any]],
        index: SheetIndex | None,
    ) -> dict[str, TabRows]:
        """The rows of each existing tab this write needs to know, in one read when the index
        holds (two when its check fails)."""
        first_day = update.transactions_from
        wanted = [t for t in tabs if not grids[t.title].created and rows_by_tab[t.title]]
        tx = grids.get(TRANSACTIONS.title)
        trimming = first_day is not None or self._may_pass_limit(update, rows_by_tab, grids, sheets)
        if tx is not None and not tx.created and trimming and TRANSACTIONS not in wanted:
            wanted.append(TRANSACTIONS)
        # Days are read only when they may be needed: to trim, or to keep in the index.
        with_days = index is not None or trimming
        out: dict[str, TabRows] = {}
        checks: dict[str, tuple[IndexedRows, list[tuple[int, int]]]] = {}
        full: list[TabSpec] = []
        for tab in wanted:
            grid = grids[tab.title]
            indexed = index.rows(self.spreadsheet_id, tab.title, grid.sheet_id) if index else None
            if grid.rows <= 1:
                out[tab.title] = ReadRows()  # nothing under the header
            elif indexed is None or indexed.count + 1 > grid.rows:
                full.append(tab)  # no entry, another tab of that name, or rows deleted
            else:
                wanted_rows = self._check_rows(
                    tab, indexed, grid, rows_by_tab[tab.title], first_day
                )
                checks[tab.title] = (indexed, consecutive_ranges(wanted_rows))
        ranges = [_row_range(t, run) for t, (_, runs) in checks.items() for run in runs]
        ranges += [_key_range(t, grids[t.title], with_days) for t in full]
        replies = iter(self._batch_get(ranges))
        again: list[TabSpec] = []
        for title, (indexed, runs) in checks.items():
            tab = next(t for t in wanted if t.title == title)
            if _matches(tab, indexed, runs, [next(replies) for _ in runs]):
                out[title] = indexed
            else:
                log.info("the %s tab differs from the key index; reading its keys", title)
                again.append(tab)
        for tab in full:
            out[tab.title] = _read_rows(tab, next(replies))
        if again:
            reread = self._batch_get([_key_range(t, grids[t.title], with_days) for t in again])
            for tab, values in zip(again, reread, strict=True):
                out[tab.title] = _read_rows(tab, values)
        return out

    def _may_pass_limit(
        self,
        update: DashboardUpdate,
        rows_by_tab: Mapping[str, Sequence[Row]],
        grids: Mapping[str, Grid],
        sheets: Sequence[Mapping[str, Any]],
    ) -> bool:
        """Whether this write could take the spreadsheet above the cell limit, by a bound
        that cannot be short: every row new, every chart new, the Charts tab as tall as the
        tallest tab. Only then must a read without the index take Transactions' days."""
        by_title = {s["properties"]["title"]: _grid(s["properties"]) for s in sheets}
        ours = {t.title for t in TABS} | {CHARTS_TITLE}
        total = sum(g.cells for title, g in by_title.items() if title not in ours)
        tallest = 0
        for tab in TABS:
            if tab.title in grids:
                grid, rows = grids[tab.title], len(rows_by_tab[tab.title])
                total += (grid.rows + rows) * max(grid.cols, len(tab.columns))
                tallest = max(tallest, grid.rows + rows)
        currencies = {r.currency.upper() for r in update.daily} | {
            r.currency.upper() for r in update.monthly
        }
        with_mrr = {r.currency.upper() for r in update.metrics}
        charts = by_title.get(CHARTS_TITLE, Grid(0, 0, 0))
        # Two helper columns a chart: a daily and a monthly one per currency, and an MRR one.
        cols = max(charts.cols, NEW_SHEET_COLUMNS) + 4 * len(currencies) + 2 * len(with_mrr)
        rows = max(charts.rows, tallest, CHART_ROWS * (cols // 4 + 1))
        return total + rows * cols > self.cell_limit

    def _check_rows(
        self,
        tab: TabSpec,
        indexed: IndexedRows,
        grid: Grid,
        rows: Sequence[Row],
        first_day: date | None,
    ) -> list[int]:
        """The rows whose keys the index check reads: the first and the last known, the one
        after (it must be empty), a few at random, and some of those about to be rewritten or
        removed (so a shift the others miss cannot misplace a write)."""
        n = indexed.count
        wanted = {1, n} if n else set()
        if n + 1 < grid.rows:
            wanted.add(n + 1)
        wanted |= {self._rng.randint(1, n) for _ in range(SAMPLES)} if n > 2 else set()
        found = sorted(indexed.find({key_of(r) for r in rows}).values())
        if len(found) > CHECKED_UPDATES:
            found = self._rng.sample(found, CHECKED_UPDATES)
        wanted.update(found)
        if tab is TRANSACTIONS and first_day is not None:
            for start, end in consecutive_ranges(indexed.positions_before(first_day))[
                :CHECKED_REMOVALS
            ]:
                wanted |= {start, end - 1, end}
        return sorted(p for p in wanted if 1 <= p <= n + 1 and p < grid.rows)

    def _batch_get(self, ranges: Sequence[str]) -> list[list[list[Any]]]:
        """The values of ``ranges`` in one request, unformatted (a date key is its serial
        number whatever format a founder applied), row by row."""
        if not ranges:
            return []
        reply = self._call(
            lambda: self._http.values_batch_get(
                self.spreadsheet_id,
                list(ranges),
                params={
                    "valueRenderOption": "UNFORMATTED_VALUE",
                    "dateTimeRenderOption": "SERIAL_NUMBER",
                    "majorDimension": "ROWS",
                },
            )
        )
        values = [list(r.get("values", [])) for r in reply.get("valueRanges", [])]
        return values + [[] for _ in range(len(ranges) - len(values))]

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


def _grid(props: Mapping[str, Any]) -> Grid:
    grid = props.get("gridProperties", {})
    return Grid(
        int(props.get("sheetId", 0)),
        int(grid.get("rowCount", 0)),
        int(grid.get("columnCount", 0)),
        frozen=int(grid.get("frozenRowCount", 0)),
    )


def _after_monthly(
    update: DashboardUpdate, by_title: Mapping[str, Mapping[str, Any]]
) -> int | None:
    """The sheet index right after an existing Monthly tab, once the removals that come first
    are done (None: there is no Monthly, so the new Metrics tab goes after the founder's tabs,
    like every new tab of ours)."""
    monthly = by_title.get(MONTHLY.title)
    if monthly is None:
        return None
    at = int(monthly.get("index", 0)) + 1
    dropped = None if update.keep_transactions else by_title.get(TRANSACTIONS.title)
    if dropped is not None and int(dropped.get("index", 0)) < at:
        at -= 1  # Transactions, deleted first, sat before Monthly
    return at


def _after_ours(
    tab: TabSpec,
    sheets: Sequence[Mapping[str, Any]],
    structure: Sequence[Mapping[str, Any]],
    *,
    gone: str | None,
) -> int | None:
    """The sheet index right after the nearest of our tabs before ``tab`` in TABS, once the
    sheet ``gone`` (Transactions, not kept) is removed and the sheets ``structure`` adds are
    there (None: none of ours, so the new tab goes after the founder's tabs)."""
    by_index = sorted(sheets, key=lambda s: int(s["properties"].get("index", 0)))
    order = [str(s["properties"]["title"]) for s in by_index]
    order = [title for title in order if title != gone]
    for request in structure:
        props = request.get("addSheet", {}).get("properties")
        if props is not None:
            at = props.get("index")
            order.insert(len(order) if at is None else int(at), str(props["title"]))
    for before in reversed(TABS[: TABS.index(tab)]):
        if before.title in order:
            return order.index(before.title) + 1
    return None


def _adds(request: Mapping[str, Any], title: str) -> bool:
    """Whether ``request`` is the addSheet of the tab ``title``."""
    return bool(request.get("addSheet", {}).get("properties", {}).get("title") == title)


def _row_range(title: str, run: tuple[int, int]) -> str:
    """The key cells of the grid rows ``run`` (half-open) of the tab ``title``."""
    tab = next(t for t in TABS if t.title == title)
    return f"{quote(title)}!A{run[0] + 1}:{column_letter(tab.key_width - 1)}{run[1]}"


def _key_range(tab: TabSpec, grid: Grid, with_days: bool) -> str:
    """The tab's key columns (and Transactions' ``created``, for its days) under the header."""
    width = 2 if tab is TRANSACTIONS and with_days else tab.key_width
    return f"{quote(tab.title)}!A2:{column_letter(width - 1)}{grid.rows}"


def _read_rows(tab: TabSpec, values: Sequence[Sequence[Any]]) -> ReadRows:
    keys = [read_key(tab, row) for row in values]
    days = [read_day(row[1]) if tab is TRANSACTIONS and len(row) > 1 else None for row in values]
    return ReadRows(keys, days)


def _matches(
    tab: TabSpec,
    indexed: IndexedRows,
    runs: Sequence[tuple[int, int]],
    got: Sequence[Sequence[Sequence[Any]]],
) -> bool:
    """Whether the rows read (one list of rows per run) hold the keys the index says."""
    expected = indexed.keys_at([p for start, end in runs for p in range(start, end)])
    for (start, end), values in zip(runs, got, strict=True):
        for offset, position in enumerate(range(start, end)):
            row = values[offset] if offset < len(values) else []
            if read_key(tab, row) != expected.get(position):
                return False
    return True


def _tab_write(
    tab: TabSpec,
    grid: Grid,
    known: Mapping[str, TabRows],
    removed: list[tuple[int, int]],
    inserted: Sequence[tuple[int, Row]],
) -> TabWrite:
    def day(row: Row) -> date | None:
        return row.created.date() if isinstance(row, TransactionRow) else None

    rows: list[tuple[int, Key, date | None]] = [(at, key_of(r), day(r)) for at, r in inserted]
    return TabWrite(tab.title, grid.sheet_id, known.get(tab.title), removed, rows)


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
