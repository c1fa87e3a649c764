"""Stripe report runs, recorded in the ledger, and their CSVs.

A run is recorded in the ledger *before* it is created (status ``creating``) and again with
its id right after, and is created with an idempotency key derived from what it is for; so a
process killed at any point finds the same run on its next attempt instead of making another.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from bot.errors import ServiceError, TemporaryError
from bot.ledger import Ledger
from bot.money import MoneyError, to_minor
from bot.periods import Interval
from bot.pnl import Movement
from bot.stripe_port import StripePort

log = logging.getLogger(__name__)

ACTIVITY_SUMMARY = "balance_change_from_activity.summary.1"
BALANCE_SUMMARY = "balance.summary.1"
ACTIVITY_ITEMIZED = "balance_change_from_activity.itemized.3"
PAYOUT_RECONCILIATION = "payout_reconciliation.itemized.5"


@dataclass(frozen=True)
class ReportRequest:
    report_type: str
    interval: Interval
    timezone: str
    mode: str  # "live" or "test": the same interval in the other mode is another report
    columns: tuple[str, ...] | None = None

    def idempotency_key(self) -> str:
        cols = ",".join(self.columns or ())
        iv = self.interval
        raw = f"{self.report_type}|{iv.start}|{iv.end}|{self.timezone}|{self.mode}|{cols}"
        return "revbot-report-" + hashlib.sha256(raw.encode()).hexdigest()[:40]

    def archive_name(self) -> str:
        start = datetime.fromtimestamp(self.interval.start, UTC).strftime("%Y%m%dT%H%M%SZ")
        end = datetime.fromtimestamp(self.interval.end, UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"{self.report_type}_{start}_{end}_{self.mode}.csv"


def ensure_available(source: StripePort, report_type: str, interval: Interval, label: str) -> int:
    """Defer (exit 75) when Stripe's data for the type does not cover ``interval`` yet.

    Returns the type's ``data_available_start``: Stripe refuses an interval that starts
    earlier (an account younger than the period).
    """
    rt = source.report_type(report_type)
    end = int(rt.get("data_available_end") or 0)
    if end < interval.end:
        ready = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%d %H:%M UTC") if end else "never"
        raise TemporaryError(
            f"Stripe's {report_type} data for {label} is not ready yet (available up to "
            f"{ready}); `revbot daily` will try again tomorrow"
        )
    return int(rt.get("data_available_start") or 0)


def obtain(
    source: StripePort,
    ledger: Ledger,
    request: ReportRequest,
    *,
    archive_dir: Path,
    deadline: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Path:
    """The run's CSV under ``archive_dir``, reusing a run the ledger already knows."""
    key = (
        request.report_type,
        request.interval.start,
        request.interval.end,
        request.timezone,
        request.mode,
    )
    dest = archive_dir / request.archive_name()
    known = ledger.report_run(*key)
    if known and known.status == "succeeded" and known.file_path and Path(known.file_path).exists():
        return Path(known.file_path)
    run_id = known.run_id if known and known.status != "failed" else None
    if run_id is None:
        ledger.record_report_run(*key, run_id=None, status="creating")
        params: dict[str, Any] = {
            "interval_start": request.interval.start,
            "interval_end": request.interval.end,
            "timezone": request.timezone,
        }
        if request.columns:
            params["columns"] = list(request.columns)
        idem = request.idempotency_key()
        if known and known.status == "failed":
            # A failed run is final at Stripe; a new attempt needs a new key.
            idem += "-retry-" + hashlib.sha256((known.run_id or "").encode()).hexdigest()[:8]
        run = source.create_report_run(request.report_type, params, idempotency_key=idem)
        run_id = str(run["id"])
        ledger.record_report_run(*key, run_id=run_id, status=str(run["status"]))
        log.info("created report run %s (%s)", run_id, request.report_type)
    else:
        log.info("reusing report run %s (%s)", run_id, request.report_type)
        run = source.retrieve_report_run(run_id)

    start = clock()
    delay = 1.0
    while run["status"] == "pending":
        if clock() - start > deadline:
            raise TemporaryError(
                f"Stripe's report run {run_id} ({request.report_type}) is still pending after "
                f"{deadline:.0f}s; run the command again later to pick it up"
            )
        sleep(delay)
        delay = min(delay * 2, 30.0)
        run = source.retrieve_report_run(run_id)
    if run["status"] != "succeeded":
        error = str(run.get("error") or run["status"])
        ledger.record_report_run(*key, run_id=run_id, status="failed", error=error)
        raise ServiceError(
            f"Stripe's report run {run_id} ({request.report_type}) failed: {error}; run the "
            "command again to create a new run"
        )
    result = run.get("result") or {}
    url = result.get("url") if isinstance(result, dict) else None
    if not url:
        raise ServiceError(f"Stripe's report run {run_id} succeeded without a file URL")
    source.download(str(url), dest)
    ledger.record_report_run(*key, run_id=run_id, status="succeeded", file_path=str(dest))
    return dest


# -- CSV parsing ------------------------------------------------------------------------------


class CsvError(ServiceError):
    """A report file revbot cannot read; the raw file is kept for a human to look at."""


def rows(path: Path, required: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Rows by header name; unexpected columns are tolerated, missing required ones are not."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise CsvError(
                f"report file {path} has no {', '.join(repr(c) for c in missing)} column "
                f"(columns: {', '.join(header) or 'none'}); the file is kept for inspection"
            )
        reader.fieldnames = header
        for n, row in enumerate(reader, start=2):
            if None in row:
                raise CsvError(f"report file {path}: line {n} has more cells than the header")
            yield {k: (v or "").strip() for k, v in row.items()}


def _minor(value: str, currency: str, path: Path, column: str) -> int:
    try:
        return to_minor(Decimal(value), currency)
    except (InvalidOperation, MoneyError) as e:
        raise CsvError(
            f"report file {path}: {column}={value!r} is not an amount in {currency.upper()}"
        ) from e


def activity_movements(path: Path) -> list[Movement]:
    """``balance_change_from_activity.summary.1`` -> one aggregated movement per row.

    Money is read from ``gross`` and ``net`` and the fee taken as ``gross - net``, so that no
    assumption about the sign convention of the ``fee`` column is needed.
    """
    out: list[Movement] = []
    for row in rows(path, ("reporting_category", "currency", "count", "gross", "net")):
        ccy = row["currency"].lower()
        gross = _minor(row["gross"], ccy, path, "gross")
        net = _minor(row["net"], ccy, path, "net")
        try:
            count = int(row["count"])
        except ValueError as e:
            raise CsvError(f"report file {path}: count={row['count']!r} is not a number") from e
        out.append(Movement(row["reporting_category"], ccy, gross, gross - net, net, count))
    return out


@dataclass
class Settlement:
    """What one automatic payout settled, as ``payout_reconciliation.itemized.5`` says."""

    transactions: set[str]
    net: int = 0


def payout_settlements(path: Path) -> dict[str, Settlement]:
    """``payout_reconciliation.itemized.5`` -> per automatic payout, its transactions and Σ net."""
    out: dict[str, Settlement] = {}
    required = ("automatic_payout_id", "balance_transaction_id", "currency", "net")
    for row in rows(path, required):
        ccy = row["currency"].lower()
        one = out.setdefault(row["automatic_payout_id"], Settlement(set()))
        one.transactions.add(row["balance_transaction_id"])
        one.net += _minor(row["net"], ccy, path, "net")
    return out


@dataclass(frozen=True)
class Balances:
    starting: int
    activity: int
    payouts: int
    ending: int


def balances(path: Path) -> dict[str, Balances]:
    """``balance.summary.1`` -> per currency starting/activity/payouts/ending balance."""
    acc: dict[str, dict[str, int]] = {}
    for row in rows(path, ("category", "net_amount", "currency")):
        ccy = row["currency"].lower()
        acc.setdefault(ccy, {})[row["category"]] = _minor(
            row["net_amount"], ccy, path, "net_amount"
        )
    return {
        ccy: Balances(
            starting=v.get("starting_balance", 0),
            activity=v.get("activity", 0),
            payouts=v.get("payouts", 0),
            ending=v.get("ending_balance", 0),
        )
        for ccy, v in acc.items()
    }
