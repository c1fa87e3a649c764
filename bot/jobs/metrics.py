"""Investor metrics from the ledger: the roll-forward of the subscriptions and invoices it holds.

Read by the Metrics tab (:func:`bot.jobs.projection.refresh_metrics`) and by the investor
email's "Recurring revenue" section (:func:`bot.jobs.investor_email.build_report`); both get
the same rows, computed by :mod:`bot.metrics` from what Stripe sent, never from a clock.
"""

from __future__ import annotations

import logging
from datetime import tzinfo

from bot.billing_store import billing_objects
from bot.errors import ServiceError
from bot.ledger import Ledger
from bot.metrics import RollForward, roll_forward
from bot.metrics_input import parse_invoice, parse_subscription
from bot.periods import Month

log = logging.getLogger(__name__)

UNSUPPORTED_META = "metrics_unsupported"  # the subscriptions counted at list price, said once


def roll_forward_from_ledger(
    ledger: Ledger, *, through: Month, tz: tzinfo, remember: bool = True
) -> RollForward | None:
    """The Metrics rows through ``through``; None for an account without subscriptions.
    ``remember``: say once (and note in the ledger) which subscriptions MRR cannot cover."""
    raw_subscriptions, raw_invoices = billing_objects(ledger)
    if not raw_subscriptions:
        return None
    try:
        subscriptions = [parse_subscription(s) for s in raw_subscriptions]
        invoices = [parse_invoice(i, lines) for i, lines in raw_invoices]
        result = roll_forward(subscriptions, invoices, through=through, tz=tz)
    except ValueError as e:
        raise ServiceError(
            f"cannot compute the investor metrics from the stored subscriptions and invoices "
            f"({e}); report this with the object's id"
        ) from e
    if result.unsupported and remember:
        note = ", ".join(sorted({f"{u.subscription} ({u.reason})" for u in result.unsupported}))
        if ledger.get_meta(UNSUPPORTED_META) != note:
            log.warning("MRR counts these subscriptions at list price: %s", note[:2000])
            with ledger.transaction() as conn:
                ledger.set_meta(conn, UNSUPPORTED_META, note)
    return result if result.rows else None
