"""`revbot doctor`: one line per check, and a fix for each one that fails."""

from __future__ import annotations

import contextlib
import json
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from bot.config import Settings
from bot.errors import RevbotError, TemporaryError
from bot.stripe_port import BILLING_PERMISSIONS, NEEDED_FOR, StripePort, Unavailable

Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "skip"}[self.status]
        text = f"[{mark}] {self.name}: {self.detail}"
        return f"{text} -> {self.fix}" if self.fix else text


# Where a key comes from, for someone who has never made one.
KEY_FIX = (
    "in the Stripe Dashboard (https://dashboard.stripe.com/apikeys), Developers > API keys > "
    "Create restricted key, with read access to Balance, Report runs and Files (and to "
    "Subscriptions and Invoices, for investor metrics); put it in STRIPE_SECRET_KEY "
    "(environment or .env)"
)


def _probe(name: str, fn: Callable[[], str], fix: str, *, unreachable: str = "") -> Check:
    """``fix`` for a refusal; ``unreachable`` (when given) for a service that did not answer:
    no permission fixes a network that is down."""
    try:
        return Check(name, "ok", fn())
    except TemporaryError as e:
        return Check(name, "fail", str(e), unreachable or fix)
    except RevbotError as e:
        return Check(name, "fail", str(e), fix)


def stripe_checks(settings: Settings, source: StripePort | None) -> Iterator[Check]:
    key = settings.stripe_key
    if key is None or source is None:
        yield Check(
            "Stripe key",
            "fail",
            "STRIPE_SECRET_KEY is not set",
            KEY_FIX,
        )
        return
    mode = settings.key_mode
    detail = f"{key.masked()} ({mode} mode)"
    if settings.stripe_mode is None:
        yield Check(
            "Stripe key",
            "warn",
            detail + ", STRIPE_MODE unset",
            f"set STRIPE_MODE={mode} so a key of the other mode is refused",
        )
    else:
        yield Check("Stripe key", "ok", detail + f", matches STRIPE_MODE={settings.stripe_mode}")
    if key.reveal().startswith("sk_"):
        yield Check(
            "Stripe key kind",
            "warn",
            "a full secret key (sk_) can write to your account",
            "use a restricted read-only key (rk_) with Balance, Report runs, Files, Subscriptions "
            "and Invoices read",
        )
    else:
        yield Check("Stripe key kind", "ok", "restricted key (rk_)")

    from bot.periods import Interval

    def balance() -> str:
        page = next(iter(source.iter_pages(Interval(0, 2**31 - 1))), [])
        return f"balance transactions readable ({'some' if page else 'none yet'})"

    def report_types() -> str:
        rt = source.report_type("balance_change_from_activity.summary.1")
        end = rt.get("data_available_end")
        until = (
            datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%d %H:%M UTC")
            if isinstance(end, int)
            else "not yet"
        )
        return f"report types readable (data available until {until})"

    def files() -> str:
        source.check_files_access()
        return "files readable"

    perm_fix = "give the restricted key read access to Balance, Report runs and Files"
    where = settings.stripe_api_base or "https://api.stripe.com"
    net_fix = (
        f"check that this machine can reach {where} (network, proxy, firewall"
        + (", STRIPE_API_BASE" if settings.stripe_api_base else "")
        + ") and run `revbot doctor` again"
    )
    yield _probe("Stripe balance transactions", balance, perm_fix, unreachable=net_fix)
    yield _probe("Stripe report runs", report_types, perm_fix, unreachable=net_fix)
    yield _probe("Stripe files", files, perm_fix, unreachable=net_fix)
    for resource, pages in (
        ("subscriptions", lambda: source.iter_subscriptions()),
        ("invoices", lambda: source.iter_invoices()),
        ("payouts", lambda: source.iter_payouts(gte=0, lt=int(time.time()) + 86_400)),
    ):
        yield _billing_probe(resource, pages, net_fix)


def _billing_probe(resource: str, pages: Callable[[], Iterable[object]], net_fix: str) -> Check:
    """One page of a Billing resource. Without it revbot still reports the P&L: a missing
    permission is a warning that names the permission to add, not a failure."""
    name = f"Stripe {resource}"
    try:
        page = next(iter(pages()), [])
    except Unavailable as e:
        return Check(name, "warn", str(e), e.fix)
    except TemporaryError as e:
        return Check(name, "fail", str(e), net_fix)
    except RevbotError as e:
        permission = BILLING_PERMISSIONS[resource]
        return Check(name, "fail", str(e), f"check STRIPE_SECRET_KEY; it needs {permission!r}")
    found = "some" if page else "none yet"
    return Check(name, "ok", f"{resource} readable ({found}; for {NEEDED_FOR[resource]})")


def sheet_checks(settings: Settings) -> Iterator[Check]:
    if not settings.google_sheet_id:
        yield Check(
            "dashboard",
            "ok",
            f"local workbook {settings.data_dir / 'dashboard.xlsx'} "
            "(set GOOGLE_SHEET_ID for a Google Sheet)",
        )
        return
    creds = settings.google_credentials
    try:
        mode = creds.stat().st_mode
    except OSError:
        yield Check(
            "Google credentials",
            "fail",
            f"{creds} cannot be read",
            "download the service account's JSON key and set GOOGLE_APPLICATION_CREDENTIALS",
        )
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        yield Check(
            "Google credentials",
            "warn",
            f"{creds} is readable by other users",
            f"chmod 600 {creds}",
        )
    else:
        yield Check("Google credentials", "ok", f"{creds} readable by you only")
    email = ""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        email = str(json.loads(creds.read_text()).get("client_email", ""))
    from bot.dashboard.sheets import GoogleSheetDashboard

    def reach() -> str:
        dash = GoogleSheetDashboard(
            spreadsheet_id=settings.google_sheet_id or "",
            credentials_file=creds,
            api_url=settings.google_sheets_api_url,
            timezone=settings.timezone,
            max_wait=10.0,
        )
        return f"spreadsheet {dash.check()!r} reachable and shared"

    yield _probe(
        "Google Sheet",
        reach,
        f"share the sheet with {email or 'the service account e-mail'} as Editor",
    )


def email_checks(settings: Settings) -> Iterator[Check]:
    if not settings.investor_emails:
        yield Check("investor email", "skip", "INVESTOR_EMAILS not set: reports are not emailed")
        return
    if not settings.email_from:
        yield Check(
            "investor email",
            "fail",
            "EMAIL_FROM is not set",
            "set EMAIL_FROM, e.g. 'Acme Finance <finance@acme.com>'",
        )
        return
    yield Check("investor email", "ok", f"{len(settings.investor_emails)} recipient(s)")
    if settings.resend_api_key is None:
        yield Check(
            "Resend", "skip", f"RESEND_API_KEY not set: emails go to {settings.data_dir / 'outbox'}"
        )
        return
    from bot.mail.resend_sender import ResendMailer

    mailer = ResendMailer(
        api_key=settings.resend_api_key.reveal(), api_url=settings.resend_api_url, max_attempts=1
    )
    domain = settings.email_from.rsplit("@", 1)[-1].rstrip(">").lower()
    try:
        domains = mailer.domains()
    except RevbotError as e:
        yield Check(
            "Resend", "fail", str(e), "create a new API key in Resend and set RESEND_API_KEY"
        )
        return
    if domains is None:
        yield Check(
            "Resend",
            "ok",
            "key accepted (sending access only: the sender domain cannot be checked)",
        )
        return
    status = dict(domains).get(domain)
    if status == "verified":
        yield Check("Resend", "ok", f"key accepted, sender domain {domain} verified")
    else:
        yield Check(
            "Resend",
            "fail",
            f"sender domain {domain} is {status or 'not added'} in Resend",
            f"add and verify {domain} in Resend (Domains), or change EMAIL_FROM",
        )


def data_dir_check(settings: Settings) -> Check:
    d = settings.data_dir
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".doctor-"):
            pass
    except OSError as e:
        return Check(
            "DATA_DIR",
            "fail",
            f"{d} is not writable ({e.strerror})",
            "point DATA_DIR at a folder revbot may write to",
        )
    return Check("DATA_DIR", "ok", f"{d} writable")


def run(settings: Settings, source: StripePort | None) -> list[Check]:
    checks = [data_dir_check(settings)]
    checks += list(stripe_checks(settings, source))
    checks += list(sheet_checks(settings))
    checks += list(email_checks(settings))
    checks += list(alert_checks(settings))
    checks += list(xero_checks(settings))
    return checks


def xero_checks(settings: Settings) -> Iterator[Check]:
    """When Xero is configured: the Custom Connection, its organisation, and that each
    account ACCOUNTING_ACCOUNTS maps to is in its chart of accounts."""
    if not (settings.xero_client_id or settings.xero_client_secret):
        return
    from bot import wiring
    from bot.journal import ACCOUNT_KEYS, parse_accounts

    fix = (
        "check XERO_CLIENT_ID and XERO_CLIENT_SECRET against the Custom Connection at "
        "developer.xero.com > My Apps (scopes accounting.transactions and "
        "accounting.settings.read)"
    )
    try:
        books = wiring.make_books(settings)
        org = books.connect()
        codes = books.account_codes()
    except TemporaryError as e:
        yield Check("Xero", "fail", str(e), "check the network (and XERO_API_URL), try again")
        return
    except RevbotError as e:
        yield Check("Xero", "fail", str(e), fix)
        return
    yield Check("Xero", "ok", f"connected to {org.name}")
    try:
        accounts = parse_accounts(settings.accounting_accounts)
    except RevbotError as e:
        yield Check("Xero accounts", "fail", str(e))
        return
    missing = [f"{k}={accounts[k].code}" for k in ACCOUNT_KEYS if accounts[k].code not in codes]
    if missing:
        yield Check(
            "Xero accounts",
            "fail",
            f"no such account in {org.name}'s chart of accounts: {', '.join(missing)}",
            "set ACCOUNTING_ACCOUNTS to codes from Accounting > Chart of accounts in Xero, "
            "e.g. sales=200,fees=404,clearing=610,bank=090",
        )
    else:
        yield Check("Xero accounts", "ok", "every account of ACCOUNTING_ACCOUNTS is in Xero")


def alert_checks(settings: Settings) -> Iterator[Check]:
    """The alert channels, tried for real: a message on the Slack webhook, the e-mail setup."""
    if settings.slack_webhook_url:
        from bot import slack

        try:
            response = slack.post(
                settings.slack_webhook_url.reveal(),
                "revbot doctor: this webhook works; revbot's alerts and daily summary come here.",
                sleep=lambda _: None,
            )
        except Exception as e:  # slack_sdk's own errors: nothing of ours to convert
            yield Check(
                "Slack",
                "fail",
                f"SLACK_WEBHOOK_URL cannot be reached ({type(e).__name__})",
                "check the network, or create a new incoming webhook and set SLACK_WEBHOOK_URL",
            )
        else:
            if response.status_code == 200:
                yield Check("Slack", "ok", "test message posted to SLACK_WEBHOOK_URL")
            else:
                yield Check(
                    "Slack",
                    "fail",
                    f"SLACK_WEBHOOK_URL answered HTTP {response.status_code}",
                    "the webhook was revoked or mistyped: create a new incoming webhook in Slack "
                    "and set SLACK_WEBHOOK_URL",
                )
    if not settings.alert_emails:
        return
    if not settings.email_from:
        yield Check(
            "alert e-mail",
            "fail",
            f"ALERT_EMAILS names {len(settings.alert_emails)} founder(s) but EMAIL_FROM is not set",
            "set EMAIL_FROM, e.g. 'Acme Finance <finance@acme.com>': alerts are sent from it",
        )
    elif settings.resend_api_key is None:
        yield Check(
            "alert e-mail",
            "warn",
            f"RESEND_API_KEY is not set: alerts are written to {settings.data_dir / 'outbox'}, "
            "where nobody will see them",
            "set RESEND_API_KEY so that alerts reach ALERT_EMAILS",
        )
    else:
        from bot.mail.resend_sender import ResendMailer

        mailer = ResendMailer(
            api_key=settings.resend_api_key.reveal(),
            api_url=settings.resend_api_url,
            max_attempts=1,
        )
        try:
            mailer.domains()
        except RevbotError as e:
            yield Check("alert e-mail", "fail", str(e), "set a working RESEND_API_KEY")
            return
        count = len(settings.alert_emails)
        yield Check(
            "alert e-mail", "ok", f"{count} founder(s), through Resend as {settings.email_from}"
        )
