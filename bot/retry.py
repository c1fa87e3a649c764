"""The one retry policy of every outside service revbot calls (Stripe, Sheets, Resend).

Each adapter still decides for itself which failures are worth another try and which error it
raises when it gives up; what they share is here:

- :func:`retry_after` reads a server's ``Retry-After`` header, in either of its forms
  (delta-seconds or an HTTP-date). ``0`` means "now", not "absent".
- :class:`RetryPolicy` says how long to wait before the next try: the server's delay when it
  gave one (honoured as given: it is the server's own figure), otherwise exponential back-off
  with *equal jitter* (half of ``min(cap, base * 2**n)`` plus a random part of the other half,
  so waits still grow, yet clients that failed together do not retry together). A call gives up
  when its tries are spent, or when the next wait would take its total waiting past ``budget``:
  a wait that cannot be followed by a try is never slept.

The random source and ``sleep`` are injected, so tests are fast and deterministic.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # delta-seconds (RFC 9110 says digits; we allow ".5")


def retry_after(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
    *,
    now: datetime | None = None,
    names: tuple[str, ...] = ("retry-after",),
) -> float | None:
    """Seconds to wait from the first of ``names`` readable in ``headers`` (any case).

    Delta-seconds (``"0"``, ``"2"``, ``"1.5"``) are taken as they are; an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``) counts from ``now`` (default: the current time; a
    naive one is taken as UTC), and a date already past means 0. ``None`` when no such header,
    or when it is neither form (a negative number, ``"soon"``): the caller then falls back to
    its own back-off.
    """
    if not headers:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    found: dict[str, str] = {}
    for key, value in items:
        found.setdefault(str(key).strip().lower(), str(value))
    for name in names:
        value = found.get(name.lower())
        seconds = None if value is None else _seconds(value.strip(), now)
        if seconds is not None:
            return seconds
    return None


def _seconds(value: str, now: datetime | None) -> float | None:
    if _SECONDS.fullmatch(value):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # HTTP-dates are GMT: one written "-0000" or without a zone comes back naive.
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How one service retries: ``base`` and ``cap`` of the back-off (seconds), ``budget`` (the
    most one call may spend waiting), ``attempts`` (the most tries of one call, the first one
    included). Thread-safe: each call keeps its own count in :meth:`start`'s :class:`Retries`.
    """

    base: float = 1.0
    cap: float = 30.0
    budget: float = 120.0
    attempts: int = 10
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError("need 0 < base <= cap")
        if self.budget < 0:
            raise ValueError("budget must not be negative")
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")

    def backoff(self, retry: int) -> float:
        """Our own wait before retry number ``retry`` (0 for the first): equal jitter, within
        ``[c / 2, c]`` where ``c = min(cap, base * 2**retry)``."""
        ceiling = min(self.cap, self.base * 2.0 ** min(max(retry, 0), 64))
        return ceiling / 2 + self.rng.random() * ceiling / 2

    def start(self) -> Retries:
        """The tally of one call's tries and waits."""
        return Retries(self)


class Retries:
    """One call's tries so far and the time it spent waiting between them."""

    __slots__ = ("policy", "tries", "waited")

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.tries = 0
        self.waited = 0.0

    def next_wait(self, suggested: float | None = None) -> float | None:
        """Count one failed try; return how long to wait before the next, or ``None`` to give up.

        ``suggested`` is the server's delay (see :func:`retry_after`): used as given, however
        short (``0``: retry at once) or long (only the budget bounds it). Without it, the
        policy's back-off. The wait is counted as spent; sleeping it is the caller's (directly,
        or through :meth:`sleep`, or a shared rate limiter).
        """
        policy = self.policy
        self.tries += 1
        if self.tries >= policy.attempts:
            return None
        if suggested is not None and math.isfinite(suggested) and suggested >= 0:
            delay = float(suggested)
        else:
            delay = policy.backoff(self.tries - 1)
        if self.waited + delay > policy.budget:
            return None
        self.waited += delay
        return delay

    def sleep(self, seconds: float) -> None:
        """Sleep with the policy's ``sleep``."""
        self.policy.sleep(seconds)


__all__ = ["Retries", "RetryPolicy", "retry_after"]
