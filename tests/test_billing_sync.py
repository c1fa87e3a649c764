"""Subscriptions and invoices into the ledger (`daily`, `backfill`), end to end: the real CLI,
the stripe SDK over HTTP, the sandbox's Billing account on 127.0.0.1.

What is expected comes from ``SandboxBilling`` (what the server serves); what revbot stored is
read back through ``bot.billing_store``, the metrics' own way in. Request counts come from the
sandbox's stats, so a refresh that costs more than its rule says fails here.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from bot import billing_store
from bot.jobs.billing import OVERLAP
from bot.ledger import SCHEMA_VERSION, Ledger
from bot.sandbox import BillingApi, SandboxAccount, SandboxBilling, SandboxServer
from tests.conftest import REPO, TEST_KEY, Cli, days_ago, today_utc

DAY = days_ago(2)
RESTRICTED = "rk_test_" + "B1llingPermKey000042"
SUBS = ("GET", "/v1/subscriptions")
SUB = ("GET", "/v1/subscriptions/{subscription_exposed_id}")
INVOICES = ("GET", "/v1/invoices")
INVOICE = ("GET", "/v1/invoices/{invoice}")
LINES = ("GET", "/v1/invoices/{invoice}/lines")
BILLING_ROUTES = (SUBS, SUB, INVOICES, INVOICE, LINES)
ENDED = {"canceled", "incomplete_expired"}


def _data(cli: Cli) -> Path:
    return Path(cli.env["DATA_DIR"])


def _ledger(cli: Cli) -> Ledger:
    return Ledger.open(_data(cli) / "state.sqlite", read_only=True)


def _stored(cli: Cli) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], list[Any]]]]:
    ledger = _ledger(cli)
    try:
        return billing_store.billing_objects(ledger)
    finally:
        ledger.close()


def _billing_requests(server: SandboxServer) -> dict[tuple[str, str], int]:
    requests = server.stats.requests
    return {route: requests[route] for route in BILLING_ROUTES if requests[route]}


def _served_invoice(billing: SandboxBilling, invoice_id: str) -> dict[str, Any]:
    """An invoice as the sandbox serves it: its first ten lines embedded."""
    lines = billing.lines(invoice_id) or []
    found = billing.invoice(invoice_id)
    assert found is not None
    return {
        **found,
        "lines": {"object": "list", "data": lines[:10], "has_more": len(lines) > 10,
                  "url": f"/v1/invoices/{invoice_id}/lines"},
    }  # fmt: skip


def _json_run(cli: Cli, *args: str, code: int = 0, **kw: Any) -> dict[str, Any]:
    run = cli(*args, "--json", **kw)
    assert run.exit_code == code, run.stderr
    data: dict[str, Any] = json.loads(run.stdout)
    return data


def _covered(cli: Cli, resource: str) -> list[tuple[int, int]]:
    ledger = _ledger(cli)
    try:
        return sorted(ledger.completed_slices(billing_store.slice_job(resource)))
    finally:
        ledger.close()


def _said(stderr: str) -> list[str]:
    """The lines on stderr, but the warning that the closed month's report is not ready yet
    (the sandbox's reports are held back: these runs are about billing)."""
    return [ln for ln in stderr.strip().splitlines() if "monthly report for" not in ln]


def _in(ranges: list[tuple[int, int]], t: int) -> bool:
    return any(lo <= t < hi for lo, hi in ranges)


def _midnight(d: date) -> int:
    return int(datetime.combine(d, datetime.min.time(), tzinfo=UTC).timestamp())


@pytest.fixture
def own_billing() -> SandboxBilling:
    """A Billing account this test may change (the session's one is shared, and read-only)."""
    return SandboxBilling.generate(end=today_utc(), seed=11, tz="UTC")


@pytest.fixture
def own_server(
    sandbox_account: SandboxAccount, own_billing: SandboxBilling
) -> Iterator[SandboxServer]:
    with SandboxServer(sandbox_account, billing=BillingApi(own_billing)) as server:
        server.data_available_end = 0  # the month's report waits: the runs are about billing
        yield server


# -- 1. daily stores everything, once -----------------------------------------------------------


def test_daily_stores_every_subscription_and_invoice_with_all_its_lines(
    cli: Cli, sandbox: SandboxServer, sandbox_billing: SandboxBilling
) -> None:
    sandbox.data_available_end = 0
    out = _json_run(cli, "daily", "--date", DAY.isoformat())
    subs, invoices = _stored(cli)
    # Every object, as Stripe sent it.
    assert sorted(s["id"] for s in subs) == sorted(s["id"] for s in sandbox_billing.subscriptions)
    assert {s["id"]: s for s in subs} == {s["id"]: s for s in sandbox_billing.subscriptions}
    assert sorted(i["id"] for i, _ in invoices) == sorted(i["id"] for i in sandbox_billing.invoices)
    for invoice, lines in invoices:
        assert invoice == _served_invoice(sandbox_billing, invoice["id"])
        assert lines == sandbox_billing.lines(invoice["id"]), invoice["id"]
    long_ones = [
        i for i in sandbox_billing.invoices if len(sandbox_billing.lines(i["id"]) or []) > 10
    ]
    assert long_ones, "the account must have invoices whose lines need a second request"
    # What that cost: one page per 100 objects, one lines request per long invoice, no more.
    pages = math.ceil(len(sandbox_billing.invoices) / 100)
    assert _billing_requests(sandbox) == {
        SUBS: math.ceil(len(sandbox_billing.subscriptions) / 100),
        INVOICES: pages,
        LINES: len(long_ones),
    }
    billing = out["billing"]
    assert billing["new"] == len(subs) + len(invoices) and billing["changed"] == 0
    assert billing["invoice_lines_read"] == sum(
        len(sandbox_billing.lines(i["id"]) or []) - 10 for i in long_ones
    )
    # The P&L is there too, and the metrics' consumer has a version to compare with.
    ledger = _ledger(cli)
    try:
        assert DAY in ledger.synced_days("UTC")
        assert billing_store.billing_version(ledger) == billing["new"]
    finally:
        ledger.close()
    # Every parsed by the metrics' own parser (what the store is for).
    from bot.metrics_input import parse_invoice, parse_subscription

    for sub in subs:
        parse_subscription(sub)
    for invoice, lines in invoices:
        parse_invoice(invoice, lines)


def test_a_second_run_adds_nothing_and_rereads_only_what_can_change(
    cli: Cli, sandbox: SandboxServer, sandbox_billing: SandboxBilling
) -> None:
    sandbox.data_available_end = 0
    _json_run(cli, "daily", "--date", DAY.isoformat())
    ledger = _ledger(cli)
    version = billing_store.billing_version(ledger)
    ledger.close()
    # Listed up to a day before the run: the next run lists that day again (the overlap).
    [(start, horizon)] = _covered(cli, "invoices")
    assert start == 0 and abs(horizon - (time.time() - OVERLAP)) < 120
    sandbox.reset_stats()

    out = _json_run(cli, "daily", "--date", DAY.isoformat())["billing"]

    live = {s["id"] for s in sandbox_billing.subscriptions if s["status"] not in ENDED}
    recent_subs = {s["id"] for s in sandbox_billing.subscriptions if s["created"] >= horizon}
    changing = {i["id"] for i in sandbox_billing.invoices if i["status"] in ("draft", "open")}
    recent_invoices = {i["id"] for i in sandbox_billing.invoices if i["created"] >= horizon}
    assert live and changing
    assert (out["new"], out["changed"], out["removed"]) == (0, 0, 0)
    assert out["subscriptions_read"] == len(live | recent_subs)
    assert out["invoices_read"] == len(changing | recent_invoices)
    assert out["invoice_lines_read"] == 0
    statuses = {i["status"] for i in sandbox_billing.invoices if i["id"] in changing}
    # New ones since the last run (one list each), the live subscriptions (one list), the
    # draft and the open invoices (one list per status): nothing by id, no lines again.
    assert _billing_requests(sandbox) == {SUBS: 1 + 1, INVOICES: 1 + len(statuses)}
    assert out["requests"] == 2 + 1 + len(statuses)
    ledger = _ledger(cli)
    try:
        assert not billing_store.billing_changed_since(ledger, version)
    finally:
        ledger.close()


def test_what_changed_at_stripe_is_found_for_a_request_each(
    cli: Cli, own_server: SandboxServer, own_billing: SandboxBilling
) -> None:
    env = {"STRIPE_API_BASE": own_server.url}
    assert cli("daily", "--date", DAY.isoformat(), env=env).exit_code == 0
    ledger = _ledger(cli)
    version = billing_store.billing_version(ledger)
    ledger.close()
    # At Stripe meanwhile: a live subscription is canceled, the open invoice is paid, a draft
    # is finalized (open), another draft is deleted. None of them is new: only the refresh
    # can find them.
    sub = next(s for s in own_billing.subscriptions if s["status"] == "active")
    sub.update(
        status="canceled", ended_at=sub["current_period_end"], canceled_at=sub["created"] + 1
    )
    [paid] = [i for i in own_billing.invoices if i["status"] == "open"]
    paid.update(status="paid", amount_paid=paid["amount_due"], amount_remaining=0, paid=True)
    drafts = [i for i in own_billing.invoices if i["status"] == "draft"]
    finalized, deleted = drafts[0], drafts[1]
    finalized.update(status="open")
    own_billing.invoices.remove(deleted)
    del own_billing._invoice_by_id[deleted["id"]]  # Stripe deletes a draft for good
    own_server.reset_stats()

    out = _json_run(cli, "daily", "--date", DAY.isoformat(), env=env)["billing"]

    subs, invoices = _stored(cli)
    by_id = {i["id"]: i for i, _ in invoices}
    assert {s["id"]: s for s in subs}[sub["id"]]["status"] == "canceled"
    assert by_id[paid["id"]]["status"] == "paid" and by_id[finalized["id"]]["status"] == "open"
    assert deleted["id"] not in by_id
    assert (out["changed"], out["removed"]) == (3, 1)
    # Each one that left its list was read by id, once; the deleted draft answered 404.
    requests = _billing_requests(own_server)
    assert requests[SUB] == 1 and requests[INVOICE] == 3
    ledger = _ledger(cli)
    try:
        assert billing_store.billing_changed_since(ledger, version)
        assert billing_store.billing_version(ledger) == version + 4
    finally:
        ledger.close()


def test_an_account_without_billing_costs_two_requests_a_day(
    cli: Cli, sandbox_account: SandboxAccount
) -> None:
    empty = SandboxBilling.empty(end=today_utc())
    with SandboxServer(sandbox_account, billing=BillingApi(empty)) as server:
        server.data_available_end = 0
        env = {"STRIPE_API_BASE": server.url}
        for _ in range(2):
            server.reset_stats()
            run = cli("daily", "--date", DAY.isoformat(), env=env)
            assert run.exit_code == 0, run.stderr
            assert _billing_requests(server) == {SUBS: 1, INVOICES: 1}
    assert _stored(cli) == ([], [])
    assert "billing: 0 subscriptions and 0 invoices read" in run.stdout


# -- 2. backfill, and a run that stops half-way --------------------------------------------------


def test_backfill_brings_every_subscription_and_invoice_not_only_its_range(
    cli: Cli, sandbox: SandboxServer, sandbox_billing: SandboxBilling
) -> None:
    """A subscription that began before the range bills in it: the metrics of the range need
    every subscription and invoice, so backfill lists them all (as the first daily would)."""
    since, until = days_ago(120), days_ago(30)
    out = _json_run(cli, "backfill", "--since", since.isoformat(), "--until", until.isoformat())
    subs, invoices = _stored(cli)
    assert {s["id"] for s in subs} == {s["id"] for s in sandbox_billing.subscriptions}
    assert {i["id"] for i, _ in invoices} == {i["id"] for i in sandbox_billing.invoices}
    for invoice, lines in invoices:
        assert lines == sandbox_billing.lines(invoice["id"])
    assert out["billing"]["new"] == len(sandbox_billing.subscriptions) + len(
        sandbox_billing.invoices
    )
    # Again: everything is listed already; only what can still change is read again.
    again = _json_run(cli, "backfill", "--since", since.isoformat(), "--until", until.isoformat())
    assert again["billing"]["new"] == 0
    changeable = sum(1 for i in sandbox_billing.invoices if i["status"] in ("draft", "open"))
    assert again["billing"]["invoices_read"] <= changeable + 100  # the last day, listed again
    sandbox.data_available_end = 0
    out = _json_run(cli, "daily", "--date", DAY.isoformat())["billing"]
    assert out["new"] == 0


def test_a_failure_half_way_then_a_rerun_reads_each_object_once(
    cli: Cli, own_server: SandboxServer, own_billing: SandboxBilling
) -> None:
    env = {"STRIPE_API_BASE": own_server.url}
    order = own_billing.invoices  # the list's order: newest first
    # An invoice on the third page whose lines need a request: Stripe fails it for a while.
    victim = next(i for i in order[200:] if len(own_billing.lines(i["id"]) or []) > 10)
    own_server.inject(f"/v1/invoices/{victim['id']}/lines", status=503, times=20)
    run = cli("daily", "--date", DAY.isoformat(), env=env)
    # Temporary, and said in one line; the day's P&L was stored before.
    assert run.exit_code == 75, run.stderr
    [line] = _said(run.stderr)
    assert "503" in line and victim["id"] in line, line
    assert "gross_revenue" in run.stdout
    _, invoices = _stored(cli)
    stored = {i["id"] for i, _ in invoices}
    # Whole pages: the two before the victim's page, none of its page.
    assert stored == {i["id"] for i in order[:200]}
    covered = _covered(cli, "invoices")
    ledger = _ledger(cli)
    assert DAY in ledger.synced_days("UTC")
    ledger.close()

    from tests.conftest import drain_faults

    drain_faults(own_server, f"/v1/invoices/{victim['id']}/lines")
    own_server.reset_stats()
    out = _json_run(cli, "daily", "--date", DAY.isoformat(), env=env)["billing"]
    _, invoices = _stored(cli)
    assert sorted(i["id"] for i, _ in invoices) == sorted(i["id"] for i in order)
    # Read again: only what the first run had not listed (plus the draft and open ones that
    # the refresh reads whatever happens).
    unlisted = [i for i in order if not _in(covered, i["created"])]
    changing = [i for i in order if i["status"] in ("draft", "open") and i not in unlisted]
    assert out["invoices_read"] == len(unlisted) + len(changing)
    _only_the_overlap(unlisted, stored, covered, order[:200])
    long_unlisted = [i for i in unlisted if len(own_billing.lines(i["id"]) or []) > 10]
    assert _billing_requests(own_server)[LINES] == len(long_unlisted)


def _only_the_overlap(
    unlisted: list[dict[str, Any]],
    stored: set[str],
    covered: list[tuple[int, int]],
    committed: list[dict[str, Any]],
) -> None:
    """What a rerun reads again of what was stored: the last day before the first run (never
    counted as listed) and the oldest second of the last page committed (more objects of that
    second could have followed), nothing else."""
    oldest = min(i["created"] for i in committed)
    top = max(hi for _, hi in covered)
    again = [i for i in unlisted if i["id"] in stored]
    assert all(i["created"] >= top or i["created"] == oldest for i in again), again


def _wait_for(predicate: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_killed_backfill_goes_on_where_it_stopped(
    cli: Cli, own_server: SandboxServer, own_billing: SandboxBilling
) -> None:
    since = datetime.fromtimestamp(own_billing.start, UTC).date()
    order = own_billing.invoices
    long_ones = [i for i in order if len(own_billing.lines(i["id"]) or []) > 10]
    # Held on the lines of an invoice of the third page, the process is killed.
    victim = next(i for i in long_ones if order.index(i) >= 200)
    before_victim = long_ones.index(victim)
    own_server.inject(f"/v1/invoices/{victim['id']}/lines", status=200, delay=60)
    env = {**os.environ, "STRIPE_SECRET_KEY": TEST_KEY, "STRIPE_API_BASE": own_server.url,
           "DATA_DIR": cli.env["DATA_DIR"], "REPORT_TIMEZONE": "UTC"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "backfill", "--since", since.isoformat()],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: own_server.stats.requests[LINES] > before_victim)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    _, invoices = _stored(cli)
    killed_with = {i["id"] for i, _ in invoices}
    assert killed_with == {i["id"] for i in order[:200]}
    covered = _covered(cli, "invoices")

    # (The delayed request was the killed run's: nothing is left injected.)
    own_server.reset_stats()
    out = _json_run(cli, "backfill", "--since", since.isoformat())["billing"]
    _, invoices = _stored(cli)
    assert sorted(i["id"] for i, _ in invoices) == sorted(i["id"] for i in order)
    # Read again: what the killed run had not listed, and what can still change (backfill
    # refreshes the draft and open invoices, as daily does), no more.
    unlisted = [i for i in order if not _in(covered, i["created"])]
    changeable = [i for i in order if i["status"] in ("draft", "open")]
    assert len(unlisted) <= out["invoices_read"] <= len(unlisted) + len(changeable)
    _only_the_overlap(unlisted, killed_with, covered, order[:200])
    # Two stretches at most (the older part, and the last day before the kill: the overlap),
    # and a list per status that can still change.
    assert own_server.stats.requests[INVOICES] <= math.ceil(len(unlisted) / 100) + 1 + 2


# -- 3. what is refused -------------------------------------------------------------------------


def _first_long(billing: SandboxBilling) -> dict[str, Any]:
    return next(i for i in billing.invoices if len(billing.lines(i["id"]) or []) > 10)


# (The sandbox filters its lists by status and created: a value it would filter out is never
# sent, so those two are spoiled where its filters do not look.)
MALFORMED = [
    ("subscription customer", lambda b: b.subscriptions[3], "customer", 42, "customer 42"),
    ("subscription period", lambda b: b.subscriptions[3], "current_period_end", -5,
     "current_period_end -5"),
    ("invoice status", lambda b: b.invoices[150], "status", "Paid!", "status 'Paid!'"),
    ("invoice currency", lambda b: b.invoices[150], "currency", "usd' or 1=1", "currency"),
    ("invoice amount", lambda b: b.invoices[150], "amount_due", "100", "amount_due '100'"),
    ("line amount", lambda b: (b.lines(_first_long(b)["id"]) or [])[11], "amount", 1.5,
     "amount 1.5"),
    ("invoice id", lambda b: b.invoices[150], "id", "in_1'; DROP TABLE x", "id"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("obj", "field", "value", "named"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_a_malformed_object_stops_the_run_with_one_line_and_stores_nothing_of_it(
    cli: Cli,
    own_server: SandboxServer,
    own_billing: SandboxBilling,
    obj: Any,
    field: str,
    value: Any,
    named: str,
) -> None:
    target = obj(own_billing)
    is_line = "period" in target
    is_sub = target.get("object") == "subscription"
    good = target[field]
    old_id = target["id"]
    target[field] = value
    if field == "id":
        own_billing._invoice_by_id[value] = target
        own_billing._lines[value] = own_billing.lines(old_id)
    env = {"STRIPE_API_BASE": own_server.url}
    run = cli("daily", "--date", DAY.isoformat(), env=env)
    assert run.exit_code == 1, run.stderr
    [line] = _said(run.stderr)
    assert named in line and "nothing from that answer was stored" in line, line
    subs, invoices = _stored(cli)
    stored = {i["id"] for i, _ in invoices}
    if is_sub:
        assert subs == [] and invoices == []
    else:
        assert len(subs) == len(own_billing.subscriptions)
        where = _first_long(own_billing) if is_line else target
        page = own_billing.invoices.index(where) // 100
        assert stored == {i["id"] for i in own_billing.invoices[: page * 100]}
    ledger = _ledger(cli)
    try:
        assert DAY in ledger.synced_days("UTC")  # the P&L came first
    finally:
        ledger.close()
    # Not wedged: once the server sends what Stripe would, the next run stores everything.
    target[field] = good
    run = cli("daily", "--date", DAY.isoformat(), env=env)
    assert run.exit_code == 0, run.stderr
    subs, invoices = _stored(cli)
    assert len(subs) == len(own_billing.subscriptions)
    assert len(invoices) == len(own_billing.invoices)


def test_a_key_without_billing_permissions_says_so_once_and_keeps_the_pnl(
    cli: Cli, sandbox: SandboxServer, sandbox_billing: SandboxBilling
) -> None:
    sandbox.data_available_end = 0
    assert sandbox.billing is not None
    sandbox.billing.restricted_key_lacks = frozenset({"subscriptions"})
    env = {"STRIPE_SECRET_KEY": RESTRICTED}
    run = cli("daily", "--date", DAY.isoformat(), env=env)
    assert run.exit_code == 0, run.stderr
    [warning] = _said(run.stderr)
    assert warning.startswith("WARNING") and "'Subscriptions: read'" in warning, warning
    assert "not readable: subscriptions" in run.stdout and "gross_revenue" in run.stdout
    subs, invoices = _stored(cli)
    assert subs == [] and len(invoices) == len(sandbox_billing.invoices)
    ledger = _ledger(cli)
    assert DAY in ledger.synced_days("UTC")
    ledger.close()
    # The next run: not said again, and the refused list costs one request.
    sandbox.reset_stats()
    run = cli("daily", "--date", DAY.isoformat(), env=env)
    assert run.exit_code == 0 and _said(run.stderr) == [], run.stderr
    assert sandbox.stats.requests[SUBS] == 1
    # status and doctor say which permission to add.
    status = cli("status")
    assert "subscriptions not read" in status.stdout and "'Subscriptions: read'" in status.stdout
    report = json.loads(cli("status", "--json").stdout)
    assert set(report["billing"]["unavailable"]) == {"subscriptions"}
    doctor = cli("doctor", env=env)
    [check] = [ln for ln in doctor.stdout.splitlines() if "] Stripe subscriptions:" in ln]
    assert check.startswith("[warn]") and "'Subscriptions: read'" in check, check
    [check] = [ln for ln in doctor.stdout.splitlines() if "] Stripe invoices:" in ln]
    assert check.startswith("[ok"), check
    assert doctor.exit_code == 0, doctor.stdout + doctor.stderr
    # Both missing: both named.
    sandbox.billing.restricted_key_lacks = frozenset({"subscriptions", "invoices"})
    run = cli("daily", "--date", DAY.isoformat(), env=env)
    assert run.exit_code == 0, run.stderr
    [warning] = _said(run.stderr)
    assert "'Invoices: read'" in warning
    doctor = cli("doctor", env=env)
    assert "'Invoices: read'" in doctor.stdout and doctor.exit_code == 0
    # Granted: the next run syncs them, and the note is gone.
    sandbox.billing.restricted_key_lacks = frozenset()
    run = cli("daily", "--date", DAY.isoformat(), env=env)
    assert run.exit_code == 0 and _said(run.stderr) == [], run.stderr
    subs, _ = _stored(cli)
    assert len(subs) == len(sandbox_billing.subscriptions)
    assert "not read" not in cli("status").stdout
    report = json.loads(cli("status", "--json").stdout)
    assert report["billing"]["unavailable"] == {}
    assert report["billing"]["subscriptions"] == len(sandbox_billing.subscriptions)
    doctor = cli("doctor", env=env)
    assert "[ok  ] Stripe subscriptions" in doctor.stdout


def test_a_server_without_billing_endpoints_is_said_once(
    cli: Cli, sandbox_account: SandboxAccount
) -> None:
    with SandboxServer(sandbox_account) as plain:
        plain.data_available_end = 0
        env = {"STRIPE_API_BASE": plain.url}
        run = cli("daily", "--date", DAY.isoformat(), env=env)
        assert run.exit_code == 0, run.stderr
        assert len(_said(run.stderr)) == 2 and "STRIPE_API_BASE" in run.stderr
        run = cli("daily", "--date", DAY.isoformat(), env=env)
        assert run.exit_code == 0 and _said(run.stderr) == [], run.stderr


# -- 4. the ledger's schema ---------------------------------------------------------------------


def _as_schema_2(path: Path) -> None:
    """What revbot before subscriptions and invoices wrote: schema 2 (schema 3 is schema 2 and
    the billing tables), with no trace of a billing sync."""
    with sqlite3.connect(path) as conn:
        for table in ("billing_subscriptions", "billing_invoices", "billing_invoice_lines"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DELETE FROM meta WHERE key LIKE 'billing%'")
        conn.execute("DELETE FROM slices WHERE job LIKE 'billing:%'")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


def test_a_ledger_of_the_previous_schema_is_upgraded_when_opened(
    cli: Cli, sandbox: SandboxServer, sandbox_billing: SandboxBilling
) -> None:
    sandbox.data_available_end = 0
    assert cli("daily", "--date", DAY.isoformat()).exit_code == 0
    path = _data(cli) / "state.sqlite"
    _as_schema_2(path)
    # Read-only (a dry run) leaves it as it is, and sees an empty store rather than an error.
    ledger = Ledger.open(path, read_only=True)
    assert billing_store.billing_objects(ledger) == ([], [])
    assert billing_store.changeable(ledger, "subscriptions") == []
    ledger.close()
    run = cli("daily", "--date", DAY.isoformat(), "--dry-run")
    assert run.exit_code == 0, run.stderr
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            "2",
        )
    # Opened for writing: upgraded, with what it held, and the billing synced from scratch.
    run = cli("daily", "--date", DAY.isoformat())
    assert run.exit_code == 0, run.stderr
    ledger = _ledger(cli)
    try:
        assert ledger.get_meta("schema_version") == str(SCHEMA_VERSION) == "4"
        assert DAY in ledger.synced_days("UTC") and ledger.transaction_count() > 0
        subs, invoices = billing_store.billing_objects(ledger)
        assert len(subs) == len(sandbox_billing.subscriptions)
        assert len(invoices) == len(sandbox_billing.invoices)
    finally:
        ledger.close()
    # An older revbot refuses the upgraded ledger rather than write into what it cannot read.
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    run = cli("status")
    assert run.exit_code == 1 and "newer revbot" in run.stderr


# -- 5. the sandbox the CLI serves --------------------------------------------------------------


def test_sandbox_serve_and_demo_serve_billing(cli: Cli, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "sandbox", "serve", "--port", "0"],
        cwd=cli.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "subscriptions" in first and "invoices" in first, first
        export = proc.stdout.readline().strip()
        env = dict(pair.split("=", 1) for pair in shlex.split(export)[1:])
        run = cli("daily", "--date", DAY.isoformat(), env=env)
        assert run.exit_code == 0, run.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    subs, invoices = _stored(cli)
    assert subs and invoices
    run = cli("demo", "--days", "7", "--data-dir", str(tmp_path / "demo"))
    assert run.exit_code == 0, run.stderr
    ledger = Ledger.open(tmp_path / "demo" / "state.sqlite", read_only=True)
    try:
        counts = billing_store.billing_counts(ledger)
    finally:
        ledger.close()
    assert counts["subscriptions"] > 0 and counts["invoices"] > 0
    assert f"billing: {counts['subscriptions']} subscriptions" in run.stdout
