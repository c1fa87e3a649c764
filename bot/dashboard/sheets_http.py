"""The Google Sheet dashboard's HTTP: gspread's client with our base URL, pacing and retries.

Quotas: writes are spaced ``write_interval`` apart (60/minute per user); 429, 408, 5xx and
transport failures are retried under the shared :class:`~bot.retry.RetryPolicy` (exponential
back-off with jitter, a ``Retry-After`` honoured) until its budget is spent, then
:class:`~bot.errors.TemporaryError` (exit 75).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import gspread
import requests
from google.oauth2 import service_account
from gspread.exceptions import APIError

from bot.deadline import bounded
from bot.errors import TemporaryError
from bot.retry import RetryPolicy, retry_after

log = logging.getLogger(__name__)

SHEETS_ROOT = "https://sheets.googleapis.com"
TIMEOUT = (10.0, 180.0)  # connect, read: Google gives up on a request after 180 s
CALL_DEADLINE = 240.0  # a request's total, however slowly the answer trickles in
# Back-off from 1 s doubling to 32 s, as Google advises for 429/5xx. Tries are bounded by the
# time budget; the count only stops a server that keeps answering "Retry-After: 0".
BASE_DELAY = 1.0
MAX_DELAY = 32.0
MAX_ATTEMPTS = 20


class SheetsHTTPClient(gspread.HTTPClient):
    """gspread's HTTP client with three additions at the one method every call goes through.

    Why a ``gspread.HTTPClient`` subclass rather than a rewriting ``requests.Session``: gspread
    copies its URL constants into ``gspread.http_client`` at import (patching ``gspread.urls``
    does nothing), and this ``request()`` is the single choke point for every Sheets call, so the
    base-URL swap, the write pacing and the bounded retry live together here, while the session
    stays google-auth's own ``AuthorizedSession`` (token refresh, 401 retry). gspread's
    ``BackOffHTTPClient`` is not used: it never gives up.
    """

    def __init__(
        self,
        credentials: service_account.Credentials,
        *,
        api_url: str | None,
        retry: RetryPolicy,
        write_interval: float,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        super().__init__(credentials)
        self.set_timeout(TIMEOUT)
        self.api_url = (api_url or SHEETS_ROOT).rstrip("/")
        self.retry = retry
        self.write_interval = write_interval
        self.sleep = sleep
        self.clock = clock
        self._next_write = -math.inf

    def _pace(self) -> None:
        # Google allows 60 write requests per minute per user: keep writes write_interval apart.
        now = self.clock()
        if now < self._next_write:
            self.sleep(self._next_write - now)
            now = self._next_write
        self._next_write = now + self.write_interval

    def request(self, method: str, endpoint: str, *args: Any, **kwargs: Any) -> requests.Response:
        if endpoint.startswith(SHEETS_ROOT):
            endpoint = self.api_url + endpoint[len(SHEETS_ROOT) :]
        retries = self.retry.start()
        while True:
            if method.lower() != "get":
                self._pace()
            suggested: float | None = None
            try:
                return bounded(
                    lambda: super(SheetsHTTPClient, self).request(
                        method, endpoint, *args, **kwargs
                    ),
                    seconds=CALL_DEADLINE,
                    what="Google Sheets",
                )
            except APIError as e:
                status = e.response.status_code
                if status not in (408, 429) and status < 500:
                    raise
                why = f"HTTP {status}"
                suggested = retry_after(e.response.headers)
            except (requests.ConnectionError, requests.Timeout) as e:
                status, why = 0, type(e).__name__
            # Past the budget the run exits 75 and cron (or the founder) retries later.
            delay = retries.next_wait(suggested)
            if delay is None:
                raise _exhausted(status, why, retries.waited)
            log.warning("Google Sheets answered %s; retrying in %.1f s", why, delay)
            retries.sleep(delay)


def _exhausted(status: int, why: str, waited: float) -> TemporaryError:
    if status == 429:
        return TemporaryError(
            f"Google Sheets quota exceeded (HTTP 429) after retrying for {waited:.0f} s; "
            "try again later"
        )
    return TemporaryError(
        f"Google Sheets unavailable ({why}) after retrying for {waited:.0f} s; try again later"
    )


__all__ = ["CALL_DEADLINE", "SHEETS_ROOT", "TIMEOUT", "SheetsHTTPClient"]
