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
_DECIMAL_RE = re.compile(r"^\d{1,16}(\.\d{1,3})?$")
MAX_MINOR = 10**15


class MoneyError(ValueError):
    """A money amount that cannot be represented exactly."""


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency.upper(), 2)


def to_minor(amount: str, currency: str) -> int:
    """Parse a non-negative decimal string (``"19.99"``) into minor units, exactly or not at all."""
    text = amount.strip()
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
    if not _DECIMAL_RE.match(value.strip()):
        raise ValueError('must be a non-negative decimal string such as "19.99"')
    return value.strip()


# What a client sends for an amount: a JSON string, never a JSON number (floats are refused).
DecimalStr = Annotated[
    str, Field(strict=True, max_length=20, examples=["19.99"]), AfterValidator(_check_decimal)
]

CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["EUR"])]
