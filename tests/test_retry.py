"""The one retry policy (bot/retry.py): the Retry-After parser, the back-off, the budget; and,
through the real Stripe SDK against the sandbox, that a server's Retry-After is what we wait."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from bot.config import Secret
from bot.retry import RetryPolicy, retry_after
from bot.sandbox import SandboxServer
from bot.stripe_source import StripeSource
from tests.conftest import TEST_KEY, days_ago

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=True)


# --- retry_after ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        ("0", 0.0),  # "retry now", not "absent"
        ("00", 0.0),
        ("120", 120.0),
        ("1.5", 1.5),
        (" 7 ", 7.0),
        ("-1", None),  # delta-seconds has no sign
        ("+3", None),
        ("1e3", None),
        ("nan", None),
        ("inf", None),
        ("٣", None),  # a digit, but not an ASCII one
        ("", None),
        ("soon", None),
        ("Sun, 01 Mar 2026 12:00:10", 10.0),  # no zone: HTTP-dates are always GMT
        (http_date(NOW + timedelta(seconds=30)), 30.0),
        (http_date(NOW + timedelta(hours=2)), 7200.0),
        (http_date(NOW), 0.0),
        (http_date(NOW - timedelta(minutes=5)), 0.0),  # already past: retry now
        ("Sun, 01 Mar 2026 12:00:10 GMT", 10.0),
        ("Sun, 01 Mar 2026 13:00:10 +0100", 10.0),  # another zone, the same instant
        ("Sun, 01 Mar 2026 12:00:10 -0000", 10.0),  # UTC, origin zone unknown
        ("Sun, 01 Mar 2026 25:00:10 GMT", None),  # no such hour
    ],
)
def test_retry_after_values(value: str, expected: float | None) -> None:
    assert retry_after({"Retry-After": value}, now=NOW) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (None, None),
        ({}, None),
        ({"Content-Type": "application/json"}, None),
        ({"retry-after": "3"}, 3.0),
        ({"RETRY-AFTER": "3"}, 3.0),
        ({"Retry-After": "3"}, 3.0),
        (CaseInsensitiveDict({"retry-after": "4"}), 4.0),  # requests' own headers
        ([("X-Other", "1"), ("Retry-After", "2"), ("retry-after", "9")], 2.0),  # the first wins
        ({"Retry-After": "garbage", "X-Other": "1"}, None),
    ],
)
def test_retry_after_finds_the_header_in_any_case(headers: Any, expected: float | None) -> None:
    assert retry_after(headers, now=NOW) == expected


def test_retry_after_other_names_in_order() -> None:
    names = ("retry-after", "ratelimit-reset")
    assert retry_after({"RateLimit-Reset": "6"}, names=names) == 6.0
    assert retry_after({"RateLimit-Reset": "6", "Retry-After": "2"}, names=names) == 2.0
    assert retry_after({"RateLimit-Reset": "6"}) is None  # not looked at unless asked for
    assert retry_after({"Retry-After": "soon", "RateLimit-Reset": "6"}, names=names) == 6.0


def test_retry_after_takes_a_naive_now_as_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    assert retry_after({"Retry-After": "Sun, 01 Mar 2026 12:00:10 GMT"}, now=naive) == 10.0


def test_retry_after_counts_a_date_from_the_current_time_by_default() -> None:
    later = datetime.now(UTC) + timedelta(seconds=60)
    seconds = retry_after({"Retry-After": http_date(later)})
    assert seconds is not None and 58 <= seconds <= 60


# --- the policy -------------------------------------------------------------------------------


def waits(policy: RetryPolicy, suggested: list[float | None] | None = None) -> list[float]:
    """The waits of one call that fails until the policy gives up."""
    retries = policy.start()
    out = []
    for i in range(10_000):
        hint = suggested[i % len(suggested)] if suggested else None
        delay = retries.next_wait(hint)
        if delay is None:
            assert retries.waited == pytest.approx(sum(out))
            return out
        out.append(delay)
    raise AssertionError("never gave up")


@settings(max_examples=300, deadline=None)
@given(
    base=st.floats(0.01, 5.0),
    factor=st.floats(1.0, 100.0),
    retry=st.integers(0, 2_000),
    seed=st.integers(0, 2**32),
)
def test_backoff_is_equal_jitter_within_its_bounds(
    base: float, factor: float, retry: int, seed: int
) -> None:
    policy = RetryPolicy(base=base, cap=base * factor, rng=random.Random(seed))
    ceiling = min(policy.cap, base * 2.0 ** min(retry, 64))
    delay = policy.backoff(retry)
    assert ceiling / 2 <= delay <= ceiling
    assert math.isfinite(delay)


@pytest.mark.parametrize(
    ("retry", "low", "high"),
    [(0, 0.5, 1.0), (1, 1.0, 2.0), (2, 2.0, 4.0), (4, 8.0, 16.0), (5, 15.0, 30.0), (9, 15.0, 30.0)],
)
def test_backoff_table(retry: int, low: float, high: float) -> None:
    for seed in range(50):
        delay = RetryPolicy(base=1.0, cap=30.0, rng=random.Random(seed)).backoff(retry)
        assert low <= delay <= high


def test_backoff_grows() -> None:
    policy = RetryPolicy(base=1.0, cap=32.0, rng=random.Random(1))
    for _ in range(200):
        # Equal jitter keeps half of each step: the fourth wait always beats the first.
        assert policy.backoff(3) > policy.backoff(0)


@settings(max_examples=200, deadline=None)
@given(
    budget=st.floats(0.0, 500.0),
    attempts=st.integers(1, 40),
    seed=st.integers(0, 2**32),
    hints=st.lists(st.one_of(st.none(), st.floats(0.0, 100.0)), min_size=1, max_size=8),
)
def test_budget_and_attempts_are_respected(
    budget: float, attempts: int, seed: int, hints: list[float | None]
) -> None:
    policy = RetryPolicy(
        base=0.5, cap=30.0, budget=budget, attempts=attempts, rng=random.Random(seed)
    )
    got = waits(policy, hints)
    assert sum(got) <= budget + 1e-9
    assert len(got) <= attempts - 1  # a wait comes between two tries
    assert all(d >= 0 for d in got)
    # A server's delay is taken as given; the others are our back-off.
    for i, delay in enumerate(got):
        hint = hints[i % len(hints)]
        if hint is not None:
            assert delay == hint
        else:
            ceiling = min(30.0, 0.5 * 2**i)
            assert ceiling / 2 <= delay <= ceiling


def test_gives_up_only_when_the_next_wait_would_pass_the_budget() -> None:
    for seed in range(100):
        policy = RetryPolicy(base=1.0, cap=32.0, budget=60.0, attempts=100, rng=random.Random(seed))
        got = waits(policy)
        assert sum(got) <= 60.0
        # Stopped for the budget, not earlier: the refused wait (at most min(32, 2**n)) would
        # have passed it.
        assert sum(got) + min(32.0, 2.0 ** len(got)) > 60.0


def test_a_seeded_policy_is_deterministic() -> None:
    def run(seed: int) -> list[float]:
        return waits(RetryPolicy(base=1.0, cap=32.0, budget=300.0, rng=random.Random(seed)))

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_server_delays_are_honoured_exactly() -> None:
    policy = RetryPolicy(base=1.0, cap=4.0, budget=100.0, attempts=5, rng=random.Random(3))
    retries = policy.start()
    assert retries.next_wait(0.0) == 0.0  # no extra wait
    assert retries.next_wait(2.5) == 2.5
    assert retries.next_wait(60.0) == 60.0  # above the cap: the server knows its own limit
    assert retries.next_wait(50.0) is None  # but not past the budget
    assert retries.tries == 4 and retries.waited == 62.5


def test_unusable_server_delays_fall_back_to_the_back_off() -> None:
    policy = RetryPolicy(base=1.0, cap=30.0, rng=random.Random(3))
    for bad in (-1.0, math.nan, math.inf):
        delay = policy.start().next_wait(bad)
        assert delay is not None and 0.5 <= delay <= 1.0


def test_retry_now_for_ever_still_ends() -> None:
    """A server answering "Retry-After: 0" every time uses no budget: the tries bound it."""
    policy = RetryPolicy(base=1.0, cap=30.0, budget=120.0, attempts=6)
    assert waits(policy, [0.0]) == [0.0] * 5


def test_one_attempt_never_waits() -> None:
    assert waits(RetryPolicy(attempts=1)) == []


def test_sleep_is_the_injected_one() -> None:
    slept: list[float] = []
    retries = RetryPolicy(sleep=slept.append).start()
    retries.sleep(1.25)
    assert slept == [1.25]


@pytest.mark.parametrize(
    "kwargs",
    [dict(base=0.0), dict(base=2.0, cap=1.0), dict(budget=-1.0), dict(attempts=0)],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


# --- through the Stripe SDK against the sandbox -----------------------------------------------

BT = "/v1/balance_transactions"


def _rate_limited_waits(sandbox: SandboxServer, headers: dict[str, str]) -> list[float]:
    """The waits of one listing that Stripe answers twice with 429 and ``headers``.

    The waits are the token bucket's: after a 429 the source pushes every worker's next start
    back by the delay (``penalize``), and the next ``acquire`` sleeps it (recorded, not slept).
    At 1000 requests per second the bucket's own spacing is ~1 ms, far below any back-off.
    """
    waited: list[float] = []
    source = StripeSource(
        api_key=Secret(TEST_KEY),
        api_base=sandbox.url,
        max_rps=1000,
        sleep=waited.append,
        rng=random.Random(5),
    )
    sandbox.inject(BT, status=429, times=2, headers=headers)
    day = days_ago(3)
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    source.list_page(gte=start, lt=start + 86_400)
    assert source.rate_limited == 2 and source.bucket.penalties == 2
    return waited


def test_stripe_retry_after_zero_is_retry_now(sandbox: SandboxServer) -> None:
    waited = _rate_limited_waits(sandbox, {"Retry-After": "0"})
    # Not our back-off (0.25 s at least): the retries went out at once.
    assert sum(waited) < 0.05, waited


def test_stripe_without_retry_after_backs_off(sandbox: SandboxServer) -> None:
    waited = _rate_limited_waits(sandbox, {})
    assert 0.25 + 0.5 - 0.01 <= sum(waited) <= 0.5 + 1.0 + 0.05, waited


def test_stripe_retry_after_as_an_http_date(sandbox: SandboxServer) -> None:
    when = datetime.now(UTC) + timedelta(seconds=5)
    waited = _rate_limited_waits(sandbox, {"Retry-After": http_date(when)})
    # The date has whole seconds: 4 to 5 s from now, each time (a date, not a duration).
    big = [w for w in waited if w > 0.05]
    assert len(big) == 2 and all(3.9 <= w <= 5.0 for w in big), waited


def test_stripe_retry_after_date_in_the_past_is_retry_now(sandbox: SandboxServer) -> None:
    waited = _rate_limited_waits(sandbox, {"Retry-After": "Thu, 01 Jan 2015 00:00:00 GMT"})
    assert sum(waited) < 0.05, waited
