"""B4: `revbot --help` cold start, best of 5 (heavy libraries must be imported lazily).

An absolute figure that moves with the machine's speed: informative, shown beside its goal.
"""

from __future__ import annotations

import subprocess
import time

from bench import Result, Row, revbot_command, revbot_env, seconds

GOAL = 0.35  # seconds: shown beside the figure, not a pass/fail target


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
            f"`revbot --help` start-up, best of 5 (informative, goal < {GOAL} s)",
            "",
            seconds(best),
            "",
            "",
            None,
        )
    )
    return result
