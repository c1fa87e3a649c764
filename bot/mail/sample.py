"""A fixed, made-up month (USD, EUR and JPY) for snapshot tests, screenshots and previews. Pure.

With ``recurring=True`` the month also has subscriptions: Metrics rows for USD (since January
2026), EUR (since September 2025, with a month of heavy churn) and JPY (its first month, so
its rates are undefined), and the email shows its "Recurring revenue" section.
"""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

from bot.mail.model import CurrencyReport, MonthlyReport
from bot.mail.recurring import recurring_revenue
from bot.metrics import MetricsRow
from bot.periods import Month
from bot.pnl import PnlLines

SAMPLE_MONTH = "2026-10"

_USD_HISTORY = (
    2_412_040, 2_598_310, 2_377_920, 2_804_500, 3_010_275, 3_288_640,
    3_402_110, 3_655_980, 3_870_415, 3_941_020, 4_085_600, 4_508_188,
)  # fmt: skip
# One month with a large dispute, so the chart shows a negative bar.
_EUR_HISTORY = (
    612_300, 655_120, 701_880, -18_450, 744_900, 802_310,
    845_770, 861_050, 912_440, 968_200, 1_051_900, 1_176_310,
)  # fmt: skip
_JPY_HISTORY = (
    1_204_000, 1_310_500, 1_288_000, 1_452_300, 1_520_800, 1_611_200,
    1_700_450, 1_688_100, 1_845_000, 1_990_750, 2_150_300, 2_266_540,
)  # fmt: skip

_MONTHS = tuple(f"{2025 + (10 + i) // 12}-{(10 + i) % 12 + 1:02d}" for i in range(12))


def _history(values: tuple[int, ...]) -> tuple[tuple[str, int], ...]:
    return tuple(zip(_MONTHS, values, strict=True))


# One month of subscriptions, in minor units (exact: annual plans make thirds and twelfths):
# new, reactivation, expansion, contraction, churn; then subscribers new, reactivated, churned.
_Moves = tuple[Fraction | int, Fraction | int, int, int, int, int, int, int]

_USD_MOVES: tuple[_Moves, ...] = (  # January to October 2026
    (812_000, 0, 0, 0, 0, 28, 0, 0),
    (296_500, 0, 18_000, 0, 24_900, 9, 0, 1),
    (341_200 + Fraction(100_000, 12), 0, 22_400, 9_900, 49_800, 11, 0, 2),
    (402_000, 0, 35_100, 12_000, 29_900, 12, 0, 1),
    (385_300, 24_900, 41_000, 0, 74_700, 11, 1, 3),
    (466_800, 0, 28_300, 19_900, 49_800, 14, 0, 2),
    (512_400 + Fraction(240_000, 12), 0, 52_600, 9_900, 99_600, 16, 0, 4),
    (438_900, 49_800, 61_200, 24_900, 74_700, 13, 2, 3),
    (497_500, 0, 44_800, 14_900, 124_500, 15, 0, 5),
    (566_250 + Fraction(50_000, 3), 24_900, 71_400, 29_900, 99_600, 17, 1, 4),
)
_EUR_MOVES: tuple[_Moves, ...] = (  # September 2025 to October 2026
    (210_000, 0, 0, 0, 0, 12, 0, 0),
    (64_000, 0, 9_000, 0, 19_000, 3, 0, 1),
    (71_500, 0, 12_000, 4_000, 0, 4, 0, 0),
    (38_000, 0, 0, 0, 57_000, 2, 0, 3),
    (92_000, 19_000, 6_500, 0, 19_000, 5, 1, 1),
    (48_000, 0, 15_000, 9_500, 38_000, 3, 0, 2),
    (86_500, 0, 11_000, 0, 19_000, 5, 0, 1),
    (57_000, 19_000, 22_000, 6_000, 0, 3, 1, 0),
    (0, 0, 0, 0, 114_000, 0, 0, 5),  # a reseller and its customers left
    (95_000, 0, 8_000, 0, 19_000, 5, 0, 1),
    (76_000, 0, 14_500, 3_500, 38_000, 4, 0, 2),
    (104_500, 19_000, 9_000, 0, 19_000, 6, 1, 1),
    (66_500 + Fraction(120_000, 12), 0, 17_000, 7_000, 38_000, 4, 0, 2),
    (121_000, 0, 26_000, 12_500, 57_000, 6, 0, 3),
)
_JPY_MOVES: tuple[_Moves, ...] = ((98_000, 0, 0, 0, 0, 7, 0, 0),)  # October 2026 only


def _rows(currency: str, first: Month, moves: tuple[_Moves, ...]) -> list[MetricsRow]:
    rows = []
    month, mrr, subscribers = first, Fraction(0), 0
    for new, react, expansion, contraction, churn, n_new, n_react, n_churned in moves:
        end = mrr + new + react + expansion - contraction - churn
        count = subscribers + n_new + n_react - n_churned
        rows.append(
            MetricsRow(
                month=month,
                currency=currency,
                mrr_start=mrr,
                new=Fraction(new),
                reactivation=Fraction(react),
                expansion=Fraction(expansion),
                contraction=Fraction(contraction),
                churn=Fraction(churn),
                mrr_end=end,
                subscribers_start=subscribers,
                new_subscribers=n_new,
                reactivated_subscribers=n_react,
                churned_subscribers=n_churned,
                subscribers_end=count,
            )
        )
        month, mrr, subscribers = month.next(), end, count
    return rows


def sample_metrics_rows() -> tuple[MetricsRow, ...]:
    """The sample account's Metrics rows, every month of every currency, by (month, currency)."""
    rows = (
        _rows("usd", Month(2026, 1), _USD_MOVES)
        + _rows("eur", Month(2025, 9), _EUR_MOVES)
        + _rows("jpy", Month(2026, 10), _JPY_MOVES)
    )
    return tuple(sorted(rows, key=lambda r: (r.month, r.currency)))


def sample_report(
    *,
    company: str = "Acme Analytics",
    livemode: bool = True,
    reconciled: bool = True,
    timezone: str = "America/New_York",
    recurring: bool = False,
) -> MonthlyReport:
    """October 2026 of a made-up company selling in USD, EUR and JPY; with ``recurring``, its
    subscriptions too (the email's "Recurring revenue" section)."""
    usd = PnlLines(
        gross_revenue=4_821_350, refunds=-142_000, disputes=-25_000,
        stripe_fees=-144_912, other=-1_250, payouts=-4_200_000,
    )  # fmt: skip
    usd_prev = PnlLines(
        gross_revenue=4_312_800, refunds=-98_500, disputes=0,
        stripe_fees=-128_700, other=0, payouts=-3_900_000,
    )  # fmt: skip
    eur = PnlLines(
        gross_revenue=1_264_000, refunds=-31_200, disputes=-9_900,
        stripe_fees=-46_590, other=0, payouts=-1_100_000,
    )  # fmt: skip
    eur_prev = PnlLines(
        gross_revenue=1_131_500, refunds=-39_800, disputes=0,
        stripe_fees=-39_800, other=0, payouts=-950_000,
    )  # fmt: skip
    jpy = PnlLines(
        gross_revenue=2_390_000, refunds=-32_000, disputes=0,
        stripe_fees=-86_040, other=-5_420, payouts=-2_000_000,
    )  # fmt: skip
    jpy_prev = PnlLines(
        gross_revenue=2_268_000, refunds=-40_000, disputes=0,
        stripe_fees=-77_700, other=0, payouts=-1_800_000,
    )  # fmt: skip
    assert usd.net_revenue == _USD_HISTORY[-1] and usd_prev.net_revenue == _USD_HISTORY[-2]
    assert eur.net_revenue == _EUR_HISTORY[-1] and eur_prev.net_revenue == _EUR_HISTORY[-2]
    assert jpy.net_revenue == _JPY_HISTORY[-1] and jpy_prev.net_revenue == _JPY_HISTORY[-2]
    return MonthlyReport(
        company=company,
        month=SAMPLE_MONTH,
        timezone=timezone,
        livemode=livemode,
        reconciled=reconciled,
        currencies=(
            CurrencyReport(
                currency="usd",
                lines=usd,
                previous=usd_prev,
                starting_balance=1_254_300,
                ending_balance=1_254_300 + usd.net_revenue + usd.payouts,
                history=_history(_USD_HISTORY),
            ),
            CurrencyReport(
                currency="eur",
                lines=eur,
                previous=eur_prev,
                starting_balance=402_150,
                # A 50 EUR top-up: shows the "other balance movements" line.
                ending_balance=402_150 + eur.net_revenue + eur.payouts + 5_000,
                history=_history(_EUR_HISTORY),
            ),
            CurrencyReport(
                currency="jpy",
                lines=jpy,
                previous=jpy_prev,
                starting_balance=530_000,
                ending_balance=530_000 + jpy.net_revenue + jpy.payouts,
                history=_history(_JPY_HISTORY),
            ),
        ),
        generated_at=datetime(2026, 11, 1, 11, 5, tzinfo=UTC),
        recurring=(
            recurring_revenue(sample_metrics_rows(), month=SAMPLE_MONTH) if recurring else None
        ),
    )


__all__ = ["SAMPLE_MONTH", "sample_metrics_rows", "sample_report"]
