"""Buying from several sellers at once: what the cart, the checkout and the orders ask of the
marketplace.

* The cart (below the marketplace) names offers through hooks registered by ``modules.wire``:
  :func:`cart_line_offer` checks the offer a line buys, :func:`cart_line_offers` gives the cart
  view each seller line's offer now.
* The ledger is fed from the orders' events, idempotently (the part's id is the sale's
  reference): ``OrderPlaced`` records one sale per seller part (:func:`record_order_sales`,
  commission frozen then), an order moved to ``cancelled`` undoes what is left of each
  (:func:`record_order_cancellation`). The house's part is the shop's own revenue: it pays no
  commission and owes no seller, so it has no sale in the ledger.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime

from mercato.cart import service as cart
from mercato.catalog import service as catalog
from mercato.db import UnitOfWork
from mercato.marketplace.buybox import eligible_offers, offer_for_checkout, offer_for_line
from mercato.marketplace.common import HOUSE_OFFER_PREFIX, get_seller
from mercato.marketplace.ledger import (
    ReversalEntry,
    get_sale,
    record_cancellation,
    record_refund,
    record_sale,
)
from mercato.marketplace.models import HOUSE_SELLER_ID
from mercato.orders import service as orders


async def cart_line_offer(
    uow: UnitOfWork,
    offer_id: str | None,
    variant_id: str | None,
    seller_id: str | None,
    country: str | None,
) -> cart.LineOffer:
    """The offer a cart line names, buyable now (404 / 409 ``offer_unavailable`` otherwise)."""
    if offer_id is not None:
        found = await offer_for_checkout(uow, offer_id, country)
    else:
        assert variant_id is not None
        found = await offer_for_line(uow, variant_id, seller_id, country)
    ranked = (await eligible_offers(uow, [found.variant_id], country)).get(found.variant_id, [])
    offer = next(o for o in ranked if o.offer_id == found.offer_id)
    return cart.LineOffer(
        offer_id=offer.offer_id,
        variant_id=offer.variant_id,
        seller_id=None if offer.is_house else offer.seller_id,
        seller_name=offer.seller_name,
        price=offer.price,
        currency=offer.currency,
        available=offer.available,
    )


async def cart_line_offers(
    uow: UnitOfWork, pairs: Collection[tuple[str, str]], country: str | None
) -> Mapping[tuple[str, str], cart.LineOffer]:
    """Each (variant, seller) pair's offer buyable now for ``country``; absent when none."""
    ranked = await eligible_offers(uow, {v for v, _ in pairs}, country)
    found: dict[tuple[str, str], cart.LineOffer] = {}
    for variant_id, offers in ranked.items():
        for o in offers:
            if (variant_id, o.seller_id) in pairs and not o.is_house:
                found[(variant_id, o.seller_id)] = cart.LineOffer(
                    o.offer_id, variant_id, o.seller_id, o.seller_name, o.price, o.currency,
                    o.available,
                )  # fmt: skip
    return found


def is_house_offer(offer_id: str) -> bool:
    return offer_id.startswith(HOUSE_OFFER_PREFIX)


async def _category_of(
    uow: UnitOfWork, order: orders.OrderInfo, part: orders.OrderPartInfo
) -> str | None:
    """The part's category when all its lines are of one (commission rules may be per
    category); ``None`` for a part mixing categories (the seller's or the default rule)."""
    products = {line.product_id for line in order.lines if line.id in part.line_ids}
    found = await catalog.get_products(uow, products)
    categories = {p.category.id for p in found.values()}
    return categories.pop() if len(categories) == 1 else None


async def record_order_sales(uow: UnitOfWork, order_id: str) -> int:
    """One ledger sale per seller part of the order (again: nothing more); how many parts."""
    order = await orders.get_order(uow, order_id)
    if order is None:
        return 0
    recorded = 0
    for part in order.parts:
        if part.seller_id == HOUSE_SELLER_ID or part.total == 0:
            continue
        if await get_seller(uow, part.seller_id) is None:
            continue
        await record_sale(
            uow,
            reference=part.id,
            seller_id=part.seller_id,
            category_id=await _category_of(uow, order, part),
            gross=part.total,
            currency=order.currency,
            at=part.created_at,
        )
        recorded += 1
    return recorded


async def record_order_cancellation(uow: UnitOfWork, order_id: str) -> int:
    """A cancelled order's seller sales are undone (what is left of each); how many."""
    order = await orders.get_order(uow, order_id)
    if order is None:
        return 0
    done = 0
    for part in order.parts:
        if await get_sale(uow, part.id) is None:
            continue
        await record_cancellation(uow, sale_reference=part.id, at=order.updated_at)
        done += 1
    return done


def return_refund_reference(return_id: str, part_id: str) -> str:
    """The ledger reference of one part's share of a return's refund."""
    return f"{return_id}/{part_id}"


async def record_return_refunds(
    uow: UnitOfWork, return_id: str, shares: Iterable[tuple[str, int]], at: datetime
) -> list[ReversalEntry]:
    """Each (part id, amount) share of a return's refund, as a refund of the part's sale
    (parts without a sale, the house's, are the shop's own money: nothing to record). Again:
    the refunds already recorded."""
    done = []
    for part_id, amount in shares:
        if amount <= 0 or await get_sale(uow, part_id) is None:
            continue
        done.append(
            await record_refund(
                uow,
                reference=return_refund_reference(return_id, part_id),
                sale_reference=part_id,
                amount=amount,
                at=at,
            )
        )
    return done
