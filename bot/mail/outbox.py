"""The local outbox: each email becomes a ``.eml`` file (both parts) plus its ``.html``.

Used when ``RESEND_API_KEY`` is unset, and by ``--dry-run``. The file name comes from the
idempotency key, so sending again with the same key rewrites the same files instead of adding
a duplicate; each file is written to a temporary name and renamed into place, so a crash never
leaves half a message.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path

from bot.errors import RevbotError
from bot.mail.model import OutgoingEmail
from bot.mail.senders import check_idempotency_key

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


def outbox_name(idempotency_key: str) -> str:
    """A file-system-safe, collision-free stem for a key.

    ``investor-pnl/2026-10/ann@vc.com/1`` -> ``investor-pnl_2026-10_ann@vc.com_1-<hash>``: the
    readable part is sanitised and capped, the hash of the full key keeps two keys that
    sanitise alike apart.
    """
    slug = _UNSAFE.sub("_", idempotency_key).strip("._-")[:120] or "email"
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:12]
    return f"{slug}-{digest}"


def build_message(email: OutgoingEmail, *, idempotency_key: str, date: datetime) -> EmailMessage:
    """A multipart/alternative message (text, then HTML) with the usual headers."""
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = email.sender
    msg["To"] = email.to
    msg["Subject"] = email.subject
    msg["Date"] = format_datetime(date)
    domain = parseaddr(email.sender)[1].rpartition("@")[2] or "revbot.invalid"
    # Derived from the key, so rewriting the same message keeps the same Message-ID.
    digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]
    msg["Message-ID"] = f"<{digest}@{domain}>"
    msg["X-Idempotency-Key"] = idempotency_key
    # Quoted-printable keeps the outbox readable in a text editor.
    msg.set_content(email.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(email.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class OutboxMailer:
    """A :class:`~bot.mail.senders.Mailer` that writes ``<outbox_dir>/<name>.eml`` and ``.html``."""

    def __init__(
        self,
        *,
        outbox_dir: Path,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.outbox_dir = Path(outbox_dir)
        self._now = now

    def __repr__(self) -> str:
        return f"OutboxMailer(outbox_dir={str(self.outbox_dir)!r})"

    def paths(self, idempotency_key: str) -> tuple[Path, Path]:
        """Where the ``.eml`` and the ``.html`` for this key go."""
        stem = outbox_name(idempotency_key)
        return self.outbox_dir / f"{stem}.eml", self.outbox_dir / f"{stem}.html"

    def send(self, email: OutgoingEmail, *, idempotency_key: str) -> str:
        """Write the message; returns ``outbox:<name>``."""
        check_idempotency_key(idempotency_key)
        eml, html = self.paths(idempotency_key)
        msg = build_message(email, idempotency_key=idempotency_key, date=self._now())
        try:
            self.outbox_dir.mkdir(parents=True, exist_ok=True)
            _write_atomic(html, email.html.encode("utf-8"))
            # The .eml last: its presence means the message is complete.
            _write_atomic(eml, msg.as_bytes())
        except OSError as e:
            raise RevbotError(
                f"could not write to the outbox {self.outbox_dir}: {e.strerror}"
            ) from e
        return f"outbox:{eml.stem}"


__all__ = ["OutboxMailer", "build_message", "outbox_name"]
