"""Everything revbot asks of Stripe, through one ``stripe.StripeClient`` (never the global key).

Adapters turn the SDK's exceptions into revbot's own errors, so a vendor traceback never
reaches the user, and every request passes the shared :class:`~bot.ratelimit.TokenBucket`.
"""

from __future__ import annotations

import dataclasses
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
from bot.inbound import (
    ID,
    InvalidStripeData,
    check_invoice,
    check_invoice_line,
    check_payout,
    check_subscription,
    check_transaction,
    refuse,
    shown,
)
from bot.periods import Interval
from bot.ratelimit import TokenBucket
from bot.retry import RetryPolicy, retry_after
from bot.stripe_port import (
    BILLING_PERMISSIONS,
    NEEDED_FOR,
    PAGE_SIZE,
    NotFound,
    Paging,
    Unavailable,
)

if TYPE_CHECKING:
    import stripe

log = logging.getLogger(__name__)
T = TypeVar("T")

# A report file of a million rows is ~150 MB; this allows for a slow 1 Mbit/s link.
DOWNLOAD_DEADLINE = 30 * 60.0
# An invoice's lines beyond its first page: Stripe caps an invoice's lines far below this.
LINES_PAGE_CEILING = 1000
# Our own back-off after a 429 without Retry-After (and between download attempts): from 0.5 s
# doubling to 30 s. A call gives up when its waits would pass rate_limit_budget, or after this
# many tries (a server answering "Retry-After: 0" for ever).
BASE_DELAY = 0.5
MAX_DELAY = 30.0
MAX_ATTEMPTS = 30


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
        rng: random.Random | None = None,
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
        self.retry = RetryPolicy(
            base=BASE_DELAY,
            cap=MAX_DELAY,
            budget=rate_limit_budget,
            attempts=MAX_ATTEMPTS,
            rng=rng or random.Random(),
            sleep=sleep,
        )
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

    def call(self, what: str, fn: Callable[[], T], *, resource: str | None = None) -> T:
        """Run one Stripe request under the rate limit, retrying plain 429s ourselves.

        The SDK retries connection errors, 5xx and lock-timeout 429s (max_network_retries), but
        not a plain 429: that one slows every worker down through the shared bucket, for as long
        as Stripe's Retry-After says (or our back-off, without one). ``resource`` (a Billing
        one) turns a permission error into :class:`Unavailable`, which the P&L does without.
        """
        import stripe

        retries = self.retry.start()
        while True:
            self.bucket.acquire()
            with self._count_lock:
                self.requests += 1
            try:
                return bounded(fn, seconds=self._call_deadline, what=f"Stripe ({what})")
            except stripe.RateLimitError as e:
                with self._count_lock:
                    self.rate_limited += 1
                delay = retries.next_wait(retry_after(_headers(e)))
                if delay is None:
                    raise TemporaryError(
                        f"Stripe kept rate-limiting {what} for {retries.waited:.0f}s; try again "
                        "later or lower STRIPE_MAX_RPS"
                    ) from e
                log.info("Stripe rate limit on %s; waiting %.1fs", what, delay)
                # Nobody starts a request until then: the next acquire() does the waiting.
                self.bucket.penalize(delay)
            except stripe.PermissionError as e:
                if resource is None:
                    raise _convert(e, what, self._key, self.api_base) from e
                permission = BILLING_PERMISSIONS[resource]
                raise Unavailable(
                    f"STRIPE_SECRET_KEY ({self._key.masked()}) may not read {resource}, which "
                    f"{NEEDED_FOR[resource]} need; the P&L is reported without them",
                    resource=resource,
                    fix=f"give the restricted key read access to {permission.split(':')[0]} "
                    f"({permission!r}) in the Stripe Dashboard",
                ) from e
            except stripe.StripeError as e:
                raise _convert(e, what, self._key, self.api_base) from e

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

    def check_files_access(self) -> None:
        """Ask for a file that does not exist: a 404 proves the key may read files without
        needing one; a permission error says it may not."""
        try:
            self.call("reading a file", lambda: self.client.v1.files.retrieve("file_revbotdoctor"))
        except NotFound:
            return

    # -- Billing: subscriptions and invoices ----------------------------------------------

    def _list_page(
        self, resource: str, path: str, params: dict[str, Any], *, listed: str
    ) -> tuple[list[Any], bool]:
        """One raw list page of a Billing ``resource``; its data checked for shape only."""
        client = self.client
        try:
            response = self.call(
                f"listing {listed}",
                lambda: client.raw_request("get", path, **params),
                resource=resource,
            )
        except NotFound as e:
            if path != f"/v1/{resource}":
                raise  # an invoice's lines: that invoice is gone (a draft deleted meanwhile)
            # A list URL is never "not found" at Stripe: the server does not serve it.
            raise Unavailable(
                f"the Stripe API at {self.api_base or 'https://api.stripe.com'} does not serve "
                f"{path} (HTTP 404), so revbot cannot read {resource} for "
                f"{NEEDED_FOR[resource]}; the P&L is reported without them",
                resource=resource,
                fix="point STRIPE_API_BASE at a server that serves Stripe Billing, or unset it",
            ) from e
        body = response.data
        data = body.get("data") if isinstance(body, dict) else None
        has_more = body.get("has_more") if isinstance(body, dict) else None
        if not isinstance(data, list) or not isinstance(has_more, bool):
            raise ServiceError(f"Stripe sent a list of {listed} without its data")
        return data, has_more

    def _iter_billing(
        self,
        resource: str,
        noun: str,
        params: dict[str, Any],
        check: Callable[[Any], None],
        *,
        gte: int | None,
        lt: int | None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Every page of ``/v1/{resource}`` with ``params``, each object checked (and its
        ``created`` in ``[gte, lt)``) before the page is handed on."""
        created = {k: v for k, v in (("gte", gte), ("lt", lt)) if v is not None}
        base = {**params, "limit": PAGE_SIZE, **({"created": created} if created else {})}
        # Like Paging's for balance transactions, over the range asked for (now, without one).
        guard = Paging(
            gte or 0, lt if lt is not None else int(time.time()) + 86_400,
            noun=noun, holder="the range asked for",
        )  # fmt: skip
        after: str | None = None
        while True:
            params = base if after is None else {**base, "starting_after": after}
            data, has_more = self._list_page(resource, f"/v1/{resource}", params, listed=f"{noun}s")
            for obj in data:
                check(obj)
                when = obj["created"]
                if (gte is not None and when < gte) or (lt is not None and when >= lt):
                    raise refuse(obj["id"], "created", when, "in the range asked for", kind=noun)
            yield data
            if not has_more or not data:
                return
            after = guard.next(str(data[-1]["id"]))

    def iter_subscriptions(
        self, *, gte: int | None = None, lt: int | None = None, ended: bool = True
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of subscriptions created in ``[gte, lt)``, newest first: of every status, or
        (``ended=False``) Stripe's default list, those not ended."""
        return self._iter_billing(
            "subscriptions",
            "subscription",
            {"status": "all"} if ended else {},
            check_subscription,
            gte=gte,
            lt=lt,
        )

    def iter_invoices(
        self, *, gte: int | None = None, lt: int | None = None, status: str | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of invoices created in ``[gte, lt)`` (every status, or ``status``), newest
        first; each with the first page of its lines embedded."""

        def check(invoice: Any) -> None:
            check_invoice(invoice)
            if status is not None and invoice.get("status") != status:
                raise refuse(
                    invoice["id"], "status", invoice.get("status"), f"{status!r}, the status "
                    "asked for", kind="invoice",
                )  # fmt: skip

        return self._iter_billing(
            "invoices",
            "invoice",
            {} if status is None else {"status": status},
            check,
            gte=gte,
            lt=lt,
        )

    def iter_invoice_lines(
        self, invoice_id: str, *, starting_after: str | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of an invoice's lines after ``starting_after`` (the last line already read)."""
        path = f"/v1/invoices/{_path_id(invoice_id)}/lines"
        guard = Paging(
            0, 0, noun="invoice line", ceiling=LINES_PAGE_CEILING,
            holder="an invoice",
        )  # fmt: skip
        after = starting_after
        while True:
            params: dict[str, Any] = {"limit": PAGE_SIZE}
            if after is not None:
                params["starting_after"] = after
            data, has_more = self._list_page(
                "invoices", path, params, listed=f"the lines of invoice {invoice_id}"
            )
            for line in data:
                check_invoice_line(line, invoice_id)
            yield data
            if not has_more or not data:
                return
            after = guard.next(str(data[-1]["id"]))

    def _retrieve(self, resource: str, noun: str, oid: str) -> dict[str, Any]:
        path = f"/v1/{resource}/{_path_id(oid)}"
        client = self.client
        response = self.call(
            f"reading {noun} {oid}", lambda: client.raw_request("get", path), resource=resource
        )
        body = response.data
        if not isinstance(body, dict) or body.get("id") != oid:
            raise InvalidStripeData(
                f"Stripe answered a request for {noun} {oid} with {shown(body)}; nothing from "
                "that answer was stored"
            )
        return body

    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        sub = self._retrieve("subscriptions", "subscription", subscription_id)
        check_subscription(sub)
        return sub

    def retrieve_invoice(self, invoice_id: str) -> dict[str, Any]:
        invoice = self._retrieve("invoices", "invoice", invoice_id)
        check_invoice(invoice)
        return invoice

    # -- payouts ----------------------------------------------------------------------------

    def iter_payouts(self, *, gte: int, lt: int) -> Iterator[list[dict[str, Any]]]:
        return self._iter_billing("payouts", "payout", {}, check_payout, gte=gte, lt=lt)

    def retrieve_payout(self, payout_id: str) -> dict[str, Any]:
        payout = self._retrieve("payouts", "payout", payout_id)
        check_payout(payout)
        return payout

    def payout_transactions(self, payout_id: str) -> list[dict[str, Any]] | None:
        import stripe

        client = self.client
        params: dict[str, Any] = {"payout": _path_id(payout_id), "limit": PAGE_SIZE}
        manual = False

        def page() -> Any:
            nonlocal manual
            try:
                return client.raw_request("get", "/v1/balance_transactions", **params)
            except stripe.InvalidRequestError as e:
                if getattr(e, "param", None) != "payout":
                    raise
                manual = True  # Stripe lists only what an automatic payout settled
                return None

        out: list[dict[str, Any]] = []
        guard = Paging(0, 0, noun="balance transaction", ceiling=100_000, holder="a payout")
        while True:
            response = self.call(f"listing what payout {payout_id} settled", page)
            if manual:
                return None
            body = response.data
            data = body.get("data") if isinstance(body, dict) else None
            has_more = body.get("has_more") if isinstance(body, dict) else None
            if not isinstance(data, list) or not isinstance(has_more, bool):
                raise ServiceError(f"Stripe sent what payout {payout_id} settled without its data")
            for txn in data:
                check_transaction(txn)
            out.extend(data)
            if not has_more or not data:
                return out
            params = {**params, "starting_after": guard.next(str(data[-1]["id"]))}

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
        retries = dataclasses.replace(self.retry, attempts=attempts).start()
        while True:
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
                delay = retries.next_wait()
                if delay is None:
                    raise TemporaryError(
                        f"cannot reach Stripe at {url.split('/v1/')[0]} while {what} "
                        f"({type(e).__name__}); try again later"
                    ) from e
                retries.sleep(delay)
                continue
            with resp:
                if resp.status_code == 429 or resp.status_code >= 500:
                    delay = retries.next_wait(retry_after(resp.headers))
                    if delay is None:
                        raise TemporaryError(
                            f"Stripe answered {resp.status_code} while {what}; try again later"
                        )
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


def _path_id(oid: str) -> str:
    """An id fit for a URL path: ids come from Stripe through the ledger, checked on the way
    in; this keeps a path from ever being built from anything else."""
    if not ID.fullmatch(oid):
        raise ServiceError(f"revbot was about to ask Stripe for {shown(oid)}, which is not an id")
    return oid


def _headers(e: Exception) -> Any:
    """The HTTP headers of a Stripe SDK error (``headers`` or ``http_headers``, by SDK version)."""
    return getattr(e, "headers", None) or getattr(e, "http_headers", None) or {}


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
    if status == 404:
        return NotFound(f"Stripe found no such object while {what} (HTTP 404)")
    code = getattr(e, "code", None) or ""
    detail = " ".join(str(getattr(e, "user_message", "") or "").split())[:300]
    return ServiceError(
        f"Stripe refused {what} (HTTP {status}{', ' + code if code else ''})"
        + (f": {detail}" if detail else "")
    )
