"""The email's "Recurring revenue" section, from the Metrics rows of the roll-forward. Pure.

:func:`recurring_revenue` turns :class:`bot.metrics.MetricsRow` rows (every month the caller
has, every currency) into what the section shows for one report month: per currency, MRR and
ARR with their change against the month before, the month's roll-forward, subscribers, churn,
net revenue retention and twelve months of MRR. Money is shown in whole minor units, each
figure rounded half-even from the exact value on its own (:func:`bot.metrics.shown`), so a shown
roll-forward may differ from its identity by a minor unit or two; rates stay exact ``Fraction``
values (0.0423) until the renderer formats them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from bot.mail.model import parse_month
from bot.metrics import MetricsRow, shown
from bot.money import normalize_currency
from bot.periods import Month

# The chart's months: the report month and the eleven before it.
MRR_HISTORY_MONTHS = 12


@dataclass(frozen=True, slots=True)
class MrrMonth:
    """One month of the MRR chart: MRR at its end, or ``None`` before the currency's first
    Metrics row (no subscriber in that currency yet: absent, which is not zero)."""

    month: str  # "YYYY-MM"
    mrr: int | None


@dataclass(frozen=True, slots=True)
class RecurringCurrency:
    """One currency's recurring revenue in the report month; money in shown minor units.

    ``mrr_start`` is MRR at the end of the month before, so the changes are against it.
    ``mrr_change_rate`` is ``None`` when that was 0 (a percentage would mean nothing).
    """

    currency: str
    mrr_start: int
    new: int
    reactivation: int
    expansion: int
    contraction: int
    churn: int
    mrr_end: int
    mrr_change: int
    mrr_change_rate: Fraction | None
    arr: int
    arr_change: int
    subscribers_start: int
    new_subscribers: int
    reactivated_subscribers: int
    churned_subscribers: int
    subscribers_end: int
    subscriber_churn_rate: Fraction | None
    net_revenue_retention: Fraction | None
    history: tuple[MrrMonth, ...]

    def __post_init__(self) -> None:
        normalize_currency(self.currency)
        if len(self.history) != MRR_HISTORY_MONTHS:
            raise ValueError(f"the MRR history holds exactly {MRR_HISTORY_MONTHS} months")


@dataclass(frozen=True, slots=True)
class RecurringRevenue:
    """The section for one report month: the currencies that have MRR to show, by code."""

    month: str  # "YYYY-MM", the report month
    currencies: tuple[RecurringCurrency, ...]

    def __post_init__(self) -> None:
        parse_month(self.month)
        if not self.currencies:
            raise ValueError("a recurring revenue section shows at least one currency")
        codes = [normalize_currency(c.currency) for c in self.currencies]
        if len(codes) != len(set(codes)):
            raise ValueError("each currency appears once in the recurring revenue section")
        for c in self.currencies:
            if c.history[-1].month != self.month:
                raise ValueError("each MRR history ends with the report month")


def _window(month: Month) -> tuple[str, ...]:
    months = [month]
    while len(months) < MRR_HISTORY_MONTHS:
        months.insert(0, months[0].previous())
    return tuple(str(m) for m in months)


def _currency(
    row: MetricsRow, code: str, window: tuple[str, ...], rows: dict[str, MetricsRow]
) -> RecurringCurrency:
    before = rows.get(window[-2])
    if before is not None and before.mrr_end != row.mrr_start:
        raise ValueError(
            f"{code.upper()}: MRR at the end of {window[-2]} is {before.mrr_end} but "
            f"{window[-1]} starts from {row.mrr_start}; the rows come from different runs"
        )
    change = row.mrr_end - row.mrr_start
    return RecurringCurrency(
        currency=code,
        mrr_start=shown(row.mrr_start, code),
        new=shown(row.new, code),
        reactivation=shown(row.reactivation, code),
        expansion=shown(row.expansion, code),
        contraction=shown(row.contraction, code),
        churn=shown(row.churn, code),
        mrr_end=shown(row.mrr_end, code),
        mrr_change=shown(change, code),
        mrr_change_rate=change / row.mrr_start if row.mrr_start else None,
        arr=shown(row.arr, code),
        arr_change=shown(12 * change, code),
        subscribers_start=row.subscribers_start,
        new_subscribers=row.new_subscribers,
        reactivated_subscribers=row.reactivated_subscribers,
        churned_subscribers=row.churned_subscribers,
        subscribers_end=row.subscribers_end,
        subscriber_churn_rate=row.subscriber_churn_rate,
        net_revenue_retention=row.net_revenue_retention,
        history=tuple(
            MrrMonth(m, None if m not in rows else shown(rows[m].mrr_end, code)) for m in window
        ),
    )


def recurring_revenue(rows: Iterable[MetricsRow], *, month: Month | str) -> RecurringRevenue | None:
    """The "Recurring revenue" section for ``month``, or ``None`` when there is nothing to show.

    ``rows``: the account's Metrics rows, any months, any currencies, in any order (at least
    the twelve months up to ``month`` for a full chart). A currency is shown when it has a row
    for ``month`` and some MRR in the chart's twelve months: one whose subscribers all left
    earlier than that has nothing left to say. ``None`` (an account without subscriptions) means
    the email has no such section at all.
    """
    target = month if isinstance(month, Month) else Month(*parse_month(month))
    window = _window(target)
    by_currency: dict[str, dict[str, MetricsRow]] = {}
    for row in rows:
        code = normalize_currency(row.currency)
        own = by_currency.setdefault(code, {})
        key = str(row.month)
        if key in own:
            raise ValueError(f"two Metrics rows for {key} {code.upper()}")
        own[key] = row
    shown_currencies = []
    for code, own in sorted(by_currency.items()):
        current = own.get(window[-1])
        if current is None:
            continue
        if current.mrr_start <= 0 and not any(own[m].mrr_end > 0 for m in window if m in own):
            continue
        shown_currencies.append(_currency(current, code, window, own))
    if not shown_currencies:
        return None
    return RecurringRevenue(month=window[-1], currencies=tuple(shown_currencies))


__all__ = [
    "MRR_HISTORY_MONTHS",
    "MrrMonth",
    "RecurringCurrency",
    "RecurringRevenue",
    "recurring_revenue",
]
