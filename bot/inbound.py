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


def refuse(txn_id: Any, field: str, value: Any, what: str) -> InvalidStripeData:
    who = txn_id if isinstance(txn_id, str) and ID.fullmatch(txn_id) else shown(txn_id)
    return InvalidStripeData(
        f"Stripe sent balance transaction {who} with {field} {shown(value)}, which is not "
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
