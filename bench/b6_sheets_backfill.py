"""B6: a year's `revbot backfill` of 300,000 transactions into a Google Sheet.

The sandbox (a child process, no latency, STRIPE_MAX_RPS=100) holds 300,000 usd charges over
365 days; the fake Sheets API (``tests/fakes/sheets.py``, validating every request against
Google's discovery document) runs in another child process, so neither shares the command's
GIL. Measured on the Sheets side: requests by kind, the largest request body (Google advises
bodies of at most 2 MB), the grid cells of the spreadsheet at the end (Google's limit is
10,000,000 per spreadsheet), HTTP errors, and the command's wall time. These are limits, not
comparisons: they hold or not whatever the machine's speed; the wall time is informative.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import tempfile
import time
from pathlib import Path

from bench import KEY, Result, Row, revbot_command, revbot_env, seconds
from bench._server import ServerProcess
from bench._sheets_server import SheetsProcess

DAYS = 365
MAX_RPS = "100"
MAX_BODY = 2_000_000
MAX_CELLS = 10_000_000
SHEET_ID = "1RevbotBenchSheetB6abcdefghijklmnopqrstuvwxyz01"
READS = ("spreadsheets.get", "values.get", "values.batchGet")
WRITES_PER_MINUTE = 60  # Google's quota per user; revbot spaces its writes 1 s apart


def run(*, quick: bool = False) -> Result:
    count = 30_000 if quick else 300_000
    end = dt.datetime.now(dt.UTC).date()
    since, until = end - dt.timedelta(days=DAYS), end - dt.timedelta(days=1)
    result = Result()
    with (
        tempfile.TemporaryDirectory(prefix="revbot-b6-") as tmp,
        ServerProcess.start(kind="bulk", end=end.isoformat(), days=DAYS, count=count) as stripe,
        SheetsProcess.start(SHEET_ID) as sheets,
    ):
        key = sheets.write_key(Path(tmp) / "key.json")
        env = revbot_env(
            STRIPE_SECRET_KEY=KEY, STRIPE_API_BASE=stripe.url, STRIPE_MAX_RPS=MAX_RPS,
            REPORT_TIMEZONE="UTC", DATA_DIR=str(Path(tmp) / "data"), GOOGLE_SHEET_ID=SHEET_ID,
            GOOGLE_APPLICATION_CREDENTIALS=str(key), GOOGLE_SHEETS_API_URL=sheets.url,
        )  # fmt: skip
        started = time.monotonic()
        proc = subprocess.run(
            revbot_command("backfill", "--since", since.isoformat(), "--until", until.isoformat()),
            env=env, cwd=tmp, capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.monotonic() - started
        stats = sheets.stats()

    book = stats["spreadsheets"][SHEET_ID]
    stored = max(0, book["rows"].get("Transactions", 0) - 1)
    writes = sum(n for kind, n in stats["by_kind"].items() if kind not in READS)
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats["by_kind"].items()))
    label = f"{count:,} txns, {DAYS} days"
    result.rows += [
        Row("B6", f"backfill {label} into a Google Sheet: exit status", "", str(proc.returncode),
            "", "0", proc.returncode == 0),
        Row("B6", f"Sheets requests ({kinds})", "", str(stats["requests"]), "", "", None),
        Row("B6", "largest Sheets request body", "", f"{stats['largest_body']:,} B", "",
            f"< {MAX_BODY:,} B", stats["largest_body"] < MAX_BODY),
        Row("B6", "grid cells of the spreadsheet at the end", "", f"{book['cells']:,}", "",
            f"<= {MAX_CELLS:,}", book["cells"] <= MAX_CELLS),
        Row("B6", "HTTP errors from Sheets", "", str(stats["errors"]), "", "0",
            stats["errors"] == 0),
        Row("B6", "Transactions tab rows", "", f"{stored:,}", "", f"= {count:,}",
            stored == count),
        Row("B6", f"wall time of the command (fetch, ledger, Sheet; Google's {WRITES_PER_MINUTE} "
            f"writes a minute alone take {max(0, writes - 1)} s for these {writes})", "",
            seconds(wall), "", "", None),
        Row("B6", "bytes sent to / received from Sheets", "",
            f"{stats['bytes_in'] / 2**20:,.1f} / {stats['bytes_out'] / 2**20:,.1f} MiB", "", "",
            None),
        Row("B6", "CPU time of the fake Sheets server (its own process)", "",
            seconds(stats["cpu_seconds"]), "", "", None),
    ]  # fmt: skip
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
        result.notes.append(f"B6: revbot backfill failed: {last[-400:]}")
    return result
