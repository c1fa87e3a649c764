"""A Stripe-compatible HTTP server over a :class:`SandboxAccount`.

Serves the subset of Stripe's API revbot uses, checks keys like Stripe, answers errors in
Stripe's JSON shape, and can be told to add latency, rate-limit with 429s and inject faults.
Pure stdlib: ``http.server.ThreadingHTTPServer`` on 127.0.0.1 with daemon threads.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import datetime as dt
import hashlib
import json
import logging
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.errors import ServiceError
from bot.sandbox.account import SandboxAccount
from bot.sandbox.billing import SandboxBilling
from bot.sandbox.billing_routes import BillingApi
from bot.sandbox.params import (
    ApiError,
    _created_range,
    _cursors,
    _int,
    _limit,
    _no_expand,
    _only,
    _string,
    decode_params,
)
from bot.sandbox.payout_routes import PayoutApi
from bot.sandbox.payouts import MANUAL_FILTER_MESSAGE
from bot.sandbox.reports import (
    REPORT_TYPES,
    ReportType,
    RunParameters,
    SettledPayout,
    csv_chunks,
    report_rows,
)

logger = logging.getLogger(__name__)

API_VERSION = "2020-08-27"  # the version of the spec the responses are checked against
# A test-mode key in the shape revbot accepts; the sandbox takes any test key, and this one
# reaches no real account.
SANDBOX_KEY = "sk_test_revbotsandbox0000"
_DAY = 86_400
_FILE_TTL = 365 * _DAY  # fixtures show expires_at = created + 1 year
_KEY_PREFIXES = ("sk_live_", "sk_test_", "rk_live_", "rk_test_", "pk_live_", "pk_test_")
_RATE_LIMIT_MESSAGE = (
    "Request rate limit exceeded. You can learn more about rate limits here "
    "https://stripe.com/docs/rate-limits."
)


def mask_key(key: str) -> str:
    """How Stripe shows a rejected key: its prefix, stars and at most the last 4 characters."""
    prefix, rest = "", key
    for candidate in _KEY_PREFIXES:
        if key.startswith(candidate):
            prefix, rest = candidate, key[len(candidate) :]
            break
    tail = rest[-4:] if len(rest) >= 12 else ""  # short keys: showing 4 chars would leak most
    return f"{prefix}****{tail}"


@dataclass(frozen=True)
class SandboxStats:
    """A snapshot of what the server saw since the last reset."""

    requests: collections.Counter[tuple[str, str]]
    report_runs_created: int
    rate_limited: int
    request_times: list[tuple[float, str]]


@dataclass
class _Injection:
    route: str
    status: int
    remaining: int
    headers: dict[str, str]
    body: bytes | dict[str, Any] | None
    delay: float
    reset: bool


@dataclass
class _Run:
    id: str
    created: int
    ready_at: float  # monotonic time after which the run completes
    report_type: ReportType
    params: RunParameters
    parameters_json: dict[str, Any]
    fail_message: str | None
    status: str = "pending"
    error: str | None = None
    succeeded_at: int | None = None
    file_id: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass
class _File:
    id: str
    created: int
    run: _Run
    snapshot: list[dict[str, Any]] = field(repr=False)
    payouts: list[SettledPayout] = field(default_factory=list, repr=False)
    size: int = 0


@dataclass(frozen=True)
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Callable[..., Any]


@dataclass
class _Reply:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None
    length: int | None = None
    content_type: str = "application/json"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up on kept-alive clients so no request is served after stop()."""
        with self.connections_lock:
            connections = list(self.connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the SDK's pooled sessions expect
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.sandbox._dispatch(self, "GET")

    def do_POST(self) -> None:
        self.server.sandbox._dispatch(self, "POST")

    def do_DELETE(self) -> None:
        self.server.sandbox._dispatch(self, "DELETE")

    def do_PUT(self) -> None:
        self.server.sandbox._dispatch(self, "PUT")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sandbox: " + format, *args)


class SandboxServer:
    """Stripe's API over ``account`` on ``http://host:port`` (port 0 picks a free one).

    ``latency`` (seconds per request), ``rate_limit`` (requests per second per route, sliding
    one-second window; None = unlimited), ``files_rate_limit`` (the same for ``/v1/files``
    routes, which otherwise follow ``rate_limit``), ``report_pending_seconds`` (how long a new
    report run stays ``pending``) and ``data_available_end`` (unix seconds; None = the latest
    UTC midnight not after min(now, account end)) can also be changed while running.
    ``billing`` adds the Billing endpoints (subscriptions, invoices) of a :class:`BillingApi`.
    The payout endpoints (``/v1/payouts``) are always served, over the account's payouts;
    ``payouts`` passes a :class:`PayoutApi` of one's own (say one whose restricted keys lack
    the read permission).
    """

    def __init__(
        self,
        account: SandboxAccount,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        rate_limit: float | None = None,
        files_rate_limit: float | None = None,
        report_pending_seconds: float = 0.0,
        data_available_end: int | None = None,
        billing: BillingApi | None = None,
        payouts: PayoutApi | None = None,
    ) -> None:
        self.account = account
        self.billing = billing
        self.payouts = PayoutApi() if payouts is None else payouts
        self.host = host
        self.port = port
        self.latency = latency
        self.report_pending_seconds = report_pending_seconds
        self.data_available_end = data_available_end
        self._rate_limit = rate_limit
        self._files_rate_limit = files_rate_limit
        self._lock = threading.RLock()
        self._rng = random.Random(f"sandbox-server-{account.seed}")
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._windows: dict[tuple[str, str], collections.deque[float]] = {}
        self._injections: list[_Injection] = []
        self._fail_next: list[str] = []
        self._runs: dict[str, _Run] = {}
        self._files: dict[str, _File] = {}
        self._idempotency: dict[str, tuple[str, bytes]] = {}
        self._routes = self._build_routes()
        self.reset_stats()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> SandboxServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("sandbox already started")
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"stripe-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL such as ``http://127.0.0.1:54321`` (for both ``api`` and ``files``)."""
        if self._httpd is None:
            raise RuntimeError("sandbox not started")
        return f"http://{self.host}:{self.port}"

    # ----------------------------------------------------------------- knobs

    @property
    def rate_limit(self) -> float | None:
        return self._rate_limit

    @rate_limit.setter
    def rate_limit(self, value: float | None) -> None:
        with self._lock:
            self._rate_limit = value
            self._windows.clear()

    @property
    def files_rate_limit(self) -> float | None:
        return self._files_rate_limit

    @files_rate_limit.setter
    def files_rate_limit(self, value: float | None) -> None:
        with self._lock:
            self._files_rate_limit = value
            self._windows.clear()

    @property
    def stats(self) -> SandboxStats:
        """A consistent copy of the counters."""
        with self._lock:
            return SandboxStats(
                requests=collections.Counter(self._requests),
                report_runs_created=self._report_runs_created,
                rate_limited=self._rate_limited,
                request_times=list(self._request_times),
            )

    def reset_stats(self) -> None:
        with self._lock:
            self._requests: collections.Counter[tuple[str, str]] = collections.Counter()
            self._report_runs_created = 0
            self._rate_limited = 0
            # Bounded so that a long `revbot sandbox serve` does not grow without end.
            self._request_times: collections.deque[tuple[float, str]] = collections.deque(
                maxlen=1_000_000
            )

    def inject(
        self,
        route: str,
        *,
        status: int = 500,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: bytes | dict[str, Any] | None = None,
        delay: float = 0.0,
        reset: bool = False,
    ) -> None:
        """Fault for the next ``times`` requests whose path starts with ``route``.

        ``reset`` closes the connection without an answer; otherwise, after ``delay``
        seconds, answers ``status`` with ``body`` (bytes verbatim, a dict as JSON, None = a
        Stripe-shaped error) and ``headers``. ``status=200`` without a ``body`` only slows the
        request down by ``delay`` and then serves it normally.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._injections.append(
                _Injection(route, status, times, dict(headers or {}), body, delay, reset)
            )

    def fail_next_report_run(self, error_message: str) -> None:
        """The next report run created will end ``failed`` with this ``error``."""
        with self._lock:
            self._fail_next.append(error_message)

    # ----------------------------------------------------------------- plumbing

    def _build_routes(self) -> list[_Route]:
        table: list[tuple[str, str, Callable[..., Any]]] = [
            ("GET", "/v1/account", self._get_account),
            ("GET", "/v1/balance_transactions", self._list_balance_transactions),
            ("GET", "/v1/balance_transactions/{id}", self._get_balance_transaction),
            ("GET", "/v1/reporting/report_types", self._list_report_types),
            ("GET", "/v1/reporting/report_types/{report_type}", self._get_report_type),
            ("POST", "/v1/reporting/report_runs", self._create_report_run),
            ("GET", "/v1/reporting/report_runs", self._list_report_runs),
            ("GET", "/v1/reporting/report_runs/{report_run}", self._get_report_run),
            ("GET", "/v1/files/{file}", self._get_file),
            ("GET", "/v1/files/{file}/contents", self._get_file_contents),
        ]
        table += self.payouts.routes(self)
        if self.billing is not None:
            table += self.billing.routes(self)
        routes = []
        for method, template, handler in table:
            regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
            routes.append(_Route(method, template, re.compile(f"^{regex}/?$"), handler))
        return routes

    def _match(self, method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
        for route in self._routes:
            found = route.pattern.match(path)
            if found and route.method == method:
                return route, found.groupdict()
        return None, {}

    def _take_injection(self, path: str) -> _Injection | None:
        with self._lock:
            for injection in self._injections:
                if path.startswith(injection.route):
                    injection.remaining -= 1
                    if injection.remaining == 0:
                        self._injections.remove(injection)
                    return injection
        return None

    def _admit(self, method: str, template: str) -> bool:
        """Sliding one-second window per route; only admitted requests fill it."""
        with self._lock:
            limit = self._rate_limit
            if template.startswith("/v1/files") and self._files_rate_limit is not None:
                limit = self._files_rate_limit
            if limit is None:
                return True
            now = time.monotonic()
            window = self._windows.setdefault((method, template), collections.deque())
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= limit:
                self._rate_limited += 1
                return False
            window.append(now)
            return True

    def _authenticate(self, header: str | None) -> None:
        if not header:
            raise ApiError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details.",
                headers={"WWW-Authenticate": 'Basic realm="Stripe"'},
            )
        scheme, _, credentials = header.strip().partition(" ")
        key = ""
        if scheme.lower() == "bearer":
            key = credentials.strip()
        elif scheme.lower() == "basic":
            try:
                key = (
                    base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
                )
            except (binascii.Error, UnicodeDecodeError):
                key = ""
        valid = any(
            key.startswith(p) and len(key) > len(p) for p in ("sk_test_", "rk_test_")
        ) and re.fullmatch(r"[A-Za-z0-9_]+", key)
        if not valid:
            raise ApiError(
                401,
                f"Invalid API Key provided: {mask_key(key)}",
                headers={"WWW-Authenticate": 'Basic realm="Stripe"'},
            )

    def _dispatch(self, handler: _Handler, method: str) -> None:
        """Serve one request: stats, faults, latency, rate limit, auth, then the route."""
        split = urlsplit(handler.path)
        path = split.path
        route, path_params = self._match(method, path)
        label = route.template if route else path
        with self._lock:
            self._requests[(method, label)] += 1
            self._request_times.append((time.monotonic(), label))
        try:
            length = int(handler.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        raw_body = handler.rfile.read(length) if length > 0 else b""
        try:
            injection = self._take_injection(path)
            if self.latency > 0:
                time.sleep(self.latency)
            if injection is not None:
                if injection.delay > 0:
                    time.sleep(injection.delay)
                if injection.reset:
                    self._reset_connection(handler)
                    return
                if injection.status != 200 or injection.body is not None:
                    self._send_injection(handler, injection)
                    return
            reply = self._serve(handler, method, route, path, path_params, split.query, raw_body)
            self._send(handler, reply)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    def _serve(
        self,
        handler: _Handler,
        method: str,
        route: _Route | None,
        path: str,
        path_params: dict[str, str],
        query: str,
        raw_body: bytes,
    ) -> _Reply:
        try:
            if route is not None and not self._admit(method, route.template):
                raise ApiError(
                    429,
                    _RATE_LIMIT_MESSAGE,
                    code="rate_limit",
                    headers={"Stripe-Rate-Limited-Reason": "endpoint-rate"},
                )
            self._authenticate(handler.headers.get("Authorization"))
            if route is None:
                raise ApiError(
                    404,
                    f"Unrecognized request URL ({method}: {path}). Please see "
                    "https://stripe.com/docs or we can help at https://support.stripe.com/.",
                )
            pairs = parse_qsl(query, keep_blank_values=True)
            if method == "POST":
                content_type = handler.headers.get("Content-Type", "")
                if raw_body and not content_type.startswith("application/x-www-form-urlencoded"):
                    raise ApiError(
                        400,
                        "Invalid request: the body must be application/x-www-form-urlencoded.",
                    )
                pairs += parse_qsl(raw_body.decode("utf-8", "replace"), keep_blank_values=True)
            params = decode_params(pairs)
            result = route.handler(params=params, headers=handler.headers, **path_params)
            return result if isinstance(result, _Reply) else _Reply(200, result)
        except ApiError as e:
            return _Reply(e.status, e.body(), headers=e.headers)

    def _common_headers(self, handler: _Handler) -> dict[str, str]:
        with self._lock:
            request_id = "req_" + "".join(self._rng.choices("0123456789abcdefABCDEF", k=14))
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": handler.headers.get("Stripe-Version") or API_VERSION,
            "Access-Control-Allow-Origin": "*",
        }
        key = handler.headers.get("Idempotency-Key")
        if key:
            headers["Idempotency-Key"] = key
        return headers

    def _send(self, handler: _Handler, reply: _Reply) -> None:
        headers = self._common_headers(handler)
        headers.update(reply.headers)
        if reply.stream is not None:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", reply.content_type)
            handler.send_header("Content-Length", str(reply.length))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            for chunk in reply.stream:  # written as produced: the file may be large
                handler.wfile.write(chunk)
            handler.wfile.flush()
            return
        data = json.dumps(reply.body, indent=2).encode() + b"\n"
        self._write(handler, reply.status, data, headers, reply.content_type)

    @staticmethod
    def _write(
        handler: _Handler, status: int, data: bytes, headers: Mapping[str, str], content_type: str
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
        handler.wfile.flush()

    def _send_injection(self, handler: _Handler, injection: _Injection) -> None:
        headers = self._common_headers(handler)
        headers.update(injection.headers)
        if isinstance(injection.body, bytes):
            data = injection.body
        else:
            body = injection.body
            if body is None:
                body = self._default_fault_body(injection.status)
            data = json.dumps(body, indent=2).encode() + b"\n"
        self._write(handler, injection.status, data, headers, "application/json")

    @staticmethod
    def _default_fault_body(status: int) -> dict[str, Any]:
        if status == 429:
            return ApiError(429, _RATE_LIMIT_MESSAGE, code="rate_limit").body()
        if status >= 500:
            return ApiError(
                status, "An unknown error occurred (injected by the sandbox).", type="api_error"
            ).body()
        return ApiError(status, "Injected failure (sandbox).").body()

    @staticmethod
    def _reset_connection(handler: _Handler) -> None:
        """Close with SO_LINGER 0 so the client sees a connection reset, not an answer."""
        handler.close_connection = True
        conn = handler.connection
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.wfile = _Discard()  # type: ignore[assignment]  # nothing may be written (or flushed) afterwards
        handler.rfile.close()  # drops the makefile's reference so close() is immediate
        conn.close()

    # ----------------------------------------------------------------- clock and availability

    def data_available_start(self) -> int:
        """The account's start floored to UTC midnight."""
        return self.account.start // _DAY * _DAY

    def current_data_available_end(self) -> int:
        """The configured value, else the latest UTC midnight <= min(now, account end)."""
        if self.data_available_end is not None:
            return self.data_available_end
        latest = min(int(time.time()), self.account.end) // _DAY * _DAY
        return max(latest, self.data_available_start())

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}_" + "".join(
                self._rng.choices(
                    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", k=24
                )
            )

    # ----------------------------------------------------------------- endpoints

    def _get_account(self, *, params: dict[str, Any], headers: Any) -> dict[str, Any]:
        _only(params, {"expand"})
        _no_expand(params)
        return {
            "id": self.account.account_id,
            "object": "account",
            "business_profile": {
                "mcc": "5734",
                "name": "Sandbox Widgets",
                "product_description": "Synthetic business served by revbot's Stripe sandbox",
                "support_address": None,
                "support_email": None,
                "support_phone": None,
                "support_url": None,
                "url": None,
            },
            "business_type": "company",
            "charges_enabled": True,
            "country": "US",
            "created": self.account.start,
            "default_currency": "usd",
            "details_submitted": True,
            "email": "owner@sandbox.invalid",
            "metadata": {},
            "payouts_enabled": True,
            "settings": {
                "branding": {
                    "icon": None,
                    "logo": None,
                    "primary_color": None,
                    "secondary_color": None,
                },
                "card_payments": {
                    "decline_on": {"avs_failure": False, "cvc_failure": False},
                    "statement_descriptor_prefix": None,
                },
                "dashboard": {"display_name": "Sandbox Widgets", "timezone": self.account.tz},
                "payments": {
                    "statement_descriptor": "SANDBOX WIDGETS",
                    "statement_descriptor_kana": None,
                    "statement_descriptor_kanji": None,
                },
                "payouts": {
                    "debit_negative_balances": True,
                    "schedule": {"delay_days": 2, "interval": "daily"},
                    "statement_descriptor": None,
                },
            },
            "type": "standard",
        }

    def _list_balance_transactions(self, *, params: dict[str, Any], headers: Any) -> dict[str, Any]:
        _only(
            params,
            {"created", "currency", "ending_before", "expand", "limit", "payout", "source",
             "starting_after", "type"},
        )  # fmt: skip
        _no_expand(params)
        limit = _limit(params)
        gte, lt = _created_range(params)
        after, before = _cursors(params)
        filters = {
            name: _string(params[name], name).lower()
            if name == "currency"
            else _string(params[name], name)
            for name in ("type", "currency", "source", "payout")
            if name in params
        }
        if "payout" in filters:
            payout = self.account.payout(filters["payout"])
            if payout is not None and not payout["automatic"]:
                raise ApiError(400, MANUAL_FILTER_MESSAGE, param="payout")
        try:
            data, has_more = self.account.page(
                limit=limit, gte=gte, lt=lt, starting_after=after, ending_before=before, **filters
            )
        except KeyError as e:
            param = "starting_after" if after is not None else "ending_before"
            raise ApiError(
                400,
                f"No such balance transaction: '{e.args[0]}'",
                param=param,
                code="resource_missing",
            ) from None
        return {
            "object": "list",
            "data": data,
            "has_more": has_more,
            "url": "/v1/balance_transactions",
        }

    def _get_balance_transaction(
        self, *, id: str, params: dict[str, Any], headers: Any
    ) -> dict[str, Any]:
        _only(params, {"expand"})
        _no_expand(params)
        txn = self.account.get(id)
        if txn is None:
            raise ApiError(
                404, f"No such balance transaction: '{id}'", param="id", code="resource_missing"
            )
        return txn

    def _report_type_json(self, report_type: ReportType) -> dict[str, Any]:
        end = self.current_data_available_end()
        return {
            "id": report_type.id,
            "object": "reporting.report_type",
            "data_available_end": end,
            "data_available_start": self.data_available_start(),
            "default_columns": list(report_type.default_columns),
            "livemode": False,
            "name": report_type.name,
            "updated": end,
            "version": report_type.version,
        }

    def _list_report_types(self, *, params: dict[str, Any], headers: Any) -> dict[str, Any]:
        _only(params, {"expand"})
        _no_expand(params)
        return {
            "object": "list",
            "data": [self._report_type_json(t) for t in REPORT_TYPES.values()],
            "has_more": False,
            "url": "/v1/reporting/report_types",
        }

    def _get_report_type(
        self, *, report_type: str, params: dict[str, Any], headers: Any
    ) -> dict[str, Any]:
        _only(params, {"expand"})
        _no_expand(params)
        found = REPORT_TYPES.get(report_type)
        if found is None:
            raise ApiError(
                404,
                f"No such report type: '{report_type}'",
                param="report_type",
                code="resource_missing",
            )
        return self._report_type_json(found)

    def _validate_run(
        self, params: dict[str, Any]
    ) -> tuple[ReportType, RunParameters, dict[str, Any]]:
        _only(params, {"report_type", "parameters", "expand"})
        _no_expand(params)
        if "report_type" not in params:
            raise ApiError(400, "Missing required param: report_type.", param="report_type")
        type_id = _string(params["report_type"], "report_type")
        report_type = REPORT_TYPES.get(type_id)
        if report_type is None:
            raise ApiError(
                400,
                f"No such report type: '{type_id}'",
                param="report_type",
                code="resource_missing",
            )
        raw = params.get("parameters", {})
        if not isinstance(raw, dict):
            raise ApiError(400, "Invalid hash", param="parameters")
        _only(
            raw,
            {"columns", "connected_account", "currency", "interval_end", "interval_start",
             "payout", "reporting_category", "timezone"},
            "parameters",
        )  # fmt: skip
        for name in raw:
            if name not in report_type.parameters:
                raise ApiError(
                    400,
                    f"parameters[{name}] is not a valid parameter for report type {type_id}.",
                    param=f"parameters[{name}]",
                )
        for name in ("interval_start", "interval_end"):
            if name not in raw:
                raise ApiError(
                    400, f"Missing required param: parameters[{name}].", param=f"parameters[{name}]"
                )
        start = _int(raw["interval_start"], "parameters[interval_start]")
        end = _int(raw["interval_end"], "parameters[interval_end]")
        if start >= end:
            raise ApiError(
                400,
                "parameters[interval_start] must be before parameters[interval_end].",
                param="parameters[interval_start]",
            )
        available_start = self.data_available_start()
        available_end = self.current_data_available_end()
        if start < available_start:
            raise ApiError(
                400,
                f"parameters[interval_start] must be on or after the report type's "
                f"data_available_start ({available_start}).",
                param="parameters[interval_start]",
            )
        if end > available_end:
            raise ApiError(
                400,
                f"parameters[interval_end] must be on or before the report type's "
                f"data_available_end ({available_end}).",
                param="parameters[interval_end]",
            )
        echo: dict[str, Any] = {"interval_end": end, "interval_start": start}
        timezone = _string(raw.get("timezone", "Etc/UTC"), "parameters[timezone]")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ApiError(
                400, f"Invalid timezone: {timezone}", param="parameters[timezone]"
            ) from None
        echo["timezone"] = timezone
        currency = None
        if "currency" in raw:
            currency = _string(raw["currency"], "parameters[currency]").lower()
            if not re.fullmatch(r"[a-z]{3}", currency):
                raise ApiError(400, f"Invalid currency: {currency}", param="parameters[currency]")
            echo["currency"] = currency
        columns = None
        if "columns" in raw:
            if not isinstance(raw["columns"], list) or not raw["columns"]:
                raise ApiError(400, "Invalid array", param="parameters[columns]")
            columns = tuple(_string(c, "parameters[columns]") for c in raw["columns"])
            for column in columns:
                if column not in report_type.columns:
                    raise ApiError(
                        400,
                        f"Unknown column for report type {type_id}: {column}",
                        param="parameters[columns]",
                    )
            echo["columns"] = list(columns)
        category = None
        if "reporting_category" in raw:
            category = _string(raw["reporting_category"], "parameters[reporting_category]")
            echo["reporting_category"] = category
        run_params = RunParameters(
            interval_start=start,
            interval_end=end,
            timezone=timezone,
            currency=currency,
            columns=columns,
            reporting_category=category,
        )
        return report_type, run_params, echo

    def _create_report_run(self, *, params: dict[str, Any], headers: Any) -> _Reply:
        key = headers.get("Idempotency-Key")
        fingerprint = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        with self._lock:
            if key and key in self._idempotency:
                seen, data = self._idempotency[key]
                if seen != fingerprint:
                    raise ApiError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters "
                        f"they were first used with. Try using a key other than '{key}' if you "
                        "meant to execute a different request.",
                        type="idempotency_error",
                    )
                return _Reply(200, json.loads(data), headers={"Idempotent-Replayed": "true"})
            report_type, run_params, echo = self._validate_run(params)
            run = _Run(
                id=self._new_id("frr"),
                created=int(time.time()),
                ready_at=time.monotonic() + self.report_pending_seconds,
                report_type=report_type,
                params=run_params,
                parameters_json=echo,
                fail_message=self._fail_next.pop(0) if self._fail_next else None,
            )
            body = self._run_json(run, refresh=False)  # before the run is visible to others
            self._runs[run.id] = run
            self._report_runs_created += 1
            if key:
                self._idempotency[key] = (fingerprint, json.dumps(body).encode())
            return _Reply(200, body)

    def _refresh(self, run: _Run) -> None:
        """Complete a pending run once its time has come (computed lazily, on observation).

        Holds only the run's own lock while the CSV is sized, so a big report does not stall
        other requests.
        """
        with run.lock:
            if run.status != "pending" or time.monotonic() < run.ready_at:
                return
            if run.fail_message is not None:
                run.error = run.fail_message
                run.status = "failed"
                return
            snapshot = self.account.snapshot(before=run.params.interval_end)
            payouts: list[SettledPayout] = []
            if run.report_type.id.startswith("payout_reconciliation."):
                for payout in self.account.payouts:
                    members = self.account.payout_members(payout["id"])
                    payouts.append((payout, members or frozenset()))
            file = _File(
                id=self._new_id("file"),
                created=int(time.time()),
                run=run,
                snapshot=snapshot,
                payouts=payouts,
            )
            file.size = sum(len(chunk) for chunk in self._csv(file))
            with self._lock:
                self._files[file.id] = file
            run.succeeded_at = int(time.time())
            run.file_id = file.id
            run.status = "succeeded"

    def _csv(self, file: _File) -> Iterator[bytes]:
        return csv_chunks(
            report_rows(file.run.report_type, file.run.params, file.snapshot, file.payouts)
        )

    def _file_json(self, file: _File) -> dict[str, Any]:
        return {
            "id": file.id,
            "object": "file",
            "created": file.created,
            "expires_at": file.created + _FILE_TTL,
            "filename": f"{file.run.id}.csv",
            "links": {
                "object": "list",
                "data": [],
                "has_more": False,
                "url": f"/v1/file_links?file={file.id}",
            },
            "purpose": "finance_report_run",
            "size": file.size,
            "title": f"FinanceReportRun {file.run.id}",
            "type": "csv",
            "url": f"{self.url}/v1/files/{file.id}/contents",
        }

    def _run_json(self, run: _Run, *, refresh: bool = True) -> dict[str, Any]:
        if refresh:
            self._refresh(run)
        with run.lock:
            return {
                "id": run.id,
                "object": "reporting.report_run",
                "created": run.created,
                "error": run.error,
                "livemode": False,
                "parameters": dict(run.parameters_json),
                "report_type": run.report_type.id,
                "result": self._file_json(self._files[run.file_id]) if run.file_id else None,
                "status": run.status,
                "succeeded_at": run.succeeded_at,
            }

    def _get_report_run(
        self, *, report_run: str, params: dict[str, Any], headers: Any
    ) -> dict[str, Any]:
        _only(params, {"expand"})
        _no_expand(params)
        run = self._runs.get(report_run)
        if run is None:
            raise ApiError(
                404,
                f"No such reporting.report_run: '{report_run}'",
                param="report_run",
                code="resource_missing",
            )
        return self._run_json(run)

    def _list_report_runs(self, *, params: dict[str, Any], headers: Any) -> dict[str, Any]:
        _only(params, {"created", "ending_before", "expand", "limit", "starting_after"})
        _no_expand(params)
        limit = _limit(params)
        gte, lt = _created_range(params)
        after, before = _cursors(params)
        with self._lock:
            ordered = sorted(self._runs.values(), key=lambda r: (r.created, r.id), reverse=True)
            for cursor in (after, before):
                if cursor is not None and cursor not in self._runs:
                    raise ApiError(
                        400,
                        f"No such reporting.report_run: '{cursor}'",
                        param="starting_after" if cursor == after else "ending_before",
                        code="resource_missing",
                    )
            selected = [
                r
                for r in ordered
                if (gte is None or r.created >= gte) and (lt is None or r.created < lt)
            ]
            if after is not None:
                pivot = (self._runs[after].created, after)
                selected = [r for r in selected if (r.created, r.id) < pivot]
                page, has_more = selected[:limit], len(selected) > limit
            elif before is not None:
                pivot = (self._runs[before].created, before)
                selected = [r for r in selected if (r.created, r.id) > pivot]
                page, has_more = selected[-limit:], len(selected) > limit
            else:
                page, has_more = selected[:limit], len(selected) > limit
        data = [self._run_json(r) for r in page]
        return {
            "object": "list",
            "data": data,
            "has_more": has_more,
            "url": "/v1/reporting/report_runs",
        }

    def _find_file(self, file_id: str) -> _File:
        with self._lock:
            found = self._files.get(file_id)
        if found is None:
            raise ApiError(
                404, f"No such file upload: '{file_id}'", param="file", code="resource_missing"
            )
        return found

    def _get_file(self, *, file: str, params: dict[str, Any], headers: Any) -> dict[str, Any]:
        _only(params, {"expand"})
        _no_expand(params)
        return self._file_json(self._find_file(file))

    def _get_file_contents(self, *, file: str, params: dict[str, Any], headers: Any) -> _Reply:
        _only(params, set())
        found = self._find_file(file)
        return _Reply(
            200,
            stream=self._csv(found),
            length=found.size,
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{found.run.id}.csv"'},
        )


class _Discard:
    """A write-only sink standing in for a connection that was reset on purpose."""

    closed = True

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def serve(
    *,
    port: int = 12111,
    host: str = "127.0.0.1",
    days: int = 120,
    tz: str = "UTC",
    seed: int = 7,
    scale: float = 1.0,
    **server_options: Any,
) -> None:
    """Serve the default synthetic account (ending today, UTC), its subscriptions and invoices
    included, until interrupted (the CLI)."""
    today = dt.datetime.now(dt.UTC).date()
    account = SandboxAccount.generate(end=today, days=days, tz=tz, seed=seed, scale=scale)
    billing = SandboxBilling.generate(end=today, seed=seed, tz=tz)
    try:
        server = SandboxServer(
            account, host=host, port=port, billing=BillingApi(billing), **server_options
        ).start()
    except OSError as e:
        raise ServiceError(
            f"cannot listen on {host}:{port} ({e.strerror}); choose another --port"
        ) from e
    try:
        print(
            f"Stripe sandbox: {len(account)} balance transactions, {len(billing.subscriptions)} "
            f"subscriptions, {len(billing.invoices)} invoices, listening on {server.url}"
        )
        print(f"export STRIPE_API_BASE={server.url} STRIPE_SECRET_KEY={SANDBOX_KEY}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    finally:
        server.stop()
