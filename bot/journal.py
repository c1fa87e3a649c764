"""A month's Monthly row -> a balanced double-entry journal per currency, and its import files.

Pure: no I/O, no clock. Money is ``int`` minor units of one currency (``Decimal`` major units
once rounded for a target); currencies are never summed together: one journal per currency.

Line layout (one journal per (month, currency), dated the month's last day):

- each P&L item of the Monthly row goes to its own account on the side its sign says: income
  ``x > 0`` is a credit of ``x``, ``x < 0`` a debit of ``|x|`` (a refund, a lost dispute or a
  fee is a debit; a won dispute, a refunded fee or a positive adjustment a credit);
- payouts: money sent to the bank (``payouts < 0``) is a debit of the bank account, a failed
  payout coming back (``payouts > 0``) a credit of it;
- the Stripe clearing account takes the balancing side, in two lines rather than one: one for
  net revenue (the P&L items' sum) and one for payouts. Each then equals a Monthly column, and
  the payout pair (bank / clearing, same amount) is what a bank reconciliation matches; the
  clearing account's balance still moves by ``net_revenue + payouts``, the change in the
  Stripe balance.

A zero item gives no line, so an all-zero month gives an empty journal, which every format
writes as its header row alone (:attr:`Journal.is_empty` lets a caller say so instead).
Σ debits == Σ credits to the minor unit always.

Rounding (:func:`rounded`): Xero and QuickBooks keep 2 decimals. Each line is rounded half-up;
when the rounded lines no longer balance, one rounding line (to the ``other`` account, its
description says so) makes up the difference. JPY (0 decimals) never needs one; KWD (3) can.
The plain ``csv`` format is exact.

Formats (:func:`render`, all CSV through the ``csv`` module with ``\\r\\n`` line endings, as
RFC 4180 and Excel write them and as both importers accept; the caller writes the text as UTF-8):

``csv``
    :data:`CSV_COLUMNS`, one row per line, amounts exact in major units.
``xero``
    Xero's manual journal import template, :data:`XERO_COLUMNS`. Field names, which are
    mandatory, the date format (``dd/mm/yyyy`` or ``dd mmm yyyy``; here ``31 Mar 2026``,
    which cannot be misread as month-first), the 300-line limit per file and the sign (a
    positive Amount is a debit, a negative one a credit) are from Xero Central, "Enter multiple
    manual journals using an import template": https://help.xero.com/nz/ManualJournalsImport
    (also https://help.xero.com/uk/ManualJournalsImport). The page names the fields without
    the asterisks; the template marks its mandatory columns with ``*``, as Xero's templates do.
    Those exact header strings come from projects that write that template, not from a Xero
    page. Lines of one journal share its Narration and Date. Each currency is its own journal,
    and a Xero manual journal is in the organisation's base currency: import only the base
    currency's journal, or convert first. TaxRate must be the *name* of a rate in the
    organisation. A journal that records Stripe activity should not create tax, so the default
    is :data:`XERO_TAX_RATE` ("Tax Exempt", Xero's no-tax rate in US and global organisations,
    https://help.xero.com/us/Tax-SetDefaults). Other regions name theirs differently (see
    :data:`XERO_NO_TAX_RATES`; Australia: https://help.xero.com/au/Tax-SetDefaults), so
    ``render(..., xero_tax_rate=...)`` takes another. Account codes have at most 10 characters
    (``Account.Code`` in Xero's Accounting API OpenAPI spec, tests/contracts/xero).
``quickbooks``
    QuickBooks Online's Import data > Journal Entries, :data:`QUICKBOOKS_COLUMNS`. Intuit's
    "Import journal entries" lists Journal No., Journal Date, Account Name, Description, Debits
    and Credits, with Name required on A/P or A/R lines and Class and Location when tracking is
    on: https://quickbooks.intuit.com/learn-support/en-au/help-article/import-export-files/
    import-journal-entries-quickbooks-online/L4tQBwbs7_AU_en_AU . Currency and Memo come from
    the QuickBooks journal fields as listed by Transaction Pro
    (https://support.transactionpro.com/kb/article/492-journal-entry-import-fields-for-transaction-pro-online/),
    not from an Intuit page. The import screen maps columns to fields, so order is not
    significant. QuickBooks matches accounts by *name* (account numbers turned off), so Account
    Name holds the ACCOUNTING_ACCOUNTS value: set it to QuickBooks account names for this
    target ("Parent:Sub" for a sub-account). One Journal No per (month, currency), e.g.
    ``revbot-2026-03-USD`` (21 characters at most, per the same Transaction Pro list). Dates
    are ``MM/DD/YYYY`` by default (US companies), ``DD/MM/YYYY`` with
    ``quickbooks_dates="dmy"``. A month's last day is always after the 12th, so a wrong order
    fails as an invalid date rather than being misread. Currency is only meaningful with
    multicurrency on; without it, import only the home currency's journal.

For the Xero API, :func:`xero_journal` gives the same rounded lines as signed amounts.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal
from typing import Protocol

from bot.errors import ConfigError, UsageError
from bot.money import MoneyError, exponent, normalize_currency, to_major
from bot.periods import Month
from bot.text import escaped

FORMATS: tuple[str, ...] = ("csv", "xero", "quickbooks")
ACCOUNT_KEYS: tuple[str, ...] = (
    "sales", "refunds", "disputes", "fees", "other", "clearing", "bank",
)  # fmt: skip
SETTING = "ACCOUNTING_ACCOUNTS"

XERO_PLACES = 2
QUICKBOOKS_PLACES = 2
XERO_CODE_MAX = 10
CODE_MAX = 100  # QuickBooks account names: 100 characters
XERO_TAX_RATE = "Tax Exempt"
# The no-tax rate Xero sets up, by the organisation's region (TaxRate takes the name). US and
# AU from Xero Central's "Default tax rates" pages; GB and NZ from a third-party listing of
# Xero's defaults (https://eswap.global/help/how-your-default-tax-rate-works/).
XERO_NO_TAX_RATES: dict[str, str] = {
    "US": "Tax Exempt", "global": "Tax Exempt", "GB": "No VAT", "NZ": "No GST",
    "AU": "BAS Excluded",
}  # fmt: skip
# What the Xero API's TaxType takes for the same rate (Australia: BASEXCLUDED).
XERO_API_TAX_TYPE = "NONE"

CSV_COLUMNS: tuple[str, ...] = (
    "date", "month", "currency", "journal_no", "account_key", "account_code", "account_name",
    "description", "debit", "credit",
)  # fmt: skip
XERO_COLUMNS: tuple[str, ...] = (
    "*Narration", "*Date", "Description", "*AccountCode", "*TaxRate", "*Amount",
    "TrackingName1", "TrackingOption1", "TrackingName2", "TrackingOption2",
)  # fmt: skip
QUICKBOOKS_COLUMNS: tuple[str, ...] = (
    "Journal No", "Journal Date", "Currency", "Memo", "Account Name", "Debits", "Credits",
    "Description", "Name", "Location", "Class",
)  # fmt: skip
QUICKBOOKS_DATES: dict[str, str] = {"mdy": "%m/%d/%Y", "dmy": "%d/%m/%Y"}

# English, whatever the locale says (strftime's %b and %B follow LC_TIME).
_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_FORMULA_START = ("=", "+", "-", "@")


# -- accounts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    """An account in the target ledger: ``code`` is what it is matched by (a Xero account code,
    a QuickBooks account name), ``name`` what the account is for, shown in the plain csv."""

    code: str
    name: str


@dataclass(frozen=True, slots=True)
class Accounts:
    sales: Account
    refunds: Account
    disputes: Account
    fees: Account
    other: Account
    clearing: Account
    bank: Account

    def __getitem__(self, key: str) -> Account:
        if key not in ACCOUNT_KEYS:
            raise KeyError(key)
        account: Account = getattr(self, key)
        return account


DEFAULT_ACCOUNTS = Accounts(
    sales=Account("SALES", "Sales (gross)"),
    refunds=Account("REFUNDS", "Refunds"),
    disputes=Account("DISPUTES", "Disputes"),
    fees=Account("STRIPEFEES", "Stripe fees"),
    other=Account("STRIPEMISC", "Other Stripe activity"),
    clearing=Account("CLEARING", "Stripe clearing"),
    bank=Account("BANK", "Bank"),
)
_EXAMPLE = "e.g. sales=200,fees=404,clearing=610,bank=090"


def _config_error(problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{SETTING}: {problem}; {fix}")


def _check_code(key: str, code: str) -> None:
    shown = escaped(code)
    if not code:
        raise _config_error(
            f"{key} has an empty code",
            f"write {key}=<code>, or leave {key} out for {getattr(DEFAULT_ACCOUNTS, key).code}",
        )
    if not code.isprintable():
        raise _config_error(
            f"the code for {key} ({shown!r}) has a control character",
            f"use plain text, {_EXAMPLE}",
        )
    if code.startswith(_FORMULA_START):
        raise _config_error(
            f"the code for {key} ({shown!r}) starts with {code[0]!r}, which a spreadsheet "
            "reads as a formula",
            f"use the account's code or name, {_EXAMPLE}",
        )
    if len(code) > CODE_MAX:
        raise _config_error(
            f"the code for {key} has {len(code)} characters", f"use at most {CODE_MAX}"
        )


def parse_accounts(text: str | None) -> Accounts:
    """``key=code,key=code`` (spaces tolerated) over :data:`DEFAULT_ACCOUNTS`; keys left out
    keep their default. Raises :class:`ConfigError` naming ACCOUNTING_ACCOUNTS."""
    if text is None or not text.strip():
        return DEFAULT_ACCOUNTS
    chosen: dict[str, str] = {}
    for raw in text.split(","):
        item = raw.strip()
        key, sep, code = item.partition("=")
        key, code = key.strip().lower(), code.strip()
        if not item:
            raise _config_error(
                f"{escaped(text.strip())!r} has an empty entry",
                f"remove the extra comma, {_EXAMPLE}",
            )
        if not sep or "=" in code or not key:
            raise _config_error(
                f"{escaped(item)!r} is not key=code",
                f"write key=code separated by commas, {_EXAMPLE}",
            )
        if key not in ACCOUNT_KEYS:
            raise _config_error(
                f"unknown key {escaped(key)!r}", f"use {', '.join(ACCOUNT_KEYS)}, {_EXAMPLE}"
            )
        if key in chosen:
            raise _config_error(f"{key} is given twice", f"keep one {key}=<code>")
        _check_code(key, code)
        chosen[key] = code
    return replace(
        DEFAULT_ACCOUNTS,
        **{k: Account(c, DEFAULT_ACCOUNTS[k].name) for k, c in chosen.items()},
    )


# -- the journal ----------------------------------------------------------------------------


class MonthlyLines(Protocol):
    """A Monthly row's figures in minor units with their signs (:class:`bot.pnl.PnlLines` is
    one): net revenue is the sum of the first five."""

    @property
    def gross_revenue(self) -> int: ...
    @property
    def refunds(self) -> int: ...
    @property
    def disputes(self) -> int: ...
    @property
    def stripe_fees(self) -> int: ...
    @property
    def other(self) -> int: ...
    @property
    def payouts(self) -> int: ...


# Monthly column -> account key and line description, in the journal's order.
_PNL: tuple[tuple[str, str, str], ...] = (
    ("gross_revenue", "sales", "Gross sales through Stripe"),
    ("refunds", "refunds", "Refunds to customers"),
    ("disputes", "disputes", "Disputes, net of reversals"),
    ("stripe_fees", "fees", "Stripe fees"),
    ("other", "other", "Other Stripe activity"),
)
NET_REVENUE_LINE = "Net revenue into the Stripe balance"
PAYOUTS_LINE = "Payouts to the bank, net of failed payouts"


@dataclass(frozen=True, slots=True)
class Line:
    """One journal line: exactly one of ``debit`` and ``credit`` (minor units) is positive."""

    key: str
    code: str
    name: str
    description: str
    debit: int
    credit: int


@dataclass(frozen=True, slots=True)
class Journal:
    month: str  # YYYY-MM
    currency: str  # lower-case ISO code, as Stripe spells it
    date: date  # the month's last day
    narration: str
    lines: tuple[Line, ...]
    accounts: Accounts = DEFAULT_ACCOUNTS  # what it was built with (rounding goes to ``other``)

    @property
    def journal_no(self) -> str:
        return f"revbot-{self.month}-{self.currency.upper()}"

    @property
    def is_empty(self) -> bool:
        return not self.lines

    def debits(self) -> int:
        return sum(line.debit for line in self.lines)

    def credits(self) -> int:
        return sum(line.credit for line in self.lines)

    def balance(self, key: str) -> int:
        """Debits minus credits on the account ``key``, in minor units."""
        return sum(line.debit - line.credit for line in self.lines if line.key == key)


def narration(month: Month, currency: str) -> str:
    """``Stripe activity, March 2026 (USD)``."""
    return f"Stripe activity, {_MONTHS[month.month - 1]} {month.year} ({currency.upper()})"


def _line(key: str, account: Account, description: str, debit: int) -> Line:
    """A line that debits ``debit`` (credits ``-debit`` when negative)."""
    return Line(key, account.code, account.name, description, max(debit, 0), max(-debit, 0))


def build_journal(
    month: str, currency: str, row: MonthlyLines, accounts: Accounts = DEFAULT_ACCOUNTS
) -> Journal:
    """The month's journal in ``currency``; see the module docstring for the layout."""
    m = Month.parse(month)
    ccy = normalize_currency(currency)
    figures: dict[str, int] = {}
    for column in (*(c for c, _, _ in _PNL), "payouts"):
        value = getattr(row, column)
        if type(value) is not int:
            raise MoneyError(f"{column} must be an int of minor units, got {type(value).__name__}")
        figures[column] = value
    lines = [
        _line(key, accounts[key], text, -figures[column])
        for column, key, text in _PNL
        if figures[column]
    ]
    net = sum(figures[column] for column, _, _ in _PNL)
    payouts = figures["payouts"]
    if net:
        lines.append(_line("clearing", accounts.clearing, NET_REVENUE_LINE, net))
    if payouts:
        lines.append(_line("bank", accounts.bank, PAYOUTS_LINE, -payouts))
        lines.append(_line("clearing", accounts.clearing, PAYOUTS_LINE, payouts))
    journal = Journal(str(m), ccy, m.last_day, narration(m, ccy), tuple(lines), accounts)
    assert journal.debits() == journal.credits(), journal  # by construction
    return journal


def monthly_columns(journal: Journal) -> dict[str, int]:
    """The Monthly columns read back from the journal's accounts (the inverse of the layout)."""
    out = {column: -journal.balance(key) for column, key, _ in _PNL}
    out["net_revenue"] = sum(out.values())
    out["payouts"] = -journal.balance("bank")
    return out


# -- rounding -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoundedLine:
    """A line in major units with at most the target's decimals; one of debit and credit is
    zero. ``rounding`` marks the line that keeps the rounded journal balanced."""

    key: str
    code: str
    name: str
    description: str
    debit: Decimal
    credit: Decimal
    rounding: bool = False

    @property
    def amount(self) -> Decimal:
        """Signed as Xero wants it: debit positive, credit negative."""
        return self.debit - self.credit


@dataclass(frozen=True, slots=True)
class RoundedJournal:
    journal: Journal
    places: int  # decimals shown: min(the target's, the currency's)
    lines: tuple[RoundedLine, ...]

    @property
    def rounding(self) -> Decimal:
        """Debit minus credit of the rounding line (0 without one)."""
        return sum((line.amount for line in self.lines if line.rounding), Decimal(0))


def _round_half_up(minor: int, step: int) -> int:
    """``minor`` (>= 0) to the nearest multiple of ``step`` (a power of ten), halves up."""
    return (minor + step // 2) // step * step


def rounded(journal: Journal, places: int) -> RoundedJournal:
    """``journal`` with at most ``places`` decimals, plus a rounding line when needed."""
    if places < 0:
        raise ValueError(f"places must be >= 0, got {places}")
    exp = exponent(journal.currency)
    shown = min(exp, places)
    step = 10 ** (exp - shown)

    def major(minor: int) -> Decimal:
        return Decimal(f"{minor // step}E-{shown}")  # exact, whatever the context's precision

    out: list[RoundedLine] = []
    diff = 0
    for line in journal.lines:
        debit, credit = _round_half_up(line.debit, step), _round_half_up(line.credit, step)
        diff += debit - credit
        if debit or credit:
            out.append(
                RoundedLine(
                    line.key, line.code, line.name, line.description, major(debit), major(credit)
                )
            )
    if diff:
        other = journal.accounts.other
        text = f"Rounding to {places} decimals for import ({journal.currency.upper()} has {exp})"
        fix_debit, fix_credit = major(max(-diff, 0)), major(max(diff, 0))
        out.append(RoundedLine("other", other.code, other.name, text, fix_debit, fix_credit, True))
    return RoundedJournal(journal, shown, tuple(out))


# -- the Xero API ---------------------------------------------------------------------------


class LineLike(Protocol):
    """One journal line as Xero has it: ``amount`` a debit if positive, a credit if negative
    (:class:`XeroLine` is one, and so is what :mod:`bot.xero` reads back from Xero)."""

    @property
    def account_code(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def amount(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class XeroLine:
    account_code: str
    description: str
    amount: Decimal  # at most 2 decimals; debit positive, credit negative (Xero's LineAmount)


@dataclass(frozen=True, slots=True)
class XeroJournal:
    """What a manual journal needs: Narration, Date and JournalLines (Σ amount == 0). The
    currency is for the caller's check: Xero posts it in the organisation's base currency."""

    narration: str
    date: date
    currency: str
    lines: tuple[XeroLine, ...]


def _check_xero_codes(journal: Journal) -> None:
    for key in ACCOUNT_KEYS:
        code = journal.accounts[key].code
        if len(code) > XERO_CODE_MAX:
            raise _config_error(
                f"the {key} code {escaped(code)!r} has {len(code)} characters, and Xero account "
                f"codes have at most {XERO_CODE_MAX}",
                f"use the code from Xero's chart of accounts, {_EXAMPLE}",
            )


def xero_journal(journal: Journal) -> XeroJournal:
    """The journal rounded for Xero, as signed lines (Xero's API or its import file)."""
    _check_xero_codes(journal)
    r = rounded(journal, XERO_PLACES)
    lines = tuple(XeroLine(line.code, line.description, line.amount) for line in r.lines)
    return XeroJournal(journal.narration, journal.date, journal.currency, lines)


# -- formats --------------------------------------------------------------------------------


def _plain(value: Decimal) -> str:
    """A Decimal without exponent notation, as many decimals as it carries."""
    return format(value, "f")


def _blank_zero(value: Decimal) -> str:
    return _plain(value) if value else ""


def _xero_date(day: date) -> str:
    return f"{day.day:02d} {_MONTHS[day.month - 1][:3]} {day.year:04d}"


def _write(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()


def csv_text(journals: Sequence[Journal]) -> str:
    """The plain, exact format: :data:`CSV_COLUMNS`."""
    rows = (
        (
            j.date.isoformat(), j.month, j.currency.upper(), j.journal_no, line.key, line.code,
            line.name, line.description,
            _blank_zero(to_major(line.debit, j.currency)),
            _blank_zero(to_major(line.credit, j.currency)),
        )
        for j in journals
        for line in j.lines
    )  # fmt: skip
    return _write(CSV_COLUMNS, rows)


def xero_text(journals: Sequence[Journal], *, tax_rate: str = XERO_TAX_RATE) -> str:
    """Xero's manual journal import file: :data:`XERO_COLUMNS`, one journal per Narration."""
    if not tax_rate.strip() or not tax_rate.isprintable() or tax_rate.startswith(_FORMULA_START):
        raise UsageError(f"Xero tax rate {escaped(tax_rate)!r} is not a tax rate name")
    rows = []
    for j in journals:
        x = xero_journal(j)
        rows += [
            (x.narration, _xero_date(x.date), line.description, line.account_code, tax_rate,
             _plain(line.amount), "", "", "", "")
            for line in x.lines
        ]  # fmt: skip
    return _write(XERO_COLUMNS, rows)


def quickbooks_text(journals: Sequence[Journal], *, dates: str = "mdy") -> str:
    """QuickBooks Online's journal entry import file: :data:`QUICKBOOKS_COLUMNS`."""
    if dates not in QUICKBOOKS_DATES:
        choices = ", ".join(QUICKBOOKS_DATES)
        raise UsageError(f"QuickBooks date order {escaped(dates)!r}: use one of {choices}")
    rows = []
    for j in journals:
        r = rounded(j, QUICKBOOKS_PLACES)
        day = j.date.strftime(QUICKBOOKS_DATES[dates])
        rows += [
            (j.journal_no, day, j.currency.upper(), j.narration, line.code,
             _blank_zero(line.debit), _blank_zero(line.credit), line.description, "", "", "")
            for line in r.lines
        ]  # fmt: skip
    return _write(QUICKBOOKS_COLUMNS, rows)


def render(
    journals: Sequence[Journal],
    fmt: str,
    *,
    xero_tax_rate: str = XERO_TAX_RATE,
    quickbooks_dates: str = "mdy",
) -> str:
    """A month's journals (one per currency) as ``fmt``, one of :data:`FORMATS`. Empty journals
    add no row: an all-zero month is the header row alone."""
    if fmt == "csv":
        return csv_text(journals)
    if fmt == "xero":
        return xero_text(journals, tax_rate=xero_tax_rate)
    if fmt == "quickbooks":
        return quickbooks_text(journals, dates=quickbooks_dates)
    raise UsageError(f"--format {escaped(fmt)!r} is not a journal format; use {', '.join(FORMATS)}")
