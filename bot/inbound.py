"""Values from Stripe checked where they enter revbot, before anything stores or uses them.

Free text (a description) is kept as it came and made safe by each sink; but a value that must
be an id, a currency, an amount, a timestamp or a category is refused here, with one line
naming it, so that nothing malformed is stored and the next run is not wedged by it. Stripe
never sends such values; a proxy, a test server or a Stripe-compatible service might.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.errors import ServiceError
from bot.money import MoneyError, normalize_currency
from bot.text import escaped

ID = re.compile(r"[A-Za-z0-9_]{1,255}")
TOKEN = re.compile(r"[a-z0-9_]{0,100}")
# Unix seconds from 1970 up to the last second of 9999 (what a date can hold).
MAX_SECONDS = 253_402_300_799
# Larger than any amount Stripe accepts, small enough for SQLite's 64-bit integers.
MAX_AMOUNT = 10**15


class InvalidStripeData(ServiceError):
    """Stripe (or what answered for it) sent a value that cannot be what it claims to be."""


def shown(value: Any) -> str:
    """A value quoted for a message: escaped, and cut to 40 characters."""
    text = escaped(repr(value))
    return text if len(text) <= 40 else text[:39] + "…"


def refuse(
    txn_id: Any,
    field: str,
    value: Any,
    what: str,
    *,
    kind: str = "balance transaction",
    of: str = "",
) -> InvalidStripeData:
    """The one line for a value that is not what it claims to be; ``kind`` and ``of`` name the
    object around its id (``invoice in_1``, ``line il_2 of invoice in_1``)."""
    who = txn_id if isinstance(txn_id, str) and ID.fullmatch(txn_id) else shown(txn_id)
    return InvalidStripeData(
        f"Stripe sent {kind} {who}{of} with {field} {shown(value)}, which is not "
        f"{what}; nothing from that answer was stored (if STRIPE_API_BASE is set, check the "
        "server it points at)"
    )


def check_transaction(txn: Any) -> None:
    """Raise :class:`InvalidStripeData` unless ``txn`` is a well-formed balance transaction."""
    if not isinstance(txn, Mapping):
        raise InvalidStripeData(
            f"Stripe sent {shown(txn)} in a list of balance transactions, not an object; "
            "nothing from that answer was stored"
        )
    txn_id = txn.get("id")
    if not isinstance(txn_id, str) or not ID.fullmatch(txn_id):
        raise refuse(txn_id, "id", txn_id, "a Stripe id")
    currency = txn.get("currency")
    try:
        if not isinstance(currency, str):
            raise MoneyError(currency)
        normalize_currency(currency)
    except MoneyError:
        raise refuse(txn_id, "currency", currency, "a currency code") from None
    for name in ("amount", "fee", "net"):
        v = txn.get(name)
        if isinstance(v, bool) or not isinstance(v, int) or abs(v) > MAX_AMOUNT:
            raise refuse(txn_id, name, v, "an amount in minor units")
    for name in ("created", "available_on"):
        v = txn.get(name)
        if v is None and name == "available_on":
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SECONDS:
            raise refuse(txn_id, name, v, "a timestamp")
    for name in ("reporting_category", "type", "status"):
        v = txn.get(name)
        if v is not None and not (isinstance(v, str) and TOKEN.fullmatch(v)):
            raise refuse(txn_id, name, v, f"a {name.replace('_', ' ')}")
    for name in ("description",):
        v = txn.get(name)
        if v is not None and not isinstance(v, str):
            raise refuse(txn_id, name, v, "text")
    source = txn.get("source")
    if isinstance(source, Mapping):
        source = source.get("id")
    if source is not None and not (
        isinstance(source, str) and (not source or ID.fullmatch(source))
    ):
        raise refuse(txn_id, "source", source, "a Stripe id")


# -- Billing: subscriptions, invoices and their lines ------------------------------------------
#
# Checked as far as revbot relies on them (the ledger's columns, the refresh rule, the metrics):
# ids, currencies, integer amounts, timestamps and statuses; the rest is kept as it came.


_ABSENT: Any = object()  # "read the field from the object"


class _Checked:
    """One object being checked; every refusal names it."""

    def __init__(self, obj: Any, kind: str, listed_in: str, *, of: str = "") -> None:
        if not isinstance(obj, Mapping):
            raise InvalidStripeData(
                f"Stripe sent {shown(obj)} in a list of {listed_in}, not an object; nothing "
                "from that answer was stored"
            )
        self.obj, self.kind, self.of = obj, kind, of
        oid = obj.get("id")
        if not isinstance(oid, str) or not ID.fullmatch(oid):
            raise refuse(oid, "id", oid, "a Stripe id", kind=kind, of=of)
        self.id: str = oid

    def refuse(self, field: str, value: Any, what: str) -> InvalidStripeData:
        return refuse(self.id, field, value, what, kind=self.kind, of=self.of)

    def timestamp(self, name: str, *, required: bool = False, value: Any = _ABSENT) -> None:
        v = self.obj.get(name) if value is _ABSENT else value
        if v is None and not required:
            return
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SECONDS:
            raise self.refuse(name, v, "a timestamp")

    def amount(self, name: str, *, required: bool = False) -> None:
        v = self.obj.get(name)
        if v is None and not required:
            return
        if isinstance(v, bool) or not isinstance(v, int) or abs(v) > MAX_AMOUNT:
            raise self.refuse(name, v, "an amount in minor units")

    def currency(self, name: str = "currency", *, required: bool = True) -> None:
        v = self.obj.get(name)
        if v is None and not required:
            return
        try:
            if not isinstance(v, str):
                raise MoneyError(v)
            normalize_currency(v)
        except MoneyError:
            raise self.refuse(name, v, "a currency code") from None

    def token(self, name: str, *, required: bool = False) -> None:
        v = self.obj.get(name)
        if v is None and not required:
            return
        if not (isinstance(v, str) and v and TOKEN.fullmatch(v)):
            raise self.refuse(name, v, f"a {name.replace('_', ' ')}")

    def ref(self, name: str, *, required: bool = False) -> None:
        """An expandable field: an id, or an object with one (or None when not required)."""
        v = self.obj.get(name)
        ref = v.get("id") if isinstance(v, Mapping) else v
        if ref is None and not required:
            return
        if not (isinstance(ref, str) and ID.fullmatch(ref)):
            raise self.refuse(name, ref, "a Stripe id")

    def price(self, name: str = "price") -> None:
        """A price: an id, or an object with an id, a currency and an integer unit amount."""
        v = self.obj.get(name)
        if v is None or isinstance(v, str):
            self.ref(name)
            return
        if not isinstance(v, Mapping):
            raise self.refuse(name, v, "a price")
        price = _Checked(v, "price", "prices", of=f" of {self.kind} {self.id}")
        price.currency()
        price.amount("unit_amount")
        recurring = v.get("recurring")
        if recurring is not None and not isinstance(recurring, Mapping):
            raise price.refuse("recurring", recurring, "a recurring interval")
        if isinstance(recurring, Mapping):
            count = recurring.get("interval_count")
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise price.refuse("recurring.interval_count", count, "a count of intervals")

    def quantity(self) -> None:
        v = self.obj.get("quantity")
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise self.refuse("quantity", v, "a quantity")

    def sublist(self, name: str) -> Mapping[str, Any]:
        """An embedded list (``{"data": [...], "has_more": bool}``)."""
        v = self.obj.get(name)
        if not (
            isinstance(v, Mapping)
            and isinstance(v.get("data"), list)
            and isinstance(v.get("has_more"), bool)
        ):
            raise self.refuse(name, v, "a list")
        return v


def check_subscription(sub: Any) -> None:
    """Raise :class:`InvalidStripeData` unless ``sub`` is a well-formed subscription."""
    c = _Checked(sub, "subscription", "subscriptions")
    c.token("status", required=True)
    c.timestamp("created", required=True)
    c.ref("customer", required=True)
    c.currency(required=False)
    for name in ("start_date", "current_period_start", "current_period_end", "trial_start",
                 "trial_end", "ended_at", "canceled_at", "cancel_at"):  # fmt: skip
        c.timestamp(name)
    if sub.get("items") is not None:
        for raw in c.sublist("items")["data"]:
            item = _Checked(raw, "item", "subscription items", of=f" of subscription {c.id}")
            item.price()
            item.quantity()


def check_invoice(invoice: Any) -> None:
    """Raise :class:`InvalidStripeData` unless ``invoice`` is a well-formed invoice, its
    embedded lines included."""
    c = _Checked(invoice, "invoice", "invoices")
    c.token("status")  # None for an invoice being deleted, by Stripe's spec
    c.timestamp("created", required=True)
    c.currency()
    c.ref("customer")
    c.ref("subscription")
    for name in ("amount_due", "amount_paid", "amount_remaining", "subtotal", "total", "tax"):
        c.amount(name)
    for name in ("period_start", "period_end", "due_date"):
        c.timestamp(name)
    for line in c.sublist("lines")["data"]:
        check_invoice_line(line, c.id)


def check_invoice_line(line: Any, invoice_id: str) -> None:
    """Raise :class:`InvalidStripeData` unless ``line`` is a well-formed line of an invoice."""
    c = _Checked(line, "line", "invoice lines", of=f" of invoice {invoice_id}")
    c.amount("amount", required=True)
    c.currency()
    c.token("type")
    c.ref("subscription")
    c.ref("subscription_item")
    c.quantity()
    c.price()
    if not isinstance(line.get("proration", False), bool):
        raise c.refuse("proration", line.get("proration"), "true or false")
    period = line.get("period")
    if not isinstance(period, Mapping):
        raise c.refuse("period", period, "a period")
    c.timestamp("period.start", required=True, value=period.get("start"))
    c.timestamp("period.end", required=True, value=period.get("end"))


# -- Payouts -----------------------------------------------------------------------------------


def check_payout(payout: Any) -> None:
    """Raise :class:`InvalidStripeData` unless ``payout`` is a well-formed payout."""
    c = _Checked(payout, "payout", "payouts")
    c.token("status", required=True)
    c.timestamp("created", required=True)
    c.timestamp("arrival_date")
    c.currency()
    c.amount("amount", required=True)
    c.ref("balance_transaction")
    c.ref("failure_balance_transaction")
    if not isinstance(payout.get("automatic"), bool):
        raise c.refuse("automatic", payout.get("automatic"), "true or false")
