"""The typer app: flags -> Settings -> objects -> one job call -> output.

With ``bot.exits`` it is the only place that maps errors to exit codes (``docs/design.md``).
Heavy libraries are imported inside the commands so that ``revbot --help`` starts fast.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from bot import __version__
from bot.cli_journal import journal
from bot.errors import EXIT_FAILURE
from bot.exits import fatal, guard, leave

if TYPE_CHECKING:
    from datetime import datetime


log = logging.getLogger("bot")

app = typer.Typer(
    name="revbot",
    help="Stripe revenue reports that run themselves: a ledger, a dashboard, an investor email.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich's help formatting alone costs ~0.15 s of every cold start.
    rich_markup_mode=None,
)
sandbox_app = typer.Typer(
    help="The built-in Stripe-compatible sandbox account.", no_args_is_help=True
)
app.add_typer(sandbox_app, name="sandbox")

DATE = "YYYY-MM-DD"
MONTH = "YYYY-MM"
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON summary on stdout.")]
MonthOpt = Annotated[str, typer.Option("--month", metavar=MONTH, help="Month.")]
LastMonthOpt = Annotated[
    str | None, typer.Option("--month", metavar=MONTH, help="Month (default: the last closed one).")
]
DayOpt = Annotated[
    str | None,
    typer.Option("--date", metavar=DATE, help="Day (default: yesterday in REPORT_TIMEZONE)."),
]
SinceOpt = Annotated[str, typer.Option("--since", metavar=DATE, help="First day (inclusive).")]
UntilOpt = Annotated[
    str | None,
    typer.Option("--until", metavar=DATE, help="Last day (inclusive; default yesterday)."),
]
ToOpt = Annotated[
    list[str] | None,
    typer.Option("--to", metavar="ADDR", help="Send only to this address (repeatable)."),
]
OutOpt = Annotated[
    str | None,
    typer.Option(
        "--out", metavar="FILE", help="HTML file (default: DATA_DIR/preview-YYYY-MM.html)."
    ),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Read and compute; write nothing.")]


# -- errors, alerts, settings ------------------------------------------------------------------


def _progress(message: str) -> None:
    log.info(message)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"revbot {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log what revbot does (secrets redacted).")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_show_version
        ),
    ] = False,
) -> None:
    # Everything revbot creates (ledger, WAL, workbook, archive, outbox, previews, temp files)
    # holds the account's figures or the investors' addresses: its owner's alone, 0600 files
    # and 0700 folders, whatever umask cron or a shared server gives the process.
    os.umask(0o077)
    from bot import logs

    logs.setup(verbose=verbose)


# -- the commands -------------------------------------------------------------------------------


@app.command(short_help="Sync yesterday (or --date) into the ledger and the dashboard.")
def daily(
    date: DayOpt = None,
    dry_run: DryRun = False,
    json_out: JsonFlag = False,
) -> None:
    """Sync a day (default: yesterday), catch up missed days, re-read 3, update the dashboard;
    then report a closed month whose report or email is due."""
    with guard("daily") as run:
        from bot import output, wiring
        from bot.jobs.daily import daily_flow
        from bot.periods import parse_date, require_past_day

        day = parse_date(date) if date is not None else None
        settings = wiring.settings(check_dashboard=True)
        if day is not None:
            require_past_day(day, now=_now(), tz=settings.tz, flag="--date")
        alerter = None if dry_run else run.alert(settings)
        with wiring.session(settings, command="daily", dry_run=dry_run, progress=_progress) as ctx:
            if alerter is not None:  # before syncing: the gap this run is about to fill is news
                alerter.check_silence(
                    now=ctx.now, tz=ctx.tz, synced_days=ctx.ledger.synced_days(ctx.tz_name)
                )
            out = daily_flow(
                ctx,
                day=day,
                dry_run=dry_run,
                archive_dir=settings.data_dir / "archive",
                mode=ctx.mode,
                email=wiring.make_email(settings, required=False),
            )
        output.show(
            output.daily_json(out) if json_out else None, output.daily_text, out, settings.timezone
        )
        billing_error = out.daily.error
        if alerter is not None:
            if billing_error is None:
                alerter.success("daily")
            if date is None:  # the scheduled run; re-syncing an old day is not news
                alerter.daily_summary(out.daily.day, list(out.daily.summary.values()))
        if billing_error is not None:  # the P&L is stored and shown: exit with billing's code
            raise billing_error


@app.command(short_help="Report a closed month: Stripe reports, reconciled, emailed once.")
def monthly(
    month: LastMonthOpt = None,
    no_send: Annotated[
        bool, typer.Option("--no-send", help="Do not send the investor email.")
    ] = False,
    dry_run: DryRun = False,
    json_out: JsonFlag = False,
) -> None:
    """A month's Stripe reports, reconciled with the ledger; the Monthly tab; the investor email."""
    with guard("monthly") as run:
        from bot import output, wiring
        from bot.jobs.monthly import monthly_and_send
        from bot.periods import Month, require_closed_month

        target = Month.parse(month) if month is not None else None
        settings = wiring.settings(check_dashboard=True)
        if target is not None:
            require_closed_month(target, now=_now(), tz=settings.tz)
        email = None if no_send else wiring.make_email(settings, required=True)
        alerter = None if dry_run else run.alert(settings)
        with wiring.session(
            settings, command="monthly", dry_run=dry_run, progress=_progress
        ) as ctx:
            out = monthly_and_send(
                ctx,
                month=target,
                archive_dir=settings.data_dir / "archive",
                mode=ctx.mode,
                email=email,
                dry_run=dry_run,
            )
        output.show(output.monthly_json(out) if json_out else None, output.monthly_text, out)
        if alerter is not None:
            alerter.success("monthly")


@app.command(short_help="Send a month's investor email again.")
def resend(
    month: MonthOpt,
    to: ToOpt = None,
) -> None:
    """Send a month's email again, to everyone or to the given addresses."""
    with guard("resend") as run:
        from bot import output, wiring
        from bot.jobs.investor_email import resend as resend_job
        from bot.mail.addresses import validate_address
        from bot.periods import Month, require_closed_month

        target = Month.parse(month)
        addresses = [validate_address(a, variable="--to").lower() for a in to or []]
        settings = wiring.settings(check_dashboard=True)
        require_closed_month(target, now=_now(), tz=settings.tz)
        email = wiring.make_email(settings, required=True, to=addresses)
        assert email is not None
        alerter = run.alert(settings)
        with wiring.session(settings, command="resend", need_stripe=False) as ctx:
            sends = resend_job(ctx, month=target, mode=ctx.mode, email=email, to=addresses)
        output.sends_text(target, sends)
        alerter.success("resend")


@app.command(short_help="Render a month's investor email to an HTML file.")
def preview(
    month: MonthOpt,
    out: OutOpt = None,
) -> None:
    """Render a month's investor email to an HTML file, without sending anything."""
    with guard():
        from pathlib import Path

        from bot import wiring
        from bot.jobs.investor_email import write_preview
        from bot.periods import Month, require_closed_month

        target = Month.parse(month)
        settings = wiring.settings(require_stripe=False)
        # An open month has no report to preview; the message names the latest one that has.
        require_closed_month(target, now=_now(), tz=settings.tz)
        path = Path(out) if out else settings.data_dir / f"preview-{target}.html"
        with wiring.open_ledger(settings, read_only=True) as ledger:
            subject = write_preview(
                ledger,
                month=target,
                timezone=settings.timezone,
                mode=settings.key_mode or "test",
                company=settings.company_name,
                path=path,
            )
        typer.echo(f"subject: {subject}")
        typer.echo(f"wrote {path}")


@app.command(short_help="Fill the ledger and the dashboard for a range of days.")
def backfill(
    since: SinceOpt,
    until: UntilOpt = None,
    workers: Annotated[
        int,
        typer.Option("--workers", min=1, max=32, metavar="N", help="Concurrent Stripe workers."),
    ] = 8,
    via: Annotated[
        str,
        typer.Option(
            "--via",
            metavar="api|report",
            help="api: list balance transactions concurrently; report: one itemized report "
            "run for the range, streamed into the ledger (for very large ranges).",
        ),
    ] = "api",
    json_out: JsonFlag = False,
) -> None:
    """Fill the ledger and dashboard for a range of days: concurrent, rate-limited, resumable."""
    with guard():
        from bot import output, wiring
        from bot.errors import UsageError
        from bot.jobs.backfill import VIAS
        from bot.jobs.backfill import backfill as backfill_job
        from bot.periods import parse_range, require_past_day

        # Usage errors before DATA_DIR is touched.
        first, last = parse_range(since, until)
        if via not in VIAS:
            raise UsageError(f"--via {via!r} is not one of: {', '.join(VIAS)}")
        settings = wiring.settings(check_dashboard=True)
        for day, flag in ((first, "--since"), (last, "--until")):
            if day is not None:
                require_past_day(day, now=_now(), tz=settings.tz, flag=flag)
        reporter = output.backfill_reporter()
        with wiring.session(settings, command="backfill", progress=_progress) as ctx:
            result = backfill_job(
                ctx,
                since=first,
                until=last,
                workers=workers,
                via=via,
                reporter=reporter,
                archive_dir=settings.data_dir / "archive",
            )
        output.show(
            output.backfill_json(result) if json_out else None, output.backfill_text, result
        )
        if result.error is not None:
            raise result.error


@app.command(short_help="Check each configured service and say how to fix it.")
def doctor() -> None:
    """Check each configured service; say what is wrong and how to fix it."""
    with guard():
        from bot import doctor as doctor_mod
        from bot import wiring

        settings = wiring.settings(require_stripe=False)
        source = wiring.make_source(settings) if settings.stripe_key else None
        checks = doctor_mod.run(settings, source)
        for check in checks:
            typer.echo(check.line())
        failed = [c for c in checks if c.status == "fail"]
        if failed:
            fatal(f"{len(failed)} check(s) failed; see the fixes above", EXIT_FAILURE)
        typer.echo("all checks passed")


@app.command(short_help="Last synced day, gaps, reports and emails, from the ledger.")
def status(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """From the ledger alone: last synced day, gaps, report runs, emails sent."""
    with guard():
        from bot import output, wiring
        from bot import status as status_mod

        settings = wiring.settings(require_stripe=False, ignore_stripe=True)
        if not (settings.data_dir / "state.sqlite").exists():
            fatal(
                f"no ledger at {settings.data_dir / 'state.sqlite'} yet; run `revbot daily` or "
                "`revbot backfill --since YYYY-MM-DD` first",
                EXIT_FAILURE,
            )
        with wiring.open_ledger(settings) as ledger:
            report = status_mod.collect(ledger, settings.timezone)
        if json_out:
            output.print_json(report)
        else:
            typer.echo(status_mod.render_text(report))


@app.command(short_help="Run everything against the built-in sandbox account.")
def demo(
    days: Annotated[
        int, typer.Option("--days", min=7, max=400, metavar="N", help="Days of sandbox history.")
    ] = 90,
    data_dir: Annotated[
        str,
        typer.Option(
            "--data-dir",
            metavar="DIR",
            help="Where the demo's ledger, workbook and outbox go (never DATA_DIR: the demo "
            "keeps out of a real ledger).",
        ),
    ] = "revbot-demo-data",
) -> None:
    """Run backfill, daily and monthly against the built-in sandbox account, into its own
    folder (revbot-demo-data), and say where to look."""
    with guard():
        from bot import demo as demo_mod
        from bot import wiring

        demo_mod.run(
            wiring.settings(demo_mod.overrides(data_dir)),
            days=days,
            echo=typer.echo,
            shown_dir=data_dir,
        )


app.command(short_help="A reported month as a journal for the books: a file, or Xero.")(journal)


@sandbox_app.command("serve", short_help="Serve the sandbox account on 127.0.0.1.")
def sandbox_serve(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, metavar="PORT", help="Port on 127.0.0.1.")
    ] = 12111,
) -> None:
    """Serve the built-in Stripe-compatible sandbox account on 127.0.0.1 until Ctrl-C."""
    with guard():
        from bot.sandbox import serve

        serve(port=port)


def _now() -> datetime:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point (and ``python -m bot``); tests run ``app`` itself."""
    leave(app, argv if argv is not None else sys.argv[1:])


__all__ = ["app", "main"]
