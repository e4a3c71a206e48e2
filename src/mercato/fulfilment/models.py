"""Tables of the fulfilment module.

``fulfilment_fulfilments``: one per (order, warehouse), created by allocation from the order's
committed reservations. ``fulfilment_items``: the order lines' units that warehouse sends;
``quantity_claimed`` counts units taken by shipments (still capturing, or shipped) and
``quantity_shipped`` those whose shipment went out. A shipment claims its units with a
conditional ``UPDATE ... WHERE quantity_claimed + :q <= quantity`` before the payment is
captured, so two concurrent shipments can never send (or capture for) the same unit twice.

``fulfilment_shipments``: a parcel. ``pending`` while its capture runs (invisible to
customers), then ``in_transit`` and ``delivered``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, UTCDateTime, utcnow

FULFILMENT_STATUSES: tuple[str, ...] = (
    "pending",
    "picked",
    "packed",
    "partially_shipped",
    "shipped",
    "delivered",
    "cancelled",
)
SHIPMENT_STATUSES: tuple[str, ...] = ("pending", "in_transit", "delivered")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Fulfilment(Base):
    __tablename__ = "fulfilment_fulfilments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(40))
    warehouse_code: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24), default="pending")
    picked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    packed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("order_id", "warehouse_code"),
        CheckConstraint(_in("status", FULFILMENT_STATUSES), name="status"),
        Index("ix_fulfilment_fulfilments_warehouse_code_status", "warehouse_code", "status"),
        Index("ix_fulfilment_fulfilments_status_created_at", "status", "created_at"),
    )


class FulfilmentItem(Base):
    __tablename__ = "fulfilment_items"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    fulfilment_id: Mapped[str] = mapped_column(String(40), ForeignKey("fulfilment_fulfilments.id"))
    order_id: Mapped[str] = mapped_column(String(40))
    order_line_id: Mapped[str] = mapped_column(String(40))
    variant_id: Mapped[str] = mapped_column(String(40))
    quantity: Mapped[int] = mapped_column(Integer)
    quantity_claimed: Mapped[int] = mapped_column(Integer, default=0)
    quantity_shipped: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint("fulfilment_id", "order_line_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "quantity_claimed >= 0 AND quantity_claimed <= quantity", name="claimed_le_quantity"
        ),
        CheckConstraint(
            "quantity_shipped >= 0 AND quantity_shipped <= quantity_claimed",
            name="shipped_le_claimed",
        ),
        Index("ix_fulfilment_items_order_id", "order_id"),
    )


class Shipment(Base):
    __tablename__ = "fulfilment_shipments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(40))
    # The fulfilment it leaves from; None when its units come from several warehouses.
    fulfilment_id: Mapped[str | None] = mapped_column(String(40))
    carrier: Mapped[str] = mapped_column(String(40))
    service: Mapped[str | None] = mapped_column(String(40))
    tracking_number: Mapped[str] = mapped_column(String(80))
    tracking_url: Mapped[str | None] = mapped_column(String(500))
    label: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(24))
    currency: Mapped[str] = mapped_column(String(3))
    # What shipping these units captured of the payment (the last one takes the remainder).
    capture_amount: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    shipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint(_in("status", SHIPMENT_STATUSES), name="status"),
        CheckConstraint("capture_amount >= 0", name="capture_amount_not_negative"),
        Index("ix_fulfilment_shipments_order_id", "order_id"),
        Index("ix_fulfilment_shipments_status_carrier", "status", "carrier"),
    )


class ShipmentItem(Base):
    __tablename__ = "fulfilment_shipment_items"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    shipment_id: Mapped[str] = mapped_column(String(40), ForeignKey("fulfilment_shipments.id"))
    fulfilment_item_id: Mapped[str] = mapped_column(String(40), ForeignKey("fulfilment_items.id"))
    order_line_id: Mapped[str] = mapped_column(String(40))
    quantity: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        UniqueConstraint("shipment_id", "fulfilment_item_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )


class TrackingEvent(Base):
    """One step of a parcel's journey; a status appears at most once per shipment."""

    __tablename__ = "fulfilment_tracking_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    shipment_id: Mapped[str] = mapped_column(String(40), ForeignKey("fulfilment_shipments.id"))
    status: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(200))
    location: Mapped[str | None] = mapped_column(String(120))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("shipment_id", "status"),)
