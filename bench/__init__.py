"""revbot's benchmarks (issues 6 and 15): ``python -m bench`` (``make bench``), never part of
the tests.

Each benchmark measures revbot and its baseline side by side in one run and returns rows for
the table that ``bench/__main__.py`` prints and writes to ``bench/results.md``. A target is a
ratio between figures of the same run (the machine's speed drifts by tens of percent from one
run to the next) or a limit that does not depend on speed (a count, bytes, cells); absolute
times are shown for information.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEY = "sk_test_" + "BenchKeyForRevbot0001"


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    bench: str
    measure: str
    baseline: str
    revbot: str
    ratio: str
    target: str
    met: bool | None  # None: a figure shown for information, without a target


@dataclass
class Result:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def revbot_env(**values: str) -> dict[str, str]:
    """The environment of a `revbot` child: this one without revbot's variables, plus ``values``."""
    revbot_vars = (
        "STRIPE_SECRET_KEY", "STRIPE_MODE", "STRIPE_API_BASE", "STRIPE_MAX_RPS", "REPORT_TIMEZONE",
        "GOOGLE_SHEET_ID", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_SHEETS_API_URL",
        "RESEND_API_KEY", "RESEND_API_URL", "EMAIL_FROM", "INVESTOR_EMAILS", "COMPANY_NAME",
        "DATA_DIR", "SLACK_WEBHOOK_URL", "ALERT_EMAILS", "SHEET_TRANSACTIONS_DAYS",
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in revbot_vars}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(values)
    return env


def revbot_command(*args: str) -> list[str]:
    """`revbot ARGS` with this interpreter (the console script when installed)."""
    script = Path(sys.executable).parent / "revbot"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "bot", *args]


def seconds(value: float) -> str:
    return f"{value:.2f} s"
