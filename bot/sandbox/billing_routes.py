"""The Billing endpoints of the sandbox: subscriptions, invoices and invoice lines.

``SandboxServer(account, billing=BillingApi(SandboxBilling.generate(...)))`` serves
``GET /v1/subscriptions``, ``GET /v1/subscriptions/{id}``, ``GET /v1/invoices``,
``GET /v1/invoices/{invoice}`` and ``GET /v1/invoices/{invoice}/lines`` like Stripe at API
version 2020-08-27: lists newest first with ``limit`` and cursors, the spec's filters, errors in
Stripe's shape. An invoice embeds only the first page (10) of its lines, with ``has_more`` and
the URL of the rest, as Stripe does.

Restricted keys (``rk_...``) can be made to lack Billing permissions
(``restricted_key_lacks={"subscriptions", "invoices"}``): they then get Stripe's 403 permission
error, while secret keys keep reading everything.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from bot.sandbox.billing import SandboxBilling
from bot.sandbox.params import ApiError, _cursors, _int, _limit, _only, _string

if TYPE_CHECKING:
    from bot.sandbox.server import SandboxServer

# The restricted-key permission each resource needs to be read (Stripe's names).
PERMISSIONS = {"subscriptions": "rak_subscription_read", "invoices": "rak_invoice_read"}
EMBEDDED_LINES = 10  # lines an invoice object carries; the rest come from its lines URL
_SUBSCRIPTION_STATUSES = ("active", "all", "canceled", "ended", "incomplete",
                          "incomplete_expired", "past_due", "trialing", "unpaid")  # fmt: skip
_INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")
_ENDED = ("canceled", "incomplete_expired")  # Stripe's default list leaves out those canceled
# Paths that are already objects in what the sandbox serves: expanding them changes nothing.
_EMBEDDED_IN_SUBSCRIPTIONS = {"data.discount", "data.discount.coupon", "data.items",
                              "data.items.data.price"}  # fmt: skip
_EMBEDDED_IN_INVOICES = {"data.lines", "data.lines.data.price", "data.discount",
                         "data.discount.coupon"}  # fmt: skip
_RANGE_OPERATORS = {"gt", "gte", "lt", "lte"}

Handler = Callable[..., dict[str, Any]]


class BillingApi:
    """Routes for :class:`SandboxServer` over one :class:`SandboxBilling` (read-only)."""

    def __init__(
        self, billing: SandboxBilling, *, restricted_key_lacks: Iterable[str] = ()
    ) -> None:
        lacks = frozenset(restricted_key_lacks)
        if unknown := lacks - set(PERMISSIONS):
            raise ValueError(f"unknown Billing resources: {sorted(unknown)}")
        self.billing = billing
        self.restricted_key_lacks = lacks  # may be changed while serving
        self._account_id = "acct_sandbox"

    def routes(self, server: SandboxServer) -> list[tuple[str, str, Handler]]:
        """``(method, path template, handler)`` for the server's route table."""
        self._account_id = server.account.account_id
        return [
            ("GET", "/v1/subscriptions", self._list_subscriptions),
            ("GET", "/v1/subscriptions/{subscription_exposed_id}", self._get_subscription),
            ("GET", "/v1/invoices", self._list_invoices),
            ("GET", "/v1/invoices/{invoice}", self._get_invoice),
            ("GET", "/v1/invoices/{invoice}/lines", self._list_lines),
        ]

    # ----------------------------------------------------------------- checks

    def _allow(self, headers: Mapping[str, str], resource: str) -> None:
        """Stripe's answer to a restricted key without the resource's read permission."""
        key = _key(headers.get("Authorization") or "")
        if key.startswith("rk_") and resource in self.restricted_key_lacks:
            raise ApiError(
                403,
                f"The provided key '{_mask(key)}' does not have the required permissions for "
                f"this endpoint on account '{self._account_id}'. Having the "
                f"'{PERMISSIONS[resource]}' permission would allow this request to continue.",
            )

    # ----------------------------------------------------------------- endpoints

    def _list_subscriptions(
        self, *, params: dict[str, Any], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        self._allow(headers, "subscriptions")
        _only(
            params,
            {"collection_method", "created", "current_period_end", "current_period_start",
             "customer", "ending_before", "expand", "limit", "price", "starting_after", "status",
             "test_clock"},
        )  # fmt: skip
        expand = _expand(params, {"data.latest_invoice"}, embedded=_EMBEDDED_IN_SUBSCRIPTIONS)
        status = _choice(params, "status", _SUBSCRIPTION_STATUSES)
        statuses = {
            None: {s for s in _SUBSCRIPTION_STATUSES if s not in _ENDED},
            "all": set(_SUBSCRIPTION_STATUSES),
            "ended": set(_ENDED),
        }.get(status, {status})
        customer = _optional(params, "customer")
        price = _optional(params, "price")
        method = _choice(params, "collection_method", ("charge_automatically", "send_invoice"))
        clock = _optional(params, "test_clock")  # the sandbox has no test clocks
        ranges = [(name, *_range(params, name)) for name in
                  ("created", "current_period_end", "current_period_start")]  # fmt: skip

        def wanted(sub: dict[str, Any]) -> bool:
            return (
                sub["status"] in statuses
                and customer in (None, sub["customer"])
                and method in (None, sub["collection_method"])
                and clock is None
                and (price is None or any(i["price"]["id"] == price for i in sub["items"]["data"]))
                and all(_within(sub[name], gte, lt) for name, gte, lt in ranges)
            )

        page = _page(self.billing.subscriptions, params, wanted, "subscription")
        if "data.latest_invoice" in expand:
            page["data"] = [
                {**s, "latest_invoice": self._invoice_json(s["latest_invoice"])}
                if s["latest_invoice"]
                else s
                for s in page["data"]
            ]
        return {**page, "url": "/v1/subscriptions"}

    def _get_subscription(
        self, *, subscription_exposed_id: str, params: dict[str, Any], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        self._allow(headers, "subscriptions")
        _only(params, {"expand"})
        expand = _expand(
            params, {"latest_invoice"}, embedded={p[5:] for p in _EMBEDDED_IN_SUBSCRIPTIONS}
        )
        found = self.billing.subscription(subscription_exposed_id)
        if found is None:
            raise ApiError(
                404,
                f"No such subscription: '{subscription_exposed_id}'",
                param="id",
                code="resource_missing",
            )
        if "latest_invoice" in expand and found["latest_invoice"]:
            return {**found, "latest_invoice": self._invoice_json(found["latest_invoice"])}
        return found

    def _list_invoices(
        self, *, params: dict[str, Any], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        self._allow(headers, "invoices")
        _only(
            params,
            {"collection_method", "created", "customer", "due_date", "ending_before", "expand",
             "limit", "starting_after", "status", "subscription"},
        )  # fmt: skip
        expand = _expand(params, {"data.subscription"}, embedded=_EMBEDDED_IN_INVOICES)
        status = _choice(params, "status", _INVOICE_STATUSES)
        customer = _optional(params, "customer")
        subscription = _optional(params, "subscription")
        method = _choice(params, "collection_method", ("charge_automatically", "send_invoice"))
        created, due = _range(params, "created"), _range(params, "due_date")

        def wanted(inv: dict[str, Any]) -> bool:
            return (
                status in (None, inv["status"])
                and customer in (None, inv["customer"])
                and subscription in (None, inv["subscription"])
                and method in (None, inv["collection_method"])
                and _within(inv["created"], *created)
                and (due == (None, None) or _within(inv["due_date"], *due))
            )

        page = _page(self.billing.invoices, params, wanted, "invoice")
        page["data"] = [
            self._invoice_json(i["id"], expand_subscription="data.subscription" in expand)
            for i in page["data"]
        ]
        return {**page, "url": "/v1/invoices"}

    def _get_invoice(
        self, *, invoice: str, params: dict[str, Any], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        self._allow(headers, "invoices")
        _only(params, {"expand"})
        expand = _expand(params, {"subscription"}, embedded={p[5:] for p in _EMBEDDED_IN_INVOICES})
        return self._invoice_json(invoice, expand_subscription="subscription" in expand)

    def _list_lines(
        self, *, invoice: str, params: dict[str, Any], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        self._allow(headers, "invoices")
        _only(params, {"ending_before", "expand", "limit", "starting_after"})
        _expand(params, set(), embedded={"data.price"})
        lines = self.billing.lines(invoice)
        if lines is None:
            raise _missing_invoice(invoice)
        page = _page(lines, params, lambda _: True, "invoice line item")
        return {**page, "url": f"/v1/invoices/{invoice}/lines"}

    def _invoice_json(
        self, invoice_id: str, *, expand_subscription: bool = False
    ) -> dict[str, Any]:
        found = self.billing.invoice(invoice_id)
        lines = self.billing.lines(invoice_id)
        if found is None or lines is None:
            raise _missing_invoice(invoice_id)
        body = {
            **found,
            "lines": {
                "object": "list",
                "data": lines[:EMBEDDED_LINES],
                "has_more": len(lines) > EMBEDDED_LINES,
                "url": f"/v1/invoices/{invoice_id}/lines",
            },
        }
        if expand_subscription and found["subscription"]:
            body["subscription"] = self.billing.subscription(found["subscription"])
        return body


# --------------------------------------------------------------------- helpers


def _key(header: str) -> str:
    """The API key of an ``Authorization`` header (Bearer or Basic), as the server read it."""
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    try:
        return base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return ""


def _mask(key: str) -> str:
    """How Stripe shows a key in a permission error: prefix, a star a character, the last 6
    (none of a short key, whose last 6 would give most of it away)."""
    prefix, rest = key[:8], key[8:]
    tail = rest[-6:] if len(rest) >= 24 else ""
    return prefix + "*" * (len(rest) - len(tail)) + tail


def _missing_invoice(invoice_id: str) -> ApiError:
    return ApiError(
        404, f"No such invoice: '{invoice_id}'", param="invoice", code="resource_missing"
    )


def _optional(params: Mapping[str, Any], name: str) -> str | None:
    return None if name not in params else _string(params[name], name)


def _choice(params: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = _optional(params, name)
    if value is not None and value not in allowed:
        raise ApiError(400, f"Invalid {name}: must be one of {', '.join(allowed)}", param=name)
    return value


def _expand(params: Mapping[str, Any], expandable: set[str], *, embedded: set[str]) -> set[str]:
    """The ``expand[]`` paths asked for. Paths already embedded in the sandbox's objects are
    accepted and change nothing; others that the sandbox cannot expand are refused."""
    raw = params.get("expand", [])
    if raw == "":
        return set()
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise ApiError(400, "Invalid array", param="expand")
    refused = [p for p in raw if p not in expandable | embedded]
    if refused:
        raise ApiError(
            400,
            f"This property cannot be expanded in the sandbox ({', '.join(refused)}).",
            param="expand",
        )
    return set(raw)


def _range(params: Mapping[str, Any], name: str) -> tuple[int | None, int | None]:
    """A timestamp filter (an integer or ``{gt,gte,lt,lte}``) as a half-open ``[gte, lt)``."""
    if name not in params:
        return None, None
    value = params[name]
    if isinstance(value, str):
        exact = _int(value, name)
        return exact, exact + 1
    if not isinstance(value, dict):
        raise ApiError(400, f"Invalid {name}: an integer or a hash", param=name)
    _only(value, _RANGE_OPERATORS, name)
    bound = {op: _int(value[op], f"{name}[{op}]") for op in value}
    lower = [bound["gte"]] if "gte" in bound else []
    lower += [bound["gt"] + 1] if "gt" in bound else []
    upper = [bound["lt"]] if "lt" in bound else []
    upper += [bound["lte"] + 1] if "lte" in bound else []
    return (max(lower) if lower else None), (min(upper) if upper else None)


def _within(value: int | None, gte: int | None, lt: int | None) -> bool:
    if gte is None and lt is None:
        return True
    return value is not None and (gte is None or value >= gte) and (lt is None or value < lt)


def _page(
    ordered: list[dict[str, Any]],
    params: Mapping[str, Any],
    wanted: Callable[[dict[str, Any]], bool],
    noun: str,
) -> dict[str, Any]:
    """One page of ``ordered`` (the API's order) after the cursors, the filter and ``limit``.

    A cursor is a position in the whole list, so it need not match the filters; an unknown one
    is refused like Stripe does.
    """
    limit = _limit(params)
    after, before = _cursors(params)
    cursor = after if after is not None else before
    position = next((n for n, o in enumerate(ordered) if o["id"] == cursor), None)
    if cursor is not None and position is None:
        raise ApiError(
            400,
            f"No such {noun}: '{cursor}'",
            param="starting_after" if after is not None else "ending_before",
            code="resource_missing",
        )
    if after is not None and position is not None:
        selected = [o for o in ordered[position + 1 :] if wanted(o)]
        data = selected[:limit]
    elif position is not None:
        selected = [o for o in ordered[:position] if wanted(o)]
        data = selected[-limit:]
    else:
        selected = [o for o in ordered if wanted(o)]
        data = selected[:limit]
    return {"object": "list", "data": data, "has_more": len(selected) > limit}
