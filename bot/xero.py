"""Xero Manual Journals through the official ``xero-python`` SDK, as a Custom Connection.

The only module of revbot that imports ``xero_python``. :class:`XeroBooks` gets an access
token with the client-credentials grant (``XERO_CLIENT_ID`` / ``XERO_CLIENT_SECRET``), finds
the one organisation the connection is for, and reads the chart of accounts and reads, creates
and updates draft Manual Journals.

Which root serves which path (each root a scheme and host, without a trailing path):

- the identity root, ``XERO_IDENTITY_URL`` (default ``https://identity.xero.com``):
  ``POST /connect/token``, the token endpoint (the SDK's ``TokenApi`` URL, set here per
  instance, never on the class);
- the API root, ``XERO_API_URL`` (default ``https://api.xero.com``): ``GET /connections``, the
  Identity API's connections (its OpenAPI ``servers`` and ``x-basepath`` are
  ``https://api.xero.com``, like the SDK's ``IdentityApi.base_url``; the SDK spells the path
  ``/Connections``, Xero matches paths without regard to case), and the Accounting API under
  ``/api.xro/2.0``.

A journal to send is anything with ``narration``, ``date`` and ``lines`` (:class:`JournalLike`:
``bot.journal.XeroJournal``, or :class:`NewJournal`), each line an ``account_code``, a
``description`` and a ``Decimal`` ``amount``, a debit positive, a credit negative (Xero's
``LineAmount`` convention); line amounts are ``NoTax``. :class:`XeroBooks` has the methods
``bot.jobs.journal.Books`` asks for. The lines are sent as given, so that Xero's own validation
message (an unbalanced journal, an unknown account code, a third decimal) reaches the user.

Exactly once: :meth:`XeroBooks.create_draft` carries an idempotency key the caller stored
before calling it; if the process dies after Xero made the journal but before the caller
recorded its id, calling again with the same key gets the same journal back, not a second one.
Xero keeps keys for minutes only (about six, in its public guidance), so a caller resuming
later should first look for the journal with :meth:`XeroBooks.find_journals` (a narration
unique to the month and currency makes that lookup exact). :meth:`XeroBooks.update_draft`
changes only a DRAFT: Xero itself lets an app change a POSTED manual journal, so the status is
read first and a journal that is not a draft is refused (:class:`JournalNotDraftError`).

Errors: a rejected client id or secret is a :class:`~bot.errors.ConfigError` (exit 78) naming
the setting and the fix; no answer, a timeout, 429 and 5xx are retried a few times and then
:class:`~bot.errors.TemporaryError` (75); a journal Xero refuses is a
:class:`~bot.errors.ServiceError` (1) with Xero's validation messages. Each is one line, made
here from the status and Xero's message: never the SDK's text (it quotes headers and bodies),
never the secret or the access token; the SDK's exception is not chained.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import urllib3
import urllib3.exceptions
from xero_python.accounting import AccountingApi  # type: ignore[import-untyped]
from xero_python.accounting.models import (  # type: ignore[import-untyped]
    LineAmountTypes,
    ManualJournal,
    ManualJournalLine,
    ManualJournals,
)
from xero_python.api_client import ApiClient  # type: ignore[import-untyped]
from xero_python.api_client.configuration import Configuration  # type: ignore[import-untyped]
from xero_python.api_client.oauth2 import OAuth2Token, TokenApi  # type: ignore[import-untyped]
from xero_python.exceptions import ApiException  # type: ignore[import-untyped]
from xero_python.identity import IdentityApi  # type: ignore[import-untyped]

from bot.deadline import RunCeilingReached, bounded
from bot.errors import ConfigError, RevbotError, ServiceError, TemporaryError
from bot.journal import LineLike
from bot.retry import RetryPolicy, retry_after

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_API_URL = "https://api.xero.com"
DEFAULT_IDENTITY_URL = "https://identity.xero.com"
ACCOUNTING_PATH = "/api.xro/2.0"
TOKEN_PATH = "/connect/token"
MAX_KEY = 128  # Xero's limit on an Idempotency-Key
TOKEN_MARGIN = 60.0  # fetch a new token this many seconds before the old one expires
DRAFT, POSTED = "DRAFT", "POSTED"
_CENT = Decimal("0.01")
_MANAGE = "https://developer.xero.com/app/manage"
_CREDENTIALS_FIX = (
    f"copy the Client id and Client secret of the Custom Connection app at {_MANAGE} into "
    "XERO_CLIENT_ID and XERO_CLIENT_SECRET (the environment or .env); generate a new secret "
    "there if it is lost"
)


class JournalLike(Protocol):
    """A journal to send (``bot.journal.XeroJournal`` is one, and so is :class:`NewJournal`)."""

    @property
    def narration(self) -> str: ...
    @property
    def date(self) -> dt.date: ...
    @property
    def lines(self) -> Sequence[LineLike]: ...


@dataclass(frozen=True, slots=True)
class JournalLine:
    """One line: ``amount`` a debit if positive, a credit if negative, at most 2 decimals."""

    account_code: str
    description: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class NewJournal:
    """A journal to send: its Narration, Date and JournalLines."""

    narration: str
    date: dt.date
    lines: tuple[JournalLine, ...]


@dataclass(frozen=True, slots=True)
class Journal:
    """A Manual Journal as Xero has it."""

    journal_id: str
    status: str  # DRAFT, POSTED, DELETED, VOIDED or ARCHIVED
    narration: str
    date: dt.date | None
    lines: tuple[JournalLine, ...]  # empty when Xero listed the journal without its lines

    @property
    def is_draft(self) -> bool:
        return self.status == DRAFT


@dataclass(frozen=True, slots=True)
class Account:
    """One account of the organisation's chart."""

    code: str
    name: str
    type: str  # REVENUE, EXPENSE, CURRENT, ...
    status: str  # ACTIVE, ARCHIVED or DELETED


@dataclass(frozen=True, slots=True)
class Organisation:
    """The organisation a Custom Connection is connected to."""

    tenant_id: str
    name: str


class JournalNotDraftError(ServiceError):
    """The journal is no longer a draft (the accountant posted, voided or deleted it)."""

    def __init__(self, journal_id: str, status: str) -> None:
        super().__init__(
            f"Xero manual journal {journal_id} is {status}, not a draft: revbot leaves it as it "
            "is (to change a posted month, reverse it in Xero)"
        )
        self.journal_id = journal_id
        self.status = status


class JournalNotFoundError(ServiceError):
    """Xero has no manual journal with this id."""

    def __init__(self, journal_id: str) -> None:
        super().__init__(f"Xero has no manual journal {journal_id} (was it deleted?)")
        self.journal_id = journal_id


class JournalMismatchError(ServiceError):
    """Xero stored a journal that differs from what was sent (lines dropped, a warning)."""

    def __init__(self, journal_id: str, detail: str) -> None:
        super().__init__(
            f"Xero stored manual journal {journal_id} differently from what revbot sent "
            f"({detail}); check it in Xero"
        )
        self.journal_id = journal_id


@dataclass(frozen=True, slots=True)
class _Verdict:
    error: RevbotError
    retry: bool = False
    wait: float | None = None
    reauth: bool = False


class _TimedPoolManager(urllib3.PoolManager):
    """A pool whose requests all have ``timeout``: the SDK passes ``timeout=None`` (no limit at
    all) unless a call is given ``_request_timeout``, and its token request never is."""

    def __init__(self, timeout: urllib3.Timeout, **kw: Any) -> None:
        super().__init__(**kw)
        self._revbot_timeout = timeout

    def urlopen(  # type: ignore[override]
        self, method: str, url: str, redirect: bool = True, **kw: Any
    ) -> urllib3.BaseHTTPResponse:
        if kw.get("timeout") is None:
            kw["timeout"] = self._revbot_timeout
        return super().urlopen(method, url, redirect=redirect, **kw)


def _root(url: str | None, default: str, setting: str) -> str:
    text = (url or default).strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{setting} must be an http(s) URL like {default}, not {text!r}")
    return text


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _text(value: Any) -> str:
    """A string from an SDK value (an Enum member gives its value, None an empty string)."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value)).quantize(_CENT)
    except (InvalidOperation, ValueError) as e:
        raise ServiceError(f"Xero answered a line amount revbot cannot read: {value!r}") from e


def check_idempotency_key(key: str) -> None:
    """A key Xero accepts: 1 to 128 visible ASCII characters."""
    if not key or len(key) > MAX_KEY or not all(33 <= ord(c) < 127 for c in key):
        raise ValueError(f"an Xero idempotency key is 1 to {MAX_KEY} visible ASCII characters")


class XeroBooks:
    """One Custom Connection's organisation in Xero. Not thread-safe: one per command.

    ``timeout`` bounds each read and connection (seconds); a whole request gives up after
    ``timeout + 30``. Transport failures, 429 (after ``Retry-After``) and 5xx are tried
    ``max_attempts`` times in all, waiting at most ``max_wait`` seconds overall.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        api_url: str | None = None,
        identity_url: str | None = None,
        timeout: float = 30.0,
        max_attempts: int = 3,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        client_id, client_secret = (client_id or "").strip(), (client_secret or "").strip()
        if not client_id:
            raise ConfigError(f"XERO_CLIENT_ID is empty: {_CREDENTIALS_FIX}")
        if not client_secret:
            raise ConfigError(f"XERO_CLIENT_SECRET is empty: {_CREDENTIALS_FIX}")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._secret = client_secret
        self.api_url = _root(api_url, DEFAULT_API_URL, "XERO_API_URL")
        self.identity_url = _root(identity_url, DEFAULT_IDENTITY_URL, "XERO_IDENTITY_URL")
        self._deadline = timeout + 30.0
        self._retry = RetryPolicy(
            base=1.0, cap=30.0, budget=max_wait, attempts=max_attempts,
            rng=rng or random.Random(), sleep=sleep,
        )  # fmt: skip
        self._clock = clock
        self._token: dict[str, Any] | None = None  # as the SDK's OAuth2Token.update_token takes
        self._token_expires = 0.0
        self._organisation: Organisation | None = None

        # Configuration() hands out copies of the first instance ever made, arguments included:
        # never pass it any, set what this connection needs on the copy.
        config = Configuration()
        config.debug = False  # True would print every request's headers, the token among them
        config.oauth2_token = OAuth2Token(client_id=client_id, client_secret=client_secret)
        self._client = ApiClient(
            config,
            pool_threads=1,
            oauth2_token_getter=self._get_token,
            oauth2_token_saver=self._save_token,
        )
        old = self._client.rest_client.pool_manager
        self._client.rest_client.pool_manager = _TimedPoolManager(
            urllib3.Timeout(connect=min(timeout, 10.0), read=timeout),
            num_pools=4,
            **{**old.connection_pool_kw, "retries": urllib3.Retry(total=0, redirect=False)},
        )
        old.clear()
        self._tokens = TokenApi(self._client, client_id, client_secret)
        self._tokens.client_credentials_token_url = self.identity_url + TOKEN_PATH
        self._identity = IdentityApi(self._client, base_url=self.api_url)
        self._accounting = AccountingApi(self._client, base_url=self.api_url + ACCOUNTING_PATH)

    def __repr__(self) -> str:
        return f"XeroBooks(api_url={self.api_url!r}, identity_url={self.identity_url!r})"

    # -- public ------------------------------------------------------------------------------

    @property
    def organisation(self) -> Organisation:
        """The connected organisation (connecting first if need be)."""
        if self._organisation is None:
            return self.connect()
        return self._organisation

    def connect(self) -> Organisation:
        """Get a token, then the one organisation the Custom Connection is connected to."""
        self._ensure_token()
        found = self._call("list the connections", lambda: self._identity.get_connections())
        orgs = [c for c in found or [] if _text(c.tenant_type).upper() == "ORGANISATION"]
        if len(orgs) != 1:
            names = ", ".join(repr(_text(c.tenant_name)) for c in orgs) or "none"
            raise ConfigError(
                f"the Xero Custom Connection of XERO_CLIENT_ID must be connected to exactly one "
                f"organisation, and is connected to {len(orgs)} ({names}): choose the "
                f"organisation in the app's settings at {_MANAGE}"
            )
        self._organisation = Organisation(_text(orgs[0].tenant_id), _text(orgs[0].tenant_name))
        return self._organisation

    def accounts(self) -> list[Account]:
        """The chart of accounts, by code."""
        tenant = self.organisation.tenant_id
        answer = self._call(
            "read the chart of accounts", lambda: self._accounting.get_accounts(tenant)
        )
        out = [
            Account(_text(a.code), _text(a.name), _text(a.type), _text(a.status))
            for a in (answer.accounts or [])
        ]
        return sorted(out, key=lambda a: a.code)

    def account_codes(self) -> set[str]:
        """The codes a journal line may use: those of the chart's ACTIVE accounts."""
        return {a.code for a in self.accounts() if a.status == "ACTIVE"}

    def journal_status(self, journal_id: str) -> str | None:
        """The status of manual journal ``journal_id`` (``DRAFT``, ``POSTED``, ...); None when
        Xero has no such journal."""
        try:
            return self.journal(journal_id).status
        except JournalNotFoundError:
            return None

    def journal(self, journal_id: str) -> Journal:
        """The manual journal ``journal_id``, its status and lines."""
        tenant = self.organisation.tenant_id
        answer = self._call(
            f"read manual journal {journal_id}",
            lambda: self._accounting.get_manual_journal(tenant, journal_id),
            not_found=lambda: JournalNotFoundError(journal_id),
        )
        found = [_journal(m) for m in (answer.manual_journals or [])]
        if len(found) != 1 or found[0].journal_id.lower() != journal_id.lower():
            raise ServiceError(f"Xero answered a read of manual journal {journal_id} with another")
        return found[0]

    def find_journals(self, narration: str) -> list[Journal]:
        """The manual journals whose narration is exactly ``narration``, lines included."""
        if '"' in narration or "\\" in narration:
            raise ValueError("a narration to look up may not contain '\"' or '\\'")
        tenant = self.organisation.tenant_id
        where = f'Narration=="{narration}"'
        out: list[Journal] = []
        page = 1
        while True:

            def one_page(page: int = page) -> Any:
                return self._accounting.get_manual_journals(tenant, where=where, page=page)

            answer = self._call("look up manual journals", one_page)
            batch = [_journal(m) for m in (answer.manual_journals or [])]
            out.extend(j for j in batch if j.narration == narration)
            if len(batch) < 100:
                return out
            page += 1

    def create_draft(self, journal: JournalLike, *, idempotency_key: str) -> str:
        """Create ``journal`` as a DRAFT manual journal; its ManualJournalID.

        ``idempotency_key`` must have been stored by the caller before this is called: the same
        key with the same journal returns the same ManualJournalID, however often it is sent
        within Xero's key lifetime.
        """
        check_idempotency_key(idempotency_key)
        narration, lines = journal.narration, journal.lines
        body = _journals(narration, journal.date, lines)
        tenant = self.organisation.tenant_id
        answer = self._call(
            f"create the manual journal {narration!r}",
            lambda: self._accounting.create_manual_journals(
                tenant, body, idempotency_key=idempotency_key
            ),
        )
        made = [_journal(m) for m in (answer.manual_journals or [])]
        if len(made) != 1 or not made[0].journal_id:
            raise ServiceError(f"Xero accepted the manual journal {narration!r} but returned no id")
        _compare(made[0], lines, answer.manual_journals[0])
        return made[0].journal_id

    def update_draft(self, journal_id: str, journal: JournalLike) -> None:
        """Replace the narration, date and lines of draft ``journal_id`` with ``journal``'s.

        Raises :class:`JournalNotDraftError` (and changes nothing) when it is not a draft.
        """
        current = self.journal(journal_id)
        if not current.is_draft:
            raise JournalNotDraftError(journal_id, current.status)
        lines = journal.lines
        body = _journals(journal.narration, journal.date, lines, journal_id=journal_id)
        tenant = self.organisation.tenant_id
        answer = self._call(
            f"update manual journal {journal_id}",
            lambda: self._accounting.update_manual_journal(tenant, journal_id, body),
            not_found=lambda: JournalNotFoundError(journal_id),
        )
        found = [_journal(m) for m in (answer.manual_journals or [])]
        if len(found) != 1:
            raise ServiceError(f"Xero answered the update of manual journal {journal_id} oddly")
        _compare(found[0], lines, answer.manual_journals[0])

    # -- the token ---------------------------------------------------------------------------

    def _get_token(self) -> dict[str, Any]:
        return dict(self._token or {})

    def _save_token(self, token: Mapping[str, Any]) -> None:
        self._token = {
            "access_token": token.get("access_token"),
            "scope": token.get("scope"),
            "expires_in": token.get("expires_in"),
            "token_type": token.get("token_type") or "Bearer",
        }

    def _ensure_token(self) -> None:
        if self._token is not None and self._clock() < self._token_expires - TOKEN_MARGIN:
            return
        self._token = None
        raw = self._call(
            "get an access token",
            lambda: self._tokens.get_client_credentials_token(False),
            token=True,
        )
        if not isinstance(raw, Mapping) or not raw.get("access_token"):
            raise ServiceError("Xero's identity service answered without an access token")
        self._save_token(raw)
        self._client.configuration.oauth2_token.update_token(**self._get_token())
        try:
            lifetime = float(raw.get("expires_in") or 1800)
        except (TypeError, ValueError):
            lifetime = 1800.0
        self._token_expires = self._clock() + lifetime

    # -- calls and their failures -------------------------------------------------------------

    def _call(
        self,
        what: str,
        fn: Callable[[], T],
        *,
        token: bool = False,
        not_found: Callable[[], RevbotError] | None = None,
    ) -> T:
        retries = self._retry.start()
        reauthorised = False
        while True:
            if not token:
                self._ensure_token()
            try:
                return bounded(fn, seconds=self._deadline, what="Xero")
            except RunCeilingReached:
                raise
            except Exception as e:  # the SDK's exceptions have no useful common base
                verdict = self._judge(e, what, token=token, not_found=not_found)
            if verdict.reauth and not reauthorised:
                reauthorised = True  # the token may have expired early: one new one
                self._token = None
                continue
            delay = retries.next_wait(verdict.wait) if verdict.retry else None
            if delay is not None:
                log.warning("Xero: %s; retrying in %.1fs", verdict.error, delay)
                retries.sleep(delay)
                continue
            if type(verdict.error) is TemporaryError:
                tries = f" ({retries.tries} attempts)" if retries.tries > 1 else ""
                raise TemporaryError(f"{verdict.error}{tries}; try again later") from None
            raise verdict.error from None

    def _judge(
        self,
        e: Exception,
        what: str,
        *,
        token: bool,
        not_found: Callable[[], RevbotError] | None,
    ) -> _Verdict:
        host = self.identity_url if token else self.api_url
        if isinstance(e, TemporaryError):  # bounded(): no answer in time
            return _Verdict(
                TemporaryError(
                    f"Xero did not answer within {self._deadline:.0f} s when asked to {what}"
                ),
                retry=True,
            )
        if isinstance(e, RevbotError):
            return _Verdict(e)
        if isinstance(e, urllib3.exceptions.HTTPError | OSError | http.client.HTTPException):
            reason = self._redact(_transport_reason(e))
            return _Verdict(
                TemporaryError(f"could not reach Xero at {host} to {what} ({reason})"),
                retry=True,
            )
        if isinstance(e, ApiException):
            return self._judge_status(e, what, token=token, not_found=not_found)
        # A model or an answer the SDK could not handle. Its text may quote the answer: only
        # the kind of failure is kept.
        return _Verdict(
            ServiceError(
                f"Xero's answer when trying to {what} could not be read ({type(e).__name__})"
            )
        )

    def _judge_status(
        self,
        e: Any,
        what: str,
        *,
        token: bool,
        not_found: Callable[[], RevbotError] | None,
    ) -> _Verdict:
        response = getattr(e, "http_resp", None)
        status = getattr(response, "status", None)
        if not isinstance(status, int) or status == 0:
            return _Verdict(
                ServiceError(f"Xero could not be asked to {what} (the TLS connection failed)")
            )
        body = _json(getattr(response, "data", b""))
        headers = _headers(response)
        said = self._redact(_messages(body))
        label = f"{status}{': ' + said if said else ''}"
        if token and status in (400, 401, 403):
            code = body.get("error") if isinstance(body, Mapping) else None
            if code in ("invalid_client", "unauthorized_client", None) or status == 401:
                return _Verdict(
                    ConfigError(
                        f"Xero rejected XERO_CLIENT_ID or XERO_CLIENT_SECRET "
                        f"({code or status}): {_CREDENTIALS_FIX}"
                    )
                )
            return _Verdict(
                ConfigError(
                    f"Xero refused a token to the Custom Connection of XERO_CLIENT_ID ({code}): "
                    f"check the app and its scopes at {_MANAGE}"
                )
            )
        if status == 401:
            return _Verdict(
                ConfigError(
                    f"Xero refused revbot's new access token ({label}): check that the Custom "
                    f"Connection of XERO_CLIENT_ID is still connected, at {_MANAGE}"
                ),
                reauth=True,
            )
        if status == 403:
            scopes = (
                ""
                if token
                else " and has the accounting.transactions and accounting.settings scopes"
            )
            return _Verdict(
                ConfigError(
                    f"Xero refused access to {what} ({label}): check that the Custom Connection "
                    f"of XERO_CLIENT_ID is connected to the organisation{scopes}, at {_MANAGE}"
                )
            )
        if status == 404 and not_found is not None:
            return _Verdict(not_found())
        if status == 429:
            problem = headers.get("x-rate-limit-problem", "")
            limit = f" (the {problem} limit)" if problem else ""
            return _Verdict(
                TemporaryError(f"Xero's rate limit{limit} stopped revbot trying to {what}"),
                retry=problem != "day",
                wait=retry_after(headers),
            )
        if status >= 500:
            return _Verdict(TemporaryError(f"Xero failed to {what} ({label})"), retry=True)
        return _Verdict(ServiceError(f"Xero refused to {what} ({label})"))

    def _redact(self, text: str) -> str:
        # Xero never echoes these, but a proxy or a transport error quoting a header might.
        out = _one_line(text)
        secrets = [self._secret, *([str(self._token.get("access_token"))] if self._token else [])]
        for secret in secrets:
            if secret and secret != "None":
                out = out.replace(secret, "…")
        return out


# -- building and reading the SDK's models ------------------------------------------------------


def _journals(
    narration: str, date: dt.date, lines: Sequence[LineLike], journal_id: str | None = None
) -> Any:
    if not isinstance(date, dt.date) or isinstance(date, dt.datetime):
        raise TypeError("a journal's date is a datetime.date")
    items = []
    for line in lines:
        if not isinstance(line.amount, Decimal):
            raise TypeError(f"a line amount is a Decimal, not {type(line.amount).__name__}")
        items.append(
            ManualJournalLine(
                line_amount=line.amount,
                account_code=line.account_code,
                description=line.description or None,
            )
        )
    journal = ManualJournal(
        narration=narration,
        journal_lines=items,
        date=date,
        line_amount_types=LineAmountTypes.NOTAX,
        status=DRAFT,
    )
    if journal_id is not None:
        journal.manual_journal_id = journal_id
    return ManualJournals(manual_journals=[journal])


def _journal(model: Any) -> Journal:
    day = model.date
    if isinstance(day, dt.datetime):
        day = day.date()
    lines = tuple(
        JournalLine(_text(x.account_code), _text(x.description), _decimal(x.line_amount))
        for x in (model.journal_lines or [])
    )
    return Journal(
        journal_id=_text(model.manual_journal_id),
        status=_text(model.status),
        narration=_text(model.narration),
        date=day if isinstance(day, dt.date) else None,
        lines=lines,
    )


def _compare(stored: Journal, sent: Sequence[LineLike], model: Any) -> None:
    """Raise :class:`JournalMismatchError` unless Xero stored the lines that were sent."""
    notes = [_text(w.message) for w in (model.warnings or []) + (model.validation_errors or [])]
    want = sorted((x.account_code, x.amount.quantize(_CENT)) for x in sent)
    got = sorted((x.account_code, x.amount) for x in stored.lines)
    if want != got:
        notes.append(f"{len(got)} lines stored for {len(want)} sent")
    if stored.status != DRAFT:
        notes.append(f"status {stored.status}")
    if notes:
        raise JournalMismatchError(stored.journal_id, _one_line("; ".join(notes)))


def _json(data: Any) -> Any:
    try:
        return json.loads(data.decode("utf-8") if isinstance(data, bytes) else str(data or ""))
    except ValueError:
        return None


def _headers(response: Any) -> dict[str, str]:
    try:
        items = response.getheaders().items()
    except AttributeError:
        return {}
    return {str(k).lower(): str(v) for k, v in items}


def _messages(body: Any) -> str:
    """Xero's own words in an error body: validation messages, else its Message or Detail."""
    if not isinstance(body, Mapping):
        return ""
    found: list[str] = []
    for element in body.get("Elements") or []:
        if isinstance(element, Mapping):
            for err in element.get("ValidationErrors") or []:
                if isinstance(err, Mapping) and err.get("Message"):
                    found.append(str(err["Message"]))
    if not found:
        found = [str(body[k]) for k in ("Message", "Detail", "Title", "error") if body.get(k)][:1]
    return "; ".join(dict.fromkeys(found))


def _transport_reason(e: BaseException) -> str:
    seen = e
    while isinstance(seen, urllib3.exceptions.MaxRetryError) and seen.reason is not None:
        seen = seen.reason
    # NewConnectionError subclasses ConnectTimeoutError, and NameResolutionError it: most
    # specific first.
    if isinstance(seen, urllib3.exceptions.NameResolutionError):
        return "unknown host"
    if isinstance(seen, urllib3.exceptions.NewConnectionError | ConnectionRefusedError):
        refused = isinstance(seen, ConnectionRefusedError) or "refused" in str(seen).lower()
        return "connection refused" if refused else "could not connect"
    if isinstance(seen, urllib3.exceptions.ConnectTimeoutError):
        return "the connection timed out"
    if isinstance(seen, urllib3.exceptions.ReadTimeoutError | TimeoutError):
        return "no answer in time"
    if isinstance(seen, urllib3.exceptions.ProtocolError | http.client.HTTPException):
        return "the connection was closed without an answer"
    if isinstance(seen, urllib3.exceptions.SSLError):
        return "the TLS handshake failed"
    return type(seen).__name__


__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_IDENTITY_URL",
    "Account",
    "Journal",
    "JournalLike",
    "JournalLine",
    "JournalMismatchError",
    "JournalNotDraftError",
    "JournalNotFoundError",
    "LineLike",
    "NewJournal",
    "Organisation",
    "XeroBooks",
    "check_idempotency_key",
]
