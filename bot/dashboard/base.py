"""The dashboard interface shared by the local workbook and the Google Sheet.

Both implementations receive the same :class:`DashboardUpdate` and turn each row into the
same typed cells through :func:`cells`, so the jobs cannot tell them apart and the two can
never drift apart in column order or meaning.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Literal, Protocol

from bot.metrics import METRICS_COLUMNS, MetricsRow, shown_major
from bot.money import to_major
from bot.pnl import LINE_NAMES, PnlLines
from bot.text import printable

# The most characters one cell holds: Excel's limit, and Google Sheets'.
XLSX_CELL_LIMIT = 32_767
SHEETS_CELL_LIMIT = 50_000
# The most rows one xlsx sheet holds, and the most cells one Google spreadsheet holds.
XLSX_ROW_LIMIT = 1_048_576
SHEETS_SPREADSHEET_CELL_LIMIT = 10_000_000


def sink_text(value: str, limit: int) -> str:
    """Text from Stripe as a dashboard cell can hold it: no control character (XML 1.0, which
    xlsx is made of, cannot carry most of them; a sheet shows them as garbage), and at most
    ``limit`` characters, the last one an ellipsis when it was cut."""
    value = printable(value, keep_newlines=True)
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


CellKind = Literal["text", "date", "datetime", "money", "int", "pct", "bool"]


@dataclass(frozen=True, slots=True)
class Cell:
    """One typed cell. ``value`` is ``None`` for an empty cell.

    text: ``str`` (always written as literal text, never a formula); date: ``date``;
    datetime: ``datetime`` (aware, already in REPORT_TIMEZONE); money: ``Decimal`` major units
    with ``currency`` set; int: ``int``; pct: ``Decimal`` fraction (0.125 = 12.5 %);
    bool: ``bool`` shown as yes/no.
    """

    kind: CellKind
    value: str | int | Decimal | date | datetime | bool | None
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class DailyRow:
    date: date
    currency: str
    lines: PnlLines
    charges: int
    refunds_count: int
    transactions: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class MonthlyRow:
    month: str  # YYYY-MM
    currency: str
    lines: PnlLines
    starting_balance: int | None
    ending_balance: int | None
    mom_net_revenue_pct: Decimal | None
    reconciled: bool
    source: str  # e.g. "report" or "ledger"


@dataclass(frozen=True, slots=True)
class TransactionRow:
    id: str
    created: datetime
    available_on: datetime
    type: str
    reporting_category: str
    currency: str
    amount: int
    fee: int
    net: int
    status: str
    description: str
    source: str


@dataclass(frozen=True, slots=True)
class PayoutRow:
    """One payout and what it settled. ``amount`` is the payout's (positive: money sent to the
    bank). The breakdown (``transactions`` .. ``net``, minor units with the P&L's signs) is
    None for a manual payout, whose transactions Stripe does not list, and ``reconciled`` is
    then None (shown ``n/a``); otherwise it says whether ``net`` equals ``amount`` exactly."""

    id: str
    created: datetime
    arrival_date: date | None
    currency: str
    amount: int
    status: str
    transactions: int | None
    gross: int | None
    fees: int | None
    refunds: int | None
    other: int | None
    net: int | None
    reconciled: bool | None


# The Metrics tab's rows are bot.metrics.MetricsRow as the roll-forward gives them (money as
# unrounded Fraction minor units): :func:`cells` rounds each figure on its own, where it is shown.
Row = DailyRow | MonthlyRow | TransactionRow | MetricsRow | PayoutRow

DAILY_COLUMNS: tuple[str, ...] = (
    "date", "currency", *LINE_NAMES, "charges", "refunds_count", "transactions", "updated_at",
)  # fmt: skip
MONTHLY_COLUMNS: tuple[str, ...] = (
    "month", "currency", *LINE_NAMES,
    "starting_balance", "ending_balance", "mom_net_revenue_pct", "reconciled", "source",
)  # fmt: skip
TRANSACTION_COLUMNS: tuple[str, ...] = (
    "id", "created", "available_on", "type", "reporting_category", "currency",
    "amount", "fee", "net", "status", "description", "source",
)  # fmt: skip

PAYOUT_COLUMNS: tuple[str, ...] = (
    "id", "created", "arrival_date", "currency", "amount", "status", "transactions",
    "gross", "fees", "refunds", "other", "net", "reconciled",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TabSpec:
    title: str
    columns: tuple[str, ...]
    key_width: int  # the first ``key_width`` columns form the row's key


DAILY = TabSpec("Daily", DAILY_COLUMNS, 2)
MONTHLY = TabSpec("Monthly", MONTHLY_COLUMNS, 2)
# The investor metrics (bot.metrics), one row per (month, currency). Only once there is a
# metrics row (an account that bills subscriptions): an account without any gets no Metrics tab
# and no MRR chart. Never trimmed.
METRICS = TabSpec("Metrics", METRICS_COLUMNS, 2)
TRANSACTIONS = TabSpec("Transactions", TRANSACTION_COLUMNS, 1)
# One row per payout, keyed by its id. Like Metrics, only once there is a payout row, and
# never trimmed.
PAYOUTS = TabSpec("Payouts", PAYOUT_COLUMNS, 1)
CHARTS_TITLE = "Charts"
# Our tabs in the order they are shown: Metrics next to Monthly, both one row per month.
TABS: tuple[TabSpec, ...] = (DAILY, MONTHLY, METRICS, TRANSACTIONS, PAYOUTS)
# Tabs made only by the first update that carries a row for them.
ON_FIRST_ROW: tuple[TabSpec, ...] = (METRICS, PAYOUTS)
# The column each tab's chart plots, per currency, on the Charts tab.
CHART_COLUMN: dict[str, str] = {
    DAILY.title: "net_revenue",
    MONTHLY.title: "net_revenue",
    METRICS.title: "mrr_end",
}
# Decimal places a rate cell keeps: far below what 0.0 % shows, so rounding the cell to it
# never moves the percentage shown (no double rounding).
RATE_PLACES = 10


def _money(minor: int | None, currency: str) -> Cell:
    return Cell("money", None if minor is None else to_major(minor, currency), currency)


def _lines(lines: PnlLines, currency: str) -> list[Cell]:
    d = lines.as_dict()
    return [_money(d[name], currency) for name in LINE_NAMES]


def _shown(value: Fraction | None, currency: str) -> Cell:
    """A Metrics money figure, rounded half-even to the minor unit on its own."""
    return Cell("money", None if value is None else shown_major(value, currency), currency)


def _rate(value: Fraction | None) -> Cell:
    """A rate as a fraction (0.0423 = 4.2 %), rounded half-even to RATE_PLACES; empty for
    None (a zero denominator)."""
    if value is None:
        return Cell("pct", None)
    return Cell("pct", Decimal(round(value * 10**RATE_PLACES)).scaleb(-RATE_PLACES))


def _metrics_cells(row: MetricsRow) -> tuple[Cell, ...]:
    ccy = row.currency
    return (
        Cell("text", str(row.month)),
        Cell("text", ccy.upper()),
        _shown(row.mrr_start, ccy),
        _shown(row.new, ccy),
        _shown(row.reactivation, ccy),
        _shown(row.expansion, ccy),
        _shown(row.contraction, ccy),
        _shown(row.churn, ccy),
        _shown(row.mrr_end, ccy),
        _shown(row.arr, ccy),
        Cell("int", row.subscribers_start),
        Cell("int", row.new_subscribers),
        Cell("int", row.reactivated_subscribers),
        Cell("int", row.churned_subscribers),
        Cell("int", row.subscribers_end),
        _rate(row.subscriber_churn_rate),
        _rate(row.gross_mrr_churn_rate),
        _rate(row.net_revenue_retention),
        _shown(row.arpa, ccy),
    )


def _payout_cells(row: PayoutRow) -> tuple[Cell, ...]:
    ccy = row.currency
    reconciled = Cell("text", "n/a") if row.reconciled is None else Cell("bool", row.reconciled)
    return (
        Cell("text", row.id),
        Cell("datetime", row.created),
        Cell("date", row.arrival_date),
        Cell("text", ccy.upper()),
        _money(row.amount, ccy),
        Cell("text", row.status),
        Cell("int", row.transactions),
        _money(row.gross, ccy),
        _money(row.fees, ccy),
        _money(row.refunds, ccy),
        _money(row.other, ccy),
        _money(row.net, ccy),
        reconciled,
    )


def cells(row: Row) -> tuple[Cell, ...]:
    """The row's cells in column order of its tab."""
    if isinstance(row, MetricsRow):
        return _metrics_cells(row)
    if isinstance(row, PayoutRow):
        return _payout_cells(row)
    if isinstance(row, DailyRow):
        return (
            Cell("date", row.date),
            Cell("text", row.currency.upper()),
            *_lines(row.lines, row.currency),
            Cell("int", row.charges),
            Cell("int", row.refunds_count),
            Cell("int", row.transactions),
            Cell("datetime", row.updated_at),
        )
    if isinstance(row, MonthlyRow):
        return (
            Cell("text", row.month),
            Cell("text", row.currency.upper()),
            *_lines(row.lines, row.currency),
            _money(row.starting_balance, row.currency),
            _money(row.ending_balance, row.currency),
            Cell("pct", row.mom_net_revenue_pct),
            Cell("bool", row.reconciled),
            Cell("text", row.source),
        )
    return (
        Cell("text", row.id),
        Cell("datetime", row.created),
        Cell("datetime", row.available_on),
        Cell("text", row.type),
        Cell("text", row.reporting_category),
        Cell("text", row.currency.upper()),
        _money(row.amount, row.currency),
        _money(row.fee, row.currency),
        _money(row.net, row.currency),
        Cell("text", row.status),
        Cell("text", row.description),
        Cell("text", row.source),
    )


def key_of(row: Row) -> tuple[str, ...]:
    """The row's key as the text a reader of the tab sees in its key columns."""
    if isinstance(row, DailyRow):
        return (row.date.isoformat(), row.currency.upper())
    if isinstance(row, MonthlyRow):
        return (row.month, row.currency.upper())
    if isinstance(row, MetricsRow):
        return (str(row.month), row.currency.upper())
    return (row.id,)  # a transaction or a payout


@dataclass(frozen=True, slots=True)
class DashboardUpdate:
    """Everything one command writes, handed over at once so an implementation can batch it."""

    daily: Sequence[DailyRow] = ()
    monthly: Sequence[MonthlyRow] = ()
    transactions: Sequence[TransactionRow] = ()
    # The Metrics tab, upserted by (month, currency) like Monthly. The tab and its MRR charts
    # are made by the first update that carries a row; until then, there are none.
    metrics: Sequence[MetricsRow] = ()
    # The Payouts tab, upserted by id; made by the first update that carries a row.
    payouts: Sequence[PayoutRow] = ()
    # The Transactions tab keeps the days from this one on (SHEET_TRANSACTIONS_DAYS): rows of
    # older days (by ``created``, a local date) are removed from the tab, oldest first, and
    # none is written. None: every day is kept. ``keep_transactions=False``
    # (SHEET_TRANSACTIONS_DAYS=0): the tab is not kept at all, and removed if it exists.
    transactions_from: date | None = None
    keep_transactions: bool = True

    def rows_for(self, tab: TabSpec) -> Sequence[Row]:
        if tab is DAILY:
            return self.daily
        if tab is MONTHLY:
            return self.monthly
        if tab is METRICS:
            return self.metrics
        if tab is PAYOUTS:
            return self.payouts
        return self.transactions

    def tabs(self, existing: Collection[str]) -> list[TabSpec]:
        """Our tabs this update writes, in order, given the titles the dashboard has:
        Transactions unless it is not kept; Metrics and Payouts once they exist or a row of
        theirs comes."""
        return [
            tab
            for tab in TABS
            if (tab is not TRANSACTIONS or self.keep_transactions)
            and (tab not in ON_FIRST_ROW or tab.title in existing or bool(self.rows_for(tab)))
        ]


@dataclass(slots=True)
class WriteResult:
    inserted: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    location: str = ""
    # Tabs of ours that did not exist before this write (new dashboard, or a tab a founder
    # deleted or renamed): the caller refills them from the ledger. Metrics is among them only
    # when the update carried metrics rows (without any, no Metrics tab is made).
    created: tuple[str, ...] = ()
    # Set when a limit of the dashboard (xlsx rows, Sheets cells) made this write keep fewer
    # Transactions days than asked: one sentence naming the limit and the first day kept,
    # e.g. "Transactions keeps the days from 2026-03-02 on: Google Sheets' limit of
    # 10,000,000 cells per spreadsheet". The caller says it once (log, status).
    trimmed: str | None = None


class Dashboard(Protocol):
    """A projection of the ledger: rows are upserted by key, never appended blindly."""

    def apply(self, update: DashboardUpdate) -> WriteResult:
        """Upsert every row of ``update`` (and create tabs, formats and charts on first use)."""
        ...

    def describe(self) -> str:
        """Where a founder looks: a path or a URL."""
        ...


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on a dashboard's own SQLite file (opened in autocommit mode):
    committed whole, or rolled back whatever ends it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
