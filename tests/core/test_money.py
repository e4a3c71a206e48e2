"""Money parsing and formatting: exact round trips, refusals of anything inexact."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mercato.money import MAX_MINOR, MoneyError, exponent, format_minor, to_minor

CURRENCIES = st.sampled_from(["EUR", "USD", "GBP", "JPY", "KWD", "CHF"])


@st.composite
def amounts(draw: st.DrawFn) -> tuple[int, str]:
    # Every amount up to MAX_MINOR, in any currency, reads back from its decimal string.
    return draw(st.integers(min_value=0, max_value=MAX_MINOR)), draw(CURRENCIES)


@given(amount=amounts())
def test_format_then_parse_is_identity(amount: tuple[int, str]) -> None:
    minor, currency = amount
    assert to_minor(format_minor(minor, currency), currency) == minor


@given(minor=st.integers(min_value=0, max_value=MAX_MINOR), currency=CURRENCIES)
def test_formatted_amounts_have_the_currency_decimals(minor: int, currency: str) -> None:
    text = format_minor(minor, currency)
    decimals = len(text.split(".")[1]) if "." in text else 0
    assert decimals == exponent(currency)


@given(
    whole=st.integers(min_value=0, max_value=10**9),
    cents=st.integers(min_value=0, max_value=99),
)
def test_parse_then_format_is_canonical(whole: int, cents: int) -> None:
    assert format_minor(to_minor(f"{whole}.{cents:02d}", "EUR"), "EUR") == f"{whole}.{cents:02d}"
    assert to_minor(f"{whole}.{cents:02d}", "EUR") == whole * 100 + cents


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("-1.00", "EUR"),
        ("1.999", "EUR"),
        ("1.5", "JPY"),
        ("1e3", "EUR"),
        ("", "EUR"),
        ("19,99", "EUR"),
        ("NaN", "EUR"),
        ("Infinity", "EUR"),
        (" ", "EUR"),
        ("1.", "EUR"),
        ("99999999999999", "EUR"),
    ],
)
def test_inexact_or_malformed_amounts_are_refused(amount: str, currency: str) -> None:
    with pytest.raises(MoneyError):
        to_minor(amount, currency)


def test_negative_amounts_keep_their_sign() -> None:
    assert format_minor(-1999, "EUR") == "-19.99"
    assert format_minor(-5, "JPY") == "-5"
