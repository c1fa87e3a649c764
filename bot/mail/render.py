"""Render a :class:`MonthlyReport` into the investor email: subject, inlined HTML, plain text.

Pure: reads only the template files, never the network, the clock or the environment. The
templates receive pre-formatted strings (amounts via :func:`bot.money.format_amount`), so the
HTML and the text part always say the same figures.

The templates are package data of ``bot.templates``: the repository's top-level ``templates/``
folder, mapped into the package by pyproject.toml and found through the import system, so they
load the same in an editable install, from an installed wheel and from any working directory.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path

import css_inline
import jinja2

from bot.errors import RevbotError
from bot.mail.model import (
    CurrencyReport,
    MonthlyReport,
    RenderedEmail,
    format_pct,
    parse_month,
    period_label,
    previous_month,
    short_month_label,
)
from bot.mail.recurring import RecurringCurrency
from bot.money import SYMBOLS, format_amount, normalize_currency, to_major

HTML_TEMPLATE = "investor_pnl.html.j2"
TEXT_TEMPLATE = "investor_pnl.txt.j2"

# The package that holds the templates: the repository's templates/ folder, installed as
# bot/templates/ (see [tool.setuptools.package-dir] in pyproject.toml).
TEMPLATES_PACKAGE = "bot.templates"

# Chart geometry in CSS pixels. The tallest bar (positive plus negative extent) is CHART_HEIGHT;
# a non-zero month never shrinks below MIN_BAR so that small months stay visible.
CHART_HEIGHT = 120
MIN_BAR = 2
TEXT_BAR_WIDTH = 28

PNL_LABELS: tuple[tuple[str, str], ...] = (
    ("gross_revenue", "Gross revenue"),
    ("refunds", "Refunds"),
    ("disputes", "Disputes"),
    ("stripe_fees", "Stripe fees"),
    ("other", "Other"),
    ("net_revenue", "Net revenue"),
)


@dataclass(frozen=True, slots=True)
class Row:
    """One table line: a label and formatted amounts (``""`` where there is nothing to show)."""

    label: str
    current: str
    previous: str
    change: str
    total: bool
    tone: str  # "up", "down" or "flat": colours the change of the total line only


@dataclass(frozen=True, slots=True)
class Column:
    """One month of the net-revenue chart."""

    month: str
    label: str  # "Oct"
    year: str  # "2026" under January and the first column, else ""
    value: str  # full amount, e.g. "$12,345.67"
    compact: str  # e.g. "$12.3k", printed next to the bar
    up: int  # bar height above the baseline, px
    down: int  # bar height below the baseline, px
    negative: bool
    current: bool
    text_bar: str  # "#####" (or "-----" when negative) for the text part


@dataclass(frozen=True, slots=True)
class Chart:
    """Geometry of a 12-month column chart built from table cells (no images)."""

    columns: tuple[Column, ...]
    up_area: int
    down_area: int
    has_negative: bool
    column_width: int


@dataclass(frozen=True, slots=True)
class CurrencyView:
    """Everything the templates show for one currency, already formatted."""

    code: str
    net: str
    net_change: str
    net_change_pct: str
    trend: str  # "up", "down", "flat" or "none"
    badge: str  # the change shown next to the figure: percent, or the amount when % is undefined
    pnl: tuple[Row, ...]
    balance: tuple[Row, ...]
    chart: Chart | None
    label_width: int
    value_width: int


@dataclass(frozen=True, slots=True)
class MrrBar:
    """One month of the MRR chart: a horizontal bar whose width is a share of the row."""

    month: str
    label: str  # "Oct 2026"
    value: str  # "$12,345.67"; "—" for a month before the first subscriber
    width: int  # percent of the bar area, 0 for no bar
    absent: bool
    current: bool
    text_bar: str  # "#####" for the text part


@dataclass(frozen=True, slots=True)
class RollRow:
    """One line of the month's roll-forward: MRR and subscribers side by side."""

    label: str
    mrr: str
    subscribers: str  # "" where the line moves no subscriber (expansion, contraction)
    total: bool


@dataclass(frozen=True, slots=True)
class RecurringView:
    """Everything the templates show of one currency's recurring revenue, formatted."""

    code: str
    mrr: str
    mrr_change: str
    mrr_change_pct: str
    trend: str  # "up", "down" or "flat"
    badge: str  # the change next to the figure: percent, or the amount when % is undefined
    arr: str
    arr_change: str
    roll: tuple[RollRow, ...]  # start of the month, the five movements, end of the month
    churn_rate: str  # subscriber churn rate, "—" when there was no subscriber at the start
    retention: str  # net revenue retention, "—" when there was no MRR at the start
    bars: tuple[MrrBar, ...]
    label_width: int
    value_width: int
    count_width: int


class TemplateError(RevbotError):
    """The email templates are missing or broken: a packaging or development error."""


def compact_amount(minor: int, currency: str) -> str:
    """Short chart label: ``1234567`` USD -> ``"$12.3k"``; ``-950`` USD -> ``"-$9.50"``."""
    major = to_major(minor, currency)
    size = abs(major)
    for threshold, suffix in (
        (Decimal(10) ** 9, "B"),
        (Decimal(10) ** 6, "M"),
        (Decimal(1000), "k"),
    ):
        if size >= threshold:
            scaled = (size / threshold).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
            body = f"{scaled:f}".removesuffix(".0") + suffix
            break
    else:
        # Under a thousand: whole units read better in a chart than cents.
        whole = size.quantize(Decimal(1), rounding=ROUND_HALF_UP)
        body = f"{whole:f}" if whole or not size else f"{size:f}"
    symbol = SYMBOLS.get(normalize_currency(currency), "")
    prefix = symbol if symbol and not symbol.endswith(" ") else ""
    sign = "-" if minor < 0 else ""
    return f"{sign}{prefix}{body}"


def _tone(change: int | None) -> str:
    if change is None:
        return "none"
    return "up" if change > 0 else "down" if change < 0 else "flat"


def _fmt(minor: int | None, currency: str, *, signed: bool = False) -> str:
    return "—" if minor is None else format_amount(minor, currency, signed=signed)


def _pnl_rows(report: CurrencyReport) -> tuple[Row, ...]:
    cur, prev, code = report.lines, report.previous, report.currency
    rows = []
    for name, label in PNL_LABELS:
        now = getattr(cur, name)
        before = None if prev is None else getattr(prev, name)
        change = None if before is None else now - before
        total = name == "net_revenue"
        rows.append(
            Row(
                label=label,
                current=_fmt(now, code),
                previous=_fmt(before, code),
                change="—" if change is None else _fmt(change, code, signed=True),
                total=total,
                tone=_tone(change) if total else "flat",
            )
        )
    return tuple(rows)


def _balance_rows(report: CurrencyReport) -> tuple[Row, ...]:
    code = report.currency
    rows = [
        ("Starting balance", report.starting_balance, False),
        ("Net revenue", report.lines.net_revenue, False),
        ("Payouts", report.lines.payouts, False),
    ]
    other = report.other_balance_movements
    if other:  # transfers, top-ups and reserves: shown only when they moved the balance
        rows.append(("Other balance movements", other, False))
    rows.append(("Ending balance", report.ending_balance, True))
    return tuple(
        Row(
            label=label,
            current=_fmt(value, code),
            previous="",
            change="",
            total=total,
            tone="flat",
        )
        for label, value, total in rows
    )


def _chart(report: CurrencyReport, *, month: str, inner_width: int) -> Chart | None:
    if not report.history:
        return None
    code = report.currency
    values = [v for _, v in report.history]
    top = max(0, *values)
    bottom = max(0, *(-v for v in values))
    span = top + bottom
    columns = []
    longest = max(abs(v) for v in values)
    for i, (m, value) in enumerate(report.history):
        # Integer arithmetic: heights are proportional, the largest extent is CHART_HEIGHT.
        height = 0 if value == 0 or span == 0 else max(MIN_BAR, abs(value) * CHART_HEIGHT // span)
        text_len = 0 if value == 0 else max(1, abs(value) * TEXT_BAR_WIDTH // longest)
        _, mon = parse_month(m)
        columns.append(
            Column(
                month=m,
                label=short_month_label(m),
                year=m[:4] if i == 0 or mon == 1 else "",
                value=format_amount(value, code),
                compact=compact_amount(value, code),
                up=height if value > 0 else 0,
                down=height if value < 0 else 0,
                negative=value < 0,
                current=m == month,
                text_bar=("-" if value < 0 else "#") * text_len,
            )
        )
    up_area = 0 if span == 0 else top * CHART_HEIGHT // span
    down_area = 0 if span == 0 else bottom * CHART_HEIGHT // span
    # Bars of MIN_BAR may poke past a tiny area: make room for them.
    up_area = max([up_area, *(c.up for c in columns)])
    down_area = max([down_area, *(c.down for c in columns)])
    return Chart(
        columns=tuple(columns),
        up_area=up_area,
        down_area=down_area,
        has_negative=bottom > 0,
        column_width=inner_width // 12,
    )


def currency_view(report: CurrencyReport, *, month: str, inner_width: int = 552) -> CurrencyView:
    """The formatted figures of one currency, shared by the HTML and the text template."""
    pnl = _pnl_rows(report)
    balance = _balance_rows(report)
    chart = _chart(report, month=month, inner_width=inner_width)
    values = (
        [r.current for r in pnl + balance] + [r.previous for r in pnl] + [r.change for r in pnl]
    )
    if chart:
        values += [c.value for c in chart.columns]
    change = report.net_change
    pct = report.net_change_pct
    if change is None:
        badge = "new"
    elif pct is None:  # previous month was exactly zero: a percentage means nothing
        badge = format_amount(change, report.currency, signed=True)
    else:
        badge = format_pct(pct)
    return CurrencyView(
        code=normalize_currency(report.currency).upper(),
        net=format_amount(report.lines.net_revenue, report.currency),
        net_change="—" if change is None else format_amount(change, report.currency, signed=True),
        net_change_pct=format_pct(pct),
        trend=_tone(change),
        badge=badge,
        pnl=pnl,
        balance=balance,
        chart=chart,
        label_width=max(len(r.label) for r in pnl + balance),
        # Column headers are "Oct 2026", "Sep 2026" and "Change": 8 characters at most.
        value_width=max([len(v) for v in values] + [8]),
    )


def _percent(rate: Fraction) -> Decimal:
    """A rate in percent, rounded half-even to a tenth, exactly: ``Fraction(1, 3)`` -> 33.3."""
    return Decimal(round(rate * 1000)).scaleb(-1)


def format_rate(rate: Fraction | None) -> str:
    """``Fraction(423, 10000)`` -> ``"4.2%"``; ``None`` (a zero denominator) -> ``"—"``."""
    return "—" if rate is None else f"{_percent(rate):,.1f}%"


def _signed_count(n: int) -> str:
    return f"{n:+,d}" if n else "0"


def _mrr_bars(report: RecurringCurrency, *, month: str) -> tuple[MrrBar, ...]:
    code = report.currency
    top = max((p.mrr or 0 for p in report.history), default=0)
    bars = []
    for point in report.history:
        value = point.mrr or 0
        # Integer arithmetic: widths are proportional, the largest month fills the row; a
        # month with any MRR keeps a sliver of bar so that it never reads as zero.
        width = 0 if value <= 0 or top <= 0 else max(1, value * 100 // top)
        text_len = 0 if value <= 0 or top <= 0 else max(1, value * TEXT_BAR_WIDTH // top)
        bars.append(
            MrrBar(
                month=point.month,
                label=f"{short_month_label(point.month)} {point.month[:4]}",
                value="—" if point.mrr is None else format_amount(point.mrr, code),
                width=width,
                absent=point.mrr is None,
                current=point.month == month,
                text_bar="#" * text_len,
            )
        )
    return tuple(bars)


def recurring_view(report: RecurringCurrency, *, month: str) -> RecurringView:
    """The formatted recurring revenue of one currency, shared by both templates."""
    code = report.currency

    def money(minor: int, *, signed: bool = True) -> str:
        return format_amount(minor, code, signed=signed)

    roll = (
        RollRow(
            "Start of month", money(report.mrr_start, signed=False),
            f"{report.subscribers_start:,d}", total=False,
        ),
        RollRow("New", money(report.new), _signed_count(report.new_subscribers), total=False),
        RollRow(
            "Reactivation", money(report.reactivation),
            _signed_count(report.reactivated_subscribers), total=False,
        ),
        RollRow("Expansion", money(report.expansion), "", total=False),
        RollRow("Contraction", money(-report.contraction), "", total=False),
        RollRow(
            "Churn", money(-report.churn), _signed_count(-report.churned_subscribers), total=False
        ),
        RollRow(
            "End of month", money(report.mrr_end, signed=False),
            f"{report.subscribers_end:,d}", total=True,
        ),
    )  # fmt: skip
    bars = _mrr_bars(report, month=month)
    rate = report.mrr_change_rate
    pct = None if rate is None else _percent(rate)
    change = money(report.mrr_change)
    return RecurringView(
        code=normalize_currency(code).upper(),
        mrr=money(report.mrr_end, signed=False),
        mrr_change=change,
        mrr_change_pct=format_pct(pct),
        trend=_tone(report.mrr_change),
        badge=change if pct is None else format_pct(pct),
        arr=money(report.arr, signed=False),
        arr_change=money(report.arr_change),
        roll=roll,
        churn_rate=format_rate(report.subscriber_churn_rate),
        retention=format_rate(report.net_revenue_retention),
        bars=bars,
        label_width=max(len(r.label) for r in roll),
        # The column headers are "MRR" and "Subscribers" (11 characters).
        value_width=max(len(v) for v in [*(r.mrr for r in roll), *(b.value for b in bars)]),
        count_width=max(len(v) for v in [*(r.subscribers for r in roll), "Subscribers"]),
    )


def _one_line(text: str) -> str:
    """Collapse whitespace (newlines included) so a name can never break a header."""
    return " ".join(text.split())


def subject_for(report: MonthlyReport) -> str:
    """``"Acme revenue report: October 2026"``."""
    return f"{_one_line(report.company)} revenue report: {report.month_label}"


def _generated_label(at: datetime) -> str:
    # A naive datetime is taken as UTC rather than the machine's zone: the output must not
    # depend on where it is rendered.
    utc = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return f"{utc.day} {utc:%B %Y}, {utc:%H:%M} UTC"


def _rjust(value: object, width: int) -> str:
    return str(value).rjust(width)


def _ljust(value: object, width: int) -> str:
    return str(value).ljust(width)


def _loader(templates_dir: Path | None) -> jinja2.BaseLoader:
    """The installed templates, or those of ``templates_dir`` when one is given (tests)."""
    if templates_dir is not None:
        return jinja2.FileSystemLoader(templates_dir)
    try:
        # Imports bot.templates and finds its folder through importlib: works for a wheel
        # (site-packages/bot/templates) and for an editable install (the checkout's templates/).
        return jinja2.PackageLoader(TEMPLATES_PACKAGE, ".")
    except (ImportError, ValueError) as e:
        raise TemplateError(
            f"the email templates (package {TEMPLATES_PACKAGE}) are not installed: {e};"
            " reinstall revbot"
        ) from e


@functools.lru_cache(maxsize=8)
def _environment(templates_dir: Path | None, *, autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=_loader(templates_dir),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["rjust"] = _rjust
    env.filters["ljust"] = _ljust
    return env


@functools.lru_cache(maxsize=1)
def _inliner() -> css_inline.CSSInliner:
    # Remote stylesheets off: rendering must never touch the network. @media rules are kept
    # in a <style> block (they cannot be inlined); width/height also go to HTML attributes
    # because Outlook's Word engine reads those, not CSS.
    return css_inline.CSSInliner(
        load_remote_stylesheets=False,
        keep_at_rules=True,
        keep_style_tags=False,
        keep_link_tags=False,
        apply_width_attributes=True,
        apply_height_attributes=True,
    )


def _trim(html: str) -> str:
    """Drop indentation and blank lines: Gmail clips messages over ~102 KB of HTML.

    Safe because the template has no <pre> and no text whose leading spaces matter.
    """
    return "\n".join(line.strip() for line in html.splitlines() if line.strip()) + "\n"


def template_context(report: MonthlyReport) -> dict[str, object]:
    """The variables both templates receive."""
    company = _one_line(report.company)
    prev = previous_month(report.month)
    views = tuple(currency_view(c, month=report.month) for c in report.ordered_currencies)
    recurring = tuple(recurring_view(c, month=report.month) for c in report.ordered_recurring)
    headline = "; ".join(
        f"{v.code} net revenue {v.net}"
        + (f" ({v.badge} vs {report.previous_month_label})" if v.trend != "none" else "")
        for v in views
    )
    return {
        "company": company,
        "subject": subject_for(report),
        "month": report.month,
        "month_label": report.month_label,
        "month_short": f"{short_month_label(report.month)} {report.month[:4]}",
        "previous_month_label": report.previous_month_label,
        "previous_short": f"{short_month_label(prev)} {prev[:4]}",
        "period": period_label(report.month),
        "timezone": report.timezone,
        "livemode": report.livemode,
        "reconciled": report.reconciled,
        "currencies": views,
        "recurring": recurring,
        "headline": headline or "No activity this month.",
        "generated": _generated_label(report.generated_at),
    }


def render(report: MonthlyReport, *, templates_dir: Path | None = None) -> RenderedEmail:
    """Subject, HTML (CSS inlined) and plain text of the investor email for ``report``."""
    folder = None if templates_dir is None else templates_dir.resolve()
    where = f"package {TEMPLATES_PACKAGE}" if folder is None else str(folder)
    context = template_context(report)
    try:
        html = _environment(folder, autoescape=True).get_template(HTML_TEMPLATE).render(context)
        text = _environment(folder, autoescape=False).get_template(TEXT_TEMPLATE).render(context)
    except jinja2.TemplateNotFound as e:
        raise TemplateError(f"email template {e.name} not found in {where}") from e
    except jinja2.TemplateError as e:
        raise TemplateError(f"email template error: {e}") from e
    try:
        inlined = _inliner().inline(html)
    except css_inline.InlineError as e:
        raise TemplateError(f"could not inline the email's CSS: {e}") from e
    return RenderedEmail(subject=subject_for(report), html=_trim(inlined), text=text)


__all__ = [
    "TEMPLATES_PACKAGE",
    "Chart",
    "Column",
    "CurrencyView",
    "MrrBar",
    "RecurringView",
    "RollRow",
    "Row",
    "TemplateError",
    "compact_amount",
    "currency_view",
    "format_rate",
    "recurring_view",
    "render",
    "subject_for",
    "template_context",
]
