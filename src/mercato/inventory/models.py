"""Tables of the inventory module.

``inventory_stock`` holds one row per (variant, warehouse). Its CHECK constraints make the
database itself refuse any state where available stock (``on_hand - reserved``) would be
negative, whatever code runs against it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Index, Integer, String, true
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, JSONType, UTCDateTime, utcnow

RESERVATION_STATES = ("active", "committed", "released", "expired")
MAX_HANDLING_DAYS = 30
MOVEMENT_KINDS = ("receive", "adjust", "reserve", "release", "commit", "expire", "restock")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Warehouse(Base):
    __tablename__ = "inventory_warehouses"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    # ISO 3166-1 alpha-2 codes of the countries this warehouse ships to.
    countries: Mapped[list[str]] = mapped_column(JSONType)
    region: Mapped[str | None] = mapped_column(String(80))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Business days from the day an order counts from to the day its parcel leaves.
    handling_days: Mapped[int] = mapped_column(Integer, default=1, server_default=true())
    # Pooled stock is the shop's own: what a reservation naming no warehouse, the product
    # pages and the search draw on. A marketplace seller's warehouse is not pooled: its units
    # are sold only through that seller's offers, by a reservation that names the warehouse.
    pooled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    __table_args__ = (
        CheckConstraint(
            f"handling_days BETWEEN 0 AND {MAX_HANDLING_DAYS}", name="handling_days_in_range"
        ),
    )


class Stock(Base):
    __tablename__ = "inventory_stock"

    variant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    warehouse_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped by every change: a cheap change marker for caches and projections.
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("reserved <= on_hand", name="reserved_within_on_hand"),
        Index("ix_inventory_stock_warehouse_id", "warehouse_id"),
    )


class Reservation(Base):
    """A hold of ``quantity`` units of one stock row for an owner (a checkout, a cart)."""

    __tablename__ = "inventory_reservations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(80))
    variant_id: Mapped[str] = mapped_column(String(40))
    warehouse_id: Mapped[str] = mapped_column(String(40))
    quantity: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="active")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(_in("state", RESERVATION_STATES), name="state_known"),
        Index("ix_inventory_reservations_state_expires_at", "state", "expires_at"),
        Index("ix_inventory_reservations_owner", "owner"),
        Index("ix_inventory_reservations_variant_id_state", "variant_id", "state"),
    )


class Movement(Base):
    """One row of the stock ledger.

    ``quantity`` is the number of units the movement concerns, positive for every kind except
    ``adjust``, whose sign says the direction (a count found 3 missing: -3).
    """

    __tablename__ = "inventory_movements"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    variant_id: Mapped[str] = mapped_column(String(40))
    warehouse_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(200))
    reference: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint(_in("kind", MOVEMENT_KINDS), name="kind_known"),
        CheckConstraint("quantity <> 0", name="quantity_not_zero"),
        Index("ix_inventory_movements_variant_id_warehouse_id", "variant_id", "warehouse_id"),
        Index("ix_inventory_movements_reference", "reference"),
    )
