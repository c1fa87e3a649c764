from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.money import MoneyError, exponent, format_amount, number_format, to_major, to_minor


@pytest.mark.parametrize(
    ("currency", "exp"),
    [
        ("usd", 2),
        ("EUR", 2),
        ("jpy", 0),
        ("krw", 0),
        ("kwd", 3),
        ("bhd", 3),
        ("isk", 2),
        ("ugx", 2),
    ],
    ids=lambda v: str(v),
)
def test_exponents(currency: str, exp: int) -> None:
    assert exponent(currency) == exp


@pytest.mark.parametrize(
    ("minor", "currency", "major"),
    [(1999, "usd", "19.99"), (-5, "usd", "-0.05"), (1500, "jpy", "1500"), (5120, "kwd", "5.120"),
     (500, "isk", "5.00"), (0, "eur", "0.00")],
    ids=["usd", "negative-cents", "jpy", "kwd", "isk-two-decimals", "zero"],
)  # fmt: skip
def test_to_major_exact(minor: int, currency: str, major: str) -> None:
    assert to_major(minor, currency) == Decimal(major)
    assert to_minor(Decimal(major), currency) == minor
    assert to_minor(major, currency) == minor


@given(st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from(["usd", "jpy", "kwd"]))
def test_round_trip(minor: int, currency: str) -> None:
    assert to_minor(to_major(minor, currency), currency) == minor


@pytest.mark.parametrize(
    ("value", "currency"),
    [("1.5", "jpy"), ("0.001", "usd"), ("1.2345", "kwd"), ("abc", "usd"), ("NaN", "usd")],
    ids=["jpy-decimals", "usd-three", "kwd-four", "garbage", "nan"],
)
def test_to_minor_refuses_inexact(value: str, currency: str) -> None:
    with pytest.raises(MoneyError):
        to_minor(value, currency)


def test_floats_refused() -> None:
    with pytest.raises(MoneyError):
        to_minor(1.5, "usd")  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        to_major(1.5, "usd")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [(-123456, "usd", "-$1,234.56"), (1500, "jpy", "¥1,500"), (5120, "kwd", "KWD 5.120"),
     (100, "sek", "1.00 SEK")],
    ids=["usd", "jpy", "kwd", "unknown-symbol"],
)  # fmt: skip
def test_format_amount(minor: int, currency: str, text: str) -> None:
    assert format_amount(minor, currency) == text


def test_number_formats() -> None:
    assert number_format("jpy") == '"¥"#,##0;-"¥"#,##0'
    assert number_format("usd") == '"$"#,##0.00;-"$"#,##0.00'
    assert ".000" in number_format("kwd")
