"""The shared token bucket (fake clock) and 429 storms against the sandbox (issue 6)."""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import Secret
from bot.errors import TemporaryError
from bot.jobs.backfill import JOB, fetch_slices, split_evenly
from bot.ledger import Ledger
from bot.periods import days_interval
from bot.ratelimit import TokenBucket
from bot.sandbox import SandboxAccount, SandboxServer
from bot.stripe_source import StripeSource
from tests.conftest import TEST_KEY

UTC_ZONE = ZoneInfo("UTC")


class FakeClock:
    """Time that moves only when told to (or when someone sleeps). Thread-safe."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.lock = threading.Lock()
        self.slept: list[float] = []

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(seconds)
            self.now += seconds


def most_in_one_second(starts: list[float]) -> int:
    """The largest number of starts in any half-open window ``[t, t + 1)``."""
    starts = sorted(starts)
    best = j = 0
    for i, s in enumerate(starts):
        while starts[j] + 1.0 <= s:
            j += 1
        best = max(best, i - j + 1)
    return best


def acquire_all(
    bucket: TokenBucket, clock: FakeClock, steps: list[tuple[float, float]]
) -> list[float]:
    """Acquire once per step after advancing the clock; a step may also penalize first."""
    starts = []
    for gap, penalty in steps:
        clock.advance(gap)
        if penalty:
            bucket.penalize(penalty)
        bucket.acquire()
        starts.append(clock())  # acquire returns at the start time it was granted
    return starts


@settings(max_examples=200, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1.0, 2.5, 3.0, 7.0, 20.0, 25.0, 100.0]),
    steps=st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.0, 0.0, 1e-9, 0.001, 0.01, 0.049, 0.05, 0.3, 1.0, 2.5]),
            st.sampled_from([0.0] * 8 + [0.1, 0.5, 1.0]),
        ),
        min_size=1,
        max_size=300,
    ),
)
def test_no_one_second_window_ever_sees_more_than_rate_starts(
    rate: float, steps: list[tuple[float, float]]
) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)
    starts = acquire_all(bucket, clock, steps)
    assert most_in_one_second(starts) <= max(1, math.floor(rate))
    assert starts == sorted(starts)


def test_a_saturated_bucket_runs_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(20, clock=clock, sleep=clock.sleep)
    starts = acquire_all(bucket, clock, [(0.0, 0.0)] * 201)
    assert starts[-1] - starts[0] == pytest.approx(10.0)
    assert most_in_one_second(starts) == 20


@settings(max_examples=30, deadline=None)
@given(
    rate=st.sampled_from([2.5, 10.0, 20.0]),
    seed=st.integers(0, 2**32),
    threads=st.integers(2, 8),
)
def test_concurrent_callers_share_the_budget(rate: float, seed: int, threads: int) -> None:
    """Threads reserving slots at once, on a clock that jumps about: still within the rate."""
    clock = FakeClock()
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)
    starts: list[float] = []
    lock = threading.Lock()
    rng = random.Random(seed)
    jumps = [rng.choice([0.0, 0.0, 0.01, 0.2, 1.5]) for _ in range(threads * 60)]

    def run(k: int) -> None:
        for i in range(60):
            clock.advance(jumps[k * 60 + i] / threads)
            s = bucket.reserve()
            with lock:
                starts.append(s)

    pool = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert len(starts) == threads * 60
    assert most_in_one_second(starts) <= max(1, math.floor(rate))


def test_a_penalty_stops_everyone_then_the_pace_recovers() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock, sleep=clock.sleep, recovery=10.0)
    acquire_all(bucket, clock, [(0.0, 0.0)] * 5)
    t429 = clock()
    bucket.penalize(2.0)
    bucket.penalize(2.0)  # a second worker hit by the same burst: one slowdown step, not two
    assert bucket.slowdown() == pytest.approx(1.5)
    starts = acquire_all(bucket, clock, [(0.0, 0.0)] * 10)
    assert starts[0] >= t429 + 2.0
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) > 0.1 + 1e-9  # slower than the 10 per second it was given
    clock.advance(30.0)
    assert bucket.slowdown() == 1.0
    later = acquire_all(bucket, clock, [(0.0, 0.0)] * 3)
    assert later[2] - later[1] == pytest.approx(0.1)


def test_repeated_429s_slow_down_to_the_cap() -> None:
    clock = FakeClock()
    bucket = TokenBucket(20, clock=clock, sleep=clock.sleep, max_slowdown=4.0)
    for _ in range(10):
        bucket.penalize(0.5)
        clock.advance(0.6)  # each burst after the previous penalty ended
    assert bucket.slowdown() == pytest.approx(4.0, rel=0.1)


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)
    with pytest.raises(ValueError):
        TokenBucket(5, max_slowdown=0.5)


# -- 429 storms against the sandbox, through the real SDK ------------------------------------


@pytest.fixture
def storm_server() -> Iterator[SandboxServer]:
    end = date.today()
    account = SandboxAccount.bulk(start=end - timedelta(days=10), end=end, count=1500, seed=5)
    with SandboxServer(account) as server:
        yield server


def _fetch(
    server: SandboxServer, tmp: Path, *, max_rps: float, workers: int = 4
) -> tuple[StripeSource, Ledger, float]:
    end = date.today()
    interval = days_interval(end - timedelta(days=10), end - timedelta(days=1), UTC_ZONE)
    source = StripeSource(api_key=Secret(TEST_KEY), api_base=server.url, max_rps=max_rps)
    ledger = Ledger.open(tmp / "state.sqlite")
    started = time.monotonic()
    stats = fetch_slices(
        ledger,
        source,
        slices=split_evenly([(interval.start, interval.end)], workers),
        tz=UTC_ZONE,
        workers=workers,
        split_min=0,
    )
    assert stats.fetched == len(server.account) == ledger.transaction_count()
    assert ledger.completed_slices(JOB)
    return source, ledger, time.monotonic() - started


def _arrivals(server: SandboxServer) -> list[float]:
    return [t for t, route in server.stats.request_times if route == "/v1/balance_transactions"]


def test_a_429_storm_with_retry_after_pauses_every_worker(
    storm_server: SandboxServer, tmp_path: Path
) -> None:
    # 429s for the first requests (each worker's first page), each saying "retry after 0.4 s".
    storm_server.inject(
        "/v1/balance_transactions", status=429, times=4, headers={"Retry-After": "0.4"}
    )
    source, _, elapsed = _fetch(storm_server, tmp_path, max_rps=1000)
    assert source.rate_limited == 4
    assert source.bucket.penalties == 4
    assert elapsed >= 0.4
    arrivals = _arrivals(storm_server)
    # The four 429s are the first four arrivals (one per worker, all sent at once); from the
    # first of them, nobody sends anything for the 0.4 s it asked for.
    assert arrivals[4] - arrivals[0] >= 0.38


def test_a_429_storm_without_retry_after_backs_off_and_finishes(
    storm_server: SandboxServer, tmp_path: Path
) -> None:
    storm_server.inject("/v1/balance_transactions", status=429, times=6)
    source, _, elapsed = _fetch(storm_server, tmp_path, max_rps=1000)
    assert source.rate_limited == 6
    # Exponential back-off from 0.5 s, shared through the bucket: at least one full pause.
    assert elapsed >= 0.5
    assert source.bucket.slowdown() > 1.0  # still running slower than asked for


def test_a_server_limit_below_our_ceiling_costs_429s_not_data(
    storm_server: SandboxServer, tmp_path: Path
) -> None:
    """STRIPE_MAX_RPS set above what the server allows: 429s slow everyone, nothing is lost."""
    storm_server.rate_limit = 8
    source, ledger, _ = _fetch(storm_server, tmp_path, max_rps=40, workers=6)
    assert storm_server.stats.rate_limited > 0
    assert source.rate_limited == storm_server.stats.rate_limited
    assert sorted(t["id"] for t in ledger.raw_transactions()) == sorted(
        t["id"] for t in storm_server.account.transactions
    )


def test_a_storm_that_never_ends_gives_up_with_a_temporary_error(
    storm_server: SandboxServer, tmp_path: Path
) -> None:
    storm_server.inject(
        "/v1/balance_transactions", status=429, times=1000, headers={"Retry-After": "0.2"}
    )
    end = date.today()
    interval = days_interval(end - timedelta(days=10), end - timedelta(days=1), UTC_ZONE)
    source = StripeSource(
        api_key=Secret(TEST_KEY), api_base=storm_server.url, max_rps=1000, rate_limit_budget=1.0
    )
    ledger = Ledger.open(tmp_path / "state.sqlite")
    with pytest.raises(TemporaryError, match="rate-limiting"):
        fetch_slices(
            ledger, source, slices=[(interval.start, interval.end)], tz=UTC_ZONE, workers=2
        )
    assert ledger.completed_slices(JOB) == set()


def test_fake_clock_helper_counts_windows() -> None:
    assert most_in_one_second([0.0, 0.5, 0.999, 1.0, 1.5]) == 3
    assert most_in_one_second([datetime(2026, 1, 1, tzinfo=UTC).timestamp()]) == 1
