"""Offers: a seller's price, shipping fee and handling days for one catalog variant, and the
stock behind it, which lies in the seller's own warehouse and changes only through the
inventory service (its ledger and its conditional updates hold for sellers too).

``quantity`` is what the seller says it can sell now: the free units of its warehouse are set
to it by one inventory adjustment (never below what is already reserved for shoppers).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, insert, select, update

from mercato.catalog import service as catalog
from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.inventory import service as inventory
from mercato.marketplace.common import (
    OFFERS,
    OfferInfo,
    SellerInfo,
    check_in_scope,
    get_seller,
    publish_offers_changed,
)
from mercato.marketplace.models import MAX_HANDLING_DAYS
from mercato.money import MoneyError, to_minor
from mercato.problems import Problem, not_found, validation_problem

DEFAULT_HANDLING_DAYS = 2
MAX_LIST = 500
STOCK_REASON = "offer stock set by the seller"


@dataclass(frozen=True, slots=True)
class OfferDraft:
    """A new offer as the seller writes it: amounts as decimal strings."""

    price: str
    shipping: str = "0"
    quantity: int = 0
    handling_days: int = DEFAULT_HANDLING_DAYS
    active: bool = True


@dataclass(frozen=True, slots=True)
class OfferPatch:
    price: str | None = None
    shipping: str | None = None
    quantity: int | None = None
    handling_days: int | None = None
    active: bool | None = None


@dataclass(frozen=True, slots=True)
class OfferValues:
    """Checked values, in minor units (``None``: unchanged)."""

    price: int | None = None
    shipping_price: int | None = None
    quantity: int | None = None
    handling_days: int | None = None
    active: bool | None = None


# --------------------------------------------------------------------------------------------
# Input checks (the problem names the field; the import reports them per row and column)


def parse_price(value: str, currency: str, field: str = "price") -> int:
    """A positive amount in ``currency`` with no more decimals than it has."""
    try:
        minor = to_minor(value, currency)
    except MoneyError as exc:
        raise validation_problem(field, str(exc)) from exc
    if minor <= 0:
        raise validation_problem(field, "must be more than zero")
    return minor


def parse_shipping(value: str, currency: str, field: str = "shipping") -> int:
    try:
        return to_minor(value, currency)
    except MoneyError as exc:
        raise validation_problem(field, str(exc)) from exc


def check_stock_quantity(quantity: int, field: str = "quantity") -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise validation_problem(field, "must be a whole number")
    if not 0 <= quantity <= inventory.MAX_QUANTITY:
        raise validation_problem(field, f"must be between 0 and {inventory.MAX_QUANTITY}")
    return quantity


def check_handling_days(days: int, field: str = "handling_days") -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_HANDLING_DAYS:
        raise validation_problem(field, f"must be a whole number from 0 to {MAX_HANDLING_DAYS}")
    return days


def checked_patch(patch: OfferPatch, currency: str) -> OfferValues:
    return OfferValues(
        price=None if patch.price is None else parse_price(patch.price, currency),
        shipping_price=None if patch.shipping is None else parse_shipping(patch.shipping, currency),
        quantity=None if patch.quantity is None else check_stock_quantity(patch.quantity),
        handling_days=(
            None if patch.handling_days is None else check_handling_days(patch.handling_days)
        ),
        active=patch.active,
    )


# --------------------------------------------------------------------------------------------
# Reading


async def _available(
    uow: UnitOfWork, warehouse_id: str | None, variant_ids: Collection[str]
) -> dict[str, int]:
    if warehouse_id is None or not variant_ids:
        return {}
    levels = await inventory.stock_for_variants(uow, variant_ids)
    return {
        v: next((s.available for s in found if s.warehouse_id == warehouse_id), 0)
        for v, found in levels.items()
    }


async def offer_infos(uow: UnitOfWork, rows: Sequence[Row[Any]]) -> list[OfferInfo]:
    """Offer rows with each one's SKU and the units free in its seller's warehouse."""
    variants = await catalog.get_variants(uow, {r.variant_id for r in rows})
    sellers: dict[str, SellerInfo | None] = {}
    for r in rows:
        if r.seller_id not in sellers:
            sellers[r.seller_id] = await get_seller(uow, r.seller_id)
    stock: dict[str, dict[str, int]] = {}
    for seller_id, seller in sellers.items():
        ids = [r.variant_id for r in rows if r.seller_id == seller_id]
        stock[seller_id] = await _available(uow, seller.warehouse_id if seller else None, ids)
    return [
        OfferInfo(
            id=r.id,
            seller_id=r.seller_id,
            variant_id=r.variant_id,
            product_id=r.product_id,
            sku=variants[r.variant_id].sku if r.variant_id in variants else r.variant_id,
            price=r.price,
            currency=r.currency,
            shipping_price=r.shipping_price,
            handling_days=r.handling_days,
            active=bool(r.active),
            available=stock[r.seller_id].get(r.variant_id, 0),
            created_at=r.created_at,
            updated_at=r.updated_at,
        )
        for r in rows
    ]


async def _offer_row(uow: UnitOfWork, offer_id: str) -> Row[Any] | None:
    return (await uow.execute(select(OFFERS).where(OFFERS.c.id == offer_id))).first()


async def offer_rows_of(
    uow: UnitOfWork, seller_id: str, variant_ids: Collection[str] | None = None
) -> dict[str, Row[Any]]:
    """The seller's offer rows by variant id."""
    query = select(OFFERS).where(OFFERS.c.seller_id == seller_id)
    if variant_ids is not None:
        query = query.where(OFFERS.c.variant_id.in_(sorted(set(variant_ids))))
    return {r.variant_id: r for r in await uow.execute(query)}


async def get_offer(uow: UnitOfWork, scope: str | None, offer_id: str) -> OfferInfo:
    """One offer; 404 when there is none or it is another seller's."""
    row = await _offer_row(uow, offer_id)
    if row is None:
        raise not_found("Offer", offer_id)
    check_in_scope(scope, row.seller_id, "Offer", offer_id)
    return (await offer_infos(uow, [row]))[0]


async def list_offers(
    uow: UnitOfWork,
    scope: str | None,
    *,
    seller_id: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> list[OfferInfo]:
    """The caller's offers (staff: everyone's, or ``seller_id``'s), oldest first, ``limit``
    after the offer id ``after``."""
    if not 1 <= limit <= MAX_LIST:
        raise validation_problem("limit", f"must be between 1 and {MAX_LIST}")
    query = select(OFFERS)
    wanted = scope if scope is not None else seller_id
    if wanted is not None:
        query = query.where(OFFERS.c.seller_id == wanted)
    if after is not None:
        query = query.where(OFFERS.c.id > after)
    rows = (await uow.execute(query.order_by(OFFERS.c.id).limit(limit))).all()
    return await offer_infos(uow, rows)


# --------------------------------------------------------------------------------------------
# Writing


async def offering_seller(uow: UnitOfWork, scope: str | None, seller_id: str | None) -> SellerInfo:
    """The seller an offer is written for: the caller's own, or the one staff name (422
    ``seller_id`` when staff name none); the house sells the catalog itself (409)."""
    wanted = scope if scope is not None else seller_id
    if wanted is None:
        raise validation_problem("seller_id", "staff must say which seller the offer is for")
    seller = await get_seller(uow, wanted)
    if seller is None:
        raise not_found("Seller", wanted)
    if seller.is_house or seller.warehouse_code is None:
        raise Problem(
            409,
            "house_seller",
            "The shop's own offers are its catalog prices and pooled stock",
        )
    return seller


async def set_stock(
    uow: UnitOfWork, seller: SellerInfo, variant: catalog.VariantInfo, quantity: int
) -> None:
    """Make ``quantity`` units free to sell in the seller's warehouse, by one adjustment."""
    assert seller.warehouse_code is not None
    free = (await _available(uow, seller.warehouse_id, [variant.id])).get(variant.id, 0)
    if quantity != free:
        await inventory.adjust(uow, variant, seller.warehouse_code, quantity - free, STOCK_REASON)


async def insert_offer(
    uow: UnitOfWork, seller: SellerInfo, variant: catalog.VariantInfo, values: OfferValues
) -> str:
    """A new offer row (and its stock); 409 ``offer_exists`` when the seller has one for the
    variant already."""
    if (await offer_rows_of(uow, seller.id, [variant.id])).get(variant.id) is not None:
        raise Problem(
            409,
            "offer_exists",
            f"{seller.name} already has an offer for {variant.sku}",
            variant_id=variant.id,
        )
    assert values.price is not None
    offer_id = new_id("off")
    now = utcnow()
    await uow.execute(
        insert(OFFERS).values(
            id=offer_id,
            seller_id=seller.id,
            variant_id=variant.id,
            product_id=variant.product_id,
            price=values.price,
            currency=variant.currency,
            shipping_price=values.shipping_price or 0,
            handling_days=(
                DEFAULT_HANDLING_DAYS if values.handling_days is None else values.handling_days
            ),
            active=True if values.active is None else values.active,
            created_at=now,
            updated_at=now,
        )
    )
    await set_stock(uow, seller, variant, values.quantity or 0)
    return offer_id


async def change_offer(
    uow: UnitOfWork,
    seller: SellerInfo,
    variant: catalog.VariantInfo,
    offer_id: str,
    values: OfferValues,
) -> None:
    changes: dict[str, Any] = {
        k: v
        for k, v in (
            ("price", values.price),
            ("shipping_price", values.shipping_price),
            ("handling_days", values.handling_days),
            ("active", values.active),
        )
        if v is not None
    }
    if changes:
        changes["updated_at"] = utcnow()
        await uow.execute(update(OFFERS).where(OFFERS.c.id == offer_id).values(**changes))
    if values.quantity is not None:
        await set_stock(uow, seller, variant, values.quantity)


async def create_offer(
    uow: UnitOfWork,
    scope: str | None,
    variant_ref: str,
    draft: OfferDraft,
    *,
    seller_id: str | None = None,
) -> OfferInfo:
    """A seller's new offer for the variant with this SKU or id (422 ``unknown_variant``)."""
    seller = await offering_seller(uow, scope, seller_id)
    variant = await inventory.resolve_variant(uow, variant_ref)
    values = OfferValues(
        price=parse_price(draft.price, variant.currency),
        shipping_price=parse_shipping(draft.shipping, variant.currency),
        quantity=check_stock_quantity(draft.quantity),
        handling_days=check_handling_days(draft.handling_days),
        active=draft.active,
    )
    offer_id = await insert_offer(uow, seller, variant, values)
    await publish_offers_changed(uow, [variant.product_id])
    return await get_offer(uow, scope, offer_id)


async def update_offer(
    uow: UnitOfWork, scope: str | None, offer_id: str, patch: OfferPatch
) -> OfferInfo:
    """Change an offer's price, shipping, handling days, stock or whether it is for sale;
    404 for another seller's."""
    row = await _offer_row(uow, offer_id)
    if row is None:
        raise not_found("Offer", offer_id)
    check_in_scope(scope, row.seller_id, "Offer", offer_id)
    seller = await offering_seller(uow, None, row.seller_id)
    variant = await inventory.resolve_variant(uow, row.variant_id, field="variant_id")
    await change_offer(uow, seller, variant, offer_id, checked_patch(patch, row.currency))
    await publish_offers_changed(uow, [row.product_id])
    return await get_offer(uow, scope, offer_id)
