"""What every inventory rule shares: the tables, the limits, what callers see of warehouses,
stock rows and reservations, the input checks, and the one read everything needs (units
available per variant)."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite

from mercato.db import Base, UnitOfWork
from mercato.inventory.models import Movement, Reservation, Stock, Warehouse
from mercato.problems import validation_problem

MAX_QUANTITY = 100_000
"""The largest quantity one receive, reserve line or adjustment may move."""
DEFAULT_TTL_SECONDS = 600
DEFAULT_LOW_STOCK_THRESHOLD = 5
STOCK_CHANGED = "StockChanged"

_CHUNK = 500
_COUNTRY = re.compile(r"^[A-Z]{2}$")


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


WAREHOUSES = _table(Warehouse)
STOCK = _table(Stock)
RESERVATIONS = _table(Reservation)
MOVEMENTS = _table(Movement)

_AVAILABLE = (
    select(STOCK.c.variant_id, func.sum(STOCK.c.on_hand - STOCK.c.reserved))
    .join(WAREHOUSES, WAREHOUSES.c.id == STOCK.c.warehouse_id)
    .where(STOCK.c.variant_id.in_(bindparam("ids", expanding=True)), WAREHOUSES.c.active.is_(True))
    .group_by(STOCK.c.variant_id)
)


# --------------------------------------------------------------------------------------------
# What callers see


@dataclass(frozen=True, slots=True)
class WarehouseInfo:
    id: str
    code: str
    name: str
    countries: tuple[str, ...]
    region: str | None
    active: bool
    handling_days: int = 1

    def ships_to(self, country: str | None) -> bool:
        return country is None or country in self.countries


@dataclass(frozen=True, slots=True)
class StockLevel:
    variant_id: str
    warehouse_id: str
    warehouse_code: str
    on_hand: int
    reserved: int
    available: int
    version: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ReservationInfo:
    id: str
    owner: str
    variant_id: str
    warehouse_id: str
    warehouse_code: str
    quantity: int
    state: str
    expires_at: datetime
    created_at: datetime


# --------------------------------------------------------------------------------------------
# Input checks (bad input is answered before anything is written)


def check_quantity(field: str, quantity: int) -> None:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise validation_problem(field, "must be a whole number")
    if quantity < 1:
        raise validation_problem(field, "must be at least 1")
    if quantity > MAX_QUANTITY:
        raise validation_problem(field, f"must be at most {MAX_QUANTITY}")


def normalize_country(country: str | None, field: str = "country") -> str | None:
    if country is None:
        return None
    code = country.strip().upper()
    if not _COUNTRY.match(code):
        raise validation_problem(field, "must be an ISO 3166-1 alpha-2 country code such as 'DE'")
    return code


# --------------------------------------------------------------------------------------------
# Small helpers


def dialect_insert(uow: UnitOfWork, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT, which knows ``ON CONFLICT``."""
    if uow.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def chunks(values: Sequence[str], size: int = _CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# --------------------------------------------------------------------------------------------
# Units available


async def availability(uow: UnitOfWork, variant_ids: Collection[str]) -> dict[str, int]:
    """Units available to sell per variant, summed over active warehouses (0 when none)."""
    wanted = sorted(set(variant_ids))
    found = dict.fromkeys(wanted, 0)
    for chunk in chunks(wanted):
        rows = await uow.execute(_AVAILABLE, {"ids": list(chunk)})
        for variant_id, available in rows:
            found[variant_id] = int(available or 0)
    return found


def low_stock_hint(available: int, threshold: int = DEFAULT_LOW_STOCK_THRESHOLD) -> str | None:
    """ "Only 3 left" when a shopper should hurry; ``None`` when plenty (or none) is left."""
    if 0 < available <= threshold:
        return f"Only {available} left"
    return None
