"""The cart tables: one row per cart, one row per (cart, variant, seller) line."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, UTCDateTime, utcnow


class Cart(Base):
    """A guest cart (``user_id`` NULL, expires) or a customer's one active cart."""

    __tablename__ = "cart_carts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(40), unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Guests only: refreshed on every change; the worker deletes carts past it.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    # Bumped by every change; a cached copy with another version is ignored.
    version: Mapped[int] = mapped_column(Integer, default=0)


class CartLine(Base):
    __tablename__ = "cart_lines"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    cart_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("cart_carts.id", ondelete="CASCADE")
    )
    variant_id: Mapped[str] = mapped_column(String(40))
    # The seller of the offer the line buys; "" for the house (the shop's own stock). Not
    # NULL: the unique key treats the house like any seller.
    seller_id: Mapped[str] = mapped_column(String(40), default="", server_default="")
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_seen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("cart_id", "variant_id", "seller_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )


# Core handles for the statements in the service (the hot paths are single Core statements).
carts: Table = Cart.__table__  # type: ignore[assignment]
cart_lines: Table = CartLine.__table__  # type: ignore[assignment]
