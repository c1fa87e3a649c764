"""A fake Xero on 127.0.0.1 for tests: a Custom Connection's token, its one connection, and the
Accounting API's ``Accounts`` and ``ManualJournals``, all on one port.

Served (``server.url`` is both the identity root and the API root):

- ``POST /connect/token`` (the identity root's token endpoint; not in Xero's OpenAPI files):
  ``grant_type=client_credentials``, the client authenticated by HTTP Basic
  ``client_id:client_secret`` (what Xero's Custom Connection guide shows) or by ``client_id`` and
  ``client_secret`` form fields (what the xero-python SDK sends). A wrong pair answers 400
  ``{"error": "invalid_client"}``, as Xero's identity server does.
- ``GET /connections`` (Xero's Identity API, ``xero-identity.yaml``, server
  ``https://api.xero.com``): ``server.connections``, one ORGANISATION by default. Matched without
  regard to case, as Xero does: the SDK asks for ``/Connections``, Xero's guides for
  ``/connections``.
- Under ``/api.xro/2.0`` (``xero_accounting.yaml``): ``GET /Accounts``, ``GET/PUT/POST
  /ManualJournals`` and ``GET/POST /ManualJournals/{ManualJournalID}``, each requiring a Bearer
  token it issued (401 ``AuthenticationUnsuccessful`` otherwise) and the connection's
  ``xero-tenant-id`` (403 otherwise).

Every request body and every documented answer (200, and 400 where the contract has one) is
validated against Xero's OpenAPI files with ``jsonschema`` (Draft 4, which is what OpenAPI 3.0's
schema object extends): ``nullable`` is widened into the type, ``format`` is checked for
``uuid`` and ``date-time`` only (``double`` and Xero's ``x-is-msdate`` are annotations), and every
object is closed (``additionalProperties: false``), so an unknown or misspelt field is an error.
Xero itself ignores unknown fields; the fake is stricter on purpose. Answers may also carry the
envelope fields Xero sends with every Accounting answer (``Id``, ``Status``, ``ProviderName``,
``DateTimeUTC``: the contract's own examples show them, its schemas do not declare them).
Violations are recorded in ``server.violations``; a bad request is answered 400 (Xero's
``PostDataInvalidException`` shape), a bad answer of the fake's own becomes a 500.

Like Xero the fake refuses, with Xero's 400 ``ValidationException`` shape (messages in
``Elements[].ValidationErrors[].Message``), a journal that:

=====================================  ==================================================  ======
what                                   message                                             source
=====================================  ==================================================  ======
does not balance (Σ LineAmount ≠ 0)    ``The total debits (100.00) must equal total        [1]
                                       credits (-10.00)``
uses a code not in the chart           ``Account code '999' is not a valid code for this   [2]
                                       document.``
uses an archived account               ``Account code '999' has been archived, or has      [2]
                                       been deleted. Each line item must reference a
                                       valid account.``
has fewer than two lines               ``The JournalLines element must contain at least    [3]
                                       two individual JournalLine sub-elements.``
has no Narration                       ``Narration must not be empty.``                    [4]
has a LineAmount with more than 2      ``Line amount 12.345 must not have more than 2      [4]
decimals                               decimal places.``
is POSTED and would be changed         ``Manual journal … is POSTED: …``                   [5]
=====================================  ==================================================  ======

[1] Xero's own example in ``xero_accounting.yaml`` (POST /ManualJournals, 200 example).
[2] What Xero answers for invoices and bills, as quoted by many public integrations; for a
manual journal Xero's example instead shows the warning "Account code '476' has been removed as
it does not match a recognised account." followed by the totals error.
[3] Xero's Manual Journals guide ("mandatory for a PUT / POST request").
[4] The fake's own wording: no public source quotes Xero's.
[5] Xero's guide says a POSTED manual journal *can* be updated. revbot must never do it, so the
fake refuses (and records a violation): a tripwire, not Xero's behaviour.

Wrong types answer ``PostDataInvalidException`` in Json.NET's words ("Error converting value …
Path '…'."), an unknown field "Could not find member … on object of type …", a bad date "The
string '…' is not a valid AllXsd value." (all three as public integrations quote Xero).

``Idempotency-Key`` on PUT and POST: the same key with the same request replays the stored
answer (no new journal); the same key with another request is a 400 "Idempotency Key: … is used
with a different request." Keys older than ``idempotency_ttl`` seconds are forgotten (Xero's
guidance as publicly summarised: about six minutes), and so are all with
:meth:`FakeXeroServer.expire_idempotency_keys`. Answers below 500 are stored, errors included.

Dates are answered as Xero does, ``/Date(1717113600000+0000)/``, which the SDK's ``date[ms-
format]`` reads (an ISO date there would not parse); requests may send either form.

Test hooks: ``journals`` (snapshots with lines and status), :meth:`post_as_accountant`,
``accounts``, ``connections``, ``counts`` (requests per route, e.g. ``"PUT
/api.xro/2.0/ManualJournals"``), ``requests``, :meth:`inject` (the next N requests answer
500/429/…, hang past the client's timeout, or drop the connection, before or after doing the
work), :meth:`expire_tokens`, and ``created`` / ``on_created``, fired right after the answer to a
new journal has been written (so a test can SIGKILL the client at exactly that moment).

Simplifications: ``summarizeErrors=false`` is accepted but answered like the default; ``where``
understands ``Narration=="…"`` and ``Status=="…"`` joined by ``AND``; an error's ``Elements``
carry only ``ValidationErrors`` (Xero echoes the whole journal there).
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import hashlib
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import jsonschema
import referencing
import referencing.jsonschema
import yaml

from tests.fakes._http import LocalServer

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = REPO_ROOT / "tests" / "contracts" / "xero"
ACCOUNTING_CONTRACT = CONTRACTS / "xero_accounting.yaml"
IDENTITY_CONTRACT = CONTRACTS / "xero-identity.yaml"
ACCOUNTING_URI = "urn:revbot:xero-accounting"
IDENTITY_URI = "urn:revbot:xero-identity"

API_PREFIX = "/api.xro/2.0"
TOKEN = "POST /connect/token"
CONNECTIONS = "GET /connections"
ACCOUNTS = f"GET {API_PREFIX}/Accounts"
JOURNALS = f"{API_PREFIX}/ManualJournals"
JOURNAL = f"{API_PREFIX}/ManualJournals/{{ManualJournalID}}"

# A Custom Connection's credentials look like these: a 32-character client id, a 48-character
# secret. Made up; tests that need others pass their own.
DEFAULT_CLIENT_ID = "7D0C4B1A9E8F42A6B3C5D7E9F1A2B4C6"
DEFAULT_CLIENT_SECRET = "fAkE-xero-secret_" + "Q" * 8 + "rEvBoT-0123456789abcde"
DEFAULT_TENANT_ID = "3f8a9d2e-6b1c-4e7a-9f05-2d4c8b6a1e93"
DEFAULT_TENANT_NAME = "Demo Company (Global)"
TOKEN_LIFETIME = 1800  # seconds: a Custom Connection's access token lives 30 minutes
IDEMPOTENCY_TTL = 360.0
MAX_KEY = 128  # "128 character max." (the contract's idempotencyKey parameter)
PROVIDER_NAME = "revbot fake Xero"
NOT_FOUND_TEXT = "The resource you're looking for cannot be found"

_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:T\d{2}:\d{2}:\d{2}(?:\.\d+)?)?$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_WHERE_TERM = re.compile(r'^\s*(Narration|Status)\s*==\s*"((?:[^"\\]|\\.)*)"\s*$')
_ENVELOPE = {
    "Id": {"type": "string", "format": "uuid"},
    "Status": {"type": "string"},
    "ProviderName": {"type": "string"},
    "DateTimeUTC": {"type": "string"},
}
_CLASS_OF = {
    "REVENUE": "REVENUE", "SALES": "REVENUE", "OTHERINCOME": "REVENUE",
    "EXPENSE": "EXPENSE", "OVERHEADS": "EXPENSE", "DIRECTCOSTS": "EXPENSE",
    "DEPRECIATN": "EXPENSE", "EQUITY": "EQUITY", "CURRLIAB": "LIABILITY",
    "LIABILITY": "LIABILITY", "TERMLIAB": "LIABILITY", "PAYG": "LIABILITY",
}  # fmt: skip


# -- the contract -----------------------------------------------------------------------------


def _close(schema: Any) -> Any:
    """An OpenAPI 3.0 schema as Draft 4 JSON Schema, every object closed to unknown fields."""
    if isinstance(schema, list):
        return [_close(s) for s in schema]
    if not isinstance(schema, dict) or "$ref" in schema:
        return schema
    out = dict(schema)
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if "properties" in out:
        out["properties"] = {k: _close(v) for k, v in out["properties"].items()}
    if "properties" in out or out.get("type") == "object":
        out.setdefault("additionalProperties", False)
    for key in ("items", "not"):
        if key in out:
            out[key] = _close(out[key])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _close(out["additionalProperties"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = _close(out[key])
    return out


def _media_schemas(node: Any) -> Iterable[dict[str, Any]]:
    """The ``content.*`` objects (holding ``schema``) under an operation, response or body."""
    if isinstance(node, dict):
        content = node.get("content")
        if isinstance(content, dict):
            yield from (m for m in content.values() if isinstance(m, dict) and "schema" in m)
        for key in ("requestBody", "responses"):
            sub = node.get(key)
            if isinstance(sub, dict):
                yield from _media_schemas(sub)
                if key == "responses":
                    for response in sub.values():
                        yield from _media_schemas(response)


def _prepared(document: dict[str, Any], *, answers: bool) -> dict[str, Any]:
    doc = copy.deepcopy(document)
    schemas = doc.get("components", {}).get("schemas", {})
    for name in list(schemas):
        schemas[name] = _close(schemas[name])
    if answers:
        for wrapper in ("ManualJournals", "Accounts"):
            if wrapper in schemas:
                schemas[wrapper]["properties"].update(copy.deepcopy(_ENVELOPE))
    for response in doc.get("components", {}).get("responses", {}).values():
        for media in _media_schemas(response):
            media["schema"] = _close(media["schema"])
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            for media in _media_schemas(operation):
                media["schema"] = _close(media["schema"])
    return doc


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("uuid")
    def _is_uuid(value: object) -> bool:
        return not isinstance(value, str) or bool(_UUID.match(value))

    @checker.checks("date-time")
    def _is_date_time(value: object) -> bool:
        # Xero writes fractions of 7 digits and no zone ("2019-12-07T18:46:19.5165400").
        return not isinstance(value, str) or bool(_DATE_TIME.match(value))

    return checker


def _pointer(*parts: str) -> str:
    return "/" + "/".join(quote(p.replace("~", "~0").replace("/", "~1"), safe="") for p in parts)


class XeroContract:
    """Validators for the operations of one of Xero's OpenAPI files."""

    def __init__(self, path: Path, uri: str) -> None:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        self.document: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
        self.uri = uri
        self._registries = {
            kind: referencing.Registry().with_resource(
                uri,
                referencing.Resource.from_contents(
                    _prepared(self.document, answers=kind == "answers"),
                    default_specification=referencing.jsonschema.DRAFT4,
                ),
            )
            for kind in ("requests", "answers")
        }
        self._checker = _format_checker()
        self._paths = {p.lower(): p for p in self.document["paths"]}

    def template(self, path: str) -> str | None:
        """The contract's path template for a concrete ``path`` (case-insensitive)."""
        for key, template in self._paths.items():
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(key))
            if re.fullmatch(pattern, path.lower()):
                return template
        return None

    def operation(self, method: str, template: str) -> dict[str, Any]:
        item = self.document["paths"][template]
        operation: dict[str, Any] = item[method.lower()]
        return operation

    def parameters(self, method: str, template: str) -> list[dict[str, Any]]:
        """Every parameter of the operation (path-level ones included), ``$ref`` resolved."""
        item = self.document["paths"][template]
        out = []
        for p in [
            *item.get("parameters", []),
            *self.operation(method, template).get("parameters", []),
        ]:
            if "$ref" in p:
                p = self.document["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]
            out.append(p)
        return out

    def _errors(
        self, kind: str, parts: Sequence[str], value: Any
    ) -> list[jsonschema.ValidationError]:
        validator = jsonschema.Draft4Validator(
            {"$ref": self.uri + "#" + _pointer(*parts)},
            registry=self._registries[kind],
            format_checker=self._checker,
        )
        return sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))

    def request_errors(
        self, method: str, template: str, body: Any
    ) -> list[jsonschema.ValidationError]:
        if "requestBody" not in self.operation(method, template):
            return []
        parts = (
            "paths",
            template,
            method.lower(),
            "requestBody",
            "content",
            "application/json",
            "schema",
        )
        return self._errors("requests", parts, body)

    def answer_errors(self, method: str, template: str, status: int, body: Any) -> list[str] | None:
        """Violations of a JSON answer; None when the contract documents no such answer."""
        responses = self.operation(method, template)["responses"]
        response = responses.get(str(status))
        if response is None:
            return None
        if "$ref" in response:
            name = response["$ref"].rsplit("/", 1)[1]
            parts: tuple[str, ...] = ("components", "responses", name)
            response = self.document["components"]["responses"][name]
        else:
            parts = ("paths", template, method.lower(), "responses", str(status))
        if "application/json" not in response.get("content", {}):
            return None
        errors = self._errors("answers", (*parts, "content", "application/json", "schema"), body)
        return [f"{_where(e)}: {e.message}" for e in errors]


@functools.cache
def accounting_contract() -> XeroContract:
    return XeroContract(ACCOUNTING_CONTRACT, ACCOUNTING_URI)


@functools.cache
def identity_contract() -> XeroContract:
    return XeroContract(IDENTITY_CONTRACT, IDENTITY_URI)


def _where(error: jsonschema.ValidationError) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(body)"


# -- the organisation's data ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FakeAccount:
    """One account of the organisation's chart."""

    code: str
    name: str = ""
    type: str = "EXPENSE"
    status: str = "ACTIVE"
    account_id: str = field(default_factory=lambda: str(uuid.uuid4()))


DEFAULT_ACCOUNTS = (
    FakeAccount("200", "Sales", "REVENUE"),
    FakeAccount("260", "Other Revenue", "OTHERINCOME"),
    FakeAccount("404", "Bank Fees", "EXPENSE"),
    FakeAccount("615", "Stripe Clearing", "CURRENT"),
    FakeAccount("620", "Prepayments", "CURRENT"),
    FakeAccount("820", "Sales Tax", "CURRLIAB"),
    FakeAccount("835", "Revenue Received in Advance", "CURRLIAB"),
)


@dataclass(frozen=True, slots=True)
class FakeLine:
    account_code: str
    description: str | None
    amount: Decimal
    tax_type: str = "NONE"


@dataclass(frozen=True, slots=True)
class FakeJournal:
    """A snapshot of one manual journal as the fake holds it."""

    journal_id: str
    narration: str
    date: date
    status: str
    lines: tuple[FakeLine, ...]
    line_amount_types: str = "NoTax"
    url: str | None = None
    show_on_cash_basis_reports: bool = True
    updated: datetime = field(default_factory=lambda: datetime.now(UTC))
    idempotency_key: str | None = None  # the key of the request that created it
    versions: int = 1  # 1 + how many updates it has had

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))


@dataclass
class _Injection:
    status: int
    times: int
    route: str | None
    hang: float
    drop: bool
    after_processing: bool
    headers: dict[str, str]
    body: Any


@dataclass
class _Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0
    drop: bool = False
    created: str | None = None  # the id of a journal this answer creates


class _Refusal(Exception):
    """A request refused: carries the answer."""

    def __init__(self, answer: _Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _ms_date(day: date) -> str:
    return f"/Date({_ms(datetime(day.year, day.month, day.day, tzinfo=UTC))}+0000)/"


def _ms_datetime(moment: datetime) -> str:
    return f"/Date({_ms(moment)}+0000)/"


def _money(value: Decimal) -> float:
    return float(value)


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def validation_error(*messages: str) -> _Answer:
    """Xero's 400 for a refused document (the shape of the contract's ``Error`` schema)."""
    return _Answer(
        400,
        {
            "ErrorNumber": 10,
            "Type": "ValidationException",
            "Message": "A validation exception occurred",
            "Elements": [{"ValidationErrors": [{"Message": m} for m in messages]}],
        },
    )


def post_data_invalid(message: str) -> _Answer:
    return _Answer(400, {"ErrorNumber": 14, "Type": "PostDataInvalidException", "Message": message})


def _problem(
    status: int, title: str, detail: str, headers: Mapping[str, str] | None = None
) -> _Answer:
    """Xero's answer shape outside the Accounting schemas (401, 403, 429, 5xx)."""
    body = {
        "Type": None,
        "Title": title,
        "Status": status,
        "Detail": detail,
        "Instance": str(uuid.uuid4()),
        "Extensions": {},
    }
    return _Answer(status, body, dict(headers or {}))


def _unauthorized() -> _Answer:
    return _problem(
        401, "Unauthorized", "AuthenticationUnsuccessful", {"www-authenticate": "Bearer"}
    )


# -- the server ---------------------------------------------------------------------------------


class FakeXeroServer(LocalServer):
    """Xero's identity and Accounting APIs, in memory. ``with FakeXeroServer() as xero: ...``."""

    thread_name = "fake-xero"

    def __init__(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        accounts: Iterable[FakeAccount | str] = DEFAULT_ACCOUNTS,
        tenant_id: str = DEFAULT_TENANT_ID,
        tenant_name: str = DEFAULT_TENANT_NAME,
        idempotency_ttl: float | None = IDEMPOTENCY_TTL,
        token_lifetime: int = TOKEN_LIFETIME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.accounting = accounting_contract()
        self.identity = identity_contract()
        self.client_id = client_id
        self.client_secret = client_secret
        self.accounts: list[FakeAccount] = [
            a if isinstance(a, FakeAccount) else FakeAccount(a, f"Account {a}") for a in accounts
        ]
        self.tenant_id = tenant_id
        self.connections: list[dict[str, Any]] = [
            {
                "id": str(uuid.uuid4()),
                "authEventId": str(uuid.uuid4()),
                "tenantId": tenant_id,
                "tenantType": "ORGANISATION",
                "tenantName": tenant_name,
                "createdDateUtc": "2026-01-05T09:12:45.1833130",
                "updatedDateUtc": "2026-01-05T09:12:45.1853540",
            }
        ]
        self.idempotency_ttl = idempotency_ttl
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.requests: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.violations: list[str] = []
        self.tokens: dict[str, float] = {}  # access token -> when it expires (clock)
        self.created = threading.Event()
        self.on_created: Callable[[str, str | None], None] | None = None
        self._journals: dict[str, FakeJournal] = {}
        self._order = itertools.count()
        self._injections: list[_Injection] = []
        self._keys: dict[str, tuple[str, _Answer, float]] = {}
        self._lock = threading.RLock()
        self._writes = threading.Lock()  # one write at a time: a key is never in flight twice
        self._stopping = threading.Event()

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Both roots: give it as ``XERO_API_URL`` and ``XERO_IDENTITY_URL``."""
        return self.base_url

    def stop(self) -> None:
        self._stopping.set()  # ends any injected hang
        super().stop()
        self._stopping.clear()

    # -- test controls ----------------------------------------------------------------------

    @property
    def journals(self) -> list[FakeJournal]:
        """Every manual journal, oldest first."""
        with self._lock:
            return list(self._journals.values())

    def journal(self, journal_id: str) -> FakeJournal:
        with self._lock:
            return self._journals[journal_id]

    def post_as_accountant(self, journal_id: str) -> None:
        """What the accountant does in Xero's UI: the draft becomes POSTED."""
        self.set_status(journal_id, "POSTED")

    def set_status(self, journal_id: str, status: str) -> None:
        with self._lock:
            old = self._journals[journal_id]
            self._journals[journal_id] = replace(old, status=status, updated=datetime.now(UTC))

    def add_journal(
        self, narration: str, day: date, lines: Sequence[FakeLine], *, status: str = "DRAFT"
    ) -> str:
        """A journal someone else made (in Xero's UI, or another app)."""
        with self._lock:
            jid = str(uuid.uuid4())
            self._journals[jid] = FakeJournal(jid, narration, day, status, tuple(lines))
            return jid

    def inject(
        self,
        status: int = 500,
        *,
        times: int = 1,
        route: str | None = None,
        hang: float = 0.0,
        drop: bool = False,
        after_processing: bool = False,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """The next ``times`` requests (to ``route``, e.g. ``"PUT /api.xro/2.0/ManualJournals"``
        or just a path, if given) fail instead of being answered.

        ``status`` is answered (429 with ``Retry-After: 1`` and ``X-Rate-Limit-Problem: minute``
        unless ``headers`` say otherwise); ``hang`` seconds of silence come first and then the
        connection is closed unanswered (a client whose read timeout is shorter sees a
        timeout); ``drop`` closes it at once. ``after_processing``: the request is carried out
        first (the journal made, its idempotency key stored), then it fails anyway.
        """
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        if status == 429:
            hdrs.setdefault("retry-after", "1")
            hdrs.setdefault("x-rate-limit-problem", "minute")
        with self._lock:
            self._injections.append(
                _Injection(status, times, route, hang, drop, after_processing, hdrs, body)
            )

    def clear_injections(self) -> None:
        with self._lock:
            self._injections.clear()

    def expire_tokens(self) -> None:
        """Every access token issued so far is now expired (the next API request gets a 401)."""
        with self._lock:
            self.tokens.clear()

    def expire_idempotency_keys(self) -> None:
        """What Xero does a few minutes after a keyed request: the key no longer replays."""
        with self._lock:
            self._keys.clear()

    def count(self, route: str) -> int:
        """Requests received for ``route`` (``"METHOD /template"``, or a template for any method)."""
        with self._lock:
            if " " in route:
                return self.counts[route]
            return sum(n for r, n in self.counts.items() if r.split(" ", 1)[1] == route)

    # -- request handling -------------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[str | None, str]:
        """(``"METHOD /template"`` or None when nothing serves it, the contract's template)."""
        lower = path.lower()
        if lower == "/connect/token":
            return f"{method} /connect/token", ""
        if lower == "/connections":
            return f"{method} /connections", "/Connections"
        if lower.startswith(API_PREFIX.lower() + "/"):
            template = self.accounting.template(path[len(API_PREFIX) :])
            if template is not None:
                return f"{method} {API_PREFIX}{template}", template
        return None, ""

    def _next_injection(self, route: str) -> _Injection | None:
        with self._lock:
            for inj in self._injections:
                if inj.route is None or inj.route in (route, route.split(" ", 1)[1]):
                    inj.times -= 1
                    if inj.times <= 0:
                        self._injections.remove(inj)
                    return inj
        return None

    def handle(self, method: str, target: str, headers: Mapping[str, str], raw: bytes) -> _Answer:
        """Everything but the socket."""
        parts = urlsplit(target)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        lower = {k.lower(): v for k, v in headers.items()}
        route, template = self._route(method, path)
        with self._lock:
            self.requests.append(
                {"method": method, "path": path, "query": query, "headers": lower, "body": raw}
            )
            self.counts[route or f"{method} {path}"] += 1
        if route is None:
            return _Answer(404, NOT_FOUND_TEXT)
        injection = self._next_injection(route)
        if injection is not None and not injection.after_processing:
            return self._fail(injection)
        try:
            answer = self._serve(method, route, template, path, query, lower, raw)
        except _Refusal as refusal:
            answer = refusal.answer
        if injection is not None:
            failed = self._fail(injection)
            failed.created = answer.created
            return failed
        return answer

    def _fail(self, inj: _Injection) -> _Answer:
        if inj.hang or inj.drop:
            return _Answer(0, None, hang=inj.hang, drop=True)
        if inj.body is not None:
            return _Answer(inj.status, inj.body, dict(inj.headers))
        titles = {
            429: "Too Many Requests",
            500: "An error occurred",
            502: "Bad Gateway",
            503: "Service Unavailable",
        }
        return _problem(
            inj.status, titles.get(inj.status, "Error"), "Injected by the test", inj.headers
        )

    def _serve(
        self,
        method: str,
        route: str,
        template: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        raw: bytes,
    ) -> _Answer:
        if route.endswith(" /connect/token"):
            if method != "POST":
                return _Answer(405, "")
            return self._token(headers, raw)
        self._check_bearer(headers)
        if route.endswith(" /connections"):
            if method != "GET":
                return _Answer(405, "")
            self._check_query(self.identity, method, template, query)
            return self._checked(
                self.identity, method, template, _Answer(200, copy.deepcopy(self.connections))
            )
        contract = self.accounting
        try:
            contract.operation(method, template)
        except KeyError:
            return _Answer(405, "")
        if headers.get("xero-tenant-id") != self.tenant_id:
            return _problem(403, "Forbidden", "AuthenticationUnsuccessful")
        self._check_query(contract, method, template, query)
        if method == "GET":
            return self._checked(contract, method, template, self._read(template, path, query))
        body = self._body(contract, method, template, raw)
        key = headers.get("idempotency-key")
        with self._writes:
            if key is not None:
                replay = self._replay(key, method, path, raw)
                if replay is not None:
                    return replay
            answer = self._checked(
                contract, method, template, self._write(method, template, path, body, key)
            )
            if key is not None and answer.status < 500:
                with self._lock:
                    fingerprint = hashlib.sha256(f"{method} {path}\n".encode() + raw).hexdigest()
                    self._keys[key] = (fingerprint, replace(answer, created=None), self.clock())
            return answer

    # -- identity ---------------------------------------------------------------------------

    def _token(self, headers: Mapping[str, str], raw: bytes) -> _Answer:
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return _Answer(400, {"error": "invalid_request"})
        form = {
            k: v[-1]
            for k, v in parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True).items()
        }
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                client_id, _, secret = (
                    base64.b64decode(auth[6:].strip()).decode("utf-8").partition(":")
                )
            except (binascii.Error, UnicodeDecodeError):
                return _Answer(400, {"error": "invalid_client"})
        if client_id != self.client_id or secret != self.client_secret:
            return _Answer(400, {"error": "invalid_client"})
        if form.get("grant_type") != "client_credentials":
            return _Answer(400, {"error": "unsupported_grant_type"})
        token = "fake-xero-at." + secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = self.clock() + self.token_lifetime
        scope = "accounting.transactions accounting.settings accounting.contacts"
        return _Answer(
            200,
            {
                "access_token": token,
                "expires_in": self.token_lifetime,
                "token_type": "Bearer",
                "scope": scope,
            },
        )

    def _check_bearer(self, headers: Mapping[str, str]) -> None:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        with self._lock:
            expires = self.tokens.get(token)
        if expires is None or expires <= self.clock():
            raise _Refusal(_unauthorized())

    # -- contract checks --------------------------------------------------------------------

    def _violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)

    def _check_query(
        self, contract: XeroContract, method: str, template: str, query: Mapping[str, list[str]]
    ) -> None:
        known = {
            p["name"]: p for p in contract.parameters(method, template) if p.get("in") == "query"
        }
        for name, values in query.items():
            spec = known.get(name)
            if spec is None:
                self._violation(f"{method} {template}: unknown query parameter {name!r}")
                raise _Refusal(post_data_invalid(f"The query parameter '{name}' is not supported."))
            kind = spec.get("schema", {}).get("type")
            for value in values:
                if (kind == "integer" and not re.fullmatch(r"-?\d+", value)) or (
                    kind == "boolean" and value.lower() not in ("true", "false")
                ):
                    self._violation(f"{method} {template}: {name}={value!r} is not {kind}")
                    raise _Refusal(
                        post_data_invalid(f"The value '{value}' is not valid for {name}.")
                    )

    def _body(self, contract: XeroContract, method: str, template: str, raw: bytes) -> Any:
        try:
            body = json.loads(raw or b"null", parse_float=Decimal)
        except ValueError:
            self._violation(f"{method} {template}: the body is not JSON")
            raise _Refusal(
                post_data_invalid("The request body could not be read as JSON.")
            ) from None
        errors = contract.request_errors(method, template, body)
        for e in errors:
            self._violation(f"{method} {template}: {_where(e)}: {e.message}")
        # A missing required field is a validation error of the document, answered below.
        wrong = [e for e in errors if e.validator != "required"]
        if wrong:
            raise _Refusal(post_data_invalid(_json_net_message(wrong[0])))
        return body

    def _checked(
        self, contract: XeroContract, method: str, template: str, answer: _Answer
    ) -> _Answer:
        """``answer``, or a 500 naming the problem if it breaks the contract."""
        if answer.body is None or isinstance(answer.body, str):
            return answer
        errors = contract.answer_errors(
            method,
            template,
            answer.status,
            json.loads(json.dumps(answer.body, default=_json_default), parse_float=Decimal),
        )
        if errors:
            for e in errors:
                self._violation(f"answer to {method} {template} ({answer.status}): {e}")
            return _Answer(
                500, {"fake": "the fake's answer breaks Xero's contract", "errors": errors}
            )
        return answer

    # -- idempotency ------------------------------------------------------------------------

    def _replay(self, key: str, method: str, path: str, raw: bytes) -> _Answer | None:
        if not key or len(key) > MAX_KEY:
            return _Answer(
                400, {"Message": f"The Idempotency-Key header must be 1 to {MAX_KEY} characters."}
            )
        fingerprint = hashlib.sha256(f"{method} {path}\n".encode() + raw).hexdigest()
        with self._lock:
            seen = self._keys.get(key)
            if (
                seen is not None
                and self.idempotency_ttl is not None
                and self.clock() - seen[2] > self.idempotency_ttl
            ):
                del self._keys[key]
                seen = None
        if seen is None:
            return None
        if seen[0] != fingerprint:
            return _Answer(
                400, {"Message": f"Idempotency Key: {key} is used with a different request."}
            )
        return copy.deepcopy(seen[1])

    # -- the Accounting API -----------------------------------------------------------------

    def _envelope(self, name: str, items: list[Any], **extra: Any) -> dict[str, Any]:
        return {
            "Id": str(uuid.uuid4()),
            "Status": "OK",
            "ProviderName": PROVIDER_NAME,
            "DateTimeUTC": f"/Date({_ms(datetime.now(UTC))})/",
            name: items,
            **extra,
        }

    def _account_json(self, account: FakeAccount) -> dict[str, Any]:
        out: dict[str, Any] = {
            "AccountID": account.account_id,
            "Code": account.code,
            "Name": account.name or f"Account {account.code}",
            "Status": account.status,
            "Type": account.type,
            "TaxType": "NONE",
            "EnablePaymentsToAccount": False,
            "ShowInExpenseClaims": False,
            "Class": _CLASS_OF.get(account.type, "ASSET"),
            "ReportingCode": "",
            "HasAttachments": False,
            "UpdatedDateUTC": "/Date(1767604365000+0000)/",
        }
        return out

    def _journal_json(self, j: FakeJournal, *, lines: bool = True) -> dict[str, Any]:
        by_code = {a.code: a.account_id for a in self.accounts}
        out: dict[str, Any] = {
            "Date": _ms_date(j.date),
            "Status": j.status,
            "LineAmountTypes": j.line_amount_types,
            "UpdatedDateUTC": _ms_datetime(j.updated),
            "ManualJournalID": j.journal_id,
            "Narration": j.narration,
            "ShowOnCashBasisReports": j.show_on_cash_basis_reports,
            "HasAttachments": False,
        }
        if j.url is not None:
            out["Url"] = j.url
        if lines:
            out["JournalLines"] = []
            for line in j.lines:
                item: dict[str, Any] = {
                    "AccountCode": line.account_code,
                    "AccountID": by_code.get(line.account_code, str(uuid.UUID(int=0))),
                    "TaxType": line.tax_type,
                    "TaxAmount": Decimal("0.00"),
                    "LineAmount": line.amount,
                    "Tracking": [],
                    "IsBlank": False,
                }
                if line.description is not None:
                    item["Description"] = line.description
                out["JournalLines"].append(item)
        return out

    def _read(self, template: str, path: str, query: Mapping[str, list[str]]) -> _Answer:
        if template == "/Accounts":
            with self._lock:
                return _Answer(
                    200, self._envelope("Accounts", [self._account_json(a) for a in self.accounts])
                )
        if template == "/ManualJournals/{ManualJournalID}":
            with self._lock:
                j = self._journals.get(path.rsplit("/", 1)[1].lower())
                if j is None:
                    return _Answer(404, NOT_FOUND_TEXT)
                return _Answer(200, self._envelope("ManualJournals", [self._journal_json(j)]))
        wanted = _parse_where(query.get("where", [""])[-1])
        if wanted is None:
            return post_data_invalid("The where clause is not supported by the fake.")
        with self._lock:
            found = [
                j
                for j in self._journals.values()
                if all(getattr(j, k.lower()) == v for k, v in wanted.items())
            ]
        if "page" not in query:
            # Without paging Xero leaves the lines out of a list.
            return _Answer(
                200,
                self._envelope(
                    "ManualJournals", [self._journal_json(j, lines=False) for j in found]
                ),
            )
        page = max(int(query["page"][-1]), 1)
        size = min(int(query.get("pageSize", ["100"])[-1]), 1000)
        chunk = found[(page - 1) * size : page * size]
        pagination = {
            "page": page,
            "pageSize": size,
            "pageCount": -(-len(found) // size),
            "itemCount": len(found),
        }
        return _Answer(
            200,
            self._envelope(
                "ManualJournals", [self._journal_json(j) for j in chunk], pagination=pagination
            ),
        )

    def _write(self, method: str, template: str, path: str, body: Any, key: str | None) -> _Answer:
        items = body.get("ManualJournals") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return validation_error(
                "A ManualJournals element with at least one ManualJournal is required."
            )
        if len(items) != 1:
            # revbot sends one journal per request; more is a mistake the fake points out.
            self._violation(f"{template}: {len(items)} journals in one request")
            return validation_error("The fake takes one ManualJournal per request.")
        item = items[0]
        target = item.get("ManualJournalID")
        if template == "/ManualJournals/{ManualJournalID}":
            path_id = path.rsplit("/", 1)[1].lower()
            if target is not None and str(target).lower() != path_id:
                return validation_error(
                    "The ManualJournalID in the body differs from the one in the URL."
                )
            target = path_id
        elif method == "PUT" and target is not None:
            return validation_error("PUT creates manual journals: leave ManualJournalID out.")
        with self._lock:
            old = self._journals.get(str(target).lower()) if target is not None else None
        if target is not None and old is None:
            return _Answer(404, NOT_FOUND_TEXT)
        if old is not None and old.status != "DRAFT":
            self._violation(f"an update of {old.status} manual journal {old.journal_id}")
            return validation_error(
                f"Manual journal {old.journal_id} is {old.status}: the fake refuses any change to "
                "a journal that is not a draft (revbot must never send one)."
            )
        journal, problems = self._document(item, old)
        if problems:
            return validation_error(*problems)
        assert journal is not None
        with self._lock:
            if old is None:
                journal = replace(journal, journal_id=str(uuid.uuid4()), idempotency_key=key)
            else:
                journal = replace(
                    journal,
                    journal_id=old.journal_id,
                    idempotency_key=old.idempotency_key,
                    versions=old.versions + 1,
                )
            self._journals[journal.journal_id] = journal
            answer = _Answer(200, self._envelope("ManualJournals", [self._journal_json(journal)]))
        if old is None:
            answer.created = journal.journal_id
        return answer

    def _document(
        self, item: Mapping[str, Any], old: FakeJournal | None
    ) -> tuple[FakeJournal | None, list[str]]:
        """The journal ``item`` describes, or the validation errors Xero would give."""
        problems: list[str] = []
        narration = item.get("Narration", old.narration if old is not None else None)
        if not isinstance(narration, str) or not narration.strip():
            problems.append("Narration must not be empty.")
        raw_date = item.get("Date")
        day = old.date if old is not None else datetime.now(UTC).date()
        if raw_date is not None:
            parsed = _parse_date(str(raw_date))
            if parsed is None:
                raise _Refusal(
                    post_data_invalid(f"The string '{raw_date}' is not a valid AllXsd value.")
                )
            day = parsed
        raw_lines = item.get("JournalLines")
        if raw_lines is None and old is not None:
            lines = list(old.lines)
        else:
            lines = []
            for line in raw_lines or []:
                problems.extend(self._line_problems(line))
                amount = line.get("LineAmount")
                lines.append(
                    FakeLine(
                        str(line.get("AccountCode", "")),
                        line.get("Description"),
                        Decimal(amount) if amount is not None else Decimal(0),
                        str(line.get("TaxType", "NONE")),
                    )
                )
        if len(lines) < 2:
            problems.append(
                "The JournalLines element must contain at least two individual JournalLine sub-elements."
            )
        debits = sum((x.amount for x in lines if x.amount > 0), Decimal(0))
        credits = sum((x.amount for x in lines if x.amount < 0), Decimal(0))
        if lines and debits + credits != 0:
            problems.append(
                f"The total debits ({debits:.2f}) must equal total credits ({credits:.2f})"
            )
        if problems:
            return None, problems
        status = str(item.get("Status", old.status if old is not None else "DRAFT"))
        journal = FakeJournal(
            journal_id="",
            narration=str(narration),
            date=day,
            status=status,
            lines=tuple(lines),
            line_amount_types=str(
                item.get("LineAmountTypes", old.line_amount_types if old else "NoTax")
            ),
            url=item.get("Url", old.url if old else None),
            show_on_cash_basis_reports=bool(item.get("ShowOnCashBasisReports", True)),
        )
        return journal, []

    def _line_problems(self, line: Mapping[str, Any]) -> list[str]:
        out = []
        code = line.get("AccountCode")
        account = next((a for a in self.accounts if a.code == code), None)
        if code is None:
            out.append("Each journal line must have an AccountCode.")
        elif account is None or account.status == "DELETED":
            out.append(f"Account code '{code}' is not a valid code for this document.")
        elif account.status != "ACTIVE":
            out.append(
                f"Account code '{code}' has been archived, or has been deleted. Each line item "
                "must reference a valid account."
            )
        amount = line.get("LineAmount")
        if amount is None:
            out.append("Each journal line must have a LineAmount.")
        else:
            value = Decimal(amount)
            if value != value.quantize(Decimal("0.01")):
                out.append(f"Line amount {amount} must not have more than 2 decimal places.")
        return out


def _parse_date(text: str) -> date | None:
    found = _MS_DATE.match(text)
    if found:
        return datetime.fromtimestamp(int(found.group(1)) / 1000, UTC).date()
    found = _ISO_DATE.match(text)
    if found:
        try:
            return date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
        except ValueError:
            return None
    return None


def _parse_where(text: str) -> dict[str, str] | None:
    """``Narration=="x" AND Status=="DRAFT"`` as ``{"Narration": "x", "Status": "DRAFT"}``."""
    if not text.strip():
        return {}
    out = {}
    for term in re.split(r"\s+AND\s+", text):
        found = _WHERE_TERM.match(term)
        if found is None:
            return None
        out[found.group(1)] = re.sub(r"\\(.)", r"\1", found.group(2))
    return out


def _json_net_message(error: jsonschema.ValidationError) -> str:
    """A schema violation in the words Xero's Json.NET deserialiser uses."""
    where = _where(error)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        member = extra[0] if extra else "?"
        path = f"{where}.{member}" if where != "(body)" else member
        owner = str(error.schema.get("title") or _owner(error))
        return f"Could not find member '{member}' on object of type '{owner}'. Path '{path}'."
    expected = error.schema.get("type") or error.schema.get("enum")
    return f"Error converting value {json.dumps(error.instance, default=_json_default)} to type '{expected}'. Path '{where}'."


def _owner(error: jsonschema.ValidationError) -> str:
    path = [p for p in error.absolute_path if not isinstance(p, int)]
    names = {
        "ManualJournals": "ManualJournal",
        "JournalLines": "ManualJournalLine",
        "Tracking": "TrackingCategory",
    }
    return names.get(str(path[-1]), str(path[-1])) if path else "ManualJournals"


class _Handler(BaseHTTPRequestHandler):
    fake: FakeXeroServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        answer = self.fake.handle(self.command, self.path, dict(self.headers.items()), raw)
        if answer.hang:
            self.fake._stopping.wait(answer.hang)
        if answer.drop:
            self.close_connection = True
            return
        headers = {k.lower(): v for k, v in answer.headers.items()}
        if isinstance(answer.body, str):
            data = answer.body.encode("utf-8")
            headers.setdefault("content-type", "text/plain; charset=utf-8")
        else:
            data = json.dumps(answer.body, default=_json_default).encode("utf-8")
            headers["content-type"] = "application/json; charset=utf-8"
        self.send_response(answer.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        if answer.created is not None:
            self.fake.created.set()
            if self.fake.on_created is not None:
                self.fake.on_created(answer.created, self.headers.get("Idempotency-Key"))

    do_GET = _serve
    do_PUT = _serve
    do_POST = _serve
    do_DELETE = _serve
    do_PATCH = _serve


FakeXeroServer.handler = _Handler  # defined after the server class it serves

__all__ = [
    "ACCOUNTS",
    "CONNECTIONS",
    "DEFAULT_ACCOUNTS",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_TENANT_ID",
    "JOURNAL",
    "JOURNALS",
    "TOKEN",
    "FakeAccount",
    "FakeJournal",
    "FakeLine",
    "FakeXeroServer",
    "XeroContract",
    "accounting_contract",
    "identity_contract",
]
