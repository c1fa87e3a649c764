"""The local workbook written from its cache: the cost of a run is the rows it changes.

openpyxl spends about 20 µs on each cell it reads or writes, so a workbook rewritten through it
costs the whole history every morning. Here openpyxl writes only the frame of the file (each tab
with its header, widths and frozen row; the Charts tab with its pivot and charts; the styles),
and the data rows are put into that frame as XML: Daily, Monthly, Metrics and Payouts from the
rows kept in the cache, Transactions from one compressed piece per day, of which a run renders only
the days it changes (:mod:`bot.dashboard.xlsx_parts`, :mod:`bot.dashboard.workbook_cache`).
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from bot.dashboard.base import (
    CHART_COLUMN,
    CHARTS_TITLE,
    DAILY,
    METRICS,
    MONTHLY,
    PAYOUTS,
    TABS,
    TRANSACTIONS,
    XLSX_ROW_LIMIT,
    Cell,
    DashboardUpdate,
    PayoutRow,
    Row,
    TabSpec,
    TransactionRow,
    WriteResult,
    cells,
    key_of,
)
from bot.dashboard.workbook_cache import WorkbookCache
from bot.dashboard.xlsx_parts import (
    DATE_FORMAT,
    Part,
    Sink,
    add_styles,
    deflate_part,
    format_of,
    inflate_part,
    joined,
    row_xml,
    write_zip,
)

if TYPE_CHECKING:
    from openpyxl import Workbook
    from openpyxl.worksheet.worksheet import Worksheet

_FORMATTED = frozenset({"money", "date", "datetime", "pct"})
_STYLED = re.compile(r'<c s="(\d+)">')


def ensure_tab(wb: Workbook, tab: TabSpec) -> Worksheet:
    """Our tab in ``wb`` (created in its place if missing), with its header row."""
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    if tab.title in wb.sheetnames:
        ws = wb[tab.title]
    else:
        ws = wb.create_sheet(tab.title, index=_place(wb.sheetnames, tab))
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


def _place(titles: Sequence[str], tab: TabSpec) -> int:
    """Where a missing tab of ours goes: right after the nearest of ours before it in TABS,
    else right before the nearest after it, else at its place in TABS. So Metrics, made once
    the first metrics row comes, lands next to Monthly wherever a founder moved the tabs, and
    Payouts right after Transactions (after the last of our other tabs without it)."""
    i = TABS.index(tab)
    for before in reversed(TABS[:i]):
        if before.title in titles:
            return list(titles).index(before.title) + 1
    for after in TABS[i + 1 :]:
        if after.title in titles:
            return list(titles).index(after.title)
    return min(i, len(titles))


# (tab title, currency -> period -> the value charted: net revenue, or MRR for Metrics)
Series = list[tuple[str, dict[str, dict[Any, float]]]]


def _chart_title(title: str, currency: str) -> str:
    return f"MRR, {currency}" if title == METRICS.title else f"{title} net revenue, {currency}"


def add_charts(wb: Workbook, series: Series) -> None:
    """The Charts tab (derived from Daily, Monthly and Metrics: made anew on each write)."""
    from openpyxl.chart import BarChart, LineChart, Reference

    if CHARTS_TITLE in wb.sheetnames:
        wb.remove(wb[CHARTS_TITLE])
    ws = wb.create_sheet(CHARTS_TITLE)
    # A pivot (period x currency) per chart, left of the charts, so each chart has
    # contiguous ranges to point at.
    col0 = 1
    anchor_row = 1
    for title, per_ccy in series:
        if not per_ccy:
            continue
        periods = sorted({p for d in per_ccy.values() for p in d}, key=_period_text)
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
            chart.title = _chart_title(title, ccy)
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


def _period_text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return "" if value is None else str(value)


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _row_key(row: Row) -> str:
    return "\x1f".join(key_of(row))


def _net(row_cells: Sequence[Cell], tab: TabSpec) -> float | None:
    """The value the tab's chart plots (net revenue; MRR for Metrics); None for a tab without
    a chart (Payouts)."""
    if tab.title not in CHART_COLUMN:
        return None
    value = row_cells[tab.columns.index(CHART_COLUMN[tab.title])].value
    # Display only: the ledger keeps the exact integers.
    return None if value is None else float(value)  # type: ignore[arg-type]


def _order(row: Row) -> tuple[str, str]:
    """(period, currency) a cached row is stored with; a tab's rows are written ordered by
    period, then key. A payout's period is its local creation time, so Payouts is oldest
    first (as the other ways of writing it leave a tab refilled in the ledger's order), not
    in the order of its ids."""
    if isinstance(row, PayoutRow):
        return row.created.replace(tzinfo=None).isoformat(), row.currency.upper()
    key = key_of(row)
    return key[0], key[1]


def _dedupe(rows: Iterable[Row]) -> list[Row]:
    by_key: dict[str, Row] = {}
    for row in rows:
        by_key[_row_key(row)] = row
    return list(by_key.values())


class FastWriter:
    """One fast write of the workbook at ``path`` from ``cache`` (inside its transaction)."""

    def __init__(self, cache: WorkbookCache, *, row_limit: int = XLSX_ROW_LIMIT) -> None:
        self.cache = cache
        self.row_limit = row_limit
        self.trimmed: str | None = None
        self._memo: dict[int, tuple[Cell, ...]] = {}

    def _cells(self, row: Row) -> tuple[Cell, ...]:
        """The row's cells, made once per write (the rows live as long as the write)."""
        got = self._memo.get(id(row))
        if got is None:
            got = self._memo[id(row)] = cells(row)
        return got

    def write(self, update: DashboardUpdate, out: Sink) -> WriteResult:
        """Merge ``update`` into the cache and write the whole workbook to ``out``."""
        from openpyxl import Workbook

        cache = self.cache
        had = set(cache.get_json("tabs", []))
        tabs = update.tabs(had)
        result = WriteResult(created=tuple(t.title for t in tabs if t.title not in had))
        daily, monthly = _dedupe(update.daily), _dedupe(update.monthly)
        metrics, payouts = _dedupe(update.metrics), _dedupe(update.payouts)
        txns = [r for r in _dedupe(update.transactions) if isinstance(r, TransactionRow)]
        if not update.keep_transactions:
            txns = []
            cache.drop_transactions()
        elif update.transactions_from is not None:
            first = update.transactions_from
            txns = [t for t in txns if t.created.date() >= first]
            cache.drop_days_before(first.isoformat())

        # The number formats: an append-only list, so a format's place never changes.
        formats: list[str] = cache.get_json("formats", [])
        seen = set(formats)
        for row in (*daily, *monthly, *metrics, *payouts, *txns):
            for cell in self._cells(row):
                if cell.value is not None and cell.kind in _FORMATTED:
                    fmt = format_of(cell)
                    if fmt is not None and fmt not in seen:
                        formats.append(fmt)
                        seen.add(fmt)
        cache.put_json("formats", formats)

        # The frame, by openpyxl: tabs with their headers, the charts, the styles.
        wb = Workbook()
        assert wb.active is not None
        wb.remove(wb.active)
        for tab in tabs:
            ensure_tab(wb, tab)
        add_charts(wb, self._series(daily, monthly, metrics if METRICS in tabs else None))
        frame = io.BytesIO()
        wb.save(frame)
        with zipfile.ZipFile(frame) as z:
            names = z.namelist()
            parts = {name: z.read(name) for name in names}
        styles_xml, styles = add_styles(parts["xl/styles.xml"].decode(), formats)
        parts["xl/styles.xml"] = styles_xml.encode()
        self._restyle(styles)

        cached = ((DAILY, daily), (MONTHLY, monthly), (METRICS, metrics), (PAYOUTS, payouts))
        for tab, rows in cached:
            if tab in tabs:
                ins, upd = self._merge_rows(tab, rows, styles)
                result.inserted[tab.title], result.updated[tab.title] = ins, upd
        ins, upd = self._merge_transactions(txns, styles)
        result.inserted[TRANSACTIONS.title], result.updated[TRANSACTIONS.title] = ins, upd

        entries: list[tuple[str, Part]] = []
        sheet_of = {f"xl/worksheets/sheet{i}.xml": tab for i, tab in enumerate(tabs, 1)}
        for name in names:
            ours = sheet_of.get(name)
            if ours is None:
                entries.append((name, deflate_part(parts[name], last=True)))
            else:
                entries.append((name, self._sheet(ours, parts[name].decode())))
        write_zip(out, entries)
        cache.put_json("tabs", [t.title for t in tabs])
        result.trimmed = self.trimmed
        return result

    def _series(
        self, daily: Sequence[Row], monthly: Sequence[Row], metrics: Sequence[Row] | None
    ) -> Series:
        """Each charted tab's values per currency and period: the cache's, then this write's.
        ``metrics`` None: the workbook has no Metrics tab, so no MRR chart."""
        series: Series = []
        charted = [(DAILY, daily), (MONTHLY, monthly)]
        if metrics is not None:
            charted.append((METRICS, metrics))
        for tab, rows in charted:
            per_ccy: dict[str, dict[Any, float]] = defaultdict(dict)
            for period, ccy, net in self.cache.chart_points(tab.title):
                per_ccy[ccy][date.fromisoformat(period) if tab is DAILY else period] = net or 0.0
            for row in rows:
                key = key_of(row)
                period_key: Any = date.fromisoformat(key[0]) if tab is DAILY else key[0]
                per_ccy[key[1]][period_key] = _net(self._cells(row), tab) or 0.0
            series.append((tab.title, per_ccy))
        return series

    def _restyle(self, styles: Mapping[str, int]) -> None:
        """When the frame's own styles moved ours (e.g. the first date in the charts), rewrite
        the style references of every stored row and piece once."""
        cache = self.cache
        before: dict[str, int] = cache.get_json("styles", {})
        moved = {str(i): str(styles[f]) for f, i in before.items() if styles.get(f) != i}
        cache.put_json("styles", dict(styles))
        if not moved:
            return

        def remap(xml: str) -> str:
            return _STYLED.sub(lambda m: f'<c s="{moved.get(m.group(1), m.group(1))}">', xml)

        cache.restyle_rows(remap)
        for day in cache.all_chunk_days():
            part = cache.chunk(day)
            assert part is not None
            text = remap(inflate_part(part).decode())
            cache.put_chunk(day, text.count("</row>"), deflate_part(text.encode()))

    def _merge_rows(
        self, tab: TabSpec, rows: Sequence[Row], styles: Mapping[str, int]
    ) -> tuple[int, int]:
        # Daily's last column, updated_at, says when the figures changed: it is not compared.
        compare = len(tab.columns) - 1 if tab is DAILY else len(tab.columns)
        inserted = updated = 0
        for row in rows:
            row_cells = self._cells(row)
            key = _row_key(row)
            digest = _digest(row_xml(row_cells[:compare], styles))
            before = self.cache.row_digest(tab.title, key)
            if before == digest:
                continue
            if before is None:
                inserted += 1
            else:
                updated += 1
            period, currency = _order(row)
            self.cache.put_row(
                tab.title,
                key,
                digest,
                row_xml(row_cells, styles),
                period=period,
                currency=currency,
                net=_net(row_cells, tab),
            )
        return inserted, updated

    def _merge_transactions(
        self, rows: Sequence[TransactionRow], styles: Mapping[str, int]
    ) -> tuple[int, int]:
        cache = self.cache
        known = cache.txn_digests(r.id for r in rows)
        changed: dict[str, dict[str, str]] = defaultdict(dict)  # day -> id -> new XML
        puts: list[tuple[str, str, str, bytes]] = []
        touched: set[str] = set()
        inserted = updated = 0
        for row in rows:
            xml = row_xml(self._cells(row), styles)
            digest = _digest(xml)
            day = row.created.date().isoformat()
            before = known.get(row.id)
            if before is not None and before == (day, digest):
                continue
            if before is None:
                inserted += 1
            else:
                updated += 1
                touched.add(before[0])  # the old day, when it moved
            touched.add(day)
            changed[day][row.id] = xml
            puts.append((row.id, day, row.created.replace(tzinfo=None).isoformat(), digest))
        # Each day's piece holds the rows of its ids, in their order: read them before the
        # new ids go in.
        stored: dict[str, dict[str, str]] = {}
        for day in touched:
            part = cache.chunk(day)
            text = inflate_part(part).decode() if part is not None else ""
            rows_xml = [r + "</row>" for r in text.split("</row>")[:-1]]
            stored[day] = dict(zip(cache.day_ids(day), rows_xml, strict=True))
        for put in puts:
            cache.put_txn(*put)
        for day in sorted(touched):
            ids = cache.day_ids(day)
            new = changed.get(day, {})
            text = "".join(new[i] if i in new else stored[day][i] for i in ids)
            cache.put_chunk(day, len(ids), deflate_part(text.encode()))
        return inserted, updated

    def _sheet(self, tab: TabSpec, frame_xml: str) -> Part:
        """The frame's sheet XML with our rows spliced in before ``</sheetData>``."""
        end = frame_xml.index("</sheetData>")
        head, tail = frame_xml[:end], frame_xml[end:]
        if tab is TRANSACTIONS:
            first = self._first_day_that_fits()
            pieces = list(self.cache.chunks_from(first))
            count = sum(n for d, n in self.cache.day_sizes() if first is None or d >= first)
        else:
            rows = self.cache.rows_xml(tab.title)
            pieces = [deflate_part("".join(rows).encode())]
            count = len(rows)
        from openpyxl.utils import get_column_letter

        ref = f"A1:{get_column_letter(len(tab.columns))}{count + 1}"
        head = re.sub(r'<dimension ref="[^"]*"/>', f'<dimension ref="{ref}"/>', head)
        parts = [deflate_part(head.encode()), *pieces, deflate_part(tail.encode(), last=True)]
        return joined(parts)

    def _first_day_that_fits(self) -> str | None:
        """The oldest day kept so that Transactions stays within the row limit (header
        included); None when every day fits."""
        sizes = self.cache.day_sizes()
        room = self.row_limit - 1
        total = sum(n for _, n in sizes)
        if total <= room:
            return None
        kept = 0
        first = None
        for day, n in reversed(sizes):
            if kept + n > room:
                break
            kept += n
            first = day
        first = first or "9999-12-31"
        self.trimmed = (
            f"Transactions keeps the days from {first} on ({kept:,} rows): an xlsx sheet holds "
            f"at most {self.row_limit:,} rows (the ledger keeps every transaction)"
        )
        return first
