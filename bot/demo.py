"""`revbot demo`: the whole pipeline against the built-in sandbox, into DATA_DIR."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot import backfill as backfill_mod
from bot import flows, jobs, wiring
from bot.config import Settings
from bot.lock import exclusive
from bot.mail.outbox import OutboxMailer
from bot.periods import Month, last_closed_month

# A test-mode key the sandbox accepts; it is not a secret and reaches no real account.
DEMO_KEY = "sk_test_revbotdemo0000000000"


def run(settings: Settings, *, days: int, echo: Callable[[str], None]) -> None:
    from bot.sandbox import SandboxAccount, SandboxServer

    now = datetime.now(UTC)
    today = now.astimezone(settings.tz).date()
    account = SandboxAccount.generate(end=today, days=days + 7, tz=settings.timezone)
    with SandboxServer(account) as server, exclusive(settings.data_dir, command="demo"):
        demo_settings = replace(settings, stripe_api_base=server.url, google_sheet_id=None)
        echo(f"sandbox account on {server.url}: {len(account.transactions)} transactions")
        ledger = wiring.open_ledger(demo_settings)
        ctx = wiring.make_context(demo_settings, ledger=ledger, now=now)
        since = today - timedelta(days=days)
        result = backfill_mod.backfill(ctx, since=since)
        echo(f"backfill {result.since} … {result.until}: {result.fetched} transactions")
        daily = jobs.daily(ctx)
        echo(f"daily {daily.day}: {daily.fetched} transactions re-read")
        # Every month the history covers gets its report, so the Monthly tab has a trend; the
        # last one's investor email goes to the outbox (never to a real address).
        month = Month.of(since).next()
        last = last_closed_month(now, settings.tz)
        email = flows.Email(
            sender="Demo Finance <finance@demo.example>",
            recipients=("investor@demo.example",),
            mailer=OutboxMailer(outbox_dir=demo_settings.data_dir / "outbox"),
            company=settings.company_name,
            allow_test_data=True,
        )
        while month <= last:
            out = flows.monthly_and_send(
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
    echo("")
    echo(f"Open the dashboard: {daily.dashboard}")
    echo(f"The investor email: {demo_settings.data_dir / 'outbox'}")
    echo(f"Ledger: {demo_settings.data_dir / 'state.sqlite'}  (try `revbot status`)")
