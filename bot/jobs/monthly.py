"""`revbot monthly`: the month's P&L from Stripe's Reporting API, reconciled with the ledger.

The month's figures are saved in the ledger (``monthly_results``) and written to the Monthly tab;
then :func:`monthly_and_send` hands them to :mod:`bot.jobs.investor_email`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot import reports
from bot.dashboard.base import MonthlyRow
from bot.errors import ConfigError, RevbotError
from bot.jobs.context import Context
from bot.jobs.investor_email import (
    Email,
    SendOutcome,
    build_report,
    pending_recipients,
    send_month,
)
from bot.jobs.payouts import check_payout_report
from bot.jobs.projection import (
    apply_to_dashboard,
    dashboard_update_for_days,
    ledger_movements,
    monthly_rows,
    previous_net,
    refill_created_tabs,
    refresh_dashboard,
    refresh_metrics,
)
from bot.jobs.sync import sync_days
from bot.periods import Interval, Month, iter_days, last_closed_month, require_closed_month
from bot.pnl import CategoryTotal, CurrencyFigures, Movement, PnlLines, by_category, summarize
from bot.records import MonthlyRecord

log = logging.getLogger(__name__)


class NoReportData(RevbotError):
    """The month ended before the Stripe account's data starts: there is nothing to report."""


@dataclass(frozen=True)
class MonthlyResult:
    month: Month
    figures: dict[str, CurrencyFigures]
    reconciled: bool
    mismatches: list[str]
    source: str
    livemode: bool
    rows: list[MonthlyRow] = field(default_factory=list)
    dry_run: bool = False


def compare(
    report: Mapping[tuple[str, str], CategoryTotal], ledger: Mapping[tuple[str, str], CategoryTotal]
) -> list[str]:
    """Per (currency, category): count, gross and net; one line per difference."""
    out: list[str] = []
    for key in sorted(set(report) | set(ledger)):
        r, g = report.get(key), ledger.get(key)
        rv = (r.count, r.gross, r.net) if r else (0, 0, 0)
        gv = (g.count, g.gross, g.net) if g else (0, 0, 0)
        if rv != gv:
            out.append(f"{key[0].upper()} {key[1]}: report count/gross/net {rv} vs ledger {gv}")
    return out


def _figures(
    movements: Iterable[Movement], balances: Mapping[str, reports.Balances] | None
) -> dict[str, CurrencyFigures]:
    summary = summarize(movements)
    currencies = set(summary) | set(balances or {})
    out: dict[str, CurrencyFigures] = {}
    for ccy in sorted(currencies):
        lines = summary[ccy].lines if ccy in summary else PnlLines()
        bal = (balances or {}).get(ccy)
        if bal is not None:
            # The activity summary leaves payouts out; balance.summary.1 has them.
            lines = replace(lines, payouts=bal.payouts)
        out[ccy] = CurrencyFigures(
            currency=ccy,
            lines=lines,
            starting_balance=bal.starting if bal else None,
            ending_balance=bal.ending if bal else None,
        )
    return out


def monthly(
    ctx: Context,
    *,
    month: Month | None = None,
    archive_dir: Path,
    dry_run: bool = False,
    mode: str,
    poll_deadline: float = 600.0,
) -> MonthlyResult:
    """Report runs, reconciliation, the Monthly tab; the figures saved in the ledger."""
    target = month or last_closed_month(ctx.now, ctx.tz)
    require_closed_month(target, now=ctx.now, tz=ctx.tz)
    if ctx.source is None or not hasattr(ctx.source, "report_type"):
        raise ConfigError("monthly needs STRIPE_SECRET_KEY to read Stripe's reports")
    source: Any = ctx.source
    iv = target.interval(ctx.tz)
    label = target.label()
    first = max(
        reports.ensure_available(source, type_id, iv, label)
        for type_id in (reports.ACTIVITY_SUMMARY, reports.BALANCE_SUMMARY)
    )
    # An account younger than the month: Stripe refuses an interval that starts before its
    # data does, and there is nothing earlier to report, so the report starts there.
    if first >= iv.end:
        since = datetime.fromtimestamp(first, UTC).strftime("%Y-%m-%d")
        raise NoReportData(
            f"Stripe has no data for {label}: this account's data starts on {since}, so "
            "there is no report for that month"
        )
    if first > iv.start:
        iv = Interval(first, iv.end)

    def request(type_id: str) -> reports.ReportRequest:
        return reports.ReportRequest(type_id, iv, ctx.tz_name, mode)

    if dry_run:
        known = [
            ctx.ledger.report_run(r.report_type, iv.start, iv.end, ctx.tz_name, mode)
            for r in (request(reports.ACTIVITY_SUMMARY), request(reports.BALANCE_SUMMARY))
        ]
        runs = [k for k in known if k and k.status == "succeeded" and k.file_path]
        if len(runs) < len(known):
            # A dry run creates nothing at Stripe: without recorded runs, the ledger speaks.
            movements = ledger_movements(ctx, target)
            figures = _figures(movements, None)
            rows = monthly_rows(
                target,
                figures,
                previous_net(ctx, target, mode),
                reconciled=False,
                source="ledger (dry run)",
            )
            return MonthlyResult(
                target, figures, False, [], "ledger (dry run)", mode == "live", rows, dry_run=True
            )
        activity_path = Path(str(runs[0].file_path))
        balance_path = Path(str(runs[1].file_path))
    else:
        activity_path = reports.obtain(
            source,
            ctx.ledger,
            request(reports.ACTIVITY_SUMMARY),
            archive_dir=archive_dir,
            deadline=poll_deadline,
        )
        balance_path = reports.obtain(
            source,
            ctx.ledger,
            request(reports.BALANCE_SUMMARY),
            archive_dir=archive_dir,
            deadline=poll_deadline,
        )

    report_movements = reports.activity_movements(activity_path)
    balances = reports.balances(balance_path)
    report_totals = by_category(report_movements)
    if not dry_run:
        # Days of the month never synced (a new ledger's first run, a daily that started
        # mid-month): fetched first, so that only a real difference is reported as one.
        synced = ctx.ledger.synced_days(ctx.tz_name)
        missing = [d for d in iter_days(target.first_day, target.last_day) if d not in synced]
        if missing:
            ctx.progress(f"{label}: fetching {len(missing)} day(s) not synced yet")
            sync_days(ctx, missing, dry_run=False)
    mismatches = compare(report_totals, by_category(ledger_movements(ctx, target)))
    if mismatches and not dry_run:
        log.warning("%s: the ledger differs from Stripe's report; re-syncing the month", label)
        sync_days(ctx, list(iter_days(target.first_day, target.last_day)), dry_run=False)
        mismatches = compare(report_totals, by_category(ledger_movements(ctx, target)))
    reconciled = not mismatches
    for line in mismatches:
        log.warning("%s not reconciled: %s", label, line)

    figures = _figures(report_movements, balances)
    source_label = "report" if reconciled else "report (ledger differs)"
    rows = monthly_rows(
        target, figures, previous_net(ctx, target, mode), reconciled=reconciled, source=source_label
    )
    livemode = mode == "live" and False not in ctx.ledger.livemodes(iv.start, iv.end)
    if not dry_run:
        record = MonthlyRecord(
            figures=figures,
            mismatches=tuple(mismatches),
            source=source_label,
            livemode=livemode,
            reconciled=reconciled,
        )
        # The email shows when its figures were produced; a re-run with the same figures
        # keeps that time, so a re-rendered email is byte-identical (idempotent sends).
        old = ctx.ledger.monthly_result(str(target), ctx.tz_name, mode)
        same = old is not None and old.same_figures(record)
        generated = old.generated_at if old is not None and same else ctx.now.isoformat()
        record = replace(record, generated_at=generated)
        ctx.ledger.save_monthly_result(str(target), ctx.tz_name, mode, record)
        written = apply_to_dashboard(ctx, dashboard_update_for_days(ctx, (), monthly=rows))
        refill_created_tabs(ctx, written.created, already=())
        # The re-sync above may have queued days for the Daily tab too.
        refresh_dashboard(ctx)
        refresh_metrics(ctx)
        # The month's payouts against Stripe's own reconciliation of them (skipped, never
        # failing the month, where the account has no such report).
        check_payout_report(
            ctx, month=target, archive_dir=archive_dir, mode=mode, deadline=poll_deadline
        )
    return MonthlyResult(
        target, figures, reconciled, mismatches, source_label, livemode, rows, dry_run=dry_run
    )


# -- the month and its email ---------------------------------------------------------------


@dataclass
class MonthlyOutcome:
    result: MonthlyResult
    sends: list[SendOutcome] = field(default_factory=list)
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
    result = monthly(ctx, month=month, archive_dir=archive_dir, dry_run=dry_run, mode=mode)
    outcome = MonthlyOutcome(result)
    if email is None:
        outcome.skipped_send = "not sending (--no-send, or INVESTOR_EMAILS not set)"
    elif dry_run:
        outcome.skipped_send = "dry run: no email sent"
    else:
        report = build_report(
            ctx.ledger, month=result.month, timezone=ctx.tz_name, mode=mode, company=email.company
        )
        outcome.sends = send_month(
            ctx.ledger,
            report,
            sender=email.sender,
            recipients=email.recipients,
            mailer=email.mailer,
            allow_test_data=email.allow_test_data,
        )
    return outcome


def month_due(ctx: Context, *, mode: str, email: Email | None) -> Month | None:
    """The last closed month, if it still lacks its report or an investor's email."""
    month = last_closed_month(ctx.now, ctx.tz)
    if ctx.ledger.monthly_result(str(month), ctx.tz_name, mode) is None:
        return month
    if email is not None and pending_recipients(ctx.ledger, str(month), email.recipients):
        return month
    return None
