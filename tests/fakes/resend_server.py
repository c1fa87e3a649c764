"""A fake Resend API on 127.0.0.1 for tests: ``POST /emails`` and ``POST /emails/batch``.

Behaves like Resend where revbot depends on it (reference/sheets-and-resend.md §7, §9):

- ``Authorization: Bearer re_…`` required (401 ``missing_api_key`` / 403 ``invalid_api_key``),
  a ``User-Agent`` required (403, Cloudflare's plain-text "error code: 1010");
- request bodies validated against ``SendEmailRequest`` of ``tests/contracts/resend/
  resend.yaml``; violations are recorded in ``server.violations`` and answered 422
  ``validation_error``;
- ``Idempotency-Key``: same key and body -> the same answer and no new message; same key,
  other body -> 409 ``invalid_idempotent_request``; key over 256 chars -> 400
  ``invalid_idempotency_key``; a key still in flight -> 409 ``concurrent_idempotent_requests``;
- errors in Resend's shape ``{"statusCode", "name", "message"}``.

Failures are injected with :meth:`FakeResendServer.inject`. Delivered messages are in
``server.messages``; every request (headers and body) in ``server.requests``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema
import yaml

from tests.fakes._http import LocalServer

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACT = REPO_ROOT / "tests" / "contracts" / "resend" / "resend.yaml"
CONTRACT_URI = "urn:revbot:resend-openapi"

MAX_KEY = 256
MAX_BATCH = 100

DEFAULT_NAMES = {
    400: "validation_error",
    401: "missing_api_key",
    403: "invalid_api_key",
    409: "concurrent_idempotent_requests",
    422: "validation_error",
    429: "rate_limit_exceeded",
    451: "security_error",
    500: "internal_server_error",
    502: "internal_server_error",
    503: "internal_server_error",
}

DEFAULT_MESSAGES = {
    "rate_limit_exceeded": "Too many requests. You can only make 2 requests per second.",
    "daily_quota_exceeded": "You have reached your daily email sending quota.",
    "monthly_quota_exceeded": "You have reached your monthly email sending quota.",
    "concurrent_idempotent_requests": "Same idempotency key used while original request is "
    "still in progress.",
    "invalid_idempotent_request": "Same idempotency key used with a different request payload.",
    "internal_server_error": "An unexpected error occurred.",
    "application_error": "An unexpected error occurred, please try again.",
    "invalid_from_address": "Invalid `from` field. The email address needs to follow the "
    "`email@example.com` or `Name <email@example.com>` format.",
    "validation_error": "The request body is invalid.",
    "security_error": "We may have found a security issue with the request.",
}


@functools.lru_cache(maxsize=4)
def _validator(contract: Path) -> jsonschema.protocols.Validator:
    """A JSON Schema 2020-12 validator for ``SendEmailRequest`` (OpenAPI 3.1 schemas are one).

    Cached: every test starts a server, and the contract need only be parsed once.
    """
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = yaml.load(contract.read_text(encoding="utf-8"), Loader=loader)
    resource = referencing.Resource.from_contents(
        document, default_specification=referencing.jsonschema.DRAFT202012
    )
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(
        CONTRACT_URI, resource
    )
    schema = {"$ref": f"{CONTRACT_URI}#/components/schemas/SendEmailRequest"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


@dataclass
class Injection:
    """A failure to answer instead of (or, with ``deliver_then_fail``, after) the real work."""

    status: int
    times: int
    name: str
    message: str
    headers: dict[str, str]
    deliver_then_fail: bool = False
    drop_connection: bool = False
    raw_body: str | None = None
    path: str | None = None


@dataclass
class _Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class _Drop(Exception):
    """Close the connection without answering."""


class FakeResendServer(LocalServer):
    """Resend's sending API, in memory, on ``127.0.0.1`` and a free port."""

    thread_name = "fake-resend"

    def __init__(
        self,
        *,
        contract: Path = CONTRACT,
        api_keys: frozenset[str] | None = None,
    ) -> None:
        self._validator = _validator(contract)
        self.api_keys = api_keys  # None: any "re_..." key is valid
        self.messages: list[dict[str, Any]] = []
        # GET /domains answers with these (ListDomainsItem of the contract).
        self.domains: list[dict[str, Any]] = []
        self.sending_only_keys: set[str] = set()
        self.requests: list[dict[str, Any]] = []
        self.violations: list[str] = []
        self._injections: list[Injection] = []
        self._idempotency: dict[str, tuple[str, _Answer]] = {}
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL to give the SDK (``resend.api_url``) or ``ResendMailer(api_url=...)``."""
        return self.base_url

    # -- test controls -------------------------------------------------------------------

    def inject(
        self,
        *,
        status: int = 500,
        times: int = 1,
        name: str | None = None,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
        deliver_then_fail: bool = False,
        drop_connection: bool = False,
        raw_body: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with an error instead.

        ``deliver_then_fail``: process the request (store the message, remember the key),
        then answer the error anyway: a send that went out though the client saw a failure.
        ``drop_connection``: close the socket without any answer (combine with
        ``deliver_then_fail`` for "sent, then the connection died").
        ``raw_body``: answer this text as ``text/html`` instead of Resend's JSON (a CDN page).
        ``path``: only requests to this path (default: any).
        """
        err_name = name or DEFAULT_NAMES.get(status, "application_error")
        hdrs = dict(headers or {})
        if status == 429:
            hdrs.setdefault("retry-after", "1")
        with self._lock:
            self._injections.append(
                Injection(
                    status=status,
                    times=times,
                    name=err_name,
                    message=message or DEFAULT_MESSAGES.get(err_name, err_name),
                    headers=hdrs,
                    deliver_then_fail=deliver_then_fail,
                    drop_connection=drop_connection,
                    raw_body=raw_body,
                    path=path,
                )
            )

    def reset(self) -> None:
        """Forget messages, requests, violations, keys and pending injections."""
        with self._lock:
            self.messages.clear()
            self.requests.clear()
            self.violations.clear()
            self._injections.clear()
            self._idempotency.clear()
            self._in_flight.clear()

    def forget_idempotency_keys(self) -> None:
        """What Resend does after 24 hours: keys no longer protect against a re-send."""
        with self._lock:
            self._idempotency.clear()

    # -- request handling ----------------------------------------------------------------

    def _next_injection(self, path: str) -> Injection | None:
        with self._lock:
            for inj in self._injections:
                if inj.path is None or inj.path == path:
                    inj.times -= 1
                    if inj.times <= 0:
                        self._injections.remove(inj)
                    return inj
        return None

    def handle(self, method: str, path: str, headers: Mapping[str, str], raw: bytes) -> _Answer:
        """Everything but the socket: returns the answer (raises ``_Drop`` to hang up)."""
        lower = {k.lower(): v for k, v in headers.items()}
        key = lower.get("idempotency-key")
        with self._lock:
            self.requests.append(
                {"method": method, "path": path, "headers": lower, "body": raw, "key": key}
            )
        if not lower.get("user-agent"):
            # Resend sits behind Cloudflare, which answers this itself, in plain text.
            return _Answer(403, "error code: 1010", {"content-type": "text/plain"})
        auth_error = self._check_auth(lower.get("authorization"))
        if auth_error is not None:
            return auth_error
        if path == "/domains" and method == "GET":
            # For `revbot doctor`: a sending-only key may not list domains, like Resend.
            if lower.get("authorization", "")[7:].strip() in self.sending_only_keys:
                return _error(
                    401, "restricted_api_key", "This API key is restricted to only send emails"
                )
            body = {"object": "list", "has_more": False, "data": list(self.domains)}
            return _Answer(200, body)
        if path not in ("/emails", "/emails/batch"):
            return _error(404, "not_found", "The requested endpoint does not exist.")
        if method != "POST":
            return _error(405, "method_not_allowed", "Method not allowed")

        injection = self._next_injection(path)
        if injection is not None and not injection.deliver_then_fail:
            return self._fail(injection)

        answer = self._process(path, lower, raw, key)
        if injection is not None:
            return self._fail(injection)
        return answer

    def _fail(self, inj: Injection) -> _Answer:
        if inj.drop_connection:
            raise _Drop
        if inj.raw_body is not None:
            return _Answer(inj.status, inj.raw_body, {"content-type": "text/html", **inj.headers})
        return _error(inj.status, inj.name, inj.message, inj.headers)

    def _check_auth(self, header: str | None) -> _Answer | None:
        if not header or not header.startswith("Bearer ") or not header[7:].strip():
            return _error(401, "missing_api_key", "Missing API key in the authorization header.")
        token = header[7:].strip()
        valid = token.startswith("re_") and token != "re_None"
        if self.api_keys is not None:
            valid = token in self.api_keys
        if not valid:
            return _error(403, "invalid_api_key", "API key is invalid")
        return None

    def _process(
        self, path: str, headers: Mapping[str, str], raw: bytes, key: str | None
    ) -> _Answer:
        if key is not None and (not key or len(key) > MAX_KEY):
            return _error(
                400,
                "invalid_idempotency_key",
                f"The key must be between 1-{MAX_KEY} chars.",
            )
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return _error(400, "validation_error", "Invalid JSON body.")
        fingerprint = hashlib.sha256(
            json.dumps([path, body], sort_keys=True).encode("utf-8")
        ).hexdigest()

        if key is not None:
            with self._lock:
                seen = self._idempotency.get(key)
                if seen is not None:
                    if seen[0] != fingerprint:
                        return _error(
                            409,
                            "invalid_idempotent_request",
                            DEFAULT_MESSAGES["invalid_idempotent_request"],
                        )
                    return seen[1]
                if key in self._in_flight:
                    return _error(
                        409,
                        "concurrent_idempotent_requests",
                        DEFAULT_MESSAGES["concurrent_idempotent_requests"],
                    )
                self._in_flight.add(key)
        try:
            answer = self._deliver(path, headers, body, key)
            if key is not None and answer.status == 200:
                with self._lock:
                    self._idempotency[key] = (fingerprint, answer)
            return answer
        finally:
            if key is not None:
                with self._lock:
                    self._in_flight.discard(key)

    def _deliver(
        self, path: str, headers: Mapping[str, str], body: Any, key: str | None
    ) -> _Answer:
        if path == "/emails/batch":
            if not isinstance(body, list) or not body:
                self._violation(f"{path}: body is not a non-empty array")
                return _error(422, "validation_error", "The request body must be an array.")
            if len(body) > MAX_BATCH:
                return _error(422, "validation_error", f"Up to {MAX_BATCH} emails per batch.")
            for i, item in enumerate(body):
                problem = self._check_email(item, where=f"{path}[{i}]")
                if problem:
                    return _error(422, "validation_error", problem)
            ids = [self._store(item, key) for item in body]
            return _Answer(200, {"data": [{"id": i} for i in ids]})
        problem = self._check_email(body, where=path)
        if problem:
            return _error(422, "validation_error", problem)
        return _Answer(200, {"id": self._store(body, key)})

    def _check_email(self, item: Any, *, where: str) -> str | None:
        errors = sorted(self._validator.iter_errors(item), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            location = "/".join(str(p) for p in first.path) or "(body)"
            self._violation(f"{where}: {location}: {first.message}")
            return f"Invalid `{location}` field: {first.message}"
        # Not expressible in the schema, but the API requires content (§9).
        if not any(item.get(k) for k in ("html", "text", "template")):
            self._violation(f"{where}: neither html, text nor template")
            return "Missing `html` or `text` field."
        return None

    def _violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)

    def _store(self, item: Mapping[str, Any], key: str | None) -> str:
        to = item["to"]
        message = {
            "id": str(uuid.uuid4()),
            "from": item["from"],
            "to": [to] if isinstance(to, str) else list(to),
            "cc": item.get("cc"),
            "bcc": item.get("bcc"),
            "subject": item["subject"],
            "html": item.get("html"),
            "text": item.get("text"),
            "headers": item.get("headers"),
            "idempotency_key": key,
        }
        with self._lock:
            self.messages.append(message)
        return str(message["id"])


def _error(
    status: int, name: str, message: str, headers: Mapping[str, str] | None = None
) -> _Answer:
    return _Answer(
        status, {"statusCode": status, "name": name, "message": message}, dict(headers or {})
    )


class _Handler(BaseHTTPRequestHandler):
    fake: FakeResendServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        try:
            answer = self.fake.handle(self.command, path, dict(self.headers.items()), raw)
        except _Drop:
            self.close_connection = True
            return
        headers = {k.lower(): v for k, v in answer.headers.items()}
        if isinstance(answer.body, str):
            data = answer.body.encode("utf-8")
            headers.setdefault("content-type", "text/plain")
        else:
            data = json.dumps(answer.body).encode("utf-8")
            headers["content-type"] = "application/json"
        self.send_response(answer.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("ratelimit-limit", "5")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = _serve
    do_GET = _serve
    do_PUT = _serve
    do_PATCH = _serve
    do_DELETE = _serve


FakeResendServer.handler = _Handler  # defined after the server class it serves

__all__ = ["CONTRACT", "FakeResendServer", "Injection"]
