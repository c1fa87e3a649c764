"""Payouts end to end: `revbot backfill` and `revbot daily` against the sandbox (payouts and the
`payout=` filter through the real stripe library) fill the Payouts tab, one row per payout,
equal to a computation made here from the sandbox's own record of what each payout settled (its
member transactions, not revbot's ledger), and every automatic payout is reconciled.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from bot.dashboard.base import PAYOUT_COLUMNS
from bot.periods import Month
from tests.conftest import Cli, days_ago, today_utc

EXPONENT = {"jpy": 0, "kwd": 3}
FINAL = {"paid", "failed", "canceled"}


def major(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-EXPONENT.get(currency, 2))


def expected_row(payout: Mapping[str, Any], members: list[dict[str, Any]]) -> dict[str, Any]:
    """The row as PRODUCT's rule says, from the sandbox's transactions."""
    ccy = payout["currency"]
    row: dict[str, Any] = {
        "id": payout["id"], "currency": ccy.upper(), "amount": major(payout["amount"], ccy),
        "status": payout["status"],
        "arrival_date": datetime.fromtimestamp(payout["arrival_date"], UTC).date(),
    }  # fmt: skip
    if not payout["automatic"]:
        return {**row, "transactions": None, "gross": None, "fees": None, "refunds": None,
                "other": None, "net": None, "reconciled": "n/a"}  # fmt: skip
    own = payout["balance_transaction"]
    settled = [t for t in members if t["id"] != own]
    gross = sum(t["amount"] for t in settled if t["reporting_category"] == "charge")
    refunds = sum(
        t["amount"]
        for t in settled
        if t["reporting_category"] in ("refund", "refund_failure", "partial_capture_reversal")
    )
    fees = -sum(t["fee"] for t in settled) + sum(
        t["amount"] for t in settled if t["reporting_category"] in ("fee", "tax", "network_cost")
    )
    net = sum(t["net"] for t in settled)
    other = net - gross - refunds - fees
    return {
        **row,
        "transactions": len(settled),
        "gross": major(gross, ccy),
        "fees": major(fees, ccy),
        "refunds": major(refunds, ccy),
        "other": major(other, ccy),
        "net": major(net, ccy),
        "reconciled": "yes" if net == payout["amount"] else "no",
    }


def payouts_tab(data: Path) -> dict[str, dict[str, Any]]:
    ws = load_workbook(data / "dashboard.xlsx")["Payouts"]
    header = [c.value for c in ws[1]]
    assert header == list(PAYOUT_COLUMNS)
    rows = [dict(zip(header, r, strict=True)) for r in ws.iter_rows(min_row=2, values_only=True)]
    keyed = {r["id"]: r for r in rows}
    assert len(keyed) == len(rows), "a duplicate Payouts row"
    return keyed


def shown(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in ("amount", "gross", "fees", "refunds", "other", "net"):
        out[name] = None if row[name] is None else Decimal(str(row[name]))
    out["arrival_date"] = row["arrival_date"].date() if row["arrival_date"] else None
    out["reconciled"] = {True: "yes", False: "no"}.get(row["reconciled"], row["reconciled"])
    return out


def test_backfill_fills_payouts_equal_to_the_sandbox_and_every_automatic_one_reconciles(
    cli: Cli, sandbox: Any, sandbox_account: Any
) -> None:
    since = days_ago(60)
    run = cli("backfill", "--since", since.isoformat())
    assert run.exit_code == 0, run.stderr
    tab = payouts_tab(Path(cli.env["DATA_DIR"]))

    start = int(datetime.combine(since, datetime.min.time(), UTC).timestamp())
    wanted = [p for p in sandbox_account.payouts if p["created"] >= start]
    kinds = {
        "manual": [p for p in wanted if not p["automatic"]],
        "failed": [p for p in wanted if p["status"] == "failed"],
        "in_transit": [p for p in wanted if p["status"] == "in_transit"],
    }
    assert all(kinds.values()), {k: len(v) for k, v in kinds.items()}
    assert set(tab) == {p["id"] for p in wanted}
    for payout in wanted:
        ids = sandbox_account.payout_members(payout["id"]) or frozenset()
        members = [sandbox_account.get(i) for i in sorted(ids)]
        want = expected_row(payout, members)
        got = shown(tab[payout["id"]])
        assert {k: got[k] for k in want} == want, payout["id"]
        if payout["automatic"]:
            assert got["reconciled"] == "yes", payout["id"]
    # The money a failed payout gave back is settled by the next payout of its currency.
    failed = kinds["failed"][0]
    later = [
        p for p in wanted
        if p["currency"] == failed["currency"] and p["created"] > failed["created"]
    ]  # fmt: skip
    back = failed["failure_balance_transaction"]
    settling = [p for p in later if back in (sandbox_account.payout_members(p["id"]) or ())]
    assert len(settling) == 1 and tab[settling[0]["id"]]["other"] != 0

    # Status says so; a second run adds no row and keeps them reconciled.
    status = cli("status")
    assert "every automatic one reconciled" in status.stdout
    assert f"payouts: {len(wanted)}" in status.stdout
    run = cli("daily")
    assert run.exit_code == 0, run.stderr
    assert payouts_tab(Path(cli.env["DATA_DIR"])) == tab


def test_daily_reads_a_payout_in_transit_again_until_it_is_final(
    cli: Cli, sandbox: Any, sandbox_account: Any
) -> None:
    assert cli("daily").exit_code == 0
    tab = payouts_tab(Path(cli.env["DATA_DIR"]))
    moving = [pid for pid, row in tab.items() if row["status"] not in FINAL]
    assert moving, "the last days have a payout in transit"
    # Stripe moves it on (the stored object, which the sandbox serves): the next daily reads
    # it by id and updates its row in place.
    for pid in moving:
        sandbox_account.payout(pid)["status"] = "paid"
    assert cli("daily").exit_code == 0
    after = payouts_tab(Path(cli.env["DATA_DIR"]))
    assert all(after[pid]["status"] == "paid" for pid in moving)
    assert len(after) >= len(tab)


def test_monthly_checks_the_payouts_against_stripes_reconciliation_report(
    cli: Cli, sandbox: Any
) -> None:
    last = Month.of(today_utc()).previous()
    assert cli("backfill", "--since", last.first_day.isoformat()).exit_code == 0
    # A payout's record damaged in the ledger: the check lists it again and agrees.
    data = Path(cli.env["DATA_DIR"])
    with sqlite3.connect(data / "state.sqlite") as conn:
        victim = conn.execute(
            "SELECT p.id FROM payouts p WHERE p.automatic = 1 AND p.status = 'paid' AND "
            "p.id IN (SELECT payout FROM payout_transactions) ORDER BY p.created LIMIT 1 OFFSET 3"
        ).fetchone()[0]
        count = "SELECT COUNT(*) FROM payout_transactions WHERE payout = ?"
        before = conn.execute(count, (victim,)).fetchone()[0]
        conn.execute(
            "DELETE FROM payout_transactions WHERE rowid = (SELECT MIN(rowid) FROM "
            "payout_transactions WHERE payout = ? AND reporting_category = 'charge')",
            (victim,),
        )
    run = cli("monthly", "--month", str(last), "--no-send")
    with sqlite3.connect(data / "state.sqlite") as conn:
        assert conn.execute(count, (victim,)).fetchone()[0] == before  # listed again
    assert run.exit_code == 0, run.stderr
    report = json.loads(cli("status", "--json").stdout)["payouts"]["report_checks"][str(last)]
    assert report["checked"] > 0 and report["differences"] == []
    assert "every automatic one reconciled" in cli("status").stdout
    assert list((data / "archive").glob("payout_reconciliation.itemized.5_*.csv"))
