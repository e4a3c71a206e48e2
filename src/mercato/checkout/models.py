"""Checkout tables: shipping zones and methods, tax rates, shop settings, promo codes and their
redemptions. (A checkout in progress is a workflow run: ``workflow_runs``, owned by the core.)

A promo code's ``used_count`` counts the uses taken by checkouts (reserved or committed); the
CHECK constraint makes the database itself refuse a count past the usage limit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, JSONType, UTCDateTime, utcnow

SHIPPING_KINDS = ("flat", "weight_band", "free_over")
PROMO_KINDS = ("percent", "fixed")
REDEMPTION_STATES = ("reserved", "committed", "released")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class ShippingZone(Base):
    """A set of destination countries that share shipping methods."""

    __tablename__ = "checkout_shipping_zones"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    # ISO 3166-1 alpha-2 codes, upper case.
    countries: Mapped[list[str]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ShippingMethod(Base):
    """How a zone can be shipped to, and what it costs.

    ``flat``: always ``amount``; ``free_over``: ``amount``, or nothing once the goods (after
    discounts) reach ``free_over``; ``weight_band``: the amount of the first band of
    ``weight_bands`` (``[{"up_to_grams": int | null, "amount": int}]``, ascending, ``null`` for
    "any weight") that the parcel fits. ``free_over`` also applies to the other kinds when set.
    """

    __tablename__ = "checkout_shipping_methods"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    zone_id: Mapped[str] = mapped_column(ForeignKey("checkout_shipping_zones.id"))
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    free_over: Mapped[int | None] = mapped_column(BigInteger)
    weight_bands: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    min_days: Mapped[int] = mapped_column(Integer)
    max_days: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("zone_id", "code"),
        CheckConstraint(_in("kind", SHIPPING_KINDS), name="kind_known"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("free_over IS NULL OR free_over >= 0", name="free_over_not_negative"),
        CheckConstraint("kind <> 'free_over' OR free_over IS NOT NULL", name="free_over_given"),
        CheckConstraint("min_days >= 0 AND max_days >= min_days", name="days_ordered"),
    )


class TaxRate(Base):
    """A VAT/sales tax rate in basis points (1900 = 19 %) for a destination and a tax class.

    ``region`` is ``""`` for the whole country (a real value, not NULL, so the unique
    constraint holds on every database); a region-specific row wins over the country's.
    """

    __tablename__ = "checkout_tax_rates"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    country: Mapped[str] = mapped_column(String(2))
    region: Mapped[str] = mapped_column(String(16), default="")
    tax_class: Mapped[str] = mapped_column(String(32))
    rate_bps: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        UniqueConstraint("country", "region", "tax_class"),
        CheckConstraint("rate_bps >= 0 AND rate_bps <= 10000", name="rate_in_range"),
    )


class Setting(Base):
    """Shop-wide checkout settings as key/value rows (e.g. ``prices_include_tax``)."""

    __tablename__ = "checkout_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PromoCode(Base):
    """A discount code. ``value`` is basis points for ``percent`` (1000 = 10 %) and minor
    units of ``currency`` for ``fixed``; ``currency`` NULL (percent only) fits any cart."""

    __tablename__ = "checkout_promo_codes"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    min_subtotal: Mapped[int] = mapped_column(BigInteger, default=0)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    usage_limit: Mapped[int | None] = mapped_column(Integer)
    per_customer_limit: Mapped[int | None] = mapped_column(Integer)
    used_count: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint(_in("kind", PROMO_KINDS), name="kind_known"),
        CheckConstraint("value > 0", name="value_positive"),
        CheckConstraint("kind <> 'percent' OR value <= 10000", name="percent_at_most_100"),
        CheckConstraint("kind <> 'fixed' OR currency IS NOT NULL", name="fixed_has_currency"),
        CheckConstraint("min_subtotal >= 0", name="min_subtotal_not_negative"),
        CheckConstraint("used_count >= 0", name="used_count_not_negative"),
        CheckConstraint(
            "usage_limit IS NULL OR used_count <= usage_limit", name="used_within_limit"
        ),
        CheckConstraint("usage_limit IS NULL OR usage_limit >= 0", name="usage_limit_valid"),
        CheckConstraint(
            "per_customer_limit IS NULL OR per_customer_limit >= 1",
            name="per_customer_limit_valid",
        ),
    )


class PromoRedemption(Base):
    """One use of a promo code by one checkout: ``reserved`` while the checkout runs,
    ``committed`` with the order, ``released`` when the checkout failed (the use given back)."""

    __tablename__ = "checkout_promo_redemptions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    promo_id: Mapped[str] = mapped_column(ForeignKey("checkout_promo_codes.id"))
    user_id: Mapped[str] = mapped_column(String(40))
    checkout_id: Mapped[str] = mapped_column(String(40), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint(_in("state", REDEMPTION_STATES), name="state_known"),
        Index("ix_checkout_promo_redemptions_promo_id_user_id", "promo_id", "user_id"),
    )


# Core handles for the statements in the services.
zones: Table = ShippingZone.__table__  # type: ignore[assignment]
methods: Table = ShippingMethod.__table__  # type: ignore[assignment]
tax_rates: Table = TaxRate.__table__  # type: ignore[assignment]
settings_table: Table = Setting.__table__  # type: ignore[assignment]
promo_codes: Table = PromoCode.__table__  # type: ignore[assignment]
redemptions: Table = PromoRedemption.__table__  # type: ignore[assignment]
