"""Tables of the orders module: orders, their lines (price snapshots), and the status history.

``orders_orders.version`` counts the order's transitions; every transition bumps it in the same
conditional ``UPDATE`` that changes the status, and the history row carries that number. The
unique (order_id, seq) pair on ``orders_history`` therefore makes the database itself refuse two
transitions out of the same state: one order, one state, one linear history.

What a cancellation did (goods back on the shelf, money given back) is on its workflow run
(``orders.cancellation``, keyed by the order id), not on the order.

``units_shipped`` mirrors the sum of the lines' ``quantity_shipped`` on the order row, so a
cancellation's conditional ``UPDATE`` can see (and a shipment can lock) the one row it races on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, JSONType, UTCDateTime, utcnow

# An order is created once its payment is authorized (the checkout), so it is born ``paid``:
# there is no "pending" or "payment_failed" order (a declined checkout places none).
ORDER_STATUSES: tuple[str, ...] = (
    "paid",
    "cancelled",
    "fulfilling",
    "shipped",
    "delivered",
    "return_requested",
    "returned",
    "refunded",
)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


HOUSE_SELLER = "sel_house"
"""The house seller's id (the marketplace's migration writes that seller): an order line
bought from no particular seller is the shop's own."""

STATUS_CHECK = _in("status", ORDER_STATUSES)
AMOUNTS_CHECK = (
    "subtotal >= 0 AND shipping >= 0 AND discount >= 0 AND tax >= 0 AND total >= 0 "
    "AND refunded_total >= 0"
)
LINE_AMOUNTS_CHECK = (
    "unit_price >= 0 AND subtotal >= 0 AND discount >= 0 AND tax >= 0 AND total >= 0"
)


class Order(Base):
    __tablename__ = "orders_orders"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # The checkout that placed it; also the owner of its inventory reservations.
    checkout_id: Mapped[str] = mapped_column(String(40), unique=True)
    # None for a guest's order until its e-mail, verified, joins an account.
    user_id: Mapped[str | None] = mapped_column(String(40))
    email: Mapped[str] = mapped_column(String(254))
    status: Mapped[str] = mapped_column(String(24))
    previous_status: Mapped[str | None] = mapped_column(String(24))
    version: Mapped[int] = mapped_column(Integer, default=1)
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[int] = mapped_column(BigInteger)
    shipping: Mapped[int] = mapped_column(BigInteger)
    discount: Mapped[int] = mapped_column(BigInteger)
    tax: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    refunded_total: Mapped[int] = mapped_column(BigInteger, default=0)
    units_shipped: Mapped[int] = mapped_column(Integer, default=0)
    shipping_address: Mapped[dict[str, Any]] = mapped_column(JSONType)
    shipping_method: Mapped[str] = mapped_column(String(40))
    promo_code: Mapped[str | None] = mapped_column(String(40))
    payment_intent_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint(STATUS_CHECK, name="status"),
        CheckConstraint(AMOUNTS_CHECK, name="amounts_non_negative"),
        CheckConstraint("refunded_total <= total", name="refunded_le_total"),
        CheckConstraint("units_shipped >= 0", name="units_shipped_non_negative"),
        Index("ix_orders_orders_user_id_created_at_id", "user_id", "created_at", "id"),
        Index("ix_orders_orders_status_created_at", "status", "created_at"),
        Index("ix_orders_orders_email_created_at", "email", "created_at"),
        Index("ix_orders_orders_created_at", "created_at"),
    )


class OrderLine(Base):
    """One line of an order with the prices as they were when it was placed."""

    __tablename__ = "orders_lines"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(40), ForeignKey("orders_orders.id"))
    position: Mapped[int] = mapped_column(Integer)
    variant_id: Mapped[str] = mapped_column(String(40))
    product_id: Mapped[str] = mapped_column(String(40))
    sku: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(500))
    options: Mapped[dict[str, str]] = mapped_column(JSONType)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    subtotal: Mapped[int] = mapped_column(BigInteger)
    discount: Mapped[int] = mapped_column(BigInteger)
    tax: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    quantity_shipped: Mapped[int] = mapped_column(Integer, default=0)
    quantity_returned: Mapped[int] = mapped_column(Integer, default=0)
    # Who sells the line (the house, ``sel_house``, unless a marketplace seller's offer was
    # bought) and the order part it belongs to.
    seller_id: Mapped[str] = mapped_column(String(40), server_default=HOUSE_SELLER)
    part_id: Mapped[str | None] = mapped_column(String(40))

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(LINE_AMOUNTS_CHECK, name="amounts_non_negative"),
        CheckConstraint(
            "quantity_shipped >= 0 AND quantity_shipped <= quantity", name="shipped_le_quantity"
        ),
        CheckConstraint(
            "quantity_returned >= 0 AND quantity_returned <= quantity_shipped",
            name="returned_le_shipped",
        ),
        UniqueConstraint("order_id", "position"),
    )


class OrderPart(Base):
    """One seller's share of an order: its lines, its shipping and its money. Every order has
    at least one (the house's, for an order of the shop's own goods); the parts' amounts add
    up to the order's."""

    __tablename__ = "orders_order_parts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(40), ForeignKey("orders_orders.id"))
    seller_id: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(24))
    subtotal: Mapped[int] = mapped_column(BigInteger)
    discount: Mapped[int] = mapped_column(BigInteger)
    shipping: Mapped[int] = mapped_column(BigInteger)
    tax: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    # The seller's promised days before dispatch, as the offer said when the order was placed.
    handling_days: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint(
            "subtotal >= 0 AND discount >= 0 AND shipping >= 0 AND tax >= 0 AND total >= 0",
            name="amounts_non_negative",
        ),
        UniqueConstraint("order_id", "seller_id"),
        Index("ix_orders_order_parts_seller_id_created_at", "seller_id", "created_at"),
    )


class OrderHistory(Base):
    """One transition of an order (``from_status`` is None for its creation, as ``paid``)."""

    __tablename__ = "orders_history"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(40), ForeignKey("orders_orders.id"))
    seq: Mapped[int] = mapped_column(Integer)
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("order_id", "seq"),
        CheckConstraint(_in("to_status", ORDER_STATUSES), name="to_status"),
    )


class SalesRank(Base):
    """A product's sales over the trailing window, as the ``orders.sales_rank`` job last
    computed them from the order lines: net units (sold less cancelled and returned) and the
    decayed score the shop ranks by. Products with no net units in the window have no row."""

    __tablename__ = "orders_sales_ranks"

    product_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    units: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint("units > 0 AND score >= 0", name="positive"),
        Index("ix_orders_sales_ranks_score", "score"),
    )
