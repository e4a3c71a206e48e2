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

``marketplace_commission_rules``: what the shop keeps of a seller's sale: a rate in basis points
with an optional minimum and maximum (minor units of ``currency``), for a scope (a seller, a
category, both, or neither: the default) and a validity window ``[valid_from, valid_to)``.
Deactivated rather than deleted: commission lines name the rule they were priced by.

``marketplace_commission_lines``: one per sale (an order part's line, by its ``reference``), with
the rule's terms frozen as they were when it was sold, and how much of it has since been
refunded or cancelled (``returned``) and how much commission that gave back (``reversed``).

``marketplace_journal_entries`` and ``marketplace_postings``: the double-entry ledger. An entry
(a sale, a refund, a cancellation, a payout) has postings whose signed amounts (debit positive,
credit negative) add up to zero; ``idempotency_key`` makes each happen once.

``marketplace_payouts``: money paid out to a seller for a period, with its ledger entry.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
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


MAX_RATE_BP = 10_000


class CommissionRule(Base):
    __tablename__ = "marketplace_commission_rules"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    seller_id: Mapped[str | None] = mapped_column(String(40))
    category_id: Mapped[str | None] = mapped_column(String(40))
    rate_bp: Mapped[int] = mapped_column(Integer)
    min_commission: Mapped[int | None] = mapped_column(BigInteger)
    max_commission: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime())
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint(f"rate_bp BETWEEN 0 AND {MAX_RATE_BP}", name="rate_in_range"),
        CheckConstraint("min_commission >= 0", name="min_not_negative"),
        CheckConstraint("max_commission >= 0", name="max_not_negative"),
        CheckConstraint("min_commission <= max_commission", name="min_not_above_max"),
        Index("ix_marketplace_commission_rules_scope", "seller_id", "category_id"),
    )


class CommissionLine(Base):
    __tablename__ = "marketplace_commission_lines"

    reference: Mapped[str] = mapped_column(String(80), primary_key=True)
    seller_id: Mapped[str] = mapped_column(String(40))
    category_id: Mapped[str | None] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    gross: Mapped[int] = mapped_column(BigInteger)
    rate_bp: Mapped[int] = mapped_column(Integer)
    min_commission: Mapped[int | None] = mapped_column(BigInteger)
    max_commission: Mapped[int | None] = mapped_column(BigInteger)
    commission: Mapped[int] = mapped_column(BigInteger)
    rule_id: Mapped[str | None] = mapped_column(String(40))
    entry_id: Mapped[str] = mapped_column(String(40))
    sold_at: Mapped[datetime] = mapped_column(UTCDateTime())
    returned: Mapped[int] = mapped_column(BigInteger, default=0)
    reversed: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (
        CheckConstraint("gross > 0", name="gross_positive"),
        CheckConstraint("commission BETWEEN 0 AND gross", name="commission_within_gross"),
        CheckConstraint("returned BETWEEN 0 AND gross", name="returned_within_gross"),
        CheckConstraint("reversed BETWEEN 0 AND commission", name="reversed_within_commission"),
        Index("ix_marketplace_commission_lines_seller_id", "seller_id"),
    )


class JournalEntry(Base):
    __tablename__ = "marketplace_journal_entries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str] = mapped_column(String(80))
    idempotency_key: Mapped[str] = mapped_column(String(100))
    seller_id: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        CheckConstraint("kind IN ('sale', 'refund', 'cancellation', 'payout')", name="kind_known"),
        Index("ix_marketplace_journal_entries_seller_at", "seller_id", "occurred_at"),
    )


class Posting(Base):
    __tablename__ = "marketplace_postings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(String(40))
    account: Mapped[str] = mapped_column(String(80))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        Index("ix_marketplace_postings_entry_id", "entry_id"),
        Index("ix_marketplace_postings_account", "account", "currency"),
    )


class Payout(Base):
    __tablename__ = "marketplace_payouts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    seller_id: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[str] = mapped_column(String(80))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_by: Mapped[str | None] = mapped_column(String(40))
    entry_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("reference"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("period_start < period_end", name="period_ordered"),
        Index("ix_marketplace_payouts_seller_id", "seller_id"),
    )
