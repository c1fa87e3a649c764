"""`revbot monthly`: the month's P&L from Stripe's Reporting API, reconciled with the ledger.

PRODUCT.md §7 steps 1-3. The email (steps 4-5) is `bot.mailing`'s job; this module leaves the
figures in the ledger (``monthly_results``) and on the Monthly tab for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot import reports
from bot.dashboard.base import DashboardUpdate, MonthlyRow
from bot.errors import ConfigError, RevbotError
from bot.jobs import Context, refill_created_tabs, refresh_dashboard, sync_days
from bot.mail.model import mom_pct
from bot.periods import Interval, Month, iter_days, last_closed_month, require_closed_month
from bot.pnl import CategoryTotal, Movement, PnlLines, by_category, summarize

log = logging.getLogger(__name__)


class NoReportData(RevbotError):
    """The month ended before the Stripe account's data starts: there is nothing to report."""


@dataclass(frozen=True)
class CurrencyFigures:
    currency: str
    lines: PnlLines
    starting_balance: int | None
    ending_balance: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": {k: v for k, v in self.lines.as_dict().items() if k != "net_revenue"},
            "starting_balance": self.starting_balance,
            "ending_balance": self.ending_balance,
        }

    @classmethod
    def from_json(cls, currency: str, data: Mapping[str, Any]) -> CurrencyFigures:
        return cls(
            currency=currency,
            lines=PnlLines(**data["lines"]),
            starting_balance=data.get("starting_balance"),
            ending_balance=data.get("ending_balance"),
        )


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


def mom_fraction(current: int, previous: int | None) -> Decimal | None:
    """Month-over-month change as a fraction (0.125 = 12.5 %) for the Monthly tab."""
    pct = mom_pct(current, previous)
    return None if pct is None else (pct / 100).quantize(Decimal("0.0001"))


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


def ledger_movements(ctx: Context, month: Month) -> list[Movement]:
    iv = month.interval(ctx.tz)
    return [t.movement() for t in ctx.ledger.transactions_between(iv.start, iv.end)]


def month_fully_synced(ctx: Context, month: Month) -> bool:
    synced = ctx.ledger.synced_days(ctx.tz_name)
    return all(d in synced for d in iter_days(month.first_day, month.last_day))


def previous_net(ctx: Context, month: Month, mode: str) -> dict[str, int]:
    """Net revenue per currency of the month before, from its report or a complete ledger."""
    prev = month.previous()
    stored = ctx.ledger.monthly_result(str(prev), ctx.tz_name, mode)
    if stored is not None:
        return {
            ccy: CurrencyFigures.from_json(ccy, d).lines.net_revenue
            for ccy, d in stored["currencies"].items()
        }
    if month_fully_synced(ctx, prev):
        return {
            ccy: s.lines.net_revenue for ccy, s in summarize(ledger_movements(ctx, prev)).items()
        }
    return {}


def monthly_rows(
    month: Month,
    figures: Mapping[str, CurrencyFigures],
    previous: Mapping[str, int],
    *,
    reconciled: bool,
    source: str,
) -> list[MonthlyRow]:
    return [
        MonthlyRow(
            month=str(month),
            currency=ccy,
            lines=f.lines,
            starting_balance=f.starting_balance,
            ending_balance=f.ending_balance,
            mom_net_revenue_pct=mom_fraction(f.lines.net_revenue, previous.get(ccy)),
            reconciled=reconciled,
            source=source,
        )
        for ccy, f in sorted(figures.items())
    ]


def rows_from_ledger(ctx: Context) -> list[MonthlyRow]:
    """Every month's row from the results saved in the ledger (no call to Stripe)."""
    rows: list[MonthlyRow] = []
    for m in ctx.ledger.monthly_months(ctx.tz_name, ctx.mode):
        data = ctx.ledger.monthly_result(m, ctx.tz_name, ctx.mode)
        if data is None:
            continue
        month = Month.parse(m)
        figures = {ccy: CurrencyFigures.from_json(ccy, d) for ccy, d in data["currencies"].items()}
        rows += monthly_rows(
            month,
            figures,
            previous_net(ctx, month, ctx.mode),
            reconciled=bool(data["reconciled"]),
            source=str(data.get("source") or "report"),
        )
    return rows


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
        if not all(k and k["status"] == "succeeded" and k["file_path"] for k in known):
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
        activity_path = Path(known[0]["file_path"])  # type: ignore[index]
        balance_path = Path(known[1]["file_path"])  # type: ignore[index]
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
        data: dict[str, Any] = {
            "currencies": {ccy: f.to_json() for ccy, f in figures.items()},
            "mismatches": mismatches,
            "source": source_label,
            "livemode": livemode,
        }
        # The email shows when its figures were produced; a re-run with the same figures
        # keeps that time, so a re-rendered email is byte-identical (idempotent sends).
        old = ctx.ledger.monthly_result(str(target), ctx.tz_name, mode) or {}
        same = {k: old.get(k) for k in data} == data and old.get("reconciled") == reconciled
        data["generated_at"] = old.get("generated_at") if same else ctx.now.isoformat()
        ctx.ledger.save_monthly_result(str(target), ctx.tz_name, mode, data, reconciled)
        written = ctx.dashboard.apply(DashboardUpdate(monthly=rows))
        refill_created_tabs(ctx, written.created, already=())
        # The re-sync above may have queued days for the Daily tab too.
        refresh_dashboard(ctx)
    return MonthlyResult(
        target, figures, reconciled, mismatches, source_label, livemode, rows, dry_run=dry_run
    )
