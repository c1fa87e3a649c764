"""Everything revbot asks of Stripe, through one ``stripe.StripeClient`` (never the global key).

Adapters turn the SDK's exceptions into revbot's own errors, so a vendor traceback never
reaches the user, and every request passes the shared :class:`~bot.ratelimit.TokenBucket`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from bot.config import Secret
from bot.errors import ConfigError, RevbotError, ServiceError, TemporaryError
from bot.periods import Interval
from bot.ratelimit import TokenBucket

if TYPE_CHECKING:
    import stripe

log = logging.getLogger(__name__)
T = TypeVar("T")

PAGE_SIZE = 100


class StripeSource:
    """Lists balance transactions and drives report runs. Safe to share between threads."""

    def __init__(
        self,
        *,
        api_key: Secret,
        api_base: str | None = None,
        max_rps: float = 20.0,
        timeout: float = 30.0,
        max_network_retries: int = 2,
        rate_limit_budget: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._key = api_key
        self.api_base = api_base
        self.bucket = TokenBucket(max_rps, sleep=sleep)
        self._timeout = timeout
        self._retries = max_network_retries
        self._budget = rate_limit_budget
        self._sleep = sleep
        self._client: stripe.StripeClient | None = None
        self._client_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.requests = 0
        self.rate_limited = 0

    @property
    def client(self) -> stripe.StripeClient:
        with self._client_lock:
            if self._client is None:
                import stripe  # imported here: `revbot --help` must start fast

                bases: dict[str, str] = {}
                if self.api_base:
                    bases = {"api": self.api_base, "files": self.api_base}
                self._client = stripe.StripeClient(
                    self._key.reveal(),
                    base_addresses=bases,  # type: ignore[arg-type]
                    max_network_retries=self._retries,
                    http_client=stripe.RequestsClient(timeout=self._timeout),
                )
            return self._client

    @property
    def mode(self) -> str:
        return self._key.reveal().split("_")[1]

    # -- the one door every request goes through ------------------------------------------

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one Stripe request under the rate limit, retrying plain 429s ourselves.

        The SDK retries connection errors, 5xx and lock-timeout 429s (max_network_retries), but
        not a plain 429: that one slows every worker down through the shared bucket.
        """
        import stripe

        waited = 0.0
        attempt = 0
        while True:
            self.bucket.acquire()
            with self._count_lock:
                self.requests += 1
            try:
                return fn()
            except stripe.RateLimitError as e:
                with self._count_lock:
                    self.rate_limited += 1
                attempt += 1
                delay = _retry_after(e) or min(30.0, 0.5 * 2 ** (attempt - 1))
                delay *= random.uniform(1.0, 1.25)  # jitter so workers do not move in lockstep
                if waited + delay > self._budget:
                    raise TemporaryError(
                        f"Stripe kept rate-limiting {what} for {waited:.0f}s; try again later "
                        "or lower STRIPE_MAX_RPS"
                    ) from None
                log.info("Stripe rate limit on %s; waiting %.1fs", what, delay)
                self.bucket.penalize(delay)
                waited += delay
            except stripe.StripeError as e:
                raise _convert(e, what, self._key) from None

    # -- balance transactions -------------------------------------------------------------

    def iter_pages(self, interval: Interval) -> Iterator[list[dict[str, Any]]]:
        """Pages of balance transactions created in ``[start, end)``, newest first."""
        params: dict[str, Any] = {
            "created": {"gte": interval.start, "lt": interval.end},
            "limit": PAGE_SIZE,
        }
        while True:
            page = self.call(
                "listing balance transactions",
                lambda p=dict(params): self.client.v1.balance_transactions.list(p),  # type: ignore[misc]
            )
            data = [t.to_dict() for t in page.data]
            yield data
            if not page.has_more or not data:
                return
            params["starting_after"] = data[-1]["id"]

    def list_balance_transactions(self, interval: Interval) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in self.iter_pages(interval):
            out.extend(page)
        return out

    def account(self) -> dict[str, Any]:
        acct = self.call("reading the account", lambda: self.client.v1.accounts.retrieve_current())
        return acct.to_dict()


def _retry_after(e: Exception) -> float | None:
    headers = getattr(e, "headers", None) or getattr(e, "http_headers", None) or {}
    value = None
    for k, v in dict(headers).items():
        if k.lower() == "retry-after":
            value = v
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _convert(e: Exception, what: str, key: Secret) -> RevbotError:
    import stripe

    status = getattr(e, "http_status", None)
    if isinstance(e, stripe.AuthenticationError):
        return ConfigError(
            f"Stripe rejected STRIPE_SECRET_KEY ({key.masked()}) while {what}; copy the key "
            "again from Developers > API keys"
        )
    if isinstance(e, stripe.PermissionError):
        return ConfigError(
            f"STRIPE_SECRET_KEY ({key.masked()}) lacks a permission needed for {what}; give the "
            "restricted key read access to Balance, Report runs and Files"
        )
    if isinstance(e, stripe.APIConnectionError):
        return TemporaryError(f"cannot reach Stripe while {what} ({type(e).__name__}); try again later")
    if isinstance(e, stripe.APIError) and (status is None or status >= 500):
        if status is None:
            return ServiceError(f"Stripe sent an unreadable answer while {what}; try again later")
        return TemporaryError(f"Stripe answered {status} while {what}; try again later")
    code = getattr(e, "code", None) or ""
    return ServiceError(f"Stripe refused {what} (HTTP {status}{', ' + code if code else ''})")
