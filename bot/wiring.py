"""Settings -> the objects a job needs. The only place that picks implementations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.dashboard.base import Dashboard
from bot.errors import ConfigError
from bot.jobs.context import Context
from bot.jobs.investor_email import Email
from bot.ledger import Ledger
from bot.lock import exclusive

if TYPE_CHECKING:
    from collections.abc import Callable

    from bot.mail.senders import Mailer
    from bot.stripe_source import StripeSource
    from bot.xero import XeroBooks


def settings(
    overrides: dict[str, str | None] | None = None,
    *,
    require_stripe: bool = True,
    ignore_stripe: bool = False,
    check_dashboard: bool = False,
) -> Settings:
    """The command's settings (flag > environment > .env > default), checked before any I/O;
    its secrets are added to the redaction filter."""
    from bot.config import resolve
    from bot.logs import REDACT

    resolved = resolve(
        overrides=overrides, require_stripe=require_stripe, ignore_stripe=ignore_stripe
    )
    REDACT.add(s.reveal() for s in resolved.secrets)
    if check_dashboard:
        # A malformed GOOGLE_SHEET_ID or credentials file is a bad setting like any other:
        # refuse it before DATA_DIR, the lock or the ledger is touched (building the
        # dashboard reads the key file but makes no request).
        make_dashboard(resolved)
    return resolved


def open_ledger(settings: Settings, *, read_only: bool = False) -> Ledger:
    return Ledger.open(settings.data_dir / "state.sqlite", read_only=read_only)


def make_dashboard(settings: Settings) -> Dashboard:
    if settings.google_sheet_id:
        from bot.dashboard.sheets import GoogleSheetDashboard

        return GoogleSheetDashboard(
            spreadsheet_id=settings.google_sheet_id,
            credentials_file=settings.google_credentials,
            api_url=settings.google_sheets_api_url,
            timezone=settings.timezone,
            index_path=settings.data_dir / ".sheet-index.sqlite",
        )
    from bot.dashboard.workbook import WorkbookDashboard

    return WorkbookDashboard(settings.data_dir / "dashboard.xlsx")


def make_mailer(settings: Settings) -> Mailer:
    """Resend when RESEND_API_KEY is set, else the outbox in DATA_DIR."""
    if settings.resend_api_key:
        from bot.mail.resend_sender import ResendMailer

        return ResendMailer(
            api_key=settings.resend_api_key.reveal(), api_url=settings.resend_api_url
        )
    from bot.mail.outbox import OutboxMailer

    return OutboxMailer(outbox_dir=settings.data_dir / "outbox")


def make_books(settings: Settings) -> XeroBooks:
    """Xero, for `journal --to xero`: a Custom Connection's client id and secret."""
    from bot.xero import XeroBooks

    if not (settings.xero_client_id and settings.xero_client_secret):
        missing = [
            name
            for name, value in (
                ("XERO_CLIENT_ID", settings.xero_client_id),
                ("XERO_CLIENT_SECRET", settings.xero_client_secret),
            )
            if not value
        ]
        raise ConfigError(
            f"{' and '.join(missing)} {'are' if len(missing) > 1 else 'is'} not set; "
            "`journal --to xero` needs a Xero Custom "
            "Connection (developer.xero.com > My Apps > New app > Custom connection, scope "
            "accounting.transactions and accounting.settings.read): put its client id and "
            "secret in the environment or .env"
        )
    return XeroBooks(
        settings.xero_client_id,
        settings.xero_client_secret.reveal(),
        api_url=settings.xero_api_url,
        identity_url=settings.xero_identity_url,
    )


def make_source(settings: Settings) -> StripeSource:
    from bot.stripe_source import StripeSource

    return StripeSource(
        api_key=settings.require_stripe(),
        api_base=settings.stripe_api_base,
        max_rps=settings.stripe_max_rps,
    )


def make_context(
    settings: Settings,
    *,
    ledger: Ledger,
    need_stripe: bool = True,
    progress: Callable[[str], None] | None = None,
    now: datetime | None = None,
) -> Context:
    return Context(
        ledger=ledger,
        dashboard=make_dashboard(settings),
        source=make_source(settings) if need_stripe else None,
        tz=settings.tz,
        now=now or datetime.now(UTC),
        progress=progress or (lambda _m: None),
        mode=settings.key_mode or "test",
        transactions_days=settings.sheet_transactions_days,
    )


@contextmanager
def session(
    settings: Settings,
    *,
    command: str,
    dry_run: bool = False,
    need_stripe: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Iterator[Context]:
    """One command's run: the lock on DATA_DIR (none for a dry run, which writes nothing, not
    even the lock file), the ledger (read-only for a dry run), the job context; the ledger is
    closed and the lock released when the block ends, however it ends."""
    with (
        nullcontext() if dry_run else exclusive(settings.data_dir, command=command),
        open_ledger(settings, read_only=dry_run) as ledger,
    ):
        yield make_context(settings, ledger=ledger, need_stripe=need_stripe, progress=progress)


def make_email(settings: Settings, *, required: bool, to: list[str] | None = None) -> Email | None:
    """The investor email's settings; None when not configured and not required. With ``to``
    (`resend --to`), INVESTOR_EMAILS is not needed."""
    if not required and not settings.investor_emails:
        return None
    if to:  # resend --to ADDR
        sender, recipients = settings.require_email(way_out=None, need_investors=False)
    elif to is not None:  # resend to every investor
        sender, recipients = settings.require_email(way_out="or name recipients with --to ADDR")
    else:
        sender, recipients = settings.require_email()
    return Email(
        sender=sender,
        recipients=recipients,
        mailer=make_mailer(settings),
        company=settings.company_name,
        allow_test_data=settings.stripe_mode != "live",
    )
