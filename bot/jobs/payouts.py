"""Payouts from Stripe into the ledger, and the Payouts tab from the ledger.

What one sync reads:

1. **The payouts created in the range** a command synced (``daily``: the days it synced;
   ``backfill``: its range), listed newest first, each stored by id.
2. **The payouts that can still change**: every stored one not final (``pending``,
   ``in_transit``) that step 1 did not read, read again by id until it is ``paid``, ``failed``
   or ``canceled``.
3. **What each automatic payout settled**: ``GET /v1/balance_transactions?payout=po_…``, read
   when the payout is new and again when its status changed since (a failed payout keeps
   what it listed: the money that comes back is settled by a later payout). Manual payouts
   are never asked for: Stripe refuses the filter for them, and if it refuses it for one that
   claimed to be automatic, that one is shown as manual too.

Each payout's row on the Payouts tab is written after its change is stored (``dirty`` in the
ledger), so a run that stopped in between writes it next time. A payout is ``reconciled`` when
the net of what it settled equals its amount exactly; manual ones say ``n/a``.

A restricted key without read access to Payouts is said once as a warning; the P&L is
unaffected.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot import books_store as store
from bot import reports
from bot.dashboard.base import PAYOUTS
from bot.errors import RevbotError
from bot.jobs.context import Context
from bot.jobs.projection import apply_to_dashboard, dashboard_update_for_days, payout_row
from bot.periods import Interval, Month
from bot.pnl import settled
from bot.stripe_port import NotFound, Unavailable

log = logging.getLogger(__name__)

UNAVAILABLE_KEY = "payouts_unavailable"  # meta: why payouts cannot be read, said once


@dataclass(frozen=True)
class PayoutSyncResult:
    read: int  # payouts read (listed or by id)
    inserted: int
    changed: int
    listed: int  # payouts whose settled transactions were listed
    written: int  # Payouts rows written to the dashboard
    unreconciled: tuple[str, ...]  # automatic payouts whose net differs from their amount
    requests: int
    unavailable: str | None = None  # why payouts could not be read


def unreconciled(payouts: Sequence[store.StoredPayout]) -> list[str]:
    """Automatic payouts, listed, whose settled net is not their amount."""
    return [
        p.id
        for p in payouts
        if p.automatic and p.listed and settled(p.settled).net != int(p.raw["amount"])
    ]


def sync_payouts(ctx: Context, *, gte: int, lt: int) -> PayoutSyncResult:
    """Store the payouts created in ``[gte, lt)``, refresh those not final, list what the
    automatic ones settled, then write the changed rows to the Payouts tab."""
    source = ctx.stripe()
    ledger = ctx.ledger
    start = source.requests
    counts = {"inserted": 0, "changed": 0, "same": 0}
    seen: set[str] = set()
    ctx.progress("syncing Stripe payouts")
    for page in source.iter_payouts(gte=gte, lt=lt):
        with ledger.transaction() as conn:
            for payout in page:
                counts[store.store_payout(conn, payout)] += 1
                seen.add(str(payout["id"]))
    for pid in store.not_final(ledger):
        if pid in seen:
            continue
        try:
            payout = source.retrieve_payout(pid)
        except NotFound:
            log.warning("Stripe no longer has payout %s; its row stays as last seen", pid)
            continue
        seen.add(pid)
        with ledger.transaction() as conn:
            counts[store.store_payout(conn, payout)] += 1
    listed = 0
    todo = store.to_list(ledger)
    for pid, status in todo:
        txns = source.payout_transactions(pid)
        with ledger.transaction() as conn:
            if txns is None:
                store.store_refused(conn, pid, status)
            else:
                store.store_settled(conn, pid, status, txns)
        listed += 1
    written = write_payouts(ctx)
    # Said for what this run read (a daily costs its day, not the account's history); `revbot
    # status` checks them all.
    off = unreconciled(store.payouts(ledger, ids=[*seen, *(pid for pid, _ in todo)]))
    for pid in off:
        log.warning("payout %s does not reconcile: what it settled differs from its amount", pid)
    return PayoutSyncResult(
        read=len(seen),
        inserted=counts["inserted"],
        changed=counts["changed"],
        listed=listed,
        written=written,
        unreconciled=tuple(off),
        requests=source.requests - start,
    )


def write_payouts(ctx: Context, *, every: bool = False) -> int:
    """Write the Payouts rows not written yet (``every``: all of them); how many."""
    todo = store.payouts(ctx.ledger, dirty_only=not every)
    if not todo:
        return 0
    rows = [payout_row(p, ctx.tz) for p in todo]
    result = apply_to_dashboard(ctx, dashboard_update_for_days(ctx, (), payouts=rows))
    if PAYOUTS.title in result.created and not every:
        return write_payouts(ctx, every=True)  # a new tab: everything the ledger knows
    with ctx.ledger.transaction() as conn:
        store.mark_written(conn, [p.id for p in todo])
    return len(rows)


REPORT_CHECK_KEY = "payout_report:{month}"  # meta: what the last check of a month found


def check_payout_report(
    ctx: Context, *, month: Month, archive_dir: Path, mode: str, deadline: float = 600.0
) -> list[str] | None:
    """Check the month's payouts against Stripe's ``payout_reconciliation.itemized.5``, the
    way the monthly report checks the ledger: per automatic payout that arrived in the month,
    the transactions it settled and their Σ net. A payout that differs is listed again once;
    what still differs is said (log, ``revbot status``). Returns the differences, or None when
    the account has no such report (it needs automatic payouts) or it is not ready: the check
    is then skipped, and never fails the month."""
    label = month.label()
    iv = month.interval(ctx.tz)
    source = ctx.stripe()
    try:
        first = reports.ensure_available(source, reports.PAYOUT_RECONCILIATION, iv, label)
        if first >= iv.end:
            return None
        if first > iv.start:
            iv = Interval(first, iv.end)
        path = reports.obtain(
            source,
            ctx.ledger,
            reports.ReportRequest(reports.PAYOUT_RECONCILIATION, iv, ctx.tz_name, mode),
            archive_dir=archive_dir,
            deadline=deadline,
        )
        settlements = reports.payout_settlements(path)
        differences = _differences(ctx, settlements)
        for pid in [d.split(":")[0] for d in differences]:
            payout = source.retrieve_payout(pid)  # the one not stored yet, or its news
            txns = source.payout_transactions(pid)
            with ctx.ledger.transaction() as conn:
                store.store_payout(conn, payout)
                if txns is None:
                    store.store_refused(conn, pid, str(payout["status"]))
                else:
                    store.store_settled(conn, pid, str(payout["status"]), txns)
        if differences:
            differences = _differences(ctx, settlements)
            write_payouts(ctx)
    except RevbotError as e:
        log.info("%s: Stripe's payout reconciliation report was not checked: %s", label, e)
        return None
    for line in differences:
        log.warning("%s payouts: %s", label, line)
    note = {"checked": len(settlements), "differences": differences}
    with ctx.ledger.transaction() as conn:
        ctx.ledger.set_meta(conn, REPORT_CHECK_KEY.format(month=month), json.dumps(note))
    return differences


def _differences(ctx: Context, settlements: Mapping[str, reports.Settlement]) -> list[str]:
    stored = {p.id: p for p in store.payouts(ctx.ledger, ids=list(settlements))}
    out: list[str] = []
    for pid, report in sorted(settlements.items()):
        mine = stored.get(pid)
        if mine is None or not mine.listed:
            out.append(f"{pid}: in Stripe's report, not in the ledger (run `revbot backfill`)")
            continue
        net = sum(m.net for m in mine.settled)
        if set(mine.settled_ids) != report.transactions or net != report.net:
            out.append(
                f"{pid}: the report has {len(report.transactions)} transactions, net "
                f"{report.net}; the ledger {len(mine.settled_ids)}, net {net} (minor units)"
            )
    return out


def payouts_after_pnl(
    ctx: Context, *, gte: int, lt: int
) -> tuple[PayoutSyncResult | None, RevbotError | None]:
    """Sync payouts once the P&L work is stored. A failure is returned, not raised, so that it
    costs nothing of that work; a key that may not read payouts is said once, not a failure."""
    try:
        result = sync_payouts(ctx, gte=gte, lt=lt)
    except Unavailable as e:
        note = f"{e} (fix: {e.fix})"
        if ctx.ledger.get_meta(UNAVAILABLE_KEY) != note:
            log.warning("%s", note)
            with ctx.ledger.transaction() as conn:
                ctx.ledger.set_meta(conn, UNAVAILABLE_KEY, note)
        return None, None
    except RevbotError as e:
        log.info("syncing payouts failed: %s", e)
        return None, e
    if ctx.ledger.get_meta(UNAVAILABLE_KEY):
        with ctx.ledger.transaction() as conn:
            ctx.ledger.set_meta(conn, UNAVAILABLE_KEY, "")
    return result, None
