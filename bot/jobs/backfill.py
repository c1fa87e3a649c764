"""`revbot backfill`: fill the ledger for a range of days, fast.

Two ways to get there:

``via="api"`` (the default) lists balance transactions. The range, minus the days already
synced and the slices an earlier run completed, is cut into time slices, and up to ``workers``
threads page them concurrently, all through the source's one token bucket (STRIPE_MAX_RPS),
so the run goes at the rate limit instead of at the latency. A worker left without a slice
takes the older half of the remaining range of the busiest slice (work stealing), so skewed
data, most transactions on a few days, still spreads across the workers; each split costs at
most one partly filled page. Every page is committed together with the part of its slice it
completes, and a day is marked synced in the same transaction as the page that completes it,
so a killed backfill resumes without fetching a completed slice again.

``via="report"`` runs ``balance_change_from_activity.itemized.3`` for the range and streams
its CSV into the ledger in bounded memory, then lists through the API, by type, the few
transactions that report leaves out (payouts, transfers, top-ups, reserves).

Either way, the subscriptions and invoices created in the range follow once the balance
transactions are stored (:func:`bot.jobs.billing.sync_billing`, resumable in the same way).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from bot.errors import RevbotError, UsageError
from bot.jobs.billing import BillingSyncResult, billing_after_pnl
from bot.jobs.context import Context
from bot.jobs.payouts import PayoutSyncResult, payouts_after_pnl
from bot.jobs.projection import refresh_dashboard
from bot.ledger import Ledger
from bot.periods import (
    Interval,
    day_interval,
    days_interval,
    iter_days,
    require_past_day,
    yesterday,
)
from bot.stripe_port import PAGE_SIZE, Paging, StripePort

log = logging.getLogger(__name__)

JOB = "backfill:balance_transactions"  # the key of this job's rows in the ledger's slices
SPLIT_MIN = 2 * PAGE_SIZE  # split a slice only when its rest looks worth two pages or more
VIAS = ("api", "report")

# Balance transaction types whose reporting category is not activity, so the
# itemized activity report leaves them out; values from the `type` filter's list in Stripe's
# API spec.
NON_ACTIVITY_TYPES: tuple[str, ...] = (
    "payout", "payout_cancel", "payout_failure", "transfer", "transfer_cancel",
    "transfer_failure", "transfer_refund", "topup", "topup_reversal", "reserved_funds",
    "reserve_transaction",
)  # fmt: skip


@dataclass(frozen=True)
class BackfillResult:
    since: date
    until: date
    days_fetched: int
    days_skipped: int
    fetched: int
    inserted: int
    dashboard: str
    changed: int = 0
    pages: int = 0  # list pages read (429 retries not counted)
    slices: int = 0  # slices paged, splits included
    seconds: float = 0.0  # fetching and storing, without the dashboard write
    via: str = "api"
    billing: BillingSyncResult | None = None  # None: the billing sync failed (billing_error)
    billing_error: RevbotError | None = None
    payouts: PayoutSyncResult | None = None  # None: the payouts sync failed (payouts_error)
    payouts_error: RevbotError | None = None

    @property
    def error(self) -> RevbotError | None:
        """The first failure after the P&L was stored, for the command to exit with."""
        return self.billing_error or self.payouts_error


# -- intervals --------------------------------------------------------------------------------


class IntervalSet:
    """A union of half-open ``[start, end)`` integer intervals, kept merged and sorted."""

    def __init__(self, intervals: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in intervals:
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        i = bisect.bisect_left(self._ends, start)  # first interval ending at or after start
        j = bisect.bisect_right(self._starts, end)  # intervals from i to j-1 overlap or touch
        if i < j:
            start = min(start, self._starts[i])
            end = max(end, self._ends[j - 1])
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]

    def covers(self, start: int, end: int) -> bool:
        if end <= start:
            return True
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[start, end)`` not in the set, oldest first."""
        out: list[tuple[int, int]] = []
        cursor = start
        i = bisect.bisect_right(self._ends, start)
        while i < len(self._starts) and self._starts[i] < end:
            if self._starts[i] > cursor:
                out.append((cursor, self._starts[i]))
            cursor = max(cursor, self._ends[i])
            i += 1
        if cursor < end:
            out.append((cursor, end))
        return out

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(list(zip(self._starts, self._ends, strict=True)))

    def total(self) -> int:
        return sum(e - s for s, e in zip(self._starts, self._ends, strict=True))


def split_evenly(gaps: Sequence[tuple[int, int]], pieces: int) -> list[tuple[int, int]]:
    """Cut ``gaps`` into about ``pieces`` slices of similar length, newest first.

    Each gap gets a share of the pieces in proportion to its length (at least one); slices
    are whole seconds, adjacent and half-open, so together they are exactly the gaps.
    """
    gaps = [(s, e) for s, e in gaps if e > s]
    total = sum(e - s for s, e in gaps)
    out: list[tuple[int, int]] = []
    for start, end in gaps:
        n = max(1, min(end - start, round(pieces * (end - start) / total)))
        cuts = [start + (end - start) * k // n for k in range(n + 1)]
        out.extend((a, b) for a, b in itertools.pairwise(cuts) if b > a)
    return sorted(out, reverse=True)


# -- progress ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Where a backfill stands; ``covered`` counts seconds of the range read completely."""

    transactions: int
    pages: int
    requests: int
    covered: int
    total: int
    elapsed: float

    @property
    def fraction(self) -> float:
        return 1.0 if self.total <= 0 else min(1.0, self.covered / self.total)

    @property
    def rate(self) -> float:
        """Requests per second so far."""
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left, assuming the rest of the range goes as fast as what is done."""
        if self.covered <= 0 or self.elapsed <= 0:
            return None
        return self.elapsed * (self.total - self.covered) / self.covered


class Reporter(Protocol):
    """Told how a backfill advances; called from worker threads."""

    def start(self, progress: Progress) -> None: ...

    def update(self, progress: Progress) -> None: ...

    def finish(self, progress: Progress) -> None: ...

    def note(self, message: str) -> None:
        """A step of the report path (run, download, load), which has no pages to count."""


class _NotesReporter:
    """The default: the report path's steps go to ``ctx.progress``; pages are not counted."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit

    def start(self, progress: Progress) -> None:
        pass

    def update(self, progress: Progress) -> None:
        pass

    def finish(self, progress: Progress) -> None:
        pass

    def note(self, message: str) -> None:
        self._emit(f"backfill: {message}")


# -- the concurrent API path ------------------------------------------------------------------


@dataclass(frozen=True)
class FetchStats:
    fetched: int
    inserted: int
    changed: int
    pages: int
    slices: int
    days_synced: int
    seconds: float


@dataclass(eq=False)
class _Slice:
    """A time slice being paged newest first. ``floor`` rises when a worker splits off its
    older part; ``low`` is the oldest ``created`` read so far; ``committed`` is where the
    part of the slice already stored begins (``[committed, end)`` is done)."""

    start: int
    end: int
    floor: int = 0
    low: int | None = None
    density: float = 0.0  # transactions per second on the last page read
    final: bool = False  # the listing is through: nothing is left to split off
    committed: int = 0
    count: int = 0

    def __post_init__(self) -> None:
        self.floor = self.start
        self.committed = self.end


class _Engine:
    def __init__(
        self,
        *,
        ledger: Ledger,
        source: StripePort,
        slices: Sequence[tuple[int, int]],
        tz: ZoneInfo,
        days: Sequence[date],
        workers: int,
        split_min: float,
        reporter: Reporter | None,
    ) -> None:
        self.ledger = ledger
        self.source = source
        self.tz = tz
        self.workers = max(1, workers)
        self.split_min = split_min
        self.reporter = reporter
        self._cond = threading.Condition()
        self._pending = [_Slice(s, e) for s, e in slices]
        self._active: set[_Slice] = set()
        self._abort = False
        self._errors: list[BaseException] = []
        self._coverage = IntervalSet(ledger.completed_slices(JOB))
        bounds = [(d, day_interval(d, tz)) for d in sorted(days)]
        self._days = [
            (iv.start, iv.end, d) for d, iv in bounds if not self._coverage.covers(iv.start, iv.end)
        ]
        self._day_starts = [s for s, _, _ in self._days]
        self._marked: set[date] = set()
        self._early_days = [d for d, iv in bounds if self._coverage.covers(iv.start, iv.end)]
        self.total = sum(e - s for s, e in slices)
        self.covered = 0
        self.fetched = self.inserted = self.changed = self.pages_read = 0
        self.slices = len(self._pending)
        self._started = time.monotonic()
        self._requests0 = source.requests

    # -- bookkeeping shared by the workers ----------------------------------------------

    def snapshot(self) -> Progress:
        requests = self.source.requests - self._requests0
        return Progress(
            transactions=self.fetched,
            pages=self.pages_read,
            requests=requests if requests > 0 else self.pages_read,
            covered=self.covered,
            total=self.total,
            elapsed=time.monotonic() - self._started,
        )

    def _take(self) -> _Slice | None:
        with self._cond:
            while True:
                if self._abort:
                    return None
                if self._pending:
                    chunk = self._pending.pop(0)
                    self._active.add(chunk)
                    return chunk
                stolen = self._steal()
                if stolen is not None:
                    self._active.add(stolen)
                    self.slices += 1
                    return stolen
                if not self._active:
                    return None
                self._cond.wait(0.5)

    def _steal(self) -> _Slice | None:
        """Split the older part off the slice with the most work left (caller holds the lock)."""
        best: _Slice | None = None
        best_left = self.split_min
        for s in self._active:
            if s.low is None or s.final or s.low - s.floor < 2:
                continue
            left = s.density * (s.low - s.floor)
            if left >= best_left:
                best, best_left = s, left
        if best is None or best.low is None:
            return None
        # The thief gets [floor, cut); the slice keeps [cut, ...) including the second of its
        # oldest transaction read, whose ties it will read through its cursor.
        cut = best.floor + (best.low - best.floor) // 2
        stolen = _Slice(best.floor, cut)
        best.floor = cut
        log.debug("split [%d, %d) off a slice ending at %d", stolen.start, cut, best.end)
        return stolen

    def _mark_covered(self, start: int, end: int) -> list[tuple[date, int, int]]:
        """Add ``[start, end)`` to the coverage; the days it completes (caller holds the
        ledger's transaction)."""
        done: list[tuple[date, int, int]] = []
        with self._cond:
            self._coverage.add(start, end)
            self.covered += end - start
            i = max(0, bisect.bisect_right(self._day_starts, start) - 1)
            while i < len(self._days) and self._days[i][0] < end:
                d_start, d_end, d = self._days[i]
                if d not in self._marked and self._coverage.covers(d_start, d_end):
                    self._marked.add(d)
                    done.append((d, d_start, d_end))
                i += 1
        return done

    def _commit(self, chunk: _Slice, kept: list[dict[str, Any]], covered_from: int) -> None:
        """Store a page and the part of its slice it completes, in one ledger transaction."""
        ins = chg = 0
        with self.ledger.transaction() as conn:
            if kept:
                ins, chg = self.ledger.upsert_transactions(conn, kept)
            if covered_from < chunk.committed:
                chunk.count += len(kept)
                self.ledger.replace_slice(
                    conn,
                    JOB,
                    start=covered_from,
                    end=chunk.end,
                    count=chunk.count,
                    replaces=None if chunk.committed == chunk.end else (chunk.committed, chunk.end),
                )
                days = self._mark_covered(covered_from, chunk.committed)
                if days:
                    self.ledger.mark_days_synced(
                        conn,
                        self.tz.key,
                        {d: (s, e, self.ledger.count_between(conn, s, e)) for d, s, e in days},
                    )
                chunk.committed = covered_from
        with self._cond:
            self.fetched += len(kept)
            self.inserted += ins
            self.changed += chg

    # -- a worker -------------------------------------------------------------------------

    def _page(self, chunk: _Slice) -> None:
        after: str | None = None  # the cursor: the oldest transaction read so far
        previous = chunk.end
        guard = Paging(chunk.floor, chunk.end)
        while not self._abort:
            with self._cond:
                floor = chunk.floor
            data, has_more = self.source.list_page(gte=floor, lt=chunk.end, starting_after=after)
            oldest = int(data[-1]["created"]) if data else None
            with self._cond:
                self.pages_read += 1
                # A split may have raised the floor meanwhile. Reading it and moving `low`
                # happen together, so a split never cuts above what this page has read.
                floor = chunk.floor
                # Newest first: a transaction older than the floor, or the end of the list,
                # means everything from the floor up has been read; what is older belongs to
                # the slice split off. Otherwise the page proves only the seconds after its
                # oldest one (more transactions of that very second may follow).
                through = not has_more or oldest is None or oldest < floor
                chunk.final = through
                if oldest is not None:
                    chunk.low = oldest
                    chunk.density = len(data) / max(1, previous - oldest)
                    previous = oldest
            kept = [t for t in data if int(t["created"]) >= floor] if through else data
            covered_from = floor if through else int(oldest or 0) + 1
            self._commit(chunk, kept, min(covered_from, chunk.committed))
            with self._cond:
                self._cond.notify_all()
            if self.reporter is not None:
                self.reporter.update(self.snapshot())
            if through or not data:
                return
            after = guard.next(str(data[-1]["id"]))

    def _worker(self) -> None:
        while True:
            chunk = self._take()
            if chunk is None:
                return
            try:
                self._page(chunk)
            except BaseException as e:
                with self._cond:
                    self._errors.append(e)
                    self._abort = True
                    self._cond.notify_all()
                return
            finally:
                with self._cond:
                    self._active.discard(chunk)
                    self._cond.notify_all()

    def run(self) -> FetchStats:
        if self._early_days:
            # Days whose seconds earlier runs read completely without marking them: after a
            # change of REPORT_TIMEZONE the local days are new, the transactions are not.
            with self.ledger.transaction() as conn:
                self.ledger.mark_days_synced(
                    conn,
                    self.tz.key,
                    {
                        d: (iv.start, iv.end, self.ledger.count_between(conn, iv.start, iv.end))
                        for d in self._early_days
                        for iv in [day_interval(d, self.tz)]
                    },
                )
        if self.reporter is not None:
            self.reporter.start(self.snapshot())
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="backfill")
        try:
            futures = [pool.submit(self._worker) for _ in range(self.workers)]
            for f in futures:
                f.result()
        except BaseException:
            # Ctrl-C in the main thread: let each worker finish its page (committed whole).
            with self._cond:
                self._abort = True
                self._cond.notify_all()
            raise
        finally:
            pool.shutdown(wait=True)
        if self.reporter is not None:
            self.reporter.finish(self.snapshot())
        if self._errors:
            raise self._errors[0]
        return FetchStats(
            fetched=self.fetched,
            inserted=self.inserted,
            changed=self.changed,
            pages=self.pages_read,
            slices=self.slices,
            days_synced=len(self._marked) + len(self._early_days),
            seconds=time.monotonic() - self._started,
        )


def plan(
    ledger: Ledger, interval: Interval, *, tz: ZoneInfo, days: Sequence[date]
) -> list[tuple[int, int]]:
    """What is left to read of ``days`` (all inside ``interval``): their seconds, minus the
    slices earlier runs completed; merged, oldest first."""
    wanted = IntervalSet()
    for d in days:
        iv = day_interval(d, tz)
        wanted.add(iv.start, iv.end)
    done = IntervalSet(ledger.completed_slices(JOB))
    left: list[tuple[int, int]] = []
    for start, end in wanted:
        left.extend(done.gaps(max(start, interval.start), min(end, interval.end)))
    return left


def fetch_slices(
    ledger: Ledger,
    source: StripePort,
    *,
    slices: Sequence[tuple[int, int]],
    tz: ZoneInfo,
    days: Sequence[date] = (),
    workers: int = 8,
    split_min: float = SPLIT_MIN,
    reporter: Reporter | None = None,
) -> FetchStats:
    """Page the time ``slices`` (half-open, disjoint) into the ledger with up to ``workers``
    threads; mark each of ``days`` synced once the slices completed so far cover it."""
    return _Engine(
        ledger=ledger,
        source=source,
        slices=slices,
        tz=tz,
        days=days,
        workers=workers,
        split_min=split_min,
        reporter=reporter,
    ).run()


# -- the job ----------------------------------------------------------------------------------


class _DashboardWriter:
    """Writes the days the fetch completes to the dashboard while the fetch goes on, so the
    command ends soon after its last page instead of writing every row then.

    One thread, the only one touching the dashboard until the block ends; the ledger's queue
    of days to write is the hand-over, so a day is written once whatever order slices finish
    in. A failure here stops the writing, not the fetch: the caller's last write after the
    block meets the same failure and reports it, or catches up when it was passing.
    """

    EVERY = 1.0  # seconds between two writes, at least; more when writes take longer

    def __init__(self, ctx: Context) -> None:
        self._ctx = dataclasses.replace(ctx, progress=lambda _m: None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backfill-dashboard", daemon=True)

    def __enter__(self) -> _DashboardWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        pause = self.EVERY
        while not self._stop.wait(pause):
            began = time.monotonic()
            try:
                refresh_dashboard(self._ctx)
            except Exception as e:  # the last write, after the fetch, reports it
                log.info("writing the dashboard during the backfill stopped: %s", e)
                return
            # The writer takes at most about a third of the time: the fetch comes first.
            pause = max(self.EVERY, 2 * (time.monotonic() - began))


def backfill(
    ctx: Context,
    *,
    since: date,
    until: date | None = None,
    workers: int = 8,
    via: str = "api",
    reporter: Reporter | None = None,
    archive_dir: Path | None = None,
    split_min: float = SPLIT_MIN,
) -> BackfillResult:
    """Fill the ledger and the dashboard for ``since``..``until`` (inclusive local days).

    Days already synced are skipped. ``via`` is ``"api"`` (list balance transactions, up to
    ``workers`` at a time) or ``"report"`` (one itemized report run for the range); reports go
    to ``archive_dir`` (default: ``archive/`` next to the ledger).
    """
    if via not in VIAS:
        raise UsageError(f"--via {via!r} is not one of: {', '.join(VIAS)}")
    last = until or yesterday(ctx.now, ctx.tz)
    if last < since:
        raise UsageError(f"--until {last} is before --since {since}; swap them")
    require_past_day(last, now=ctx.now, tz=ctx.tz, flag="--until" if until else "--since")
    if ctx.source is None:
        raise UsageError("backfill needs Stripe: set STRIPE_SECRET_KEY")
    synced = ctx.ledger.synced_days(ctx.tz_name)
    todo = [d for d in iter_days(since, last) if d not in synced]
    skipped = (last - since).days + 1 - len(todo)
    reporter = reporter if reporter is not None else _NotesReporter(ctx.progress)
    if not todo:
        stats = FetchStats(0, 0, 0, 0, 0, 0, 0.0)
    elif via == "report":
        stats = _via_report(
            ctx,
            todo,
            workers=workers,
            archive_dir=archive_dir or ctx.ledger.path.parent / "archive",
            say=reporter.note,
        )
    else:
        interval = days_interval(since, last, ctx.tz)
        left = plan(ctx.ledger, interval, tz=ctx.tz, days=todo)
        with _DashboardWriter(ctx):
            stats = fetch_slices(
                ctx.ledger,
                ctx.source,
                slices=split_evenly(left, max(1, workers)) if left else [],
                tz=ctx.tz,
                days=todo,
                workers=workers,
                split_min=split_min,
                reporter=reporter,
            )
    _, where = refresh_dashboard(ctx)
    # Subscriptions and invoices, after the P&L work is stored; resumable like the rest (the
    # ranges listed are kept in the ledger). All of them, not only those created in the range:
    # a subscription that began before the range bills in it, and the investor metrics of the
    # range need it.
    billing, billing_error = billing_after_pnl(ctx)
    # The payouts created in the range, and what each settled.
    whole = days_interval(since, last, ctx.tz)
    payouts, payouts_error = payouts_after_pnl(ctx, gte=whole.start, lt=whole.end)
    return BackfillResult(
        since=since,
        until=last,
        days_fetched=len(todo),
        days_skipped=skipped,
        fetched=stats.fetched,
        inserted=stats.inserted,
        dashboard=where,
        changed=stats.changed,
        pages=stats.pages,
        slices=stats.slices,
        seconds=stats.seconds,
        via=via,
        billing=billing,
        billing_error=billing_error,
        payouts=payouts,
        payouts_error=payouts_error,
    )


# -- the report path --------------------------------------------------------------------------


def _via_report(
    ctx: Context,
    days: Sequence[date],
    *,
    workers: int,
    archive_dir: Path,
    say: Callable[[str], None],
) -> FetchStats:
    from bot.jobs.ingest import ingest_itemized
    from bot.reports import ACTIVITY_ITEMIZED, ReportRequest, ensure_available, obtain

    started = time.monotonic()
    source = ctx.stripe()
    first, last = min(days), max(days)
    interval = days_interval(first, last, ctx.tz)
    ensure_available(source, ACTIVITY_ITEMIZED, interval, f"{first} … {last}")
    mode = source.mode
    request = ReportRequest(ACTIVITY_ITEMIZED, interval, ctx.tz_name, mode)
    say(f"running {ACTIVITY_ITEMIZED} for {first} … {last}")
    path = obtain(source, ctx.ledger, request, archive_dir=archive_dir)
    say(f"loading {path.name} ({path.stat().st_size / 2**20:,.1f} MiB) into the ledger")
    ingest = ingest_itemized(
        ctx.ledger,
        path,
        livemode=mode == "live",
        now=ctx.now,
        interval=(interval.start, interval.end),
    )
    say(
        f"{ingest.rows:,} report rows in {ingest.seconds:.1f}s; listing payouts, transfers, "
        "top-ups and reserves through the API"
    )

    pages = fetched = inserted = changed = 0
    lock = threading.Lock()

    def one_type(type_: str) -> None:
        nonlocal pages, fetched, inserted, changed
        for page in source.iter_pages(interval, type=type_):
            with ctx.ledger.transaction() as conn:
                ins, chg = ctx.ledger.upsert_transactions(conn, page)
            with lock:
                pages += 1
                fetched += len(page)
                inserted += ins
                changed += chg

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(NON_ACTIVITY_TYPES)))) as pool:
        for f in [pool.submit(one_type, t) for t in NON_ACTIVITY_TYPES]:
            f.result()

    with ctx.ledger.transaction() as conn:
        marks = {}
        for d in days:
            iv = day_interval(d, ctx.tz)
            marks[d] = (iv.start, iv.end, ctx.ledger.count_between(conn, iv.start, iv.end))
        ctx.ledger.mark_days_synced(conn, ctx.tz_name, marks)
    return FetchStats(
        fetched=ingest.rows + fetched,
        inserted=ingest.inserted + inserted,
        changed=ingest.changed + changed,
        pages=pages,
        slices=0,
        days_synced=len(days),
        seconds=time.monotonic() - started,
    )
