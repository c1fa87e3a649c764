"""The investor email, sent exactly once per (month, recipient, generation).

Before each send the ledger records the intent; the send carries an ``Idempotency-Key``
derived from (month, recipient, generation); the provider's id is recorded after. A crash
between send and record is healed by the next run sending again with the same key, which
Resend answers without sending twice. Resend forgets keys after 24 hours, so an intent older
than that is not retried blindly: it is reported for a human to check (`revbot resend`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.errors import ConfigError, RevbotError, ServiceError
from bot.jobs.context import Context
from bot.jobs.metrics import roll_forward_from_ledger
from bot.ledger import Ledger
from bot.mail.model import CurrencyReport, MonthlyReport, OutgoingEmail
from bot.mail.recurring import recurring_revenue
from bot.mail.senders import AlreadySent, Mailer
from bot.periods import Month
from bot.pnl import CurrencyFigures

log = logging.getLogger(__name__)

# Resend keeps idempotency keys for 24 hours; stay well inside that window.
REPLAY_WINDOW = timedelta(hours=23)


def idempotency_key(month: str, recipient: str, generation: int) -> str:
    digest = hashlib.sha256(f"{month}|{recipient.lower()}|{generation}".encode()).hexdigest()[:24]
    return f"revbot-investor-pnl/{month}/g{generation}/{digest}"


def build_report(
    ledger: Ledger, *, month: Month, timezone: str, mode: str, company: str
) -> MonthlyReport:
    """The email's content, from the ledger alone (the month's saved figures and history)."""
    stored = ledger.monthly_result(str(month), timezone, mode)
    if stored is None:
        raise RevbotError(
            f"no report for {month} in the ledger yet; run `revbot monthly --month {month} "
            "--no-send` first"
        )
    figures = stored.figures
    history_months = [month]
    for _ in range(11):
        history_months.insert(0, history_months[0].previous())
    past: dict[str, dict[str, CurrencyFigures]] = {}
    for m in history_months[:-1]:
        data = ledger.monthly_result(str(m), timezone, mode)
        if data is not None:
            past[str(m)] = data.figures
    prev = past.get(str(month.previous()), {})
    currencies = []
    for ccy, f in sorted(figures.items()):
        history = (
            *tuple(
                (str(m), past[str(m)][ccy].lines.net_revenue)
                for m in history_months[:-1]
                if ccy in past.get(str(m), {})
            ),
            (str(month), f.lines.net_revenue),
        )
        currencies.append(
            CurrencyReport(
                currency=ccy,
                lines=f.lines,
                previous=prev[ccy].lines if ccy in prev else None,
                starting_balance=f.starting_balance,
                ending_balance=f.ending_balance,
                history=history,
            )
        )
    computed = stored.generated_at or "2000-01-01T00:00:00+00:00"
    metrics = roll_forward_from_ledger(ledger, through=month, tz=ZoneInfo(timezone), remember=False)
    return MonthlyReport(
        company=company,
        month=str(month),
        timezone=timezone,
        livemode=stored.livemode,
        reconciled=stored.reconciled,
        currencies=tuple(currencies),
        generated_at=datetime.fromisoformat(computed),
        recurring=recurring_revenue(metrics.rows, month=month) if metrics else None,
    )


@dataclass(frozen=True)
class SendOutcome:
    recipient: str
    generation: int
    status: str  # sent | already-sent | uncertain
    provider_id: str | None = None

    def describe(self) -> str:
        """What happened, in words: an email written to the outbox was not sent anywhere."""
        outbox = (self.provider_id or "").startswith("outbox:")
        if self.status == "sent":
            return "written to the outbox" if outbox else "sent"
        if self.status == "already-sent":
            return "already in the outbox" if outbox else "already sent"
        return "uncertain: an earlier attempt may have gone out; check, then `revbot resend`"


def send_month(
    ledger: Ledger,
    report: MonthlyReport,
    *,
    sender: str,
    recipients: Sequence[str],
    mailer: Mailer,
    new_generation: bool = False,
    allow_test_data: bool = True,
    now: datetime | None = None,
) -> list[SendOutcome]:
    """One message per recipient. ``new_generation`` (for `resend`) sends again on purpose."""
    if not report.livemode and not allow_test_data:
        raise ConfigError(
            f"the {report.month} figures are test-mode data and STRIPE_MODE=live: nothing was "
            "sent to investors; run with a live key"
        )
    now = now or datetime.now(UTC)
    from bot.mail.render import render  # Jinja2 and the CSS inliner, only to render

    rendered = render(report)
    outcomes: list[SendOutcome] = []
    for recipient in recipients:
        history = [s for s in ledger.sends(report.month) if s.recipient == recipient]
        latest = max(history, key=lambda s: s.generation, default=None)
        if latest is None or (new_generation and latest.status == "sent"):
            generation = 1 if latest is None else latest.generation + 1
        else:
            generation = latest.generation
            if latest.status == "sent":
                outcomes.append(
                    SendOutcome(recipient, generation, "already-sent", latest.provider_id)
                )
                continue
            intent_at = datetime.fromisoformat(latest.intent_at)
            if now - intent_at > REPLAY_WINDOW:
                log.warning(
                    "%s: an earlier send to %s may or may not have gone out (%s); not sending "
                    "again automatically",
                    report.month,
                    recipient,
                    latest.intent_at,
                )
                outcomes.append(SendOutcome(recipient, generation, "uncertain"))
                continue
        key = idempotency_key(report.month, recipient, generation)
        ledger.record_send_intent(report.month, recipient, generation, key)
        email = OutgoingEmail.addressed(rendered, sender=sender, to=recipient)
        try:
            provider_id = mailer.send(email, idempotency_key=key)
        except AlreadySent:
            # The key was already used for a message: it went out before a crash.
            provider_id = "accepted-earlier"
        ledger.record_sent(report.month, recipient, generation, provider_id)
        outcomes.append(SendOutcome(recipient, generation, "sent", provider_id))
    return outcomes


def pending_recipients(ledger: Ledger, month: str, recipients: Sequence[str]) -> list[str]:
    """Recipients who have no sent message for ``month`` yet."""
    sent = {s.recipient for s in ledger.sends(month) if s.status == "sent"}
    return [r for r in recipients if r not in sent]


@dataclass(frozen=True)
class Email:
    """Who sends to whom, and through what; None when the email is not configured."""

    sender: str
    recipients: tuple[str, ...]
    mailer: Mailer
    company: str
    allow_test_data: bool


def resend(
    ctx: Context, *, month: Month, mode: str, email: Email, to: Sequence[str] | None
) -> list[SendOutcome]:
    report = build_report(
        ctx.ledger, month=month, timezone=ctx.tz_name, mode=mode, company=email.company
    )
    return send_month(
        ctx.ledger,
        report,
        sender=email.sender,
        recipients=list(to) if to else email.recipients,
        mailer=email.mailer,
        new_generation=True,
        allow_test_data=email.allow_test_data,
    )


def write_preview(
    ledger: Ledger, *, month: Month, timezone: str, mode: str, company: str, path: Path
) -> str:
    """Render ``month``'s email into the HTML file ``path`` (nothing is sent); its subject."""
    from bot.mail.render import render

    rendered = render(
        build_report(ledger, month=month, timezone=timezone, mode=mode, company=company)
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered.html, encoding="utf-8")
    except OSError as e:
        raise ServiceError(f"cannot write {path} ({e.strerror}); choose another --out") from e
    return rendered.subject
