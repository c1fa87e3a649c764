"""The built-in Stripe-compatible sandbox.

:class:`SandboxAccount` holds a synthetic account's balance transactions; :class:`SandboxServer`
serves them behind the subset of Stripe's API revbot uses; :mod:`bot.sandbox.reports` computes
the Reporting API's CSV files. :class:`SandboxBilling` holds a synthetic account's subscriptions
and invoices (with each subscription's own history), served by the server through a
:class:`BillingApi`. The account's payouts (``account.payouts``, built by
:mod:`bot.sandbox.payouts`: automatic ones, one manual, one failed, some in transit) are served
at ``/v1/payouts`` through a :class:`PayoutApi`. An independent implementation of Stripe's
side: it never imports revbot's P&L, metrics, ledger or CSV parser.
"""

from bot.sandbox.account import SandboxAccount, processing_fee
from bot.sandbox.billing import Change, Coupon, Item, Price, SandboxBilling, SubscriptionHistory
from bot.sandbox.billing_routes import BillingApi
from bot.sandbox.payout_routes import PayoutApi
from bot.sandbox.payouts import FAILURE_CODE, FAILURE_MESSAGE, MANUAL_FILTER_MESSAGE
from bot.sandbox.reports import REPORT_TYPES, is_activity
from bot.sandbox.server import SANDBOX_KEY, SandboxServer, SandboxStats, mask_key, serve

__all__ = [
    "FAILURE_CODE",
    "FAILURE_MESSAGE",
    "MANUAL_FILTER_MESSAGE",
    "REPORT_TYPES",
    "SANDBOX_KEY",
    "BillingApi",
    "Change",
    "Coupon",
    "Item",
    "PayoutApi",
    "Price",
    "SandboxAccount",
    "SandboxBilling",
    "SandboxServer",
    "SandboxStats",
    "SubscriptionHistory",
    "is_activity",
    "mask_key",
    "processing_fee",
    "serve",
]
