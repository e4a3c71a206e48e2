"""What the recommendations API answers: each product with why it is shown."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from mercato.money import format_minor
from mercato.recommendations.service import Recommendation


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
