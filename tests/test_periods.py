from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import ConfigError, UsageError
from bot.periods import (
    Month,
    day_interval,
    days_interval,
    last_closed_month,
    parse_date,
    require_closed_month,
    require_past_day,
    zone,
)

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("day", "tz", "hours"),
    [(date(2026, 3, 8), NY, 23), (date(2026, 11, 1), NY, 25), (date(2026, 3, 29), BERLIN, 23),
     (date(2026, 10, 25), BERLIN, 25), (date(2026, 6, 1), NY, 24), (date(2026, 3, 8), UTC, 24)],
    ids=["ny-spring", "ny-fall", "berlin-spring", "berlin-fall", "ny-summer", "utc"],
)  # fmt: skip
def test_dst_day_lengths(day: date, tz: ZoneInfo, hours: int) -> None:
    iv = day_interval(day, tz)
    assert iv.end - iv.start == hours * 3600


def test_day_interval_is_local_midnight() -> None:
    iv = day_interval(date(2026, 10, 31), NY)
    assert datetime.fromtimestamp(iv.start, NY) == datetime(2026, 10, 31, tzinfo=NY)
    assert iv.start == int(datetime(2026, 10, 31, 4, tzinfo=UTC).timestamp())


zones = st.sampled_from(
    ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata"]
)
days = st.dates(min_value=date(2000, 1, 1), max_value=date(2037, 12, 31))


@given(days, zones)
def test_consecutive_days_tile_without_gap_or_overlap(day: date, name: str) -> None:
    tz = ZoneInfo(name)
    a, b = day_interval(day, tz), day_interval(day + timedelta(days=1), tz)
    assert a.end == b.start
    assert 22 * 3600 <= a.end - a.start <= 26 * 3600


@given(days, zones)
def test_month_is_union_of_its_days(day: date, name: str) -> None:
    tz = ZoneInfo(name)
    m = Month.of(day)
    iv = m.interval(tz)
    assert iv == days_interval(m.first_day, m.last_day, tz)
    assert m.next().interval(tz).start == iv.end
    assert iv.contains(day_interval(day, tz).start)


@given(st.integers(min_value=2010, max_value=2100), st.integers(min_value=1, max_value=12))
def test_month_navigation(year: int, month: int) -> None:
    m = Month(year, month)
    assert m.next().previous() == m
    assert Month.parse(str(m)) == m


@pytest.mark.parametrize(
    "text",
    ["2026-13-01", "2026-02-30", "26-01-01", "yesterday", ""],
    ids=["month-13", "feb-30", "short-year", "word", "empty"],
)
def test_bad_dates(text: str) -> None:
    with pytest.raises(UsageError, match="YYYY-MM-DD"):
        parse_date(text)


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "202610", "2026-00"], ids=str)
def test_bad_months(text: str) -> None:
    with pytest.raises(UsageError, match="YYYY-MM"):
        Month.parse(text)


def test_future_and_today_refused() -> None:
    now = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)  # still the 25th in New York
    require_past_day(date(2026, 11, 24), now=now, tz=NY)
    with pytest.raises(UsageError, match="today"):
        require_past_day(date(2026, 11, 25), now=now, tz=NY)
    with pytest.raises(UsageError, match="future"):
        require_past_day(date(2026, 12, 1), now=now, tz=NY)


def test_closed_months() -> None:
    now = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)  # October 31st evening in New York
    assert last_closed_month(now, NY) == Month(2026, 9)
    assert last_closed_month(now, UTC) == Month(2026, 10)
    with pytest.raises(UsageError, match="current month"):
        require_closed_month(Month(2026, 10), now=now, tz=NY)
    with pytest.raises(UsageError, match="future"):
        require_closed_month(Month(2027, 1), now=now, tz=UTC)


@pytest.mark.parametrize("name", ["Mars/Olympus", "../etc/passwd", "", "utc+2"], ids=str)
def test_unknown_zone(name: str) -> None:
    with pytest.raises(ConfigError, match="REPORT_TIMEZONE"):
        zone(name)
