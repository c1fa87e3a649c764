"""`revbot backfill` (issue 6): slices, splits, resume, progress, and the report path.

Everything runs through the real stripe SDK against the sandbox over HTTP, into a real SQLite
ledger; nothing of revbot is mocked.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

from bot import books_store, output
from bot.config import Secret
from bot.dashboard.workbook import WorkbookDashboard
from bot.jobs import backfill as bf
from bot.jobs import sync as jobs
from bot.jobs.context import Context
from bot.ledger import Ledger
from bot.periods import day_interval, days_interval
from bot.pnl import summarize
from bot.sandbox import SandboxAccount, SandboxServer
from bot.stripe_source import StripeSource
from tests.conftest import TEST_KEY, Cli, days_ago

UTC_ZONE = ZoneInfo("UTC")
BASE = 1_790_000_000 - 1_790_000_000 % 86_400  # a UTC midnight in 2026
SPAN = 2 * 86_400
DAYS = [datetime.fromtimestamp(BASE, UTC).date(), datetime.fromtimestamp(BASE + 86_400, UTC).date()]


def source_for(server: SandboxServer, *, max_rps: float = 1000.0) -> StripeSource:
    return StripeSource(api_key=Secret(TEST_KEY), api_base=server.url, max_rps=max_rps)


def ids_between(account: SandboxAccount, start: int, end: int) -> list[str]:
    return sorted(t["id"] for t in account.transactions if start <= t["created"] < end)


def ledger_ids(ledger: Ledger) -> list[str]:
    return sorted(t.id for t in ledger.transactions_between(0, 2**40))


def list_requests(records: list[logging.LogRecord]) -> list[dict[str, Any]]:
    """The balance-transaction list requests the sandbox logged: created range and cursor."""
    out = []
    for r in records:
        message = r.getMessage()
        if "GET /v1/balance_transactions?" not in message:
            continue
        target = message.split('"')[1].split(" ")[1]
        q = parse_qs(urlsplit(target).query)
        if "payout" in q:
            continue  # what a payout settled (the Payouts tab), not a range of days
        out.append(
            {
                "gte": int(q["created[gte]"][0]),
                "lt": int(q["created[lt]"][0]),
                "after": q.get("starting_after", [None])[0],
            }
        )
    return out


# -- pure pieces ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=12),
    st.integers(0, 60),
    st.integers(0, 60),
)
def test_interval_set_is_a_set_of_seconds(pairs: list[tuple[int, int]], a: int, b: int) -> None:
    got = bf.IntervalSet(pairs)
    seconds = {s for x, y in pairs for s in range(x, y)}
    assert {s for x, y in got for s in range(x, y)} == seconds
    merged = list(got)
    assert all(e1 < s2 for (_, e1), (s2, _) in itertools.pairwise(merged))  # merged
    start, end = min(a, b), max(a, b)
    assert got.covers(start, end) == all(s in seconds for s in range(start, end))
    gaps = got.gaps(start, end)
    assert {s for x, y in gaps for s in range(x, y)} == set(range(start, end)) - seconds
    assert got.total() == len(seconds)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 5_000)), min_size=1, max_size=6),
    st.integers(1, 40),
)
def test_split_evenly_tiles_the_gaps_exactly(raw: list[tuple[int, int]], pieces: int) -> None:
    gaps = list(bf.IntervalSet((s, s + n) for s, n in raw))
    slices = bf.split_evenly(gaps, pieces)
    assert slices == sorted(slices, reverse=True)  # newest first
    assert all(e > s for s, e in slices)
    assert list(bf.IntervalSet(slices)) == gaps
    assert sum(e - s for s, e in slices) == sum(e - s for s, e in gaps)  # no overlap
    assert len(slices) >= min(pieces, sum(e - s for s, e in gaps)) * 0.5


# -- slice edges: nothing lost, nothing twice (hypothesis, over HTTP) ------------------------


@pytest.fixture(scope="module")
def edge_server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxAccount(start=BASE, end=BASE + SPAN)) as server:
        yield server


def account_with(created: list[int]) -> SandboxAccount:
    account = SandboxAccount(start=BASE - 86_400, end=BASE + SPAN + 86_400, seed=3)
    for i, ts in enumerate(created):
        account.add_transaction(
            created=ts, amount=1000 + i, fee=30, currency="usd", reporting_category="charge"
        )
    return account


@st.composite
def edge_cases(draw: st.DrawFn) -> tuple[list[int], list[int], int, float]:
    cuts = sorted(set(draw(st.lists(st.integers(BASE + 1, BASE + SPAN - 1), max_size=8))))
    edges = [BASE, BASE + 86_400, BASE + SPAN - 1, *cuts, *(c - 1 for c in cuts)]
    at_edges = draw(st.lists(st.sampled_from(edges), max_size=60))
    spread = draw(st.lists(st.integers(BASE, BASE + SPAN - 1), max_size=250))
    # More transactions in one second than a page holds: ties that cross a page boundary.
    burst = draw(st.sampled_from([0, 0, 101, 230]))
    burst_at = draw(st.sampled_from(edges))
    outside = [BASE - 1, BASE + SPAN, BASE + SPAN + 5]
    created = at_edges + spread + [burst_at] * burst + outside
    workers = draw(st.integers(1, 6))
    split_min = draw(st.sampled_from([0.0, 1.0, 150.0, 1e12]))
    return created, cuts, workers, split_min


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=edge_cases())
def test_no_transaction_lost_or_duplicated_across_slice_edges(
    edge_server: SandboxServer,
    tmp_path_factory: pytest.TempPathFactory,
    case: tuple[list[int], list[int], int, float],
) -> None:
    created, cuts, workers, split_min = case
    account = edge_server.account = account_with(created)
    bounds = [BASE, *cuts, BASE + SPAN]
    slices = [(a, b) for a, b in itertools.pairwise(bounds)]
    ledger = Ledger.open(tmp_path_factory.mktemp("edges") / "state.sqlite")
    days = DAYS
    stats = bf.fetch_slices(
        ledger,
        source_for(edge_server),
        slices=slices,
        tz=UTC_ZONE,
        days=days,
        workers=workers,
        split_min=split_min,
    )
    expected = ids_between(account, BASE, BASE + SPAN)
    assert stats.fetched == len(expected)  # each transaction read (and stored) exactly once
    assert ledger_ids(ledger) == expected
    assert bf.IntervalSet(ledger.completed_slices(bf.JOB)).gaps(BASE, BASE + SPAN) == []
    assert set(ledger.synced_days("UTC")) == set(days)
    assert stats.days_synced == 2


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=edge_cases(), kill_after=st.integers(1, 6))
def test_a_run_killed_anywhere_resumes_without_reading_a_completed_slice_again(
    edge_server: SandboxServer,
    tmp_path_factory: pytest.TempPathFactory,
    case: tuple[list[int], list[int], int, float],
    kill_after: int,
) -> None:
    created, cuts, workers, split_min = case
    account = edge_server.account = account_with(created)
    bounds = [BASE, *cuts, BASE + SPAN]
    slices = [(a, b) for a, b in itertools.pairwise(bounds)]
    ledger = Ledger.open(tmp_path_factory.mktemp("kill") / "state.sqlite")
    days = DAYS
    killed = True
    try:
        bf.fetch_slices(
            ledger, source_for(edge_server), slices=slices, tz=UTC_ZONE, days=days,
            workers=workers, split_min=split_min, reporter=Killer(kill_after),
        )  # fmt: skip
        killed = False
    except Killed:
        pass
    done = bf.IntervalSet(ledger.completed_slices(bf.JOB))
    stored_in_done = sum(
        1 for t in ledger.raw_transactions() if done.covers(t["created"], t["created"] + 1)
    )
    left = bf.plan(
        ledger,
        days_interval(days[0], days[1], UTC_ZONE),
        tz=UTC_ZONE,
        days=[d for d in days if d not in ledger.synced_days("UTC")],
    )
    assert all(not done.covers(s, s + 1) and not done.covers(e - 1, e) for s, e in left)
    again = bf.fetch_slices(
        ledger,
        source_for(edge_server),
        slices=bf.split_evenly(left, workers) if left else [],
        tz=UTC_ZONE,
        days=days,
        workers=workers,
    )
    expected = ids_between(account, BASE, BASE + SPAN)
    assert ledger_ids(ledger) == expected
    # What the first run completed is never read again: the second reads exactly the rest.
    assert again.fetched == len(expected) - stored_in_done
    if not killed:
        assert again.pages == 0
    assert set(ledger.synced_days("UTC")) == set(days)


class Killed(Exception):
    """Stands for the process being killed after some pages."""


class Killer:
    """A progress reporter that 'kills' the run after ``pages`` committed pages."""

    def __init__(self, pages: int) -> None:
        self.left = pages
        self.lock = threading.Lock()

    def start(self, progress: bf.Progress) -> None:
        pass

    def update(self, progress: bf.Progress) -> None:
        with self.lock:
            self.left -= 1
            if self.left <= 0:
                raise Killed

    def finish(self, progress: bf.Progress) -> None:
        pass

    def note(self, message: str) -> None:
        pass


# -- skewed data spreads across the workers ---------------------------------------------------


def test_skewed_data_is_split_across_workers(tmp_path: Path) -> None:
    end = date.today()
    account = SandboxAccount.bulk(
        start=end - timedelta(days=30), end=end, count=4000, skew=0.9, seed=9
    )
    with SandboxServer(account, latency=0.02) as server:
        ledger = Ledger.open(tmp_path / "state.sqlite")
        interval = days_interval(end - timedelta(days=30), end - timedelta(days=1), UTC_ZONE)
        slices = bf.split_evenly([(interval.start, interval.end)], 6)
        stats = bf.fetch_slices(ledger, source_for(server), slices=slices, tz=UTC_ZONE, workers=6)
        assert stats.fetched == len(account) == ledger.transaction_count()
        # 90% of the data sits on 3 days, inside at most 3 of the 6 first slices: without
        # splitting, those would be paged one after the other.
        assert stats.slices > len(slices)
        # Splitting costs at most about one partly filled page per slice.
        assert stats.pages <= len(account) // 100 + stats.slices + 1
        rows = Counter(ledger.completed_slices(bf.JOB))
        assert sum(rows.values()) == len(rows)  # one row per slice, not one per page


# -- the command, end to end ------------------------------------------------------------------


def job_context(ledger: Ledger, server: SandboxServer) -> Context:
    return Context(
        ledger=ledger, dashboard=WorkbookDashboard(ledger.path.parent / "dashboard.xlsx"),
        source=source_for(server), tz=UTC_ZONE, now=datetime.now(UTC),
    )  # fmt: skip


def open_ledger(cli: Cli, data_dir: str | None = None) -> Ledger:
    return Ledger.open(Path(data_dir or cli.env["DATA_DIR"]) / "state.sqlite")


def test_backfill_command_fills_ledger_days_and_dashboard(
    cli: Cli, sandbox: SandboxServer, sandbox_account: SandboxAccount
) -> None:
    first, last = days_ago(30), days_ago(1)
    run = cli("backfill", "--since", first.isoformat(), "--workers", "4")
    assert run.exit_code == 0, run.stderr
    assert "via api" in run.stdout
    assert "backfill: 100% of the range" in run.stderr and "req/s" in run.stderr  # not a tty
    iv = days_interval(first, last, UTC_ZONE)
    ledger = open_ledger(cli)
    assert ledger_ids(ledger) == ids_between(sandbox_account, iv.start, iv.end)
    assert set(ledger.synced_days("UTC")) == {first + timedelta(days=i) for i in range(30)}
    wb = load_workbook(Path(cli.env["DATA_DIR"]) / "dashboard.xlsx")
    assert {r[0].date() for r in wb["Daily"].iter_rows(min_row=2, values_only=True)} == set(
        ledger.synced_days("UTC")
    )
    requests = sandbox.stats.requests[("GET", "/v1/balance_transactions")]
    # Again: every day is synced, nothing is fetched.
    again = cli("backfill", "--since", first.isoformat())
    assert again.exit_code == 0 and "30 already synced" in again.stdout
    assert sandbox.stats.requests[("GET", "/v1/balance_transactions")] == requests
    # `daily` reads the API's objects through the SDK: they look the same, nothing changed.
    out = jobs.sync_days(
        job_context(ledger, sandbox), [last - timedelta(days=1), last], dry_run=False
    )
    assert out.fetched > 0 and (out.inserted, out.changed) == (0, 0)


def test_a_backfill_killed_by_a_failure_resumes_where_it_stopped(
    cli: Cli,
    sandbox: SandboxServer,
    sandbox_account: SandboxAccount,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.sandbox.server")
    first = days_ago(40)
    iv = days_interval(first, days_ago(1), UTC_ZONE)

    def fail_later() -> None:  # a Stripe outage after the 6th list request
        while sandbox.stats.requests[("GET", "/v1/balance_transactions")] < 6:
            time.sleep(0.001)
        sandbox.inject("/v1/balance_transactions", status=400)

    watcher = threading.Thread(target=fail_later, daemon=True)
    watcher.start()
    sandbox.latency = 0.01
    run = cli("backfill", "--since", first.isoformat(), "--workers", "3")
    watcher.join(timeout=5)
    assert run.exit_code == 1 and "Stripe refused" in run.stderr
    ledger = open_ledger(cli)
    done = bf.IntervalSet(ledger.completed_slices(bf.JOB))
    assert 0 < done.total() < iv.end - iv.start
    stored = ledger.transaction_count()
    assert stored > 0
    first_run = len(list_requests(caplog.records))
    caplog.clear()

    again = cli("backfill", "--since", first.isoformat(), "--workers", "3")
    assert again.exit_code == 0, again.stderr
    second = list_requests(caplog.records)
    assert second and len(second) < first_run + 40
    for r in second:  # no request reaches into a slice the first run completed
        gaps = done.gaps(r["gte"], r["lt"])
        assert gaps == [(r["gte"], r["lt"])], r
    assert ledger_ids(ledger) == ids_between(sandbox_account, iv.start, iv.end)
    assert len(ledger.synced_days("UTC")) == 40


# -- --via report ------------------------------------------------------------------------------


def daily_rows(data_dir: Path) -> dict[tuple[str, str], tuple[Any, ...]]:
    wb = load_workbook(data_dir / "dashboard.xlsx")
    # Everything but updated_at (when revbot saw the row change).
    return {
        (r[0].date().isoformat(), r[1]): tuple(r[:12])
        for r in wb["Daily"].iter_rows(min_row=2, values_only=True)
    }


def test_via_report_equals_the_api_path_per_day_and_currency(
    cli: Cli, sandbox: SandboxServer, tmp_path: Path
) -> None:
    first, last = days_ago(20), days_ago(1)
    api_dir = tmp_path / "api-data"
    run = cli("backfill", "--since", first.isoformat(), env={"DATA_DIR": str(api_dir)})
    assert run.exit_code == 0, run.stderr
    lists_before = sandbox.stats.requests[("GET", "/v1/balance_transactions")]

    report = cli("backfill", "--since", first.isoformat(), "--via", "report")
    assert report.exit_code == 0, report.stderr
    assert "via report" in report.stdout
    assert "report rows in" in report.stderr  # the steps, as plain lines (not a terminal)
    assert sandbox.stats.report_runs_created == 1
    # Only the few non-activity transactions were listed, one type at a time (besides what
    # each automatic payout settled, a page each here, for the Payouts tab).
    with Ledger.open(Path(cli.env["DATA_DIR"]) / "state.sqlite") as ledger:
        automatic = [p for p in books_store.payouts(ledger) if p.automatic]
    assert automatic and all(len(p.settled) < 100 for p in automatic)
    assert sandbox.stats.requests[("GET", "/v1/balance_transactions")] - lists_before == len(
        bf.NON_ACTIVITY_TYPES
    ) + len(automatic)
    archived = list(
        (Path(cli.env["DATA_DIR"]) / "archive").glob(
            "balance_change_from_activity.itemized.3_*.csv"
        )
    )
    assert len(archived) == 1

    api, rep = open_ledger(cli, str(api_dir)), open_ledger(cli)
    assert ledger_ids(api) == ledger_ids(rep)
    for i in range((last - first).days + 1):
        iv = day_interval(first + timedelta(days=i), UTC_ZONE)
        a = summarize(t.movement() for t in api.transactions_between(iv.start, iv.end))
        r = summarize(t.movement() for t in rep.transactions_between(iv.start, iv.end))
        assert a == r, first + timedelta(days=i)
    assert set(rep.synced_days("UTC")) == set(api.synced_days("UTC"))
    assert daily_rows(api_dir) == daily_rows(Path(cli.env["DATA_DIR"]))

    # The API is richer: syncing a day afterwards replaces its report rows by API objects.
    iv = day_interval(last, UTC_ZONE)
    from_report = [t for t in rep.transactions_between(iv.start, iv.end) if not t.type]
    out = jobs.sync_days(job_context(rep, sandbox), [last], dry_run=False)
    assert out.changed == len(from_report) > 0
    assert all(t.type for t in rep.transactions_between(iv.start, iv.end))


# -- progress ---------------------------------------------------------------------------------


def test_log_reporter_throttles_and_finishes() -> None:
    lines: list[str] = []
    reporter = output.LogReporter(lines.append, every=3600)
    p = bf.Progress(transactions=1234, pages=13, requests=14, covered=50, total=100, elapsed=2.0)
    reporter.start(p)
    reporter.update(p)
    reporter.finish(
        bf.Progress(transactions=2000, pages=20, requests=21, covered=100, total=100, elapsed=3.0)
    )
    assert len(lines) == 2
    assert lines[-1].startswith(
        "backfill: 100% of the range, 2,000 transactions, 20 pages, 7.0 req/s"
    )
    assert p.eta() == pytest.approx(2.0)


def test_rich_reporter_draws_a_bar(tmp_path: Path) -> None:
    import io

    out = io.StringIO()
    reporter = output.RichReporter(stream=out)
    reporter.start(bf.Progress(0, 0, 0, 0, 100, 0.0))
    reporter.update(bf.Progress(500, 5, 6, 50, 100, 1.0))
    reporter.finish(bf.Progress(1000, 10, 11, 100, 100, 2.0))
    text = out.getvalue()
    assert "1,000 transactions" in text and "10 pages" in text and "req/s" in text


def test_backfill_job_refuses_a_reversed_range_and_unknown_via(tmp_path: Path) -> None:
    from bot.errors import UsageError

    ledger = Ledger.open(tmp_path / "state.sqlite")
    ctx = Context(
        ledger=ledger, dashboard=WorkbookDashboard(tmp_path / "d.xlsx"), source=None,
        tz=UTC_ZONE, now=datetime.now(UTC),
    )  # fmt: skip
    with pytest.raises(UsageError, match="before"):
        bf.backfill(ctx, since=days_ago(2), until=days_ago(5))
    with pytest.raises(UsageError, match="--via"):
        bf.backfill(ctx, since=days_ago(5), via="ftp")


def test_backfill_cli_refuses_an_unknown_via(cli: Cli) -> None:
    run = cli("backfill", "--since", days_ago(5).isoformat(), "--via", "ftp")
    assert run.exit_code == 2 and "--via" in run.stderr


def test_the_fast_listing_stores_exactly_what_stripe_sent(
    cli: Cli, sandbox_account: SandboxAccount
) -> None:
    """Raw responses, not StripeObjects: the stored JSON is the object as the API sent it."""
    assert cli("backfill", "--since", days_ago(3).isoformat()).exit_code == 0
    stored = {t["id"]: t for t in open_ledger(cli).raw_transactions()}
    for t in sandbox_account.transactions:
        if t["id"] in stored:
            assert json.dumps(stored[t["id"]], sort_keys=True) == json.dumps(t, sort_keys=True)


class _Watcher:
    """A backfill reporter that notes, page by page, how many days the dashboard has."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: list[int] = []

    def start(self, progress: bf.Progress) -> None:
        pass

    def update(self, progress: bf.Progress) -> None:
        if self.path.exists():
            with self.path.open("rb") as fh:  # a file that is there is whole: replaced atomically
                daily = load_workbook(fh)["Daily"]
                self.seen.append(len({r[0] for r in daily.iter_rows(min_row=2, values_only=True)}))
        else:
            self.seen.append(0)

    def finish(self, progress: bf.Progress) -> None:
        pass

    def note(self, message: str) -> None:
        pass


def test_the_dashboard_is_written_while_the_fetch_goes_on(tmp_path: Path) -> None:
    end = datetime.now(UTC).date()
    account = SandboxAccount.generate(end=end, days=20, seed=3, scale=3.0)
    with SandboxServer(account, latency=0.05) as server:
        ledger = Ledger.open(tmp_path / "state.sqlite")
        ctx = job_context(ledger, server)
        ctx.source = source_for(server, max_rps=8.0)  # slow enough to take several seconds
        watcher = _Watcher(tmp_path / "dashboard.xlsx")
        result = bf.backfill(ctx, since=end - timedelta(days=20), workers=2, reporter=watcher)
        assert result.days_fetched == 20 and result.pages >= 10
        # Before the last page, the workbook already held some of the days, not all of them.
        assert any(0 < n < 20 for n in watcher.seen[:-1]), watcher.seen
        days = {
            r[0].date() for r in WorkbookDashboard(tmp_path / "dashboard.xlsx").read_rows("Daily")
        }
        assert days == set(ledger.synced_days("UTC"))
        ledger.close()
