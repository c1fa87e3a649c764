"""daily / backfill (and, later, monthly / resend): the work itself.

Jobs receive their collaborators (Stripe source, ledger, dashboard, clock) in a
:class:`Context`; they never import a vendor SDK and never read the environment.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from bot.dashboard.base import DailyRow, Dashboard, DashboardUpdate, TransactionRow
from bot.ledger import Ledger, StoredTransaction
from bot.periods import (
    Interval,
    day_interval,
    days_interval,
    iter_days,
    local_date_of,
    local_datetime,
    require_past_day,
    yesterday,
)
from bot.pnl import Movement, Summary, summarize

log = logging.getLogger(__name__)

LOOKBACK_DAYS = 3


class Source(Protocol):
    """What the jobs need of Stripe (implemented by :class:`bot.stripe_source.StripeSource`)."""

    def iter_pages(
        self, interval: Interval, *, type: str | None = None
    ) -> Iterable[list[dict[str, Any]]]: ...

    def list_page(
        self, *, gte: int, lt: int, starting_after: str | None = None, type: str | None = None
    ) -> tuple[list[dict[str, Any]], bool]: ...


@dataclass
class Context:
    ledger: Ledger
    dashboard: Dashboard
    source: Source | None
    tz: ZoneInfo
    now: datetime
    progress: Callable[[str], None] = lambda _msg: None
    mode: str = "test"  # the Stripe key's mode: which monthly results are this account's

    @property
    def tz_name(self) -> str:
        return self.tz.key


# -- planning ---------------------------------------------------------------------------------


def plan_daily_days(
    day: date, synced: Iterable[date], *, lookback: int = LOOKBACK_DAYS
) -> list[date]:
    """``day``, the look-back window before it, and every earlier never-synced day.

    Catch-up starts at the first day ever synced: history before it is `backfill`'s job.
    """
    synced_set = set(synced)
    wanted = {day} | {day - timedelta(days=i) for i in range(1, lookback + 1)}
    if synced_set:
        first = min(min(synced_set), day)
        wanted |= {d for d in iter_days(first, day) if d not in synced_set}
    return sorted(wanted)


def contiguous_runs(days: Sequence[date]) -> list[tuple[date, date]]:
    """Sorted days -> inclusive (first, last) runs of consecutive days."""
    runs: list[tuple[date, date]] = []
    for d in sorted(days):
        if runs and runs[-1][1] + timedelta(days=1) == d:
            runs[-1] = (runs[-1][0], d)
        else:
            runs.append((d, d))
    return runs


# -- syncing ----------------------------------------------------------------------------------


@dataclass
class SyncOutcome:
    days: list[date] = field(default_factory=list)
    fetched: int = 0
    inserted: int = 0
    changed: int = 0
    by_day: dict[date, list[dict[str, Any]]] = field(default_factory=dict)


def _fetch_run(ctx: Context, first: date, last: date) -> dict[date, list[dict[str, Any]]]:
    assert ctx.source is not None
    interval = days_interval(first, last, ctx.tz)
    by_day: dict[date, list[dict[str, Any]]] = {d: [] for d in iter_days(first, last)}
    for page in ctx.source.iter_pages(interval):
        for txn in page:
            by_day.setdefault(local_date_of(int(txn["created"]), ctx.tz), []).append(txn)
    return by_day


def sync_days(ctx: Context, days: Sequence[date], *, dry_run: bool) -> SyncOutcome:
    """Fetch ``days`` from Stripe and, unless ``dry_run``, store them and mark them synced.

    Each contiguous run of days is fetched as one interval and committed in one ledger
    transaction, so a crash leaves a run either wholly synced or not at all.
    """
    out = SyncOutcome(days=sorted(days))
    for first, last in contiguous_runs(days):
        ctx.progress(f"fetching {first} … {last}")
        by_day = _fetch_run(ctx, first, last)
        out.by_day.update(by_day)
        txns = [t for ts in by_day.values() for t in ts]
        out.fetched += len(txns)
        if dry_run:
            continue
        with ctx.ledger.transaction() as conn:
            ins, chg = ctx.ledger.upsert_transactions(conn, txns)
            ctx.ledger.mark_days_synced(
                conn,
                ctx.tz_name,
                {d: (*_bounds(d, ctx.tz), len(ts)) for d, ts in by_day.items()},
            )
        out.inserted += ins
        out.changed += chg
    return out


def _bounds(day: date, tz: ZoneInfo) -> tuple[int, int]:
    iv = day_interval(day, tz)
    return iv.start, iv.end


# -- projections ------------------------------------------------------------------------------


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


def dashboard_update_for_days(ctx: Context, days: Iterable[date]) -> DashboardUpdate:
    daily: list[DailyRow] = []
    transactions: list[TransactionRow] = []
    for day in sorted(days):
        iv = day_interval(day, ctx.tz)
        txns = ctx.ledger.transactions_between(iv.start, iv.end)
        daily.extend(daily_rows(day, txns, ctx.tz))
        transactions.extend(transaction_row(t, ctx.tz) for t in txns)
    return DashboardUpdate(daily=daily, transactions=transactions)


def refresh_dashboard(ctx: Context) -> tuple[list[date], str]:
    """Write every day queued in the ledger to the dashboard, then dequeue them.

    The queue is filled in the same transaction as the sync, so days synced by a run that
    crashed before reaching the dashboard are written by the next run.
    """
    pending = ctx.ledger.pending_dashboard_days(ctx.tz_name)
    if pending:
        ctx.progress(f"writing {len(pending)} day(s) to the dashboard")
        result = ctx.dashboard.apply(dashboard_update_for_days(ctx, pending))
        refill_created_tabs(ctx, result.created, already=pending)
        ctx.ledger.clear_dashboard_pending(ctx.tz_name, pending)
    return pending, ctx.dashboard.describe()


def refill_created_tabs(ctx: Context, created: Iterable[str], *, already: Iterable[date]) -> None:
    """A tab that was just created (a new workbook or sheet, a tab deleted or renamed) gets
    everything the ledger knows, not only today's rows: the dashboard is a projection of the
    ledger and can always be rebuilt from it without calling Stripe."""
    created = set(created)
    if not created & {"Daily", "Transactions", "Monthly"}:
        return
    from bot.monthly import rows_from_ledger  # monthly builds on this module

    done = set(already)
    days = [d for d in ctx.ledger.synced_days(ctx.tz_name) if d not in done]
    update = dashboard_update_for_days(ctx, days) if created & {"Daily", "Transactions"} else None
    monthly = rows_from_ledger(ctx) if "Monthly" in created else []
    if (update is None or not (update.daily or update.transactions)) and not monthly:
        return
    ctx.progress(f"refilling {', '.join(sorted(created))} from the ledger")
    ctx.dashboard.apply(
        DashboardUpdate(
            daily=update.daily if update else (),
            transactions=update.transactions if update else (),
            monthly=monthly,
        )
    )


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
    )
