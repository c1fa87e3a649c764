"""B2: a 1,000,000-row ``balance_change_from_activity.itemized.3`` CSV into the ledger.

Each side runs in its own child process (``python -m bench.b2_ingest revbot|naive CSV DIR``),
which prints its time and peak RSS (``ru_maxrss``; for revbot also its largest parsing child's).
Baseline: the naive way, ``csv.DictReader`` and one INSERT per row (in one transaction).
Target: revbot's rows/s at least 7x the baseline's (a ratio: both run on the same machine in
the same run, so its speed cancels out); the rows/s themselves are informative.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import REPO, Result, Row, seconds

TARGET_RATIO = 7.0
TARGET_RSS_MB = 200


def _rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kilobytes on Linux


def revbot(csv_path: Path, data: Path) -> dict[str, float]:
    import datetime as dt

    from bot.jobs.ingest import ingest_itemized
    from bot.ledger import Ledger

    ledger = Ledger.open(data / "state.sqlite")
    started = time.monotonic()
    stats = ingest_itemized(ledger, csv_path, livemode=False, now=dt.datetime.now(dt.UTC))
    elapsed = time.monotonic() - started
    return {"seconds": elapsed, "rows": stats.rows, "stored": ledger.transaction_count()}


def naive(csv_path: Path, data: Path) -> dict[str, float]:
    import csv
    import datetime as dt
    import sqlite3
    from decimal import Decimal

    from bot.ledger import Ledger
    from bot.money import to_minor

    Ledger.open(data / "state.sqlite").close()  # the schema
    conn = sqlite3.connect(data / "state.sqlite")
    now = dt.datetime.now(dt.UTC)
    stamp = now.isoformat(timespec="seconds")

    def unix(text: str) -> int:
        return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp())

    started = time.monotonic()
    rows = 0
    with open(csv_path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            ccy = row["currency"].lower()
            gross = to_minor(Decimal(row["gross"]), ccy)
            net = to_minor(Decimal(row["net"]), ccy)
            available = unix(row["available_on_utc"])
            conn.execute(
                "INSERT OR IGNORE INTO transactions (id, created, available_on, currency, amount, "
                "fee, net, reporting_category, type, status, description, source, livemode, raw, "
                "first_seen, last_changed) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (row["balance_transaction_id"], unix(row["created_utc"]), available, ccy, gross,
                 gross - net, net, row["reporting_category"], "",
                 "available" if available <= now.timestamp() else "pending", row["description"],
                 row["source_id"], 0, json.dumps(row), stamp, stamp),
            )  # fmt: skip
            rows += 1
    conn.commit()
    elapsed = time.monotonic() - started
    stored = conn.execute("SELECT COUNT(*) FROM transactions").fetchone()[0]
    return {"seconds": elapsed, "rows": rows, "stored": stored}


def _child(kind: str, csv_path: Path, data: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.b2_ingest", kind, str(csv_path), str(data)],
        capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"B2 {kind} failed: {proc.stderr.strip()[-800:]}")
    out: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def run(*, quick: bool = False) -> Result:
    from bench import itemized_csv

    count = 100_000 if quick else 1_000_000
    result = Result()
    with tempfile.TemporaryDirectory(prefix="revbot-b2-") as tmp:
        csv_path = Path(tmp) / "itemized.csv"
        size = itemized_csv.write(csv_path, rows=count, start=1_735_689_600)  # from 2025-01-01
        (Path(tmp) / "revbot").mkdir()
        (Path(tmp) / "naive").mkdir()
        ours = _child("revbot", csv_path, Path(tmp) / "revbot")
        theirs = _child("naive", csv_path, Path(tmp) / "naive")
    for side in (ours, theirs):
        if side["rows"] != count or side["stored"] != count:
            raise RuntimeError(f"B2: expected {count} rows, got {side}")
    ours_rps, theirs_rps = count / ours["seconds"], count / theirs["seconds"]
    rss = ours["rss_mb"] + ours["child_rss_mb"]
    result.rows += [
        Row("B2", f"ingest {count:,}-row itemized CSV ({size / 2**20:.0f} MiB): rows/s",
            f"{theirs_rps:,.0f}", f"{ours_rps:,.0f}", f"{ours_rps / theirs_rps:.2f}x faster",
            f">= {TARGET_RATIO:g}x", ours_rps / theirs_rps >= TARGET_RATIO),
        Row("B2", "ingest wall time", seconds(theirs["seconds"]), seconds(ours["seconds"]),
            "", "", None),
        Row("B2", "peak RSS (this process + a parsing child)", f"{theirs['rss_mb']:.0f} MB",
            f"{ours['rss_mb']:.0f} + {ours['child_rss_mb']:.0f} MB", "",
            f"< {TARGET_RSS_MB} MB", rss < TARGET_RSS_MB),
    ]  # fmt: skip
    return result


if __name__ == "__main__":
    kind, csv_arg, data_arg = sys.argv[1:4]
    figures = (revbot if kind == "revbot" else naive)(Path(csv_arg), Path(data_arg))
    figures["rss_mb"] = _rss_mb(resource.RUSAGE_SELF)
    figures["child_rss_mb"] = _rss_mb(resource.RUSAGE_CHILDREN)
    print(json.dumps(figures))
