"""Secrets canary (issue 7, item 5): no key ever leaves revbot in anything it writes or prints.

Every command runs, with and without ``--verbose`` (debug logging of revbot and of the SDKs),
against services failing in the ways of the fault matrix, including servers that echo the
key back in their error messages. Then stdout, stderr, every file revbot wrote (the ledger's
bytes, its WAL, the workbook, the outbox, the archive, the preview, any log), the sheet's
cells and every message revbot posted (Slack alerts, emails) are searched for the Stripe key,
the Resend key, the Slack webhook token, the Google access tokens and the service account's
private key (whole, as JSON text, and each line and the whole of its base64 body), as well
as for any 8-character piece of a key: zero hits. Where a key is named at all, it is as its
prefix and last four characters.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import secrets
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.periods import Month
from bot.sandbox import SandboxAccount, SandboxServer
from tests.conftest import REVBOT_VARS, Cli, Run, days_ago, drain_faults, today_utc
from tests.fakes.resend_server import FakeResendServer
from tests.fakes.sheets import FakeSheetsServer, write_service_account_key
from tests.fakes.slack_server import FakeSlackWebhook

BT = "/v1/balance_transactions"
LAST = Month.of(today_utc()).previous()
SID = "1SecretsSheet0123456789abcdefghijklmnopqrst"
DAY = days_ago(3).isoformat()

# Fresh for every session: nothing in the code or the fakes can know them in advance.
STRIPE_KEY = "sk_test_" + secrets.token_hex(16)
RESEND_KEY = "re_" + secrets.token_hex(14)


@dataclass
class Canary:
    """Everything that must not appear, and everything revbot produced."""

    needles: dict[str, str] = field(default_factory=dict)  # text -> what it is
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (where, text)

    def add_secret(self, name: str, value: str, prefix: str = "") -> None:
        self.needles[value] = name
        body = value[len(prefix) :]
        for i in range(len(body) - 7):  # any 8 characters of it
            self.needles[body[i : i + 8]] = f"a piece of {name}"

    def add_private_key(self, pem: str) -> None:
        self.needles[pem] = "the private key"
        self.needles[json.dumps(pem)[1:-1]] = "the private key as JSON text"
        lines = [ln for ln in pem.strip().splitlines() if not ln.startswith("-----")]
        self.needles["".join(lines)] = "the private key's base64 body"
        for ln in lines:
            self.needles[ln] = "a line of the private key's base64 body"

    def record(self, where: str, run: Run | subprocess.CompletedProcess[str]) -> None:
        self.outputs.append((f"{where}: stdout", run.stdout))
        self.outputs.append((f"{where}: stderr", run.stderr))

    def leaks(self) -> list[str]:
        found = []
        for where, text in self.outputs:
            for needle, name in self.needles.items():
                if needle in text:
                    found.append(f"{name} in {where}")
        return found


@pytest.fixture
def canary() -> Canary:
    c = Canary()
    c.add_secret("the Stripe key", STRIPE_KEY, "sk_test_")
    c.add_secret("the Resend key", RESEND_KEY, "re_")
    return c


@pytest.fixture
def services(
    canary: Canary,
) -> Iterator[tuple[SandboxServer, FakeSheetsServer, FakeResendServer, FakeSlackWebhook]]:
    account = SandboxAccount.generate(end=today_utc(), days=75, tz="UTC", seed=11, scale=0.3)
    with SandboxServer(account) as stripe, FakeSheetsServer() as sheets, FakeResendServer() as resend, \
            FakeSlackWebhook() as slack:  # fmt: skip
        sheets.create_spreadsheet(SID, "Acme revenue", sheets=["Sheet1"])
        resend.domains = [{"id": "d1", "name": "acme.example", "status": "verified",
                           "created_at": "2026-01-01 00:00:00+00", "region": "us-east-1"}]  # fmt: skip
        canary.add_secret("the Slack webhook token", slack.token)
        yield stripe, sheets, resend, slack


def readable(path: Path) -> str:
    """A file's text as a reader would see it: a workbook unzipped, an email decoded."""
    if path.suffix == ".xlsx":
        with zipfile.ZipFile(path) as z:
            return "\n".join(z.read(name).decode("utf-8", "replace") for name in z.namelist())
    if path.suffix == ".eml":
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        parts = [str(msg)] + [
            str(part.get_content()) for part in msg.walk() if not part.is_multipart()
        ]
        return "\n".join(parts)
    return path.read_bytes().decode("utf-8", "replace")


def echo_401() -> dict[str, Any]:
    """Stripe's 401 body, from a server careless enough to quote the whole key back."""
    return {
        "error": {
            "type": "invalid_request_error",
            "message": f"Invalid API Key provided: {STRIPE_KEY}",
        }
    }


def test_no_secret_anywhere(
    tmp_path: Path,
    canary: Canary,
    services: tuple[SandboxServer, FakeSheetsServer, FakeResendServer, FakeSlackWebhook],
) -> None:
    stripe, sheets, resend, slack = services
    creds = tmp_path / "credentials.json"
    info = write_service_account_key(creds, token_uri=sheets.token_uri)
    creds.chmod(0o600)
    canary.add_private_key(info["private_key"])
    common = {
        "STRIPE_SECRET_KEY": STRIPE_KEY, "STRIPE_API_BASE": stripe.url, "REPORT_TIMEZONE": "UTC",
        "GOOGLE_APPLICATION_CREDENTIALS": str(creds), "SLACK_WEBHOOK_URL": slack.url,
        "EMAIL_FROM": "Acme Finance <finance@acme.example>", "INVESTOR_EMAILS": "ann@fund.example,bob@vc.example",
        "COMPANY_NAME": "Acme",
    }  # fmt: skip
    # W: the workbook, Resend for the investors and for alerts. S: the Google Sheet, the outbox.
    w = Cli(tmp_path, {**common, "DATA_DIR": str(tmp_path / "w"), "RESEND_API_KEY": RESEND_KEY,
                       "RESEND_API_URL": resend.url, "ALERT_EMAILS": "founder@acme.example"})  # fmt: skip
    s = Cli(tmp_path, {**common, "DATA_DIR": str(tmp_path / "s"), "GOOGLE_SHEET_ID": SID,
                       "GOOGLE_SHEETS_API_URL": sheets.url})  # fmt: skip
    tokens: set[str] = set()

    def run(cli: Cli, *args: str, codes: tuple[int, ...] = (0,)) -> Run:
        result = cli(*args)
        tokens.update(sheets.tokens)
        canary.record(" ".join(args), result)
        assert result.exit_code in codes, (args, result.stdout, result.stderr)
        return result

    # -- the workbook installation, Stripe and Resend failing ----------------------------
    stripe.inject(BT, status=429, times=1, headers={"Retry-After": "1"})
    stripe.inject(BT, status=500, times=1)
    resend.inject(status=429, times=1, headers={"retry-after": "0"})
    resend.inject(status=500, times=1, deliver_then_fail=True)
    run(w, "--verbose", "daily")  # syncs, the month's report, emails (after retries)
    stripe.inject(BT, status=401, times=1, body=echo_401())
    run(w, "--verbose", "daily", "--date", DAY, codes=(78,))  # alerted on Slack and by email
    stripe.inject(BT, status=401, times=1, body=echo_401())
    run(w, "daily", "--date", DAY, codes=(78,))
    stripe.inject(BT, status=200, times=1, body=f'{{"error": "{STRIPE_KEY}", "data": ['.encode())
    run(w, "--verbose", "daily", "--date", DAY, codes=(1,))
    run(w, "--verbose", "monthly", "--month", str(LAST))
    resend.inject(status=422, times=1, name="validation_error", message=f"bad key {RESEND_KEY}")
    run(w, "--verbose", "resend", "--month", str(LAST), codes=(1,))
    run(w, "--verbose", "resend", "--month", str(LAST), "--to", "ann@fund.example")
    run(
        w,
        "--verbose",
        "preview",
        "--month",
        str(LAST),
        "--out",
        str(tmp_path / "w" / "preview.html"),
    )
    stripe.inject(BT, reset=True, times=40)
    run(w, "--verbose", "backfill", "--since", days_ago(20).isoformat(), "--until", days_ago(15).isoformat(),
        codes=(0, 75))  # fmt: skip
    run(
        w,
        "backfill",
        "--since",
        days_ago(20).isoformat(),
        "--until",
        days_ago(15).isoformat(),
        codes=(0, 75),
    )
    drain_faults(stripe, BT, STRIPE_KEY)
    resend.inject(
        status=403, times=1, name="invalid_api_key", message=f"API key {RESEND_KEY} is invalid"
    )
    run(w, "--verbose", "doctor", codes=(0, 1))
    run(w, "doctor", codes=(0, 1))
    run(w, "--verbose", "status", "--json")
    run(w, "status")

    # -- the sheet installation, Google failing -------------------------------------------
    sheets.inject(429, times=1)
    stripe.inject("/v1/files/", status=500, times=1)
    run(s, "--verbose", "daily")  # syncs, the month's report, emails to the outbox
    sheets.unshare(SID)
    run(s, "--verbose", "daily", "--date", DAY, codes=(1,))
    sheets.share(SID)
    sheets.expire_tokens()
    run(s, "--verbose", "daily", "--date", DAY)
    sheets.inject(500, times=1)
    run(
        s,
        "--verbose",
        "backfill",
        "--since",
        days_ago(12).isoformat(),
        "--until",
        days_ago(10).isoformat(),
    )
    run(s, "--verbose", "monthly", "--month", str(LAST))
    run(s, "--verbose", "doctor", codes=(0, 1))
    run(s, "--verbose", "status")
    # One run as a real process: everything it writes to its file descriptors is captured.
    stripe.inject(BT, status=503, times=3)
    env = {k: v for k, v in os.environ.items() if k not in REVBOT_VARS} | s.env
    proc = subprocess.run([sys.executable, "-m", "bot", "--verbose", "daily", "--date", DAY],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    canary.record("subprocess daily", proc)
    assert proc.returncode == 75, proc.stderr

    # -- what the runs left behind ---------------------------------------------------------
    assert tokens, "the sheet installation never got a Google access token"
    for t in tokens:
        canary.needles[t] = "a Google access token"
    wrote = [p for p in tmp_path.rglob("*") if p.is_file() and p != creds]
    kinds = {p.suffix for p in wrote}
    assert {".sqlite", ".xlsx", ".csv", ".eml", ".html"} <= kinds, kinds
    # Each command closes its ledger, so the WAL's pages are checkpointed into state.sqlite
    # (scanned with the rest); a -wal file left over would be scanned too.
    assert any(p.name == "state.sqlite" for p in wrote)
    for p in wrote:
        canary.outputs.append((str(p.relative_to(tmp_path)), readable(p)))
    for title in sheets.sheet_titles(SID):
        canary.outputs.append(
            (f"sheet tab {title}", json.dumps(sheets.grid(SID, title), default=str))
        )
    for m in resend.messages:
        canary.outputs.append((f"email to {m['to']}", json.dumps(m)))
    for text in slack.texts:
        canary.outputs.append(("Slack", text))
    assert len(resend.messages) >= 3 and slack.texts  # there was something to look at

    assert canary.leaks() == []
    # Where the Stripe key is named, it is as its prefix and last four characters only.
    named = [
        m
        for _, text in canary.outputs
        for m in re.findall(r"sk_test_(?:…\w*|\[REDACTED\]|\w+)", text)
    ]
    assert named, "no error named the key at all"
    assert set(named) <= {f"sk_test_…{STRIPE_KEY[-4:]}", "sk_test_[REDACTED]", "sk_test_…"}, set(
        named
    )
    assert any(f"sk_test_…{STRIPE_KEY[-4:]}" in text for _, text in canary.outputs)


def test_the_canary_finds_a_leak(canary: Canary) -> None:
    """The search itself works: a key, a piece of it, a line of a private key are all found."""
    canary.add_private_key(
        "-----BEGIN PRIVATE KEY-----\n" + "A" * 64 + "\nBBBB\n-----END PRIVATE KEY-----\n"
    )
    for leak in (STRIPE_KEY, f"key={STRIPE_KEY[10:20]}", RESEND_KEY[3:12], "A" * 64):
        canary.outputs = [("x", f"text {leak} text")]
        assert canary.leaks(), leak
    canary.outputs = [("x", f"sk_test_…{STRIPE_KEY[-4:]} re_…")]
    assert canary.leaks() == []
