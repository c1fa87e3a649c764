"""A fixed, made-up month (USD, EUR and JPY) for snapshot tests, screenshots and previews. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.mail.model import CurrencyReport, MonthlyReport
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


def sample_report(
    *,
    company: str = "Acme Analytics",
    livemode: bool = True,
    reconciled: bool = True,
    timezone: str = "America/New_York",
) -> MonthlyReport:
    """October 2026 of a made-up company selling in USD, EUR and JPY."""
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
    )


__all__ = ["SAMPLE_MONTH", "sample_report"]
