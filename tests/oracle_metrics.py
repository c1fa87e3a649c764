"""Investor metrics (PRODUCT.md §9) re-stated from the sandbox's subscription history alone.

The independent check for revbot's invoice-based metrics: it reads only
:attr:`bot.sandbox.SandboxBilling.history` (never an invoice, never ``bot.metrics``), so a test
that compares the two is not revbot checking itself.

Rules, and where they meet §9's invoice-based definition (the generator keeps its side of each
one; see ``bot/sandbox/billing.py``):

- A subscription's MRR at second ``t`` comes from its latest :class:`Change` with ``change.t <=
  t``; none yet (``t < start_date``) means 0.
- It is 0 while the status is ``trialing``, ``canceled`` (``ended_at <= t``), ``incomplete``,
  ``incomplete_expired`` or ``unpaid``. §9 says 0 during the trial, after ``ended_at``, and
  counts lines of ``uncollectible`` invoices as 0: the history marks a period whose invoice
  ended uncollectible ``unpaid`` from the period's start, and an ``unpaid`` subscription's later
  invoices are drafts, which §9 ignores. ``past_due`` counts: its invoice is ``open``.
- Otherwise it is the sum over licensed items of ``unit_amount x quantity`` normalized to a month
  (``month``: / interval_count; ``year``: / (12 x interval_count); ``week``: x 52 / (12 x
  interval_count); ``day``: x 365 / (12 x interval_count)), times ``1 - percent_off/100`` while
  the coupon is ``forever``. Metered items count 0; ``once`` coupons change nothing.
  §9 gets the same figure from invoice lines because every change inside a period is prorated
  and invoiced at once with a nonzero "unused"/"remaining" pair from the change to the period
  end, and every renewal is invoiced (never a draft) when the period starts.
- A customer's MRR in a currency is the sum over their subscriptions in it; a subscriber is a
  customer with MRR > 0. A month's end is its last second in the account's zone.
- The roll-forward, the counts and the rates follow §9 word for word, per currency, as exact
  Fractions of minor units; a rate with a zero denominator is None.

Where the two may still differ, by design of §9 rather than of this oracle: §9 cannot see a
mid-period change that no invoice carries yet (pending prorations), a change of coupon
(it reads the subscription's current discount only) or a renewal still in its draft hour; the
generator never makes such cases.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from zoneinfo import ZoneInfo

from bot.sandbox.billing import SubscriptionHistory

# A month's worth of one interval.
MONTHLY = {
    "day": Fraction(365, 12),
    "week": Fraction(52, 12),
    "month": Fraction(1),
    "year": Fraction(1, 12),
}
NO_MRR = {"trialing", "canceled", "incomplete", "incomplete_expired", "unpaid"}


def subscription_mrr(history: SubscriptionHistory, t: int) -> Fraction:
    """The subscription's MRR at second ``t``, in minor units of its currency."""
    current = None
    for change in history.changes:
        if change.t > t:
            break
        current = change
    if current is None or current.status in NO_MRR:
        return Fraction(0)
    mrr = sum(
        (
            item.price.unit_amount
            * item.quantity
            * MONTHLY[item.price.interval]
            / item.price.interval_count
            for item in current.items
            if item.price.usage_type == "licensed" and item.quantity is not None
        ),
        Fraction(0),
    )
    if current.coupon is not None and current.coupon.duration == "forever":
        mrr *= 1 - Fraction(current.coupon.percent_off, 100)
    return mrr


def customer_mrr(
    histories: Iterable[SubscriptionHistory], t: int
) -> dict[tuple[str, str], Fraction]:
    """``{(currency, customer): MRR}`` at ``t``, customers with MRR > 0 only."""
    out: dict[tuple[str, str], Fraction] = {}
    for history in histories:
        mrr = subscription_mrr(history, t)
        if mrr:
            key = (history.currency, history.customer)
            out[key] = out.get(key, Fraction(0)) + mrr
    return {k: v for k, v in out.items() if v > 0}


def month_ends(*, start: int, end: int, tz: str) -> list[tuple[str, int]]:
    """``("YYYY-MM", last second)`` of every month from the one holding ``start`` whose last
    second is before ``end``."""
    zone = ZoneInfo(tz)
    local = dt.datetime.fromtimestamp(start, zone)
    year, month = local.year, local.month
    out: list[tuple[str, int]] = []
    while True:
        label = f"{year:04d}-{month:02d}"
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        last = int(dt.datetime(year, month, 1, tzinfo=zone).timestamp()) - 1
        if last >= end:
            return out
        out.append((label, last))


@dataclass(frozen=True)
class MetricsRow:
    """One row of the Metrics tab: exact minor units, counts, and rates (None: no base)."""

    month: str
    currency: str
    mrr_start: Fraction
    new: Fraction
    reactivation: Fraction
    expansion: Fraction
    contraction: Fraction
    churn: Fraction
    mrr_end: Fraction
    arr: Fraction
    subscribers_start: int
    new_subscribers: int
    reactivated_subscribers: int
    churned_subscribers: int
    subscribers_end: int
    subscriber_churn_rate: Fraction | None
    gross_mrr_churn_rate: Fraction | None
    net_revenue_retention: Fraction | None
    arpa: Fraction | None


def _ratio(numerator: Fraction | int, denominator: Fraction | int) -> Fraction | None:
    return Fraction(numerator) / denominator if denominator else None


def roll_forward(
    month: str,
    currency: str,
    start: Mapping[str, Fraction],
    end: Mapping[str, Fraction],
    seen: set[str],
) -> MetricsRow:
    """One month's row from each customer's MRR at the two month ends (subscribers only);
    ``seen``: the customers with MRR > 0 at some earlier month end."""
    money = dict.fromkeys(("new", "reactivation", "expansion", "contraction", "churn"), Fraction(0))
    counts = dict.fromkeys(("new", "reactivation", "churn"), 0)
    for customer in start.keys() | end.keys():
        before, after = start.get(customer, Fraction(0)), end.get(customer, Fraction(0))
        if before == 0 and after > 0:
            kind = "reactivation" if customer in seen else "new"
            money[kind] += after
            counts[kind] += 1
        elif 0 < before < after:
            money["expansion"] += after - before
        elif 0 < after < before:
            money["contraction"] += before - after
        elif before > 0 and after == 0:
            money["churn"] += before
            counts["churn"] += 1
    mrr_start, mrr_end = sum(start.values(), Fraction(0)), sum(end.values(), Fraction(0))
    kept = mrr_start + money["expansion"] - money["contraction"] - money["churn"]
    return MetricsRow(
        month=month,
        currency=currency,
        mrr_start=mrr_start,
        **money,
        mrr_end=mrr_end,
        arr=12 * mrr_end,
        subscribers_start=len(start),
        new_subscribers=counts["new"],
        reactivated_subscribers=counts["reactivation"],
        churned_subscribers=counts["churn"],
        subscribers_end=len(end),
        subscriber_churn_rate=_ratio(counts["churn"], len(start)),
        gross_mrr_churn_rate=_ratio(money["churn"] + money["contraction"], mrr_start),
        net_revenue_retention=_ratio(kept, mrr_start),
        arpa=_ratio(mrr_end, len(end)),
    )


def metrics(
    histories: Iterable[SubscriptionHistory], *, start: int, end: int, tz: str
) -> list[MetricsRow]:
    """Rows per (month, currency), oldest month first, for every month whose end is before
    ``end``, from the first month with MRR in the currency on (zero rows included)."""
    histories = list(histories)
    ends = month_ends(start=start, end=end, tz=tz)
    snapshots = [customer_mrr(histories, t) for _, t in ends]
    rows = []
    for currency in sorted({c for snapshot in snapshots for c, _ in snapshot}):
        seen: set[str] = set()
        previous: dict[str, Fraction] = {}
        for (month, _), snapshot in zip(ends, snapshots, strict=True):
            now = {cus: mrr for (cur, cus), mrr in snapshot.items() if cur == currency}
            if now or seen:
                rows.append(roll_forward(month, currency, previous, now, seen))
            seen |= now.keys()
            previous = now
    return sorted(rows, key=lambda r: (r.month, r.currency))
