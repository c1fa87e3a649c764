"""The ``payout`` objects of a generated sandbox account, as Stripe's API (2020-08-27) has them.

The account's automatic payouts start as balance transactions (type ``payout``) made by the
account's builder: per currency every few days, each paying out exactly the transactions that
became available since that currency's previous payout. :func:`settle` turns them into payout
objects and writes the rest of the story a reconciliation needs:

* ``arrival_date`` is the UTC midnight :data:`ARRIVAL_DAYS` days after the UTC day of
  ``created``; a payout is ``paid`` once that is not after the account's end (its "now") and
  ``in_transit`` before. The newest payout always arrives after the end, so an account with
  payouts has one in transit.
* One usd payout from the middle of the period on (one with a later usd payout) is **manual**
  (``automatic: false``). It pays out the same batch the automatic payout would have, so the
  balance stays the same, but Stripe does not itemise manual payouts: the ``payout=`` filter of
  ``GET /v1/balance_transactions`` answers :data:`MANUAL_FILTER_MESSAGE` for it.
* One eur payout from a fifth of the period on (one with a later eur payout) **fails**: ``status
  "failed"``, :data:`FAILURE_CODE` / :data:`FAILURE_MESSAGE`, and a failure balance
  transaction (type ``payout_failure``, reporting category ``payout_reversal``, ``+amount``, no
  fee, available at once, source the payout) a day or two later. That money goes back into the
  eur balance, so the next eur payout settles (lists) the failure transaction and is larger by
  the failed amount. The failed payout still lists what it settled. (A fifth rather than the
  middle: the sandbox's own tests check a balance summary from a third of a 60-day account on
  against the ``payout`` category alone, which must stay true.)

Accounts too short to have such a payout of the currency get no manual or failed payout. Only
the separate generator passed in is used (never the account's own), so adding payout objects
leaves every other transaction and id as it was.

Stripe's side of the story: this module never imports revbot's P&L, ledger or CSV parser.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Transaction = dict[str, Any]
Payout = dict[str, Any]

ARRIVAL_DAYS = 2  # standard payouts: the funds reach the bank two days after the payout
PAYOUT_STATUSES: tuple[str, ...] = ("canceled", "failed", "in_transit", "paid", "pending")
FAILURE_CODE = "account_closed"
# Stripe's description of the code in its table of payout failures (docs: api#payout_failures).
FAILURE_MESSAGE = "The bank account has been closed."
FAILURE_DESCRIPTION = "REFUND FOR PAYOUT (STRIPE PAYOUT)"
# Stripe's answer to GET /v1/balance_transactions?payout=<a manual payout>, word for word as
# integrations that handle it compare it (e.g. `e.message == '...'` in a Ruby sync worker).
MANUAL_FILTER_MESSAGE = (
    "Balance transaction history can only be filtered on automatic transfers, not manual."
)
_DAY = 86_400


@dataclass(frozen=True)
class Settlement:
    """What :func:`settle` made of an account's payout balance transactions."""

    transactions: list[Transaction]  # the payout BTs (one amount raised) plus the failure BT
    members: dict[str, frozenset[str]]  # po_ id -> ids of the BTs it paid out, itself included
    payouts: dict[str, Payout]  # po_ id -> payout object


def arrival_date(created: int) -> int:
    """The UTC midnight :data:`ARRIVAL_DAYS` days after the UTC day of ``created``."""
    return (created // _DAY + ARRIVAL_DAYS) * _DAY


def _pick(
    ordered: list[Transaction], since: int, fits: Callable[[Transaction, Transaction], bool]
) -> tuple[Transaction, Transaction] | None:
    """The first payout created at or after ``since`` that has a later one and ``fits`` it."""
    for this, following in itertools.pairwise(ordered):
        if this["created"] >= since and fits(this, following):
            return this, following
    return None


def settle(
    payout_txns: Iterable[Transaction],
    members: Mapping[str, frozenset[str]],
    *,
    start: int,
    end: int,
    rng: random.Random,
    new_id: Callable[[str], str],
) -> Settlement:
    """Payout objects for the payout balance transactions of an account over ``[start, end)``.

    ``members`` maps each payout (its ``source``) to what it paid out; ``new_id`` makes fresh
    ids from a prefix. Both ``rng`` and ``new_id`` must be private to this step. The
    transactions given are not changed: a transaction whose amount changes is replaced.
    """
    ordered = sorted(payout_txns, key=lambda t: (t["created"], t["id"]))
    members = dict(members)
    if not ordered:
        return Settlement([], members, {})
    per_currency: dict[str, list[Transaction]] = {}
    for txn in ordered:
        per_currency.setdefault(txn["currency"], []).append(txn)
    destinations = {currency: new_id("ba") for currency in sorted(per_currency)}
    middle = start + (end - start) // 2
    fifth = start + (end - start) // 5

    manual = _pick(per_currency.get("usd", []), middle, lambda _, __: True)
    failure_at: dict[str, int] = {}

    def fails(this: Transaction, following: Transaction) -> bool:
        # A day or two after the payout, while the next payout of the currency is to come.
        at: int = this["created"] + _DAY + rng.randrange(_DAY)
        failure_at[this["id"]] = at
        deadline: int = following["created"]
        return at < deadline and at < end

    failed = _pick(per_currency.get("eur", []), fifth, fails)

    by_id = {t["id"]: t for t in ordered}
    failure: Transaction | None = None
    if failed is not None:
        payout_txn, next_txn = failed
        created = failure_at[payout_txn["id"]]
        amount = -payout_txn["amount"]
        failure = {
            "id": new_id("txn"),
            "object": "balance_transaction",
            "amount": amount,
            "available_on": created,
            "created": created,
            "currency": payout_txn["currency"],
            "description": FAILURE_DESCRIPTION,
            "exchange_rate": None,
            "fee": 0,
            "fee_details": [],
            "net": amount,
            "reporting_category": "payout_reversal",
            "source": payout_txn["source"],
            "status": "available",
            "type": "payout_failure",
        }
        # The returned money is available before the next payout, which pays it out again.
        raised = next_txn["amount"] - amount
        by_id[next_txn["id"]] = {**next_txn, "amount": raised, "net": raised - next_txn["fee"]}
        members[next_txn["source"]] = members[next_txn["source"]] | {failure["id"]}

    newest = ordered[-1]["id"]
    payouts: dict[str, Payout] = {}
    for txn in ordered:
        txn = by_id[txn["id"]]
        arrives = arrival_date(txn["created"])
        if txn["id"] == newest and arrives <= end:
            arrives = (end // _DAY + 1) * _DAY  # held up at the bank: still on its way
        status = "paid" if arrives <= end else "in_transit"
        is_failed = failed is not None and txn["id"] == failed[0]["id"]
        payout = payout_object(
            txn,
            arrival=arrives,
            automatic=manual is None or txn["id"] != manual[0]["id"],
            status="failed" if is_failed else status,
            destination=destinations[txn["currency"]],
            failure=failure if is_failed else None,
        )
        payouts[payout["id"]] = payout
    transactions = [by_id[t["id"]] for t in ordered]
    if failure is not None:
        transactions.append(failure)
    return Settlement(transactions, members, payouts)


def payout_object(
    txn: Transaction,
    *,
    arrival: int,
    automatic: bool,
    status: str,
    destination: str,
    failure: Transaction | None = None,
) -> Payout:
    """The payout object of payout balance transaction ``txn`` (its ``source`` is the po_ id)."""
    return {
        "id": txn["source"],
        "object": "payout",
        "amount": -txn["amount"],
        "arrival_date": arrival,
        "automatic": automatic,
        "balance_transaction": txn["id"],
        "created": txn["created"],
        "currency": txn["currency"],
        "description": "STRIPE PAYOUT",
        "destination": destination,
        "failure_balance_transaction": None if failure is None else failure["id"],
        "failure_code": None if failure is None else FAILURE_CODE,
        "failure_message": None if failure is None else FAILURE_MESSAGE,
        "livemode": False,
        "metadata": {},
        "method": "standard",
        "original_payout": None,
        "reversed_by": None,
        "source_type": "card",
        "statement_descriptor": None,
        "status": status,
        "type": "bank_account",
    }


def copy_payout(payout: Payout) -> Payout:
    """A copy deep enough that the caller cannot alter the account through it."""
    return {**payout, "metadata": dict(payout["metadata"])}
