"""The scheduling files under ``deploy/`` and ``make cron`` (issue 8).

Each is checked for what makes it work unattended: it runs ``revbot daily`` from the venv, on a
schedule, and catches up after downtime.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
REVBOT = REPO / ".venv" / "bin" / "revbot"
CRON_FIELD = r"(\*|\d+(-\d+)?(,\d+(-\d+)?)*)(/\d+)?"


def unit(path: Path) -> configparser.ConfigParser:
    """Parse a systemd unit like systemd does where it matters: case kept, no interpolation,
    a key given twice is an error (systemd would silently take the last one)."""
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    return parser


# -- systemd ----------------------------------------------------------------------------------


def test_the_service_runs_revbot_daily_once_per_start() -> None:
    service = unit(DEPLOY / "revbot.service")
    assert {"Unit", "Service"} <= set(service.sections())
    s = service["Service"]
    assert s["Type"] == "oneshot"
    argv = shlex.split(s["ExecStart"])
    assert Path(argv[0]).is_absolute() and argv[0].endswith("/.venv/bin/revbot")
    assert argv[1:] == ["daily"]
    # revbot reads .env from its working directory, and DATA_DIR (relative) from there too.
    assert Path(s["WorkingDirectory"]).is_absolute()
    assert argv[0] == f"{s['WorkingDirectory']}/.venv/bin/revbot"
    assert s["ReadWritePaths"].startswith(s["WorkingDirectory"])
    assert "network-online.target" in service["Unit"]["After"]


def test_the_timer_fires_daily_and_catches_up_after_downtime() -> None:
    timer = unit(DEPLOY / "revbot.timer")
    t = timer["Timer"]
    assert re.fullmatch(r"\*-\*-\* \d{2}:\d{2}(:\d{2})?", t["OnCalendar"]), t["OnCalendar"]
    assert t["Persistent"] == "true"
    assert t.get("Unit", "revbot.service") == "revbot.service"
    assert timer["Install"]["WantedBy"] == "timers.target"
    if shutil.which("systemd-analyze"):  # where systemd is at hand, ask it as well
        done = subprocess.run(
            ["systemd-analyze", "calendar", t["OnCalendar"]],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr


# -- GitHub Actions ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    data = yaml.safe_load((DEPLOY / "github-actions" / "revbot-daily.yml").read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def test_the_workflow_is_scheduled_daily(workflow: dict[Any, Any]) -> None:
    # YAML 1.1 reads a bare `on` key as the boolean true.
    triggers: dict[str, Any] = workflow["on"] if "on" in workflow else workflow[True]
    crons = [entry["cron"] for entry in triggers["schedule"]]
    assert len(crons) == 1
    fields = crons[0].split()
    assert len(fields) == 5 and all(re.fullmatch(CRON_FIELD, f) for f in fields), crons
    assert fields[2:] == ["*", "*", "*"]  # every day
    assert "workflow_dispatch" in triggers  # runnable by hand


def test_the_workflow_runs_revbot_daily_and_keeps_the_ledger(workflow: dict[Any, Any]) -> None:
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    runs = [str(step.get("run", "")) for step in steps]
    daily = [i for i, run in enumerate(runs) if re.search(r"(^|/)revbot daily\b", run)]
    assert daily, runs
    uses = [str(step.get("uses", "")) for step in steps]
    restore = next(i for i, u in enumerate(uses) if u.startswith("actions/cache/restore@"))
    save = next(i for i, u in enumerate(uses) if u.startswith("actions/cache/save@"))
    assert restore < daily[0] < save
    # The ledger is saved even after a failed run: it may hold sends that must not repeat.
    assert str(steps[save]["if"]).startswith("always()")
    assert steps[save]["with"]["path"] == steps[restore]["with"]["path"]
    assert job["env"]["DATA_DIR"].endswith("/" + steps[restore]["with"]["path"])
    assert any(u.startswith("actions/setup-python@") for u in uses)
    assert workflow["concurrency"]["cancel-in-progress"] is False
    assert workflow["permissions"] == {"contents": "read"}


def test_the_workflow_takes_secrets_from_github_secrets(workflow: dict[Any, Any]) -> None:
    (job,) = workflow["jobs"].values()
    env = job["env"]
    for name in ("STRIPE_SECRET_KEY", "RESEND_API_KEY", "SLACK_WEBHOOK_URL"):
        assert env[name] == f"${{{{ secrets.{name} }}}}"
    text = (DEPLOY / "github-actions" / "revbot-daily.yml").read_text("utf-8")
    assert not re.search(r"\b(sk|rk)_(live|test)_[A-Za-z0-9]{6,}|\bre_[A-Za-z0-9]{8,}", text)


def test_the_workflow_installs_revbot_from_the_lock_before_running_it(
    workflow: dict[Any, Any],
) -> None:
    (job,) = workflow["jobs"].values()
    runs = [str(step.get("run", "")).strip() for step in job["steps"]]
    # `make install`: runtime dependencies only, from uv.lock (see test_make_installs_from_the_lock).
    install = runs.index("make install")
    daily = next(i for i, run in enumerate(runs) if re.search(r"(^|/)revbot daily\b", run))
    assert install < daily


# -- installing from the lock -----------------------------------------------------------------


def make_dry_run(target: str, checkout: Path) -> list[list[str]]:
    """The commands `make <target>` would run in a fresh clone (no .venv yet), split in words."""
    for name in ("Makefile", "pyproject.toml", "uv.lock"):
        shutil.copy(REPO / name, checkout / name)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}
    done = subprocess.run(
        ["make", "-n", target], cwd=checkout, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [shlex.split(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize(
    ("target", "extras"),
    [("install", []), ("daily", []), ("demo", []), ("test", ["test"]), ("lint", ["dev"])],
)
def test_make_installs_from_the_lock(tmp_path: Path, target: str, extras: list[str]) -> None:
    commands = make_dry_run(target, tmp_path)
    syncs = [words for words in commands if "sync" in words]
    assert len(syncs) == 1, commands
    (sync,) = syncs
    # Exactly the lock's versions and hashes; a lock that no longer matches pyproject.toml is
    # an error rather than silently re-resolved.
    assert "--locked" in sync or "--frozen" in sync, sync
    assert [sync[i + 1] for i, word in enumerate(sync) if word == "--extra"] == extras
    assert "--all-extras" not in sync
    # uv itself is pinned, so the same Makefile always reads the lock the same way.
    assert any(re.fullmatch(r"uv==[\d.]+", word) for words in commands for word in words)


# -- make cron --------------------------------------------------------------------------------


def make_cron(env_overrides: dict[str, str], *, cwd: Path = REPO) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("DATA_DIR", "MAKEFLAGS", "MFLAGS")}
    env.update(env_overrides)
    done = subprocess.run(
        ["make", "-s", "cron"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout  # exactly one line, ready for `crontab -e`
    return lines[0]


def split_cron(line: str) -> tuple[list[str], list[str]]:
    """(the five schedule fields, the command's words)."""
    parts = line.split(None, 5)
    assert len(parts) == 6, line
    assert all(re.fullmatch(CRON_FIELD, f) for f in parts[:5]), line
    done = subprocess.run(["sh", "-n", "-c", parts[5]], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr  # valid shell
    return parts[:5], shlex.split(parts[5])


def log_file(words: list[str]) -> Path:
    assert words[-1] == "2>&1", words  # errors in the log too
    return Path(words[words.index(">>") + 1])


def test_make_cron_prints_the_line_for_this_checkout(tmp_path: Path) -> None:
    data_dir = tmp_path / "revbot data"  # a space, to prove the paths are quoted
    fields, words = split_cron(make_cron({"DATA_DIR": str(data_dir)}))
    assert fields[2:] == ["*", "*", "*"]  # every day
    assert words[:2] == ["cd", str(REPO)]
    assert words[words.index(str(REVBOT)) + 1] == "daily"
    assert log_file(words) == data_dir / "daily.log"
    # mkdir -p first: a log in a missing folder would make cron drop the whole run.
    assert words.index(str(data_dir)) < words.index(str(REVBOT))


@pytest.mark.parametrize(
    ("dotenv", "expected"),
    [(None, "revbot-data"), ("DATA_DIR=./state\n", "state"), ("DATA_DIR='/srv/rb'\n", "/srv/rb")],
    ids=["default", "relative-in-dotenv", "absolute-in-dotenv"],
)
def test_make_cron_logs_under_data_dir_as_revbot_resolves_it(
    tmp_path: Path, dotenv: str | None, expected: str
) -> None:
    # A checkout of our own, so that the developer's .env plays no part.
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(REPO / "Makefile", checkout / "Makefile")
    (checkout / ".venv").symlink_to(REPO / ".venv")
    if dotenv is not None:
        (checkout / ".env").write_text(dotenv, encoding="utf-8")
    _fields, words = split_cron(make_cron({}, cwd=checkout))
    assert words[:2] == ["cd", str(checkout)]
    assert str(checkout / ".venv" / "bin" / "revbot") in words
    assert log_file(words) == checkout / expected / "daily.log"


# -- the README section -----------------------------------------------------------------------


def test_running_it_every_day_is_documented() -> None:
    readme = (REPO / "README.md").read_text("utf-8")
    heading = "## Running it every day"
    text = readme if heading in readme else (REPO / "docs" / "running-daily.md").read_text("utf-8")
    section = text[text.index(heading) :]
    for needle in ("make -s cron", "systemctl enable --now revbot.timer", "workflow_dispatch"):
        assert needle in section
    mentioned = set(re.findall(r"deploy/[\w./-]+\w", section))
    assert {
        "deploy/revbot.service",
        "deploy/revbot.timer",
        "deploy/github-actions/revbot-daily.yml",
    } <= mentioned
    assert all((REPO / path).is_file() for path in mentioned), mentioned
