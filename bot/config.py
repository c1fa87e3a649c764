"""Settings, resolved once: CLI flag > environment > ``.env`` file > default.

Everything is validated here, before any I/O, so a bad setting ends the command with exit 78
and one line before anything is read from Stripe or written anywhere.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.errors import ConfigError
from bot.mail.addresses import parse_address_list, validate_address
from bot.periods import zone

_KEY_RE = re.compile(r"^(sk|rk)_(live|test)_[A-Za-z0-9]{10,247}$")


class Secret:
    """A string that never shows itself in ``str``, ``repr``, f-strings or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def masked(self) -> str:
        return mask(self._value)

    def __repr__(self) -> str:
        return f"Secret({self.masked()})"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def mask(value: str) -> str:
    """Prefix and last four characters only: ``sk_test_…abcd``."""
    m = re.match(r"^([a-z]{2,4}_(?:live_|test_)?)", value)
    prefix = m.group(1) if m else ""
    tail = value[-4:] if len(value) >= len(prefix) + 8 else ""
    return f"{prefix}…{tail}"


def read_dotenv(path: Path) -> dict[str, str]:
    """The variables of a ``.env`` file, read exactly as python-dotenv's ``dotenv_values`` reads
    them (quotes, ``export``, comments, escapes, ``${VAR}``); a UTF-8 byte-order mark is fine.

    A line python-dotenv cannot parse is an error here (it would only warn and skip it)."""
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e.__class__.__name__}; fix or remove it") from e
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            n = binding.original.line
            raise ConfigError(f"{path}:{n} is not a KEY=value line; fix or remove it")
    values = dotenv_values(stream=io.StringIO(text), interpolate=True)
    return {k: v for k, v in values.items() if v is not None}


class Source:
    """Looks a variable up in the environment, then in ``.env``."""

    def __init__(self, environ: Mapping[str, str], dotenv: Mapping[str, str]) -> None:
        self._environ = environ
        self._dotenv = dotenv

    def get(self, name: str, default: str | None = None) -> str | None:
        for layer in (self._environ, self._dotenv):
            value = layer.get(name)
            if value is not None and value.strip() != "":
                return value.strip()
        return default


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    timezone: str
    stripe_key: Secret | None = None
    stripe_mode: str | None = None
    stripe_api_base: str | None = None
    stripe_max_rps: float = 20.0
    google_sheet_id: str | None = None
    google_credentials: Path = Path("credentials.json")
    google_sheets_api_url: str | None = None
    resend_api_key: Secret | None = None
    resend_api_url: str | None = None
    email_from: str | None = None
    investor_emails: tuple[str, ...] = ()
    company_name: str = "Your company"
    slack_webhook_url: Secret | None = None
    alert_emails: tuple[str, ...] = ()
    sheet_transactions_days: int = 400
    accounting_accounts: str | None = None  # ACCOUNTING_ACCOUNTS as written; read by journal
    xero_client_id: str | None = None
    xero_client_secret: Secret | None = None
    xero_api_url: str | None = None
    xero_identity_url: str | None = None
    secrets: tuple[Secret, ...] = field(default=(), repr=False)

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)

    @property
    def key_mode(self) -> str | None:
        """``live`` or ``test``, read off the key's prefix."""
        if self.stripe_key is None:
            return None
        return self.stripe_key.reveal().split("_")[1]

    def require_email(
        self, *, way_out: str | None = "or use --no-send", need_investors: bool = True
    ) -> tuple[str, tuple[str, ...]]:
        """(sender, investors) for commands that send the investor email. ``way_out`` is the
        command's own alternative to setting the variable, named in the message."""
        hint = f" ({way_out})" if way_out else ""
        if need_investors and not self.investor_emails:
            raise ConfigError(
                f"INVESTOR_EMAILS is not set; list the investors' addresses, comma-separated{hint}"
            )
        if not self.email_from:
            raise ConfigError(
                "EMAIL_FROM is not set; set it to the sender, e.g. "
                f"'Acme Finance <finance@acme.com>'{hint}"
            )
        return self.email_from, self.investor_emails

    def require_stripe(self) -> Secret:
        if self.stripe_key is None:
            raise ConfigError(
                "STRIPE_SECRET_KEY is not set; put a secret (sk_) or restricted (rk_) key in "
                "the environment or in .env"
            )
        return self.stripe_key


def _url(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not re.match(r"^https?://[^\s/]+", value):
        raise ConfigError(f"{name}={value!r} is not a URL; use e.g. http://127.0.0.1:12111")
    return value.rstrip("/")


def _check_key(value: str, mode: str | None) -> Secret:
    secret = Secret(value)
    if value.startswith(("pk_live_", "pk_test_")):
        raise ConfigError(
            f"STRIPE_SECRET_KEY is a publishable key ({secret.masked()}); revbot needs a secret "
            "(sk_) or restricted (rk_) key from the Stripe Dashboard, Developers > API keys"
        )
    if not _KEY_RE.match(value):
        raise ConfigError(
            f"STRIPE_SECRET_KEY ({secret.masked()}) is not a Stripe secret or restricted key "
            "(sk_live_…, sk_test_…, rk_live_…, rk_test_…); copy it again, whole"
        )
    key_mode = value.split("_")[1]
    if mode is not None and key_mode != mode:
        raise ConfigError(
            f"STRIPE_MODE={mode} but STRIPE_SECRET_KEY is a {key_mode}-mode key "
            f"({secret.masked()}); use a {mode} key or set STRIPE_MODE={key_mode}"
        )
    return secret


def resolve(
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    overrides: Mapping[str, str | None] | None = None,
    require_stripe: bool = True,
    ignore_stripe: bool = False,
) -> Settings:
    """Build and validate :class:`Settings`. ``overrides`` are CLI flags by variable name."""
    cwd = cwd or Path.cwd()
    env = dict(os.environ if environ is None else environ)
    for name, value in (overrides or {}).items():
        if value is not None:
            env[name] = value
    src = Source(env, read_dotenv(cwd / ".env"))
    secrets: list[Secret] = []

    timezone = src.get("REPORT_TIMEZONE", "UTC") or "UTC"
    zone(timezone)

    mode = src.get("STRIPE_MODE")
    if mode is not None:
        mode = mode.lower()
        if mode not in ("live", "test"):
            # Echo a word; never what may be a key pasted into the wrong variable.
            shown = f"={mode!r}" if re.fullmatch(r"[a-z]{1,12}", mode) else " (value not shown)"
            raise ConfigError(f"STRIPE_MODE{shown} must be 'live' or 'test' (or unset)")

    stripe_key: Secret | None = None
    # A command that reads only the ledger (status) neither needs nor checks a key.
    raw_key = None if ignore_stripe else src.get("STRIPE_SECRET_KEY")
    if raw_key is not None:
        stripe_key = _check_key(raw_key, mode)
        secrets.append(stripe_key)
    elif require_stripe and not ignore_stripe:
        raise ConfigError(
            "STRIPE_SECRET_KEY is not set; put a secret (sk_) or restricted (rk_) key in the "
            "environment or in .env (try `revbot demo` to see revbot without one)"
        )

    rps_text = src.get("STRIPE_MAX_RPS", "20") or "20"
    try:
        rps = float(rps_text)
    except ValueError:
        rps = -1.0
    # Below a tenth of a request per second a run would wait silently for minutes per page.
    if not 0.1 < rps <= 100:
        shown_rps = rps_text if len(rps_text) <= 20 else rps_text[:19] + "…"
        raise ConfigError(
            f"STRIPE_MAX_RPS={shown_rps!r} must be a number of requests per second in (0.1, 100]"
        )

    days_text = (src.get("SHEET_TRANSACTIONS_DAYS", "400") or "400").strip()
    if not re.fullmatch(r"\d{1,6}", days_text):
        shown_days = days_text if len(days_text) <= 20 else days_text[:19] + "…"
        raise ConfigError(
            f"SHEET_TRANSACTIONS_DAYS={shown_days!r} must be a whole number of days, e.g. 400 "
            "(0: no Transactions tab)"
        )

    resend_key = src.get("RESEND_API_KEY")
    resend_secret = Secret(resend_key) if resend_key else None
    if resend_secret:
        secrets.append(resend_secret)
    slack = src.get("SLACK_WEBHOOK_URL")
    slack_secret = Secret(slack) if slack else None
    if slack_secret:
        secrets.append(slack_secret)

    xero_secret_text = src.get("XERO_CLIENT_SECRET")
    xero_secret = Secret(xero_secret_text) if xero_secret_text else None
    if xero_secret:
        secrets.append(xero_secret)

    data_dir = Path(src.get("DATA_DIR", "./revbot-data") or "./revbot-data")
    if not data_dir.is_absolute():
        data_dir = cwd / data_dir
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(
            f"DATA_DIR {data_dir} is a file, not a folder; point DATA_DIR at a folder (revbot "
            "creates it if it does not exist)"
        )
    creds = Path(src.get("GOOGLE_APPLICATION_CREDENTIALS", "credentials.json") or "")
    if not creds.is_absolute():
        creds = cwd / creds

    return Settings(
        data_dir=data_dir,
        timezone=timezone,
        stripe_key=stripe_key,
        stripe_mode=mode,
        stripe_api_base=_url("STRIPE_API_BASE", src.get("STRIPE_API_BASE")),
        stripe_max_rps=rps,
        google_sheet_id=src.get("GOOGLE_SHEET_ID"),
        google_credentials=creds,
        google_sheets_api_url=_url("GOOGLE_SHEETS_API_URL", src.get("GOOGLE_SHEETS_API_URL")),
        resend_api_key=resend_secret,
        resend_api_url=_url("RESEND_API_URL", src.get("RESEND_API_URL")),
        email_from=_sender(src.get("EMAIL_FROM")),
        investor_emails=parse_address_list(src.get("INVESTOR_EMAILS") or ""),
        company_name=src.get("COMPANY_NAME", "Your company") or "Your company",
        slack_webhook_url=slack_secret,
        alert_emails=parse_address_list(src.get("ALERT_EMAILS") or "", variable="ALERT_EMAILS"),
        sheet_transactions_days=int(days_text),
        accounting_accounts=src.get("ACCOUNTING_ACCOUNTS") or None,
        xero_client_id=(src.get("XERO_CLIENT_ID") or "").strip() or None,
        xero_client_secret=xero_secret,
        xero_api_url=_url("XERO_API_URL", src.get("XERO_API_URL")),
        xero_identity_url=_url("XERO_IDENTITY_URL", src.get("XERO_IDENTITY_URL")),
        secrets=tuple(secrets),
    )


def _sender(value: str | None) -> str | None:
    if value is None:
        return None
    return validate_address(value, variable="EMAIL_FROM", allow_display_name=True)
