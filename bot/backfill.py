"""`revbot backfill`: fill the ledger for a range of days, fast (issue 6).

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
"""

from __future__ import annotations

import bisect
import csv
import itertools
import json
import logging
import operator
import pickle
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, Protocol
from zoneinfo import ZoneInfo

from bot.errors import ServiceError, UsageError
from bot.jobs import Context, Source, refresh_dashboard
from bot.ledger import Ledger
from bot.money import MoneyError, exponent, to_minor
from bot.periods import (
    Interval,
    day_interval,
    days_interval,
    iter_days,
    require_past_day,
    yesterday,
)
from bot.stripe_source import PAGE_SIZE  # Stripe's largest list page

log = logging.getLogger(__name__)

JOB = "backfill:balance_transactions"  # the key of this job's rows in the ledger's slices
SPLIT_MIN = 2 * PAGE_SIZE  # split a slice only when its rest looks worth two pages or more
VIAS = ("api", "report")

# Balance transaction types whose reporting category is not activity (PRODUCT.md §5), so the
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


def _clock_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def describe(p: Progress) -> str:
    return (
        f"backfill: {p.fraction:.0%} of the range, {p.transactions:,} transactions, "
        f"{p.pages:,} pages, {p.rate:.1f} req/s, elapsed {_clock_text(p.elapsed)}, "
        f"ETA {_clock_text(p.eta())}"
    )


class LogReporter:
    """Plain lines, at most one every ``every`` seconds (for logs and pipes)."""

    def __init__(self, emit: Callable[[str], None], *, every: float = 2.0) -> None:
        self._emit = emit
        self._every = every
        self._last = 0.0
        self._lock = threading.Lock()

    def start(self, progress: Progress) -> None:
        self._last = time.monotonic()
        self._emit(f"backfill: {progress.total / 86_400:,.1f} days of history to read")

    def update(self, progress: Progress) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self._every:
                return
            self._last = now
        self._emit(describe(progress))

    def finish(self, progress: Progress) -> None:
        self._emit(describe(progress))

    def note(self, message: str) -> None:
        self._emit(f"backfill: {message}")


class RichReporter:
    """A rich progress bar on stderr: share of the range, transactions, pages, req/s, ETA."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("backfill"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn(
                "{task.fields[txns]:,} transactions · {task.fields[pages]:,} pages · "
                "{task.fields[rps]:.1f} req/s"
            ),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=stream or sys.stderr),
            transient=False,
        )
        self._task: Any = None

    def start(self, progress: Progress) -> None:
        self._bar.start()
        self._task = self._bar.add_task(
            "backfill", total=max(1, progress.total), txns=0, pages=0, rps=0.0
        )

    def update(self, progress: Progress) -> None:
        self._bar.update(
            self._task,
            completed=progress.covered,
            txns=progress.transactions,
            pages=progress.pages,
            rps=progress.rate,
        )

    def finish(self, progress: Progress) -> None:
        self.update(progress)
        self._bar.stop()

    def note(self, message: str) -> None:
        self._bar.console.log(message)


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
        source: Source,
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
        self._requests0 = int(getattr(source, "requests", 0))

    # -- bookkeeping shared by the workers ----------------------------------------------

    def snapshot(self) -> Progress:
        requests = int(getattr(self.source, "requests", 0)) - self._requests0
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
            after = str(data[-1]["id"])

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
    source: Source,
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
    reporter = reporter if reporter is not None else LogReporter(ctx.progress)
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
    )


# -- the report path --------------------------------------------------------------------------


ITEMIZED_REQUIRED = (
    "balance_transaction_id", "created_utc", "available_on_utc", "currency", "gross", "net",
    "reporting_category",
)  # fmt: skip


@dataclass(frozen=True)
class IngestStats:
    rows: int
    inserted: int
    changed: int
    seconds: float


# A line that needs the csv module (quotes) or JSON escapes (backslash, control characters).
_SPECIAL = re.compile(r'["\\\x00-\x1f]').search


def _hour_epoch(text: str) -> int:
    """``YYYY-MM-DD HH`` (UTC) -> unix seconds; ValueError when it is not that."""
    if len(text) != 13 or text[4] != "-" or text[7] != "-" or text[10] not in " T":
        raise ValueError(text)
    return int(datetime.fromisoformat(text[:10] + "T" + text[11:] + ":00:00+00:00").timestamp())


def _utc_seconds(text: str) -> int:
    """A report timestamp in UTC (``YYYY-MM-DD HH:MM:SS``, or ISO 8601) -> unix seconds."""
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def _ledger_rows(
    lines: Iterator[str],
    *,
    path: Path,
    header: list[str],
    livemode: int | None,
    now: int,
    changed_at: str,
    row_no: int = 1,
) -> Iterator[tuple[Any, ...]]:
    """Itemized CSV lines (after the header) -> rows for :meth:`Ledger.upsert_report_rows`.

    This loop runs a million times for a big backfill, so it is written for speed: plain lines
    (no quotes, nothing to escape: nearly all of them) are split on commas and their raw JSON
    is one ``%`` format; only the others go through the csv module and the JSON encoder. Hours
    and currencies are looked up in small caches; money is read digit for digit, never as a
    float. Any doubt about a cell sends the row through the slow, validating path.
    """
    from bot.reports import CsvError

    col = {name: i for i, name in enumerate(header)}
    i_id, i_created, i_available = (
        col["balance_transaction_id"],
        col["created_utc"],
        col["available_on_utc"],
    )
    i_currency, i_gross, i_net = col["currency"], col["gross"], col["net"]
    i_category = col["reporting_category"]
    i_source, i_description = col.get("source_id"), col.get("description")
    ncols = len(header)
    encode = json.encoder.encode_basestring_ascii
    keys = [encode(h) + ":" for h in header]
    template = "{" + ",".join(k.replace("%", "%%") + '"%s"' for k in keys) + "}"
    hours: dict[str, int] = {}
    stamps: dict[str, int] = {}
    exponents: dict[str, int] = {"usd": 2, "eur": 2}
    special = _SPECIAL

    def fail(message: str) -> CsvError:
        return CsvError(
            f"report file {path}: row {row_no}: {message}; the file is kept for inspection"
        )

    def minor(text: str, currency: str) -> int:
        exp = exponents.get(currency)
        if exp is None:
            try:
                exp = exponent(currency)
            except MoneyError:
                raise fail(f"{currency!r} is not a currency") from None
            exponents[currency] = exp
        try:
            return to_minor(Decimal(text.strip()), currency)
        except (InvalidOperation, MoneyError):
            raise fail(f"{text!r} is not an amount in {currency.upper()}") from None

    def seconds(text: str) -> int:
        try:
            return _utc_seconds(text)
        except ValueError:
            raise fail(f"{text!r} is not a UTC timestamp") from None

    for line in lines:
        row_no += 1
        body = line.rstrip("\r\n")
        if special(body) is None:
            cells = body.split(",")
            if len(cells) != ncols:
                if not cells[0] and len(cells) == 1:
                    continue  # a blank line
                raise fail(f"{len(cells)} cells for {ncols} columns")
            raw = template % tuple(cells)
        else:
            record = next(csv.reader(itertools.chain([line], lines)), None)
            if not record:
                continue
            cells = record
            if len(cells) != ncols:
                raise fail(f"{len(cells)} cells for {ncols} columns")
            raw = "{" + ",".join(map(str.__add__, keys, map(encode, cells))) + "}"
        currency = cells[i_currency]
        gross_text, net_text = cells[i_gross], cells[i_net]
        created_text, available_text = cells[i_created], cells[i_available]
        try:
            # The common case: lowercase currency with 2 decimals, "YYYY-MM-DD HH:MM:SS".
            if exponents.get(currency) != 2 or gross_text[-3:-2] != "." or net_text[-3:-2] != ".":
                raise ValueError
            gross = int(gross_text[:-3] + gross_text[-2:])
            net = int(net_text[:-3] + net_text[-2:])
            hour = hours.get(created_text[:13])
            if hour is None:
                hour = hours[created_text[:13]] = _hour_epoch(created_text[:13])
            if len(created_text) != 19 or created_text[13] != ":" or created_text[16] != ":":
                raise ValueError
            created = hour + int(created_text[14:16]) * 60 + int(created_text[17:19])
            available_on = stamps.get(available_text)  # mostly midnights: few values
            if available_on is None:
                hour = hours.get(available_text[:13])
                if hour is None:
                    hour = hours[available_text[:13]] = _hour_epoch(available_text[:13])
                if (
                    len(available_text) != 19
                    or available_text[13] != ":"
                    or available_text[16] != ":"
                ):
                    raise ValueError
                available_on = hour + int(available_text[14:16]) * 60 + int(available_text[17:19])
                if len(stamps) < 50_000:
                    stamps[available_text] = available_on
        except (ValueError, IndexError):
            currency = currency.strip().lower()
            gross = minor(gross_text, currency)
            net = minor(net_text, currency)
            created = seconds(created_text)
            available_on = seconds(available_text)
        txn_id = cells[i_id]
        if not txn_id:
            raise fail("no balance_transaction_id")
        yield (
            txn_id,
            created,
            available_on,
            currency,
            gross,
            gross - net,  # the fee, with no assumption about the sign of the fee column
            net,
            cells[i_category] or "other",
            # The report has no status; a transaction whose funds are available by now is.
            "available" if available_on <= now else "pending",
            "" if i_description is None else cells[i_description],
            "" if i_source is None else cells[i_source],
            livemode,
            raw,
            changed_at,
        )


def _read_header(path: Path) -> list[str]:
    from bot.reports import CsvError

    with open(path, newline="", encoding="utf-8-sig") as fh:
        header = [h.strip() for h in next(csv.reader(fh), [])]
    missing = [c for c in ITEMIZED_REQUIRED if c not in header]
    if missing:
        raise CsvError(
            f"report file {path} has no {', '.join(repr(c) for c in missing)} column "
            f"(columns: {', '.join(header) or 'none'}); the file is kept for inspection"
        )
    return header


# -- the column-wise fast path -------------------------------------------------------------------
#
# Parsing a report line by line in Python costs ~10 µs a row, and pickling the row tuples to
# the writer ~3 µs more, which kept a million-row ingest under 50k rows/s on two cores. So a
# block of plain lines (no quotes, no escapes, ASCII: nearly all of a report) is handled a
# column at a time with C-level loops (``map``, ``str.split``, ``%``) instead: amounts and
# timestamps are converted once per distinct value (a block has few prices, dates and hours)
# by the same exact code as the slow path, and looked up for every row. Anything in doubt
# (a bad cell, an odd column count) sends the whole block through the validating row-by-row
# path (:func:`_ledger_rows`), which also names a bad row. A block travels to the writer as
# 14 columns (pickled lists: fast to pickle, no tuple per row), sorted by id.

# REPORT_ROW_COLUMNS, a column each: lists of equal length, or a 1-tuple for a constant.
Columns = list[Any]


def _block_special(text: str) -> bool:
    """Whether a block needs the csv module (quotes) or JSON escapes (backslashes, control
    characters, non-ASCII)."""
    if not text.isascii() or '"' in text or "\\" in text:
        return True
    return not text.replace("\r\n", "").replace("\n", "").isprintable()


class _Parser:
    """Turns blocks of report lines into :data:`Columns`, keeping its caches across blocks."""

    def __init__(
        self, path: Path, header: list[str], *, livemode: int | None, now: int, changed_at: str
    ) -> None:
        self.path, self.header = path, header
        self.options: dict[str, Any] = {
            "livemode": livemode,
            "now": now,
            "changed_at": changed_at,
        }
        self.now = now
        col = {name: i for i, name in enumerate(header)}
        self.get = {
            name: operator.itemgetter(i) for name, i in col.items() if name in _FAST_COLUMNS
        }
        encode = json.encoder.encode_basestring_ascii
        # The raw JSON of a plain line, as _ledger_rows writes it.
        self.raw_template = (
            "{" + ",".join(encode(h).replace("%", "%%") + ':"%s"' for h in header) + "}"
        )
        # Lines sort as their ids when the id comes first (ids have no character below ",").
        self.sort_lines = header[0] == "balance_transaction_id"
        self.exponents: dict[str, int | None] = {}
        self.amounts: dict[str, int] = {}  # currency + amount text -> minor units
        self.stamps: dict[str, int] = {}  # availability text -> unix seconds
        self.hours: dict[str, int] = {}  # "YYYY-MM-DD HH" -> unix seconds

    def _amounts(self, currencies: list[str], texts: list[str]) -> list[int]:
        keys = list(map(str.__add__, currencies, texts))  # codes are 3 letters: no ambiguity
        cache = self.amounts
        for key in set(keys).difference(cache):
            code, text = key[:3], key[3:]
            exp = self.exponents[code]
            if exp == 2 and text[-3:-2] == "." and text.lstrip("-")[:-3].isdigit():
                if not text[-2:].isdigit():
                    raise ValueError(text)
                cache[key] = int(text[:-3] + text[-2:])
            else:
                cache[key] = to_minor(Decimal(text), code)  # MoneyError/InvalidOperation
        if len(cache) > 20_000:  # bounded memory: start over
            self.amounts = {}
        return list(map(cache.__getitem__, keys))

    def _seconds(self, texts: list[str], *, keep: bool) -> list[int]:
        """Unix seconds of ``YYYY-MM-DD HH:MM:SS`` texts (UTC); ``keep``: remember them for the
        next blocks (availability times: a few midnights, unlike creation times)."""
        cache = self.stamps if keep else {}
        for text in set(texts).difference(cache):
            if (
                len(text) != 19
                or text[13] != ":"
                or text[16] != ":"
                or not (text[14:16] + text[17:19]).isdigit()
                or text[14] > "5"
                or text[17] > "5"
            ):
                raise ValueError(text)
            hour = self.hours.get(text[:13])
            if hour is None:
                hour = self.hours[text[:13]] = _hour_epoch(text[:13])
            cache[text] = hour + int(text[14:16]) * 60 + int(text[17:19])
        if len(cache) > 20_000:
            self.stamps = {}
        if len(self.hours) > 2_000:
            self.hours = {}
        return list(map(cache.__getitem__, texts))

    def fast(self, text: str) -> Columns | None:
        """A block of plain lines as columns; None when it must take the row-by-row path."""
        if _block_special(text):
            return None
        lines = text.replace("\r\n", "\n").split("\n")
        if lines and not lines[-1]:
            lines.pop()
        if self.sort_lines:
            lines.sort()  # by id: the id index is then written in runs, not at random
        rows = list(map(str.split, lines, itertools.repeat(",")))
        if not rows:
            return None
        try:
            raws = list(map(self.raw_template.__mod__, map(tuple, rows)))
        except TypeError:  # a row with another number of cells, a blank line
            return None
        get = self.get
        ids = list(map(get["balance_transaction_id"], rows))
        currencies = list(map(get["currency"], rows))
        for code in set(currencies).difference(self.exponents):
            try:
                exp: int | None = exponent(code)
            except MoneyError:
                exp = None
            # Only a code exactly as stored (" USD" is stored as "usd": the slow path's job).
            self.exponents[code] = exp if code == code.strip().lower() else None
        if not all(ids) or any(self.exponents[c] is None for c in set(currencies)):
            return None
        try:
            gross = self._amounts(currencies, list(map(get["gross"], rows)))
            net = self._amounts(currencies, list(map(get["net"], rows)))
            created = self._seconds(list(map(get["created_utc"], rows)), keep=False)
            available = self._seconds(list(map(get["available_on_utc"], rows)), keep=True)
        except (ValueError, ArithmeticError, MoneyError):  # InvalidOperation is both
            return None
        categories = list(map(get["reporting_category"], rows))
        names = {c: c or "other" for c in set(categories)}
        status = {True: "available", False: "pending"}
        return [
            ids,
            created,
            available,
            currencies,
            gross,
            list(map(operator.sub, gross, net)),  # the fee
            net,
            list(map(names.__getitem__, categories)),
            # The report has no status; a transaction whose funds are available by now is.
            list(map(status.__getitem__, map(self.now.__ge__, available))),
            list(map(get["description"], rows)) if "description" in get else ("",),
            list(map(get["source_id"], rows)) if "source_id" in get else ("",),
            (self.options["livemode"],),
            raws,
            (self.options["changed_at"],),
        ]

    def slow(self, lines: list[str], row_no: int) -> Columns | None:
        rows = sorted(
            _ledger_rows(
                iter(lines), path=self.path, header=self.header, row_no=row_no, **self.options
            )
        )
        return [list(c) for c in zip(*rows, strict=True)] if rows else None

    def chunks(self, chunk_rows: int, *, fast: bool = True) -> Iterator[Columns]:
        with open(self.path, newline="", encoding="utf-8-sig") as fh:
            lines = iter(fh)
            next(csv.reader(lines), None)  # the header, already checked
            row_no = 1  # the header's line: data rows are numbered from 2, as in a spreadsheet
            while block := list(itertools.islice(lines, chunk_rows)):
                text = "".join(block)
                # Keep a quoted cell's lines together: end the block where quotes are even.
                while text.count('"') % 2:
                    more = next(lines, None)
                    if more is None:
                        break
                    block.append(more)
                    text += more
                columns = self.fast(text) if fast else None
                if columns is not None:
                    row_no += len(block)
                else:
                    columns = self.slow(block, row_no)
                    row_no += sum(1 for _ in csv.reader(block))
                if columns is not None:
                    yield columns


_FAST_COLUMNS = frozenset(
    ("balance_transaction_id", "created_utc", "available_on_utc", "currency", "gross", "net",
     "reporting_category", "source_id", "description")
)  # fmt: skip


def column_rows(columns: Columns) -> Iterator[tuple[Any, ...]]:
    """The rows of a block's columns (a constant column is repeated)."""
    spread = (itertools.repeat(c[0]) if isinstance(c, tuple) else c for c in columns)
    return zip(*spread, strict=False)  # the repeated constants never end


def _column_count(columns: Columns) -> int:
    return max(len(c) for c in columns if not isinstance(c, tuple))


def _parse_chunks(
    path: Path,
    header: list[str],
    *,
    livemode: int | None,
    now: int,
    changed_at: str,
    chunk_rows: int,
    fast: bool = True,
) -> Iterator[Columns]:
    """The file's ledger rows, about ``chunk_rows`` at a time as :data:`Columns`, each block
    sorted by id (so that the id index is written in runs instead of at random)."""
    parser = _Parser(path, header, livemode=livemode, now=now, changed_at=changed_at)
    yield from parser.chunks(chunk_rows, fast=fast)


def _parse_in_child(send: Any, path: str, header: list[str], options: dict[str, Any]) -> None:
    """Child process: parse the file, send pickled blocks of columns, then an empty frame (or
    ``E`` and the error message)."""
    from bot.reports import CsvError

    try:
        for columns in _parse_chunks(Path(path), header, **options):
            send.send_bytes(pickle.dumps(columns, protocol=pickle.HIGHEST_PROTOCOL))
        send.send_bytes(b"")
    except CsvError as e:
        send.send_bytes(b"E" + str(e).encode())
    finally:
        send.close()


def _chunks_from_child(path: Path, header: list[str], options: dict[str, Any]) -> Iterator[Columns]:
    """:func:`_parse_chunks` run in a child process: parsing takes one core, SQLite the other.

    (Threads cannot do this: the writer gives up the GIL for every row it steps, and gets it
    back only at the parser's next switch interval, so the two end up taking turns.)
    """
    import multiprocessing

    from bot.reports import CsvError

    mp = multiprocessing.get_context("spawn")  # no fork of a process that has threads
    receive, send = mp.Pipe(duplex=False)
    child = mp.Process(
        target=_parse_in_child,
        args=(send, str(path), header, options),
        daemon=True,
        name="ingest-parser",
    )
    child.start()
    send.close()
    try:
        while True:
            try:
                frame = receive.recv_bytes()
            except EOFError:
                raise ServiceError(f"the process reading {path} stopped unexpectedly") from None
            if not frame:
                return
            if frame[:1] == b"E":
                raise CsvError(frame[1:].decode())
            yield pickle.loads(frame)
    finally:
        receive.close()
        if child.is_alive():
            child.terminate()
        child.join(timeout=10)


# The writer's page cache during an ingest (the id index of a million rows is ~50 MB, written
# at random places; a page the cache drops is written again later).
INGEST_CACHE_MB = 48

# Below this size a file is parsed in-process: starting a child costs more than it saves.
PARALLEL_MIN_BYTES = 16 << 20


def ingest_itemized(
    ledger: Ledger,
    path: Path,
    *,
    livemode: bool | None,
    now: datetime,
    chunk_rows: int = 2_000,
    parallel: bool | None = None,
    fast: bool = True,
) -> IngestStats:
    """Stream a ``balance_change_from_activity.itemized.3`` CSV into the ledger.

    Memory stays bounded by ``chunk_rows``: the file is read a block of lines at a time and
    stored with ``executemany``, never whole. Columns are found by header name; money comes
    from ``gross`` and ``net`` (fee = gross - net). A large file (or ``parallel=True``) is
    parsed in a child process while this one writes. All rows go in one ledger transaction:
    an ingest killed half-way leaves nothing behind and is simply run again. ``fast=False``
    sends every row through the validating row-by-row path (the reference the column-wise
    fast path is tested against).
    """
    started = time.monotonic()
    header = _read_header(path)
    options: dict[str, Any] = {
        "livemode": None if livemode is None else int(livemode),
        "now": int(now.timestamp()),
        "changed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "chunk_rows": chunk_rows,
        "fast": fast,
    }
    if parallel is None:
        parallel = path.stat().st_size >= PARALLEL_MIN_BYTES
    chunks = (
        _chunks_from_child(path, header, options)
        if parallel
        else _parse_chunks(path, header, **options)
    )
    rows = inserted = changed = 0
    try:
        with ledger.bulk_transaction(cache_mb=INGEST_CACHE_MB) as conn:
            for columns in chunks:
                ins, chg = ledger.upsert_report_rows(conn, column_rows(columns))
                rows += _column_count(columns)
                inserted += ins
                changed += chg
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return IngestStats(
        rows=rows, inserted=inserted, changed=changed, seconds=time.monotonic() - started
    )


def _via_report(
    ctx: Context,
    days: Sequence[date],
    *,
    workers: int,
    archive_dir: Path,
    say: Callable[[str], None],
) -> FetchStats:
    from bot.reports import ACTIVITY_ITEMIZED, ReportRequest, ensure_available, obtain

    started = time.monotonic()
    source: Any = ctx.source
    first, last = min(days), max(days)
    interval = days_interval(first, last, ctx.tz)
    ensure_available(source, ACTIVITY_ITEMIZED, interval, f"{first} … {last}")
    mode = str(source.mode)
    request = ReportRequest(ACTIVITY_ITEMIZED, interval, ctx.tz_name, mode)
    say(f"running {ACTIVITY_ITEMIZED} for {first} … {last}")
    path = obtain(source, ctx.ledger, request, archive_dir=archive_dir)
    say(f"loading {path.name} ({path.stat().st_size / 2**20:,.1f} MiB) into the ledger")
    ingest = ingest_itemized(ctx.ledger, path, livemode=mode == "live", now=ctx.now)
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
