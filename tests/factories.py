"""Test data shared by every module's tests: products with variants, categories, brands.

The factories call the catalog service in the caller's unit of work, so the rows (and their
outbox events) are committed with the caller's transaction.
"""

from __future__ import annotations

import uuid
from typing import Any

from mercato.catalog import service as catalog
from mercato.catalog.service import BrandInfo, CategoryInfo, NewProduct, NewVariant
from mercato.db import UnitOfWork


def unique_sku(prefix: str = "TEST") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12].upper()}"


async def make_category(
    uow: UnitOfWork, name: str, parent_slug: str | None = None, *, slug: str | None = None
) -> CategoryInfo:
    """The category called ``name`` (created under ``parent_slug`` unless it already exists)."""
    slug = slug or catalog.slugify(name)
    existing = await catalog.get_category_by_slug(uow, slug)
    if existing is not None:
        return existing
    parent_id = None
    if parent_slug is not None:
        parent = await catalog.get_category_by_slug(uow, parent_slug)
        if parent is None:
            parent = await make_category(
                uow, parent_slug.replace("-", " ").title(), slug=parent_slug
            )
        parent_id = parent.id
    return await catalog.create_category(uow, name=name, slug=slug, parent_id=parent_id)


async def make_brand(uow: UnitOfWork, name: str) -> BrandInfo:
    existing = await catalog.get_brand_by_slug(uow, catalog.slugify(name))
    if existing is not None:
        return existing
    return await catalog.create_brand(uow, name=name)


async def make_product(
    uow: UnitOfWork,
    *,
    title: str = "Test kettle",
    variants: list[dict[str, Any]] | None = None,
    status: str = "active",
    category_slug: str | None = None,
    brand: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> tuple[str, list[str]]:
    """A product with its variants; returns (product_id, [variant_ids]).

    Each variant dict may give ``sku``, ``price`` (int minor units), ``currency``, ``options``,
    ``title``, ``compare_at``, ``weight_grams``, ``active``; anything missing gets a sensible
    unique default (one variant at 19.99 EUR when ``variants`` is not given).
    """
    specs = variants if variants is not None else [{}]
    currency = str(specs[0].get("currency", "EUR")) if specs else "EUR"
    category = await make_category(
        uow,
        (category_slug or "test-category").replace("-", " ").title(),
        slug=category_slug or "test-category",
    )
    brand_id = (await make_brand(uow, brand)).id if brand else None
    new_variants = [
        NewVariant(
            sku=str(spec.get("sku") or unique_sku()),
            price=int(spec.get("price", 1999)),
            currency=str(spec.get("currency", currency)),
            title=str(spec.get("title", "")),
            options=dict(spec.get("options", {})),
            compare_at=spec.get("compare_at"),
            weight_grams=int(spec.get("weight_grams", 500)),
            active=bool(spec.get("active", True)),
        )
        for spec in specs
    ]
    view = await catalog.create_product(
        uow,
        NewProduct(
            title=title,
            category_id=category.id,
            currency=currency,
            brand_id=brand_id,
            status=status,  # type: ignore[arg-type]
            attributes=attributes or {},
            variants=new_variants,
        ),
    )
    return view.id, [v.id for v in view.variants]
