"""Value types of the investor email: the month's report, and one outgoing message. Pure.

Money is ``int`` minor units of the currency it sits next to; currencies are never added
together, so every figure lives inside one :class:`CurrencyReport`.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from bot.money import normalize_currency
from bot.pnl import PnlLines, mom_pct

if TYPE_CHECKING:  # bot.mail.recurring builds on this module's month helpers
    from bot.mail.recurring import RecurringCurrency, RecurringRevenue

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")

HISTORY_MONTHS = 12


def parse_month(month: str) -> tuple[int, int]:
    """``"2026-10"`` -> ``(2026, 10)``; raises ``ValueError`` for anything else."""
    m = _MONTH_RE.match(month)
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"not a month (YYYY-MM): {month!r}")
    return int(m.group(1)), int(m.group(2))


def month_label(month: str) -> str:
    """``"2026-10"`` -> ``"October 2026"`` (English month names, independent of the locale)."""
    year, mon = parse_month(month)
    return f"{calendar.month_name[mon]} {year}"


def short_month_label(month: str) -> str:
    """``"2026-10"`` -> ``"Oct"``."""
    return calendar.month_abbr[parse_month(month)[1]]


def previous_month(month: str) -> str:
    """``"2026-01"`` -> ``"2025-12"``."""
    year, mon = parse_month(month)
    return f"{year - 1}-12" if mon == 1 else f"{year}-{mon - 1:02d}"


def period_label(month: str) -> str:
    """The month's days: ``"2026-10"`` -> ``"1-31 October 2026"`` (with an en dash)."""
    year, mon = parse_month(month)
    last = calendar.monthrange(year, mon)[1]
    return f"1–{last} {calendar.month_name[mon]} {year}"


def format_pct(pct: Decimal | None) -> str:
    """``Decimal("12.345")`` -> ``"+12.3%"``; ``None`` -> ``"n/a"``."""
    if pct is None:
        return "n/a"
    rounded = pct.quantize(Decimal("0.1"))
    if rounded == 0:
        return "0.0%"
    return f"{rounded:+,.1f}%"


@dataclass(frozen=True, slots=True)
class CurrencyReport:
    """One currency's month: P&L lines, the previous month's lines, balances and history.

    ``history`` holds up to 12 ``(YYYY-MM, net_revenue)`` pairs ending with this month, oldest
    first. Balances are ``None`` when the balance report did not give them.
    """

    currency: str
    lines: PnlLines
    previous: PnlLines | None
    starting_balance: int | None
    ending_balance: int | None
    history: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        normalize_currency(self.currency)
        if len(self.history) > HISTORY_MONTHS:
            raise ValueError(f"history holds at most {HISTORY_MONTHS} months")
        months = [m for m, _ in self.history]
        for m in months:
            parse_month(m)
        if months != sorted(set(months)):
            raise ValueError("history months must be distinct and oldest first")

    @property
    def net_change(self) -> int | None:
        """Net revenue minus the previous month's, or ``None`` without a previous month."""
        if self.previous is None:
            return None
        return self.lines.net_revenue - self.previous.net_revenue

    @property
    def net_change_pct(self) -> Decimal | None:
        """Net revenue change in percent (``None`` when the previous month is 0 or missing)."""
        prev = None if self.previous is None else self.previous.net_revenue
        return mom_pct(self.lines.net_revenue, prev)

    @property
    def other_balance_movements(self) -> int | None:
        """What moved the balance besides net revenue and payouts (transfers, top-ups, reserves)."""
        if self.starting_balance is None or self.ending_balance is None:
            return None
        return (
            self.ending_balance
            - self.starting_balance
            - self.lines.net_revenue
            - self.lines.payouts
        )


def main_currency(currencies: Iterable[CurrencyReport]) -> str | None:
    """The account's main currency in the month: the one with the most net revenue in the P&L,
    a tie going to the first code alphabetically; ``None`` without any currency.

    Net revenue is compared as the P&L holds it, in each currency's minor units: revbot has no
    exchange rates, and minor units (a cent, a yen) are closer to one scale than major units.
    """
    best = min(
        currencies,
        key=lambda c: (-c.lines.net_revenue, normalize_currency(c.currency)),
        default=None,
    )
    return None if best is None else normalize_currency(best.currency)


def currency_order(main: str | None) -> Callable[[str], tuple[bool, str]]:
    """Sort key for currency codes in the email: ``main`` first, then the others by code.

    The one rule for every list of currencies the email shows (P&L and recurring revenue).
    """
    first = None if main is None else normalize_currency(main)

    def key(code: str) -> tuple[bool, str]:
        normalized = normalize_currency(code)
        return normalized != first, normalized

    return key


@dataclass(frozen=True, slots=True)
class MonthlyReport:
    """Everything the investor email shows for one month, all currencies.

    ``recurring``: the "Recurring revenue" section, made by
    :func:`bot.mail.recurring.recurring_revenue`; ``None`` for an account without
    subscriptions, and then the email has no such section. ``currencies`` may come in any
    order: the email shows them, and those of ``recurring``, main currency first
    (:attr:`ordered_currencies`, :attr:`ordered_recurring`).
    """

    company: str
    month: str
    timezone: str
    livemode: bool
    reconciled: bool
    currencies: tuple[CurrencyReport, ...]
    generated_at: datetime
    recurring: RecurringRevenue | None = None

    def __post_init__(self) -> None:
        parse_month(self.month)
        codes = [normalize_currency(c.currency) for c in self.currencies]
        if len(codes) != len(set(codes)):
            raise ValueError("each currency appears once in a report")
        if self.recurring is not None and self.recurring.month != self.month:
            raise ValueError(
                f"the recurring revenue section is for {self.recurring.month}, "
                f"the report for {self.month}"
            )

    @property
    def main_currency(self) -> str | None:
        """See :func:`main_currency`."""
        return main_currency(self.currencies)

    @property
    def ordered_currencies(self) -> tuple[CurrencyReport, ...]:
        """The P&L's currencies as the email shows them: the main currency first."""
        key = currency_order(self.main_currency)
        return tuple(sorted(self.currencies, key=lambda c: key(c.currency)))

    @property
    def ordered_recurring(self) -> tuple[RecurringCurrency, ...]:
        """The recurring revenue section's currencies in the same order as the P&L's."""
        if self.recurring is None:
            return ()
        key = currency_order(self.main_currency)
        return tuple(sorted(self.recurring.currencies, key=lambda c: key(c.currency)))

    @property
    def month_label(self) -> str:
        """``"October 2026"``."""
        return month_label(self.month)

    @property
    def previous_month_label(self) -> str:
        """``"September 2026"``."""
        return month_label(previous_month(self.month))


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """The rendered content, before it is addressed to anyone."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """One message to exactly one recipient, so no investor sees another's address."""

    sender: str
    to: str
    subject: str
    html: str
    text: str

    def __post_init__(self) -> None:
        if not self.to or "," in self.to or ";" in self.to:
            raise ValueError("an OutgoingEmail has exactly one recipient")
        for name in ("sender", "to", "subject"):
            if any(c in getattr(self, name) for c in "\r\n"):
                raise ValueError(f"{name} must be a single line")

    @classmethod
    def addressed(cls, rendered: RenderedEmail, *, sender: str, to: str) -> OutgoingEmail:
        """The rendered email, from ``sender`` to the single address ``to``."""
        return cls(
            sender=sender, to=to, subject=rendered.subject, html=rendered.html, text=rendered.text
        )


__all__ = [
    "HISTORY_MONTHS",
    "CurrencyReport",
    "MonthlyReport",
    "OutgoingEmail",
    "RenderedEmail",
    "currency_order",
    "format_pct",
    "main_currency",
    "month_label",
    "parse_month",
    "period_label",
    "previous_month",
    "short_month_label",
]
