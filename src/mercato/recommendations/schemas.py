"""What the recommendations API answers: each product with why it is shown."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from mercato.money import format_minor
from mercato.recommendations.service import Recommendation, SavedEntry, WishlistItem
from mercato.text import PlainLine


class RecommendedProduct(BaseModel):
    id: str
    title: str
    slug: str
    brand: str | None
    currency: str
    min_price: str | None  # a decimal string, like every amount the API shows
    reason: Literal["rule", "similar", "popular"]
    score: float
    confidence: float | None = None
    support: float | None = None
    lift: float | None = None
    because: str | None = None  # for you: the shopper's product it comes from


class RecommendationsOut(BaseModel):
    product_id: str
    kind: Literal["bought_together", "also_bought"]
    items: list[RecommendedProduct]


class ForYouOut(BaseModel):
    personal: bool  # false: nothing to go on yet, these are the best sellers
    items: list[RecommendedProduct]


def recommended_json(r: Recommendation) -> RecommendedProduct:
    p = r.product
    rule = r.reason == "rule"
    return RecommendedProduct(
        id=p.id,
        title=p.title,
        slug=p.slug,
        brand=p.brand,
        currency=p.currency,
        min_price=format_minor(p.min_price, p.currency) if p.min_price is not None else None,
        reason=r.reason,
        score=round(r.item.score, 6),
        confidence=round(r.item.confidence, 6) if rule and r.item.confidence is not None else None,
        support=round(r.item.support, 6) if rule and r.item.support is not None else None,
        lift=round(r.item.lift, 6) if rule and r.item.lift is not None else None,
        because=r.because,
    )


# --------------------------------------------------------------------------------------------
# The wishlist (``/api/me/wishlist``)


class WishlistIn(BaseModel):
    product_id: Annotated[str, PlainLine(min_length=1, max_length=40), Field(examples=["prd_01"])]
    variant_id: Annotated[str, PlainLine(min_length=1, max_length=40)] | None = None


class WishlistEntryOut(BaseModel):
    product_id: str
    variant_id: str | None
    saved_at: datetime


class WishlistItemOut(BaseModel):
    product_id: str
    variant_id: str | None
    saved_at: datetime
    title: str
    slug: str | None
    image: str | None
    variant_title: str | None
    currency: str | None
    price: str | None  # a decimal string, like every amount the API shows
    on_sale: bool  # false once the product was archived (it stays listed until removed)
    in_stock: bool  # for the shopper's destination
    available_elsewhere: bool
    cart_variant_id: str | None  # what "Add to cart" would add


class WishlistOut(BaseModel):
    items: list[WishlistItemOut]
    limit: int


def wishlist_entry_json(e: SavedEntry) -> WishlistEntryOut:
    return WishlistEntryOut(product_id=e.product_id, variant_id=e.variant_id, saved_at=e.saved_at)


def wishlist_item_json(i: WishlistItem) -> WishlistItemOut:
    return WishlistItemOut(
        product_id=i.product_id,
        variant_id=i.variant_id,
        saved_at=i.saved_at,
        title=i.title,
        slug=i.slug,
        image=i.image,
        variant_title=i.variant_title,
        currency=i.currency,
        price=format_minor(i.price, i.currency) if i.price is not None and i.currency else None,
        on_sale=i.on_sale,
        in_stock=i.in_stock,
        available_elsewhere=i.available_elsewhere,
        cart_variant_id=i.cart_variant_id,
    )
