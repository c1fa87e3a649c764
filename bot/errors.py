"""The tool's own errors. Each carries its exit code; ``bot.exits`` maps them (docs/design.md)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_TEMPORARY = 75
EXIT_CONFIG = 78


class RevbotError(Exception):
    """A failure explained in one line. ``str(e)`` is what the user reads."""

    exit_code = EXIT_FAILURE


class UsageError(RevbotError):
    """Bad flags or arguments: a malformed date, a period in the future."""

    exit_code = EXIT_USAGE


class ConfigError(RevbotError):
    """A missing or malformed setting, or a key of the wrong mode."""

    exit_code = EXIT_CONFIG


class TemporaryError(RevbotError):
    """Try again later: data not yet available, a rate-limit budget spent, a lock held."""

    exit_code = EXIT_TEMPORARY


class ServiceError(RevbotError):
    """A remote service refused or failed in a way a human must look at."""

    exit_code = EXIT_FAILURE


def disk_full(e: BaseException) -> bool:
    """Whether ``e`` says the disk (or the user's quota) is full, from the OS or SQLite."""
    import errno
    import sqlite3

    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(e, sqlite3.OperationalError) and "disk is full" in str(e)
