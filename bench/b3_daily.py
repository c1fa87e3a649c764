"""B3: one day's `revbot daily` against the sandbox without latency.

The ledger already holds yesterday's state (a first `revbot daily` ran, the month closed before
is reported), as on any morning; then one more day of transactions is measured: the Stripe
requests it makes (one ranged listing of the day plus its look-back window, paged by 100, the
two Billing requests of an account without subscriptions: the bench's server serves no
Billing endpoint, so each answers 404 once, which revbot notes and carries on; and the payouts:
one list, a read of each payout not final yet that the list did not bring, and a list of what
each new automatic payout settled, counted from the ledger before and after) and
its wall time as a command, Python start-up included (the median of five runs, each on a fresh
copy of the same state). The request count is checked; the wall time, an absolute figure that
moves with the machine's speed, is informative (B5 holds `daily` to a ratio instead).
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench import KEY, Result, Row, revbot_command, revbot_env, seconds
from bench._server import ServerProcess

DAYS = 90
FINAL = ("paid", "failed", "canceled")
LOOKBACK = 3
GOAL = 1.5  # seconds: shown beside the wall time, not a pass/fail target
RUNS = 5


def _payouts(data: Path) -> dict[str, tuple[str, str | None]]:
    """id -> (status, the status its settled list was read at) in a DATA_DIR's ledger."""
    with sqlite3.connect(data / "state.sqlite") as conn:
        rows = conn.execute("SELECT id, status, listed_status FROM payouts").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def run(*, quick: bool = False) -> Result:
    from bot.sandbox import SandboxAccount

    end = dt.datetime.now(dt.UTC).date()
    day = end - dt.timedelta(days=1)
    result = Result()
    # The same deterministic account as the server's, to count the day's transactions.
    account = SandboxAccount.generate(end=end, days=DAYS, seed=7)

    def count(first: dt.date, last: dt.date) -> int:
        lo = int(dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC).timestamp())
        hi = int(
            dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC).timestamp()
        )
        return sum(1 for t in account.transactions if lo <= t["created"] < hi)

    with (
        tempfile.TemporaryDirectory(prefix="revbot-b3-") as tmp,
        ServerProcess.start(kind="generate", end=end.isoformat(), days=DAYS, seed=7) as server,
    ):
        env = revbot_env(
            STRIPE_SECRET_KEY=KEY, STRIPE_API_BASE=server.url, DATA_DIR=str(Path(tmp) / "data"),
            REPORT_TIMEZONE="UTC",
        )  # fmt: skip
        # Yesterday's run: the days before, and the monthly report of the closed month.
        warm = subprocess.run(
            revbot_command("daily", "--date", (day - dt.timedelta(days=1)).isoformat()),
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if warm.returncode != 0:
            raise RuntimeError(f"B3 warm-up failed: {warm.stderr.strip()[-500:]}")
        # The measured run, on fresh copies of that state: the first counts the requests;
        # the wall time is the median of RUNS (the machine's other load varies).
        walls, made, routes = [], 0, {}
        for n in range(RUNS):
            data = Path(tmp) / f"run{n}"
            shutil.copytree(Path(tmp) / "data", data)
            stats = server.stats()
            before, before_routes = stats["requests"], stats["by_route"]
            started = time.monotonic()
            proc = subprocess.run(
                revbot_command("daily"), env={**env, "DATA_DIR": str(data)},
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            walls.append(time.monotonic() - started)
            if n == 0:
                stats = server.stats()
                made = stats["requests"] - before
                routes = {
                    r: c - before_routes.get(r, 0)
                    for r, c in stats["by_route"].items()
                    if c != before_routes.get(r, 0)
                }
            if proc.returncode != 0:
                raise RuntimeError(f"B3 daily failed: {proc.stderr.strip()[-500:]}")
        wall = statistics.median(walls)
        # Payouts: one list of those created in the synced days, one read by id of each stored
        # one not final yet that the list did not bring, and one list of what each automatic
        # payout settled, for every payout whose settled list is new or was read again.
        warm_payouts, run_payouts = _payouts(Path(tmp) / "data"), _payouts(Path(tmp) / "run0")
        relisted = sum(
            1
            for pid, (_, listed) in run_payouts.items()
            if listed is not None and warm_payouts.get(pid, ("", None))[1] != listed
        )
        by_id = sum(c for r, c in routes.items() if r.startswith("GET /v1/payouts/"))
        not_final = sum(1 for status, _ in warm_payouts.values() if status not in FINAL)

    n_day = count(day, day)
    n_back = count(day - dt.timedelta(days=LOOKBACK), day - dt.timedelta(days=1))
    # The day and its look-back window are consecutive days: one ranged listing; then one
    # request for subscriptions and one for invoices.
    billing = 2
    payouts = 1 + by_id + relisted
    expected = max(1, math.ceil((n_day + n_back) / 100)) + billing + payouts
    result.rows += [
        Row("B3", f"`revbot daily`: Stripe requests ({n_day} txns on the day, {n_back} in the "
            f"{LOOKBACK}-day look-back)", "", str(made), "",
            f"= ceil(({n_day}+{n_back})/100) + {billing} + {payouts} = {expected}",
            made == expected and by_id <= not_final),
        Row("B3", f"of which payouts: 1 list, {by_id} read by id (of {not_final} not final), "
            f"{relisted} lists of what a payout settled", "", str(payouts), "", "", None),
        Row("B3", f"`revbot daily` wall time (a command, Python start-up included), median of "
            f"{RUNS} (min {min(walls):.2f} s, max {max(walls):.2f} s; informative, goal "
            f"< {GOAL} s)", "", seconds(wall), "", "", None),
    ]  # fmt: skip
    return result
