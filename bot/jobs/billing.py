"""Subscriptions and invoices from Stripe into the ledger, for investor metrics.

What one sync reads, per resource (subscriptions, then invoices):

1. **What was never listed.** The ledger keeps which ranges of ``created`` were listed
   (``slices``, job ``billing:<resource>``). The sync lists what is missing of ``[0, now)`` (or
   of a backfill's range): on the first run everything, then only what was created since the
   last run. A range counts as listed only up to a day before the run (``OVERLAP``), so the
   next run lists that last day again: an object Stripe creates while a list is being read,
   or stamps with a clock a little behind ours, is not missed. Pages are committed one by one
   with the part of the range they complete, so a run killed half-way goes on from there.
2. **What can still change.** Stored subscriptions not ended (not ``canceled`` or
   ``incomplete_expired``) and invoices in ``draft`` or ``open`` that step 1 did not read again.
   They are read by listing, not one by one: Stripe's default subscription list (the ones not
   ended), and the invoice list filtered by ``status=draft`` and by ``status=open``, each
   narrowed to the ``created`` range of those objects. A list costs one request per 100
   objects, where reading them by id costs one each; only the few that left their list since
   the last run (a subscription canceled, an invoice paid or voided) are then read by id, and
   one Stripe no longer has (a deleted draft) is forgotten. A list is skipped when the ledger
   holds nothing it would refresh.
3. **Every line of each invoice.** An invoice embeds its first lines; when it has more, the rest
   is listed (``/v1/invoices/{id}/lines``) for a new invoice or a changed draft. A finalized
   invoice's lines never change, so a change of status does not read them again.

An account without subscriptions or invoices costs two requests per sync (one empty list of
each); one with some, two plus one per 100 live subscriptions, one per status of invoices that
can still change, and one per object that left its list.

A restricted key without read access to Subscriptions or Invoices (or a Stripe-compatible server
without those endpoints) is said once, as a warning, and remembered in the ledger (``revbot
status`` and ``revbot doctor`` show it); the sync goes on with what it may read and the P&L is
unaffected. Once the key may read them, the next sync lists them and the note goes away.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot import billing_store as store
from bot.billing_store import INVOICES, RESOURCES, SUBSCRIPTIONS
from bot.errors import RevbotError
from bot.jobs.context import Context
from bot.jobs.projection import refresh_metrics
from bot.ledger import Ledger
from bot.stripe_port import NotFound, StripePort, Unavailable

log = logging.getLogger(__name__)

# The last stretch of a listed range that the next sync lists again (seconds).
OVERLAP = 86_400
# Invoice statuses whose lines can no longer change (a finalized invoice).
_FINAL = frozenset({"open", "paid", "uncollectible", "void"})


@dataclass(frozen=True)
class BillingSyncResult:
    subscriptions: int  # subscriptions read (listed or by id)
    invoices: int  # invoices read
    lines: int  # invoice lines read beyond the ones each invoice embeds
    inserted: int
    changed: int
    removed: int  # objects Stripe no longer has
    requests: int  # Stripe requests this sync made
    unavailable: tuple[str, ...] = ()  # the resources that could not be read, e.g. "invoices"

    @property
    def stored_changes(self) -> int:
        return self.inserted + self.changed + self.removed


@dataclass
class _Sync:
    ledger: Ledger
    source: StripePort
    horizon: int  # a range is recorded as listed up to here, not beyond
    seen: dict[str, set[str]] = field(default_factory=lambda: {r: set() for r in RESOURCES})
    read: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESOURCES, 0))
    lines: int = 0
    inserted: int = 0
    changed: int = 0
    removed: int = 0

    # -- 1. what was never listed -------------------------------------------------------

    def list_range(self, resource: str, start: int, end: int) -> None:
        for lo, hi in store.uncovered(self.ledger, resource, start, end):
            top = min(hi, self.horizon)
            for page in self._pages(resource, gte=lo, lt=hi):
                # Newest first: more objects of the oldest second may be on the next page.
                oldest = min((int(o["created"]) for o in page), default=None)
                self.store(resource, page, listed=(oldest + 1, top) if oldest is not None else None)
            with self.ledger.transaction() as conn:
                store.cover(conn, resource, lo, top, 0)

    def _pages(
        self, resource: str, *, gte: int, lt: int, ended: bool = True, status: str | None = None
    ) -> Iterable[list[dict[str, Any]]]:
        if resource == SUBSCRIPTIONS:
            return self.source.iter_subscriptions(gte=gte, lt=lt, ended=ended)
        return self.source.iter_invoices(gte=gte, lt=lt, status=status)

    # -- 2. what can still change -------------------------------------------------------

    def refresh(self, resource: str) -> None:
        stale = [
            s for s in store.changeable(self.ledger, resource) if s.id not in self.seen[resource]
        ]
        if not stale:
            return
        if resource == SUBSCRIPTIONS:
            self._relist(resource, stale, ended=False)
        else:
            for status in store.CHANGING_INVOICE:
                self._relist(resource, [s for s in stale if s.status == status], status=status)
        for gone in [s for s in stale if s.id not in self.seen[resource]]:
            self._reread(resource, gone.id)

    def _relist(
        self,
        resource: str,
        stale: Sequence[store.Stored],
        *,
        ended: bool = True,
        status: str | None = None,
    ) -> None:
        if not stale:
            return
        lo = min(s.created for s in stale)
        hi = max(s.created for s in stale) + 1
        for page in self._pages(resource, gte=lo, lt=hi, ended=ended, status=status):
            self.store(resource, page)

    def _reread(self, resource: str, oid: str) -> None:
        try:
            if resource == SUBSCRIPTIONS:
                obj = self.source.retrieve_subscription(oid)
            else:
                obj = self.source.retrieve_invoice(oid)
        except NotFound:
            with self.ledger.transaction() as conn:
                self.removed += store.remove(conn, resource, [oid])
            log.info("%s %s no longer exists at Stripe; forgotten", resource[:-1], oid)
            return
        self.store(resource, [obj])

    # -- storing, with 3. every line of each invoice -------------------------------------

    def store(
        self,
        resource: str,
        page: Sequence[dict[str, Any]],
        *,
        listed: tuple[int, int] | None = None,
    ) -> None:
        """Store one answer (with the range of ``created`` it completes) in one transaction."""
        pairs = self._with_lines(page) if resource == INVOICES else []
        with self.ledger.transaction() as conn:
            if resource == SUBSCRIPTIONS:
                ins, chg = store.store_subscriptions(conn, page)
            else:
                ins, chg = store.store_invoices(conn, pairs)
            if listed is not None:
                store.cover(conn, resource, *listed, len(page))
        self.inserted += ins
        self.changed += chg
        self.read[resource] += len(page)
        self.seen[resource].update(str(o["id"]) for o in page)

    def _with_lines(
        self, invoices: Sequence[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], list[dict[str, Any]] | None]]:
        stored = store.stored_invoices(self.ledger, (str(i["id"]) for i in invoices))
        out: list[tuple[dict[str, Any], list[dict[str, Any]] | None]] = []
        for invoice in invoices:
            old = stored.get(invoice["id"])
            embedded = invoice["lines"]
            if not embedded["has_more"]:
                out.append((invoice, list(embedded["data"])))
            elif store.same_as_stored(invoice, old) or (old is not None and old[1] in _FINAL):
                out.append((invoice, None))  # the lines stored are the invoice's lines
            else:
                try:
                    out.append((invoice, self._all_lines(invoice)))
                except NotFound:
                    # Deleted since it was listed (a draft): the next refresh forgets it.
                    log.info("invoice %s was deleted while being read", invoice["id"])
        return out

    def _all_lines(self, invoice: dict[str, Any]) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = list(invoice["lines"]["data"])
        after = str(lines[-1]["id"]) if lines else None
        for page in self.source.iter_invoice_lines(str(invoice["id"]), starting_after=after):
            lines.extend(page)
            self.lines += len(page)
        # The first page may have grown since the invoice was read (a draft): one line, once.
        unique: dict[str, dict[str, Any]] = {}
        for line in lines:
            unique.setdefault(str(line["id"]), line)
        return list(unique.values())


def _unavailable(ctx: Context, e: Unavailable) -> None:
    """Say once (a warning the first time, then only with -v) that a resource cannot be read."""
    news = store.set_unavailable(ctx.ledger, e.resource, {"message": str(e), "fix": e.fix})
    (log.warning if news else log.info)("%s; to fix: %s", e, e.fix)


def _available(ctx: Context, resource: str) -> None:
    if store.set_unavailable(ctx.ledger, resource, None):
        log.info("Stripe %s are readable again; investor metrics can use them", resource)


def sync_billing(
    ctx: Context, *, since: int | None = None, until: int | None = None
) -> BillingSyncResult:
    """Bring the ledger's subscriptions and invoices up to date (see the module's rule).

    ``since``/``until`` (unix seconds, a backfill's range): list what was never listed of
    objects created in ``[since, until)``, and refresh nothing else. Without them: everything
    never listed up to now, then what can still change. Errors other than
    :class:`Unavailable` are raised after what was read so far is stored.
    """
    source = ctx.stripe()
    now = int(ctx.now.timestamp())
    start = since if since is not None else 0
    end = min(until, now) if until is not None else now
    run = _Sync(ledger=ctx.ledger, source=source, horizon=now - OVERLAP)
    requests = source.requests
    missing: list[str] = []
    for resource in RESOURCES:
        ctx.progress(f"syncing Stripe {resource}")
        try:
            run.list_range(resource, start, end)
            if since is None:
                run.refresh(resource)
        except Unavailable as e:
            _unavailable(ctx, e)
            missing.append(resource)
            continue
        _available(ctx, resource)
    return BillingSyncResult(
        subscriptions=run.read[SUBSCRIPTIONS],
        invoices=run.read[INVOICES],
        lines=run.lines,
        inserted=run.inserted,
        changed=run.changed,
        removed=run.removed,
        requests=source.requests - requests,
        unavailable=tuple(missing),
    )


def billing_after_pnl(
    ctx: Context, *, since: int | None = None, until: int | None = None
) -> tuple[BillingSyncResult | None, RevbotError | None]:
    """Sync subscriptions and invoices once the P&L work is stored, then the Metrics tab. A
    failure is returned, not raised, so that it costs nothing of that work (the command shows
    the P&L, then exits with the failure's code; the next run goes on from what was stored)."""
    try:
        result = sync_billing(ctx, since=since, until=until)
    except RevbotError as e:
        log.info("syncing subscriptions and invoices failed: %s", e)
        return None, e
    try:
        # The Metrics tab, when what it is computed from changed (or a month closed).
        refresh_metrics(ctx)
    except RevbotError as e:
        log.info("writing the investor metrics failed: %s", e)
        return result, e
    return result, None
