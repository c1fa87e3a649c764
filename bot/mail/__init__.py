"""The investor P&L email: value types, rendering and the senders behind one interface.

The senders are imported from their own modules (``bot.mail.resend_sender``,
``bot.mail.outbox``), so that importing this package never imports the ``resend`` SDK.
"""

from bot.mail.addresses import parse_address_list, validate_address
from bot.mail.model import CurrencyReport, MonthlyReport, OutgoingEmail, RenderedEmail
from bot.mail.render import render
from bot.mail.senders import Mailer

__all__ = [
    "CurrencyReport",
    "Mailer",
    "MonthlyReport",
    "OutgoingEmail",
    "RenderedEmail",
    "parse_address_list",
    "render",
    "validate_address",
]
