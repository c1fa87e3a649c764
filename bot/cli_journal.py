"""`revbot journal`: the typer command, registered on :data:`bot.cli.app`.

Kept beside ``bot.cli`` so that the main module stays small; like it, it turns flags into
settings, calls one job and shows the outcome, and every error leaves through ``guard``.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bot.exits import guard

FORMATS_HELP = "csv (plain, exact), xero (manual-journal import) or quickbooks (journal import)"


def journal(
    month: Annotated[str, typer.Option("--month", metavar="YYYY-MM", help="Month.")],
    fmt: Annotated[
        str, typer.Option("--format", metavar="csv|xero|quickbooks", help=FORMATS_HELP)
    ] = "csv",
    out: Annotated[
        str | None,
        typer.Option("--out", metavar="FILE", help="Write to FILE (default: standard output)."),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option("--to", metavar="xero", help="Post to Xero as draft manual journals, once."),
    ] = None,
) -> None:
    """A reported month as a balanced double-entry journal per currency: a file for your
    accountant, or draft manual journals in Xero."""
    with guard():
        from pathlib import Path

        from bot import wiring
        from bot.errors import UsageError
        from bot.jobs.journal import NotReported, month_journals, post_to_xero, write_journal
        from bot.journal import FORMATS, parse_accounts
        from bot.periods import Month
        from bot.text import escaped

        target = Month.parse(month)
        if fmt not in FORMATS:
            raise UsageError(
                f"--format {escaped(fmt)!r} is not a journal format; use {', '.join(FORMATS)}"
            )
        if to is not None and to != "xero":
            raise UsageError(
                f"--to {escaped(to)!r} is not where revbot posts journals; use --to xero"
            )
        settings = wiring.settings(require_stripe=False)
        accounts = parse_accounts(settings.accounting_accounts)
        books = wiring.make_books(settings) if to == "xero" else None
        if not (settings.data_dir / "state.sqlite").exists():
            raise NotReported(
                f"{target} is not reported yet, so it has no journal (no ledger at "
                f"{settings.data_dir / 'state.sqlite'}); run `revbot backfill --since "
                f"{target.first_day}` and `revbot monthly --month {target}` first"
            )
        modes = [settings.key_mode] if settings.key_mode else ["live", "test"]
        with wiring.open_ledger(settings) as ledger:
            journals = month_journals(
                ledger,
                month=str(target),
                timezone=settings.timezone,
                modes=modes,
                accounts=accounts,
            )
            if out is not None or books is None:
                path = Path(out) if out is not None else None
                text = write_journal(ledger, journals, fmt, path)
                if path is None:
                    sys.stdout.write(text)
                    sys.stdout.flush()
                else:
                    typer.echo(f"wrote {path}")
            if books is not None:
                for p in post_to_xero(ledger, books, journals):
                    typer.echo(
                        f"journal {target} {p.currency.upper()}: Xero draft {p.journal_id} "
                        f"{p.action}"
                    )
