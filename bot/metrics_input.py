"""Stripe subscriptions and invoices -> the typed records that MRR is computed from. Pure.

Reads the JSON objects as ``GET /v1/subscriptions?status=all`` and ``GET /v1/invoices`` return
them, in the older API shape (``invoice.subscription``, ``line.price``,
``line.subscription_item``, ``subscription.discount``, ``discount.coupon``) and in the newer one
(``invoice.parent.subscription_details.subscription``, ``line.pricing.price_details.price``,
``line.parent.subscription_item_details``, ``subscription.discounts``,
``discount.source.coupon``); whichever is present is used. An expandable field may be an id or
the object. A malformed object raises :class:`MalformedObject`, a ``ValueError`` whose message
names the object, its id and the field.

Money stays exact: unit amounts are ``Fraction`` of minor units (``unit_amount_decimal`` wins
over ``unit_amount``: it keeps sub-minor-unit prices), and ``percent_off``, a JSON number, goes
through its shortest decimal text into a ``Fraction``; no float survives parsing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, NoReturn

from bot.money import MoneyError, normalize_currency

INTERVALS = frozenset({"day", "week", "month", "year"})


class MalformedObject(ValueError):
    """A Stripe object that lacks a field the metrics need, or has one of the wrong kind."""


@dataclass(frozen=True, slots=True)
class Recurring:
    interval: str  # day | week | month | year
    interval_count: int
    usage_type: str  # licensed | metered


@dataclass(frozen=True, slots=True)
class Tier:
    up_to: int | None  # None: the last tier, without an upper bound
    unit_amount: Fraction
    flat_amount: Fraction


@dataclass(frozen=True, slots=True)
class Price:
    """A price (or a legacy plan). ``unit_amount`` is in minor units of ``currency``."""

    id: str
    currency: str
    unit_amount: Fraction | None
    recurring: Recurring | None  # None: a one-time price
    billing_scheme: str = "per_unit"  # per_unit | tiered
    tiers_mode: str | None = None  # graduated | volume
    tiers: tuple[Tier, ...] | None = None  # None: not given (Stripe sends them only on expand)
    divide_by: int = 1  # transform_quantity
    round_up: bool = False
    currency_options: tuple[tuple[str, Fraction], ...] = ()

    @property
    def licensed(self) -> bool:
        return self.recurring is not None and self.recurring.usage_type == "licensed"

    def unit_amount_in(self, currency: str) -> Fraction | None:
        """The unit amount in ``currency``: the price's own, or its ``currency_options`` one."""
        if currency == self.currency:
            return self.unit_amount
        return dict(self.currency_options).get(currency)


@dataclass(frozen=True, slots=True)
class Coupon:
    id: str
    duration: str  # forever | once | repeating
    percent_off: Fraction | None
    amount_off: int | None


@dataclass(frozen=True, slots=True)
class Discount:
    id: str
    coupon: Coupon | None  # None: only the coupon's id was given
    start: int
    end: int | None
    # Applied to the customer rather than to a subscription, an invoice or an item.
    customer_level: bool = False


@dataclass(frozen=True, slots=True)
class SubscriptionItem:
    id: str
    price: Price | None  # None: only the price's id was given
    quantity: int | None
    has_discounts: bool = False  # item-level discounts (newer API versions)


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    customer: str
    currency: str
    start_date: int
    ended_at: int | None
    trial_start: int | None
    trial_end: int | None
    status: str
    items: tuple[SubscriptionItem, ...]
    discounts: tuple[Discount, ...] = ()
    unexpanded_discounts: tuple[str, ...] = ()  # discount ids given without the object


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    id: str
    amount: int  # minor units, before discounts, without tax
    period_start: int
    period_end: int
    price: Price | None
    price_id: str | None
    quantity: int | None
    subscription_item: str | None
    subscription: str | None  # the line's own subscription, when it names one
    proration: bool = False
    type: str = ""


@dataclass(frozen=True, slots=True)
class Invoice:
    id: str
    customer: str | None
    subscription: str | None
    currency: str
    status: str | None  # draft | open | paid | uncollectible | void
    lines: tuple[InvoiceLine, ...]
    customer_discount: bool = False  # a customer-level discount shows on the invoice


@dataclass(frozen=True, slots=True)
class _View:
    """A mapping inside a Stripe object, with what an error message must name."""

    data: Mapping[str, Any]
    kind: str
    oid: str
    path: str = ""

    def fail(self, key: str, problem: str) -> NoReturn:
        raise MalformedObject(f"{self.kind} {self.oid}: {self.path}{key} {problem}")

    def raw(self, key: str) -> Any:
        return self.data.get(key)

    def opt_int(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, got {value!r}")
        return value

    def integer(self, key: str) -> int:
        value = self.opt_int(key)
        if value is None:
            self.fail(key, "is missing")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail(key, f"must be a string, got {value!r}")
        return value

    def text(self, key: str) -> str:
        value = self.opt_text(key)
        if not value:
            self.fail(key, "is missing")
        return value

    def currency(self, key: str) -> str:
        try:
            return normalize_currency(self.text(key))
        except MoneyError:
            self.fail(key, f"is not a currency code: {self.data.get(key)!r}")

    def ref(self, key: str) -> str | None:
        """An expandable field: the id, whether the id or the object was given."""
        value = self.data.get(key)
        if value is None or isinstance(value, str):
            return value or None
        if isinstance(value, Mapping) and isinstance(value.get("id"), str):
            return str(value["id"])
        self.fail(key, f"must be an id or an object with an id, got {value!r}")

    def sub(self, key: str) -> _View | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.fail(key, f"must be an object, got {value!r}")
        return _View(value, self.kind, self.oid, f"{self.path}{key}.")

    def seq(self, key: str) -> Sequence[Any]:
        value = self.data.get(key)
        if value is None:
            return ()
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            self.fail(key, f"must be a list, got {value!r}")
        return value

    def at(self, key: str, index: int, value: Any) -> _View:
        if not isinstance(value, Mapping):
            self.fail(f"{key}[{index}]", f"must be an object, got {value!r}")
        return _View(value, self.kind, self.oid, f"{self.path}{key}[{index}].")

    def decimal(self, key: str) -> Fraction | None:
        """An exact number from an int, a decimal string or a JSON number (via its text)."""
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool):
            self.fail(key, f"must be a number, got {value!r}")
        if isinstance(value, int):
            return Fraction(value)
        try:
            # repr of a float is its shortest round-tripping decimal: 25.5 -> "25.5".
            number = Decimal(repr(value) if isinstance(value, float) else str(value))
        except InvalidOperation:
            self.fail(key, f"must be a number, got {value!r}")
        if not number.is_finite():
            self.fail(key, f"must be a finite number, got {value!r}")
        return Fraction(number)


def _root(obj: Mapping[str, Any], kind: str) -> _View:
    if not isinstance(obj, Mapping):
        raise MalformedObject(f"{kind}: expected an object, got {type(obj).__name__}")
    oid = obj.get("id")
    if not isinstance(oid, str) or not oid:
        raise MalformedObject(f"{kind} without an id: id is missing")
    return _View(obj, kind, oid)


def _amount(view: _View, key: str) -> Fraction | None:
    """``key_decimal`` when given (exact to 12 decimals), else the integer ``key``."""
    exact = view.decimal(f"{key}_decimal")
    return exact if exact is not None else view.decimal(key)


def _recurring(view: _View) -> Recurring:
    interval = view.text("interval")
    if interval not in INTERVALS:
        view.fail("interval", f"must be one of day, week, month, year, got {interval!r}")
    count = view.integer("interval_count")
    if count < 1:
        view.fail("interval_count", f"must be at least 1, got {count}")
    return Recurring(interval, count, view.opt_text("usage_type") or "licensed")


def _tiers(view: _View) -> tuple[Tier, ...] | None:
    if view.raw("tiers") is None:
        return None
    out = []
    for i, raw in enumerate(view.seq("tiers")):
        tier = view.at("tiers", i, raw)
        up_to = tier.raw("up_to")
        out.append(
            Tier(
                up_to=None if up_to in (None, "inf") else tier.integer("up_to"),
                unit_amount=_amount(tier, "unit_amount") or Fraction(0),
                flat_amount=_amount(tier, "flat_amount") or Fraction(0),
            )
        )
    return tuple(out)


def _transform(view: _View, key: str) -> tuple[int, bool]:
    t = view.sub(key)
    if t is None:
        return 1, False
    divide_by = t.integer("divide_by")
    if divide_by < 1:
        t.fail("divide_by", f"must be at least 1, got {divide_by}")
    return divide_by, t.opt_text("round") == "up"


def _price(view: _View) -> Price:
    if view.raw("object") == "plan":
        return _plan(view)
    rec = view.sub("recurring")
    options = []
    opts = view.sub("currency_options")
    for code in sorted(opts.data) if opts else ():
        option = opts.sub(code) if opts else None
        unit = _amount(option, "unit_amount") if option else None
        if unit is not None:
            options.append((code.lower(), unit))
    divide_by, round_up = _transform(view, "transform_quantity")
    return Price(
        id=view.text("id"),
        currency=view.currency("currency"),
        unit_amount=_amount(view, "unit_amount"),
        recurring=_recurring(rec) if rec is not None else None,
        billing_scheme=view.opt_text("billing_scheme") or "per_unit",
        tiers_mode=view.opt_text("tiers_mode"),
        tiers=_tiers(view),
        divide_by=divide_by,
        round_up=round_up,
        currency_options=tuple(options),
    )


def _plan(view: _View) -> Price:
    """A legacy plan: always recurring, its amount in ``amount``."""
    divide_by, round_up = _transform(view, "transform_usage")
    return Price(
        id=view.text("id"),
        currency=view.currency("currency"),
        unit_amount=_amount(view, "amount"),
        recurring=_recurring(view),
        billing_scheme=view.opt_text("billing_scheme") or "per_unit",
        tiers_mode=view.opt_text("tiers_mode"),
        tiers=_tiers(view),
        divide_by=divide_by,
        round_up=round_up,
    )


def parse_price(obj: Mapping[str, Any]) -> Price:
    """A ``price`` (or legacy ``plan``) object, e.g. one of ``GET /v1/prices``."""
    kind = obj.get("object") if isinstance(obj, Mapping) else None
    return _price(_root(obj, kind if kind == "plan" else "price"))


def _coupon(view: _View) -> Coupon:
    percent = view.decimal("percent_off")
    if percent is not None and not 0 <= percent <= 100:
        view.fail("percent_off", f"must be between 0 and 100, got {view.raw('percent_off')!r}")
    return Coupon(
        id=view.text("id"),
        duration=view.text("duration"),
        percent_off=percent,
        amount_off=view.opt_int("amount_off"),
    )


def _discount(view: _View) -> Discount:
    coupon_view = view.sub("coupon") if isinstance(view.raw("coupon"), Mapping) else None
    source = view.sub("source")
    if coupon_view is None and source is not None and isinstance(source.raw("coupon"), Mapping):
        coupon_view = source.sub("coupon")
    owners = ("subscription", "subscription_item", "invoice", "invoice_item")
    return Discount(
        id=view.text("id"),
        coupon=_coupon(coupon_view) if coupon_view is not None else None,
        start=view.integer("start"),
        end=view.opt_int("end"),
        customer_level=view.raw("customer") is not None
        and all(view.raw(k) is None for k in owners),
    )


def _discounts(view: _View) -> tuple[tuple[Discount, ...], tuple[str, ...]]:
    """``discount`` (older versions) and ``discounts`` (newer, ids unless expanded), merged."""
    found: dict[str, Discount] = {}
    ids: list[str] = []
    single = view.sub("discount")
    if single is not None:
        d = _discount(single)
        found[d.id] = d
    for i, raw in enumerate(view.seq("discounts")):
        if isinstance(raw, str):
            ids.append(raw)
        else:
            d = _discount(view.at("discounts", i, raw))
            found[d.id] = d
    unexpanded = tuple(dict.fromkeys(x for x in ids if x not in found))
    return tuple(found.values()), unexpanded


def _item(view: _View) -> SubscriptionItem:
    key = "price" if view.raw("price") is not None else "plan"
    found = view.sub(key) if isinstance(view.raw(key), Mapping) else None
    price = None
    if found is not None:
        price = _plan(found) if key == "plan" else _price(found)
    return SubscriptionItem(
        id=view.text("id"),
        price=price,
        quantity=view.opt_int("quantity"),
        has_discounts=bool(view.seq("discounts")),
    )


def parse_subscription(obj: Mapping[str, Any]) -> Subscription:
    """A ``subscription`` object as ``GET /v1/subscriptions?status=all`` lists it."""
    view = _root(obj, "subscription")
    items_list = view.sub("items")
    if items_list is None:
        view.fail("items", "is missing")
    items = tuple(
        _item(items_list.at("data", i, raw)) for i, raw in enumerate(items_list.seq("data"))
    )
    # Older API versions have no subscription currency: its prices' currency is the same.
    if view.raw("currency") is not None:
        currency = view.currency("currency")
    else:
        known = [it.price.currency for it in items if it.price is not None]
        if not known:
            view.fail("currency", "is missing, and no item has a price to tell it")
        currency = known[0]
    customer = view.ref("customer")
    if customer is None:
        view.fail("customer", "is missing")
    discounts, unexpanded = _discounts(view)
    return Subscription(
        id=view.oid,
        customer=customer,
        currency=currency,
        start_date=view.integer("start_date"),
        ended_at=view.opt_int("ended_at"),
        trial_start=view.opt_int("trial_start"),
        trial_end=view.opt_int("trial_end"),
        status=view.opt_text("status") or "",
        items=items,
        discounts=discounts,
        unexpanded_discounts=unexpanded,
    )


def _line_price(view: _View, prices: Mapping[str, Price]) -> tuple[Price | None, str | None]:
    """The line's price, wherever this API version puts it, and its id."""
    holder: _View | None = view
    key = "price"
    if view.raw("price") is None:
        pricing = view.sub("pricing")
        details = pricing.sub("price_details") if pricing is not None else None
        holder = details
        if details is None or details.raw("price") is None:
            holder, key = (view, "plan") if view.raw("plan") is not None else (None, "")
    if holder is None:
        return None, None
    raw = holder.raw(key)
    if isinstance(raw, str):
        return prices.get(raw), raw
    found = holder.sub(key)
    if found is None:
        return None, None
    price = _plan(found) if key == "plan" else _price(found)
    return price, price.id


def _line(view: _View, prices: Mapping[str, Price]) -> InvoiceLine:
    period = view.sub("period")
    if period is None:
        view.fail("period", "is missing")
    start, end = period.integer("start"), period.integer("end")
    if end < start:
        period.fail("end", f"is before period.start ({end} < {start})")
    parent = view.sub("parent")
    item_details = parent.sub("subscription_item_details") if parent is not None else None
    ii_details = parent.sub("invoice_item_details") if parent is not None else None
    details = item_details or ii_details
    quantity = view.opt_int("quantity")
    if quantity is not None and quantity < 0:
        view.fail("quantity", f"must not be negative, got {quantity}")
    item = view.ref("subscription_item")
    if item is None and item_details is not None:
        item = item_details.ref("subscription_item")
    subscription = view.ref("subscription")
    if subscription is None and details is not None:
        subscription = details.ref("subscription")
    proration = view.raw("proration")
    if proration is None and details is not None:
        proration = details.raw("proration")
    price, price_id = _line_price(view, prices)
    return InvoiceLine(
        id=view.text("id"),
        amount=view.integer("amount"),
        period_start=start,
        period_end=end,
        price=price,
        price_id=price_id,
        quantity=quantity,
        subscription_item=item,
        subscription=subscription,
        proration=bool(proration),
        type=view.opt_text("type") or "",
    )


def parse_invoice(
    obj: Mapping[str, Any],
    lines: Sequence[Mapping[str, Any]] | None = None,
    *,
    prices: Mapping[str, Price] | None = None,
) -> Invoice:
    """An ``invoice`` object as ``GET /v1/invoices`` lists it.

    ``lines``: the invoice's lines from ``GET /v1/invoices/{id}/lines`` when the embedded list
    has more (``lines.has_more``); merged with the embedded ones by line id. ``prices``: a
    catalog that resolves a line price given only by its id (newer API versions do that).
    """
    view = _root(obj, "invoice")
    catalog = prices or {}
    embedded = view.sub("lines")
    raws: list[_View] = []
    if embedded is not None:
        raws = [embedded.at("data", i, raw) for i, raw in enumerate(embedded.seq("data"))]
        if lines is None and embedded.raw("has_more") is True:
            embedded.fail(
                "has_more",
                f"is true: the invoice has more than its {len(raws)} embedded lines; "
                "list them all and pass them as lines",
            )
    extra = _View({"lines": list(lines or ())}, "invoice", view.oid)
    raws += [extra.at("lines", i, raw) for i, raw in enumerate(extra.seq("lines"))]
    parsed: dict[str, InvoiceLine] = {}
    for raw in raws:
        line = _line(raw, catalog)
        parsed.setdefault(line.id, line)
    subscription = view.ref("subscription")
    if subscription is None:
        parent = view.sub("parent")
        details = parent.sub("subscription_details") if parent is not None else None
        subscription = details.ref("subscription") if details is not None else None
    discounts, _ = _discounts(view)
    return Invoice(
        id=view.oid,
        customer=view.ref("customer"),
        subscription=subscription,
        currency=view.currency("currency"),
        status=view.opt_text("status"),
        lines=tuple(parsed.values()),
        customer_discount=any(d.customer_level for d in discounts),
    )


__all__ = [
    "INTERVALS",
    "Coupon",
    "Discount",
    "Invoice",
    "InvoiceLine",
    "MalformedObject",
    "Price",
    "Recurring",
    "Subscription",
    "SubscriptionItem",
    "Tier",
    "parse_invoice",
    "parse_price",
    "parse_subscription",
]
