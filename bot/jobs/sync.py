"""Which days to fetch from Stripe, and fetching them into the ledger."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.jobs.context import Context
from bot.periods import day_interval, days_interval, iter_days, local_date_of

log = logging.getLogger(__name__)

LOOKBACK_DAYS = 3


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
    source = ctx.stripe()
    interval = days_interval(first, last, ctx.tz)
    by_day: dict[date, list[dict[str, Any]]] = {d: [] for d in iter_days(first, last)}
    for page in source.iter_pages(interval):
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
