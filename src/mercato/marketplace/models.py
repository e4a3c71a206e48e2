"""Tables of the marketplace module.

``marketplace_sellers``: one row per seller. The house (the shop itself, id ``sel_house``) is
written by the migration; it sells every catalog variant at the catalog's price from the
pooled warehouses, so it has no offer rows. Any other seller keeps its stock in its own warehouse
(``warehouse_id``, not pooled: see the inventory module) and sells through offer rows. Payout
details are an opaque reference to an account held by the payment provider, never a bank
number. The performance figures are the last ones computed (see ``performance.py``), with
``eligible`` saying whether the seller's offers may win the buy box.

``marketplace_seller_users``: which seller a ``seller`` account acts for (one each).

``marketplace_offers``: a seller's price, shipping fee and handling days for one variant (one
offer per seller and variant). Its stock is the variant's stock in the seller's warehouse.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, UTCDateTime, utcnow

SELLER_STATES: tuple[str, ...] = ("pending", "approved", "suspended")
HOUSE_SELLER_ID = "sel_house"
MAX_HANDLING_DAYS = 30


class Seller(Base):
    __tablename__ = "marketplace_sellers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    legal_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    country: Mapped[str] = mapped_column(String(2))
    description: Mapped[str] = mapped_column(String(2000), default="")
    payout_reference: Mapped[str | None] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    status_reason: Mapped[str | None] = mapped_column(String(200))
    is_house: Mapped[bool] = mapped_column(Boolean, default=False)
    warehouse_id: Mapped[str | None] = mapped_column(String(40))
    warehouse_code: Mapped[str | None] = mapped_column(String(16))
    applicant_user_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The last performance figures (basis points of the window's orders) and buy-box standing.
    orders_counted: Mapped[int] = mapped_column(Integer, default=0)
    defect_rate_bp: Mapped[int] = mapped_column(Integer, default=0)
    late_shipment_rate_bp: Mapped[int] = mapped_column(Integer, default=0)
    cancel_rate_bp: Mapped[int] = mapped_column(Integer, default=0)
    rating_x100: Mapped[int | None] = mapped_column(Integer)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    performance_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    eligible: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'approved', 'suspended')", name="status_known"),
        Index("ix_marketplace_sellers_status", "status"),
    )


class SellerUser(Base):
    __tablename__ = "marketplace_seller_users"

    user_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    seller_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_marketplace_seller_users_seller_id", "seller_id"),)


class Offer(Base):
    __tablename__ = "marketplace_offers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    seller_id: Mapped[str] = mapped_column(String(40))
    variant_id: Mapped[str] = mapped_column(String(40))
    product_id: Mapped[str] = mapped_column(String(40))
    price: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    shipping_price: Mapped[int] = mapped_column(Integer, default=0)
    handling_days: Mapped[int] = mapped_column(Integer, default=2)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("seller_id", "variant_id"),
        CheckConstraint("price > 0", name="price_positive"),
        CheckConstraint("shipping_price >= 0", name="shipping_not_negative"),
        CheckConstraint(
            f"handling_days BETWEEN 0 AND {MAX_HANDLING_DAYS}", name="handling_days_in_range"
        ),
        Index("ix_marketplace_offers_variant_id", "variant_id"),
        Index("ix_marketplace_offers_product_id", "product_id"),
    )
