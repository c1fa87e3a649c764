"""A token bucket shared by every worker that talks to Stripe (STRIPE_MAX_RPS).

``acquire`` hands out start times at least ``1/rate`` apart and never lets more than ``rate``
(rounded down, at least one) starts into any one-second window: the spacing alone would allow
three starts a second at a rate of 2.5, or 21 at 20 after floating-point rounding, so the last
starts are kept and checked exactly. After a 429, ``penalize`` pushes the next start time for
everyone, so workers slow down together instead of each hammering alone; it also stretches the
spacing for a while (at most ``max_slowdown`` times), because a 429 while we keep under our own
ceiling means the server's budget is smaller than we thought (another process on the same
account, a lower limit in test mode). The spacing recovers linearly over ``recovery`` seconds
without a new 429.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class TokenBucket:
    """Spaces request starts ``1/rate`` seconds apart (or more after a 429). Thread-safe."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_slowdown: float = 4.0,
        recovery: float = 10.0,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if max_slowdown < 1:
            raise ValueError("max_slowdown must be at least 1")
        self.rate = rate
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._max_slowdown = max_slowdown
        self._recovery = recovery
        self._lock = threading.Lock()
        self._next: float | None = None  # earliest start time of the next request
        self._window: deque[float] = deque(maxlen=max(1, math.floor(rate)))  # last starts
        self._slowdown = 1.0  # spacing factor at the end of the last penalty
        self._penalty_until = float("-inf")  # recovery starts when the last penalty ends
        self.granted = 0
        self.penalties = 0

    def slowdown(self) -> float:
        """The current spacing factor (1.0 = full ``rate``)."""
        with self._lock:
            return self._factor(self._clock())

    def _factor(self, now: float) -> float:
        if self._slowdown <= 1.0 or self._recovery <= 0:
            return 1.0
        left = 1.0 - max(0.0, now - self._penalty_until) / self._recovery
        return 1.0 + (self._slowdown - 1.0) * max(0.0, left)

    def reserve(self) -> float:
        """Book the next start slot and return its time on the bucket's clock (no waiting)."""
        with self._lock:
            now = self._clock()
            start = now if self._next is None else max(now, self._next)
            if len(self._window) == self._window.maxlen:
                start = max(start, self._window[0] + 1.0)
            self._window.append(start)
            # The factor is never below 1, so consecutive starts stay >= 1/rate apart.
            self._next = start + self._interval * self._factor(start)
            self.granted += 1
            return start

    def acquire(self) -> None:
        """Block until this caller may start one request."""
        start = self.reserve()
        wait = start - self._clock()
        if wait > 0:
            self._sleep(wait)

    def penalize(self, seconds: float) -> None:
        """Nobody starts a request for ``seconds`` from now; the spacing widens for a while.

        Several workers hit by the same burst of 429s call this together: the slowdown grows
        once per penalty period, not once per worker.
        """
        with self._lock:
            now = self._clock()
            until = now + max(0.0, seconds)
            self._next = until if self._next is None else max(self._next, until)
            self.penalties += 1
            if now >= self._penalty_until:
                self._slowdown = min(self._max_slowdown, self._factor(now) * 1.5)
            self._penalty_until = max(self._penalty_until, until)
