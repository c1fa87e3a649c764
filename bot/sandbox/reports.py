"""The sandbox's Reporting API report types and the CSV files their runs produce.

Computed straight from balance-transaction dicts (never through revbot's own P&L code), with
money in decimal major units of each currency's own decimals, as Stripe's CSVs have it. The
payout reconciliation also reads the account's payout objects and what each paid out.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from bot.money import exponent

# Balance movements that are not activity (docs: reports/balance).
PAYOUT_CATEGORIES: frozenset[str] = frozenset({"payout", "payout_reversal"})
NON_ACTIVITY_CATEGORIES: frozenset[str] = PAYOUT_CATEGORIES | frozenset(
    {"transfer", "transfer_reversal", "topup", "topup_reversal"}
)


def is_activity(category: str) -> bool:
    """Whether a reporting category counts as activity (all but payouts, transfers, ...)."""
    return category not in NON_ACTIVITY_CATEGORIES and not category.endswith("reserved_funds")


@dataclass(frozen=True)
class ReportType:
    """A report type the sandbox can run."""

    id: str
    name: str
    version: int
    default_columns: tuple[str, ...]
    columns: tuple[str, ...]  # every column a run may ask for
    parameters: frozenset[str]  # the ``parameters[...]`` keys it accepts


_RCC = ("reporting_category", "currency", "count", "gross", "fee", "net")
_ITEMIZED_DEFAULT = (
    "balance_transaction_id", "created_utc", "created", "available_on_utc", "available_on",
    "currency", "gross", "fee", "net", "reporting_category", "source_id", "description",
)  # fmt: skip
_ITEMIZED_EXTRA = (
    "customer_facing_amount", "customer_facing_currency", "automatic_payout_id",
    "automatic_payout_effective_at_utc", "automatic_payout_effective_at", "charge_id",
    "payment_intent_id", "invoice_id", "subscription_id", "payment_method_type",
    "dispute_reason",
)  # fmt: skip
_PAYOUT_COLUMNS = (
    "automatic_payout_id", "automatic_payout_effective_at_utc", "automatic_payout_effective_at",
)  # fmt: skip
_PAYOUT_ITEMIZED_DEFAULT = _ITEMIZED_DEFAULT + _PAYOUT_COLUMNS
_COMMON_PARAMS = frozenset({"interval_start", "interval_end", "timezone", "currency", "columns"})

REPORT_TYPES: dict[str, ReportType] = {
    t.id: t
    for t in (
        ReportType(
            id="balance.summary.1",
            name="Balance summary",
            version=1,
            default_columns=("category", "description", "net_amount", "currency"),
            columns=("category", "description", "net_amount", "currency"),
            parameters=_COMMON_PARAMS,
        ),
        ReportType(
            id="balance_change_from_activity.summary.1",
            name="Balance change from activity summary",
            version=1,
            default_columns=_RCC,
            columns=_RCC,
            parameters=_COMMON_PARAMS,
        ),
        ReportType(
            id="balance_change_from_activity.itemized.3",
            name="Balance change from activity (itemized)",
            version=3,
            default_columns=_ITEMIZED_DEFAULT,
            columns=_ITEMIZED_DEFAULT + _ITEMIZED_EXTRA,
            parameters=_COMMON_PARAMS | {"reporting_category"},
        ),
        ReportType(
            id="payout_reconciliation.itemized.5",
            name="Payout reconciliation (itemized)",
            version=5,
            default_columns=_PAYOUT_ITEMIZED_DEFAULT,
            columns=_PAYOUT_ITEMIZED_DEFAULT
            + tuple(c for c in _ITEMIZED_EXTRA if c not in _PAYOUT_COLUMNS),
            parameters=_COMMON_PARAMS | {"reporting_category"},
        ),
    )
}

# A payout object and the ids of the balance transactions it paid out (its own included).
SettledPayout = tuple[Mapping[str, Any], frozenset[str]]


@dataclass(frozen=True)
class RunParameters:
    """The validated parameters of a report run."""

    interval_start: int
    interval_end: int
    timezone: str = "Etc/UTC"
    currency: str | None = None
    columns: tuple[str, ...] | None = None
    reporting_category: str | None = None


@functools.cache
def _exponent(currency: str) -> int:
    return exponent(currency)


def money(minor: int, currency: str) -> str:
    """Major units with exactly the currency's decimals: ``-12.50``, ``1980`` (JPY), ``5.120``."""
    exp = _exponent(currency)
    return f"{Decimal(minor).scaleb(-exp):.{exp}f}"


def _stamp(ts: int, zone: ZoneInfo) -> str:
    """``YYYY-MM-DD HH:MM:SS`` local time (isoformat: several times faster than strftime)."""
    return dt.datetime.fromtimestamp(ts, zone).replace(tzinfo=None).isoformat(" ", "seconds")


def report_rows(
    report_type: ReportType,
    params: RunParameters,
    transactions: Sequence[dict[str, Any]],
    payouts: Sequence[SettledPayout] = (),
) -> Iterator[list[str]]:
    """The CSV rows (header first) of a run over ``transactions`` (oldest first).

    ``transactions`` must hold every transaction created before ``interval_end`` (the balance
    summary needs the history for its starting balance); ``payouts`` (any order) are read by
    the payout reconciliation only. Rows are produced lazily.
    """
    columns = list(params.columns or report_type.default_columns)
    yield columns
    if report_type.id == "balance.summary.1":
        body = _balance_summary(params, transactions)
    elif report_type.id == "balance_change_from_activity.summary.1":
        body = _activity_summary(params, transactions)
    elif report_type.id == "payout_reconciliation.itemized.5":
        body = _payout_reconciliation(params, transactions, payouts)
    else:
        body = _itemized(params, transactions)
    for record in body:
        yield [record.get(c, "") for c in columns]


def _in_interval(params: RunParameters, txns: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for txn in txns:
        if params.interval_start <= txn["created"] < params.interval_end and (
            params.currency is None or txn["currency"] == params.currency
        ):
            yield txn


def _activity_summary(
    params: RunParameters, txns: Sequence[dict[str, Any]]
) -> Iterator[dict[str, str]]:
    sums: dict[tuple[str, str], list[int]] = {}
    for txn in _in_interval(params, txns):
        if not is_activity(txn["reporting_category"]):
            continue
        acc = sums.setdefault((txn["currency"], txn["reporting_category"]), [0, 0, 0, 0])
        acc[0] += 1
        acc[1] += txn["amount"]
        acc[2] += txn["fee"]
        acc[3] += txn["net"]
    for (currency, category), (count, gross, fee, net) in sorted(sums.items()):
        yield {
            "reporting_category": category,
            "currency": currency,
            "count": str(count),
            "gross": money(gross, currency),
            "fee": money(fee, currency),
            "net": money(net, currency),
        }


def _balance_summary(
    params: RunParameters, txns: Sequence[dict[str, Any]]
) -> Iterator[dict[str, str]]:
    zone = ZoneInfo(params.timezone)
    first_day = dt.datetime.fromtimestamp(params.interval_start, zone).date()
    last_day = dt.datetime.fromtimestamp(params.interval_end - 1, zone).date()
    # currency -> [starting, activity, payouts, other movements]
    sums: dict[str, list[int]] = {}
    for txn in txns:
        currency = txn["currency"]
        if txn["created"] >= params.interval_end or (
            params.currency is not None and currency != params.currency
        ):
            continue
        acc = sums.setdefault(currency, [0, 0, 0, 0])
        category = txn["reporting_category"]
        if txn["created"] < params.interval_start:
            acc[0] += txn["net"]
        elif is_activity(category):
            acc[1] += txn["net"]
        elif category in PAYOUT_CATEGORIES:
            acc[2] += txn["net"]
        else:
            acc[3] += txn["net"]
    for currency in sorted(sums):
        starting, activity, payouts, other = sums[currency]
        rows = [
            ("starting_balance", f"Starting balance ({first_day:%Y-%m-%d})", starting),
            ("activity", "Activity", activity),
            ("payouts", "Total payouts", payouts),
        ]
        if other:
            # Transfers, top-ups and reserves are neither activity nor payouts; a row of their
            # own keeps starting + rows == ending (the sandbox's own choice, see module doc).
            rows.append(("other_balance_movements", "Other balance movements", other))
        ending = starting + activity + payouts + other
        rows.append(("ending_balance", f"Ending balance ({last_day:%Y-%m-%d})", ending))
        for category, description, amount in rows:
            yield {
                "category": category,
                "description": description,
                "net_amount": money(amount, currency),
                "currency": currency,
            }


_UTC = ZoneInfo("UTC")


def _itemized(params: RunParameters, txns: Sequence[dict[str, Any]]) -> Iterator[dict[str, str]]:
    zone = ZoneInfo(params.timezone)
    # available_on takes few distinct values (mostly UTC midnights): render each once.
    available = functools.lru_cache(maxsize=4096)(_stamp)
    for txn in _in_interval(params, txns):
        category = txn["reporting_category"]
        if not is_activity(category):
            continue
        if params.reporting_category is not None and category != params.reporting_category:
            continue
        yield _itemized_record(txn, zone, available)


def _itemized_record(
    txn: Mapping[str, Any], zone: ZoneInfo, available: Callable[[int, ZoneInfo], str] = _stamp
) -> dict[str, str]:
    """The columns an itemized report has for one balance transaction."""
    category = txn["reporting_category"]
    currency = txn["currency"]
    source = txn["source"] if isinstance(txn["source"], str) else ""
    return {
        "balance_transaction_id": txn["id"],
        "created_utc": _stamp(txn["created"], _UTC),
        "created": _stamp(txn["created"], zone),
        "available_on_utc": available(txn["available_on"], _UTC),
        "available_on": available(txn["available_on"], zone),
        "currency": currency,
        "gross": money(txn["amount"], currency),
        "fee": money(txn["fee"], currency),
        "net": money(txn["net"], currency),
        "reporting_category": category,
        "source_id": source,
        "description": txn["description"] or "",
        "customer_facing_amount": money(txn["amount"], currency) if category == "charge" else "",
        "customer_facing_currency": currency if category == "charge" else "",
        "charge_id": source if source.startswith(("ch_", "py_")) else "",
    }


def _payout_reconciliation(
    params: RunParameters, txns: Sequence[dict[str, Any]], payouts: Sequence[SettledPayout]
) -> Iterator[dict[str, str]]:
    """One row per balance transaction settled by an automatic payout that was paid and whose
    ``arrival_date`` (the payout's effective time) is in the interval; the payout's own
    transaction is not a row. Ordered by payout (effective time, created, id), then by
    transaction (created, id)."""
    zone = ZoneInfo(params.timezone)
    available = functools.lru_cache(maxsize=4096)(_stamp)
    by_id = {t["id"]: t for t in txns}
    chosen = sorted(
        (
            (payout, members)
            for payout, members in payouts
            if payout["automatic"]
            and payout["status"] == "paid"
            and params.interval_start <= payout["arrival_date"] < params.interval_end
        ),
        key=lambda pm: (pm[0]["arrival_date"], pm[0]["created"], pm[0]["id"]),
    )
    for payout, members in chosen:
        effective = payout["arrival_date"]
        payout_columns = {
            "automatic_payout_id": payout["id"],
            "automatic_payout_effective_at_utc": _stamp(effective, _UTC),
            "automatic_payout_effective_at": _stamp(effective, zone),
        }
        settled = sorted(
            (by_id[i] for i in members if i != payout["balance_transaction"]),
            key=lambda t: (t["created"], t["id"]),
        )
        for txn in settled:
            if params.currency is not None and txn["currency"] != params.currency:
                continue
            category = txn["reporting_category"]
            if params.reporting_category is not None and category != params.reporting_category:
                continue
            yield {**_itemized_record(txn, zone, available), **payout_columns}


def csv_chunks(rows: Iterable[list[str]], *, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """Encode rows as CSV (``\\r\\n`` line ends, like Stripe's) in chunks of about chunk_size."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow(row)
        if buffer.tell() >= chunk_size:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    tail = buffer.getvalue()
    if tail:
        yield tail.encode()
