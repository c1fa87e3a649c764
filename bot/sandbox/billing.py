"""Billing in the synthetic Stripe account: customers' subscriptions, their invoices, and a
record of how each subscription changed.

:meth:`SandboxBilling.generate` simulates about fourteen months of a subscription business that
ends at ``end``: a fixed, hand-built set of customers that shows every case investor metrics must
handle (quantities, a metered item, trials, prorated upgrades, downgrades at renewal, both kinds
of cancellation, late, uncollectible, draft and void invoices, churn and return, several
currencies, changes at the last second of a month and the first second of the next), plus
random customers drawn from ``seed``. Same arguments, same objects, ids and bytes.

Subscriptions and invoices are the JSON dicts of Stripe's API at version 2020-08-27, the version
of the spec the sandbox is checked against: an invoice line carries ``price``, ``subscription``,
``subscription_item``, ``proration`` and ``type`` at its top level (later versions moved them
under ``pricing`` and ``parent``), and a subscription its ``current_period_*``. Everything is
final as of ``end``: an invoice paid after ``end`` is still ``open``. The account is read-only
once generated, so it needs no lock.

Besides what Stripe serves, every subscription keeps its own :class:`SubscriptionHistory`: from
each :class:`Change` on, its items, its status and its coupon. The generator keeps these rules so
that the history and the invoices tell one story:

- a change inside a period is prorated and invoiced at once (``always_invoice``): an "unused
  time" line (negative) for what was there and a "remaining time" line (positive) for what
  replaces it, both from the change to the period end; a proration is never zero;
- renewal invoices are final at once (no hour as a draft); draft invoices with subscription
  lines exist only while a subscription is ``unpaid``, void ones only for an
  ``incomplete_expired`` subscription's first invoice; one-off invoices have no subscription;
- a period whose invoice ends ``uncollectible`` is ``unpaid`` in the history from the period's
  start (what is known at ``end``), although Stripe showed it ``past_due`` until then;
- a ``forever`` coupon, once applied, stays for the subscription's life; a ``once`` coupon is
  spent on the first invoice and leaves the subscription at once.
"""

from __future__ import annotations

import calendar
import collections
import dataclasses
import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

_DAY = 86_400
_HOUR = 3_600
_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
MONTHS = 14  # how far back the generated business starts, in whole months before `end`'s month
_RENEWING = frozenset({"active", "trialing", "past_due", "unpaid"})
# Monthly list prices of the three tiers (minor units); other intervals derive from them.
_TIERS = ("Basic", "Pro", "Enterprise")
_MONTHLY: dict[str, tuple[int, int, int]] = {
    "usd": (1900, 4900, 19900), "eur": (1900, 4500, 17900),
    "gbp": (1500, 3900, 14900), "jpy": (1980, 4980, 19800),
}  # fmt: skip

# Fields of Stripe's objects that the sandbox never sets (and the invoice amounts that
# _Engine._settle fills in later).
_UNSET: dict[str, tuple[str, ...]] = {
    "subscription": ("application_fee_percent", "billing_thresholds", "days_until_due",
                     "default_payment_method", "default_source",
                     "next_pending_invoice_item_invoice", "pause_collection",
                     "pending_invoice_item_interval", "pending_setup_intent", "pending_update",
                     "schedule", "test_clock", "transfer_data"),
    "coupon": ("amount_off", "currency", "duration_in_months", "max_redemptions", "redeem_by"),
    "discount": ("checkout_session", "end", "invoice", "invoice_item", "promotion_code"),
    "price": ("lookup_key", "tiers_mode", "transform_quantity"),
    "invoice": ("discount", "ending_balance", "number", "tax"),
}  # fmt: skip
_INVOICE_ZEROS = ("amount_due", "amount_paid", "amount_remaining", "starting_balance", "subtotal",
                  "total", "post_payment_credit_notes_amount",
                  "pre_payment_credit_notes_amount")  # fmt: skip


@dataclass(frozen=True)
class Price:
    """A recurring price: ``unit_amount`` minor units per ``interval_count`` ``interval``s."""

    id: str
    product: str
    nickname: str
    currency: str
    unit_amount: int
    interval: str  # day, week, month or year; "once" marks a one-time price
    interval_count: int = 1
    usage_type: str = "licensed"  # or metered: billed in arrears, no quantity
    created: int = 0


@dataclass(frozen=True)
class Coupon:
    id: str
    name: str
    duration: str  # forever, once or repeating
    percent_off: int
    created: int = 0


@dataclass(frozen=True)
class Item:
    """One subscription item: a price and its quantity (None for a metered price)."""

    price: Price
    quantity: int | None


@dataclass(frozen=True)
class Change:
    """What a subscription is from ``t`` (unix seconds) until its next change.

    ``status`` is the one known at the account's end (see the module's rules), ``coupon`` the
    coupon of the subscription's discount at the time, if any.
    """

    t: int
    status: str
    items: tuple[Item, ...]
    coupon: Coupon | None


@dataclass(frozen=True)
class SubscriptionHistory:
    id: str
    customer: str
    currency: str
    changes: tuple[Change, ...]


def add_interval(anchor: int, interval: str, count: int) -> int:
    """``anchor`` moved by ``count`` intervals on the UTC calendar, like Stripe's billing cycle:
    a month after 31 January is the last day of February, at the anchor's time of day."""
    if interval == "day":
        return anchor + count * _DAY
    if interval == "week":
        return anchor + 7 * count * _DAY
    months = count * (12 if interval == "year" else 1)
    start = dt.datetime.fromtimestamp(anchor, dt.UTC)
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return int(start.replace(year=year, month=month, day=day).timestamp())


def _percent(amount: int, percent: int) -> int:
    """``percent`` % of ``amount``, rounded half-even to a minor unit."""
    return round(Fraction(amount * percent, 100))


@dataclass
class _Customer:
    id: str
    name: str
    email: str
    prefix: str
    tax_percent: int = 0
    tax_rate: str | None = None


@dataclass
class _Sub:
    """A subscription while it is simulated."""

    id: str
    customer: _Customer
    currency: str
    created: int
    items: list[tuple[str, Item]]  # (subscription item id, item)
    anchor: int
    interval: str
    interval_count: int
    period: tuple[int, int]
    status: str = "active"
    k: int = 0  # index of the current period counted from the anchor
    trial: tuple[int, int] | None = None
    converts: bool = True
    coupon: Coupon | None = None
    discount: tuple[str, int] | None = None  # (discount id, start)
    cancel_at_period_end: bool = False
    canceled_at: int | None = None
    ended_at: int | None = None
    pending: list[Item] | None = None  # items from the next renewal on
    failing: tuple[str, int] | None = None  # the next renewal's fate: (kind, seconds)
    latest_invoice: str | None = None
    changes: list[Change] = field(default_factory=list)


class _Engine:
    """Simulates subscriptions one by one; calls on one subscription must go forward in time.

    Invoice amounts that depend on other invoices (customer credit, numbers) are settled at the
    end, in each customer's chronological order.
    """

    def __init__(self, *, start: int, end: int, zone: ZoneInfo, rng: random.Random) -> None:
        self.start, self.end, self.zone, self.rng = start, end, zone, rng
        self.account = "acct_" + self._random(16)
        self.customers: list[_Customer] = []
        self.subs: list[_Sub] = []
        self.invoices: list[dict[str, Any]] = []
        self.lines: dict[str, list[dict[str, Any]]] = {}
        self._prices: dict[tuple[Any, ...], Price] = {}
        self._products: dict[str, str] = {}
        self._discounts: dict[str, tuple[Coupon, str, int, str | None]] = {}
        self._uses: collections.Counter[str] = collections.Counter()
        self._ids: set[str] = set()

    # ------------------------------------------------------------------ catalogue

    def _random(self, length: int) -> str:
        return "".join(self.rng.choices(_ID_ALPHABET, k=length))

    def id(self, prefix: str) -> str:
        while (candidate := f"{prefix}_{self._random(24)}") in self._ids:
            pass
        self._ids.add(candidate)
        return candidate

    def local(self, month: int, day: int = 1, hour: int = 0, minute: int = 0) -> int:
        """Unix time of a local wall-clock time in the ``month``-th month of the account."""
        first = dt.datetime.fromtimestamp(self.start, self.zone)
        index = first.month - 1 + month
        when = dt.datetime(first.year + index // 12, index % 12 + 1, day, hour, minute)
        return int(when.replace(tzinfo=self.zone).timestamp())

    def customer(self, name: str, *, tax_percent: int = 0) -> _Customer:
        slug = "".join(c for c in name.lower() if c.isalnum())[:20]
        cus = _Customer(self.id("cus"), name, f"billing@{slug}.example", self._random(8).upper())
        if tax_percent:
            cus.tax_percent, cus.tax_rate = tax_percent, self.id("txr")
        self.customers.append(cus)
        return cus

    def price(self, currency: str, unit_amount: int, interval: str, count: int = 1, *,
              nickname: str, usage: str = "licensed") -> Price:  # fmt: skip
        key = (currency, unit_amount, interval, count, nickname, usage)
        if key not in self._prices:
            product = self._products.setdefault(nickname, self.id("prod"))
            self._prices[key] = Price(
                self.id("price"), product, nickname, currency, unit_amount, interval, count,
                usage, self.start - 30 * _DAY,
            )  # fmt: skip
        return self._prices[key]

    def plan(self, currency: str, tier: int, interval: str = "month", count: int = 1) -> Price:
        """A tier's price: a year costs 10 months, a quarter 2.7, a week a quarter of one."""
        monthly = _MONTHLY[currency][tier]
        amounts = {("month", 1): monthly, ("month", 3): monthly * 27 // 10,
                   ("year", 1): monthly * 10, ("week", 1): monthly // 4}  # fmt: skip
        amount = amounts[(interval, count)]
        suffix = {("month", 1): "", ("month", 3): " quarterly", ("year", 1): " annual"}
        name = _TIERS[tier] + suffix.get((interval, count), " weekly")
        return self.price(currency, amount, interval, count, nickname=name)

    def coupon(self, name: str, duration: str, percent_off: int) -> Coupon:
        return Coupon(self._random(8), name, duration, percent_off, self.start)

    # ------------------------------------------------------------------ history and lines

    def _record(self, sub: _Sub, t: int, status: str) -> None:
        """Note what the subscription is from ``t`` on; a later note at the same second wins."""
        change = Change(t, status, tuple(item for _, item in sub.items), sub.coupon)
        if sub.changes and sub.changes[-1].t > t:
            raise ValueError(f"{sub.id}: history must go forward ({t} < {sub.changes[-1].t})")
        if sub.changes and sub.changes[-1].t == t:
            sub.changes.pop()
        if not sub.changes or dataclasses.replace(sub.changes[-1], t=t) != change:
            sub.changes.append(change)

    def _line(self, sub: _Sub | None, si: str | None, item: Item, amount: int,
              period: tuple[int, int], *, description: str | None = None,
              quantity: int | None = None, proration: bool = False) -> dict[str, Any]:  # fmt: skip
        price = item.price
        qty = item.quantity if quantity is None else quantity
        kind = "invoiceitem" if proration or sub is None else "subscription"
        line: dict[str, Any] = {
            "id": self.id("il"),
            "object": "line_item",
            "amount": amount,
            "currency": price.currency,
            "description": description or f"{qty} × {price.nickname}",
            "discount_amounts": [],
            "discountable": not proration,
            "discounts": [],
            "livemode": False,
            "metadata": {},
            "period": {"end": period[1], "start": period[0]},
            "price": price_json(price),
            "proration": proration,
            "proration_details": {"credited_items": None},
            "quantity": qty,
            "subscription": sub.id if sub else None,
            "tax_amounts": [],
            "tax_rates": [],
            "type": kind,
        }
        if si is not None:
            line["subscription_item"] = si
        if kind == "invoiceitem":
            line["invoice_item"] = self.id("ii")
        return line

    def _period_lines(self, sub: _Sub, billed: tuple[int, int] | None) -> list[dict[str, Any]]:
        """A renewal's lines: each licensed item for the new period, and each metered item's
        usage in the period just ``billed`` (in arrears)."""
        lines = []
        for si, item in sub.items:
            unit = item.price.unit_amount
            if item.quantity is not None:
                lines.append(self._line(sub, si, item, unit * item.quantity, sub.period))
            elif billed is not None:
                usage = self.rng.randint(200, 5000)
                lines.append(self._line(sub, si, item, unit * usage, billed, quantity=usage))
        return lines

    # ------------------------------------------------------------------ invoices

    def _invoice(self, sub: _Sub | None, customer: _Customer, at: int, reason: str,
                 lines: list[dict[str, Any]], *, status: str = "paid", resolved: int | None = None,
                 period: tuple[int, int] | None = None, attempts: int = 1,
                 description: str | None = None) -> dict[str, Any]:  # fmt: skip
        """An invoice as Stripe shows it at the end; ``resolved``: when it was paid, marked
        uncollectible or voided. Amounts and balances are filled in by :meth:`_settle`."""
        inv_id = self.id("in")
        currency = lines[0]["currency"]
        coupon = sub.coupon if sub else None
        if sub is not None and coupon is not None and sub.discount is not None:
            self._discounts[inv_id] = (coupon, sub.discount[0], sub.discount[1], sub.id)
            for line in lines:
                if line["discountable"] and line["amount"] > 0:
                    off = _percent(line["amount"], coupon.percent_off)
                    line["discount_amounts"] = [{"amount": off, "discount": sub.discount[0]}]
        for line in lines:
            if customer.tax_percent:
                net = line["amount"] - sum(d["amount"] for d in line["discount_amounts"])
                tax = _percent(net, customer.tax_percent)
                line["tax_amounts"] = [tax_amount(tax, customer.tax_rate)]
        final = status != "draft"
        resolved = at if resolved is None else resolved
        transitions = {
            "finalized_at": at if final else None,
            "marked_uncollectible_at": resolved if status == "uncollectible" else None,
            "paid_at": resolved if status == "paid" else None,
            "voided_at": resolved if status == "void" else None,
        }
        page = f"https://invoice.stripe.com/i/{self.account}/test_{inv_id[3:]}"
        invoice: dict[str, Any] = {
            "id": inv_id,
            "object": "invoice",
            **dict.fromkeys(_UNSET["invoice"]),
            **dict.fromkeys(_INVOICE_ZEROS, 0),
            "account_country": "US",
            "account_name": "Sandbox Widgets",
            "attempt_count": attempts if final and sub is not None else 0,
            "attempted": final and sub is not None,
            "auto_advance": status in ("draft", "open") and not (sub and sub.status == "unpaid"),
            "automatic_tax": {"enabled": False, "status": None},
            "billing_reason": reason,
            "charge": self.id("ch") if status == "paid" else None,
            "collection_method": "charge_automatically" if sub else "send_invoice",
            "created": at,
            "currency": currency,
            "customer": customer.id,
            "customer_email": customer.email,
            "customer_name": customer.name,
            "default_tax_rates": [],
            "description": description,
            "discounts": [],
            "due_date": None if sub else at + 30 * _DAY,
            "hosted_invoice_url": page if final else None,
            "invoice_pdf": page + "/pdf" if final else None,
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": at + 3 * _DAY if status == "open" and sub else None,
            "paid": status == "paid",
            "paid_out_of_band": False,
            "payment_intent": self.id("pi") if final else None,
            "payment_settings": {"payment_method_options": None, "payment_method_types": None},
            "period_end": (period or (at, at))[1],
            "period_start": (period or (at, at))[0],
            "status": status,
            "status_transitions": transitions,
            "subscription": sub.id if sub else None,
            "total_discount_amounts": [],
            "total_tax_amounts": [],
            "webhooks_delivered_at": at,
        }
        self.invoices.append(invoice)
        self.lines[inv_id] = lines
        if sub is not None:
            sub.latest_invoice = inv_id
        return invoice

    def _settle(self) -> None:
        """Totals, discounts, tax, customer credit and numbers, in each customer's order."""
        for customer in self.customers:
            balance, number = 0, 0
            mine = [i for i in self.invoices if i["customer"] == customer.id]
            for inv in sorted(mine, key=lambda i: (i["created"], i["id"])):
                lines = self.lines[inv["id"]]
                subtotal = sum(line["amount"] for line in lines)
                off = sum(d["amount"] for line in lines for d in line["discount_amounts"])
                tax = sum(t["amount"] for line in lines for t in line["tax_amounts"])
                total = subtotal - off + tax
                inv.update(subtotal=subtotal, total=total, starting_balance=balance)
                if customer.tax_rate is not None:
                    inv["tax"] = tax
                    inv["total_tax_amounts"] = [tax_amount(tax, customer.tax_rate)]
                if inv["id"] in self._discounts:
                    coupon, di, start, sub_id = self._discounts[inv["id"]]
                    inv["discount"] = self._discount_json(coupon, di, start, customer.id, sub_id)
                    inv["discounts"] = [di]
                    inv["total_discount_amounts"] = [{"amount": off, "discount": di}]
                owed = total + balance
                inv["amount_due"] = max(owed, 0)
                if inv["status"] in ("open", "paid", "uncollectible"):  # finalized: credit used
                    balance = min(owed, 0)
                    inv["ending_balance"] = balance
                if inv["status"] != "draft":
                    number += 1
                    inv["number"] = f"{customer.prefix}-{number:04d}"
                paid = inv["amount_due"] if inv["status"] == "paid" else 0
                inv["amount_paid"] = paid
                inv["amount_remaining"] = 0 if inv["status"] == "void" else inv["amount_due"] - paid

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, customer: _Customer, at: int, items: Sequence[tuple[Price, int | None]],
                  *, trial_days: int = 0, converts: bool = True, coupon: Coupon | None = None,
                  first_payment_fails: bool = False) -> _Sub:  # fmt: skip
        first = items[0][0]
        if any((p.currency, p.interval, p.interval_count) != (first.currency, first.interval,
               first.interval_count) for p, _ in items):  # fmt: skip
            raise ValueError("a subscription's prices share one currency and one interval")
        period = (at, add_interval(at, first.interval, first.interval_count))
        sub = _Sub(self.id("sub"), customer, first.currency, at,
                   [(self.id("si"), Item(p, q)) for p, q in items], at, first.interval,
                   first.interval_count, period)  # fmt: skip
        self.subs.append(sub)
        if coupon is not None:
            sub.coupon, sub.discount = coupon, (self.id("di"), at)
            self._uses[coupon.id] += 1
        if trial_days:
            sub.trial = sub.period = (at, at + trial_days * _DAY)
            sub.status, sub.converts, sub.anchor = "trialing", converts, sub.trial[1]
            lines = []
            for si, item in sub.items:
                if item.quantity is not None:
                    text = f"Trial period for {item.price.nickname}"
                    lines.append(self._line(sub, si, item, 0, sub.trial, description=text))
            self._invoice(sub, customer, at, "subscription_create", lines)
            self._record(sub, at, "trialing")
            return sub
        lines = self._period_lines(sub, None)
        if not first_payment_fails:
            self._invoice(sub, customer, at, "subscription_create", lines)
            if coupon is not None and coupon.duration == "once":
                sub.coupon = None  # spent on the first invoice
            self._record(sub, at, "active")
            return sub
        expires = at + 23 * _HOUR  # Stripe gives up on an incomplete subscription after 23 h
        sub.status = "incomplete"
        self._record(sub, at, "incomplete")
        if expires >= self.end:
            self._invoice(sub, customer, at, "subscription_create", lines, status="open")
        else:
            self._invoice(sub, customer, at, "subscription_create", lines, status="void",
                          resolved=expires)  # fmt: skip
            sub.status, sub.ended_at = "incomplete_expired", expires
            self._record(sub, expires, "incomplete_expired")
        return sub

    def _advance(self, sub: _Sub, until: int) -> None:
        """Renew the subscription at every period end up to ``until`` (and before the end)."""
        while sub.status in _RENEWING and sub.period[1] <= until and sub.period[1] < self.end:
            self._renew(sub)

    def _renew(self, sub: _Sub) -> None:
        t = sub.period[1]
        if sub.cancel_at_period_end or (sub.status == "trialing" and not sub.converts):
            self._end(sub, t)
            return
        billed: tuple[int, int] | None = sub.period
        if sub.status == "trialing":
            sub.anchor, sub.k, sub.status, billed = t, 0, "active", None
        else:
            sub.k += 1
        if sub.pending is not None:
            sub.items = self._reitem(sub, sub.pending)
            sub.pending = None
        sub.period = (t, add_interval(sub.anchor, sub.interval, sub.interval_count * (sub.k + 1)))
        lines = self._period_lines(sub, billed)
        fate, sub.failing = sub.failing, None
        kind, resolved = fate if fate else ("", 0)
        resolved += t
        status, attempts, marks = "paid", 1, [(t, "active")]
        if sub.status == "unpaid":  # Stripe leaves an unpaid subscription's invoices as drafts
            status, marks = "draft", [(t, "unpaid")]
        elif fate and resolved >= self.end:  # still being retried at the end
            status, attempts, marks, sub.status = "open", 3, [(t, "past_due")], "past_due"
        elif kind == "late":
            if resolved >= sub.period[1]:
                raise ValueError(f"{sub.id}: a late payment must come before the next renewal")
            attempts, marks = 3, [(t, "past_due"), (resolved, "active")]
        elif fate:
            status, attempts, marks = "uncollectible", 4, [(t, "unpaid")]
        self._invoice(sub, sub.customer, t, "subscription_cycle", lines, status=status,
                      resolved=resolved, period=billed, attempts=attempts)  # fmt: skip
        for when, state in marks:
            self._record(sub, when, state)
        if status == "uncollectible":
            if kind == "cancel":
                self._end(sub, resolved)
            else:
                sub.status = "unpaid"

    def finish(self) -> None:
        """Renew every subscription up to the end, then settle the invoices."""
        for sub in self.subs:
            self._advance(sub, self.end - 1)
        self._settle()

    def _end(self, sub: _Sub, at: int) -> None:
        sub.status, sub.ended_at = "canceled", at
        sub.canceled_at = sub.canceled_at if sub.canceled_at is not None else at
        self._record(sub, at, "canceled")

    def _reitem(self, sub: _Sub, items: Sequence[Item]) -> list[tuple[str, Item]]:
        """New items in the place of the old ones: the n-th keeps the n-th item's id."""
        ids = [si for si, _ in sub.items]
        return [(ids[n] if n < len(ids) else self.id("si"), item) for n, item in enumerate(items)]

    def _live(self, sub: _Sub, at: int) -> None:
        if at >= self.end:
            raise ValueError(f"{sub.id}: {at} is after the account's end")
        self._advance(sub, at)
        if sub.status not in ("active", "past_due"):
            raise ValueError(f"{sub.id} is {sub.status} at {at}")

    def change(self, sub: _Sub, at: int, items: Sequence[tuple[Price, int | None]]) -> None:
        """Change items now, prorated and invoiced at once (Stripe's ``always_invoice``)."""
        self._live(sub, at)
        start, end = sub.period
        new = self._reitem(sub, [Item(p, q) for p, q in items])
        old = dict(sub.items)
        day = dt.datetime.fromtimestamp(at, self.zone).strftime("%d %b %Y")
        lines = []
        for si in dict.fromkeys([*old, *(si for si, _ in new)]):
            before, after = old.get(si), dict(new).get(si)
            if before == after:
                continue
            for item, sign, what in ((before, -1, "Unused"), (after, 1, "Remaining")):
                if item is None or item.quantity is None:
                    continue  # metered items are billed on usage, never prorated
                full = item.price.unit_amount * item.quantity
                amount = sign * round(Fraction(full * (end - at), end - start))
                if amount == 0:
                    raise ValueError(f"{sub.id}: a proration at {at} would be zero")
                text = f"{what} time on {item.quantity} × {item.price.nickname} after {day}"
                lines.append(
                    self._line(sub, si, item, amount, (at, end), description=text, proration=True)
                )
        sub.items = new
        self._invoice(sub, sub.customer, at, "subscription_update", lines)
        self._record(sub, at, sub.status)

    def change_at_renewal(self, sub: _Sub, at: int, items: Sequence[tuple[Price, int]]) -> None:
        """Decided at ``at``: from the next period on, ``items`` (no proration)."""
        self._live(sub, at)
        sub.pending = [Item(p, q) for p, q in items]

    def cancel(self, sub: _Sub, at: int) -> None:
        """Cancel now: ``ended_at`` is ``at``; the period already paid is not refunded."""
        self._live(sub, at)
        self._end(sub, at)

    def cancel_at_period_end(self, sub: _Sub, at: int) -> None:
        self._live(sub, at)
        sub.cancel_at_period_end, sub.canceled_at = True, at

    def apply_coupon(self, sub: _Sub, at: int, coupon: Coupon) -> None:
        self._live(sub, at)
        sub.coupon, sub.discount = coupon, (self.id("di"), at)
        self._uses[coupon.id] += 1
        self._record(sub, at, sub.status)

    def fail_next_renewal(self, sub: _Sub, at: int, kind: str, days: int) -> None:
        """The next renewal's payment fails: ``late`` (paid ``days`` later), ``cancel`` or
        ``unpaid`` (marked uncollectible ``days`` later; the subscription is canceled then,
        or left unpaid with draft invoices)."""
        self._live(sub, at)
        sub.failing = (kind, days * _DAY)

    def one_off(self, customer: _Customer, at: int, price: Price, *, status: str) -> None:
        """An invoice without a subscription (say a setup fee), sent for payment by e-mail."""
        line = self._line(None, None, Item(price, 1), price.unit_amount, (at, at))
        resolved = at + 5 * _DAY if status in ("paid", "void") else None
        self._invoice(None, customer, at, "manual", [line], status=status, resolved=resolved,
                      description=f"{price.nickname} for {customer.name}")  # fmt: skip

    def in_period(self, sub: _Sub, k: int, fraction: float) -> int:
        """A time ``fraction`` of the way through the subscription's ``k``-th period."""
        start = add_interval(sub.anchor, sub.interval, sub.interval_count * k)
        end = add_interval(sub.anchor, sub.interval, sub.interval_count * (k + 1))
        return start + int((end - start) * fraction)

    # ------------------------------------------------------------------ JSON

    def _coupon_json(self, coupon: Coupon) -> dict[str, Any]:
        return {
            "id": coupon.id,
            "object": "coupon",
            **dict.fromkeys(_UNSET["coupon"]),
            "created": coupon.created,
            "duration": coupon.duration,
            "livemode": False,
            "metadata": {},
            "name": coupon.name,
            "percent_off": float(coupon.percent_off),  # Stripe's API gives a JSON number
            "times_redeemed": self._uses[coupon.id],
            "valid": True,
        }

    def _discount_json(
        self, coupon: Coupon, di: str, start: int, customer: str, sub: str | None
    ) -> dict[str, Any]:
        return {
            "id": di,
            "object": "discount",
            **dict.fromkeys(_UNSET["discount"]),
            "coupon": self._coupon_json(coupon),
            "customer": customer,
            "start": start,
            "subscription": sub,
        }

    def subscription_json(self, sub: _Sub) -> dict[str, Any]:
        items: list[dict[str, Any]] = [
            {"id": si, "object": "subscription_item", "billing_thresholds": None,
             "created": sub.created, "metadata": {}, "price": price_json(item.price),
             "subscription": sub.id, "tax_rates": [],
             **({} if item.quantity is None else {"quantity": item.quantity})}
            for si, item in sub.items
        ]  # fmt: skip
        discount = None
        if sub.coupon is not None and sub.discount is not None:
            discount = self._discount_json(sub.coupon, *sub.discount, sub.customer.id, sub.id)
        return {
            "id": sub.id,
            "object": "subscription",
            **dict.fromkeys(_UNSET["subscription"]),
            "automatic_tax": {"enabled": False},
            "billing_cycle_anchor": sub.anchor,
            "cancel_at": sub.period[1] if sub.cancel_at_period_end else None,
            "cancel_at_period_end": sub.cancel_at_period_end,
            "canceled_at": sub.canceled_at,
            "collection_method": "charge_automatically",
            "created": sub.created,
            "current_period_end": sub.period[1],
            "current_period_start": sub.period[0],
            "customer": sub.customer.id,
            "default_tax_rates": [],
            "discount": discount,
            "ended_at": sub.ended_at,
            "items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "url": f"/v1/subscription_items?subscription={sub.id}",
            },
            "latest_invoice": sub.latest_invoice,
            "livemode": False,
            "metadata": {},
            "start_date": sub.created,
            "status": sub.status,
            "trial_end": sub.trial[1] if sub.trial else None,
            "trial_start": sub.trial[0] if sub.trial else None,
        }


def price_json(price: Price) -> dict[str, Any]:
    """The ``price`` object of Stripe's API."""
    recurring = None
    if price.interval != "once":
        recurring = {
            "aggregate_usage": "sum" if price.usage_type == "metered" else None,
            "interval": price.interval,
            "interval_count": price.interval_count,
            "trial_period_days": None,
            "usage_type": price.usage_type,
        }
    return {
        "id": price.id,
        "object": "price",
        **dict.fromkeys(_UNSET["price"]),
        "active": True,
        "billing_scheme": "per_unit",
        "created": price.created,
        "currency": price.currency,
        "livemode": False,
        "metadata": {},
        "nickname": price.nickname,
        "product": price.product,
        "recurring": recurring,
        "tax_behavior": "exclusive",
        "type": "recurring" if recurring else "one_time",
        "unit_amount": price.unit_amount,
        "unit_amount_decimal": str(price.unit_amount),
    }


def tax_amount(amount: int, rate: str | None) -> dict[str, Any]:
    return {"amount": amount, "inclusive": False, "tax_rate": rate}


def _scenario(e: _Engine) -> None:
    """The hand-built customers: one or more for every case the metrics must handle.

    Month numbers count from the account's first month (0) to its fourteenth (13); days and
    hours are local to the account's time zone.
    """
    usd = {tier: e.plan("usd", tier) for tier in range(3)}
    forever20 = e.coupon("20% forever", "forever", 20)
    welcome = e.coupon("25% off the first invoice", "once", 25)
    free = e.coupon("Friends and family", "forever", 100)
    at, month = e.local, e.local  # month(n) is the first second of month n

    acme = e.customer("Acme Corp")  # seats up mid-period, then a cheaper tier at renewal
    s = e.subscribe(acme, at(0, 3, 9), [(usd[1], 3)])
    e.change(s, at(2, 20, 15), [(usd[1], 5)])
    e.change_at_renewal(s, at(5, 10), [(usd[0], 5)])
    setup = e.price("usd", 25000, "once", nickname="Onboarding")
    e.one_off(acme, at(0, 4), setup, status="paid")
    e.one_off(acme, at(6, 2), setup, status="void")

    globex = e.customer("Globex")  # two subscriptions; the annual one upgraded mid-year
    e.subscribe(globex, at(1, 7, 10), [(usd[0], 1)])
    s = e.subscribe(globex, at(3, 15, 11), [(e.plan("usd", 1, "year"), 1)])
    e.change(s, at(8, 2, 16), [(e.plan("usd", 2, "year"), 1)])
    e.one_off(globex, e.end - 2 * _DAY, setup, status="draft")

    s = e.subscribe(e.customer("Initech"), at(2, 25, 8), [(usd[1], 2)], trial_days=14,
                    coupon=forever20)  # fmt: skip
    e.change(s, at(9, 14, 10), [(usd[1], 3)])  # prorations are not discountable
    e.subscribe(e.customer("Hooli"), at(4, 10), [(usd[1], 1)], trial_days=14, converts=False)

    s = e.subscribe(e.customer("Umbrella"), at(1, 12, 14), [(usd[1], 1)])
    e.cancel(s, at(6, 18, 13))  # canceled now, mid-period
    s = e.subscribe(e.customer("Stark Industries"), at(0, 20, 7), [(usd[2], 1)])
    e.cancel_at_period_end(s, at(7, 5, 9))

    s = e.subscribe(e.customer("Wayne Enterprises"), at(2, 2, 12), [(usd[1], 4)])
    e.fail_next_renewal(s, at(4, 10), "late", 9)  # the month-5 renewal is paid 9 days late
    s = e.subscribe(e.customer("Wonka"), at(1, 28, 18), [(usd[0], 2)])
    e.fail_next_renewal(s, at(8, 5), "cancel", 21)  # uncollectible, then canceled
    s = e.subscribe(e.customer("Delinquent Ltd"), at(3, 4, 10), [(usd[1], 1)])
    e.fail_next_renewal(s, at(9, 10), "unpaid", 15)  # uncollectible, then unpaid with drafts
    s = e.subscribe(e.customer("Nakatomi"), at(10, 2, 10), [(usd[0], 3)])
    e.fail_next_renewal(s, at(12, 20), "late", 60)  # still open at the end: past_due

    cyberdyne = e.customer("Cyberdyne")  # churns, comes back later on a quarterly plan
    e.cancel(e.subscribe(cyberdyne, at(1, 5, 9), [(usd[0], 2)]), at(4, 9, 17))
    e.subscribe(cyberdyne, at(8, 14, 9), [(e.plan("usd", 1, "month", 3), 2)])

    soylent = e.customer("Soylent")  # bills in EUR, leaves, later comes back in USD
    s = e.subscribe(soylent, at(0, 10, 10), [(e.plan("eur", 1), 2)])
    e.cancel_at_period_end(s, at(5, 1, 12))
    e.subscribe(soylent, at(7, 1, 12), [(usd[1], 2)])

    s = e.subscribe(e.customer("Tyrell"), at(0, 15, 3), [(e.plan("jpy", 2), 2)], coupon=welcome)
    e.change(s, at(6, 3, 4), [(e.plan("jpy", 2), 3)])
    s = e.subscribe(e.customer("Oscorp"), at(3, 1, 9), [(e.plan("gbp", 1, "week"), 3)])
    e.cancel(s, at(10, 12, 9))
    e.subscribe(e.customer("Bergmann GmbH", tax_percent=19), at(2, 3, 9),
                [(e.plan("eur", 2, "month", 3), 1)])  # fmt: skip

    metered = e.price("usd", 5, "month", nickname="API calls", usage="metered")
    e.subscribe(e.customer("Massive Dynamic"), at(2, 8, 9), [(usd[2], 1), (metered, None)])
    addons = [e.price("usd", 500 + 100 * n, "month", nickname=f"Add-on {n + 1}") for n in range(11)]
    e.subscribe(e.customer("Aperture Science"), at(4, 1, 9),
                [(usd[1], 10), *((a, 1) for a in addons)])  # fmt: skip  # 12 lines an invoice
    e.subscribe(e.customer("Free Friend"), at(3, 3, 9), [(usd[1], 1)], coupon=free)
    s = e.subscribe(e.customer("Sterling Cooper"), at(1, 1, 9), [(usd[1], 2)])
    e.apply_coupon(s, at(6, 10, 9), forever20)  # a forever coupon from mid-life on
    e.subscribe(e.customer("Bluth Company"), at(7, 3, 9), [(usd[0], 1)], first_payment_fails=True)
    e.subscribe(e.customer("Late Trial"), e.end - 5 * _DAY, [(usd[0], 1)], trial_days=30)

    # The last second of a month and the first second of the next.
    e.subscribe(e.customer("Vandelay Industries"), month(6) - 1, [(usd[0], 1)])
    e.subscribe(e.customer("Kramerica"), month(6), [(usd[0], 1)])
    e.cancel(e.subscribe(e.customer("Pied Piper"), at(2, 11), [(usd[0], 1)]), month(10) - 1)
    e.cancel(e.subscribe(e.customer("Dunder Mifflin"), at(3, 6), [(usd[0], 1)]), month(10))
    s = e.subscribe(e.customer("Prestige Worldwide"), at(6, 20, 12), [(usd[0], 4)])
    e.change(s, month(8) - 1, [(usd[0], 6)])  # up at the last second of month 7
    e.change(s, month(9), [(usd[0], 2)])  # down at the first second of month 9: a credit


def _random_customers(e: _Engine, count: int) -> None:
    """``count`` more customers with a random plan and a few random events each."""
    rng = e.rng
    plans = [("month", 1)] * 14 + [("year", 1)] * 3 + [("month", 3)] * 2 + [("week", 1)]
    forever20 = e.coupon("20% forever", "forever", 20)
    for n in range(count):
        currency = rng.choices(list(_MONTHLY), weights=(6, 2, 1, 1))[0]
        tier, qty = rng.choices((0, 1, 2), weights=(5, 3, 1))[0], rng.choice((1, 1, 2, 3, 5, 8))
        interval, every = rng.choice(plans)
        start = e.start + rng.randrange(e.end - e.start - 20 * _DAY)
        coupon = forever20 if rng.random() < 0.1 else None
        customer, price = (
            e.customer(f"Customer {n + 1:03d}"),
            e.plan(currency, tier, interval, every),
        )
        sub = e.subscribe(customer, start, [(price, qty)], coupon=coupon)
        k = 0
        while True:
            k += rng.randint(1, 4)
            at = e.in_period(sub, k, rng.uniform(0.1, 0.9))
            if at >= e.end:
                break
            kind = rng.choices(("up", "down", "late", "cancel", "cancel_end"), (4, 2, 1, 1, 1))[0]
            if kind == "up":
                tier, qty = (tier + 1, qty) if tier < 2 and rng.random() < 0.4 else (tier, qty + 2)
                e.change(sub, at, [(e.plan(currency, tier, interval, every), qty)])
            elif kind == "down" and (tier > 0 or qty > 1):
                tier, qty = (tier - 1, qty) if tier > 0 else (tier, qty - 1)
                e.change_at_renewal(sub, at, [(e.plan(currency, tier, interval, every), qty)])
            elif kind == "late":
                days = rng.randint(2, 6 if interval == "week" else 12)
                e.fail_next_renewal(sub, at, "late", days)
                k += 1  # nothing else happens to it until the late payment is in
            elif kind.startswith("cancel"):
                (e.cancel if kind == "cancel" else e.cancel_at_period_end)(sub, at)
                break


class SandboxBilling:
    """The subscriptions and invoices of one synthetic account, final as of ``end``.

    ``start``/``end``: unix seconds (``start`` is the local midnight that begins the first
    month, ``end`` the local midnight of the ``end`` date); ``tz``: the zone whose months the
    hand-built changes are placed in. Read-only: serve the dicts, never change them.
    """

    def __init__(self, engine: _Engine, *, seed: int, tz: str) -> None:
        self.start, self.end, self.tz, self.seed = engine.start, engine.end, tz, seed
        self.subscriptions = _newest_first([engine.subscription_json(s) for s in engine.subs])
        self.invoices = _newest_first(engine.invoices)
        self._lines = engine.lines
        self._invoice_by_id = {i["id"]: i for i in self.invoices}
        self._subscription_by_id = {s["id"]: s for s in self.subscriptions}
        self.history: dict[str, SubscriptionHistory] = {
            s.id: SubscriptionHistory(s.id, s.customer.id, s.currency, tuple(s.changes))
            for s in engine.subs
        }
        self.customer_names = {c.id: c.name for c in engine.customers}

    @classmethod
    def generate(
        cls,
        *,
        end: dt.date,
        seed: int = 7,
        tz: str = "UTC",
        customers: int = 24,
        hand_built: bool = True,
    ) -> SandboxBilling:
        """The hand-built customers (unless not ``hand_built``) plus ``customers`` random ones,
        over the :data:`MONTHS` whole months before ``end``'s month and the days of that month
        before ``end``."""
        zone = ZoneInfo(tz)
        index = end.year * 12 + end.month - 1 - MONTHS
        first = dt.date(index // 12, index % 12 + 1, 1)
        start, stop = (
            int(dt.datetime.combine(d, dt.time(0), zone).timestamp()) for d in (first, end)
        )
        engine = _Engine(start=start, end=stop, zone=zone, rng=random.Random(f"billing-{seed}"))
        if hand_built:
            _scenario(engine)
        _random_customers(engine, customers)
        engine.finish()
        return cls(engine, seed=seed, tz=tz)

    @classmethod
    def scenario(cls, *, end: dt.date, seed: int = 7, tz: str = "UTC") -> SandboxBilling:
        """Only the hand-built customers."""
        return cls.generate(end=end, seed=seed, tz=tz, customers=0)

    @classmethod
    def empty(cls, *, end: dt.date, tz: str = "UTC") -> SandboxBilling:
        """An account that bills nothing through Stripe: no subscription, no invoice."""
        return cls.generate(end=end, tz=tz, customers=0, hand_built=False)

    def invoice(self, invoice_id: str) -> dict[str, Any] | None:
        """The stored invoice without its ``lines`` (read-only), or None."""
        return self._invoice_by_id.get(invoice_id)

    def lines(self, invoice_id: str) -> list[dict[str, Any]] | None:
        """Every line of an invoice, in Stripe's order (read-only), or None."""
        return self._lines.get(invoice_id)

    def subscription(self, subscription_id: str) -> dict[str, Any] | None:
        return self._subscription_by_id.get(subscription_id)


def _newest_first(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The API's list order: newest first, ties broken by the larger id."""
    return sorted(objects, key=lambda o: (o["created"], o["id"]), reverse=True)
