"""Settings -> the objects a job needs. The only place that picks implementations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.dashboard.base import Dashboard
from bot.jobs import Context
from bot.ledger import Ledger

if TYPE_CHECKING:
    from collections.abc import Callable

    from bot.mail.senders import Mailer
    from bot.stripe_source import StripeSource


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
    )
