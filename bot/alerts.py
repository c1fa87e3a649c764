"""Tell the founders when revbot fails or goes silent, and post the daily summary to Slack.

A cron job that fails quietly is worse than none. Alerts go to Slack through
``SLACK_WEBHOOK_URL`` (slack_sdk's :class:`~slack_sdk.webhook.WebhookClient`) and/or by e-mail
to each of ``ALERT_EMAILS`` through the same :class:`~bot.mail.senders.Mailer` implementations
as the investor email.

Each alert belongs to an *incident* recorded in the ledger's ``alerts`` table: a failure of one
command for one kind of reason, or one silent gap. An incident is announced once, however many
runs hit it, and a success (or a fresh sync) resolves it, so the next failure is news again.

Alerting is best effort and must never change what the command does: every public method of
:class:`Alerter` catches its own errors, logs one warning line (no URL, no key) and returns.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from bot.errors import EXIT_USAGE
from bot.ledger import Ledger
from bot.logs import REDACT
from bot.money import format_amount
from bot.periods import yesterday

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.mail.senders import Mailer
    from bot.pnl import PnlLines

log = logging.getLogger(__name__)

# The last synced day may lag "yesterday" by this many days before it counts as silence: one
# missed run is caught up by the next one without anybody's help; two in a row are not normal.
SILENCE_DAYS = 2

# Exit codes that a person at the keyboard has already seen: a mistyped flag (2) or Ctrl-C (130)
# is not news for the founders' channel.
NOT_ALERTED = frozenset({EXIT_USAGE, 130})

_MAX_ERROR_CHARS = 500


class DayFigures(Protocol):
    """What the summary needs of one currency's day: a Daily row or a :class:`bot.pnl.Summary`."""

    @property
    def currency(self) -> str: ...

    @property
    def lines(self) -> PnlLines: ...

    @property
    def transactions(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one alert went out: channels tried and channels that took it."""

    incident: str
    slack: bool | None  # None: Slack not configured
    emails_sent: int
    emails_failed: int

    @property
    def delivered(self) -> bool:
        return bool(self.slack) or self.emails_sent > 0


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters as entities, so text from Stripe (or an error message)
    can never become a link, a mention (``<!channel>``) or broken markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _slug(text: str) -> str:
    """A short, stable incident component: lower-case words joined by dashes.

    Digits are dropped so that "retry in 3s" and "retry in 7s" stay one incident.
    """
    words = re.sub(r"[^a-z]+", " ", text.lower()).split()
    return "-".join(words[:4]) or "error"


def failure_incident(command: str, *, kind: str | None, error: str, exit_code: int) -> str:
    """``failure:<command>:<kind>``; without ``kind``, the exit code and the error's first words."""
    what = _slug(kind) if kind else f"exit{exit_code}-{_slug(error)}"
    return f"failure:{_slug(command)}:{what}"


def summary_line(
    day: date, rows: Sequence[DayFigures], *, company: str, test_mode: bool = False
) -> str:
    """The one-line Slack summary of ``day``: per currency, the Daily row's figures.

    ``USD: net $1,234.56; gross $1,300.00; refunds -$20.00; fees -$45.44; 37 transactions``,
    currencies separated by `` · ``; amounts are :func:`bot.money.format_amount` of the row.
    """
    head = f":bar_chart: {'[TEST DATA] ' if test_mode else ''}*{escape_mrkdwn(company)}* · {day}"
    parts = []
    for row in sorted(rows, key=lambda r: r.currency.lower()):
        ccy = row.currency.lower()
        lines = row.lines
        parts.append(
            f"{ccy.upper()}: net {format_amount(lines.net_revenue, ccy)}; "
            f"gross {format_amount(lines.gross_revenue, ccy)}; "
            f"refunds {format_amount(lines.refunds, ccy)}; "
            f"fees {format_amount(lines.stripe_fees, ccy)}; "
            f"{row.transactions} transactions"
        )
    if not parts:
        return f"{head}: no Stripe activity"
    return f"{head} · " + " · ".join(parts)


def _default_mailer(settings: Settings) -> Mailer:
    """The investor email's senders: Resend when ``RESEND_API_KEY`` is set, else the outbox."""
    if settings.resend_api_key:
        from bot.mail.resend_sender import ResendMailer

        # Fewer attempts and less waiting than the investor email (the same retry policy,
        # bot.retry): an alert must not keep a failing run busy.
        return ResendMailer(
            api_key=settings.resend_api_key.reveal(),
            api_url=settings.resend_api_url,
            max_attempts=3,
            max_wait=30.0,
            timeout=15,
        )
    from bot.mail.outbox import OutboxMailer

    return OutboxMailer(outbox_dir=settings.data_dir / "outbox")


class Alerter:
    """Failure, silence and summary messages for one command run.

    Built from :class:`~bot.config.Settings` and the ledger where incidents are remembered: an
    open :class:`~bot.ledger.Ledger`, or a function that opens one on first use (so that a
    command can alert about failures that happen before it opened its own). ``mailer_factory``
    builds the e-mail sender on first use (default: Resend when
    ``RESEND_API_KEY`` is set, else the outbox); ``now`` and ``sleep`` are for tests.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        ledger: Ledger | Callable[[], Ledger],
        mailer_factory: Callable[[], Mailer] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._settings = settings
        self._ledger_or_opener = ledger
        self._opened: Ledger | None = None
        self._mailer_factory = mailer_factory or (lambda: _default_mailer(settings))
        self._mailer: Mailer | None = None
        self._now = now
        self._sleep = sleep
        secrets = [
            s.reveal()
            for s in (settings.slack_webhook_url, settings.resend_api_key, settings.stripe_key)
            if s
        ]
        if settings.slack_webhook_url:
            # An error may quote only the path: for a Slack webhook, the path is the secret.
            path = urlsplit(settings.slack_webhook_url.reveal()).path
            if len(path) >= 8:
                secrets.append(path)
        # Longest first, so that the whole URL is replaced before its path could be.
        self._secrets = tuple(sorted(secrets, key=len, reverse=True))

    def __repr__(self) -> str:
        return (
            f"Alerter(slack={'yes' if self._settings.slack_webhook_url else 'no'}, "
            f"emails={len(self._settings.alert_emails)})"
        )

    @property
    def enabled(self) -> bool:
        """Whether any alert channel is configured."""
        return bool(self._settings.slack_webhook_url) or bool(self._settings.alert_emails)

    # -- public ------------------------------------------------------------------------------

    def failure(
        self, command: str, error: str, exit_code: int, *, kind: str | None = None
    ) -> Delivery | None:
        """Announce that ``revbot <command>`` failed, once per incident.

        ``kind`` (the exception's class name, when the caller has it) names the incident;
        without it, the exit code and the message's first words do. Returns what was delivered,
        or ``None`` when nothing was due (already announced, not alerted, nothing configured).
        """
        try:
            if exit_code == 0 or exit_code in NOT_ALERTED or not self.enabled:
                return None
            incident = failure_incident(command, kind=kind, error=error, exit_code=exit_code)
            text = self._clean(error)
            company = self._settings.company_name
            slack = (
                f":rotating_light: *{escape_mrkdwn(company)}*: `revbot {escape_mrkdwn(command)}` "
                f"failed (exit {exit_code}): {escape_mrkdwn(text)}\n"
                f"You will not hear about this again until `revbot {escape_mrkdwn(command)}` "
                "succeeds."
            )
            subject = f"[revbot] {company}: revbot {command} failed (exit {exit_code})"
            body = (
                f"revbot {command} failed with exit code {exit_code}:\n\n{text}\n\n"
                f"You will not get another alert about this until revbot {command} succeeds."
            )
            return self._raise(incident, message=text, slack=slack, subject=subject, body=body)
        except Exception as e:
            self._warn("could not send the failure alert", e)
            return None

    def success(self, command: str) -> None:
        """``revbot <command>`` succeeded: its failure incidents are over."""
        try:
            self._ledger().resolve_incidents(f"failure:{_slug(command)}:")
        except Exception as e:
            self._warn("could not record the success for alerting", e)

    def check_silence(
        self, *, now: datetime, tz: ZoneInfo, synced_days: Iterable[date]
    ) -> Delivery | None:
        """Alert once when the last synced day is more than two days before yesterday.

        ``synced_days`` is the ledger's ``synced_days(tz)`` (a mapping's keys are its days).
        A ledger that never synced anything is a first run, not silence. When the ledger is
        fresh again, the silence incident is resolved, so a later gap is news again.
        """
        try:
            days = list(synced_days)
            if not days:
                return None
            last = max(days)
            expected = yesterday(now, tz)
            missing = (expected - last).days
            if missing <= SILENCE_DAYS:
                self._ledger().resolve_incidents("silence:")
                return None
            if not self.enabled:
                return None
            first_missing = last + timedelta(days=1)
            company = self._settings.company_name
            text = (
                f"no successful sync since {last}: {missing} day(s) missing "
                f"({first_missing} … {expected}, {tz.key}); is the cron entry or timer still "
                "running? `revbot daily` catches up the missing days"
            )
            slack = f":warning: *{escape_mrkdwn(company)}*: {escape_mrkdwn(text)}"
            subject = f"[revbot] {company}: no successful sync since {last}"
            body = f"revbot: {text}.\n\nYou will not get another alert about this gap."
            return self._raise(
                f"silence:{tz.key}:{last}", message=text, slack=slack, subject=subject, body=body
            )
        except Exception as e:
            self._warn("could not check for silence", e)
            return None

    def daily_summary(self, day: date, rows: Sequence[DayFigures]) -> bool:
        """Post :func:`summary_line` for ``day`` to Slack; ``False`` if not configured or failed.

        Rows of other days (Daily rows carry a ``date``) are left out.
        """
        try:
            if not self._settings.slack_webhook_url:
                return False
            of_day = [r for r in rows if getattr(r, "date", day) == day]
            line = summary_line(
                day,
                of_day,
                company=self._settings.company_name,
                test_mode=self._settings.key_mode == "test",
            )
            return self._post_slack(line, what="the daily summary")
        except Exception as e:
            self._warn("could not post the daily summary to Slack", e)
            return False

    # -- internals ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the ledger connection this alerter opened itself (none if it was given one)."""
        if self._opened is not None and self._opened is not self._ledger_or_opener:
            self._opened.close()
        self._opened = None

    def _ledger(self) -> Ledger:
        if self._opened is None:
            source = self._ledger_or_opener
            self._opened = source if isinstance(source, Ledger) else source()
        return self._opened

    def _raise(
        self, incident: str, *, message: str, slack: str, subject: str, body: str
    ) -> Delivery | None:
        try:
            is_new = self._ledger().open_incident(incident, message)
        except Exception as e:
            # Without the ledger there is no memory of what was said: repeating an alert every
            # run is better than never sending it (a broken ledger is itself worth hearing of).
            self._warn("could not look the incident up in the ledger; alerting anyway", e)
            is_new, recorded = True, False
        else:
            recorded = True
        if not is_new:
            log.info("alert %s already sent; not repeating it", incident)
            return None
        # The incident's key repeats when it is raised again after a success; the occurrence
        # must not, or Resend would take the new e-mail for a retry of the old one.
        occurrence = (
            f"{self._now().astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(6)}"
        )
        sent_slack: bool | None = None
        if self._settings.slack_webhook_url:
            sent_slack = self._post_slack(slack, what="the alert")
        sent, failed = self._email(incident, occurrence, subject=subject, body=body)
        delivery = Delivery(incident, sent_slack, sent, failed)
        if recorded and not delivery.delivered:
            # Nobody heard it: close the incident again so the next run tries again instead of
            # believing the founders know.
            self._ledger().resolve_incidents(incident)
        return delivery

    def _post_slack(self, text: str, *, what: str) -> bool:
        url = self._settings.slack_webhook_url
        assert url is not None
        from bot import slack  # slack_sdk is loaded only when there is something to post

        try:
            response = slack.post(url.reveal(), text, sleep=self._sleep)
        except Exception as e:
            self._warn(f"could not post {what} to Slack", e)
            return False
        if response.status_code != 200:
            reason = self._clean(str(response.body or ""))[:80]
            log.warning(
                "could not post %s to Slack: HTTP %d %s", what, response.status_code, reason
            )
            return False
        return True

    def _email(self, incident: str, occurrence: str, *, subject: str, body: str) -> tuple[int, int]:
        recipients = self._settings.alert_emails
        if not recipients:
            return 0, 0
        sender = self._settings.email_from
        if not sender:
            log.warning("ALERT_EMAILS is set but EMAIL_FROM is not; alert e-mails not sent")
            return 0, len(recipients)
        from bot.mail.model import OutgoingEmail

        try:
            if self._mailer is None:
                self._mailer = self._mailer_factory()
            mailer = self._mailer
        except Exception as e:
            self._warn("could not set up the alert e-mail sender", e)
            return 0, len(recipients)
        html_body = (
            '<!doctype html><html><body><pre style="font-family: sans-serif; '
            f'white-space: pre-wrap">{html.escape(body)}</pre></body></html>'
        )
        sent = failed = 0
        for to in recipients:
            # One key per recipient and occurrence: Resend deduplicates the mailer's retries.
            # by Resend, while the same incident raised again after a success is a new e-mail.
            digest = hashlib.sha256(f"{incident}\n{occurrence}\n{to}".encode()).hexdigest()[:24]
            key = f"revbot-alert/{occurrence}/{digest}"
            try:
                email = OutgoingEmail(
                    sender=sender, to=to, subject=_one_line(subject), html=html_body, text=body
                )
                mailer.send(email, idempotency_key=key)
                sent += 1
            except Exception as e:
                failed += 1
                self._warn(f"could not e-mail the alert to {to}", e)
        return sent, failed

    def _clean(self, text: str) -> str:
        """One line, known secrets and secret-shaped strings removed, bounded length."""
        out = _one_line(text)
        for secret in self._secrets:
            out = out.replace(secret, "[REDACTED]")
        out = REDACT(out)
        if len(out) > _MAX_ERROR_CHARS:
            out = out[: _MAX_ERROR_CHARS - 1] + "…"
        return out

    def _warn(self, what: str, e: BaseException) -> None:
        # The exception's text can quote a URL (the webhook's is a secret) or a server's body:
        # only its class and a scrubbed, bounded message are logged, never a traceback.
        detail = self._clean(str(e))[:160]
        log.warning("%s (%s%s)", what, type(e).__name__, f": {detail}" if detail else "")


__all__ = [
    "NOT_ALERTED",
    "SILENCE_DAYS",
    "Alerter",
    "DayFigures",
    "Delivery",
    "escape_mrkdwn",
    "failure_incident",
    "summary_line",
]
