"""Everything revbot asks of Stripe, through one ``stripe.StripeClient`` (never the global key).

Adapters turn the SDK's exceptions into revbot's own errors, so a vendor traceback never
reaches the user, and every request passes the shared :class:`~bot.ratelimit.TokenBucket`.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bot.config import Secret
from bot.deadline import bounded, remaining
from bot.errors import ConfigError, RevbotError, ServiceError, TemporaryError
from bot.inbound import check_transaction, refuse
from bot.periods import Interval
from bot.ratelimit import TokenBucket

if TYPE_CHECKING:
    import stripe

log = logging.getLogger(__name__)
T = TypeVar("T")

PAGE_SIZE = 100
# A report file of a million rows is ~150 MB; this allows for a slow 1 Mbit/s link.
DOWNLOAD_DEADLINE = 30 * 60.0


class Paging:
    """Ends a listing that would never end on its own.

    A server that answers ``has_more`` for ever (a proxy replaying one page, a broken
    Stripe-compatible service) would keep a run, and the lock, for good. A cursor seen before
    means the list goes round in circles; more pages than the range can hold means it never
    ends. The ceiling allows ten transactions a second over the whole range (plus 20 pages for
    bursts in short ranges): far above any account's rate, and still bounded.
    """

    def __init__(self, gte: int, lt: int) -> None:
        self.ceiling = 20 + max(0, lt - gte) // 10
        self.pages = 0
        self._seen: set[str] = set()

    def next(self, cursor: str) -> str:
        """The cursor for the next page, or :class:`ServiceError` when there must be none."""
        self.pages += 1
        if cursor in self._seen:
            raise ServiceError(
                f"Stripe listed balance transaction {cursor} twice while paging, so the list "
                "would never end; stopped (if STRIPE_API_BASE is set, check the server it "
                "points at)"
            )
        if self.pages >= self.ceiling:
            raise ServiceError(
                f"Stripe kept saying there were more balance transactions after {self.pages:,} "
                "pages, more than the days asked for can hold; stopped (if STRIPE_API_BASE is "
                "set, check the server it points at)"
            )
        self._seen.add(cursor)
        return cursor


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
        call_deadline: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._key = api_key
        self.api_base = api_base
        self.bucket = TokenBucket(max_rps, sleep=sleep)
        # Stripe's Files API allows 20 reads per second, whatever the rest allows.
        self.files_bucket = TokenBucket(min(max_rps, 20.0), sleep=sleep)
        self._timeout = timeout
        self._retries = max_network_retries
        # A call's total: every attempt the SDK makes may use its whole read timeout.
        self._call_deadline = (
            call_deadline if call_deadline is not None else timeout * (max_network_retries + 1) + 30
        )
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
                return bounded(fn, seconds=self._call_deadline, what=f"Stripe ({what})")
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
                raise _convert(e, what, self._key, self.api_base) from None

    # -- balance transactions -------------------------------------------------------------

    def list_page(
        self,
        *,
        gte: int,
        lt: int,
        starting_after: str | None = None,
        type: str | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of balance transactions created in ``[gte, lt)``, newest first; has_more.

        Asks the client for the raw response: building ``StripeObject``s and converting them
        back with ``to_dict()`` costs about three times the CPU of the rest of a page, which
        decides whether eight backfill workers on two cores keep the bucket saturated.
        """
        params: dict[str, Any] = {"created": {"gte": gte, "lt": lt}, "limit": PAGE_SIZE}
        if starting_after is not None:
            params["starting_after"] = starting_after
        if type is not None:
            params["type"] = type
        client = self.client
        response = self.call(
            f"listing {type or 'balance'} transactions",
            lambda: client.raw_request("get", "/v1/balance_transactions", **params),
        )
        body = response.data
        data = body.get("data") if isinstance(body, dict) else None
        has_more = body.get("has_more") if isinstance(body, dict) else None
        if not isinstance(data, list) or not isinstance(has_more, bool):
            raise ServiceError("Stripe sent a list of balance transactions without its data")
        for txn in data:
            check_transaction(txn)
            if not gte <= txn["created"] < lt:
                raise refuse(txn["id"], "created", txn["created"], "in the range asked for")
        return data, has_more

    def iter_pages(
        self, interval: Interval, *, type: str | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of balance transactions created in ``[start, end)``, newest first."""
        after: str | None = None
        guard = Paging(interval.start, interval.end)
        while True:
            data, has_more = self.list_page(
                gte=interval.start, lt=interval.end, starting_after=after, type=type
            )
            yield data
            if not has_more or not data:
                return
            after = guard.next(str(data[-1]["id"]))

    def list_balance_transactions(self, interval: Interval) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in self.iter_pages(interval):
            out.extend(page)
        return out

    def account(self) -> dict[str, Any]:
        acct = self.call("reading the account", lambda: self.client.v1.accounts.retrieve_current())
        return acct.to_dict()

    # -- Reporting API --------------------------------------------------------------------

    def report_type(self, type_id: str) -> dict[str, Any]:
        rt = self.call(
            f"reading report type {type_id}",
            lambda: self.client.v1.reporting.report_types.retrieve(type_id),
        )
        return rt.to_dict()

    def create_report_run(
        self, type_id: str, parameters: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        """Create a run; the key makes a retry after a crash return the same run."""
        run = self.call(
            f"creating a {type_id} report run",
            lambda: self.client.v1.reporting.report_runs.create(
                {"report_type": type_id, "parameters": parameters},  # type: ignore[typeddict-item]
                {"idempotency_key": idempotency_key},
            ),
        )
        return run.to_dict()

    def retrieve_report_run(self, run_id: str) -> dict[str, Any]:
        run = self.call(
            f"reading report run {run_id}",
            lambda: self.client.v1.reporting.report_runs.retrieve(run_id),
        )
        return run.to_dict()

    def download(self, url: str, dest: Path, *, attempts: int = 5) -> int:
        """Stream a report file to ``dest`` (atomically); returns its size in bytes.

        The stripe SDK has no method for file contents, so this is plain ``requests`` with the
        API key, our own retries on 429/5xx, and redirects followed by hand: the key is sent
        only to the host the URL names, never to another one a redirect points at.
        """
        import requests

        what = "downloading a report file"
        for attempt in range(1, attempts + 1):
            self.files_bucket.acquire()
            with self._count_lock:
                self.requests += 1
            started = time.monotonic()
            try:
                resp = bounded(
                    lambda: _get_following_redirects(
                        requests, url, self._key.reveal(), self._timeout
                    ),
                    seconds=self._call_deadline,
                    what=f"Stripe ({what})",
                )
            except requests.RequestException as e:
                if attempt == attempts:
                    raise TemporaryError(
                        f"cannot reach Stripe at {url.split('/v1/')[0]} while {what} "
                        f"({type(e).__name__}); try again later"
                    ) from None
                self._sleep(min(30.0, 0.5 * 2**attempt))
                continue
            with resp:
                if resp.status_code == 429 or resp.status_code >= 500:
                    if attempt == attempts:
                        raise TemporaryError(
                            f"Stripe answered {resp.status_code} while {what}; try again later"
                        )
                    delay = _header_seconds(resp.headers) or min(30.0, 0.5 * 2**attempt)
                    self.files_bucket.penalize(delay)
                    continue
                if resp.status_code in (401, 403):
                    raise ConfigError(
                        f"STRIPE_SECRET_KEY ({self._key.masked()}) may not read report files; "
                        "give the restricted key the Files read permission"
                    )
                if resp.status_code != 200:
                    raise ServiceError(f"Stripe answered {resp.status_code} while {what}")
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(dest.name + ".part")
                size = 0
                with open(tmp, "wb") as fh:
                    for chunk in resp.iter_content(chunk_size=1 << 16):
                        fh.write(chunk)
                        size += len(chunk)
                        # Each read is bounded by the timeout; the whole file by this.
                        if time.monotonic() - started > DOWNLOAD_DEADLINE:
                            raise TemporaryError(
                                f"Stripe sent {size:,} bytes in {DOWNLOAD_DEADLINE / 60:.0f} "
                                f"minutes while {what}, too slowly to finish; try again later"
                            )
                        remaining()
                os.replace(tmp, dest)
                return size
        raise AssertionError("unreachable")


def _get_following_redirects(requests: Any, url: str, key: str, timeout: float) -> Any:
    from urllib.parse import urljoin, urlsplit

    origin = urlsplit(url).netloc
    for _ in range(5):
        headers = {"Authorization": f"Bearer {key}"} if urlsplit(url).netloc == origin else {}
        resp = requests.get(
            url, headers=headers, stream=True, timeout=timeout, allow_redirects=False
        )
        if resp.status_code not in (301, 302, 303, 307, 308):
            return resp
        resp.close()
        url = urljoin(url, resp.headers.get("Location", ""))
    raise ServiceError("Stripe's file download redirected too many times")


def _header_seconds(headers: Any) -> float | None:
    try:
        value = headers.get("Retry-After")
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


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


def _convert(e: Exception, what: str, key: Secret, api_base: str | None = None) -> RevbotError:
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
        return TemporaryError(
            f"cannot reach Stripe at {api_base or 'https://api.stripe.com'} while {what} "
            f"({type(e).__name__}); check the network"
            + (" and STRIPE_API_BASE" if api_base else "")
            + ", or try again later"
        )
    if isinstance(e, stripe.APIError) and (status is None or status >= 500):
        if status is None:
            return ServiceError(f"Stripe sent an unreadable answer while {what}; try again later")
        return TemporaryError(f"Stripe answered {status} while {what}; try again later")
    if isinstance(e, stripe.APIError):
        # A body that is not JSON, or not in Stripe's error shape (a proxy's page, a cut-off
        # answer): it was not Stripe refusing, and quoting the body helps nobody.
        return ServiceError(
            f"Stripe's answer (HTTP {status}) while {what} was not readable JSON; if this "
            "persists, check STRIPE_API_BASE and any proxy between revbot and Stripe"
        )
    code = getattr(e, "code", None) or ""
    detail = " ".join(str(getattr(e, "user_message", "") or "").split())[:300]
    return ServiceError(
        f"Stripe refused {what} (HTTP {status}{', ' + code if code else ''})"
        + (f": {detail}" if detail else "")
    )
