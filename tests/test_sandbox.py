"""The Stripe sandbox, exercised through the real stripe SDK and plain HTTP on 127.0.0.1.

Expected figures are computed here from ``account.transactions`` with Decimal arithmetic,
never through revbot's own P&L code, and every JSON answer is checked against Stripe's spec.
"""

from __future__ import annotations

import base64
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

from bot.sandbox import REPORT_TYPES, SandboxAccount, SandboxServer, mask_key
from tests.stripe_contract import validate, validate_query, validate_response

END = dt.date(2026, 11, 1)
DAYS = 60
KEY = "sk_test_sandbox"
AUTH = {"Authorization": f"Bearer {KEY}"}
NON_ACTIVITY = {"payout", "payout_reversal", "transfer", "transfer_reversal", "topup",
                "topup_reversal"}  # fmt: skip
EXPONENT = {"usd": 2, "eur": 2, "gbp": 2, "jpy": 0, "kwd": 3}  # written out: not bot.money


@pytest.fixture(scope="module")
def account() -> SandboxAccount:
    return SandboxAccount.generate(end=END, days=DAYS, tz="UTC", seed=7)


@pytest.fixture(scope="module")
def server(account: SandboxAccount) -> Iterator[SandboxServer]:
    with SandboxServer(account, data_available_end=account.end) as srv:
        yield srv


@pytest.fixture
def fresh() -> Iterator[SandboxServer]:
    """A server of its own, for tests that turn knobs or mutate the account."""
    acct = SandboxAccount.generate(end=END, days=10, seed=11)
    with SandboxServer(acct, data_available_end=acct.end) as srv:
        yield srv


def client_for(srv: SandboxServer, key: str = KEY) -> stripe.StripeClient:
    return stripe.StripeClient(
        key, base_addresses={"api": srv.url, "files": srv.url}, max_network_retries=0
    )


@pytest.fixture(scope="module")
def client(server: SandboxServer) -> stripe.StripeClient:
    return client_for(server)


def get(srv: SandboxServer, path: str, **kw: Any) -> requests.Response:
    kw.setdefault("headers", AUTH)
    kw.setdefault("timeout", 10)
    return requests.get(srv.url + path, **kw)


def post(srv: SandboxServer, path: str, data: Any, **kw: Any) -> requests.Response:
    kw.setdefault("headers", AUTH)
    kw.setdefault("timeout", 10)
    return requests.post(srv.url + path, data=data, **kw)


def assert_error(resp: requests.Response, status: int, *, param: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert body["error"]["type"] in {"invalid_request_error", "api_error", "idempotency_error"}
    assert body["error"]["message"]
    if param is not None:
        assert body["error"].get("param") == param
    return body


def major(minor: int, currency: str) -> Decimal:
    return Decimal(minor) / (Decimal(10) ** EXPONENT[currency])


def run_report(
    client: stripe.StripeClient, report_type: str, parameters: dict[str, Any]
) -> stripe.reporting.ReportRun:
    run = client.v1.reporting.report_runs.create(
        {"report_type": report_type, "parameters": parameters}
    )
    deadline = time.monotonic() + 10
    while run.status == "pending" and time.monotonic() < deadline:
        time.sleep(0.01)
        run = client.v1.reporting.report_runs.retrieve(run.id)
    assert run.status == "succeeded", run
    return run


def download(run: stripe.reporting.ReportRun) -> list[dict[str, str]]:
    resp = requests.get(run.result.url, auth=(KEY, ""), timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(resp.text)))


# ---------------------------------------------------------------------- the account


def test_generate_is_deterministic() -> None:
    a = SandboxAccount.generate(end=END, days=20, tz="Europe/Paris", seed=3)
    b = SandboxAccount.generate(end=END, days=20, tz="Europe/Paris", seed=3)
    c = SandboxAccount.generate(end=END, days=20, tz="Europe/Paris", seed=4)
    assert json.dumps(a.transactions) == json.dumps(b.transactions)
    assert json.dumps(a.transactions) != json.dumps(c.transactions)
    assert a.account_id == b.account_id


def test_generated_business_looks_like_stripe(account: SandboxAccount) -> None:
    txns = account.transactions
    keys = [(t["created"], t["id"]) for t in txns]
    assert keys == sorted(keys, reverse=True), "transactions are newest first"
    assert len({t["id"] for t in txns}) == len(txns)
    categories = collections.Counter(t["reporting_category"] for t in txns)
    for category in (
        "charge",
        "refund",
        "dispute",
        "dispute_reversal",
        "fee",
        "payout",
        "other_adjustment",
    ):
        assert categories[category] > 0, category
    assert {t["currency"] for t in txns} == {"usd", "eur", "gbp", "jpy", "kwd"}
    for t in txns:
        assert t["id"].startswith("txn_") and t["object"] == "balance_transaction"
        assert t["net"] == t["amount"] - t["fee"]
        assert account.start <= t["created"] < account.end
        assert sum(f["amount"] for f in t["fee_details"]) == t["fee"]
        if t["currency"] == "kwd":
            assert t["amount"] % 10 == 0 and t["fee"] % 10 == 0
        if t["reporting_category"] == "charge":
            assert t["amount"] > 0 and t["fee"] > 0
        if t["reporting_category"] in {"refund", "payout", "fee", "dispute"}:
            assert t["amount"] < 0
        if t["reporting_category"] == "dispute":
            assert t["fee"] == 1500 or t["currency"] == "kwd"
        if t["type"] == "stripe_fee":
            assert t["reporting_category"] == "fee" and t["fee"] == 0
    charges = [t for t in txns if t["reporting_category"] == "charge" and t["currency"] == "usd"]
    # 2.9% + 30c, rounded half up
    assert all(t["fee"] == (t["amount"] * 290 + 5000) // 10000 + 30 for t in charges)
    per_day = collections.Counter(t["created"] // 86400 for t in txns)
    assert len(per_day) == DAYS
    assert min(per_day.values()) >= 12 and max(per_day.values()) <= 45
    first_week = sum(per_day[d] for d in sorted(per_day)[:7])
    last_week = sum(per_day[d] for d in sorted(per_day)[-7:])
    assert last_week > first_week, "the business grows"
    for t in txns[:50]:
        validate("balance_transaction", t)


def byid(txns: list[dict]) -> dict[str, dict]:
    return {t["id"]: t for t in txns}


def test_generate_uses_local_days_and_scale() -> None:
    zone = ZoneInfo("America/New_York")
    small = SandboxAccount.generate(end=END, days=14, tz="America/New_York", scale=0.5)
    big = SandboxAccount.generate(end=END, days=14, tz="America/New_York", scale=2.0)
    start = int(dt.datetime(2026, 10, 18, tzinfo=zone).timestamp())
    end = int(dt.datetime(2026, 11, 1, tzinfo=zone).timestamp())
    assert (small.start, small.end) == (start, end)
    assert all(start <= t["created"] < end for t in big.transactions)
    assert len(big) > 3 * len(small)


def test_bulk_has_exact_count_and_skew() -> None:
    flat = SandboxAccount.bulk(start=dt.date(2026, 1, 1), end=dt.date(2026, 1, 31), count=3000)
    skewed = SandboxAccount.bulk(
        start=dt.date(2026, 1, 1), end=dt.date(2026, 1, 31), count=3000, skew=0.9
    )
    for acct in (flat, skewed):
        txns = acct.transactions
        assert len(txns) == 3000
        assert all(t["reporting_category"] == "charge" for t in txns)
    flat_days = collections.Counter(t["created"] // 86400 for t in flat.transactions)
    hot_days = collections.Counter(t["created"] // 86400 for t in skewed.transactions)
    assert max(flat_days.values()) < 0.1 * 3000
    assert sum(n for _, n in hot_days.most_common(3)) > 0.85 * 3000
    with pytest.raises(ValueError):
        SandboxAccount.bulk(start=dt.date(2026, 1, 1), end=dt.date(2026, 1, 2), count=1, skew=1)


def test_add_and_update_transaction() -> None:
    acct = SandboxAccount(start=1_700_000_000, end=1_700_100_000)
    added = acct.add_transaction(
        created=1_700_000_100, amount=2000, currency="EUR", reporting_category="charge", fee=59
    )
    assert added["id"].startswith("txn_") and added["currency"] == "eur"
    assert (added["type"], added["net"], added["status"]) == ("charge", 1941, "available")
    assert added["fee_details"][0]["amount"] == 59
    validate("balance_transaction", added)
    refund = acct.add_transaction(created=1_700_000_100, amount=-500, currency="eur", type="refund")
    assert refund["reporting_category"] == "refund" and refund["fee_details"] == []
    changed = acct.update_transaction(added["id"], fee=100, status="pending", description="late")
    assert (changed["net"], changed["status"], changed["description"]) == (1900, "pending", "late")
    assert acct.transactions[0]["id"] == max(added["id"], refund["id"])  # tie: larger id first
    added["amount"] = 1  # a returned copy cannot alter the account
    assert acct.get(added["id"])["amount"] == 2000
    with pytest.raises(KeyError):
        acct.update_transaction("txn_missing", status="available")
    with pytest.raises(TypeError):
        acct.update_transaction(added["id"], net=5)
    with pytest.raises(TypeError):
        acct.add_transaction(created=1, amount=1, currency="usd")  # no category or type


# ---------------------------------------------------------------------- auth

GOOD_KEYS = ["sk_test_abc", "rk_test_4eC39HqLyjWDarjtT1zdp7dc"]
# Built from parts so that no tracked line looks like a real live key.
LIVE_KEY = "sk_live_" + "51HxQwErTyUi" + "OpAsDfGhJkLabcd"
BAD_KEYS = ["pk_test_abc", LIVE_KEY, "garbage", "sk_test_", ""]


@pytest.mark.parametrize("key", GOOD_KEYS)
@pytest.mark.parametrize("scheme", ["bearer", "basic"])
def test_good_keys_are_accepted(server: SandboxServer, key: str, scheme: str) -> None:
    if scheme == "bearer":
        headers = {"Authorization": f"Bearer {key}"}
    else:
        headers = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    assert get(server, "/v1/account", headers=headers).status_code == 200


@pytest.mark.parametrize("key", BAD_KEYS, ids=lambda k: k or "empty")
def test_bad_keys_get_401_without_echoing_the_key(server: SandboxServer, key: str) -> None:
    resp = get(server, "/v1/balance_transactions", headers={"Authorization": f"Bearer {key}"})
    body = assert_error(resp, 401)
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("Invalid API Key provided")
    if len(key) > 8:
        assert key not in body["error"]["message"]
    validate_response("GET", "/v1/balance_transactions", 401, body)


def test_missing_key_and_sdk_authentication_error(server: SandboxServer) -> None:
    assert_error(get(server, "/v1/account", headers={}), 401)
    with pytest.raises(stripe.AuthenticationError) as err:
        client_for(server, LIVE_KEY).v1.balance_transactions.list()
    assert "sk_live_****abcd" in str(err.value)
    assert mask_key(LIVE_KEY) == "sk_live_****abcd"
    assert mask_key("sk_live_short") == "sk_live_****"


# ---------------------------------------------------------------------- balance transactions


def test_auto_paging_yields_every_transaction_once_newest_first(
    client: stripe.StripeClient, account: SandboxAccount
) -> None:
    listed = [t.id for t in client.v1.balance_transactions.list({"limit": 100}).auto_paging_iter()]
    assert listed == [t["id"] for t in account.transactions]


def test_ending_before_pages_backwards(server: SandboxServer, account: SandboxAccount) -> None:
    expected = [t["id"] for t in account.transactions if t["currency"] == "gbp"]
    collected: list[str] = []
    cursor = expected[-1]
    collected.append(cursor)
    while True:
        body = get(
            server,
            "/v1/balance_transactions",
            params={"limit": 7, "ending_before": cursor, "currency": "gbp"},
        ).json()
        page = [t["id"] for t in body["data"]]
        collected = page + collected
        if not body["has_more"]:
            break
        cursor = page[0]
    assert collected == expected


def test_limit_bounds(server: SandboxServer) -> None:
    assert len(get(server, "/v1/balance_transactions").json()["data"]) == 10
    for limit in (1, 100):
        body = get(server, "/v1/balance_transactions", params={"limit": limit}).json()
        assert len(body["data"]) == limit and body["has_more"] is True
    for limit in (0, 101, -1, "abc"):
        resp = get(server, "/v1/balance_transactions", params={"limit": limit})
        validate_response(
            "GET", "/v1/balance_transactions", 400, assert_error(resp, 400, param="limit")
        )


def test_bad_parameters_and_cursors(server: SandboxServer) -> None:
    assert_error(get(server, "/v1/balance_transactions", params={"foo": "1"}), 400, param="foo")
    assert_error(
        get(server, "/v1/balance_transactions", params={"starting_after": "txn_nope"}),
        400,
        param="starting_after",
    )
    assert_error(
        get(server, "/v1/balance_transactions", params={"ending_before": "txn_nope"}),
        400,
        param="ending_before",
    )
    assert_error(
        get(server, "/v1/balance_transactions", params={"created[gte]": "yesterday"}),
        400,
        param="created[gte]",
    )
    assert_error(
        get(server, "/v1/balance_transactions", params={"created[after]": "1"}),
        400,
        param="created[after]",
    )
    assert_error(get(server, "/v1/nothing_here"), 404)


def test_created_filters_at_exact_boundaries(
    client: stripe.StripeClient, account: SandboxAccount
) -> None:
    txns = account.transactions
    t = txns[len(txns) // 2]["created"]

    def ids(created: Any) -> set[str]:
        listed = client.v1.balance_transactions.list({"created": created, "limit": 100})
        return {x.id for x in listed.auto_paging_iter()}

    def expect(pred: Any) -> set[str]:
        return {x["id"] for x in txns if pred(x["created"])}

    window = {"gte": t - 3600, "lte": t + 3600}
    assert ids({**window, "gte": t}) == expect(lambda c: t <= c <= t + 3600)
    assert ids({**window, "gt": t}) == expect(lambda c: t < c <= t + 3600)
    assert ids({**window, "lt": t}) == expect(lambda c: t - 3600 <= c < t)
    assert ids({**window, "lte": t}) == expect(lambda c: t - 3600 <= c <= t)
    exact = ids(t)
    assert exact == expect(lambda c: c == t) and len(exact) >= 1


def test_type_and_currency_filters(client: stripe.StripeClient, account: SandboxAccount) -> None:
    listed = client.v1.balance_transactions.list(
        {"type": "payout", "currency": "jpy", "limit": 100}
    )
    got = [t.id for t in listed.auto_paging_iter()]
    expected = [
        t["id"] for t in account.transactions if t["type"] == "payout" and t["currency"] == "jpy"
    ]
    assert got == expected and got
    upper = client.v1.balance_transactions.list({"currency": "KWD", "limit": 100})
    assert {t.currency for t in upper.auto_paging_iter()} == {"kwd"}


def test_payout_filter_lists_what_the_payout_paid(
    server: SandboxServer, account: SandboxAccount
) -> None:
    payout = next(t for t in account.transactions if t["type"] == "payout")
    body = get(
        server, "/v1/balance_transactions", params={"payout": payout["source"], "limit": 100}
    ).json()
    paid = [t for t in body["data"] if t["type"] != "payout"]
    assert paid and sum(t["net"] for t in paid) == -payout["amount"]


def test_retrieve_one_transaction(client: stripe.StripeClient, account: SandboxAccount) -> None:
    first = account.transactions[0]
    got = client.v1.balance_transactions.retrieve(first["id"])
    assert got.to_dict()["net"] == first["net"] and got.id == first["id"]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.balance_transactions.retrieve("txn_does_not_exist")


def test_added_transaction_is_listed_and_late_update_is_seen(fresh: SandboxServer) -> None:
    client = client_for(fresh)
    created = fresh.account.end - 10
    added = fresh.account.add_transaction(
        created=created, amount=123456, currency="jpy", reporting_category="charge", fee=4445
    )
    newest = client.v1.balance_transactions.list({"limit": 1}).data[0]
    assert newest.id == added["id"] and newest.amount == 123456
    fresh.account.update_transaction(added["id"], status="pending", description="late edit")
    again = client.v1.balance_transactions.retrieve(added["id"])
    assert (again.status, again.description) == ("pending", "late edit")


# ---------------------------------------------------------------------- reporting


def test_report_types(client: stripe.StripeClient, account: SandboxAccount) -> None:
    types = client.v1.reporting.report_types.list()
    assert {t.id for t in types.data} >= {
        "balance.summary.1",
        "balance_change_from_activity.summary.1",
        "balance_change_from_activity.itemized.3",
    }
    one = client.v1.reporting.report_types.retrieve("balance.summary.1")
    assert one.data_available_start == account.start // 86400 * 86400
    assert one.data_available_end == account.end
    assert one.default_columns == ["category", "description", "net_amount", "currency"]
    assert one.livemode is False
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.reporting.report_types.retrieve("balance_transaction.summary.1")


def test_default_data_available_end_is_last_utc_midnight() -> None:
    today = dt.datetime.now(dt.UTC).date()
    ended = SandboxAccount.generate(end=today - dt.timedelta(days=10), days=5)
    running = SandboxAccount.generate(end=today + dt.timedelta(days=2), days=5)
    with SandboxServer(ended) as a, SandboxServer(running) as b:
        end_a = client_for(a).v1.reporting.report_types.retrieve("balance.summary.1")
        end_b = client_for(b).v1.reporting.report_types.retrieve("balance.summary.1")
        assert end_a.data_available_end == ended.end  # UTC account: its end is a midnight
        midnight = int(dt.datetime.combine(today, dt.time(0), tzinfo=dt.UTC).timestamp())
        assert end_b.data_available_end == midnight
        b.data_available_end = midnight - 86400
        again = client_for(b).v1.reporting.report_types.retrieve("balance.summary.1")
        assert again.data_available_end == midnight - 86400


def test_run_lifecycle_pending_then_succeeded(fresh: SandboxServer) -> None:
    fresh.report_pending_seconds = 0.3
    client = client_for(fresh)
    begun = time.monotonic()
    run = client.v1.reporting.report_runs.create(
        {
            "report_type": "balance_change_from_activity.summary.1",
            "parameters": {
                "interval_start": fresh.account.start,
                "interval_end": fresh.account.end,
            },
        }
    )
    assert run.status == "pending" and run.result is None and run.id.startswith("frr_")
    assert client.v1.reporting.report_runs.retrieve(run.id).status == "pending"
    while run.status == "pending":
        time.sleep(0.05)
        run = client.v1.reporting.report_runs.retrieve(run.id)
    assert time.monotonic() - begun >= 0.3
    assert run.status == "succeeded" and run.succeeded_at >= run.created
    assert run.result.purpose == "finance_report_run" and run.result.type == "csv"
    assert run.result.url == f"{fresh.url}/v1/files/{run.result.id}/contents"
    assert run.parameters.interval_start == fresh.account.start
    assert fresh.stats.report_runs_created == 1


def test_run_creation_is_idempotent(fresh: SandboxServer) -> None:
    client = client_for(fresh)
    params = {
        "report_type": "balance.summary.1",
        "parameters": {"interval_start": fresh.account.start, "interval_end": fresh.account.end},
    }
    first = client.v1.reporting.report_runs.create(params, {"idempotency_key": "k-1"})
    second = client.v1.reporting.report_runs.create(params, {"idempotency_key": "k-1"})
    other = client.v1.reporting.report_runs.create(params)
    assert first.id == second.id != other.id
    assert fresh.stats.report_runs_created == 2
    changed = {**params, "report_type": "balance_change_from_activity.summary.1"}
    with pytest.raises(stripe.IdempotencyError):
        client.v1.reporting.report_runs.create(changed, {"idempotency_key": "k-1"})


def test_failed_run(fresh: SandboxServer) -> None:
    client = client_for(fresh)
    fresh.fail_next_report_run("An internal error occurred while preparing the report.")
    params = {"interval_start": fresh.account.start, "interval_end": fresh.account.end}
    run = client.v1.reporting.report_runs.create(
        {"report_type": "balance.summary.1", "parameters": params}
    )
    run = client.v1.reporting.report_runs.retrieve(run.id)
    assert run.status == "failed" and run.result is None
    assert run.error == "An internal error occurred while preparing the report."
    assert run_report(client, "balance.summary.1", params).status == "succeeded"


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"report_type": "balance.summary.1", "parameters[interval_start]": "END",
          "parameters[interval_end]": "START"}, "parameters[interval_start]"),
        ({"report_type": "balance.summary.1", "parameters[interval_start]": "START-86400",
          "parameters[interval_end]": "END"}, "parameters[interval_start]"),
        ({"report_type": "balance.summary.1", "parameters[interval_start]": "START",
          "parameters[interval_end]": "END+1"}, "parameters[interval_end]"),
        ({"report_type": "balance_transaction.summary.1", "parameters[interval_start]": "START",
          "parameters[interval_end]": "END"}, "report_type"),
        ({"parameters[interval_start]": "START", "parameters[interval_end]": "END"},
         "report_type"),
        ({"report_type": "balance.summary.1", "parameters[interval_start]": "START"},
         "parameters[interval_end]"),
        ({"report_type": "balance.summary.1", "parameters[interval_start]": "START",
          "parameters[interval_end]": "END", "parameters[timezone]": "Mars/Olympus"},
         "parameters[timezone]"),
        ({"report_type": "balance.summary.1", "parameters[interval_start]": "START",
          "parameters[interval_end]": "END", "parameters[columns][0]": "gross"},
         "parameters[columns]"),
        ({"report_type": "balance.summary.1", "parameters[interval_start]": "START",
          "parameters[interval_end]": "END", "parameters[payout]": "po_1"},
         "parameters[payout]"),
        ({"report_type": "balance.summary.1", "parameters[interval_start]": "START",
          "parameters[interval_end]": "END", "parameters[wat]": "1"}, "parameters[wat]"),
    ],
    ids=["start-after-end", "before-available", "after-available", "unknown-type",
         "no-type", "no-end", "bad-timezone", "bad-column", "param-not-for-type",
         "unknown-param"],
)  # fmt: skip
def test_run_validation(server: SandboxServer, data: dict[str, str], param: str) -> None:
    start, end = server.account.start // 86400 * 86400, server.account.end
    values = {
        k: str(eval(v, {"START": start, "END": end})) if k.startswith("parameters[inter") else v
        for k, v in data.items()
    }
    before = server.stats.report_runs_created
    resp = post(server, "/v1/reporting/report_runs", values)
    body = assert_error(resp, 400, param=param)
    validate_response("POST", "/v1/reporting/report_runs", 400, body)
    assert server.stats.report_runs_created == before


def test_report_runs_list(fresh: SandboxServer) -> None:
    client = client_for(fresh)
    params = {"interval_start": fresh.account.start, "interval_end": fresh.account.end}
    made = [
        client.v1.reporting.report_runs.create(
            {"report_type": "balance.summary.1", "parameters": params}
        ).id
        for _ in range(3)
    ]
    listed = client.v1.reporting.report_runs.list({"limit": 2})
    assert len(listed.data) == 2 and listed.has_more
    every = [r.id for r in client.v1.reporting.report_runs.list({"limit": 2}).auto_paging_iter()]
    assert sorted(every) == sorted(made) and len(every) == 3


def test_file_download_needs_auth(server: SandboxServer, client: stripe.StripeClient) -> None:
    run = run_report(
        client,
        "balance.summary.1",
        {"interval_start": server.account.start, "interval_end": server.account.end},
    )
    url = run.result.url
    assert_error(requests.get(url, timeout=10), 401)
    assert_error(requests.get(url, headers={"Authorization": "Bearer pk_test_x"}, timeout=10), 401)
    ok = requests.get(url, headers=AUTH, timeout=10)
    assert ok.status_code == 200 and ok.headers["Content-Type"] == "text/csv"
    assert int(ok.headers["Content-Length"]) == len(ok.content) == run.result.size
    file = get(server, f"/v1/files/{run.result.id}").json()
    assert file["id"] == run.result.id and file["purpose"] == "finance_report_run"
    assert_error(get(server, "/v1/files/file_missing"), 404)
    assert_error(get(server, "/v1/files/file_missing/contents"), 404)


# ---------------------------------------------------------------------- CSV figures


def expected_activity(txns: list[dict], start: int, end: int) -> dict[tuple[str, str], list]:
    sums: dict[tuple[str, str], list] = {}
    for t in txns:
        if start <= t["created"] < end and t["reporting_category"] not in NON_ACTIVITY:
            cur = t["currency"]
            acc = sums.setdefault(
                (t["reporting_category"], cur), [0, Decimal(0), Decimal(0), Decimal(0)]
            )
            acc[0] += 1
            acc[1] += major(t["amount"], cur)
            acc[2] += major(t["fee"], cur)
            acc[3] += major(t["net"], cur)
    return sums


def test_activity_summary_matches_transactions(
    server: SandboxServer, client: stripe.StripeClient, account: SandboxAccount
) -> None:
    zone = ZoneInfo("America/Los_Angeles")
    start = int(dt.datetime(2026, 10, 1, tzinfo=zone).timestamp())
    end = int(dt.datetime(2026, 11, 1, tzinfo=zone).timestamp()) - 86400  # within availability
    run = run_report(
        client,
        "balance_change_from_activity.summary.1",
        {"interval_start": start, "interval_end": end, "timezone": "America/Los_Angeles"},
    )
    rows = download(run)
    assert list(rows[0]) == ["reporting_category", "currency", "count", "gross", "fee", "net"]
    got = {
        (r["reporting_category"], r["currency"]): [
            int(r["count"]),
            Decimal(r["gross"]),
            Decimal(r["fee"]),
            Decimal(r["net"]),
        ]
        for r in rows
    }
    assert got == expected_activity(account.transactions, start, end)
    assert ("payout", "usd") not in got and ("charge", "jpy") in got and ("charge", "kwd") in got
    for r in rows:
        decimals = r["gross"].split(".")[1] if "." in r["gross"] else ""
        assert len(decimals) == EXPONENT[r["currency"]], r


def test_balance_summary_matches_transactions(
    client: stripe.StripeClient, account: SandboxAccount
) -> None:
    start = account.start + 20 * 86400
    end = account.end - 5 * 86400
    run = run_report(client, "balance.summary.1", {"interval_start": start, "interval_end": end})
    rows = download(run)
    txns = account.transactions
    for cur in ("usd", "eur", "gbp", "jpy", "kwd"):
        mine = {r["category"]: r for r in rows if r["currency"] == cur}
        starting = sum(
            (major(t["net"], cur) for t in txns if t["currency"] == cur and t["created"] < start),
            Decimal(0),
        )
        inside = [t for t in txns if t["currency"] == cur and start <= t["created"] < end]
        activity = sum(
            (major(t["net"], cur) for t in inside if t["reporting_category"] not in NON_ACTIVITY),
            Decimal(0),
        )
        payouts = sum(
            (major(t["net"], cur) for t in inside if t["reporting_category"] == "payout"),
            Decimal(0),
        )
        assert Decimal(mine["starting_balance"]["net_amount"]) == starting
        assert Decimal(mine["activity"]["net_amount"]) == activity
        assert Decimal(mine["payouts"]["net_amount"]) == payouts < 0
        assert Decimal(mine["ending_balance"]["net_amount"]) == starting + activity + payouts
        day = dt.datetime.fromtimestamp(start, dt.UTC).date()
        assert mine["starting_balance"]["description"] == f"Starting balance ({day:%Y-%m-%d})"
    jpy = next(r for r in rows if r["currency"] == "jpy" and r["category"] == "activity")
    kwd = next(r for r in rows if r["currency"] == "kwd" and r["category"] == "activity")
    assert "." not in jpy["net_amount"]
    assert len(kwd["net_amount"].split(".")[1]) == 3


def test_itemized_rows_columns_and_timezone(
    client: stripe.StripeClient, account: SandboxAccount
) -> None:
    start, end = account.start + 86400 * 40, account.start + 86400 * 42
    run = run_report(
        client,
        "balance_change_from_activity.itemized.3",
        {"interval_start": start, "interval_end": end, "timezone": "Asia/Tokyo"},
    )
    rows = download(run)
    expected = [
        t
        for t in account.transactions
        if start <= t["created"] < end and t["reporting_category"] not in NON_ACTIVITY
    ]
    assert sorted(r["balance_transaction_id"] for r in rows) == sorted(t["id"] for t in expected)
    for r in rows:
        t = byid(expected)[r["balance_transaction_id"]]
        cur = t["currency"]
        assert Decimal(r["gross"]) == major(t["amount"], cur)
        assert Decimal(r["net"]) == major(t["net"], cur)
        utc = dt.datetime.fromtimestamp(t["created"], dt.UTC)
        assert r["created_utc"] == f"{utc:%Y-%m-%d %H:%M:%S}"
        assert r["created"] == f"{utc.astimezone(ZoneInfo('Asia/Tokyo')):%Y-%m-%d %H:%M:%S}"
    chosen = run_report(
        client,
        "balance_change_from_activity.itemized.3",
        {
            "interval_start": start,
            "interval_end": end,
            "currency": "jpy",
            "columns": ["balance_transaction_id", "net"],
        },
    )
    picked = download(chosen)
    assert picked and all(list(r) == ["balance_transaction_id", "net"] for r in picked)
    assert all(byid(expected)[r["balance_transaction_id"]]["currency"] == "jpy" for r in picked)


def test_report_interval_is_half_open(fresh: SandboxServer) -> None:
    acct = fresh.account
    start, end = acct.start + 86400, acct.start + 2 * 86400
    at_start = acct.add_transaction(
        created=start, amount=70000, currency="usd", reporting_category="charge"
    )
    at_end = acct.add_transaction(
        created=end, amount=90000, currency="usd", reporting_category="charge"
    )
    client = client_for(fresh)
    params = {"interval_start": start, "interval_end": end}
    itemized = download(run_report(client, "balance_change_from_activity.itemized.3", params))
    ids = {r["balance_transaction_id"] for r in itemized}
    assert at_start["id"] in ids and at_end["id"] not in ids
    summary = download(run_report(client, "balance.summary.1", {**params, "currency": "usd"}))
    expected = sum(
        (major(t["net"], "usd") for t in acct.transactions
         if t["currency"] == "usd" and start <= t["created"] < end
         and t["reporting_category"] not in NON_ACTIVITY),
        Decimal(0),
    )  # fmt: skip
    activity = next(r for r in summary if r["category"] == "activity")
    assert Decimal(activity["net_amount"]) == expected
    assert {r["currency"] for r in summary} == {"usd"}


def test_large_itemized_csv_streams() -> None:
    acct = SandboxAccount.bulk(start=dt.date(2026, 1, 1), end=dt.date(2026, 2, 1), count=8000)
    with SandboxServer(acct, data_available_end=acct.end) as srv:
        run = run_report(
            client_for(srv),
            "balance_change_from_activity.itemized.3",
            {"interval_start": acct.start, "interval_end": acct.end},
        )
        with requests.get(run.result.url, headers=AUTH, stream=True, timeout=10) as resp:
            body = b"".join(resp.iter_content(32 * 1024))
        assert len(body) == run.result.size > 64 * 1024
        rows = list(csv.DictReader(io.StringIO(body.decode())))
        assert len(rows) == 8000
        assert sum(Decimal(r["net"]) for r in rows) == sum(
            major(t["net"], "usd") for t in acct.transactions
        )


# ---------------------------------------------------------------------- knobs and faults


def test_rate_limit_answers_429(fresh: SandboxServer) -> None:
    fresh.rate_limit = 5
    session = requests.Session()
    statuses = [
        session.get(fresh.url + "/v1/balance_transactions", headers=AUTH, timeout=10).status_code
        for _ in range(12)
    ]
    assert statuses[:5] == [200] * 5 and 429 in statuses[5:]
    resp = session.get(fresh.url + "/v1/balance_transactions", headers=AUTH, timeout=10)
    body = assert_error(resp, 429)
    assert body["error"]["code"] == "rate_limit"
    validate_response("GET", "/v1/balance_transactions", 429, body)
    assert session.get(fresh.url + "/v1/account", headers=AUTH, timeout=10).status_code == 200
    with pytest.raises(stripe.RateLimitError):
        client_for(fresh).v1.balance_transactions.list()
    stats = fresh.stats
    assert stats.rate_limited == statuses.count(429) + 2  # + the two 429s that followed
    assert stats.requests[("GET", "/v1/balance_transactions")] == 14
    time.sleep(1.05)
    assert (
        session.get(fresh.url + "/v1/balance_transactions", headers=AUTH, timeout=10).status_code
        == 200
    )
    fresh.rate_limit = None
    fresh.reset_stats()
    assert fresh.stats.requests == collections.Counter() and fresh.stats.rate_limited == 0


def test_files_rate_limit(fresh: SandboxServer) -> None:
    client = client_for(fresh)
    run = run_report(
        client,
        "balance.summary.1",
        {"interval_start": fresh.account.start, "interval_end": fresh.account.end},
    )
    fresh.files_rate_limit = 2
    codes = [requests.get(run.result.url, headers=AUTH, timeout=10).status_code for _ in range(4)]
    assert codes == [200, 200, 429, 429]
    assert get(fresh, "/v1/balance_transactions").status_code == 200  # other routes unaffected
    times = [t for t, route in fresh.stats.request_times if route == "/v1/files/{file}/contents"]
    assert len(times) == 4 and times == sorted(times)


def test_latency(fresh: SandboxServer) -> None:
    fresh.latency = 0.2
    begun = time.monotonic()
    assert get(fresh, "/v1/account").status_code == 200
    assert time.monotonic() - begun >= 0.2
    fresh.latency = 0.0


def test_inject_500_then_recovers(fresh: SandboxServer) -> None:
    client = client_for(fresh)
    fresh.inject("/v1/balance_transactions", status=500, times=2)
    for _ in range(2):
        with pytest.raises(stripe.APIError):
            client.v1.balance_transactions.list()
    assert client.v1.balance_transactions.list().object == "list"
    retrying = stripe.StripeClient(KEY, base_addresses={"api": fresh.url}, max_network_retries=1)
    fresh.inject("/v1/balance_transactions", status=503)
    assert retrying.v1.balance_transactions.list().object == "list"  # SDK retried the 503


def test_inject_reset_and_malformed_body(fresh: SandboxServer) -> None:
    client = client_for(fresh)
    fresh.inject("/v1/reporting", reset=True)
    with pytest.raises(stripe.APIConnectionError):
        client.v1.reporting.report_types.list()
    fresh.inject("/v1/reporting/report_types", status=200, body=b"{not json")
    with pytest.raises(stripe.APIError):
        client.v1.reporting.report_types.list()
    assert len(client.v1.reporting.report_types.list().data) == len(REPORT_TYPES)


def test_inject_429_with_retry_after_and_delay(fresh: SandboxServer) -> None:
    fresh.inject("/v1/account", status=429, headers={"Retry-After": "2"})
    resp = get(fresh, "/v1/account")
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "2"
    assert resp.json()["error"]["code"] == "rate_limit"
    fresh.inject("/v1/account", delay=0.5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        get(fresh, "/v1/account", timeout=0.2)
    fresh.inject("/v1/account", status=200, delay=0.1)
    assert get(fresh, "/v1/account").status_code == 200  # slowed down, then served


def test_stop_closes_the_port() -> None:
    srv = SandboxServer(SandboxAccount.generate(end=END, days=2)).start()
    url = srv.url
    session = requests.Session()
    assert session.get(url + "/v1/account", headers=AUTH, timeout=5).status_code == 200
    srv.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(url + "/v1/account", headers=AUTH, timeout=5)


# ---------------------------------------------------------------------- the contract


def test_every_endpoint_answers_per_the_spec(
    server: SandboxServer, client: stripe.StripeClient, account: SandboxAccount
) -> None:
    run = run_report(
        client, "balance.summary.1", {"interval_start": account.start, "interval_end": account.end}
    )
    txn = account.transactions[0]["id"]
    samples = [
        ("GET", "/v1/account", "/v1/account", {}),
        ("GET", "/v1/balance_transactions", "/v1/balance_transactions", {"limit": 100}),
        (
            "GET",
            "/v1/balance_transactions",
            "/v1/balance_transactions",
            {"created[gte]": account.start, "type": "refund"},
        ),
        ("GET", "/v1/balance_transactions/{id}", f"/v1/balance_transactions/{txn}", {}),
        ("GET", "/v1/balance_transactions/{id}", "/v1/balance_transactions/txn_none", {}),
        ("GET", "/v1/reporting/report_types", "/v1/reporting/report_types", {}),
        (
            "GET",
            "/v1/reporting/report_types/{report_type}",
            "/v1/reporting/report_types/balance_change_from_activity.itemized.3",
            {},
        ),
        ("GET", "/v1/reporting/report_types/{report_type}", "/v1/reporting/report_types/x", {}),
        ("GET", "/v1/reporting/report_runs", "/v1/reporting/report_runs", {"limit": 3}),
        (
            "GET",
            "/v1/reporting/report_runs/{report_run}",
            f"/v1/reporting/report_runs/{run.id}",
            {},
        ),
        ("GET", "/v1/reporting/report_runs/{report_run}", "/v1/reporting/report_runs/frr_x", {}),
        ("GET", "/v1/files/{file}", f"/v1/files/{run.result.id}", {}),
        ("GET", "/v1/files/{file}", "/v1/files/file_x", {}),
    ]
    statuses = set()
    for method, template, path, params in samples:
        validate_query(method, template, params)
        resp = get(server, path, params=params)
        statuses.add(resp.status_code)
        validate_response(method, template, resp.status_code, resp.json())
    assert statuses == {200, 404}
    form = {
        "report_type": "balance_change_from_activity.summary.1",
        "parameters[interval_start]": str(account.start),
        "parameters[interval_end]": str(account.end),
        "parameters[timezone]": "Europe/London",
        "parameters[currency]": "eur",
        "parameters[columns][0]": "currency",
        "parameters[columns][1]": "net",
    }
    validate_query("POST", "/v1/reporting/report_runs", form)
    created = post(server, "/v1/reporting/report_runs", form)
    validate_response("POST", "/v1/reporting/report_runs", 200, created.json())
    assert created.json()["parameters"]["columns"] == ["currency", "net"]


def test_validator_rejects_bad_documents(account: SandboxAccount) -> None:
    txn = account.transactions[0]
    no_net = {k: v for k, v in txn.items() if k != "net"}
    with pytest.raises(AssertionError, match="missing required field 'net'"):
        validate_response("GET", "/v1/balance_transactions/{id}", 200, no_net)
    with pytest.raises(AssertionError, match=r"\$\.data\[0\]\.amount"):
        validate_response(
            "GET",
            "/v1/balance_transactions",
            200,
            {
                "object": "list",
                "has_more": False,
                "url": "/v1/balance_transactions",
                "data": [{**txn, "amount": "12.00"}],
            },
        )
    with pytest.raises(AssertionError, match="has_more"):
        validate_response(
            "GET",
            "/v1/reporting/report_runs",
            200,
            {"object": "list", "data": [], "url": "/v1/reporting/report_runs"},
        )
    with pytest.raises(AssertionError, match="not nullable"):
        validate("balance_transaction", {**txn, "fee_details": None})
    with pytest.raises(AssertionError):
        validate_response("GET", "/v1/account", 401, {"error": {"message": "no type"}})
    with pytest.raises(AssertionError, match="unknown parameter"):
        validate_query("GET", "/v1/balance_transactions", {"wat": "1"})
    with pytest.raises(AssertionError, match=r"created.*matches none of anyOf"):
        validate_query("GET", "/v1/balance_transactions", {"created[gte]": "soon"})
    with pytest.raises(AssertionError, match="report_type"):
        validate_query("POST", "/v1/reporting/report_runs", {"parameters[interval_end]": "1"})
