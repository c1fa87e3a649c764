"""Bad input (issue 7, item 4): one line on stderr, the right exit code, nothing half-written.

:data:`CASES` is also the README's table: ``docs/bad-input.md`` is rendered from it (and a
test keeps the two equal), so the table shows exactly the messages these tests assert.
Regenerate it with ``.venv/bin/python -m tests.test_bad_input > docs/bad-input.md``.

In a message, ``<today>``, ``<DATA_DIR>`` and the like stand for what varies from run to run;
the tests substitute the real values and compare the whole line.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from bot.ledger import Ledger
from bot.periods import Month
from bot.sandbox import SandboxServer
from tests.conftest import REPO, TEST_KEY, Cli, days_ago, today_utc

DOC = REPO / "docs" / "bad-input.md"
SHEET_ID = "1BadInputSheet0123456789abcdefghijklmnopqrst"
SHEET_ENV = {"GOOGLE_SHEET_ID": SHEET_ID, "GOOGLE_APPLICATION_CREDENTIALS": "credentials.json"}
MAIL_ENV = {
    "EMAIL_FROM": "Acme Finance <finance@acme.example>",
    "INVESTOR_EMAILS": "ann@fund.example",
}
CREDS_FIX = "create a service-account JSON key and set GOOGLE_APPLICATION_CREDENTIALS to its path"
LEDGER_FIX = (
    "move it aside and restore a backup, or move it aside and run `revbot backfill` to rebuild it "
    "(the send history would be lost)"
)


def tokens() -> dict[str, str]:
    """What the ``<...>`` of the messages stand for today."""
    this = Month.of(today_utc())
    return {
        "<today>": today_utc().isoformat(),
        "<yesterday>": days_ago(1).isoformat(),
        "<5 days ago>": days_ago(5).isoformat(),
        "<in 5 days>": days_ago(-5).isoformat(),
        "<this month>": str(this),
        "<next month>": str(this.next()),
        "<last month>": str(this.previous()),
    }


@dataclass(frozen=True)
class Case:
    """One bad input: what the user does, and exactly what revbot answers."""

    id: str
    shown: str  # the input column of the table
    args: tuple[str, ...]
    code: int
    message: str  # the stderr line after "revbot: "
    env: Mapping[str, str | None] = field(default_factory=dict)
    # Writes files into the working directory first (a bad key file, a corrupt ledger).
    setup: Callable[[Path], None] | None = None

    def argv(self) -> list[str]:
        t = tokens()
        return [t.get(a, a) for a in self.args]


def _creds(text: str) -> Callable[[Path], None]:
    return lambda cwd: (cwd / "credentials.json").write_text(text)


def _bad_key(cwd: Path) -> None:
    (cwd / "credentials.json").write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "0" * 40,
        "private_key": "-----BEGIN PRIVATE KEY-----\nTm90IGEga2V5\n-----END PRIVATE KEY-----\n",
        "client_email": "revbot@p.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }))  # fmt: skip


def _file_in_the_way(cwd: Path) -> None:
    (cwd / "not-a-dir").write_text("a regular file\n")


def _corrupt_ledger(cwd: Path) -> None:
    (cwd / "data").mkdir()
    # A SQLite header followed by garbage: what a disk error or a half-copied backup leaves.
    (cwd / "data" / "state.sqlite").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16)


def _ledger_meta(version: str) -> Callable[[Path], None]:
    """A ledger whose schema_version says ``version``."""

    def setup(cwd: Path) -> None:
        (cwd / "data").mkdir()
        Ledger.open(cwd / "data" / "state.sqlite").close()
        conn = sqlite3.connect(cwd / "data" / "state.sqlite")
        with conn:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
        conn.close()

    return setup


def _bad_workbook(cwd: Path) -> None:
    (cwd / "data").mkdir()
    (cwd / "data" / "dashboard.xlsx").write_bytes(
        b"PK\x03\x04 saved by something that is not Excel"
    )


DAY = "<5 days ago>"

CASES = [
    # -- dates and months --------------------------------------------------------------
    Case("date-not-a-day", "`daily --date 2026-13-01`", ("daily", "--date", "2026-13-01"), 2,
         "--date '2026-13-01' is not a real calendar date; use YYYY-MM-DD, e.g. 2026-10-31"),
    Case("date-feb-30", "`daily --date 2026-02-30`", ("daily", "--date", "2026-02-30"), 2,
         "--date '2026-02-30' is not a real calendar date; use YYYY-MM-DD, e.g. 2026-10-31"),
    Case("date-format", "`daily --date 31/10/2026`", ("daily", "--date", "31/10/2026"), 2,
         "--date '31/10/2026' is not a date; use YYYY-MM-DD, e.g. 2026-10-31"),
    Case("since-word", "`backfill --since yesterday`", ("backfill", "--since", "yesterday"), 2,
         "--since 'yesterday' is not a date; use YYYY-MM-DD, e.g. 2026-10-31"),
    Case("date-today", "`daily --date <today>` (not finished yet)", ("daily", "--date", "<today>"), 2,
         "--date <today> is today in UTC; only finished days can be synced (the latest is <yesterday>)"),
    Case("date-future", "`daily --date <in 5 days>`", ("daily", "--date", "<in 5 days>"), 2,
         "--date <in 5 days> is in the future in UTC; only finished days can be synced (the latest "
         "is <yesterday>)"),
    Case("until-today", "`backfill --since <5 days ago> --until <today>`",
         ("backfill", "--since", DAY, "--until", "<today>"), 2,
         "--until <today> is today in UTC; only finished days can be synced (the latest is <yesterday>)"),
    Case("until-before-since", "`backfill --since <yesterday> --until <5 days ago>`",
         ("backfill", "--since", "<yesterday>", "--until", DAY), 2,
         "--until <5 days ago> is before --since <yesterday>; swap them"),
    Case("month-13", "`monthly --month 2026-13`", ("monthly", "--month", "2026-13"), 2,
         "--month '2026-13' is not a month; use YYYY-MM, e.g. 2026-10"),
    Case("month-format", "`resend --month 2026-1`", ("resend", "--month", "2026-1"), 2,
         "--month '2026-1' is not a month; use YYYY-MM, e.g. 2026-10"),
    Case("month-current", "`monthly --month <this month>` (not closed yet)",
         ("monthly", "--month", "<this month>"), 2,
         "--month <this month> is the current month in UTC; only closed months can be reported "
         "(the latest is <last month>)"),
    Case("month-future", "`monthly --month <next month>`", ("monthly", "--month", "<next month>"), 2,
         "--month <next month> is in the future in UTC; only closed months can be reported (the "
         "latest is <last month>)"),
    Case("date-year-1", "`daily --date 0001-01-01`", ("daily", "--date", "0001-01-01"), 2,
         "--date 0001-01-01 is before Stripe existed; use a day from 2010-01-01 on, e.g. 2026-10-31"),
    Case("date-before-epoch", "`daily --date 1969-12-31`", ("daily", "--date", "1969-12-31"), 2,
         "--date 1969-12-31 is before Stripe existed; use a day from 2010-01-01 on, e.g. 2026-10-31"),
    Case("since-year-1", "`backfill --since 0001-01-01 --until 0001-01-02`",
         ("backfill", "--since", "0001-01-01", "--until", "0001-01-02"), 2,
         "--since 0001-01-01 is before Stripe existed; use a day from 2010-01-01 on, e.g. 2026-10-31"),
    Case("until-year-1", "`backfill --since <5 days ago> --until 0001-01-02`",
         ("backfill", "--since", DAY, "--until", "0001-01-02"), 2,
         "--until 0001-01-02 is before Stripe existed; use a day from 2010-01-01 on, e.g. 2026-10-31"),
    Case("month-before-stripe", "`monthly --month 2009-12`", ("monthly", "--month", "2009-12"), 2,
         "--month 2009-12 is before Stripe existed; use a month from 2010-01 on, e.g. 2026-10"),
    # -- journal --------------------------------------------------------------------------
    Case("journal-format", "`journal --month <last month> --format sage`",
         ("journal", "--month", "<last month>", "--format", "sage"), 2,
         "--format 'sage' is not a journal format; use csv, xero, quickbooks"),
    Case("journal-to", "`journal --month <last month> --to sheets`",
         ("journal", "--month", "<last month>", "--to", "sheets"), 2,
         "--to 'sheets' is not where revbot posts journals; use --to xero"),
    Case("accounting-accounts", "`ACCOUNTING_ACCOUNTS=sales=200,tea=1`",
         ("journal", "--month", "<last month>"), 78,
         "ACCOUNTING_ACCOUNTS: unknown key 'tea'; use sales, refunds, disputes, fees, other, "
         "clearing, bank, e.g. sales=200,fees=404,clearing=610,bank=090",
         env={"ACCOUNTING_ACCOUNTS": "sales=200,tea=1"}),
    Case("xero-unset", "`journal --month <last month> --to xero` without Xero settings",
         ("journal", "--month", "<last month>", "--to", "xero"), 78,
         "XERO_CLIENT_ID and XERO_CLIENT_SECRET are not set; `journal --to xero` needs a Xero "
         "Custom Connection (developer.xero.com > My Apps > New app > Custom connection, scope "
         "accounting.transactions and accounting.settings.read): put its client id and secret in "
         "the environment or .env"),
    Case("xero-url", "`XERO_API_URL=api.xero.local`", ("journal", "--month", "<last month>"), 78,
         "XERO_API_URL='api.xero.local' is not a URL; use e.g. http://127.0.0.1:12111",
         env={"XERO_API_URL": "api.xero.local"}),
    Case("journal-not-reported", "`journal --month <last month>` before any report",
         ("journal", "--month", "<last month>"), 75,
         "<last month> is not reported yet, so it has no journal (no ledger at "
         "<cwd>/data/state.sqlite); run `revbot backfill --since <last month>-01` and `revbot "
         "monthly --month <last month>` first"),
    # -- the Stripe key and mode -------------------------------------------------------
    Case("publishable-key", "`STRIPE_SECRET_KEY=pk_live_…` (a publishable key)", ("daily",), 78,
         "STRIPE_SECRET_KEY is a publishable key (pk_live_…wxyz); revbot needs a secret (sk_) or "
         "restricted (rk_) key from the Stripe Dashboard, Developers > API keys",
         env={"STRIPE_SECRET_KEY": "pk_live_" + "abcdefghijklmnopqrstuvwxyz"}),
    Case("truncated-key", "`STRIPE_SECRET_KEY=sk_test_abc` (cut short)", ("daily",), 78,
         "STRIPE_SECRET_KEY (sk_test_…) is not a Stripe secret or restricted key (sk_live_…, "
         "sk_test_…, rk_live_…, rk_test_…); copy it again, whole",
         env={"STRIPE_SECRET_KEY": "sk_test_abc"}),
    Case("key-with-junk", "`STRIPE_SECRET_KEY='sk_test_… extra'` (pasted with more text)", ("daily",), 78,
         "STRIPE_SECRET_KEY (sk_test_…xtra) is not a Stripe secret or restricted key (sk_live_…, "
         "sk_test_…, rk_live_…, rk_test_…); copy it again, whole",
         env={"STRIPE_SECRET_KEY": TEST_KEY + " extra"}),
    Case("test-key-live-mode", "a `sk_test_` key with `STRIPE_MODE=live`", ("daily",), 78,
         "STRIPE_MODE=live but STRIPE_SECRET_KEY is a test-mode key (sk_test_…0001); use a live key "
         "or set STRIPE_MODE=test", env={"STRIPE_MODE": "live"}),
    Case("mode-unknown", "`STRIPE_MODE=prod`", ("daily",), 78,
         "STRIPE_MODE='prod' must be 'live' or 'test' (or unset)", env={"STRIPE_MODE": "prod"}),
    Case("mode-pasted-key", "a key pasted into `STRIPE_MODE`", ("daily",), 78,
         "STRIPE_MODE (value not shown) must be 'live' or 'test' (or unset)",
         env={"STRIPE_MODE": TEST_KEY}),
    Case("api-base-not-url", "`STRIPE_API_BASE=localhost:12111`", ("daily",), 78,
         "STRIPE_API_BASE='localhost:12111' is not a URL; use e.g. http://127.0.0.1:12111",
         env={"STRIPE_API_BASE": "localhost:12111"}),
    Case("max-rps", "`STRIPE_MAX_RPS=fast`", ("daily",), 78,
         "STRIPE_MAX_RPS='fast' must be a number of requests per second in (0.1, 100]",
         env={"STRIPE_MAX_RPS": "fast"}),
    Case("max-rps-tiny", "`STRIPE_MAX_RPS=0.0001`", ("daily",), 78,
         "STRIPE_MAX_RPS='0.0001' must be a number of requests per second in (0.1, 100]",
         env={"STRIPE_MAX_RPS": "0.0001"}),
    Case("max-rps-underflow", "`STRIPE_MAX_RPS=1e-300`", ("daily",), 78,
         "STRIPE_MAX_RPS='1e-300' must be a number of requests per second in (0.1, 100]",
         env={"STRIPE_MAX_RPS": "1e-300"}),
    Case("transactions-days", "`SHEET_TRANSACTIONS_DAYS=a year`", ("daily",), 78,
         "SHEET_TRANSACTIONS_DAYS='a year' must be a whole number of days, e.g. 400 (0: no "
         "Transactions tab)",
         env={"SHEET_TRANSACTIONS_DAYS": "a year"}),
    # -- time zone ---------------------------------------------------------------------
    Case("unknown-zone", "`REPORT_TIMEZONE=Europe/Atlantis`", ("daily",), 78,
         "REPORT_TIMEZONE='Europe/Atlantis' is not an IANA time zone; use e.g. UTC or Europe/Berlin",
         env={"REPORT_TIMEZONE": "Europe/Atlantis"}),
    Case("zone-path", "`REPORT_TIMEZONE=../../etc/passwd`", ("daily",), 78,
         "REPORT_TIMEZONE='../../etc/passwd' is not an IANA time zone; use e.g. UTC or Europe/Berlin",
         env={"REPORT_TIMEZONE": "../../etc/passwd"}),
    # -- Google Sheets -----------------------------------------------------------------
    Case("sheet-id", "`GOOGLE_SHEET_ID=https://example.com/sheet 1`", ("daily",), 78,
         "GOOGLE_SHEET_ID 'https://example.com/sheet 1' is neither a spreadsheet id nor a "
         "https://docs.google.com/spreadsheets/d/<id>/edit URL",
         env={**SHEET_ENV, "GOOGLE_SHEET_ID": "https://example.com/sheet 1"}, setup=_bad_key),
    Case("creds-missing", "no `credentials.json`", ("daily",), 78,
         f"Google credentials file <cwd>/credentials.json not found: {CREDS_FIX}", env=SHEET_ENV),
    Case("creds-not-json", "a `credentials.json` that is not JSON", ("daily",), 78,
         f"<cwd>/credentials.json is not JSON: {CREDS_FIX}", env=SHEET_ENV,
         setup=_creds('{"type": "service_account", "private_key": "-----BEGIN')),
    Case("creds-wrong-type", "a `credentials.json` that is an OAuth client, not a service account",
         ("daily",), 78,
         f"<cwd>/credentials.json is not a service-account key (type 'authorized_user'): {CREDS_FIX}",
         env=SHEET_ENV, setup=_creds(json.dumps({"type": "authorized_user", "client_id": "x"}))),
    Case("creds-bad-key", "a `credentials.json` whose `private_key` is damaged", ("daily",), 78,
         "<cwd>/credentials.json has an unusable private_key: download a new JSON key for "
         "revbot@p.iam.gserviceaccount.com and point GOOGLE_APPLICATION_CREDENTIALS at it",
         env=SHEET_ENV, setup=_bad_key),
    # -- email -------------------------------------------------------------------------
    Case("investor-address", "`INVESTOR_EMAILS=ann@fund.example, bob@`",
         ("monthly", "--month", "<last month>"), 78,
         "INVESTOR_EMAILS: 'bob@' is not an email address (expected name@domain.tld)",
         env={**MAIL_ENV, "INVESTOR_EMAILS": "ann@fund.example, bob@"}),
    Case("no-sender", "`INVESTOR_EMAILS` set, `EMAIL_FROM` missing",
         ("monthly", "--month", "<last month>"), 78,
         "EMAIL_FROM is not set; set it to the sender, e.g. 'Acme Finance <finance@acme.com>' (or "
         "use --no-send)", env={**MAIL_ENV, "EMAIL_FROM": None}),
    Case("bad-sender", "`EMAIL_FROM=Acme <finance@acme>`", ("monthly", "--month", "<last month>"), 78,
         "EMAIL_FROM: 'Acme <finance@acme>' is not an email address (expected name@domain.tld)",
         env={**MAIL_ENV, "EMAIL_FROM": "Acme <finance@acme>"}),
    Case("encoded-sender", "`EMAIL_FROM==?utf-8?q?Acme?= <finance@acme.example>`",
         ("monthly", "--month", "<last month>"), 78,
         "EMAIL_FROM: '=?utf-8?q?Acme?= <finance@acme.example>' has an encoded display name "
         "(=?...?=); write the name as plain text",
         env={**MAIL_ENV, "EMAIL_FROM": "=?utf-8?q?Acme?= <finance@acme.example>"}),
    # -- DATA_DIR and its files --------------------------------------------------------
    Case("data-dir-is-a-file", "`DATA_DIR` that is a file", ("daily",), 78,
         "DATA_DIR <cwd>/not-a-dir is a file, not a folder; point DATA_DIR at a folder (revbot "
         "creates it if it does not exist)",
         env={"DATA_DIR": "not-a-dir"}, setup=_file_in_the_way),
    Case("data-dir-unwritable", "`DATA_DIR` that cannot be created (a file is in the way)",
         ("daily",), 78,
         "DATA_DIR <cwd>/not-a-dir/data is not writable (Not a directory); point DATA_DIR at a "
         "folder revbot may write to",
         env={"DATA_DIR": "not-a-dir/data"}, setup=_file_in_the_way),
    Case("ledger-corrupt", "a corrupt `DATA_DIR/state.sqlite`", ("daily", "--date", DAY), 1,
         f"<cwd>/data/state.sqlite is not a readable revbot ledger (file is not a database); {LEDGER_FIX}",
         setup=_corrupt_ledger),
    Case("ledger-schema-word", "a ledger whose `schema_version` is `abc`", ("daily", "--date", DAY), 1,
         "<cwd>/data/state.sqlite has schema_version 'abc', which no revbot writes; move it aside "
         "and restore a backup", setup=_ledger_meta("abc")),
    Case("ledger-newer-dry-run", "`daily --dry-run` on a ledger from a newer revbot",
         ("daily", "--date", DAY, "--dry-run"), 1,
         "<cwd>/data/state.sqlite was written by a newer revbot (schema 99); upgrade revbot",
         setup=_ledger_meta("99")),
    Case("ledger-newer-preview", "`preview` on a ledger from a newer revbot",
         ("preview", "--month", "<last month>"), 1,
         "<cwd>/data/state.sqlite was written by a newer revbot (schema 99); upgrade revbot",
         setup=_ledger_meta("99")),
    Case("workbook-invalid", "a `DATA_DIR/dashboard.xlsx` that is not an xlsx file",
         ("daily", "--date", DAY), 1,
         "<cwd>/data/dashboard.xlsx is not a valid xlsx workbook (BadZipFile); move it aside and "
         "run `revbot daily` again to rebuild it from the ledger", setup=_bad_workbook),
]  # fmt: skip


def expected_line(case: Case, cwd: Path) -> re.Pattern[str]:
    values = tokens() | {"<cwd>": str(cwd)}
    pattern = re.escape("revbot: " + case.message)
    for token, value in values.items():
        pattern = pattern.replace(re.escape(token), re.escape(value))
    return re.compile(pattern)


def files(root: Path) -> dict[str, str]:
    """Every file under ``root`` and a digest of its bytes."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(cli: Cli, case: Case) -> None:
    cwd = cli.cwd
    env: dict[str, str | None] = {"DATA_DIR": str(cwd / "data")}
    env.update(case.env)
    if case.setup is not None:
        case.setup(cwd)
    before = files(cwd)
    run = cli(*case.argv(), env=env)
    assert run.exit_code == case.code, (run.stdout, run.stderr)
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, run.stderr
    assert expected_line(case, cwd).fullmatch(lines[0]), lines[0]
    assert "Traceback" not in run.stdout + run.stderr
    assert TEST_KEY not in run.stdout + run.stderr
    after = files(cwd)
    if case.id == "workbook-invalid":
        # The sync was committed and its days stay queued for the dashboard; the bad
        # workbook itself is left exactly as it was.
        assert after["data/dashboard.xlsx"] == before["data/dashboard.xlsx"]
        ledger = Ledger.open(cwd / "data" / "state.sqlite", read_only=True)
        assert days_ago(5) in ledger.pending_dashboard_days("UTC")
        ledger.close()
        assert not any(name.startswith("data/.dashboard") for name in after)  # no temp file
    else:
        # Nothing written at all (a lock file at most, when the lock was taken first).
        after.pop("data/revbot.lock", None)
        assert after == before


def not_due(sandbox: SandboxServer) -> None:
    """The closed month's reports are not ready: `daily` defers it, these tests are not about it."""
    sandbox.data_available_end = int(
        datetime.combine(
            Month.of(today_utc()).first_day - timedelta(days=1), time(), UTC
        ).timestamp()
    )


def test_a_corrupt_ledger_is_never_started_over(cli: Cli, sandbox: SandboxServer) -> None:
    not_due(sandbox)
    _corrupt_ledger(cli.cwd)
    ledger = cli.cwd / "data" / "state.sqlite"
    digest = hashlib.sha256(ledger.read_bytes()).hexdigest()
    for args in (
        ("daily",),
        ("status",),
        ("monthly", "--no-send"),
        ("backfill", "--since", days_ago(3).isoformat()),
    ):
        run = cli(*args)
        assert run.exit_code == 1 and "is not a readable revbot ledger" in run.stderr, (
            args,
            run.stderr,
        )
    assert hashlib.sha256(ledger.read_bytes()).hexdigest() == digest
    # The way out the message gives works.
    ledger.rename(ledger.with_name("state.sqlite.broken"))
    run = cli("daily", "--date", days_ago(2).isoformat())
    assert run.exit_code == 0, run.stderr


def test_a_bad_workbook_moved_aside_is_started_again(cli: Cli, sandbox: SandboxServer) -> None:
    not_due(sandbox)
    _bad_workbook(cli.cwd)
    day = days_ago(5).isoformat()
    assert cli("daily", "--date", day).exit_code == 1
    book = cli.cwd / "data" / "dashboard.xlsx"
    shutil.move(book, book.with_name("dashboard.broken.xlsx"))
    run = cli("daily", "--date", day)
    assert run.exit_code == 0, run.stderr
    from openpyxl import load_workbook

    dates = {
        r[0].date() for r in load_workbook(book)["Daily"].iter_rows(min_row=2, values_only=True)
    }
    # The days the failed run synced were kept queued and are in the new workbook.
    assert {days_ago(n) for n in range(5, 9)} <= dates


def render_table() -> str:
    """``docs/bad-input.md``: the README's table of bad input, from :data:`CASES`."""
    out = [
        "<!-- Generated from tests/test_bad_input.py (CASES): do not edit by hand; regenerate",
        "     with `.venv/bin/python -m tests.test_bad_input > docs/bad-input.md`. -->",
        "",
        "| input | what revbot prints on stderr | exit code |",
        "| --- | --- | --- |",
    ]
    for c in CASES:
        message = c.message.replace("|", "\\|").replace("<cwd>/", "…/")
        # Double backticks: some messages quote a command in backticks themselves.
        quote = "``" if "`" in message else "`"
        pad = " " if quote == "``" else ""
        out.append(f"| {c.shown} | {quote}{pad}revbot: {message}{pad}{quote} | {c.code} |")
    out += [
        "",
        "`<today>`, `<yesterday>`, `<this month>` and the like stand for the real dates; `…/` for the "
        "directory the file is in. Exit codes: 2 bad usage, 78 a configuration error, 75 not "
        "possible yet (try again later), 1 a failure a human must look at. Nothing is written in any of these cases, except that a run that "
        "cannot write the workbook keeps what it synced in the ledger, queued for the dashboard.",
    ]
    return "\n".join(out) + "\n"


def test_the_readme_table_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == render_table(), (
        "docs/bad-input.md is out of date: .venv/bin/python -m tests.test_bad_input > docs/bad-input.md"
    )


def test_the_readme_shows_the_same_table() -> None:
    table = render_table()
    rows = table[table.index("| input |") :].split("\n\n", 1)[0]
    assert rows in (REPO / "README.md").read_text(encoding="utf-8"), (
        "README.md's bad-input table differs from docs/bad-input.md: paste the table again"
    )


def test_every_case_is_distinct() -> None:
    assert len({c.id for c in CASES}) == len(CASES)
    assert all(c.code in (1, 2, 75, 78) for c in CASES)


if __name__ == "__main__":
    print(render_table(), end="")
