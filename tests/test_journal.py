"""The month's journal: balanced per currency, equal to the Monthly row, rounded for Xero and
QuickBooks with a rounding line only when needed, and written in each import format."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot import journal as jr
from bot.errors import ConfigError, UsageError
from bot.journal import (
    DEFAULT_ACCOUNTS,
    FORMATS,
    Account,
    build_journal,
    monthly_columns,
    parse_accounts,
    render,
    rounded,
    xero_journal,
)
from bot.money import MoneyError, exponent
from bot.pnl import PnlLines
from tests.test_layers import CORE, graph

# -- the documented column lists, copied from the sources --------------------------------------

# Xero Central, "Enter multiple manual journals using an import template"
# (https://help.xero.com/nz/ManualJournalsImport): Narration, Date, Description, AccountCode,
# TaxRate, Amount, TrackingName1/TrackingOption1, TrackingName2/TrackingOption2. Narration, Date,
# AccountCode, TaxRate and Amount are mandatory; the template marks those with "*".
XERO_TEMPLATE = [
    "*Narration", "*Date", "Description", "*AccountCode", "*TaxRate", "*Amount",
    "TrackingName1", "TrackingOption1", "TrackingName2", "TrackingOption2",
]  # fmt: skip
XERO_REQUIRED = ["*Narration", "*Date", "*AccountCode", "*TaxRate", "*Amount"]

# Intuit, "Import journal entries" (QuickBooks Online, https://quickbooks.intuit.com/learn-support/
# en-au/help-article/import-export-files/import-journal-entries-quickbooks-online/L4tQBwbs7_AU_en_AU):
# Journal No., Journal Date, Account Name, Description, Debits, Credits; Name on A/P and A/R
# lines; Class and Location with tracking on. Currency and Memo: QuickBooks' journal fields as
# Transaction Pro lists them (https://support.transactionpro.com/kb/article/
# 492-journal-entry-import-fields-for-transaction-pro-online/).
QUICKBOOKS_TEMPLATE = [
    "Journal No", "Journal Date", "Currency", "Memo", "Account Name", "Debits", "Credits",
    "Description", "Name", "Location", "Class",
]  # fmt: skip
QUICKBOOKS_REQUIRED = ["Journal No", "Journal Date", "Account Name", "Description"]

CURRENCIES = ["usd", "jpy", "kwd", "eur", "bhd", "krw", "isk"]
amounts = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.integers(min_value=-20, max_value=20),
    st.just(0),
)
rows = st.builds(
    PnlLines,
    gross_revenue=amounts,
    refunds=amounts,
    disputes=amounts,
    stripe_fees=amounts,
    other=amounts,
    payouts=amounts,
)
months = st.builds(
    lambda y, m: f"{y:04d}-{m:02d}",
    st.integers(min_value=2010, max_value=2099),
    st.integers(min_value=1, max_value=12),
)

MARCH = PnlLines(
    gross_revenue=100_000, refunds=-5_000, disputes=-1_500, stripe_fees=-3_200, other=7,
    payouts=-80_000,
)  # fmt: skip


def parse(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    return list(reader.fieldnames or []), list(reader)


# -- the journal ------------------------------------------------------------------------------


@given(months, st.sampled_from(CURRENCIES), rows)
def test_every_journal_balances_and_equals_the_monthly_row(
    month: str, currency: str, row: PnlLines
) -> None:
    j = build_journal(month, currency, row)
    assert j.debits() == j.credits()
    for line in j.lines:
        assert line.debit >= 0 and line.credit >= 0
        assert (line.debit > 0) != (line.credit > 0), line  # one side, never a zero line
    assert monthly_columns(j) == row.as_dict()
    assert j.balance("clearing") == row.net_revenue + row.payouts
    assert j.balance("bank") == -row.payouts
    assert j.is_empty == (row == PnlLines())


@given(months, st.sampled_from(CURRENCIES), rows, st.sampled_from([0, 1, 2, 3]))
def test_rounding_keeps_the_journal_balanced(
    month: str, currency: str, row: PnlLines, places: int
) -> None:
    j = build_journal(month, currency, row)
    r = rounded(j, places)
    exp = exponent(currency)
    shown = min(exp, places)
    assert r.places == shown
    assert sum(x.debit for x in r.lines) == sum(x.credit for x in r.lines)
    for x in r.lines:
        for v in (x.debit, x.credit):
            assert v >= 0 and v == v.quantize(Decimal(1).scaleb(-shown))
    fixes = [x for x in r.lines if x.rounding]
    # Exact when the target keeps the currency's decimals (JPY always; KWD and BHD for 3).
    if places >= exp:
        assert not fixes
        assert [(x.debit, x.credit) for x in r.lines] == [
            (Decimal(ln.debit).scaleb(-exp), Decimal(ln.credit).scaleb(-exp)) for ln in j.lines
        ]
    # A rounding line only when the rounded lines (without it) do not balance, on `other`.
    unrounded_fix = sum(x.amount for x in r.lines if not x.rounding)
    assert bool(fixes) == (unrounded_fix != 0)
    assert len(fixes) <= 1
    if fixes:
        fix = fixes[0]
        assert fix.code == DEFAULT_ACCOUNTS.other.code and fix.key == "other"
        assert "Rounding" in fix.description
        assert fix.amount == -unrounded_fix
        step = Decimal(1).scaleb(-shown)
        assert abs(fix.amount) <= len(j.lines) * step / 2


def test_a_months_lines() -> None:
    j = build_journal("2026-03", "USD", MARCH)
    assert j.currency == "usd" and j.month == "2026-03"
    assert j.date == date(2026, 3, 31)
    assert j.narration == "Stripe activity, March 2026 (USD)"
    assert j.journal_no == "revbot-2026-03-USD"
    assert [(ln.key, ln.code, ln.debit, ln.credit) for ln in j.lines] == [
        ("sales", "SALES", 0, 100_000),
        ("refunds", "REFUNDS", 5_000, 0),
        ("disputes", "DISPUTES", 1_500, 0),
        ("fees", "STRIPEFEES", 3_200, 0),
        ("other", "STRIPEMISC", 0, 7),
        ("clearing", "CLEARING", 90_307, 0),  # net revenue into the Stripe balance
        ("bank", "BANK", 80_000, 0),  # the payout lands in the bank
        ("clearing", "CLEARING", 0, 80_000),  # and leaves the Stripe balance
    ]


def test_signs_flip_sides() -> None:
    """A won dispute, refunded fees, a failed payout's reversal: the other side."""
    row = PnlLines(disputes=1_000, stripe_fees=50, other=-20, payouts=500)
    j = build_journal("2024-02", "eur", row)
    got = {(ln.key, ln.description): (ln.debit, ln.credit) for ln in j.lines}
    assert got[("disputes", "Disputes, net of reversals")] == (0, 1_000)
    assert got[("fees", "Stripe fees")] == (0, 50)
    assert got[("other", "Other Stripe activity")] == (20, 0)
    assert got[("bank", jr.PAYOUTS_LINE)] == (0, 500)
    assert got[("clearing", jr.PAYOUTS_LINE)] == (500, 0)
    assert got[("clearing", jr.NET_REVENUE_LINE)] == (1_030, 0)
    assert j.date == date(2024, 2, 29)


def test_a_zero_month_is_an_empty_journal_and_a_header_only_file() -> None:
    j = build_journal("2026-01", "usd", PnlLines())
    assert j.is_empty and j.lines == ()
    assert rounded(j, 2).lines == ()
    headers = {"csv": jr.CSV_COLUMNS, "xero": XERO_TEMPLATE, "quickbooks": QUICKBOOKS_TEMPLATE}
    for fmt in FORMATS:
        text = render([j], fmt)
        assert text == ",".join(headers[fmt]) + "\r\n"
        assert parse(text)[1] == []
    assert render([], "csv") == ",".join(jr.CSV_COLUMNS) + "\r\n"


def test_bad_input_is_refused() -> None:
    with pytest.raises(UsageError, match="--month"):
        build_journal("2026-13", "usd", MARCH)
    with pytest.raises(MoneyError):
        build_journal("2026-03", "dollars", MARCH)
    with pytest.raises(MoneyError, match="gross_revenue"):
        build_journal("2026-03", "usd", PnlLines(gross_revenue=1.5))  # type: ignore[arg-type]
    with pytest.raises(MoneyError, match="payouts"):
        build_journal("2026-03", "usd", PnlLines(payouts=True))


# -- rounding examples -----------------------------------------------------------------------


def test_kwd_rounds_to_two_decimals_with_a_rounding_line() -> None:
    j = build_journal(
        "2026-02", "kwd", PnlLines(gross_revenue=1_005, stripe_fees=-3, payouts=-1_000)
    )
    r = rounded(j, 2)
    assert [(x.key, x.debit, x.credit, x.rounding) for x in r.lines] == [
        ("sales", Decimal("0.00"), Decimal("1.01"), False),  # 1.005, half up
        # the fee (0.003) rounds to nothing: no line
        ("clearing", Decimal("1.00"), Decimal("0.00"), False),  # 1.002
        ("bank", Decimal("1.00"), Decimal("0.00"), False),
        ("clearing", Decimal("0.00"), Decimal("1.00"), False),
        ("other", Decimal("0.01"), Decimal("0.00"), True),
    ]
    assert r.lines[-1].description == "Rounding to 2 decimals for import (KWD has 3)"
    assert r.rounding == Decimal("0.01")


def test_kwd_in_whole_fils_tens_needs_no_rounding_line() -> None:
    r = rounded(build_journal("2026-02", "kwd", PnlLines(gross_revenue=1_010, stripe_fees=-30)), 2)
    assert not any(x.rounding for x in r.lines) and r.rounding == 0
    assert [x.amount for x in r.lines] == [Decimal("-1.01"), Decimal("0.03"), Decimal("0.98")]


def test_jpy_is_never_rounded() -> None:
    r = rounded(
        build_journal("2026-02", "jpy", PnlLines(gross_revenue=12_345, stripe_fees=-401)), 2
    )
    assert r.places == 0 and not any(x.rounding for x in r.lines)
    assert [x.amount for x in r.lines] == [Decimal(-12_345), Decimal(401), Decimal(11_944)]


def test_the_rounding_line_uses_the_configured_other_account() -> None:
    accounts = parse_accounts("other=499")
    j = build_journal("2026-02", "bhd", PnlLines(gross_revenue=1_005, stripe_fees=-3), accounts)
    assert not any(ln.key == "other" for ln in j.lines)  # no `other` line of its own
    fix = [x for x in rounded(j, 2).lines if x.rounding]
    assert [(f.code, f.name) for f in fix] == [("499", DEFAULT_ACCOUNTS.other.name)]


# -- formats ----------------------------------------------------------------------------------


def journals() -> list[jr.Journal]:
    return [
        build_journal("2026-03", "usd", MARCH),
        build_journal("2026-03", "jpy", PnlLines(gross_revenue=50_000, stripe_fees=-1_800)),
        build_journal("2026-03", "kwd", PnlLines(gross_revenue=12_345, stripe_fees=-367, payouts=-10_000)),
    ]  # fmt: skip


def test_plain_csv_is_exact() -> None:
    js = journals()
    text = render(js, "csv")
    assert "\r\n" in text
    header, rows = parse(text)
    assert header == list(jr.CSV_COLUMNS)
    assert len(rows) == sum(len(j.lines) for j in js)
    by_ccy: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_ccy[row["currency"]].append(row)
    for j in js:
        got = by_ccy[j.currency.upper()]
        exp = exponent(j.currency)
        for row, line in zip(got, j.lines, strict=True):
            assert row["date"] == "2026-03-31" and row["journal_no"] == j.journal_no
            assert (row["account_key"], row["account_code"]) == (line.key, line.code)
            for column, minor in (("debit", line.debit), ("credit", line.credit)):
                if minor:
                    assert Decimal(row[column]) == Decimal(minor).scaleb(-exp)
                    assert len(row[column].partition(".")[2]) == exp  # all the decimals
                else:
                    assert row[column] == ""
    kwd = [r for r in rows if r["currency"] == "KWD"]
    assert kwd[0]["credit"] == "12.345"


def test_xero_file() -> None:
    js = journals()
    header, rows = parse(render(js, "xero"))
    assert header == XERO_TEMPLATE
    assert rows
    for row in rows:
        for column in XERO_REQUIRED:
            assert row[column], (column, row)
        assert row["*TaxRate"] == "Tax Exempt"
        assert row["*Date"] == "31 Mar 2026"
        amount = Decimal(row["*Amount"])
        assert amount != 0
        assert len(row["*Amount"].partition(".")[2]) <= 2
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        sums[row["*Narration"]] += Decimal(row["*Amount"])
    assert sums == {j.narration: 0 for j in js}  # one balanced journal per currency
    assert {r["*AccountCode"] for r in rows if "Rounding" in r["Description"]} <= {"STRIPEMISC"}


def test_xero_tax_rate_can_be_chosen() -> None:
    _, rows = parse(render(journals(), "xero", xero_tax_rate="BAS Excluded"))
    assert {r["*TaxRate"] for r in rows} == {"BAS Excluded"}
    with pytest.raises(UsageError):
        render(journals(), "xero", xero_tax_rate=" ")


def test_xero_refuses_codes_longer_than_ten_characters() -> None:
    accounts = parse_accounts("fees=Stripe Fees:Processing")
    j = build_journal("2026-03", "usd", MARCH, accounts)
    with pytest.raises(ConfigError, match=r"^ACCOUNTING_ACCOUNTS: the fees code .* at most 10"):
        render([j], "xero")
    # QuickBooks matches accounts by name: the same value is fine there.
    _, rows = parse(render([j], "quickbooks"))
    assert "Stripe Fees:Processing" in {r["Account Name"] for r in rows}


def test_quickbooks_file() -> None:
    js = journals()
    header, rows = parse(render(js, "quickbooks"))
    assert header == QUICKBOOKS_TEMPLATE
    totals: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for row in rows:
        for column in QUICKBOOKS_REQUIRED:
            assert row[column], (column, row)
        assert bool(row["Debits"]) != bool(row["Credits"])
        assert row["Journal Date"] == "03/31/2026"
        assert row["Memo"] == f"Stripe activity, March 2026 ({row['Currency']})"
        for i, column in enumerate(("Debits", "Credits")):
            if row[column]:
                value = Decimal(row[column])
                assert value > 0 and len(row[column].partition(".")[2]) <= 2
                totals[row["Journal No"]][i] += value
    assert set(totals) == {"revbot-2026-03-USD", "revbot-2026-03-JPY", "revbot-2026-03-KWD"}
    for debits, credits in totals.values():
        assert debits == credits
    _, rows = parse(render(js, "quickbooks", quickbooks_dates="dmy"))
    assert {r["Journal Date"] for r in rows} == {"31/03/2026"}
    with pytest.raises(UsageError):
        render(js, "quickbooks", quickbooks_dates="ymd")


def test_render_refuses_an_unknown_format() -> None:
    with pytest.raises(UsageError, match=r"--format 'qbo'.*csv, xero, quickbooks"):
        render(journals(), "qbo")


def test_text_with_commas_and_quotes_survives_the_round_trip() -> None:
    accounts = parse_accounts('bank=Chase "Ops"')
    j = build_journal("2026-03", "usd", MARCH, accounts)
    for fmt, column in (("csv", "account_code"), ("quickbooks", "Account Name")):
        _, rows = parse(render([j], fmt))
        assert 'Chase "Ops"' in {r[column] for r in rows}
        assert "Disputes, net of reversals" in {
            r.get("description", r.get("Description")) for r in rows
        }


def test_the_xero_api_lines() -> None:
    j = build_journal(
        "2026-02", "kwd", PnlLines(gross_revenue=1_005, stripe_fees=-3, payouts=-1_000)
    )
    x = xero_journal(j)
    assert x.narration == "Stripe activity, February 2026 (KWD)"
    assert x.date == date(2026, 2, 28) and x.currency == "kwd"
    assert sum(line.amount for line in x.lines) == 0
    assert all(line.amount == line.amount.quantize(Decimal("0.01")) for line in x.lines)
    assert [(line.account_code, line.amount) for line in x.lines] == [
        ("SALES", Decimal("-1.01")), ("CLEARING", Decimal("1.00")), ("BANK", Decimal("1.00")),
        ("CLEARING", Decimal("-1.00")), ("STRIPEMISC", Decimal("0.01")),
    ]  # fmt: skip


# -- accounts ---------------------------------------------------------------------------------


def test_default_accounts_say_what_they_are_and_fit_xero() -> None:
    for key in jr.ACCOUNT_KEYS:
        account = DEFAULT_ACCOUNTS[key]
        assert 0 < len(account.code) <= jr.XERO_CODE_MAX
        assert account.name
    assert parse_accounts(None) == DEFAULT_ACCOUNTS
    assert parse_accounts("  ") == DEFAULT_ACCOUNTS


def test_parse_accounts_keeps_defaults_for_what_it_does_not_name() -> None:
    accounts = parse_accounts(" sales = 200 , fees=404,clearing=610 ,bank=090")
    assert accounts.sales == Account("200", DEFAULT_ACCOUNTS.sales.name)
    assert accounts.fees.code == "404" and accounts.clearing.code == "610"
    assert accounts.bank.code == "090"  # a leading zero is kept: codes are text
    assert accounts.refunds == DEFAULT_ACCOUNTS.refunds
    assert parse_accounts("Sales=200").sales.code == "200"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("sale=200", "unknown key 'sale'"),
        ("sales=", "sales has an empty code"),
        ("sales=200,sales=201", "sales is given twice"),
        ("sales200", "'sales200' is not key=code"),
        ("=200", "is not key=code"),
        ("sales=2=00", "is not key=code"),
        ("sales=200,", "empty entry"),
        ("sales=200,,fees=404", "empty entry"),
        ("sales=20\x070", "control character"),
        ("sales=\u200b200\u2028", "control character"),
        ("sales==SUM(A1)", "is not key=code"),
        ("sales=+200", "formula"),
        ("sales=@x", "formula"),
        ("sales=" + "x" * 101, "at most 100"),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_parse_accounts_errors(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_accounts(text)
    message = str(info.value)
    assert message.startswith("ACCOUNTING_ACCOUNTS: "), message
    assert says in message, message
    assert "\n" not in message and "\x07" not in message
    assert info.value.exit_code == 78


# -- the layer --------------------------------------------------------------------------------


def test_the_journal_is_pure() -> None:
    imported = graph()["bot.journal"]
    ours = {m for m in imported if m.startswith("bot")}
    assert ours <= CORE, sorted(ours - CORE)
    assert not {m for m in imported if not m.startswith("bot")} - {
        "__future__", "csv", "io", "collections.abc", "dataclasses", "datetime", "decimal",
        "typing",
    }  # fmt: skip
