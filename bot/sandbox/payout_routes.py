"""The payout endpoints of the sandbox: ``GET /v1/payouts`` and ``GET /v1/payouts/{payout}``.

Served by every :class:`SandboxServer` over its account's payout objects (see
:mod:`bot.sandbox.payouts`), like Stripe at API version 2020-08-27: newest first with ``limit``
and cursors, the ``created`` and ``arrival_date`` ranges, ``status`` and ``destination``
filters, ``expand`` of the balance transactions, errors in Stripe's shape.

Restricted keys (``rk_...``) can be made to lack the payouts read permission
(``PayoutApi(restricted_key_lacks_read=True)``): they then get Stripe's 403 permission error,
while secret keys keep reading everything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from bot.sandbox.billing_routes import _choice, _expand, _key, _mask, _optional, _page, _range
from bot.sandbox.params import ApiError, _only
from bot.sandbox.payouts import PAYOUT_STATUSES, Payout

if TYPE_CHECKING:
    from bot.sandbox.account import SandboxAccount
    from bot.sandbox.server import SandboxServer

PERMISSION = "rak_payout_read"  # Stripe's name of the restricted-key permission to read payouts
_EXPANDABLE = ("balance_transaction", "failure_balance_transaction")

Handler = Callable[..., dict[str, Any]]


class PayoutApi:
    """Routes for :class:`SandboxServer` over its account's payouts (read-only)."""

    def __init__(self, *, restricted_key_lacks_read: bool = False) -> None:
        self.restricted_key_lacks_read = restricted_key_lacks_read  # may change while serving
        self._account: SandboxAccount | None = None

    def routes(self, server: SandboxServer) -> list[tuple[str, str, Handler]]:
        """``(method, path template, handler)`` for the server's route table."""
        self._account = server.account
        return [
            ("GET", "/v1/payouts", self._list_payouts),
            ("GET", "/v1/payouts/{payout}", self._get_payout),
        ]

    @property
    def account(self) -> SandboxAccount:
        if self._account is None:
            raise RuntimeError("PayoutApi is not mounted on a SandboxServer")
        return self._account

    def _allow(self, headers: Mapping[str, str]) -> None:
        """Stripe's answer to a restricted key without the payouts read permission."""
        key = _key(headers.get("Authorization") or "")
        if key.startswith("rk_") and self.restricted_key_lacks_read:
            raise ApiError(
                403,
                f"The provided key '{_mask(key)}' does not have the required permissions for "
                f"this endpoint on account '{self.account.account_id}'. Having the "
                f"'{PERMISSION}' permission would allow this request to continue.",
            )

    def _expanded(self, payout: Payout, paths: set[str], prefix: str) -> Payout:
        """``payout`` with the balance transactions asked for in place of their ids."""
        out = payout
        for name in _EXPANDABLE:
            if prefix + name in paths and payout[name] is not None:
                txn = self.account.get(payout[name])
                if txn is not None:
                    fee_details = [dict(f) for f in txn["fee_details"]]
                    out = {**out, name: {**txn, "fee_details": fee_details}}
        return out

    # ----------------------------------------------------------------- endpoints

    def _list_payouts(
        self, *, params: dict[str, Any], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        self._allow(headers)
        _only(
            params,
            {"arrival_date", "created", "destination", "ending_before", "expand", "limit",
             "starting_after", "status"},
        )  # fmt: skip
        expand = _expand(params, {f"data.{name}" for name in _EXPANDABLE}, embedded=set())
        status = _choice(params, "status", PAYOUT_STATUSES)
        destination = _optional(params, "destination")
        created, arrival = _range(params, "created"), _range(params, "arrival_date")

        def wanted(payout: Payout) -> bool:
            return (
                status in (None, payout["status"])
                and destination in (None, payout["destination"])
                and _inside(payout["created"], created)
                and _inside(payout["arrival_date"], arrival)
            )

        page = _page(self.account.payouts, params, wanted, "payout")
        page["data"] = [self._expanded(p, expand, "data.") for p in page["data"]]
        return {**page, "url": "/v1/payouts"}

    def _get_payout(
        self, *, payout: str, params: dict[str, Any], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        self._allow(headers)
        _only(params, {"expand"})
        expand = _expand(params, set(_EXPANDABLE), embedded=set())
        found = self.account.payout(payout)
        if found is None:
            raise ApiError(404, f"No such payout: '{payout}'", param="id", code="resource_missing")
        return self._expanded({**found, "metadata": dict(found["metadata"])}, expand, "")


def _inside(value: int, bounds: tuple[int | None, int | None]) -> bool:
    gte, lt = bounds
    return (gte is None or value >= gte) and (lt is None or value < lt)
