"""`revbot journal` end to end: a backfill and the monthly reports of the sandbox account, then
each closed month as a journal in every format, and posted to a fake Xero (real xero-python SDK
over HTTP on 127.0.0.1), once.

The Monthly rows the totals are checked against are read from the workbook's Monthly tab, the
way a founder sees them; the column names from the importers' documented lists, copied here.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from bot.periods import Month
from bot.sandbox import BillingApi, SandboxAccount, SandboxBilling, SandboxServer
from tests.conftest import REPO, TEST_KEY, Cli, today_utc
from tests.fakes.xero_server import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    FakeAccount,
    FakeXeroServer,
)

LAST = Month.of(today_utc()).previous()
# Every month the 75-day sandbox account has: the first one only in part (Stripe's data starts
# in it, so its report covers what there is).
DAYS = 75
MONTHS = tuple(
    m
    for m in (LAST.previous().previous(), LAST.previous(), LAST)
    if m.last_day >= today_utc() - timedelta(days=DAYS)
)
# Xero's manual journal import template (help.xero.com/nz/ManualJournalsImport) and QuickBooks
# Online's journal entry import (quickbooks.intuit.com, "Import journal entries").
XERO_COLUMNS = ["*Narration", "*Date", "Description", "*AccountCode", "*TaxRate", "*Amount",
                "TrackingName1", "TrackingOption1", "TrackingName2", "TrackingOption2"]  # fmt: skip
QUICKBOOKS_COLUMNS = ["Journal No", "Journal Date", "Currency", "Memo", "Account Name", "Debits",
                      "Credits", "Description", "Name", "Location", "Class"]  # fmt: skip
MONTHLY_KEYS = {"gross_revenue": "sales", "refunds": "refunds", "disputes": "disputes",
                "stripe_fees": "fees", "other": "other"}  # fmt: skip
CODES = {"sales": "200", "refunds": "210", "disputes": "220", "fees": "404", "other": "260",
         "clearing": "615", "bank": "090"}  # fmt: skip
MAPPING = ",".join(f"{k}={v}" for k, v in CODES.items())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data dir with every closed month of the sandbox backfilled and reported."""
    account = SandboxAccount.generate(end=today_utc(), days=DAYS, tz="UTC", seed=11)
    billing = SandboxBilling.generate(end=today_utc(), seed=11, tz="UTC")
    work = tmp_path_factory.mktemp("journal") / "work"
    work.mkdir()
    with SandboxServer(account, billing=BillingApi(billing)) as server:
        cli = Cli(work, {"STRIPE_SECRET_KEY": TEST_KEY, "STRIPE_API_BASE": server.url,
                         "DATA_DIR": str(work / "data"), "REPORT_TIMEZONE": "UTC"})  # fmt: skip
        run = cli("backfill", "--since", MONTHS[0].first_day.isoformat())
        assert run.exit_code == 0, run.stderr
        for month in MONTHS:
            run = cli("monthly", "--month", str(month), "--no-send")
            assert run.exit_code == 0, run.stderr
    yield work / "data"


@pytest.fixture
def xero() -> Iterator[FakeXeroServer]:
    accounts = [FakeAccount(code, f"Account {key}", "CURRENT") for key, code in CODES.items()]
    with FakeXeroServer(accounts=accounts) as server:
        yield server


@pytest.fixture
def books_cli(prepared: Path, tmp_path: Path, xero: FakeXeroServer) -> Cli:
    """revbot on a copy of the prepared ledger; no Stripe key needed for journals."""
    data = tmp_path / "data"
    shutil.copytree(prepared, data)
    return Cli(tmp_path, {"DATA_DIR": str(data), "REPORT_TIMEZONE": "UTC",
                          "ACCOUNTING_ACCOUNTS": MAPPING, "XERO_CLIENT_ID": DEFAULT_CLIENT_ID,
                          "XERO_CLIENT_SECRET": DEFAULT_CLIENT_SECRET, "XERO_API_URL": xero.url,
                          "XERO_IDENTITY_URL": xero.url})  # fmt: skip


def monthly_tab(data: Path) -> dict[tuple[str, str], dict[str, Decimal]]:
    ws = load_workbook(data / "dashboard.xlsx", read_only=True)["Monthly"]
    rows = ws.iter_rows(values_only=True)
    header = list(next(rows))
    out = {}
    for row in rows:
        r = dict(zip(header, row, strict=False))
        out[(str(r["month"]), str(r["currency"]))] = {
            k: Decimal(str(r[k] or 0)) for k in (*MONTHLY_KEYS, "net_revenue", "payouts")
        }
    return out


def journal_file(cli: Cli, month: Month, fmt: str, tmp_path: Path) -> list[dict[str, str]]:
    out = tmp_path / f"{month}-{fmt}.csv"
    run = cli("journal", "--month", str(month), "--format", fmt, "--out", str(out))
    assert run.exit_code == 0, run.stderr
    text = out.read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    return [{"__columns__": ",".join(reader.fieldnames or [])}, *rows]


def test_every_format_balances_per_currency_and_equals_the_monthly_row(
    books_cli: Cli, tmp_path: Path
) -> None:
    monthly = monthly_tab(Path(books_cli.env["DATA_DIR"]))
    for month in MONTHS:
        want = {ccy: row for (m, ccy), row in monthly.items() if m == str(month)}
        assert want, f"{month} has Monthly rows"
        # The plain csv: exact, each account's total is its Monthly column.
        head, *rows = journal_file(books_cli, month, "csv", tmp_path)
        per: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
        for r in rows:
            debit, credit = Decimal(r["debit"] or 0), Decimal(r["credit"] or 0)
            assert (debit > 0) != (credit > 0), r
            per[r["currency"].upper()][r["account_key"]] += debit - credit
            assert r["account_code"] == CODES[r["account_key"]]
        assert set(per) == {c for c, row in want.items() if any(row.values())}
        for ccy, accounts in per.items():
            assert sum(accounts.values()) == 0, (month, ccy)
            for column, key in MONTHLY_KEYS.items():
                assert -accounts.get(key, Decimal(0)) == want[ccy][column], (month, ccy, column)
            assert -accounts.get("bank", Decimal(0)) == want[ccy]["payouts"], (month, ccy)
            # The clearing account takes net revenue plus payouts.
            assert accounts.get("clearing", Decimal(0)) == (
                want[ccy]["net_revenue"] + want[ccy]["payouts"]
            )
        # Xero's import: Σ Amount = 0 per journal (Narration), 2 decimals at most.
        head, *rows = journal_file(books_cli, month, "xero", tmp_path)
        assert head["__columns__"].split(",") == XERO_COLUMNS
        by_narration: dict[str, Decimal] = defaultdict(Decimal)
        for r in rows:
            for name in ("*Narration", "*Date", "*AccountCode", "*TaxRate", "*Amount"):
                assert r[name], (name, r)
            amount = Decimal(r["*Amount"])
            assert amount == amount.quantize(Decimal("0.01"))
            by_narration[r["*Narration"]] += amount
        assert len(by_narration) == len(per) and all(v == 0 for v in by_narration.values())
        # QuickBooks: Σ Debits = Σ Credits per Journal No.
        head, *rows = journal_file(books_cli, month, "quickbooks", tmp_path)
        assert head["__columns__"].split(",") == QUICKBOOKS_COLUMNS
        sides: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
        for r in rows:
            for name in ("Journal No", "Journal Date", "Account Name"):
                assert r[name], (name, r)
            sides[r["Journal No"]][0] += Decimal(r["Debits"] or 0)
            sides[r["Journal No"]][1] += Decimal(r["Credits"] or 0)
        assert len(sides) == len(per) and all(d == c for d, c in sides.values())


def test_a_month_not_reported_yet_exits_75_and_says_so(books_cli: Cli) -> None:
    this_month = Month.of(today_utc())
    run = books_cli("journal", "--month", str(this_month))
    assert run.exit_code == 75
    assert run.stderr.count("\n") == 1 and "not reported yet" in run.stderr
    assert "Traceback" not in run.stderr


def test_bad_accounts_or_format_are_one_line(books_cli: Cli) -> None:
    run = books_cli("journal", "--month", str(LAST), env={"ACCOUNTING_ACCOUNTS": "sales=200,tea=1"})
    assert run.exit_code == 78 and "ACCOUNTING_ACCOUNTS" in run.stderr
    run = books_cli("journal", "--month", str(LAST), "--format", "sage")
    assert run.exit_code == 2 and "--format" in run.stderr


def _drafts(xero: FakeXeroServer) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for j in xero.journals:
        out[j.narration].append(j)
    return out


def test_to_xero_twice_leaves_one_draft_per_month_and_currency(
    books_cli: Cli, xero: FakeXeroServer
) -> None:
    for month in MONTHS:
        first = books_cli("journal", "--month", str(month), "--to", "xero")
        assert first.exit_code == 0, first.stderr
        assert "created" in first.stdout
    drafts = _drafts(xero)
    monthly = monthly_tab(Path(books_cli.env["DATA_DIR"]))
    currencies = {(m, c) for (m, c), row in monthly.items() if any(row.values())}
    assert len(drafts) == len(currencies)
    assert all(len(js) == 1 and js[0].status == "DRAFT" for js in drafts.values())
    for month in MONTHS:
        again = books_cli("journal", "--month", str(month), "--to", "xero")
        assert again.exit_code == 0, again.stderr
        assert "unchanged" in again.stdout and "created" not in again.stdout
    assert _drafts(xero).keys() == drafts.keys()
    assert all(len(js) == 1 for js in _drafts(xero).values())
    assert xero.violations == []
    status = books_cli("status")
    assert f"journal {LAST} USD (xero): posted to Xero as draft" in status.stdout


def test_a_journal_the_accountant_posted_is_never_changed(
    books_cli: Cli, xero: FakeXeroServer
) -> None:
    assert books_cli("journal", "--month", str(LAST), "--to", "xero").exit_code == 0
    posted = next(j for j in xero.journals if "(USD)" in j.narration)
    xero.post_as_accountant(posted.journal_id)
    before = {j.journal_id: (j.status, j.versions, j.lines) for j in xero.journals}
    # Even with other account codes (the journal would change), a posted one stays as it is.
    again = books_cli("journal", "--month", str(LAST), "--to", "xero",
                      env={"ACCOUNTING_ACCOUNTS": MAPPING.replace("other=260", "other=615")})  # fmt: skip
    assert again.exit_code == 1
    assert again.stderr.count("\n") == 1 and "posted by your accountant" in again.stderr
    after = {j.journal_id: (j.status, j.versions, j.lines) for j in xero.journals}
    assert after[posted.journal_id] == before[posted.journal_id]
    assert len(after) == len(before)
    status = books_cli("status")
    assert f"journal {LAST} USD (xero): posted by the accountant" in status.stdout


def test_a_wrong_secret_exits_78_in_one_line_without_the_secret(books_cli: Cli) -> None:
    wrong = "nOt-ThE-sEcReT-" + "x" * 20
    run = books_cli("journal", "--month", str(LAST), "--to", "xero",
                    env={"XERO_CLIENT_SECRET": wrong})  # fmt: skip
    assert run.exit_code == 78
    assert run.stderr.count("\n") == 1 and "XERO_CLIENT_SECRET" in run.stderr
    assert wrong not in run.stderr + run.stdout


def test_killed_between_the_post_and_its_record_leaves_no_duplicate(
    books_cli: Cli, xero: FakeXeroServer
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "XERO_"))}
    env.update({k: v for k, v in books_cli.env.items() if v is not None})
    child = subprocess.Popen(
        [sys.executable, "-m", "bot", "journal", "--month", str(LAST), "--to", "xero"],
        cwd=books_cli.cwd, env={**env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    killed: list[str] = []

    def kill(journal_id: str, key: str | None) -> None:
        killed.append(journal_id)
        os.kill(child.pid, signal.SIGKILL)

    xero.on_created = kill
    try:
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    xero.on_created = None
    assert killed and child.returncode == -signal.SIGKILL
    assert len(xero.journals) == 1
    # Xero has forgotten the key by now (it keeps one for minutes): found by what it holds.
    xero.expire_idempotency_keys()
    run = books_cli("journal", "--month", str(LAST), "--to", "xero")
    assert run.exit_code == 0, run.stderr
    drafts = _drafts(xero)
    assert all(len(js) == 1 for js in drafts.values())
    assert killed[0] in {j.journal_id for j in xero.journals}


def test_doctor_checks_the_xero_connection_and_the_accounts(books_cli: Cli) -> None:
    run = books_cli("doctor")
    assert "[ok  ] Xero: connected to" in run.stdout
    assert "[ok  ] Xero accounts" in run.stdout
    run = books_cli("doctor", env={"ACCOUNTING_ACCOUNTS": MAPPING.replace("bank=090", "bank=999")})
    assert "[FAIL] Xero accounts" in run.stdout and "bank=999" in run.stdout
