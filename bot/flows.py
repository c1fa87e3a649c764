"""Commands that chain jobs: monthly then its email; daily then a due month."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from bot import jobs, mailing, monthly
from bot.errors import TemporaryError
from bot.jobs import Context
from bot.mail.senders import Mailer
from bot.periods import Month, last_closed_month

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Email:
    """Who sends to whom, and through what; None when the email is not configured."""

    sender: str
    recipients: tuple[str, ...]
    mailer: Mailer
    company: str
    allow_test_data: bool


@dataclass
class MonthlyOutcome:
    result: monthly.MonthlyResult
    sends: list[mailing.SendOutcome] = field(default_factory=list)
    skipped_send: str | None = None


def monthly_and_send(
    ctx: Context,
    *,
    month: Month | None,
    archive_dir: Path,
    mode: str,
    email: Email | None,
    dry_run: bool = False,
) -> MonthlyOutcome:
    result = monthly.monthly(ctx, month=month, archive_dir=archive_dir, dry_run=dry_run, mode=mode)
    outcome = MonthlyOutcome(result)
    if email is None:
        outcome.skipped_send = "not sending (--no-send, or INVESTOR_EMAILS not set)"
    elif dry_run:
        outcome.skipped_send = "dry run: no email sent"
    else:
        report = mailing.build_report(
            ctx.ledger, month=result.month, timezone=ctx.tz_name, mode=mode, company=email.company
        )
        outcome.sends = mailing.send_month(
            ctx.ledger,
            report,
            sender=email.sender,
            recipients=email.recipients,
            mailer=email.mailer,
            allow_test_data=email.allow_test_data,
        )
    return outcome


def resend(
    ctx: Context, *, month: Month, mode: str, email: Email, to: Sequence[str] | None
) -> list[mailing.SendOutcome]:
    report = mailing.build_report(
        ctx.ledger, month=month, timezone=ctx.tz_name, mode=mode, company=email.company
    )
    return mailing.send_month(
        ctx.ledger,
        report,
        sender=email.sender,
        recipients=list(to) if to else email.recipients,
        mailer=email.mailer,
        new_generation=True,
        allow_test_data=email.allow_test_data,
    )


def month_due(ctx: Context, *, mode: str, email: Email | None) -> Month | None:
    """The last closed month, if it still lacks its report or an investor's email."""
    month = last_closed_month(ctx.now, ctx.tz)
    if ctx.ledger.monthly_result(str(month), ctx.tz_name, mode) is None:
        return month
    if email is not None and mailing.pending_recipients(ctx.ledger, str(month), email.recipients):
        return month
    return None


@dataclass
class DailyOutcome:
    daily: jobs.DailyResult
    monthly: MonthlyOutcome | None = None
    deferred: str | None = None


def daily_flow(
    ctx: Context,
    *,
    day: date | None,
    dry_run: bool,
    archive_dir: Path,
    mode: str,
    email: Email | None,
) -> DailyOutcome:
    out = DailyOutcome(jobs.daily(ctx, day=day, dry_run=dry_run))
    if dry_run:
        return out
    due = month_due(ctx, mode=mode, email=email)
    if due is None:
        return out
    try:
        out.monthly = monthly_and_send(
            ctx, month=due, archive_dir=archive_dir, mode=mode, email=email
        )
    except (TemporaryError, monthly.NoReportData) as e:
        # The day is synced; the month waits for Stripe and tomorrow's run tries again (a
        # month older than the account is never reported: the next month replaces it).
        out.deferred = str(e)
        log.warning("monthly report for %s deferred: %s", due, e)
        return out
    # Reconciling may have synced the whole month, which can leave never-synced days between
    # it and today's window: catch them up now rather than on the next run.
    synced = ctx.ledger.synced_days(ctx.tz_name)
    gap = [d for d in jobs.plan_daily_days(out.daily.day, synced) if d not in synced]
    if gap:
        jobs.sync_days(ctx, gap, dry_run=False)
        jobs.refresh_dashboard(ctx)
    return out
