"""revbot: Stripe revenue reports that run themselves."""

__version__ = "0.1.0"
