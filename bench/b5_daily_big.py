"""B5: `revbot daily` costs one day, not the account's history (PRODUCT.md §11).

The same command, `revbot daily` of the same day, side by side on two prepared DATA_DIRs that
differ only in history. "big" holds 100,000 older transactions in its ledger and in its
dashboard (a `revbot backfill` of the year, then `revbot daily --date` of the day before);
"small" is a fresh DATA_DIR where only that `revbot daily --date` of the day before ran (the
day, its look-back and last month, a few thousand transactions). Ratio: big / small.

Why it is fair: both sides talk to one sandbox (a child process, no latency, STRIPE_MAX_RPS=100)
whose account is a small business over the last 62 days after 100,000 usd charges over the
303 days before, all within SHEET_TRANSACTIONS_DAYS (400 days), so the Transactions tab really
holds them. The measured run of either side fetches, stores and writes exactly the same
transactions (the day and its 3-day look-back, in the recent part), and neither has a monthly
report left to do (the warm-up ran it); only what already lies in the ledger and the dashboard
differs. Each run starts from a fresh copy of its prepared DATA_DIR and, for the Google Sheet,
of its spreadsheet (a snapshot restored in the fake Sheets server); runs alternate big and
small, and medians are compared. Done for the local workbook and for a Google Sheet on the
fake Sheets API, one child process per side, so that neither the measured command nor the small
side's server shares a CPU-bound process with the big spreadsheet.
"""

from __future__ import annotations

import datetime as dt
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import KEY, Result, Row, revbot_command, revbot_env, seconds
from bench._server import ServerProcess
from bench._sheets_server import SheetsProcess

DAYS = 365  # the history's span, within SHEET_TRANSACTIONS_DAYS (400)
RECENT_DAYS = 62  # the small business: last month and this one, whatever today's date
LOOKBACK = 3
MAX_RPS = "100"
TARGET = 1.5
SHEET_ID = "1RevbotBenchSheetB5abcdefghijklmnopqrstuvwxyz01"


@dataclass
class Side:
    """One prepared DATA_DIR (and spreadsheet) and what its measured runs gave."""

    name: str
    dashboard: str  # "workbook" or "sheet"
    data: Path
    env: dict[str, str]
    sheets: SheetsProcess | None = None
    walls: list[float] = field(default_factory=list)
    traffic: list[dict[str, Any]] = field(default_factory=list)
    ledger: int = 0
    tab_rows: int | None = None


def _revbot(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        revbot_command(*args), env=env, cwd=cwd, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"B5: revbot {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}"
        )
    return proc


def _ledger_size(data: Path) -> int:
    from bot.ledger import Ledger

    with Ledger.open(data / "state.sqlite", read_only=True) as ledger:
        return ledger.transaction_count()


def _prepare(side: Side, *, cwd: Path, first: dt.date, day: dt.date) -> None:
    env = {**side.env, "DATA_DIR": str(side.data)}
    if side.name == "big":
        # The history up to the warm-up's day, dashboard included.
        until = day - dt.timedelta(days=2)
        _revbot(env, cwd, "backfill", "--since", first.isoformat(), "--until", until.isoformat())
    # Yesterday's run: the days before the measured one, and last month's report.
    _revbot(env, cwd, "daily", "--date", (day - dt.timedelta(days=1)).isoformat())
    side.ledger = _ledger_size(side.data)
    if side.sheets is not None:
        side.sheets.command("snapshot")
        rows = side.sheets.stats()["spreadsheets"][SHEET_ID]["rows"]
        side.tab_rows = max(0, rows.get("Transactions", 0) - 1)
        if side.tab_rows != side.ledger:
            raise RuntimeError(
                f"B5: the {side.name} Sheet's Transactions tab holds {side.tab_rows:,} rows, its "
                f"ledger {side.ledger:,} transactions; the comparison would not be what it says"
            )


def _measure(side: Side, *, cwd: Path, work: Path) -> None:
    data = work / f"{side.dashboard}-{side.name}"
    shutil.copytree(side.data, data)
    if side.sheets is not None:
        side.sheets.command("restore")
        side.sheets.command("reset")
    started = time.monotonic()
    _revbot({**side.env, "DATA_DIR": str(data)}, cwd, "daily")
    side.walls.append(time.monotonic() - started)
    if side.sheets is not None:
        side.traffic.append(side.sheets.stats())
    shutil.rmtree(data)


def _count(account: Any, first: dt.date, last: dt.date) -> int:
    lo = int(dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC).timestamp())
    hi = int(dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC).timestamp())
    return sum(1 for t in account.transactions if lo <= t["created"] < hi)


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def run(*, quick: bool = False) -> Result:
    from bot.sandbox import SandboxAccount

    history = 5_000 if quick else 100_000
    runs = 3 if quick else 5
    end = dt.datetime.now(dt.UTC).date()
    day = end - dt.timedelta(days=1)
    first = end - dt.timedelta(days=DAYS)
    # The recent part of the server's account (the same deterministic generation), to count
    # the measured day's transactions.
    recent = SandboxAccount.generate(end=end, days=RECENT_DAYS, seed=7)
    n_day = _count(recent, day, day)
    n_back = _count(recent, day - dt.timedelta(days=LOOKBACK), day - dt.timedelta(days=1))
    options = {"kind": "history", "end": end.isoformat(), "days": DAYS,
               "recent_days": RECENT_DAYS, "count": history, "seed": 7}  # fmt: skip
    result = Result()

    with (
        tempfile.TemporaryDirectory(prefix="revbot-b5-") as tmp,
        ServerProcess.start(**options) as stripe,
        SheetsProcess.start(SHEET_ID) as big_sheets,
        SheetsProcess.start(SHEET_ID) as small_sheets,
    ):
        root = Path(tmp)
        base = revbot_env(
            STRIPE_SECRET_KEY=KEY, STRIPE_API_BASE=stripe.url, STRIPE_MAX_RPS=MAX_RPS,
            REPORT_TIMEZONE="UTC",
        )  # fmt: skip
        sides: list[Side] = []
        for dashboard in ("workbook", "sheet"):
            for name, sheets in (("big", big_sheets), ("small", small_sheets)):
                env = dict(base)
                if dashboard == "sheet":
                    key = sheets.write_key(root / f"key-{name}.json")
                    env.update(GOOGLE_SHEET_ID=SHEET_ID, GOOGLE_APPLICATION_CREDENTIALS=str(key),
                               GOOGLE_SHEETS_API_URL=sheets.url)  # fmt: skip
                side = Side(name, dashboard, root / f"prepared-{dashboard}-{name}", env,
                            sheets if dashboard == "sheet" else None)  # fmt: skip
                _prepare(side, cwd=root, first=first, day=day)
                sides.append(side)
        work = root / "runs"
        work.mkdir()
        for n in range(runs):
            # Alternate which side goes first, so a drift of the machine's speed hits both.
            for side in sides if n % 2 == 0 else list(reversed(sides)):
                _measure(side, cwd=root, work=work)

    spreads = []
    for dashboard in ("workbook", "sheet"):
        big, small = (s for s in sides if s.dashboard == dashboard)
        b, s = statistics.median(big.walls), statistics.median(small.walls)
        where = "local workbook" if dashboard == "workbook" else "Google Sheet (fake API)"
        result.rows.append(
            Row("B5", f"`revbot daily`, {where}: {big.ledger:,}-txn ledger vs {small.ledger:,}",
                seconds(s), seconds(b), f"{b / s:.2f}x", f"<= {TARGET}x", b / s <= TARGET),
        )  # fmt: skip
        spreads.append(
            f"{dashboard} big {min(big.walls):.2f}-{max(big.walls):.2f} s, "
            f"small {min(small.walls):.2f}-{max(small.walls):.2f} s"
        )
    big, small = (s for s in sides if s.dashboard == "sheet")

    def per_run(key: str) -> tuple[float, float]:
        return (
            statistics.median(t[key] for t in small.traffic),
            statistics.median(t[key] for t in big.traffic),
        )

    for what, key in (("sent to", "bytes_in"), ("received from", "bytes_out")):
        s, b = per_run(key)
        result.rows.append(
            Row("B5", f"bytes {what} Sheets per `revbot daily`", _kib(s), _kib(b),
                f"{b / s:.2f}x" if s else "", "", None),
        )  # fmt: skip
    s, b = per_run("requests")
    result.rows.append(Row("B5", "Sheets requests per `revbot daily`", f"{s:g}", f"{b:g}", "", "",
                           None))  # fmt: skip
    s, b = per_run("cpu_seconds")
    result.rows.append(
        Row("B5", "CPU of the fake Sheets server per `revbot daily` (its own process)",
            seconds(s), seconds(b), "", "", None),
    )  # fmt: skip
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(big.traffic[0]["by_kind"].items()))
    result.notes.append(
        f"B5: the same `revbot daily` of one day ({n_day} transactions, {n_back} more in its "
        f"{LOOKBACK}-day look-back) on a small DATA_DIR (baseline) and on a big one (revbot: "
        f"{history:,} older transactions in its ledger and its dashboard; the big Sheet's "
        f"Transactions tab holds {big.tab_rows:,} rows); medians of {runs} runs "
        f"({'; '.join(spreads)}). Sheets traffic is whole HTTP requests and responses, headers "
        f"included, token requests left out; requests on the big Sheet: {kinds}."
    )
    return result
