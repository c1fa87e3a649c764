"""Everything revbot prints: tables and lines for people, JSON for scripts, backfill progress.

The jobs return values; the CLI hands them here. A table written to a pipe or a file (a cron
log) keeps its natural width, so nothing is cut to a terminal's.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

import typer

from bot.jobs.backfill import BackfillResult, Progress
from bot.jobs.billing import BillingSyncResult
from bot.jobs.daily import DailyOutcome
from bot.jobs.investor_email import SendOutcome
from bot.jobs.monthly import MonthlyOutcome
from bot.money import format_amount, to_major
from bot.pnl import LINE_NAMES, PnlLines, Summary

# -- for people ---------------------------------------------------------------------------------


def summary_table(title: str, summary: Mapping[str, Summary], *, counts: bool = True) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("line")
    for ccy in summary:
        table.add_column(ccy.upper(), justify="right")
    for name in LINE_NAMES:
        table.add_row(
            name, *(format_amount(s.lines.as_dict()[name], ccy) for ccy, s in summary.items())
        )
    if counts:
        table.add_row("transactions", *(str(s.transactions) for s in summary.values()))
    # Into a pipe or a file (a cron log) the table keeps its natural width: rich would otherwise
    # fit it to 80 columns, cutting names ("gross_reve…") and splitting amounts over two lines.
    console = Console() if sys.stdout.isatty() else Console(width=10_000, no_color=True)
    console.print(table)


def daily_text(out: DailyOutcome, timezone: str) -> None:
    result = out.daily
    verb = "would sync" if result.dry_run else "synced"
    typer.echo(
        f"{verb} {len(result.days_synced)} day(s) up to {result.day}: {result.fetched} "
        f"transactions fetched, {result.inserted} new, {result.changed} changed"
    )
    summary_table(f"{result.day} ({timezone})", result.summary)
    if not result.dry_run:
        typer.echo(f"dashboard: {result.dashboard}")
    billing_text(result.billing)
    if out.monthly is not None:
        monthly_text(out.monthly)
    if out.deferred:
        typer.echo(f"monthly report deferred: {out.deferred}")


def monthly_text(out: MonthlyOutcome) -> None:
    r = out.result
    status = "reconciled" if r.reconciled else "NOT reconciled: " + "; ".join(r.mismatches[:3])
    typer.echo(f"{r.month} ({r.source}): {status}")
    summary_table(
        f"{r.month.label()}",
        {c: Summary(currency=c, lines=f.lines) for c, f in r.figures.items()},
        counts=False,
    )
    if out.skipped_send:
        typer.echo(out.skipped_send)
    for s in out.sends:
        typer.echo(f"email to {s.recipient}: {s.describe()}")


def backfill_text(result: BackfillResult) -> None:
    typer.echo(
        f"backfilled {result.since} … {result.until}: {result.days_fetched} day(s) fetched, "
        f"{result.days_skipped} already synced, {result.fetched} transactions "
        f"({result.inserted} new) via {result.via} in {result.seconds:.1f}s"
    )
    typer.echo(f"dashboard: {result.dashboard}")
    billing_text(result.billing)


def billing_text(b: BillingSyncResult | None) -> None:
    """One line on the subscriptions and invoices synced (none when nothing was synced)."""
    if b is None:
        return
    line = (
        f"billing: {b.subscriptions} subscriptions and {b.invoices} invoices read, "
        f"{b.inserted} new, {b.changed} changed"
        + (f", {b.removed} gone" if b.removed else "")
        + f" ({b.requests} requests)"
    )
    if b.unavailable:
        line += f"; not readable: {', '.join(b.unavailable)} (see `revbot status`)"
    typer.echo(line)


def sends_text(month: object, sends: Sequence[SendOutcome]) -> None:
    for s in sends:
        typer.echo(f"email {month} to {s.recipient} (generation {s.generation}): {s.describe()}")


def show(data: Mapping[str, Any] | None, text: Callable[..., None], *args: Any) -> None:
    """``data`` as JSON when given (``--json``), else ``text(*args)`` for people."""
    if data is not None:
        print_json(data)
    else:
        text(*args)


# -- for scripts (--json) -----------------------------------------------------------------------


def print_json(data: Mapping[str, Any]) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))


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


def daily_json(out: DailyOutcome) -> dict[str, Any]:
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
        "billing": billing_json(r.billing),
    }
    return data


def monthly_json(out: MonthlyOutcome) -> dict[str, Any]:
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


def backfill_json(r: BackfillResult) -> dict[str, Any]:
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
        "billing": billing_json(r.billing),
    }


def billing_json(b: BillingSyncResult | None) -> dict[str, Any] | None:
    if b is None:
        return None
    return {
        "subscriptions_read": b.subscriptions,
        "invoices_read": b.invoices,
        "invoice_lines_read": b.lines,
        "new": b.inserted,
        "changed": b.changed,
        "removed": b.removed,
        "requests": b.requests,
        "unavailable": list(b.unavailable),
    }


# -- backfill progress --------------------------------------------------------------------------


def _clock_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def describe(p: Progress) -> str:
    return (
        f"backfill: {p.fraction:.0%} of the range, {p.transactions:,} transactions, "
        f"{p.pages:,} pages, {p.rate:.1f} req/s, elapsed {_clock_text(p.elapsed)}, "
        f"ETA {_clock_text(p.eta())}"
    )


class LogReporter:
    """Plain lines, at most one every ``every`` seconds (for logs and pipes)."""

    def __init__(self, emit: Callable[[str], None], *, every: float = 2.0) -> None:
        self._emit = emit
        self._every = every
        self._last = 0.0
        self._lock = threading.Lock()

    def start(self, progress: Progress) -> None:
        self._last = time.monotonic()
        self._emit(f"backfill: {progress.total / 86_400:,.1f} days of history to read")

    def update(self, progress: Progress) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self._every:
                return
            self._last = now
        self._emit(describe(progress))

    def finish(self, progress: Progress) -> None:
        self._emit(describe(progress))

    def note(self, message: str) -> None:
        self._emit(f"backfill: {message}")


class RichReporter:
    """A rich progress bar on stderr: share of the range, transactions, pages, req/s, ETA."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("backfill"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn(
                "{task.fields[txns]:,} transactions · {task.fields[pages]:,} pages · "
                "{task.fields[rps]:.1f} req/s"
            ),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=stream or sys.stderr),
            transient=False,
        )
        self._task: Any = None

    def start(self, progress: Progress) -> None:
        self._bar.start()
        self._task = self._bar.add_task(
            "backfill", total=max(1, progress.total), txns=0, pages=0, rps=0.0
        )

    def update(self, progress: Progress) -> None:
        self._bar.update(
            self._task,
            completed=progress.covered,
            txns=progress.transactions,
            pages=progress.pages,
            rps=progress.rate,
        )

    def finish(self, progress: Progress) -> None:
        self.update(progress)
        self._bar.stop()

    def note(self, message: str) -> None:
        self._bar.console.log(message)


def backfill_reporter() -> RichReporter | LogReporter:
    """A bar on a terminal; plain lines every few seconds otherwise (cron logs, pipes)."""
    if sys.stderr.isatty():
        return RichReporter()
    return LogReporter(lambda line: typer.echo(line, err=True), every=5.0)
