"""`revbot doctor` against the sandbox, the fake Sheets API and the fake Resend API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.fakes.resend_server import FakeResendServer
from tests.fakes.sheets import FakeSheetsServer, write_service_account_key

SID = "1DoctorSheet0123456789abcdefghijklmnopqrstuv"
EMAIL = "revbot@doctor-project.iam.gserviceaccount.com"
RK = "rk_test_" + "D0ctorKey1234567890"


@pytest.fixture
def world(cli: Cli, tmp_path: Path) -> Iterator[tuple[Cli, FakeSheetsServer, FakeResendServer]]:
    with FakeSheetsServer() as sheets, FakeResendServer() as resend:
        sheets.create_spreadsheet(SID, "Revenue", sheets=["Sheet1"])
        resend.domains = [{"id": "d1", "name": "acme.example", "status": "verified",
                           "created_at": "2026-01-01 00:00:00+00", "region": "us-east-1"}]  # fmt: skip
        key = tmp_path / "credentials.json"
        write_service_account_key(key, token_uri=sheets.token_uri, client_email=EMAIL)
        key.chmod(0o600)
        cli.env.update({
            "STRIPE_SECRET_KEY": RK, "STRIPE_MODE": "test", "GOOGLE_SHEET_ID": SID,
            "GOOGLE_APPLICATION_CREDENTIALS": str(key), "GOOGLE_SHEETS_API_URL": sheets.url,
            "RESEND_API_KEY": "re_" + "DoctorResendKey123456", "RESEND_API_URL": resend.url,
            "EMAIL_FROM": "Acme Finance <finance@acme.example>", "INVESTOR_EMAILS": "ann@fund.example",
        })  # fmt: skip
        yield cli, sheets, resend


def lines(out: str) -> dict[str, str]:
    return {
        ln.split("]", 1)[1].split(":", 1)[0].strip(): ln
        for ln in out.splitlines()
        if ln.startswith("[")
    }


def test_all_good(world: tuple[Cli, FakeSheetsServer, FakeResendServer]) -> None:
    cli, _, _ = world
    run = cli("doctor")
    assert run.exit_code == 0, run.stdout + run.stderr
    checks = lines(run.stdout)
    for name in ("DATA_DIR", "Stripe key", "Stripe key kind", "Stripe balance transactions",
                 "Stripe report runs", "Stripe files", "Google credentials", "Google Sheet", "Resend"):  # fmt: skip
        assert checks[name].startswith("[ok"), checks[name]
    assert "all checks passed" in run.stdout
    assert RK not in run.stdout and "rk_test_…7890" in run.stdout


def test_each_failure_has_its_fix(
    world: tuple[Cli, FakeSheetsServer, FakeResendServer], tmp_path: Path
) -> None:
    cli, sheets, resend = world
    sheets.unshare(SID)
    resend.domains[0]["status"] = "pending"
    Path(cli.env["GOOGLE_APPLICATION_CREDENTIALS"]).chmod(0o644)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    run = cli("doctor", env={"STRIPE_SECRET_KEY": "sk_test_" + "S" * 20, "STRIPE_MODE": None,
                             "DATA_DIR": str(blocker / "data")})  # fmt: skip
    assert run.exit_code == 1
    checks = lines(run.stdout)
    assert (
        checks["Google Sheet"].startswith("[FAIL")
        and f"share the sheet with {EMAIL}" in checks["Google Sheet"]
    )
    assert checks["Resend"].startswith("[FAIL") and "verify acme.example" in checks["Resend"]
    assert (
        checks["Google credentials"].startswith("[warn")
        and "chmod 600" in checks["Google credentials"]
    )
    assert checks["Stripe key kind"].startswith("[warn") and "rk_" in checks["Stripe key kind"]
    assert checks["Stripe key"].startswith("[warn") and "STRIPE_MODE=test" in checks["Stripe key"]
    assert checks["DATA_DIR"].startswith("[FAIL") and "DATA_DIR" in checks["DATA_DIR"]
    assert "check(s) failed" in run.stderr
    assert "S" * 20 not in run.stdout + run.stderr


def test_rejected_stripe_key(world: tuple[Cli, FakeSheetsServer, FakeResendServer]) -> None:
    cli, _, _ = world
    run = cli("doctor", env={"STRIPE_SECRET_KEY": "rk_live_" + "L" * 20, "STRIPE_MODE": "live"})
    assert run.exit_code == 1
    checks = lines(run.stdout)
    assert checks["Stripe balance transactions"].startswith("[FAIL")
    assert (
        "Balance, Report runs and Files" in checks["Stripe balance transactions"]
        or "copy the key" in checks["Stripe balance transactions"]
    )
