"""The sandbox's payouts through the real stripe SDK and plain HTTP on 127.0.0.1: the payout
objects, the ``payout=`` filter of the balance transactions (manual payouts refused, as Stripe
does), the failed payout and its failure transaction, and the payout reconciliation report.

Every expectation is computed here from what the API lists (balance transactions, payouts),
with Decimal arithmetic; nothing goes through revbot's P&L, ledger or CSV parser, and every
request and JSON answer is checked against Stripe's spec.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import io
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
import stripe

from bot.sandbox import MANUAL_FILTER_MESSAGE, PayoutApi, SandboxAccount, SandboxServer
from tests.stripe_contract import validate, validate_query, validate_response

END = dt.date(2026, 11, 1)
KEY = "sk_test_payouts"
RESTRICTED = "rk_test_" + "R3str1cted" * 3
DAY = 86_400
REPORT = "payout_reconciliation.itemized.5"
COLUMNS = [
    "balance_transaction_id", "created_utc", "created", "available_on_utc", "available_on",
    "currency", "gross", "fee", "net", "reporting_category", "source_id", "description",
    "automatic_payout_id", "automatic_payout_effective_at_utc", "automatic_payout_effective_at",
]  # fmt: skip
EXPONENT = {"usd": 2, "eur": 2, "gbp": 2, "jpy": 0, "kwd": 3}  # written out: not bot.money
Json = dict[str, Any]


@pytest.fixture(scope="module")
def account() -> SandboxAccount:
    return SandboxAccount.generate(end=END)  # the default account: 120 days, seed 7, UTC


@pytest.fixture(scope="module")
def server(account: SandboxAccount) -> Iterator[SandboxServer]:
    with SandboxServer(account, data_available_end=account.end) as srv:
        yield srv


def client_for(srv: SandboxServer, key: str = KEY) -> stripe.StripeClient:
    return stripe.StripeClient(
        key, base_addresses={"api": srv.url, "files": srv.url}, max_network_retries=0
    )


@pytest.fixture(scope="module")
def client(server: SandboxServer) -> stripe.StripeClient:
    return client_for(server)


def get(srv: SandboxServer, path: str, params: Any = None, key: str = KEY) -> requests.Response:
    return requests.get(
        srv.url + path, params=params, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def checked(srv: SandboxServer, template: str, path: str, params: Any, status: int = 200) -> Json:
    """GET ``path``, both the request and the answer checked against the spec."""
    validate_query("GET", template, params or {})
    resp = get(srv, path, params)
    assert resp.status_code == status, resp.text
    body: Json = resp.json()
    validate_response("GET", template, status, body)
    return body


def every_page(srv: SandboxServer, path: str, params: dict[str, Any]) -> list[Json]:
    """All objects of a list, page by page over plain HTTP (path = spec template here)."""
    out: list[Json] = []
    params = {"limit": 100, **params}
    while True:
        body = checked(srv, path, path, params)
        out.extend(body["data"])
        if not body["has_more"]:
            return out
        params = {**params, "starting_after": body["data"][-1]["id"]}


@pytest.fixture(scope="module")
def payouts(server: SandboxServer) -> list[Json]:
    return every_page(server, "/v1/payouts", {})


@pytest.fixture(scope="module")
def transactions(server: SandboxServer) -> list[Json]:
    return every_page(server, "/v1/balance_transactions", {})


@pytest.fixture(scope="module")
def settled(server: SandboxServer, payouts: list[Json]) -> dict[str, list[Json]]:
    """What the ``payout=`` filter lists for every automatic payout (own BT included)."""
    return {
        p["id"]: every_page(server, "/v1/balance_transactions", {"payout": p["id"]})
        for p in payouts
        if p["automatic"]
    }


def only(payouts: list[Json], **fields: Any) -> Json:
    found = [p for p in payouts if all(p[k] == v for k, v in fields.items())]
    assert len(found) == 1, fields
    return found[0]


def major(minor: int, currency: str) -> Decimal:
    return Decimal(minor) / (Decimal(10) ** EXPONENT[currency])


def text(minor: int, currency: str) -> str:
    """As Stripe's CSVs write money: major units with exactly the currency's decimals."""
    return f"{major(minor, currency):.{EXPONENT[currency]}f}"


def stamp(ts: int, zone: str = "UTC") -> str:
    return f"{dt.datetime.fromtimestamp(ts, ZoneInfo(zone)):%Y-%m-%d %H:%M:%S}"


def run_report(client: stripe.StripeClient, parameters: Any) -> Any:
    run = client.v1.reporting.report_runs.create({"report_type": REPORT, "parameters": parameters})
    deadline = time.monotonic() + 10
    while run.status == "pending" and time.monotonic() < deadline:
        time.sleep(0.01)
        run = client.v1.reporting.report_runs.retrieve(run.id)
    assert run.status == "succeeded", run
    return run


def download(run: Any) -> bytes:
    resp = requests.get(run.result.url, auth=(KEY, ""), timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/csv")
    return resp.content


# ---------------------------------------------------------------------- the payouts


def test_same_arguments_same_bytes(account: SandboxAccount) -> None:
    again = SandboxAccount.generate(end=END)
    other = SandboxAccount.generate(end=END, seed=8)
    assert json.dumps(again.payouts) == json.dumps(account.payouts)
    assert json.dumps(again.transactions) == json.dumps(account.transactions)
    bodies = []
    for acct in (account, again, other):
        with SandboxServer(acct) as srv:
            bodies.append(get(srv, "/v1/payouts", {"limit": 100}).content)
    assert bodies[0] == bodies[1] != bodies[2]


def test_every_payout_object_is_stripes(
    account: SandboxAccount, payouts: list[Json], transactions: list[Json]
) -> None:
    by_id = {t["id"]: t for t in transactions}
    payout_txns = [t for t in transactions if t["type"] == "payout"]
    assert [p["balance_transaction"] for p in payouts] == [t["id"] for t in payout_txns]
    assert len(payouts) > 100
    destinations: dict[str, set[str]] = collections.defaultdict(set)
    for p in payouts:
        validate("payout", p)
        txn = by_id[p["balance_transaction"]]
        assert p["object"] == "payout" and p["id"].startswith("po_") and txn["source"] == p["id"]
        assert (p["amount"], p["currency"], p["created"]) == (-txn["amount"], txn["currency"],
                                                              txn["created"])  # fmt: skip
        assert p["amount"] > 0 and txn["fee"] == 0 and txn["reporting_category"] == "payout"
        assert (p["method"], p["type"], p["source_type"]) == ("standard", "bank_account", "card")
        assert (p["description"], p["statement_descriptor"]) == ("STRIPE PAYOUT", None)
        assert p["livemode"] is False and p["metadata"] == {}
        assert p["original_payout"] is None and p["reversed_by"] is None
        assert p["destination"].startswith("ba_")
        destinations[p["currency"]].add(p["destination"])
        assert p["arrival_date"] % DAY == 0 and p["arrival_date"] > p["created"]
        if p["id"] != payouts[0]["id"]:  # the newest may be held up at the bank
            assert DAY <= p["arrival_date"] - p["created"] <= 2 * DAY
        if p["status"] != "failed":
            assert p["failure_balance_transaction"] is p["failure_code"] is None
            assert p["failure_message"] is None
            expected = "paid" if p["arrival_date"] <= account.end else "in_transit"
            assert p["status"] == expected
    assert all(len(d) == 1 for d in destinations.values())
    assert len(set.union(*destinations.values())) == len(destinations) == 5
    keys = [(p["created"], p["id"]) for p in payouts]
    assert keys == sorted(keys, reverse=True)
    assert payouts == account.payouts


def test_the_story_manual_failed_and_in_transit(
    account: SandboxAccount, payouts: list[Json]
) -> None:
    statuses = collections.Counter((p["status"], p["automatic"]) for p in payouts)
    assert statuses[("failed", True)] == 1 and statuses[("failed", False)] == 0
    assert sum(n for (_, automatic), n in statuses.items() if not automatic) == 1
    manual = only(payouts, automatic=False)
    failed = only(payouts, status="failed")
    span = account.end - account.start
    assert manual["currency"] == "usd" and manual["status"] == "paid"
    assert account.start + span // 2 <= manual["created"] < account.end - 7 * DAY, "mid-range"
    assert failed["currency"] == "eur" and failed["automatic"]
    assert account.start + span // 5 <= failed["created"] < account.start + span // 2
    in_transit = [p for p in payouts if p["status"] == "in_transit"]
    assert in_transit and payouts[0] in in_transit
    assert all(p["arrival_date"] > account.end for p in in_transit)
    assert {p["status"] for p in payouts} == {"paid", "in_transit", "failed"}


def test_list_pages_every_payout_once_newest_first(
    client: stripe.StripeClient, server: SandboxServer, payouts: list[Json]
) -> None:
    everything = [p["id"] for p in payouts]
    assert [p.id for p in client.v1.payouts.list({"limit": 7}).auto_paging_iter()] == everything
    first = checked(server, "/v1/payouts", "/v1/payouts", {})
    assert [p["id"] for p in first["data"]] == everything[:10] and first["has_more"]
    # Backwards from the oldest with ending_before.
    cursor, seen = everything[-1], list[str]()
    while True:
        body = checked(server, "/v1/payouts", "/v1/payouts", {"limit": 30, "ending_before": cursor})
        seen = [p["id"] for p in body["data"]] + seen
        if not body["has_more"]:
            break
        cursor = body["data"][0]["id"]
    assert seen == everything[:-1]
    count = len(everything)
    tail = checked(
        server, "/v1/payouts", "/v1/payouts", {"starting_after": everything[-3], "limit": 2}
    )
    assert [p["id"] for p in tail["data"]] == everything[-2:] and not tail["has_more"]
    for limit in (1, 100):
        body = checked(server, "/v1/payouts", "/v1/payouts", {"limit": limit})
        assert len(body["data"]) == min(limit, count) and body["has_more"]


def test_retrieve_and_expand(
    client: stripe.StripeClient, server: SandboxServer, payouts: list[Json]
) -> None:
    for p in [*payouts[:3], only(payouts, automatic=False), only(payouts, status="failed")]:
        path = f"/v1/payouts/{p['id']}"
        assert checked(server, "/v1/payouts/{payout}", path, {}) == p
        assert client.v1.payouts.retrieve(p["id"]).to_dict() == p
    failed = only(payouts, status="failed")
    params = {"expand[0]": "balance_transaction", "expand[1]": "failure_balance_transaction"}
    body = checked(server, "/v1/payouts/{payout}", f"/v1/payouts/{failed['id']}", params)
    assert body["balance_transaction"]["id"] == failed["balance_transaction"]
    assert body["failure_balance_transaction"]["type"] == "payout_failure"
    listed = checked(
        server, "/v1/payouts", "/v1/payouts", {"limit": 3, "expand[0]": "data.balance_transaction"}
    )
    assert [p["balance_transaction"]["source"] for p in listed["data"]] == [
        p["id"] for p in payouts[:3]
    ]


def test_not_found_and_bad_parameters(server: SandboxServer, payouts: list[Json]) -> None:
    missing = checked(server, "/v1/payouts/{payout}", "/v1/payouts/po_nope", {}, 404)
    assert missing["error"] == {
        "type": "invalid_request_error",
        "message": "No such payout: 'po_nope'",
        "code": "resource_missing",
        "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
        "param": "id",
    }
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client_for(server).v1.payouts.retrieve("po_nope")
    assert caught.value.http_status == 404
    bad: list[tuple[dict[str, Any], str]] = [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"starting_after": "po_nope"}, "starting_after"),
        ({"ending_before": "po_nope"}, "ending_before"),
        ({"created[gte]": "soon"}, "created[gte]"),
        ({"arrival_date[after]": "1"}, "arrival_date[after]"),
        ({"status": "lost"}, "status"),
        ({"expand[0]": "data.destination"}, "expand"),
    ]
    for params, param in bad:
        resp = get(server, "/v1/payouts", params)
        assert resp.status_code == 400, params
        validate_response("GET", "/v1/payouts", 400, resp.json())
        assert resp.json()["error"]["param"] == param, params
    unknown = get(server, "/v1/payouts", {"currency": "usd"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == "Received unknown parameter: currency"
    with pytest.raises(AssertionError, match="unknown parameter"):
        validate_query("GET", "/v1/payouts", {"currency": "usd"})  # Stripe has no such filter
    unauthorized = get(server, "/v1/payouts", key="sk_live_nope")
    assert unauthorized.status_code == 401


@pytest.mark.parametrize("field", ["created", "arrival_date"])
def test_range_filters_at_exact_boundaries(
    server: SandboxServer, payouts: list[Json], field: str
) -> None:
    t = payouts[len(payouts) // 2][field]

    def listed(bounds: dict[str, int] | int) -> list[str]:
        if isinstance(bounds, int):
            return [p["id"] for p in every_page(server, "/v1/payouts", {field: bounds})]
        flat = {f"{field}[{op}]": v for op, v in bounds.items()}
        return [p["id"] for p in every_page(server, "/v1/payouts", flat)]

    def expect(pred: Any) -> list[str]:
        return [p["id"] for p in payouts if pred(p[field])]

    window = {"gte": t - 3 * DAY, "lte": t + 3 * DAY}
    assert listed({**window, "gte": t}) == expect(lambda v: t <= v <= t + 3 * DAY)
    assert listed({**window, "gt": t}) == expect(lambda v: t < v <= t + 3 * DAY)
    assert listed({**window, "lt": t}) == expect(lambda v: t - 3 * DAY <= v < t)
    assert listed({**window, "lte": t}) == expect(lambda v: t - 3 * DAY <= v <= t)
    exact = listed(t)
    assert exact == expect(lambda v: v == t) and exact


def test_status_and_destination_filters(
    client: stripe.StripeClient, server: SandboxServer, payouts: list[Json]
) -> None:
    for status in ("paid", "in_transit", "failed", "pending", "canceled"):
        got = [p["id"] for p in every_page(server, "/v1/payouts", {"status": status})]
        assert got == [p["id"] for p in payouts if p["status"] == status], status
    eur = only(payouts, status="failed")["destination"]
    got = [p.id for p in client.v1.payouts.list({"destination": eur, "limit": 100})
           .auto_paging_iter()]  # fmt: skip
    assert got == [p["id"] for p in payouts if p["currency"] == "eur"] and got
    both = every_page(server, "/v1/payouts", {"destination": eur, "status": "in_transit"})
    assert [p["id"] for p in both] == [
        p["id"] for p in payouts if p["destination"] == eur and p["status"] == "in_transit"
    ]


# ---------------------------------------------------------------------- what payouts settle


def test_each_payout_settles_what_became_available_since_the_previous_one(
    payouts: list[Json], transactions: list[Json], settled: dict[str, list[Json]]
) -> None:
    """From the API lists alone: every automatic payout (failed one included) lists exactly the
    transactions of its currency that became available after the previous payout of that
    currency was made and by the time it was made, plus its own, and pays out their net."""
    by_currency: dict[str, list[Json]] = collections.defaultdict(list)
    for p in reversed(payouts):  # oldest first
        by_currency[p["currency"]].append(p)
    checked_ids = 0
    for currency, mine in by_currency.items():
        funds = [t for t in transactions if t["currency"] == currency and t["type"] != "payout"]
        previous = None
        for p in mine:
            batch = {
                t["id"]: t
                for t in funds
                if (previous is None or t["available_on"] > previous)
                and t["available_on"] <= p["created"]
            }
            previous = p["created"]
            if p["automatic"]:
                listed = settled[p["id"]]
                own = [t for t in listed if t["id"] == p["balance_transaction"]]
                assert len(own) == 1 and own[0]["type"] == "payout"
                others = [t for t in listed if t["id"] != p["balance_transaction"]]
                assert sorted(t["id"] for t in others) == sorted(batch), p["id"]
                assert p["amount"] == sum(t["net"] for t in others), p["id"]
                keys = [(t["created"], t["id"]) for t in listed]
                assert keys == sorted(keys, reverse=True)
                checked_ids += len(listed)
            else:  # the manual payout: same batch, same balance, but no itemised list
                assert p["amount"] == sum(t["net"] for t in batch.values())
    assert checked_ids > 1000


def test_the_manual_payout_cannot_be_itemised(
    client: stripe.StripeClient, server: SandboxServer, payouts: list[Json]
) -> None:
    manual = only(payouts, automatic=False)
    params = {"payout": manual["id"]}
    validate_query("GET", "/v1/balance_transactions", params)
    resp = get(server, "/v1/balance_transactions", params)
    assert resp.status_code == 400
    body = resp.json()
    validate_response("GET", "/v1/balance_transactions", 400, body)
    assert body == {
        "error": {
            "type": "invalid_request_error",
            "message": "Balance transaction history can only be filtered on automatic "
            "transfers, not manual.",
            "param": "payout",
        }
    }
    assert body["error"]["message"] == MANUAL_FILTER_MESSAGE
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.balance_transactions.list({"payout": manual["id"]})
    assert caught.value.http_status == 400 and MANUAL_FILTER_MESSAGE in str(caught.value)
    # The payout itself is there like any other, and its own balance transaction too.
    assert client.v1.payouts.retrieve(manual["id"]).automatic is False
    own = client.v1.balance_transactions.list({"source": manual["id"]}).data
    assert [t.id for t in own] == [manual["balance_transaction"]]


def test_the_failed_payout_and_its_failure_transaction(
    client: stripe.StripeClient,
    payouts: list[Json],
    transactions: list[Json],
    settled: dict[str, list[Json]],
) -> None:
    failed = only(payouts, status="failed")
    assert failed["failure_code"] == "account_closed"
    assert failed["failure_message"] == "The bank account has been closed."
    failure = client.v1.balance_transactions.retrieve(failed["failure_balance_transaction"])
    failure_json = failure.to_dict()
    validate("balance_transaction", failure_json)
    assert (failure.type, failure.reporting_category) == ("payout_failure", "payout_reversal")
    assert (failure.amount, failure.fee, failure.net) == (failed["amount"], 0, failed["amount"])
    assert failure.fee_details == [] and failure.currency == failed["currency"]
    assert failure.source == failed["id"] and failure.status == "available"
    assert failure.available_on == failure.created
    assert failed["created"] + DAY <= failure.created < failed["created"] + 2 * DAY
    by_source = client.v1.balance_transactions.list({"source": failed["id"]}).data
    assert {t.id for t in by_source} == {failed["balance_transaction"], failure.id}
    # The failed payout still lists what it settled, its own transaction included ...
    listed = {t["id"] for t in settled[failed["id"]]}
    assert failed["balance_transaction"] in listed and failure.id not in listed
    # ... and the money came back: the next eur payout pays it out again.
    eur = [p for p in reversed(payouts) if p["currency"] == "eur"]
    following = eur[eur.index(failed) + 1]
    assert following["status"] == "paid" and following["automatic"]
    assert failure.created < following["created"]
    again = settled[following["id"]]
    assert failure.id in {t["id"] for t in again}
    assert following["amount"] == sum(
        t["net"] for t in again if t["id"] != following["balance_transaction"]
    )
    assert failure_json in again
    # Nobody else lists it; and the account's eur balance is all accounted for.
    elsewhere = [p for p, ts in settled.items() if failure.id in {t["id"] for t in ts}]
    assert elsewhere == [following["id"]]
    assert sum(1 for t in transactions if t["type"] == "payout_failure") == 1


def test_a_short_account_has_no_manual_or_failed_payout() -> None:
    short = SandboxAccount.generate(end=END, days=5, seed=7)
    assert short.payouts, "a few days are enough for payouts"
    assert all(p["automatic"] and p["status"] != "failed" for p in short.payouts)
    assert short.payouts[0]["status"] == "in_transit"
    assert not [t for t in short.transactions if t["type"] == "payout_failure"]
    assert SandboxAccount.bulk(start=END, end=END + dt.timedelta(days=3), count=5).payouts == []


def test_a_restricted_key_without_the_payout_permission_gets_stripes_403(
    account: SandboxAccount,
) -> None:
    with SandboxServer(account, payouts=PayoutApi(restricted_key_lacks_read=True)) as srv:
        with pytest.raises(stripe.PermissionError) as caught:
            client_for(srv, RESTRICTED).v1.payouts.list()
        assert caught.value.http_status == 403
        body = get(srv, "/v1/payouts", key=RESTRICTED).json()
        validate_response("GET", "/v1/payouts", 403, body)
        assert body["error"]["message"] == (
            f"The provided key 'rk_test_{'*' * 24}r1cted' does not have the required permissions "
            f"for this endpoint on account '{account.account_id}'. Having the "
            "'rak_payout_read' permission would allow this request to continue."
        )
        one = account.payouts[0]["id"]
        assert get(srv, f"/v1/payouts/{one}", key=RESTRICTED).status_code == 403
        assert get(srv, f"/v1/payouts/{one}").status_code == 200
        srv.payouts.restricted_key_lacks_read = False
        assert get(srv, f"/v1/payouts/{one}", key=RESTRICTED).status_code == 200


# ---------------------------------------------------------------------- the report


def expected_rows(
    payouts: list[Json],
    settled: dict[str, list[Json]],
    start: int,
    end: int,
    zone: str = "Etc/UTC",
) -> list[dict[str, str]]:
    """The report's rows, from the API lists: automatic paid payouts arriving in the interval,
    each with what its ``payout=`` list settled (not its own transaction)."""
    rows = []
    chosen = [p for p in payouts if p["automatic"] and p["status"] == "paid"
              and start <= p["arrival_date"] < end]  # fmt: skip
    for p in sorted(chosen, key=lambda p: (p["arrival_date"], p["created"], p["id"])):
        listed = [t for t in settled[p["id"]] if t["id"] != p["balance_transaction"]]
        for t in sorted(listed, key=lambda t: (t["created"], t["id"])):
            cur = t["currency"]
            rows.append(
                {
                    "balance_transaction_id": t["id"],
                    "created_utc": stamp(t["created"]),
                    "created": stamp(t["created"], zone),
                    "available_on_utc": stamp(t["available_on"]),
                    "available_on": stamp(t["available_on"], zone),
                    "currency": cur,
                    "gross": text(t["amount"], cur),
                    "fee": text(t["fee"], cur),
                    "net": text(t["net"], cur),
                    "reporting_category": t["reporting_category"],
                    "source_id": t["source"] or "",
                    "description": t["description"] or "",
                    "automatic_payout_id": p["id"],
                    "automatic_payout_effective_at_utc": stamp(p["arrival_date"]),
                    "automatic_payout_effective_at": stamp(p["arrival_date"], zone),
                }
            )
    return rows


def parse(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode())))


def test_report_type_is_listed_like_the_others(
    client: stripe.StripeClient, server: SandboxServer, account: SandboxAccount
) -> None:
    listed = checked(server, "/v1/reporting/report_types", "/v1/reporting/report_types", {})
    assert REPORT in {t["id"] for t in listed["data"]}
    path = f"/v1/reporting/report_types/{REPORT}"
    one = checked(server, "/v1/reporting/report_types/{report_type}", path, {})
    summary = client.v1.reporting.report_types.retrieve("balance.summary.1")
    assert (one["data_available_start"], one["data_available_end"]) == (
        summary.data_available_start,
        summary.data_available_end,
    )
    assert one["default_columns"] == COLUMNS and one["version"] == 5
    assert one["name"] == "Payout reconciliation (itemized)"


def test_reconciliation_rows_match_the_api_lists(
    client: stripe.StripeClient,
    server: SandboxServer,
    account: SandboxAccount,
    payouts: list[Json],
    settled: dict[str, list[Json]],
) -> None:
    start, end = account.start, account.end
    form = {
        "report_type": REPORT,
        "parameters[interval_start]": str(start),
        "parameters[interval_end]": str(end),
    }
    validate_query("POST", "/v1/reporting/report_runs", form)
    run = run_report(client, {"interval_start": start, "interval_end": end})
    validate_response("GET", "/v1/reporting/report_runs/{report_run}", 200, run.to_dict())
    content = download(run)
    assert content.split(b"\r\n")[0].decode() == ",".join(COLUMNS)
    rows = parse(content)
    want = expected_rows(payouts, settled, start, end)
    assert rows == want and len(rows) > 1000
    # None of the manual, the failed or the in-transit payouts; the failure BT is reconciled.
    manual, failed = only(payouts, automatic=False), only(payouts, status="failed")
    in_report = {r["automatic_payout_id"] for r in rows}
    assert manual["id"] not in in_report and failed["id"] not in in_report
    assert not in_report & {p["id"] for p in payouts if p["status"] == "in_transit"}
    reversal = [
        r for r in rows if r["balance_transaction_id"] == failed["failure_balance_transaction"]
    ]
    assert len(reversal) == 1 and reversal[0]["reporting_category"] == "payout_reversal"
    assert Decimal(reversal[0]["net"]) == major(failed["amount"], "eur")
    # Per payout, the rows add up to what reached the bank.
    totals: dict[str, Decimal] = collections.defaultdict(Decimal)
    for r in rows:
        totals[r["automatic_payout_id"]] += Decimal(r["net"])
    for p in payouts:
        if p["id"] in totals:
            assert totals[p["id"]] == major(p["amount"], p["currency"])
    assert download(run_report(client, {"interval_start": start, "interval_end": end})) == content


def test_reconciliation_interval_timezone_currency_and_columns(
    client: stripe.StripeClient,
    account: SandboxAccount,
    payouts: list[Json],
    settled: dict[str, list[Json]],
) -> None:
    failed = only(payouts, status="failed")
    eur = [p for p in reversed(payouts) if p["currency"] == "eur"]
    following = eur[eur.index(failed) + 1]
    start = following["arrival_date"]  # an effective time exactly at the start is in ...
    end = start + 5 * DAY
    at_end = [p for p in payouts if p["arrival_date"] == end and p["status"] == "paid"]
    assert at_end, "... and one exactly at the end is out"
    params = {"interval_start": start, "interval_end": end, "timezone": "America/New_York"}
    rows = parse(download(run_report(client, params)))
    assert rows == expected_rows(payouts, settled, start, end, "America/New_York")
    assert following["id"] in {r["automatic_payout_id"] for r in rows}
    assert not {p["id"] for p in at_end} & {r["automatic_payout_id"] for r in rows}
    midnight = rows[0]["automatic_payout_effective_at"]
    assert midnight.endswith(("19:00:00", "20:00:00")), "UTC midnight, New York time"
    picked = parse(
        download(
            run_report(
                client, {**params, "currency": "eur", "columns": ["automatic_payout_id", "net"]}
            )
        )
    )
    assert picked and all(list(r) == ["automatic_payout_id", "net"] for r in picked)
    want = [r for r in rows if r["currency"] == "eur"]
    assert picked == [{"automatic_payout_id": r["automatic_payout_id"], "net": r["net"]}
                      for r in want]  # fmt: skip
    refunds = parse(download(run_report(client, {**params, "reporting_category": "refund"})))
    assert refunds == [r for r in rows if r["reporting_category"] == "refund"]


def test_reconciliation_parameters_are_checked(
    server: SandboxServer, account: SandboxAccount
) -> None:
    base = {
        "report_type": REPORT,
        "parameters[interval_start]": str(account.start),
        "parameters[interval_end]": str(account.end),
    }
    for extra, param in (
        ({"parameters[columns][0]": "nope"}, "parameters[columns]"),
        ({"parameters[interval_end]": str(account.end + DAY)}, "parameters[interval_end]"),
        ({"parameters[connected_account]": "acct_1"}, "parameters[connected_account]"),
    ):
        resp = requests.post(
            server.url + "/v1/reporting/report_runs",
            data={**base, **extra},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=10,
        )
        assert resp.status_code == 400, extra
        validate_response("POST", "/v1/reporting/report_runs", 400, resp.json())
        assert resp.json()["error"]["param"] == param
