"""Currency exponents and exact conversions between minor and major units.

Pure: no I/O. Money is an ``int`` of minor units of one currency, or a ``Decimal`` of major
units; never a float.
"""

from __future__ import annotations

import functools
from decimal import Decimal, InvalidOperation

# Stripe's zero-decimal currencies (docs: currencies). UGX is deliberately absent: Stripe
# keeps two decimals for ISK and UGX for backward compatibility.
ZERO_DECIMAL: frozenset[str] = frozenset(
    {
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
        "pyg", "rwf", "vnd", "vuv", "xaf", "xof", "xpf",
    }
)  # fmt: skip
THREE_DECIMAL: frozenset[str] = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})

# Symbols used for display only; anything else is shown with its ISO code.
SYMBOLS: dict[str, str] = {
    "usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$",
    "chf": "CHF ", "inr": "₹", "krw": "₩", "kwd": "KWD ", "bhd": "BHD ",
}  # fmt: skip


class MoneyError(ValueError):
    """An amount that cannot be represented exactly in its currency."""


@functools.lru_cache(maxsize=512)
def exponent(currency: str) -> int:
    """Number of decimals Stripe uses for ``currency`` (case-insensitive ISO code)."""
    code = normalize_currency(currency)
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def normalize_currency(currency: str) -> str:
    """Lower-case three-letter code, as Stripe's API spells it."""
    code = currency.strip().lower()
    if len(code) != 3 or not code.isalpha() or not code.isascii():
        raise MoneyError(f"not a currency code: {currency!r}")
    return code


def to_major(minor: int, currency: str) -> Decimal:
    """Exact major units: ``to_major(1999, 'usd') == Decimal('19.99')``."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise MoneyError(f"minor units must be an int, got {type(minor).__name__}")
    return Decimal(minor).scaleb(-exponent(currency))


def to_minor(major: Decimal | str, currency: str) -> int:
    """Exact minor units from a decimal amount; refuses anything that would need rounding."""
    if isinstance(major, float):
        raise MoneyError("floats are not accepted for money")
    try:
        value = Decimal(major.strip()) if isinstance(major, str) else major
    except InvalidOperation:
        raise MoneyError(f"not a decimal amount: {major!r}") from None
    if not value.is_finite():
        raise MoneyError(f"not a finite amount: {major!r}")
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{major} has more decimals than {currency.upper()} allows")
    return int(scaled)


def format_amount(minor: int, currency: str, *, signed: bool = False) -> str:
    """Human display: ``format_amount(-123456, 'usd') == '-$1,234.56'``; JPY without decimals."""
    exp = exponent(currency)
    major = to_major(minor, currency)
    body = f"{abs(major):,.{exp}f}"
    code = normalize_currency(currency)
    symbol = SYMBOLS.get(code)
    text = f"{symbol}{body}" if symbol else f"{body} {code.upper()}"
    if minor < 0:
        return f"-{text}"
    return f"+{text}" if signed and minor > 0 else text


@functools.lru_cache(maxsize=512)
def number_format(currency: str) -> str:
    """Spreadsheet number format for a currency, shared by the workbook and the Sheet."""
    exp = exponent(currency)
    decimals = "." + "0" * exp if exp else ""
    code = normalize_currency(currency)
    symbol = SYMBOLS.get(code, "").strip()
    if symbol:
        prefix = f'"{symbol}"'
        return f"{prefix}#,##0{decimals};-{prefix}#,##0{decimals}"
    suffix = f' "{code.upper()}"'
    return f"#,##0{decimals}{suffix};-#,##0{decimals}{suffix}"
