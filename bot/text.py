"""Text from outside (Stripe descriptions, server error bodies) made safe to show.

Pure. Each sink calls it at its own boundary: the dashboard for its cells, logging and alerts
for their lines. The ledger keeps Stripe's text exactly as it came.
"""

from __future__ import annotations

import re

# C0 controls but tab, LF and CR; DEL and the C1 controls; lone surrogates (a JSON "\ud800"
# decodes to one, and no UTF-8 writer can encode it); the two non-characters XML forbids.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_UNSAFE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
REPLACEMENT = "\ufffd"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with each control character replaced by U+FFFD (tab, LF and CR are kept with
    ``keep_newlines``)."""
    pattern = _UNSAFE if keep_newlines else _UNSAFE_LINE
    return pattern.sub(REPLACEMENT, text) if pattern.search(text) else text


def escaped(text: str) -> str:
    """``text`` on one line for a log or an alert: each control character as ``\\xNN``."""
    if not _UNSAFE_LINE.search(text):
        return text
    return _UNSAFE_LINE.sub(_escape, text)


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"
