"""Value types of the investor email: the month's report, and one outgoing message. Pure.

Money is ``int`` minor units of the currency it sits next to; currencies are never added
together, so every figure lives inside one :class:`CurrencyReport`.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bot.money import normalize_currency
from bot.pnl import PnlLines, mom_pct

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


@dataclass(frozen=True, slots=True)
class MonthlyReport:
    """Everything the investor email shows for one month, all currencies."""

    company: str
    month: str
    timezone: str
    livemode: bool
    reconciled: bool
    currencies: tuple[CurrencyReport, ...]
    generated_at: datetime

    def __post_init__(self) -> None:
        parse_month(self.month)
        codes = [normalize_currency(c.currency) for c in self.currencies]
        if len(codes) != len(set(codes)):
            raise ValueError("each currency appears once in a report")

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
    "format_pct",
    "month_label",
    "parse_month",
    "period_label",
    "previous_month",
    "short_month_label",
]
