"""`revbot demo`: the whole pipeline against the built-in sandbox, into DATA_DIR."""

from __future__ import annotations

import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot import wiring
from bot.billing_store import billing_counts
from bot.config import Settings
from bot.errors import ConfigError, RevbotError
from bot.jobs.backfill import backfill
from bot.jobs.daily import daily as daily_job
from bot.jobs.investor_email import Email
from bot.jobs.monthly import monthly_and_send
from bot.ledger import Ledger
from bot.lock import exclusive
from bot.mail.outbox import OutboxMailer
from bot.periods import Month, last_closed_month

# A test-mode key the sandbox accepts; it is not a secret and reaches no real account.
DEMO_KEY = "sk_test_revbotdemo0000000000"
DEMO_COMPANY = "Demo Company (sandbox)"
# Written into the ledgers the demo creates: the only ones it will ever write into.
DEMO_MARK = "created_by_demo"


def overrides(data_dir: str) -> dict[str, str | None]:
    """The settings the demo forces: the sandbox's key, test mode, its own folder and name."""
    return {"STRIPE_SECRET_KEY": DEMO_KEY, "STRIPE_MODE": "test", "DATA_DIR": data_dir,
            "COMPANY_NAME": DEMO_COMPANY}  # fmt: skip


def check_folder(data_dir: Path) -> None:
    """Refuse a folder whose ledger the demo did not create: sandbox transactions must never
    mix with a real account's."""
    path = data_dir / "state.sqlite"
    if not path.exists():
        return
    try:
        ledger = Ledger.open(path, read_only=True)
    except RevbotError:
        mark = None
    else:
        try:
            mark = ledger.get_meta(DEMO_MARK)
        finally:
            ledger.close()
    if mark != "yes":
        raise ConfigError(
            f"{data_dir} holds a ledger that `revbot demo` did not create, and the demo never "
            "writes into a real ledger; run it with another --data-dir (or none: "
            "revbot-demo-data)"
        )


def _revbot() -> str:
    """How the person who started this process would type revbot again."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name == "revbot":
        on_path = shutil.which("revbot")
        if on_path and Path(on_path).resolve() == Path(argv0).resolve():
            return "revbot"
        return shlex.quote(argv0)
    return "revbot"


def run(
    settings: Settings, *, days: int, echo: Callable[[str], None], shown_dir: str | None = None
) -> None:
    from bot.sandbox import BillingApi, SandboxAccount, SandboxBilling, SandboxServer

    check_folder(settings.data_dir)
    now = datetime.now(UTC)
    today = now.astimezone(settings.tz).date()
    account = SandboxAccount.generate(end=today, days=days + 7, tz=settings.timezone)
    billing = BillingApi(SandboxBilling.generate(end=today, tz=settings.timezone))
    with (
        SandboxServer(account, billing=billing) as server,
        exclusive(settings.data_dir, command="demo"),
    ):
        demo_settings = replace(settings, stripe_api_base=server.url, google_sheet_id=None)
        echo(
            f"sandbox account on {server.url}: {len(account.transactions)} transactions, "
            f"{len(billing.billing.subscriptions)} subscriptions, "
            f"{len(billing.billing.invoices)} invoices"
        )
        check_folder(settings.data_dir)  # again, under the lock
        ledger = wiring.open_ledger(demo_settings)
        with ledger.transaction() as conn:
            ledger.set_meta(conn, DEMO_MARK, "yes")
        ctx = wiring.make_context(demo_settings, ledger=ledger, now=now)
        since = today - timedelta(days=days)
        result = backfill(ctx, since=since)
        echo(f"backfill {result.since} … {result.until}: {result.fetched} transactions")
        daily = daily_job(ctx)
        for error in (result.error, daily.error):
            if error is not None:
                raise error
        echo(f"daily {daily.day}: {daily.fetched} transactions re-read")
        if daily.billing is not None:
            stored = billing_counts(ledger)
            echo(
                f"billing: {stored['subscriptions']} subscriptions, {stored['invoices']} "
                "invoices in the ledger"
            )
        # Every month the history covers gets its report, so the Monthly tab has a trend; the
        # last one's investor email goes to the outbox (never to a real address).
        month = Month.of(since).next()
        last = last_closed_month(now, settings.tz)
        email = Email(
            sender="Demo Finance <finance@demo.example>",
            recipients=("investor@demo.example",),
            mailer=OutboxMailer(outbox_dir=demo_settings.data_dir / "outbox"),
            company=settings.company_name,
            allow_test_data=True,
        )
        while month <= last:
            out = monthly_and_send(
                ctx,
                month=month,
                archive_dir=demo_settings.data_dir / "archive",
                mode="test",
                email=email if month == last else None,
            )
            state = "reconciled" if out.result.reconciled else "NOT reconciled"
            echo(f"monthly {month}: {state}")
            month = month.next()
        ledger.close()
    where = shlex.quote(shown_dir or str(settings.data_dir))
    echo("")
    echo(f"Open the dashboard: {daily.dashboard}")
    echo(f"The investor email: {demo_settings.data_dir / 'outbox'}")
    echo(f"Ledger: {demo_settings.data_dir / 'state.sqlite'}")
    echo(f"Try: DATA_DIR={where} {_revbot()} status")
