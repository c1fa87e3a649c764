"""Send through Resend's API with the ``resend`` SDK, retrying safely with one idempotency key.

Named ``resend_sender`` so that it never shadows the ``resend`` package it imports.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import resend
import resend.exceptions

from bot.deadline import bounded
from bot.errors import ConfigError, RevbotError, ServiceError, TemporaryError
from bot.mail.model import OutgoingEmail
from bot.mail.senders import AlreadySent, check_idempotency_key
from bot.retry import RetryPolicy, retry_after

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.resend.com"

# The SDK keeps its key, base URL and HTTP client as module globals that each request reads.
# Only this adapter touches them, under this lock, right before a request, and puts the old
# values back after: two mailers (or threads) can never send with each other's key, and no
# other code in the process inherits ours.
_SDK_LOCK = threading.Lock()

_QUOTA_ERRORS = frozenset({"daily_quota_exceeded", "monthly_quota_exceeded"})
_KEY_ERRORS = frozenset({"missing_api_key", "invalid_api_key", "restricted_api_key"})


class IdempotencyConflictError(AlreadySent):
    """Resend already accepted a *different* email under this idempotency key (409).

    Something was sent with this key in the last 24 hours; its content differed, so Resend
    did not send this one. The caller must not assume the recipient has nothing.
    """


@dataclass(frozen=True, slots=True)
class _Verdict:
    retry: bool
    error: RevbotError
    retry_after: float | None = None


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# What a failed connection's text says, and how a person would say it.
_CONNECTION_FAILURES = (
    ("Connection refused", "connection refused"),
    ("timed out", "timed out"),
    ("Name or service not known", "unknown host"),
    ("nodename nor servname", "unknown host"),
    ("Connection reset", "connection reset"),
    ("RemoteDisconnected", "the server closed the connection"),
)


class ResendMailer:
    """A :class:`~bot.mail.senders.Mailer` that sends through Resend (``POST /emails``).

    Retries 429 ``rate_limit_exceeded`` (honouring ``retry-after``, or else
    ``ratelimit-reset``), 409 ``concurrent_idempotent_requests``, 5xx and transport failures,
    always with the same idempotency key, at most ``max_attempts`` times in all and for at most
    ``max_wait`` seconds of waiting (:class:`bot.retry.RetryPolicy`: back-off from
    ``base_delay`` doubling up to ``max_delay``, with jitter). Never retries a spent quota.
    """

    def __init__(
        self,
        *,
        api_key: str,
        api_url: str | None = None,
        max_attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        base_delay: float = 1.0,
        max_delay: float = 30.0,
        max_wait: float = 120.0,
        rng: random.Random | None = None,
        min_interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        timeout: int = 30,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ConfigError("RESEND_API_KEY is empty")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._api_key = api_key.strip()
        self._api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        self._retry = RetryPolicy(
            base=base_delay,
            cap=max_delay,
            budget=max_wait,
            attempts=max_attempts,
            rng=rng or random.Random(),
            sleep=sleep,
        )
        self._sleep = sleep
        # Resend allows 2 requests per second per team by default (5 on newer accounts):
        # pacing ourselves avoids a 429 per investor on every monthly run.
        self._min_interval = min_interval
        self._clock = clock
        self._http = resend.RequestsClient(timeout=timeout)
        self._deadline = timeout + 30.0  # one request's total, however slowly it trickles
        self._last_request: float | None = None

    def __repr__(self) -> str:
        return f"ResendMailer(api_url={self._api_url!r}, api_key='re_…')"

    # -- public ------------------------------------------------------------------------------

    def send(self, email: OutgoingEmail, *, idempotency_key: str) -> str:
        """Send ``email``; returns Resend's message id. See :class:`~bot.mail.senders.Mailer`."""
        check_idempotency_key(idempotency_key)
        params: dict[str, Any] = {
            "from": email.sender,
            "to": [email.to],
            "subject": email.subject,
            "html": email.html,
            "text": email.text,
        }
        retries = self._retry.start()
        while True:
            self._pace()
            try:
                response = self._post(params, idempotency_key)
            except resend.exceptions.ResendError as e:
                verdict = self._judge(e, email=email, key=idempotency_key)
                if not verdict.retry:
                    raise verdict.error from e
                delay = retries.next_wait(verdict.retry_after)
                if delay is None:
                    tries = f"{retries.tries} attempt{'s' if retries.tries > 1 else ''}"
                    raise TemporaryError(
                        f"Resend still failing after {tries} "
                        f"({self._describe(e)}); retry later: the idempotency key prevents a "
                        "duplicate"
                    ) from e
                log.warning(
                    "Resend: %s; retrying in %.1fs with the same idempotency key (attempt %d/%d)",
                    self._describe(e),
                    delay,
                    retries.tries + 1,
                    self._retry.attempts,
                )
                retries.sleep(delay)
                continue
            except resend.exceptions.NoContentError as e:
                raise ServiceError(f"Resend answered the email to {email.to} with no body") from e
            message_id = response.get("id") if isinstance(response, Mapping) else None
            if not isinstance(message_id, str) or not message_id:
                raise ServiceError(f"Resend accepted the email to {email.to} but returned no id")
            return message_id

    # -- internals ---------------------------------------------------------------------------

    def domains(self) -> list[tuple[str, str]] | None:
        """(name, status) of the account's domains; None for a sending-only key.

        For `revbot doctor`: proves the key works and tells whether EMAIL_FROM's domain is
        verified. Errors become revbot errors like :meth:`send`'s, one line, no key.
        """
        try:
            answer = self._with_sdk(lambda: resend.Domains.list())
        except resend.exceptions.ResendError as e:
            if e.code in (401, "401") and "restricted" in str(e.error_type):
                return None
            if e.code in (401, 403, "401", "403"):
                raise ConfigError(
                    f"RESEND_API_KEY was rejected by Resend ({self._describe(e)})"
                ) from e
            raise TemporaryError(f"Resend could not list domains ({self._describe(e)})") from e
        data = answer.get("data", []) if isinstance(answer, Mapping) else []
        return [(str(d.get("name", "")), str(d.get("status", ""))) for d in data]

    def _post(self, params: dict[str, Any], key: str) -> Any:
        return self._with_sdk(
            lambda: resend.Emails.send(
                params,  # type: ignore[arg-type]  # a plain dict with the SendParams keys
                {"idempotency_key": key},
            )
        )

    def _with_sdk(self, call: Callable[[], Any]) -> Any:
        with _SDK_LOCK:
            saved = (resend.api_key, resend.api_url, resend.default_http_client)
            resend.api_key, resend.api_url = self._api_key, self._api_url
            resend.default_http_client = self._http
            try:
                return bounded(call, seconds=self._deadline, what="Resend")
            finally:
                resend.api_key, resend.api_url, resend.default_http_client = saved
                self._last_request = self._clock()

    def _pace(self) -> None:
        if self._last_request is None or self._min_interval <= 0:
            return
        wait = self._min_interval - (self._clock() - self._last_request)
        if wait > 0:
            self._sleep(wait)

    def _redact(self, text: object) -> str:
        # The key should never come back from the server, but an echoing proxy or a
        # transport error quoting a header must not be able to leak it.
        return _one_line(text).replace(self._api_key, "re_…")

    def _describe(self, e: resend.exceptions.ResendError) -> str:
        if str(e.error_type) == "HttpClientError":
            # The SDK gives a connection failure the code 500, but no server answered at all.
            text = str(e.message)
            reason = next(
                (words for needle, words in _CONNECTION_FAILURES if needle.lower() in text.lower()),
                "the connection failed",
            )
            return self._redact(f"no answer from {self._api_url}: {reason}")
        return self._redact(f"{e.code} {e.error_type}: {e.message}")

    def _judge(
        self, e: resend.exceptions.ResendError, *, email: OutgoingEmail, key: str
    ) -> _Verdict:
        """Decide whether ``e`` is worth another attempt, and which revbot error it becomes."""
        try:
            code = int(e.code)
        except (TypeError, ValueError):
            code = 500
        kind = str(e.error_type)
        what = self._describe(e)
        if kind == "HttpClientError":  # timeout, refused connection, reset: never reached us
            return _Verdict(True, TemporaryError(f"could not reach Resend ({what})"))
        if code == 429:
            if kind in _QUOTA_ERRORS:
                return _Verdict(
                    False,
                    TemporaryError(
                        f"Resend sending quota spent ({what}); try again when the quota resets"
                    ),
                )
            return _Verdict(
                True,
                TemporaryError(f"Resend rate limit: {what}"),
                retry_after(e.headers, names=("retry-after", "ratelimit-reset")),
            )
        if code == 409:
            if kind == "concurrent_idempotent_requests":
                return _Verdict(True, TemporaryError(f"Resend is still processing key {key!r}"))
            return _Verdict(
                False,
                IdempotencyConflictError(
                    f"Resend already accepted a different email with idempotency key {key!r} "
                    f"in the last 24 hours, so it did not send this one ({what})"
                ),
            )
        if code >= 500:
            return _Verdict(True, TemporaryError(f"Resend failed: {what}"))
        if kind in _KEY_ERRORS or code == 401:
            return _Verdict(False, ConfigError(f"RESEND_API_KEY was rejected by Resend ({what})"))
        if code == 422 and kind == "invalid_from_address":
            return _Verdict(
                False,
                ConfigError(
                    f"EMAIL_FROM {email.sender!r} is not a verified sender at Resend ({what}); "
                    "verify its domain in Resend"
                ),
            )
        if code == 403 and kind == "validation_error":
            # E.g. "You can only send testing emails to your own email address": no domain yet.
            return _Verdict(
                False,
                ConfigError(f"Resend refused to send to {email.to} ({what}); verify a domain"),
            )
        return _Verdict(False, ServiceError(f"Resend rejected the email to {email.to} ({what})"))


__all__ = ["DEFAULT_API_URL", "IdempotencyConflictError", "ResendMailer"]
