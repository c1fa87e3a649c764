"""The email's "Recurring revenue" section: the model built from Metrics rows, the currency
order shared with the P&L, and the rendered section (HTML and text).

The model is checked on hand-built :class:`MetricsRow` values whose exact figures are chosen so
that rounding, absence and undefined rates show; one test feeds it the rows of a real
roll-forward instead. The snapshots of the email with the section are in tests/test_mail.py.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.mail.model import CurrencyReport, MonthlyReport, currency_order, main_currency
from bot.mail.recurring import (
    MRR_HISTORY_MONTHS,
    MrrMonth,
    RecurringCurrency,
    RecurringRevenue,
    recurring_revenue,
)
from bot.mail.render import format_rate, recurring_view, render
from bot.mail.sample import SAMPLE_MONTH, sample_metrics_rows, sample_report
from bot.metrics import MetricsRow
from bot.periods import Month
from bot.pnl import PnlLines
from tests.test_metrics import monthly, rf

OCT = Month(2026, 10)
XSS = "<script>alert(1)</script>"


def mrow(
    month: Month | str,
    currency: str = "usd",
    *,
    start: Fraction | int = 0,
    new: Fraction | int = 0,
    reactivation: Fraction | int = 0,
    expansion: Fraction | int = 0,
    contraction: Fraction | int = 0,
    churn: Fraction | int = 0,
    subs: tuple[int, int, int, int] = (0, 0, 0, 0),
) -> MetricsRow:
    """A Metrics row whose end is what the movements make (``subs``: start, new, reactivated,
    churned subscribers)."""
    at = month if isinstance(month, Month) else Month.parse(month)
    s0, n, r, c = subs
    end = Fraction(start) + new + reactivation + expansion - contraction - churn
    return MetricsRow(
        month=at, currency=currency, mrr_start=Fraction(start), new=Fraction(new),
        reactivation=Fraction(reactivation), expansion=Fraction(expansion),
        contraction=Fraction(contraction), churn=Fraction(churn), mrr_end=end,
        subscribers_start=s0, new_subscribers=n, reactivated_subscribers=r,
        churned_subscribers=c, subscribers_end=s0 + n + r - c,
    )  # fmt: skip


def series(
    currency: str, first: Month, ends: list[Fraction | int], subs: int = 1
) -> list[MetricsRow]:
    """Consecutive rows from ``first`` whose MRR ends at ``ends`` (growth as expansion, decline
    as contraction, a drop to 0 as churn), ``subs`` subscribers while MRR > 0."""
    rows, start, month = [], Fraction(0), first
    for end in map(Fraction, ends):
        had, has = start > 0, end > 0
        joined, left = has and not had, had and not has
        counts = (subs if had else 0, subs if joined else 0, 0, subs if left else 0)
        rows.append(
            mrow(
                month,
                currency,
                start=start,
                new=end if not had and has else 0,
                expansion=end - start if had and end > start else 0,
                contraction=start - end if has and end < start else 0,
                churn=start if had and not has else 0,
                subs=counts,
            )
        )
        start, month = end, month.next()
    return rows


def report(
    *pnl: tuple[str, int], recurring: RecurringRevenue | None = None, company: str = "Acme"
) -> MonthlyReport:
    """October 2026 with one P&L currency per (code, net revenue)."""
    return MonthlyReport(
        company=company,
        month="2026-10",
        timezone="UTC",
        livemode=True,
        reconciled=True,
        currencies=tuple(
            CurrencyReport(code, PnlLines(gross_revenue=net), None, None, None, (("2026-10", net),))
            for code, net in pnl
        ),
        generated_at=datetime(2026, 11, 1, tzinfo=UTC),
        recurring=recurring,
    )


def shown_in(figure: str, part: str) -> bool:
    """``figure`` appears in ``part`` as a whole figure, not inside a longer one."""
    return re.search(rf"(?<![\w.,+$€¥-]){re.escape(figure)}(?![\w.,%])", part) is not None


def section(html: str) -> str:
    """The HTML of the "Recurring revenue" section: from its title to the P&L's."""
    start = html.index(">Recurring revenue<")
    return html[start : html.index(">Profit and loss<", start)]


# -- the model ------------------------------------------------------------------------------


def test_figures_are_the_october_row_each_rounded_half_even_on_its_own() -> None:
    sept = mrow("2026-09", start=0, new=Fraction(1001, 2), subs=(0, 4, 0, 0))  # 500.5 cents
    octo = mrow(
        "2026-10", start=Fraction(1001, 2), new=Fraction(5, 2), reactivation=Fraction(3, 2),
        expansion=Fraction(1, 2), contraction=Fraction(3, 2), churn=2, subs=(4, 2, 1, 1),
    )  # fmt: skip
    section_ = recurring_revenue([octo, sept], month=OCT)
    assert section_ is not None and section_.month == "2026-10"
    (usd,) = section_.currencies
    assert octo.mrr_end == Fraction(1003, 2)  # 501.5
    # Half-even: 500.5 -> 500, 2.5 -> 2, 1.5 -> 2, 0.5 -> 0, 501.5 -> 502.
    assert (usd.mrr_start, usd.new, usd.reactivation, usd.expansion, usd.contraction,
            usd.churn, usd.mrr_end) == (500, 2, 2, 0, 2, 2, 502)  # fmt: skip
    # The change is the exact 1.0 rounded, not 502 - 500; ARR is 12 x 501.5 = 6018.
    assert (usd.mrr_change, usd.arr, usd.arr_change) == (1, 6018, 12)
    assert usd.mrr_change_rate == Fraction(2, 1001)
    assert (usd.subscribers_start, usd.new_subscribers, usd.reactivated_subscribers,
            usd.churned_subscribers, usd.subscribers_end) == (4, 2, 1, 1, 6)  # fmt: skip
    assert usd.subscriber_churn_rate == Fraction(1, 4)
    assert usd.net_revenue_retention == Fraction(1001 + 1 - 3 - 4, 1001)
    view = recurring_view(usd, month="2026-10")
    assert [(r.label, r.mrr, r.subscribers) for r in view.roll] == [
        ("Start of month", "$5.00", "4"),
        ("New", "+$0.02", "+2"),
        ("Reactivation", "+$0.02", "+1"),
        ("Expansion", "$0.00", ""),
        ("Contraction", "-$0.02", ""),
        ("Churn", "-$0.02", "-1"),
        ("End of month", "$5.02", "6"),
    ]
    assert (view.mrr, view.mrr_change, view.arr, view.arr_change) == (
        "$5.02",
        "+$0.01",
        "$60.18",
        "+$0.12",
    )
    assert (view.mrr_change_pct, view.churn_rate, view.retention) == ("+0.2%", "25.0%", "99.4%")


def test_jpy_is_shown_in_whole_yen() -> None:
    rows = [
        mrow("2026-09", "jpy", new=Fraction(29_801, 3), subs=(0, 3, 0, 0)),  # 9,933.67 yen
        mrow("2026-10", "jpy", start=Fraction(29_801, 3), new=Fraction(9_800), subs=(3, 1, 0, 0)),
    ]
    section_ = recurring_revenue(rows, month="2026-10")
    assert section_ is not None
    (jpy,) = section_.currencies
    assert (jpy.mrr_start, jpy.mrr_end, jpy.arr) == (9_934, 19_734, 236_804)
    view = recurring_view(jpy, month="2026-10")
    assert (view.code, view.mrr, view.arr) == ("JPY", "¥19,734", "¥236,804")
    assert view.roll[0].mrr == "¥9,934" and view.roll[1].mrr == "+¥9,800"
    assert [b.value for b in view.bars][-2:] == ["¥9,934", "¥19,734"]
    assert not any(
        re.search(r"¥[\d,]+\.\d", v) for v in [view.mrr, view.arr, *(b.value for b in view.bars)]
    )


def test_a_currency_that_churned_to_zero_this_month_is_shown_at_zero() -> None:
    rows = series("eur", Month(2026, 7), [10_000, 12_000, 9_000, 0], subs=3)
    section_ = recurring_revenue(rows, month=OCT)
    assert section_ is not None
    (eur,) = section_.currencies
    assert (eur.mrr_start, eur.churn, eur.mrr_end, eur.arr) == (9_000, 9_000, 0, 0)
    assert (eur.mrr_change, eur.mrr_change_rate) == (-9_000, Fraction(-1))
    assert (eur.subscriber_churn_rate, eur.net_revenue_retention) == (Fraction(1), Fraction(0))
    assert [p.mrr for p in eur.history][-4:] == [10_000, 12_000, 9_000, 0]
    view = recurring_view(eur, month="2026-10")
    assert (view.mrr, view.trend, view.badge) == ("€0.00", "down", "-100.0%")
    assert (view.churn_rate, view.retention) == ("100.0%", "0.0%")
    assert view.bars[-1].value == "€0.00" and view.bars[-1].width == 0 and not view.bars[-1].absent


def test_a_currency_without_mrr_in_the_twelve_months_is_left_out() -> None:
    # GBP churned in October 2025: zero rows since, none with MRR in Nov 2025 - Oct 2026.
    gbp = series("gbp", Month(2025, 8), [5_000, 5_000, 0] + [0] * 12)
    usd = series("usd", Month(2026, 10), [1_000])
    assert str(gbp[-1].month) == "2026-10"
    section_ = recurring_revenue(gbp + usd, month=OCT)
    assert section_ is not None
    assert [c.currency for c in section_.currencies] == ["usd"]
    assert recurring_revenue(gbp, month=OCT) is None
    # One month later in the window (churned in November 2025), it is still shown.
    late = series("gbp", Month(2025, 9), [5_000, 5_000, 4_000, 0] + [0] * 11)
    shown_late = recurring_revenue(late, month=OCT)
    assert shown_late is not None and shown_late.currencies[0].history[0].mrr == 4_000


def test_first_month_rates_are_undefined_and_shown_as_a_dash() -> None:
    section_ = recurring_revenue([mrow("2026-10", new=4_900, subs=(0, 2, 0, 0))], month=OCT)
    assert section_ is not None
    (usd,) = section_.currencies
    assert (usd.mrr_change_rate, usd.subscriber_churn_rate, usd.net_revenue_retention) == (
        None,
        None,
        None,
    )
    view = recurring_view(usd, month="2026-10")
    assert (view.churn_rate, view.retention, view.mrr_change_pct) == ("—", "—", "n/a")
    assert view.badge == "+$49.00"  # the amount, since a percentage of 0 means nothing
    text = render(report(("usd", 100), recurring=section_)).text
    assert "Subscriber churn rate: —" in text and "Net revenue retention: —" in text
    assert "Change vs September 2026: +$49.00\n" in text


def test_months_before_the_first_row_are_absent_not_zero() -> None:
    rows = series("usd", Month(2026, 8), [2_000, 0, 3_000])  # a churn, then a return
    section_ = recurring_revenue(rows, month=OCT)
    assert section_ is not None
    history = section_.currencies[0].history
    assert len(history) == MRR_HISTORY_MONTHS
    assert [p.month for p in history] == [f"2025-{m}" for m in ("11", "12")] + [
        f"2026-{m:02d}" for m in range(1, 11)
    ]
    assert [p.mrr for p in history] == [None] * 9 + [2_000, 0, 3_000]
    bars = recurring_view(section_.currencies[0], month="2026-10").bars
    assert [b.absent for b in bars] == [True] * 9 + [False] * 3
    assert [b.value for b in bars][8:] == ["—", "$20.00", "$0.00", "$30.00"]
    assert [b.width for b in bars][9:] == [66, 0, 100]


def test_a_currency_with_no_row_for_the_month_is_left_out() -> None:
    rows = series("eur", Month(2026, 1), [1_000] * 9) + series("usd", Month(2026, 10), [500])
    assert str(rows[8].month) == "2026-09"
    section_ = recurring_revenue(rows, month=OCT)
    assert section_ is not None and [c.currency for c in section_.currencies] == ["usd"]
    assert recurring_revenue(rows[:9], month=OCT) is None


def test_no_rows_no_section() -> None:
    assert recurring_revenue([], month=OCT) is None
    assert recurring_revenue((), month="2026-10") is None


def test_rows_that_disagree_or_repeat_are_refused() -> None:
    with pytest.raises(ValueError, match="two Metrics rows for 2026-10 USD"):
        recurring_revenue([mrow("2026-10", new=1), mrow("2026-10", new=2)], month=OCT)
    sept = mrow("2026-09", new=1_000, subs=(0, 1, 0, 0))
    octo = mrow("2026-10", start=999, subs=(1, 0, 0, 0))
    with pytest.raises(ValueError, match="different runs"):
        recurring_revenue([sept, octo], month=OCT)
    with pytest.raises(ValueError, match="YYYY-MM"):
        recurring_revenue([sept], month="October")


def test_the_section_must_be_for_the_report_month() -> None:
    section_ = recurring_revenue([mrow("2026-09", new=1_000)], month="2026-09")
    assert section_ is not None
    with pytest.raises(ValueError, match="2026-09"):
        report(("usd", 1), recurring=section_)
    with pytest.raises(ValueError, match="exactly 12"):
        replace(section_.currencies[0], history=section_.currencies[0].history[1:])


def test_from_a_real_roll_forward() -> None:
    """The rows roll_forward makes (one subscription from August, a second one in October, in
    two currencies) feed the section unchanged."""
    a, a_invoices = monthly("sub_a", "cus_a", "2026-08", 3)
    b, b_invoices = monthly("sub_b", "cus_b", "2026-10", 1)
    c, c_invoices = monthly("sub_c", "cus_c", "2026-09", 2, currency="jpy")
    rows = rf([a, b, c], a_invoices + b_invoices + c_invoices, "2026-10").rows
    section_ = recurring_revenue(rows, month=OCT)
    assert section_ is not None
    usd, jpy = sorted(section_.currencies, key=lambda x: x.currency != "usd")
    assert (usd.mrr_start, usd.new, usd.mrr_end, usd.subscribers_end) == (1_000, 1_000, 2_000, 2)
    assert [p.mrr for p in usd.history][-4:] == [None, 1_000, 1_000, 2_000]
    assert (jpy.mrr_start, jpy.mrr_end, jpy.net_revenue_retention) == (1_000, 1_000, Fraction(1))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.fractions(min_value=0, max_value=10**9, max_denominator=12), min_size=1, max_size=30
    )
)
def test_each_shown_figure_is_its_exact_value_rounded_half_even(ends: list[Fraction]) -> None:
    first = Month(2026, 10)
    for _ in range(len(ends) - 1):
        first = first.previous()
    rows = series("usd", first, list(ends))
    section_ = recurring_revenue(rows, month=OCT)
    window = rows[-MRR_HISTORY_MONTHS:]
    if not any(r.mrr_end for r in window) and not rows[-1].mrr_start:
        assert section_ is None
        return
    assert section_ is not None
    (usd,) = section_.currencies
    last = rows[-1]
    assert usd.mrr_end == round(last.mrr_end) and usd.arr == round(12 * last.mrr_end)
    assert usd.mrr_change == round(last.mrr_end - last.mrr_start)
    assert usd.contraction == round(last.contraction) and usd.churn == round(last.churn)
    absent = MRR_HISTORY_MONTHS - len(window)
    assert [p.mrr for p in usd.history] == [None] * absent + [round(r.mrr_end) for r in window]
    bars = recurring_view(usd, month="2026-10").bars
    assert all((b.width > 0) == bool(p.mrr) for b, p in zip(bars, usd.history, strict=True))
    assert max(b.width for b in bars) in (0, 100)


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (Fraction(423, 10_000), "4.2%"),
        (Fraction(1, 16), "6.2%"),  # 6.25 -> 6.2, half-even
        (Fraction(3, 16), "18.8%"),  # 18.75 -> 18.8
        (Fraction(1, 3), "33.3%"),
        (Fraction(1_234_567, 100_000), "1,234.6%"),
        (Fraction(0), "0.0%"),
        (None, "—"),
    ],
    ids=["plain", "half-even-down", "half-even-up", "third", "thousands", "zero", "none"],
)
def test_format_rate(rate: Fraction | None, text: str) -> None:
    assert format_rate(rate) == text


# -- the order of currencies ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("nets", "main"),
    [
        ({"eur": 500, "usd": 900, "gbp": 100}, "usd"),
        ({"eur": 900, "usd": 900}, "eur"),  # a tie goes to the first code
        ({"jpy": 2_000_000, "usd": 4_000_000}, "usd"),  # minor units: 40,000 USD > 2M yen
        ({"usd": -500, "eur": -100}, "eur"),  # the least negative when all lost money
        ({}, None),
    ],
    ids=["most", "tie", "minor-units", "negative", "none"],
)
def test_main_currency(nets: dict[str, int], main: str | None) -> None:
    currencies = [
        CurrencyReport(c.upper(), PnlLines(gross_revenue=n), None, None, None, ())
        for c, n in nets.items()
    ]
    assert main_currency(currencies) == main
    key = currency_order(main)
    assert sorted(["usd", "EUR", "gbp", "jpy"], key=key)[0].lower() == (main or "eur")


def pnl_order(html: str) -> list[str]:
    return re.findall(r"currency-tag[^>]*>([A-Z]{3})<", html[html.index(">Profit and loss<") :])


def test_main_currency_first_in_the_section_and_in_the_pnl() -> None:
    rows = [*series("eur", OCT, [1]), *series("gbp", OCT, [1]), *series("usd", OCT, [1])]
    section_ = recurring_revenue(rows, month=OCT)
    # The P&L comes in alphabetically, as the monthly job builds it; GBP has the most.
    rendered = render(report(("eur", 100), ("gbp", 300), ("usd", 200), recurring=section_))
    assert re.findall(r"currency-tag[^>]*>([A-Z]{3})<", section(rendered.html)) == [
        "GBP",
        "EUR",
        "USD",
    ]
    assert pnl_order(rendered.html) == ["GBP", "EUR", "USD"]
    glance = re.findall(r"glance-code[^>]*>([A-Z]{3})<", rendered.html)
    assert glance == ["GBP", "EUR", "USD"]
    assert re.findall(r"^([A-Z]{3})$", rendered.text, re.MULTILINE) == ["GBP", "EUR", "USD"] * 2
    assert rendered.html.index("glance-code") > rendered.html.index(">Profit and loss<")


def test_a_subscription_currency_outside_the_pnl_keeps_the_order() -> None:
    rows = [*series("chf", OCT, [1]), *series("usd", OCT, [1]), *series("aud", OCT, [1])]
    rendered = render(
        report(("eur", 10), ("usd", 20), recurring=recurring_revenue(rows, month=OCT))
    )
    assert re.findall(r"currency-tag[^>]*>([A-Z]{3})<", section(rendered.html)) == [
        "USD",
        "AUD",
        "CHF",
    ]
    assert pnl_order(rendered.html) == ["USD", "EUR"]


def test_pnl_order_without_subscriptions_is_main_first_too() -> None:
    rendered = render(report(("eur", 100), ("usd", 200)))
    assert re.findall(r"currency-tag[^>]*>([A-Z]{3})<", rendered.html) == ["USD", "EUR"]
    assert ">Recurring revenue<" not in rendered.html


# -- the rendered section -------------------------------------------------------------------


def test_the_section_comes_before_the_pnl_in_both_parts() -> None:
    rendered = render(sample_report(recurring=True))
    html, text = rendered.html, rendered.text
    assert html.count(">Recurring revenue<") == 1
    assert html.index(">Recurring revenue<") < html.index(">Profit and loss<")
    assert html.index(">Profit and loss<") < html.index("Net revenue, October 2026")
    assert html.index("MRR, end of October 2026") < html.index("glance-code")
    assert text.count("RECURRING REVENUE\n") == 1
    assert text.index("RECURRING REVENUE\n") < text.index("PROFIT AND LOSS\n")
    assert text.index("ROLL-FORWARD, OCTOBER 2026") < text.index("Net revenue: $45,081.88")


def test_every_figure_is_in_both_parts() -> None:
    report_ = sample_report(recurring=True)
    rendered = render(report_)
    body = section(rendered.html)
    text = rendered.text[: rendered.text.index("PROFIT AND LOSS\n")]
    assert report_.recurring is not None
    for currency in report_.recurring.currencies:
        view = recurring_view(currency, month=SAMPLE_MONTH)
        figures = [
            view.mrr,
            view.mrr_change,
            view.arr,
            view.arr_change,
            view.churn_rate,
            view.retention,
        ]
        figures += [r.mrr for r in view.roll] + [r.subscribers for r in view.roll if r.subscribers]
        for figure in figures:
            assert shown_in(figure, body), figure
            assert shown_in(figure, text), figure
    assert "+14.0%" in body and "(+14.0%)" in text  # USD's MRR change


def test_the_chart_reads_without_images() -> None:
    report_ = sample_report(recurring=True)
    body = section(render(report_).html)
    assert "<img" not in body.lower() and "url(" not in body and "background-image" not in body
    assert report_.recurring is not None
    cards = body.split("currency-tag")[1:]
    assert len(cards) == len(report_.ordered_recurring) == 3
    for card, currency in zip(cards, report_.ordered_recurring, strict=True):
        view = recurring_view(currency, month=SAMPLE_MONTH)
        chart = card[card.index("MRR, last 12 months") :]
        # Every month is a row with its label and its value as text, in order.
        cells = re.findall(
            r"<td[^>]*>([A-Z][a-z]{2} \d{4})</td>.*?<td[^>]*>([^<]+)</td>\n</tr>", chart, re.S
        )
        assert cells == [(b.label, b.value) for b in view.bars]
        # A bar is a table cell with a colour and a width; months without MRR have none.
        bars = re.findall(
            r'<table width="(\d+)%"[^>]*><tbody><tr><td height="10" bgcolor="(#[0-9a-f]{6})"', chart
        )
        assert [int(w) for w, _ in bars] == [b.width for b in view.bars if b.width]
        assert [c for _, c in bars].count("#0f766e") == 1  # the report month, darker
        assert chart.count("no MRR yet") == sum(b.absent for b in view.bars)


def test_the_text_chart() -> None:
    text = render(sample_report(recurring=True)).text
    charts = re.findall(r"MRR, LAST 12 MONTHS\n(.*?)\n\n", text, re.S)
    assert len(charts) == 3
    usd = charts[0].splitlines()
    assert usd[0] == "Nov 2025           —  (no MRR yet)"
    assert usd[-1] == "Oct 2026  $44,893.50  " + "#" * 28 + "  <- October 2026"
    assert charts[2].count("(no MRR yet)") == 11  # JPY: its first month is October


def test_the_sections_tables_are_aligned_in_text() -> None:
    text = render(sample_report(recurring=True)).text
    blocks = re.findall(r"ROLL-FORWARD, OCTOBER 2026\n(.*?)\nSubscriber churn", text, re.S)
    assert len(blocks) == 3
    for block in blocks:
        header, *rows = [line for line in block.splitlines() if not line.startswith("-")]
        assert len(rows) == 7
        # Amounts end under "MRR", counts under "Subscribers" (or the line ends after the
        # amount, for expansion and contraction, which move no subscriber).
        column = header.index("MRR") + len("MRR")
        for line in rows:
            assert line[column - 1] != " " and line[column : column + 2] in ("  ", ""), line
            assert len(line) in (column, len(header)), line


def test_no_subscriptions_no_section_and_the_same_email() -> None:
    plain = render(sample_report())
    for recurring in (None, recurring_revenue([], month=SAMPLE_MONTH)):
        same = render(replace(sample_report(), recurring=recurring))
        assert same == plain
    assert "Recurring revenue" not in plain.html and "MRR" not in plain.html
    assert "RECURRING REVENUE" not in plain.text and "MRR" not in plain.text


def test_the_email_with_the_section_is_not_clipped_by_gmail() -> None:
    html = render(sample_report(recurring=True)).html
    assert len(html.encode()) < 102_000


def test_names_and_zone_are_escaped_in_the_section() -> None:
    report_ = replace(
        sample_report(company=XSS, recurring=True), timezone='"><img src=x onerror=alert(1)>'
    )
    rendered = render(report_)
    assert "<script" not in rendered.html.lower() and "<img" not in rendered.html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in section(rendered.html)
    assert rendered.text.startswith(f"{XSS}: monthly revenue report, October 2026")


def test_sample_rows_and_section() -> None:
    rows = sample_metrics_rows()
    assert [(str(r.month), r.currency) for r in rows] == sorted(
        (str(r.month), r.currency) for r in rows
    )
    report_ = sample_report(recurring=True)
    assert report_.recurring is not None
    assert [c.currency for c in report_.ordered_recurring] == ["usd", "eur", "jpy"]
    usd = report_.ordered_recurring[0]
    assert usd.history[:2] == (MrrMonth("2025-11", None), MrrMonth("2025-12", None))
    assert isinstance(usd, RecurringCurrency)
    assert sample_report().recurring is None
