"""The one place that sets up logging: stderr, and a filter that redacts every known secret."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

from bot.text import escaped, printable

# Shapes of secrets revbot may meet even if they were never configured (a key pasted into a
# description, a token in an error body): redacted wherever they appear.
_PATTERNS = [
    re.compile(r"\b((?:sk|rk|pk)_(?:live|test)_)[A-Za-z0-9]{6,}"),
    re.compile(r"\b(re_)[A-Za-z0-9_]{8,}"),
    re.compile(r"(-----BEGIN [A-Z ]*PRIVATE KEY-----)[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----)"),
    re.compile(r"(hooks\.slack\.com/services/)\S+"),
]


# The most characters of one log message that are shown.
MAX_LINE = 400


class Redactor:
    """Replaces configured secrets, and anything shaped like one, with a mask."""

    def __init__(self) -> None:
        self._literals: list[str] = []

    def add(self, values: Iterable[str]) -> None:
        for v in values:
            if v and len(v) >= 6 and v not in self._literals:
                self._literals.append(v)

    def __call__(self, text: str) -> str:
        for lit in self._literals:
            if lit in text:
                text = text.replace(lit, "[REDACTED]")
        for pat in _PATTERNS:
            text = pat.sub(lambda m: f"{m.group(1)}[REDACTED]", text)
        return text


REDACT = Redactor()


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if len(text) > MAX_LINE:
            # -v shows requests and statuses; a whole response body (a page of 100 balance
            # transactions, a report file) would bury them.
            text = f"{text[:MAX_LINE]}… ({len(text) - MAX_LINE:,} more characters)"
        record.msg = escaped(REDACT(text))
        record.args = None
        if record.exc_info:
            # Tracebacks are formatted later; render now so the text can be redacted.
            formatter = logging.Formatter()
            record.exc_text = printable(
                REDACT(formatter.formatException(record.exc_info)), keep_newlines=True
            )
            record.exc_info = None
        return True


def setup(*, verbose: bool = False, secrets: Iterable[str] = ()) -> None:
    REDACT.add(secrets)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_revbot", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._revbot = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    # Third-party libraries log request URLs and headers at DEBUG; keep them quieter.
    for noisy in ("urllib3", "stripe", "google", "gspread"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
