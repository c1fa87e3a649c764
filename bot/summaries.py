"""Machine-readable summaries for `--json` (one JSON object on stdout per command)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.money import to_major
from bot.pnl import LINE_NAMES, PnlLines, Summary


def lines_json(lines: PnlLines, currency: str) -> dict[str, Any]:
    """P&L lines as exact decimal strings in major units, plus the minor-unit integers."""
    d = lines.as_dict()
    out: dict[str, Any] = {name: str(to_major(d[name], currency)) for name in LINE_NAMES}
    out["minor_units"] = d
    return out


def summary_json(summary: Mapping[str, Summary]) -> dict[str, Any]:
    return {
        ccy.upper(): {
            **lines_json(s.lines, ccy),
            "charges": s.charges,
            "refunds_count": s.refunds_count,
            "transactions": s.transactions,
        }
        for ccy, s in summary.items()
    }


def daily_json(out: Any) -> dict[str, Any]:
    r = out.daily
    data: dict[str, Any] = {
        "command": "daily",
        "day": r.day.isoformat(),
        "dry_run": r.dry_run,
        "days_synced": [d.isoformat() for d in r.days_synced],
        "transactions_fetched": r.fetched,
        "transactions_new": r.inserted,
        "transactions_changed": r.changed,
        "figures": summary_json(r.summary),
        "dashboard": r.dashboard,
        "dashboard_days_written": [d.isoformat() for d in r.dashboard_days],
        "monthly": monthly_json(out.monthly) if out.monthly is not None else None,
        "monthly_deferred": out.deferred,
    }
    return data


def monthly_json(out: Any) -> dict[str, Any]:
    r = out.result
    return {
        "command": "monthly",
        "month": str(r.month),
        "dry_run": r.dry_run,
        "source": r.source,
        "reconciled": r.reconciled,
        "mismatches": r.mismatches,
        "livemode": r.livemode,
        "figures": {
            ccy.upper(): {
                **lines_json(f.lines, ccy),
                "starting_balance": None
                if f.starting_balance is None
                else str(to_major(f.starting_balance, ccy)),
                "ending_balance": None
                if f.ending_balance is None
                else str(to_major(f.ending_balance, ccy)),
            }
            for ccy, f in r.figures.items()
        },
        "emails": [
            {"to": s.recipient, "generation": s.generation, "status": s.status, "id": s.provider_id}
            for s in out.sends
        ],
        "email_skipped": out.skipped_send,
    }


def backfill_json(r: Any) -> dict[str, Any]:
    return {
        "command": "backfill",
        "since": r.since.isoformat(),
        "until": r.until.isoformat(),
        "via": r.via,
        "days_fetched": r.days_fetched,
        "days_skipped": r.days_skipped,
        "transactions_fetched": r.fetched,
        "transactions_new": r.inserted,
        "transactions_changed": r.changed,
        "pages": r.pages,
        "slices": r.slices,
        "seconds": round(r.seconds, 3),
        "dashboard": r.dashboard,
    }
