"""The dashboard as a projection of the ledger: Daily, Transactions and Monthly rows.

Everything here reads the ledger and writes the dashboard; nothing calls Stripe, so a deleted
tab or workbook is rebuilt from the ledger alone.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from bot import books_store
from bot.billing_store import billing_version
from bot.dashboard.base import (
    DailyRow,
    DashboardUpdate,
    MonthlyRow,
    PayoutRow,
    TransactionRow,
    WriteResult,
)
from bot.jobs.context import Context
from bot.jobs.metrics import roll_forward_from_ledger
from bot.ledger import DASHBOARD_TRIMMED, StoredTransaction
from bot.metrics import MetricsRow
from bot.periods import Month, day_interval, iter_days, last_closed_month, local_datetime
from bot.pnl import CurrencyFigures, Movement, mom_fraction, settled, summarize

log = logging.getLogger(__name__)

METRICS_WRITTEN = "metrics_written"  # what the Metrics tab was last written from


def _parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


def daily_rows(day: date, txns: Sequence[StoredTransaction], tz: ZoneInfo) -> list[DailyRow]:
    per_ccy: dict[str, list[StoredTransaction]] = defaultdict(list)
    for t in txns:
        per_ccy[t.currency].append(t)
    rows: list[DailyRow] = []
    for ccy, summary in summarize(t.movement() for t in txns).items():
        changed = max(_parse_utc(t.last_changed) for t in per_ccy[ccy])
        rows.append(
            DailyRow(
                date=day,
                currency=ccy,
                lines=summary.lines,
                charges=summary.charges,
                refunds_count=summary.refunds_count,
                transactions=summary.transactions,
                updated_at=changed.astimezone(tz),
            )
        )
    return rows


def transaction_row(t: StoredTransaction, tz: ZoneInfo) -> TransactionRow:
    return TransactionRow(
        id=t.id,
        created=local_datetime(t.created, tz),
        available_on=local_datetime(t.available_on, tz),
        type=t.type,
        reporting_category=t.reporting_category,
        currency=t.currency,
        amount=t.amount,
        fee=t.fee,
        net=t.net,
        status=t.status,
        description=t.description,
        source=t.source,
    )


def payout_row(p: books_store.StoredPayout, tz: ZoneInfo) -> PayoutRow:
    raw = p.raw
    arrival = raw.get("arrival_date")
    # Stripe's arrival_date is a day, sent as its UTC midnight: read it in UTC.
    arrival_day: date | None = (
        datetime.fromtimestamp(arrival, UTC).date() if isinstance(arrival, int) else None
    )
    created: datetime = local_datetime(int(raw["created"]), tz)
    amount = int(raw["amount"])
    s = settled(p.settled) if p.automatic and p.listed else None
    return PayoutRow(
        id=p.id,
        created=created,
        arrival_date=arrival_day,
        currency=str(raw["currency"]).lower(),
        amount=amount,
        status=str(raw["status"]),
        transactions=None if s is None else s.transactions,
        gross=None if s is None else s.gross,
        fees=None if s is None else s.fees,
        refunds=None if s is None else s.refunds,
        other=None if s is None else s.other,
        net=None if s is None else s.net,
        # Manual payouts (or not listed yet): n/a.
        reconciled=None if s is None else s.net == amount,
    )


def dashboard_update_for_days(
    ctx: Context,
    days: Iterable[date],
    *,
    monthly: Sequence[MonthlyRow] = (),
    metrics: Sequence[MetricsRow] = (),
    payouts: Sequence[PayoutRow] = (),
) -> DashboardUpdate:
    """Daily rows of ``days`` and their transactions (those of days the Transactions tab keeps,
    SHEET_TRANSACTIONS_DAYS), with the Transactions window for the dashboard to trim to."""
    keep = ctx.transactions_days > 0
    first = ctx.transactions_from()
    daily: list[DailyRow] = []
    transactions: list[TransactionRow] = []
    for day in sorted(days):
        iv = day_interval(day, ctx.tz)
        txns = ctx.ledger.transactions_between(iv.start, iv.end)
        daily.extend(daily_rows(day, txns, ctx.tz))
        if keep and day >= first:
            transactions.extend(transaction_row(t, ctx.tz) for t in txns)
    return DashboardUpdate(
        daily=daily,
        monthly=monthly,
        metrics=metrics,
        payouts=payouts,
        transactions=transactions,
        transactions_from=first if keep else None,
        keep_transactions=keep,
    )


def apply_to_dashboard(ctx: Context, update: DashboardUpdate) -> WriteResult:
    """Write ``update``; a dashboard limit that trimmed Transactions is said once (log and the
    ledger, for `status`)."""
    result = ctx.dashboard.apply(update)
    note = result.trimmed
    if note:
        before = ctx.ledger.get_meta(DASHBOARD_TRIMMED)
        # Said once as a warning; later trims (the window moves on each day) only update it.
        (log.info if before else log.warning)("%s", note)
        if before != note:
            with ctx.ledger.transaction() as conn:
                ctx.ledger.set_meta(conn, DASHBOARD_TRIMMED, note)
    return result


def refresh_dashboard(ctx: Context) -> tuple[list[date], str]:
    """Write every day queued in the ledger to the dashboard, then dequeue them.

    The queue is filled in the same transaction as the sync, so days synced by a run that
    crashed before reaching the dashboard are written by the next run.
    """
    pending = ctx.ledger.pending_dashboard_days(ctx.tz_name)
    if pending:
        ctx.progress(f"writing {len(pending)} day(s) to the dashboard")
        result = apply_to_dashboard(ctx, dashboard_update_for_days(ctx, pending))
        refill_created_tabs(ctx, result.created, already=pending)
        ctx.ledger.clear_dashboard_pending(ctx.tz_name, pending)
    return pending, ctx.dashboard.describe()


def refill_created_tabs(ctx: Context, created: Iterable[str], *, already: Iterable[date]) -> None:
    """A tab that was just created (a new workbook or sheet, a tab deleted or renamed) gets
    everything the ledger knows, not only today's rows: the dashboard is a projection of the
    ledger and can always be rebuilt from it without calling Stripe."""
    created = set(created)
    if not created & {"Daily", "Transactions", "Monthly", "Metrics", "Payouts"}:
        return
    done = set(already)
    days = [d for d in ctx.ledger.synced_days(ctx.tz_name) if d not in done]
    if "Daily" not in created:  # Transactions alone: only the days it keeps
        days = [d for d in days if d >= ctx.transactions_from()]
    if not created & {"Daily", "Transactions"}:
        days = []
    monthly = rows_from_ledger(ctx) if "Monthly" in created else []
    metrics = metrics_rows(ctx) if "Metrics" in created else ()
    # A new dashboard (Daily made anew) gets the Payouts tab back too.
    payouts = (
        [payout_row(p, ctx.tz) for p in books_store.payouts(ctx.ledger)]
        if created & {"Payouts", "Daily"}
        else []
    )
    update = dashboard_update_for_days(ctx, days, monthly=monthly, metrics=metrics, payouts=payouts)
    if not (
        update.daily or update.transactions or update.monthly or update.metrics or update.payouts
    ):
        return
    ctx.progress(f"refilling {', '.join(sorted(created))} from the ledger")
    apply_to_dashboard(ctx, update)


def ledger_movements(ctx: Context, month: Month) -> list[Movement]:
    iv = month.interval(ctx.tz)
    return [t.movement() for t in ctx.ledger.transactions_between(iv.start, iv.end)]


def month_fully_synced(ctx: Context, month: Month) -> bool:
    synced = ctx.ledger.synced_days(ctx.tz_name)
    return all(d in synced for d in iter_days(month.first_day, month.last_day))


def previous_net(ctx: Context, month: Month, mode: str) -> dict[str, int]:
    """Net revenue per currency of the month before, from its report or a complete ledger."""
    prev = month.previous()
    stored = ctx.ledger.monthly_result(str(prev), ctx.tz_name, mode)
    if stored is not None:
        return {ccy: f.lines.net_revenue for ccy, f in stored.figures.items()}
    if month_fully_synced(ctx, prev):
        return {
            ccy: s.lines.net_revenue for ccy, s in summarize(ledger_movements(ctx, prev)).items()
        }
    return {}


def monthly_rows(
    month: Month,
    figures: Mapping[str, CurrencyFigures],
    previous: Mapping[str, int],
    *,
    reconciled: bool,
    source: str,
) -> list[MonthlyRow]:
    return [
        MonthlyRow(
            month=str(month),
            currency=ccy,
            lines=f.lines,
            starting_balance=f.starting_balance,
            ending_balance=f.ending_balance,
            mom_net_revenue_pct=mom_fraction(f.lines.net_revenue, previous.get(ccy)),
            reconciled=reconciled,
            source=source,
        )
        for ccy, f in sorted(figures.items())
    ]


def rows_from_ledger(ctx: Context) -> list[MonthlyRow]:
    """Every month's row from the results saved in the ledger (no call to Stripe)."""
    rows: list[MonthlyRow] = []
    for m in ctx.ledger.monthly_months(ctx.tz_name, ctx.mode):
        data = ctx.ledger.monthly_result(m, ctx.tz_name, ctx.mode)
        if data is None:
            continue
        month = Month.parse(m)
        figures = data.figures
        rows += monthly_rows(
            month,
            figures,
            previous_net(ctx, month, ctx.mode),
            reconciled=data.reconciled,
            source=data.source,
        )
    return rows


def metrics_rows(ctx: Context) -> tuple[MetricsRow, ...]:
    """The Metrics rows through the last closed month (none without subscriptions)."""
    through = last_closed_month(ctx.now, ctx.tz)
    result = roll_forward_from_ledger(ctx.ledger, through=through, tz=ctx.tz)
    return result.rows if result is not None else ()


def refresh_metrics(ctx: Context) -> int:
    """Write the Metrics tab when the stored subscriptions or invoices changed, or a month
    closed, since it was last written; how many rows were written."""
    stamp = f"{billing_version(ctx.ledger)}:{last_closed_month(ctx.now, ctx.tz)}:{ctx.tz_name}"
    if ctx.ledger.get_meta(METRICS_WRITTEN) == stamp:
        return 0
    rows = metrics_rows(ctx)
    if rows:
        result = apply_to_dashboard(ctx, dashboard_update_for_days(ctx, (), metrics=rows))
        refill_created_tabs(ctx, set(result.created) - {"Metrics"}, already=())
    with ctx.ledger.transaction() as conn:
        ctx.ledger.set_meta(conn, METRICS_WRITTEN, stamp)
    return len(rows)
