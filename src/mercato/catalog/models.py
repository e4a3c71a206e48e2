"""The catalog's tables: a category tree, brands, products and their variants (SKUs)."""

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
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, JSONType, UTCDateTime, utcnow

PRODUCT_STATUSES = ("draft", "active", "archived")


class Category(Base):
    """A node of the category tree. ``path`` is the slugs from the root joined by "/", so a
    subtree is one indexed prefix match."""

    __tablename__ = "catalog_categories"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    parent_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("catalog_categories.id"), index=True
    )
    name: Mapped[str] = mapped_column(String(120))
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    path: Mapped[str] = mapped_column(String(500), unique=True)
    depth: Mapped[int] = mapped_column(Integer, default=0)
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Brand(Base):
    __tablename__ = "catalog_brands"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Product(Base):
    """A product; ``min_price``/``max_price`` are denormalised from its active variants so that
    listings can sort and filter by price without touching the variants table."""

    __tablename__ = "catalog_products"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(220))
    description: Mapped[str] = mapped_column(Text, default="")
    brand_id: Mapped[str | None] = mapped_column(String(40), ForeignKey("catalog_brands.id"))
    category_id: Mapped[str] = mapped_column(String(40), ForeignKey("catalog_categories.id"))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    media: Mapped[list[str]] = mapped_column(JSONType, default=list)
    tax_class: Mapped[str] = mapped_column(String(32), default="standard")
    currency: Mapped[str] = mapped_column(String(3))
    min_price: Mapped[int | None] = mapped_column(BigInteger)
    max_price: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint("status IN ('draft', 'active', 'archived')", name="status"),
        Index("ix_catalog_products_status_created_at_id", "status", "created_at", "id"),
        Index("ix_catalog_products_status_min_price_id", "status", "min_price", "id"),
        Index("ix_catalog_products_category_id", "category_id"),
        Index("ix_catalog_products_brand_id", "brand_id"),
    )


class Variant(Base):
    """One SKU of a product: its option values (size, colour…), price and weight."""

    __tablename__ = "catalog_variants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    product_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("catalog_products.id"), index=True
    )
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    options: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    price: Mapped[int] = mapped_column(BigInteger)
    compare_at: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    weight_grams: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (
        CheckConstraint("price >= 0", name="price_non_negative"),
        CheckConstraint("compare_at IS NULL OR compare_at >= 0", name="compare_at_non_negative"),
        CheckConstraint("weight_grams >= 0", name="weight_non_negative"),
    )
