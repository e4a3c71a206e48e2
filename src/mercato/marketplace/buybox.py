"""The buy box: which offer of a variant a shopper is shown first (and buys with one click),
and the other sellers' offers.

Eligible offers: the seller is approved and within the performance thresholds
(``Performance.eligible``), the offer is active and in the variant's currency, the variant is
for sale, and at least one unit can reach the destination (the seller's warehouse ships there;
for the house, a pooled warehouse that ships there has some).

Score (lower wins), in integers so that it is exact::

    landed  = price + shipping to the destination
    factor  = 10_000                      (basis points)
            + 100 * handling days         (1 % of the landed price per day before dispatch)
            + defect rate + cancel rate   (in basis points: 1 % defects costs 1 %)
            + late-shipment rate / 2
            + (300 - rating * 100) / 2    (only with at least 5 ratings: ±1 % for 5 or 1 stars)
    score   = landed * factor

Ties are broken by the landed price, then the handling days, then the house before other
sellers, then the seller id and the offer id, so the same data always picks the same offer.
Shipping to the destination is the offer's flat fee for a seller, and for the house the cheapest
shipping method's charge for one unit (``shipping_readers``); with no destination (listings and
the search index) shipping counts as nothing for anyone and every warehouse counts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select

from mercato.catalog import service as catalog
from mercato.db import UnitOfWork
from mercato.inventory import service as inventory
from mercato.marketplace.common import (
    HOUSE_OFFER_PREFIX,
    OFFERS,
    SellerInfo,
    house_seller,
    sellers_by_id,
)
from mercato.marketplace.offers import _available
from mercato.problems import Problem, not_found

BASIS = 10_000
DAY_WEIGHT_BP = 100
MIN_RATINGS = 5
Sort = Literal["score", "landed_price"]

ShippingReader = Callable[[UnitOfWork, str, int, int, str], Awaitable[int | None]]
shipping_readers: list[ShippingReader] = []
"""(uow, country, weight in grams, goods total, currency) → the cheapest charge to carry one
parcel there, ``None`` when nothing ships there. Registered by ``modules.wire`` (the checkout's
shipping methods); without one the house's shipping counts as nothing."""


@dataclass(frozen=True, slots=True)
class BuyBoxOffer:
    """An offer as the buy box weighs it for one destination."""

    offer_id: str
    seller_id: str
    seller_name: str
    is_house: bool
    variant_id: str
    product_id: str
    sku: str
    price: int
    shipping: int
    currency: str
    available: int
    handling_days: int
    score: int
    warehouse_code: str | None  # None: the house's pooled warehouses

    @property
    def landed_price(self) -> int:
        return self.price + self.shipping


def performance_factor(seller: SellerInfo, handling_days: int) -> int:
    """The score's factor in basis points (see the module's docstring)."""
    p = seller.performance
    factor = (
        BASIS
        + DAY_WEIGHT_BP * handling_days
        + p.defect_rate_bp
        + p.cancel_rate_bp
        + p.late_shipment_rate_bp // 2
    )
    if p.rating_x100 is not None and p.rating_count >= MIN_RATINGS:
        factor += (300 - p.rating_x100) // 2
    return factor


def score(seller: SellerInfo, landed_price: int, handling_days: int) -> int:
    return landed_price * performance_factor(seller, handling_days)


def buybox_order(o: BuyBoxOffer) -> tuple[int, int, int, int, str, str]:
    return (
        o.score,
        o.landed_price,
        o.handling_days,
        0 if o.is_house else 1,
        o.seller_id,
        o.offer_id,
    )


def landed_order(o: BuyBoxOffer) -> tuple[int, int, int, int, str, str]:
    return (
        o.landed_price,
        o.score,
        o.handling_days,
        0 if o.is_house else 1,
        o.seller_id,
        o.offer_id,
    )


async def _house_shipping(
    uow: UnitOfWork, country: str | None, variant: catalog.VariantInfo
) -> int:
    """The house's charge to the destination; nothing when no method is set up there (the
    checkout says so when the shopper gets there, as it does today)."""
    if country is None or not shipping_readers:
        return 0
    charge = await shipping_readers[0](
        uow, country, variant.weight_grams, variant.price, variant.currency
    )
    return charge or 0


async def _house_offers(
    uow: UnitOfWork,
    house: SellerInfo,
    variants: Sequence[catalog.VariantInfo],
    country: str | None,
) -> list[BuyBoxOffer]:
    if not house.selling or not house.performance.eligible:
        return []
    units = await inventory.availability(uow, [v.id for v in variants], country)
    in_stock = [v for v in variants if units.get(v.id, 0) > 0]
    served = (
        await inventory.serving_warehouses(uow, dict.fromkeys((v.id for v in in_stock), 1), country)
        if country is not None and in_stock
        else {}
    )
    found = []
    for v in in_stock:
        shipping = await _house_shipping(uow, country, v)
        serving = served.get(v.id)
        days = serving.handling_days if serving else inventory.DEFAULT_HANDLING_DAYS
        found.append(
            BuyBoxOffer(
                offer_id=HOUSE_OFFER_PREFIX + v.id,
                seller_id=house.id,
                seller_name=house.name,
                is_house=True,
                variant_id=v.id,
                product_id=v.product_id,
                sku=v.sku,
                price=v.price,
                shipping=shipping,
                currency=v.currency,
                available=units[v.id],
                handling_days=days,
                score=score(house, v.price + shipping, days),
                warehouse_code=None,
            )
        )
    return found


async def _seller_offers(
    uow: UnitOfWork, variants: dict[str, catalog.VariantInfo], country: str | None
) -> list[BuyBoxOffer]:
    rows = (
        await uow.execute(
            select(OFFERS).where(
                OFFERS.c.variant_id.in_(sorted(variants)), OFFERS.c.active.is_(True)
            )
        )
    ).all()
    sellers = await sellers_by_id(uow, {r.seller_id for r in rows})
    warehouses = {w.id: w for w in await inventory.list_warehouses(uow)}
    by_seller: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_seller[r.seller_id].append(r.variant_id)
    units: dict[str, dict[str, int]] = {}
    for seller_id, ids in by_seller.items():
        seller = sellers.get(seller_id)
        units[seller_id] = await _available(uow, seller.warehouse_id if seller else None, ids)
    found = []
    for r in rows:
        seller = sellers.get(r.seller_id)
        variant = variants[r.variant_id]
        if seller is None or not seller.selling or not seller.performance.eligible:
            continue
        warehouse = warehouses.get(seller.warehouse_id or "")
        if warehouse is None or not warehouse.active or not warehouse.ships_to(country):
            continue
        available = units[r.seller_id].get(r.variant_id, 0)
        if available <= 0 or r.currency != variant.currency:
            continue
        shipping = r.shipping_price if country is not None else 0
        found.append(
            BuyBoxOffer(
                offer_id=r.id,
                seller_id=seller.id,
                seller_name=seller.name,
                is_house=False,
                variant_id=r.variant_id,
                product_id=r.product_id,
                sku=variant.sku,
                price=r.price,
                shipping=shipping,
                currency=r.currency,
                available=available,
                handling_days=r.handling_days,
                score=score(seller, r.price + shipping, r.handling_days),
                warehouse_code=seller.warehouse_code,
            )
        )
    return found


async def eligible_offers(
    uow: UnitOfWork,
    variant_ids: Collection[str],
    country: str | None,
    *,
    sort: Sort = "score",
) -> dict[str, list[BuyBoxOffer]]:
    """Every eligible offer of each variant for ``country`` (``None``: anywhere), best first
    (``sort="landed_price"``: cheapest landed first). Variants not for sale have none."""
    known = await catalog.get_variants(uow, variant_ids)
    variants = {v.id: v for v in known.values() if v.active}
    found: dict[str, list[BuyBoxOffer]] = {v: [] for v in variant_ids}
    if not variants:
        return found
    house = await house_seller(uow)
    offers = await _house_offers(uow, house, list(variants.values()), country)
    offers += await _seller_offers(uow, variants, country)
    for o in offers:
        found[o.variant_id].append(o)
    key = buybox_order if sort == "score" else landed_order
    return {v: sorted(items, key=key) for v, items in found.items()}


async def featured_offer(
    uow: UnitOfWork, variant_id: str, country: str | None
) -> BuyBoxOffer | None:
    """The variant's buy-box winner for ``country``; ``None`` when nobody can sell it there."""
    ranked = (await eligible_offers(uow, [variant_id], country)).get(variant_id, [])
    return ranked[0] if ranked else None


@dataclass(frozen=True, slots=True)
class VariantOffers:
    variant: catalog.VariantInfo
    featured: BuyBoxOffer | None
    others: list[BuyBoxOffer]  # every other eligible offer, in the asked order


async def product_offers(
    uow: UnitOfWork, product_id: str, country: str | None, *, sort: Sort = "landed_price"
) -> list[VariantOffers]:
    """Each for-sale variant of a listed product with its featured offer and the other
    eligible ones ("Other sellers"), sorted by ``sort``; 404 for a product not for sale."""
    product = await catalog.get_product(uow, product_id)
    if product is None:
        raise not_found("Product", product_id)
    ids = [v.id for v in product.variants]
    variants = await catalog.get_variants(uow, ids)
    ranked = await eligible_offers(uow, ids, country)
    result = []
    for vid in ids:
        variant = variants.get(vid)
        if variant is None or not variant.active:
            continue
        offers = ranked.get(vid, [])
        featured = offers[0] if offers else None
        others = [o for o in offers[1:]]
        others.sort(key=buybox_order if sort == "score" else landed_order)
        result.append(VariantOffers(variant, featured, others))
    return result


async def featured_prices(uow: UnitOfWork, product_ids: Collection[str]) -> dict[str, int]:
    """What listings show for each product that has marketplace offers: its lowest featured
    price with no destination. Products sold by the house alone are left out (their catalog
    price is the featured one), so a shop without sellers costs one query."""
    rows = await uow.execute(
        select(OFFERS.c.product_id, OFFERS.c.variant_id)
        .where(OFFERS.c.product_id.in_(sorted(set(product_ids))), OFFERS.c.active.is_(True))
        .distinct()
    )
    by_product: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        by_product[r.product_id].add(r.variant_id)
    if not by_product:
        return {}
    products = await catalog.get_products(uow, by_product.keys(), include_inactive=False)
    variant_ids = {v.id for p in products.values() for v in p.variants}
    ranked = await eligible_offers(uow, variant_ids, None)
    prices: dict[str, int] = {}
    for pid, product in products.items():
        featured = [ranked[v.id][0].price for v in product.variants if ranked.get(v.id)]
        if featured:
            prices[pid] = min(featured)
    return prices


# --------------------------------------------------------------------------------------------
# What the order split will use


@dataclass(frozen=True, slots=True)
class CheckoutOffer:
    """What a cart line bought from an offer needs at checkout: who sells it, from which
    warehouse to reserve (``None``: the house's pool, as ``inventory.reserve`` does today), and
    the offer's price and shipping fee."""

    offer_id: str
    seller_id: str
    is_house: bool
    variant_id: str
    product_id: str
    price: int
    shipping: int
    currency: str
    handling_days: int
    warehouse_code: str | None


def offer_unavailable(offer_id: str) -> Problem:
    return Problem(
        409, "offer_unavailable", f"Offer {offer_id!r} cannot be bought now", offer_id=offer_id
    )


async def offer_for_checkout(
    uow: UnitOfWork, offer_id: str, country: str | None = None
) -> CheckoutOffer:
    """The offer a cart line names, checked buyable now for ``country``: 404 ``not_found``
    for no such offer, 409 ``offer_unavailable`` when its seller is not selling, it is
    inactive, out of stock there or out of the buy box's eligibility."""
    variant_id = (
        offer_id[len(HOUSE_OFFER_PREFIX) :]
        if offer_id.startswith(HOUSE_OFFER_PREFIX)
        else await uow.scalar(select(OFFERS.c.variant_id).where(OFFERS.c.id == offer_id))
    )
    if not variant_id:
        raise not_found("Offer", offer_id)
    offers = (await eligible_offers(uow, [variant_id], country)).get(variant_id, [])
    chosen = next((o for o in offers if o.offer_id == offer_id), None)
    if chosen is None:
        if offer_id.startswith(HOUSE_OFFER_PREFIX) and not (
            await catalog.get_variants(uow, [variant_id])
        ):
            raise not_found("Offer", offer_id)
        raise offer_unavailable(offer_id)
    return CheckoutOffer(
        offer_id=chosen.offer_id,
        seller_id=chosen.seller_id,
        is_house=chosen.is_house,
        variant_id=chosen.variant_id,
        product_id=chosen.product_id,
        price=chosen.price,
        shipping=chosen.shipping,
        currency=chosen.currency,
        handling_days=chosen.handling_days,
        warehouse_code=chosen.warehouse_code,
    )


async def offer_for_line(
    uow: UnitOfWork, variant_id: str, seller_id: str | None, country: str | None = None
) -> CheckoutOffer:
    """A cart line references an offer as (variant, seller): ``seller_id=None`` is the house,
    which is every cart line of today."""
    house = await house_seller(uow)
    if seller_id is None or seller_id == house.id:
        return await offer_for_checkout(uow, HOUSE_OFFER_PREFIX + variant_id, country)
    offer_id = await uow.scalar(
        select(OFFERS.c.id).where(
            OFFERS.c.seller_id == seller_id, OFFERS.c.variant_id == variant_id
        )
    )
    if offer_id is None:
        raise not_found("Offer", f"{seller_id}/{variant_id}")
    return await offer_for_checkout(uow, offer_id, country)
