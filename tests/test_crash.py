"""Crash consistency and one run at a time (issue 7, items 1 and 2).

`python -m bot daily` runs as a real subprocess against the sandbox (with latency), the fake
Sheets API and the fake Resend API, with a closed month due, so that one run syncs days,
writes the sheet, creates two report runs, re-syncs the month and emails the investors. It is
SIGKILLed at 30+ points spread over such a run (a seeded ``random.Random`` picks one delay in
each of 30 equal slices of the measured duration of an uninterrupted run), and after each kill
run to completion. Every installation then has to be exactly what an uninterrupted run
leaves: the ledger equals the sandbox, the sheet holds every row once with the right values,
each report run was created once and each investor got the month's email once.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.ledger import Ledger
from bot.periods import Month
from bot.sandbox import SandboxAccount, SandboxServer
from tests.conftest import REVBOT_VARS, TEST_KEY, Cli, today_utc
from tests.fakes.resend_server import FakeResendServer
from tests.fakes.sheets import FakeSheetsServer, to_serial, write_service_account_key
from tests.oracle import MONEY, major, pnl

SID = "1CrashSheet0123456789abcdefghijklmnopqrstuvw"
INVESTORS = ("ann@fund.example", "bob@angel.example")
RESEND_KEY = "re_" + "CrashTestKey1234567890"
COMPANY = "Acme"
LAST = Month.of(today_utc()).previous()

SEED = 20_261_107
KILLS = 30
TRIALS = 30  # a run that ends before its kill point is replaced by an earlier kill
PARALLEL = 8  # installations run side by side: each run mostly waits on the network
LATENCY = 0.03  # seconds per sandbox request


@pytest.fixture(scope="module")
def account() -> SandboxAccount:
    # Small and shared (read-only) by every installation's sandbox.
    return SandboxAccount.generate(end=today_utc(), days=75, tz="UTC", seed=11, scale=0.15)


@pytest.fixture(scope="module")
def key_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # One RSA key for the module: generating one per installation costs CPU the runs need.
    path = tmp_path_factory.mktemp("key") / "credentials.json"
    return write_service_account_key(path, token_uri="http://127.0.0.1:9/token")


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in REVBOT_VARS}


class Installation:
    """A fresh DATA_DIR with its own sandbox, fake Sheets and fake Resend servers."""

    def __init__(self, root: Path, account: SandboxAccount, key: dict[str, Any]) -> None:
        self.root = root
        self._stack = ExitStack()
        self.sandbox = self._stack.enter_context(SandboxServer(account, latency=LATENCY))
        self.sheets = self._stack.enter_context(FakeSheetsServer())
        self.resend = self._stack.enter_context(FakeResendServer())
        self.sheets.create_spreadsheet(SID, "Acme revenue", sheets=["Sheet1"])
        root.mkdir(parents=True)
        creds = root / "credentials.json"
        creds.write_text(json.dumps({**key, "token_uri": self.sheets.token_uri}))
        creds.chmod(0o600)
        self.data = root / "data"
        self.env = base_env() | {
            "STRIPE_SECRET_KEY": TEST_KEY, "STRIPE_API_BASE": self.sandbox.url,
            "REPORT_TIMEZONE": "UTC", "DATA_DIR": str(self.data),
            "GOOGLE_SHEET_ID": SID, "GOOGLE_APPLICATION_CREDENTIALS": str(creds),
            "GOOGLE_SHEETS_API_URL": self.sheets.url,
            "RESEND_API_KEY": RESEND_KEY, "RESEND_API_URL": self.resend.url,
            "EMAIL_FROM": "Acme Finance <finance@acme.example>",
            "INVESTOR_EMAILS": ",".join(INVESTORS), "COMPANY_NAME": COMPANY,
        }  # fmt: skip

    def close(self) -> None:
        self._stack.close()

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "bot", *(args or ("daily",))],
            cwd=self.root, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self.start(*args)
        out, err = proc.communicate(timeout=120)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def phase(self) -> str:
        """How far a run got, as the services saw it."""
        seen = self.sandbox.stats.requests
        if len(self.resend.messages) >= len(INVESTORS):
            return "emailed"
        if self.resend.messages:
            return "emailing"
        if seen[("GET", "/v1/files/{file}/contents")]:
            return "reports downloaded"
        if self.sandbox.stats.report_runs_created:
            return "report runs"
        if seen[("GET", "/v1/balance_transactions")]:
            return "syncing"
        return "starting"


@dataclass
class Outcome:
    """What one installation ended with, for comparison with the reference."""

    daily: dict[tuple[Any, str], list[Any]]
    monthly: dict[tuple[Any, str], list[Any]]
    transactions: dict[str, list[Any]]
    tabs: list[str]
    charts: list[str]
    synced_days: list[date]


def expected_daily(
    txns: list[dict[str, Any]], days: list[date]
) -> dict[tuple[float, str], dict[str, Decimal]]:
    """Money lines per (day serial, CURRENCY), from the sandbox's transactions."""
    wanted = {d: to_serial(d) for d in days}
    return pnl(txns, lambda t: wanted.get(datetime.fromtimestamp(t["created"], UTC).date()))  # type: ignore[return-value]


def keyed(grid: list[list[Any]], width: int, name: str) -> dict[Any, list[Any]]:
    """Data rows by key; a key seen twice is a duplicated row."""
    rows = [r for r in grid[1:] if any(v not in (None, "") for v in r)]
    keys = [tuple(r[:width]) if width > 1 else r[0] for r in rows]
    dupes = [k for k, n in Counter(keys).items() if n > 1]
    assert not dupes, f"{name}: rows written twice: {dupes[:5]}"
    return dict(zip(keys, rows, strict=True))


def check(inst: Installation, account: SandboxAccount) -> Outcome:
    """Everything a completed run must leave, checked against the sandbox itself."""
    sheets, sandbox, resend = inst.sheets, inst.sandbox, inst.resend
    assert sheets.violations == [] and resend.violations == []

    # Report runs: each of the two created once at Stripe, however the kills fell.
    assert sandbox.stats.report_runs_created == 2
    # Each investor got exactly one message, the month's, addressed to them alone.
    got = Counter(m["to"][0] for m in resend.messages)
    assert got == Counter(INVESTORS), got
    for m in resend.messages:
        assert m["to"] == [m["to"][0]] and not m["cc"] and not m["bcc"]
        assert m["subject"] == f"{COMPANY} revenue report: {LAST.label()}"

    ledger = Ledger.open(inst.data / "state.sqlite", read_only=True)
    try:
        synced = sorted(ledger.synced_days("UTC"))
        stored = {t["id"]: t for t in ledger.raw_transactions()}
        sends = ledger.sends(str(LAST))
        assert ledger.pending_dashboard_days("UTC") == []
    finally:
        ledger.close()
    assert sorted((s["recipient"], s["status"], s["generation"]) for s in sends) == [
        (r, "sent", 1) for r in sorted(INVESTORS)
    ]
    # Synced days are contiguous and cover the closed month through yesterday.
    assert synced == [synced[0] + timedelta(days=i) for i in range(len(synced))]
    assert synced[0] <= LAST.first_day and synced[-1] == today_utc() - timedelta(days=1)

    # The ledger equals the sandbox's transactions for the synced days: ids and figures.
    lo = int(datetime.combine(synced[0], datetime.min.time(), UTC).timestamp())
    hi = int(datetime.combine(synced[-1] + timedelta(days=1), datetime.min.time(), UTC).timestamp())
    truth = {t["id"]: t for t in account.transactions if lo <= t["created"] < hi}
    assert set(stored) == set(truth), (len(stored), len(truth))
    fields = ("created", "currency", "amount", "fee", "net", "reporting_category", "type")
    for tid, t in truth.items():
        assert {f: stored[tid][f] for f in fields} == {f: t[f] for f in fields}, tid

    # The sheet: every row once, with the right values.
    tx = keyed(sheets.grid(SID, "Transactions"), 1, "Transactions")
    assert set(tx) == set(truth)
    for tid, row in tx.items():
        t = truth[tid]
        assert row[5] == t["currency"].upper()
        assert [Decimal(str(v)) for v in row[6:9]] == [
            major(t[k], t["currency"]) for k in ("amount", "fee", "net")
        ]
    daily = keyed(sheets.grid(SID, "Daily"), 2, "Daily")
    want = expected_daily(list(truth.values()), synced)
    assert set(daily) == set(want)
    for key, lines in want.items():
        row = daily[key]
        assert {k: Decimal(str(v)) for k, v in zip(MONEY, row[2:9], strict=True)} == lines, key
    monthly = keyed(sheets.grid(SID, "Monthly"), 2, "Monthly")
    assert {k[0] for k in monthly} == {str(LAST)}
    assert all(r[13] == "report" and r[12] == "yes" for r in monthly.values())
    charts = [str(c["spec"].get("title")) for c in sheets.charts(SID)]
    assert len(charts) == len(set(charts)), charts
    tabs = sheets.sheet_titles(SID)
    assert len(tabs) == len(set(tabs)), tabs

    # No half-written file is left behind.
    assert not list(inst.data.rglob("*.part")) and not list(inst.data.rglob("*.tmp"))
    assert len(list((inst.data / "archive").glob("*.csv"))) == 2
    # updated_at (Daily's last column) says when revbot saw a change: it differs run to run.
    return Outcome(
        daily={k: r[:12] for k, r in daily.items()},
        monthly=monthly,
        transactions=tx,
        tabs=tabs,
        charts=sorted(charts),
        synced_days=synced,
    )


@dataclass
class Trial:
    delay: float
    killed: bool = False
    phase: str = ""
    stale_lock: bool = False
    ran_for: float = 0.0  # until killed, or until it finished by itself
    outcome: Outcome | None = None


def uninterrupted(
    root: Path, account: SandboxAccount, key: dict[str, Any]
) -> tuple[float, Outcome]:
    inst = Installation(root, account, key)
    try:
        start = time.monotonic()
        run = inst.run()
        seconds = time.monotonic() - start
        assert run.returncode == 0, run.stderr
        assert all(f"email to {a}: sent" in run.stdout for a in INVESTORS), run.stdout
        return seconds, check(inst, account)
    finally:
        inst.close()


def killed_then_completed(
    root: Path, account: SandboxAccount, key: dict[str, Any], delay: float
) -> Trial:
    trial = Trial(delay)
    inst = Installation(root, account, key)
    try:
        proc = inst.start()
        start = time.monotonic()
        while time.monotonic() < start + delay and proc.poll() is None:
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            trial.killed = True
        trial.ran_for = time.monotonic() - start
        proc.communicate(timeout=60)
        trial.phase = inst.phase()
        lock = inst.data / "revbot.lock"
        # The dead run's lock file stays behind, naming it; only the kernel's flock counts,
        # and that died with the process, so the next run must not be blocked by the file.
        trial.stale_lock = (
            trial.killed and lock.exists() and lock.read_text() == f"revbot daily (pid {proc.pid})"
        )
        run = inst.run()
        where = f"killed at {delay:.2f}s ({trial.phase})" if trial.killed else "not killed"
        assert run.returncode == 0, f"{where}: {run.stderr}"
        try:
            trial.outcome = check(inst, account)
        except AssertionError as e:
            raise AssertionError(f"{where}: {e}") from e
        return trial
    finally:
        inst.close()


def test_sigkill_at_30_points_then_complete(
    tmp_path: Path, account: SandboxAccount, key_template: dict[str, Any]
) -> None:
    with ThreadPoolExecutor(PARALLEL) as pool:
        # Uninterrupted runs, as many as run side by side later: their duration (under the
        # same load) is the span the kill points are spread over.
        refs = list(pool.map(lambda i: uninterrupted(tmp_path / f"ref{i}", account, key_template),
                             range(PARALLEL)))  # fmt: skip
        reference = refs[0][1]
        for _, other in refs[1:]:
            assert other == reference
        span = statistics.median(s for s, _ in refs) * 0.95
        rng = random.Random(SEED)
        # One point in each of TRIALS equal slices of the run; the latest first, so that they
        # run under the same load as the reference runs did.
        delays = sorted((span * (i + rng.random()) / TRIALS for i in range(TRIALS)), reverse=True)
        names = iter(range(10_000))
        running = {
            pool.submit(
                killed_then_completed, tmp_path / f"k{next(names)}", account, key_template, d
            )
            for d in delays
        }
        trials: list[Trial] = []
        while running:
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for job in done:
                trial = job.result()
                trials.append(trial)
                if not trial.killed and len(trials) < TRIALS + 10:
                    # That run was quicker than the reference: kill the next one earlier on.
                    delay = rng.uniform(0.5, 0.95) * trial.ran_for
                    running.add(pool.submit(killed_then_completed, tmp_path / f"k{next(names)}",
                                            account, key_template, delay))  # fmt: skip
    killed = [t for t in trials if t.killed]
    assert len(killed) >= KILLS, [(round(t.delay, 2), t.killed) for t in trials]
    for t in trials:
        assert t.outcome == reference, (t.delay, t.phase)
    # The kills fell all over the run, not only while Python was starting.
    phases = Counter(t.phase for t in killed)
    assert len(phases) >= 4, phases
    # Most kills left a lock file naming a dead run behind, and no run was blocked by it.
    assert sum(t.stale_lock for t in killed) >= KILLS // 2


# -- one run at a time ------------------------------------------------------------------------


def test_two_daily_runs_started_together_do_not_interleave(
    cli: Cli, sandbox: SandboxServer, sandbox_account: SandboxAccount
) -> None:
    sandbox.latency = 0.25  # each run holds the lock for a couple of seconds
    # The month's report is not due yet: the runs are about syncing days.
    sandbox.data_available_end = int(
        datetime.combine(LAST.last_day, datetime.min.time(), UTC).timestamp()
    )
    env = base_env() | cli.env
    day = (today_utc() - timedelta(days=2)).isoformat()
    argv = [sys.executable, "-m", "bot", "daily", "--date", day]
    procs = [
        subprocess.Popen(
            argv, cwd=cli.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert sorted(code for code, _, _ in results) == [0, 75], results
    _, out, err = next(r for r in results if r[0] == 75)
    loser = err.strip()
    winner = next(p.pid for p, r in zip(procs, results, strict=True) if r[0] == 0)
    # The holder names itself right after taking the lock: a loser that looks in between
    # those two steps can only say "another revbot".
    holder = f"(revbot daily \\(pid {winner}\\)|another revbot)"
    assert re.fullmatch(
        f"revbot: {holder} is running on {re.escape(cli.env['DATA_DIR'])}; this daily did nothing, "
        "try again when it has finished",
        loser,
    ), loser
    assert out == ""
    # The winner's work is whole, and done once.
    ledger = Ledger.open(Path(cli.env["DATA_DIR"]) / "state.sqlite", read_only=True)
    try:
        days = sorted(ledger.synced_days("UTC"))
        lo = int(datetime.combine(days[0], datetime.min.time(), UTC).timestamp())
        hi = int(
            datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), UTC).timestamp()
        )
        stored = sorted(t.id for t in ledger.transactions_between(lo, hi))
    finally:
        ledger.close()
    assert len(days) == 4
    assert stored == sorted(
        t["id"] for t in sandbox_account.transactions if lo <= t["created"] < hi
    )


def test_a_held_lock_refuses_every_writing_command(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.data_available_end = int(
        datetime.combine(LAST.last_day, datetime.min.time(), UTC).timestamp()
    )
    data = Path(cli.env["DATA_DIR"])
    data.mkdir(parents=True)
    lock = data / "revbot.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another revbot, as the kernel sees it
        os.write(fd, b"revbot backfill (pid 4242)")
        for args in (("daily",), ("monthly", "--no-send"),
                     ("backfill", "--since", (today_utc() - timedelta(days=3)).isoformat())):  # fmt: skip
            run = cli(*args)
            assert run.exit_code == 75, (args, run.stdout, run.stderr)
            assert run.stderr.strip() == (
                f"revbot: revbot backfill (pid 4242) is running on {data}; this {args[0]} did "
                "nothing, try again when it has finished"
            )
        assert sorted(p.name for p in data.iterdir()) == ["revbot.lock"]  # nothing written
    finally:
        os.close(fd)
    # Released: the next run goes ahead.
    assert cli("daily", "--date", (today_utc() - timedelta(days=2)).isoformat()).exit_code == 0
