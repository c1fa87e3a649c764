"""The investor email: rendering (snapshots, escaping, formats), addresses and the senders.

The Resend sender is tested through the real ``resend`` SDK over HTTP against the fake Resend
server (tests/fakes/resend_server.py), which validates every request against
``tests/contracts/resend/resend.yaml`` (extracted from Resend's published spec).

Snapshots: ``tests/snapshots/investor_pnl.{html,txt}`` (a month without subscriptions) and
``investor_pnl_recurring.{html,txt}`` (the same month with its "Recurring revenue" section,
tested further in tests/test_mail_recurring.py) are compared exactly. After an
intended change to the templates or the renderer, regenerate them with

    REVBOT_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_mail.py -k snapshot

and review the diff (and ``scripts/screenshot_email.py``) before committing.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import resend
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import ConfigError, RevbotError, ServiceError, TemporaryError
from bot.mail.addresses import parse_address_list, validate_address
from bot.mail.model import (
    CurrencyReport,
    MonthlyReport,
    OutgoingEmail,
    format_pct,
    mom_pct,
    month_label,
    period_label,
    previous_month,
)
from bot.mail.outbox import OutboxMailer, outbox_name
from bot.mail.render import (
    CHART_HEIGHT,
    MIN_BAR,
    TemplateError,
    compact_amount,
    currency_view,
    render,
)
from bot.mail.resend_sender import IdempotencyConflictError, ResendMailer
from bot.mail.sample import SAMPLE_MONTH, sample_report
from bot.mail.senders import Mailer
from bot.pnl import PnlLines
from tests.fakes.resend_server import FakeResendServer

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
UPDATE = os.environ.get("REVBOT_UPDATE_SNAPSHOTS") == "1"

API_KEY = "re_" + "Fak3KeyNeverPrinted9876"
SENDER = "Acme Finance <finance@acme.example>"
KEY = "investor-pnl/2026-10/ann@vc.example/1"
XSS = "<script>alert(1)</script>"


# -- helpers ----------------------------------------------------------------------------------


def outgoing(to: str = "ann@vc.example", *, report: MonthlyReport | None = None) -> OutgoingEmail:
    return OutgoingEmail.addressed(render(report or sample_report()), sender=SENDER, to=to)


def single(
    currency: str,
    lines: PnlLines,
    *,
    history: tuple[tuple[str, int], ...] = (),
    previous: PnlLines | None = None,
    livemode: bool = True,
) -> MonthlyReport:
    return MonthlyReport(
        company="Acme",
        month="2026-10",
        timezone="UTC",
        livemode=livemode,
        reconciled=True,
        currencies=(
            CurrencyReport(
                currency=currency,
                lines=lines,
                previous=previous,
                starting_balance=0,
                ending_balance=lines.net_revenue + lines.payouts,
                history=history or (("2026-10", lines.net_revenue),),
            ),
        ),
        generated_at=datetime(2026, 11, 1, tzinfo=UTC),
    )


def chain_text(exc: BaseException) -> str:
    """Everything an exception (and its causes) would print."""
    parts = []
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen), repr(getattr(seen, "__dict__", {}))]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def check_snapshot(name: str, actual: str) -> None:
    path = SNAPSHOTS / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
    assert path.exists(), f"{path} missing: run with REVBOT_UPDATE_SNAPSHOTS=1 to create it"
    expected = path.read_bytes().decode("utf-8")
    assert actual == expected, f"{name} changed: review, then REVBOT_UPDATE_SNAPSHOTS=1"


# -- model helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "previous", "expected"),
    [
        (110, 100, Decimal(10)),
        (90, 100, Decimal(-10)),
        (100, 100, Decimal(0)),
        (100, 0, None),
        (100, None, None),
        (50, -100, Decimal(150)),  # from a loss to a profit is "up"
        (-150, -100, Decimal(-50)),
    ],
    ids=["up", "down", "flat", "prev-zero", "no-prev", "loss-to-profit", "deeper-loss"],
)
def test_mom_pct(current: int, previous: int | None, expected: Decimal | None) -> None:
    assert mom_pct(current, previous) == expected


@pytest.mark.parametrize(
    ("pct", "text"),
    [
        (Decimal("12.345"), "+12.3%"),
        (Decimal("-4.25"), "-4.2%"),
        (Decimal("0.01"), "0.0%"),
        (Decimal("1234.5"), "+1,234.5%"),
        (None, "n/a"),
    ],
    ids=["up", "down-half-even", "zero", "thousands", "none"],
)
def test_format_pct(pct: Decimal | None, text: str) -> None:
    assert format_pct(pct) == text


def test_month_labels() -> None:
    assert month_label("2026-10") == "October 2026"
    assert period_label("2026-02") == "1–28 February 2026"
    assert period_label("2028-02") == "1–29 February 2028"
    assert previous_month("2026-01") == "2025-12"
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_label("2026-13")


def test_history_must_be_ordered_and_short() -> None:
    lines = PnlLines(gross_revenue=100)
    with pytest.raises(ValueError, match="oldest first"):
        CurrencyReport("usd", lines, None, None, None, (("2026-10", 1), ("2026-09", 1)))
    months = (*((f"2025-{m:02d}", 1) for m in range(1, 13)), ("2026-01", 1))
    with pytest.raises(ValueError, match="at most 12"):
        CurrencyReport("usd", lines, None, None, None, months)


def test_outgoing_email_has_exactly_one_recipient() -> None:
    rendered = render(sample_report())
    with pytest.raises(ValueError, match="one recipient"):
        OutgoingEmail.addressed(rendered, sender=SENDER, to="a@x.example, b@x.example")


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (4_508_188, "usd", "$45.1k"),
        (-18_450, "eur", "-€185"),
        (2_266_540, "jpy", "¥2.3M"),
        (40, "usd", "$0.40"),
        (0, "usd", "$0"),
        (1_234_567, "kwd", "1.2k"),
        (999_950_000, "usd", "$10M"),
    ],
    ids=["usd-k", "eur-neg", "jpy-m", "cents", "zero", "kwd-no-symbol", "round-up"],
)
def test_compact_amount(minor: int, currency: str, text: str) -> None:
    assert compact_amount(minor, currency) == text


# -- rendering ----------------------------------------------------------------------------------


def test_subject() -> None:
    assert render(sample_report(company="Acme")).subject == "Acme revenue report: October 2026"
    # A newline in the company name can never split the Subject header.
    assert render(sample_report(company="Acme\nBcc: x@y.example")).subject == (
        "Acme Bcc: x@y.example revenue report: October 2026"
    )


def test_snapshot_html() -> None:
    check_snapshot("investor_pnl.html", render(sample_report()).html)


def test_snapshot_text() -> None:
    check_snapshot("investor_pnl.txt", render(sample_report()).text)


def test_snapshot_html_with_recurring_revenue() -> None:
    check_snapshot("investor_pnl_recurring.html", render(sample_report(recurring=True)).html)


def test_snapshot_text_with_recurring_revenue() -> None:
    check_snapshot("investor_pnl_recurring.txt", render(sample_report(recurring=True)).text)


def test_snapshot_month_has_usd_eur_and_jpy() -> None:
    report = sample_report()
    assert report.month == SAMPLE_MONTH
    assert [c.currency for c in report.currencies] == ["usd", "eur", "jpy"]


def test_script_is_escaped_in_html_and_plain_in_text() -> None:
    rendered = render(sample_report(company=XSS))
    assert XSS not in rendered.html
    assert "<script" not in rendered.html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert rendered.text.startswith(f"{XSS}: monthly revenue report, October 2026")
    assert "&lt;" not in rendered.text
    assert rendered.subject == f"{XSS} revenue report: October 2026"


def test_time_zone_is_escaped_too() -> None:
    report = replace(sample_report(), timezone='"><img src=x onerror=alert(1)>')
    html = render(report).html
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


@pytest.mark.parametrize("livemode", [True, False], ids=["live", "test"])
def test_test_data_banner_iff_test_mode(livemode: bool) -> None:
    rendered = render(sample_report(livemode=livemode))
    assert ("TEST DATA" in rendered.html) is not livemode
    assert ("TEST DATA" in rendered.text) is not livemode


def test_zero_and_three_decimal_currencies() -> None:
    jpy = render(single("jpy", PnlLines(gross_revenue=1_234_567, stripe_fees=-45_678)))
    assert "¥1,234,567" in jpy.html and "¥1,234,567" in jpy.text
    assert "¥1,188,889" in jpy.html and "¥1,188,889" in jpy.text
    assert not re.search(r"¥[\d,]+\.\d\d", jpy.html + jpy.text)  # "¥1.2M" in the chart is fine
    kwd = render(single("kwd", PnlLines(gross_revenue=1_234_567, stripe_fees=-4_001)))
    assert "KWD 1,234.567" in kwd.html and "KWD 1,234.567" in kwd.text
    assert "-KWD 4.001" in kwd.html and "-KWD 4.001" in kwd.text


def test_content_period_time_zone_and_reconciliation() -> None:
    ok = render(sample_report(reconciled=True))
    bad = render(sample_report(reconciled=False))
    for part in (ok.html, ok.text):
        assert "1–31 October 2026" in part
        assert "America/New_York" in part
        assert "Reconciled." in part
    for part in (bad.html, bad.text):
        assert re.search(r"not reconciled", part, re.IGNORECASE)
        assert "Reconciled." not in part
    for label in ("Gross revenue", "Refunds", "Disputes", "Stripe fees", "Other", "Net revenue",
                  "Payouts", "Starting balance", "Ending balance"):  # fmt: skip
        assert label in ok.html and label in ok.text


def test_text_part_has_the_same_figures_as_the_html() -> None:
    report = sample_report()
    rendered = render(report)
    for c in report.currencies:
        view = currency_view(c, month=report.month)
        figures = [r.current for r in view.pnl + view.balance]
        figures += [r.previous for r in view.pnl] + [r.change for r in view.pnl]
        figures += [col.value for col in view.chart.columns] if view.chart else []
        figures += [view.net, view.net_change, view.net_change_pct]
        for figure in figures:
            assert figure in rendered.text, figure
            assert figure in rendered.html or (
                view.chart and any(figure == col.value for col in view.chart.columns)
            ), figure
    assert "+10.3%" in rendered.html and "+10.3%" in rendered.text


def test_text_part_columns_are_aligned() -> None:
    text = render(sample_report()).text
    blocks = re.findall(r"PROFIT AND LOSS\n(.*?)\n\n", text, re.DOTALL)
    assert len(blocks) == 3
    for block in blocks:
        lines = block.splitlines()
        assert len(lines) == 8  # header, five lines, the rule, net revenue
        # Every column is padded to one width, so amounts end in the same column.
        assert len({len(line) for line in lines}) == 1, lines


@pytest.mark.parametrize("recurring", [False, True], ids=["pnl-only", "with-recurring"])
def test_html_is_inlined_table_layout_without_images(recurring: bool) -> None:
    html = render(sample_report(recurring=recurring)).html
    styles = re.findall(r"<style[^>]*>(.*?)</style>", html, re.DOTALL)
    # Only @media rules (and the Outlook-only block) stay in <style>; the rest is inlined.
    assert all("@media" in s or ("font-family" in s and "!important" in s) for s in styles)
    assert 'style="' in html and "<link" not in html
    assert "<img" not in html.lower() and "url(" not in html
    assert 'width="600"' in html
    assert len(html.encode()) < 102_000  # Gmail clips longer messages


def test_chart_bars_are_table_cells_including_negative_months() -> None:
    report = sample_report()
    html = render(report).html
    # The sample's EUR history has one negative month (a big dispute): a red bar under the
    # baseline, labelled with its amount.
    negative_bars = re.findall(r'<td class="bar"[^>]*bgcolor="#f87171"[^>]*>', html)
    assert len(negative_bars) == 1
    assert f'height="{MIN_BAR}"' in negative_bars[0]  # small, but never invisible
    assert "-€185" in html
    # 36 months of history in all, none zero: 36 bars.
    assert len(re.findall(r'<td class="bar"', html)) == 36
    # The current month is highlighted in each currency.
    assert html.count('bgcolor="#312e81"') == 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-(10**12), max_value=10**12), min_size=1, max_size=12))
def test_chart_geometry(values: list[int]) -> None:
    history = tuple((f"2026-{i + 1:02d}", v) for i, v in enumerate(values))
    report = CurrencyReport("usd", PnlLines(), None, None, None, history)
    chart = currency_view(report, month=history[-1][0]).chart
    assert chart is not None
    for col, v in zip(chart.columns, values, strict=True):
        assert (col.up > 0) == (v > 0) and (col.down > 0) == (v < 0)
        assert col.up <= chart.up_area and col.down <= chart.down_area
        if v:
            assert max(col.up, col.down) >= MIN_BAR
    assert chart.up_area + chart.down_area <= CHART_HEIGHT + 2 * MIN_BAR
    by_size = sorted(zip(values, chart.columns, strict=True), key=lambda p: abs(p[0]))
    heights = [max(c.up, c.down) for _, c in by_size]
    assert heights == sorted(heights)  # a bigger month never gets a shorter bar


def test_month_without_previous_or_history() -> None:
    report = single("usd", PnlLines(gross_revenue=5_000))
    rendered = render(report)
    assert "No figures for September 2026 to compare with." in rendered.html
    assert "no figures to compare with" in rendered.text
    empty = replace(report, currencies=())
    assert "No Stripe activity in October 2026." in render(empty).text


def test_previous_month_zero_shows_absolute_change() -> None:
    report = single("usd", PnlLines(gross_revenue=5_000), previous=PnlLines())
    rendered = render(report)
    assert "+$50.00" in rendered.html and "n/a" not in rendered.html


def test_missing_variable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "investor_pnl.html.j2").write_text("{{ company }} {{ nope }}")
    (tmp_path / "investor_pnl.txt.j2").write_text("{{ company }}")
    with pytest.raises(TemplateError, match="nope"):
        render(sample_report(), templates_dir=tmp_path)
    with pytest.raises(TemplateError, match="not found"):
        render(sample_report(), templates_dir=tmp_path / "missing")


# -- addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ann@vc.example", "ann@vc.example"),
        ("  Ann.Lee+pnl@VC.Example ", "Ann.Lee+pnl@vc.example"),
        ("a@b.co", "a@b.co"),
    ],
    ids=["plain", "case-and-plus", "short"],
)
def test_valid_recipients(value: str, expected: str) -> None:
    assert validate_address(value, variable="INVESTOR_EMAILS") == expected


@pytest.mark.parametrize(
    "value",
    ["ann", "ann@", "@vc.example", "ann@vc", "ann@@vc.example", "ann@vc..example",
     "ann @vc.example", "ann@vc.example\nBcc: x@y.example", "Ann <ann@vc.example>",
     ".ann@vc.example", "ann@-vc.example"],
    ids=["no-at", "no-domain", "no-local", "no-tld", "double-at", "double-dot", "space",
         "header-injection", "display-name", "leading-dot", "hyphen-label"],
)  # fmt: skip
def test_invalid_recipients(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_address(value, variable="INVESTOR_EMAILS")
    message = str(info.value)
    assert message.startswith("INVESTOR_EMAILS")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Acme Finance <finance@Acme.example>", "Acme Finance <finance@acme.example>"),
        ('"Acme, Inc." <finance@acme.example>', "Acme, Inc. <finance@acme.example>"),
        ("<finance@acme.example>", "finance@acme.example"),
        ("finance@acme.example", "finance@acme.example"),
    ],
    ids=["named", "quoted-name", "angle-only", "bare"],
)
def test_sender_with_display_name(value: str, expected: str) -> None:
    assert validate_address(value, variable="EMAIL_FROM", allow_display_name=True) == expected


def test_bad_sender_names_variable_and_value() -> None:
    with pytest.raises(ConfigError, match=r"^EMAIL_FROM: 'Acme <finance@acme>' is not"):
        validate_address("Acme <finance@acme>", variable="EMAIL_FROM", allow_display_name=True)


def test_address_list() -> None:
    value = " ann@vc.example, Bob@Fund.example ,,ann@VC.example, "
    assert parse_address_list(value) == ("ann@vc.example", "bob@fund.example")
    assert parse_address_list("  ") == ()
    with pytest.raises(ConfigError, match=r"^INVESTOR_EMAILS: 'bob@' "):
        parse_address_list("ann@vc.example, bob@")
    with pytest.raises(ConfigError, match=r"^ALERT_EMAILS:"):
        parse_address_list("x", variable="ALERT_EMAILS")


# -- the Resend sender, through the SDK, against the fake -----------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeResendServer]:
    with FakeResendServer() as server:
        yield server
        assert server.violations == [], server.violations


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def mailer(fake: FakeResendServer, sleeps: Sleeps) -> ResendMailer:
    return ResendMailer(api_key=API_KEY, api_url=fake.url, sleep=sleeps, min_interval=0)


def test_resend_mailer_is_a_mailer(mailer: ResendMailer, tmp_path: Path) -> None:
    assert isinstance(mailer, Mailer)
    assert isinstance(OutboxMailer(outbox_dir=tmp_path), Mailer)
    assert API_KEY not in repr(mailer)


def test_send_arrives_with_both_parts_and_one_recipient(
    fake: FakeResendServer, mailer: ResendMailer
) -> None:
    msg = outgoing()
    message_id = mailer.send(msg, idempotency_key=KEY)
    assert len(fake.messages) == 1
    got = fake.messages[0]
    assert got["id"] == message_id
    assert got["to"] == ["ann@vc.example"]
    assert got["from"] == SENDER
    assert got["subject"] == "Acme Analytics revenue report: October 2026"
    assert got["html"] == msg.html and got["text"] == msg.text
    assert got["cc"] is None and got["bcc"] is None
    assert got["idempotency_key"] == KEY
    request = fake.requests[0]["headers"]
    assert request["authorization"] == f"Bearer {API_KEY}"
    assert request["user-agent"].startswith("resend-python:")
    # The SDK's process-wide settings are left as they were.
    assert resend.api_key != API_KEY and resend.api_url != fake.url


def test_each_investor_gets_only_their_own_address(
    fake: FakeResendServer, mailer: ResendMailer
) -> None:
    investors = ("ann@vc.example", "bob@fund.example", "cy@angel.example")
    rendered = render(sample_report())
    for to in investors:
        mailer.send(
            OutgoingEmail.addressed(rendered, sender=SENDER, to=to),
            idempotency_key=f"investor-pnl/2026-10/{to}/1",
        )
    assert [m["to"] for m in fake.messages] == [[to] for to in investors]
    for request, to in zip(fake.requests, investors, strict=True):
        for other in set(investors) - {to}:
            assert other.encode() not in request["body"]


def test_same_key_same_email_is_replayed_not_resent(
    fake: FakeResendServer, mailer: ResendMailer
) -> None:
    msg = outgoing()
    first = mailer.send(msg, idempotency_key=KEY)
    second = mailer.send(msg, idempotency_key=KEY)
    assert first == second
    assert len(fake.messages) == 1
    assert len(fake.requests) == 2


def test_same_key_other_email_is_a_conflict(fake: FakeResendServer, mailer: ResendMailer) -> None:
    mailer.send(outgoing(), idempotency_key=KEY)
    changed = outgoing(report=sample_report(reconciled=False))
    with pytest.raises(IdempotencyConflictError) as info:
        mailer.send(changed, idempotency_key=KEY)
    assert isinstance(info.value, ServiceError)
    assert "different email" in str(info.value) and KEY in str(info.value)
    assert len(fake.messages) == 1
    assert len(fake.requests) == 2  # a conflict is never retried


def test_rate_limit_storm_is_retried_with_the_same_key(
    fake: FakeResendServer, mailer: ResendMailer, sleeps: Sleeps
) -> None:
    fake.inject(status=429, times=3, headers={"retry-after": "2"})
    message_id = mailer.send(outgoing(), idempotency_key=KEY)
    assert [m["id"] for m in fake.messages] == [message_id]
    assert [r["key"] for r in fake.requests] == [KEY] * 4
    assert sleeps == [2.0, 2.0, 2.0]


def test_retry_after_zero_is_retry_now(
    fake: FakeResendServer, mailer: ResendMailer, sleeps: Sleeps
) -> None:
    fake.inject(status=429, times=2, headers={"retry-after": "0"})
    mailer.send(outgoing(), idempotency_key=KEY)
    assert sleeps == [0.0, 0.0] and len(fake.messages) == 1


def test_retry_after_as_an_http_date_is_honoured(
    fake: FakeResendServer, mailer: ResendMailer, sleeps: Sleeps
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    fake.inject(status=429, times=1, headers={"retry-after": when})
    mailer.send(outgoing(), idempotency_key=KEY)
    # Whole seconds in the date: 4 to 5 s from now (our own back-off would be 0.5 to 1 s).
    assert len(sleeps) == 1 and 3.9 <= sleeps[0] <= 5.0, sleeps


def test_unreadable_retry_after_falls_back_to_ratelimit_reset(
    fake: FakeResendServer, mailer: ResendMailer, sleeps: Sleeps
) -> None:
    fake.inject(status=429, times=1, headers={"retry-after": "soon", "ratelimit-reset": "3"})
    mailer.send(outgoing(), idempotency_key=KEY)
    assert sleeps == [3.0]


def test_retry_after_past_the_budget_gives_up_without_waiting(
    fake: FakeResendServer, sleeps: Sleeps
) -> None:
    mailer = ResendMailer(
        api_key=API_KEY, api_url=fake.url, sleep=sleeps, min_interval=0, max_wait=30.0
    )
    fake.inject(status=429, times=5, headers={"retry-after": "60"})
    with pytest.raises(TemporaryError, match=r"after 1 attempt \(429 rate_limit_exceeded") as info:
        mailer.send(outgoing(), idempotency_key=KEY)
    assert info.value.exit_code == 75
    assert sleeps == [] and len(fake.requests) == 1 and fake.messages == []


def test_server_error_storm_backs_off_and_delivers_once(
    fake: FakeResendServer, mailer: ResendMailer, sleeps: Sleeps
) -> None:
    fake.inject(status=500, times=2, name="application_error")
    fake.inject(status=502, times=1, raw_body="<html>Bad gateway</html>")
    fake.inject(status=409, times=1, name="concurrent_idempotent_requests")
    mailer.send(outgoing(), idempotency_key=KEY)
    assert len(fake.messages) == 1
    assert [r["key"] for r in fake.requests] == [KEY] * 5
    # The shared policy (bot.retry): back-off doubling from 1 s with equal jitter, each wait
    # within [d/2, d]. (It was exactly 1, 2, 4, 8 before Resend used the shared policy.)
    assert len(sleeps) == 4
    assert all(d / 2 <= s <= d for s, d in zip(sleeps, [1, 2, 4, 8], strict=True)), sleeps


def test_delivered_but_failed_answer_then_retry_delivers_once(
    fake: FakeResendServer, mailer: ResendMailer
) -> None:
    fake.inject(status=500, deliver_then_fail=True)
    message_id = mailer.send(outgoing(), idempotency_key=KEY)
    assert len(fake.messages) == 1
    assert fake.messages[0]["id"] == message_id
    assert len(fake.requests) == 2


def test_connection_dropped_after_delivery_then_retry_delivers_once(
    fake: FakeResendServer, mailer: ResendMailer
) -> None:
    fake.inject(deliver_then_fail=True, drop_connection=True)
    message_id = mailer.send(outgoing(), idempotency_key=KEY)
    assert [m["id"] for m in fake.messages] == [message_id]


def test_retries_are_bounded(fake: FakeResendServer, sleeps: Sleeps) -> None:
    mailer = ResendMailer(
        api_key=API_KEY, api_url=fake.url, sleep=sleeps, min_interval=0, max_attempts=3
    )
    fake.inject(status=500, times=10)
    with pytest.raises(TemporaryError, match=r"after 3 attempts .*500") as info:
        mailer.send(outgoing(), idempotency_key=KEY)
    assert len(fake.requests) == 3 and fake.messages == []
    assert len(sleeps) == 2
    assert API_KEY not in chain_text(info.value)


@pytest.mark.parametrize("quota", ["daily_quota_exceeded", "monthly_quota_exceeded"])
def test_spent_quota_is_temporary_and_not_retried(
    fake: FakeResendServer, mailer: ResendMailer, sleeps: Sleeps, quota: str
) -> None:
    fake.inject(status=429, name=quota, times=5)
    with pytest.raises(TemporaryError, match=quota) as info:
        mailer.send(outgoing(), idempotency_key=KEY)
    assert info.value.exit_code == 75
    assert len(fake.requests) == 1 and sleeps == []
    assert API_KEY not in chain_text(info.value)


def test_unverified_sender_is_a_clear_config_error(
    fake: FakeResendServer, mailer: ResendMailer
) -> None:
    fake.inject(status=422, name="invalid_from_address")
    with pytest.raises(ConfigError) as info:
        mailer.send(outgoing(), idempotency_key=KEY)
    message = str(info.value)
    assert message.startswith(f"EMAIL_FROM {SENDER!r} is not a verified sender")
    assert "\n" not in message and len(fake.requests) == 1
    assert API_KEY not in chain_text(info.value)


def test_other_422_is_a_service_error(fake: FakeResendServer, mailer: ResendMailer) -> None:
    fake.inject(status=422, name="invalid_parameter", message="`to` is not allowed")
    with pytest.raises(ServiceError, match=r"ann@vc\.example .*422 invalid_parameter"):
        mailer.send(outgoing(), idempotency_key=KEY)
    assert len(fake.requests) == 1


def test_rejected_key_is_a_config_error_without_the_key(sleeps: Sleeps) -> None:
    with FakeResendServer(api_keys=frozenset({"re_theRightOne"})) as fake:
        mailer = ResendMailer(api_key=API_KEY, api_url=fake.url, sleep=sleeps, min_interval=0)
        with pytest.raises(ConfigError, match="RESEND_API_KEY was rejected") as info:
            mailer.send(outgoing(), idempotency_key=KEY)
        assert API_KEY not in chain_text(info.value)
        assert fake.messages == [] and len(fake.requests) == 1


def test_key_echoed_by_the_server_is_redacted(fake: FakeResendServer, mailer: ResendMailer) -> None:
    fake.inject(status=451, name="security_error", message=f"bad header Bearer {API_KEY}")
    with pytest.raises(ServiceError) as info:
        mailer.send(outgoing(), idempotency_key=KEY)
    assert API_KEY not in str(info.value)
    assert "re_…" in str(info.value)


def test_unreachable_server_is_temporary_without_the_key(sleeps: Sleeps) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mailer = ResendMailer(
        api_key=API_KEY,
        api_url=f"http://127.0.0.1:{port}",
        sleep=sleeps,
        min_interval=0,
        max_attempts=2,
    )
    with pytest.raises(
        TemporaryError, match=r"no answer from http://127\.0\.0\.1:[0-9]+: connection refused"
    ) as info:
        mailer.send(outgoing(), idempotency_key=KEY)
    assert API_KEY not in chain_text(info.value)
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 1.0  # equal jitter of 1 s (bot.retry)


def test_sends_are_paced(fake: FakeResendServer, sleeps: Sleeps) -> None:
    mailer = ResendMailer(
        api_key=API_KEY, api_url=fake.url, sleep=sleeps, min_interval=0.5, clock=lambda: 100.0
    )
    mailer.send(outgoing(), idempotency_key="k1")
    mailer.send(outgoing(), idempotency_key="k2")
    assert sleeps == [0.5]


def test_bad_idempotency_keys_are_refused_before_sending(
    fake: FakeResendServer, mailer: ResendMailer
) -> None:
    for key in ("", "x" * 257, "a\nb"):
        with pytest.raises(ValueError, match="idempotency key"):
            mailer.send(outgoing(), idempotency_key=key)
    assert fake.requests == []


def test_empty_api_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="RESEND_API_KEY"):
        ResendMailer(api_key=" ")


# -- the fake itself: it must refuse what Resend refuses ------------------------------------------


def post(fake: FakeResendServer, body: dict[str, Any], **headers: str) -> requests.Response:
    base = {"Authorization": f"Bearer {API_KEY}", "User-Agent": "test"}
    base.update(headers)
    return requests.post(f"{fake.url}/emails", json=body, headers=base, timeout=5)


def test_fake_validates_against_the_contract() -> None:
    with FakeResendServer() as fake:
        r = post(fake, {"from": SENDER, "to": ["a@b.example"], "html": "<p>x</p>"})
        assert r.status_code == 422
        assert r.json()["name"] == "validation_error"
        assert any("subject" in v for v in fake.violations)
        fake.violations.clear()
        r = post(fake, {"from": SENDER, "to": [], "subject": "s", "text": "x"})
        assert r.status_code == 422 and fake.violations
        fake.violations.clear()
        r = post(fake, {"from": SENDER, "to": "a@b.example", "subject": "s"})
        assert r.status_code == 422 and fake.violations  # no content at all
        assert fake.messages == []


def test_fake_auth_user_agent_and_keys(fake: FakeResendServer) -> None:
    body = {"from": SENDER, "to": "a@b.example", "subject": "s", "text": "x"}
    r = requests.post(f"{fake.url}/emails", json=body, headers={"User-Agent": "t"}, timeout=5)
    assert (r.status_code, r.json()["name"]) == (401, "missing_api_key")
    r = post(fake, body, Authorization="Bearer sk_nope")
    assert (r.status_code, r.json()["name"]) == (403, "invalid_api_key")
    assert r.json() == {
        "statusCode": 403,
        "name": "invalid_api_key",
        "message": "API key is invalid",
    }
    r = post(fake, body, **{"User-Agent": ""})
    assert r.status_code == 403 and "1010" in r.text
    r = post(fake, body, **{"Idempotency-Key": "k" * 257})
    assert (r.status_code, r.json()["name"]) == (400, "invalid_idempotency_key")
    r = requests.post(
        f"{fake.url}/emails/batch",
        json=[body, {**body, "to": ["c@d.example"]}],
        headers={"Authorization": f"Bearer {API_KEY}", "User-Agent": "t"},
        timeout=5,
    )
    assert r.status_code == 200 and len(r.json()["data"]) == 2
    assert len(fake.messages) == 2


# -- the outbox ---------------------------------------------------------------------------------


def test_outbox_writes_a_parseable_eml_with_both_parts(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    when = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    mailer = OutboxMailer(outbox_dir=outbox, now=lambda: when)
    msg = outgoing(report=sample_report(company=f"Ünïcode {XSS}"))
    message_id = mailer.send(msg, idempotency_key=KEY)
    eml, html = mailer.paths(KEY)
    assert message_id == f"outbox:{eml.stem}"
    assert sorted(p.name for p in outbox.iterdir()) == sorted([eml.name, html.name])
    assert html.read_text(encoding="utf-8") == msg.html

    parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["From"] == SENDER and parsed["To"] == "ann@vc.example"
    assert parsed["Subject"] == msg.subject
    assert parsed["X-Idempotency-Key"] == KEY
    assert parsed["Message-ID"].endswith("@acme.example>")
    assert parsed["Date"].datetime == when
    plain = parsed.get_body(("plain",))
    rich = parsed.get_body(("html",))
    assert plain is not None and rich is not None
    assert plain.get_content().replace("\r\n", "\n") == msg.text
    assert rich.get_content().replace("\r\n", "\n") == msg.html.replace("\r\n", "\n")


def test_outbox_same_key_overwrites_other_key_adds(tmp_path: Path) -> None:
    mailer = OutboxMailer(outbox_dir=tmp_path)
    first = mailer.send(outgoing(), idempotency_key=KEY)
    again = mailer.send(outgoing(), idempotency_key=KEY)
    assert first == again
    assert len(list(tmp_path.iterdir())) == 2
    mailer.send(outgoing("bob@fund.example"), idempotency_key=KEY.replace("ann", "bob"))
    assert len(list(tmp_path.glob("*.eml"))) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_outbox_names_are_safe_and_distinct() -> None:
    a, b = outbox_name("x/../../etc/passwd"), outbox_name("x_.._.._etc_passwd")
    assert "/" not in a and not a.startswith(".") and a != b
    assert len(outbox_name("k" * 256)) < 140


def test_outbox_write_failure_is_a_revbot_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RevbotError, match="could not write to the outbox"):
        OutboxMailer(outbox_dir=blocker / "outbox").send(outgoing(), idempotency_key=KEY)
