"""Variants as other modules need them: cart, checkout and inventory read them on every
request, so these are prebuilt Core reads of only the columns :class:`VariantInfo` holds."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Table, bindparam, select

from mercato.catalog.common import chunks
from mercato.catalog.models import Product, Variant
from mercato.db import UnitOfWork
from mercato.problems import validation_problem


@dataclass(frozen=True, slots=True)
class VariantInfo:
    """A sellable SKU as other modules (inventory, cart, checkout) need it."""

    id: str
    sku: str
    product_id: str
    product_title: str
    title: str
    options: dict[str, str]
    price: int
    currency: str
    compare_at: int | None
    weight_grams: int
    active: bool  # the variant is active AND its product's status is "active"
    image: str | None
    tax_class: str = "standard"  # the product's, which checkout's tax table is keyed by


# Cart, checkout and inventory read variants on every request: prebuilt Core statements of only
# the columns ``VariantInfo`` needs (never a product's description or attributes, and of its
# media only the first image), so a read binds values and builds no ORM entities.
_VARIANTS: Table = Variant.__table__  # type: ignore[assignment]
_PRODUCTS: Table = Product.__table__  # type: ignore[assignment]
_VARIANT_INFO = select(
    _VARIANTS.c.id,
    _VARIANTS.c.sku,
    _VARIANTS.c.product_id,
    _PRODUCTS.c.title.label("product_title"),
    _VARIANTS.c.title,
    _VARIANTS.c.options,
    _VARIANTS.c.price,
    _VARIANTS.c.currency,
    _VARIANTS.c.compare_at,
    _VARIANTS.c.weight_grams,
    _VARIANTS.c.active,
    _PRODUCTS.c.status,
    _PRODUCTS.c.media[0].label("image"),
    _PRODUCTS.c.tax_class,
).join(_PRODUCTS, _PRODUCTS.c.id == _VARIANTS.c.product_id)
_VARIANTS_BY_ID = _VARIANT_INFO.where(_VARIANTS.c.id.in_(bindparam("ids", expanding=True)))
_VARIANT_BY_SKU = _VARIANT_INFO.where(_VARIANTS.c.sku == bindparam("sku"))


def _variant_info_from_row(row: Row[*tuple[Any, ...]]) -> VariantInfo:
    return VariantInfo(
        id=row.id,
        sku=row.sku,
        product_id=row.product_id,
        product_title=row.product_title,
        title=row.title,
        options=dict(row.options or {}),
        price=row.price,
        currency=row.currency,
        compare_at=row.compare_at,
        weight_grams=row.weight_grams,
        active=bool(row.active) and row.status == "active",
        image=row.image,
        tax_class=row.tax_class,
    )


async def get_variants(uow: UnitOfWork, ids: Collection[str]) -> dict[str, VariantInfo]:
    """The variants with these ids (unknown ids are simply absent from the answer)."""
    wanted = sorted(set(ids))
    found: dict[str, VariantInfo] = {}
    for chunk in chunks(wanted):
        for row in await uow.execute(_VARIANTS_BY_ID, {"ids": list(chunk)}):
            found[row.id] = _variant_info_from_row(row)
    return found


async def get_variant_by_sku(uow: UnitOfWork, sku: str) -> VariantInfo | None:
    row = (await uow.execute(_VARIANT_BY_SKU, {"sku": sku})).first()
    return None if row is None else _variant_info_from_row(row)


# --------------------------------------------------------------------------------------------
# For the back office


async def variants_by_sku(
    uow: UnitOfWork,
    *,
    contains: str | None = None,
    after_sku: str | None = None,
    limit: int = 50,
) -> list[VariantInfo]:
    """Variants ordered by SKU, those whose SKU contains ``contains`` (any case) when given,
    starting after ``after_sku`` (keyset paging: the SKU is unique)."""
    if not 1 <= limit <= 500:
        raise validation_problem("limit", "must be between 1 and 500")
    query = _VARIANT_INFO
    text = (contains or "").strip()
    if text:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(_VARIANTS.c.sku.ilike(f"%{escaped}%", escape="\\"))
    if after_sku is not None:
        query = query.where(_VARIANTS.c.sku > after_sku)
    rows = await uow.execute(query.order_by(_VARIANTS.c.sku).limit(limit))
    return [_variant_info_from_row(row) for row in rows]
