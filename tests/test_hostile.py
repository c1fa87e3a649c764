"""Hostile data and hostile files (issue 18): nothing wedges the pipeline, nothing in DATA_DIR
runs, every wait is bounded.

Each test drives the real CLI (or the real Stripe adapter) over real HTTP. The servers that
misbehave on purpose (a currency that is not one, a list that never ends, an answer that
trickles in) are small stand-ins written here: they are what a broken proxy or a
Stripe-compatible service could send, not what Stripe sends.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import pickle
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from bot.config import Secret
from bot.deadline import RunCeilingReached, bounded, run_ceiling
from bot.errors import ServiceError, TemporaryError
from bot.ledger import Ledger
from bot.periods import Interval, Month, day_interval
from bot.sandbox import SandboxAccount, SandboxServer
from bot.stripe_source import StripeSource
from tests.conftest import TEST_KEY, Cli, days_ago, today_utc
from tests.fakes.sheets import FakeSheetsServer, serving, write_service_account_key

DAY = days_ago(2)
LAST = Month.of(today_utc()).previous()
CONTROL = ["\x00", "\x07", "\x0b", "\x1b", "\x7f", "\x9b"]
LONG = "x" * 60_000


def _at(minute: int) -> int:
    return day_interval(DAY, UTC).start + 6 * 3600 + minute * 60


def _data(cli: Cli) -> Path:
    return Path(cli.env["DATA_DIR"])


# -- 1. control characters in Stripe's text ---------------------------------------------------


@pytest.fixture
def control_text(sandbox_account: SandboxAccount) -> dict[str, str]:
    """A charge on DAY for each control character, and one longer than any cell; id -> text."""
    out = {}
    texts = [f"Pro plan{c}renewal" for c in CONTROL] + [LONG]
    for i, text in enumerate(texts):
        t = sandbox_account.add_transaction(created=_at(i), amount=2000 + i, fee=60, currency="usd",
                                            reporting_category="charge", description=text)  # fmt: skip
        out[t["id"]] = text
    return out


def _no_control(text: str) -> bool:
    return not any((ord(c) < 32 and c not in "\t\n\r") or 0x7F <= ord(c) <= 0x9F for c in text)


def test_control_characters_flow_through_daily_monthly_and_the_email(
    cli: Cli, sandbox: SandboxServer, control_text: dict[str, str]
) -> None:
    sandbox.data_available_end = None  # the closed month is ready: daily runs monthly too
    env = {
        "EMAIL_FROM": "Acme Finance <finance@acme.example>",
        "INVESTOR_EMAILS": "ann@fund.example",
    }
    run = cli("daily", "--date", DAY.isoformat(), env=env)
    assert run.exit_code == 0, run.stderr
    assert _no_control(run.stdout + run.stderr)
    # Again: the rows are there, nothing is wedged.
    run = cli("daily", "--date", DAY.isoformat(), env=env)
    assert run.exit_code == 0, run.stderr
    run = cli("monthly", "--month", str(LAST), env=env)
    assert run.exit_code == 0, run.stderr

    ws = load_workbook(_data(cli) / "dashboard.xlsx")["Transactions"]
    header = [c.value for c in ws[1]]
    col = header.index("description")
    seen = {r[0].value: r[col].value for r in ws.iter_rows(min_row=2) if r[0].value in control_text}
    assert set(seen) == set(control_text)
    for txn_id, text in control_text.items():
        shown = seen[txn_id]
        assert _no_control(shown), repr(shown)
        if text == LONG:
            assert len(shown) == 32_767 and shown.endswith("…")
        else:
            assert shown == "Pro plan\ufffdrenewal"
    # The ledger keeps Stripe's text exactly.
    ledger = Ledger.open(_data(cli) / "state.sqlite", read_only=True)
    stored = {t["id"]: t["description"] for t in ledger.raw_transactions()}
    ledger.close()
    assert all(stored[i] == text for i, text in control_text.items())
    # The investor email of the closed month went out (to the outbox).
    [eml] = (_data(cli) / "outbox").glob("*.eml")
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert str(msg["To"]) == "ann@fund.example"


def test_control_characters_in_the_google_sheet(
    cli: Cli, sandbox: SandboxServer, control_text: dict[str, str], tmp_path: Path
) -> None:
    sid = "1HostileSheet0123456789abcdefghijklmnopqrstu"
    sandbox.data_available_end = int(
        datetime.combine(LAST.last_day, datetime.min.time(), tzinfo=UTC).timestamp()
    )
    with serving(sid) as sheets:
        env = _sheet_env(sheets, sid, tmp_path)
        run = cli("daily", "--date", DAY.isoformat(), env=env)
        assert run.exit_code == 0, run.stderr
        grid = sheets.grid(sid, "Transactions")
    col = grid[0].index("description")
    seen = {r[0]: r[col] for r in grid[1:] if r and r[0] in control_text}
    assert set(seen) == set(control_text)
    for txn_id, text in control_text.items():
        assert _no_control(seen[txn_id]), repr(seen[txn_id])
        if text == LONG:
            assert len(seen[txn_id]) == 50_000 and seen[txn_id].endswith("…")


def _sheet_env(sheets: FakeSheetsServer, sid: str, tmp_path: Path) -> dict[str, str]:
    key = tmp_path / "credentials.json"
    write_service_account_key(key, token_uri=sheets.token_uri)
    return {
        "GOOGLE_SHEET_ID": sid,
        "GOOGLE_APPLICATION_CREDENTIALS": str(key),
        "GOOGLE_SHEETS_API_URL": sheets.url,
    }


def test_a_control_character_in_a_log_line_is_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from bot import logs

    logs.setup()
    logging.getLogger("bot.test").warning("Stripe said %s", "bell\x07 nul\x00 esc\x1b[31m")
    err = capsys.readouterr().err
    assert "bell\\x07 nul\\x00 esc\\x1b[31m" in err and _no_control(err.replace("\n", ""))


# -- a stand-in for a server that is not Stripe ------------------------------------------------


class _Server:
    """An HTTP server on 127.0.0.1 whose GET answers come from ``answer(path, n)``."""

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler, int], None]) -> None:
        count = [0]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                count[0] += 1
                answer(self, count[0])

            def log_message(self, *args: Any) -> None:
                pass

        self.count = count
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _json(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _txn(txn_id: str, created: int = 0, **fields: Any) -> dict[str, Any]:
    created = fields.pop("created", created)
    return {
        "id": txn_id, "object": "balance_transaction", "amount": 1000, "fee": 30, "net": 970,
        "currency": "usd", "created": created, "available_on": _at(0), "status": "available",
        "reporting_category": "charge", "type": "charge", "description": "x", "source": "ch_1",
        "livemode": False, **fields,
    }  # fmt: skip


@pytest.fixture
def hostile() -> Iterator[Callable[[Callable[[BaseHTTPRequestHandler, int], None]], _Server]]:
    servers: list[_Server] = []

    def start(answer: Callable[[BaseHTTPRequestHandler, int], None]) -> _Server:
        servers.append(_Server(answer))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


# -- values that must be what they claim -------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("currency", "usd' and 1=1", 'currency "usd\' and 1=1"'),
        ("id", "txn_1'; DROP TABLE transactions; --", "id"),
        ("amount", "1000", "amount '1000'"),
        ("created", -5, "created -5"),
        ("reporting_category", "charge\x00", "reporting_category 'charge\\x00'"),
    ],
    ids=["currency", "id", "amount", "created", "category"],
)
def test_a_malformed_value_is_refused_and_not_stored(
    cli: Cli, hostile: Any, sandbox: SandboxServer, field: str, value: Any, named: str
) -> None:
    start = _at(0)

    def answer(h: BaseHTTPRequestHandler, n: int) -> None:
        good = _txn("txn_good", start + 60)
        bad = _txn("txn_bad", **{"created": start, field: value})
        _json(
            h,
            {
                "object": "list",
                "data": [good, bad],
                "has_more": False,
                "url": "/v1/balance_transactions",
            },
        )

    server = hostile(answer)
    run = cli("daily", "--date", DAY.isoformat(), env={"STRIPE_API_BASE": server.url})
    assert run.exit_code == 1, run.stderr
    [line] = run.stderr.strip().splitlines()
    assert named in line and "nothing from that answer was stored" in line, line
    assert _no_control(line)
    ledger = Ledger.open(_data(cli) / "state.sqlite", read_only=True)
    try:
        assert ledger.transaction_count() == 0
        assert DAY not in ledger.synced_days("UTC")
    finally:
        ledger.close()
    # Not wedged: the next run against a sane server syncs the day.
    sandbox.data_available_end = 0
    run = cli("daily", "--date", DAY.isoformat())
    assert run.exit_code == 0, run.stderr


# -- 2. a file in DATA_DIR never runs code -----------------------------------------------------


class _Planted:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_pickle_runs_nothing(cli: Cli, sandbox: SandboxServer, tmp_path: Path) -> None:
    sandbox.data_available_end = 0
    assert cli("daily", "--date", days_ago(3).isoformat()).exit_code == 0
    cache = _data(cli) / ".dashboard.xlsx.cache"
    assert cache.exists()
    marker = tmp_path / "pwned"
    planted = pickle.dumps({"format": 3, "x": _Planted(marker)})
    # The workbook's cache, and the snapshot an earlier version kept: data, never code.
    cache.write_bytes(planted)
    (_data(cli) / ".dashboard.xlsx.snapshot").write_bytes(planted)
    run = cli("daily", "--date", DAY.isoformat())
    assert run.exit_code == 0, run.stderr
    assert not marker.exists()


def test_a_damaged_workbook_cache_costs_a_rebuild(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.data_available_end = 0
    assert cli("daily", "--date", days_ago(3).isoformat()).exit_code == 0
    with sqlite3.connect(_data(cli) / ".dashboard.xlsx.cache") as conn:
        conn.execute("UPDATE chunks SET data = ?", (b"\x00 not deflate",))
        conn.execute("UPDATE rows SET xml = '<row><c><v>oops</v></c></row>'")
    run = cli("daily", "--date", DAY.isoformat())
    assert run.exit_code == 0, run.stderr
    wb = load_workbook(_data(cli) / "dashboard.xlsx")
    days = {r[0].date() for r in wb["Daily"].iter_rows(min_row=2, values_only=True)}
    assert {days_ago(3), DAY} <= days  # refilled from the ledger, the damaged rows gone
    assert all(r[0] != "oops" for r in wb["Daily"].iter_rows(min_row=2, values_only=True))
    assert wb["Transactions"].max_row > 1


# -- 3. every wait is bounded ------------------------------------------------------------------


def test_a_list_that_repeats_its_page_ends(cli: Cli, hostile: Any) -> None:
    start = _at(0)

    def answer(h: BaseHTTPRequestHandler, n: int) -> None:
        page = [_txn(f"txn_{i:03d}", start + 100 - i) for i in range(3)]
        _json(
            h, {"object": "list", "data": page, "has_more": True, "url": "/v1/balance_transactions"}
        )

    server = hostile(answer)
    began = time.monotonic()
    run = cli("daily", "--date", DAY.isoformat(), env={"STRIPE_API_BASE": server.url})
    assert run.exit_code == 1, run.stderr
    assert "twice while paging" in run.stderr and time.monotonic() - began < 30
    assert server.count[0] <= 3
    # The lock was let go: the next run is not told another one is running.
    assert (
        "is running on"
        not in cli("daily", "--date", DAY.isoformat(), env={"STRIPE_API_BASE": server.url}).stderr
    )


def test_a_list_with_new_ids_for_ever_ends_at_the_ceiling(hostile: Any) -> None:
    start = _at(0)

    def answer(h: BaseHTTPRequestHandler, n: int) -> None:
        page = [_txn(f"txn_{n:05d}_{i:03d}", start + 10) for i in range(100)]
        _json(
            h, {"object": "list", "data": page, "has_more": True, "url": "/v1/balance_transactions"}
        )

    server = hostile(answer)
    source = StripeSource(api_key=Secret(TEST_KEY), api_base=server.url, max_rps=100)
    interval = Interval(start, start + 600)  # ten minutes: at most 20 + 60 pages
    with pytest.raises(ServiceError, match="more than the days asked for can hold"):
        for _ in source.iter_pages(interval):
            pass
    assert server.count[0] == 80


def _trickle(h: BaseHTTPRequestHandler, n: int) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", "1000")
    h.end_headers()
    for _ in range(100):  # a byte every 0.5 s: each read finishes well within its timeout
        try:
            h.wfile.write(b" ")
            h.wfile.flush()
        except OSError:
            return
        time.sleep(0.5)


def test_an_answer_that_trickles_in_ends_within_the_call_deadline(hostile: Any) -> None:
    server = hostile(_trickle)
    source = StripeSource(
        api_key=Secret(TEST_KEY), api_base=server.url, timeout=2, max_network_retries=0,
        call_deadline=3,
    )  # fmt: skip
    began = time.monotonic()
    with pytest.raises(TemporaryError, match="did not finish within 3 s"):
        source.list_page(gte=_at(0), lt=_at(10))
    assert time.monotonic() - began < 6


def test_a_run_stops_at_its_ceiling() -> None:
    calls = []
    with run_ceiling("daily", seconds=0.3), pytest.raises(RunCeilingReached, match="its ceiling"):
        while True:
            calls.append(bounded(lambda: time.sleep(0.05), seconds=5, what="a test call"))
    assert 2 <= len(calls) <= 8
    # Outside a run, no ceiling.
    assert bounded(lambda: 42, seconds=1, what="a test call") == 42


# -- 6. what revbot writes is its owner's alone ------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o002], ids=["022", "002"])
def test_files_are_private_whatever_the_umask(cli: Cli, sandbox: SandboxServer, umask: int) -> None:
    sandbox.data_available_end = None
    env = {
        "EMAIL_FROM": "Acme Finance <finance@acme.example>",
        "INVESTOR_EMAILS": "ann@fund.example",
    }
    old = os.umask(umask)
    try:
        assert cli("daily", "--date", DAY.isoformat(), env=env).exit_code == 0
        assert cli("preview", "--month", str(LAST), env=env).exit_code == 0
    finally:
        os.umask(old)
    data = _data(cli)
    kinds = {p.name for p in data.rglob("*")}
    assert {"state.sqlite", "dashboard.xlsx", "archive", "outbox", f"preview-{LAST}.html"} <= kinds
    for p in [data, *data.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))


def test_a_ledger_made_under_a_loose_umask_is_made_private(
    cli: Cli, sandbox: SandboxServer
) -> None:
    sandbox.data_available_end = 0
    assert cli("daily", "--date", DAY.isoformat()).exit_code == 0
    ledger = _data(cli) / "state.sqlite"
    ledger.chmod(0o644)
    assert cli("daily", "--date", DAY.isoformat()).exit_code == 0
    assert stat.S_IMODE(ledger.stat().st_mode) == 0o600


# -- 7. a killed save leaves nothing behind for long ------------------------------------------


def test_temp_files_of_a_killed_save_are_removed(cli: Cli, sandbox: SandboxServer) -> None:
    sandbox.data_available_end = 0
    assert cli("daily", "--date", days_ago(3).isoformat()).exit_code == 0
    stale = [_data(cli) / ".dashboard-k1ll3d.xlsx", _data(cli) / ".dashboard-k1ll3d.snapshot"]
    for p in stale:
        p.write_bytes(b"PK\x03\x04 half a workbook")
    assert cli("daily", "--date", DAY.isoformat()).exit_code == 0
    assert not any(p.exists() for p in stale)


# -- 8. the smaller ones -----------------------------------------------------------------------


def test_a_full_disk_is_one_line(cli: Cli, sandbox: SandboxServer, tmp_path: Path) -> None:
    """DATA_DIR on a tmpfs too small for the workbook (in a private mount namespace)."""
    if shutil.which("unshare") is None:
        pytest.fail("util-linux's unshare is needed to mount a small file system")
    sandbox.data_available_end = 0
    assert cli("daily", "--date", days_ago(3).isoformat()).exit_code == 0
    src = _data(cli)
    (src / "dashboard.xlsx").unlink()
    (src / ".dashboard.xlsx.cache").unlink()
    used = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    small = tmp_path / "small"
    small.mkdir()
    env = {**os.environ, **{k: v for k, v in cli.env.items()}, "DATA_DIR": str(small)}
    script = (
        f"mount -t tmpfs -o size={used + 96 * 1024} tmpfs {small} && cp -a {src}/. {small}/ && "
        f"exec {sys.executable} -m bot daily --date {DAY.isoformat()}"
    )
    proc = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", script],
        cwd=cli.cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "free some space" in lines[0], lines[0]
    print(lines[0])
    assert "Traceback" not in proc.stderr


def test_a_utf8_bom_in_dotenv_is_fine(tmp_path: Path) -> None:
    from bot.config import resolve

    (tmp_path / ".env").write_text(
        "\ufeffSTRIPE_SECRET_KEY=" + TEST_KEY + "\n"
        'EMAIL_FROM="Acme <finance@acme.example>"  # the sender\n'
        'COMPANY_NAME="Acme\\nLabs"\n',
        encoding="utf-8",
    )
    settings = resolve(environ={}, cwd=tmp_path)
    assert settings.stripe_key is not None and settings.stripe_key.reveal() == TEST_KEY
    assert settings.email_from == "Acme <finance@acme.example>"
    assert settings.company_name == "Acme\nLabs"


def test_doctor_says_unreachable_not_permissions(tmp_path: Path, cli: Cli) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before doctor runs: nobody listens
    run = cli("doctor", env={"STRIPE_API_BASE": f"http://127.0.0.1:{port}"})
    lines = [ln for ln in run.stdout.splitlines() if "Stripe balance transactions" in ln]
    assert lines and "FAIL" in lines[0], run.stdout
    assert "permission" not in lines[0].split("->")[1] and "reach" in lines[0].split("->")[1]


def test_a_refused_resend_connection_is_not_a_500() -> None:
    from bot.mail.model import OutgoingEmail
    from bot.mail.resend_sender import ResendMailer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mailer = ResendMailer(
        api_key="re_" + "T3stKeyForRevbot", api_url=f"http://127.0.0.1:{port}",
        sleep=lambda _: None, max_attempts=2,
    )  # fmt: skip
    mail = OutgoingEmail(
        sender="a@b.example", to="c@d.example", subject="s", html="<p>x</p>", text="x"
    )
    with pytest.raises(TemporaryError) as caught:
        mailer.send(mail, idempotency_key="revbot-test-1")
    message = str(caught.value)
    assert (
        "500" not in message
        and f"no answer from http://127.0.0.1:{port}: connection refused" in message
    )
