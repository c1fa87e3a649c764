"""Crash consistency and one run at a time (issue 7, items 1 and 2).

`python -m bot daily` runs as a real subprocess against the sandbox, the fake Sheets API and
the fake Resend API, with a closed month due, so that one run syncs days, writes the sheet,
creates two report runs, re-syncs the month and emails the investors. It is SIGKILLed at 30+
points of such a run, and after each kill run to completion. Every installation then has to be
exactly what an uninterrupted run leaves: the ledger equals the sandbox, the sheet holds every
row once with the right values, each report run was created once and each investor got the
month's email once.

A kill point is an event of the run, never a time, so where a kill lands does not depend on how
fast the machine is. An uninterrupted reference run lists its events, in the order it does them:

- each request the three services (all in this process) receive. A run killed at a request is
  held there by the service, either on the request's arrival (the service has not acted on it)
  or, for a request that changes something at the service, once it is served (the service
  acted, the run dies without the answer: an email sent but not recorded, a report run created
  but not known);
- each local commit: a ledger ``COMMIT`` or a file renamed into place in DATA_DIR. A run killed
  there SIGKILLs itself just before it (``TRACER`` starts ``bot`` with an audit hook and a SQLite
  trace callback).

The kill points (``kill_points``) are: right after the start, before the first event, every
"served" point, each email on arrival too (the send-once window: intent recorded, sent,
recorded), one of each kind of event and one in each phase of the run, and then, up to KILLS,
one event in each equal slice of those not yet taken; a seeded ``random.Random`` picks among
the candidates. The run does the same events in the same order every time, and each killed run
is checked to have done exactly the reference's events up to its kill point, so every point is
reached, and killed there, on any machine.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

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
PARALLEL = 16  # installations run side by side: each run mostly waits (on the network, or sleeps)
HANG = 300  # seconds: only a hung run takes this long, however loaded the machine

# The kinds of kill point.
START = "start"  # right after the process started
ARRIVED = "arrived"  # a request reached its service, which has not acted on it
SERVED = "served"  # the service acted on the request; its answer is never sent
LOCAL = "local"  # just before a local commit

# Runs `python -m bot` after installing two listeners that write each local commit, as a line,
# to $CRASH_TEST_LOG (where the services log each request they receive) just before it happens,
# and SIGKILL the process there if it is the $CRASH_TEST_KILL_AT'th (from 0).
TRACER = """
import os, runpy, signal, sqlite3, sys, threading

data = os.path.abspath(os.environ["DATA_DIR"]) + os.sep
log = os.open(os.environ["CRASH_TEST_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
kill_at = int(os.environ.get("CRASH_TEST_KILL_AT", "-1"))
count = 0
lock = threading.Lock()

def commit(what):
    global count
    with lock:
        os.write(log, f"local {what}\\n".encode())
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        count += 1

def audit(event, args):
    # os.rename and os.replace; audit hooks run before the operation.
    if event == "os.rename":
        dst = os.path.abspath(os.fsdecode(args[1]))
        if dst.startswith(data):
            commit("rename " + dst[len(data):])

def trace(statement):
    # Called as a statement starts running, so before the commit.
    if statement.strip().upper() in ("COMMIT", "END", "END TRANSACTION", "COMMIT TRANSACTION"):
        commit("commit")

connect = sqlite3.connect

def traced(*args, **kwargs):
    conn = connect(*args, **kwargs)
    conn.set_trace_callback(trace)
    return conn

sqlite3.connect = traced
sys.addaudithook(audit)
runpy.run_module("bot", run_name="__main__", alter_sys=True)
"""


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


def is_local(event: str) -> bool:
    return event.startswith("local ")


def changes(event: str) -> bool:
    """Whether the request changes something at its service (an access token does not count)."""
    if is_local(event):
        return False
    _, method, path = event.split(" ", 2)
    return method != "GET" and path != "/token"


def phase(events: Sequence[str]) -> str:
    """How far a run that did ``events`` got, by the last request it made."""
    last = next((e for e in reversed(events) if not is_local(e)), None)
    if last is None:
        return "starting"
    service, _, path = last.split(" ", 2)
    if service == "resend":
        return "emailing"
    if service == "sheets":
        return "writing the sheet"
    if path.startswith("/v1/reporting"):
        return "report runs"
    if path.startswith("/v1/files"):
        return "downloading reports"
    return "syncing"


class Gate:
    """Logs the requests an installation's services receive and holds one of them if told.

    A held request is never answered: the test kills the run meanwhile, then releases the
    service's thread, which hangs up.
    """

    def __init__(self) -> None:
        self.holding = threading.Event()
        self._go = threading.Event()
        self._stop: tuple[int, str] | None = None
        self._count = 0
        self._log: int | None = None
        self._lock = threading.Lock()

    def log_to(self, path: Path | None) -> None:
        with self._lock:
            if self._log is not None:
                os.close(self._log)
            self._log = None
            if path is not None:
                self._log = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def arm(self, request: int, when: str) -> None:
        """Hold the ``request``'th request (from 0) on arrival or once served (``when``)."""
        self._stop = (request, when)

    def release(self) -> None:
        self._stop = None
        self._go.set()

    def wrap(
        self, service: str, serve: Callable[..., Any], label: Callable[..., str]
    ) -> Callable[..., Any]:
        """``serve`` (a service's handling of one request), logged and held when told."""

        def gated(*args: Any) -> Any:
            with self._lock:
                index, stop = self._count, self._stop
                self._count += 1
                if self._log is not None:
                    os.write(self._log, f"{service} {label(*args)}\n".encode())
            if stop == (index, ARRIVED):
                self._hold()
            answer = serve(*args)
            if stop == (index, SERVED):
                self._hold()
            return answer

        return gated

    def _hold(self) -> NoReturn:
        self.holding.set()
        self._go.wait()
        raise ConnectionResetError("held until the run was killed")  # the service hangs up


def hanging_up(handler: type[BaseHTTPRequestHandler]) -> type[BaseHTTPRequestHandler]:
    """``handler``, closing the connection without a word when the request was held."""

    class HangingUp(handler):  # type: ignore[valid-type,misc]
        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except ConnectionError:
                self.close_connection = True

    return HangingUp


class Installation:
    """A fresh DATA_DIR with its own sandbox, fake Sheets and fake Resend servers."""

    def __init__(self, root: Path, account: SandboxAccount, key: dict[str, Any]) -> None:
        self.root = root
        self.gate = Gate()
        self.sandbox = SandboxServer(account)
        self.sheets = FakeSheetsServer()
        self.resend = FakeResendServer()
        self.sandbox._serve = self.gate.wrap(  # type: ignore[method-assign]
            "stripe",
            self.sandbox._serve,
            lambda _, method, route, path, *__: f"{method} {route.template if route else path}",
        )
        self.sheets.handle = self.gate.wrap(  # type: ignore[method-assign]
            "sheets",
            self.sheets.handle,
            lambda method, path, *_: f"{method} {urlsplit(path).path.replace(SID, '{id}')}",
        )
        self.resend.handle = self.gate.wrap(  # type: ignore[method-assign]
            "resend", self.resend.handle, lambda method, path, *_: f"{method} {path}"
        )
        self.sheets.handler = hanging_up(self.sheets.handler)
        self.resend.handler = hanging_up(self.resend.handler)
        self._stack = ExitStack()
        for server in (self.sandbox, self.sheets, self.resend):
            self._stack.enter_context(server)
        self._stack.callback(self.gate.log_to, None)
        self._stack.callback(self.gate.release)  # first of all: no service thread stays held
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

    def start(
        self, *, log: Path | None = None, kill_at: int | None = None
    ) -> subprocess.Popen[str]:
        """`revbot daily`; with ``log``, through TRACER, the requests and local commits logged
        there (and killed just before local commit ``kill_at``)."""
        argv, env = ["-m", "bot"], self.env
        if log is not None:
            argv, env = ["-c", TRACER], env | {"CRASH_TEST_LOG": str(log)}
            if kill_at is not None:
                env |= {"CRASH_TEST_KILL_AT": str(kill_at)}
        self.gate.log_to(log)
        return subprocess.Popen(
            [sys.executable, *argv, "daily"],
            cwd=self.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def run(self) -> subprocess.CompletedProcess[str]:
        proc = self.start()
        out, err = proc.communicate(timeout=HANG)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


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

    # Report runs: each of the three (the two of the P&L, the payouts' reconciliation)
    # created once at Stripe, however the kills fell.
    assert sandbox.stats.report_runs_created == 3
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
    assert sorted((s.recipient, s.status, s.generation) for s in sends) == [
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
    # The P&L's two reports, and the payouts' one.
    assert len(list((inst.data / "archive").glob("*.csv"))) == 3
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
class Reference:
    """What an uninterrupted run did, in order, and what it left."""

    events: list[str]  # "stripe GET /v1/balance_transactions", "local commit", "local rename …"
    outcome: Outcome


@dataclass(frozen=True, order=True)
class Point:
    """Where a run is killed: at ``events[position]`` of the reference run, as ``kind`` says."""

    position: int  # -1 for START
    kind: str

    def describe(self, events: Sequence[str]) -> str:
        if self.kind == START:
            return "killed right after its start"
        event = events[self.position]
        if self.kind == LOCAL:
            return f"killed at event {self.position}, just before its {event}"
        service = event.split()[0]
        if self.kind == ARRIVED:
            return f"killed at event {self.position}, {event}, before {service} acted on it"
        return f"killed at event {self.position}, {event}, {service} acted on it but never answered"


@dataclass
class Trial:
    point: Point
    where: str
    phase: str  # how far the run got, by the events it did before it was killed
    stale_lock: bool  # it left a lock file naming itself
    outcome: Outcome


def what(event: str) -> str:
    """The kind of an event: the request (service, method and route), or the local commit."""
    return " ".join(event.split()[:2]) if is_local(event) else event


def kill_points(events: Sequence[str]) -> list[Point]:
    """Where to kill runs, from the reference run's ``events``: KILLS points (or more).

    The start and the first event; every request that changes something at its service once
    served, and an email also on arrival (the send-once window: intent recorded -> sent ->
    recorded); one of each kind of event and one in each phase of the run, picked at random;
    then more, one in each equal slice of the events not taken yet.
    """
    rng = random.Random(SEED)
    at = [Point(i, LOCAL if is_local(e) else ARRIVED) for i, e in enumerate(events)]
    points = {Point(-1, START), at[0]}
    for i, e in enumerate(events):
        if changes(e):
            points.add(Point(i, SERVED))
        if e.startswith("resend "):
            points.add(at[i])
    keys: list[Callable[[int], str]] = [lambda i: what(events[i]), lambda i: phase(events[: i + 1])]
    for key in keys:
        groups: dict[str, list[int]] = {}
        for i in range(len(events)):
            groups.setdefault(key(i), []).append(i)
        for name, members in sorted(groups.items()):
            if not any(p.kind != START and key(p.position) == name for p in points):
                points.add(at[rng.choice(members)])
    rest = [p for p in at if p not in points]
    more = min(KILLS - len(points), len(rest))
    if more > 0:
        bounds = [round(s * len(rest) / more) for s in range(more + 1)]
        points |= {rest[rng.randrange(lo, hi)] for lo, hi in itertools.pairwise(bounds)}
    return sorted(points)


def uninterrupted(root: Path, account: SandboxAccount, key: dict[str, Any]) -> Reference:
    inst = Installation(root, account, key)
    try:
        log = root / "events.log"
        proc = inst.start(log=log)
        out, err = proc.communicate(timeout=HANG)
        assert proc.returncode == 0, err
        assert all(f"email to {a}: sent" in out for a in INVESTORS), out
        inst.gate.log_to(None)
        return Reference(log.read_text().splitlines(), check(inst, account))
    finally:
        inst.close()


def killed_then_completed(
    root: Path, account: SandboxAccount, key: dict[str, Any], point: Point, ref: Reference
) -> Trial:
    inst = Installation(root, account, key)
    try:
        done = ref.events[: max(point.position, 0)]  # the events before the kill point
        requests = sum(not is_local(e) for e in done)
        if point.kind in (ARRIVED, SERVED):
            inst.gate.arm(requests, point.kind)
        elif point.kind == START:
            inst.gate.arm(0, ARRIVED)  # it cannot end before it is killed
        log = root / "events.log"
        proc = inst.start(log=log, kill_at=len(done) - requests if point.kind == LOCAL else None)
        if point.kind in (ARRIVED, SERVED):
            guard = time.monotonic() + HANG
            while not inst.gate.holding.wait(0.02) and proc.poll() is None:
                assert time.monotonic() < guard, f"hung before {point.describe(ref.events)}"
        if point.kind != LOCAL:  # a LOCAL point: it kills itself
            proc.kill()
        _, err = proc.communicate(timeout=HANG)
        inst.gate.release()
        inst.gate.log_to(None)
        seen = log.read_text().splitlines() if log.exists() else []
        where = point.describe(ref.events)
        assert proc.returncode == -signal.SIGKILL, f"{where}: not killed: {proc.returncode} {err}"
        # It did what the reference did, up to the kill point: the point is the same moment.
        want = ref.events[: len(seen) if point.kind == START else point.position + 1]
        at = 0  # where they part, if they do
        while at < min(len(seen), len(want)) and seen[at] == want[at]:
            at += 1
        assert seen == want, (
            f"{where}: from event {at} the run did {seen[at:][:3]}, not {want[at:][:3]}"
        )
        assert point.kind not in (ARRIVED, SERVED) or inst.gate.holding.is_set(), where
        lock = inst.data / "revbot.lock"
        # The dead run's lock file stays behind, naming it; only the kernel's flock counts,
        # and that died with the process, so the next run must not be blocked by the file.
        stale_lock = lock.exists() and lock.read_text() == f"revbot daily (pid {proc.pid})"
        run = inst.run()
        assert run.returncode == 0, f"{where}: {run.stderr}"
        try:
            outcome = check(inst, account)
        except AssertionError as e:
            raise AssertionError(f"{where}: {e}") from e
        assert outcome == ref.outcome, where
        how_far = "starting" if point.kind == START else phase(seen)
        return Trial(point, where, how_far, stale_lock, outcome)
    finally:
        inst.close()


def test_sigkill_at_30_points_then_complete(
    tmp_path: Path, account: SandboxAccount, key_template: dict[str, Any]
) -> None:
    with ThreadPoolExecutor(PARALLEL) as pool:
        # Two uninterrupted runs side by side: the same events in the same order, and the same
        # end, which every killed run must reach too.
        refs = list(pool.map(lambda i: uninterrupted(tmp_path / f"ref{i}", account, key_template),
                             range(2)))  # fmt: skip
        ref = refs[0]
        assert refs[1] == ref
        events = ref.events
        # The services and the tracer saw the whole run (so that the kill points span it).
        assert {e.split()[0] for e in events} == {"stripe", "sheets", "resend", "local"}, events
        assert {e.split()[1] for e in events if is_local(e)} == {"commit", "rename"}, events
        points = kill_points(events)
        trials = list(pool.map(lambda n: killed_then_completed(tmp_path / f"k{n}", account,
                                                               key_template, points[n], ref),
                               range(len(points))))  # fmt: skip
    # Each kill point was reached (and the run killed there) on every machine, however slow.
    assert len(trials) >= KILLS, [t.where for t in trials]
    # The kills fell all over the run: every kind of point, at each service, in every phase.
    assert {t.point.kind for t in trials} == {START, ARRIVED, SERVED, LOCAL}
    # (Each trial checked it did the reference's events up to its point: planned is observed.)
    killed_at = [events[t.point.position] for t in trials if t.point.kind != START]
    assert {what(e) for e in killed_at} == {what(e) for e in events}
    assert {e.split()[0] for e in killed_at} == {"stripe", "sheets", "resend", "local"}
    # Both sides of every email: intent recorded but not sent, and sent but not recorded.
    emails = [i for i, e in enumerate(events) if e == "resend POST /emails"]
    assert len(emails) == len(INVESTORS)
    assert {Point(i, k) for i in emails for k in (ARRIVED, SERVED)} <= {t.point for t in trials}
    assert {t.phase for t in trials} == {"starting"} | {
        phase(events[: i + 1]) for i in range(len(events))
    }
    # Every kill after the start left a lock file naming a dead run, and no run was blocked by
    # it (the lock is taken before the run's first request and before it opens the ledger).
    assert all(t.stale_lock for t in trials if t.point.kind != START), [
        t.where for t in trials if not t.stale_lock
    ]


# -- one run at a time ------------------------------------------------------------------------


def test_two_daily_runs_started_together_do_not_interleave(
    cli: Cli,
    sandbox: SandboxServer,
    sandbox_account: SandboxAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first request Stripe gets, from whichever run took the lock, is held until the other
    # run has ended, so the two overlap however slowly either starts. (Without the lock the
    # other run would not be held: it would end 0, and then so would the first.)
    first = threading.Lock()
    other_ended = threading.Event()
    serve = sandbox._serve

    def held(*args: Any) -> Any:
        if first.acquire(blocking=False):
            other_ended.wait()
        return serve(*args)

    monkeypatch.setattr(sandbox, "_serve", held)
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
    try:
        guard = time.monotonic() + HANG
        while all(p.poll() is None for p in procs) and time.monotonic() < guard:
            time.sleep(0.01)
    finally:
        other_ended.set()
    results = [(p.wait(timeout=HANG), *p.communicate()) for p in procs]
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
