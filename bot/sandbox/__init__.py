"""The built-in Stripe-compatible sandbox.

:class:`SandboxAccount` holds a synthetic account's balance transactions; :class:`SandboxServer`
serves them behind the subset of Stripe's API revbot uses; :mod:`bot.sandbox.reports` computes
the Reporting API's CSV files. An independent implementation of Stripe's side: it never imports
revbot's P&L, ledger or CSV parser.
"""

from bot.sandbox.account import SandboxAccount, processing_fee
from bot.sandbox.reports import REPORT_TYPES, is_activity
from bot.sandbox.server import SANDBOX_KEY, SandboxServer, SandboxStats, mask_key, serve

__all__ = [
    "REPORT_TYPES",
    "SANDBOX_KEY",
    "SandboxAccount",
    "SandboxServer",
    "SandboxStats",
    "is_activity",
    "mask_key",
    "processing_fee",
    "serve",
]
