"""B4: `revbot --help` cold start, best of 5 (heavy libraries must be imported lazily)."""

from __future__ import annotations

import subprocess
import time

from bench import Result, Row, revbot_command, revbot_env, seconds

TARGET = 0.35


def run(*, quick: bool = False) -> Result:
    times = []
    env = revbot_env()
    for _ in range(5):
        started = time.monotonic()
        subprocess.run(revbot_command("--help"), env=env, capture_output=True, check=True)
        times.append(time.monotonic() - started)
    best = min(times)
    result = Result()
    result.rows.append(
        Row(
            "B4",
            "`revbot --help` start-up, best of 5",
            "",
            seconds(best),
            "",
            f"< {TARGET} s",
            best < TARGET,
        )
    )
    return result
