"""bot.xero, the Xero adapter, through the real xero-python SDK over real HTTP to the fake Xero
(tests/fakes/xero_server.py); and the fake itself. Nothing here reaches a host but 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from bot.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_TEMPORARY,
    ConfigError,
    ServiceError,
    TemporaryError,
)
from bot.xero import (
    DEFAULT_API_URL,
    DEFAULT_IDENTITY_URL,
    JournalLine,
    JournalNotDraftError,
    JournalNotFoundError,
    NewJournal,
    XeroBooks,
)
from tests.conftest import REPO
from tests.fakes.xero_server import (
    ACCOUNTS,
    CONNECTIONS,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TENANT_ID,
    JOURNAL,
    JOURNALS,
    TOKEN,
    FakeAccount,
    FakeXeroServer,
    accounting_contract,
)

DAY = dt.date(2026, 5, 31)
NARRATION = "revbot journal 2026-05 USD"
LINES = (
    JournalLine("615", "Stripe balance: charges less refunds", Decimal("1180.50")),
    JournalLine("404", "Stripe fees", Decimal("34.52")),
    JournalLine("200", "Sales", Decimal("-1215.02")),
)


@pytest.fixture(autouse=True)
def only_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection to another host than 127.0.0.1 fails the test."""
    real = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            assert address[0] in ("127.0.0.1", "::1"), f"a test tried to reach {address}"
        return real(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture
def xero() -> Iterator[FakeXeroServer]:
    with FakeXeroServer() as server:
        yield server
    assert server.violations == [], server.violations


class Waits(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def waits() -> Waits:
    return Waits()


def books_for(server: FakeXeroServer, waits: Waits | None = None, **kw: Any) -> XeroBooks:
    kw.setdefault("client_id", DEFAULT_CLIENT_ID)
    kw.setdefault("client_secret", DEFAULT_CLIENT_SECRET)
    kw.setdefault("timeout", 5.0)
    return XeroBooks(
        api_url=server.url,
        identity_url=server.url,
        sleep=waits if waits is not None else Waits(),
        **kw,
    )


@pytest.fixture
def books(xero: FakeXeroServer, waits: Waits) -> XeroBooks:
    return books_for(xero, waits)


def lines(*pairs: tuple[str, str]) -> list[JournalLine]:
    return [
        JournalLine(code, f"line {i}", Decimal(amount)) for i, (code, amount) in enumerate(pairs)
    ]


def draft(narration: str, day: dt.date, lines: Any) -> NewJournal:
    return NewJournal(narration, day, tuple(lines))


# -- connecting -----------------------------------------------------------------------------------


def test_connect_gets_a_token_then_the_one_organisation(
    xero: FakeXeroServer, books: XeroBooks
) -> None:
    org = books.connect()
    assert org.tenant_id == DEFAULT_TENANT_ID and org.name == "Demo Company (Global)"
    assert xero.count(TOKEN) == 1 and xero.count(CONNECTIONS) == 1
    token_request = next(r for r in xero.requests if r["path"] == "/connect/token")
    assert b"grant_type=client_credentials" in token_request["body"]
    # The connections are asked for on the API root, with the token the identity root gave.
    connections = next(r for r in xero.requests if r["path"].lower() == "/connections")
    assert connections["headers"]["authorization"].startswith("Bearer fake-xero-at.")
    # Later calls reuse both.
    books.accounts()
    books.accounts()
    assert xero.count(TOKEN) == 1 and xero.count(CONNECTIONS) == 1 and xero.count(ACCOUNTS) == 2
    assert all(
        r["headers"].get("xero-tenant-id") == DEFAULT_TENANT_ID
        for r in xero.requests
        if r["path"].startswith("/api.xro")
    )


def test_the_roots_default_to_xeros_hosts() -> None:
    books = XeroBooks("id", "secret")  # nothing is sent before a call
    assert books.api_url == DEFAULT_API_URL == "https://api.xero.com"
    assert books.identity_url == DEFAULT_IDENTITY_URL == "https://identity.xero.com"
    assert books._tokens.client_credentials_token_url == "https://identity.xero.com/connect/token"
    assert books._identity.base_url == "https://api.xero.com"
    assert books._accounting.base_url == "https://api.xero.com/api.xro/2.0"
    # Per instance, never on the SDK's class.
    other = XeroBooks("id", "secret", identity_url="http://127.0.0.1:9/")
    assert other._tokens.client_credentials_token_url == "http://127.0.0.1:9/connect/token"
    assert (
        type(books._tokens).client_credentials_token_url
        == "https://identity.xero.com/connect/token"
    )
    assert "secret" not in repr(other)


@pytest.mark.parametrize("count", [0, 2])
def test_a_connection_to_no_or_several_organisations_is_a_config_error(
    xero: FakeXeroServer, books: XeroBooks, count: int
) -> None:
    org = xero.connections[0]
    xero.connections[:] = [
        dict(org, tenantId=f"00000000-0000-0000-0000-00000000000{i}", tenantName=f"Org {i}")
        for i in range(count)
    ]
    xero.connections.append(dict(org, tenantType="PRACTICE", tenantName="A practice"))
    with pytest.raises(ConfigError) as info:
        books.connect()
    assert f"connected to {count}" in str(info.value) and "exactly one organisation" in str(
        info.value
    )
    assert info.value.exit_code == EXIT_CONFIG


def test_accounts_and_the_codes_missing_from_the_chart(
    xero: FakeXeroServer, books: XeroBooks
) -> None:
    xero.accounts.append(FakeAccount("499", "Old fees", "EXPENSE", status="ARCHIVED"))
    codes = [a.code for a in books.accounts()]
    assert codes == sorted(codes) and {"200", "404", "615", "499"} <= set(codes)
    sales = next(a for a in books.accounts() if a.code == "200")
    assert (sales.name, sales.type, sales.status) == ("Sales", "REVENUE", "ACTIVE")
    assert {"200", "615"} <= books.account_codes() and not {"499", "999"} & books.account_codes()


# -- creating, exactly once ----------------------------------------------------------------------


def test_create_makes_one_draft(xero: FakeXeroServer, books: XeroBooks) -> None:
    jid = books.create_draft(draft(NARRATION, DAY, LINES), idempotency_key="revbot-2026-05-usd-1")
    [made] = xero.journals
    assert made.journal_id == jid and made.status == "DRAFT" and made.narration == NARRATION
    assert made.date == DAY and made.line_amount_types == "NoTax" and made.total == 0
    assert [(x.account_code, x.description, x.amount) for x in made.lines] == [
        (x.account_code, x.description, x.amount) for x in LINES
    ]
    assert made.idempotency_key == "revbot-2026-05-usd-1"
    put = next(r for r in xero.requests if r["method"] == "PUT")
    assert put["headers"]["idempotency-key"] == "revbot-2026-05-usd-1"
    # What revbot reads back is what it sent (the dates went through Xero's /Date(…)/ form).
    back = books.journal(jid)
    assert (
        back.is_draft and back.date == DAY and back.narration == NARRATION and back.lines == LINES
    )


def test_the_same_key_twice_makes_one_journal(xero: FakeXeroServer, books: XeroBooks) -> None:
    first = books.create_draft(draft(NARRATION, DAY, LINES), idempotency_key="k-1")
    again = books_for(xero).create_draft(
        draft(NARRATION, DAY, LINES), idempotency_key="k-1"
    )  # a new process, say
    assert first == again
    assert len(xero.journals) == 1 and xero.count(f"PUT {JOURNALS}") == 2


def test_the_same_key_for_another_journal_is_refused(
    xero: FakeXeroServer, books: XeroBooks
) -> None:
    books.create_draft(draft(NARRATION, DAY, LINES), idempotency_key="k-1")
    other = lines(("200", "-5.00"), ("615", "5.00"))
    with pytest.raises(
        ServiceError, match=r"Idempotency Key: k-1 is used with a different request\."
    ):
        books.create_draft(draft(NARRATION, DAY, other), idempotency_key="k-1")
    assert len(xero.journals) == 1


def test_an_answer_lost_after_the_post_is_retried_into_the_same_journal(
    xero: FakeXeroServer, books: XeroBooks, waits: Waits
) -> None:
    xero.inject(route=f"PUT {JOURNALS}", drop=True, after_processing=True)
    jid = books.create_draft(draft(NARRATION, DAY, LINES), idempotency_key="k-lost")
    assert len(xero.journals) == 1 and xero.journals[0].journal_id == jid
    assert xero.count(f"PUT {JOURNALS}") == 2 and len(waits) == 1


def test_once_xero_forgot_the_key_the_journal_is_found_by_its_narration(
    xero: FakeXeroServer, books: XeroBooks
) -> None:
    """Xero keeps a key minutes, not days: a caller resuming later looks the journal up first."""
    jid = books.create_draft(draft(NARRATION, DAY, LINES), idempotency_key="k-old")
    books.create_draft(draft("revbot journal 2026-05 EUR", DAY, LINES), idempotency_key="k-eur")
    xero.expire_idempotency_keys()
    [found] = books.find_journals(NARRATION)
    assert found.journal_id == jid and found.lines == LINES and found.is_draft
    assert books.find_journals("revbot journal 2026-04 USD") == []
    # Posting again with the forgotten key would have made a second journal.
    assert books.create_draft(draft(NARRATION, DAY, LINES), idempotency_key="k-old") != jid
    assert len(xero.journals) == 3
    with pytest.raises(ValueError):
        books.find_journals('say "hi"')


def test_a_killed_process_between_the_post_and_the_record_leaves_no_duplicate(
    xero: FakeXeroServer,
) -> None:
    """SIGKILL right after Xero's answer to the create is written; the rerun, with the key the
    caller stored before posting, gets the same journal back."""
    child_code = textwrap.dedent(
        f"""
        import datetime as dt, sys
        from decimal import Decimal
        from bot.xero import JournalLine, NewJournal, XeroBooks
        books = XeroBooks({DEFAULT_CLIENT_ID!r}, sys.stdin.readline().strip(),
                          api_url={xero.url!r}, identity_url={xero.url!r}, timeout=10)
        lines = [JournalLine(c, d, Decimal(a)) for c, d, a in {[(x.account_code, x.description, str(x.amount)) for x in LINES]!r}]
        journal = NewJournal({NARRATION!r}, dt.date(2026, 5, 31), tuple(lines))
        jid = books.create_draft(journal, idempotency_key="k-killed")
        print("recorded", jid, flush=True)  # the ledger write the kill prevents
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", child_code], cwd=REPO, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    killed: list[str] = []

    def kill(journal_id: str, key: str | None) -> None:
        killed.append(journal_id)
        os.kill(child.pid, signal.SIGKILL)

    xero.on_created = kill
    try:
        out, err = child.communicate(DEFAULT_CLIENT_SECRET + "\n", timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL, err
    assert "recorded" not in out and killed and xero.created.is_set()
    xero.on_created = None
    again = books_for(xero).create_draft(draft(NARRATION, DAY, LINES), idempotency_key="k-killed")
    assert again == killed[0]
    assert [j.journal_id for j in xero.journals] == [again]
    assert xero.count(f"PUT {JOURNALS}") == 2


# -- updating, and the accountant's posted journals -------------------------------------------------


def test_update_changes_the_draft_in_place(xero: FakeXeroServer, books: XeroBooks) -> None:
    jid = books.create_draft(draft(NARRATION, DAY, LINES), idempotency_key="k-1")
    new = lines(("615", "1300.00"), ("404", "40.00"), ("200", "-1340.00"))
    books.update_draft(jid, draft(NARRATION + " (rerun)", dt.date(2026, 5, 30), new))
    after = books.journal(jid)
    assert after.journal_id == jid and after.is_draft and after.lines == tuple(new)
    [stored] = xero.journals
    assert stored.versions == 2 and stored.narration == NARRATION + " (rerun)"
    assert stored.date == dt.date(2026, 5, 30) and stored.total == 0
    assert xero.count(f"POST {JOURNAL}") == 1


def test_a_journal_the_accountant_posted_is_reported_and_never_changed(
    xero: FakeXeroServer, books: XeroBooks
) -> None:
    jid = books.create_draft(draft(NARRATION, DAY, LINES), idempotency_key="k-1")
    assert books.journal_status(jid) == "DRAFT"
    xero.post_as_accountant(jid)
    assert books.journal(jid).status == "POSTED" and books.journal_status(jid) == "POSTED"
    with pytest.raises(JournalNotDraftError) as info:
        books.update_draft(jid, draft(NARRATION, DAY, lines(("200", "-1.00"), ("615", "1.00"))))
    assert info.value.status == "POSTED" and info.value.exit_code == EXIT_FAILURE
    assert xero.count(f"POST {JOURNAL}") == 0  # nothing was sent
    assert [x.amount for x in xero.journal(jid).lines] == [x.amount for x in LINES]
    assert xero.journal(jid).versions == 1


def test_the_fake_refuses_to_change_a_posted_journal(
    xero: FakeXeroServer, books: XeroBooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The accountant posts between revbot's read and its update: the fake's tripwire."""
    jid = books.create_draft(draft(NARRATION, DAY, LINES), idempotency_key="k-1")
    stale = books.journal(jid)
    xero.post_as_accountant(jid)
    monkeypatch.setattr(books, "journal", lambda journal_id: stale)
    with pytest.raises(ServiceError, match=r"is POSTED: the fake refuses"):
        books.update_draft(jid, draft(NARRATION, DAY, lines(("200", "-1.00"), ("615", "1.00"))))
    assert xero.journal(jid).versions == 1 and xero.journal(jid).status == "POSTED"
    assert xero.violations == [f"an update of POSTED manual journal {jid}"]
    xero.violations.clear()


def test_an_unknown_journal_is_not_found(books: XeroBooks) -> None:
    with pytest.raises(JournalNotFoundError):
        books.journal("0b159335-606b-485f-b51b-97b3b32bad32")
    assert books.journal_status("0b159335-606b-485f-b51b-97b3b32bad32") is None


# -- Xero's validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (
            (("615", "100.00"), ("200", "-10.00")),
            "The total debits (100.00) must equal total credits (-10.00)",
        ),
        (
            (("615", "10.00"), ("999", "-10.00")),
            "Account code '999' is not a valid code for this document.",
        ),
        (
            (("615", "10.005"), ("200", "-10.005")),
            "Line amount 10.005 must not have more than 2 decimal places.",
        ),
        (
            (("615", "0.00"),),
            "The JournalLines element must contain at least two individual JournalLine sub-elements.",
        ),
    ],
    ids=["unbalanced", "unknown-account", "three-decimals", "one-line"],
)
def test_xeros_validation_message_becomes_a_service_error(
    xero: FakeXeroServer, books: XeroBooks, pairs: Any, message: str
) -> None:
    with pytest.raises(ServiceError) as info:
        books.create_draft(draft(NARRATION, DAY, lines(*pairs)), idempotency_key="k-bad")
    text = str(info.value)
    assert type(info.value) is ServiceError and info.value.exit_code == EXIT_FAILURE
    assert (
        message in text
        and "\n" not in text
        and text.startswith("Xero refused to create the manual journal")
    )
    assert xero.journals == []


def test_an_archived_account_is_refused(xero: FakeXeroServer, books: XeroBooks) -> None:
    xero.accounts.append(FakeAccount("499", "Old fees", "EXPENSE", status="ARCHIVED"))
    with pytest.raises(ServiceError, match="Account code '499' has been archived"):
        books.create_draft(
            draft(NARRATION, DAY, lines(("499", "1.00"), ("200", "-1.00"))), idempotency_key="k-1"
        )


# -- credentials and secrets -------------------------------------------------------------------------


@pytest.mark.parametrize("wrong", ["secret", "client_id"])
def test_a_wrong_client_id_or_secret_is_one_config_line_without_secrets(
    xero: FakeXeroServer, waits: Waits, caplog: pytest.LogCaptureFixture, wrong: str
) -> None:
    secret = "Wr0ng-" + DEFAULT_CLIENT_SECRET[6:]
    client_id = DEFAULT_CLIENT_ID
    if wrong == "client_id":
        secret, client_id = DEFAULT_CLIENT_SECRET, "0" * 32
    books = books_for(xero, waits, client_id=client_id, client_secret=secret)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as info:
        books.create_draft(draft(NARRATION, DAY, LINES), idempotency_key="k-1")
    e = info.value
    text = str(e)
    assert e.exit_code == EXIT_CONFIG and "\n" not in text
    assert (
        "XERO_CLIENT_SECRET" in text and "XERO_CLIENT_ID" in text and "developer.xero.com" in text
    )
    for needle in (secret, secret[:12], secret[-12:], DEFAULT_CLIENT_SECRET[-12:], client_id):
        assert needle not in text
        assert needle not in caplog.text
    # Nothing of the SDK's (its text quotes headers and bodies) hangs off the error.
    assert e.__cause__ is None and e.__suppress_context__
    assert waits == [] and xero.count(TOKEN) == 1 and xero.journals == []


def test_no_token_or_secret_in_errors_or_logs(
    xero: FakeXeroServer, waits: Waits, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    books = books_for(xero, waits, max_attempts=2)
    books.connect()
    token = next(iter(xero.tokens))
    xero.inject(
        500, times=2, body={"Message": f"echoing Bearer {token} and {DEFAULT_CLIENT_SECRET}"}
    )
    with pytest.raises(TemporaryError) as info:
        books.accounts()
    assert token not in str(info.value) and DEFAULT_CLIENT_SECRET not in str(info.value)
    assert "echoing Bearer …" in str(info.value)
    assert token not in caplog.text and DEFAULT_CLIENT_SECRET not in caplog.text


def test_an_expired_token_is_replaced_once(xero: FakeXeroServer, books: XeroBooks) -> None:
    books.connect()
    xero.expire_tokens()
    assert books.accounts()
    assert xero.count(TOKEN) == 2 and xero.count(ACCOUNTS) == 2  # one 401, then the retry


def test_a_token_xero_keeps_refusing_is_a_config_error(
    xero: FakeXeroServer, books: XeroBooks
) -> None:
    books.connect()
    xero.inject(
        401,
        times=5,
        route=ACCOUNTS,
        body={
            "Type": None,
            "Title": "Unauthorized",
            "Status": 401,
            "Detail": "AuthenticationUnsuccessful",
        },
    )
    with pytest.raises(ConfigError, match="still connected"):
        books.accounts()
    assert xero.count(TOKEN) == 2


def test_a_tenant_the_connection_cannot_use_is_a_config_error(
    xero: FakeXeroServer, books: XeroBooks
) -> None:
    books.connect()
    xero.tenant_id = "00000000-0000-0000-0000-000000000001"  # the org was disconnected, say
    with pytest.raises(ConfigError, match=r"403: AuthenticationUnsuccessful.*scopes"):
        books.accounts()


# -- failures that pass ------------------------------------------------------------------------------


def test_a_5xx_is_retried(xero: FakeXeroServer, books: XeroBooks, waits: Waits) -> None:
    xero.inject(503, times=2, route=f"PUT {JOURNALS}")
    jid = books.create_draft(draft(NARRATION, DAY, LINES), idempotency_key="k-1")
    assert [j.journal_id for j in xero.journals] == [jid] and len(waits) == 2


def test_a_5xx_that_lasts_is_a_temporary_error(
    xero: FakeXeroServer, books: XeroBooks, waits: Waits
) -> None:
    xero.inject(500, times=10)
    with pytest.raises(TemporaryError) as info:
        books.create_draft(draft(NARRATION, DAY, LINES), idempotency_key="k-1")
    assert info.value.exit_code == EXIT_TEMPORARY
    assert str(info.value).endswith("(3 attempts); try again later") and "500" in str(info.value)
    assert len(waits) == 2


def test_429_waits_as_xero_says(xero: FakeXeroServer, books: XeroBooks, waits: Waits) -> None:
    xero.inject(429, headers={"Retry-After": "7"})
    assert books.accounts()
    assert waits == [7.0]
    xero.inject(429, headers={"X-Rate-Limit-Problem": "day"})
    with pytest.raises(TemporaryError, match="the day limit"):
        books.accounts()


def test_a_server_that_hangs_is_a_temporary_error(xero: FakeXeroServer, waits: Waits) -> None:
    books = books_for(xero, waits, timeout=0.5, max_attempts=2)
    books.connect()
    xero.inject(hang=10, times=2, route=ACCOUNTS)
    started = time.monotonic()
    with pytest.raises(TemporaryError, match="no answer in time"):
        books.accounts()
    assert time.monotonic() - started < 5


def test_a_token_endpoint_that_hangs_is_a_temporary_error(
    xero: FakeXeroServer, waits: Waits
) -> None:
    books = books_for(xero, waits, timeout=0.5, max_attempts=1)
    xero.inject(hang=10, route=TOKEN)
    started = time.monotonic()
    with pytest.raises(
        TemporaryError,
        match=r"could not reach Xero at http://127\.0\.0\.1:\d+ to get an access token",
    ):
        books.connect()
    assert time.monotonic() - started < 5


def test_no_server_at_all_is_a_temporary_error(waits: Waits) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    books = XeroBooks(
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        api_url=f"http://127.0.0.1:{port}",
        identity_url=f"http://127.0.0.1:{port}",
        sleep=waits,
    )
    with pytest.raises(TemporaryError, match="connection refused"):
        books.connect()
    assert len(waits) == 2


def test_bad_arguments_are_refused_before_anything_is_sent(
    xero: FakeXeroServer, books: XeroBooks
) -> None:
    with pytest.raises(ValueError):
        books.create_draft(draft(NARRATION, DAY, LINES), idempotency_key="")
    with pytest.raises(ValueError):
        books.create_draft(draft(NARRATION, DAY, LINES), idempotency_key="k" * 129)
    with pytest.raises(TypeError):
        float_line = JournalLine("200", "x", 1.5)  # type: ignore[arg-type]
        books.create_draft(draft(NARRATION, DAY, [float_line]), idempotency_key="k")
    with pytest.raises(ConfigError, match="XERO_CLIENT_SECRET is empty"):
        XeroBooks(DEFAULT_CLIENT_ID, " ")
    with pytest.raises(ConfigError, match="XERO_API_URL"):
        XeroBooks(DEFAULT_CLIENT_ID, "s", api_url="api.xero.com")
    assert xero.count(f"PUT {JOURNALS}") == 0


# -- the fake itself ------------------------------------------------------------------------------------


class Raw:
    """Plain HTTP to the fake, to send what the SDK never would."""

    def __init__(self, server: FakeXeroServer) -> None:
        self.url = server.url
        answer = requests.post(
            f"{self.url}/connect/token",
            data={"grant_type": "client_credentials"},
            auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),  # HTTP Basic, as Xero's guide shows
            timeout=5,
        )
        assert answer.status_code == 200, answer.text
        self.headers = {
            "Authorization": f"Bearer {answer.json()['access_token']}",
            "xero-tenant-id": DEFAULT_TENANT_ID,
        }

    def put(self, body: Any) -> requests.Response:
        return requests.put(
            f"{self.url}/api.xro/2.0/ManualJournals", json=body, headers=self.headers, timeout=5
        )


def journal_body(**fields: Any) -> dict[str, Any]:
    item = {
        "Narration": "n",
        "Date": "2026-05-31",
        "LineAmountTypes": "NoTax",
        "JournalLines": [
            {"AccountCode": "615", "LineAmount": 1.5},
            {"AccountCode": "200", "LineAmount": -1.5},
        ],
    }
    item.update(fields)
    return {"ManualJournals": [{k: v for k, v in item.items() if v is not None}]}


def test_the_fake_refuses_an_unknown_field(xero: FakeXeroServer) -> None:
    answer = Raw(xero).put(journal_body(Reference="INV-1"))
    assert answer.status_code == 400
    assert answer.json()["Type"] == "PostDataInvalidException"
    assert (
        answer.json()["Message"]
        == "Could not find member 'Reference' on object of type 'ManualJournal'. Path 'ManualJournals[0].Reference'."
    )
    assert xero.violations == [
        "PUT /ManualJournals: ManualJournals[0]: Additional properties are not allowed ('Reference' was unexpected)"
    ]
    xero.violations.clear()
    lines = [
        {"AccountCode": "615", "LineAmount": 1.5, "Colour": "red"},
        {"AccountCode": "200", "LineAmount": -1.5},
    ]
    assert Raw(xero).put(journal_body(JournalLines=lines)).status_code == 400
    assert "JournalLines[0]" in xero.violations[0]
    xero.violations.clear()
    assert xero.journals == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"LineAmountTypes": "NO_TAX"}, 'Error converting value "NO_TAX" to type'),
        (
            {"Narration": 12},
            "Error converting value 12 to type 'string'. Path 'ManualJournals[0].Narration'.",
        ),
        (
            {
                "JournalLines": [
                    {"AccountCode": "615", "LineAmount": "1.50"},
                    {"AccountCode": "200", "LineAmount": -1.5},
                ]
            },
            "Path 'ManualJournals[0].JournalLines[0].LineAmount'",
        ),
        ({"Date": "31/05/2026"}, "The string '31/05/2026' is not a valid AllXsd value."),
    ],
)
def test_the_fake_refuses_wrong_types(
    xero: FakeXeroServer, fields: dict[str, Any], message: str
) -> None:
    answer = Raw(xero).put(journal_body(**fields))
    assert answer.status_code == 400 and message in answer.json()["Message"], answer.text
    assert xero.journals == []
    xero.violations.clear()


def test_the_fake_refuses_a_journal_without_narration(xero: FakeXeroServer) -> None:
    answer = Raw(xero).put(journal_body(Narration=None))
    assert answer.status_code == 400 and answer.json()["Type"] == "ValidationException"
    assert answer.json()["Elements"][0]["ValidationErrors"] == [
        {"Message": "Narration must not be empty."}
    ]
    assert xero.violations == [
        "PUT /ManualJournals: ManualJournals[0]: 'Narration' is a required property"
    ]
    xero.violations.clear()


def test_the_fake_accepts_what_xeros_guide_shows(xero: FakeXeroServer) -> None:
    raw = Raw(xero)
    answer = raw.put(journal_body(Date="/Date(1780185600000)/"))
    assert answer.status_code == 200, answer.text
    made = answer.json()["ManualJournals"][0]
    assert made["Date"] == "/Date(1780185600000+0000)/" and made["Status"] == "DRAFT"
    assert made["JournalLines"][0]["LineAmount"] == 1.5
    # Without paging a list leaves the lines out, as Xero's does.
    listed = requests.get(
        f"{xero.url}/api.xro/2.0/ManualJournals", headers=raw.headers, timeout=5
    ).json()
    assert "JournalLines" not in listed["ManualJournals"][0]
    # Paths are matched without regard to case, as Xero matches them.
    assert (
        requests.get(
            f"{xero.url}/API.XRO/2.0/manualjournals", headers=raw.headers, timeout=5
        ).status_code
        == 200
    )
    assert (
        requests.get(f"{xero.url}/Connections", headers=raw.headers, timeout=5).status_code == 200
    )


def test_the_fake_checks_who_asks(xero: FakeXeroServer) -> None:
    raw = Raw(xero)
    url = f"{xero.url}/api.xro/2.0/Accounts"
    nobody = requests.get(url, timeout=5)
    assert nobody.status_code == 401 and nobody.json()["Detail"] == "AuthenticationUnsuccessful"
    other = requests.get(
        url,
        headers={**raw.headers, "xero-tenant-id": "00000000-0000-0000-0000-000000000000"},
        timeout=5,
    )
    assert other.status_code == 403 and other.json()["Title"] == "Forbidden"
    bad = requests.post(
        f"{xero.url}/connect/token",
        data={"grant_type": "client_credentials"},
        auth=(DEFAULT_CLIENT_ID, "nope"),
        timeout=5,
    )
    assert bad.status_code == 400 and bad.json() == {"error": "invalid_client"}
    grant = requests.post(
        f"{xero.url}/connect/token",
        data={"grant_type": "password"},
        auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
        timeout=5,
    )
    assert grant.json() == {"error": "unsupported_grant_type"}
    assert (
        requests.get(f"{xero.url}/api.xro/2.0/Invoices", headers=raw.headers, timeout=5).status_code
        == 404
    )
    query = requests.get(url, params={"unitdp": "4"}, headers=raw.headers, timeout=5)
    assert query.status_code == 400 and xero.violations == [
        "GET /Accounts: unknown query parameter 'unitdp'"
    ]
    xero.violations.clear()


def test_the_fake_checks_its_own_answers(xero: FakeXeroServer, books: XeroBooks) -> None:
    jid = books.create_draft(draft(NARRATION, DAY, LINES), idempotency_key="k-1")
    xero.set_status(jid, "PENDING")  # not a status Xero's contract allows
    with pytest.raises(TemporaryError):
        books.journal(jid)
    assert xero.violations and all(
        "ManualJournals[0].Status: 'PENDING' is not one of" in v for v in xero.violations
    )
    xero.violations.clear()


def test_the_contract_is_read_as_openapi_30() -> None:
    contract = accounting_contract()
    ok = journal_body()
    assert contract.request_errors("PUT", "/ManualJournals", ok) == []
    bad = journal_body(ShowOnCashBasisReports="yes")
    assert [e.message for e in contract.request_errors("PUT", "/ManualJournals", bad)] == [
        "'yes' is not of type 'boolean'"
    ]
    # Xero's own example answer validates, envelope fields included; one unknown field does not.
    example = contract.operation("GET", "/ManualJournals/{ManualJournalID}")["responses"]["200"][
        "content"
    ]["application/json"]["example"]
    assert contract.answer_errors("GET", "/ManualJournals/{ManualJournalID}", 200, example) == []
    example = {**example, "Extra": 1}
    assert contract.answer_errors("GET", "/ManualJournals/{ManualJournalID}", 200, example) == [
        "(body): Additional properties are not allowed ('Extra' was unexpected)"
    ]
    assert (
        contract.template("/manualjournals/7321fc21-1a13-4f40-ae47-df59cff5676d")
        == "/ManualJournals/{ManualJournalID}"
    )
