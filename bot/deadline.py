"""Every wait is bounded: a total deadline per remote call, and a ceiling per run.

A client's read timeout bounds each read, not a call: a server that trickles a byte every ten
seconds never trips it, and one that answers ``has_more`` for ever never ends a listing. So each
Stripe, Sheets, Resend and Slack call runs under :func:`bounded`, which gives up after a total
time, and a command holding the lock runs under :func:`run_ceiling`, after which no new call
starts and the command exits 75 (temporary): the next cron run can start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from bot.errors import TemporaryError

T = TypeVar("T")

# How long a command holding the lock may run. A daily run takes seconds to minutes; a
# backfill of years of a large account takes longer, and resumes where it stopped.
RUN_CEILING_SECONDS = {"backfill": 6 * 3600.0}
DEFAULT_RUN_CEILING = 3600.0

_lock = threading.Lock()
_run: dict[str, float | str | None] = {"deadline": None, "command": None, "seconds": None}


class RunCeilingReached(TemporaryError):
    """The command has run longer than its ceiling; it stops so the next run can start."""


@contextmanager
def run_ceiling(command: str, *, seconds: float | None = None) -> Iterator[None]:
    """No remote call starts after ``seconds`` (default: the command's ceiling) from now."""
    limit = (
        seconds if seconds is not None else RUN_CEILING_SECONDS.get(command, DEFAULT_RUN_CEILING)
    )
    with _lock:
        saved = dict(_run)
        _run.update(deadline=time.monotonic() + limit, command=command, seconds=limit)
    try:
        yield
    finally:
        with _lock:
            _run.update(saved)


def remaining() -> float | None:
    """Seconds left before the run's ceiling; None outside a run."""
    deadline = _run["deadline"]
    if deadline is None:
        return None
    assert isinstance(deadline, float)
    left = deadline - time.monotonic()
    if left <= 0:
        seconds = _run["seconds"]
        assert isinstance(seconds, float)
        raise RunCeilingReached(
            f"revbot {_run['command']} has run for {_minutes(seconds)}, its ceiling, and stopped "
            "so that the next run can start; what it stored is kept and the next run goes on "
            "from there (if this repeats, check the services revbot calls)"
        )
    return left


def bounded(fn: Callable[[], T], *, seconds: float, what: str) -> T:
    """``fn()``, or :class:`TemporaryError` when it has not returned within ``seconds`` (or
    before the run's ceiling). ``fn`` runs in a daemon thread: one left hanging on a dead
    connection ends with the process, and never holds up the command."""
    left = remaining()
    wait = seconds if left is None else min(seconds, left)
    box: list[tuple[bool, object]] = []
    done = threading.Event()

    def target() -> None:
        try:
            box.append((True, fn()))
        except BaseException as e:  # handed to the caller's thread, raised there
            box.append((False, e))
        finally:
            done.set()

    threading.Thread(target=target, name=f"bounded: {what}", daemon=True).start()
    if not done.wait(wait):
        remaining()  # the run's ceiling, if that is what ran out
        raise TemporaryError(
            f"{what} did not finish within {wait:.0f} s (the server is not answering, or "
            "answering too slowly); try again later"
        )
    ok, value = box[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]


def _minutes(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} seconds"
