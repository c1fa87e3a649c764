"""Alerts on failure and silence, and the daily Slack summary (issue 8).

Slack is the fake webhook of ``tests/fakes/slack_server.py`` reached through slack_sdk's real
``WebhookClient``; e-mail goes through the real ``ResendMailer`` (resend SDK) to the fake Resend
server, or through the real outbox. Incidents live in a real ledger file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.alerts import SILENCE_DAYS, Alerter, escape_mrkdwn, failure_incident, summary_line
from bot.config import Settings, resolve
from bot.dashboard.base import DailyRow
from bot.errors import ConfigError
from bot.ledger import Ledger, LedgerError
from bot.mail.outbox import OutboxMailer
from bot.mail.resend_sender import ResendMailer
from bot.mail.senders import Mailer
from bot.money import format_amount, to_minor
from bot.periods import day_interval
from bot.pnl import PnlLines, Summary
from tests.fakes.resend_server import FakeResendServer
from tests.fakes.slack_server import FakeSlackWebhook

RESEND_KEY = "re_" + "AlertTestKey123456"
STRIPE_LIVE_KEY = "sk_live_" + "Q" * 24
FOUNDERS = ("ann@acme.example", "bob@acme.example")
AUCKLAND = ZoneInfo("Pacific/Auckland")
# 20:00 UTC on 10 March is 09:00 on 11 March in Auckland: "yesterday" there is 10 March, while
# in UTC it would be 9 March, so a test that cut days in UTC would fail.
NOW = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)
YESTERDAY = date(2026, 3, 10)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[FakeSlackWebhook]:
    with FakeSlackWebhook() as server:
        yield server


@pytest.fixture
def resend_fake() -> Iterator[FakeResendServer]:
    with FakeResendServer() as server:
        yield server


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "state.sqlite"


@pytest.fixture
def ledger(ledger_path: Path) -> Iterator[Ledger]:
    ledger = Ledger.open(ledger_path)
    yield ledger
    ledger.close()


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def settings_for(tmp_path: Path, **env: str) -> Settings:
    """Settings resolved like the CLI does, from variables only (no .env in ``tmp_path``)."""
    base = {"DATA_DIR": str(tmp_path / "data"), "COMPANY_NAME": "Acme", "REPORT_TIMEZONE": "UTC"}
    return resolve(environ={**base, **env}, cwd=tmp_path, require_stripe=False)


def resend_factory(server: FakeResendServer, **kwargs: Any) -> Callable[[], Mailer]:
    def make() -> Mailer:
        return ResendMailer(
            api_key=RESEND_KEY,
            api_url=server.url,
            sleep=lambda _s: None,
            min_interval=0,
            **kwargs,
        )

    return make


def mark_synced(ledger: Ledger, tz: ZoneInfo, days: list[date]) -> None:
    with ledger.transaction() as conn:
        ledger.mark_days_synced(
            conn,
            tz.key,
            {d: (day_interval(d, tz).start, day_interval(d, tz).end, 0) for d in days},
        )


# -- one alert per incident -------------------------------------------------------------------


def test_repeated_failures_alert_once_across_runs(
    tmp_path: Path, slack: FakeSlackWebhook, ledger_path: Path, sleeps: Sleeps
) -> None:
    settings = settings_for(tmp_path, SLACK_WEBHOOK_URL=slack.url)
    results = []
    for _run in range(3):  # three cron runs: each its own ledger connection and Alerter
        ledger = Ledger.open(ledger_path)
        alerter = Alerter(settings, ledger=ledger, sleep=sleeps)
        results.append(
            alerter.failure(
                "daily",
                "Stripe failed: 500 api_error; retry later",
                75,
                kind="TemporaryError",
            )
        )
        ledger.close()

    assert len(slack.messages) == 1
    first, *rest = results
    assert first is not None and first.delivered and first.slack is True
    assert rest == [None, None]
    text = slack.texts[0]
    assert "*Acme*" in text
    assert "`revbot daily` failed (exit 75): Stripe failed: 500 api_error; retry later" in text
    assert sleeps == []


def test_success_resolves_so_the_next_failure_alerts_again(
    tmp_path: Path, slack: FakeSlackWebhook, ledger: Ledger
) -> None:
    alerter = Alerter(settings_for(tmp_path, SLACK_WEBHOOK_URL=slack.url), ledger=ledger)
    alerter.failure("daily", "could not reach Stripe", 75, kind="TemporaryError")
    alerter.success("monthly")  # another command's success says nothing about daily
    alerter.failure("daily", "could not reach Stripe", 75, kind="TemporaryError")
    assert len(slack.messages) == 1

    alerter.success("daily")
    assert alerter.failure("daily", "could not reach Stripe", 75, kind="TemporaryError")
    alerter.failure("daily", "could not reach Stripe", 75, kind="TemporaryError")
    assert len(slack.messages) == 2


def test_a_different_failure_is_a_new_incident(
    tmp_path: Path, slack: FakeSlackWebhook, ledger: Ledger
) -> None:
    alerter = Alerter(settings_for(tmp_path, SLACK_WEBHOOK_URL=slack.url), ledger=ledger)
    alerter.failure("daily", "could not reach Stripe", 75, kind="TemporaryError")
    alerter.failure("daily", "STRIPE_SECRET_KEY was rejected", 78, kind="ConfigError")
    alerter.failure("monthly", "could not reach Stripe", 75, kind="TemporaryError")
    assert len(slack.messages) == 3


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (("daily", None, "rate limit spent, retry in 3s", 75),
         ("daily", None, "rate limit spent, retry in 7s", 75), True),
        (("daily", None, "could not reach Stripe", 75),
         ("daily", None, "could not reach Stripe", 1), False),
        (("daily", "TemporaryError", "one message", 75),
         ("daily", "TemporaryError", "another message entirely", 75), True),
        (("daily", "TemporaryError", "x", 75), ("monthly", "TemporaryError", "x", 75), False),
    ],
    ids=["digits-ignored", "exit-code-differs", "kind-wins-over-text", "command-differs"],
)  # fmt: skip
def test_incident_keys(
    a: tuple[str, str | None, str, int], b: tuple[str, str | None, str, int], same: bool
) -> None:
    def key(t: tuple[str, str | None, str, int]) -> str:
        return failure_incident(t[0], kind=t[1], error=t[2], exit_code=t[3])

    assert (key(a) == key(b)) is same
    assert key(a).startswith(f"failure:{a[0]}:")


@pytest.mark.parametrize("code", [0, 2, 130], ids=["success", "usage", "interrupted"])
def test_usage_errors_and_interrupts_are_not_alerted(
    tmp_path: Path, slack: FakeSlackWebhook, ledger: Ledger, code: int
) -> None:
    alerter = Alerter(settings_for(tmp_path, SLACK_WEBHOOK_URL=slack.url), ledger=ledger)
    assert alerter.failure("daily", "--date must be YYYY-MM-DD", code, kind="X") is None
    assert slack.messages == []
    # Nothing was recorded either: a real failure of the same kind is still news.
    assert alerter.failure("daily", "--date must be YYYY-MM-DD", 1, kind="X") is not None
    assert len(slack.messages) == 1


def test_nothing_configured_sends_and_records_nothing(
    tmp_path: Path, slack: FakeSlackWebhook, ledger: Ledger
) -> None:
    quiet = Alerter(settings_for(tmp_path), ledger=ledger)
    assert not quiet.enabled
    assert quiet.failure("daily", "boom", 1, kind="ServiceError") is None
    assert quiet.check_silence(now=NOW, tz=AUCKLAND, synced_days=[YESTERDAY - timedelta(9)]) is None
    assert quiet.daily_summary(YESTERDAY, []) is False

    # Configuring Slack afterwards: the failure was never announced, so it is announced now.
    loud = Alerter(settings_for(tmp_path, SLACK_WEBHOOK_URL=slack.url), ledger=ledger)
    assert loud.failure("daily", "boom", 1, kind="ServiceError") is not None
    assert len(slack.messages) == 1


# -- silence ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "alerts"),
    [(0, 0), (1, 0), (SILENCE_DAYS, 0), (SILENCE_DAYS + 1, 1), (10, 1)],
    ids=["fresh", "one-missed-run", "two-days", "three-days", "ten-days"],
)
def test_silence_threshold(
    tmp_path: Path, slack: FakeSlackWebhook, ledger: Ledger, missing: int, alerts: int
) -> None:
    last = YESTERDAY - timedelta(days=missing)
    mark_synced(ledger, AUCKLAND, [last - timedelta(days=i) for i in range(5)])
    alerter = Alerter(settings_for(tmp_path, SLACK_WEBHOOK_URL=slack.url), ledger=ledger)
    alerter.check_silence(now=NOW, tz=AUCKLAND, synced_days=ledger.synced_days(AUCKLAND.key))
    assert len(slack.messages) == alerts


def test_a_silent_gap_of_three_days_raises_one_alert(
    tmp_path: Path, slack: FakeSlackWebhook, ledger: Ledger, resend_fake: FakeResendServer
) -> None:
    last = YESTERDAY - timedelta(days=3)  # 8, 9 and 10 March never synced
    mark_synced(ledger, AUCKLAND, [last - timedelta(days=i) for i in range(10)])
    settings = settings_for(
        tmp_path,
        SLACK_WEBHOOK_URL=slack.url,
        ALERT_EMAILS=",".join(FOUNDERS),
        EMAIL_FROM="Acme Ops <ops@acme.example>",
    )
    alerter = Alerter(settings, ledger=ledger, mailer_factory=resend_factory(resend_fake))
    # Three daily runs see the same gap (the later ones still before anything was synced).
    for hours in (0, 1, 25):
        alerter.check_silence(
            now=NOW + timedelta(hours=hours),
            tz=AUCKLAND,
            synced_days=ledger.synced_days(AUCKLAND.key),
        )

    assert len(slack.messages) == 1
    assert f"no successful sync since {last}" in slack.texts[0]
    assert "3 day(s) missing (2026-03-08 … 2026-03-10, Pacific/Auckland)" in slack.texts[0]
    assert sorted(m["to"][0] for m in resend_fake.messages) == sorted(FOUNDERS)
    assert all(f"no successful sync since {last}" in m["subject"] for m in resend_fake.messages)
    assert resend_fake.violations == []


def test_silence_resolves_when_fresh_and_a_later_gap_alerts_again(
    tmp_path: Path, slack: FakeSlackWebhook, ledger: Ledger
) -> None:
    alerter = Alerter(settings_for(tmp_path, SLACK_WEBHOOK_URL=slack.url), ledger=ledger)
    mark_synced(ledger, AUCKLAND, [date(2026, 3, 1)])
    alerter.check_silence(now=NOW, tz=AUCKLAND, synced_days=ledger.synced_days(AUCKLAND.key))
    assert len(slack.messages) == 1

    # The catch-up ran: fresh again, nothing said.
    mark_synced(ledger, AUCKLAND, [date(2026, 3, d) for d in range(2, 11)])
    alerter.check_silence(now=NOW, tz=AUCKLAND, synced_days=ledger.synced_days(AUCKLAND.key))
    assert len(slack.messages) == 1

    # Then the cron entry stops again: a new gap, a new alert.
    later = NOW + timedelta(days=5)
    alerter.check_silence(now=later, tz=AUCKLAND, synced_days=ledger.synced_days(AUCKLAND.key))
    assert len(slack.messages) == 2
    assert "no successful sync since 2026-03-10" in slack.texts[1]


def test_an_empty_ledger_is_a_first_run_not_silence(
    tmp_path: Path, slack: FakeSlackWebhook, ledger: Ledger
) -> None:
    alerter = Alerter(settings_for(tmp_path, SLACK_WEBHOOK_URL=slack.url), ledger=ledger)
    assert alerter.check_silence(now=NOW, tz=AUCKLAND, synced_days={}) is None
    assert slack.messages == []


# -- the daily summary ------------------------------------------------------------------------


def _rows(day: date) -> list[DailyRow]:
    at = datetime(2026, 3, 11, 6, 15, tzinfo=UTC)

    def row(ccy: str, lines: PnlLines, txns: int, on: date = day) -> DailyRow:
        return DailyRow(on, ccy, lines, charges=txns - 2, refunds_count=1, transactions=txns,
                        updated_at=at)  # fmt: skip

    return [
        row("usd", PnlLines(123456789, -2000, -1500, -3611, 77, payouts=-500000), 41),
        row("jpy", PnlLines(1234567, -1000, 0, -44000, 0), 12),
        row("kwd", PnlLines(12345, -5, 0, -371, 0), 3),
        row("eur", PnlLines(0, -999, 0, -25, 0), 2),  # net revenue negative
        row("usd", PnlLines(999, 0, 0, 0, 0), 1, on=day - timedelta(days=1)),  # another day
    ]


def _minor(text: str, ccy: str) -> int:
    """An amount as :func:`format_amount` writes it (``-$1,234.56``, ``KWD 1.234``) -> minor."""
    m = re.fullmatch(r"(-?)\D*?([\d,]+(?:\.\d+)?)\D*", text.strip())
    assert m, text
    minor = to_minor(Decimal(m.group(2).replace(",", "")), ccy)
    return -minor if m.group(1) else minor


def parse_summary(text: str) -> tuple[str, dict[str, dict[str, int]]]:
    """The posted line -> (day, {currency: {figure: minor units}})."""
    _head, day, *segments = text.split(" · ")
    out: dict[str, dict[str, int]] = {}
    for seg in segments:
        ccy, _, rest = seg.partition(": ")
        fields = dict(part.split(" ", 1) for part in rest.split("; ")[:4])
        count = int(rest.split("; ")[4].split()[0])
        code = ccy.lower()
        out[code] = {name: _minor(value, code) for name, value in fields.items()}
        out[code]["transactions"] = count
    return day, out


def test_summary_figures_equal_the_daily_rows(
    tmp_path: Path, slack: FakeSlackWebhook, ledger: Ledger
) -> None:
    rows = _rows(YESTERDAY)
    alerter = Alerter(settings_for(tmp_path, SLACK_WEBHOOK_URL=slack.url), ledger=ledger)
    assert alerter.daily_summary(YESTERDAY, rows) is True

    assert len(slack.messages) == 1
    text = slack.texts[0]
    assert "\n" not in text
    day, figures = parse_summary(text)
    assert day == "2026-03-10"
    of_day = [r for r in rows if r.date == YESTERDAY]
    assert set(figures) == {r.currency for r in of_day}
    for r in of_day:
        assert figures[r.currency] == {
            "net": r.lines.net_revenue,
            "gross": r.lines.gross_revenue,
            "refunds": r.lines.refunds,
            "fees": r.lines.stripe_fees,
            "transactions": r.transactions,
        }, r.currency
        # ... written exactly as the money module formats them.
        assert f"net {format_amount(r.lines.net_revenue, r.currency)};" in text
    assert "¥1,189,567" in text  # JPY without decimals
    assert "KWD 11.969" in text  # three decimals


def test_summary_from_the_daily_job_summaries_is_the_same_line() -> None:
    rows = [r for r in _rows(YESTERDAY) if r.date == YESTERDAY]
    summaries = [
        Summary(r.currency, r.lines, r.charges, r.refunds_count, r.transactions) for r in rows
    ]
    assert summary_line(YESTERDAY, summaries, company="Acme") == summary_line(
        YESTERDAY, rows, company="Acme"
    )
    assert summary_line(YESTERDAY, [], company="Acme").endswith("2026-03-10: no Stripe activity")
    assert "[TEST DATA]" in summary_line(YESTERDAY, rows, company="Acme", test_mode=True)


# -- escaping and secrets ---------------------------------------------------------------------


def test_text_is_escaped_for_slack_mrkdwn(
    tmp_path: Path, slack: FakeSlackWebhook, ledger: Ledger
) -> None:
    settings = settings_for(tmp_path, SLACK_WEBHOOK_URL=slack.url, COMPANY_NAME="R&D <Labs>")
    alerter = Alerter(settings, ledger=ledger)
    alerter.failure(
        "daily", "Stripe said <!channel> & <https://evil.example|click here>", 1, kind="X"
    )
    alerter.daily_summary(YESTERDAY, [])

    failure_text, summary_text = slack.texts
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click here&gt;" in failure_text
    for text in (failure_text, summary_text):
        assert "*R&amp;D &lt;Labs&gt;*" in text
        assert "<" not in text and ">" not in text
    assert escape_mrkdwn("a&b<c>") == "a&amp;b&lt;c&gt;"


def test_secrets_never_reach_the_message(
    tmp_path: Path, slack: FakeSlackWebhook, ledger: Ledger, resend_fake: FakeResendServer
) -> None:
    settings = settings_for(
        tmp_path,
        SLACK_WEBHOOK_URL=slack.url,
        RESEND_API_KEY=RESEND_KEY,
        RESEND_API_URL=resend_fake.url,
        ALERT_EMAILS=FOUNDERS[0],
        EMAIL_FROM="ops@acme.example",
    )
    alerter = Alerter(settings, ledger=ledger, mailer_factory=resend_factory(resend_fake))
    alerter.failure(
        "daily",
        f"proxy said: POST {slack.url} with {STRIPE_LIVE_KEY} and {RESEND_KEY} failed",
        1,
        kind="ServiceError",
    )
    sent = [slack.texts[0], *(m["text"] + m["html"] + m["subject"] for m in resend_fake.messages)]
    assert len(sent) == 2
    for text in sent:
        assert slack.token not in text
        assert STRIPE_LIVE_KEY not in text
        assert RESEND_KEY not in text
        assert "proxy said" in text


# -- delivery failures ------------------------------------------------------------------------


def _closed_port_url() -> str:
    with FakeSlackWebhook() as gone:
        url = gone.url
    return url  # nothing listens there any more


def test_slack_server_errors_do_not_raise_and_the_alert_is_retried_next_run(
    tmp_path: Path, slack: FakeSlackWebhook, ledger: Ledger, sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    alerter = Alerter(
        settings_for(tmp_path, SLACK_WEBHOOK_URL=slack.url), ledger=ledger, sleep=sleeps
    )
    slack.inject(status=500, times=3)  # the first attempt and both retries
    with caplog.at_level(logging.WARNING, logger="bot.alerts"):
        delivery = alerter.failure("daily", "boom", 1, kind="ServiceError")
    assert delivery is not None and not delivery.delivered
    assert slack.messages == []
    assert len(slack.requests) == 3 and sleeps == [1.0, 2.0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["could not post the alert to Slack: HTTP 500 rollup_error"]

    # Nobody heard it, so the next run says it again (and this time Slack is back).
    assert alerter.failure("daily", "boom", 1, kind="ServiceError") is not None
    assert len(slack.messages) == 1
    assert alerter.failure("daily", "boom", 1, kind="ServiceError") is None
    assert len(slack.messages) == 1


def test_slack_rate_limit_is_retried_after_the_servers_delay(
    tmp_path: Path, slack: FakeSlackWebhook, ledger: Ledger, sleeps: Sleeps
) -> None:
    alerter = Alerter(
        settings_for(tmp_path, SLACK_WEBHOOK_URL=slack.url), ledger=ledger, sleep=sleeps
    )
    slack.inject(status=429, retry_after=3)
    assert alerter.daily_summary(YESTERDAY, _rows(YESTERDAY)) is True
    assert sleeps == [3.0]
    assert len(slack.messages) == 1


@pytest.mark.parametrize(
    "breakage",
    ["slack-unreachable", "slack-archived", "resend-down", "mailer-setup", "ledger-closed"],
)
def test_delivery_failures_never_raise(
    tmp_path: Path,
    slack: FakeSlackWebhook,
    resend_fake: FakeResendServer,
    ledger_path: Path,
    sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture,
    breakage: str,
) -> None:
    env = {
        "SLACK_WEBHOOK_URL": slack.url,
        "ALERT_EMAILS": ",".join(FOUNDERS),
        "EMAIL_FROM": "ops@acme.example",
    }
    factory = resend_factory(resend_fake, max_attempts=2)
    ledger = Ledger.open(ledger_path)
    if breakage == "slack-unreachable":
        env["SLACK_WEBHOOK_URL"] = _closed_port_url()
    elif breakage == "slack-archived":
        slack.inject(status=410, times=10)
    elif breakage == "resend-down":
        resend_fake.inject(status=500, times=100)
    elif breakage == "mailer-setup":

        def factory() -> Mailer:
            raise ConfigError("RESEND_API_KEY is empty")

    elif breakage == "ledger-closed":
        ledger.close()
    alerter = Alerter(
        settings_for(tmp_path, **env), ledger=ledger, mailer_factory=factory, sleep=sleeps
    )

    with caplog.at_level(logging.WARNING):
        alerter.failure("daily", "boom", 1, kind="ServiceError")
        alerter.check_silence(now=NOW, tz=AUCKLAND, synced_days=[date(2026, 1, 1)])
        alerter.daily_summary(YESTERDAY, _rows(YESTERDAY))
        alerter.success("daily")
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    for record in caplog.records:
        assert "\n" not in record.getMessage()
        assert record.exc_info is None  # one line, no traceback
    if breakage != "ledger-closed":
        ledger.close()


def test_the_webhook_url_never_appears_in_logs(
    tmp_path: Path, slack: FakeSlackWebhook, ledger: Ledger, sleeps: Sleeps,
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)  # everything, from every logger, slack_sdk's included
    settings = settings_for(tmp_path, SLACK_WEBHOOK_URL=slack.url)
    alerter = Alerter(settings, ledger=ledger, sleep=sleeps)

    slack.inject(status=500, times=3, body=f"no route to {slack.url}")  # a server echoing it
    alerter.failure("daily", "boom", 1, kind="A")
    slack.inject(status=429, retry_after=0)
    alerter.failure("daily", "boom", 1, kind="B")
    alerter.daily_summary(YESTERDAY, _rows(YESTERDAY))
    unreachable = settings_for(tmp_path, SLACK_WEBHOOK_URL=_closed_port_url() + "/x")
    Alerter(unreachable, ledger=ledger, sleep=sleeps).failure("daily", "boom", 1, kind="C")
    broken = settings_for(
        tmp_path, SLACK_WEBHOOK_URL=slack.url.replace("127.0.0.1:", "127.0.0.1:x")
    )
    Alerter(broken, ledger=ledger, sleep=sleeps).failure("daily", "boom", 1, kind="D")

    assert len(slack.messages) == 2  # B (after the 429) and the summary
    assert caplog.records, "the failures above must have been logged"
    out = capsys.readouterr()
    logged = caplog.text + out.out + out.err
    assert slack.token not in logged
    assert slack.path not in logged
    assert not [r for r in caplog.records if r.name.startswith("slack_sdk")]
    assert slack.token not in repr(alerter) and slack.token not in repr(settings)


# -- e-mail alerts ----------------------------------------------------------------------------


def test_email_alerts_reach_resend_once_per_incident(
    tmp_path: Path, resend_fake: FakeResendServer, ledger: Ledger
) -> None:
    settings = settings_for(
        tmp_path,
        RESEND_API_KEY=RESEND_KEY,
        RESEND_API_URL=resend_fake.url,
        ALERT_EMAILS=",".join(FOUNDERS),
        EMAIL_FROM="Acme Ops <ops@acme.example>",
    )
    # The default sender, as the CLI builds it: ResendMailer from the settings.
    alerter = Alerter(settings, ledger=ledger)
    for _run in range(3):
        alerter.failure("monthly", "Resend rejected the email to x", 1, kind="ServiceError")

    assert resend_fake.violations == []
    assert [m["to"] for m in resend_fake.messages] == [[FOUNDERS[0]], [FOUNDERS[1]]]
    for m in resend_fake.messages:
        assert m["from"] == "Acme Ops <ops@acme.example>"
        assert m["subject"] == "[revbot] Acme: revbot monthly failed (exit 1)"
        assert "Resend rejected the email to x" in m["text"]
        assert "Resend rejected the email to x" in m["html"]
    first_keys = {m["idempotency_key"] for m in resend_fake.messages}
    assert len(first_keys) == 2

    alerter.success("monthly")
    alerter.failure("monthly", "Resend rejected the email to x", 1, kind="ServiceError")
    assert len(resend_fake.messages) == 4
    assert len({m["idempotency_key"] for m in resend_fake.messages}) == 4


def test_email_alerts_without_resend_go_to_the_outbox_once(tmp_path: Path, ledger: Ledger) -> None:
    settings = settings_for(
        tmp_path, ALERT_EMAILS=",".join(FOUNDERS), EMAIL_FROM="ops@acme.example"
    )
    alerter = Alerter(settings, ledger=ledger)
    alerter.failure("daily", "boom", 1, kind="ServiceError")
    alerter.failure("daily", "boom", 1, kind="ServiceError")
    outbox = settings.data_dir / "outbox"
    emls = sorted(outbox.glob("*.eml"))
    assert len(emls) == 2
    assert isinstance(OutboxMailer(outbox_dir=outbox), Mailer)
    assert {e.read_text().split("To: ", 1)[1].split("\n", 1)[0].strip() for e in emls} == set(
        FOUNDERS
    )


def test_a_partial_delivery_counts_as_delivered(
    tmp_path: Path, resend_fake: FakeResendServer, ledger: Ledger, slack: FakeSlackWebhook
) -> None:
    settings = settings_for(
        tmp_path,
        SLACK_WEBHOOK_URL=slack.url,
        ALERT_EMAILS=",".join(FOUNDERS),
        EMAIL_FROM="ops@acme.example",
    )
    alerter = Alerter(
        settings, ledger=ledger, mailer_factory=resend_factory(resend_fake, max_attempts=1)
    )
    resend_fake.inject(status=422, name="validation_error", times=1)  # the first address only
    delivery = alerter.failure("daily", "boom", 1, kind="ServiceError")
    assert delivery is not None and delivery.delivered
    assert (delivery.slack, delivery.emails_sent, delivery.emails_failed) == (True, 1, 1)
    # Announced: the next run does not repeat it in Slack.
    assert alerter.failure("daily", "boom", 1, kind="ServiceError") is None
    assert len(slack.messages) == 1


def test_the_ledger_can_be_opened_on_first_use(
    tmp_path: Path, slack: FakeSlackWebhook, ledger_path: Path
) -> None:
    opened: list[Ledger] = []

    def open_ledger() -> Ledger:
        opened.append(Ledger.open(ledger_path))
        return opened[-1]

    settings = settings_for(tmp_path, SLACK_WEBHOOK_URL=slack.url)
    alerter = Alerter(settings, ledger=open_ledger)
    assert opened == []  # nothing is opened until an alert needs it
    alerter.failure("daily", "boom", 1, kind="ServiceError")
    alerter.failure("daily", "boom", 1, kind="ServiceError")
    assert len(opened) == 1 and len(slack.messages) == 1
    opened[0].close()


def test_a_broken_ledger_still_lets_the_alert_out(
    tmp_path: Path, slack: FakeSlackWebhook, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> Ledger:
        raise LedgerError("state.sqlite is not a readable revbot ledger")

    alerter = Alerter(settings_for(tmp_path, SLACK_WEBHOOK_URL=slack.url), ledger=broken)
    with caplog.at_level(logging.WARNING, logger="bot.alerts"):
        delivery = alerter.failure("daily", "ledger is corrupt", 1, kind="LedgerError")
        alerter.success("daily")
    assert delivery is not None and delivery.delivered
    assert len(slack.messages) == 1
    assert "alerting anyway" in caplog.text
