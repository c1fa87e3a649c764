"""`revbot backfill`: fill the ledger for a range of days, concurrently and resumably."""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date

from bot.errors import UsageError
from bot.jobs import Context, _bounds, _fetch_run, refresh_dashboard
from bot.periods import iter_days, require_past_day, yesterday


@dataclass(frozen=True)
class BackfillResult:
    since: date
    until: date
    days_fetched: int
    days_skipped: int
    fetched: int
    inserted: int
    dashboard: str


def backfill(
    ctx: Context, *, since: date, until: date | None = None, workers: int = 8
) -> BackfillResult:
    """Fill the ledger for ``since``..``until`` (inclusive), a day per task, concurrently.

    A day already synced is skipped, so a killed backfill resumes where it stopped. Each day is
    committed with its transactions in one ledger transaction.
    """
    last = until or yesterday(ctx.now, ctx.tz)
    if last < since:
        raise UsageError(f"--until {last} is before --since {since}; swap them")
    require_past_day(last, now=ctx.now, tz=ctx.tz, flag="--until" if until else "--since")
    synced = ctx.ledger.synced_days(ctx.tz_name)
    todo = [d for d in iter_days(since, last) if d not in synced]
    skipped = (last - since).days + 1 - len(todo)
    fetched = inserted = 0
    lock = threading.Lock()

    def one(day: date) -> tuple[int, int]:
        by_day = _fetch_run(ctx, day, day)
        txns = by_day.get(day, [])
        with ctx.ledger.transaction() as conn:
            ins, _ = ctx.ledger.upsert_transactions(conn, txns)
            ctx.ledger.mark_days_synced(conn, ctx.tz_name, {day: (*_bounds(day, ctx.tz), len(txns))})
        return len(txns), ins

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures: set[Future[tuple[int, int]]] = {pool.submit(one, d) for d in todo}
        try:
            while futures:
                finished, futures = wait(futures, return_when=FIRST_COMPLETED)
                for f in finished:
                    n, ins = f.result()
                    with lock:
                        fetched += n
                        inserted += ins
                        done += 1
                    ctx.progress(f"{done}/{len(todo)} days, {fetched} transactions")
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    _, where = refresh_dashboard(ctx)
    return BackfillResult(
        since=since,
        until=last,
        days_fetched=len(todo),
        days_skipped=skipped,
        fetched=fetched,
        inserted=inserted,
        dashboard=where,
    )
