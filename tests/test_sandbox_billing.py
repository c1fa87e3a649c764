"""The sandbox's Billing side: subscriptions and invoices through the real stripe SDK on
127.0.0.1, checked against Stripe's spec, and the metrics oracle built on their history.

The expected objects come from ``SandboxBilling`` itself (what the server must serve), the
expected metrics from ``tests/oracle_metrics.py`` (the history alone). ``invoice_mrr`` below
re-states the investor-metrics definition over invoices, test-side, so that the generator's
invoices and its history are shown to tell the same story at every instant that matters.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import itertools
import json
from collections.abc import Iterator
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
import stripe

from bot.sandbox import BillingApi, Coupon, SandboxAccount, SandboxBilling, SandboxServer
from tests.oracle_metrics import (
    MONTHLY,
    customer_mrr,
    metrics,
    month_ends,
    roll_forward,
    subscription_mrr,
)
from tests.stripe_contract import validate, validate_query, validate_response

END = dt.date(2026, 11, 1)
KEY = "sk_test_billing"
RESTRICTED = "rk_test_" + "R3str1cted" * 3
Json = dict[str, Any]


@pytest.fixture(scope="module")
def billing() -> SandboxBilling:
    return SandboxBilling.generate(end=END, seed=7, tz="UTC")


@pytest.fixture(scope="module")
def server(billing: SandboxBilling) -> Iterator[SandboxServer]:
    account = SandboxAccount.generate(end=END, days=2, seed=7)
    with SandboxServer(account, billing=BillingApi(billing)) as srv:
        yield srv


def client_for(srv: SandboxServer, key: str = KEY) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": srv.url}, max_network_retries=0)


@pytest.fixture(scope="module")
def client(server: SandboxServer) -> stripe.StripeClient:
    return client_for(server)


def get(srv: SandboxServer, path: str, params: Any = None, key: str = KEY) -> requests.Response:
    return requests.get(
        srv.url + path, params=params, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def ids(objects: Any) -> list[str]:
    return [o["id"] if isinstance(o, dict) else o.id for o in objects]


def every_page(srv: SandboxServer, path: str, template: str, params: dict[str, str]) -> list[Json]:
    """All objects of a list, page by page over plain HTTP, each request and answer checked
    against the spec."""
    out: list[Json] = []
    while True:
        validate_query("GET", template, params)
        resp = get(srv, path, params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        validate_response("GET", template, 200, body)
        out.extend(body["data"])
        if not body["has_more"]:
            return out
        params = {**params, "starting_after": body["data"][-1]["id"]}


def by_name(billing: SandboxBilling, name: str) -> str:
    return next(cid for cid, n in billing.customer_names.items() if n == name)


# ---------------------------------------------------------------------- the account


def test_generate_is_deterministic_over_http(billing: SandboxBilling) -> None:
    """Same seed, same bytes on the wire; another seed, other objects."""
    again = SandboxBilling.generate(end=END, seed=7, tz="UTC")
    other = SandboxBilling.generate(end=END, seed=8, tz="UTC")
    account = SandboxAccount.generate(end=END, days=2, seed=7)
    bodies = []
    for generated in (billing, again, other):
        with SandboxServer(account, billing=BillingApi(generated)) as srv:
            params = {"status": "all", "limit": "100"}
            bodies.append(get(srv, "/v1/subscriptions", params).content)
            bodies.append(get(srv, "/v1/invoices", {"limit": "100"}).content)
    assert bodies[0:2] == bodies[2:4]
    assert bodies[0] != bodies[4] and bodies[1] != bodies[5]
    assert json.dumps(billing.history, default=repr) == json.dumps(again.history, default=repr)


def test_the_scenario_covers_every_case(billing: SandboxBilling) -> None:
    subs, invoices = billing.subscriptions, billing.invoices
    assert {s["status"] for s in subs} >= {
        "active", "trialing", "past_due", "unpaid", "canceled", "incomplete_expired"
    }  # fmt: skip
    assert {i["status"] for i in invoices} == {"draft", "open", "paid", "uncollectible", "void"}
    assert {h.currency for h in billing.history.values()} >= {"usd", "eur", "gbp", "jpy"}
    prices = [i["price"] for s in subs for i in s["items"]["data"]]
    shapes = {(p["recurring"]["interval"], p["recurring"]["interval_count"]) for p in prices}
    assert shapes >= {("month", 1), ("month", 3), ("year", 1), ("week", 1)}
    assert any(p["recurring"]["usage_type"] == "metered" for p in prices)
    durations = {(s["discount"]["coupon"]["duration"], s["discount"]["coupon"]["percent_off"])
                 for s in subs if s["discount"]}  # fmt: skip
    assert durations >= {("forever", 20.0), ("forever", 100.0)}
    assert any(i["discount"] and i["discount"]["coupon"]["duration"] == "once" for i in invoices)
    assert any(s["cancel_at_period_end"] and s["status"] == "canceled" for s in subs)
    canceled_now = [s for s in subs if s["status"] == "canceled" and not s["cancel_at_period_end"]]
    assert any(s["current_period_start"] < s["ended_at"] < s["current_period_end"]
               for s in canceled_now)  # fmt: skip
    assert any(s["trial_end"] and s["ended_at"] == s["trial_end"] for s in subs)  # not converted
    assert any(s["trial_end"] and s["status"] == "active" for s in subs)  # converted
    late = [i for i in invoices if i["status"] == "paid" and i["attempt_count"] > 1]
    assert late and all(i["status_transitions"]["paid_at"] > i["created"] for i in late)
    customers = collections.Counter(s["customer"] for s in subs)
    assert customers[by_name(billing, "Globex")] == 2
    soylent = {h.currency for h in billing.history.values()
               if h.customer == by_name(billing, "Soylent")}  # fmt: skip
    assert soylent == {"eur", "usd"}
    assert any(i["total"] < 0 for i in invoices)  # a prorated downgrade leaves a credit
    assert any(i["starting_balance"] < 0 for i in invoices)  # ... used on the next invoice
    assert any(i["tax"] for i in invoices)
    wonka = next(s for s in subs if s["customer"] == by_name(billing, "Wonka"))
    written_off = billing.invoice(wonka["latest_invoice"])
    assert written_off is not None and written_off["status"] == "uncollectible"
    assert wonka["ended_at"] == written_off["status_transitions"]["marked_uncollectible_at"]
    assert wonka["status"] == "canceled" and wonka["canceled_at"] == wonka["ended_at"]
    unpaid = next(s for s in subs if s["status"] == "unpaid")
    theirs = [i for i in invoices if i["subscription"] == unpaid["id"]]
    assert theirs[0]["id"] == unpaid["latest_invoice"] and theirs[0]["status"] == "draft"
    after = theirs[: [i["status"] for i in theirs].index("uncollectible")]
    assert after and all(i["status"] == "draft" and not i["auto_advance"] for i in after)


def test_proration_pair_and_line_shape(billing: SandboxBilling) -> None:
    """API 2020-08-27 lines: price, subscription, subscription_item, proration and type at the
    top level (no pricing/parent); an upgrade is an unused/remaining pair to the period end."""
    updates = [i for i in billing.invoices if i["billing_reason"] == "subscription_update"]
    assert updates
    for invoice in updates:
        lines = billing.lines(invoice["id"]) or []
        assert all(line["proration"] and line["type"] == "invoiceitem" for line in lines)
        assert {line["amount"] > 0 for line in lines} == {True, False}
        assert len({(line["period"]["start"], line["period"]["end"]) for line in lines}) == 1
        assert lines[0]["period"]["start"] == invoice["created"]
        sub = billing.subscription(invoice["subscription"])
        assert sub is not None
        assert {line["subscription_item"] for line in lines} <= {
            i["id"] for i in sub["items"]["data"]
        }
    for invoice in billing.invoices:
        for line in billing.lines(invoice["id"]) or []:
            assert "pricing" not in line and "parent" not in line
            assert line["price"]["object"] == "price"
            assert ("subscription_item" in line) == (invoice["subscription"] is not None)


# ---------------------------------------------------------------------- the endpoints


def test_paging_lists_every_object_once_newest_first(
    client: stripe.StripeClient, billing: SandboxBilling
) -> None:
    subs = ids(client.v1.subscriptions.list({"status": "all", "limit": 7}).auto_paging_iter())
    assert subs == ids(billing.subscriptions)
    invoices = list(client.v1.invoices.list({"limit": 100}).auto_paging_iter())
    assert ids(invoices) == ids(billing.invoices)
    assert len(set(ids(invoices))) == len(invoices) > 300
    keys = [(i.created, i.id) for i in invoices]
    assert keys == sorted(keys, reverse=True)


def test_ending_before_pages_backwards(server: SandboxServer, billing: SandboxBilling) -> None:
    everything = ids(billing.invoices)
    cursor, seen = everything[-1], list[str]()
    while True:
        body = get(server, "/v1/invoices", {"limit": "25", "ending_before": cursor}).json()
        seen = ids(body["data"]) + seen
        if not body["has_more"]:
            break
        cursor = body["data"][0]["id"]
    assert seen == everything[:-1]


def test_has_more_is_exact_at_the_boundary(server: SandboxServer, billing: SandboxBilling) -> None:
    count = len(billing.subscriptions)
    for limit, more in ((count - 1, True), (count, False), (min(count + 1, 100), False)):
        params = {"status": "all", "limit": str(limit)}
        body = get(server, "/v1/subscriptions", params).json()
        assert (len(body["data"]), body["has_more"]) == (min(limit, count), more), limit
    last = billing.invoices[-3]["id"]
    body = get(server, "/v1/invoices", {"starting_after": last, "limit": "2"}).json()
    assert ids(body["data"]) == ids(billing.invoices[-2:]) and not body["has_more"]
    body = get(server, "/v1/invoices", {"starting_after": last, "limit": "1"}).json()
    assert body["has_more"]


def test_invoice_arithmetic(billing: SandboxBilling) -> None:
    """Totals add up, discounts only on discountable lines, credit carried between invoices,
    numbers in order per customer, and the amounts each status implies."""
    balances: dict[str, int] = collections.defaultdict(int)
    numbers: dict[str, list[str]] = collections.defaultdict(list)
    for invoice in reversed(billing.invoices):  # oldest first
        lines = billing.lines(invoice["id"]) or []
        off = [d["amount"] for line in lines for d in line["discount_amounts"]]
        tax = sum(t["amount"] for line in lines for t in line["tax_amounts"])
        assert invoice["subtotal"] == sum(line["amount"] for line in lines)
        assert invoice["total"] == invoice["subtotal"] - sum(off) + tax
        assert all(line["discountable"] != line["proration"] for line in lines)
        assert all(not line["discount_amounts"] for line in lines if not line["discountable"])
        if invoice["discount"]:
            percent = invoice["discount"]["coupon"]["percent_off"]
            for line in lines:
                if line["discountable"] and line["amount"] > 0:
                    want = round(Fraction(line["amount"]) * Fraction(str(percent)) / 100)
                    assert [d["amount"] for d in line["discount_amounts"]] == [want]
        customer = invoice["customer"]
        assert invoice["starting_balance"] == balances[customer]
        owed = invoice["total"] + balances[customer]
        assert invoice["amount_due"] == max(owed, 0)
        if invoice["status"] in ("open", "paid", "uncollectible"):
            balances[customer] = min(owed, 0)
            assert invoice["ending_balance"] == balances[customer]
        paid = invoice["status"] == "paid"
        assert invoice["paid"] == paid
        assert invoice["amount_paid"] == (invoice["amount_due"] if paid else 0)
        assert (invoice["number"] is None) == (invoice["status"] == "draft")
        if invoice["number"]:
            numbers[customer].append(invoice["number"])
    assert any(b < 0 for b in balances.values()) or any(
        i["starting_balance"] < 0 for i in billing.invoices
    )
    for listed in numbers.values():
        assert [int(n.rsplit("-", 1)[1]) for n in listed] == list(range(1, len(listed) + 1))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, {"active", "trialing", "past_due", "unpaid", "incomplete"}),
        ("all", None),
        ("canceled", {"canceled"}),
        ("ended", {"canceled", "incomplete_expired"}),
        ("active", {"active"}),
        ("trialing", {"trialing"}),
        ("unpaid", {"unpaid"}),
    ],
    ids=["default", "all", "canceled", "ended", "active", "trialing", "unpaid"],
)
def test_subscription_status_filter(
    client: stripe.StripeClient,
    billing: SandboxBilling,
    status: str | None,
    expected: set[str] | None,
) -> None:
    params: Any = {"limit": 100} if status is None else {"limit": 100, "status": status}
    got = ids(client.v1.subscriptions.list(params).auto_paging_iter())
    want = ids(s for s in billing.subscriptions if expected is None or s["status"] in expected)
    assert got == want and got


def test_subscription_customer_price_and_created_filters(
    client: stripe.StripeClient, billing: SandboxBilling
) -> None:
    globex = by_name(billing, "Globex")
    got = client.v1.subscriptions.list({"customer": globex, "status": "all"}).data
    assert len(got) == 2 and {s.customer for s in got} == {globex}
    metered = next(i["price"]["id"] for s in billing.subscriptions for i in s["items"]["data"]
                   if i["price"]["recurring"]["usage_type"] == "metered")  # fmt: skip
    assert len(client.v1.subscriptions.list({"price": metered}).data) == 1
    middle = billing.subscriptions[len(billing.subscriptions) // 2]["created"]
    newer = client.v1.subscriptions.list(
        {"status": "all", "created": {"gte": middle}, "limit": 100}
    ).auto_paging_iter()
    assert ids(newer) == ids(s for s in billing.subscriptions if s["created"] >= middle)
    exact = client.v1.subscriptions.list({"status": "all", "created": middle}).data
    assert exact and all(s.created == middle for s in exact)


@pytest.mark.parametrize("status", ["draft", "open", "paid", "uncollectible", "void"])
def test_invoice_status_filter(
    client: stripe.StripeClient, billing: SandboxBilling, status: str
) -> None:
    got = ids(client.v1.invoices.list({"status": status, "limit": 100}).auto_paging_iter())
    assert got == ids(i for i in billing.invoices if i["status"] == status) and got


def test_invoice_subscription_customer_and_created_filters(
    client: stripe.StripeClient, billing: SandboxBilling
) -> None:
    aperture = by_name(billing, "Aperture Science")
    sub = next(s for s in billing.subscriptions if s["customer"] == aperture)
    by_sub = ids(
        client.v1.invoices.list({"subscription": sub["id"], "limit": 100}).auto_paging_iter()
    )
    assert by_sub == ids(i for i in billing.invoices if i["subscription"] == sub["id"])
    acme = by_name(billing, "Acme Corp")
    by_customer = client.v1.invoices.list({"customer": acme, "limit": 100}).data
    assert {i.customer for i in by_customer} == {acme}
    assert {i.collection_method for i in by_customer} == {"charge_automatically", "send_invoice"}
    edge = by_name(billing, "Kramerica")  # subscribed at the very first second of a month
    first = next(i["created"] for i in billing.invoices if i["customer"] == edge)
    for bounds, included in (({"lt": first}, False), ({"lte": first}, True),
                             ({"gt": first}, False), ({"gte": first}, True)):  # fmt: skip
        listed = client.v1.invoices.list({"customer": edge, "created": bounds, "limit": 100}).data
        assert (first in {i.created for i in listed}) == included, bounds
    month = month_ends(start=billing.start, end=billing.end, tz="UTC")[3][1]
    window = {"gt": month - 31 * 86400, "lte": month}
    got = ids(client.v1.invoices.list({"created": window, "limit": 100}).auto_paging_iter())
    assert got == ids(i for i in billing.invoices if month - 31 * 86400 < i["created"] <= month)
    assert got


def test_invoice_lines_page_beyond_the_embedded_first_page(
    client: stripe.StripeClient, billing: SandboxBilling
) -> None:
    long = [i for i in billing.invoices if len(billing.lines(i["id"]) or []) > 10]
    assert long
    invoice = client.v1.invoices.retrieve(long[0]["id"])
    every = billing.lines(invoice.id) or []
    assert len(invoice.lines.data) == 10 and invoice.lines.has_more
    assert invoice.lines.url == f"/v1/invoices/{invoice.id}/lines"
    paged = ids(client.v1.invoices.line_items.list(invoice.id, {"limit": 4}).auto_paging_iter())
    assert paged == ids(every) and len(set(paged)) == len(every) > 10
    assert ids(invoice.lines.data) == paged[:10]
    short = next(i for i in billing.invoices if len(billing.lines(i["id"]) or []) <= 10)
    listed = client.v1.invoices.list({"customer": short["customer"], "limit": 100}).data
    embedded = next(i for i in listed if i.id == short["id"]).lines
    assert not embedded.has_more and ids(embedded.data) == ids(billing.lines(short["id"]) or [])


def test_every_object_served_validates_against_the_spec(
    server: SandboxServer, billing: SandboxBilling
) -> None:
    subs = every_page(
        server, "/v1/subscriptions", "/v1/subscriptions", {"status": "all", "limit": "100"}
    )
    invoices = every_page(server, "/v1/invoices", "/v1/invoices", {"limit": "100"})
    assert len(subs) == len(billing.subscriptions) and len(invoices) == len(billing.invoices)
    for sub in subs:
        validate("subscription", sub)
    for invoice in invoices:
        validate("invoice", invoice)
    for invoice in billing.invoices[:: max(1, len(billing.invoices) // 40)]:
        resp = get(server, f"/v1/invoices/{invoice['id']}", {"expand[]": "subscription"})
        validate_response("GET", "/v1/invoices/{invoice}", 200, resp.json())
    for invoice in billing.invoices:
        if len(billing.lines(invoice["id"]) or []) > 10:
            path = f"/v1/invoices/{invoice['id']}/lines"
            lines = every_page(server, path, "/v1/invoices/{invoice}/lines", {"limit": "5"})
            for line in lines:
                validate("line_item", line)
    expanded = get(server, "/v1/subscriptions", {"expand[]": "data.latest_invoice", "limit": "3"})
    validate_response("GET", "/v1/subscriptions", 200, expanded.json())
    assert all(isinstance(s["latest_invoice"], dict) for s in expanded.json()["data"])


def test_validator_rejects_a_bad_invoice(billing: SandboxBilling) -> None:
    invoice = {**billing.invoices[0], "lines": {"object": "list", "data": [], "has_more": False,
                                                "url": "/v1/invoices/x/lines"}}  # fmt: skip
    validate("invoice", invoice)
    with pytest.raises(AssertionError):
        validate("invoice", {**invoice, "total": "12.00"})
    line = billing.lines(billing.invoices[0]["id"])[0]  # type: ignore[index]
    with pytest.raises(AssertionError):
        validate("line_item", {**line, "type": "subscription_item"})


@pytest.mark.parametrize(
    ("path", "params", "status", "param"),
    [
        ("/v1/invoices/in_nope", {}, 404, "invoice"),
        ("/v1/invoices/in_nope/lines", {}, 404, "invoice"),
        ("/v1/invoices", {"status": "late"}, 400, "status"),
        ("/v1/subscriptions", {"status": "gone"}, 400, "status"),
        ("/v1/invoices", {"starting_after": "in_nope"}, 400, "starting_after"),
        ("/v1/subscriptions", {"limit": "101"}, 400, "limit"),
        ("/v1/subscriptions", {"created[soon]": "1"}, 400, "created[soon]"),
        ("/v1/subscriptions", {"plan": "x"}, 400, "plan"),
        ("/v1/invoices", {"expand[]": "data.customer"}, 400, "expand"),
    ],
    ids=["no-invoice", "no-invoice-lines", "bad-invoice-status", "bad-sub-status",
         "unknown-cursor", "limit", "bad-range", "unknown-param", "cannot-expand"],
)  # fmt: skip
def test_errors_in_stripes_shape(
    server: SandboxServer, path: str, params: dict[str, str], status: int, param: str
) -> None:
    resp = get(server, path, params)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["param"] == param
    template = "/v1/invoices/{invoice}" + ("/lines" if path.endswith("/lines") else "")
    validate_response("GET", template if "in_nope" in path else path, status, body)


def test_expand_of_embedded_paths_is_accepted(client: stripe.StripeClient) -> None:
    subs = client.v1.subscriptions.list({"expand": ["data.discount", "data.items"], "limit": 3})
    assert len(subs.data) == 3
    sub = next(s for s in client.v1.subscriptions.list({"limit": 1}).data)
    params: Any = {"subscription": sub.id, "expand": ["data.subscription"], "limit": 1}
    invoice = client.v1.invoices.list(params).data[0]
    assert invoice.subscription.object == "subscription" and invoice.subscription.id == sub.id
    retrieved = client.v1.invoices.retrieve(invoice.id, {"expand": ["subscription"]})
    assert retrieved.subscription.id == sub.id


def test_a_restricted_key_without_billing_permissions_gets_stripes_403(
    billing: SandboxBilling,
) -> None:
    account = SandboxAccount.generate(end=END, days=2, seed=7)
    api = BillingApi(billing, restricted_key_lacks={"subscriptions"})
    with SandboxServer(account, billing=api) as srv:
        restricted = client_for(srv, RESTRICTED)
        with pytest.raises(stripe.PermissionError) as caught:
            restricted.v1.subscriptions.list({"status": "all"})
        assert caught.value.http_status == 403
        body = get(srv, "/v1/subscriptions", key=RESTRICTED).json()
        validate_response("GET", "/v1/subscriptions", 403, body)
        message = body["error"]["message"]
        assert body["error"]["type"] == "invalid_request_error"
        assert message == (
            f"The provided key 'rk_test_{'*' * 24}r1cted' does not have the required permissions "
            f"for this endpoint on account '{account.account_id}'. Having the "
            "'rak_subscription_read' permission would allow this request to continue."
        )
        assert RESTRICTED not in message
        assert restricted.v1.invoices.list({"limit": 1}).data  # invoices stay readable
        assert client_for(srv).v1.subscriptions.list({"limit": 1}).data  # secret keys read all
        api.restricted_key_lacks = frozenset({"subscriptions", "invoices"})
        for path in ("/v1/invoices", f"/v1/invoices/{billing.invoices[0]['id']}"):
            resp = get(srv, path, key=RESTRICTED)
            assert (
                resp.status_code == 403 and "'rak_invoice_read'" in resp.json()["error"]["message"]
            )
    with pytest.raises(ValueError, match="unknown Billing resources"):
        BillingApi(billing, restricted_key_lacks={"charges"})


def test_without_billing_the_routes_do_not_exist() -> None:
    account = SandboxAccount.generate(end=END, days=2, seed=7)
    with SandboxServer(account) as srv:
        assert get(srv, "/v1/subscriptions").status_code == 404


# ---------------------------------------------------------------------- the oracle


def invoice_mrr(
    subs: list[Json], invoices: list[Json], lines: dict[str, list[Json]], t: int
) -> dict[tuple[str, str], Fraction]:
    """MRR per (currency, customer) at ``t`` from subscriptions and invoices, by the
    investor-metrics definition: licensed lines of paid/open invoices covering ``t``."""
    by_sub: dict[str, list[Json]] = collections.defaultdict(list)
    for invoice in invoices:
        if invoice["subscription"] and invoice["status"] in ("paid", "open"):
            by_sub[invoice["subscription"]].append(invoice)
    out: dict[tuple[str, str], Fraction] = collections.defaultdict(Fraction)
    for sub in subs:
        trial = sub["trial_start"] is not None and sub["trial_start"] <= t < sub["trial_end"]
        ended = sub["ended_at"] is not None and sub["ended_at"] <= t
        if t < sub["start_date"] or ended or trial:
            continue
        mrr = Fraction(0)
        for invoice in by_sub[sub["id"]]:
            for line in lines[invoice["id"]]:
                price = line["price"]
                if ("subscription_item" not in line or not price["recurring"]
                        or price["recurring"]["usage_type"] != "licensed"
                        or not line["period"]["start"] <= t < line["period"]["end"]):  # fmt: skip
                    continue
                sign = (line["amount"] > 0) - (line["amount"] < 0)
                per = MONTHLY[price["recurring"]["interval"]] / price["recurring"]["interval_count"]
                mrr += sign * price["unit_amount"] * line["quantity"] * per
        discount = sub["discount"]
        if discount and discount["coupon"]["duration"] == "forever" and discount["start"] <= t:
            mrr *= 1 - Fraction(str(discount["coupon"]["percent_off"])) / 100
        currency = sub["items"]["data"][0]["price"]["currency"]
        out[(currency, sub["customer"])] += mrr
    return {k: v for k, v in out.items() if v > 0}


def instants(billing: SandboxBilling, tz: str) -> list[int]:
    """Every month end, and both sides of every change in any subscription's history."""
    changes = {c.t + d for h in billing.history.values() for c in h.changes for d in (-1, 0)}
    ends = {t for _, t in month_ends(start=billing.start, end=billing.end, tz=tz)}
    return sorted(t for t in changes | ends if billing.start <= t < billing.end)


def test_invoices_and_history_agree_at_every_instant_through_the_sdk(
    client: stripe.StripeClient, billing: SandboxBilling
) -> None:
    subs = [
        s.to_dict()
        for s in client.v1.subscriptions.list({"status": "all", "limit": 100}).auto_paging_iter()
    ]
    invoices = [i.to_dict() for i in client.v1.invoices.list({"limit": 100}).auto_paging_iter()]
    lines = {i["id"]: i["lines"]["data"] for i in invoices}
    for invoice in invoices:
        if invoice["lines"]["has_more"]:
            pages = client.v1.invoices.line_items.list(invoice["id"], {"limit": 100})
            lines[invoice["id"]] = [line.to_dict() for line in pages.auto_paging_iter()]
    checked = 0
    for t in instants(billing, "UTC"):
        assert invoice_mrr(subs, invoices, lines, t) == customer_mrr(billing.history.values(), t), t
        checked += 1
    assert checked > 200


@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Tokyo"])
def test_invoices_and_history_agree_in_other_zones(tz: str) -> None:
    other = SandboxBilling.generate(end=END, seed=3, tz=tz, customers=10)
    vandelay = next(s for s in other.subscriptions
                    if s["customer"] == by_name(other, "Vandelay Industries"))  # fmt: skip
    local = dt.datetime.fromtimestamp(vandelay["start_date"] + 1, ZoneInfo(tz))
    assert (local.day, local.hour, local.minute, local.second) == (1, 0, 0, 0)  # a local month
    lines = {i["id"]: other.lines(i["id"]) or [] for i in other.invoices}
    for t in instants(other, tz):
        got = invoice_mrr(other.subscriptions, other.invoices, lines, t)
        assert got == customer_mrr(other.history.values(), t), (tz, t)


def test_the_invoice_side_check_can_fail(billing: SandboxBilling) -> None:
    """Breaking one invoice (paid -> uncollectible) must show in the comparison."""
    lines = {i["id"]: billing.lines(i["id"]) or [] for i in billing.invoices}
    target = next(i for i in billing.invoices
                  if i["billing_reason"] == "subscription_cycle" and i["status"] == "paid"
                  and any(line["amount"] > 0 for line in lines[i["id"]]))  # fmt: skip
    broken = [{**i, "status": "uncollectible"} if i is target else i for i in billing.invoices]
    t = target["created"]
    assert invoice_mrr(billing.subscriptions, broken, lines, t) != customer_mrr(
        billing.history.values(), t
    )


@pytest.fixture(scope="module")
def rows(billing: SandboxBilling) -> list[Any]:
    return metrics(billing.history.values(), start=billing.start, end=billing.end, tz="UTC")


def test_roll_forward_identity_on_every_row(billing: SandboxBilling, rows: list[Any]) -> None:
    assert rows
    for r in rows:
        movement = r.new + r.reactivation + r.expansion - r.contraction - r.churn
        assert r.mrr_end == r.mrr_start + movement, r
        counts = r.new_subscribers + r.reactivated_subscribers - r.churned_subscribers
        assert r.subscribers_end == r.subscribers_start + counts, r
        assert r.arr == 12 * r.mrr_end
        assert all(isinstance(v, Fraction) for v in (r.mrr_start, r.new, r.expansion, r.churn))
        if r.subscribers_start:
            assert r.subscriber_churn_rate == Fraction(r.churned_subscribers, r.subscribers_start)
        else:
            assert r.subscriber_churn_rate is None and r.net_revenue_retention is None
    # Each currency has a row for every month from its first with MRR to the last one, zero
    # rows included, and a month starts where the one before ended.
    months = [m for m, _ in month_ends(start=billing.start, end=billing.end, tz="UTC")]
    by_currency = collections.defaultdict(list)
    for r in rows:
        by_currency[r.currency].append(r)
    for chain in by_currency.values():
        assert [r.month for r in chain] == months[months.index(chain[0].month) :]
        assert chain[0].mrr_start == 0 < chain[0].mrr_end
        assert all(a.mrr_end == b.mrr_start for a, b in itertools.pairwise(chain))


def test_every_movement_shows_somewhere(rows: list[Any]) -> None:
    for field in ("new", "reactivation", "expansion", "contraction", "churn"):
        assert any(getattr(r, field) > 0 for r in rows), field
    assert {r.currency for r in rows} == {"usd", "eur", "gbp", "jpy"}
    assert any(r.mrr_end.denominator > 1 for r in rows)  # annual and weekly prices: fractions


def customer_at(billing: SandboxBilling, name: str, month: str, currency: str = "usd") -> Fraction:
    """A customer's MRR at the end of ``month`` (history side)."""
    ends = dict(month_ends(start=billing.start, end=billing.end, tz=billing.tz))
    return customer_mrr(billing.history.values(), ends[month]).get(
        (currency, by_name(billing, name)), Fraction(0)
    )


def test_hand_built_cases_land_where_they_should(billing: SandboxBilling, rows: list[Any]) -> None:
    months = [m for m, _ in month_ends(start=billing.start, end=billing.end, tz="UTC")]
    assert months[0] == "2025-09" and months[-1] == "2026-10" and len(months) == 14

    def mrr(name: str, month: int, currency: str = "usd") -> Fraction:
        return customer_at(billing, name, months[month], currency)

    assert mrr("Vandelay Industries", 5) == 1900  # created at the last second of month 5
    assert mrr("Kramerica", 5) == 0 and mrr("Kramerica", 6) == 1900  # first second of month 6
    assert mrr("Pied Piper", 8) == 1900 and mrr("Pied Piper", 9) == 0  # ended at the last second
    assert mrr("Dunder Mifflin", 9) == 1900 and mrr("Dunder Mifflin", 10) == 0  # first second
    assert mrr("Prestige Worldwide", 7) == 6 * 1900  # up at the last second of month 7
    assert mrr("Prestige Worldwide", 9) == 2 * 1900  # down at the first second of month 9
    assert mrr("Hooli", 4) == 0 and mrr("Free Friend", 6) == 0  # trial not converted; 100% off
    assert mrr("Initech", 4) == Fraction(8 * 4900, 5)  # converted trial, forever 20% off
    assert mrr("Initech", 9) == Fraction(12 * 4900, 5)  # a seat more, still 20% off
    assert mrr("Sterling Cooper", 5) == 2 * 4900 and mrr("Sterling Cooper", 6) == Fraction(
        8 * 4900, 5
    )
    assert mrr("Acme Corp", 1) == 3 * 4900 and mrr("Acme Corp", 2) == 5 * 4900
    assert mrr("Acme Corp", 6) == 5 * 1900  # downgraded at the renewal in month 6
    assert mrr("Globex", 9) == 1900 + Fraction(199000, 12)  # monthly + upgraded annual
    assert mrr("Oscorp", 5, "gbp") == Fraction(3 * 975 * 52, 12)  # weekly
    assert mrr("Bergmann GmbH", 5, "eur") == Fraction(48330, 3)  # quarterly, tax left out
    assert mrr("Massive Dynamic", 5) == 19900  # the metered item counts nothing
    assert mrr("Wonka", 8) == 0 < mrr("Wonka", 7)  # uncollectible from its period's start
    assert mrr("Delinquent Ltd", 10) == 0 < mrr("Delinquent Ltd", 9)
    assert mrr("Nakatomi", 13) == 3 * 1900  # past due: the open invoice still counts
    assert mrr("Late Trial", 13) == 0 and mrr("Bluth Company", 7) == 0
    assert mrr("Tyrell", 1, "jpy") == 2 * 19800  # a once coupon changes nothing

    usd = {r.month: r for r in rows if r.currency == "usd"}
    assert usd[months[8]].reactivated_subscribers >= 1  # Cyberdyne is back on a quarterly plan
    soylent_back = months[7]
    assert mrr("Soylent", 6) == 0 < mrr("Soylent", 7)
    assert usd[soylent_back].new_subscribers >= 1  # new in usd, whatever it did in eur
    eur = {r.month: r for r in rows if r.currency == "eur"}
    assert eur[months[5]].churned_subscribers >= 1 and eur[months[5]].churn >= 2 * 4500


def test_the_roll_forward_classifies_each_customer() -> None:
    """The oracle's own arithmetic on made-up month ends, one customer per movement."""
    start = {"a": Fraction(100), "b": Fraction(100), "c": Fraction(100), "d": Fraction(50)}
    end = {
        "a": Fraction(150),
        "b": Fraction(40),
        "d": Fraction(50),
        "e": Fraction(10),
        "f": Fraction(7),
    }
    row = roll_forward("2026-01", "usd", start, end, seen={"a", "b", "c", "d", "f"})
    assert (row.new, row.reactivation, row.expansion, row.contraction, row.churn) == (
        10,
        7,
        50,
        60,
        100,
    )
    assert (row.new_subscribers, row.reactivated_subscribers, row.churned_subscribers) == (1, 1, 1)
    assert row.gross_mrr_churn_rate == Fraction(160, 350)
    assert row.net_revenue_retention == Fraction(350 + 50 - 60 - 100, 350)
    assert row.arpa == Fraction(257, 5)
    empty = roll_forward("2026-02", "usd", {}, {}, seen={"a"})
    assert empty.arpa is None and empty.gross_mrr_churn_rate is None and empty.mrr_end == 0


def test_subscription_mrr_follows_the_history(billing: SandboxBilling) -> None:
    globex = by_name(billing, "Globex")
    annual = next(h for h in billing.history.values()
                  if h.customer == globex and h.changes[0].items[0].price.interval == "year")  # fmt: skip
    first = annual.changes[0]
    assert subscription_mrr(annual, first.t - 1) == 0
    assert subscription_mrr(annual, first.t) == Fraction(49000, 12)
    assert subscription_mrr(annual, annual.changes[1].t) == Fraction(199000, 12)
    once = Coupon("ONCE", "25% once", "once", 25)
    forever = Coupon("FOREVER", "20% forever", "forever", 20)
    change = annual.changes[0]
    for coupon, expected in ((once, Fraction(49000, 12)), (forever, Fraction(49000 * 8, 120))):
        discounted = dataclasses.replace(change, coupon=coupon)
        history = dataclasses.replace(annual, changes=(discounted,))
        assert subscription_mrr(history, change.t) == expected, coupon.duration
    for status in ("trialing", "unpaid", "incomplete", "canceled"):
        history = dataclasses.replace(annual, changes=(dataclasses.replace(change, status=status),))
        assert subscription_mrr(history, change.t + 1) == 0, status
