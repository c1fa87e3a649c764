"""Investor metrics: a subscription's MRR at an instant, a customer's, and the monthly
roll-forward. Pure: no I/O, no clock; callers pass the instant, the month and the zone.

Everything is per currency, never summed across currencies, and exact: MRR is a ``Fraction`` of
the currency's minor units, rounded half-even by :func:`shown` only where a figure is shown.
Definitions follow Stripe's Billing metric definitions, made precise:

A subscription's MRR at an instant ``t`` (whole unix seconds; invoice statuses as read):

- 0 if ``t < start_date``, or ``ended_at <= t``, or ``trial_start <= t < trial_end``;
- else the sum over the lines of its invoices with status ``paid`` or ``open`` that come from a
  subscription item (prorations included, whatever the line's type), with a ``licensed``
  recurring price and ``period.start <= t < period.end``, of
  ``sign(amount) x unit_amount x quantity`` normalized to one month: ``month`` / count,
  ``year`` / (12 x count), ``week`` x 52 / (12 x count), ``day`` x 365 / (12 x count). A
  proration pair (unused time on A, negative; remaining time on B, positive; both from the
  change to the period end) thus replaces A by B at the change; a zero line (a trial) adds
  nothing. Lines on ``uncollectible`` invoices count 0; ``draft`` and ``void`` ones are ignored.
- x (1 - percent_off / 100) from ``discount.start`` under a coupon of duration ``forever``; a
  100 % forever coupon makes it 0. ``once`` and ``repeating`` coupons do not change MRR.

A customer's MRR in a currency is the sum of their subscriptions' MRR in it; an active
subscriber has MRR > 0. A month's end is its last second in the report's zone.

Roll-forward of a month M, per currency, customer by customer, start = MRR at the end of M-1,
end = MRR at the end of M: ``new`` (start 0, end > 0, never > 0 at an earlier month end),
``reactivation`` (start 0, end > 0, > 0 at some earlier month end), ``expansion`` (0 < start <
end: end - start), ``contraction`` (0 < end < start: start - end), ``churn`` (start > 0, end 0:
start). ``mrr_end = mrr_start + new + reactivation + expansion - contraction - churn`` holds
exactly on every row; :class:`MetricsRow` refuses to exist otherwise.

Decisions where those definitions are silent:

- A line comes from one of the subscription's items when it names a subscription item; the
  item need not still be in ``items.data`` (a removed item keeps its history). A line that
  names another subscription belongs to that one, else to its invoice's subscription.
- ``period.end`` is exclusive, although Stripe's reference calls it inclusive: a renewal's next
  period starts on that same second, so a half-open period counts a renewal once.
- ``unit_amount_decimal`` wins over ``unit_amount`` (sub-minor-unit prices stay exact); a
  price's ``transform_quantity`` applies to the quantity (rounded up or down as it says), as
  Stripe bills it; a price in another currency uses its ``currency_options`` unit amount.
- Not covered, each reported once per subscription by :func:`unsupported` (and in
  :attr:`RollForward.unsupported`): tiered prices count at their tier table for the quantity
  when the price carries its ``tiers``, else at the line's own amount (the list price of a full
  period; a proration is prorated); so do lines whose unit amount in the subscription's
  currency is unknown, or that have no quantity. A line whose price is only an id that neither
  the caller's price catalog nor the subscription's current items resolve counts 0.
  ``amount_off`` coupons, several ``forever`` coupons at once, discounts or coupons given only
  by id, item-level discounts, and customer-level discounts (seen when an invoice carries the
  discount object): the subscription counts at list price.
- A trial with a ``trial_end`` but no ``trial_start`` runs from ``start_date``.
- A subscription's MRR below 0 (a credit whose original charge was voided) counts 0.
- The subscription's ``status`` is not read: it is today's, not the history's; invoice statuses
  and the subscription's dates carry the history. So a subscription Stripe calls ``unpaid``
  counts while its invoice is still ``open``, and stops when the invoice is marked
  ``uncollectible``.
- An invoice in another currency than its subscription is an error, never a conversion.
- Rows start at the first month whose end has MRR > 0 in that currency (a customer who comes
  and goes within a month moves no month end) and run through the month asked, zero rows
  after a full churn included; history is scanned from the earliest ``start_date``, so
  ``new`` against ``reactivation`` sees all of it, whatever range is shown.
- ``subscriber_churn_rate`` is churned / subscribers at the start (Stripe's dashboard is said
  to add the period's new subscribers to the denominator); a rate whose denominator is 0 is
  None.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from decimal import Decimal
from fractions import Fraction

from bot.metrics_input import (
    Discount,
    Invoice,
    InvoiceLine,
    MalformedObject,
    Price,
    Subscription,
    parse_invoice,
    parse_price,
    parse_subscription,
)
from bot.money import normalize_currency, to_major
from bot.periods import Month, local_date_of

COUNTED = frozenset({"paid", "open"})
ZERO = Fraction(0)
_PER_MONTH = {
    "day": Fraction(365, 12),
    "week": Fraction(52, 12),
    "month": Fraction(1),
    "year": Fraction(1, 12),
}
METRICS_COLUMNS: tuple[str, ...] = (
    "month", "currency", "mrr_start", "new", "reactivation", "expansion", "contraction",
    "churn", "mrr_end", "arr", "subscribers_start", "new_subscribers",
    "reactivated_subscribers", "churned_subscribers", "subscribers_end",
    "subscriber_churn_rate", "gross_mrr_churn_rate", "net_revenue_retention", "arpa",
)  # fmt: skip


class MetricsIdentityError(AssertionError):
    """A roll-forward row whose movements do not add up: a bug, never bad input."""


def monthly_factor(interval: str, interval_count: int) -> Fraction:
    """What one amount billed every ``interval_count`` ``interval``\\s is worth per month."""
    if interval not in _PER_MONTH:
        raise ValueError(f"not a recurring interval: {interval!r}")
    if interval_count < 1:
        raise ValueError(f"interval_count must be at least 1, got {interval_count}")
    return _PER_MONTH[interval] / interval_count


def month_end(month: Month, tz: tzinfo) -> int:
    """The last second of ``month`` in ``tz`` (the first second of the next month - 1)."""
    return month.interval(tz).end - 1


def shown(value: Fraction | int, currency: str) -> int:
    """``value`` (minor units of ``currency``) rounded half-even to a whole minor unit."""
    normalize_currency(currency)
    return round(Fraction(value))


def shown_major(value: Fraction | int, currency: str) -> Decimal:
    """``value`` as shown, in major units: ``Fraction(99999, 2)`` USD cents shows as 500.00."""
    return to_major(shown(value, currency), currency)


# -- one line, one subscription ----------------------------------------------------------------


def _sign(n: int) -> int:
    return (n > 0) - (n < 0)


def _price_of(line: InvoiceLine, sub: Subscription) -> Price | None:
    if line.price is not None:
        return line.price
    for item in sub.items:
        if item.price is not None and item.price.id == line.price_id:
            return item.price
    return None


def _billed(price: Price, quantity: int) -> Fraction:
    whole, rest = divmod(quantity, price.divide_by)
    return Fraction(whole + (1 if rest and price.round_up else 0))


def _tiered(price: Price, quantity: Fraction) -> Fraction:
    tiers = price.tiers or ()
    if price.tiers_mode == "graduated":
        total, below = ZERO, 0
        for tier in tiers:
            top = quantity if tier.up_to is None else min(quantity, Fraction(tier.up_to))
            if top > below:
                total += (top - below) * tier.unit_amount + tier.flat_amount
            if tier.up_to is None or quantity <= tier.up_to:
                break
            below = tier.up_to
        return total
    for tier in tiers:  # volume: the whole quantity at the tier it falls in
        if tier.up_to is None or quantity <= tier.up_to:
            return quantity * tier.unit_amount + tier.flat_amount
    return ZERO


def _valued(line: InvoiceLine, sub: Subscription) -> tuple[Fraction, str | None] | None:
    """The line's signed list price per month, and why it is not exact if it is not;
    None for a line that is no part of MRR."""
    if line.subscription_item is None or line.amount == 0:
        return None
    price = _price_of(line, sub)
    if price is None:
        return ZERO, "an invoice line whose price is given only by its id"
    if price.recurring is None or not price.licensed:
        return None
    per_month = monthly_factor(price.recurring.interval, price.recurring.interval_count)
    sign = _sign(line.amount)
    if line.quantity is None:
        return line.amount * per_month, "an invoice line without a quantity"
    quantity = _billed(price, line.quantity)
    if price.billing_scheme == "tiered":
        if price.tiers is None or price.currency != sub.currency:
            return line.amount * per_month, "a tiered price"
        return sign * _tiered(price, quantity) * per_month, "a tiered price"
    unit = price.unit_amount_in(sub.currency)
    if unit is None:
        return line.amount * per_month, f"a price without a unit amount in {sub.currency}"
    return sign * unit * quantity * per_month, None


def _belongs(line: InvoiceLine, invoice: Invoice, sub: Subscription) -> bool:
    return (line.subscription or invoice.subscription) == sub.id


def _check_currency(invoice: Invoice, sub: Subscription) -> None:
    if invoice.currency != sub.currency:
        raise MalformedObject(
            f"invoice {invoice.id}: currency is {invoice.currency} but its subscription "
            f"{sub.id} bills in {sub.currency}; currencies are never mixed"
        )


def _counted_lines(
    sub: Subscription, invoices: Iterable[Invoice]
) -> Iterator[tuple[int, int, Fraction]]:
    """(period start, period end, monthly value) of each line that adds to the MRR."""
    for invoice in invoices:
        if not any(_belongs(line, invoice, sub) for line in invoice.lines):
            continue
        _check_currency(invoice, sub)
        if invoice.status not in COUNTED:
            continue
        for line in invoice.lines:
            if not _belongs(line, invoice, sub):
                continue
            valued = _valued(line, sub)
            if valued is not None and valued[0]:
                yield line.period_start, line.period_end, valued[0]


def _forever(sub: Subscription) -> list[Discount]:
    return [d for d in sub.discounts if d.coupon is not None and d.coupon.duration == "forever"]


def _discount_factor(sub: Subscription, t: int) -> Fraction:
    forever = _forever(sub)
    if len(forever) != 1:
        return Fraction(1)
    d = forever[0]
    assert d.coupon is not None
    if d.coupon.percent_off is None or d.coupon.amount_off is not None:
        return Fraction(1)
    if t < d.start or (d.end is not None and d.end <= t):
        return Fraction(1)
    return 1 - d.coupon.percent_off / 100


def _live(sub: Subscription, t: int) -> bool:
    if t < sub.start_date or (sub.ended_at is not None and sub.ended_at <= t):
        return False
    if sub.trial_end is not None:
        trial_start = sub.start_date if sub.trial_start is None else sub.trial_start
        if trial_start <= t < sub.trial_end:
            return False
    return True


def _finish(sub: Subscription, lines_total: Fraction, t: int) -> Fraction:
    return max(ZERO, lines_total * _discount_factor(sub, t))


def mrr_at(subscription: Subscription, invoices: Iterable[Invoice], t: int) -> Fraction:
    """The subscription's MRR at ``t``, in minor units of ``subscription.currency``.

    ``invoices``: that subscription's invoices (others' lines are left out). Raises
    :class:`MalformedObject` for an invoice of it in another currency.
    """
    total = ZERO
    for start, end, value in _counted_lines(subscription, invoices):
        if start <= t < end:
            total += value
    return _finish(subscription, total, t) if _live(subscription, t) else ZERO


def _by_subscription(invoices: Iterable[Invoice]) -> dict[str, list[Invoice]]:
    out: dict[str, list[Invoice]] = defaultdict(list)
    for invoice in invoices:
        owners = {line.subscription or invoice.subscription for line in invoice.lines}
        owners.add(invoice.subscription)
        for owner in sorted(o for o in owners if o):
            out[owner].append(invoice)
    return out


def customer_mrr(
    subscriptions: Iterable[Subscription], invoices: Iterable[Invoice], t: int
) -> dict[tuple[str, str], Fraction]:
    """MRR at ``t`` per (customer, currency); a customer without MRR there is absent."""
    by_sub = _by_subscription(invoices)
    out: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    for sub in subscriptions:
        value = mrr_at(sub, by_sub.get(sub.id, ()), t)
        if value:
            out[(sub.customer, sub.currency)] += value
    return dict(out)


# -- what is not covered -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Unsupported:
    """A subscription whose MRR is not exact, and why (said once to the user)."""

    subscription: str
    reason: str


def _discount_issues(sub: Subscription) -> Iterator[str]:
    if sub.unexpanded_discounts or any(d.coupon is None for d in sub.discounts):
        yield "a discount given only by its id"
    forever = _forever(sub)
    if len(forever) > 1:
        yield "several forever coupons"
    if any(d.coupon is not None and d.coupon.amount_off is not None for d in forever):
        yield "an amount_off coupon"
    if any(item.has_discounts for item in sub.items):
        yield "a subscription item discount"


def unsupported(
    subscriptions: Iterable[Subscription], invoices: Iterable[Invoice]
) -> tuple[Unsupported, ...]:
    """Each subscription whose MRR uses something not covered exactly, with the reasons."""
    by_sub = _by_subscription(invoices)
    found: set[Unsupported] = set()
    for sub in subscriptions:
        found.update(Unsupported(sub.id, reason) for reason in _discount_issues(sub))
        for invoice in by_sub.get(sub.id, ()):
            if invoice.status not in COUNTED:
                continue
            if invoice.customer_discount:
                found.add(Unsupported(sub.id, "a customer discount"))
            for line in invoice.lines:
                valued = _valued(line, sub) if _belongs(line, invoice, sub) else None
                if valued is not None and valued[1] is not None:
                    found.add(Unsupported(sub.id, valued[1]))
    return tuple(sorted(found))


# -- the roll-forward ---------------------------------------------------------------------------


def _rate(numerator: Fraction, denominator: Fraction | int) -> Fraction | None:
    return Fraction(numerator) / denominator if denominator else None


@dataclass(frozen=True, slots=True)
class MetricsRow:
    """One (month, currency) of the roll-forward; money in unrounded minor units."""

    month: Month
    currency: str
    mrr_start: Fraction
    new: Fraction
    reactivation: Fraction
    expansion: Fraction
    contraction: Fraction
    churn: Fraction
    mrr_end: Fraction
    subscribers_start: int
    new_subscribers: int
    reactivated_subscribers: int
    churned_subscribers: int
    subscribers_end: int

    def __post_init__(self) -> None:
        moved = (
            self.mrr_start + self.new + self.reactivation + self.expansion
            - self.contraction - self.churn
        )  # fmt: skip
        if moved != self.mrr_end:
            raise MetricsIdentityError(
                f"{self.month} {self.currency}: start {self.mrr_start} + movements = {moved}, "
                f"but mrr_end is {self.mrr_end}"
            )
        counted = (
            self.subscribers_start + self.new_subscribers + self.reactivated_subscribers
            - self.churned_subscribers
        )  # fmt: skip
        if counted != self.subscribers_end:
            raise MetricsIdentityError(
                f"{self.month} {self.currency}: subscribers {self.subscribers_start} + "
                f"movements = {counted}, but subscribers_end is {self.subscribers_end}"
            )

    @property
    def arr(self) -> Fraction:
        return 12 * self.mrr_end

    @property
    def subscriber_churn_rate(self) -> Fraction | None:
        return _rate(Fraction(self.churned_subscribers), self.subscribers_start)

    @property
    def gross_mrr_churn_rate(self) -> Fraction | None:
        return _rate(self.churn + self.contraction, self.mrr_start)

    @property
    def net_revenue_retention(self) -> Fraction | None:
        kept = self.mrr_start + self.expansion - self.contraction - self.churn
        return _rate(kept, self.mrr_start)

    @property
    def arpa(self) -> Fraction | None:
        return _rate(self.mrr_end, self.subscribers_end)

    def as_dict(self) -> dict[str, object]:
        """The columns of the Metrics tab, in order, unrounded."""
        return {name: getattr(self, name) for name in METRICS_COLUMNS}


@dataclass(slots=True)
class _Tally:
    start: Fraction = ZERO
    end: Fraction = ZERO
    moves: dict[str, Fraction] = field(default_factory=lambda: defaultdict(Fraction))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, start: Fraction, end: Fraction, *, earlier: bool) -> None:
        self.start += start
        self.end += end
        self.counts["start"] += start > 0
        self.counts["end"] += end > 0
        if start == 0 and end > 0:
            kind = "reactivation" if earlier else "new"
            self.moves[kind] += end
            self.counts[kind] += 1
        elif start > 0 and end == 0:
            self.moves["churn"] += start
            self.counts["churn"] += 1
        elif 0 < start < end:
            self.moves["expansion"] += end - start
        elif 0 < end < start:
            self.moves["contraction"] += start - end

    def row(self, month: Month, currency: str) -> MetricsRow:
        m, c = self.moves, self.counts
        return MetricsRow(
            month=month,
            currency=currency,
            mrr_start=self.start,
            new=m["new"],
            reactivation=m["reactivation"],
            expansion=m["expansion"],
            contraction=m["contraction"],
            churn=m["churn"],
            mrr_end=self.end,
            subscribers_start=c["start"],
            new_subscribers=c["new"],
            reactivated_subscribers=c["reactivation"],
            churned_subscribers=c["churn"],
            subscribers_end=c["end"],
        )


def _months(first: Month, last: Month) -> list[Month]:
    out = []
    while first <= last:
        out.append(first)
        first = first.next()
    return out


def _customer_mrr_at_ends(
    subs: Sequence[Subscription], by_sub: Mapping[str, list[Invoice]], ends: Sequence[int]
) -> list[dict[str, Fraction]]:
    """Per month end, each customer's MRR (> 0 only); the same sums as :func:`mrr_at`."""
    out: list[dict[str, Fraction]] = [defaultdict(Fraction) for _ in ends]
    for sub in subs:
        sums: dict[int, Fraction] = defaultdict(Fraction)
        for start, end, value in _counted_lines(sub, by_sub.get(sub.id, ())):
            for i in range(bisect_left(ends, start), bisect_left(ends, end)):
                sums[i] += value
        for i, total in sums.items():
            if _live(sub, ends[i]) and (value := _finish(sub, total, ends[i])):
                out[i][sub.customer] += value
    return out


def _currency_rows(
    currency: str,
    subs: Sequence[Subscription],
    by_sub: Mapping[str, list[Invoice]],
    through: Month,
    tz: tzinfo,
) -> Iterator[MetricsRow]:
    months = _months(Month.of(local_date_of(min(s.start_date for s in subs), tz)), through)
    per_end = _customer_mrr_at_ends(subs, by_sub, [month_end(m, tz) for m in months])
    ever: set[str] = set()
    before: dict[str, Fraction] = {}
    started = False
    for month, after in zip(months, per_end, strict=True):
        tally = _Tally()
        for customer in before.keys() | after.keys():
            tally.add(
                before.get(customer, ZERO), after.get(customer, ZERO), earlier=customer in ever
            )
        ever.update(after)
        started = started or tally.end > 0
        if started:
            yield tally.row(month, currency)
        before = after


@dataclass(frozen=True, slots=True)
class RollForward:
    """The Metrics rows, ordered by (month, currency), and what they could not cover."""

    rows: tuple[MetricsRow, ...]
    unsupported: tuple[Unsupported, ...]


def roll_forward(
    subscriptions: Iterable[Subscription],
    invoices: Iterable[Invoice],
    *,
    through: Month,
    tz: tzinfo,
) -> RollForward:
    """Rows per (month, currency), from the currency's first month with MRR through ``through``.

    ``subscriptions`` and ``invoices``: all of the account's (every status), since a customer's
    earlier history decides between ``new`` and ``reactivation``.
    """
    subs = list(subscriptions)
    invoice_list = list(invoices)
    seen: set[str] = set()
    for sub in subs:
        if sub.id in seen:
            raise ValueError(f"subscription {sub.id} is given twice")
        seen.add(sub.id)
    by_sub = _by_subscription(invoice_list)
    rows: list[MetricsRow] = []
    for currency in sorted({s.currency for s in subs}):
        same = [s for s in subs if s.currency == currency]
        rows.extend(_currency_rows(currency, same, by_sub, through, tz))
    rows.sort(key=lambda r: (r.month, r.currency))
    return RollForward(rows=tuple(rows), unsupported=unsupported(subs, invoice_list))


__all__ = [
    "METRICS_COLUMNS",
    "MalformedObject",
    "MetricsIdentityError",
    "MetricsRow",
    "RollForward",
    "Unsupported",
    "customer_mrr",
    "month_end",
    "monthly_factor",
    "mrr_at",
    "parse_invoice",
    "parse_price",
    "parse_subscription",
    "roll_forward",
    "shown",
    "shown_major",
    "unsupported",
]
