"""The cart as a shopper sees it: current prices (and whether they changed since each line
was added), stock per line, notices, and totals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from mercato.cart.common import (
    CartInfo,
    CartLineInfo,
    LineOffer,
    StockStatus,
    offer_price_readers,
)
from mercato.catalog import service as catalog
from mercato.db import UnitOfWork
from mercato.identity import service as identity
from mercato.inventory import service as inventory
from mercato.money import format_minor


@dataclass(frozen=True, slots=True)
class CartLineView:
    id: str
    variant_id: str
    seller_id: str | None
    seller_name: str | None
    product_id: str | None
    sku: str | None
    title: str
    product_title: str
    options: dict[str, str]
    image: str | None
    quantity: int
    currency: str
    unit_price: str
    unit_price_seen: str
    price_changed: bool
    line_total: str
    stock_status: StockStatus
    available: int | None
    available_hint: str | None
    purchasable: bool
    added_at: datetime


@dataclass(frozen=True, slots=True)
class CartView:
    id: str | None
    currency: str | None
    lines: tuple[CartLineView, ...]
    item_count: int
    line_count: int
    subtotal: str
    notices: tuple[str, ...]
    country: str | None = None
    """Where the lines' stock was judged for (``None``: any warehouse)."""


# --- the view --------------------------------------------------------------------------------


def _display_name(variant: catalog.VariantInfo) -> str:
    if variant.title and variant.title != variant.product_title:
        return f"{variant.product_title} ({variant.title})"
    return variant.product_title


def _stock_status(available: int, quantity: int, out_of_reach: bool = False) -> StockStatus:
    if available <= 0:
        return "not_deliverable" if out_of_reach else "out_of_stock"
    return "in_stock" if available >= quantity else "short"


async def view_cart(
    uow: UnitOfWork,
    cart: CartInfo | None,
    *,
    shop_currency: str,
    low_stock_threshold: int,
    known_variants: Mapping[str, catalog.VariantInfo] | None = None,
    known_stock: Mapping[str, inventory.StockSpread] | None = None,
    country: str | None = None,
) -> CartView:
    """The cart as a shopper sees it: current prices (and whether they changed since each line
    was added), stock status per line, notices, and totals.

    Sums are in integer minor units; a line whose variant is gone, inactive, or priced in another
    currency than the cart is shown but not purchasable and is left out of the subtotal.
    ``known_variants`` and ``known_stock`` are variants and units available the caller has just
    read in this transaction; only the other lines' are read. No cart at all is an empty one
    whose zero subtotal is written in ``shop_currency``. Stock is judged for delivery to
    ``country`` (any warehouse when ``None``): a line only warehouses shipping elsewhere hold
    is ``not_deliverable``.
    """
    if cart is None:
        return CartView(None, None, (), 0, 0, format_minor(0, shop_currency), (), country)
    ids = [line.variant_id for line in cart.lines]
    variants = await _variants_of(uow, ids, known_variants or {})
    house_ids = [line.variant_id for line in cart.lines if line.seller_id is None]
    stock = await _stock_of(uow, house_ids, known_stock or {})
    offers = await _offers_of(uow, cart.lines, country)
    views: list[CartLineView] = []
    notices: list[str] = []
    subtotal = 0
    for line in cart.lines:
        variant = variants.get(line.variant_id)
        if line.seller_id is None:
            spread = stock.get(line.variant_id, inventory.StockSpread())
        else:
            # A seller's line: its offer's price and the seller's own stock.
            offer = offers.get((line.variant_id, line.seller_id))
            variant = _as_offer(variant, offer)
            ships = frozenset({country}) if country is not None else frozenset()
            spread = inventory.StockSpread((("", ships, offer.available if offer else 0),))
        view = _line_view(
            line, variant, spread, cart.currency, low_stock_threshold, notices, country
        )
        if line.seller_id is not None:
            name = offer.seller_name if offer is not None else None
            view = replace(view, seller_id=line.seller_id, seller_name=name)
        if view.purchasable:
            subtotal += _price_of(line, variant) * line.quantity
        views.append(view)
    return CartView(
        id=cart.id,
        currency=cart.currency,
        lines=tuple(views),
        item_count=sum(line.quantity for line in cart.lines),
        line_count=len(cart.lines),
        subtotal=format_minor(subtotal, cart.currency),
        notices=tuple(notices),
        country=country,
    )


async def _variants_of(
    uow: UnitOfWork, ids: list[str], known: Mapping[str, catalog.VariantInfo]
) -> dict[str, catalog.VariantInfo]:
    found = {i: known[i] for i in ids if i in known}
    missing = [i for i in ids if i not in known]
    if missing:
        found.update(await catalog.get_variants(uow, missing))
    return found


async def _stock_of(
    uow: UnitOfWork, ids: list[str], known: Mapping[str, inventory.StockSpread]
) -> dict[str, inventory.StockSpread]:
    found = {i: known[i] for i in ids if i in known}
    missing = [i for i in ids if i not in known]
    if missing:
        found.update(await inventory.stock_spreads(uow, missing))
    return found


async def _offers_of(
    uow: UnitOfWork, lines: tuple[CartLineInfo, ...], country: str | None
) -> Mapping[tuple[str, str], LineOffer]:
    wanted = {(x.variant_id, x.seller_id) for x in lines if x.seller_id is not None}
    if not wanted or not offer_price_readers:
        return {}
    return await offer_price_readers[0](uow, wanted, country)


def _as_offer(
    variant: catalog.VariantInfo | None, offer: LineOffer | None
) -> catalog.VariantInfo | None:
    """The variant as the seller's line shows it: at the offer's price; not for sale when the
    seller no longer offers it."""
    if variant is None:
        return None
    if offer is None:
        return replace(variant, active=False)
    return replace(variant, price=offer.price, currency=offer.currency)


def _price_of(line: CartLineInfo, variant: catalog.VariantInfo | None) -> int:
    return variant.price if variant is not None else line.unit_price_seen


def _line_view(
    line: CartLineInfo,
    variant: catalog.VariantInfo | None,
    spread: inventory.StockSpread,
    cart_currency: str,
    low_stock_threshold: int,
    notices: list[str],
    country: str | None,
) -> CartLineView:
    seen = format_minor(line.unit_price_seen, line.currency)
    if variant is None:
        notices.append("An item in your cart is no longer sold and cannot be ordered.")
        return CartLineView(
            id=line.id,
            variant_id=line.variant_id,
            seller_id=line.seller_id,
            seller_name=None,
            product_id=None,
            sku=None,
            title="Unavailable item",
            product_title="Unavailable item",
            options={},
            image=None,
            quantity=line.quantity,
            currency=line.currency,
            unit_price=seen,
            unit_price_seen=seen,
            price_changed=False,
            line_total=format_minor(line.unit_price_seen * line.quantity, line.currency),
            stock_status="out_of_stock",
            available=0,
            available_hint=None,
            purchasable=False,
            added_at=line.added_at,
        )
    name = _display_name(variant)
    purchasable = variant.active and variant.currency == cart_currency
    price_changed = (variant.price, variant.currency) != (line.unit_price_seen, line.currency)
    current = format_minor(variant.price, variant.currency)
    if not variant.active:
        notices.append(f"{name} is no longer available.")
    elif variant.currency != cart_currency:
        notices.append(f"{name} is priced in {variant.currency} and cannot be bought in this cart.")
    if price_changed:
        notices.append(
            f"The price of {name} changed from {seen} {line.currency} to "
            f"{current} {variant.currency} since you added it."
        )
    available = max(spread.for_country(country), 0) if purchasable else 0
    status = _stock_status(available, line.quantity, spread.only_elsewhere(country))
    if purchasable and status == "out_of_stock":
        notices.append(f"{name} is out of stock.")
    elif purchasable and status == "not_deliverable" and country is not None:
        notices.append(f"{name} is not available for delivery to {identity.country_name(country)}.")
    elif status == "short":
        notices.append(f"Only {available} of {name} available; your cart has {line.quantity}.")
    hint = inventory.low_stock_hint(available, low_stock_threshold) if available > 0 else None
    return CartLineView(
        id=line.id,
        variant_id=line.variant_id,
        seller_id=line.seller_id,
        seller_name=None,
        product_id=variant.product_id,
        sku=variant.sku,
        title=variant.title,
        product_title=variant.product_title,
        options=dict(variant.options),
        image=variant.image,
        quantity=line.quantity,
        currency=variant.currency,
        unit_price=current,
        unit_price_seen=seen,
        price_changed=price_changed,
        line_total=format_minor(variant.price * line.quantity, variant.currency),
        stock_status=status,
        available=None if status == "in_stock" else available,
        available_hint=hint,
        purchasable=purchasable,
        added_at=line.added_at,
    )
