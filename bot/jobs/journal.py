"""`revbot journal`: a reported month as a double-entry journal, as a file or posted to Xero.

The journal is built from the month's Monthly figures as the ledger keeps them (the report's
figures, the ones the investor email shows), one per currency (:mod:`bot.journal`). A month
without them is not reported yet: :class:`NotReported` (exit 75).

Posting to Xero happens once per (month, currency). Before a draft is created, the ledger
records the Idempotency-Key the request carries (state ``posting``); after, Xero's
ManualJournalID (state ``draft``). A re-run then finds the journal by that id: a draft is
updated when the journal changed (and left alone when not), a journal the accountant POSTED
(or voided) is never changed, and revbot says so (exit 1). A run stopped between the create
and its record posts again with the same key, which Xero answers with the journal it already
made, so there is never a second one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

from bot import books_store as store
from bot.errors import ServiceError, TemporaryError
from bot.journal import (
    Accounts,
    Journal,
    LineLike,
    XeroJournal,
    build_journal,
    render,
    xero_journal,
)
from bot.ledger import Ledger

log = logging.getLogger(__name__)

# Xero's statuses of a manual journal; the ones revbot may change.
XERO_DRAFT = "DRAFT"
XERO_GONE = frozenset({"DELETED"})  # a draft the accountant deleted: made again


class NotReported(TemporaryError):
    """The month has no Monthly figures in the ledger yet."""


class Books(Protocol):
    """What posting asks of Xero (:class:`bot.xero.XeroBooks` implements it)."""

    def account_codes(self) -> set[str]:
        """The codes of the organisation's chart of accounts."""
        ...

    def journal_status(self, journal_id: str) -> str | None:
        """A manual journal's status (``DRAFT``, ``POSTED``, ...), None if Xero has none."""
        ...

    def create_draft(self, journal: XeroJournal, *, idempotency_key: str) -> str:
        """Create a DRAFT manual journal; its ManualJournalID. The same key, the same one."""
        ...

    def update_draft(self, journal_id: str, journal: XeroJournal) -> None:
        """Replace a DRAFT's narration, date and lines."""
        ...

    def find_journals(self, narration: str) -> Sequence[Found]:
        """The manual journals whose narration is exactly ``narration``, lines included."""
        ...


class Found(Protocol):
    """A manual journal as Xero has it."""

    @property
    def journal_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def date(self) -> date | None: ...
    @property
    def lines(self) -> Sequence[LineLike]: ...


def month_journals(
    ledger: Ledger, *, month: str, timezone: str, modes: Sequence[str], accounts: Accounts
) -> list[Journal]:
    """The month's journals, one per currency, from its Monthly figures."""
    for mode in modes:
        record = ledger.monthly_result(month, timezone, mode)
        if record is not None:
            return [
                build_journal(month, ccy, figures.lines, accounts)
                for ccy, figures in sorted(record.figures.items())
            ]
    raise NotReported(
        f"{month} is not reported yet, so it has no journal; run `revbot monthly --month "
        f"{month}` once Stripe's reports cover it (`revbot daily` does so after the month ends)"
    )


def write_journal(ledger: Ledger, journals: Sequence[Journal], fmt: str, out: Path | None) -> str:
    """The journals as ``fmt``; written to ``out`` (atomically, recorded) when given."""
    text = render(journals, fmt)
    if out is None:
        return text
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    for j in journals:
        if not j.is_empty:
            store.record_journal(
                ledger, month=j.month, currency=j.currency, target=store.FILE,
                state=store.WRITTEN, ref=str(out), digest=fmt,
            )  # fmt: skip
    return text


@dataclass(frozen=True)
class Posted:
    currency: str
    journal_id: str
    action: str  # created, updated, unchanged, posted (by the accountant: left alone)


def _digest(journal: XeroJournal) -> str:
    lines = [[ln.account_code, ln.description, str(ln.amount)] for ln in journal.lines]
    data = [journal.narration, journal.date.isoformat(), lines]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()


def _same(found: Found, xj: XeroJournal) -> bool:
    mine = [(ln.account_code, ln.description, ln.amount) for ln in xj.lines]
    theirs = [(ln.account_code, ln.description, ln.amount) for ln in found.lines]
    return found.date == xj.date and sorted(mine) == sorted(theirs)


def _made_before(books: Books, xj: XeroJournal) -> str | None:
    """The id of a DRAFT that a stopped run made for ``xj``, if Xero has one."""
    for found in books.find_journals(xj.narration):
        if found.status == XERO_DRAFT and _same(found, xj):
            return found.journal_id
    return None


def _check_codes(books: Books, journals: Sequence[XeroJournal]) -> None:
    from bot.errors import ConfigError

    known = books.account_codes()
    missing = sorted({ln.account_code for j in journals for ln in j.lines} - known)
    if missing:
        raise ConfigError(
            f"Xero's chart of accounts has no account {', '.join(missing)}; add it in Xero "
            "(Accounting > Chart of accounts) or map ACCOUNTING_ACCOUNTS to codes it has, "
            "e.g. sales=200,fees=404,clearing=610,bank=090"
        )


def post_to_xero(ledger: Ledger, books: Books, journals: Sequence[Journal]) -> list[Posted]:
    """Post (or update) each currency's DRAFT manual journal, once; see the module's rule."""
    todo = [(j, xero_journal(j)) for j in journals if not j.is_empty]
    _check_codes(books, [x for _, x in todo])
    out: list[Posted] = []
    for j, xj in todo:
        out.append(_post_one(ledger, books, j, xj))
    posted = [p for p in out if p.action == "posted"]
    if posted:
        which = ", ".join(f"{p.currency.upper()} ({p.journal_id})" for p in posted)
        raise ServiceError(
            f"the {journals[0].month} journal in {which} was posted by your accountant in Xero; "
            "revbot never changes a posted journal: correct it in Xero if the figures moved"
        )
    return out


def _post_one(ledger: Ledger, books: Books, j: Journal, xj: XeroJournal) -> Posted:
    digest = _digest(xj)
    found = [r for r in store.journal_records(ledger, j.month) if r.currency == j.currency]
    rec = next((r for r in found if r.target == store.XERO), None)

    def record(state: str, ref: str | None, key: str | None, dig: str | None) -> None:
        store.record_journal(
            ledger, month=j.month, currency=j.currency, target=store.XERO, state=state,
            ref=ref, idempotency_key=key, digest=dig,
        )  # fmt: skip

    if rec is not None and rec.ref and rec.state in (store.DRAFT, store.POSTED):
        status = books.journal_status(rec.ref)
        if status is not None and status not in XERO_GONE:
            if status != XERO_DRAFT:
                record(store.POSTED, rec.ref, rec.idempotency_key, rec.digest)
                return Posted(j.currency, rec.ref, "posted")
            if rec.digest == digest and rec.state == store.DRAFT:
                return Posted(j.currency, rec.ref, "unchanged")
            books.update_draft(rec.ref, xj)
            record(store.DRAFT, rec.ref, rec.idempotency_key, digest)
            return Posted(j.currency, rec.ref, "updated")
        rec = None  # the draft was deleted in Xero: make it again
    if rec is not None and rec.state == store.POSTING and rec.idempotency_key:
        # A run stopped after asking Xero. Xero keeps an Idempotency-Key for minutes only, so
        # first look for the draft it may have made: this narration, date and these lines.
        made = _made_before(books, xj)
        if made is not None:
            record(store.DRAFT, made, rec.idempotency_key, digest)
            return Posted(j.currency, made, "created")
        # Not there: the same key gives back the journal Xero made, if it made one.
        key, sent = rec.idempotency_key, rec.digest
    else:
        key, sent = f"revbot-{j.month}-{j.currency}-{uuid.uuid4().hex}", digest
        record(store.POSTING, None, key, digest)
    journal_id = books.create_draft(xj, idempotency_key=key)
    record(store.DRAFT, journal_id, key, sent)
    if sent != digest:  # the journal changed since that first try
        books.update_draft(journal_id, xj)
        record(store.DRAFT, journal_id, key, digest)
    log.info("posted the %s journal in %s to Xero as draft %s", j.month, j.currency, journal_id)
    return Posted(j.currency, journal_id, "created")
