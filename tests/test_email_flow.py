"""The investor email through the real CLI, the real resend SDK and the fake Resend API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.jobs.investor_email import send_month
from bot.ledger import Ledger
from bot.mail.outbox import OutboxMailer
from bot.mail.sample import sample_report
from bot.periods import Month
from tests.conftest import REVBOT_VARS, Cli, today_utc
from tests.fakes.resend_server import FakeResendServer

LAST = Month.of(today_utc()).previous()
INVESTORS = ["ann@fund.example", "bob@angel.example", "cy@vc.example"]
RESEND_KEY = "re_" + "TestKey1234567890abcd"


@pytest.fixture
def resend_fake() -> Iterator[FakeResendServer]:
    with FakeResendServer() as fake:
        yield fake


@pytest.fixture
def mail_cli(cli: Cli, resend_fake: FakeResendServer) -> Cli:
    cli.env.update({
        "RESEND_API_KEY": RESEND_KEY, "RESEND_API_URL": resend_fake.url,
        "EMAIL_FROM": "Acme Finance <finance@acme.example>", "INVESTOR_EMAILS": ",".join(INVESTORS),
        "COMPANY_NAME": "<script>alert(1)</script> Acme",
    })  # fmt: skip
    return cli


def delivered(fake: FakeResendServer) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in fake.messages:
        to = m["to"] if isinstance(m["to"], list) else [m["to"]]
        assert len(to) == 1
        counts[to[0]] = counts.get(to[0], 0) + 1
    return counts


def test_each_investor_gets_exactly_one_private_message(
    mail_cli: Cli, resend_fake: FakeResendServer
) -> None:
    run = mail_cli("monthly", "--month", str(LAST))
    assert run.exit_code == 0, run.stderr
    assert delivered(resend_fake) == dict.fromkeys(INVESTORS, 1)
    for m in resend_fake.messages:
        others = [a for a in INVESTORS if a not in m["to"]]
        body = m["html"] + m["text"] + str(m.get("cc")) + str(m.get("bcc"))
        assert not any(a in body for a in others)
        assert m["subject"] == f"<script>alert(1)</script> Acme revenue report: {LAST.label()}"
        assert "<script>" not in m["html"] and "&lt;script&gt;" in m["html"]
        assert "TEST DATA" in m["html"] and "TEST DATA" in m["text"]
        assert m["idempotency_key"]
    # re-runs send nothing more
    assert mail_cli("monthly", "--month", str(LAST)).exit_code == 0
    assert mail_cli("daily").exit_code == 0
    assert delivered(resend_fake) == dict.fromkeys(INVESTORS, 1)
    assert resend_fake.violations == []
    assert RESEND_KEY not in run.stdout + run.stderr


def test_storm_of_429_and_500_still_once(mail_cli: Cli, resend_fake: FakeResendServer) -> None:
    resend_fake.inject(
        status=429, times=2, name="rate_limit_exceeded", headers={"retry-after": "0"}
    )
    resend_fake.inject(status=500, times=1, name="internal_server_error")
    resend_fake.inject(status=500, times=1, deliver_then_fail=True)
    run = mail_cli("monthly", "--month", str(LAST))
    assert run.exit_code == 0, run.stderr
    assert delivered(resend_fake) == dict.fromkeys(INVESTORS, 1)


def test_crash_after_send_before_record(mail_cli: Cli, resend_fake: FakeResendServer) -> None:
    # The first message goes out but its answer never arrives; the process dies while waiting
    # to retry. The ledger then holds an intent without a Resend id.
    resend_fake.inject(status=500, times=1, deliver_then_fail=True, drop_connection=True)
    env = {k: v for k, v in os.environ.items() if k not in REVBOT_VARS}
    env.update(mail_cli.env)
    proc = subprocess.Popen([sys.executable, "-m", "bot", "monthly", "--month", str(LAST)],
                            cwd=mail_cli.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 60
    while not resend_fake.messages and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(resend_fake.messages) == 1
    ledger = Ledger.open(Path(mail_cli.env["DATA_DIR"]) / "state.sqlite")
    assert [s.status for s in ledger.sends(str(LAST))] == ["intent"]
    ledger.close()
    run = mail_cli("monthly", "--month", str(LAST))
    assert run.exit_code == 0, run.stderr
    assert delivered(resend_fake) == dict.fromkeys(INVESTORS, 1)


def test_resend_to_exactly_the_addresses_asked(
    mail_cli: Cli, resend_fake: FakeResendServer
) -> None:
    assert mail_cli("monthly", "--month", str(LAST)).exit_code == 0
    run = mail_cli("resend", "--month", str(LAST), "--to", "BOB@angel.example")
    assert run.exit_code == 0, run.stderr
    assert "generation 2" in run.stdout
    assert delivered(resend_fake) == {
        "ann@fund.example": 1,
        "bob@angel.example": 2,
        "cy@vc.example": 1,
    }
    keys = [
        m["idempotency_key"]
        for m in resend_fake.messages
        if m["to"] in ("bob@angel.example", ["bob@angel.example"])
    ]
    assert len(set(keys)) == 2
    assert mail_cli("resend", "--month", str(LAST)).exit_code == 0
    assert sum(delivered(resend_fake).values()) == 7


def test_preview_renders_without_sending(
    mail_cli: Cli, resend_fake: FakeResendServer, tmp_path: Path
) -> None:
    assert mail_cli("monthly", "--month", str(LAST), "--no-send").exit_code == 0
    out = tmp_path / "p.html"
    run = mail_cli("preview", "--month", str(LAST), "--out", str(out))
    assert run.exit_code == 0, run.stderr
    assert out.read_text().startswith("<!DOCTYPE html") or "<html" in out.read_text()
    assert resend_fake.messages == []


@pytest.mark.parametrize(
    ("env", "match"),
    [({"INVESTOR_EMAILS": "ann@fund.example, not-an-address"}, "INVESTOR_EMAILS"),
     ({"EMAIL_FROM": None}, "EMAIL_FROM is not set")],
    ids=["bad-investor", "no-sender"],
)  # fmt: skip
def test_email_config_errors(mail_cli: Cli, env: dict[str, str | None], match: str) -> None:
    run = mail_cli("monthly", "--month", str(LAST), env=env)
    assert run.exit_code == 78
    assert match in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_live_mode_never_sends_test_data(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path / "state.sqlite")
    outbox = OutboxMailer(outbox_dir=tmp_path / "outbox")
    report = sample_report(livemode=False)
    with pytest.raises(ConfigError, match="test-mode data"):
        send_month(ledger, report, sender="f@acme.example", recipients=INVESTORS, mailer=outbox,
                   allow_test_data=False)  # fmt: skip
    assert not (tmp_path / "outbox").exists()
    assert ledger.sends() == []


def test_json_outputs_parse_and_match_the_ledger(
    mail_cli: Cli, resend_fake: FakeResendServer
) -> None:
    import json

    run = mail_cli("monthly", "--month", str(LAST), "--json")
    assert run.exit_code == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["month"] == str(LAST) and data["reconciled"] is True
    assert sorted(e["to"] for e in data["emails"]) == sorted(INVESTORS)
    ledger = Ledger.open(Path(mail_cli.env["DATA_DIR"]) / "state.sqlite")
    stored = ledger.monthly_result(str(LAST), "UTC", "test")
    assert stored is not None
    for ccy, fig in data["figures"].items():
        assert (
            fig["minor_units"]["gross_revenue"] == stored.figures[ccy.lower()].lines.gross_revenue
        )
    run = mail_cli("daily", "--json")
    assert run.exit_code == 0, run.stderr
    daily = json.loads(run.stdout)
    assert daily["command"] == "daily" and daily["monthly"] is None
    status = json.loads(mail_cli("status", "--json").stdout)
    assert status["last_synced_day"] == daily["day"]
    assert {(s["recipient"], s["status"]) for s in status["sends"]} == {
        (a, "sent") for a in INVESTORS
    }
    assert len(ledger.synced_days("UTC")) == status["days_synced"]
    assert status["report_runs"] and all(r["status"] == "succeeded" for r in status["report_runs"])
    assert {(m["month"], m["reconciled"]) for m in status["months"]} == {(str(LAST), True)}
    text = mail_cli("status").stdout
    assert f"month {LAST} (test): reconciled" in text
    run = mail_cli(
        "backfill",
        "--since",
        LAST.first_day.isoformat(),
        "--until",
        LAST.last_day.isoformat(),
        "--json",
    )
    assert run.exit_code == 0, run.stderr
    back = json.loads(run.stdout)
    assert (
        back["command"] == "backfill"
        and back["days_skipped"] + back["days_fetched"] == LAST.last_day.day
    )
