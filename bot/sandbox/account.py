"""A synthetic Stripe account: balance transactions exactly as Stripe's API returns them.

Every transaction is the JSON dict of a Stripe ``balance_transaction`` object (integer minor
units, lowercase settlement currency, ``net == amount - fee``). Internally they are kept in
ascending ``(created, id)`` order, the reverse of the API's newest-first order, so that range
filters and cursors are binary searches. Stored dicts are never mutated: an update replaces
the dict, so a snapshot (a list of references) taken by a report run stays as it was.

This module is Stripe's side of the story and must stay independent of revbot's own readers:
it may use ``bot.money`` for the currency table, nothing of ``bot.pnl`` or the ledger.
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from bot.money import exponent, normalize_currency
from bot.sandbox.payouts import Payout, copy_payout, settle

Transaction = dict[str, Any]

BT_FIELDS: tuple[str, ...] = (
    "id", "object", "amount", "available_on", "created", "currency", "description",
    "exchange_rate", "fee", "fee_details", "net", "reporting_category", "source", "status",
    "type",
)  # fmt: skip

# The BT `type` a category is usually made of (docs: reports/reporting-categories); used only
# to fill in whichever of the two the caller of add_transaction left out.
_CATEGORY_TYPE: dict[str, str] = {
    "charge": "charge",
    "refund": "refund",
    "refund_failure": "refund_failure",
    "dispute": "adjustment",
    "dispute_reversal": "adjustment",
    "fee": "stripe_fee",
    "tax": "tax_fee",
    "other_adjustment": "adjustment",
    "payout": "payout",
    "payout_reversal": "payout_cancel",
    "transfer": "transfer",
    "transfer_reversal": "transfer_refund",
    "topup": "topup",
    "topup_reversal": "topup_reversal",
    "platform_earning": "application_fee",
    "platform_earning_refund": "application_fee_refund",
    "charge_failure": "payment_failure_refund",
    "risk_reserved_funds": "reserved_funds",
    "connect_reserved_funds": "reserved_funds",
}
_TYPE_CATEGORY: dict[str, str] = {
    "charge": "charge",
    "payment": "charge",
    "refund": "refund",
    "payment_refund": "refund",
    "refund_failure": "refund_failure",
    "adjustment": "other_adjustment",
    "stripe_fee": "fee",
    "stripe_fx_fee": "fee",
    "tax_fee": "tax",
    "payout": "payout",
    "payout_cancel": "payout_reversal",
    "payout_failure": "payout_reversal",
    "transfer": "transfer",
    "topup": "topup",
    "application_fee": "platform_earning",
    "payment_failure_refund": "charge_failure",
}

_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_TABLE = bytes(ord(_ID_ALPHABET[b % 62]) for b in range(256))

# Pricing of the synthetic business: (basis points, fixed minor units) per settlement currency,
# roughly Stripe's standard card pricing; KWD fees are rounded to 10 fils like KWD amounts.
_PRICING: dict[str, tuple[int, int]] = {
    "usd": (290, 30),
    "eur": (150, 25),
    "gbp": (150, 20),
    "jpy": (360, 0),
    "kwd": (290, 100),
}
_PRICES: dict[str, tuple[int, ...]] = {
    "usd": (900, 1900, 2900, 4900, 9900, 19900),
    "eur": (900, 1900, 2900, 4900, 9900),
    "gbp": (800, 1500, 2500, 4500, 9000),
    "jpy": (980, 1980, 4980, 9800, 29800),
    "kwd": (3000, 5500, 12000, 25000),
}
_PRICE_WEIGHTS: tuple[int, ...] = (30, 25, 18, 12, 10, 5)
_CURRENCY_WEIGHTS: dict[str, int] = {"usd": 55, "eur": 20, "gbp": 12, "jpy": 10, "kwd": 3}
_DISPUTE_FEE: dict[str, int] = {"usd": 1500, "eur": 1500, "gbp": 1500, "jpy": 1500, "kwd": 5000}
# Days between two payouts, and the first day index that has one, per currency.
_PAYOUT_SCHEDULE: dict[str, tuple[int, int]] = {
    "usd": (2, 1),
    "eur": (3, 2),
    "gbp": (4, 2),
    "jpy": (5, 3),
    "kwd": (7, 4),
}
_DESCRIPTIONS: tuple[str, ...] = (
    "Subscription creation",
    "Subscription update",
    "Invoice {n:05d}",
    "Payment for order #{n}",
)
_DAY = 86_400


def _local_midnight(day: dt.date, zone: ZoneInfo) -> int:
    """Unix time of 00:00 local on ``day`` (the first instant of the day, DST-safe)."""
    return int(dt.datetime.combine(day, dt.time(0), tzinfo=zone).timestamp())


def _utc_midnight_after(ts: int, days: int) -> int:
    """UTC midnight ``days`` days after the UTC day containing ``ts``."""
    return (ts // _DAY + days) * _DAY


def _round_div(numerator: int, denominator: int) -> int:
    """Round half up for non-negative integers (fees never need banker's rounding here)."""
    return (numerator * 2 + denominator) // (denominator * 2)


def _quantum(currency: str) -> int:
    """Smallest step of amounts: 10 minor units for three-decimal currencies (docs: currencies)."""
    return 10 if exponent(currency) == 3 else 1


def _snap(amount: int, currency: str) -> int:
    """Round a positive amount to the currency's quantum."""
    q = _quantum(currency)
    return _round_div(amount, q) * q


def processing_fee(amount: int, currency: str) -> int:
    """Stripe-like processing fee of a charge of ``amount`` minor units in the sandbox."""
    bps, fixed = _PRICING.get(currency, (290, 30))
    return _snap(_round_div(amount * bps, 10_000) + fixed, currency)


def _fee_details(fee: int, currency: str, description: str) -> list[dict[str, Any]]:
    if fee == 0:
        return []
    return [
        {
            "amount": fee,
            "application": None,
            "currency": currency,
            "description": description,
            "type": "stripe_fee",
        }
    ]


def _bt(
    *,
    id: str,
    created: int,
    amount: int,
    currency: str,
    reporting_category: str,
    type: str,
    fee: int = 0,
    fee_details: list[dict[str, Any]] | None = None,
    available_on: int | None = None,
    description: str | None = None,
    source: str | None = None,
    status: str = "available",
    exchange_rate: float | None = None,
) -> Transaction:
    """A balance transaction dict with Stripe's field set; ``net`` is always computed."""
    return {
        "id": id,
        "object": "balance_transaction",
        "amount": amount,
        "available_on": created if available_on is None else available_on,
        "created": created,
        "currency": currency,
        "description": description,
        "exchange_rate": exchange_rate,
        "fee": fee,
        "fee_details": _fee_details(fee, currency, "Stripe processing fees")
        if fee_details is None
        else fee_details,
        "net": amount - fee,
        "reporting_category": reporting_category,
        "source": source,
        "status": status,
        "type": type,
    }


def _copy(txn: Transaction) -> Transaction:
    """A copy deep enough that the caller cannot alter the account through it."""
    return {**txn, "fee_details": [dict(f) for f in txn["fee_details"]]}


class SandboxAccount:
    """The balance transactions of one synthetic Stripe test-mode account. Thread-safe.

    ``start``/``end`` (unix seconds) bound the period the account covers; the reporting
    API's ``data_available_start`` is ``start`` floored to UTC midnight.
    """

    def __init__(
        self,
        *,
        start: int,
        end: int,
        tz: str = "UTC",
        seed: int = 7,
        transactions: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        if start >= end:
            raise ValueError("account start must be before its end")
        ZoneInfo(tz)  # fail early on an unknown zone
        self.start = start
        self.end = end
        self.tz = tz
        self.seed = seed
        self.account_id = "acct_" + self._random_id(random.Random(f"acct-{seed}"), 16)
        self._lock = threading.RLock()
        self._id_rng = random.Random(f"sandbox-ids-{seed}")
        self._by_id: dict[str, Transaction] = {}
        self._keys: list[tuple[int, str]] = []
        # payout source id (po_...) -> ids of the transactions it paid out, itself included.
        self._payout_members: dict[str, frozenset[str]] = {}
        # po_... -> payout object (generated accounts only; see bot.sandbox.payouts).
        self._payouts: dict[str, Payout] = {}
        self._payout_keys: list[tuple[int, str]] = []
        self._load([dict(t) for t in transactions])

    # ----------------------------------------------------------------- construction

    @classmethod
    def generate(
        cls,
        *,
        end: dt.date,
        days: int = 120,
        tz: str = "UTC",
        seed: int = 7,
        scale: float = 1.0,
    ) -> SandboxAccount:
        """A deterministic small business over the local days ``[end - days, end)`` in ``tz``.

        Same arguments give byte-identical transactions and ids.
        """
        if days < 1:
            raise ValueError("days must be at least 1")
        if scale <= 0:
            raise ValueError("scale must be positive")
        zone = ZoneInfo(tz)
        first = end - dt.timedelta(days=days)
        account = cls(
            start=_local_midnight(first, zone), end=_local_midnight(end, zone), tz=tz, seed=seed
        )
        builder = _Builder(account=account, rng=random.Random(seed), zone=zone)
        txns, members, payouts = builder.business(first=first, days=days, scale=scale)
        account._load(txns)
        account._payout_members = members
        account._payouts = payouts
        account._payout_keys = sorted((p["created"], p["id"]) for p in payouts.values())
        return account

    @classmethod
    def bulk(
        cls,
        *,
        start: dt.date,
        end: dt.date,
        count: int,
        tz: str = "UTC",
        seed: int = 7,
        skew: float = 0.0,
    ) -> SandboxAccount:
        """Exactly ``count`` usd charges over the local days ``[start, end)`` (benchmarks).

        ``skew`` in [0, 1) is the share of charges piled onto three "hot" days.
        """
        if not 0.0 <= skew < 1.0:
            raise ValueError("skew must be in [0, 1)")
        if count < 0 or start >= end:
            raise ValueError("need count >= 0 and start < end")
        zone = ZoneInfo(tz)
        account = cls(
            start=_local_midnight(start, zone), end=_local_midnight(end, zone), tz=tz, seed=seed
        )
        rng = random.Random(seed)
        builder = _Builder(account=account, rng=rng, zone=zone)
        ndays = (end - start).days
        bounds = [_local_midnight(start + dt.timedelta(days=i), zone) for i in range(ndays + 1)]
        hot = sorted(rng.sample(range(ndays), min(3, ndays)))
        txns = []
        for _ in range(count):
            day = rng.choice(hot) if rng.random() < skew else rng.randrange(ndays)
            created = bounds[day] + rng.randrange(bounds[day + 1] - bounds[day])
            txns.append(builder.charge(created=created, currency="usd"))
        for txn in txns:
            txn["status"] = "available" if txn["available_on"] <= account.end else "pending"
        account._load(txns)
        return account

    def _load(self, txns: list[Transaction]) -> None:
        with self._lock:
            for txn in txns:
                _check(txn)
                if txn["id"] in self._by_id:
                    raise ValueError(f"duplicate transaction id {txn['id']}")
                self._by_id[txn["id"]] = txn
            self._keys = sorted((t["created"], t["id"]) for t in self._by_id.values())

    @staticmethod
    def _random_id(rng: random.Random, length: int = 24) -> str:
        # Random bytes mapped onto base 62 in one translate(): far faster than a choice() per
        # character, which matters for the 30,000-transaction benchmark accounts.
        raw = rng.getrandbits(8 * length).to_bytes(length, "big")
        return raw.translate(_ID_TABLE).decode("ascii")

    def new_id(self, prefix: str) -> str:
        """A fresh id such as ``txn_...`` (deterministic sequence per seed)."""
        with self._lock:
            while True:
                candidate = f"{prefix}_{self._random_id(self._id_rng)}"
                if candidate not in self._by_id:
                    return candidate

    # ----------------------------------------------------------------- mutation

    def add_transaction(self, **fields: Any) -> Transaction:
        """Add one balance transaction and return (a copy of) it.

        Needs ``created``, ``amount``, ``currency`` and ``reporting_category`` or ``type`` (the
        other is derived); ``fee`` defaults to 0, ``available_on`` to ``created``, ``status`` to
        ``available``, ``id`` to a fresh ``txn_...``; ``net`` is computed.
        """
        unknown = set(fields) - set(BT_FIELDS)
        if unknown or "object" in fields or "net" in fields:
            raise TypeError(
                f"unexpected fields: {sorted(unknown | ({'object', 'net'} & set(fields)))}"
            )
        for name in ("created", "amount", "currency"):
            if name not in fields:
                raise TypeError(f"add_transaction() needs {name}")
        category = fields.pop("reporting_category", None)
        type_ = fields.pop("type", None)
        if category is None and type_ is None:
            raise TypeError("add_transaction() needs reporting_category or type")
        category = category or _TYPE_CATEGORY.get(type_, "other_adjustment")
        type_ = type_ or _CATEGORY_TYPE.get(category, "adjustment")
        currency = normalize_currency(fields.pop("currency"))
        with self._lock:
            txn_id = fields.pop("id", None) or self.new_id("txn")
            if txn_id in self._by_id:
                raise ValueError(f"duplicate transaction id {txn_id}")
            txn = _bt(
                id=txn_id,
                currency=currency,
                reporting_category=category,
                type=type_,
                **fields,
            )
            _check(txn)
            self._by_id[txn_id] = txn
            bisect.insort(self._keys, (txn["created"], txn_id))
            return _copy(txn)

    def update_transaction(self, txn_id: str, /, **changes: Any) -> Transaction:
        """Change fields of a transaction (say a late ``status``), recomputing ``net``.

        When ``fee`` changes without new ``fee_details``, the details are rebuilt to match.
        """
        forbidden = {"id", "object", "net"} & set(changes)
        unknown = set(changes) - set(BT_FIELDS)
        if forbidden or unknown:
            raise TypeError(f"cannot update fields: {sorted(forbidden | unknown)}")
        with self._lock:
            old = self._by_id.get(txn_id)
            if old is None:
                raise KeyError(txn_id)
            new = {**old, **changes}
            if "currency" in changes:
                new["currency"] = normalize_currency(new["currency"])
            if "fee" in changes and "fee_details" not in changes:
                new["fee_details"] = _fee_details(
                    new["fee"], new["currency"], "Stripe processing fees"
                )
            new["net"] = new["amount"] - new["fee"]
            _check(new)
            self._by_id[txn_id] = new  # replace, never mutate: snapshots keep the old one
            if new["created"] != old["created"]:
                self._keys.remove((old["created"], txn_id))
                bisect.insort(self._keys, (new["created"], txn_id))
            return _copy(new)

    # ----------------------------------------------------------------- reading

    @property
    def transactions(self) -> list[Transaction]:
        """Copies of all transactions, **newest first** like the API (ties: larger id first)."""
        with self._lock:
            return [_copy(self._by_id[i]) for _, i in reversed(self._keys)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def get(self, txn_id: str) -> Transaction | None:
        """The stored transaction (read-only: do not mutate it), or None."""
        with self._lock:
            return self._by_id.get(txn_id)

    def snapshot(self, *, before: int) -> list[Transaction]:
        """Stored transactions created before ``before``, oldest first (read-only references)."""
        with self._lock:
            hi = bisect.bisect_left(self._keys, (before, ""))
            return [self._by_id[i] for _, i in self._keys[:hi]]

    def payout_members(self, payout_id: str) -> frozenset[str] | None:
        """Ids of the transactions paid out by payout ``po_...`` (None if unknown).

        Known for manual payouts too, although Stripe's ``payout=`` filter refuses them.
        """
        with self._lock:
            return self._payout_members.get(payout_id)

    @property
    def payouts(self) -> list[Payout]:
        """Copies of the payout objects, **newest first** like the API (ties: larger id first).

        Only :meth:`generate` makes payout objects; other accounts have none.
        """
        with self._lock:
            return [copy_payout(self._payouts[i]) for _, i in reversed(self._payout_keys)]

    def payout(self, payout_id: str) -> Payout | None:
        """The stored payout object ``po_...`` (read-only: do not mutate it), or None."""
        with self._lock:
            return self._payouts.get(payout_id)

    def page(
        self,
        *,
        limit: int,
        gte: int | None = None,
        lt: int | None = None,
        starting_after: str | None = None,
        ending_before: str | None = None,
        type: str | None = None,
        currency: str | None = None,
        source: str | None = None,
        payout: str | None = None,
    ) -> tuple[list[Transaction], bool]:
        """One page of the newest-first list and whether more follow in that direction.

        ``created`` bounds come as a half-open ``[gte, lt)``. Cursors are positions in the
        full order, so a cursor need not match the filters. Raises KeyError for an unknown
        cursor id.
        """
        with self._lock:
            keys = self._keys
            lo = 0 if gte is None else bisect.bisect_left(keys, (gte, ""))
            hi = len(keys) if lt is None else bisect.bisect_left(keys, (lt, ""))
            members = None
            if payout is not None:
                members = self._payout_members.get(payout, frozenset())

            def wanted(txn: Transaction) -> bool:
                return (
                    (type is None or txn["type"] == type)
                    and (currency is None or txn["currency"] == currency)
                    and (source is None or txn["source"] == source)
                    and (members is None or txn["id"] in members)
                )

            found: list[Transaction] = []
            if ending_before is not None:
                cursor = self._by_id.get(ending_before)
                if cursor is None:
                    raise KeyError(ending_before)
                # Newer than the cursor: walk upwards from it, then present newest first.
                i = max(lo, bisect.bisect_right(keys, (cursor["created"], cursor["id"])))
                while i < hi and len(found) <= limit:
                    txn = self._by_id[keys[i][1]]
                    if wanted(txn):
                        found.append(txn)
                    i += 1
                has_more = len(found) > limit
                return list(reversed(found[:limit])), has_more
            if starting_after is not None:
                cursor = self._by_id.get(starting_after)
                if cursor is None:
                    raise KeyError(starting_after)
                hi = min(hi, bisect.bisect_left(keys, (cursor["created"], cursor["id"])))
            i = hi - 1
            while i >= lo and len(found) <= limit:
                txn = self._by_id[keys[i][1]]
                if wanted(txn):
                    found.append(txn)
                i -= 1
            return found[:limit], len(found) > limit


def _check(txn: Transaction) -> None:
    """Refuse a transaction that Stripe could not have produced."""
    missing = [f for f in BT_FIELDS if f not in txn]
    if missing:
        raise ValueError(f"transaction lacks {missing}")
    for name in ("amount", "fee", "net", "created", "available_on"):
        value = txn[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int of minor units or seconds, got {value!r}")
    if txn["net"] != txn["amount"] - txn["fee"]:
        raise ValueError("net must equal amount - fee")
    if not str(txn["id"]).startswith("txn_"):
        raise ValueError("balance transaction ids start with txn_")
    if txn["currency"] != normalize_currency(txn["currency"]):
        raise ValueError("currency must be a lowercase ISO code")
    if sum(f["amount"] for f in txn["fee_details"]) != txn["fee"]:
        raise ValueError("fee_details must add up to fee")


class _Builder:
    """Makes the synthetic business's transactions; all randomness comes from one seeded RNG."""

    def __init__(self, *, account: SandboxAccount, rng: random.Random, zone: ZoneInfo) -> None:
        self.account = account
        self.rng = rng
        self.zone = zone
        self.ids: set[str] = set()
        self.counter = 1000

    def id(self, prefix: str) -> str:
        while True:
            candidate = f"{prefix}_{SandboxAccount._random_id(self.rng)}"
            if candidate not in self.ids:
                self.ids.add(candidate)
                return candidate

    def charge(self, *, created: int, currency: str) -> Transaction:
        prices = _PRICES[currency]
        amount = self.rng.choices(prices, weights=_PRICE_WEIGHTS[: len(prices)])[0]
        if self.rng.random() < 0.15:  # usage-based invoices: an odd amount now and then
            amount = _snap(amount * self.rng.randint(50, 300) // 100, currency)
        fee = processing_fee(amount, currency)
        self.counter += 1
        template = self.rng.choice(_DESCRIPTIONS)
        return _bt(
            id=self.id("txn"),
            created=created,
            amount=amount,
            currency=currency,
            reporting_category="charge",
            type="charge",
            fee=fee,
            available_on=_utc_midnight_after(created, 2),
            description=template.format(n=self.counter),
            source=self.id("ch"),
        )

    def business(
        self, *, first: dt.date, days: int, scale: float
    ) -> tuple[list[Transaction], dict[str, frozenset[str]], dict[str, Payout]]:
        rng, zone, end_ts = self.rng, self.zone, self.account.end
        bounds = [_local_midnight(first + dt.timedelta(days=i), zone) for i in range(days + 1)]
        currencies = list(_CURRENCY_WEIGHTS)
        weights = list(_CURRENCY_WEIGHTS.values())
        txns: list[Transaction] = []
        # (year, month, currency) -> [gross, count] of charges, for the monthly fee rows.
        monthly: dict[tuple[int, int, str], list[int]] = {}
        charge_number = 0
        for i in range(days):
            day = first + dt.timedelta(days=i)
            day_start, day_len = bounds[i], bounds[i + 1] - bounds[i]
            if day.day == 1 and i > 0:
                txns.extend(self._monthly_fees(day, day_start, monthly))
            growth = 17 + 15 * i / max(days - 1, 1)
            weekday = 0.85 if day.weekday() >= 5 else 1.0
            n = round(growth * weekday * rng.uniform(0.85, 1.15) * scale)
            for _ in range(n):
                currency = rng.choices(currencies, weights=weights)[0]
                charge = self.charge(created=day_start + rng.randrange(day_len), currency=currency)
                txns.append(charge)
                stats = monthly.setdefault((day.year, day.month, currency), [0, 0])
                stats[0] += charge["amount"]
                stats[1] += 1
                charge_number += 1
                txns.extend(self._aftermath(charge, forced_dispute=charge_number == 5))
            if i % 23 == 11:
                amount = rng.choice((-1, 1)) * rng.randint(100, 2500)
                txns.append(
                    _bt(
                        id=self.id("txn"),
                        created=day_start + rng.randrange(day_len),
                        amount=amount,
                        currency="usd",
                        reporting_category="other_adjustment",
                        type="adjustment",
                        description="Adjustment for a misapplied credit",
                        source=self.id("ia"),
                    )
                )
        txns = [t for t in txns if t["created"] < end_ts]
        payouts, members = self._payouts(txns, bounds, days)
        # Payout objects, the manual and the failed payout: from a generator of their own, so
        # that every transaction and id made above stays what it was.
        side = random.Random(f"sandbox-payouts-{self.account.seed}")
        settled = settle(
            payouts,
            members,
            start=self.account.start,
            end=end_ts,
            rng=side,
            new_id=lambda prefix: self._fresh_id(side, prefix),
        )
        txns.extend(settled.transactions)
        for txn in txns:
            txn["status"] = "available" if txn["available_on"] <= end_ts else "pending"
        return txns, settled.members, settled.payouts

    def _fresh_id(self, rng: random.Random, prefix: str) -> str:
        """Like :meth:`id`, from another generator (so the main sequence is left alone)."""
        while True:
            candidate = f"{prefix}_{SandboxAccount._random_id(rng)}"
            if candidate not in self.ids:
                self.ids.add(candidate)
                return candidate

    def _aftermath(self, charge: Transaction, *, forced_dispute: bool) -> list[Transaction]:
        """The refund or dispute (and dispute reversal) a charge may lead to."""
        rng, currency, amount = self.rng, charge["currency"], charge["amount"]
        out: list[Transaction] = []
        if rng.random() < 0.03:
            refunded = amount if rng.random() < 0.7 else _snap(amount // 2, currency)
            created = charge["created"] + rng.randint(3600, 10 * _DAY)
            out.append(
                _bt(
                    id=self.id("txn"),
                    created=created,
                    amount=-refunded,
                    currency=currency,
                    reporting_category="refund",
                    type="refund",
                    description=f"REFUND FOR CHARGE ({charge['description']})",
                    source=self.id("re"),
                )
            )
        elif forced_dispute or rng.random() < 0.006:
            created = charge["created"] + rng.randint(3, 20) * _DAY + rng.randrange(_DAY)
            dispute_fee = _DISPUTE_FEE[currency]
            dispute_id = self.id("dp")
            out.append(
                _bt(
                    id=self.id("txn"),
                    created=created,
                    amount=-amount,
                    currency=currency,
                    reporting_category="dispute",
                    type="adjustment",
                    fee=dispute_fee,
                    fee_details=_fee_details(dispute_fee, currency, "Dispute fee"),
                    description=f"Chargeback withdrawal for {charge['source']}",
                    source=dispute_id,
                )
            )
            if forced_dispute or rng.random() < 0.4:
                out.append(
                    _bt(
                        id=self.id("txn"),
                        created=created + rng.randint(10, 30) * _DAY,
                        amount=amount,
                        currency=currency,
                        reporting_category="dispute_reversal",
                        type="adjustment",
                        description=f"Chargeback reversal for {charge['source']}",
                        source=dispute_id,
                    )
                )
        return out

    def _monthly_fees(
        self, day: dt.date, day_start: int, monthly: dict[tuple[int, int, str], list[int]]
    ) -> list[Transaction]:
        """Billing and Radar fees for the previous month, billed as their own BTs on the 1st."""
        prev = day - dt.timedelta(days=1)
        period = f"{prev.replace(day=1):%Y-%m-%d} - {prev:%Y-%m-%d}"
        out: list[Transaction] = []
        rows: list[tuple[str, int, str]] = []
        usd_gross, usd_count = monthly.get((prev.year, prev.month, "usd"), [0, 0])
        eur_gross, _ = monthly.get((prev.year, prev.month, "eur"), [0, 0])
        rows.append(("usd", _round_div(usd_gross * 50, 10_000), f"Billing - Usage Fee ({period})"))
        rows.append(("usd", 5 * usd_count, f"Radar ({period}): Radar for Fraud Teams"))
        rows.append(("eur", _round_div(eur_gross * 50, 10_000), f"Billing - Usage Fee ({period})"))
        for currency, fee_amount, description in rows:
            if fee_amount <= 0:
                continue
            out.append(
                _bt(
                    id=self.id("txn"),
                    created=day_start + self.rng.randrange(3600),
                    amount=-fee_amount,
                    currency=currency,
                    reporting_category="fee",
                    type="stripe_fee",
                    description=description,
                )
            )
        return out

    def _payouts(
        self, txns: list[Transaction], bounds: list[int], days: int
    ) -> tuple[list[Transaction], dict[str, frozenset[str]]]:
        """Automatic payouts of each currency's available funds every few days."""
        payouts: list[Transaction] = []
        members: dict[str, frozenset[str]] = {}
        pools: dict[str, list[Transaction]] = {c: [] for c in _PAYOUT_SCHEDULE}
        for txn in sorted(txns, key=lambda t: (t["available_on"], t["created"], t["id"])):
            pools.setdefault(txn["currency"], []).append(txn)
        cursor = dict.fromkeys(pools, 0)
        for i in range(days):
            for currency, (every, offset) in _PAYOUT_SCHEDULE.items():
                if i < offset or (i - offset) % every:
                    continue
                created = bounds[i] + 7200 + self.rng.randrange(3600)
                if created >= self.account.end:
                    continue
                pool, start = pools[currency], cursor[currency]
                stop = start
                while stop < len(pool) and pool[stop]["available_on"] <= created:
                    stop += 1
                batch = pool[start:stop]
                total = sum(t["net"] for t in batch)
                if total <= 0:
                    continue  # nothing to pay out yet: the funds stay for the next payout
                cursor[currency] = stop
                payout_id = self.id("po")
                txn = _bt(
                    id=self.id("txn"),
                    created=created,
                    amount=-total,
                    currency=currency,
                    reporting_category="payout",
                    type="payout",
                    available_on=created,
                    description="STRIPE PAYOUT",
                    source=payout_id,
                )
                payouts.append(txn)
                members[payout_id] = frozenset([txn["id"], *(t["id"] for t in batch)])
        return payouts, members
