"""A fake Slack incoming webhook on 127.0.0.1 for tests.

Behaves like ``https://hooks.slack.com/services/T…/B…/<token>`` where revbot depends on it
(Slack's "Improving error conditions for Incoming Webhooks" changelog, 2016-05-17):

- ``POST`` of a JSON body with ``text`` (or ``blocks``) to the webhook's path -> ``200 ok``
  (``text/html``, like Slack);
- another path -> ``404 no_service``; a body that is not a JSON object -> ``400
  invalid_payload``; neither ``text`` nor ``blocks`` -> ``400 no_text``; other methods -> 405;
- failures injected with :meth:`FakeSlackWebhook.inject` (e.g. ``500 rollup_error``, ``429``
  with ``Retry-After``, ``410 channel_is_archived``), answered as plain text like Slack does.

Accepted messages are in ``server.messages`` (the posted JSON); every request in
``server.requests``.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes._http import LocalServer

DEFAULT_BODIES = {
    400: "invalid_payload",
    403: "action_prohibited",
    404: "channel_not_found",
    410: "channel_is_archived",
    429: "rate_limited",
    500: "rollup_error",
    503: "service_unavailable",
}


@dataclass
class _Injection:
    status: int
    times: int
    body: str
    headers: dict[str, str]


class FakeSlackWebhook(LocalServer):
    """One Slack incoming webhook, in memory, on ``127.0.0.1`` and a free port."""

    thread_name = "fake-slack"

    def __init__(self) -> None:
        # Shaped like a real webhook; the last part is the secret that must never be logged.
        self.token = secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")
        self.path = f"/services/T0REVBOT1/B0ALERTS1/{self.token}"
        self.messages: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self._injections: list[_Injection] = []
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The full webhook URL (a secret, like Slack's)."""
        return f"{self.base_url}{self.path}"

    # -- test controls -------------------------------------------------------------------

    def inject(
        self,
        *,
        status: int = 500,
        times: int = 1,
        body: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``times`` webhook posts with ``status`` (nothing is posted)."""
        headers: dict[str, str] = {}
        if status == 429:
            headers["Retry-After"] = str(1 if retry_after is None else retry_after)
        elif retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        with self._lock:
            self._injections.append(
                _Injection(status, times, body or DEFAULT_BODIES.get(status, "error"), headers)
            )

    @property
    def texts(self) -> list[str]:
        """The ``text`` of each accepted message, in order."""
        with self._lock:
            return [str(m.get("text", "")) for m in self.messages]

    # -- request handling ----------------------------------------------------------------

    def handle(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, str, dict[str, str]]:
        lower = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            self.requests.append({"method": method, "path": path, "headers": lower, "body": raw})
        if path != self.path:
            return 404, "no_service", {}
        if method != "POST":
            return 405, "invalid_method", {}
        with self._lock:
            injection = self._injections[0] if self._injections else None
            if injection is not None:
                injection.times -= 1
                if injection.times <= 0:
                    self._injections.pop(0)
        if injection is not None:
            return injection.status, injection.body, injection.headers
        if "json" not in lower.get("content-type", ""):
            return 400, "invalid_payload", {}
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return 400, "invalid_payload", {}
        if not isinstance(body, dict):
            return 400, "invalid_payload", {}
        if not body.get("text") and not body.get("blocks"):
            return 400, "no_text", {}
        with self._lock:
            self.messages.append(body)
        return 200, "ok", {}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSlackWebhook
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line holds the secret path; keep it out of test output too

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        status, text, headers = self.fake.handle(
            self.command, path, dict(self.headers.items()), raw
        )
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = _serve
    do_GET = _serve
    do_PUT = _serve


FakeSlackWebhook.handler = _Handler  # defined after the server class it serves

__all__ = ["FakeSlackWebhook"]
