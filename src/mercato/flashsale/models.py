"""Tables of the flash-sale module: the database is the system of record of every sale, every
place in its waiting room, every admission, hold and purchase. The gate (Redis or memory)
only mirrors ``allocation - sold - held`` so that admissions need not queue on a row.

The CHECK constraints make the database refuse an oversold sale whatever code runs against it:
``sold + held`` never exceeds ``allocation``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, UTCDateTime, utcnow

SALE_STATES = ("scheduled", "live", "ended")
ENTRY_STATES = ("waiting", "admitted", "checking_out", "purchased", "expired")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Sale(Base):
    __tablename__ = "flashsale_sales"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    price: Mapped[int] = mapped_column(Integer)  # minor units of ``currency``, per unit
    currency: Mapped[str] = mapped_column(String(3))
    allocation: Mapped[int] = mapped_column(Integer)  # units set aside, all variants together
    per_customer_limit: Mapped[int] = mapped_column(Integer, default=1)
    admission_rate: Mapped[int] = mapped_column(Integer)  # buyers admitted per minute
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    sold: Mapped[int] = mapped_column(Integer, default=0)  # units bought
    held: Mapped[int] = mapped_column(Integer, default=0)  # units held by admitted buyers
    admissions: Mapped[int] = mapped_column(Integer, default=0)  # buyers admitted, ever
    # The last place handed out: places after the start are numbered from it (first come,
    # first served); the pre-queue is numbered 1..n in random order at the start.
    next_position: Mapped[int] = mapped_column(Integer, default=0)
    served_through: Mapped[int] = mapped_column(Integer, default=0)  # the last place admitted
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_reason: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        CheckConstraint(_in("status", SALE_STATES), name="status_known"),
        CheckConstraint("allocation > 0", name="allocation_positive"),
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("per_customer_limit >= 1", name="limit_positive"),
        CheckConstraint("admission_rate >= 1", name="rate_positive"),
        CheckConstraint("sold >= 0 AND held >= 0", name="counts_not_negative"),
        CheckConstraint("sold + held <= allocation", name="never_oversold"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        Index("ix_flashsale_sales_status_starts_at", "status", "starts_at"),
    )


class SaleVariant(Base):
    """One variant of a sale and the units of it set aside."""

    __tablename__ = "flashsale_sale_variants"

    sale_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    variant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    allocation: Mapped[int] = mapped_column(Integer)
    sold: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        CheckConstraint("allocation > 0", name="allocation_positive"),
        CheckConstraint("sold >= 0 AND sold <= allocation", name="sold_within_allocation"),
    )


class Entry(Base):
    """A customer's one place in a sale's waiting room, and what became of it."""

    __tablename__ = "flashsale_entries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    sale_id: Mapped[str] = mapped_column(String(40))
    customer_id: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16), default="waiting")
    position: Mapped[int | None] = mapped_column(Integer)  # none while in the pre-queue
    units: Mapped[int] = mapped_column(Integer, default=0)  # held while admitted
    purchased: Mapped[int] = mapped_column(Integer, default=0)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    admitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    hold_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expired_reason: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        CheckConstraint(_in("state", ENTRY_STATES), name="state_known"),
        CheckConstraint("units >= 0 AND purchased >= 0", name="units_not_negative"),
        UniqueConstraint("sale_id", "customer_id"),
        Index("ix_flashsale_entries_sale_id_state_position", "sale_id", "state", "position"),
    )
