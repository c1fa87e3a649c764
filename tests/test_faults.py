"""The fault matrix (issue 7, item 3): each remote service failing in each way it can.

Every fault ends in success, or in exit 75 (temporary) or 1 (a human must look) with exactly
one clear line on stderr; and the next run, once the fault has cleared, finishes correctly.
Faults come from the fakes (the sandbox, the fake Sheets API, the fake Resend API); the code
under test is the real CLI, or, where a fault only shows after minutes of real waiting (a
429 storm that outlasts the retry budget, an answer slower than the 30 s timeout), the real
job with the adapter's own ``sleep``/``timeout``/``max_wait`` parameters turned down.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.config import Secret
from bot.dashboard.sheets import GoogleSheetDashboard
from bot.dashboard.workbook import WorkbookDashboard
from bot.errors import TemporaryError
from bot.jobs import daily as flows
from bot.jobs.context import Context
from bot.ledger import Ledger
from bot.mail.resend_sender import ResendMailer
from bot.periods import Month
from bot.sandbox import SandboxAccount, SandboxServer
from bot.stripe_source import StripeSource
from tests.conftest import TEST_KEY, Cli, days_ago, drain_faults, today_utc
from tests.fakes.resend_server import FakeResendServer
from tests.fakes.sheets import FakeSheetsServer, serving, to_serial, write_service_account_key

BT = "/v1/balance_transactions"
DAY = days_ago(2)
LAST = Month.of(today_utc()).previous()
SID = "1FaultSheet0123456789abcdefghijklmnopqrstuvw"
SA_EMAIL = "revbot@fault-project.iam.gserviceaccount.com"
INVESTORS = ("ann@fund.example", "bob@angel.example")
RESEND_KEY = "re_" + "FaultTestKey1234567890"


def midnight(d: date) -> int:
    return int(datetime.combine(d, datetime.min.time(), UTC).timestamp())


def one_line(stderr: str) -> str:
    """The one line a failure prints; fails if there is anything else (a traceback, noise)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("revbot: "), stderr
    return lines[0]


def assert_ledger_is_stripe(data_dir: Path, account: SandboxAccount, days: list[date]) -> None:
    """The ledger holds exactly the sandbox's transactions of ``days``, and marks them synced."""
    ledger = Ledger.open(data_dir / "state.sqlite", read_only=True)
    try:
        synced = set(ledger.synced_days("UTC"))
        assert set(days) <= synced
        got = {
            t.id: (t.amount, t.fee, t.net, t.currency, t.reporting_category)
            for d in days
            for t in ledger.transactions_between(midnight(d), midnight(d + timedelta(days=1)))
        }
    finally:
        ledger.close()
    want = {
        t["id"]: (t["amount"], t["fee"], t["net"], t["currency"], t["reporting_category"])
        for t in account.transactions
        if any(midnight(d) <= t["created"] < midnight(d + timedelta(days=1)) for d in days)
    }
    assert got == want and want


def synced_days(data_dir: Path) -> set[date]:
    if not (data_dir / "state.sqlite").exists():
        return set()
    ledger = Ledger.open(data_dir / "state.sqlite", read_only=True)
    try:
        return set(ledger.synced_days("UTC"))
    finally:
        ledger.close()


@pytest.fixture
def stripe_cli(cli: Cli, sandbox: SandboxServer) -> Cli:
    # Stripe's reports say the closed month is not ready yet, so `daily` defers the monthly
    # report after one request and these tests are about the sync alone.
    sandbox.data_available_end = midnight(LAST.last_day)
    return cli


def daily_ok(cli: Cli, account: SandboxAccount) -> None:
    run = cli("daily", "--date", DAY.isoformat())
    assert run.exit_code == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert_ledger_is_stripe(
        Path(cli.env["DATA_DIR"]), account, [DAY - timedelta(days=i) for i in range(4)]
    )


def daily_fails(cli: Cli, code: int, *words: str) -> str:
    run = cli("daily", "--date", DAY.isoformat())
    assert run.exit_code == code, (run.stdout, run.stderr)
    line = one_line(run.stderr)
    assert all(w in line for w in words), line
    # Nothing half-done: the run's days are synced wholly or not at all.
    assert DAY not in synced_days(Path(cli.env["DATA_DIR"]))
    return line


# -- Stripe -----------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [None, "1"], ids=["no-retry-after", "retry-after"])
def test_stripe_429_storm_that_passes(
    stripe_cli: Cli, sandbox, sandbox_account, retry_after
) -> None:  # type: ignore[no-untyped-def]
    headers = {"Retry-After": retry_after} if retry_after else {}
    sandbox.inject(BT, status=429, times=2, headers=headers)
    daily_ok(stripe_cli, sandbox_account)
    assert sandbox.stats.requests[("GET", BT)] >= 3  # the 429s were answered, and retried


@pytest.mark.parametrize("retry_after", [None, "7"], ids=["no-retry-after", "retry-after"])
def test_stripe_429_storm_that_outlasts_the_budget(
    stripe_cli: Cli,
    sandbox,
    sandbox_account,
    tmp_path: Path,
    retry_after,  # type: ignore[no-untyped-def]
) -> None:
    waits: list[float] = []
    source = StripeSource(api_key=Secret(TEST_KEY), api_base=sandbox.url, sleep=waits.append)
    data = Path(stripe_cli.env["DATA_DIR"])
    ledger = Ledger.open(data / "state.sqlite")
    ctx = Context(ledger=ledger, dashboard=WorkbookDashboard(data / "dashboard.xlsx"),
                  source=source, tz=ZoneInfo("UTC"), now=datetime.now(UTC))  # fmt: skip
    sandbox.inject(
        BT, status=429, times=60, headers={"Retry-After": retry_after} if retry_after else {}
    )
    with pytest.raises(TemporaryError) as caught:
        flows.daily_flow(
            ctx, day=DAY, dry_run=False, archive_dir=data / "archive", mode="test", email=None
        )
    ledger.close()
    e = caught.value
    assert e.exit_code == 75 and "\n" not in str(e)
    assert str(e).startswith("Stripe kept rate-limiting listing balance transactions for ")
    assert "try again later" in str(e) and TEST_KEY not in str(e)
    # Waited most of the budget, not more, and as long as Stripe asked when it asked.
    waited = int(re.search(r" for (\d+)s;", str(e)).group(1))  # type: ignore[union-attr]
    assert 60 <= waited <= 120 and sum(waits) >= 60
    if retry_after:
        # Stripe's delay as given (bot.retry adds no jitter on top of it any more), less the
        # microseconds between the 429 and the next acquire().
        assert min(waits) >= 6.99
    assert source.rate_limited >= 3
    assert synced_days(data) == set()
    drain_faults(sandbox, BT)
    daily_ok(stripe_cli, sandbox_account)


def test_stripe_500_then_503_then_success(stripe_cli: Cli, sandbox, sandbox_account) -> None:  # type: ignore[no-untyped-def]
    sandbox.inject(BT, status=500, times=1)
    sandbox.inject(BT, status=503, times=1)
    daily_ok(stripe_cli, sandbox_account)


@pytest.mark.parametrize("status", [500, 503])
def test_stripe_5xx_that_persists(stripe_cli: Cli, sandbox, sandbox_account, status: int) -> None:  # type: ignore[no-untyped-def]
    sandbox.inject(BT, status=status, times=3)  # the first try and the SDK's two retries
    line = daily_fails(
        stripe_cli, 75, f"Stripe answered {status} while listing balance transactions"
    )
    assert "try again later" in line
    daily_ok(stripe_cli, sandbox_account)


def test_stripe_html_error_page_is_temporary(stripe_cli: Cli, sandbox, sandbox_account) -> None:  # type: ignore[no-untyped-def]
    sandbox.inject(BT, status=502, times=3, body=b"<html><h1>502 Bad Gateway</h1></html>")
    daily_fails(stripe_cli, 75, "Stripe answered 502")
    daily_ok(stripe_cli, sandbox_account)


@pytest.mark.parametrize("times", [2, 3], ids=["passes", "persists"])
def test_stripe_connection_reset(stripe_cli: Cli, sandbox, sandbox_account, times: int) -> None:  # type: ignore[no-untyped-def]
    sandbox.inject(BT, reset=True, times=times)
    if times == 3:
        daily_fails(
            stripe_cli,
            75,
            f"cannot reach Stripe at {sandbox.url} while listing balance transactions",
        )
    daily_ok(stripe_cli, sandbox_account)


@pytest.mark.parametrize("times", [1, 3], ids=["passes", "persists"])
def test_stripe_slower_than_the_timeout(
    stripe_cli: Cli, sandbox, sandbox_account, times: int
) -> None:  # type: ignore[no-untyped-def]
    data = Path(stripe_cli.env["DATA_DIR"])
    ledger = Ledger.open(data / "state.sqlite")
    source = StripeSource(api_key=Secret(TEST_KEY), api_base=sandbox.url, timeout=0.4)
    ctx = Context(ledger=ledger, dashboard=WorkbookDashboard(data / "dashboard.xlsx"),
                  source=source, tz=ZoneInfo("UTC"), now=datetime.now(UTC))  # fmt: skip
    sandbox.inject(BT, status=200, delay=1.0, times=times)  # answers, but after the timeout
    try:
        if times == 1:  # the SDK's retry gets through
            flows.daily_flow(
                ctx, day=DAY, dry_run=False, archive_dir=data / "archive", mode="test", email=None
            )
        else:
            with pytest.raises(TemporaryError) as caught:
                flows.daily_flow(
                    ctx,
                    day=DAY,
                    dry_run=False,
                    archive_dir=data / "archive",
                    mode="test",
                    email=None,
                )
            e = caught.value
            assert e.exit_code == 75 and "\n" not in str(e)
            # The URL it tried, so a mistyped STRIPE_API_BASE shows itself.
            assert str(e).startswith(
                f"cannot reach Stripe at {sandbox.url} while listing balance transactions"
            )
            assert synced_days(data) == set()
    finally:
        ledger.close()
    daily_ok(stripe_cli, sandbox_account)


def test_stripe_malformed_json(stripe_cli: Cli, sandbox, sandbox_account) -> None:  # type: ignore[no-untyped-def]
    sandbox.inject(BT, status=200, times=1, body=b'{"object": "list", "data": [{"id": "txn_')
    line = daily_fails(stripe_cli, 1, "not readable JSON", "listing balance transactions")
    assert '"object"' not in line  # the body is not quoted back
    daily_ok(stripe_cli, sandbox_account)


def test_stripe_report_run_creation_failing_then_once(cli: Cli, sandbox) -> None:  # type: ignore[no-untyped-def]
    sandbox.inject("/v1/reporting/report_runs", status=503, times=3)
    run = cli("monthly", "--month", str(LAST), "--no-send")
    assert run.exit_code == 75, run.stderr
    assert "Stripe answered 503 while creating a balance_change_from_activity" in one_line(
        run.stderr
    )
    run = cli("monthly", "--month", str(LAST), "--no-send")
    assert run.exit_code == 0, run.stderr
    assert sandbox.stats.report_runs_created == 3  # the P&L's two, the payouts' one


def test_account_younger_than_the_last_closed_month(tmp_path: Path) -> None:
    """Stripe refuses a report interval that starts before the account's data does."""
    first = LAST.first_day + timedelta(days=12)
    account = SandboxAccount.generate(
        end=today_utc(), days=(today_utc() - first).days, seed=5, scale=0.3
    )
    with SandboxServer(account) as stripe:
        cli = Cli(tmp_path, {"STRIPE_SECRET_KEY": TEST_KEY, "STRIPE_API_BASE": stripe.url,
                             "DATA_DIR": str(tmp_path / "data")})  # fmt: skip
        run = cli("daily")
        assert run.exit_code == 0, run.stderr
        assert f"{LAST} (report): reconciled" in run.stdout
        assert stripe.stats.report_runs_created == 3
    # A month that ended before the account began has no report: `daily` is not failed by it.
    newer = SandboxAccount.generate(end=today_utc(), days=1, seed=5, scale=0.3)
    with SandboxServer(newer) as stripe:
        cli = Cli(tmp_path, {"STRIPE_SECRET_KEY": TEST_KEY, "STRIPE_API_BASE": stripe.url,
                             "DATA_DIR": str(tmp_path / "data2")})  # fmt: skip
        run = cli("daily")
        assert run.exit_code == 0, run.stderr
        assert "monthly report deferred: Stripe has no data for" in run.stdout
        run = cli("monthly", "--month", str(LAST), "--no-send")
        assert run.exit_code == 1
        assert "there is no report for that month" in one_line(run.stderr)
        assert stripe.stats.report_runs_created == 0


# -- Google Sheets ----------------------------------------------------------------------------


@pytest.fixture
def sheets() -> Iterator[FakeSheetsServer]:
    with serving(SID) as fake:
        yield fake


@pytest.fixture
def sheet_cli(stripe_cli: Cli, sheets: FakeSheetsServer, tmp_path: Path) -> Cli:
    key = tmp_path / "credentials.json"
    write_service_account_key(key, token_uri=sheets.token_uri, client_email=SA_EMAIL)
    key.chmod(0o600)
    stripe_cli.env.update({"GOOGLE_SHEET_ID": SID, "GOOGLE_APPLICATION_CREDENTIALS": str(key),
                           "GOOGLE_SHEETS_API_URL": sheets.url})  # fmt: skip
    return stripe_cli


def sheet_ok(cli: Cli, sheets: FakeSheetsServer, account: SandboxAccount) -> None:
    daily_ok(cli, account)
    daily = [tuple(r[:2]) for r in sheets.grid(SID, "Daily")[1:]]
    assert len(daily) == len(set(daily)) and any(k[0] == to_serial(DAY) for k in daily)
    ids = [r[0] for r in sheets.grid(SID, "Transactions")[1:]]
    want = {t["id"] for t in account.transactions
            if midnight(DAY - timedelta(days=3)) <= t["created"] < midnight(DAY + timedelta(days=1))}  # fmt: skip
    assert sorted(ids) == sorted(want)
    data = Path(cli.env["DATA_DIR"])
    ledger = Ledger.open(data / "state.sqlite", read_only=True)
    assert ledger.pending_dashboard_days("UTC") == []
    ledger.close()


@pytest.mark.parametrize("status", [429, 500])
def test_sheets_errors_that_pass(
    sheet_cli: Cli, sheets: FakeSheetsServer, sandbox_account, status: int
) -> None:  # type: ignore[no-untyped-def]
    sheets.inject(status, times=1)
    sheet_ok(sheet_cli, sheets, sandbox_account)
    assert sheets.statuses.count(status) == 1


@pytest.mark.parametrize("status", [429, 500])
def test_sheets_errors_past_the_budget(
    sheet_cli: Cli,
    sheets: FakeSheetsServer,
    sandbox,
    sandbox_account,
    tmp_path: Path,
    status: int,  # type: ignore[no-untyped-def]
) -> None:
    waits: list[float] = []
    dash = GoogleSheetDashboard(spreadsheet_id=SID, credentials_file=Path(sheet_cli.env["GOOGLE_APPLICATION_CREDENTIALS"]),
                                api_url=sheets.url, max_wait=20.0, sleep=waits.append)  # fmt: skip
    data = Path(sheet_cli.env["DATA_DIR"])
    ledger = Ledger.open(data / "state.sqlite")
    ctx = Context(ledger=ledger, dashboard=dash, source=StripeSource(api_key=Secret(TEST_KEY), api_base=sandbox.url),
                  tz=ZoneInfo("UTC"), now=datetime.now(UTC))  # fmt: skip
    sheets.inject(status, times=10_000)
    try:
        with pytest.raises(TemporaryError) as caught:
            flows.daily_flow(
                ctx, day=DAY, dry_run=False, archive_dir=data / "archive", mode="test", email=None
            )
        e = caught.value
        assert e.exit_code == 75 and "\n" not in str(e) and "try again later" in str(e)
        assert ("quota exceeded" if status == 429 else "unavailable") in str(e)
        # Most of the budget, never past it: it stops when the next wait (at most
        # min(32, 2**n) s, bot.retry) would pass the 20 s.
        assert sum(waits) <= 20 < sum(waits) + min(32, 2 ** len(waits))
        # The ledger is committed before the sheet is written; the sheet's days stay queued.
        assert DAY in ledger.pending_dashboard_days("UTC")
    finally:
        ledger.close()
    sheets.clear_injections()
    sheet_ok(sheet_cli, sheets, sandbox_account)


def test_sheets_403_then_shared(sheet_cli: Cli, sheets: FakeSheetsServer, sandbox_account) -> None:  # type: ignore[no-untyped-def]
    sheets.unshare(SID)
    run = sheet_cli("daily", "--date", DAY.isoformat())
    assert run.exit_code == 1
    line = one_line(run.stderr)
    assert "denied access" in line and f"share the sheet with {SA_EMAIL}" in line
    sheets.share(SID)
    sheet_ok(sheet_cli, sheets, sandbox_account)


# -- Resend -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def month_ready(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SandboxServer, Path]]:
    """A DATA_DIR whose ledger has the closed month's report (run once for the module)."""
    account = SandboxAccount.generate(end=today_utc(), days=75, tz="UTC", seed=11, scale=0.3)
    root = tmp_path_factory.mktemp("month")
    with SandboxServer(account) as stripe:
        cli = Cli(root, {"STRIPE_SECRET_KEY": TEST_KEY, "STRIPE_API_BASE": stripe.url,
                         "DATA_DIR": str(root / "data")})  # fmt: skip
        run = cli("monthly", "--month", str(LAST), "--no-send")
        assert run.exit_code == 0, run.stderr
        yield stripe, root / "data"


@pytest.fixture
def resend_fake() -> Iterator[FakeResendServer]:
    with FakeResendServer() as fake:
        yield fake
        assert fake.violations == []


@pytest.fixture
def mail_cli(
    month_ready: tuple[SandboxServer, Path], resend_fake: FakeResendServer, tmp_path: Path
) -> Cli:
    stripe, template = month_ready
    data = tmp_path / "data"
    shutil.copytree(template, data)
    return Cli(tmp_path, {
        "STRIPE_SECRET_KEY": TEST_KEY, "STRIPE_API_BASE": stripe.url, "DATA_DIR": str(data),
        "RESEND_API_KEY": RESEND_KEY, "RESEND_API_URL": resend_fake.url,
        "EMAIL_FROM": "Acme Finance <finance@acme.example>", "INVESTOR_EMAILS": ",".join(INVESTORS),
    })  # fmt: skip


def delivered(fake: FakeResendServer) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in fake.messages:
        counts[m["to"][0]] = counts.get(m["to"][0], 0) + 1
    return counts


def sends(cli: Cli) -> dict[str, tuple[str, Any]]:
    ledger = Ledger.open(Path(cli.env["DATA_DIR"]) / "state.sqlite", read_only=True)
    try:
        return {s.recipient: (s.status, s.provider_id) for s in ledger.sends(str(LAST))}
    finally:
        ledger.close()


def monthly_sends_once(cli: Cli, fake: FakeResendServer) -> None:
    run = cli("monthly", "--month", str(LAST))
    assert run.exit_code == 0, run.stderr
    assert delivered(fake) == dict.fromkeys(INVESTORS, 1)
    assert {r: s for r, (s, _) in sends(cli).items()} == dict.fromkeys(INVESTORS, "sent")
    # And once is once: the next runs send nothing.
    assert cli("monthly", "--month", str(LAST)).exit_code == 0
    assert delivered(fake) == dict.fromkeys(INVESTORS, 1)


@pytest.mark.parametrize(
    "fault",
    [dict(status=429, times=2, headers={"retry-after": "0"}),
     dict(status=500, times=1),
     dict(status=500, times=1, deliver_then_fail=True),
     dict(status=409, times=1, name="concurrent_idempotent_requests")],
    ids=["429", "500", "500-after-delivery", "409-in-flight"],
)  # fmt: skip
def test_resend_errors_that_pass(
    mail_cli: Cli, resend_fake: FakeResendServer, fault: dict[str, Any]
) -> None:
    resend_fake.inject(**fault)
    monthly_sends_once(mail_cli, resend_fake)


def test_resend_500_that_persists(
    mail_cli: Cli, resend_fake: FakeResendServer, month_ready
) -> None:  # type: ignore[no-untyped-def]
    """Through the send job with a mailer whose waits are recorded, not slept."""
    from bot.jobs.investor_email import build_report, send_month

    waits: list[float] = []
    mailer = ResendMailer(
        api_key=RESEND_KEY, api_url=resend_fake.url, sleep=waits.append, min_interval=0
    )
    data = Path(mail_cli.env["DATA_DIR"])
    ledger = Ledger.open(data / "state.sqlite")
    resend_fake.inject(status=500, times=5)
    try:
        report = build_report(ledger, month=LAST, timezone="UTC", mode="test", company="Acme")
        with pytest.raises(TemporaryError) as caught:
            send_month(ledger, report, sender="Acme Finance <finance@acme.example>",
                       recipients=INVESTORS, mailer=mailer)  # fmt: skip
    finally:
        ledger.close()
    e = caught.value
    assert e.exit_code == 75 and "\n" not in str(e)
    assert str(e).startswith("Resend still failing after 5 attempts (500 internal_server_error")
    assert "idempotency key prevents a duplicate" in str(e) and RESEND_KEY not in str(e)
    # Back-off doubling from 1 s with equal jitter (bot.retry): each wait within [d/2, d].
    assert len(waits) == 4 and resend_fake.messages == []
    assert all(d / 2 <= w <= d for w, d in zip(waits, [1, 2, 4, 8], strict=True)), waits
    monthly_sends_once(mail_cli, resend_fake)


def test_resend_409_other_content_same_key(mail_cli: Cli, resend_fake: FakeResendServer) -> None:
    """Resend already took a message under this key (a run that crashed after sending)."""
    resend_fake.inject(status=409, times=1, name="invalid_idempotent_request")
    run = mail_cli("monthly", "--month", str(LAST))
    assert run.exit_code == 0, run.stderr
    first = INVESTORS[0]
    assert sends(mail_cli)[first] == ("sent", "accepted-earlier")  # not sent a second time
    assert delivered(resend_fake) == dict.fromkeys(INVESTORS[1:], 1)
    assert mail_cli("monthly", "--month", str(LAST)).exit_code == 0
    assert delivered(resend_fake) == dict.fromkeys(INVESTORS[1:], 1)


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [("validation_error", 1, ("Resend rejected the email to ann@fund.example", "422 validation_error")),
     ("invalid_from_address", 78, ("EMAIL_FROM", "not a verified sender"))],
    ids=["validation", "from-address"],
)  # fmt: skip
def test_resend_422(
    mail_cli: Cli, resend_fake: FakeResendServer, name: str, code: int, words: tuple[str, ...]
) -> None:
    resend_fake.inject(status=422, times=1, name=name, message="Invalid `to` field.")
    run = mail_cli("monthly", "--month", str(LAST))
    assert run.exit_code == code, (run.stdout, run.stderr)
    line = one_line(run.stderr)
    assert all(w in line for w in words), line
    assert RESEND_KEY not in run.stdout + run.stderr
    assert resend_fake.messages == []
    assert sends(mail_cli)[INVESTORS[0]][0] == "intent"
    monthly_sends_once(mail_cli, resend_fake)
