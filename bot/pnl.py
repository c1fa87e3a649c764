"""Balance transactions or report rows -> P&L lines. Pure.

All amounts are ``int`` minor units of one currency. Figures of different currencies are kept
apart by keying every total on its currency.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

REVENUE = frozenset({"charge"})
REFUNDS = frozenset({"refund", "refund_failure", "partial_capture_reversal"})
DISPUTES = frozenset({"dispute", "dispute_reversal"})
FEE_CATEGORIES = frozenset({"fee", "tax", "network_cost"})
PAYOUTS = frozenset({"payout", "payout_reversal"})
NOT_ACTIVITY = PAYOUTS | frozenset({"transfer", "transfer_reversal", "topup", "topup_reversal"})

LINE_NAMES: tuple[str, ...] = (
    "gross_revenue",
    "refunds",
    "disputes",
    "stripe_fees",
    "other",
    "net_revenue",
    "payouts",
)


def is_activity(category: str) -> bool:
    """Activity is what changes the P&L: everything but balance movements."""
    return category not in NOT_ACTIVITY and not category.endswith("reserved_funds")


@dataclass(frozen=True, slots=True)
class PnlLines:
    """One currency's P&L in minor units. ``net_revenue`` is derived, so the identity holds."""

    gross_revenue: int = 0
    refunds: int = 0
    disputes: int = 0
    stripe_fees: int = 0
    other: int = 0
    payouts: int = 0

    @property
    def net_revenue(self) -> int:
        return self.gross_revenue + self.refunds + self.disputes + self.stripe_fees + self.other

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in LINE_NAMES}

    def __add__(self, other: PnlLines) -> PnlLines:
        return PnlLines(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )


@dataclass(frozen=True, slots=True)
class Movement:
    """The part of a balance transaction (or an aggregated report row) the P&L needs.

    For an aggregated row, ``count`` is the number of transactions it stands for.
    """

    reporting_category: str
    currency: str
    amount: int
    fee: int
    net: int
    count: int = 1


@dataclass(slots=True)
class _Acc:
    gross_revenue: int = 0
    refunds: int = 0
    disputes: int = 0
    stripe_fees: int = 0
    other: int = 0
    payouts: int = 0
    net: int = 0
    charges: int = 0
    refunds_count: int = 0
    transactions: int = 0

    def add(self, m: Movement) -> None:
        cat = m.reporting_category
        self.transactions += m.count
        if cat in PAYOUTS:
            self.payouts += m.amount
            return
        if not is_activity(cat):
            return
        self.net += m.net
        self.stripe_fees -= m.fee
        if cat in REVENUE:
            self.gross_revenue += m.amount
            self.charges += m.count
        elif cat in REFUNDS:
            self.refunds += m.amount
            self.refunds_count += m.count
        elif cat in DISPUTES:
            self.disputes += m.amount
        elif cat in FEE_CATEGORIES:
            self.stripe_fees += m.amount
        else:
            self.other += m.amount


@dataclass(frozen=True, slots=True)
class Summary:
    """P&L lines plus the counts shown on the Daily tab, for one currency."""

    currency: str
    lines: PnlLines
    charges: int = 0
    refunds_count: int = 0
    transactions: int = 0


class IdentityError(AssertionError):
    """The P&L identity failed: the input's ``net`` is not ``amount - fee`` somewhere."""


def summarize(movements: Iterable[Movement]) -> dict[str, Summary]:
    """P&L per currency. Raises :class:`IdentityError` if Σ net differs from the lines' sum."""
    accs: dict[str, _Acc] = {}
    for m in movements:
        accs.setdefault(m.currency, _Acc()).add(m)
    out: dict[str, Summary] = {}
    for currency in sorted(accs):
        acc = accs[currency]
        lines = PnlLines(
            gross_revenue=acc.gross_revenue,
            refunds=acc.refunds,
            disputes=acc.disputes,
            stripe_fees=acc.stripe_fees,
            other=acc.other,
            payouts=acc.payouts,
        )
        if lines.net_revenue != acc.net:
            raise IdentityError(
                f"{currency}: Σ net {acc.net} != lines {lines.net_revenue}; "
                "a transaction's net is not amount - fee"
            )
        out[currency] = Summary(
            currency=currency,
            lines=lines,
            charges=acc.charges,
            refunds_count=acc.refunds_count,
            transactions=acc.transactions,
        )
    return out


@dataclass(frozen=True, slots=True)
class CategoryTotal:
    """Per (currency, category) count and sums, the unit of reconciliation."""

    currency: str
    reporting_category: str
    count: int
    gross: int
    fee: int
    net: int


def by_category(movements: Iterable[Movement]) -> dict[tuple[str, str], CategoryTotal]:
    """Activity totals per (currency, reporting_category); payouts and transfers excluded."""
    acc: dict[tuple[str, str], list[int]] = {}
    for m in movements:
        if not is_activity(m.reporting_category):
            continue
        t = acc.setdefault((m.currency, m.reporting_category), [0, 0, 0, 0])
        t[0] += m.count
        t[1] += m.amount
        t[2] += m.fee
        t[3] += m.net
    return {key: CategoryTotal(key[0], key[1], *vals) for key, vals in sorted(acc.items())}


__all__ = [
    "LINE_NAMES",
    "CategoryTotal",
    "IdentityError",
    "Movement",
    "PnlLines",
    "Summary",
    "by_category",
    "is_activity",
    "summarize",
]


# -- what the monthly job saves and the email shows ------------------------------------------


@dataclass(frozen=True)
class CurrencyFigures:
    currency: str
    lines: PnlLines
    starting_balance: int | None
    ending_balance: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": {k: v for k, v in self.lines.as_dict().items() if k != "net_revenue"},
            "starting_balance": self.starting_balance,
            "ending_balance": self.ending_balance,
        }

    @classmethod
    def from_json(cls, currency: str, data: Mapping[str, Any]) -> CurrencyFigures:
        return cls(
            currency=currency,
            lines=PnlLines(**data["lines"]),
            starting_balance=data.get("starting_balance"),
            ending_balance=data.get("ending_balance"),
        )


def mom_pct(current: int, previous: int | None) -> Decimal | None:
    """Change against the previous month in percent, or ``None`` when it is undefined.

    Divides by ``abs(previous)`` so that the sign always says "up" or "down", also when the
    previous month was negative.
    """
    if previous is None or previous == 0:
        return None
    return (Decimal(current) - Decimal(previous)) * 100 / abs(Decimal(previous))


def mom_fraction(current: int, previous: int | None) -> Decimal | None:
    """Month-over-month change as a fraction (0.125 = 12.5 %) for the Monthly tab."""
    pct = mom_pct(current, previous)
    return None if pct is None else (pct / 100).quantize(Decimal("0.0001"))


@dataclass(frozen=True, slots=True)
class Settled:
    """What a payout settled, with the P&L's signs: ``gross`` (charges), ``refunds``, ``fees``
    (Stripe's fees, as stripe_fees), ``other`` (every other line, disputes and returned
    payouts included) and ``net``, their sum."""

    transactions: int
    gross: int
    refunds: int
    fees: int
    other: int
    net: int


def settled(movements: Iterable[Movement]) -> Settled:
    """The breakdown of the balance transactions one payout settled (its own left out).
    Raises :class:`IdentityError` if Σ net differs from the lines' sum."""
    count = gross = refunds = fees = other = net = 0
    for m in movements:
        count += m.count
        net += m.net
        fees -= m.fee
        cat = m.reporting_category
        if cat in REVENUE:
            gross += m.amount
        elif cat in REFUNDS:
            refunds += m.amount
        elif cat in FEE_CATEGORIES:
            fees += m.amount
        else:
            other += m.amount
    if gross + refunds + fees + other != net:
        raise IdentityError(f"Σ net {net} != lines {gross + refunds + fees + other}")
    return Settled(count, gross, refunds, fees, other, net)
