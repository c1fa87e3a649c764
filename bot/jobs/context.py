"""What every job receives: its collaborators, chosen by :mod:`bot.wiring`.

Jobs never import a vendor SDK and never read the environment; they get the ledger, the
dashboard, the Stripe port and the clock here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.dashboard.base import Dashboard
from bot.errors import ConfigError
from bot.ledger import Ledger
from bot.stripe_port import StripePort


@dataclass
class Context:
    ledger: Ledger
    dashboard: Dashboard
    source: StripePort | None
    tz: ZoneInfo
    now: datetime
    progress: Callable[[str], None] = lambda _msg: None
    mode: str = "test"  # the Stripe key's mode: which monthly results are this account's
    transactions_days: int = 400  # SHEET_TRANSACTIONS_DAYS: 0 keeps no Transactions tab

    def transactions_from(self) -> date:
        """The first day the Transactions tab keeps (the most recent transactions_days days,
        today included)."""
        return self.now.astimezone(self.tz).date() - timedelta(
            days=max(0, self.transactions_days - 1)
        )

    @property
    def tz_name(self) -> str:
        return self.tz.key

    def stripe(self) -> StripePort:
        """The Stripe port, for a job that cannot work without one."""
        if self.source is None:
            raise ConfigError("this command needs STRIPE_SECRET_KEY to read from Stripe")
        return self.source
