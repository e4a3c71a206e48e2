"""Money: integer minor units plus an ISO 4217 currency inside, decimal strings outside.

No float ever touches a money path: parsing goes through :class:`decimal.Decimal` from a string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import AfterValidator, Field

# Currencies whose minor unit is not 1/100.
_EXPONENTS: dict[str, int] = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "BHD": 3, "KWD": 3, "JOD": 3}
# About how many whole units of a currency a shopper pays where a euro shopper pays one, as a
# round figure, for the currencies where that is far from one (a currency not listed counts as
# one). It only chooses round figures in a currency, never converts money: whole multiples of
# 100 for the currencies without decimals keep every scaled figure exact.
_PRICE_LEVELS: dict[str, int] = {
    "JPY": 100,
    "KRW": 1000,
    "ISK": 100,
    "CLP": 1000,
    "HUF": 100,
    "INR": 100,
    "CZK": 10,
    "SEK": 10,
    "NOK": 10,
    "DKK": 10,
    "CNY": 10,
    "HKD": 10,
    "MXN": 10,
    "ZAR": 10,
}
_DECIMAL_RE = re.compile(r"^[0-9]{1,16}(\.[0-9]{1,3})?$")
_SPACES = " \t\n\r\f\v"
# The same rule as a JSON Schema pattern for what clients send (ASCII spaces around trimmed).
DECIMAL_PATTERN = r"^[ \t\n\r\f\v]*[0-9]{1,16}(\.[0-9]{1,3})?[ \t\n\r\f\v]*$"
MAX_MINOR = 10**15


class MoneyError(ValueError):
    """A money amount that cannot be represented exactly."""


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def round_unit(currency: str) -> int:
    """Minor units in one round unit of ``currency``, what a whole euro is to euro prices: 100
    for EUR, USD or GBP, 100 (yen) for JPY, 1000 for SEK (10 kronor), 1000 for BHD. Price
    filter steps are counted in it, so that they suit the shop's currency."""
    minor_per_whole: int = 10 ** exponent(currency)
    return minor_per_whole * _PRICE_LEVELS.get(currency.upper(), 1)


def local_figure(euro_cents: int, currency: str) -> int:
    """A round figure chosen in euro cents (``499``: 4.99) as the like figure of ``currency``,
    in its minor units: ``499`` for EUR, USD and GBP, ``499`` for JPY (¥499), ``4990`` for SEK
    (49.90 kr), ``4990`` for BHD (4.990). For generated figures (the demo shop's prices, fees
    and thresholds), never for money that changes hands."""
    return euro_cents * round_unit(currency) // 100


def to_minor(amount: str, currency: str) -> int:
    """Parse a non-negative decimal string (``"19.99"``) into minor units, exactly or not at all."""
    text = amount.strip(_SPACES)
    if not _DECIMAL_RE.match(text):
        raise MoneyError('must be a non-negative decimal string such as "19.99"')
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex already rules this out
        raise MoneyError("not a decimal number") from exc
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{currency} has {exponent(currency)} decimal places at most")
    minor = int(scaled)
    if minor > MAX_MINOR:
        raise MoneyError("amount is too large")
    return minor


def format_minor(minor: int, currency: str) -> str:
    """``1999, "EUR"`` → ``"19.99"``; negative amounts keep their sign."""
    exp = exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exp)
    return f"{sign}{whole}.{frac:0{exp}d}" if exp else f"{sign}{whole}"


@dataclass(frozen=True, slots=True)
class Money:
    amount: int
    currency: str

    def __str__(self) -> str:
        return f"{format_minor(self.amount, self.currency)} {self.currency}"

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def times(self, quantity: int) -> Money:
        return Money(self.amount * quantity, self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise MoneyError(f"cannot mix {self.currency} and {other.currency}")

    def decimal_str(self) -> str:
        return format_minor(self.amount, self.currency)


def _check_decimal(value: str) -> str:
    if not _DECIMAL_RE.match(value.strip(_SPACES)):
        raise ValueError('must be a non-negative decimal string such as "19.99"')
    return value.strip(_SPACES)


# What a client sends for an amount: a JSON string, never a JSON number (floats are refused).
# The pattern bounds it (no length limit of its own: some models trim spaces before checking
# lengths, which the document could not say).
DecimalStr = Annotated[
    str,
    Field(
        strict=True,
        examples=["19.99"],
        json_schema_extra={"pattern": DECIMAL_PATTERN},
    ),
    AfterValidator(_check_decimal),
]

CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["EUR"])]
