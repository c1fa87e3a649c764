"""`revbot status`: what the ledger knows, without calling any service."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict
from datetime import date, timedelta
from typing import Any

from bot.billing_store import billing_counts, unavailable
from bot.books_store import (
    DRAFT,
    POSTED,
    POSTING,
    WRITTEN,
    journal_records,
    payout_count,
    payouts,
)
from bot.jobs.payouts import UNAVAILABLE_KEY as PAYOUTS_UNAVAILABLE
from bot.jobs.payouts import unreconciled
from bot.ledger import DASHBOARD_TRIMMED, Ledger


def gaps(days: list[date]) -> list[tuple[date, date]]:
    """Inclusive runs of days missing between the first and the last synced day."""
    out: list[tuple[date, date]] = []
    for a, b in itertools.pairwise(days):
        if (b - a).days > 1:
            out.append((a + timedelta(days=1), b - timedelta(days=1)))
    return out


def collect(ledger: Ledger, timezone: str) -> dict[str, Any]:
    synced = sorted(ledger.synced_days(timezone))
    return {
        "timezone": timezone,
        "ledger": str(ledger.path),
        "transactions": ledger.transaction_count(),
        "first_synced_day": synced[0].isoformat() if synced else None,
        "last_synced_day": synced[-1].isoformat() if synced else None,
        "days_synced": len(synced),
        "gaps": [{"from": a.isoformat(), "to": b.isoformat()} for a, b in gaps(synced)],
        "dashboard_pending_days": [d.isoformat() for d in ledger.pending_dashboard_days(timezone)],
        # Set once a dashboard limit (xlsx rows, Sheets cells) trimmed the Transactions tab.
        "dashboard_trimmed": ledger.get_meta(DASHBOARD_TRIMMED),
        "report_runs": [asdict(r) for r in ledger.report_runs()],
        "months": [
            {
                "month": m,
                "mode": mode,
                "reconciled": r.reconciled,
                "source": r.source,
                "mismatches": list(r.mismatches),
            }
            for mode in ("live", "test")
            for m in ledger.monthly_months(timezone, mode)
            if (r := ledger.monthly_result(m, timezone, mode)) is not None
        ],
        "sends": [asdict(s) for s in ledger.sends()],
        # Subscriptions and invoices (investor metrics), and what the key may not read.
        "billing": {**billing_counts(ledger), "unavailable": unavailable(ledger)},
        "payouts": {
            "count": payout_count(ledger),
            "not_reconciled": unreconciled(payouts(ledger)),
            "unavailable": ledger.get_meta(PAYOUTS_UNAVAILABLE) or None,
            # Per month, what Stripe's payout reconciliation report said of them.
            "report_checks": _report_checks(ledger),
        },
        # Each month's journal per currency: a file written, a draft in Xero, or posted there.
        "journals": [asdict(r) for r in journal_records(ledger)],
    }


def _report_checks(ledger: Ledger) -> dict[str, Any]:
    with ledger.reading() as conn:
        rows = conn.execute(
            "SELECT key, value FROM meta WHERE key LIKE 'payout_report:%' ORDER BY key"
        ).fetchall()
    return {key.split(":", 1)[1]: json.loads(value) for key, value in rows}


_JOURNAL_STATE = {
    WRITTEN: "written to {ref}",
    POSTING: "being posted to Xero (the next `revbot journal --to xero` finishes it)",
    DRAFT: "posted to Xero as draft {ref}",
    POSTED: "posted by the accountant in Xero ({ref})",
}


def render_text(report: dict[str, Any]) -> str:
    lines = [
        f"ledger: {report['ledger']} ({report['transactions']} transactions)",
        f"time zone: {report['timezone']}",
        f"last synced day: {report['last_synced_day'] or 'never'}"
        + (
            f" (first {report['first_synced_day']}, {report['days_synced']} days)"
            if report["first_synced_day"]
            else ""
        ),
    ]
    if report["gaps"]:
        lines.append(
            "gaps: "
            + ", ".join(f"{g['from']} … {g['to']}" for g in report["gaps"])
            + "  (run `revbot backfill --since FROM --until TO`)"
        )
    else:
        lines.append("gaps: none")
    if report["dashboard_pending_days"]:
        lines.append(f"dashboard behind by {len(report['dashboard_pending_days'])} day(s)")
    if report.get("dashboard_trimmed"):
        lines.append(f"dashboard: {report['dashboard_trimmed']}")
    for m in report["months"]:
        state = "reconciled" if m["reconciled"] else "NOT reconciled"
        lines.append(f"month {m['month']} ({m['mode']}): {state}, figures from {m['source']}")
    for run in report["report_runs"]:
        lines.append(f"report run {run['report_type']} {run['run_id']}: {run['status']}")
    billing = report["billing"]
    lines.append(
        f"billing: {billing['subscriptions']} subscriptions, {billing['invoices']} invoices "
        f"({billing['invoice_lines']} lines)"
    )
    for resource, note in sorted(billing["unavailable"].items()):
        lines.append(f"billing: {resource} not read: {note.get('message')} -> {note.get('fix')}")
    pays = report["payouts"]
    lines.append(
        f"payouts: {pays['count']}"
        + (
            f", NOT reconciled: {', '.join(pays['not_reconciled'])}"
            if pays["not_reconciled"]
            else ", every automatic one reconciled"
        )
    )
    for month, check in pays["report_checks"].items():
        found = check["differences"]
        lines.append(
            f"payouts of {month} against Stripe's reconciliation report: "
            + (f"{len(found)} differ: {'; '.join(found)}" if found else f"{check['checked']} agree")
        )
    if pays["unavailable"]:
        lines.append(f"payouts: not read: {pays['unavailable']}")
    for j in report["journals"]:
        where = "file" if j["target"] == "file" else "xero"
        state = _JOURNAL_STATE.get(j["state"], j["state"]).format(ref=j["ref"])
        lines.append(f"journal {j['month']} {j['currency'].upper()} ({where}): {state}")
    for send in report["sends"]:
        lines.append(
            f"email {send['month']} -> {send['recipient']} (generation {send['generation']}): "
            f"{send['status']}"
        )
    return "\n".join(lines)
