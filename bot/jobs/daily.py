"""`revbot daily`: sync yesterday and what is missing, update the dashboard, and report a
closed month whose report or email is still due."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from bot.errors import RevbotError, TemporaryError
from bot.jobs.billing import BillingSyncResult, billing_after_pnl
from bot.jobs.context import Context
from bot.jobs.investor_email import Email
from bot.jobs.monthly import MonthlyOutcome, NoReportData, month_due, monthly_and_send
from bot.jobs.payouts import PayoutSyncResult, payouts_after_pnl
from bot.jobs.projection import refresh_dashboard
from bot.jobs.sync import plan_daily_days, sync_days
from bot.periods import day_interval, require_past_day, yesterday
from bot.pnl import Movement, Summary, summarize

log = logging.getLogger(__name__)

# -- daily ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DailyResult:
    day: date
    days_synced: list[date]
    fetched: int
    inserted: int
    changed: int
    summary: dict[str, Summary]
    dashboard: str
    dry_run: bool
    dashboard_days: list[date]
    billing: BillingSyncResult | None = None  # None: a dry run, or the billing sync failed
    billing_error: RevbotError | None = None  # why it failed, for the command to exit with
    payouts: PayoutSyncResult | None = None  # None: a dry run, or the payouts sync failed
    payouts_error: RevbotError | None = None

    @property
    def error(self) -> RevbotError | None:
        """The first failure after the P&L was stored, for the command to exit with."""
        return self.billing_error or self.payouts_error


def daily(ctx: Context, *, day: date | None = None, dry_run: bool = False) -> DailyResult:
    target = day or yesterday(ctx.now, ctx.tz)
    require_past_day(target, now=ctx.now, tz=ctx.tz)
    days = plan_daily_days(target, ctx.ledger.synced_days(ctx.tz_name))
    outcome = sync_days(ctx, days, dry_run=dry_run)
    if dry_run:
        txns = outcome.by_day.get(target, [])
        summary = summarize(
            Movement(t["reporting_category"], t["currency"], t["amount"], t["fee"], t["net"])
            for t in txns
        )
        written: list[date] = []
        where = ctx.dashboard.describe()
    else:
        written, where = refresh_dashboard(ctx)
        iv = day_interval(target, ctx.tz)
        summary = summarize(t.movement() for t in ctx.ledger.transactions_between(iv.start, iv.end))
    # A dry run writes nothing: the billing sync, which only stores, is left out.
    billing, billing_error = (None, None) if dry_run else billing_after_pnl(ctx)
    payouts, payouts_error = (
        (None, None)
        if dry_run
        else payouts_after_pnl(
            ctx,
            gte=day_interval(min([target, *outcome.days]), ctx.tz).start,
            lt=day_interval(target, ctx.tz).end,
        )
    )
    return DailyResult(
        day=target,
        days_synced=outcome.days,
        fetched=outcome.fetched,
        inserted=outcome.inserted,
        changed=outcome.changed,
        summary=summary,
        dashboard=where,
        dry_run=dry_run,
        dashboard_days=written,
        billing=billing,
        billing_error=billing_error,
        payouts=payouts,
        payouts_error=payouts_error,
    )


@dataclass
class DailyOutcome:
    daily: DailyResult
    monthly: MonthlyOutcome | None = None
    deferred: str | None = None


def daily_flow(
    ctx: Context,
    *,
    day: date | None,
    dry_run: bool,
    archive_dir: Path,
    mode: str,
    email: Email | None,
) -> DailyOutcome:
    out = DailyOutcome(daily(ctx, day=day, dry_run=dry_run))
    if dry_run:
        return out
    due = month_due(ctx, mode=mode, email=email)
    if due is None:
        return out
    try:
        out.monthly = monthly_and_send(
            ctx, month=due, archive_dir=archive_dir, mode=mode, email=email
        )
    except (TemporaryError, NoReportData) as e:
        # The day is synced; the month waits for Stripe and tomorrow's run tries again (a
        # month older than the account is never reported: the next month replaces it).
        out.deferred = str(e)
        log.warning("monthly report for %s deferred: %s", due, e)
        return out
    # Reconciling may have synced the whole month, which can leave never-synced days between
    # it and today's window: catch them up now rather than on the next run.
    synced = ctx.ledger.synced_days(ctx.tz_name)
    gap = [d for d in plan_daily_days(out.daily.day, synced) if d not in synced]
    if gap:
        sync_days(ctx, gap, dry_run=False)
        refresh_dashboard(ctx)
    return out
