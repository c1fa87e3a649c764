"""A token bucket shared by every worker that talks to Stripe (STRIPE_MAX_RPS).

``acquire`` hands out start times at least ``1/rate`` apart, so no one-second window ever sees
more than ``rate`` request starts. After a 429, ``penalize`` pushes the next start time for
everyone, so workers slow down together instead of each hammering alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0  # earliest start time of the next request

    def acquire(self) -> None:
        """Block until this caller may start one request."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self._interval
        wait = start - now
        if wait > 0:
            self._sleep(wait)

    def penalize(self, seconds: float) -> None:
        """Nobody starts a request for ``seconds`` from now."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)
