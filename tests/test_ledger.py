import sqlite3
from datetime import date
from pathlib import Path

import pytest

from bot.errors import RevbotError
from bot.inbound import InvalidStripeData
from bot.ledger import Ledger


def txn(
    id_: str, created: int, amount: int = 1000, fee: int = 59, **kw: object
) -> dict[str, object]:
    base: dict[str, object] = {
        "id": id_, "object": "balance_transaction", "created": created, "available_on": created + 86400,
        "currency": "usd", "amount": amount, "fee": fee, "net": amount - fee,
        "reporting_category": "charge", "type": "charge", "status": "pending",
        "description": "Invoice 1", "source": "ch_1",
    }  # fmt: skip
    base.update(kw)
    return base


def test_upsert_by_id_and_late_change(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "state.sqlite")
    with ledger.transaction() as conn:
        assert ledger.upsert_transactions(conn, [txn("txn_1", 100), txn("txn_2", 200)]) == (2, 0)
    with ledger.transaction() as conn:
        assert ledger.upsert_transactions(
            conn, [txn("txn_1", 100), txn("txn_2", 200, status="available")]
        ) == (0, 1)
    rows = ledger.transactions_between(0, 1000)
    assert [r.id for r in rows] == ["txn_1", "txn_2"]
    assert rows[1].status == "available"
    assert ledger.transaction_count() == 2
    assert ledger.raw_transactions()[1]["status"] == "available"


def test_transaction_rolls_back_on_crash(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "state.sqlite")
    with pytest.raises(RuntimeError), ledger.transaction() as conn:
        ledger.upsert_transactions(conn, [txn("txn_1", 100)])
        ledger.mark_days_synced(conn, "UTC", {date(2026, 1, 1): (0, 86400, 1)})
        raise RuntimeError("crash")
    assert ledger.transaction_count() == 0
    assert ledger.synced_days("UTC") == {}
    assert ledger.pending_dashboard_days("UTC") == []


def test_synced_days_and_dashboard_queue(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "state.sqlite")
    with ledger.transaction() as conn:
        ledger.mark_days_synced(
            conn, "UTC", {date(2026, 1, 2): (1, 2, 0), date(2026, 1, 1): (0, 1, 3)}
        )
    assert list(ledger.synced_days("UTC")) == [date(2026, 1, 1), date(2026, 1, 2)]
    assert ledger.synced_days("Europe/Berlin") == {}
    assert ledger.pending_dashboard_days("UTC") == [date(2026, 1, 1), date(2026, 1, 2)]
    ledger.clear_dashboard_pending("UTC", [date(2026, 1, 1)])
    assert ledger.pending_dashboard_days("UTC") == [date(2026, 1, 2)]


def test_malformed_amount_refused(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "state.sqlite")
    with pytest.raises(InvalidStripeData, match=r"amount 10\.5"), ledger.transaction() as conn:
        ledger.upsert_transactions(conn, [txn("txn_1", 1, amount=10.5)])  # type: ignore[arg-type]
    assert ledger.transaction_count() == 0


def test_corrupt_file_is_named_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RevbotError, match=r"state\.sqlite is not a readable revbot ledger"):
        Ledger.open(path)
    assert path.read_bytes() == b"this is not sqlite" * 100


def test_reopen_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    ledger = Ledger.open(path)
    with ledger.transaction() as conn:
        ledger.upsert_transactions(conn, [txn("txn_1", 100)])
    ledger.close()
    assert Ledger.open(path).transaction_count() == 1
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_incidents_alert_once(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "state.sqlite")
    assert ledger.open_incident("sync:stale", "no sync for 3 days") is True
    assert ledger.open_incident("sync:stale", "no sync for 4 days") is False
    ledger.resolve_incidents("sync:")
    assert ledger.open_incident("sync:stale", "again") is True


def test_records_come_back_typed(tmp_path: Path) -> None:
    """Report runs, monthly results and sends are frozen dataclasses; the ledger owns their
    serialization, so what is saved is what comes back."""
    from dataclasses import FrozenInstanceError

    from bot.pnl import CurrencyFigures, PnlLines
    from bot.records import MonthlyRecord, ReportRun, Send

    ledger = Ledger.open(tmp_path / "state.sqlite")
    fig = CurrencyFigures("jpy", PnlLines(gross_revenue=1200, stripe_fees=-43), 10, 1167)
    record = MonthlyRecord({"jpy": fig}, ("JPY charge: differs",), "report (ledger differs)",
                           livemode=False, reconciled=False, generated_at="2026-11-01T06:15:00+00:00")  # fmt: skip
    ledger.save_monthly_result("2026-10", "UTC", "test", record)
    assert ledger.monthly_result("2026-10", "UTC", "test") == record
    assert ledger.monthly_result("2026-10", "UTC", "live") is None
    ledger.record_report_run(
        "balance.summary.1", 1, 2, "UTC", "test", run_id="frr_1", status="pending"
    )
    [run] = ledger.report_runs()
    assert isinstance(run, ReportRun) and (run.run_id, run.status) == ("frr_1", "pending")
    assert ledger.report_run("balance.summary.1", 1, 2, "UTC", "test") == run
    ledger.record_send_intent("2026-10", "ann@fund.example", 1, "key-1")
    [send] = ledger.sends("2026-10")
    assert isinstance(send, Send) and (send.status, send.provider_id) == ("intent", None)
    with pytest.raises(FrozenInstanceError):
        send.status = "sent"  # type: ignore[misc]
    ledger.close()
