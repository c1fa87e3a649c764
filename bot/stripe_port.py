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


class NotFound(ServiceError):
    """Stripe answered 404: the object asked for does not exist."""


class StripePort(Protocol):
    """Balance transactions, report runs and their files, and what the run has cost."""

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
