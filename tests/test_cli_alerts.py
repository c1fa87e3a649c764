"""`revbot daily` wired to the alerts: one alert per incident, the summary after a success."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Cli
from tests.fakes.slack_server import FakeSlackWebhook

UNREACHABLE = "http://127.0.0.1:9"  # nothing listens on the discard port


@pytest.fixture
def slack() -> Iterator[FakeSlackWebhook]:
    with FakeSlackWebhook() as server:
        yield server


def test_daily_alerts_once_per_incident_and_posts_the_summary(
    cli: Cli, slack: FakeSlackWebhook
) -> None:
    env = {"SLACK_WEBHOOK_URL": slack.url, "COMPANY_NAME": "Acme"}
    ok = cli("daily", env=env)
    assert ok.exit_code == 0, ok.stderr
    assert len(slack.texts) == 1 and slack.texts[0].startswith(":bar_chart:")

    for _run in range(2):  # Stripe unreachable on two mornings: one alert, exit code kept
        failed = cli("daily", env={**env, "STRIPE_API_BASE": UNREACHABLE})
        assert failed.exit_code == 75
    assert len(slack.texts) == 2
    assert "`revbot daily` failed (exit 75)" in slack.texts[1]

    assert cli("daily", env=env).exit_code == 0  # resolved, and yesterday's summary again
    assert cli("daily", env={**env, "STRIPE_API_BASE": UNREACHABLE}).exit_code == 75
    assert len(slack.texts) == 4 and "failed (exit 75)" in slack.texts[3]

    # A dry run and a mistyped flag say nothing to the founders.
    assert cli("daily", "--dry-run", env=env).exit_code == 0
    assert cli("daily", "--date", "yesterday", env=env).exit_code == 2
    assert len(slack.texts) == 4
    assert slack.token not in ok.stdout + ok.stderr + failed.stdout + failed.stderr
