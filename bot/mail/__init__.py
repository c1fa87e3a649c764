"""The investor P&L email: value types and the senders behind one interface.

Rendering (``bot.mail.render``, Jinja2) and the senders (``bot.mail.resend_sender``,
``bot.mail.outbox``) are imported from their own modules, so that importing this package
loads neither Jinja2 nor the ``resend`` SDK.
"""

from bot.mail.addresses import parse_address_list, validate_address
from bot.mail.model import CurrencyReport, MonthlyReport, OutgoingEmail, RenderedEmail
from bot.mail.recurring import RecurringRevenue, recurring_revenue
from bot.mail.senders import Mailer

__all__ = [
    "CurrencyReport",
    "Mailer",
    "MonthlyReport",
    "OutgoingEmail",
    "RecurringRevenue",
    "RenderedEmail",
    "parse_address_list",
    "recurring_revenue",
    "validate_address",
]
