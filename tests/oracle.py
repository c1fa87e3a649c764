"""PRODUCT.md §5 re-stated for the tests, independently of ``bot.pnl``: the figures a test
expects are computed from the sandbox's own transactions, so revbot is never checking itself."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from decimal import Decimal
from typing import Any

MONEY = ["gross_revenue", "refunds", "disputes", "stripe_fees", "other", "net_revenue", "payouts"]
EXP = {"jpy": 0, "krw": 0, "kwd": 3, "bhd": 3}


def major(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-EXP.get(currency.lower(), 2))


def pnl(
    txns: Iterable[dict[str, Any]], group: Callable[[dict[str, Any]], Hashable | None]
) -> dict[tuple[Hashable, str], dict[str, Decimal]]:
    """Money lines in major units per (group, CURRENCY); ``group`` returns None to skip."""
    out: dict[tuple[Hashable, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(MONEY, 0))
    for t in txns:
        g = group(t)
        if g is None:
            continue
        cat, line = t["reporting_category"], out[(g, t["currency"])]
        if cat in ("payout", "payout_reversal"):
            line["payouts"] += t["amount"]
            continue
        if cat in ("transfer", "transfer_reversal", "topup", "topup_reversal") or cat.endswith(
            "reserved_funds"
        ):
            continue
        line["net_revenue"] += t["net"]
        line["stripe_fees"] -= t["fee"]
        if cat == "charge":
            line["gross_revenue"] += t["amount"]
        elif cat in ("refund", "refund_failure", "partial_capture_reversal"):
            line["refunds"] += t["amount"]
        elif cat in ("dispute", "dispute_reversal"):
            line["disputes"] += t["amount"]
        elif cat in ("fee", "tax", "network_cost"):
            line["stripe_fees"] += t["amount"]
        else:
            line["other"] += t["amount"]
    return {
        (g, c.upper()): {k: major(v, c) for k, v in lines.items()} for (g, c), lines in out.items()
    }
