"""Days and months in a time zone -> half-open unix intervals. Pure.

A local day is ``[00:00, next day's 00:00)`` in the zone, so a DST day is 23 or 25 hours long.
Nothing here reads the clock: callers pass ``now``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.errors import ConfigError, UsageError

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH_RE = re.compile(r"^\d{4}-\d{2}$")
# No Stripe account has a balance transaction before this day.
EARLIEST = date(2010, 1, 1)


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """``[start, end)`` in unix seconds."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"empty interval [{self.start}, {self.end})")

    def contains(self, ts: int) -> bool:
        return self.start <= ts < self.end


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; a :class:`ConfigError` that names the variable otherwise."""
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(
            f"REPORT_TIMEZONE={name!r} is not an IANA time zone; use e.g. UTC or Europe/Berlin"
        ) from None


def _midnight(day: date, tz: tzinfo) -> int:
    # zoneinfo resolves a non-existent or ambiguous midnight by fold=0, which for the rare
    # zones whose DST switch is at midnight gives the first valid instant of that day.
    return int(datetime.combine(day, time(0), tzinfo=tz).timestamp())


def day_interval(day: date, tz: tzinfo) -> Interval:
    return Interval(_midnight(day, tz), _midnight(day + timedelta(days=1), tz))


def days_interval(first: date, last: date, tz: tzinfo) -> Interval:
    """The local days ``first`` through ``last``, both inclusive."""
    return Interval(_midnight(first, tz), _midnight(last + timedelta(days=1), tz))


@dataclass(frozen=True, slots=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        if not _MONTH_RE.match(text or ""):
            raise UsageError(f"--month {text!r} is not a month; use YYYY-MM, e.g. 2026-10")
        year, month = int(text[:4]), int(text[5:])
        if not 1 <= month <= 12:
            raise UsageError(f"--month {text!r} is not a month; use YYYY-MM, e.g. 2026-10")
        if year < EARLIEST.year:
            raise UsageError(
                f"--month {text} is before Stripe existed; use a month from "
                f"{EARLIEST:%Y-%m} on, e.g. 2026-10"
            )
        return cls(year, month)

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    @property
    def last_day(self) -> date:
        return self.next().first_day - timedelta(days=1)

    def interval(self, tz: tzinfo) -> Interval:
        return Interval(_midnight(self.first_day, tz), _midnight(self.next().first_day, tz))

    def label(self) -> str:
        return self.first_day.strftime("%B %Y")


def parse_date(text: str, *, flag: str = "--date") -> date:
    if not _DATE_RE.match(text or ""):
        raise UsageError(f"{flag} {text!r} is not a date; use YYYY-MM-DD, e.g. 2026-10-31")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{flag} {text!r} is not a real calendar date; use YYYY-MM-DD, e.g. 2026-10-31"
        ) from None
    if day < EARLIEST:
        # Nothing happened at Stripe before it existed; syncing centuries of empty days would
        # only fill the ledger (and a year-1 date overflows a Unix timestamp).
        raise UsageError(
            f"{flag} {text} is before Stripe existed; use a day from {EARLIEST} on, e.g. 2026-10-31"
        )
    return day


def parse_range(since: str, until: str | None) -> tuple[date, date | None]:
    """``--since`` and ``--until`` (inclusive; None when not given), in order."""
    first = parse_date(since, flag="--since")
    last = parse_date(until, flag="--until") if until else None
    if last is not None and last < first:
        raise UsageError(f"--until {last} is before --since {first}; swap them")
    return first, last


def local_today(now: datetime, tz: tzinfo) -> date:
    return now.astimezone(tz).date()


def yesterday(now: datetime, tz: tzinfo) -> date:
    return local_today(now, tz) - timedelta(days=1)


def require_past_day(day: date, *, now: datetime, tz: tzinfo, flag: str = "--date") -> None:
    """A day can be synced only once it has ended in the report's zone."""
    today = local_today(now, tz)
    if day >= today:
        what = "today" if day == today else "in the future"
        raise UsageError(
            f"{flag} {day.isoformat()} is {what} in {tz}; only finished days can be synced "
            f"(the latest is {(today - timedelta(days=1)).isoformat()})"
        )


def last_closed_month(now: datetime, tz: tzinfo) -> Month:
    return Month.of(local_today(now, tz)).previous()


def require_closed_month(month: Month, *, now: datetime, tz: tzinfo) -> None:
    current = Month.of(local_today(now, tz))
    if month >= current:
        what = "the current month" if month == current else "in the future"
        raise UsageError(
            f"--month {month} is {what} in {tz}; only closed months can be reported "
            f"(the latest is {current.previous()})"
        )


def iter_days(first: date, last: date) -> Iterator[date]:
    """``first`` through ``last`` inclusive."""
    d = first
    while d <= last:
        yield d
        d += timedelta(days=1)


def local_date_of(ts: int, tz: tzinfo) -> date:
    return datetime.fromtimestamp(ts, tz).date()


def local_datetime(ts: int, tz: tzinfo) -> datetime:
    return datetime.fromtimestamp(ts, tz)
