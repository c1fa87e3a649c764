"""The one interface every sender implements; the implementations live in their own modules.

- :class:`bot.mail.resend_sender.ResendMailer`: Resend's API through the ``resend`` SDK.
- :class:`bot.mail.outbox.OutboxMailer`: ``.eml`` + ``.html`` files in ``DATA_DIR/outbox/``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from bot.errors import ServiceError
from bot.mail.model import OutgoingEmail


class AlreadySent(ServiceError):
    """The provider already accepted a message under this idempotency key: it went out
    before (a crash between sending and recording it), so this one was not sent again."""


MAX_IDEMPOTENCY_KEY = 256  # Resend's limit; the outbox keeps the same rule so keys travel


@runtime_checkable
class Mailer(Protocol):
    """Sends one message to its one recipient; returns the provider's message id.

    Sending twice with the same ``idempotency_key`` and the same email delivers it once
    (Resend remembers keys for 24 hours; the outbox overwrites the same file). Raises
    :class:`~bot.errors.TemporaryError` when trying again later may work, and
    :class:`~bot.errors.ConfigError` / :class:`~bot.errors.ServiceError` otherwise, and
    :class:`AlreadySent` when the key was used for a message that went out earlier.
    """

    def send(self, email: OutgoingEmail, *, idempotency_key: str) -> str: ...


def check_idempotency_key(key: str) -> str:
    """Reject keys Resend would refuse (empty, longer than 256 characters, multi-line)."""
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or any(c in key for c in "\r\n"):
        raise ValueError(f"idempotency key must be 1-{MAX_IDEMPOTENCY_KEY} chars on one line")
    return key


__all__ = ["MAX_IDEMPOTENCY_KEY", "AlreadySent", "Mailer", "check_idempotency_key"]
