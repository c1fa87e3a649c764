"""Investor metrics end to end: `revbot backfill` then `revbot monthly --month M` against the
sandbox (balance transactions, subscriptions and invoices through the real stripe library) fill
the Metrics tab for every month, equal to the oracle's rows (computed from the sandbox's own
record of each subscription's history) to the minor unit, and the email for M shows the
"Recurring revenue" section; a re-run adds no row."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from bot.metrics import METRICS_COLUMNS, shown_major
from bot.periods import Month
from tests import oracle_metrics
from tests.conftest import Cli, days_ago, today_utc

LAST = Month.of(today_utc()).previous()
MONEY = ("mrr_start", "new", "reactivation", "expansion", "contraction", "churn", "mrr_end", "arr")
COUNTS = ("subscribers_start", "new_subscribers", "reactivated_subscribers",
          "churned_subscribers", "subscribers_end")  # fmt: skip
RATES = ("subscriber_churn_rate", "gross_mrr_churn_rate", "net_revenue_retention")


def _metrics_tab(data: Path) -> dict[tuple[str, str], dict[str, Any]]:
    ws = load_workbook(data / "dashboard.xlsx")["Metrics"]
    header = [c.value for c in ws[1]]
    assert header == list(METRICS_COLUMNS)
    rows = [dict(zip(header, r, strict=True)) for r in ws.iter_rows(min_row=2, values_only=True)]
    keyed = {(r["month"], r["currency"]): r for r in rows}
    assert len(keyed) == len(rows), "a duplicate Metrics row"
    return keyed


def test_backfill_then_monthly_fills_metrics_equal_to_the_oracle_and_the_email_shows_them(
    cli: Cli, sandbox: Any, sandbox_billing: Any
) -> None:
    env = {"EMAIL_FROM": "Acme <finance@acme.example>", "INVESTOR_EMAILS": "ada@investor.example"}
    assert cli("backfill", "--since", days_ago(40).isoformat(), env=env).exit_code == 0
    run = cli("monthly", "--month", str(LAST), env=env)
    assert run.exit_code == 0, run.stderr
    data = Path(cli.env["DATA_DIR"])
    tab = _metrics_tab(data)

    want = oracle_metrics.metrics(
        sandbox_billing.history.values(), start=sandbox_billing.start, end=sandbox_billing.end,
        tz="UTC",
    )  # fmt: skip
    want = [r for r in want if Month.parse(r.month) <= LAST]
    assert want and {(r.month, r.currency.upper()) for r in want} == set(tab)
    for expected in want:
        row = tab[(expected.month, expected.currency.upper())]
        for name in MONEY:
            value = getattr(expected, name)
            shown = shown_major(value, expected.currency)
            assert Decimal(str(row[name])) == shown, (expected.month, name)
        for name in COUNTS:
            assert row[name] == getattr(expected, name), (expected.month, name)
        for name in RATES:
            rate: Fraction | None = getattr(expected, name)
            if rate is None:
                assert row[name] is None
            else:
                assert abs(Fraction(row[name]) - rate) < Fraction(1, 10**9), (expected.month, name)
        # The identity, on the unrounded values the oracle gives.
        assert expected.mrr_end == (
            expected.mrr_start + expected.new + expected.reactivation + expected.expansion
            - expected.contraction - expected.churn
        )  # fmt: skip

    emails = list((data / "outbox").rglob("*.html"))
    assert emails, "the email went to the outbox"
    html = emails[0].read_text(encoding="utf-8")
    assert "Recurring revenue" in html and html.index("Recurring revenue") < html.index("Profit")

    # Again: no new row, the same figures.
    assert cli("daily", env=env).exit_code == 0
    assert cli("monthly", "--month", str(LAST), "--no-send", env=env).exit_code == 0
    assert _metrics_tab(data) == tab
