"""Tables of the returns module: return requests (RMA) and the units each one covers.

A request moves ``requested → approved → received → refunded`` (or ``requested/approved →
rejected``). Every move is a conditional ``UPDATE ... WHERE status = :from``, so a retried or
concurrent call acts once. ``refund_amount`` is fixed when the goods are received; the refund
itself then runs (and is retried) with the idempotency key ``return:<id>``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, UTCDateTime, utcnow

RETURN_STATUSES: tuple[str, ...] = ("requested", "approved", "rejected", "received", "refunded")
DISPOSITIONS: tuple[str, ...] = ("restock", "write_off")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class ReturnRequest(Base):
    __tablename__ = "returns_requests"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[str | None] = mapped_column(String(40))  # None: asked by a guest
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500))
    staff_note: Mapped[str | None] = mapped_column(String(500))
    currency: Mapped[str] = mapped_column(String(3))
    refund_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    refund_shipping: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint(_in("status", RETURN_STATUSES), name="status"),
        CheckConstraint("refund_amount >= 0", name="refund_amount_not_negative"),
        Index("ix_returns_requests_order_id", "order_id"),
        Index("ix_returns_requests_status_created_at", "status", "created_at"),
    )


class ReturnLine(Base):
    __tablename__ = "returns_lines"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(40), ForeignKey("returns_requests.id"))
    order_id: Mapped[str] = mapped_column(String(40))
    order_line_id: Mapped[str] = mapped_column(String(40))
    quantity: Mapped[int] = mapped_column(Integer)
    disposition: Mapped[str | None] = mapped_column(String(16))
    warehouse_code: Mapped[str | None] = mapped_column(String(16))
    # This line's part of the refund (fixed when received).
    amount: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (
        UniqueConstraint("request_id", "order_line_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint(
            "disposition IS NULL OR " + _in("disposition", DISPOSITIONS), name="disposition"
        ),
        Index("ix_returns_lines_order_id_order_line_id", "order_id", "order_line_id"),
    )
