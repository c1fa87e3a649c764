"""Everything the jobs ask of Stripe, as one typed interface.

:class:`bot.stripe_source.StripeSource` implements it over the stripe SDK; the jobs, the report
runs and ``doctor`` see only this Protocol, so none of them reaches into the SDK.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from bot.errors import ServiceError
from bot.periods import Interval

PAGE_SIZE = 100  # Stripe's largest list page


class Paging:
    """Ends a listing that would never end on its own.

    A server that answers ``has_more`` for ever (a proxy replaying one page, a broken
    Stripe-compatible service) would keep a run, and the lock, for good. A cursor seen before
    means the list goes round in circles; more pages than the range can hold means it never
    ends. The ceiling allows ten transactions a second over the whole range (plus 20 pages for
    bursts in short ranges): far above any account's rate, and still bounded.
    """

    def __init__(
        self,
        gte: int,
        lt: int,
        *,
        noun: str = "balance transaction",
        ceiling: int | None = None,
        holder: str = "the days asked for",
    ) -> None:
        self.ceiling = ceiling if ceiling is not None else 20 + max(0, lt - gte) // 10
        self.pages = 0
        self.noun = noun  # what is listed, in the singular: for the messages
        self.holder = holder  # what bounds the list, for the message at the ceiling
        self._seen: set[str] = set()

    def next(self, cursor: str) -> str:
        """The cursor for the next page, or :class:`ServiceError` when there must be none."""
        self.pages += 1
        if cursor in self._seen:
            raise ServiceError(
                f"Stripe listed {self.noun} {cursor} twice while paging, so the list "
                "would never end; stopped (if STRIPE_API_BASE is set, check the server it "
                "points at)"
            )
        if self.pages >= self.ceiling:
            raise ServiceError(
                f"Stripe kept saying there were more {self.noun}s after {self.pages:,} "
                f"pages, more than {self.holder} can hold; stopped (if STRIPE_API_BASE is "
                "set, check the server it points at)"
            )
        self._seen.add(cursor)
        return cursor


class NotFound(ServiceError):
    """Stripe answered 404: the object asked for does not exist."""


class Unavailable(ServiceError):
    """This key may not read a kind of Billing object, or the server at STRIPE_API_BASE does not
    serve it: the P&L does without it, and the message says so once.

    ``resource`` is ``subscriptions`` or ``invoices``; ``fix`` what to do, in a few words (for a
    restricted key, the permission to add, e.g. ``Subscriptions: read``).
    """

    def __init__(self, message: str, *, resource: str, fix: str) -> None:
        super().__init__(message)
        self.resource = resource
        self.fix = fix


# What a restricted key needs, by Billing resource, as the Stripe Dashboard names it.
BILLING_PERMISSIONS = {
    "subscriptions": "Subscriptions: read",
    "invoices": "Invoices: read",
    "payouts": "Payouts: read",
}
# What goes without a resource the key may not read.
NEEDED_FOR = {
    "subscriptions": "investor metrics",
    "invoices": "investor metrics",
    "payouts": "the Payouts tab",
}


class StripePort(Protocol):
    """Balance transactions, report runs and their files, subscriptions and invoices, and what
    the run has cost."""

    @property
    def mode(self) -> str:
        """``live`` or ``test``: the key's mode."""
        ...

    @property
    def requests(self) -> int:
        """How many requests this port has sent so far (every attempt counts)."""
        ...

    def list_page(
        self, *, gte: int, lt: int, starting_after: str | None = None, type: str | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of balance transactions created in ``[gte, lt)``, newest first; has_more."""
        ...

    def iter_pages(
        self, interval: Interval, *, type: str | None = None
    ) -> Iterable[list[dict[str, Any]]]:
        """Every page of balance transactions created in ``interval``, newest first."""
        ...

    def report_type(self, type_id: str) -> dict[str, Any]:
        """A report type (``data_available_start`` / ``_end``)."""
        ...

    def create_report_run(
        self, type_id: str, parameters: dict[str, Any], *, idempotency_key: str
    ) -> dict[str, Any]:
        """Create a report run; the same key returns the same run."""
        ...

    def retrieve_report_run(self, run_id: str) -> dict[str, Any]:
        """A report run as it is now."""
        ...

    def download(self, url: str, dest: Path) -> int:
        """A report file into ``dest`` (atomically); its size in bytes."""
        ...

    def check_files_access(self) -> None:
        """Return if the key may read files; :class:`~bot.errors.ConfigError` if not."""
        ...

    # Billing (investor metrics). Each raises :class:`Unavailable` when the key may not read
    # the resource (or the server does not serve it), and refuses a malformed object
    # (:class:`~bot.inbound.InvalidStripeData`) before anything is returned.

    def iter_subscriptions(
        self, *, gte: int | None = None, lt: int | None = None, ended: bool = True
    ) -> Iterable[list[dict[str, Any]]]:
        """Every page of subscriptions created in ``[gte, lt)``, newest first: of every status
        (``status=all``), or with ``ended=False`` those Stripe lists by default, the ones not
        ended (``canceled``, ``incomplete_expired``)."""
        ...

    def iter_invoices(
        self, *, gte: int | None = None, lt: int | None = None, status: str | None = None
    ) -> Iterable[list[dict[str, Any]]]:
        """Every page of invoices created in ``[gte, lt)`` (of every status, or of ``status``),
        newest first; each embeds the first page of its lines."""
        ...

    def iter_invoice_lines(
        self, invoice_id: str, *, starting_after: str | None = None
    ) -> Iterable[list[dict[str, Any]]]:
        """The pages of an invoice's lines after the line ``starting_after``, in Stripe's order."""
        ...

    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        """One subscription as it is now; :class:`NotFound` if it no longer exists."""
        ...

    def retrieve_invoice(self, invoice_id: str) -> dict[str, Any]:
        """One invoice as it is now (with its first lines); :class:`NotFound` if it no longer
        exists (a deleted draft)."""
        ...

    # Payouts (the Payouts tab and the journal). :class:`Unavailable` as for Billing.

    def iter_payouts(self, *, gte: int, lt: int) -> Iterable[list[dict[str, Any]]]:
        """Every page of payouts created in ``[gte, lt)``, newest first, each checked."""
        ...

    def retrieve_payout(self, payout_id: str) -> dict[str, Any]:
        """One payout as it is now; :class:`NotFound` if Stripe has no such payout."""
        ...

    def payout_transactions(self, payout_id: str) -> list[dict[str, Any]] | None:
        """Every balance transaction an automatic payout settled, its own included, each
        checked; None when Stripe refuses the ``payout`` filter for it (a manual payout)."""
        ...
