"""What every inventory rule shares: the tables, the limits, what callers see of warehouses,
stock rows and reservations, the input checks, and the one read everything needs (units
available per variant)."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, bindparam, select
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

# One row per (variant, active warehouse), with where the warehouse ships: every destination's
# figure comes from the same read.
_SPREAD = (
    select(
        STOCK.c.variant_id,
        STOCK.c.warehouse_id,
        WAREHOUSES.c.countries,
        STOCK.c.on_hand - STOCK.c.reserved,
    )
    .join(WAREHOUSES, WAREHOUSES.c.id == STOCK.c.warehouse_id)
    .where(
        STOCK.c.variant_id.in_(bindparam("ids", expanding=True)),
        WAREHOUSES.c.active.is_(True),
        WAREHOUSES.c.pooled.is_(True),
    )
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
    pooled: bool = True

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


@dataclass(frozen=True, slots=True)
class StockSpread:
    """A variant's units available in each active pooled warehouse, with the countries each ships
    to: what a shopper can buy depends on where the goods would go."""

    parts: tuple[tuple[str, frozenset[str], int], ...] = ()
    """(warehouse id, the countries it ships to, units available there)."""

    @property
    def total(self) -> int:
        """Units available anywhere, whatever the destination."""
        return sum(units for _, _, units in self.parts)

    def for_country(self, country: str | None) -> int:
        """Units that can reach ``country`` (every active warehouse's when ``None``)."""
        return sum(units for _, ships, units in self.parts if country is None or country in ships)

    def by_warehouse(self) -> dict[str, int]:
        """Units per active warehouse that holds some (warehouse id → units)."""
        return {warehouse: units for warehouse, _, units in self.parts if units > 0}

    def only_elsewhere(self, country: str | None) -> bool:
        """Nothing can reach ``country``, yet some warehouse that ships elsewhere has units:
        "not available for delivery there" rather than "out of stock"."""
        return self.for_country(country) <= 0 < self.total


NOTHING = StockSpread()


async def stock_spreads(uow: UnitOfWork, variant_ids: Collection[str]) -> dict[str, StockSpread]:
    """Each variant's :class:`StockSpread` (an empty one when no active warehouse holds it)."""
    wanted = sorted(set(variant_ids))
    parts: dict[str, list[tuple[str, frozenset[str], int]]] = {v: [] for v in wanted}
    for chunk in chunks(wanted):
        rows = await uow.execute(_SPREAD, {"ids": list(chunk)})
        for variant_id, warehouse_id, countries, available in rows:
            parts[variant_id].append(
                (warehouse_id, frozenset(countries or ()), int(available or 0))
            )
    return {v: StockSpread(tuple(p)) for v, p in parts.items()}


async def availability(
    uow: UnitOfWork, variant_ids: Collection[str], country: str | None = None
) -> dict[str, int]:
    """Units available to sell per variant, summed over the active warehouses that ship to
    ``country`` (all of them when ``None``); 0 when none."""
    found = await stock_spreads(uow, variant_ids)
    return {v: spread.for_country(country) for v, spread in found.items()}


def low_stock_hint(available: int, threshold: int = DEFAULT_LOW_STOCK_THRESHOLD) -> str | None:
    """ "Only 3 left" when a shopper should hurry; ``None`` when plenty (or none) is left."""
    if 0 < available <= threshold:
        return f"Only {available} left"
    return None
