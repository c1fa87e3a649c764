"""What the ledger hands back besides transactions: report runs, monthly results, sends.

Frozen values; :mod:`bot.ledger` owns how they are stored and read.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.pnl import CurrencyFigures


@dataclass(frozen=True, slots=True)
class ReportRun:
    """A report run as the ledger records it (``run_id`` is None until Stripe gave one)."""

    report_type: str
    interval_start: int
    interval_end: int
    timezone: str
    mode: str
    run_id: str | None
    status: str  # creating | pending | succeeded | failed
    file_path: str | None
    error: str | None
    updated_at: str


@dataclass(frozen=True, slots=True)
class MonthlyRecord:
    """A month's figures as the monthly job saved them."""

    figures: dict[str, CurrencyFigures]
    mismatches: tuple[str, ...]
    source: str
    livemode: bool
    reconciled: bool
    generated_at: str | None = None  # when these figures were first produced

    def same_figures(self, other: MonthlyRecord) -> bool:
        """Everything but ``generated_at`` is equal."""
        return (self.figures, self.mismatches, self.source, self.livemode, self.reconciled) == (
            other.figures, other.mismatches, other.source, other.livemode, other.reconciled
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Send:
    """One investor email: intent recorded, then sent (or not yet)."""

    month: str
    recipient: str
    generation: int
    idempotency_key: str
    status: str  # intent | sent
    provider_id: str | None
    intent_at: str
    sent_at: str | None
