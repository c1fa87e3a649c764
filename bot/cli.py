"""The typer app: flags -> Settings -> objects -> one job call.

This is the only place that maps errors to exit codes (PRODUCT.md §4). Heavy libraries are
imported inside the commands so that ``revbot --help`` starts fast.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from bot import __version__
from bot.errors import EXIT_FAILURE, RevbotError

if TYPE_CHECKING:
    from datetime import date

    from bot import flows
    from bot.alerts import Alerter
    from bot.config import Settings
    from bot.periods import Month
    from bot.pnl import Summary

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

_state: dict[str, Any] = {"verbose": False}


def _fatal(message: str, code: int) -> NoReturn:
    from bot.logs import REDACT
    from bot.text import escaped

    typer.echo(f"revbot: {escaped(REDACT(message))}", err=True)
    raise typer.Exit(code=code)


@contextmanager
def _errors(command: str | None = None) -> Iterator[None]:
    """Every failure becomes one line on stderr and the exit code its class carries.

    With ``command``, a failure is also alerted (once per incident) once :func:`_alerter` has
    been called; alerting never changes the exit code.
    """
    try:
        yield
    except RevbotError as e:
        _alert_failure(command, str(e), e.exit_code, type(e).__name__)
        _fatal(str(e), e.exit_code)
    except KeyboardInterrupt:
        _fatal("interrupted; the ledger is consistent, run the command again", 130)
    except typer.Exit:
        raise
    except Exception as e:  # a bug: still one line, the traceback only with --verbose
        log.debug("unexpected error", exc_info=True)
        if _disk_full(e):
            message = (
                f"the disk is full ({e}); free some space on the disk that holds DATA_DIR and "
                "run the command again: the ledger keeps what was committed"
            )
        else:
            message = (
                f"unexpected error ({type(e).__name__}: {e}); run with --verbose for details "
                "and please report it"
            )
        _alert_failure(command, message, EXIT_FAILURE, type(e).__name__)
        _fatal(message, EXIT_FAILURE)
    finally:
        alerter = _state.get("alerter")
        if alerter is not None:
            alerter.close()


def _disk_full(e: BaseException) -> bool:
    import errno
    import sqlite3

    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(e, sqlite3.OperationalError) and "disk is full" in str(e)


def _alerter(settings: Settings) -> Alerter:
    """Failure, silence and summary alerts for this run (SLACK_WEBHOOK_URL, ALERT_EMAILS)."""
    from bot import wiring
    from bot.alerts import Alerter

    # The alerter opens its own ledger connection, and only when an alert needs it, so that
    # failures before (or while) the command opens its own are alerted too.
    alerter = Alerter(
        settings,
        ledger=lambda: wiring.open_ledger(settings),
        mailer_factory=lambda: wiring.make_mailer(settings),
    )
    _state["alerter"] = alerter
    return alerter


def _alert_failure(command: str | None, message: str, code: int, kind: str) -> None:
    alerter = _state.get("alerter")
    if command is not None and alerter is not None:
        from bot.logs import REDACT
        from bot.text import escaped

        alerter.failure(command, escaped(REDACT(message)), code, kind=kind)


def _settings(
    overrides: dict[str, str | None] | None = None,
    *,
    require_stripe: bool = True,
    ignore_stripe: bool = False,
    check_dashboard: bool = False,
) -> Settings:
    from bot import logs
    from bot.config import resolve

    settings = resolve(
        overrides=overrides, require_stripe=require_stripe, ignore_stripe=ignore_stripe
    )
    logs.setup(verbose=_state["verbose"], secrets=[s.reveal() for s in settings.secrets])
    if check_dashboard:
        # A malformed GOOGLE_SHEET_ID or credentials file is a bad setting like any other:
        # refuse it before DATA_DIR, the lock or the ledger is touched (building the
        # dashboard reads the key file but makes no request).
        from bot import wiring

        wiring.make_dashboard(settings)
    return settings


def _check_past(day: date, settings: Settings, flag: str) -> None:
    """Refuse an unfinished day before anything is opened or written."""
    from datetime import UTC, datetime

    from bot.periods import require_past_day

    require_past_day(day, now=datetime.now(UTC), tz=settings.tz, flag=flag)


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
    _state["verbose"] = verbose
    _state["alerter"] = None  # one per command run (tests run several in one process)
    # Everything revbot creates (ledger, WAL, workbook, archive, outbox, previews, temp files)
    # holds the account's figures or the investors' addresses: its owner's alone, 0600 files
    # and 0700 folders, whatever umask cron or a shared server gives the process.
    os.umask(0o077)
    from bot import logs

    logs.setup(verbose=verbose)


def _print_summary(title: str, summary: dict[str, Summary], *, counts: bool = True) -> None:
    from rich.console import Console
    from rich.table import Table

    from bot.money import format_amount
    from bot.pnl import LINE_NAMES

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


@app.command(short_help="Sync yesterday (or --date) into the ledger and the dashboard.")
def daily(
    date: Annotated[
        str | None,
        typer.Option(
            "--date",
            metavar="YYYY-MM-DD",
            help="Day to sync (default: yesterday in REPORT_TIMEZONE).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Fetch and compute, but write nothing.")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON summary on stdout.")
    ] = False,
) -> None:
    """Sync a day (default: yesterday), catch up missed days, re-read 3, update the dashboard."""
    with _errors("daily"):
        from bot import flows, summaries, wiring
        from bot.lock import exclusive
        from bot.periods import parse_date

        day = parse_date(date) if date is not None else None
        settings = _settings(check_dashboard=True)
        if day is not None:
            _check_past(day, settings, "--date")
        alerter = None if dry_run else _alerter(settings)
        # A dry run writes nothing, not even the lock file.
        with (
            nullcontext() if dry_run else exclusive(settings.data_dir, command="daily"),
            wiring.open_ledger(settings, read_only=dry_run) as ledger,
        ):
            ctx = wiring.make_context(settings, ledger=ledger, progress=_progress)
            if alerter is not None:
                # Before syncing: the gap this run is about to fill is the news.
                alerter.check_silence(
                    now=ctx.now, tz=ctx.tz, synced_days=ledger.synced_days(ctx.tz_name)
                )
            out = flows.daily_flow(
                ctx,
                day=day,
                dry_run=dry_run,
                archive_dir=settings.data_dir / "archive",
                mode=settings.key_mode or "test",
                email=_email(settings, required=False),
            )
        result = out.daily
        if json_out:
            _print_json(summaries.daily_json(out))
        else:
            _report_daily(out, settings.timezone)
        if alerter is not None:
            alerter.success("daily")
            if date is None:  # the scheduled run; re-syncing an old day is not news
                alerter.daily_summary(result.day, list(result.summary.values()))


def _print_json(data: dict[str, Any]) -> None:
    import json

    typer.echo(json.dumps(data, indent=2, sort_keys=True))


def _report_daily(out: flows.DailyOutcome, timezone: str) -> None:
    result = out.daily
    dry_run = result.dry_run
    verb = "would sync" if dry_run else "synced"
    typer.echo(
        f"{verb} {len(result.days_synced)} day(s) up to {result.day}: {result.fetched} "
        f"transactions fetched, {result.inserted} new, {result.changed} changed"
    )
    _print_summary(f"{result.day} ({timezone})", result.summary)
    if not dry_run:
        typer.echo(f"dashboard: {result.dashboard}")
    if out.monthly is not None:
        _print_monthly(out.monthly)
    if out.deferred:
        typer.echo(f"monthly report deferred: {out.deferred}")


def _email(
    settings: Settings, *, required: bool, to: list[str] | None = None
) -> flows.Email | None:
    """The investor email's settings; None when not configured and not required. With ``to``
    (`resend --to`), INVESTOR_EMAILS is not needed."""
    from bot import flows, wiring

    if not required and not settings.investor_emails:
        return None
    if to:  # resend --to ADDR
        sender, recipients = settings.require_email(way_out=None, need_investors=False)
    elif to is not None:  # resend to every investor
        sender, recipients = settings.require_email(way_out="or name recipients with --to ADDR")
    else:
        sender, recipients = settings.require_email()
    return flows.Email(
        sender=sender,
        recipients=recipients,
        mailer=wiring.make_mailer(settings),
        company=settings.company_name,
        allow_test_data=settings.stripe_mode != "live",
    )


def _print_monthly(out: flows.MonthlyOutcome) -> None:
    from bot.pnl import Summary

    r = out.result
    status = "reconciled" if r.reconciled else "NOT reconciled: " + "; ".join(r.mismatches[:3])
    typer.echo(f"{r.month} ({r.source}): {status}")
    _print_summary(
        f"{r.month.label()}",
        {c: Summary(currency=c, lines=f.lines) for c, f in r.figures.items()},
        counts=False,
    )
    if out.skipped_send:
        typer.echo(out.skipped_send)
    for s in out.sends:
        typer.echo(f"email to {s.recipient}: {s.describe()}")


def _check_month(month: Month, settings: Settings) -> None:
    from datetime import UTC, datetime

    from bot.periods import require_closed_month

    require_closed_month(month, now=datetime.now(UTC), tz=settings.tz)


@app.command(short_help="Report a closed month: Stripe reports, reconciled, emailed once.")
def monthly(
    month: Annotated[
        str | None,
        typer.Option("--month", metavar="YYYY-MM", help="Month (default: the last closed month)."),
    ] = None,
    no_send: Annotated[
        bool, typer.Option("--no-send", help="Do not send the investor email.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Compute from what is recorded; create, write and send nothing."
        ),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON summary on stdout.")
    ] = False,
) -> None:
    """A month's Stripe reports, reconciled with the ledger; the Monthly tab; the investor email."""
    with _errors("monthly"):
        from bot import flows, wiring
        from bot.lock import exclusive
        from bot.periods import Month

        target = Month.parse(month) if month is not None else None
        settings = _settings(check_dashboard=True)
        if target is not None:
            _check_month(target, settings)
        email = None if no_send else _email(settings, required=True)
        alerter = None if dry_run else _alerter(settings)
        with (
            nullcontext() if dry_run else exclusive(settings.data_dir, command="monthly"),
            wiring.open_ledger(settings, read_only=dry_run) as ledger,
        ):
            ctx = wiring.make_context(settings, ledger=ledger, progress=_progress)
            out = flows.monthly_and_send(
                ctx,
                month=target,
                archive_dir=settings.data_dir / "archive",
                mode=settings.key_mode or "test",
                email=email,
                dry_run=dry_run,
            )
        if json_out:
            from bot import summaries

            _print_json(summaries.monthly_json(out))
        else:
            _print_monthly(out)
        if alerter is not None:
            alerter.success("monthly")


@app.command(short_help="Send a month's investor email again.")
def resend(
    month: Annotated[str, typer.Option("--month", metavar="YYYY-MM", help="Month.")],
    to: Annotated[
        list[str] | None,
        typer.Option(
            "--to",
            metavar="ADDR",
            help="Send only to this address (repeatable; default: every investor).",
        ),
    ] = None,
) -> None:
    """Send a month's email again, to everyone or to the given addresses."""
    with _errors("resend"):
        from bot import flows, wiring
        from bot.lock import exclusive
        from bot.mail.addresses import validate_address
        from bot.periods import Month

        target = Month.parse(month)
        addresses = [validate_address(a, variable="--to").lower() for a in to or []]
        settings = _settings(check_dashboard=True)
        _check_month(target, settings)
        email = _email(settings, required=True, to=addresses)
        assert email is not None
        alerter = _alerter(settings)
        with exclusive(settings.data_dir, command="resend"), wiring.open_ledger(settings) as ledger:
            ctx = wiring.make_context(settings, ledger=ledger, need_stripe=False)
            sends = flows.resend(
                ctx, month=target, mode=settings.key_mode or "test", email=email, to=addresses
            )
        for s in sends:
            typer.echo(
                f"email {target} to {s.recipient} (generation {s.generation}): {s.describe()}"
            )
        alerter.success("resend")


@app.command(short_help="Render a month's investor email to an HTML file.")
def preview(
    month: Annotated[str, typer.Option("--month", metavar="YYYY-MM", help="Month.")],
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="HTML file to write (default: DATA_DIR/preview-YYYY-MM.html).",
        ),
    ] = None,
) -> None:
    """Render a month's investor email to an HTML file, without sending anything."""
    with _errors():
        from pathlib import Path

        from bot import mailing, wiring
        from bot.mail.render import render
        from bot.periods import Month

        target = Month.parse(month)
        settings = _settings(require_stripe=False)
        # An open month has no report to preview; the message names the latest one that has.
        _check_month(target, settings)
        with wiring.open_ledger(settings, read_only=True) as ledger:
            report = mailing.build_report(
                ledger,
                month=target,
                timezone=settings.timezone,
                mode=settings.key_mode or "test",
                company=settings.company_name,
            )
        rendered = render(report)
        path = Path(out) if out else settings.data_dir / f"preview-{target}.html"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rendered.html, encoding="utf-8")
        except OSError as e:
            _fatal(f"cannot write {path} ({e.strerror}); choose another --out", EXIT_FAILURE)
        typer.echo(f"subject: {rendered.subject}")
        typer.echo(f"wrote {path}")


@app.command(short_help="Fill the ledger and the dashboard for a range of days.")
def backfill(
    since: Annotated[
        str, typer.Option("--since", metavar="YYYY-MM-DD", help="First day (inclusive).")
    ],
    until: Annotated[
        str | None,
        typer.Option(
            "--until", metavar="YYYY-MM-DD", help="Last day (inclusive; default yesterday)."
        ),
    ] = None,
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
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON summary on stdout.")
    ] = False,
) -> None:
    """Fill the ledger and dashboard for a range of days: concurrent, rate-limited, resumable."""
    with _errors():
        from bot import backfill as backfill_mod
        from bot import wiring
        from bot.lock import exclusive
        from bot.periods import parse_date

        first = parse_date(since, flag="--since")
        last = parse_date(until, flag="--until") if until else None
        if via not in backfill_mod.VIAS:
            from bot.errors import UsageError

            raise UsageError(f"--via {via!r} is not one of: {', '.join(backfill_mod.VIAS)}")
        if last is not None and last < first:
            from bot.errors import UsageError

            # Here, not in the job: a usage error must come before DATA_DIR is touched.
            raise UsageError(f"--until {last} is before --since {first}; swap them")
        settings = _settings(check_dashboard=True)
        _check_past(first, settings, "--since")
        if last is not None:
            _check_past(last, settings, "--until")
        # A bar on a terminal; plain lines (cron logs, pipes) otherwise.
        reporter: backfill_mod.Reporter = (
            backfill_mod.RichReporter()
            if sys.stderr.isatty()
            else backfill_mod.LogReporter(lambda line: typer.echo(line, err=True), every=5.0)
        )
        with (
            exclusive(settings.data_dir, command="backfill"),
            wiring.open_ledger(settings) as ledger,
        ):
            ctx = wiring.make_context(settings, ledger=ledger, progress=_progress)
            result = backfill_mod.backfill(
                ctx,
                since=first,
                until=last,
                workers=workers,
                via=via,
                reporter=reporter,
                archive_dir=settings.data_dir / "archive",
            )
        if json_out:
            from bot import summaries

            _print_json(summaries.backfill_json(result))
            return
        typer.echo(
            f"backfilled {result.since} … {result.until}: {result.days_fetched} day(s) fetched, "
            f"{result.days_skipped} already synced, {result.fetched} transactions "
            f"({result.inserted} new) via {result.via} in {result.seconds:.1f}s"
        )
        typer.echo(f"dashboard: {result.dashboard}")


@app.command(short_help="Check each configured service and say how to fix it.")
def doctor() -> None:
    """Check each configured service; say what is wrong and how to fix it."""
    with _errors():
        from bot import doctor as doctor_mod
        from bot import wiring

        settings = _settings(require_stripe=False)
        source = wiring.make_source(settings) if settings.stripe_key else None
        checks = doctor_mod.run(settings, source)
        for check in checks:
            typer.echo(check.line())
        failed = [c for c in checks if c.status == "fail"]
        if failed:
            _fatal(f"{len(failed)} check(s) failed; see the fixes above", EXIT_FAILURE)
        typer.echo("all checks passed")


@app.command(short_help="Last synced day, gaps, reports and emails, from the ledger.")
def status(
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """From the ledger alone: last synced day, gaps, report runs, emails sent."""
    with _errors():
        import json

        from bot import status as status_mod
        from bot import wiring

        settings = _settings(require_stripe=False, ignore_stripe=True)
        if not (settings.data_dir / "state.sqlite").exists():
            _fatal(
                f"no ledger at {settings.data_dir / 'state.sqlite'} yet; run `revbot daily` or "
                "`revbot backfill --since YYYY-MM-DD` first",
                EXIT_FAILURE,
            )
        with wiring.open_ledger(settings) as ledger:
            report = status_mod.collect(ledger, settings.timezone)
        if json_out:
            typer.echo(json.dumps(report, indent=2, sort_keys=True))
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
    with _errors():
        from bot import demo as demo_mod

        settings = _settings(
            {
                "STRIPE_SECRET_KEY": demo_mod.DEMO_KEY,
                "STRIPE_MODE": "test",
                "DATA_DIR": data_dir,
                "COMPANY_NAME": demo_mod.DEMO_COMPANY,
            },
            require_stripe=True,
        )
        demo_mod.run(settings, days=days, echo=typer.echo, shown_dir=data_dir)


@sandbox_app.command("serve", short_help="Serve the sandbox account on 127.0.0.1.")
def sandbox_serve(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, metavar="PORT", help="Port on 127.0.0.1.")
    ] = 12111,
) -> None:
    """Serve the built-in Stripe-compatible sandbox account on 127.0.0.1 until Ctrl-C."""
    with _errors():
        from bot.sandbox import serve

        try:
            serve(port=port)
        except OSError as e:
            _fatal(f"cannot listen on 127.0.0.1:{port} ({e.strerror}); choose another --port", 1)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point (and ``python -m bot``).

    When the command returns, its work is done: files written and closed, the ledger
    committed, children joined. The process then leaves without the interpreter's teardown,
    which frees every object one at a time and cost ~0.15 s after a workbook write (a tenth of
    a day's run, B3 in ``bench/results.md``). Tests run ``app`` itself, never this.
    """
    # A run allocates many small containers (dashboard cells, P&L rows) and frees them at the
    # end; the default threshold (700) makes the collector walk the heap hundreds of times a
    # run for cycles there are hardly any of. A cycle still gets collected, later.
    gc.set_threshold(50_000, 20, 100)
    try:
        app(args=argv if argv is not None else sys.argv[1:], prog_name="revbot")
        code: int | str | None = 0
    except SystemExit as e:
        code = e.code
    if isinstance(code, str):  # what sys.exit("message") would have printed
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed pipe (`revbot status | head`)
            stream.flush()
    logging.shutdown()
    os._exit(code or 0)


__all__ = ["app", "main"]
