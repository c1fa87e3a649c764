"""B3: one day's `revbot daily` against the sandbox without latency.

The ledger already holds yesterday's state (a first `revbot daily` ran, the month closed before
is reported), as on any morning; then one more day of transactions is measured: the Stripe
requests it makes (one ranged listing of the day plus its look-back window, paged by 100, and
the two Billing requests of an account without subscriptions: the bench's server serves no
Billing endpoint, so each answers 404 once, which revbot notes and carries on) and
its wall time as a command, Python start-up included (the median of five runs, each on a fresh
copy of the same state). The request count is checked; the wall time, an absolute figure that
moves with the machine's speed, is informative (B5 holds `daily` to a ratio instead).
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench import KEY, Result, Row, revbot_command, revbot_env, seconds
from bench._server import ServerProcess

DAYS = 90
LOOKBACK = 3
GOAL = 1.5  # seconds: shown beside the wall time, not a pass/fail target
RUNS = 5


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
        walls, made = [], 0
        for n in range(RUNS):
            data = Path(tmp) / f"run{n}"
            shutil.copytree(Path(tmp) / "data", data)
            before = server.stats()["requests"]
            started = time.monotonic()
            proc = subprocess.run(
                revbot_command("daily"), env={**env, "DATA_DIR": str(data)},
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            walls.append(time.monotonic() - started)
            if n == 0:
                made = server.stats()["requests"] - before
            if proc.returncode != 0:
                raise RuntimeError(f"B3 daily failed: {proc.stderr.strip()[-500:]}")
        wall = statistics.median(walls)

    n_day = count(day, day)
    n_back = count(day - dt.timedelta(days=LOOKBACK), day - dt.timedelta(days=1))
    # The day and its look-back window are consecutive days: one ranged listing; then one
    # request for subscriptions and one for invoices.
    billing = 2
    expected = max(1, math.ceil((n_day + n_back) / 100)) + billing
    result.rows += [
        Row("B3", f"`revbot daily`: Stripe requests ({n_day} txns on the day, {n_back} in the "
            f"{LOOKBACK}-day look-back)", "", str(made), "",
            f"= ceil(({n_day}+{n_back})/100) + {billing} = {expected}", made == expected),
        Row("B3", f"`revbot daily` wall time (a command, Python start-up included), median of "
            f"{RUNS} (min {min(walls):.2f} s, max {max(walls):.2f} s; informative, goal "
            f"< {GOAL} s)", "", seconds(wall), "", "", None),
    ]  # fmt: skip
    return result
