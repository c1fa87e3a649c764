"""Posting to a Slack incoming webhook with slack_sdk (imported only when an alert is posted)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from http.client import HTTPException
from urllib.error import URLError

from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.webhook import WebhookClient, WebhookResponse

from bot.deadline import bounded

_SLACK_TIMEOUT = 10  # seconds per request: an alert must not hold a cron run for minutes
_SLACK_RETRIES = 2
_MAX_WAIT = 30.0


def post(url: str, text: str, *, sleep: Callable[[float], None]) -> WebhookResponse:
    """Send ``text`` (no link previews), retrying as :class:`_WebhookRetry` says."""
    client = WebhookClient(
        url,
        timeout=_SLACK_TIMEOUT,
        logger=_quiet_sdk_logger(),
        retry_handlers=[_WebhookRetry(sleep=sleep)],
    )
    # Every attempt may use its whole read timeout, and the retries wait at most _MAX_WAIT.
    return bounded(
        lambda: client.send(text=text, unfurl_links=False, unfurl_media=False),
        seconds=_SLACK_TIMEOUT * (_SLACK_RETRIES + 1) + _MAX_WAIT,
        what="Slack",
    )


class _WebhookRetry(RetryHandler):
    """Retry 429 (honouring ``Retry-After``), 5xx and connection errors, at most twice.

    slack_sdk's own handlers sleep with ``time.sleep`` plus random jitter; this one takes the
    sleep function, so tests stay fast and deterministic.
    """

    def __init__(self, *, sleep: Callable[[float], None]) -> None:
        super().__init__(max_retry_count=_SLACK_RETRIES)
        self._sleep = sleep

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None:
            return response.status_code == 429 or response.status_code >= 500
        return isinstance(error, URLError | ConnectionError | TimeoutError | HTTPException)

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        wait = float(2**state.current_attempt)
        if response is not None:
            for name, values in response.headers.items():
                if name.lower() == "retry-after" and values:
                    # An HTTP date instead of seconds: keep our own back-off.
                    with contextlib.suppress(ValueError):
                        wait = float(values[0])
        self._sleep(min(max(wait, 0.0), _MAX_WAIT))
        state.next_attempt_requested = True
        state.increment_current_attempt()


def _quiet_sdk_logger() -> logging.Logger:
    # WebhookClient logs the full webhook URL at DEBUG and errors at ERROR on its own logger.
    # A logger outside the logging tree, above CRITICAL, never emits either (and it makes the
    # client's ``logger.level <= DEBUG`` checks false, so the URL is not even formatted).
    sdk_log = logging.Logger("revbot.slack_sdk", level=logging.CRITICAL + 1)
    sdk_log.propagate = False
    return sdk_log
