"""Input rules every part of the checkout shares: country, region, currency and amount checks,
percentages as text, and the dialect's ``INSERT`` (for its ``ON CONFLICT`` clauses)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite

from mercato.db import UnitOfWork
from mercato.money import MAX_MINOR, MoneyError, to_minor
from mercato.problems import validation_problem

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_REGION = re.compile(r"^[A-Z0-9-]{1,16}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def insert(uow: UnitOfWork, table: Any) -> postgresql.Insert | sqlite.Insert:
    if uow.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def normalize_country(value: str, field: str = "country") -> str:
    code = value.strip().upper()
    if not _COUNTRY.match(code):
        raise validation_problem(field, "must be an ISO 3166-1 alpha-2 country code such as 'DE'")
    return code


def normalize_region(value: str | None, field: str = "region") -> str:
    if value is None or not value.strip():
        return ""
    region = value.strip().upper()
    if not _REGION.match(region):
        raise validation_problem(field, "must be 1 to 16 letters, digits or '-'")
    return region


def check_currency(value: str, field: str = "currency") -> str:
    if not _CURRENCY.match(value):
        raise validation_problem(field, "must be an ISO 4217 code such as EUR")
    return value


def check_amount(value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MINOR:
        raise validation_problem(field, "must be a non-negative amount")
    return value


def percent_text(bps: int) -> str:
    """Basis points as a percentage string: 1900 → ``"19.00"``, 550 → ``"5.50"``."""
    return f"{bps // 100}.{bps % 100:02d}"


def minor(value: str, currency: str, field: str) -> int:
    """A decimal amount as staff type it (``"4.90"``) in minor units, or a 422 naming ``field``."""
    try:
        return to_minor(value, currency)
    except MoneyError as exc:
        raise validation_problem(field, str(exc)) from exc
