"""revbot's invoice-based metrics (bot/metrics.py) against the oracle (tests/oracle_metrics.py),
which reads only the sandbox's own record of each subscription's history: every Metrics row of
the sandbox billing account agrees, field by field, exactly."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from bot.metrics import roll_forward
from bot.metrics_input import parse_invoice, parse_subscription
from bot.periods import Month
from bot.sandbox.billing import SandboxBilling
from tests import oracle_metrics

FIELDS = (
    "mrr_start", "new", "reactivation", "expansion", "contraction", "churn", "mrr_end", "arr",
    "subscribers_start", "new_subscribers", "reactivated_subscribers", "churned_subscribers",
    "subscribers_end", "subscriber_churn_rate", "gross_mrr_churn_rate", "net_revenue_retention",
    "arpa",
)  # fmt: skip


@pytest.mark.parametrize(
    ("end", "tz", "seed"),
    [
        (dt.date(2026, 12, 2), "UTC", 7),
        (dt.date(2026, 11, 17), "America/New_York", 11),
        (dt.date(2024, 3, 5), "Asia/Tokyo", 3),
    ],
)
def test_every_metrics_row_agrees_with_the_oracle(end: dt.date, tz: str, seed: int) -> None:
    billing = SandboxBilling.generate(end=end, seed=seed, tz=tz)
    subscriptions = [parse_subscription(s) for s in billing.subscriptions]
    invoices = [parse_invoice(i, billing.lines(i["id"])) for i in billing.invoices]
    through = Month.of(end).previous()  # the last closed month
    got = roll_forward(subscriptions, invoices, through=through, tz=ZoneInfo(tz))
    want = oracle_metrics.metrics(
        billing.history.values(), start=billing.start, end=billing.end, tz=tz
    )
    assert want, "the sandbox has subscriptions"
    by_key = {(str(r.month), r.currency.upper()): r for r in got.rows}
    assert set(by_key) == {(r.month, r.currency.upper()) for r in want}
    for expected in want:
        row = by_key[(expected.month, expected.currency.upper())]
        for name in FIELDS:
            assert getattr(row, name) == getattr(expected, name), (
                expected.month,
                expected.currency,
                name,
            )
    kinds = {
        name
        for r in want
        for name in ("new", "reactivation", "expansion", "contraction", "churn")
        if getattr(r, name)
    }
    assert kinds == {"new", "reactivation", "expansion", "contraction", "churn"}
